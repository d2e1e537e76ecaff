"""What the Hugging Face recipes share: config fields named as in transformers/TRL, the bridge from the
Trainer to the run context (metrics, Ctrl-C), LoRA settings and artifact writing."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from forge.artifacts import ArtifactResult
from forge.config import DataFile, DataSource, DataSources, NanPolicy, RecipeConfig
from forge.console import verbose
from forge.datafiles import PiiPolicy, PreferenceFormat
from forge.run.context import RunContext
from pydantic import Field, field_validator, model_validator

from forge_hf.recipes.choices import OPTIMIZER_PACKAGES, Attention, FsdpOption, Optimizer, Scheduler

MAX_TOKENS = 1 << 20  # a bound on token lengths: far past any model's context, inside what tokenizers take


class TrainingFields(RecipeConfig):
    """Fields every forge-hf recipe takes (same names and meaning as transformers' ``TrainingArguments``)."""

    model: str = Field(min_length=1, description="hub id, local model directory, .gguf file or alias "
                       "(smollm2-135m-instruct)")
    data: DataSource = Field(description="JSONL/JSON/CSV/Parquet file or Hub dataset name")
    max_steps: int = Field(-1, ge=-1, description="stop after this many optimizer steps (-1: use num_train_epochs)")
    num_train_epochs: float = Field(1.0, gt=0, description="passes over the training data (when max_steps is -1)")
    per_device_train_batch_size: int = Field(4, ge=1)
    per_device_eval_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler_type: Scheduler = Field("linear", description="transformers' SchedulerType (reduce_lr_on_plateau "
                                         "needs eval_steps)")
    warmup_steps: float = Field(0, ge=0, description="steps, or a fraction of training when < 1")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0, description="clip gradients to this norm (0: no clipping)")
    logging_steps: int = Field(5, ge=1)
    save_steps: int = Field(50, ge=1, description="write a checkpoint every N steps (resume point)")
    save_total_limit: int = Field(2, ge=1)
    eval_split: float = Field(0.1, ge=0, lt=1, description="share of records held out for eval loss (0: none)")
    eval_steps: int | None = Field(None, ge=1, description="evaluate every N steps (default: only at the end)")
    gradient_checkpointing: bool = False
    fsdp: list[FsdpOption] = Field([], description="transformers' fsdp options, e.g. 'full_shard auto_wrap' or a "
                                   "list (multi-GPU)")
    fsdp_config: dict[str, Any] | DataFile | None = Field(None, description="FSDP config dict or JSON file")
    deepspeed: DataFile | dict[str, Any] | None = Field(None, description="DeepSpeed config JSON file (or dict); "
                                                        "needs the deepspeed package")
    ddp_backend: Literal["gloo", "nccl"] | None = Field(None, description="default: nccl on CUDA, gloo on CPU")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    trust_remote_code: bool = False
    optim: Optimizer = Field("adamw_torch", description="transformers' OptimizerNames (those needing another "
                             "package are checked for it)")
    attn_implementation: Attention = Field(
        "auto", description="attention kernel; auto: flash_attention_2 on CUDA when flash-attn is installed, else "
        "transformers' default (SDPA)")
    use_liger_kernel: bool = Field(False, description="Liger's fused Triton kernels (RMSNorm, SwiGLU, RoPE, fused "
                                   "linear cross-entropy) on CUDA; needs the liger-kernel package")
    torch_compile: bool = Field(False, description="compile the model with torch.compile (the first steps are slower)")
    auto_find_batch_size: bool = Field(False, description="on a CUDA out-of-memory error, halve the batch size and "
                                       "retry (accelerate's find_executable_batch_size)")
    nan_policy: NanPolicy = Field("stop", description="training loss NaN/inf: stop (the run fails at that step, its "
                                  "last good checkpoint kept) or continue")

    @field_validator("use_liger_kernel")
    @classmethod
    def _liger_installed(cls, value: bool) -> bool:
        if value and importlib.util.find_spec("liger_kernel") is None:
            raise ValueError("needs the liger-kernel package (pip install liger-kernel) and a CUDA GPU")
        return value

    @field_validator("attn_implementation")
    @classmethod
    def _attention_installed(cls, value: str) -> str:
        package = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}.get(value)
        if package and importlib.util.find_spec(package) is None:
            raise ValueError(f"{value} needs the {package.split('_interface')[0].replace('_', '-')} package and a "
                             "CUDA GPU; use sdpa (or auto)")
        return value

    @field_validator("optim")
    @classmethod
    def _optimizer_installed(cls, value: str) -> str:
        needed = OPTIMIZER_PACKAGES.get(value)
        if needed and importlib.util.find_spec(needed[0]) is None:
            raise ValueError(f"{value} needs the {needed[1]} package (pip install {needed[1]}); adamw_torch needs "
                             "nothing more")
        return value

    @field_validator("deepspeed")
    @classmethod
    def _deepspeed_installed(cls, value: Any) -> Any:
        if value is not None and importlib.util.find_spec("deepspeed") is None:
            raise ValueError("needs the deepspeed package (pip install deepspeed)")
        return value

    @field_validator("fsdp", mode="before")
    @classmethod
    def _fsdp_words(cls, value: Any) -> Any:
        """transformers' spelling: one string of space-separated options ("full_shard auto_wrap"); "" is none."""
        if isinstance(value, str):
            return value.split()
        return value

    @field_validator("fsdp")
    @classmethod
    def _fsdp_combination(cls, value: list[str]) -> list[str]:
        sharding = [o for o in value if o in ("full_shard", "shard_grad_op", "no_shard", "hybrid_shard",
                                              "hybrid_shard_zero2")]
        if len(set(sharding)) > 1:
            raise ValueError(f"takes one sharding strategy, got {' and '.join(dict.fromkeys(sharding))}")
        if value and not sharding:
            raise ValueError(f"{' '.join(value)} needs a sharding strategy with it (full_shard, shard_grad_op, "
                             "hybrid_shard...), e.g. 'full_shard auto_wrap'")
        return list(dict.fromkeys(value))

    @field_validator("warmup_steps")
    @classmethod
    def _warmup(cls, value: float) -> float:
        if value >= 1 and value != int(value):
            raise ValueError(f"a step count (≥ 1) must be whole, or a fraction of training < 1, got {value}")
        return value

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        if value == 0:  # transformers reads 0 as "use num_train_epochs": say -1 for that
            raise ValueError("must be ≥ 1, or -1 to train for num_train_epochs")
        return value

    @model_validator(mode="after")
    def _eval_needs_heldout(self) -> TrainingFields:
        if self.lr_scheduler_type == "reduce_lr_on_plateau" and (self.eval_steps is None or self.eval_split == 0):
            raise ValueError("lr_scheduler_type: reduce_lr_on_plateau steps on the eval loss: set eval_steps (and "
                             "keep eval_split > 0)")
        if self.eval_steps is not None and self.eval_split == 0 and "eval_split" in type(self).model_fields:
            raise ValueError("eval_steps: there is nothing to evaluate with eval_split 0; hold some records out or "
                             "drop eval_steps")
        return self


