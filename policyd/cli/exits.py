"""Package exits is the command line's one path from an error to a message and an exit code.

Exit codes, the same for every command (README, "Exit codes"):

- 0: done; for ``check``, the subject has the permission.
- 1: a negative answer or problems found in the input: ``check`` answered
  no_permission, ``lint``/``validate``/``fmt --check``/``policy validate``
  found errors, ``policy diff`` found stored relationships that block the change.
- 2: an error: a misused command, a file that cannot be read, bad input, a
  server that cannot be reached or that refused the request.
- 3: ``check`` answered conditional: the caveat context lacks fields it needs.

Errors print one line ``error: CODE: MESSAGE`` (or ``file:line:col: code: message``
when the error has a place), then a ``hint:`` line when there is a likely fix.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from policyd.errors import (
    Diagnostic,
    PolicydError,
    PolicyErrors,
    UnauthenticatedError,
    UnavailableError,
)

EXIT_OK = 0
EXIT_NO = 1
EXIT_ERROR = 2
EXIT_CONDITIONAL = 3


class CommandError(Exception):
    """A failure of the command line itself (a file it cannot read, flags that clash)."""

    def __init__(self, message: str, *, hint: str | None = None, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


@dataclass(frozen=True, slots=True)
class ServerContext:
    """What the command knew about the server it talked to, for hints."""

    address: str
    tls: bool
    token_given: bool


def print_diagnostic(diagnostic: Diagnostic) -> None:
    """One ``file:line:col: code: message`` line on stderr."""
    print(diagnostic, file=sys.stderr)


def print_policyd_error(error: PolicydError) -> None:
    """A policyd error as the lines a user reads: each diagnostic or blocker on its own line."""
    if isinstance(error, PolicyErrors):
        for diagnostic in error.diagnostics:
            print_diagnostic(diagnostic)
        return
    if error.span is not None:
        print(f"{error.span}: {error.code}: {error.message}", file=sys.stderr)
    else:
        print(f"error: {error.code}: {error.message}", file=sys.stderr)


def hint_for(error: PolicydError, server: ServerContext | None) -> str | None:
    """A likely fix for an error from a server, or None."""
    if server is None:
        return None
    if isinstance(error, UnauthenticatedError):
        if server.token_given:
            return "the token differs from the server's: check POLICYD_TOKEN or --token"
        return "the server wants a bearer token: set POLICYD_TOKEN or pass --token"
    if isinstance(error, UnavailableError):
        text = error.message.lower()
        if not server.tls and ("handshake" in text or "socket closed" in text or "eof" in text):
            return "the server may speak TLS: pass --tls, or --tls-ca PEM for a private CA"
        if server.tls and ("ssl" in text or "handshake" in text or "certificate" in text):
            return (
                "TLS failed: trust the server's CA with --tls-ca PEM, or drop --tls if the "
                "server speaks plaintext"
            )
        return f"is `policyd serve` running at {server.address}? (POLICYD_SERVER or --server)"
    return None


def report(error: BaseException, server: ServerContext | None = None) -> int:
    """Print an error the one way every command does; returns the exit code."""
    if isinstance(error, CommandError):
        print(f"error: {error.message}", file=sys.stderr)
        hint = error.hint
        code = error.code
    elif isinstance(error, PolicydError):
        print_policyd_error(error)
        hint = hint_for(error, server)
        code = EXIT_ERROR
    else:
        raise error
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return code
