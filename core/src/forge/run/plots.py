"""Loss curves and other per-step metrics as a PNG, from ``metrics.jsonl``."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path


def read_series(metrics_file: Path) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    if not metrics_file.exists():
        return {}
    for line in metrics_file.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        step = row.pop("step", None)
        row.pop("time", None)
        if step is None:
            continue
        for name, value in row.items():
            series[name].append((step, value))
    return dict(series)


def plot_metrics(metrics_file: Path, output: Path, title: str = "") -> Path | None:
    """Plot every metric with at least two points (losses together in the first panel); ``None`` if nothing to plot."""
    series = {k: v for k, v in read_series(metrics_file).items() if len(v) >= 2}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = sorted(k for k in series if "loss" in k)
    others = sorted(k for k in series if "loss" not in k)[:5]
    panels = ([losses] if losses else []) + [[k] for k in others]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), squeeze=False)
    for ax, names in zip(axes[:, 0], panels, strict=True):
        for name in names:
            steps, values = zip(*series[name], strict=True)
            ax.plot(steps, values, marker="." if len(steps) < 50 else None, label=name)
        ax.set_ylabel(names[0] if len(names) == 1 else "loss")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    axes[-1, 0].set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output
