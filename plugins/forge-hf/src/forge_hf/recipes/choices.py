"""The names transformers accepts for the enumerated ``TrainingArguments`` fields, kept here as a snapshot so that
config validation (``forge run --dry-run``) never imports transformers. tests/forge-hf/test_choices.py compares each
snapshot with the installed library's own enum and fails when they drift apart.

A snapshot lists what the library knows (transformers 5.x); the ``Literal`` types the recipe configs use leave out
the names forge cannot run as configured, each with its reason in ``LEFT_OUT``.
"""

from __future__ import annotations

from typing import Literal

# transformers.training_args.OptimizerNames
OPTIMIZER_NAMES = (
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor", "adamw_anyprecision",
    "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad", "adamw_bnb_8bit", "adamw_8bit",
    "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit",
    "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit", "galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "lomo", "adalomo", "grokadamw",
    "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd", "apollo_adamw", "apollo_adamw_layerwise",
    "stable_adamw",
)
# transformers.trainer_utils.SchedulerType
SCHEDULER_TYPES = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup", "inverse_sqrt",
    "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay", "greedy",
)
# transformers.trainer_utils.FSDPOption
FSDP_OPTIONS = ("full_shard", "shard_grad_op", "no_shard", "hybrid_shard", "hybrid_shard_zero2", "offload",
                "auto_wrap")
# the attention implementations transformers registers (ALL_ATTENTION_FUNCTIONS), plus its own "eager"
ATTENTION_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flash_attention_4",
                             "flex_attention", "paged|eager")

LEFT_OUT = {
    **{name: "needs optim_target_modules, which forge does not pass" for name in OPTIMIZER_NAMES
       if name.startswith(("galore_", "apollo_"))},
    "adamw_torch_xla": "needs a TPU (torch_xla)",
    "adamw_torch_npu_fused": "needs an Ascend NPU (torch_npu)",
    "cosine_with_min_lr": "needs lr_scheduler_kwargs (min_lr), which forge does not pass",
    "cosine_warmup_with_min_lr": "needs lr_scheduler_kwargs (min_lr), which forge does not pass",
    "warmup_stable_decay": "needs lr_scheduler_kwargs (num_decay_steps), which forge does not pass",
    "flash_attention_4": "not offered yet: flash_attention_2/3 cover the GPUs forge is tested on",
    "flex_attention": "not offered yet: compiles per shape, slower than sdpa on the models forge ships",
    "paged|eager": "for continuous-batching generation, not training",
}

Optimizer = Literal[
    "adamw_torch", "adamw_torch_fused", "adafactor", "adamw_anyprecision", "adamw_torch_4bit", "adamw_torch_8bit",
    "ademamix", "sgd", "adagrad", "adamw_bnb_8bit", "adamw_8bit", "ademamix_8bit", "lion_8bit", "lion_32bit",
    "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit", "paged_lion_32bit",
    "paged_lion_8bit", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit", "lomo", "adalomo",
    "grokadamw", "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd", "stable_adamw",
]
Scheduler = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                    "inverse_sqrt", "reduce_lr_on_plateau", "greedy"]
FsdpOption = Literal["full_shard", "shard_grad_op", "no_shard", "hybrid_shard", "hybrid_shard_zero2", "offload",
                     "auto_wrap"]
Attention = Literal["auto", "eager", "sdpa", "flash_attention_2", "flash_attention_3"]

# The package an optimizer needs beyond torch (import name, pip name): checked when the config is validated.
OPTIMIZER_PACKAGES = {
    **{name: ("bitsandbytes", "bitsandbytes") for name in (
        "ademamix", "adamw_bnb_8bit", "adamw_8bit", "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit",
        "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit",
        "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit")},
    "adamw_anyprecision": ("torchdistx", "torchdistx"),
    "adamw_torch_4bit": ("torchao", "torchao"),
    "adamw_torch_8bit": ("torchao", "torchao"),
    "lomo": ("lomo_optim", "lomo-optim"),
    "adalomo": ("lomo_optim", "lomo-optim"),
    "grokadamw": ("grokadamw", "grokadamw"),
    "schedule_free_radam": ("schedulefree", "schedulefree"),
    "schedule_free_adamw": ("schedulefree", "schedulefree"),
    "schedule_free_sgd": ("schedulefree", "schedulefree"),
    "stable_adamw": ("optimi", "torch-optimi"),
}
