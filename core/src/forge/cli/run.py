"""``forge run``: train with a recipe."""

from __future__ import annotations

from pathlib import Path

import typer


def run(
    recipe: str = typer.Option(None, "--recipe", "-r", help="Recipe name (sft, qlora, plugin:name...)."),
    config: Path = typer.Option(None, "--config", "-c", help="YAML config file."),
    model: str = typer.Option(None, "--model", "-m", help="Base model: hub id, local dir, GGUF file or alias."),
    data: str = typer.Option(None, "--data", "-d", help="Training data file (or hub dataset name)."),
    output_dir: Path = typer.Option(None, "--output-dir", "-o", help="Run directory (default runs/RECIPE-TIME)."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Override a config key: key=value (repeatable)."),
    provider: str = typer.Option(None, "--provider", "-p", help="Model provider (hf, unsloth); default: best."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the resolved config, read and check the data, and exit."),
    resume: Path = typer.Option(
        None, "--resume", help="Continue an unfinished run (RUN_DIR; bare --resume: the latest one)."
    ),
    tracking: bool = typer.Option(True, "--tracking/--no-tracking", help="Track to MLflow (MLFLOW_TRACKING_URI)."),
    nproc_per_node: int = typer.Option(
        1, "--nproc-per-node", min=1, max=1024,
        help="Train with N processes through torchrun (DDP: gloo on CPU, nccl on GPU).",
    ),
    nnodes: int = typer.Option(1, "--nnodes", min=1, max=65536, help="Number of nodes (machines) in the run."),
    node_rank: int = typer.Option(0, "--node-rank", min=0, help="This node's rank (static form; 0..NNODES-1)."),
    rdzv_endpoint: str = typer.Option(
        None, "--rdzv-endpoint", help="HOST:PORT where the nodes meet (torchrun c10d rendezvous)."),
    rdzv_id: str = typer.Option(None, "--rdzv-id", help="Rendezvous id, the same on every node (default forge)."),
    master_addr: str = typer.Option(None, "--master-addr", help="Static form: node 0's address."),
    master_port: int = typer.Option(None, "--master-port", min=1, max=65535, help="Static form: node 0's port."),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also show libraries' progress bars, notices and warnings."
    ),
) -> None:
    """Train with a recipe: validate the config, create a run directory, track to MLflow, write an artifact.

    Example: forge run --recipe sft --model smollm2-135m-instruct --data train.jsonl --set max_steps=50
    """
    import os

    from forge.cli import invocation
    from forge.console import set_verbose
    from forge.run.engine import execute
    from forge.run.plan import RunOptions

    set_verbose(verbose)
    options = RunOptions(
        recipe=recipe,
        config_file=config,
        model=model,
        data=data,
        output_dir=output_dir,
        overrides=list(overrides),
        provider=provider,
        dry_run=dry_run,
        resume=resume,
        tracking=tracking,
    )
    from forge.run.launch import Topology

    topology = Topology(nproc_per_node, nnodes, node_rank, rdzv_endpoint, rdzv_id, master_addr, master_port)
    if "LOCAL_RANK" not in os.environ:
        topology.check()
    if topology.launched and "LOCAL_RANK" not in os.environ:
        from forge.run.launch import launch

        code = launch(options, invocation()[1:], topology)
        if code:
            raise typer.Exit(code)
        return
    outcome = execute(options)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)
