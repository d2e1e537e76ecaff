"""Evaluators for causal LMs (``causal-lm``, ``causal-lm-adapter`` merged in memory, and merged exports, which are
``causal-lm`` artifacts): ``perplexity``, ``exact-match`` and ``generation-checks``.

    forge eval runs/sft-1 --suite perplexity                      # default data: the run's heldout.jsonl
    forge eval runs/sft-1 --suite exact-match --data gsm8k.jsonl --set batch_size=16 --set max_new_tokens=256
    forge eval runs/sft-1/exports/merged --suite generation-checks --set n=16

Every suite loads the model with ``forge.load_predictor`` (GPU when there is one) and generates greedily, batched
with left padding. Data is JSONL (or JSON/CSV/Parquet) records: ``messages`` (chat), ``prompt``/``completion``
(text or chat) or ``text``; ``exact-match`` reads ``question``/``answer`` (names set by ``question_column`` and
``answer_column``). Without ``--data`` the held-out split an ``sft`` run kept (``heldout.jsonl``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from forge import Artifact, ConfigError, DataError, EvalRequest, EvalResult, ForgeError
from forge.artifacts import parent_directory

HELDOUT = "heldout.jsonl"


# --- shared ---------------------------------------------------------------------------------------------------

def check_options(options: dict[str, Any], known: set[str], suite: str) -> None:
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"--set {unknown[0]}: the {suite} suite takes {', '.join(sorted(known))}")


def int_option(options: dict[str, Any], name: str, default: int, minimum: int = 1) -> int:
    from forge_hf.predict import int_option as parse

    return parse(options, name, default, minimum)


def bool_option(options: dict[str, Any], name: str, default: bool) -> bool:
    value = options.get(name, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"--set {name}={value}: expected true or false")


def default_data(artifact: Artifact, suite: str) -> Path | None:
    """The held-out split an sft run kept, beside the artifact or the one it was exported from."""
    candidates = [artifact.path / HELDOUT]
    parent = parent_directory(artifact.path, artifact.manifest)
    if parent:
        candidates.append(parent / HELDOUT)
    return next((c for c in candidates if c.is_file() and c.stat().st_size), None)


def read_records(artifact: Artifact, data: Path | None, suite: str) -> tuple[list[dict[str, Any]], list[str], Path]:
    """Records, their locations (``file:line``) and the file: ``--data`` or the held-out split."""
    from forge_hf import training_data

    if data is None:
        found = default_data(artifact, suite)
        if found is None:
            raise ForgeError(f"{artifact.path}: no held-out split kept with this artifact; give a file: --data FILE")
        data = found
    data = Path(data)
    if not data.is_file():
        raise DataError(f"{data}: no such file")
    rows = training_data.read_rows(str(data))
    if not rows.records:
        raise DataError(f"{data}: no records")
    return rows.records, rows.where, data


def load_lm(artifact: Artifact, batch_size: int, max_new_tokens: int = 256) -> Any:
    import forge

    from forge_hf.predict import CausalLMPredictor

    predictor = forge.load_predictor(artifact, {"batch_size": batch_size, "max_new_tokens": max_new_tokens})
    if not isinstance(predictor, CausalLMPredictor):
        predictor.close()
        raise ForgeError(f"{artifact.path}: the {artifact.kind} predictor is not a transformers causal LM")
    return predictor


def has_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_ids(tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def split_chat(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Everything before the last assistant turn, and that turn onwards (empty when there is none)."""
    turns = [m for m in messages if isinstance(m, dict)]
    last = max((i for i, m in enumerate(turns) if m.get("role") == "assistant"), default=None)
    if last is None or last == 0:
        return turns, []
    return turns[:last], turns[last:]


def is_chat(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and isinstance(m.get("content"), str) for m in value)


def progress_chunks(request: EvalRequest, total: int, desc: str) -> tuple[Any, Callable[[int], None]]:
    bar = request.progress(total=total, desc=desc)

    def advance(count: int) -> None:
        if bar is not None:
            bar.update(count)

    return bar, advance


