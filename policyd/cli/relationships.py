"""Package relationships holds the commands that change and read relationships, and backups."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from itertools import islice
from typing import TYPE_CHECKING

import click

from policyd.cli.exits import EXIT_OK, CommandError, print_diagnostic
from policyd.cli.formats import (
    FORMATS,
    Origin,
    echo_json,
    parse_relationship_text,
    policy_line,
    prepend,
    read_backup,
    relationship_line,
    yaml_backup,
)
from policyd.cli.options import (
    Connection,
    consistency_options,
    filter_options,
    json_option,
    server_options,
)
from policyd.consistency import Consistency
from policyd.errors import NotFoundError, PolicydError
from policyd.filters import RelationshipFilter
from policyd.relationship import Operation, Relationship, RelationshipUpdate

if TYPE_CHECKING:
    from policyd.client import PolicydClient

UPSERT_CHUNK = 1000
"""Relationships per write with ``import --upsert`` (the server's default ``max_updates``)."""

_INDEXED_FIELD = re.compile(r"^(?:relationships|updates)\[(\d+)\]")


def _located(error: PolicydError, origins: list[Origin], offset: int = 0) -> Exception:
    """The server's error about ``relationships[i]`` (or ``updates[i]``), named by file and line."""
    match = _INDEXED_FIELD.match(error.field or "")
    if match is None:
        return error
    index = offset + int(match.group(1))
    if index >= len(origins):
        return error
    return CommandError(f"{origins[index]}: {error.code}: {error.message}")


def _print_token(token: str, as_json: bool, **extra: object) -> None:
    if as_json:
        echo_json({**extra, "token": token})
        return
    for key, value in extra.items():
        click.echo(f"{key} {value}")
    click.echo(token)


@click.command()
@click.argument("relationships", nargs=-1, metavar="RELATIONSHIP...")
@click.option(
    "--operation",
    type=click.Choice([o.value for o in Operation]),
    default="touch",
    show_default=True,
    help="touch (create or replace), create (fail if it exists) or delete",
)
@click.option(
    "-f",
    "--from-file",
    "files",
    multiple=True,
    metavar="FILE",
    help="also write the relationships in FILE, one per line, text or NDJSON ('-' is stdin)",
)
@server_options
@json_option
def write(
    relationships: tuple[str, ...],
    operation: str,
    files: tuple[str, ...],
    connection: Connection,
    as_json: bool,
) -> int:
    """Write relationships atomically; prints the consistency token of the write.

    Example: policyd write 'space:cats#member@account:did:plc:bob'
    """
    parsed = [parse_relationship_text(text) for text in relationships]
    origins = [Origin("argument", i + 1) for i in range(len(parsed))]
    if files:
        backup = read_backup(files, "auto")
        if backup.policy is not None:
            raise CommandError(
                f"{backup.policy_source}: holds a policy; write relationships with "
                "`policyd write`, restore a backup with `policyd import`"
            )
        parsed += list(backup.relationships)
        origins += backup.origins
    if not parsed:
        raise click.UsageError("no relationships given (arguments or -f FILE)")
    updates = [RelationshipUpdate(Operation(operation), r) for r in parsed]
    with connection.open() as client:
        try:
            token = client.write(updates)
        except PolicydError as e:
            raise _located(e, origins) from e
    _print_token(token, as_json)
    return EXIT_OK


@click.command()
@filter_options
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=0,
    help="at most this many; then the cursor to continue is printed on stderr (0: all)",
)
@click.option("--cursor", default="", metavar="CURSOR", help="continue after an earlier read")
@click.option("--format", "fmt", type=click.Choice(["text", "ndjson"]), default="text")
@server_options
@consistency_options
@json_option
def read(
    relationship_filter: RelationshipFilter,
    limit: int,
    cursor: str,
    fmt: str,
    connection: Connection,
    consistency: Consistency,
    as_json: bool,
) -> int:
    """Print the relationships a filter matches (unset fields match anything).

    Example: policyd read --resource-type space --limit 100
    """
    from policyd.cli.decisions import print_cursor

    after = ""
    with connection.open() as client:
        for found in client.read(
            relationship_filter, consistency=consistency, limit=limit, cursor=cursor
        ):
            click.echo(relationship_line(found.relationship, "ndjson" if as_json else fmt))
            after = found.after_cursor
    if limit and after:
        print_cursor(after, as_json)
    return EXIT_OK


