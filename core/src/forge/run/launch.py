"""Multi-process and multi-node runs through torch's own launcher (``torch.distributed.run``, i.e. torchrun).

``forge run --nproc-per-node N ...`` validates the config and fixes the run directory here, then starts N
workers with ``python -m torch.distributed.run --standalone --nproc-per-node N -m forge run ...`` (through
``forge.run.torchrun``: the same, quiet when it stops on a signal). With
``--nnodes M`` the same command runs on every node and the nodes meet through torchrun's rendezvous:
``--rdzv-endpoint HOST:PORT`` (c10d, elastic: global ranks are given out as nodes join) or the static form
``--master-addr HOST --master-port PORT --node-rank R`` (node R holds ranks R*N .. R*N+N-1). Global rank 0 owns the
run directory, manifest and tracking; the other ranks train. gloo on CPU, nccl on CUDA (chosen by the
trainer/accelerate from the device). When torchrun reports a failed worker on any node, the run is marked failed.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass

from forge.artifacts import MANIFEST, read_manifest, write_json_atomic
from forge.errors import ConfigError
from forge.plugins import get_plugins
from forge.run.plan import RunOptions, plan_run

LAUNCH_OPTIONS = ("--nproc-per-node", "--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-id", "--master-addr",
                  "--master-port")


@dataclass
class Topology:
    """Where this node's processes sit in the run (``forge run``'s launch options)."""

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None
    rdzv_id: str | None = None
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def launched(self) -> bool:
        """True when more than this one process trains (or the user named a rendezvous)."""
        return (self.nproc_per_node != 1 or self.nnodes != 1 or self.rdzv_endpoint is not None
                or self.master_addr is not None)

    def check(self) -> None:
        if self.nproc_per_node < 1:
            raise ConfigError(f"--nproc-per-node {self.nproc_per_node}: must be at least 1")
        if self.nnodes < 1:
            raise ConfigError(f"--nnodes {self.nnodes}: must be at least 1")
        if not 0 <= self.node_rank < self.nnodes:
            raise ConfigError(f"--node-rank {self.node_rank}: must be in 0..{self.nnodes - 1} for --nnodes "
                              f"{self.nnodes}")
        if self.rdzv_endpoint is not None and self.master_addr is not None:
            raise ConfigError("--rdzv-endpoint and --master-addr: give one (the rendezvous, or the static form)")
        if self.rdzv_endpoint is not None and ":" not in self.rdzv_endpoint:
            raise ConfigError(f"--rdzv-endpoint {self.rdzv_endpoint}: expected HOST:PORT")
        if self.nnodes > 1 and self.rdzv_endpoint is None and self.master_addr is None:
            raise ConfigError(f"--nnodes {self.nnodes}: say where the nodes meet: --rdzv-endpoint HOST:PORT "
                              "(or --master-addr HOST --master-port PORT --node-rank R)")
        if self.master_port is not None and self.master_addr is None:
            raise ConfigError("--master-port: needs --master-addr")
        if self.rdzv_id is not None and self.rdzv_endpoint is None:
            raise ConfigError("--rdzv-id: needs --rdzv-endpoint")

    def torchrun_args(self) -> list[str]:
        args = [f"--nproc-per-node={self.nproc_per_node}"]
        if self.rdzv_endpoint is not None:
            return [*args, f"--nnodes={self.nnodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={self.rdzv_endpoint}",
                    f"--rdzv-id={self.rdzv_id or 'forge'}"]
        if self.master_addr is not None:
            return [*args, f"--nnodes={self.nnodes}", f"--node-rank={self.node_rank}",
                    f"--master-addr={self.master_addr}", f"--master-port={self.master_port or 29500}"]
        return ["--standalone", *args]


def launch(options: RunOptions, argv: list[str], topology: Topology | int) -> int:
    """Validate, pin the run directory, and run this node's workers; return the launcher's exit code."""
    if isinstance(topology, int):
        topology = Topology(nproc_per_node=topology)
    topology.check()
    multinode = topology.nnodes > 1
    if multinode and options.output_dir is None and options.resume is None:
        raise ConfigError(f"--nnodes {topology.nnodes}: name the run directory with --output-dir (the same path "
                          "on every node, on a filesystem they share)")
    # the run directory is checked where global rank 0 will be: node 0 of the static form; with a rendezvous any
    # node may get rank 0, so each node checks it can start (or continue) the run
    plan = plan_run(options, get_plugins(), follower=topology.node_rank > 0)
    if options.dry_run:
        from forge.run.engine import dry_run

        dry_run(plan)
        return 0
    args = argv
    for name in LAUNCH_OPTIONS:
        args = _strip_option(args, name)
    if options.resume is None and options.output_dir is None:
        args += ["--output-dir", str(plan.run_dir)]
    if options.resume is not None:
        args = [*_strip_option(args, "--resume"), "--resume", str(plan.run_dir)]
    torchrun = topology.torchrun_args()
    command = [sys.executable, "-m", "forge.run.torchrun", *torchrun, "-m", "forge", "run", *args]
    where = f" (node {topology.node_rank} of {topology.nnodes})" if multinode and topology.master_addr else \
        (f" (one of {topology.nnodes} nodes)" if multinode else "")
    print(f"[forge] launching {topology.nproc_per_node} processes{where}: torchrun {' '.join(torchrun)} -m forge "
          f"run {' '.join(args)}", file=sys.stderr, flush=True)
    code, stopped = _supervise(command)
    if stopped:  # the workers checkpointed and rank 0 recorded "interrupted": not a failure, whatever torchrun says
        return 130
    if code not in (0, 130):
        _mark_failed(plan.run_dir, code)
    return code


def _supervise(command: list[str]) -> tuple[int, bool]:
    """Run torchrun in its own process group and hand it the Ctrl-C / SIGTERM / SIGHUP this launcher gets.

    torchrun passes a signal it receives on to its workers (then waits up to 30 s before killing them); the
    workers' first signal means "checkpoint at the next step and stop". Were torchrun in the terminal's process
    group, a Ctrl-C would reach each worker twice (from the terminal and from torchrun) and the second would stop
    them at once, before their checkpoint. A second signal goes to torchrun's whole group (the workers too): stop
    now. Returns torchrun's exit code and whether a signal was forwarded."""
    import os
    import signal

    proc = subprocess.Popen(command, start_new_session=True)  # its own process group (process_group=0 is 3.11+)
    stopped = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopped
        again, stopped = stopped, True
        if proc.poll() is not None:
            return
        if again:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                code = proc.wait()
                break
            except KeyboardInterrupt:  # not expected (the handler forwards), but never leave torchrun behind
                forward(signal.SIGINT, None)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    return code, stopped


def _mark_failed(run_dir, code: int) -> None:
    """A worker failed (on this node or another): torchrun stopped the rest, which may have recorded
    "interrupted" (or nothing, if killed). The run failed; say so in its manifest when this node can see it."""
    path = run_dir / MANIFEST
    if not path.is_file():
        return
    try:
        data = read_manifest(run_dir)
    except Exception:  # unreadable manifest: leave it as it is, torchrun's own report says what happened
        return
    if data.get("status") in ("completed", "failed"):
        return
    data["status"] = "failed"
    data["error"] = data.get("error") or f"a worker process failed (torchrun exit {code}); see the log above"
    write_json_atomic(path, data)
    print(f"[forge] run {run_dir} failed: a worker process exited with an error (torchrun exit {code})",
          file=sys.stderr, flush=True)


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