def generate_all(lm: Any, prompts: list[list[int]], max_new_tokens: int, request: EvalRequest,
                 desc: str) -> list[tuple[list[int], bool]]:
    """Greedy continuations of every prompt, sorted by length into batches; Ctrl-C is checked between batches."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[tuple[list[int], bool]] = [([], False)] * len(prompts)
    bar, advance = progress_chunks(request, len(prompts), desc)
    for start in range(0, len(order), lm.batch_size):
        if request.should_stop():
            raise KeyboardInterrupt
        chosen = order[start:start + lm.batch_size]
        for i, out in zip(chosen, lm.generate_ids([prompts[i] for i in chosen], max_new_tokens), strict=True):
            results[i] = out
        advance(len(chosen))
    if bar is not None:
        bar.close()
    return results


def decode(lm: Any, ids: list[int], stopped: bool) -> str:
    return str(lm.tokenizer.decode(ids[:-1] if stopped else ids, skip_special_tokens=True))


# --- perplexity -----------------------------------------------------------------------------------------------

PERPLEXITY_OPTIONS = {"batch_size", "max_length", "target", "limit"}


def perplexity(artifact: Artifact, request: EvalRequest) -> EvalResult:
    """Token-weighted perplexity, exp(Σ NLL / Σ tokens), of the completions (``target=completion``: the answer given
    the prompt; the whole text of ``text`` records) or of every token (``target=all``)."""
    from forge.evaluation import bootstrap_interval

    options = dict(request.options)
    check_options(options, PERPLEXITY_OPTIONS, "perplexity")
    batch_size = int_option(options, "batch_size", 8)
    max_length = int_option(options, "max_length", 2048, minimum=2)
    limit = int_option(options, "limit", 0, minimum=0)
    target = str(options.get("target", "completion"))
    if target not in ("completion", "all"):
        raise ConfigError(f"--set target={target}: expected completion or all")
    records, where, data = read_records(artifact, request.data, "perplexity")
    if limit:
        records, where = records[:limit], where[:limit]
    with load_lm(artifact, batch_size) as lm:
        sequences = [segment(lm.tokenizer, r, w, target, max_length) for r, w in zip(records, where, strict=True)]
        request.log(f"perplexity: {len(sequences)} records from {data}; scoring {target} tokens")
        scored = score_sequences(lm, [(ids, start) for ids, start, _, _ in sequences], request)
    nll = np.array([s for s, _ in scored], dtype=np.float64)
    counts = np.array([n for _, n in scored], dtype=np.float64)
    keep = counts > 0
    if not keep.any():
        raise DataError(f"{data}: no record has a token to score (target={target})")
    total = nll[keep].sum() / counts[keep].sum()
    example_nll = (nll[keep] / counts[keep]).tolist()
    kept_nll, kept_counts = nll[keep], counts[keep]

    def ratio(indices: np.ndarray) -> float:
        return float(kept_nll[indices].sum() / kept_counts[indices].sum())

    low, high = bootstrap_interval(int(keep.sum()), ratio, seed=request.seed)
    metrics = {"perplexity": math.exp(total), "nll": float(total), "example_nll": float(np.mean(example_nll)),
               "tokens": float(counts.sum())}
    records_out = []
    for (_ids, _start, prompt, expected), s, n in zip(sequences, nll, counts, strict=True):
        records_out.append({"input": prompt, "expected": expected, "output": None,
                            "score": float(s / n) if n else None, "tokens": int(n),
                            "perplexity": math.exp(s / n) if n else None})
    request.log(f"perplexity {metrics['perplexity']:.3f} over {int(counts.sum())} tokens "
                f"(95% interval {math.exp(low):.3f}-{math.exp(high):.3f})")
    skipped = int((~keep).sum())
    if skipped:
        request.log(f"warning: {skipped} records had no token to score (empty, or cut by max_length={max_length})")
    return EvalResult(metrics=metrics, records=records_out, per_example={"example_nll": example_nll},
                      intervals={"nll": (low, high), "perplexity": (math.exp(low), math.exp(high))},
                      extra={"data": str(data), "target": target, "records": len(records), "skipped": skipped,
                             "max_length": max_length})


def segment(tokenizer: Any, record: dict[str, Any], where: str, target: str,
            max_length: int) -> tuple[list[int], int, str, str]:
    """(token ids, first scored position, prompt text, scored text) of one record."""
    prompt, completion = record.get("prompt"), record.get("completion")
    if "messages" in record:
        if not is_chat(record["messages"]):
            raise DataError(f"{where}: 'messages' must be a list of {{'role', 'content'}} objects")
        prompt, completion = split_chat(record["messages"])
        if not completion:
            prompt, completion = [], record["messages"]
    if is_chat(prompt) or is_chat(completion):
        if not has_template(tokenizer):
            raise DataError(f"{where}: chat records need a tokenizer with a chat template; this one has none")
        head = chat_ids(tokenizer, prompt, generation_prompt=True) if prompt else []
        full = chat_ids(tokenizer, list(prompt or []) + list(completion or []), generation_prompt=False)
        start = len(head) if full[:len(head)] == head else 1
        shown = tokenizer.decode(head) if head else ""
        scored = "\n".join(m["content"] for m in completion or [])
    elif isinstance(prompt, str) and isinstance(completion, str):
        head = list(tokenizer(prompt)["input_ids"])
        full = list(tokenizer(prompt + completion)["input_ids"])
        start = len(head) if full[:len(head)] == head else 1
        shown, scored = prompt, completion
    elif isinstance(record.get("text"), str) and record["text"]:
        full, start, shown, scored = list(tokenizer(record["text"])["input_ids"]), 1, "", record["text"]
    else:
        raise DataError(f"{where}: needs 'messages', 'prompt' and 'completion', or 'text' "
                        f"(fields: {', '.join(map(str, record))})")
    if target == "all":
        start = 1
    return full[:max_length], max(1, start), shown, scored


def score_sequences(lm: Any, sequences: list[tuple[list[int], int]], request: EvalRequest) -> list[tuple[float, int]]:
    """(Σ NLL, scored tokens) of each sequence: positions >= start predicted from the tokens before them."""
    import torch

    model = lm.model
    device = getattr(model, "device", "cpu")
    pad = lm.tokenizer.pad_token_id or 0
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    results: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    bar, advance = progress_chunks(request, len(sequences), "scoring")
    for begin in range(0, len(order), lm.batch_size):
        if request.should_stop():
            raise KeyboardInterrupt
        chosen = [i for i in order[begin:begin + lm.batch_size]]
        width = max(len(sequences[i][0]) for i in chosen)
        ids = torch.full((len(chosen), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chosen), width), dtype=torch.long)
        for row, i in enumerate(chosen):
            seq = sequences[i][0]
            ids[row, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, :len(seq)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for row, i in enumerate(chosen):
                seq, start = sequences[i]
                if len(seq) <= start:
                    results[i] = (0.0, 0)
                    continue
                # logits at t predict token t+1: positions start..len-1 are predicted by start-1..len-2
                predicted = logits[row, start - 1:len(seq) - 1].float()
                targets = ids[row, start:len(seq)].to(predicted.device)
                loss = torch.nn.functional.cross_entropy(predicted, targets, reduction="sum")
                results[i] = (float(loss), len(seq) - start)
        advance(len(chosen))
    if bar is not None:
        bar.close()
    return results


# --- exact match ----------------------------------------------------------------------------------------------

EXACT_MATCH_OPTIONS = {"batch_size", "max_new_tokens", "extract", "regex", "question_column", "answer_column",
                       "chat", "system", "limit"}
NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
GSM8K = re.compile(r"####\s*([^\n]+)")


def normalise(text: str) -> str:
    """Strip, lowercase, collapse spaces, drop a final period; numbers lose ``$`` and thousands commas
    (``$1,234.50`` → ``1234.5``)."""
    value = " ".join(str(text).strip().lower().split()).rstrip(".").strip()
    candidate = value.replace(",", "").replace("$", "").strip()
    try:
        number = float(candidate)
    except ValueError:
        return value
    if math.isfinite(number):
        return str(int(number)) if number == int(number) else repr(number)
    return value


def extract_answer(text: str, mode: str, pattern: re.Pattern[str] | None) -> str | None:
    """The final answer in ``text``: ``gsm8k`` the text after the last ``####`` (else the last number), ``regex``
    group 1 (or the whole match) of the last match, ``whole`` the whole text. ``None`` when nothing is found."""
    if mode == "regex" and pattern is not None:
        matches = list(pattern.finditer(text))
        if not matches:
            return None
        last = matches[-1]
        return last.group(1) if pattern.groups else last.group(0)
    if mode == "gsm8k":
        marked = GSM8K.findall(text)
        if marked:
            return str(marked[-1]).strip()
        numbers = NUMBER.findall(text)
        return numbers[-1] if numbers else None
    return text


def expected_text(record: dict[str, Any], column: str) -> str | None:
    value: Any = record.get(column)
    if value is None and column == "answer":
        value = record.get("completion")
        if value is None and is_chat(record.get("messages")):
            value = split_chat(record["messages"])[1]
    if is_chat(value):
        value = value[-1]["content"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) else None


def question_of(record: dict[str, Any], column: str | None) -> Any:
    if column is not None:
        return record.get(column)
    for name in ("question", "prompt", "input"):
        if name in record:
            return record[name]
    if is_chat(record.get("messages")):
        return split_chat(record["messages"])[0]
    return None


def exact_match(artifact: Artifact, request: EvalRequest) -> EvalResult:
    options = dict(request.options)
    check_options(options, EXACT_MATCH_OPTIONS, "exact-match")
    batch_size = int_option(options, "batch_size", 8)
    max_new_tokens = int_option(options, "max_new_tokens", 256)
    limit = int_option(options, "limit", 0, minimum=0)
    regex = options.get("regex")
    if regex is not None and not isinstance(regex, str):
        raise ConfigError(f"--set regex={regex}: read as {type(regex).__name__}, not text; quote it: "
                          "--set 'regex=\"PATTERN\"'")
    mode = str(options.get("extract", "regex" if regex else "auto"))
    if mode not in ("auto", "gsm8k", "regex", "whole"):
        raise ConfigError(f"--set extract={mode}: expected auto, gsm8k, regex or whole")
    pattern = None
    if mode == "regex":
        if not regex:
            raise ConfigError("--set extract=regex needs --set regex=PATTERN")
        try:
            pattern = re.compile(str(regex))
        except re.error as exc:
            raise ConfigError(f"--set regex={regex}: not a regular expression ({exc})") from None
    question_column = options.get("question_column")
    answer_column = str(options.get("answer_column", "answer"))
    records, where, data = read_records(artifact, request.data, "exact-match")
    if limit:
        records, where = records[:limit], where[:limit]
    expected = []
    for record, place in zip(records, where, strict=True):
        answer = expected_text(record, answer_column)
        if answer is None:
            raise DataError(f"{place}: missing answer field '{answer_column}' (--set answer_column=NAME; fields: "
                            f"{', '.join(map(str, record))})")
        expected.append(answer)
    if mode == "auto":
        mode = "gsm8k" if any("####" in a for a in expected) else "whole"
    with load_lm(artifact, batch_size, max_new_tokens) as lm:
        chat = bool_option(options, "chat", has_template(lm.tokenizer))
        system = options.get("system")
        prompts, shown = [], []
        for record, place in zip(records, where, strict=True):
            question = question_of(record, None if question_column is None else str(question_column))
            if isinstance(question, str) and question and chat:
                question = ([{"role": "system", "content": str(system)}] if system else []) + [
                    {"role": "user", "content": question}]
            if is_chat(question):
                if not has_template(lm.tokenizer):
                    raise DataError(f"{place}: a chat prompt needs a tokenizer with a chat template")
                prompts.append(chat_ids(lm.tokenizer, question, generation_prompt=True))
                shown.append(question[-1]["content"])
            elif isinstance(question, str) and question:
                prompts.append(list(lm.tokenizer(question)["input_ids"]))
                shown.append(question)
            else:
                name = question_column or "question"
                raise DataError(f"{place}: missing question field '{name}' (--set question_column=NAME; fields: "
                                f"{', '.join(map(str, record))})")
        request.log(f"exact-match: {len(prompts)} questions from {data}, answers extracted by {mode}; batches of "
                    f"{batch_size}, at most {max_new_tokens} new tokens")
        outputs = generate_all(lm, prompts, max_new_tokens, request, "generating")
        texts = [decode(lm, ids, stopped) for ids, stopped in outputs]
    scores, out_records = [], []
    for question, answer, text, (ids, stopped) in zip(shown, expected, texts, outputs, strict=True):
        want = extract_answer(answer, "gsm8k", None) if mode == "gsm8k" else answer
        got = extract_answer(text, mode, pattern)
        score = float(got is not None and want is not None and normalise(got) == normalise(want))
        scores.append(score)
        out_records.append({"input": question, "expected": want, "output": text, "extracted": got,
                            "score": score, "tokens": len(ids), "stopped": stopped})
    stopped_share = [float(s) for _, s in outputs]
    metrics = {"exact_match": float(np.mean(scores)), "stopped": float(np.mean(stopped_share)),
               "mean_new_tokens": float(np.mean([len(ids) for ids, _ in outputs]))}
    request.log(f"exact-match {metrics['exact_match']:.3f} on {len(scores)} questions; "
                f"{metrics['stopped']:.0%} stopped at EOS")
    return EvalResult(metrics=metrics, records=out_records,
                      per_example={"exact_match": scores, "stopped": stopped_share},
                      extra={"data": str(data), "extract": mode, "regex": regex, "max_new_tokens": max_new_tokens,
                             "batch_size": batch_size, "chat": chat})


# --- generation checks ----------------------------------------------------------------------------------------

CHECK_OPTIONS = {"n", "batch_size", "max_new_tokens"}


def template_markers(tokenizer: Any) -> list[str]:
    """Special tokens the chat template writes (``<|im_start|>``, ``<|im_end|>``...)."""
    source = str(getattr(tokenizer, "chat_template", "") or "")
    specials = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(token, "special", False):
            specials.add(str(token.content))
    return sorted((s for s in specials if s and s in source), key=len, reverse=True)


def roundtrip(tokenizer: Any, conversation: list[dict[str, Any]], markers: list[str],
              eos_ids: list[int]) -> dict[str, Any]:
    """Render ``conversation`` with the chat template; the template's own ids must equal a re-tokenisation of its
    text, every marker must be one token (not split into pieces), and the turn must end with an EOS token."""
    text = tokenizer.apply_chat_template(conversation, tokenize=False)
    direct = tokenizer.apply_chat_template(conversation, tokenize=True)
    if hasattr(direct, "keys") and "input_ids" in direct:
        direct = direct["input_ids"]
    direct = [int(i) for i in direct]
    again = [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    found = [m for m in markers if m in text]
    split = [m for m in found if text.count(m) != again.count(tokenizer.convert_tokens_to_ids(m))]
    contents = all(str(m["content"]) in text for m in conversation)
    reply = str(conversation[-1]["content"])
    after = text[text.rfind(reply) + len(reply):] if reply else ""
    closing = next((m for m in markers if after.startswith(m)), None)
    ends_turn = closing is not None and tokenizer.convert_tokens_to_ids(closing) in eos_ids
    return {"same_ids": direct == again, "markers": found, "split_markers": split, "contents": contents,
            "turn_end": closing, "turn_end_is_eos": ends_turn,
            "ok": direct == again and bool(found) and not split and contents}


def generation_checks(artifact: Artifact, request: EvalRequest) -> EvalResult:
    """On ``n`` prompts: does greedy generation stop at an EOS token within ``max_new_tokens``; does the chat
    template round-trip (ids, markers, contents) with the model's own reply; does its end-of-turn marker stop
    generation (is it an EOS token)."""
    from forge_hf.causal_lm import FALLBACK_PROMPTS

    options = dict(request.options)
    check_options(options, CHECK_OPTIONS, "generation-checks")
    n = int_option(options, "n", 16)
    batch_size = int_option(options, "batch_size", 8)
    max_new_tokens = int_option(options, "max_new_tokens", 256)
    if request.data is not None or default_data(artifact, "generation-checks") is not None:
        records, where, data = read_records(artifact, request.data, "generation-checks")
        source = str(data)
    else:
        records, where = [], []
        source = "built-in prompts (no held-out split kept)"
    with load_lm(artifact, batch_size, max_new_tokens) as lm:
        tokenizer = lm.tokenizer
        templated = has_template(tokenizer)
        prompts: list[Any] = []  # chat messages or text
        for record, place in zip(records, where, strict=True):
            prompt = record.get("prompt", record.get("messages"))
            if "messages" in record and is_chat(record["messages"]):
                prompt = split_chat(record["messages"])[0]
            if is_chat(prompt) or (isinstance(prompt, str) and prompt):
                prompts.append(prompt)
            elif isinstance(record.get("text"), str) and record["text"]:
                prompts.append(record["text"][: max(1, len(record["text"]) // 2)])
            else:
                raise DataError(f"{place}: needs 'messages', 'prompt' or 'text'")
            if len(prompts) >= n:
                break
        if not prompts:
            prompts = [[{"role": "user", "content": q}] if templated else q for q in FALLBACK_PROMPTS][:n]
        ids = []
        for prompt in prompts:
            if is_chat(prompt) and not templated:
                raise DataError(f"{source}: chat prompts need a chat template; this tokenizer has none")
            if isinstance(prompt, list):
                ids.append(chat_ids(tokenizer, prompt, True))
            else:
                ids.append(list(tokenizer(prompt)["input_ids"]))
        request.log(f"generation-checks: {len(prompts)} prompts from {source}; at most {max_new_tokens} new tokens"
                    f"{'' if templated else '; no chat template: only the stop check'}")
        outputs = generate_all(lm, ids, max_new_tokens, request, "generating")
        markers = template_markers(tokenizer) if templated else []
        records_out, stops, trips, turn_ends = [], [], [], []
        for prompt, (new, stopped) in zip(prompts, outputs, strict=True):
            text = decode(lm, new, stopped)
            entry: dict[str, Any] = {"input": prompt, "output": text, "tokens": len(new), "stopped": stopped}
            stops.append(float(stopped))
            if templated and is_chat(prompt):
                check = roundtrip(tokenizer, [*list(prompt), {"role": "assistant", "content": text}], markers,
                                  lm.eos_token_ids)
                trips.append(float(check["ok"]))
                turn_ends.append(float(check["turn_end_is_eos"]))
                entry["template"] = check
                entry["score"] = float(stopped and check["ok"])
            else:
                entry["score"] = float(stopped)
            records_out.append(entry)
    metrics = {"stop_rate": float(np.mean(stops)), "mean_new_tokens": float(np.mean([len(t) for t, _ in outputs]))}
    per_example: dict[str, Sequence[float]] = {"stop_rate": stops}
    if trips:
        metrics["roundtrip_rate"] = float(np.mean(trips))
        metrics["turn_end_is_eos"] = float(np.mean(turn_ends))
        per_example.update(roundtrip_rate=trips, turn_end_is_eos=turn_ends)
    summary = f"generation-checks: {metrics['stop_rate']:.0%} stopped at EOS within {max_new_tokens} tokens"
    if trips:
        summary += (f"; chat template round-trips on {metrics['roundtrip_rate']:.0%}, its end-of-turn marker is an "
                    f"EOS token on {metrics['turn_end_is_eos']:.0%}")
    request.log(summary)
    return EvalResult(metrics=metrics, records=records_out, per_example=per_example,
                      extra={"prompts": source, "max_new_tokens": max_new_tokens, "chat_template": templated,
                             "markers": markers, "eos_token_ids": lm.eos_token_ids})


