"""The README as a new user meets it: its shell walkthrough and Python snippets, run as written.

The "Five minutes" block runs as one bash script (as if pasted), in a fresh
temporary directory holding only ``policies/``, with ``policyd`` on PATH
being this checkout (``python -m policyd.cli``). The only change to the text
is the ports: ``POLICYD_LISTEN``, ``POLICYD_METRICS_LISTEN`` and
``POLICYD_SERVER`` point the server and clients at free ports, and the
``curl`` line's ``127.0.0.1:9090`` follows. Each ``# ⇒ TEXT`` comment says how
the command's output begins (lines joined by `` · ``, ``…`` for anything);
every command must succeed, except checks whose answer is no (exit 1) or
conditional (exit 3), as the README's exit codes say.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from policyd.api.server import PolicydServer, ServerConfig
from policyd.cli import main
from policyd.engine import Engine
from policyd.store.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXPECTED = "# ⇒ "
RUN_TIMEOUT = 180


def _block(after_heading: str, fence: str) -> str:
    section = README.split(after_heading, 1)[1]
    return section.split(fence, 1)[1].split("```", 1)[0]


@dataclass(frozen=True, slots=True)
class Step:
    """One command of the walkthrough (backslash continuations joined) and what it prints."""

    text: str
    expected: str | None


def _steps(block: str) -> list[Step]:
    steps: list[Step] = []
    pending: list[str] = []
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending.append(line)
        if line.endswith("\\"):
            continue
        last = pending[-1]
        expected = last.split(EXPECTED, 1)[1].strip() if EXPECTED in last else None
        steps.append(Step("\n".join(pending), expected))
        pending = []
    return steps


def _matches(expected: str, output: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in expected.split("…"))
    return re.match(pattern, output, re.DOTALL) is not None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _policyd_on_path(directory: Path) -> Path:
    """A ``policyd`` that runs this checkout's code with this interpreter."""
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    script = bin_dir / "policyd"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m policyd.cli "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_the_walkthrough_runs_as_pasted(tmp_path: Path) -> None:
    assert shutil.which("curl"), "the walkthrough uses curl"
    block = _block("## Five minutes with the server", "```sh\n")
    steps = _steps(block)
    assert any(s.expected for s in steps)
    grpc, metrics = _free_port(), _free_port()
    script = []
    for i, step in enumerate(steps):
        text = step.text.replace("127.0.0.1:9090", f"127.0.0.1:{metrics}")
        script += [f"echo '@@step {i}'", text, f'echo "@@rc {i} $?"']
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(ROOT / "policies", work / "policies")
    env = {
        **os.environ,
        "PATH": f"{_policyd_on_path(tmp_path)}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "POLICYD_LISTEN": f"127.0.0.1:{grpc}",
        "POLICYD_METRICS_LISTEN": f"127.0.0.1:{metrics}",
        "POLICYD_SERVER": f"127.0.0.1:{grpc}",
    }
    env.pop("POLICYD_TOKEN", None)
    process = subprocess.Popen(
        ["bash", "-c", "\n".join(script)],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    outputs: dict[int, list[str]] = {}
    codes: dict[int, int] = {}
    current = -1
    for line in out.splitlines():
        if line.startswith(("policyd listening on ", "policyd metrics on ")):
            continue  # the background server's own lines, whenever they come
        if line.startswith("@@step "):
            current = int(line.split()[1])
            outputs[current] = []
        elif line.startswith("@@rc "):
            _, index, code = line.split()
            codes[int(index)] = int(code)
        else:
            outputs[current].append(line)
    assert sorted(codes) == list(range(len(steps))), err
    for i, step in enumerate(steps):
        printed = " · ".join(line.strip() for line in outputs[i])
        allowed = {0}
        if step.expected is not None and "no_permission" in step.expected:
            allowed = {1}  # a check (or one of a batch) answered no
        elif step.expected is not None and step.expected.startswith("conditional"):
            allowed = {3}
        assert codes[i] in allowed, f"{step.text}\nexit {codes[i]}\n{printed}\n{err}"
        if step.expected is not None:
            assert _matches(step.expected, printed), f"{step.text}\nprinted: {printed}"
    assert "Traceback" not in err
    assert (work / "backup.ndjson").read_text().startswith('{"policy": ')


def _python_blocks() -> list[str]:
    return [part.split("```", 1)[0] for part in README.split("```python\n")[1:]]


@pytest.fixture
def atproto_server() -> object:
    store = MemoryStore()
    engine = Engine(store)
    engine.write_policy((ROOT / "policies" / "atproto.policy").read_text())
    server = PolicydServer(
        engine, store, ServerConfig(listen="127.0.0.1:0", token="readme-token-0123"),
        CollectorRegistry(),
    )  # fmt: skip
    server.start()
    yield server
    server.stop(grace=1)


@pytest.mark.parametrize("index", range(len(_python_blocks())), ids=lambda i: f"snippet-{i + 1}")
def test_the_python_snippets_run_as_written(
    index: int, tmp_path: Path, atproto_server: PolicydServer
) -> None:
    (tmp_path / "policies").symlink_to(ROOT / "policies")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "POLICYD_SERVER": atproto_server.address,
        "POLICYD_TOKEN": "readme-token-0123",
    }
    ran = subprocess.run(
        [sys.executable, "-c", _python_blocks()[index]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr


def test_the_example_policy_is_formatted(tmp_path: Path) -> None:
    policy = tmp_path / "example.policy"
    policy.write_text(_block("## Writing policies", "```\n"), encoding="utf-8")
    assert main(["fmt", "--check", str(policy)]) == 0
    assert main(["lint", str(policy)]) == 0


def test_every_shell_block_is_run_or_says_why_not() -> None:
    """The walkthrough runs above; the other blocks install, serve forever or need other files."""
    blocks = README.count("```sh\n")
    not_run = {
        "pip install . &&": "installs the package (CI runs it)",
        "pip install -e '.[test]' && pytest": "the test command itself",
        "policyd playground": "serves a page until interrupted (tests/playground)",
        "--xrpc-listen 0.0.0.0:2585": "needs a DID and a PDS (tests/e2e/test_spaces_alpha.py)",
        "policyd convert model.fga": "needs an OpenFGA model (tests/cli/test_commands.py)",
        "policyd ingest wss://": "follows a relay (tests/ingest, tests/e2e/pds against a real PDS)",
    }
    others = [b.split("```", 1)[0] for b in README.split("```sh\n")[1:]]
    unexplained = [
        b for b in others if "Five minutes" not in b and not any(k in b for k in not_run)
    ]
    walkthrough = _block("## Five minutes with the server", "```sh\n")
    assert [b for b in unexplained if b != walkthrough] == []
    assert blocks == len(others)
