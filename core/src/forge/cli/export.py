"""``forge export ARTIFACT --format NAME``: turn an artifact into another (merged weights, ONNX, int8...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

import forge
from forge import seals
from forge.artifacts import ArtifactResult, staged_directory, write_artifact_manifest
from forge.config import ConfigSource, validate
from forge.contributions import Registered
from forge.errors import ForgeError, NotFoundError
from forge.plugins import PluginSet, get_plugins
from forge.references import Reference


def pick_exporter(plugins: PluginSet, name: str, kind: str) -> Registered:
    try:
        exporter = plugins.get("exporters", name)
    except NotFoundError:
        accepting = sorted({r.name for r in plugins.all("exporters") if kind in r.item.accepts})
        raise NotFoundError(
            f"unknown export format '{name}'; for a {kind} artifact: {', '.join(accepting) or '(none installed)'}"
        ) from None
    if kind not in exporter.item.accepts:
        accepting = sorted({r.name for r in plugins.all("exporters") if kind in r.item.accepts})
        raise ForgeError(
            f"--format {name}: exporter {exporter.qualified} does not take {kind} artifacts "
            f"(it takes {', '.join(exporter.item.accepts)}); formats for {kind}: {', '.join(accepting) or 'none'}"
        )
    return exporter


def default_output(reference: Reference, label: str) -> Path:
    artifact = reference.artifact
    if reference.is_registry:  # the registry's files are not ours to write beside
        return Path.cwd() / "exports" / f"{reference.registry.name}-v{reference.registry.version}-{label}"
    source = Path(reference.text)
    if (source / "forge.json").exists() and source != artifact.path:  # a run directory
        return source / "exports" / label
    return artifact.path.parent / f"{artifact.path.name}-{label}"


def checked_options(exporter: Registered, options: dict[str, Any] | ConfigSource) -> dict[str, Any]:
    """The exporter's options validated by its ``options`` model (all problems at once, each with the ``--set``
    it came from): the ones given, as plain values. Exporters without a model get them as given."""
    source = options if isinstance(options, ConfigSource) else ConfigSource(values=dict(options))
    model = exporter.item.options_model()
    if model is None:
        return dict(source.values)
    validated = validate(model, source)
    return validated.model_dump(mode="json", exclude_unset=True)


def export_artifact(source: Path | str, name: str, output: Path | None,
                    options: dict[str, Any] | ConfigSource) -> Path:
    from forge.references import resolve_reference

    plugins = get_plugins()
    reference = resolve_reference(source)
    artifact = reference.artifact
    exporter = pick_exporter(plugins, name, artifact.kind)
    options = checked_options(exporter, options)
    label = name + (f"-{options['quantize']}" if options.get("quantize") else "")
    target = output or default_output(reference, label)
    if target.exists() and any(target.iterdir()):
        raise ForgeError(f"--output {target}: already exists and is not empty")
    with staged_directory(target) as staging:
        result = exporter.item.run(artifact, staging, options)
        if not isinstance(result, ArtifactResult):
            raise TypeError(f"exporter {exporter.qualified} returned {type(result).__name__}, not ArtifactResult")
        made_by = {
            "exporter": exporter.qualified,
            "export_options": options,
            "forge_version": forge.__version__,
            "plugins": plugins.versions(),
            "parent": {"path": str(artifact.path.resolve()), "kind": artifact.kind,
                       "seal": seals.seal(artifact.path, "parent")},
            "config": artifact.manifest.get("config"),
            "data": artifact.manifest.get("data"),
        }
        write_artifact_manifest(staging, result, made_by)
    return target


def export(
    artifact: str = typer.Argument(..., help="A completed run directory, an artifact or export directory, or "
                                             "models:/NAME/VERSION or models:/NAME@ALIAS."),
    format: str = typer.Option(..., "--format", "-f", help="Exporter name (merged, onnx...)."),
    output: Path = typer.Option(None, "--output", "-o", help="Where to write (default: RUN/exports/FORMAT)."),
    quantize: str = typer.Option(None, "--quantize",
                                 help="Quantize while exporting: int8 (onnx); f16, bf16, q8_0, q4_0... (gguf)."),
    overrides: list[str] = typer.Option([], "--set", "-s", help="Exporter option key=value (repeatable)."),
) -> None:
    """Export an artifact. Example: forge export runs/classify-1 --format onnx --quantize int8"""
    from forge.config import apply_overrides

    source = ConfigSource()
    apply_overrides(source, list(overrides))
    if quantize:
        source.set("quantize", quantize, f"--quantize {quantize}")
    target = export_artifact(artifact, format, output, source)
    typer.echo(f"exported {artifact} → {target}")
