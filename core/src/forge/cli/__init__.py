"""The ``forge`` command line. One module per command; plugins add commands through ``register_commands``.

Errors meant for a person (:class:`forge.errors.ForgeError`, bad arguments) print one line per problem and exit
with code 2; internal bugs keep their traceback.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import typer
from typer._click.exceptions import ClickException, UsageError  # typer vendors its own click
from typer.exceptions import Abort

from forge.console import quiet_libraries, set_verbose
from forge.errors import ForgeError

app = typer.Typer(
    name="forge",
    help="forge: fine-tune, export and serve models through plugins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _register_builtin_commands() -> None:
    from forge.cli import chat, data, env, export, init, list_plugins, predict, registry, run, serve
    from forge.cli import eval as eval_cli

    app.command("run", context_settings={"help_option_names": ["-h", "--help"]})(run.run)
    app.command("list-plugins")(list_plugins.list_plugins)
    app.command("init")(init.init)
    app.command("export")(export.export)
    app.command("serve")(serve.serve)
    app.command("eval")(eval_cli.eval_command)
    app.command("chat")(chat.chat)
    app.command("predict")(predict.predict)
    app.command("env")(env.env)
    app.add_typer(data.app, name="data")
    app.add_typer(registry.app, name="registry")


def _register_plugin_commands() -> None:
    from forge.plugins import get_plugins

    taken = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    for registered in get_plugins().all("commands"):
        command = registered.item
        name = command.name if command.name not in taken else f"{registered.plugin}:{command.name}"
        app.command(name, help=command.summary or None, **command.options)(command.function)
        taken.add(name)


def report(error: ForgeError) -> None:
    for problem in error.problems:
        print(f"forge: error: {problem}", file=sys.stderr)


def _normalize_argv(args: list[str]) -> list[str]:
    """``forge run --resume`` takes an optional run directory: a bare ``--resume`` means the latest unfinished run.
    (Other commands' ``--resume`` is a plain flag.)"""
    out = list(args)
    if not out or out[0] != "run":
        return out
    for i, arg in enumerate(out):
        if arg == "--resume" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out.insert(i + 1, "latest")
            break
    return out


_ARGS: list[str] = []


def invocation() -> list[str]:
    """The command line this process was started with (after normalisation), without the program name."""
    return list(_ARGS)


def _terminate_as_interrupt() -> Any:
    """SIGTERM stops every command the way Ctrl-C does (KeyboardInterrupt: ``finally`` blocks run, staged output is
    removed, exit 130) instead of killing the process where it stands. Commands with their own handling (``forge
    run``, ``forge eval``, the servers) install theirs on top. Returns the handler it replaced (None: left alone)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:  # ignored, or handled by whoever embeds forge
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``forge`` script (also callable in-process: ``main(["run", "--dry-run", ...])``)."""
    if not app.registered_commands:  # once per process
        _register_builtin_commands()
        _register_plugin_commands()
    command = typer.main.get_command(app)
    args = _normalize_argv(sys.argv[1:] if argv is None else argv)
    if "-v" in args or "--verbose" in args:
        set_verbose(True)
    quiet_libraries()  # every command: libraries' notices and progress bars only with -v
    _ARGS[:] = args
    previous = _terminate_as_interrupt()
    try:
        code = command.main(args=args, prog_name="forge", standalone_mode=False)
    except ClickException as error:  # a bad flag or argument: one line, like every other forge error
        if type(error).__name__ == "NoArgsIsHelpError":  # bare `forge`: the help text itself
            error.show()
        else:
            ctx = getattr(error, "ctx", None)
            hint = f" (see {ctx.command_path} -h)" if ctx is not None and isinstance(error, UsageError) else ""
            print(f"forge: error: {error.format_message().rstrip('.')}{hint}", file=sys.stderr)
        sys.exit(error.exit_code)
    except Abort:
        print("forge: interrupted", file=sys.stderr)
        sys.exit(130)
    except ForgeError as error:
        report(error)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:  # before a run could take over the signal (or outside one): stop quietly
        print("forge: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if isinstance(code, int) and code:  # typer.Exit(code) in a command
        sys.exit(code)
