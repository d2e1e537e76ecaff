"""forge `sft` against the same training written directly against TRL: same model, data, steps, seed.

    python bench/sft_vs_trl.py [--model smollm2-135m-instruct] [--steps 30] [--repeats 2]

Both run as fresh processes, alternating, so they share the machine's state. Reported: median wall-clock (process
start to finish: imports, model load, training, saving), the Trainer's own train_runtime, their ratios
(goal ≤ 1.02) and the final training loss of each (they should be equal). forge runs with `packing=false`, the
baseline's setting (forge packs by default on a GPU), so both train exactly the same batches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_forge(model_dir: str, data: str, steps: int, work: Path, tracking: bool) -> dict[str, float]:
    out = work / f"forge-{time.time_ns()}"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "forge", "run", "--recipe", "sft", "--model", model_dir, "--data", data,
                    "--set", f"max_steps={steps}", "--set", "eval_split=0", "--set", "packing=false", "-o", str(out),
                    "--tracking" if tracking else "--no-tracking"],
                   check=True, capture_output=True, cwd=work)
    wall = time.perf_counter() - start
    metrics = json.loads((out / "forge.json").read_text())["metrics"]
    return {"wall": wall, "train_runtime": metrics["train_runtime"], "train_loss": metrics["train_loss"]}


def run_trl(model_dir: str, data: str, steps: int, work: Path) -> dict[str, float]:
    out = work / f"trl-{time.time_ns()}"
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(HERE / "trl_direct.py"), model_dir, data, str(steps), str(out)],
                            check=True, capture_output=True, text=True, cwd=work)
    row = json.loads(result.stdout.strip().splitlines()[-1])
    row["wall"] = time.perf_counter() - start
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", default=None, help="chat JSONL (default: forge-hf's packaged example)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip-first", action="store_true", help="leave the first repeat out of the medians")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from forge_hf.provider import resolve_model
    from forge_hf.recipes.sft import EXAMPLE_CHAT

    model_dir, _ = resolve_model(args.model)  # both sides load the same local safetensors directory
    data = args.data or EXAMPLE_CHAT
    rows: dict[str, list[dict[str, float]]] = {"trl": [], "forge": [], "forge (no tracking)": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for repeat in range(args.repeats):
            rows["trl"].append(run_trl(model_dir, data, args.steps, work))
            rows["forge"].append(run_forge(model_dir, data, args.steps, work, tracking=True))
            rows["forge (no tracking)"].append(run_forge(model_dir, data, args.steps, work, tracking=False))
            for name, runs in rows.items():  # every run, in order: shows a first-run effect if there is one
                print(f"repeat {repeat + 1} {name}: wall {runs[-1]['wall']:.2f} s, "
                      f"train_runtime {runs[-1]['train_runtime']:.2f} s", flush=True)
    if args.skip_first and args.repeats > 1:
        rows = {name: runs[1:] for name, runs in rows.items()}
    base = {k: statistics.median(r[k] for r in rows["trl"]) for k in ("wall", "train_runtime")}
    print(f"model {args.model}, {args.steps} steps, LoRA r=16, batch 4, {args.repeats} runs each (median)")
    print(f"{'':<22}{'wall s':>9}{'ratio':>8}{'train_runtime s':>17}{'ratio':>8}{'final loss':>12}")
    for name, runs in rows.items():
        wall = statistics.median(r["wall"] for r in runs)
        runtime = statistics.median(r["train_runtime"] for r in runs)
        loss = runs[-1]["train_loss"]
        print(f"{name:<22}{wall:>9.2f}{wall / base['wall']:>8.3f}{runtime:>17.2f}"
              f"{runtime / base['train_runtime']:>8.3f}{loss:>12.5f}")
    same = abs(rows["forge"][-1]["train_loss"] - rows["trl"][-1]["train_loss"]) < 1e-4
    print(f"final loss equal: {same}")


if __name__ == "__main__":
    main()
