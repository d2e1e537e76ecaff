"""A trained causal LM as the exporters see it: a ``causal-lm`` artifact loaded as is, or a ``causal-lm-adapter``
merged into its full-precision base in memory; plus the held-out prompts its exports are checked on, and the greedy
reference every export format is compared with.

    from forge_hf.causal_lm import load_causal_lm, parity_prompts, greedy_reference
    lm = load_causal_lm(forge.Artifact.load(Path("runs/sft-1")))
    prompts = parity_prompts(artifact, lm.tokenizer, count=8)
    reference = greedy_reference(lm, prompts, max_new_tokens=48)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import forge

CAUSAL_LM_KINDS = ("causal-lm", "causal-lm-adapter")
HELDOUT_FILE = "heldout.jsonl"
# Used only when an artifact kept no held-out split (eval_split=0, or a causal LM made elsewhere).
FALLBACK_PROMPTS = [
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Give me three tips for staying focused.",
    "Translate 'good morning' into Spanish.",
    "What is 12 times 7?",
    "Explain what a neural network is in one sentence.",
    "Name a fruit that is yellow.",
    "How many days are there in a week?",
]


@dataclass
class CausalLM:
    """A causal LM in fp32 on the CPU, its tokenizer and generation config, and how it was obtained."""

    model: Any
    tokenizer: Any
    generation_config: Any
    origin: str  # "causal-lm" or "lora merged in memory"

    @property
    def eos_token_ids(self) -> list[int]:
        """Every token id greedy generation stops at: the generation config's, else the tokenizer's EOS."""
        configured = getattr(self.generation_config, "eos_token_id", None)
        ids = configured if isinstance(configured, list) else [configured] if configured is not None else []
        if not ids and self.tokenizer.eos_token_id is not None:
            ids = [self.tokenizer.eos_token_id]
        return [int(i) for i in ids]


def model_source(artifact: forge.Artifact) -> str:
    """Where the weights' ``config.json`` lives: the artifact itself, or (for an adapter) its base model."""
    from forge_hf.base_model import resolve_base_model

    if artifact.kind == "causal-lm-adapter":
        base, _ = resolve_base_model(artifact)
        return base
    return str(artifact.path)


def model_type(artifact: forge.Artifact) -> str:
    """The transformers ``model_type`` of an artifact's weights, read from a config file (no weights loaded)."""
    source = Path(model_source(artifact))
    config = source / "config.json"
    if config.is_file():
        return str(json.loads(config.read_text(encoding="utf-8")).get("model_type", "?"))
    from transformers import AutoConfig

    return str(AutoConfig.from_pretrained(str(source)).model_type)


