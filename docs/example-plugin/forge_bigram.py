"""Recipe `bigram`: a character bigram language model. forge run --recipe bigram --data notes.txt"""

import json
import math
from collections import Counter

import forge


class BigramConfig(forge.RecipeConfig):
    data: forge.DataFile
    holdout: float = 0.2  # share of lines kept aside to measure perplexity
    smoothing: float = 1.0  # add-k smoothing


def train(ctx: forge.RunContext, config: BigramConfig) -> forge.ArtifactResult:
    lines = config.data.read_text(encoding="utf-8").splitlines()
    cut = max(1, round(len(lines) * (1 - config.holdout)))
    pairs, firsts, vocab = Counter[tuple[str, str]](), Counter[str](), {"\n"}
    for step, line in enumerate(ctx.progress(lines[:cut], desc="counting"), start=1):
        pairs.update(zip(f"\n{line}", f"{line}\n", strict=True))
        firsts.update(f"\n{line}")
        vocab.update(line)
        ctx.log_metrics({"bigrams": len(pairs)}, step=step)
    held = [(a, b) for line in lines[cut:] for a, b in zip(f"\n{line}", f"{line}\n", strict=True)]
    k, size = config.smoothing, len(vocab)
    nll = -sum(math.log((pairs[a, b] + k) / (firsts[a] + k * size)) for a, b in held)
    perplexity = math.exp(nll / len(held)) if held else float("nan")
    ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
    model = {"vocab": sorted(vocab), "pairs": {a + b: n for (a, b), n in pairs.items()}}
    (ctx.artifact_dir / "bigram.json").write_text(json.dumps(model))
    return forge.ArtifactResult(kind="bigram-lm", metrics={"heldout_perplexity": perplexity})


@forge.hookimpl
def register_recipes(register: forge.Register) -> None:
    register(forge.Recipe(name="bigram", config=BigramConfig, train=train, summary="character bigram LM"))
