"""What a person sees: forge's own lines and progress bar. Other libraries' progress bars, advisory messages and
known-harmless warnings appear only with ``-v/--verbose`` (which sets ``FORGE_VERBOSE=1`` so torchrun's worker
processes inherit it).

Set through environment variables and logging levels, before those libraries are imported: nothing is imported here.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

VERBOSE_ENV = "FORGE_VERBOSE"

# Libraries whose FutureWarning/DeprecationWarning/UserWarning chatter is about their own internals, not the user's run.
_LIBRARIES = ("transformers", "trl", "peft", "accelerate", "datasets", "torch", "mlflow", "huggingface_hub",
              "bitsandbytes", "onnxruntime", "onnxscript", "pydantic")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").lower() in {"1", "true", "yes"}


def set_verbose(value: bool) -> None:
    if value:
        os.environ[VERBOSE_ENV] = "1"


def quiet_libraries() -> None:
    """Unless verbose: no library progress bars, advisory notices or known-harmless warnings."""
    if verbose():
        return
    for name, value in (("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                        ("TRANSFORMERS_VERBOSITY", "error"), ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
                        ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(name, value)
    for library in _LIBRARIES:
        for category in (FutureWarning, DeprecationWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category, module=rf"{library}(\..*)?$")
    for name in ("alembic", "mlflow", "httpx", "urllib3", "datasets", "transformers", "accelerate", "bitsandbytes",
                 "peft", "trl", "torch.distributed"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "datasets" in sys.modules:  # imported already: its environment switch was read at import
        sys.modules["datasets"].disable_progress_bars()
