"""Import cost is a contract: the CLI's help and plugin listing never import heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

HEAVY = ["torch", "transformers", "trl", "peft", "datasets", "mlflow", "onnxruntime", "fastapi", "unsloth",
         "pandas", "matplotlib", "accelerate", "bitsandbytes"]

PROBE = """
import json, sys
from forge.cli import main
try:
    main({args!r})
except SystemExit:
    pass
heavy = {heavy!r}
print(json.dumps(sorted(m for m in heavy if m in sys.modules)), file=sys.stderr)
"""


def heavy_imports(*args: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", PROBE.format(args=list(args), heavy=HEAVY)],
                            capture_output=True, text=True, timeout=120)
    return json.loads(result.stderr.strip().splitlines()[-1])


def test_installed_plugins_are_the_four_of_this_repo():
    names = {ep.dist.name for ep in metadata.entry_points(group="forge") if ep.dist is not None}
    assert {"forge-hf", "forge-unsloth", "forge-timeseries", "forge-onnx"} <= names


def test_help_and_list_plugins_import_nothing_heavy():
    for args in (["--help"], ["list-plugins"], ["list-plugins", "--json"], ["run", "--help"], ["export", "--help"]):
        assert heavy_imports(*args) == [], args


def test_every_plugin_module_imports_light():
    modules = sorted({ep.value.split(":")[0] for ep in metadata.entry_points(group="forge")})
    code = (f"import sys, json\nfor m in {modules!r}: __import__(m)\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []
