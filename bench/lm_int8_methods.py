"""ONNX int8 methods for a causal LM, side by side: the packaged SmolLM2-135M-Instruct traced to ONNX fp32 (as
`forge export --format onnx` traces and rewrites it), then onnxruntime's dynamic int8 (`int8_method=dynamic`),
block-wise int8 (`MatMulNBits`, 8-bit, blocks of 32) with the head left fp32, and forge's default (block-wise, head
untied and quantized). Greedy-token agreement with torch (teacher-forced on torch's greedy continuation), identical
free-running continuations, tokens/s (best of --repeats passes over 4 prompts), file size.

    python bench/lm_int8_methods.py [--prompts 8] [--new-tokens 48] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import chat_prompt_ids, greedy_agreement, shared, torch_greedy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "forge-onnx" / "src"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import onnx
    import torch
    from forge_hf.provider import resolve_model
    from forge_onnx.export import session
    from forge_onnx.export_lm import default_opset, quantize_lm_int8, rewrite_decoder, save_onnx, trace_decoder
    from forge_onnx.lm_runtime import OnnxCausalLM
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="lm-int8-"))
    source, _ = resolve_model("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    fp32 = work / "fp32"
    fp32.mkdir()
    save_onnx(rewrite_decoder(trace_decoder(model, tokenizer, default_opset()), model.config)[0], fp32 / "model.onnx")
    tokenizer.save_pretrained(fp32)
    model.config.save_pretrained(fp32)
    model.generation_config.save_pretrained(fp32)

    def head_fp32(src: Path, dst: Path) -> None:
        quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=8, block_size=32, is_symmetric=True,
                                         accuracy_level=4)
        quantizer.process()
        quantizer.model.save_model_to_file(str(dst), False)

    methods = {
        "int8 dynamic, per-channel weights": lambda s, d: quantize_lm_int8(s, d, True, "dynamic"),
        "int8 block-wise, head fp32": head_fp32,
        "int8 block-wise, head int8 (default)": lambda s, d: quantize_lm_int8(s, d, True, "blockwise", 32),
    }
    directories = {"fp32": fp32}
    for index, (name, make) in enumerate(methods.items()):
        directory = work / f"v{index}"
        shutil.copytree(fp32, directory, ignore=shutil.ignore_patterns("model.onnx*"))
        make(fp32 / "model.onnx", directory / "model.onnx")
        directories[name] = directory

    prompts = chat_prompt_ids(tokenizer, shared("instruct_heldout.jsonl"), args.prompts)
    n = args.new_tokens
    torch_generate = torch_greedy(model, tokenizer.eos_token_id, n)

    reference = [torch_generate(ids) for ids in prompts]
    runtimes = {name: OnnxCausalLM(d, session=session(d / "model.onnx", args.threads))
                for name, d in directories.items()}
    def onnx_generate(runtime: OnnxCausalLM) -> Callable[[list[int]], list[int]]:
        return lambda ids: runtime.generate(ids, max_new_tokens=n, stop_ids=[])

    engines = {"torch eager": torch_generate, **{name: onnx_generate(r) for name, r in runtimes.items()}}
    rates: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(args.repeats):  # engines alternate within each repeat
        for name, generate in engines.items():
            start = time.perf_counter()
            produced = sum(len(generate(ids)) for ids in prompts[:4])
            rates[name].append(produced / (time.perf_counter() - start))
    base = max(rates["torch eager"])
    print(f"SmolLM2-135M-Instruct, {len(prompts)} prompts x {n} tokens, {args.threads} threads, best of "
          f"{args.repeats}")
    print("| engine | file MB | tokens/s | vs torch | greedy-token agreement | identical continuations |")
    print("|---|---|---|---|---|---|")
    print(f"| torch eager | - | {base:.1f} | 1.00x | 100% | 100% |")
    for name, runtime in runtimes.items():
        agreement = greedy_agreement(runtime.logits, prompts, reference)
        exact = sum(runtime.generate(ids, max_new_tokens=n, stop_ids=[]) == ref
                    for ids, ref in zip(prompts, reference, strict=True)) / len(prompts)
        mb = sum(f.stat().st_size for f in directories[name].glob("model.onnx*")) / 2**20
        rate = max(rates[name])
        print(f"| ONNX {name} | {mb:.0f} | {rate:.1f} | {rate / base:.2f}x | {agreement:.1%} | {exact:.0%} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