@click.command()
@filter_options
@click.option("--limit", type=click.IntRange(min=0), default=0, help="at most this many (0: all)")
@server_options
@json_option
def delete(
    relationship_filter: RelationshipFilter, limit: int, connection: Connection, as_json: bool
) -> int:
    """Delete the relationships a filter matches, atomically.

    Example: policyd delete --resource-type post --resource-id 1
    """
    if relationship_filter.is_empty():
        raise click.UsageError("give at least one filter option; deleting everything is refused")
    with connection.open() as client:
        token, count = client.delete(relationship_filter, limit=limit)
    _print_token(token, as_json, deleted=count)
    return EXIT_OK


def _server_policy(client: PolicydClient) -> str | None:
    try:
        text, _token = client.read_policy(consistency=Consistency.fully_consistent())
    except NotFoundError:
        return None
    return text


@click.command("import")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *FORMATS]),
    default="auto",
    show_default=True,
    help="text, ndjson (a backup: the policy, then relationships), yaml (a validation file), "
    "or auto: by file name and line",
)
@click.option(
    "--upsert",
    is_flag=True,
    help="touch each relationship (create or replace) in writes of 1,000, instead of one "
    "all-or-nothing import of new relationships",
)
@click.option(
    "--replace-policy",
    is_flag=True,
    help="when the backup's policy differs from the server's, write the backup's first",
)
@server_options
@json_option
def import_(
    files: tuple[str, ...],
    fmt: str,
    upsert: bool,
    replace_policy: bool,
    connection: Connection,
    as_json: bool,
) -> int:
    """Load relationships, or restore a backup (its policy, then its relationships).

    Without --upsert the relationships are created in one transaction: all or
    nothing, and any that already exists fails the import. Errors name the file
    and line.

    Example: policyd export --format ndjson > backup.ndjson; policyd import backup.ndjson
    """
    backup = read_backup(files, fmt)
    token: str | None = None
    with connection.open() as client:
        if backup.policy is not None:
            current = _server_policy(client)
            if current is None or (current != backup.policy and replace_policy):
                token, warnings = client.write_policy(backup.policy, backup.policy_source)
                for warning in warnings:
                    print_diagnostic(warning)
                click.echo(f"wrote the policy from {backup.policy_source}", err=True)
            elif current != backup.policy:
                raise CommandError(
                    f"{backup.policy_source}: its policy differs from the server's",
                    hint="--replace-policy writes it first; `policyd policy diff` shows the change",
                )
        relationships = iter(backup.relationships)
        first = next(relationships, None)
        count = 0
        if first is not None:
            stream = prepend(first, relationships)
            if upsert:
                token, count = _upsert(client, stream, backup.origins)
            else:
                try:
                    token, count = client.import_relationships(stream)
                except PolicydError as e:
                    raise _located(e, backup.origins) from e
    if as_json:
        echo_json({"imported": count, "token": token})
    else:
        click.echo(f"imported {count}")
        if token is not None:
            click.echo(token)
    return EXIT_OK


def _upsert(
    client: PolicydClient, relationships: Iterable[Relationship], origins: list[Origin]
) -> tuple[str, int]:
    iterator = iter(relationships)
    token = ""
    count = 0
    while chunk := list(islice(iterator, UPSERT_CHUNK)):
        try:
            token = client.write([RelationshipUpdate(Operation.TOUCH, r) for r in chunk])
        except PolicydError as e:
            raise _located(e, origins, count) from e
        count += len(chunk)
    return token, count


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text: relationships only; ndjson or yaml: a backup, the policy and the relationships",
)
@server_options
@consistency_options
def export(fmt: str, connection: Connection, consistency: Consistency) -> int:
    """Print the policy and every relationship at one revision: a backup `import` restores.

    Example: policyd export --format ndjson > backup.ndjson
    """
    with connection.open() as client:
        policy: str | None = None
        if fmt != "text":
            try:
                policy, token = client.read_policy(consistency=consistency)
            except NotFoundError:
                policy = None
            else:  # the relationships at the policy's revision: one consistent backup
                consistency = Consistency.at_exact_snapshot(token)
        relationships = client.export_relationships(consistency=consistency)
        if fmt == "yaml":
            sys.stdout.write(yaml_backup(policy, list(relationships)))
            return EXIT_OK
        if policy is not None:
            click.echo(policy_line(policy))
        for relationship in relationships:
            click.echo(relationship_line(relationship, fmt))
    return EXIT_OK
