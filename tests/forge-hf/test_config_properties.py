"""Every field of every shipped recipe config, exporter's options and ``forge serve`` flag refuses the wrong values
generated from its type: exit 2, one line per problem naming the field, never a traceback (issue 19).

The values come from each pydantic model's fields (``model_fields``): for numbers nan, inf, a string, true, a
fraction for integers and the value just past each bound; for choices "bogus"; for lists a scalar and [] where
a minimum length is set; for booleans "maybe"; for strings a list, and "" where a minimum length is set. A value
a field legitimately takes is listed in ``ACCEPTED`` with the reason. Checks go through the real CLI, in-process
(``forge run --dry-run --set FIELD=VALUE``: nothing loads), so the whole sweep takes seconds.
"""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from forge.cli import main
from forge.plugins import get_plugins
from forge.serving.settings import ServeSettings

RECIPES = ["sft", "qlora", "dpo", "grpo", "classify", "lstm-forecast", "stat-forecast"]

# (recipe, field, value as typed) -> why the field takes it. Empty: every generated value is refused today; a new
# field whose type makes the sweep generate a value it rightly takes gets an entry here, with the reason.
ACCEPTED: dict[tuple[str, str, str], str] = {}


def _flat(annotation: Any) -> list[Any]:
    """The members of a (possibly optional, annotated) union type."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _flat(args[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in args for m in _flat(a)]
    return [annotation]


def _bounds(metadata: list[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in metadata:
        for name in ("ge", "gt", "le", "lt", "min_length"):
            value = getattr(item, name, None)
            if value is not None:
                found[name] = value
    return found


def _members_metadata(annotation: Any) -> list[Any]:
    """Constraints written inside the type (``Annotated[list[str], Field(min_length=1)] | Literal[...]``)."""
    found: list[Any] = []
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        found += [m for m in args[1:] if isinstance(m, annotated_types.BaseMetadata)]
        for meta in args[1:]:
            found += list(getattr(meta, "metadata", []))
        found += _members_metadata(args[0])
    elif origin in (typing.Union, types.UnionType):
        for a in args:
            found += _members_metadata(a)
    return found


def wrong_values(info: Any) -> list[str]:
    """Values (as ``--set`` text) that the field must refuse."""
    members = _flat(info.annotation)
    kinds = {typing.get_origin(m) or m for m in members}
    limits = _bounds(list(info.metadata) + _members_metadata(info.annotation))
    values: list[str] = []
    numeric = [m for m in members if m in (int, float)]
    if numeric:
        values += ["nan", "inf", "-inf", "true", "[1, 2]"]
        if str not in kinds and typing.Literal not in kinds:
            values.append("abc")
        if int in numeric and float not in numeric:
            values.append("1.5")
        step = 1 if float not in numeric else 0.001
        if "ge" in limits:
            values.append(repr(limits["ge"] - step))
        if "gt" in limits:
            values.append(repr(limits["gt"]))
        if "le" in limits:
            values += [repr(limits["le"] + step), "1.0e30"]
        if "lt" in limits:
            values.append(repr(limits["lt"]))
    if typing.Literal in kinds:
        values.append("bogus")
    if list in kinds:
        if str not in kinds and typing.Literal not in kinds and dict not in kinds:
            values.append("abc")
        if "min_length" in limits or any(_bounds(_members_metadata(m)) for m in members):
            values.append("[]")
        if str in kinds:  # one source or a list of them (data mixtures): a list of numbers is neither
            values += ["[1, 2]", "[]"]
    for member in members:  # numbers inside a list: each item is checked too
        if typing.get_origin(member) is list:
            item = typing.get_args(member)[0]
            if set(_flat(item)) & {int, float}:
                values.append("[nan]")
                inner = _bounds(_members_metadata(item))
                if "ge" in inner:
                    values.append(f"[{inner['ge'] - 1}]")
                if "le" in inner:
                    values.append(f"[{inner['le'] + 1}]")
    if bool in kinds and len(kinds - {type(None)}) == 1:
        values.append("maybe")
    if str in kinds and list not in kinds and dict not in kinds:
        values.append("[1, 2]")
        if limits.get("min_length", 0) >= 1:
            values.append("''")
    if Path in kinds and len(kinds - {type(None)}) <= 2:
        values.append("no/such/file.json")
    return list(dict.fromkeys(values))


def cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, names: tuple[str, ...], what: str) -> None:
    assert code == 2, f"{what}: exit {code}\n{err}"
    assert "Traceback" not in err, f"{what}: traceback\n{err}"
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("forge: error: ") for line in lines), f"{what}: not one line each\n{err}"
    assert any(name in err for name in names), f"{what}: the message does not name {names}\n{err}"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("props")
    reviews = root / "reviews.csv"
    reviews.write_text("text,label\ngood,positive\nbad,negative\n")
    series = root / "series.csv"
    series.write_text("date,value\n2020-01-01,1\n2020-02-01,2\n")
    return {"classify": reviews, "lstm-forecast": series, "stat-forecast": series}


def recipe_cases() -> list[tuple[str, str, str]]:
    plugins = get_plugins()
    cases = []
    for recipe in RECIPES:
        model = plugins.get("recipes", recipe).item.config_model()
        for name, info in model.model_fields.items():
            cases += [(recipe, name, value) for value in wrong_values(info)
                      if (recipe, name, value) not in ACCEPTED]
    return cases


def test_every_field_of_every_recipe_is_swept():
    plugins = get_plugins()
    swept = {(r, f) for r, f, _ in recipe_cases()}
    for recipe in RECIPES:
        for name in plugins.get("recipes", recipe).item.config_model().model_fields:
            assert (recipe, name) in swept, f"{recipe}.{name}: no wrong value generated"


def test_recipe_fields_refuse_wrong_values(files, capsys):
    failures = []
    for recipe, name, value in recipe_cases():
        data = ["--data", files[recipe]] if recipe in files and name != "data" else []
        code, err = cli("run", "--dry-run", "--recipe", recipe, *data, "--set", f"{name}={value}", capsys=capsys)
        try:
            assert_refused(code, err, (f": {name}:", f": {name}."), f"{recipe} --set {name}={value}")
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)


ISSUE_19 = [("classify", "optim=bogus"), ("classify", "lr_scheduler_type=bogus"), ("classify", "fsdp=bogus"),
            ("sft", "seed=-1"), ("sft", "seed=99999999999"), ("classify", "num_train_epochs=inf"),
            ("classify", "num_train_epochs=nan"), ("classify", "num_train_epochs=-1"),
            ("classify", "learning_rate=inf"), ("classify", "label_names=[]"), ("sft", "eval_steps=0"),
            ("sft", "optim=bogus"), ("sft", "num_train_epochs=-1"), ("sft", "learning_rate=inf")]


@pytest.mark.parametrize("recipe, setting", ISSUE_19)
def test_the_values_of_issue_19_stop_before_anything_loads(files, capsys, recipe, setting):
    data = ["--data", files[recipe]] if recipe in files else []
    code, err = cli("run", "--recipe", recipe, *data, "--set", setting, "-o", files["classify"].parent / "never",
                    "--no-tracking", capsys=capsys)
    assert_refused(code, err, (f": {setting.split('=')[0]}",), setting)
    assert not (files["classify"].parent / "never").exists()  # refused before the run directory was made


EXPORTERS = ["merged", "gguf", "onnx"]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A manifest-only artifact of a kind each exporter takes: options are checked before any file is read."""
    root = tmp_path_factory.mktemp("artifacts")
    out = {}
    for name in EXPORTERS:
        kind = get_plugins().get("exporters", name).item.accepts[0]
        path = root / name
        path.mkdir()
        (path / "forge.json").write_text(json.dumps({"type": "artifact", "kind": kind}))
        out[name] = path
    return out


