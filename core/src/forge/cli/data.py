"""``forge data inspect|scan``: what is in a data file, and whether it holds PII or secrets, before training on it."""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from typing import Any

import typer

app = typer.Typer(help="Inspect data files, scan them for PII and secrets, show where a model's data came from.",
                  no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})

FIRST_PROBLEMS = 5


class PIIFound(Exception):
    """``--fail-on`` kinds were found (exit 3, like a failed gate)."""


def inspect_file(source: str, tokenizer: Any = None) -> dict[str, Any]:
    """Format, counts, per-field character (and token) lengths, duplicates, empty records, first problems."""
    from forge import datafiles

    count = duplicates = empty = 0
    seen: set[bytes] = set()
    lengths: dict[str, list[int]] = {}
    tokens: list[int] = []
    problems: list[str] = []
    fmt = task = None
    for record, where in datafiles.iter_source(source):
        count += 1
        if fmt is None:
            for candidate in ("sft", "preference"):
                fmt = datafiles.detect_format(record, candidate)
                if fmt:
                    task = candidate
                    break
            fmt = fmt or "table"
        digest = hashlib.blake2b(json.dumps(record, sort_keys=True, default=str).encode(), digest_size=16).digest()
        if digest in seen:
            duplicates += 1
        seen.add(digest)
        texts = list(_texts(record))
        if not any(t.strip() for _, t in texts):
            empty += 1
        per_field: Counter[str] = Counter()
        for field, text in texts:
            per_field[field] += len(text)
        for field, n in per_field.items():
            lengths.setdefault(field, []).append(n)
        if tokenizer is not None:
            tokens.append(len(tokenizer("\n".join(t for _, t in texts), add_special_tokens=False)["input_ids"]))
        if task is not None and len(problems) < FIRST_PROBLEMS:
            try:
                datafiles.normalize(record, fmt)
            except datafiles.Problem as exc:
                problems.append(f"{where}: {exc}")
    report: dict[str, Any] = {
        "source": source, "format": fmt, "records": count, "duplicates": duplicates, "empty": empty,
        "fields": {f: {"present": len(v), "chars": datafiles.length_stats(v)} for f, v in lengths.items()},
        "problems": problems,
    }
    if tokenizer is not None:
        report["tokens"] = datafiles.length_stats(tokens)
    return report


def _texts(record: dict[str, Any]) -> Any:
    """(top-level field, text) for each string in a record (a conversation's contents count for its field)."""
    from forge.pii import strings

    for field, text in strings(record):
        if field.rsplit(".", 1)[-1] in ("role", "from", "type", "id", "tool_call_id"):
            continue  # structure, not text
        yield field.split(".")[0].split("[")[0], text


def _load_tokenizer(model: str) -> Any:
    from forge.errors import ForgeError

    name = model
    try:  # forge-hf's offline aliases (smollm2-135m-instruct...), when that plugin is installed
        from forge_hf.provider import ALIASES, resolve_model

        if model in ALIASES:
            name = resolve_model(model)[0]
    except ImportError:
        pass
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ForgeError(f"--model {model}: could not load its tokenizer ({first})") from None


