"""Every distribution builds a wheel with declared, bounded dependencies; forge-core plus a plugin installed from
the built wheels into a fresh virtual environment work (what `pip install forge-core forge-hf` gives a user)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = ["core", "plugins/forge-hf", "plugins/forge-unsloth", "plugins/forge-timeseries",
                 "plugins/forge-onnx"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    for dist in DISTRIBUTIONS:
        subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
                        str(REPO / dist)], check=True, capture_output=True)
    return {w.name.split("-")[0]: w for w in out.glob("*.whl")}


def metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return archive.read(name).decode()


def test_each_distribution_builds_with_bounded_dependencies(wheels):
    assert set(wheels) == {"forge_core", "forge_hf", "forge_unsloth", "forge_timeseries", "forge_onnx"}
    for wheel in wheels.values():
        requirements = [line.split(":", 1)[1].strip() for line in metadata(wheel).splitlines()
                        if line.startswith("Requires-Dist:")]
        assert requirements, wheel.name
        for requirement in requirements:
            spec = requirement.split(";")[0]
            assert re.search(r">=", spec) and re.search(r"<", spec), f"{wheel.name}: {requirement} is not bounded"
        with zipfile.ZipFile(wheel) as archive:
            entry_points = next((archive.read(n).decode() for n in archive.namelist()
                                 if n.endswith("entry_points.txt")), "")
        if not wheel.name.startswith("forge_core"):
            assert "[forge]" in entry_points, wheel.name


def test_fresh_venv_from_wheels_lists_plugins(wheels, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # forge-core with its light dependencies from the registry; the heavy ones (torch, mlflow, ...) are not needed
    # to list plugins, which is the point: listing never imports them.
    requirements = re.findall(r"^Requires-Dist: (.*)$", metadata(wheels["forge_core"]), re.M)
    light = [r.split(";")[0].strip() for r in requirements
             if re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() in ("pluggy", "typer", "pydantic", "pyyaml")]
    assert len(light) == 4, requirements
    subprocess.run([str(python), "-m", "pip", "install", "-q", *light], check=True, capture_output=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheels["forge_core"]),
                    str(wheels["forge_hf"])], check=True, capture_output=True)
    listed = subprocess.run([str(venv / "bin" / "forge"), "list-plugins", "--json"], check=True,
                            capture_output=True, text=True, cwd=tmp_path)
    plugins = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert plugins["forge-hf"]["version"] == "0.1.0" and plugins["forge-hf"]["error"] is None
    assert plugins["forge-hf"]["contributions"]["recipes"] == [
        "sft", "qlora", "dpo", "grpo", "reward", "rlhf", "kto", "orpo", "classify", "embed"]
    assert plugins["forge-core"]["contributions"] == {"templates": ["plugin"]}
    # the packaged data travels in the wheel
    example = subprocess.run([str(python), "-c", "import forge_hf.templates as t; print(len(t.example_chat_data()))"],
                             check=True, capture_output=True, text=True)
    assert int(example.stdout) > 1000
