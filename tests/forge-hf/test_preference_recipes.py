"""reward, rlhf, kto, orpo (and grpo with a reward model): tiny models through the real CLI, bad input caught before
any model loads, and one slow end-to-end path sft → reward → rlhf on the packaged SmolLM2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import assert_held, burst
from test_sft import manifest, write_jsonl

PAIRS = [{"prompt": f"capital of {c}?", "chosen": f" {p}.", "rejected": " i do not know."}
         for c, p in [("france", "paris"), ("spain", "madrid"), ("italy", "rome"), ("peru", "lima")]] * 2
FEEDBACK = [{"prompt": f"capital of {c}?", "completion": f" {p}.", "label": True}
            for c, p in [("france", "paris"), ("spain", "madrid"), ("italy", "rome")]] + \
           [{"prompt": f"capital of {c}?", "completion": " no idea.", "label": False}
            for c in ("peru", "chile", "laos")]
PROMPTS = [{"prompt": [{"role": "user", "content": f"capital of {c}?"}]} for c in ("france", "spain", "italy", "peru")]


def forge_main(*args: str | Path) -> int:
    """The real CLI entry point, in this process: training runs here share the already imported torch/TRL instead
    of paying ~10 s of imports each in a subprocess."""
    from forge.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def forge_run(work: Path, mlflow_uri: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "MLFLOW_"))}
    env["MLFLOW_TRACKING_URI"] = mlflow_uri
    return subprocess.run([sys.executable, "-m", "forge", *args], cwd=work, env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory: pytest.TempPathFactory, tiny_lm: Path, mlflow_uri: str) -> Path:
    """``forge run --recipe reward`` on the tiny Llama: two steps, a quarter of the pairs held out."""
    work = tmp_path_factory.mktemp("reward")
    data = write_jsonl(work / "pairs.jsonl", PAIRS)
    code = forge_main("run", "--recipe", "reward", "--model", tiny_lm, "--data", data, "--set", "max_steps=2",
                      "--set", "per_device_train_batch_size=2", "--set", "eval_split=0.25", "--set", "max_length=32",
                      "-o", work / "rm", "--no-tracking")
    assert code == 0
    return work / "rm"


def test_reward_model_scores_serves_and_evaluates(reward_run, tmp_path):
    from fastapi.testclient import TestClient
    from forge import EvalRequest
    from forge.artifacts import Artifact
    from forge.serving.settings import ServeSettings
    from forge_hf.eval_reward import evaluate
    from forge_hf.serve_reward import create_reward_app

    m = manifest(reward_run)
    assert m["status"] == "completed" and m["artifact"]["kind"] == "reward-model"
    assert 0.0 <= m["metrics"]["eval_pairwise_accuracy"] <= 1.0 and "eval_margin" in m["metrics"]
    artifact = Artifact.load(reward_run)
    assert artifact.manifest["input_format"] == "text" and (artifact.path / "heldout.jsonl").is_file()
    # the real Trainer's optimizer: LoRA at learning_rate, the score head in its own group at 10 × that
    import torch

    assert artifact.manifest["head_learning_rate"] == pytest.approx(1e-3)
    scheduler = torch.load(reward_run / "checkpoints" / "checkpoint-2" / "scheduler.pt", weights_only=False)
    assert scheduler["base_lrs"][-1] == pytest.approx(1e-3) and set(scheduler["base_lrs"][:-1]) == {1e-4}

    with TestClient(create_reward_app(artifact, ServeSettings())) as client:
        one = client.post("/score", json={"prompt": "capital of peru?", "completion": " lima."})
        assert one.status_code == 200, one.text
        batch = client.post("/score/batch", json={"items": [
            {"prompt": "capital of peru?", "completion": " lima."},
            {"prompt": [{"role": "user", "content": "capital of peru?"}], "completion": " i do not know."}]})
        assert batch.status_code == 200, batch.text
        scores = batch.json()["scores"]
        assert len(scores) == 2 and abs(scores[0] - one.json()["score"]) < 1e-5  # padding in a batch changes nothing
        empty = client.post("/score", json={"prompt": "x", "completion": "  "})
        assert empty.status_code == 422 and "completion" in empty.text
        for body, where in (('{"prompt": "x", "completion": "a\\ud800"}', "completion"),  # was a TypeError: a 500
                            ('{"prompt": [{"role": "user", "content": "\\udfff"}], "completion": "y"}', "prompt")):
            lone = client.post("/score", content=body, headers={"Content-Type": "application/json"})
            assert lone.status_code == 422, lone.text
            assert lone.json()["error"]["message"] == \
                f"{where}: contains a character that cannot be encoded as UTF-8 (a lone surrogate)"
        # issue 17: 64 concurrent clients (the app in-process), a quarter of them bad: 2xx/4xx, 429 when queued full
        load = burst(client, "/score", [{"prompt": "capital of peru?", "completion": " lima."},
                                        {"prompt": [{"role": "user", "content": "hi"}], "completion": "hello"}],
                     bad=[{"prompt": "x", "completion": ""}, {"prompt": 3, "completion": "y"},
                          '{"prompt": "x", "completion": "a\\ud800b"}', {"prompt": "x"}])
        assert_held(load)
        assert load[("bad", 422)] == 32, load

    import forge

    with forge.load_predictor(artifact) as predictor:  # forge predict / in-process use
        assert predictor.predict([{"prompt": "capital of peru?", "completion": " lima."}])[0]["score"] == \
            pytest.approx(one.json()["score"], abs=1e-5)

    # the suite scores the held-out pairs exactly as training did: same accuracy as the run recorded
    result = evaluate(artifact, EvalRequest(data=None, output_dir=tmp_path, log=lambda line: None))
    assert result.metrics["accuracy"] == pytest.approx(m["metrics"]["eval_pairwise_accuracy"])
    assert result.metrics["margin"] == pytest.approx(m["metrics"]["eval_margin"], abs=1e-5)
    assert len(result.records) == 2 and (tmp_path / "margins.png").is_file()


def test_grpo_takes_a_reward_model(reward_run, tmp_path):
    """grpo's ``reward_model``: the scorer TRL calls as a reward function (the training loop itself runs in the slow
    rlhf test, which uses the same function)."""
    from forge_hf.recipes.grpo import GRPORecipeConfig, add_reward_model
    from forge_hf.reward_model import load_scorer

    data = str(write_jsonl(tmp_path / "q.jsonl", PROMPTS))
    config = GRPORecipeConfig(model="m", data=data, reward_model=str(reward_run))
    assert config.reward_funcs == []  # the reward model alone unless reward_funcs is set
    assert GRPORecipeConfig(model="m", data=data, reward_model=str(reward_run),
                            reward_funcs=["format"]).reward_funcs == ["format"]

    class Context:
        facts: dict = {}

        def log(self, line: str) -> None:
            pass

        def record(self, **facts) -> None:
            self.facts.update(facts)

    ctx, rewards = Context(), []
    add_reward_model(ctx, config, rewards)
    assert len(rewards) == 1 and rewards[0].__name__ == "reward_model"  # TRL logs rewards/reward_model/mean
    assert ctx.facts["reward_model"]["path"] == str((reward_run / "artifact").resolve())
    prompts = [[{"role": "user", "content": "capital of peru?"}]] * 2
    completions = [[{"role": "assistant", "content": " lima."}], [{"role": "assistant", "content": " no."}]]
    scores = rewards[0](prompts=prompts, completions=completions, answer=["x", "y"])
    # trained on plain strings: chat prompts and completions are scored as the text the model learned
    scorer = load_scorer(reward_run / "artifact")
    assert scores == pytest.approx(scorer.score([{"prompt": "capital of peru?", "completion": " lima."},
                                                 {"prompt": "capital of peru?", "completion": " no."}]), abs=1e-5)
    assert scores[0] != scores[1]


def test_kto_and_orpo_train(tmp_path, tiny_lm):
    feedback = write_jsonl(tmp_path / "k.jsonl", FEEDBACK)
    assert forge_main("run", "--recipe", "kto", "--model", tiny_lm, "--data", feedback, "--set", "max_steps=1",
                      "--set", "per_device_train_batch_size=2", "--set", "eval_split=0", "--set", "max_length=32",
                      "-o", tmp_path / "kto", "--no-tracking") == 0
    m = manifest(tmp_path / "kto")
    assert m["status"] == "completed" and m["artifact"]["kind"] == "causal-lm-adapter"
    assert m["dataset"]["desirable"] + m["dataset"]["undesirable"] == 6 and "kl" in m["metrics"]
    pairs = write_jsonl(tmp_path / "p.jsonl", PAIRS)
    assert forge_main("run", "--recipe", "orpo", "--model", tiny_lm, "--data", pairs, "--set", "max_steps=1",
                      "--set", "per_device_train_batch_size=2", "--set", "eval_split=0.25", "--set", "max_length=32",
                      "-o", tmp_path / "orpo", "--no-tracking") == 0
    m = manifest(tmp_path / "orpo")
    assert m["status"] == "completed" and m["artifact"]["kind"] == "causal-lm-adapter"
    assert "eval_log_odds_ratio" in m["metrics"] and "eval_nll_loss" in m["metrics"]


def test_rlhf_with_rloo_against_a_reward_model(tmp_path, tiny_lm, reward_run, monkeypatch):
    """``algorithm: rloo``: TRL's RLOOTrainer (leave-one-out baseline) against the reward model, KL to the reference
    logged, the LoRA policy saved."""
    import trl

    built: list[str] = []

    class Recorded(trl.RLOOTrainer):  # the real trainer, counted: proves rloo is not silently run as grpo
        def __init__(self, *args, **kwargs):
            built.append(type(kwargs["args"]).__name__)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(trl, "RLOOTrainer", Recorded)
    prompts = write_jsonl(tmp_path / "q.jsonl", PROMPTS)
    assert forge_main("run", "--recipe", "rlhf", "--model", tiny_lm, "--data", prompts, "--set",
                      f"reward_model={reward_run}", "--set", "algorithm=rloo", "--set", "max_steps=2",
                      "--set", "num_generations=2", "--set", "per_device_train_batch_size=2",
                      "--set", "max_completion_length=4", "-o", tmp_path / "rl", "--no-tracking") == 0
    m = manifest(tmp_path / "rl")
    assert m["status"] == "completed" and m["artifact"]["kind"] == "causal-lm-adapter"
    assert built == ["RLOOConfig"]
    artifact = manifest(tmp_path / "rl" / "artifact")
    assert artifact["algorithm"] == "rloo" and artifact["rewards"] == ["reward_model"]
    assert {"first_reward", "final_reward", "final_kl", "mean_kl"} <= set(m["metrics"])
    assert (tmp_path / "rl" / "rlhf_curves.png").is_file()
    assert (tmp_path / "rl" / "artifact" / "adapter_model.safetensors").is_file()


def test_reward_head_starts_small_and_trains_at_its_own_learning_rate(tiny_lm):
    """The score head: N(0, 1/(d+1)) instead of N(0, 0.02) (a random ±1 score per sequence otherwise), and its own
    param group at head_learning_rate (default 10 × learning_rate) next to the LoRA weights."""
    import torch
    from forge_hf.recipes.common import peft_config
    from forge_hf.recipes.reward import RewardRecipeConfig, init_score_head, with_head_learning_rate
    from peft import get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_lm, num_labels=1)
    hidden = model.config.hidden_size
    assert init_score_head(model) == "score"
    assert 0.5 / (hidden + 1) < float(model.score.weight.detach().std()) < 2 / (hidden + 1)
    config = RewardRecipeConfig(model="m", data="d")
    assert config.head_learning_rate is None and config.learning_rate == 1e-4
    wrapped = get_peft_model(model, peft_config(config, "SEQ_CLS"))

    class Base:  # what transformers' Trainer.create_optimizer does, reduced to one group
        def __init__(self, model):
            self.model = model

        def create_optimizer(self):
            self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-4)
            return self.optimizer

    optimizer = with_head_learning_rate(Base, "score", 1e-3)(wrapped).create_optimizer()
    names = {id(p): n for n, p in wrapped.named_parameters()}
    base_group, head_group = optimizer.param_groups
    assert base_group["lr"] == 1e-4 and head_group["lr"] == 1e-3
    assert [names[id(p)] for p in head_group["params"]] == ["base_model.model.score.modules_to_save.default.weight"]
    assert base_group["params"] and all("lora_" in names[id(p)] for p in base_group["params"])
    assert len(base_group["params"]) + 1 == sum(p.requires_grad for p in wrapped.parameters())


def test_bad_input_is_one_line_before_any_model_loads(forge_cli, tiny_lm, reward_run):
    cwd = forge_cli.cwd
    missing = write_jsonl(cwd / "missing.jsonl", [PAIRS[0], {"prompt": "x", "chosen": "y"}])
    empty = write_jsonl(cwd / "empty.jsonl", [PAIRS[0], PAIRS[1], {"prompt": "x", "chosen": " ", "rejected": "z"}])
    labels = write_jsonl(cwd / "labels.jsonl", [FEEDBACK[0], {**FEEDBACK[3], "label": "bad"}])
    prompts = write_jsonl(cwd / "q.jsonl", PROMPTS)
    (cwd / "not-rm").mkdir()
    (cwd / "not-rm" / "forge.json").write_text(json.dumps({"schema": 1, "type": "artifact", "kind": "causal-lm"}))
    cases = [
        (("--recipe", "reward", "--data", missing), f"{missing}:2: missing field 'rejected'"),
        (("--recipe", "orpo", "--data", empty), f"{empty}:3: field 'chosen' is empty"),
        (("--recipe", "kto", "--data", labels),
         f"{labels}:2: field 'label' must be a boolean (true: desirable, false: undesirable), got 'bad'"),
        (("--recipe", "rlhf", "--data", prompts, "--set", "reward_model=not-rm"),
         "reward_model: not-rm is a causal-lm artifact, not a reward-model"),
    ]
    for index, (args, message) in enumerate(cases):
        result = forge_cli("run", *args, "--model", tiny_lm, "-o", f"r{index}", "--no-tracking")
        assert result.returncode == 2, result.stderr
        assert message in result.stderr.strip().splitlines()[-1] and "Traceback" not in result.stderr
        assert not (cwd / f"r{index}" / "artifact").exists()
        if (cwd / f"r{index}" / "forge.json").exists():  # a run was started: it failed before the provider ran
            assert not manifest(cwd / f"r{index}").get("provider")


def test_list_plugins_shows_the_recipes_with_summaries(forge_cli):
    listing = json.loads(forge_cli("list-plugins", "--kind", "recipes", "--json", check=True).stdout)
    hf = next(p for p in listing["plugins"] if p["name"] == "forge-hf")
    assert {"reward", "rlhf", "kto", "orpo"} <= set(hf["contributions"]["recipes"])
    assert all(hf["summaries"][name] for name in ("reward", "rlhf", "kto", "orpo"))


def test_config_and_data_checks_in_process(tmp_path, tiny_lm, reward_run):
    from forge.errors import DataError
    from forge_hf.recipes.kto import KTORecipeConfig, read_feedback
    from forge_hf.recipes.rlhf import RLHFRecipeConfig, check_data
    from pydantic import ValidationError

    pairs = write_jsonl(tmp_path / "p.jsonl", PAIRS[:2])
    records, kind = read_feedback(KTORecipeConfig(model="m", data=str(pairs)))  # pairs unpaired: one of each
    assert kind == "preference" and [r["label"] for r in records] == [True, False, True, False]
    same = write_jsonl(tmp_path / "same.jsonl", FEEDBACK[:2])
    with pytest.raises(DataError, match="every label is true; KTO needs both"):
        read_feedback(KTORecipeConfig(model="m", data=str(same)))
    with pytest.raises(ValidationError, match="per_device_train_batch_size: KTO needs at least 2"):
        KTORecipeConfig(model="m", data=str(pairs), per_device_train_batch_size=1)
    with pytest.raises(ValidationError, match="no-such-dir"):
        RLHFRecipeConfig(model="m", data=str(pairs), reward_model=str(tmp_path / "no-such-dir"))
    with pytest.raises(ValidationError, match="reward_model"):
        RLHFRecipeConfig(model="m", data=str(pairs))
    config = RLHFRecipeConfig(model=str(tiny_lm), data=str(pairs), reward_model=str(reward_run), algorithm="ppo")
    with pytest.raises(Exception, match="algorithm: ppo needs TRL's PPOTrainer"):
        check_data(config, print)
    with pytest.raises(ValidationError, match="reward_weights: 1 weights for 2 rewards"):
        RLHFRecipeConfig(model="m", data=str(pairs), reward_model=str(reward_run), reward_funcs=["format"],
                         reward_weights=[1.0])


@pytest.mark.slow
def test_sft_reward_rlhf_path_on_smollm2(smollm_sft_run, tmp_path, mlflow_uri):
    """The documented path, one command each: sft (the shared fixture), reward, rlhf on the sft policy."""
    data = write_jsonl(tmp_path / "pairs.jsonl", PAIRS[:6])
    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS[:2])
    result = forge_run(tmp_path, mlflow_uri, "run", "--recipe", "reward", "--model", "smollm2-135m-instruct",
                       "--data", str(data), "--set", "max_steps=1", "--set", "per_device_train_batch_size=2",
                       "--set", "eval_split=0.34", "--set", "max_length=48", "-o", "rm", "--no-tracking")
    assert result.returncode == 0, result.stderr
    assert manifest(tmp_path / "rm")["artifact"]["kind"] == "reward-model"
    result = forge_run(tmp_path, mlflow_uri, "run", "--recipe", "rlhf", "--model", str(smollm_sft_run),
                       "--data", str(prompts), "--set", "reward_model=rm", "--set", "max_steps=1",
                       "--set", "num_generations=2", "--set", "per_device_train_batch_size=2",
                       "--set", "max_completion_length=6", "-o", "rl", "--no-tracking")
    assert result.returncode == 0, result.stderr
    m = manifest(tmp_path / "rl")
    assert m["status"] == "completed" and m["artifact"]["kind"] == "causal-lm"  # sft adapter + rlhf LoRA, merged
    assert {"first_reward", "final_reward", "final_kl"} <= set(m["metrics"])
    assert (tmp_path / "rl" / "rlhf_curves.png").is_file() and m["policy"]["adapter"].startswith(str(smollm_sft_run))
    from forge import EvalRequest
    from forge.artifacts import Artifact
    from forge_hf.eval_reward import evaluate

    scored = evaluate(Artifact.load(tmp_path / "rm"), EvalRequest(data=data, output_dir=tmp_path / "ev",
                                                                  log=lambda line: None))
    assert len(scored.records) == 6 and 0.0 <= scored.metrics["accuracy"] <= 1.0


@pytest.mark.slow
def test_kto_and_orpo_on_smollm2(tmp_path):
    """kto and orpo on the packaged SmolLM2 (one step each, short sequences): the real model's chat template and
    tokenizer through TRL's trainers, an adapter that loads and generates."""
    feedback = write_jsonl(tmp_path / "k.jsonl", FEEDBACK)
    pairs = write_jsonl(tmp_path / "p.jsonl", PAIRS)
    for recipe, data, split in (("kto", feedback, "0"), ("orpo", pairs, "0.25")):
        assert forge_main("run", "--recipe", recipe, "--model", "smollm2-135m-instruct", "--data", data,
                          "--set", "max_steps=1", "--set", "per_device_train_batch_size=2", "--set",
                          f"eval_split={split}", "--set", "max_length=48", "-o", tmp_path / recipe,
                          "--no-tracking") == 0
        m = manifest(tmp_path / recipe)
        assert m["status"] == "completed" and m["artifact"]["kind"] == "causal-lm-adapter", recipe
        assert m["provider"]["name"] == "hf" and "train_loss" in m["metrics"], recipe
        assert all(value == value for value in m["metrics"].values() if isinstance(value, float)), recipe  # no NaN
    assert "kl" in manifest(tmp_path / "kto")["metrics"]
    assert "eval_log_odds_ratio" in manifest(tmp_path / "orpo")["metrics"]
    from forge.artifacts import Artifact
    from forge_hf.causal_lm import load_causal_lm

    lm = load_causal_lm(Artifact.load(tmp_path / "orpo"))
    assert lm.origin == "lora merged in memory"
    ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": "capital of france?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = lm.model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
