"""Shared fixtures: run the real ``forge`` CLI in a subprocess, with extra plugins installed into a temporary
site directory (a real ``*.dist-info`` with an ``entry_points.txt``, found by importlib.metadata)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# `make test` runs two pytest-xdist workers on CI's 2 cores: one torch thread each (and in the CLI subprocesses they
# start), so two workers never oversubscribe the cores; a single-process run keeps torch's default.
if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).resolve().parent / "fixture_plugins"


@dataclass
class PluginSite:
    """A directory put on PYTHONPATH holding plugin modules and their distribution metadata."""

    root: Path
    names: list[str] = field(default_factory=list)

    def add(self, dist: str, module: str, source: str | None = None, entry_point: str | None = None,
            version: str = "0.0.1") -> None:
        if source is None:
            shutil.copy(PLUGINS / f"{module}.py", self.root / f"{module}.py")
        else:
            (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[forge]\n{entry_point or dist} = {module}\n")
        self.names.append(dist)


@dataclass
class Forge:
    """Runs ``python -m forge`` like a user would, in ``cwd``, with the plugin site on the path."""

    cwd: Path
    site: PluginSite
    env: dict[str, str]
    only_site: bool = False  # load only the plugins of the temporary site (FORGE_PLUGINS)

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(self.env)
        if self.only_site:
            env["FORGE_PLUGINS"] = ",".join(self.site.names)
        return {**env, **extra}

    def __call__(self, *args: str, check: bool | None = None, timeout: float = 300,
                 **kw) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "forge", *map(str, args)],
            cwd=kw.pop("cwd", self.cwd), env=self._env(kw.pop("env", {})),
            capture_output=True, text=True, timeout=timeout, input=kw.pop("input", None),
        )
        if check:
            assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "forge", *map(str, args)], cwd=self.cwd, env=self._env(kw.pop("env", {})),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
        )


@pytest.fixture(scope="session", autouse=True)
def private_config_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A per-session ``XDG_CONFIG_HOME`` (inherited by the CLI subprocesses): the key that seals training runs' local
    base models (forge_hf.base_model) is made there, never in the real ``~/.config``."""
    home = tmp_path_factory.mktemp("config-home")
    os.environ["XDG_CONFIG_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite tracking store for the session (creating one costs seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def site(tmp_path: Path) -> PluginSite:
    root = tmp_path / "site"
    root.mkdir()
    return PluginSite(root)


@pytest.fixture
def forge_cli(tmp_path: Path, site: PluginSite, mlflow_uri: str) -> Forge:
    """The real CLI, as a user runs it, with a temporary plugin site (empty until a test adds plugins)."""
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "MLFLOW_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(site.root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        MLFLOW_TRACKING_URI=mlflow_uri,
        PYTHONUNBUFFERED="1",
    )
    return Forge(cwd=work, site=site, env=env)



@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with a small trained BPE tokenizer and a chat template (tests/tiny_models.py)."""
    from tiny_models import make_tiny_causal_lm

    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT encoder with a small WordPiece tokenizer (tests/tiny_models.py)."""
    from tiny_models import make_tiny_bert_classifier_base

    return make_tiny_bert_classifier_base(tmp_path_factory.mktemp("tiny-bert"))


def _sft_run(work: Path, mlflow_uri: str, *args: str) -> Path:
    """A real ``forge run --recipe sft`` in a subprocess (no tracking); returns the run directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "MLFLOW_"))}
    env["MLFLOW_TRACKING_URI"] = mlflow_uri
    result = subprocess.run([sys.executable, "-m", "forge", "run", "--recipe", "sft", *args, "-o", str(work / "run"),
                             "--no-tracking"], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return work / "run"


@pytest.fixture(scope="session")
def tiny_sft_run(tmp_path_factory: pytest.TempPathFactory, tiny_lm: Path, mlflow_uri: str) -> Path:
    """A LoRA sft run of the tiny Llama on a few chat records (eval split kept as heldout.jsonl), shared by the
    LM exporter tests."""
    import json

    work = tmp_path_factory.mktemp("tiny-sft")
    chat = [{"messages": [{"role": "user", "content": f"what is the capital of {c}?"},
                          {"role": "assistant", "content": f"the capital of {c} is {p}."}]}
            for c, p in [("france", "paris"), ("spain", "madrid"), ("italy", "rome"), ("peru", "lima")] * 3]
    (work / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat))
    return _sft_run(work, mlflow_uri, "--model", str(tiny_lm), "--data", str(work / "chat.jsonl"),
                    "--set", "max_steps=2", "--set", "eval_split=0.25")


@pytest.fixture(scope="session")
def smollm_sft_run(tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str) -> Path:
    """`make demo`'s run, shortened: sft (LoRA) of the packaged SmolLM2-135M-Instruct on the packaged example chats,
    two steps. Shared by the slow end-to-end export tests."""
    return _sft_run(tmp_path_factory.mktemp("smollm-sft"), mlflow_uri, "--set", "max_steps=2")
