"""The same LoRA SFT that `forge run --recipe sft` does, written directly against TRL (the baseline for sft_vs_trl.py).

    python bench/trl_direct.py MODEL_DIR DATA.jsonl STEPS OUTPUT_DIR
Prints one JSON line: wall-clock seconds from start to finish, the Trainer's train_runtime and train_loss.
"""

from __future__ import annotations

import json
import sys
import time

start = time.perf_counter()

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from peft import LoraConfig  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402


def main() -> None:
    model_dir, data, steps, output = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    with open(data, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    records = [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in records]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    cuda = torch.cuda.is_available()
    # forge's dtype "auto": bf16 on a CUDA GPU that has it, fp32 on CPU
    bf16 = cuda and torch.cuda.is_bf16_supported()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if bf16 else torch.float32,
                                                 use_safetensors=True)
    if cuda:
        model.to("cuda")
    args = SFTConfig(
        output_dir=output, max_steps=steps, per_device_train_batch_size=4, gradient_accumulation_steps=1,
        learning_rate=2e-4, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        logging_steps=5, logging_first_step=True, save_strategy="steps", save_steps=50, save_total_limit=2,
        seed=42, data_seed=42, report_to="none", optim="adamw_torch", use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=torch.cuda.is_available(), max_length=1024, completion_only_loss=True,
        # what forge's sft config says by default; TRL's own defaults are bf16 and gradient checkpointing on
        bf16=bf16, fp16=False, gradient_checkpointing=False,
    )
    peft = LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                      bias="none")
    set_seed(42)  # forge seeds right before building the trainer (LoRA init happens inside it)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(records),
                         processing_class=tokenizer, peft_config=peft)
    result = trainer.train()
    trainer.model.save_pretrained(f"{output}/adapter")
    print(json.dumps({"wall": time.perf_counter() - start, "train_runtime": result.metrics["train_runtime"],
                      "train_loss": result.training_loss}))


if __name__ == "__main__":
    main()
