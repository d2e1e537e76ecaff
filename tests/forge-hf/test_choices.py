"""The enumerations forge validates against are transformers' own: the snapshot in forge_hf.recipes.choices must
equal the installed library's enums (validation never imports transformers, so drift would go unnoticed), and the
config types must offer exactly the snapshot minus the names left out with a reason."""

from __future__ import annotations

import typing

from forge_hf.recipes import choices


def names(enum) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


def offered(literal) -> set[str]:
    return set(typing.get_args(literal))


def test_snapshots_equal_the_installed_transformers():
    from transformers.trainer_utils import FSDPOption, SchedulerType
    from transformers.training_args import OptimizerNames

    assert names(OptimizerNames) == choices.OPTIMIZER_NAMES
    assert names(SchedulerType) == choices.SCHEDULER_TYPES
    assert names(FSDPOption) == choices.FSDP_OPTIONS


def test_attention_snapshot_equals_the_registered_implementations():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    assert set(choices.ATTENTION_IMPLEMENTATIONS) == {"eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()}


def test_config_types_are_the_snapshot_minus_what_is_left_out():
    for literal, snapshot in [(choices.Optimizer, choices.OPTIMIZER_NAMES),
                              (choices.Scheduler, choices.SCHEDULER_TYPES),
                              (choices.FsdpOption, choices.FSDP_OPTIONS),
                              (choices.Attention, choices.ATTENTION_IMPLEMENTATIONS)]:
        extra = offered(literal) - {"auto"}
        assert extra <= set(snapshot), extra - set(snapshot)
        assert set(snapshot) - extra == {n for n in snapshot if n in choices.LEFT_OUT}
    assert set(choices.OPTIMIZER_PACKAGES) <= offered(choices.Optimizer)


def test_every_offered_scheduler_builds_with_what_forge_passes():
    import torch
    from transformers import get_scheduler

    for name in offered(choices.Scheduler):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        get_scheduler(name, optimizer, num_warmup_steps=0, num_training_steps=10)


def test_gguf_and_onnx_option_types_match_the_exporters():
    from forge_hf import export_gguf
    from forge_hf.export_options import GGUFOptions
    from forge_hf.gguf_file import QUANT_TYPES
    from forge_onnx.export import OPTIONS
    from forge_onnx.export_lm import INT8_METHODS, LM_OPTIONS
    from forge_onnx.export_options import OnnxOptions

    assert typing.get_args(GGUFOptions.model_fields["quantize"].annotation) == QUANT_TYPES
    assert set(GGUFOptions.model_fields) == export_gguf.OPTIONS
    assert set(OnnxOptions.model_fields) == OPTIONS | LM_OPTIONS
    assert typing.get_args(OnnxOptions.model_fields["int8_method"].annotation)[0] == typing.Literal[INT8_METHODS]


def test_every_offered_optimizer_steps_or_is_refused_at_validation_naming_its_package():
    """Each optimizer the config offers either builds and takes a step on this machine through transformers (the
    way the Trainer makes it) or, its package missing, is refused when the config is validated."""
    import importlib.util

    import pytest
    import torch
    from forge_hf.recipes.sft import SFTRecipeConfig
    from pydantic import ValidationError
    from transformers import Trainer, TrainingArguments

    for name in offered(choices.Optimizer):
        package = choices.OPTIMIZER_PACKAGES.get(name)
        if package and importlib.util.find_spec(package[0]) is None:
            with pytest.raises(ValidationError, match=f"needs the {package[1]} package"):
                SFTRecipeConfig(optim=name)
            continue
        SFTRecipeConfig(optim=name)
        args = TrainingArguments(output_dir="unused", optim=name, use_cpu=True, report_to="none")
        model = torch.nn.Linear(4, 2)
        optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        optimizer = optimizer_cls(model.parameters(), **kwargs)
        model(torch.randn(3, 4)).sum().backward()
        optimizer.step()