def attention(config: TrainingFields) -> str | None:
    """The attention implementation to ask transformers for (None: its default, SDPA)."""
    if config.attn_implementation != "auto":
        return config.attn_implementation
    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return None


def check_device(config: TrainingFields) -> None:
    """Options that need a CUDA GPU, asked for on a machine without one: one line, before the model loads."""
    import torch

    if torch.cuda.is_available():
        return
    from forge.errors import ConfigError

    if config.use_liger_kernel:
        raise ConfigError("use_liger_kernel: Liger's Triton kernels need a CUDA GPU; none is available here")
    if config.ddp_backend == "nccl":
        raise ConfigError("ddp_backend: nccl needs CUDA GPUs; none is available here (use gloo, or leave it unset)")
    if config.attn_implementation.startswith("flash_attention"):
        raise ConfigError(f"attn_implementation: {config.attn_implementation} needs a CUDA GPU; none is available "
                          "here (use sdpa or auto)")


class PreferenceFields(TrainingFields):
    """The training fields of the recipes that learn from preference pairs (dpo, orpo, reward): the data in the
    formats dpo reads, one source or a mixture, and its PII policy."""

    data: DataSources = Field(  # type: ignore[assignment]  # one source or a mixture
        description="preference pairs: JSONL/JSON/CSV/Parquet/Arrow file or Hub dataset name, or a mixture: a list "
        "of {path, split, subset, weight | samples, format} (docs/data.md)")
    eval_data: DataSources | None = Field(None, description="held-out pairs (one source or a mixture); replaces "
                                                            "the eval_split hold-out")
    format: PreferenceFormat = Field(
        "auto", description="preference: prompt/chosen/rejected (strings or messages); chat-pair: chosen/rejected "
        "full conversations sharing a prompt; auto: detected (docs/data.md)")
    pii: PiiPolicy = Field(
        "warn", description="PII and secrets in the data (forge data scan): warn, ignore, block (fail at the data "
        "checks) or redact (train on a redacted copy, kept in the run directory with its sha256 and parent)")


