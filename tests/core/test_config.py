"""Config validation: every problem at once, one line each, with where it came from; nothing written."""

from __future__ import annotations

import textwrap


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def lines(result):
    return result.stderr.strip().splitlines()


def test_bad_yaml_names_file_and_line(forge_cli):
    config = write(forge_cli.cwd / "bad.yaml", """\
        recipe: descent
        steps: 3
          learning_rate: 0.1
        """)
    result = forge_cli("run", "--config", config)
    assert result.returncode == 2
    assert lines(result) == [f"forge: error: {config}:3: invalid YAML: mapping values are not allowed here"]


def test_every_problem_reported_at_once(forge_cli):
    config = write(forge_cli.cwd / "c.yaml", """\
        recipe: descent
        steps: ten
        learning_rat: 0.1
        noise: 0.2
        """)
    result = forge_cli("run", "--config", config, "--set", "target=high")
    assert result.returncode == 2
    assert lines(result) == [
        f"forge: error: {config}:2: steps: Input should be a valid integer, unable to parse string as an integer "
        "(got 'ten')",
        "forge: error: --set target=high: target: Input should be a valid number, unable to parse string as a "
        "number (got 'high')",
        f"forge: error: {config}:3: learning_rat: unknown key (did you mean 'learning_rate'?)",
    ]
    assert not (forge_cli.cwd / "runs").exists()


def test_missing_required_field(forge_cli):
    result = forge_cli("run", "--recipe", "load")
    assert result.returncode == 2
    assert lines(result) == ["forge: error: config: model: missing required field"]


def test_flag_the_recipe_does_not_take(forge_cli):
    result = forge_cli("run", "--recipe", "descent", "--model", "gpt2")
    assert result.returncode == 2
    assert "--model: recipe descent takes no 'model'" in result.stderr


def test_missing_data_file(forge_cli):
    config = write(forge_cli.cwd / "c.yaml", "recipe: descent\ndata: nowhere.jsonl\n")
    result = forge_cli("run", "--config", config)
    assert result.returncode == 2
    assert lines(result) == [f"forge: error: {config}:2: data: file not found: {forge_cli.cwd / 'nowhere.jsonl'}"]


def test_relative_paths_resolve_against_the_config_file(forge_cli):
    project = forge_cli.cwd / "project"
    project.mkdir()
    (project / "train.txt").write_text("hello\n")
    write(project / "config.yaml", "recipe: descent\ndata: train.txt\nsteps: 2\n")
    result = forge_cli("run", "--config", "project/config.yaml", "--dry-run", check=True)
    assert f"data: {project / 'train.txt'}" in result.stdout
    assert "recipe: forge-testkit:descent" in result.stdout
    assert not (forge_cli.cwd / "runs").exists()


def test_not_a_mapping(forge_cli):
    config = write(forge_cli.cwd / "list.yaml", "- a\n- b\n")
    result = forge_cli("run", "--config", config)
    assert lines(result) == [f"forge: error: {config}:1: the config must be a mapping of key: value, got list"]


def test_missing_config_file_and_bad_set(forge_cli):
    assert lines(forge_cli("run", "--config", "nope.yaml")) == ["forge: error: nope.yaml: config file not found"]
    result = forge_cli("run", "--recipe", "descent", "--set", "steps")
    assert lines(result) == ["forge: error: --set steps: expected key=value"]


def test_output_dir_that_is_not_a_run(forge_cli):
    (forge_cli.cwd / "stuff").mkdir()
    (forge_cli.cwd / "stuff" / "thesis.tex").write_text("precious")
    result = forge_cli("run", "--recipe", "descent", "-o", "stuff", "--no-tracking")
    assert result.returncode == 2
    assert lines(result) == ["forge: error: --output-dir stuff: exists, is not empty and is not a forge run"]
    assert (forge_cli.cwd / "stuff" / "thesis.tex").read_text() == "precious"
    assert sorted(p.name for p in (forge_cli.cwd / "stuff").iterdir()) == ["thesis.tex"]


