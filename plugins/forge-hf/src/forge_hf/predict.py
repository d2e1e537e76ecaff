"""In-process predictors (``forge.load_predictor``) for the forge-hf kinds: text classifiers (torch) and causal LMs.

    with forge.load_predictor(artifact) as p:          # sequence-classifier
        p.predict([{"text": "a lovely film"}])  # → [{"label", "confidence", "scores"}]
    with forge.load_predictor(artifact, {"max_new_tokens": 64, "batch_size": 8}) as p:   # causal-lm(-adapter)
        p.predict([{"messages": [{"role": "user", "content": "hi"}]}, {"prompt": "Once upon"}])
        # → [{"text", "tokens", "stopped"}]: greedy, batched with left padding, stopped = ended at an EOS token

The classifier code here is shared with forge-onnx (only ``predict_probs`` differs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from forge.artifacts import Artifact
from forge.errors import ConfigError, DataError
from forge.predictors import Predictor


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def int_option(options: dict[str, Any], name: str, default: int, minimum: int = 1) -> int:
    value = options.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--set {name}={value}: expected an integer") from None
    if number < minimum:
        raise ConfigError(f"--set {name}={value}: must be at least {minimum}")
    return number


class ClassifierPredictor(Predictor):
    """Rows ``{"text": str}`` → ``{"label", "confidence", "scores"}``, ``batch_size`` texts per model call."""

    kind = "classifier"

    def __init__(self, labels: Sequence[str], predict_probs: Callable[[list[str]], np.ndarray],
                 batch_size: int = 32, close: Callable[[], None] | None = None) -> None:
        self.labels = list(labels)
        self.predict_probs = predict_probs
        self.batch_size = batch_size
        self._close = close

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """(len(texts), len(labels)) class probabilities."""
        parts = [np.asarray(self.predict_probs(texts[i:i + self.batch_size]))
                 for i in range(0, len(texts), self.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.labels)))

    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        texts = []
        for index, row in enumerate(rows):
            text = row.get("text") if isinstance(row, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"rows.{index}.text: a non-empty string is required")
            texts.append(text)
        return [self.answer(p) for p in self.probabilities(texts)]

    def answer(self, probs: np.ndarray) -> dict[str, Any]:
        best = int(np.argmax(probs))
        return {"label": self.labels[best], "confidence": float(probs[best]),
                "scores": {name: float(p) for name, p in zip(self.labels, probs, strict=True)}}

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None


def load_classifier(artifact: Artifact, merge: bool = True) -> tuple[Any, Any]:
    """The torch model (fp32, eval mode) and tokenizer of a ``sequence-classifier``, or of a
    ``sequence-classifier-adapter`` (its base with a fresh head, then the LoRA adapter and trained head; merged
    unless ``merge`` is false: then a PeftModel)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if artifact.kind != "sequence-classifier-adapter":
        model = AutoModelForSequenceClassification.from_pretrained(artifact.path, use_safetensors=True)
        return model.eval(), AutoTokenizer.from_pretrained(artifact.path)
    from peft import PeftModel

    from forge_hf.base_model import resolve_base_model

    base_source, _ = resolve_base_model(artifact)  # the base-model policy, before anything loads
    tokenizer = AutoTokenizer.from_pretrained(artifact.path)
    labels = list(artifact.manifest["labels"])
    base = AutoModelForSequenceClassification.from_pretrained(
        base_source, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)}, pad_token_id=artifact.manifest.get("pad_token_id"),
        ignore_mismatched_sizes=True, dtype=torch.float32, use_safetensors=True)
    model = PeftModel.from_pretrained(base, artifact.path)
    return (model.merge_and_unload() if merge else model).eval(), tokenizer


def torch_classifier(artifact: Artifact) -> tuple[list[str], Callable[[list[str]], np.ndarray]]:
    """Labels and a texts → probabilities function for a ``sequence-classifier`` (or ``-adapter``) artifact (torch,
    CPU)."""
    import torch

    model, tokenizer = load_classifier(artifact)
    labels = list(artifact.manifest["labels"])
    max_length = int(artifact.manifest.get("max_length", 512))

    def predict_probs(texts: list[str]) -> np.ndarray:
        batch = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        with torch.inference_mode():
            return softmax(model(**batch).logits.float().numpy())

    return labels, predict_probs


def classifier_predictor(artifact: Artifact, options: dict[str, Any]) -> ClassifierPredictor:
    labels, predict_probs = torch_classifier(artifact)
    return ClassifierPredictor(labels, predict_probs, int_option(options, "batch_size", 32))


