"""forge-hf: Hugging Face models for forge.

Everything is registered by reference (``"module:attribute"``), so importing this module imports neither torch
nor transformers: ``forge --help`` stays fast.
"""

from __future__ import annotations

import forge

__version__ = "0.1.0"

CAUSAL_LM_KINDS = ("causal-lm", "causal-lm-adapter")
CLASSIFIER_KINDS = ("sequence-classifier", "sequence-classifier-adapter")


@forge.hookimpl
def register_providers(register: forge.Register) -> None:
    register(forge.Provider(
        name="hf",
        load="forge_hf.provider:load",
        summary="transformers: hub id, local dir, GGUF, offline aliases; 4-bit via bitsandbytes",
        priority=10,
    ))


@forge.hookimpl
def register_recipes(register: forge.Register) -> None:
    recipes = "forge_hf.recipes"
    register(forge.Recipe(name="sft", config=f"{recipes}.sft:SFTRecipeConfig", train=f"{recipes}.sft:train",
                          check=f"{recipes}.sft:check_data",
                          uses_provider=True, summary="supervised fine-tuning (TRL SFTTrainer), LoRA or full"))
    register(forge.Recipe(name="qlora", config=f"{recipes}.qlora:QLoRARecipeConfig", train=f"{recipes}.qlora:train",
                          check=f"{recipes}.sft:check_data",
                          uses_provider=True, summary="LoRA on a 4-bit NF4 base; best available provider"))
    register(forge.Recipe(name="dpo", config=f"{recipes}.dpo:DPORecipeConfig", train=f"{recipes}.dpo:train",
                          check=f"{recipes}.dpo:check_data",
                          uses_provider=True, summary="preference tuning (TRL DPOTrainer), LoRA or full"))
    register(forge.Recipe(name="grpo", config=f"{recipes}.grpo:GRPORecipeConfig", train=f"{recipes}.grpo:train",
                          check=f"{recipes}.grpo:check_data",
                          uses_provider=True, summary="RL with reward functions or a reward model (TRL GRPOTrainer)"))
    register_preference_recipes(register)
    register(forge.Recipe(name="classify", config=f"{recipes}.classify:ClassifyConfig",
                          train=f"{recipes}.classify:train", uses_provider=True,
                          check=f"{recipes}.classify:check_data",
                          summary="text classification (Trainer), encoders or LLMs + LoRA: accuracy, macro-F1"))
    register(forge.Recipe(name="embed", config=f"{recipes}.embed:EmbedConfig", train=f"{recipes}.embed:train",
                          check=f"{recipes}.embed:check_data",
                          summary="sentence embeddings (sentence-transformers, in-batch negatives): recall@k, MRR"))


def register_preference_recipes(register: forge.Register) -> None:
    """reward, rlhf, kto, orpo (issue 16): preference and RL recipes beside dpo and grpo."""
    recipes = "forge_hf.recipes"
    register(forge.Recipe(name="reward", config=f"{recipes}.reward:RewardRecipeConfig", train=f"{recipes}.reward:train",
                          check=f"{recipes}.reward:check_data", uses_provider=True,
                          summary="reward model on preference pairs (TRL RewardTrainer): pairwise accuracy"))
    register(forge.Recipe(name="rlhf", config=f"{recipes}.rlhf:RLHFRecipeConfig", train=f"{recipes}.rlhf:train",
                          check=f"{recipes}.rlhf:check_data", uses_provider=True,
                          summary="RL against a reward model (TRL GRPO/RLOO) with KL to the reference"))
    register(forge.Recipe(name="kto", config=f"{recipes}.kto:KTORecipeConfig", train=f"{recipes}.kto:train",
                          check=f"{recipes}.kto:check_data", uses_provider=True,
                          summary="KTO on unpaired desirable/undesirable completions (TRL KTOTrainer)"))
    register(forge.Recipe(name="orpo", config=f"{recipes}.orpo:ORPORecipeConfig", train=f"{recipes}.orpo:train",
                          check=f"{recipes}.orpo:check_data", uses_provider=True,
                          summary="reference-free preference tuning (TRL experimental ORPOTrainer)"))


