"""A plugin used by the core's tests, installed into a temporary site directory by tests/conftest.py.

Recipe ``descent`` really trains something small: gradient descent on a 1-D noisy quadratic, with a seeded RNG,
checkpoints every N steps (weight and RNG state) and an optional pause per step so tests can kill it half-way.
Providers ``fast`` (never available here) and ``plain`` exist to test provider selection and fallback; they
load no model (test doubles of a model provider, named as such).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import forge
from forge.artifacts import ArtifactResult
from forge.config import DataFile, RecipeConfig
from forge.models import LoadedModel, ModelRequest, ProviderUnavailable
from forge.run.ranks import rank


class DescentConfig(RecipeConfig):
    steps: int = 10
    learning_rate: float = 0.1
    target: float = 3.0
    noise: float = 0.5
    checkpoint_every: int = 2
    step_seconds: float = 0.0
    data: DataFile | None = None
    fail_on_rank: int | None = None  # that rank (of a multi-process run) raises at its first step
    setup_seconds: float = 0.0  # a set-up phase with no step to stop at (like reading data, loading a model)


def descent(ctx, config: DescentConfig) -> ArtifactResult:
    if config.setup_seconds:
        with ctx.stop_at_once():
            ctx.log("setting up")
            time.sleep(config.setup_seconds)
    weight, rng, start = 0.0, random.Random(config.seed), 0
    if ctx.resume_from is not None:
        state = json.loads((ctx.resume_from / "state.json").read_text())
        weight, start = state["weight"], state["step"]
        rng.setstate((state["rng"][0], tuple(state["rng"][1]), state["rng"][2]))
        ctx.log(f"resumed at step {start}")
    for step in range(start + 1, config.steps + 1):
        if config.fail_on_rank is not None and rank() == config.fail_on_rank:
            raise RuntimeError(f"rank {rank()} failed on purpose")
        sample = config.target + rng.gauss(0.0, config.noise)
        loss = (weight - sample) ** 2
        weight -= config.learning_rate * 2 * (weight - sample)
        ctx.log_metrics({"loss": loss, "weight": weight}, step=step)
        time.sleep(config.step_seconds)
        if step % config.checkpoint_every == 0 or ctx.should_stop:
            state = {"weight": weight, "step": step, "rng": rng.getstate()}
            ctx.save_checkpoint(step, lambda d, s=state: (d / "state.json").write_text(json.dumps(s)))
        if ctx.should_stop:
            return ArtifactResult(kind="scalar")
    if not ctx.is_main:  # ranks > 0 of a multi-process run write nothing
        return ArtifactResult(kind="scalar")
    ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
    (ctx.artifact_dir / "weight.json").write_text(json.dumps({"weight": weight}))
    return ArtifactResult(kind="scalar", metrics={"final_weight": weight})


class LoadConfig(RecipeConfig):
    model: str


def load(ctx, config: LoadConfig) -> ArtifactResult:
    loaded = ctx.load_model(ModelRequest(model=config.model))
    ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
    (ctx.artifact_dir / "loaded.txt").write_text(str(loaded.info))
    return ArtifactResult(kind="scalar")


def fast_available() -> str | None:
    return "no accelerator for 'fast' on this machine"


def plain_load(request: ModelRequest) -> LoadedModel:
    if request.model == "unloadable":
        raise ProviderUnavailable("plain cannot load 'unloadable'")
    return LoadedModel(model=None, tokenizer=None, info={"source": request.model})


def picky_load(request: ModelRequest) -> LoadedModel:
    raise ProviderUnavailable("picky loads nothing on CPU")


def scalar_to_text(artifact, output_dir: Path, options: dict) -> ArtifactResult:
    weight = json.loads((artifact.path / "weight.json").read_text())["weight"]
    (output_dir / "weight.txt").write_text("(being written)\n")
    time.sleep(float(options.get("seconds", 0)))  # a slow exporter, for tests that stop one half-way
    (output_dir / "weight.txt").write_text(f"{weight:.6f}\n")
    return ArtifactResult(kind="scalar-text", extra={"digits": 6})


@forge.hookimpl
def register_recipes(register):
    register(forge.Recipe(name="descent", config=DescentConfig, train=descent, summary="1-D gradient descent"))
    register(forge.Recipe(name="load", config=LoadConfig, train=load, uses_provider=True))


@forge.hookimpl
def register_providers(register):
    register(forge.Provider(name="fast", load=plain_load, available=fast_available, priority=100))
    register(forge.Provider(name="picky", load=picky_load, priority=50))
    register(forge.Provider(name="plain", load=plain_load, priority=1))


@forge.hookimpl
def register_exporters(register):
    register(forge.Exporter(name="text", accepts=("scalar",), export=scalar_to_text))
