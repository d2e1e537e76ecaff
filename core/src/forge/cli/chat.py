"""``forge chat``: talk to a fine-tuned LM in the terminal, or to any OpenAI-compatible server.

    forge chat runs/sft-1                                # the artifact, loaded in this process
    forge chat --url http://127.0.0.1:8000/v1 --api-key KEY   # forge serve, vLLM, llama.cpp server, OpenAI...

Replies stream as they are generated. Lines starting with ``/`` are commands: ``/reset`` forgets the conversation,
``/system TEXT`` sets the system prompt (``/system`` alone clears it), ``/help``, ``/quit``. Ctrl-D quits (exit 0),
Ctrl-C during a reply stops that reply. Read from a pipe (``forge chat ART < script.txt``) every line is one turn.

A local artifact is served by its own server plugin inside this process, on a private Unix socket, and the chat talks
to it through the same OpenAI client as ``--url`` does (see :mod:`forge.serving.local`): one chat code path for every
format a server plugin serves, with the server's chat template, stop handling and streaming.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import typer

from forge.errors import ForgeError

HELP = """commands:
  /reset         forget the conversation (the system prompt stays)
  /system TEXT   set the system prompt (and start over); /system alone clears it
  /help          this list
  /quit          leave (Ctrl-D does too); Ctrl-C stops a reply"""


@dataclass
class Conversation:
    system: str | None = None
    turns: list[dict[str, str]] = field(default_factory=list)

    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns


@dataclass
class Sampling:
    """Request fields sent with every turn; ``None`` leaves the server's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None

    def request_fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def artifact_sampling(path: Path) -> Sampling:
    """The generation config an artifact was saved with (``generation_config.json``): greedy unless it samples, its
    temperature/top_p, and its ``max_new_tokens`` when set. Without the file the server's defaults apply."""
    file = path / "generation_config.json"
    if not file.is_file():
        return Sampling()
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return Sampling()
    sampling = Sampling(max_tokens=config.get("max_new_tokens"))
    if config.get("do_sample"):
        sampling.temperature = config.get("temperature", 1.0)
        sampling.top_p = config.get("top_p", 1.0)
    else:
        sampling.temperature = 0.0
    return sampling