class LoraFields(RecipeConfig):
    """LoRA settings (names as in TRL's ``ModelConfig``)."""

    use_peft: bool = Field(True, description="train LoRA adapters (false: full fine-tuning)")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] | Literal[
        "all-linear"] = Field("all-linear", description="module names to adapt, or all-linear")


def lora_settings(config: LoraFields) -> dict[str, Any]:
    return {
        "r": config.lora_r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout,
        "target_modules": config.lora_target_modules,
    }


def causal_lm_request(config: Any, load_in_4bit: bool = False, max_length: int | None = None,
                      recipe: str | None = None) -> Any:
    """The ModelRequest of a causal-LM recipe (sft, qlora, dpo, grpo), LoRA settings included for providers that
    patch LoRA themselves."""
    from forge.models import ModelRequest

    check_device(config)
    implementation = attention(config)
    return ModelRequest(
        model=config.model,
        quantization="4bit" if load_in_4bit else None,
        dtype=config.dtype,
        trust_remote_code=config.trust_remote_code,
        max_seq_length=max_length,
        gradient_checkpointing=config.gradient_checkpointing,
        lora=lora_settings(config) if config.use_peft else None,
        seed=config.seed,
        options={**({"model_kwargs": {"attn_implementation": implementation}} if implementation else {}),
                 **({"recipe": recipe} if recipe else {})},
    )


def classifier_request(config: Any, labels: list[str], recipe: str | None = None) -> Any:
    """The ModelRequest of a sequence-classification recipe (classify, reward): the backbone with a new head of
    ``labels`` outputs."""
    from forge.models import ModelRequest

    check_device(config)
    implementation = attention(config)
    return ModelRequest(
        model=config.model,
        task="sequence-classification",
        dtype=config.dtype,
        trust_remote_code=config.trust_remote_code,
        seed=config.seed,
        options={"labels": labels, **({"model_kwargs": {"attn_implementation": implementation}} if implementation
                                      else {}), **({"recipe": recipe} if recipe else {})},
    )


def peft_config(config: LoraFields, task_type: str = "CAUSAL_LM") -> Any:
    from peft import LoraConfig

    return LoraConfig(task_type=task_type, bias="none", **lora_settings(config))


def training_arguments(ctx: RunContext, config: TrainingFields, has_eval: bool, model: Any) -> dict[str, Any]:
    """Keyword arguments for ``TrainingArguments`` (or a TRL config) from the recipe config."""
    import torch

    dtype = getattr(model, "dtype", torch.float32)
    evaluate = has_eval and config.eval_steps is not None
    return {
        "output_dir": str(ctx.checkpoint_dir),
        "max_steps": config.max_steps,
        "num_train_epochs": config.num_train_epochs,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "per_device_eval_batch_size": config.per_device_eval_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": config.lr_scheduler_type,
        "warmup_steps": config.warmup_steps,
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "logging_steps": config.logging_steps,
        "logging_first_step": True,
        "save_strategy": "steps",
        "save_steps": config.save_steps,
        "save_total_limit": config.save_total_limit,
        "eval_strategy": "steps" if evaluate else "no",
        "eval_steps": config.eval_steps if evaluate else None,
        "seed": config.seed,
        "data_seed": config.seed,
        "bf16": dtype == torch.bfloat16,
        "fp16": dtype == torch.float16,
        **_checkpointing(config.gradient_checkpointing),
        "use_cpu": not torch.cuda.is_available(),  # also makes accelerate run multi-process CPU (gloo) runs as DDP
        "ddp_find_unused_parameters": False,
        "optim": config.optim,
        "use_liger_kernel": config.use_liger_kernel,
        "torch_compile": config.torch_compile,
        "auto_find_batch_size": config.auto_find_batch_size,
        "report_to": "none",  # forge tracks to MLflow itself, in the run's own MLflow run
        "disable_tqdm": not verbose(),  # forge shows its own progress bar and one line per logging step
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": torch.cuda.is_available(),
        "fsdp": " ".join(config.fsdp),
        "fsdp_config": str(config.fsdp_config) if isinstance(config.fsdp_config, Path) else config.fsdp_config,
        "deepspeed": str(config.deepspeed) if isinstance(config.deepspeed, Path) else config.deepspeed,
        "logging_nan_inf_filter": False,  # a NaN/inf loss must show in the logs, not be averaged away
        "ddp_backend": config.ddp_backend,
    }


