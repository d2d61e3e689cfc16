"""``ServerProcess``: ``policyd serve`` as a real subprocess on loopback, and a client for it.

It starts the server on port 0 (gRPC and metrics), reads the addresses it
prints, and stops it with SIGTERM. Every wait is bounded.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from policyd.client import PolicydClient
from policyd.relationship import parse_object, parse_subject

TOKEN = "e2e-token"
START_TIMEOUT = 30.0
ROOT = Path(__file__).resolve().parents[2]
POLICY_FILE = ROOT / "policies" / "atproto.policy"

POST = parse_object("post:at://did:plc:alice/app.bsky.feed.post/3k2a")
BOB = parse_subject("account:did:plc:bob")
CAROL = parse_subject("account:did:plc:carol")
SPACE_WITH_A_POST = [
    "space:cats#owner@account:did:plc:alice",
    "space:cats#member@account:did:plc:bob",
    f"{POST}#space@space:cats",
]
"""Under POLICY_FILE: bob, a member of the space, may view POST; carol may not."""


class ServerProcess:
    """One ``policyd serve`` subprocess."""

    def __init__(self, args: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        environment = {**os.environ, "POLICYD_TOKEN": TOKEN, **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "policyd.cli", "serve", *args],
            cwd=cwd,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        self.address = ""
        self.metrics_url = ""
        self.xrpc_url = ""
        deadline = time.monotonic() + START_TIMEOUT
        while not self.address:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                self.kill()
                raise RuntimeError(f"policyd serve did not start: {''.join(self.stderr)}")
            try:
                line = self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if line.startswith("policyd metrics on "):
                self.metrics_url = line.split()[-1]
            elif line.startswith("policyd xrpc on "):
                self.xrpc_url = line.split()[-1]
            elif line.startswith("policyd listening on "):
                self.address = line.split()[3]

    def _pump_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def _pump_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def client(self, token: str | None = TOKEN, **kwargs: object) -> PolicydClient:
        """A client for this server."""
        kwargs.setdefault("timeout", 15)
        return PolicydClient(self.address, token=token, **kwargs)  # type: ignore[arg-type]

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for the exit; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL if still running."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


ServerFactory = Callable[..., ServerProcess]
