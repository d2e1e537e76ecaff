"""Where ONNX Runtime's decode time goes for a causal LM, and what each lever buys: the packaged
SmolLM2-135M-Instruct traced as `forge export --format onnx` traces it (opset 20, the former default, and opset 23,
where RMSNorm, rotary embedding and attention come out as single ONNX ops), with and without forge_onnx.lm_graph's
rewrites (KV heads not repeated for grouped-query attention; q/k/v and gate/up MatMuls packed into one each),
and with the rotary/cache/attention nodes of each layer fused into one GroupQueryAttention, each fp32 and block-wise
int8 (the exporter's default quantization); the generation loop with IO binding (the cache kept as OrtValues),
with spinning threads, with one thread.

    python bench/lm_onnx_speed.py [--prompts 8] [--timed 4] [--new-tokens 48] [--repeats 3] [--threads 2] [--profile]

Greedy tokens/s over --timed prompts x --new-tokens (stops off), engines alternating within each repeat, median;
torch eager = HF generate with KV cache at --threads threads, as bench/lm_formats.py times it. Agreement: share of
torch's greedy tokens each engine predicts, teacher-forced on torch's continuation, over --prompts prompts.
--profile: one generation per engine under onnxruntime's profiler, kernel time per op type vs the wall time of the
run calls (what is left is onnxruntime's per-call and per-node overhead plus the Python loop).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import chat_prompt_ids, greedy_agreement, shared, torch_greedy

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "forge-onnx" / "src"))


def profile(directory: Path, threads: int, prompt: list[int], n: int, io_binding: bool) -> dict[str, Any]:
    import onnxruntime as ort
    from forge_onnx.lm_runtime import OnnxCausalLM

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.enable_profiling = True
    opts.profile_file_prefix = str(directory / "profile")
    session = ort.InferenceSession(str(directory / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    runtime = OnnxCausalLM(directory, session=session, io_binding=io_binding)
    start = time.perf_counter()
    runtime.generate(prompt, max_new_tokens=n, stop_ids=[])
    wall = time.perf_counter() - start
    events = json.loads(Path(session.end_profiling()).read_text())
    kernels: dict[str, float] = defaultdict(float)
    runs, nodes = [], 0
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernels[event["args"]["op_name"]] += event["dur"] / 1e6
            nodes += 1
        elif event.get("cat") == "Session" and event["name"] == "model_run":
            runs.append(event["dur"] / 1e6)
    return {"wall": wall, "run": sum(runs), "runs": len(runs), "kernel": sum(kernels.values()),
            "nodes_per_run": nodes / max(len(runs), 1),
            "top": sorted(kernels.items(), key=lambda kv: -kv[1])[:8]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--timed", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--int8-only", action="store_true", help="time the int8 graphs only (less memory)")
    parser.add_argument("--variants", default="o20,o23,o23+rw,o23+gqa")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="alias or model directory")
    parser.add_argument("--work", type=Path, help="keep the graphs here, and reuse those already there")
    parser.add_argument("--session-variants", default="first,last", help="int8 graphs also timed without IO "
                        "binding, with spinning threads, with one thread: first, last, or none")
    args = parser.parse_args()
    import onnx
    import onnx_ir
    import torch
    from forge_hf.provider import resolve_model
    from forge_onnx.export import session
    from forge_onnx.export_lm import quantize_lm_int8, save_onnx, trace_decoder
    from forge_onnx.lm_graph import drop_repeat_kv, fuse_group_query_attention, pack_matmuls
    from forge_onnx.lm_runtime import OnnxCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="lm-onnx-speed-"))
    work.mkdir(exist_ok=True)
    source, _ = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()

    def sidecars(directory: Path) -> None:
        directory.mkdir()
        tokenizer.save_pretrained(directory)
        model.config.save_pretrained(directory)
        model.generation_config.save_pretrained(directory)

    directories: dict[str, Path] = {}
    traced: dict[int, Path] = {}
    for variant in args.variants.split(","):
        opset = int(variant[1:3])
        if opset not in traced and not (work / f"{variant}-int8" / "model.onnx").exists():
            print(f"tracing opset {opset}", flush=True)
            traced[opset] = work / f"trace{opset}.onnx"
            if not traced[opset].exists():
                save_onnx(trace_decoder(model, tokenizer, opset), traced[opset])
        fp32, int8 = work / f"{variant}-fp32", work / f"{variant}-int8"
        directories[f"{variant} fp32"] = fp32
        directories[f"{variant} int8"] = int8
        if (int8 / "model.onnx").exists():
            continue
        shutil.rmtree(fp32, ignore_errors=True)
        shutil.rmtree(int8, ignore_errors=True)
        sidecars(fp32)
        if "+" in variant:  # +rw: drop_repeat_kv and pack_matmuls; +gqa: and GroupQueryAttention
            proto = onnx.load(str(traced[opset]))
            counts = [drop_repeat_kv(proto), pack_matmuls(proto)]
            if variant.endswith("+gqa"):
                config = model.config
                counts.append(fuse_group_query_attention(proto, config.num_attention_heads,
                                                         config.num_key_value_heads, config.max_position_embeddings))
            print(f"{variant}: repeat_kv dropped, matmuls packed, GQA: {counts}", flush=True)
            save_onnx(onnx_ir.from_proto(proto), fp32 / "model.onnx")
        else:
            shutil.copy(traced[opset], fp32 / "model.onnx")
        sidecars(int8)
        quantize_lm_int8(fp32 / "model.onnx", int8 / "model.onnx", True)

    prompts = chat_prompt_ids(tokenizer, shared("instruct_heldout.jsonl"), args.prompts)
    n = args.new_tokens
    torch_generate = torch_greedy(model, tokenizer.eos_token_id, n)

    reference = [torch_generate(ids) for ids in prompts]
    runtimes = {name: OnnxCausalLM(d, session=session(d / "model.onnx", args.threads))
                for name, d in directories.items() if name.endswith("int8") or not args.int8_only}
    # session and loop settings, on the first and the last int8 graph
    int8s = [name for name in runtimes if name.endswith("int8")]
    chosen = {"first": int8s[:1], "last": int8s[-1:], "none": []}
    for name in dict.fromkeys(x for key in args.session_variants.split(",") for x in chosen[key]):
        path = directories[name] / "model.onnx"
        runtimes[f"{name}, IO binding"] = OnnxCausalLM(path.parent, io_binding=True,
                                                       session=session(path, args.threads))
        runtimes[f"{name}, spinning threads"] = OnnxCausalLM(path.parent,
                                                             session=session(path, args.threads, spinning=True))
        runtimes[f"{name}, 1 thread"] = OnnxCausalLM(path.parent, session=session(path, 1))
    engines: dict[str, Any] = {"torch eager": torch_generate}
    for name, runtime in runtimes.items():
        engines[name] = lambda ids, r=runtime: r.generate(ids, max_new_tokens=n, stop_ids=[])
    rates: dict[str, list[float]] = {name: [] for name in engines}
    for repeat in range(args.repeats):  # engines alternate within each repeat
        for name, generate in engines.items():
            start = time.perf_counter()
            produced = sum(len(generate(ids)) for ids in prompts[: args.timed])
            rates[name].append(produced / (time.perf_counter() - start))
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()), flush=True)
    base = statistics.median(rates["torch eager"])
    print(f"\n{args.model}, {args.timed} prompts x {n} tokens timed, {args.threads} threads, median of "
          f"{args.repeats}; agreement over {len(prompts)} prompts")
    print("| engine | nodes (file) | file MB | tokens/s | vs torch | greedy-token agreement |")
    print("|---|---|---|---|---|---|")
    print(f"| torch eager | - | - | {base:.1f} | 1.00x | 100% |")
    for name, runtime in runtimes.items():
        agreement = greedy_agreement(runtime.logits, prompts, reference)
        directory = runtime.directory
        nodes = len(onnx.load(str(directory / "model.onnx"), load_external_data=False).graph.node)
        mb = sum(f.stat().st_size for f in directory.glob("model.onnx*")) / 2**20
        rate = statistics.median(rates[name])
        print(f"| ONNX {name} | {nodes} | {mb:.0f} | {rate:.1f} | {rate / base:.2f}x | {agreement:.1%} |")
    if args.profile:
        print("\nprofile: one generation of the first timed prompt per engine")
        for name, runtime in runtimes.items():
            if ", " in name:  # the session/loop variants share their graph's profile
                continue
            found = profile(runtime.directory, args.threads, prompts[0], n, runtime.io_binding)
            top = ", ".join(f"{op} {s * 1e3:.0f}" for op, s in found["top"])
            print(f"{name}: wall {found['wall']:.2f} s, in {found['runs']} run calls {found['run']:.2f} s, kernels "
                  f"{found['kernel']:.2f} s ({found['nodes_per_run']:.0f} nodes/run); top ms: {top}", flush=True)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