def _checkpointing(enabled: bool) -> dict[str, Any]:
    """Activation (gradient) checkpointing, under whichever name this transformers version uses. Always explicit:
    TRL's configs default it to on, which would silently slow every run whose config says off."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    prefix = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    if not enabled:
        return {prefix: False}
    return {prefix: True, f"{prefix}_kwargs": {"use_reentrant": False}}


def trainer_inputs(ctx: RunContext, config: Any, loaded: Any, train_records: list[dict[str, Any]],
                   eval_records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What every TRL trainer of a causal-LM recipe takes: model, datasets, tokenizer, LoRA (unless the provider
    applied it already) and the run-context callback. Seeds first: LoRA weights are initialised in the trainer."""
    from datasets import Dataset

    seed_everything(config.seed)
    return {
        "model": loaded.model,
        "train_dataset": Dataset.from_list(train_records),
        "eval_dataset": Dataset.from_list(eval_records) if eval_records else None,
        "processing_class": loaded.tokenizer,
        "peft_config": peft_config(config) if config.use_peft and not loaded.lora_applied else None,
        "callbacks": [forge_callback(ctx, config.nan_policy)],
    }


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch right before a trainer is built: LoRA adapters are initialised while TRL's
    trainers are constructed, before the Trainer seeds itself, so without this their starting point would depend on
    whatever drew random numbers earlier in the process."""
    from transformers import set_seed

    set_seed(seed)


def forge_callback(ctx: RunContext, nan_policy: str = "stop") -> Any:
    """A TrainerCallback that reports logs to the run (MLflow, metrics.jsonl, one compact line per logging step),
    shows forge's progress bar, stops (after a checkpoint) on Ctrl-C, and applies ``nan_policy`` to every step's
    training loss (train_with_resume feeds it each micro-batch's loss)."""
    from transformers import TrainerCallback

    class ForgeCallback(TrainerCallback):
        bar: Any = None
        throughput: Any = None  # forge_hf.telemetry.Throughput, attached by train_with_resume
        worst: Any = None  # this step's first non-finite micro-batch loss, else its last loss (a tensor: no sync)
        policy = nan_policy

        loss_base: float | None = None  # resumed: the losses summed up to the checkpoint (from its file)
        loss_sum: Any = None  # this process's micro-batch losses summed, as the Trainer sums them (a tensor)

        def observe_loss(self, loss: Any) -> None:
            import torch

            if torch.is_tensor(loss):
                value = loss.detach().float().mean()
                self.loss_sum = value.double() if self.loss_sum is None else self.loss_sum + value.double()
                if self.worst is None:
                    self.worst = value
                else:  # keep the first non-finite loss of the step
                    self.worst = torch.where(not_finite(self.worst), self.worst, value)

        def _step_loss(self) -> float | None:
            """This step's non-finite loss, or None; all ranks agree (max of the flags), so all stop together. A
            stop request (Ctrl-C/SIGTERM) rides on the same reduction: when one rank has it, every rank stops after
            this step (a signal reaches the workers at slightly different moments; a rank going on alone would wait
            for the others in its next collective)."""
            import torch

            worst, self.worst = self.worst, None
            if worst is None:
                return None
            flag = not_finite(worst).to(torch.int32)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                flags = torch.stack([flag, torch.tensor(int(ctx.should_stop), dtype=torch.int32, device=flag.device)])
                torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
                flag, stop = flags[0], bool(flags[1])
                if stop and not ctx.should_stop:
                    ctx.should_stop = True
            if not bool(flag):  # the one GPU sync per optimizer step
                return None
            value = float(worst)
            return value if not math.isfinite(value) else float("nan")  # another rank's loss diverged

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.max_steps and state.global_step >= state.max_steps:
                # resumed from the run's last step (the weights are loaded by now): the Trainer would run one
                # step more before it looks at max_steps
                raise AlreadyTrained()
            if state.is_world_process_zero and not verbose():
                self.bar = ctx.progress(total=state.max_steps, initial=state.global_step, desc="training",
                                        unit="step")

        def loss_total(self) -> float:
            """Every micro-batch loss of the run summed, before this process's start included."""
            return (self.loss_base or 0.0) + (float(self.loss_sum) if self.loss_sum is not None else 0.0)

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and checkpoint.is_dir():
                from forge.artifacts import write_json_atomic

                write_json_atomic(checkpoint / LOSS_FILE, {"step": state.global_step, "loss_sum": self.loss_total()})

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and "train_loss" in logs and self.loss_base is not None and state.global_step:
                # resumed: the Trainer averages only the steps of this process (0.0 from a final checkpoint)
                logs["train_loss"] = self.loss_total() / state.global_step
            if state.is_world_process_zero and logs:
                metrics = {k: v for k, v in logs.items() if k not in QUIET_LOGS}
                if self.throughput is not None and "loss" in logs:  # a training logging step, not eval/summary
                    from forge_hf import telemetry

                    telemetry.update_flops(self.throughput)
                    metrics.update(self.throughput.rates())
                ctx.log_metrics(metrics, step=state.global_step, show=True, total=state.max_steps)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)
            loss = self._step_loss()
            if loss is not None:
                if self.policy == "stop":  # no checkpoint of the diverged weights: the last one stays the last good
                    control.should_save = control.should_evaluate = False
                    if self.bar is not None:
                        self.bar.close()
                        self.bar = None
                # raises TrainingDiverged on stop; the checkpoint of the previous step holds the weights that gave
                # this loss, so it is set aside
                ctx.check_loss(loss, state.global_step, self.policy, produced_by=state.global_step - 1)
            if ctx.should_stop:
                control.should_save = True
                control.should_training_stop = True

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return ForgeCallback()


