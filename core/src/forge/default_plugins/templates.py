"""Template ``plugin``: ``forge init plugin forge-NAME`` scaffolds a third-party plugin package.

The package has a pyproject with the ``forge`` entry point, a module registering a small recipe, and a test
that runs the recipe through ``forge run``; ``pip install -e DIR`` makes it appear in ``forge list-plugins``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from string import Template as Text

import forge

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A forge plugin: recipe $name."
requires-python = ">=3.10"
dependencies = ["forge-core>=$core_major_minor,<1"]

[project.optional-dependencies]
test = ["pytest>=8"]

[project.entry-points.forge]
$name = "$module"

[tool.setuptools]
py-modules = ["$module"]
"""

MODULE = '''\
"""forge plugin $dist: recipe `$name` counts words in a text file and keeps the most frequent ones.

    forge run --recipe $name --data notes.txt --set top_k=20
"""

from __future__ import annotations

import json
from collections import Counter

import forge
from forge.artifacts import ArtifactResult
from forge.config import DataFile, RecipeConfig


class VocabularyConfig(RecipeConfig):
    data: DataFile
    top_k: int = 100
    lowercase: bool = True


def train(ctx, config: VocabularyConfig) -> ArtifactResult:
    counts: Counter[str] = Counter()
    lines = config.data.read_text(encoding="utf-8").splitlines()
    for step, line in enumerate(ctx.progress(lines, desc="counting"), start=1):
        counts.update((line.lower() if config.lowercase else line).split())
        ctx.log_metrics({"vocabulary": len(counts)}, step=step)
    ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
    top = dict(counts.most_common(config.top_k))
    (ctx.artifact_dir / "vocabulary.json").write_text(json.dumps(top, indent=2), encoding="utf-8")
    return ArtifactResult(kind="vocabulary", metrics={"words": sum(counts.values()), "distinct": len(counts)})


@forge.hookimpl
def register_recipes(register):
    register(forge.Recipe(name="$name", config=VocabularyConfig, train=train, summary="word counts of a text file"))
'''

TEST = '''\
"""Runs the plugin's recipe through the real forge CLI (the plugin must be installed: pip install -e .)."""

import json
import subprocess
import sys


def test_recipe_runs_end_to_end(tmp_path):
    data = tmp_path / "notes.txt"
    data.write_text("the cat sat\\nthe dog sat\\n")
    run_dir = tmp_path / "run"
    subprocess.run(
        [sys.executable, "-m", "forge", "run", "--recipe", "$name", "--data", str(data),
         "--output-dir", str(run_dir), "--no-tracking"],
        check=True, cwd=tmp_path,
    )
    manifest = json.loads((run_dir / "forge.json").read_text())
    assert manifest["status"] == "completed"
    vocabulary = json.loads((run_dir / "artifact" / "vocabulary.json").read_text())
    assert vocabulary == {"the": 2, "sat": 2, "cat": 1, "dog": 1}
'''

README = """\
# $dist

A [forge](https://pypi.org/project/forge-core/) plugin contributing the recipe `$name`.

    pip install -e .            # now `forge list-plugins` shows $dist
    forge run --recipe $name --data notes.txt
    pip install -e '.[test]' && pytest
"""


def plugin_files(project_name: str) -> dict[str, str]:
    """Files of a new plugin package named after its directory (``forge-NAME`` or ``NAME``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", project_name.lower()).strip("-") or "plugin"
    name = slug.removeprefix("forge-") or "plugin"
    values = {
        "dist": f"forge-{name}",
        "module": "forge_" + name.replace("-", "_"),
        "name": name,
        "core_major_minor": ".".join(forge.__version__.split(".")[:2]),
    }
    module = values["module"]
    return {
        "pyproject.toml": Text(PYPROJECT).substitute(values),
        f"{module}.py": Text(MODULE).substitute(values),
        f"tests/test_{module}.py": Text(TEST).substitute(values),
        "README.md": Text(README).substitute(values),
    }


@forge.hookimpl
def register_templates(register: Callable[[forge.Template], None]) -> None:
    register(forge.Template(name="plugin", files=plugin_files, summary="a new forge plugin package"))