def load_causal_lm(artifact: forge.Artifact) -> CausalLM:
    """Load a ``causal-lm`` artifact, or merge a ``causal-lm-adapter`` into its base (fp32, in memory)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    if artifact.kind not in CAUSAL_LM_KINDS:
        raise forge.ForgeError(f"{artifact.path}: a {artifact.kind} artifact is not a causal LM "
                               f"({' or '.join(CAUSAL_LM_KINDS)})")
    source = model_source(artifact)  # an adapter's base passes the base-model policy before anything loads
    tokenizer = AutoTokenizer.from_pretrained(artifact.path)
    if artifact.kind == "causal-lm-adapter":
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, use_safetensors=True)
        model = PeftModel.from_pretrained(base, artifact.path).merge_and_unload()
        origin = "lora merged in memory"
    else:
        model = AutoModelForCausalLM.from_pretrained(artifact.path, dtype=torch.float32, use_safetensors=True)
        origin = "causal-lm"
    model.eval()
    generation = GenerationConfig.from_pretrained(artifact.path) \
        if (artifact.path / "generation_config.json").exists() else model.generation_config
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return CausalLM(model=model, tokenizer=tokenizer, generation_config=generation, origin=origin)


@dataclass
class Prompt:
    """One held-out prompt: its token ids, and (when the record had one) the ids of prompt + reference answer."""

    ids: list[int]
    full_ids: list[int] | None
    text: str


def _render(tokenizer: Any, record: dict[str, Any]) -> Prompt | None:
    has_template = bool(getattr(tokenizer, "chat_template", None))
    prompt = record.get("prompt", record.get("messages"))
    completion = record.get("completion")
    if isinstance(prompt, list) and "messages" in record and completion is None:
        # a plain chat record: everything before the last assistant turn is the prompt
        turns = [m for m in prompt if isinstance(m, dict)]
        last = max((i for i, m in enumerate(turns) if m.get("role") == "assistant"), default=None)
        if last is None or last == 0:
            return None
        prompt, completion = turns[:last], turns[last:]
    if isinstance(prompt, list):
        if not has_template:
            return None
        text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        full = None
        if isinstance(completion, list):
            full_text = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
            full = tokenizer(full_text, add_special_tokens=False)["input_ids"]
        return Prompt(ids=list(ids), full_ids=list(full) if full else None, text=text)
    if isinstance(prompt, str) and prompt:
        ids = tokenizer(prompt)["input_ids"]
        full = tokenizer(prompt + completion)["input_ids"] if isinstance(completion, str) else None
        return Prompt(ids=list(ids), full_ids=list(full) if full else None, text=prompt)
    text = record.get("text")
    if isinstance(text, str) and text:
        full = list(tokenizer(text)["input_ids"])
        cut = max(2, min(len(full) // 2, 64))
        return Prompt(ids=full[:cut], full_ids=full, text=tokenizer.decode(full[:cut]))
    return None


def read_prompt_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise forge.DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise forge.DataError(f"{path}:{number}: expected a JSON object")
        records.append(record)
    return records


def parity_prompts(artifact: forge.Artifact, tokenizer: Any, count: int = 8, file: str | None = None,
                   max_prompt_tokens: int = 256) -> tuple[list[Prompt], str]:
    """Up to ``count`` held-out prompts and where they came from: ``file`` (``--set prompts=FILE``: JSONL with
    ``messages``, ``prompt``/``completion`` or ``text``), else the artifact's ``heldout.jsonl`` (the run's eval
    split), else a built-in list. Prompts longer than ``max_prompt_tokens`` are skipped."""
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise forge.ForgeError(f"--set prompts={file}: no such file")
        records, source = read_prompt_records(path), str(path)
    elif (artifact.path / HELDOUT_FILE).is_file():
        records, source = read_prompt_records(artifact.path / HELDOUT_FILE), f"{HELDOUT_FILE} (the run's eval split)"
    else:
        records, source = [], "built-in prompts (the artifact kept no held-out split)"
    prompts = [p for p in (_render(tokenizer, r) for r in records) if p and 0 < len(p.ids) <= max_prompt_tokens]
    if file is not None and not prompts:
        raise forge.DataError(f"--set prompts={file}: no usable prompt (records need 'messages', 'prompt' or 'text')")
    if not prompts:
        fallback = [{"prompt": [{"role": "user", "content": q}]} if getattr(tokenizer, "chat_template", None)
                    else {"prompt": q} for q in FALLBACK_PROMPTS]
        prompts = [p for p in (_render(tokenizer, r) for r in fallback) if p]
        if records:
            source = "built-in prompts (no usable record in the held-out split)"
    return prompts[:count], source


@dataclass
class Continuation:
    """Greedy generation from one prompt: the new token ids, and whether it stopped at an EOS token."""

    tokens: list[int]
    stopped_at_eos: bool


def greedy_reference(lm: CausalLM, prompts: list[Prompt], max_new_tokens: int) -> list[Continuation]:
    """The merged model's greedy continuation of every prompt (what each export must reproduce)."""
    import torch

    out = []
    eos = set(lm.eos_token_ids)
    for prompt in prompts:
        ids = torch.tensor([prompt.ids])
        with torch.inference_mode():
            generated = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                          do_sample=False, eos_token_id=sorted(eos) or None,
                                          pad_token_id=lm.tokenizer.pad_token_id)
        new = [int(t) for t in generated[0, ids.shape[1]:]]
        stopped = bool(new) and new[-1] in eos
        out.append(Continuation(tokens=new, stopped_at_eos=stopped))
    return out


def eos_budget(reference: Continuation) -> int:
    """How many tokens an export may take to reach the EOS the reference reached: quantization may reword an
    answer a little, but an export that runs on well past it has lost the stop."""
    return 2 * len(reference.tokens) + 16