def not_finite(value: Any) -> Any:
    import torch

    return ~torch.isfinite(value)


# Trainer log keys that are bookkeeping, not metrics a person reads or plots.
QUIET_LOGS = {"total_flos"}


def stops_at_once(train: Callable[[RunContext, Any], ArtifactResult]) -> Callable[[RunContext, Any], ArtifactResult]:
    """A recipe's ``train`` in which Ctrl-C/SIGTERM stop the run at once, except inside the training loop
    (:func:`train_with_resume`), where they checkpoint at the next step: reading and checking data, loading the
    model and the evaluation after training would otherwise run to their end before the signal counted."""
    import functools

    @functools.wraps(train)
    def run(ctx: RunContext, config: Any) -> ArtifactResult:
        with ctx.stop_at_once():
            return train(ctx, config)

    return run


def train_with_resume(ctx: RunContext, trainer: Any) -> Any:
    """``trainer.train()`` from the run's checkpoint, if any, with throughput telemetry (tokens/s, padding share,
    samples/s, peak GPU memory, MFU at every logging step; the summary in the manifest's ``throughput``). Unless
    verbose, the Trainer's own printing of every log dict is removed: forge's callback prints one compact line."""
    from forge_hf import telemetry

    if not verbose():
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    parameters = list(trainer.model.parameters())
    trainable = sum(p.numel() for p in parameters if p.requires_grad)
    throughput = telemetry.start(trainer, frozen_base=trainable < 0.5 * sum(p.numel() for p in parameters))
    for callback in trainer.callback_handler.callbacks:
        if hasattr(callback, "throughput"):
            callback.throughput = throughput
        if hasattr(callback, "observe_loss"):
            _watch_losses(trainer, callback.observe_loss)
    resume = str(ctx.resume_from) if ctx.resume_from is not None else None
    forge_callbacks = [c for c in trainer.callback_handler.callbacks if hasattr(c, "loss_total")]
    if ctx.resume_from is not None:
        for callback in forge_callbacks:
            callback.loss_base = loss_before(ctx.resume_from)
    try:
        with ctx.stop_at_steps():  # Ctrl-C/SIGTERM: checkpoint at the next step, then stop
            result = trainer.train(resume_from_checkpoint=resume)
    except AlreadyTrained:
        from transformers.trainer_utils import TrainOutput

        ctx.log(f"{Path(str(resume)).name} is the run's last step: nothing left to train")
        result = TrainOutput(trainer.state.global_step, 0.0, {"train_runtime": 0.0})
    if ctx.resume_from is not None and forge_callbacks and result.global_step:
        # the whole run's mean loss, as a run that never stopped reports it (the Trainer's counts only this part)
        train_loss = forge_callbacks[0].loss_total() / result.global_step
        result = result._replace(training_loss=train_loss, metrics={**(result.metrics or {}), "train_loss": train_loss})
    telemetry.update_flops(throughput)
    summary = throughput.summary((result.metrics or {}).get("train_runtime"))
    if summary:
        ctx.record(throughput=summary)
        shown = [f"{summary['tokens_per_s']:,.0f} tokens/s" if summary.get("tokens_per_s") else None,
                 f"padding {summary['padding_share']:.0%}" if summary.get("padding_share") is not None else None,
                 f"{summary['samples_per_s']} samples/s" if summary.get("samples_per_s") else None,
                 f"peak GPU {summary['gpu_peak_allocated_gib']:.2f} GiB" if "gpu_peak_allocated_gib" in summary
                 else None,
                 f"MFU {summary['mfu']:.1%}" if "mfu" in summary else None]
        ctx.log("throughput: " + ", ".join(x for x in shown if x))
    return result