def test_output_dir_with_completed_run(forge_cli):
    forge_cli("run", "--recipe", "descent", "--set", "steps=2", "-o", "r", "--no-tracking", check=True)
    again = forge_cli("run", "--recipe", "descent", "-o", "r", "--no-tracking")
    assert again.returncode == 2
    assert "holds a completed forge run" in again.stderr


def test_bad_cli_arguments_exit_2(forge_cli):
    result = forge_cli("run", "--recipe", "descent", "--no-such-flag")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert lines(result) == ["forge: error: No such option: --no-such-flag (see forge run -h)"]
    typed = forge_cli("serve", "nowhere", "--port", "http")
    assert typed.returncode == 2 and len(lines(typed)) == 1 and "'--port'" in typed.stderr


def check(model, **values):
    """Validate ``values`` given as ``--set`` overrides; the problems, one line each."""
    from forge import config as cfg
    from forge.errors import ConfigError

    source = cfg.ConfigSource()
    cfg.apply_overrides(source, [f"{k}={v}" for k, v in values.items()])
    try:
        cfg.validate(model, source)
    except ConfigError as exc:
        return exc.problems
    return []


def test_numbers_are_finite_and_true_is_not_a_number():
    from forge.config import RecipeConfig

    class Config(RecipeConfig):
        rate: float = 1.0
        steps: int = 3
        flag: bool = False

    assert check(Config, rate="nan", steps="true", flag="yes", seed="-1") == [
        "--set seed=-1: seed: Input should be greater than or equal to 0 (got -1)",
        "--set rate=nan: rate: Input should be a finite number (got 'nan')",
        "--set steps=true: steps: expected a number, not true/false (got True)",
    ]
    assert check(Config, seed=2**32 - 1) == [] and check(Config, seed=2**32)


def test_a_union_gives_one_line_and_a_model_check_points_at_its_field():
    from typing import Annotated, Literal

    from forge.config import RecipeConfig
    from pydantic import Field, model_validator

    class Config(RecipeConfig):
        modules: Annotated[list[str], Field(min_length=1)] | Literal["all"] = "all"
        where: dict[str, int] | int | None = None
        low: int = 0
        high: int = 1

        @model_validator(mode="after")
        def _ordered(self):
            if self.low > self.high:
                raise ValueError(f"high: must be at least low ({self.low})")
            return self

    assert check(Config, modules="[]", where="x") == [
        "--set modules=[]: modules: List should have at least 1 item after validation, not 0",
        "--set where=x: where: expected dict[str, int] | int | None (got 'x')",
    ]
    assert check(Config, low=5, high=2) == ["--set high=2: high: must be at least low (5)"]


def test_yaml_alias_bomb_is_refused_quickly(forge_cli):
    import time

    rows = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefghi":  # 10^9 values once expanded
        previous = chr(ord(level) - 1)
        rows.append(f"{level}: &{level} [{', '.join(['*' + previous] * 10)}]")
    config = write(forge_cli.cwd / "bomb.yaml", "recipe: descent\n" + "\n".join(rows) + "\n")
    started = time.perf_counter()
    result = forge_cli("run", "--config", config, "--dry-run")
    assert result.returncode == 2
    assert lines(result) == [f"forge: error: {config}: YAML aliases expand to more than 100,000 values; refusing "
                             "(an alias bomb, or a config far larger than any recipe needs)"]
    assert time.perf_counter() - started < 30  # the CLI process; the check itself is linear (milliseconds)


def test_alias_bomb_in_set_is_refused(forge_cli):
    ok = forge_cli("run", "--recipe", "descent", "--dry-run", "--set", "steps=3")
    assert ok.returncode == 0, ok.stderr
    nested = "&l1 [&l0 [" + ", ".join(["x"] * 10) + "]" + ", *l0" * 9 + "]"
    for level in range(2, 8):
        nested = f"&l{level} [{nested}" + f", *l{level - 1}" * 9 + "]"
    result = forge_cli("run", "--recipe", "descent", "--dry-run", "--set", f"steps={nested}")
    assert result.returncode == 2
    assert "YAML aliases expand to more than 100,000 values" in result.stderr
    assert "Traceback" not in result.stderr