def test_every_exporter_has_an_options_model():
    for name in EXPORTERS:
        assert get_plugins().get("exporters", name).item.options_model() is not None, name


def test_exporter_options_refuse_wrong_values(artifacts, tmp_path, capsys):
    failures, count = [], 0
    for exporter in EXPORTERS:
        model = get_plugins().get("exporters", exporter).item.options_model()
        for name, info in model.model_fields.items():
            values = wrong_values(info)
            assert values, f"{exporter}.{name}: no wrong value generated"
            for value in values:
                count += 1
                code, err = cli("export", artifacts[exporter], "--format", exporter, "-o", tmp_path / "x",
                                "--set", f"{name}={value}", capsys=capsys)
                try:
                    assert_refused(code, err, (f": {name}:",), f"export {exporter} --set {name}={value}")
                except AssertionError as exc:
                    failures.append(str(exc).splitlines()[0])
        code, err = cli("export", artifacts[exporter], "--format", exporter, "--quantize", "bogus", capsys=capsys)
        assert_refused(code, err, ("quantize",), f"export {exporter} --quantize bogus")
        code, err = cli("export", artifacts[exporter], "--format", exporter, "--set", "bogus_option=1", capsys=capsys)
        assert_refused(code, err, ("bogus_option: unknown key",), f"export {exporter} --set bogus_option=1")
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "x").exists()
    assert count > 30


def test_serve_flags_refuse_wrong_values(tmp_path, capsys):
    failures = []
    for name, info in ServeSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        values = [v for v in wrong_values(info) if v not in ("true", "[1, 2]")]  # a flag's value is text anyway
        if info.annotation in (str, str | None):
            values = ["''"]
        assert values, f"{flag}: no wrong value generated"
        for value in values:
            text = "" if value == "''" else value
            code, err = cli("serve", tmp_path / "no-artifact", flag, text, capsys=capsys)
            try:
                assert_refused(code, err, (f": {name}:", f"'{flag}'"), f"serve {flag} {value}")
            except AssertionError as exc:
                failures.append(str(exc).splitlines()[0])
    assert not failures, "\n".join(failures)