class AlreadyTrained(Exception):
    """Raised by forge's callback when a run resumes from a checkpoint of its last step."""


LOSS_FILE = "forge-train-loss.json"  # in each checkpoint: the run's micro-batch losses summed up to it


def loss_before(checkpoint: Path) -> float:
    """The sum of the run's micro-batch losses up to ``checkpoint`` (saved in it by forge's callback). A checkpoint
    without the file (written by an older forge) gets it from its logged losses, each logging window's mean
    counted once per step of that window."""
    import json

    saved = checkpoint / LOSS_FILE
    if saved.is_file():
        return float(json.loads(saved.read_text())["loss_sum"])
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    total, previous = 0.0, 0
    logged = [(int(h["step"]), float(h["loss"])) for h in state.get("log_history", []) if "loss" in h]
    for step, loss in logged:
        total += loss * (step - previous)
        previous = step
    if logged and state.get("global_step", previous) > previous:
        total += logged[-1][1] * (int(state["global_step"]) - previous)
    return total


def _watch_losses(trainer: Any, observe: Any) -> None:
    """Hand every micro-batch's training loss to ``observe`` (the Trainer's callbacks never see per-step losses,
    only logging-window averages)."""
    step = trainer.training_step

    def training_step(*args: Any, **kwargs: Any) -> Any:
        loss = step(*args, **kwargs)
        observe(loss)
        return loss

    trainer.training_step = training_step


def train_preference_model(ctx: RunContext, config: Any, trainer: Any, loaded: Any, eval_records: list[Any],
                           keep: Callable[[str], bool]) -> ArtifactResult:
    """The shared end of the TRL preference recipes (dpo, kto, orpo): train (resumable), evaluate the held-out
    records keeping the metrics ``keep`` accepts, save the adapter or full model."""
    result = train_with_resume(ctx, trainer)
    kind = "causal-lm-adapter" if config.use_peft else "causal-lm"
    if ctx.should_stop:
        return ArtifactResult(kind=kind)
    metrics = {"train_loss": float(result.training_loss)}
    if eval_records:
        ctx.log(f"evaluating on {len(eval_records):,} held-out records")
        metrics.update({k: float(v) for k, v in trainer.evaluate().items() if keep(k)})
    extra = save_causal_lm(ctx, trainer, loaded.tokenizer, config, loaded.info, adapter=config.use_peft)
    return ArtifactResult(kind=kind, metrics=metrics, extra=extra)


HELDOUT_KEPT = 200  # held-out records kept beside the model: exporters check their parity on them


def save_causal_lm(ctx: RunContext, trainer: Any, tokenizer: Any, config: Any, loaded_info: dict[str, Any],
                   adapter: bool, heldout: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write the trained model (LoRA adapter or full weights), tokenizer, chat template and generation config, and
    the first held-out records (``heldout.jsonl``, never trained on) that exports are parity-checked against."""
    out: Path = ctx.artifact_dir
    if not ctx.is_main:
        return {}
    out.mkdir(parents=True, exist_ok=True)
    model = trainer.model
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    generation = getattr(getattr(model, "base_model", model), "generation_config", None) or getattr(
        model, "generation_config", None
    )
    if generation is not None:
        generation.save_pretrained(out)
    if heldout:
        import json

        with (out / "heldout.jsonl").open("w", encoding="utf-8") as handle:
            for record in heldout[:HELDOUT_KEPT]:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    from forge_hf.base_model import base_model_fields

    extra: dict[str, Any] = {
        **base_model_fields(config.model),  # with a seal for a local base: this user's later loads accept it
        "base_model_source": loaded_info.get("model_source"),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
    }
    if adapter:
        extra["adapter"] = "lora"
    return extra
