"""Evaluator ``pairwise-accuracy``: a ``reward-model`` on preference pairs.

    forge eval runs/rm --suite pairwise-accuracy                       # the held-out pairs kept with the model
    forge eval runs/rm --suite pairwise-accuracy --data prefs.jsonl --gate "accuracy>=0.6"

Data: the preference formats ``dpo`` reads (docs/data.md); without ``--data``, the held-out pairs the ``reward``
recipe kept (``heldout.jsonl``). Metrics: ``accuracy`` (share of pairs where the chosen completion scores above the
rejected one; ties count as wrong; chance is 0.5; 95% bootstrap interval), ``margin`` (mean chosen − rejected score),
``mean_chosen``, ``mean_rejected``. Options: ``batch_size``, ``limit``. Plot: ``margins.png`` (histogram of margins).
Records: ``{input, expected, output, score, correct, score_rejected}``: the prompt, the chosen and rejected
completions, the chosen one's score and the rejected one's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from forge import Artifact, ConfigError, EvalRequest, EvalResult, ForgeError

OPTIONS = {"batch_size", "limit"}


def heldout(artifact: Artifact) -> Path:
    path = artifact.path / "heldout.jsonl"
    if path.is_file() and path.stat().st_size:
        return path
    raise ForgeError(f"{artifact.path}: no held-out pairs kept with this reward model (trained with eval_split=0?); "
                     "give preference data: --data FILE")


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in value if isinstance(m, dict))
    return str(value)


def plot_margins(path: Path, margins: list[float], accuracy: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.hist(margins, bins=min(30, max(5, len(margins) // 4)), color="tab:blue", alpha=0.8)
    ax.axvline(0, color="gray", linestyle=":")
    ax.set_xlabel("score(chosen) − score(rejected)")
    ax.set_ylabel("pairs")
    ax.set_title(f"pairwise accuracy {accuracy:.3f} (chance 0.5)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def evaluate(artifact: Artifact, request: EvalRequest) -> EvalResult:
    from forge.datafiles import load

    from forge_hf.predict import int_option
    from forge_hf.reward_model import load_scorer

    options = dict(request.options)
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise ConfigError(f"--set {unknown[0]}: the pairwise-accuracy suite takes {', '.join(sorted(OPTIONS))}")
    batch_size = int_option(options, "batch_size", 16)
    limit = int_option(options, "limit", 0, minimum=0) or None
    data = Path(request.data) if request.data is not None else heldout(artifact)
    records = load(str(data), "preference").records[:limit]  # file:line errors for bad pairs
    request.log(f"pairwise-accuracy: {len(records)} pairs from {data}")
    scorer = load_scorer(artifact.path, artifact.manifest, batch_size=batch_size)
    chosen: list[float] = []
    rejected: list[float] = []
    bar = request.progress(total=len(records), desc="scoring pairs")
    for start in range(0, len(records), batch_size):
        if request.should_stop():
            raise KeyboardInterrupt
        part = records[start:start + batch_size]
        chosen += scorer.score([{"prompt": r["prompt"], "completion": r["chosen"]} for r in part])
        rejected += scorer.score([{"prompt": r["prompt"], "completion": r["rejected"]} for r in part])
        if bar is not None:
            bar.update(len(part))
    if bar is not None:
        bar.close()
    correct = [float(c > r) for c, r in zip(chosen, rejected, strict=True)]
    margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
    n = max(len(records), 1)
    metrics = {"accuracy": sum(correct) / n, "margin": sum(margins) / n, "mean_chosen": sum(chosen) / n,
               "mean_rejected": sum(rejected) / n}
    request.output_dir.mkdir(parents=True, exist_ok=True)
    plots = [plot_margins(request.output_dir / "margins.png", margins, metrics["accuracy"])] if records else []
    records_out = [{"input": _text(r["prompt"]), "expected": _text(r["chosen"]), "output": _text(r["rejected"]),
                    "score": c, "score_rejected": s, "correct": bool(c > s)}
                   for r, c, s in zip(records, chosen, rejected, strict=True)]
    request.log(f"pairwise-accuracy: {metrics['accuracy']:.3f} on {len(records)} pairs (chance 0.5), mean margin "
                f"{metrics['margin']:.3f}")
    return EvalResult(metrics=metrics, records=records_out, per_example={"accuracy": correct, "margin": margins},
                      plots=plots, extra={"examples": len(records), "data": str(data)})