@forge.hookimpl
def register_exporters(register: forge.Register) -> None:
    register(forge.Exporter(name="merged", accepts=("causal-lm-adapter", "sequence-classifier-adapter"),
                            export="forge_hf.export_merged:export",
                            options="forge_hf.export_options:MergedOptions",
                            summary="LoRA merged into its base: a plain transformers model"))
    register(forge.Exporter(name="gguf", accepts=CAUSAL_LM_KINDS, export="forge_hf.export_gguf:export",
                            options="forge_hf.export_options:GGUFOptions",
                            summary="GGUF for llama.cpp/Ollama (f16, bf16, q8_0, q4_0..q5_1), parity-checked"))


@forge.hookimpl
def register_servers(register: forge.Register) -> None:
    register(forge.Server(name="openai", accepts=CAUSAL_LM_KINDS, create_app="forge_hf.serve_lm:create_lm_app",
                          predict="forge_hf.predict:causal_lm_predictor",
                          summary="OpenAI-compatible chat/completions API"))
    register(forge.Server(name="vllm", accepts=CAUSAL_LM_KINDS, engine="vllm", launch="forge_hf.serve_vllm:launch",
                          summary="--engine vllm: vLLM's OpenAI server as a child process (needs vllm, a CUDA GPU)"))
    register(forge.Server(name="reward", accepts=("reward-model",),
                          create_app="forge_hf.serve_reward:create_reward_app",
                          predict="forge_hf.serve_reward:reward_predictor",
                          summary="POST /score {prompt, completion}: the reward model's score (batched)"))
    register(forge.Server(name="llama-cpp", accepts=("gguf-causal-lm",), create_app="forge_hf.serve_lm:create_gguf_app",
                          summary="OpenAI-compatible API on llama.cpp (needs llama-cpp-python)"))
    register(forge.Server(name="classifier", accepts=CLASSIFIER_KINDS,
                          create_app="forge_hf.serve_classifier:create_classifier_app",
                          predict="forge_hf.predict:classifier_predictor",
                          summary="POST /predict: label and confidence"))
    register(forge.Server(name="embedder", accepts=("sentence-embedder",),
                          create_app="forge_hf.serve_embedder:create_embedder_app",
                          predict="forge_hf.serve_embedder:embedder_predictor",
                          summary="POST /embed: sentence embeddings, micro-batched"))


@forge.hookimpl
def register_templates(register: forge.Register) -> None:
    register(forge.Template(name="chat-sft", files="forge_hf.templates:chat_sft_files",
                            summary="chat fine-tuning project (SmolLM2 + example dataset)"))
    register(forge.Template(name="sentiment", files="forge_hf.templates:sentiment_files",
                            summary="sentiment classifier project (MiniLM + example reviews), served at /predict"))


@forge.hookimpl
def register_evaluators(register: forge.Register) -> None:
    register(forge.Evaluator(name="classification", accepts=(*CLASSIFIER_KINDS, "onnx-sequence-classifier"),
                             evaluate="forge_hf.eval_classification:evaluate",
                             summary="accuracy, macro-F1, per-class precision/recall, ECE, confusion matrix"))
    register(forge.Evaluator(name="retrieval", accepts=("sentence-embedder", "onnx-sentence-embedder"),
                             evaluate="forge_hf.eval_retrieval:evaluate",
                             summary="recall@k and MRR of anchors retrieving their positives (pairs/triplets)"))
    lm = "forge_hf.eval_lm"
    register(forge.Evaluator(name="perplexity", accepts=CAUSAL_LM_KINDS, evaluate=f"{lm}:perplexity",
                             summary="token-weighted perplexity of completions or text (chat/text JSONL)"))
    register(forge.Evaluator(name="exact-match", accepts=CAUSAL_LM_KINDS, evaluate=f"{lm}:exact_match",
                             summary="batched greedy answers vs references: GSM8K '#### N', regex or whole string"))
    register(forge.Evaluator(name="generation-checks", accepts=CAUSAL_LM_KINDS, evaluate=f"{lm}:generation_checks",
                             summary="generation stops at EOS; the chat template round-trips and ends turns"))
    register(forge.Evaluator(name="lm-eval", accepts=CAUSAL_LM_KINDS, evaluate="forge_hf.eval_lmeval:evaluate",
                             summary="an lm-evaluation-harness task on a local file (needs lm-eval installed)"))
    register(forge.Evaluator(name="pairwise-accuracy", accepts=("reward-model",),
                             evaluate="forge_hf.eval_reward:evaluate",
                             summary="reward model on preference pairs: share where chosen outscores rejected"))
