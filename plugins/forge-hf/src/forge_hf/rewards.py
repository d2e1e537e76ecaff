"""Reward functions for ``grpo``. Built-ins are named in config (``reward_funcs: [format, length]``); any
``package.module:function`` with TRL's signature ``f(prompts, completions, **columns) -> list[float]`` works too."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

RewardFn = Callable[..., list[float]]


def completion_text(completion: Any) -> str:
    """A completion is a string, or (chat data) a list of messages whose last one is the answer."""
    if isinstance(completion, list):
        return str(completion[-1]["content"]) if completion else ""
    return str(completion)


def format_reward(pattern: str) -> RewardFn:
    """1.0 when the completion matches ``pattern`` (a regex searched in the text), else 0.0."""
    regex = re.compile(pattern)

    def format_match(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        return [1.0 if regex.search(completion_text(c)) else 0.0 for c in completions]

    return format_match


def length_reward(target: int) -> RewardFn:
    """1.0 at exactly ``target`` characters, falling linearly to 0 at 0 or 2×target."""

    def length(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        return [max(0.0, 1.0 - abs(len(completion_text(c)) - target) / target) for c in completions]

    return length


NUMBER = re.compile(r"-?\d[\d,]*\.?\d*")


def final_number(text: str) -> str | None:
    """The number after ``####`` (GSM8K style), or else the last number in the text."""
    tail = text.split("####")[-1] if "####" in text else text
    found = NUMBER.findall(tail)
    return found[-1].replace(",", "").rstrip(".") if found else None


def answer_match(prompts: list[Any], completions: list[Any], answer: list[str] | None = None,
                 **_: Any) -> list[float]:
    """1.0 when the completion's final number equals the ``answer`` column's final number."""
    if answer is None:
        return [0.0] * len(completions)
    return [1.0 if final_number(completion_text(c)) is not None
            and final_number(completion_text(c)) == final_number(str(a)) else 0.0
            for c, a in zip(completions, answer, strict=True)]


BUILTINS = ("format", "length", "answer")


def resolve_reward(name: str, format_pattern: str, target_length: int) -> RewardFn:
    if name == "format":
        return format_reward(format_pattern)
    if name == "length":
        return length_reward(target_length)
    if name == "answer":
        return answer_match
    from forge.dotted import resolve

    function = resolve(name)
    if not callable(function):
        raise TypeError(f"{name} is not callable")
    return cast(RewardFn, function)