class CausalLMPredictor(Predictor):
    """Greedy generation, batched with left padding (``batch_size`` prompts per ``generate`` call, sorted by length
    so a batch pads little). Rows ``{"prompt": str}`` or ``{"messages": [...]}`` (rendered with the chat template
    and the generation prompt), optional ``max_new_tokens`` per row. Output ``{"text", "tokens", "stopped"}``."""

    kind = "causal-lm"

    def __init__(self, model: Any, tokenizer: Any, eos_token_ids: list[int], max_new_tokens: int = 256,
                 batch_size: int = 8) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.eos_token_ids = eos_token_ids
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def encode(self, row: dict[str, Any], where: str = "row") -> list[int]:
        """Prompt token ids of a row (what generation continues)."""
        messages, prompt = row.get("messages"), row.get("prompt")
        if isinstance(prompt, list):
            messages, prompt = prompt, None
        if isinstance(messages, list) and messages:
            if not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
                raise DataError(f"{where}.messages: a list of {{'role', 'content'}} objects is required")
            if getattr(self.tokenizer, "chat_template", None):
                text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            else:
                text = "\n".join(f"{m.get('role')}: {m['content']}" for m in messages) + "\nassistant:"
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if isinstance(prompt, str) and prompt:
            return list(self.tokenizer(prompt)["input_ids"])
        raise DataError(f"{where}: needs 'prompt' (text) or 'messages' (chat)")

    def generate_ids(self, prompts: list[list[int]], max_new_tokens: int | None = None,
                     on_batch: Callable[[int], None] | None = None) -> list[tuple[list[int], bool]]:
        """Greedy continuations (new token ids up to and including the first EOS, whether it stopped there)."""
        import torch

        limit = max_new_tokens or self.max_new_tokens
        eos = set(self.eos_token_ids)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (
            self.eos_token_ids[0] if self.eos_token_ids else 0)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[tuple[list[int], bool]] = [([], False)] * len(prompts)
        device = getattr(self.model, "device", "cpu")
        for start in range(0, len(order), self.batch_size):
            chosen = order[start:start + self.batch_size]
            width = max(len(prompts[i]) for i in chosen)
            ids = torch.full((len(chosen), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chosen), width), dtype=torch.long)
            for row, i in enumerate(chosen):
                ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
                mask[row, width - len(prompts[i]):] = 1
            with torch.inference_mode():
                out = self.model.generate(ids.to(device), attention_mask=mask.to(device), max_new_tokens=limit,
                                          do_sample=False, temperature=None, top_p=None, top_k=None,
                                          eos_token_id=sorted(eos) or None, pad_token_id=pad)
            for row, i in enumerate(chosen):
                new = [int(t) for t in out[row, width:]]
                stop = next((k for k, t in enumerate(new) if t in eos), None)
                results[i] = (new[:stop + 1], True) if stop is not None else (new, False)
            if on_batch is not None:
                on_batch(len(chosen))
        return results

    def predict(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        prompts = [self.encode(row, f"rows.{i}") for i, row in enumerate(rows)]
        outputs = []
        for new, stopped in self.generate_ids(prompts):
            body = new[:-1] if stopped else new
            outputs.append({"text": self.tokenizer.decode(body, skip_special_tokens=True), "tokens": len(new),
                            "stopped": stopped})
        return outputs

    def close(self) -> None:
        self.model = None


def causal_lm_predictor(artifact: Artifact, options: dict[str, Any]) -> CausalLMPredictor:
    """A ``causal-lm`` (or merged export) or ``causal-lm-adapter`` (merged in memory), on the GPU when there is one."""
    from forge_hf.serve_lm import load_for_inference

    max_new_tokens = int_option(options, "max_new_tokens", 256)
    batch_size = int_option(options, "batch_size", 8)
    model, tokenizer = load_for_inference(artifact)
    generation = getattr(model, "generation_config", None)
    configured = getattr(generation, "eos_token_id", None)
    if (artifact.path / "generation_config.json").exists():
        from transformers import GenerationConfig

        configured = GenerationConfig.from_pretrained(artifact.path).eos_token_id
    eos = configured if isinstance(configured, list) else [configured] if configured is not None else []
    if not eos and tokenizer.eos_token_id is not None:
        eos = [tokenizer.eos_token_id]
    return CausalLMPredictor(model, tokenizer, [int(i) for i in eos], max_new_tokens, batch_size)
