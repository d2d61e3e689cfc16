"""Package watch holds ``policyd watch``: print relationship changes, resumably, across restarts."""

from __future__ import annotations

import sys
import time

import click

from policyd.cli.exits import EXIT_OK, CommandError
from policyd.cli.formats import echo_json, relationship_to_json
from policyd.cli.options import Connection, json_option, server_options
from policyd.client import Change, PolicydClient
from policyd.consistency import Consistency
from policyd.errors import NotFoundError, PolicydError, UnavailableError

RECONNECT_BACKOFF = (0.2, 5.0)
"""First and longest pause between reconnections with ``--follow``, in seconds."""


class _Stopped(Exception):
    """The stream ended while the watch should go on: the server stopped or went away."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _print(change: Change, as_json: bool) -> None:
    for kind, relationship in change.updates:
        if as_json:
            record: dict[str, object] = {"token": change.token, "kind": kind}
            if relationship is not None:
                record["relationship"] = str(relationship)
                record["fields"] = relationship_to_json(relationship)
            echo_json(record)
        else:
            click.echo(f"{change.token} {kind} {relationship or ''}".rstrip())
    sys.stdout.flush()


def _head_token(client: PolicydClient) -> str | None:
    """The newest revision's token, to resume from when no change was seen yet."""
    try:
        return client.read_policy(consistency=Consistency.fully_consistent())[1]
    except NotFoundError:
        return None


@click.command()
@click.option("--after", metavar="TOKEN", help="start after this consistency token (default: now)")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="stop (exit 0) after this many seconds",
)
@click.option(
    "--count", type=click.IntRange(min=0), default=0, help="stop after this many revisions"
)
@click.option(
    "--follow",
    is_flag=True,
    help="when the server stops or the connection drops, reconnect and resume after the last "
    "change seen (default: report it and exit 2)",
)
@server_options
@json_option
def watch(
    after: str | None,
    timeout: float | None,
    count: int,
    follow: bool,
    connection: Connection,
    as_json: bool,
) -> int:
    """Print relationship changes as they happen: token, kind (touch/delete/policy), relationship.

    Resume from the last token printed with --after. Without --follow, a
    server that stops ends the command with exit 2, naming the token to resume
    after.

    Example: policyd watch --after "$TOKEN" --count 1
    """
    if after is not None and not after.strip():
        raise click.BadParameter("must not be empty", param_hint="--after")
    deadline = None if timeout is None else time.monotonic() + timeout
    seen = 0
    resume = after
    pause = RECONNECT_BACKOFF[0]
    with connection.open() as client:
        if follow and resume is None:
            resume = _head_token(client)
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return EXIT_OK
            try:
                for change in client.watch(resume, timeout=remaining):
                    _print(change, as_json)
                    resume = change.token
                    seen += 1
                    pause = RECONNECT_BACKOFF[0]
                    if count and seen >= count:
                        return EXIT_OK
                raise _Stopped("the server ended the stream (it is stopping)")
            except PolicydError as e:
                if e.code == "deadline-exceeded" and deadline is not None:
                    return EXIT_OK
                if not isinstance(e, UnavailableError):
                    raise
                stopped = _Stopped(f"the connection to the server was lost: {e.message}")
            except _Stopped as e:
                stopped = e
            if not follow:
                where = f" --after {resume}" if resume else ""
                raise CommandError(
                    stopped.reason, hint=f"resume with `policyd watch{where}`, or use --follow"
                )
            click.echo(f"policyd watch: {stopped.reason}; reconnecting", err=True)
            time.sleep(pause)
            pause = min(pause * 2, RECONNECT_BACKOFF[1])
            client.wait_until_ready(connection.wait or RECONNECT_BACKOFF[1])
