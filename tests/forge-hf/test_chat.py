"""``forge chat``: a scripted conversation (stdin is a pipe), the same script against a real ``forge serve`` through
``--url``, and an interactive session under a pseudo-terminal (streaming, Ctrl-C stops a reply, Ctrl-D quits)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from support import Server

SCRIPT = [
    "what is the capital of france?",
    "/system you are terse",
    "what is the capital of spain?",
    "and of italy?",
    "/reset",
    "the opposite of hot is",
    "/help",
    "/quit",
    "never sent",
]


@pytest.fixture(scope="module")
def lm_artifact(tmp_path_factory, tiny_lm) -> Path:
    """The tiny random Llama as a ``causal-lm`` artifact (what a merged export is)."""
    path = tmp_path_factory.mktemp("chat") / "lm"
    shutil.copytree(tiny_lm, path)
    (path / "forge.json").write_text(json.dumps({"schema": 1, "kind": "causal-lm", "base_model": "tiny-llama"}))
    return path


def greedy_replies(path: Path, max_new_tokens: int) -> list[str]:
    """What the script's turns should get: the chat template, greedy decoding, the conversation kept per turn."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()

    def reply(messages):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)

    u = [{"role": "user", "content": SCRIPT[i]} for i in (0, 2, 3, 5)]
    system = {"role": "system", "content": "you are terse"}
    first = reply([u[0]])
    second = reply([system, u[1]])
    third = reply([system, u[1], {"role": "assistant", "content": second}, u[2]])
    fourth = reply([system, u[3]])  # /reset keeps the system prompt
    return [first, second, third, fourth]


def test_scripted_chat_local_and_through_url(forge_cli, lm_artifact):
    script = "".join(line + "\n" for line in SCRIPT)
    local = forge_cli("chat", lm_artifact, "--max-tokens", "6", input=script)
    assert local.returncode == 0, local.stderr
    expected = "".join(r + "\n" for r in greedy_replies(lm_artifact, 6))
    assert local.stdout == expected
    assert "(system prompt set: you are terse)" in local.stderr and "(conversation reset)" in local.stderr
    assert "/system TEXT" in local.stderr  # /help
    with Server(forge_cli, lm_artifact, "--api-key", "k3y") as server:
        remote = forge_cli("chat", "--url", f"{server.url}/v1", "--api-key", "k3y", "--max-tokens", "6",
                           "--temperature", "0", input=script)
        assert remote.returncode == 0, remote.stderr
        assert remote.stdout == expected
        refused = forge_cli("chat", "--url", f"{server.url}/v1", "--api-key", "wrong", input="hi\n")
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines()[-1] == (
            f"forge: error: {server.url}/v1: the server refused the API key (--api-key, or env FORGE_API_KEY)")
        unknown = forge_cli("chat", "--url", f"{server.url}/v1", "--api-key", "k3y", "--model", "gpt-9",
                            input="hi\n")
        assert unknown.returncode == 2 and "model 'gpt-9' is not served here" in unknown.stderr


def test_chat_bad_input(forge_cli, lm_artifact, tmp_path):
    neither = forge_cli("chat")
    assert neither.returncode == 2 and "give an ARTIFACT" in neither.stderr
    both = forge_cli("chat", lm_artifact, "--url", "http://127.0.0.1:1/v1")
    assert both.returncode == 2 and "not both" in both.stderr
    missing = forge_cli("chat", tmp_path / "nope")
    assert missing.returncode == 2 and "no such directory" in missing.stderr
    nobody = forge_cli("chat", "--url", "http://127.0.0.1:9/v1", input="hi\n")
    assert nobody.returncode == 2 and "cannot connect" in nobody.stderr
    assert "Traceback" not in nobody.stderr
    classifier = tmp_path / "clf"
    classifier.mkdir()
    (classifier / "forge.json").write_text(json.dumps({"kind": "forecaster"}))
    wrong_kind = forge_cli("chat", classifier)
    assert wrong_kind.returncode == 2 and "forecaster" in wrong_kind.stderr