@app.command("inspect")
def inspect(
    files: list[str] = typer.Argument(..., help="Data files (JSONL, JSON, CSV/TSV, Parquet, Arrow) or Hub names."),
    model: str = typer.Option(None, "--model", "-m", help="Also count tokens with this model's tokenizer."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list (one object per file)."),
) -> None:
    """Format, record count, field lengths (characters; tokens with --model), exact duplicates, empty records and
    the first problems of each file. Example: forge data inspect train.jsonl --model smollm2-135m-instruct
    """
    tokenizer = _load_tokenizer(model) if model else None
    reports = [inspect_file(f, tokenizer) for f in files]
    if as_json:
        print(json.dumps(reports, indent=2))
        return
    for r in reports:
        print(f"{r['source']}: {r['records']:,} records, format {r['format']}")
        for field, info in r["fields"].items():
            c = info["chars"]
            print(f"  {field}: in {info['present']:,} records; chars min {c['min']} mean {c['mean']} "
                  f"p95 {c['p95']} max {c['max']}")
        if "tokens" in r:
            t = r["tokens"]
            print(f"  tokens ({model}): min {t['min']} mean {t['mean']} p95 {t['p95']} max {t['max']}")
        print(f"  exact duplicates: {r['duplicates']:,}; empty or whitespace-only: {r['empty']:,}")
        print("  problems: " + ("none" if not r["problems"] else ""))
        for problem in r["problems"]:
            print(f"    {problem}")


@app.command("scan")
def scan(
    files: list[str] = typer.Argument(..., help="Data files (JSONL, JSON, CSV/TSV, Parquet, Arrow) or Hub names."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings and counts as one JSON object."),
    fail_on: str = typer.Option(None, "--fail-on", help="Exit 3 when any of these kinds is found: KIND,... "
                                                        "(email, phone, card, iban, ipv4, ipv6, ssn, secret, all)."),
) -> None:
    """Find PII and secrets: e-mail addresses, phone numbers, payment cards (Luhn), IBANs (mod-97), IP addresses,
    US SSNs, cloud keys, private keys and tokens; one line per finding (file:line, field, kind, masked value).
    Example: forge data scan train.jsonl --fail-on card,iban,secret
    """
    from forge import datafiles, pii
    from forge.errors import ForgeError

    try:
        failing = pii.parse_kinds(fail_on) if fail_on else ()
    except ValueError as exc:
        raise ForgeError(f"--fail-on: {exc}") from None
    findings: list[dict[str, Any]] = []
    counts: Counter[str] = Counter()
    records = 0
    batch: list[tuple[dict[str, Any], str]] = []

    def scan_batch() -> None:  # records go through pii.scan_records in batches: one cheap test for many clean ones
        hits = pii.scan_records([record for record, _ in batch])
        for i in sorted(hits):
            where = batch[i][1]
            for field, finding in hits[i]:
                counts[finding.kind] += 1
                item = {"where": where, "field": field, "kind": finding.kind, "masked": finding.masked()}
                findings.append(item)
                if not as_json:
                    print(f"{where}: {field}: {finding.kind} {item['masked']}")
        batch.clear()

    for source in files:
        for record, where in datafiles.iter_source(source):
            records += 1
            batch.append((record, where))
            if len(batch) >= datafiles.PII_BATCH:
                scan_batch()
        scan_batch()
    summary = ", ".join(f"{n:,} {k}" for k, n in sorted(counts.items())) or "no findings"
    if as_json:
        print(json.dumps({"files": files, "records": records, "counts": dict(counts), "findings": findings},
                         indent=2))
    else:
        print(f"scanned {records:,} records in {len(files)} file(s): {summary}", file=sys.stderr)
    hit = sorted(k for k in failing if counts.get(k))
    if hit:
        print(f"forge: PII found: {', '.join(f'{counts[k]:,} {k}' for k in hit)} (--fail-on)", file=sys.stderr)
        raise typer.Exit(3)


def lineage_of(ref: str) -> dict[str, Any]:
    """model ← run ← datasets ← parents, from the manifests (forge.json) of the artifact, its run and any export."""
    from pathlib import Path

    from forge.artifacts import read_manifest
    from forge.errors import ForgeError
    from forge.references import producing_run, resolve_reference

    reference = resolve_reference(ref)
    artifact_dir = Path(reference.artifact.path).resolve()
    manifest = read_manifest(artifact_dir)
    out: dict[str, Any] = {"reference": ref, "artifact": {"path": str(artifact_dir), "kind": manifest.get("kind")}}
    if reference.registry is not None:
        r = reference.registry
        out["registry"] = {"name": r.name, "version": r.version, "alias": r.alias}
    chain = []  # an export's parents, up to the trained artifact
    current, current_manifest = artifact_dir, manifest
    for _ in range(8):
        parent = current_manifest.get("parent")
        path = parent.get("path") if isinstance(parent, dict) else None
        if not path:
            break
        current = Path(path)
        try:
            current_manifest = read_manifest(current)
        except ForgeError:
            chain.append({"path": str(current), "kind": None, "missing": True})
            break
        chain.append({"path": str(current), "kind": current_manifest.get("kind")})
    out["parents"] = chain
    run_dir = reference.run_dir or producing_run(artifact_dir, manifest)
    if run_dir is None and reference.registry is not None:
        run_dir = _registered_run_dir(reference.registry)
    run: dict[str, Any] = {}
    if run_dir is not None:
        run_dir = Path(run_dir).resolve()
        run = read_manifest(run_dir)
        out["run"] = {"path": str(run_dir), "recipe": run.get("recipe"), "status": run.get("status"),
                      "mlflow_run_id": (run.get("mlflow") or {}).get("run_id")}
    facts = run or current_manifest  # an artifact copied out of its run (a registry download) keeps its data list
    found = run.get("dataset") or {}
    pii = run.get("pii") or {}
    datasets = []
    for entry in facts.get("data") or []:
        item: dict[str, Any] = {"field": entry.get("field"), "source": entry.get("path") or entry.get("hub"),
                                "sha256": entry.get("sha256")}
        if entry.get("field") == "data":
            if found.get("format"):
                item["format"] = found["format"]
            records = sum(int(found.get(k) or 0) for k in ("train_records", "eval_records"))
            if records:
                item["records"] = records
            if pii:
                item["pii"] = {"policy": pii.get("policy"), "found": pii.get("found") or {}}
                if pii.get("redacted"):
                    item["trained_on"] = pii["redacted"]
        datasets.append(item)
    out["datasets"] = datasets
    return out


def _registered_run_dir(resolved: Any) -> Any:
    """The forge run directory a registered version came from, when it is on this machine: the version's
    ``forge.source_run`` tag names the MLflow run, whose ``forge.run_dir`` tag names the directory."""
    from pathlib import Path

    try:
        from mlflow.tracking import MlflowClient

        from forge.tracking import connect

        connect()
        client = MlflowClient()
        run_id = client.get_model_version(resolved.name, resolved.version).tags.get("forge.source_run")
        run_dir = client.get_run(run_id).data.tags.get("forge.run_dir") if run_id else None
    except Exception:  # no store, no such tag: the lineage shows what the artifact itself records
        return None
    if run_dir and (Path(run_dir) / "forge.json").is_file():
        return Path(run_dir)
    return None


@app.command("lineage")
def lineage(
    ref: str = typer.Argument(..., help="A run directory, an artifact or export directory, or models:/NAME/VERSION "
                                        "or models:/NAME@ALIAS."),
    as_json: bool = typer.Option(False, "--json", help="Print the lineage as one JSON object."),
) -> None:
    """Where a model came from: model ← run ← datasets (sha256, format, records, PII) ← parents (a redacted copy's
    source, the artifact an export was made from). Example: forge data lineage models:/support-bot@champion
    """
    info = lineage_of(ref)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    artifact = info["artifact"]
    registry = info.get("registry")
    if registry:
        alias = f" @{registry['alias']}" if registry.get("alias") else ""
        print(f"model {registry['name']} v{registry['version']}{alias}")
    print(f"{'  ← ' if registry else ''}artifact {artifact['path']} ({artifact['kind']})")
    indent = "  " if registry else ""
    for parent in info["parents"]:
        indent += "  "
        gone = " (gone)" if parent.get("missing") else ""
        print(f"{indent}← exported from {parent['path']} ({parent['kind']}){gone}")
    indent += "  "
    run = info.get("run")
    if run:
        mlflow = f"; mlflow run {run['mlflow_run_id']}" if run.get("mlflow_run_id") else ""
        print(f"{indent}← run {run['path']} ({run['recipe']}, {run['status']}{mlflow})")
        indent += "  "
    else:
        print(f"{indent}← run: not found (the data below is what the artifact's manifest records)")
        indent += "  "
    if not info["datasets"]:
        print(f"{indent}← data: none recorded")
    for d in info["datasets"]:
        details = [f"sha256 {d['sha256'][:12]}" if d.get("sha256") else "Hub dataset"]
        if d.get("format"):
            details.append(f"format {d['format']}")
        if d.get("records"):
            details.append(f"{d['records']:,} records")
        if d.get("pii"):
            found = ", ".join(f"{n} {k}" for k, n in sorted(d["pii"]["found"].items())) or "none found"
            details.append(f"PII {found} (pii: {d['pii']['policy']})")
        print(f"{indent}← {d['field']} {d['source']} ({'; '.join(details)})")
        trained = d.get("trained_on")
        if trained:
            print(f"{indent}  trained on the redacted copy {trained['path']} (sha256 {trained['sha256'][:12]}, "
                  f"{trained['records']:,} records) ← parent {trained['parent'].get('source')}")
