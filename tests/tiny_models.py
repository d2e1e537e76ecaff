"""Tiny, randomly initialised models built from a config, with a real (small) BPE tokenizer trained here.
Milliseconds per training step; no download."""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "the capital of france is paris", "what is the capital of spain", "convert ten km to miles",
    "the opposite of hot is cold", "a short answer please", "system user assistant",
    "0 1 2 3 4 5 6 7 8 9 . , ? ! ' \" : ; - ( ) °",
] * 20


def make_tokenizer(path: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    core.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="<unk>", bos_token="<|im_start|>", eos_token="<|im_end|>",
        pad_token="<|endoftext|>", additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(path)
    return tokenizer


def make_tiny_causal_lm(path: Path, architecture: str = "llama") -> Path:
    """A 2-layer Llama (hidden 32) with its tokenizer, saved as safetensors in ``path``. ``architecture`` "qwen2"
    (q/k/v biases, untied output) or "qwen3" (q/k norms, head_dim set apart from hidden/heads) builds those
    instead, for the exporters' architecture mapping."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, Qwen2Config, Qwen3Config

    tokenizer = make_tokenizer(path)
    torch.manual_seed(0)
    common = dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    if architecture == "qwen2":
        config = Qwen2Config(**{**common, "tie_word_embeddings": False})
    elif architecture == "qwen3":
        config = Qwen3Config(**common, head_dim=16)
    else:
        config = LlamaConfig(**common)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(path, safe_serialization=True)
    return path


def make_tiny_bert_classifier_base(path: Path) -> Path:
    """A 2-layer BERT encoder with a WordPiece tokenizer, saved as safetensors in ``path``."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    core = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = ["good", "great", "love", "fine", "happy", "bad", "awful", "hate", "poor", "sad", "movie", "film",
             "plot", "acting", "the", "was", "it", "a", "very", "not"]
    core.train_from_iterator([" ".join(words)] * 10, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    from tokenizers.processors import TemplateProcessing

    core.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                             special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=128)
    BertModel(config).save_pretrained(path, safe_serialization=True)
    return path


def make_tiny_classifier_artifact(path: Path, base: Path, labels: tuple[str, ...] = ("negative", "positive")) -> Path:
    """A ``sequence-classifier`` artifact (what the classify recipe writes) from the tiny BERT at ``base``, its head
    randomly initialised: for serving and prediction tests that need no training."""
    import json
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(path)
    (path / "forge.json").write_text(json.dumps({"schema": 1, "kind": "sequence-classifier", "labels": list(labels),
                                                 "max_length": 64, "base_model": str(base)}))
    shutil.rmtree(path / "__pycache__", ignore_errors=True)
    return path
