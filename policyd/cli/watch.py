"""Package watch holds the streaming commands: ``watch`` and ``watch-permission``.

``watch`` prints relationship changes, resumably, across restarts;
``watch-permission`` prints who holds a permission, then each change to that.
"""

from __future__ import annotations

import sys
import time

import click

from policyd.cli.decisions import parse_resource_permission
from policyd.cli.exits import EXIT_OK, CommandError
from policyd.cli.formats import (
    echo_json,
    found_subject_line,
    found_subject_to_json,
    relationship_to_json,
)
from policyd.cli.options import Connection, json_option, server_options
from policyd.client import Change, PolicydClient
from policyd.consistency import Consistency
from policyd.decisions import Permissionship
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


@click.command("watch-permission")
@click.argument("query", metavar="RESOURCE#PERMISSION")
@click.argument("subject_type", metavar="SUBJECT_TYPE[#RELATION]")
@click.option(
    "--after",
    metavar="TOKEN",
    help="resume after this token (a line printed before); default: list the holders first",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="stop (exit 0) after this many seconds",
)
@click.option("--count", type=click.IntRange(min=0), default=0, help="stop after this many changes")
@server_options
@json_option
def watch_permission(
    query: str,
    subject_type: str,
    after: str | None,
    timeout: float | None,
    count: int,
    connection: Connection,
    as_json: bool,
) -> int:
    """Print who holds a permission, then each change: '+' holds it, '?' conditionally, '-' no more.

    Each change starts with a line 'TOKEN' (or 'TOKEN reset' when the lines
    after it restate every holder); resume from it with --after.

    Example: policyd watch-permission 'space:cats#read' account --count 2
    """
    if after is not None and not after.strip():
        raise click.BadParameter("must not be empty", param_hint="--after")
    resource, permission = parse_resource_permission(query)
    type_name, _, relation = subject_type.partition("#")
    signs = {
        Permissionship.HAS_PERMISSION: "+",
        Permissionship.CONDITIONAL: "?",
        Permissionship.NO_PERMISSION: "-",
    }
    seen = 0
    token = after
    with connection.open() as client:
        try:
            for change in client.watch_permission(
                resource, permission, type_name, relation or None, after=after, timeout=timeout
            ):
                token = change.token
                if as_json:
                    echo_json(
                        {
                            "token": change.token,
                            "reset": change.reset,
                            "subjects": [found_subject_to_json(s) for s in change.subjects],
                        }
                    )
                else:
                    click.echo(change.token + (" reset" if change.reset else ""))
                    for found in change.subjects:
                        click.echo(f"{signs[found.permissionship]} {found_subject_line(found)}")
                sys.stdout.flush()
                seen += 1
                if count and seen >= count:
                    return EXIT_OK
        except PolicydError as e:
            if e.code == "deadline-exceeded" and timeout is not None:
                return EXIT_OK
            raise
    where = f" --after {token}" if token else ""
    raise CommandError(
        "the server ended the stream (it is stopping)",
        hint=f"resume with `policyd watch-permission {query} {subject_type}{where}`",
    )
