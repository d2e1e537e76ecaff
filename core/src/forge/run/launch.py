"""Multi-process runs through torch's own launcher (``torch.distributed.run``, i.e. torchrun).

``forge run --nproc-per-node N ...`` validates the config and fixes the run directory here, then starts N
workers with ``python -m torch.distributed.run --standalone --nproc-per-node N -m forge run ...``. Rank 0 owns
the run directory, manifest and tracking; the other ranks train. gloo on CPU, nccl on CUDA (chosen by the
trainer/accelerate from the device).
"""

from __future__ import annotations

import subprocess
import sys

from forge.errors import ConfigError
from forge.plugins import get_plugins
from forge.run.plan import RunOptions, plan_run


def launch(options: RunOptions, argv: list[str], nproc: int) -> int:
    """Validate, pin the run directory, and run ``nproc`` workers; return the launcher's exit code."""
    if nproc < 1:
        raise ConfigError(f"--nproc-per-node {nproc}: must be at least 1")
    plan = plan_run(options, get_plugins())
    if options.dry_run:
        from forge.run.engine import dry_run

        dry_run(plan)
        return 0
    args = _strip_option(argv, "--nproc-per-node")
    if options.resume is None and options.output_dir is None:
        args += ["--output-dir", str(plan.run_dir)]
    if options.resume is not None:
        args = [*_strip_option(args, "--resume"), "--resume", str(plan.run_dir)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "forge", "run", *args]
    print(f"[forge] launching {nproc} processes: torchrun --standalone --nproc-per-node={nproc} -m forge run "
          f"{' '.join(args)}", file=sys.stderr, flush=True)
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:  # torchrun forwards the signal to the workers; they checkpoint and exit
        return 130


def _strip_option(argv: list[str], name: str) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == name:
            skip = True
            continue
        if arg.startswith(name + "="):
            continue
        out.append(arg)
    return out
