"""SmolLM2-135M fine-tune in every deployable format, side by side: greedy-generation tokens/s of torch eager, ONNX
Runtime fp32 and int8 (block-wise, the default, and dynamic), and (when llama-cpp-python is installed) llama.cpp
q8_0 and q4_0, with file sizes and agreement with torch's greedy tokens.

    python bench/lm_formats.py [--steps 10] [--prompts 8] [--new-tokens 64] [--repeats 3]

Trains `sft` (LoRA) on the packaged example chats, exports through the real CLI (parity-checked there), then times
every engine on GSM8K held-out questions (../shared/data/instruct_heldout.jsonl), the engines alternating within
each repeat; all use the machine's cores. Each prompt generates exactly --new-tokens tokens (stops off) so the
rates compare like for like. The exporters' parity gates are opened (their figures are printed at the end).
Agreement: share of torch's greedy tokens each engine predicts (teacher-forced on
torch's continuation); exact: share of prompts whose free-running greedy continuation is identical.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import forge, greedy_agreement, shared, torch_greedy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "forge-onnx" / "src"))


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(f.stat().st_size for f in files) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import forge as forge_api
    import torch
    from forge_hf.causal_lm import load_causal_lm
    from forge_onnx.lm_runtime import OnnxCausalLM

    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    work = Path(tempfile.mkdtemp(prefix="lm-formats-"))
    heldout = shared("instruct_heldout.jsonl")
    print(f"training sft ({args.steps} steps) in {work}", flush=True)
    forge("run", "--recipe", "sft", "--set", f"max_steps={args.steps}", "-o", "run", "--no-tracking", cwd=work)
    run = work / "run"
    # the gates are opened (their figures are still recorded): this script measures, it does not judge
    lenient = ["--set", "min_token_agreement=0", "--set", "require_eos=false"]
    exports = {"onnx-fp32": ["--format", "onnx"],
               "onnx-int8": ["--format", "onnx", "--quantize", "int8", "--set", "max_perplexity_increase=10",
                             *lenient],
               "onnx-int8-dynamic": ["--format", "onnx", "--quantize", "int8", "--set", "int8_method=dynamic",
                                     "--set", "max_perplexity_increase=10", *lenient]}
    have_llama_cpp = importlib.util.find_spec("llama_cpp") is not None
    if have_llama_cpp:
        exports.update({"gguf-q8_0": ["--format", "gguf", "--quantize", "q8_0", *lenient],
                        "gguf-q4_0": ["--format", "gguf", "--quantize", "q4_0", *lenient]})
    export_seconds = {}
    for label, flags in exports.items():
        print(f"exporting {label}", flush=True)
        export_seconds[label] = forge("export", run, *flags, "-o", f"exports/{label}", "--set",
                                      f"prompts={heldout}", cwd=work)["wall"]

    lm = load_causal_lm(forge_api.Artifact.load(run))
    records = [json.loads(x) for x in heldout.read_text().splitlines()[: args.prompts]]
    prompts = []
    for record in records:
        text = lm.tokenizer.apply_chat_template(record["messages"][:1], add_generation_prompt=True, tokenize=False)
        prompts.append((text, lm.tokenizer(text, add_special_tokens=False)["input_ids"]))
    n = args.new_tokens

    torch_generate = torch_greedy(lm.model, lm.tokenizer.pad_token_id, n)

    def torch_logits(ids: list[int]) -> np.ndarray:
        with torch.inference_mode():
            return lm.model(torch.tensor([ids])).logits[0].numpy()

    engines = {"torch eager (fp32)": (torch_generate, torch_logits, size_mb(Path(lm.model.name_or_path)))}
    for label in ("onnx-fp32", "onnx-int8", "onnx-int8-dynamic"):
        runtime = OnnxCausalLM(work / "exports" / label)
        engines[f"ONNX Runtime {label[5:]}"] = (
            lambda ids, r=runtime: r.generate(ids, max_new_tokens=n, stop_ids=[]), runtime.logits,
            size_mb(work / "exports" / label / "model.onnx"))
    if have_llama_cpp:
        from forge_hf.llama_cpp_runtime import LlamaCppCausalLM

        for label in ("gguf-q8_0", "gguf-q4_0"):
            path = next((work / "exports" / label).glob("*.gguf"))
            runtime = LlamaCppCausalLM(path, n_ctx=1024, logits_all=False)
            scorer = LlamaCppCausalLM(path, n_ctx=1024, logits_all=True)
            engines[f"llama.cpp {label[5:]}"] = (
                lambda ids, r=runtime: r.generate(ids, max_new_tokens=n, stop_ids=[]), scorer.logits, size_mb(path))

    reference = [torch_generate(ids) for _, ids in prompts]
    rates: dict[str, list[float]] = {name: [] for name in engines}
    outputs: dict[str, list[list[int]]] = {}
    for repeat in range(args.repeats):
        for name, (generate, _, _) in engines.items():
            start = time.perf_counter()
            produced = [generate(ids) for _, ids in prompts]
            seconds = time.perf_counter() - start
            rates[name].append(sum(len(p) for p in produced) / seconds)
            outputs[name] = produced
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.1f} tok/s" for k, v in rates.items()), flush=True)

    base = statistics.median(rates["torch eager (fp32)"])
    print(f"\nSmolLM2-135M-Instruct + LoRA ({args.steps} steps), {len(prompts)} GSM8K held-out prompts x {n} new "
          f"tokens, greedy, {threads} threads, median of {args.repeats}")
    print("| engine | file MB | tokens/s | vs torch | greedy-token agreement | exact continuations |")
    print("|---|---|---|---|---|---|")
    for name, (_, logits_of, mb) in engines.items():
        agreement = greedy_agreement(logits_of, [ids for _, ids in prompts], reference)
        exact = sum(o == r for o, r in zip(outputs[name], reference, strict=True)) / len(reference)
        rate = statistics.median(rates[name])
        print(f"| {name} | {mb:.0f} | {rate:.1f} | {rate / base:.2f}x | {agreement:.1%} | {exact:.0%} |")
    print("\nexport wall seconds (parity checks included): "
          + ", ".join(f"{k} {v:.0f}" for k, v in export_seconds.items()))
    for label in exports:
        parity = json.loads((work / "exports" / label / "forge.json").read_text())["parity"]
        print(label, json.dumps(parity))


if __name__ == "__main__":
    main()