class Terminal:
    """A process on a pseudo-terminal: what it printed so far, keys typed into it."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        import pty

        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes the command
            import signal

            # as a shell starts it: no blocked or ignored signals. Both survive exec, and a pytest worker that ran
            # other tests may have either (then Ctrl-C never reaches the chat: the whole reply prints).
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            for number in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
                signal.signal(number, signal.SIG_DFL)
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        self.seen = b""

    def read_until(self, marker: bytes, timeout: float = 120) -> bytes:
        import select

        deadline = time.time() + timeout
        while marker not in self.seen:
            if time.time() > deadline:
                raise AssertionError(f"no {marker!r} in: {self.seen.decode(errors='replace')}")
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    raise AssertionError(f"exited before {marker!r}: {self.seen.decode(errors='replace')}") from None
                self.seen += chunk
        found = self.seen.index(marker) + len(marker)
        before, self.seen = self.seen[:found], self.seen[found:]
        return before

    def read_some(self, count: int, timeout: float = 120) -> None:
        """Wait until at least ``count`` more bytes have arrived (kept in ``seen``)."""
        import select

        target, deadline = len(self.seen) + count, time.time() + timeout
        while len(self.seen) < target:
            if time.time() > deadline:
                raise AssertionError(f"{count} more bytes did not come: {self.seen.decode(errors='replace')}")
            if select.select([self.fd], [], [], 0.2)[0]:
                self.seen += os.read(self.fd, 4096)

    def type(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 30) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            with contextlib.suppress(AssertionError):  # keep reading so the child never blocks on a full terminal
                self.read_until(b"\x00", timeout=0.2)
        os.kill(self.pid, 9)
        raise AssertionError("the chat did not exit")


def test_chat_under_a_terminal(forge_cli, lm_artifact, tmp_path):
    # a copy whose EOS id never comes: a long reply that only Ctrl-C ends early
    endless = tmp_path / "endless"
    shutil.copytree(lm_artifact, endless)
    config = json.loads((endless / "generation_config.json").read_text())
    (endless / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": 100_000}))
    term = Terminal([sys.executable, "-m", "forge", "chat", str(endless), "--max-tokens", "4096"],
                    forge_cli._env({}), forge_cli.cwd)
    banner = term.read_until(b"> ")
    assert b"Ctrl-D to quit" in banner
    term.type(b"/system be nice\r")
    assert b"(system prompt set: be nice)" in term.read_until(b"> ")
    term.type(b"what is the capital of france?\r")
    term.read_until(b"france?")
    # the reply streams (so the line was read and the terminal is back in its normal mode, where Ctrl-C is a
    # signal): text arrives long before 4096 tokens are done. A fixed sleep raced a CPU-starved chat process.
    term.read_some(12)
    term.type(b"\x03")  # Ctrl-C
    stopped = term.read_until(b"(reply stopped)", timeout=60)
    assert len(stopped) > 10 + len(b"(reply stopped)")  # part of the reply was shown
    term.read_until(b"> ")
    term.type(b"\x04")  # Ctrl-D at the prompt
    code = term.wait()
    assert code == 0, term.seen.decode(errors="replace")


def test_chat_with_an_sft_run(forge_cli, tiny_sft_run):
    """A LoRA sft run (``causal-lm-adapter``, merged into its base when the chat loads it), by its run directory."""
    result = forge_cli("chat", tiny_sft_run, "--max-tokens", "5", "--system", "be brief",
                       input="what is the capital of france?\n/reset\nwhat is the capital of spain?\n")
    assert result.returncode == 0, result.stderr
    assert f"loading causal-lm-adapter from {tiny_sft_run / 'artifact'}" in result.stderr
    assert result.stdout.count("\n") >= 2  # one line per reply (a reply may hold line breaks of its own)
