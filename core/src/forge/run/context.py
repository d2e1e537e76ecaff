"""What a recipe gets: :class:`RunContext` — where to write, how to report, how to load a model, when to stop."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from forge.artifacts import write_json_atomic
from forge.errors import ForgeError, RunInterrupted, TrainingDiverged
from forge.models import LoadedModel, ModelRequest

if TYPE_CHECKING:
    from forge.providers import ProviderChoice
    from forge.tracking import Tracker

T = TypeVar("T")
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# A checkpoint directory counts only once one of these exists in it (written last by the trainer).
CHECKPOINT_MARKERS = ("forge-checkpoint.json", "trainer_state.json")


def latest_checkpoint(directory: Path) -> tuple[Path, int] | None:
    """The complete ``checkpoint-N`` directory with the highest N, and N."""
    best: tuple[Path, int] | None = None
    if not directory.is_dir():
        return None
    for child in directory.iterdir():
        match = CHECKPOINT.match(child.name)
        if match and child.is_dir() and any((child / m).exists() for m in CHECKPOINT_MARKERS):
            step = int(match.group(1))
            if best is None or step > best[1]:
                best = (child, step)
    return best


_SHORT = {"learning_rate": "lr", "train_loss": "train loss", "eval_loss": "eval loss",
          "mean_token_accuracy": "token acc", "eval_mean_token_accuracy": "eval token acc",
          "tokens_per_s": "tok/s", "samples_per_s": "samples/s", "padding_share": "padding", "mfu": "MFU",
          "gpu_peak_allocated_gib": "GPU GiB"}
_PERCENT = ("padding_share", "mfu")
# Logged and plotted, but left out of the one-line summary a person reads at each logging step.
_NOT_SHOWN = ("entropy", "num_tokens", "_runtime", "_per_second", "epoch", "total_flos", "gpu_peak_reserved_gib")


def _shown(key: str, value: float) -> str:
    if key in _PERCENT:
        return f"{value:.1%}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


class RunContext:
    """The run a recipe executes in.

    - ``run_dir``: the run directory; ``artifact_dir``: where the recipe writes its artifact;
      ``checkpoint_dir``: where it writes ``checkpoint-N`` directories; ``resume_from``: the checkpoint to
      continue from (``None`` for a fresh run).
    - ``log(message)``, ``log_metrics({...}, step)`` (MLflow, ``metrics.jsonl``, the plot), ``record(**facts)``
      (the run manifest), ``attach(png)``, ``progress(iterable)``.
    - ``load_model(ModelRequest)`` loads through the run's provider choice (with its fallback).
    - ``should_stop`` turns true on Ctrl-C / SIGTERM: stop at the next step boundary, checkpoint, return.
      Inside ``with ctx.stop_at_once():`` (phases with no step to stop at: reading and checking data, loading a
      model, a final evaluation) the signal stops the run where it stands instead; ``ctx.stop_at_steps()`` turns
      the step-boundary behaviour back on inside such a block (around the training loop).
    - ``is_main`` is false on ranks > 0 of a multi-process run: they train but report nothing.
    """

    def __init__(
        self,
        run_dir: Path,
        recipe: str,
        provider: ProviderChoice | None = None,
        tracker: Tracker | None = None,
        resume_from: Path | None = None,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        is_main: bool = True,
    ) -> None:
        self.run_dir = run_dir
        self.artifact_dir = run_dir / "artifact"
        self.checkpoint_dir = run_dir / "checkpoints"
        self.recipe = recipe
        self.provider = provider
        self.tracker = tracker
        self.resume_from = resume_from
        self.should_stop = False
        self.stopping_at_once = False  # read by the run's signal handler
        self.metrics: dict[str, float] = {}
        self.attachments: list[str] = []
        self._on_record = on_record
        self.is_main = is_main
        self._log = (run_dir / "run.log").open("a", encoding="utf-8") if is_main else None
        self._metrics_file = run_dir / "metrics.jsonl"
        self._nonfinite_said = False

    # -- reporting ----------------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        """A line for the person watching (stderr) and for ``run.log``."""
        if self._log is None:
            return
        from tqdm import tqdm

        stamp = time.strftime("%H:%M:%S")
        tqdm.write(f"[forge {stamp}] {message}", file=sys.stderr)  # above an active progress bar, not through it
        sys.stderr.flush()
        self._log.write(f"{stamp} {message}\n")
        self._log.flush()

    def log_metrics(self, metrics: dict[str, float], step: int | None = None, show: bool = False,
                    total: int | None = None) -> None:
        """Record metrics for ``step``: MLflow, ``metrics.jsonl`` (plotted at the end), the manifest's last values.
        ``show`` also prints them as one compact line (``step 20/100 · loss 1.234 · lr 0.0002``)."""
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if not clean or not self.is_main:
            return
        if show:
            where = f"step {step}/{total}" if step is not None and total else f"step {step}" if step is not None else ""
            shown = [f"{_SHORT.get(k, k)} {_shown(k, v)}" for k, v in clean.items() if not k.endswith(_NOT_SHOWN)]
            if shown:
                self.log(" · ".join([where, *shown]).strip(" ·"))
        self.metrics.update(clean)
        with self._metrics_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, "time": round(time.time(), 3), **clean}) + "\n")
        if self.tracker is not None:
            self.tracker.log_metrics(clean, step)

    def attach(self, path: Path) -> None:
        """A file people would rather see than read (a plot): listed in the manifest and logged to MLflow."""
        if not self.is_main:
            return
        self.attachments.append(str(path.relative_to(self.run_dir) if path.is_relative_to(self.run_dir) else path))
        if self.tracker is not None:
            self.tracker.log_artifact(path)
        self.record(attachments=self.attachments)

    def record(self, **facts: Any) -> None:
        """Add facts to the run manifest (dataset statistics, provider fallback, quantization...)."""
        if self._on_record is not None and self.is_main:
            self._on_record(facts)

    def progress(self, iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "",
                 initial: int = 0, unit: str = "it") -> Any:
        """forge's progress bar on stderr (tqdm); silent on ranks > 0."""
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, initial=initial, unit=unit, dynamic_ncols=True,
                    file=sys.stderr, disable=not self.is_main, leave=True)

    def check_loss(self, loss: float, step: int, policy: str = "stop", unit: str = "step",
                   produced_by: int | None = None) -> bool:
        """Whether the training ``loss`` of ``step`` is finite. When it is not, ``policy`` (a recipe's
        ``nan_policy``) decides: ``stop`` raises :class:`TrainingDiverged` (the run ends ``failed`` at this step;
        write no checkpoint after it), ``continue`` says so once and goes on. ``produced_by``: the step of the
        checkpoint whose weights gave this loss; on ``stop`` it is set aside (``diverged-checkpoint-N``) so that the
        last checkpoint left, the one a resume starts from, is the last good one."""
        import math

        if math.isfinite(loss):
            return True
        if policy == "continue":
            if not self._nonfinite_said:
                self._nonfinite_said = True
                self.log(f"warning: training loss is {loss} at {unit} {step}; going on (nan_policy: continue)")
            return False
        suspect = self.checkpoint_dir / f"checkpoint-{produced_by}"
        if produced_by is not None and suspect.is_dir() and self.is_main:
            shutil.rmtree(self.checkpoint_dir / f"diverged-{suspect.name}", ignore_errors=True)
            os.replace(suspect, self.checkpoint_dir / f"diverged-{suspect.name}")
        last = latest_checkpoint(self.checkpoint_dir)
        kept = f"last good checkpoint {last[0]}" if last else "no good checkpoint was written before it"
        raise TrainingDiverged(f"training loss became {loss} at {unit} {step}: run stopped (nan_policy: stop), "
                               f"{kept}; try a lower learning_rate (or nan_policy: continue)")

    # -- checkpoints --------------------------------------------------------------------------------------
    def save_checkpoint(self, step: int, write: Callable[[Path], None], keep: int = 2) -> Path:
        """Write ``checkpoint-{step}`` atomically (``write(tmp_dir)``, a marker, a rename); keep the newest ``keep``.
        On ranks > 0 of a multi-process run nothing is written (rank 0 writes the run's checkpoints, which every rank
        resumes from); the path rank 0 writes is returned."""
        final = self.checkpoint_dir / f"checkpoint-{step}"
        if not self.is_main:
            return final
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_dir / f".checkpoint-{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        write(tmp)
        write_json_atomic(tmp / "forge-checkpoint.json", {"step": step, "time": time.time()})
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        checkpoints = sorted(
            (int(m.group(1)), p)
            for p in self.checkpoint_dir.iterdir()
            if (m := CHECKPOINT.match(p.name)) and p.is_dir()
        )
        for _, old in checkpoints[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        return final

    # -- stopping -----------------------------------------------------------------------------------------
    @contextmanager
    def stop_at_once(self) -> Iterator[None]:
        """Ctrl-C/SIGTERM inside this block end the run at once (interrupted, exit 130): for phases that never
        reach a step boundary where ``should_stop`` would be read. Already asked to stop: raises at entry."""
        if self.should_stop:
            raise RunInterrupted()
        with self._stopping(True):
            yield

    def stop_at_steps(self) -> AbstractContextManager[None]:
        """Inside a :meth:`stop_at_once` block: back to stopping at the next step (the training loop checkpoints)."""
        return self._stopping(False)

    @contextmanager
    def _stopping(self, at_once: bool) -> Iterator[None]:
        previous, self.stopping_at_once = self.stopping_at_once, at_once
        try:
            yield
        finally:
            self.stopping_at_once = previous

    # -- models -------------------------------------------------------------------------------------------
    def load_model(self, request: ModelRequest) -> LoadedModel:
        """Load ``request`` through the run's provider (falling back when the user did not name one); the
        manifest's ``provider`` entry says which provider loaded it and what was passed over."""
        if self.provider is None:
            raise ForgeError(f"recipe {self.recipe} does not load models through a provider (uses_provider=False)")
        loaded = self.provider.load(request, self.log)
        self.record(provider=self.provider.record(loaded.info))
        return loaded

    def close(self) -> None:
        if self._log is not None:
            self._log.close()

