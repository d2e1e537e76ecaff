"""Reward models (artifact kind ``reward-model``): how a (prompt, completion) pair becomes the model's input, scoring
in batches, and the reward function that ``rlhf``/``grpo`` hand to TRL's online trainers.

One encoding everywhere (training, ``POST /score``, the ``pairwise-accuracy`` suite, RL), decided by the data the
model was trained on: chat data → the tokenizer's chat template (strings wrapped as one user and one assistant
message); plain strings → ``prompt + completion + EOS`` (message lists read as their contents). Sequences longer
than ``max_length`` keep their *last* tokens: the score is read at the last token, so the end of the completion must
stay.

    scorer = load_scorer(Path("runs/reward-1/artifact"))
    scorer.score([{"prompt": "2+2?", "completion": "4"}])   # → [1.73]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.errors import ForgeError

KIND = "reward-model"


def reward_artifact(ref: str) -> Any:
    """The ``reward-model`` artifact ``ref`` names (a run directory, an artifact directory or ``models:/...``);
    anything else is a one-line :class:`ForgeError`. Reads manifests only: no model is loaded."""
    from forge.references import open_artifact

    artifact = open_artifact(ref, accepts=(KIND,))
    if artifact.kind != KIND:
        raise ForgeError(f"{ref} is a {artifact.kind} artifact, not a {KIND} (train one with: forge run "
                         "--recipe reward ...)")
    return artifact


def _chat(value: Any) -> bool:
    return isinstance(value, list)


def as_messages(prompt: Any, completion: Any) -> list[dict[str, Any]]:
    prompt_messages = prompt if _chat(prompt) else [{"role": "user", "content": str(prompt)}]
    completion_messages = completion if _chat(completion) else [{"role": "assistant", "content": str(completion)}]
    return [*prompt_messages, *completion_messages]


def flatten(value: Any) -> str:
    """Text of a side: a string as is, a message list as its contents, one per line."""
    if _chat(value):
        return "\n".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    return str(value)


def encode(tokenizer: Any, prompt: Any, completion: Any, max_length: int, chat: bool) -> list[int]:
    """Token ids of one (prompt, completion) pair, the last ``max_length`` kept. The format the model was trained
    on decides: ``chat`` (chat data): the chat template, strings wrapped as one user and one assistant message;
    otherwise ``prompt + completion + EOS``, message lists read as their contents (so a model trained on plain
    pairs scores chat prompts in the text it learned)."""
    if chat and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(as_messages(prompt, completion), tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        text = f"{flatten(prompt)}{flatten(completion)}"
        eos = tokenizer.eos_token or ""
        if eos and not text.endswith(eos):
            text += eos
        ids = tokenizer(text)["input_ids"]
    return list(ids[-max_length:])


@dataclass
class Scorer:
    """A loaded reward model: ``score(pairs)`` → one float per ``{"prompt", "completion"}``."""

    model: Any
    tokenizer: Any
    max_length: int
    chat: bool
    batch_size: int = 16

    def score_ids(self, sequences: list[list[int]]) -> list[float]:
        import torch

        scores: list[float] = []
        pad = self.tokenizer.pad_token_id
        device = next(self.model.parameters()).device
        for start in range(0, len(sequences), self.batch_size):
            part = sequences[start:start + self.batch_size]
            width = max(len(s) for s in part)
            # right padding: the model reads the score at the last non-pad token (config.pad_token_id)
            ids = torch.full((len(part), width), pad, dtype=torch.long)
            mask = torch.zeros((len(part), width), dtype=torch.long)
            for row, sequence in enumerate(part):
                ids[row, :len(sequence)] = torch.tensor(sequence, dtype=torch.long)
                mask[row, :len(sequence)] = 1
            with torch.no_grad():
                logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            scores.extend(float(x) for x in logits[:, 0].float().cpu())
        return scores

    def score(self, pairs: list[dict[str, Any]]) -> list[float]:
        return self.score_ids([encode(self.tokenizer, p["prompt"], p["completion"], self.max_length, self.chat)
                               for p in pairs])


def load_scorer(path: Path, manifest: dict[str, Any] | None = None, device: str = "auto",
                batch_size: int = 16) -> Scorer:
    """Load a ``reward-model`` artifact directory (a plain transformers sequence-classification model, one output)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from forge_hf.provider import auto_device

    if manifest is None:
        from forge.artifacts import read_manifest

        manifest = read_manifest(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, use_safetensors=True,
                                                               dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.to(auto_device(device)).eval()
    return Scorer(model=model, tokenizer=tokenizer, max_length=int(manifest.get("max_length") or 1024),
                  chat=manifest.get("input_format") == "chat", batch_size=batch_size)


def reward_function(scorer: Scorer) -> Any:
    """TRL's reward-function signature around a scorer; logged by TRL as ``rewards/reward_model/...``."""

    def reward_model(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        return scorer.score([{"prompt": p, "completion": c} for p, c in zip(prompts, completions, strict=True)])

    return reward_model


def pairwise(scorer: Scorer, records: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Scores of each record's chosen and rejected completions."""
    chosen = scorer.score([{"prompt": r.get("prompt", []), "completion": r["chosen"]} for r in records])
    rejected = scorer.score([{"prompt": r.get("prompt", []), "completion": r["rejected"]} for r in records])
    return chosen, rejected
