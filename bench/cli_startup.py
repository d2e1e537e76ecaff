"""CLI start-up time: `forge --help` and `forge list-plugins` with every installed plugin, against `import torch`.

    python bench/cli_startup.py [--runs 15]

Each command runs in a fresh process; the median wall-clock is reported with its ratio to `python -c "import torch"`
measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "forge --help": [sys.executable, "-m", "forge", "--help"],
    "forge list-plugins": [sys.executable, "-m", "forge", "list-plugins"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def median_seconds(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    for command in COMMANDS.values():  # warm the file cache
        subprocess.run(command, capture_output=True)
    medians = {name: median_seconds(command, args.runs) for name, command in COMMANDS.items()}
    torch_time = medians["python -c 'import torch'"]
    print(f"{'command':<28}{'median s':>10}{'vs import torch':>18}")
    for name, seconds in medians.items():
        print(f"{name:<28}{seconds:>10.3f}{seconds / torch_time:>17.2f}x")
    goal = max(medians["forge --help"], medians["forge list-plugins"])
    print(f"goal: < 0.5 s median → {'met' if goal < 0.5 else 'NOT met'} ({goal:.3f} s)")


if __name__ == "__main__":
    main()