class Chat:
    """The read-reply loop, over an OpenAI client (``openai.OpenAI``)."""

    def __init__(self, client: Any, model: str, sampling: Sampling, out: TextIO, err: TextIO,
                 interactive: bool, system: str | None = None) -> None:
        self.client, self.model, self.sampling = client, model, sampling
        self.out, self.err, self.interactive = out, err, interactive
        self.conversation = Conversation(system=system)

    def note(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def command(self, line: str) -> bool:
        """Handle a ``/command``; False means quit."""
        name, _, argument = line[1:].partition(" ")
        argument = argument.strip()
        if name in ("quit", "exit", "bye"):
            return False
        if name == "reset":
            self.conversation.turns.clear()
            self.note("(conversation reset)")
        elif name == "system":
            self.conversation.system = argument or None
            self.conversation.turns.clear()
            self.note(f"(system prompt set: {argument})" if argument else "(system prompt cleared)")
        elif name in ("help", "?"):
            self.note(HELP)
        else:
            self.note(f"unknown command /{name}; /help lists them")
        return True

    def stream_reply(self) -> Iterator[str]:
        stream = self.client.chat.completions.create(model=self.model, messages=self.conversation.messages(),
                                                     stream=True, **self.sampling.request_fields())
        try:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        finally:
            stream.close()  # also on Ctrl-C: the connection closes, and a server that notices stops generating

    def reply(self, text: str) -> None:
        import openai

        self.conversation.turns.append({"role": "user", "content": text})
        pieces: list[str] = []
        try:
            for piece in self.stream_reply():
                pieces.append(piece)
                print(piece, file=self.out, end="", flush=True)
        except KeyboardInterrupt:
            print(file=self.out, flush=True)
            self.note("(reply stopped)")
        except openai.APIError as error:
            self.conversation.turns.pop()
            print(file=self.out, flush=True)
            message = getattr(error, "message", None) or str(error)
            raise ForgeError(f"the server answered with an error: {message}") from None
        else:
            print(file=self.out, flush=True)
        # what was shown stays in the conversation, stopped replies included (the next turn sees what the user saw)
        self.conversation.turns.append({"role": "assistant", "content": "".join(pieces)})

    def read_line(self) -> str | None:
        """One input line, or None at end of input (Ctrl-D)."""
        if self.interactive:
            try:
                return input("> ")
            except EOFError:
                print(file=self.err)
                return None
        line = sys.stdin.readline()
        return line.rstrip("\n") if line else None

    def loop(self) -> None:
        while True:
            try:
                line = self.read_line()
            except KeyboardInterrupt:  # Ctrl-C at the prompt: a new prompt, as shells do
                if not self.interactive:
                    raise
                print(file=self.err)
                self.note("(Ctrl-D or /quit to leave)")
                continue
            if line is None:
                return
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if not self.command(line):
                    return
                continue
            try:
                self.reply(line)
            except ForgeError as error:
                if not self.interactive:
                    raise
                self.note(f"forge: error: {error}")


def open_reference(reference: str) -> Any:
    """A run dir, artifact dir or registry reference, as ``forge serve`` takes them."""
    try:
        from forge.references import open_artifact
    except ImportError:  # before reference resolution (models:/...) existed: directories only
        from forge.artifacts import Artifact

        return Artifact.load(Path(reference))
    return open_artifact(reference)


def _client(base_url: str, api_key: str | None, http_client: Any = None) -> Any:
    try:
        import openai
    except ImportError:
        raise ForgeError("forge chat needs the openai client: pip install openai") from None
    return openai.OpenAI(base_url=base_url, api_key=api_key or "unused", http_client=http_client, max_retries=0)


def _pick_model(client: Any, requested: str | None, where: str) -> str:
    import openai

    try:
        served = [m.id for m in client.models.list().data]
    except openai.AuthenticationError:
        raise ForgeError(f"{where}: the server refused the API key (--api-key, or env FORGE_API_KEY)") from None
    except openai.APIConnectionError as error:
        raise ForgeError(f"{where}: cannot connect ({error.__cause__ or error})") from None
    except openai.APIError as error:
        if requested:  # a server without /v1/models still chats when told the model
            return requested
        raise ForgeError(f"{where}: cannot list models ({error}); name one with --model") from None
    if requested:
        return requested
    if not served:
        raise ForgeError(f"{where}: the server lists no model; name one with --model")
    return served[0]


def chat(
    artifact: str = typer.Argument(None, help="A run or artifact directory holding a causal LM (or give --url)."),
    url: str = typer.Option(None, "--url", help="Base URL of an OpenAI-compatible API, e.g. http://host:8000/v1."),
    model: str = typer.Option(None, "--model", help="Model name to request (default: the first the server lists)."),
    api_key: str = typer.Option(None, "--api-key", help="API key for --url; env FORGE_API_KEY or OPENAI_API_KEY."),
    system: str = typer.Option(None, "--system", help="System prompt to start with (/system changes it)."),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, help="Longest reply in tokens."),
    temperature: float = typer.Option(None, "--temperature", min=0.0, max=2.0,
                                      help="Sampling temperature; 0 is greedy (default: the generation config)."),
    top_p: float = typer.Option(None, "--top-p", min=0.0, max=1.0, help="Nucleus sampling mass."),
    seed: int = typer.Option(None, "--seed", help="Sampling seed, for repeatable replies."),
    server: str = typer.Option(None, "--server", help="Server plugin for ARTIFACT, when several take its kind."),
) -> None:
    """Chat with an LM in the terminal. Example: forge chat runs/sft-1 (or --url http://127.0.0.1:8000/v1)"""
    if (artifact is None) == (url is None):
        raise ForgeError("give either an ARTIFACT to load or --url of a running server, not both" if artifact
                         else "give an ARTIFACT (run or artifact directory) or --url of a running server")
    # Ctrl-C here only stops a reply; SIGTERM must still end the chat (forge's default turns it into Ctrl-C)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    interactive = sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):  # line editing and history for input(), where the platform has it
            import readline  # noqa: F401
    overrides = Sampling(max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
    with ExitStack() as stack:
        if url is not None:
            base_url = url.rstrip("/")
            if not base_url.startswith(("http://", "https://")):
                raise ForgeError(f"--url {url}: expected an http:// or https:// URL")
            key = api_key or os.environ.get("FORGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
            client = _client(base_url, key)
            where, sampling = base_url, Sampling()
        else:
            loaded = open_reference(artifact)
            if api_key:
                raise ForgeError("--api-key is for --url; a local artifact needs none")
            if "causal-lm" not in loaded.kind:  # causal-lm, causal-lm-adapter, onnx-causal-lm, gguf-causal-lm...
                raise ForgeError(f"{loaded.path}: a {loaded.kind} artifact is not a language model; "
                                 "forge chat takes causal LM artifacts")
            print(f"loading {loaded.kind} from {loaded.path}...", file=sys.stderr, flush=True)
            from forge.serving.local import local_server

            local = stack.enter_context(local_server(loaded, server))
            http = stack.enter_context(local.http_client(timeout=None))
            client = _client(f"{local.base_url}/v1", None, http_client=http)
            where, sampling = str(loaded.path), artifact_sampling(loaded.path)
        chosen = _pick_model(client, model, where)
        for name, value in overrides.request_fields().items():
            setattr(sampling, name, value)
        session = Chat(client, chosen, sampling, sys.stdout, sys.stderr, interactive, system)
        if interactive:
            print(f"chatting with {chosen} ({where}); /help for commands, Ctrl-D to quit", file=sys.stderr)
        session.loop()
    if artifact is not None and threading.active_count() > 1:
        # A stopped reply may still be generating in the in-process server's worker thread; finalizing the
        # interpreter under a running torch thread aborts the process. Everything is written: leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
