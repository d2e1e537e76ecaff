"""Evaluator ``lm-eval``: a task of EleutherAI's lm-evaluation-harness (``pip install 'lm-eval>=0.4,<0.5'``, imported
only here) run on a causal LM artifact, on a local file so it works offline.

    forge eval runs/sft-1 --suite lm-eval --data qa.jsonl                         # question/answer, exact match
    forge eval runs/sft-1 --suite lm-eval --data mc.jsonl --set output_type=multiple_choice \\
        --set doc_to_choice="{{choices}}" --set doc_to_target="{{label}}"
    forge eval runs/sft-1 --suite lm-eval --set task=my_task.yaml                  # your own task YAML

With ``--data`` forge writes the task YAML (``dataset_path: json`` with ``data_files`` pointing at the file) in the
eval's output directory; the ``doc_to_text``/``doc_to_target``/``doc_to_choice`` options are Jinja templates over the
record's fields. ``task=FILE.yaml`` runs a task you wrote (its folder is the include path); ``task=NAME`` a task of
the harness's registry (its dataset must be in the Hugging Face cache when offline). The model is the artifact's,
loaded once by forge (an adapter merged in memory) and handed to the harness's ``HFLM``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from forge import Artifact, ConfigError, DataError, EvalRequest, EvalResult, ForgeError

OPTIONS = {"task", "output_type", "doc_to_text", "doc_to_target", "doc_to_choice", "until", "max_gen_toks",
           "metric", "num_fewshot", "limit", "batch_size", "chat", "system"}
OUTPUT_TYPES = ("generate_until", "multiple_choice", "loglikelihood")
DEFAULT_METRIC = {"generate_until": "exact_match", "multiple_choice": "acc", "loglikelihood": "acc"}
TASK = "forge_local"


def require_lm_eval() -> Any:
    try:
        import lm_eval
    except ImportError:
        raise ForgeError("the lm-eval suite needs lm-evaluation-harness, which is not installed: "
                         "pip install 'lm-eval>=0.4,<0.5'") from None
    return lm_eval


def task_yaml(data: Path, options: dict[str, Any]) -> str:
    """The task definition for a local JSONL/JSON/CSV file (the harness loads it with ``datasets``)."""
    import yaml

    output_type = str(options.get("output_type", "generate_until"))
    if output_type not in OUTPUT_TYPES:
        raise ConfigError(f"--set output_type={output_type}: expected {', '.join(OUTPUT_TYPES)}")
    suffix = data.suffix.lower().lstrip(".")
    builder = {"jsonl": "json", "json": "json", "csv": "csv", "parquet": "parquet"}.get(suffix)
    if builder is None:
        raise DataError(f"{data}: the lm-eval suite reads .jsonl, .json, .csv or .parquet files")
    metric = str(options.get("metric", DEFAULT_METRIC[output_type]))
    task: dict[str, Any] = {
        "task": TASK, "dataset_path": builder, "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test", "output_type": output_type,
        "doc_to_text": str(options.get("doc_to_text", "{{question}}")),
        "doc_to_target": str(options.get("doc_to_target", "{{answer}}")),
        "metric_list": [{"metric": metric, "aggregation": "mean", "higher_is_better": True,
                         **({"ignore_case": True, "ignore_punctuation": True} if metric == "exact_match" else {})}],
    }
    if output_type == "multiple_choice":
        if "doc_to_choice" not in options:
            raise ConfigError("--set output_type=multiple_choice needs --set doc_to_choice=TEMPLATE "
                              "(e.g. '{{choices}}')")
        task["doc_to_choice"] = str(options["doc_to_choice"])
    if output_type == "generate_until":
        until = options.get("until", "\n\n")
        until_list = [str(u) for u in until] if isinstance(until, list) else [str(until).encode().decode(
            "unicode_escape")]
        task["generation_kwargs"] = {"until": until_list, "do_sample": False, "temperature": 0.0,
                                     "max_gen_toks": int(options.get("max_gen_toks", 256))}
    return str(yaml.safe_dump(task, sort_keys=False, allow_unicode=True))


def metric_key(name: str, filter_name: str) -> str:
    key = name if filter_name == "none" else f"{name}_{filter_name}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)


def evaluate(artifact: Artifact, request: EvalRequest) -> EvalResult:
    import yaml

    from forge_hf.eval_lm import bool_option, int_option, load_lm

    options = dict(request.options)
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise ConfigError(f"--set {unknown[0]}: the lm-eval suite takes {', '.join(sorted(OPTIONS))}")
    lm_eval = require_lm_eval()
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    batch_size = int_option(options, "batch_size", 8)
    limit = int_option(options, "limit", 0, minimum=0)
    fewshot = int_option(options, "num_fewshot", 0, minimum=0)
    request.output_dir.mkdir(parents=True, exist_ok=True)
    task_option = options.get("task")
    if task_option is not None and request.data is not None:
        raise ConfigError("give either --data FILE (forge writes the task) or --set task=..., not both")
    if task_option is None:
        if request.data is None:
            raise ForgeError("the lm-eval suite needs --data FILE (question/answer records) or --set task=FILE.yaml")
        data = Path(request.data)
        if not data.is_file():
            raise DataError(f"{data}: no such file")
        folder = request.output_dir / "lm_eval_task"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{TASK}.yaml").write_text(task_yaml(data, options), encoding="utf-8")
        manager = TaskManager(include_path=str(folder), include_defaults=False)
        names, described = [TASK], f"{data} (task {folder / (TASK + '.yaml')})"
    elif str(task_option).endswith((".yaml", ".yml")):
        path = Path(str(task_option))
        if not path.is_file():
            raise ConfigError(f"--set task={task_option}: no such file")
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set task={task_option}: not valid YAML ({str(exc).splitlines()[0]})") from None
        name = spec.get("task") or spec.get("group") if isinstance(spec, dict) else None
        if not isinstance(name, str):
            raise ConfigError(f"--set task={task_option}: the YAML names no 'task'")
        manager = TaskManager(include_path=str(path.parent.resolve()), include_defaults=False)
        names, described = [name], str(path)
    else:
        manager = TaskManager()
        names, described = [str(task_option)], f"lm-eval task {task_option}"
        if not manager.match_tasks(names):
            raise ConfigError(f"--set task={task_option}: lm-eval knows no such task")

    for name in ("lm_eval", "lm-eval"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with load_lm(artifact, batch_size) as lm:
        request.log(f"lm-eval {lm_eval.__version__ if hasattr(lm_eval, '__version__') else ''}: {described}")
        model = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=batch_size)
        chat = bool_option(options, "chat", False)
        try:
            output = lm_eval.simple_evaluate(
                model=model, tasks=names, task_manager=manager, num_fewshot=fewshot or None,
                limit=limit or None, log_samples=True, bootstrap_iters=0, apply_chat_template=chat,
                system_instruction=options.get("system"), random_seed=request.seed,
                numpy_random_seed=request.seed, torch_random_seed=request.seed, fewshot_random_seed=request.seed)
        except (KeyError, ValueError, TypeError, FileNotFoundError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{described}: lm-eval could not run the task ({type(exc).__name__}: {message})") \
                from None
    if not output:
        raise ForgeError("lm-eval returned no results")
    return to_result(output, request)


def to_result(output: dict[str, Any], request: EvalRequest) -> EvalResult:
    """lm-eval's results and logged samples as forge metrics, per-example values and records."""
    import numpy as np

    results: dict[str, dict[str, Any]] = output.get("results") or {}
    samples: dict[str, list[dict[str, Any]]] = output.get("samples") or {}
    several = len(results) > 1
    metrics: dict[str, float] = {}
    per_example: dict[str, list[float]] = {}
    records: list[dict[str, Any]] = []
    for task, values in results.items():
        for key, value in values.items():
            if "," not in key or "_stderr" in key.split(",")[0]:
                continue
            metric, filter_name = key.split(",", 1)
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            name = metric_key(f"{task}_{metric}" if several else metric, filter_name)
            metrics[name] = number
            per_doc = [s.get(metric) for s in samples.get(task, []) if s.get("filter", "none") == filter_name]
            numeric = [float(v) for v in per_doc if isinstance(v, (int, float, np.floating, np.integer))
                       and not isinstance(v, bool)] if per_doc else []
            # a mean over examples: the core gives it a bootstrap interval
            if numeric and len(numeric) == len(per_doc) and abs(float(np.mean(numeric)) - number) < 1e-9:
                per_example[name] = numeric
        first_filter = None
        for sample in samples.get(task, []):
            if first_filter is None:
                first_filter = sample.get("filter", "none")
            if sample.get("filter", "none") != first_filter:
                continue
            scored = [m for m in sample.get("metrics", []) if isinstance(sample.get(m), (int, float, np.floating))]
            response = sample.get("filtered_resps")
            records.append({
                "input": sample.get("doc"), "expected": _plain(sample.get("target")),
                "output": _plain(response[0] if isinstance(response, list) and len(response) == 1 else response),
                "score": float(sample[scored[0]]) if scored else None,
                **({"task": task} if several else {})})
    if not metrics:
        raise ForgeError("lm-eval produced no numeric metric")
    request.log("lm-eval: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    return EvalResult(metrics=metrics, records=records, per_example=dict(per_example),
                      extra={"lm_eval_tasks": list(results), "configs": _plain(output.get("configs"))})


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, tuples to lists, anything else odd to its string."""
    import numpy as np

    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)
