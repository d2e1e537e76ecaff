"""forge-hf's recipes read data through core's :mod:`forge.datafiles` (formats, checks); kept under this name."""

from __future__ import annotations

from typing import Any

from forge.datafiles import (
    MAX_PROBLEMS,
    PREFERENCE_FORMATS,
    ROLES,
    SFT_FORMATS,
    SHAREGPT_ROLES,
    TABLE_SUFFIXES,
    Check,
    Loaded,
    Mixture,
    PiiPolicy,
    PreferenceFormat,
    Problem,
    Rows,
    SftFormat,
    chat_messages,
    check_fields,
    check_mixture,
    check_sft,
    check_source,
    detect_format,
    display_name,
    file_sha256,
    iter_source,
    length_stats,
    load,
    load_mixture,
    local_file,
    normalize,
    read_rows,
    split_holdout,
    text_or_messages,
    to_prompt_completion,
    validate,
    write_redacted,
)

__all__ = [
    "MAX_PROBLEMS",
    "PREFERENCE_FORMATS",
    "ROLES",
    "SFT_FORMATS",
    "SHAREGPT_ROLES",
    "TABLE_SUFFIXES",
    "Check",
    "Loaded",
    "Mixture",
    "PiiPolicy",
    "PreferenceFormat",
    "Problem",
    "Rows",
    "SftFormat",
    "chat_messages",
    "check_fields",
    "check_mixture",
    "check_records",
    "check_sft",
    "check_source",
    "describe_data",
    "detect_format",
    "display_name",
    "file_sha256",
    "iter_source",
    "length_stats",
    "load",
    "load_mixture",
    "local_file",
    "normalize",
    "prepare_records",
    "read_rows",
    "split_holdout",
    "text_or_messages",
    "to_prompt_completion",
    "validate",
    "write_redacted",
]


def describe_data(data: Any) -> str:
    """How a run's ``data`` is named in messages: the source, or ``data (N sources)``."""
    return str(data) if isinstance(data, str) else f"data ({len(data)} sources)"


def prepare_records(ctx: Any, config: Any, task: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """A recipe's data (``sft``, ``dpo``): one source or a mixture (``config.data``), an ``eval_data`` source or the
    ``eval_split`` hold-out, the ``pii`` policy; logs the summary (and mixture table) and records the sources."""
    mixture = load_mixture(config.data, task, config.format, pii=config.pii, seed=config.seed)
    evaluation = None
    if getattr(config, "eval_data", None) is not None:
        evaluation = load_mixture(config.eval_data, task, config.format, pii=config.pii, seed=config.seed)
        train, held = mixture.records, evaluation.records
    else:
        train, held = split_holdout(mixture.records, config.eval_split, config.seed)
    if isinstance(config.data, str):
        ctx.log(f"data: {mixture.loaded[0].summary()}; train {len(train):,}, eval {len(held):,}")
    else:
        for line in mixture.table():
            ctx.log(line)
        ctx.log(f"data: {len(mixture.records):,} records, format {mixture.format}; train {len(train):,}, "
                f"eval {len(held):,}")
    if evaluation is not None:
        ctx.log(f"eval data: {len(held):,} records, format {evaluation.format}")
    found: dict[str, int] = {}
    for source in [*mixture.loaded, *(evaluation.loaded if evaluation else [])]:
        pii_line = source.pii_line(config.pii)
        if pii_line:
            ctx.log(pii_line)
        for kind, n in source.pii.items():
            found[kind] = found.get(kind, 0) + n
    pii_facts: dict[str, Any] = {"policy": config.pii, "found": found}
    if config.pii == "redact" and found:
        pii_facts["redacted"] = write_redacted(mixture.records, mixture.sources, ctx.run_dir / "data")
    sources = [{**s, "role": "train"} for s in mixture.sources]
    sources += [{**s, "role": "eval"} for s in (evaluation.sources if evaluation else [])]
    ctx.record(pii=pii_facts, data_sources=sources)
    return train, held, mixture.format


def check_records(config: Any, task: str, log: Any) -> None:
    """``--dry-run`` of :func:`prepare_records`: every source read and checked as the run does, nothing kept."""
    check_mixture(config.data, task, config.format, log, pii=config.pii, seed=config.seed)
    if getattr(config, "eval_data", None) is not None:
        check_mixture(config.eval_data, task, config.format, lambda line: log(f"eval {line}"), pii=config.pii,
                      seed=config.seed)
