"""Recipe ``rlhf``: reinforcement learning of a policy against a trained reward model, on TRL's online trainers
(``algorithm: grpo``, the default, or ``rloo``), with a KL penalty toward the reference policy (``beta``; with LoRA
the reference is the policy with its adapters disabled: no second copy in memory). The last step of the path
sft → reward → rlhf:

    forge run --recipe sft --set max_steps=100 -o runs/sft
    forge run --recipe reward --model smollm2-135m-instruct --data prefs.jsonl -o runs/rm
    forge run --recipe rlhf --model runs/sft --data prompts.jsonl --set reward_model=runs/rm -o runs/rlhf

``model``: a hub id, directory or alias, or a forge run/artifact directory holding a causal LM (a LoRA adapter is
merged into its base first, then new adapters are trained). ``reward_model``: a ``reward-model`` run or artifact
directory (checked before anything loads). Data: ``prompt`` (string or chat messages), or chat ``messages`` whose
last turn is dropped; rule-based ``reward_funcs`` (as in ``grpo``) may be added to the reward model's score.
Logged each ``logging_steps``: ``reward`` (mean over the sampled completions), ``kl`` (to the reference),
``rewards/reward_model/mean``; ``rlhf_curves.png`` plots reward and KL. PPO: TRL 1.x has no PPOTrainer (it was
removed from trl and is not in trl.experimental of the installed version); ``algorithm: ppo`` says so.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast

from forge.artifacts import ArtifactResult
from forge.errors import ConfigError
from forge.run.context import RunContext
from pydantic import Field

from forge_hf.base_model import SEAL_FIELD, base_model_fields, checked_base_model
from forge_hf.recipes.common import (
    causal_lm_request,
    save_causal_lm,
    stops_at_once,
)
from forge_hf.recipes.grpo import (
    GRPORecipeConfig,
    add_reward_model,
    load_rewards,
    prepare,
    read_prompts,
    train_online,
)

POLICY_KINDS = ("causal-lm", "causal-lm-adapter")


class RLHFRecipeConfig(GRPORecipeConfig):
    reward_model: str = Field(  # required here
        description="the reward model: a reward-model run or artifact directory (forge run --recipe reward)")
    algorithm: Literal["grpo", "rloo", "ppo"] = Field(
        "grpo", description="TRL online trainer: grpo (group-relative advantages) or rloo (leave-one-out baseline); "
        "ppo is refused: the installed TRL has no PPOTrainer")
    reward_funcs: list[str] = Field([], description="rule-based rewards added to the reward model's score (built-in "
                                    "names or module:function, as in grpo)")
    beta: float = Field(0.04, ge=0, description="KL coefficient toward the reference policy (0: no KL term)")
    logging_steps: int = Field(1, ge=1)


def ppo_trainer() -> Any:
    """PPOTrainer wherever the installed TRL keeps it, else a one-line config error."""
    import importlib
    import warnings

    import trl

    for module in ("trl", "trl.experimental.ppo"):
        try:
            with warnings.catch_warnings():  # importing trl.experimental warns that its APIs are unstable
                warnings.simplefilter("ignore")
                return importlib.import_module(module).PPOTrainer
        except (ImportError, AttributeError):
            continue
    raise ConfigError(f"algorithm: ppo needs TRL's PPOTrainer, which the installed TRL ({trl.__version__}) does not "
                      "have (neither trl nor trl.experimental.ppo); use grpo or rloo")


def policy_source(model: str) -> tuple[str, Path | None]:
    """(what the provider loads, LoRA adapter to merge or None): a forge run or artifact directory holding a causal
    LM resolves to its weights, or to its base plus its adapter."""
    from forge.artifacts import MANIFEST
    from forge.errors import ForgeError
    from forge.references import open_artifact

    if not (Path(model).expanduser() / MANIFEST).is_file():
        return model, None
    artifact = open_artifact(model, accepts=POLICY_KINDS)
    if artifact.kind not in POLICY_KINDS:
        raise ForgeError(f"model: {model} is a {artifact.kind} artifact; the policy must be a causal LM "
                         f"({', '.join(POLICY_KINDS)})")
    if artifact.kind == "causal-lm":
        return str(artifact.path), None
    if not artifact.manifest.get("base_model"):
        raise ForgeError(f"model: {artifact.path}: the adapter's manifest names no base_model")
    return checked_base_model(artifact), artifact.path  # a local base outside the artifact: only if trusted


def check_data(config: RLHFRecipeConfig, log: Callable[[str], None]) -> None:
    """``forge run --dry-run``: the prompts, the policy reference and the algorithm, checked as the run does."""
    if config.algorithm == "ppo":
        ppo_trainer()
    policy_source(config.model)
    records = read_prompts(config)
    log(f"data: {len(records):,} prompts; reward model {config.reward_model}; checked")


def merge_adapter(model: Any, adapter: Path) -> Any:
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()


def plot_curves(path: Path, history: list[dict[str, Any]]) -> Path | None:
    """Reward (mean ± std over sampled completions) and KL to the reference per logged step."""
    rows = [h for h in history if "reward" in h]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in rows]
    reward = [h["reward"] for h in rows]
    spread = [h.get("reward_std", 0.0) for h in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    axes[0].plot(steps, reward, marker="o", color="tab:blue")
    axes[0].fill_between(steps, [r - s for r, s in zip(reward, spread, strict=True)],
                         [r + s for r, s in zip(reward, spread, strict=True)], color="tab:blue", alpha=0.15)
    if len(reward) >= 8:  # each step sees a few prompts: the trend is easier to read over a window
        window = max(4, len(reward) // 6)
        smooth = [sum(reward[max(0, i - window + 1):i + 1]) / len(reward[max(0, i - window + 1):i + 1])
                  for i in range(len(reward))]
        axes[0].plot(steps, smooth, color="black", linewidth=2, label=f"mean of the last {window} steps")
        axes[0].legend(loc="lower right", fontsize=8)
    axes[0].set_title("reward (mean ± std of samples)")
    axes[0].set_xlabel("step")
    kl = [(h["step"], h["kl"]) for h in rows if "kl" in h]
    if kl:
        axes[1].plot([s for s, _ in kl], [v for _, v in kl], marker="o", color="tab:red")
        axes[1].set_title("KL to the reference")
    else:
        axes[1].set_title("KL: not computed (beta = 0)")
    axes[1].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@stops_at_once
def train(ctx: RunContext, config: RLHFRecipeConfig) -> ArtifactResult:
    if config.algorithm == "ppo":
        ppo_trainer()
    records = prepare(ctx, config)
    rewards = load_rewards(config)
    source, adapter = policy_source(config.model)
    add_reward_model(ctx, config, rewards)
    loaded = ctx.load_model(causal_lm_request(config.model_copy(update={"model": source}), recipe="rlhf"))
    if adapter is not None:
        ctx.log(f"policy: {source} with the adapter {adapter} merged in")
        loaded.model = merge_adapter(loaded.model, adapter)
        ctx.record(policy={"base_model": source, "adapter": str(adapter.resolve())})
    if config.algorithm == "rloo":
        from trl import RLOOConfig as OnlineConfig
        from trl import RLOOTrainer as OnlineTrainer
    else:
        from trl import GRPOConfig as OnlineConfig  # type: ignore[assignment]
        from trl import GRPOTrainer as OnlineTrainer  # type: ignore[assignment]

    trainer, result, history = train_online(ctx, config, loaded, records, rewards, OnlineConfig, OnlineTrainer)
    kind = "causal-lm-adapter" if config.use_peft else "causal-lm"
    if ctx.should_stop:
        return ArtifactResult(kind=kind)
    metrics: dict[str, Any] = {"train_loss": float(result.training_loss)}
    if history:
        metrics["first_reward"] = float(history[0]["reward"])
        metrics["final_reward"] = float(history[-1]["reward"])
        kls = [float(h["kl"]) for h in history if "kl" in h]
        if kls:
            metrics["final_kl"] = kls[-1]
            metrics["mean_kl"] = sum(kls) / len(kls)
        ctx.log(f"reward {metrics['first_reward']:.3f} → {metrics['final_reward']:.3f} over {len(history)} logged "
                "steps" + (f"; KL to the reference: final {kls[-1]:.4f}, mean {metrics['mean_kl']:.4f}" if kls
                           else ""))
    if ctx.is_main:
        plot = plot_curves(ctx.run_dir / "rlhf_curves.png", trainer.state.log_history)
        if plot is not None:
            ctx.attach(plot)
    merge = adapter is not None and config.use_peft
    if merge:
        # the new adapter sits on base + sft adapter, a model no directory holds: save the merged whole instead
        trainer.model = cast(Any, trainer.model).merge_and_unload()
        kind = "causal-lm"
    extra = save_causal_lm(ctx, trainer, loaded.tokenizer, config, loaded.info, adapter=config.use_peft and not merge)
    extra.pop(SEAL_FIELD, None)
    extra.update(base_model_fields(source))
    if adapter is not None:
        extra["merged_adapters"] = [str(adapter.resolve()), *(["this run's LoRA"] if merge else [])]
    extra.update({"reward_model": config.reward_model, "rewards": [*config.reward_funcs, "reward_model"],
                  "algorithm": config.algorithm})
    return ArtifactResult(kind=kind, metrics=metrics, extra=extra)
