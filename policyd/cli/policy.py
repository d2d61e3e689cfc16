"""Package policy holds ``policyd policy write|read|validate|diff``: the policy on a server."""

from __future__ import annotations

import click

from policyd.cli.exits import EXIT_NO, EXIT_OK, print_diagnostic
from policyd.cli.formats import echo_json
from policyd.cli.options import (
    Connection,
    SuggestingGroup,
    consistency_options,
    json_option,
    read_text,
    server_options,
)
from policyd.consistency import Consistency
from policyd.errors import NotFoundError

POLICY_FILE = click.argument("file", metavar="FILE")


@click.group(cls=SuggestingGroup)
def policy() -> None:
    """Write, read, validate (a dry run of write) or diff the policy on a server."""


@policy.command("write")
@POLICY_FILE
@server_options
@json_option
def policy_write(file: str, connection: Connection, as_json: bool) -> int:
    """Store a policy file on the server; refused if it would orphan stored relationships.

    Example: policyd policy write policies/atproto.policy
    """
    text = read_text(file, "policy")
    with connection.open() as client:
        token, warnings = client.write_policy(text, file)
    for warning in warnings:
        print_diagnostic(warning)
    if as_json:
        echo_json({"token": token, "warnings": [str(w) for w in warnings]})
    else:
        click.echo(token)
    return EXIT_OK


@policy.command("read")
@server_options
@consistency_options
@json_option
def policy_read(connection: Connection, consistency: Consistency, as_json: bool) -> int:
    """Print the policy in force.

    Example: policyd policy read > current.policy
    """
    with connection.open() as client:
        text, token = client.read_policy(consistency=consistency)
    if as_json:
        echo_json({"policy": text, "token": token})
    else:
        click.echo(text, nl=False)
    return EXIT_OK


@policy.command("validate")
@POLICY_FILE
@server_options
@json_option
def policy_validate(file: str, connection: Connection, as_json: bool) -> int:
    """The dry run of `policy write`: ok exactly when write would accept the file now.

    Compiles the policy and checks it against the stored relationships; stores
    nothing. Exit 1 when write would refuse it.

    Example: policyd policy validate new.policy
    """
    text = read_text(file, "policy")
    with connection.open() as client:
        result = client.validate_policy(text, file)
    if as_json:
        echo_json(
            {
                "valid": result.valid,
                "diagnostics": [str(d) for d in result.diagnostics],
                "blockers": list(result.blockers),
            }
        )
        return EXIT_OK if result.valid else EXIT_NO
    for diagnostic in result.diagnostics:
        print_diagnostic(diagnostic)
    if result.blockers:
        click.echo(f"{file}: the policy would orphan stored relationships:", err=True)
        for blocker in result.blockers:
            click.echo(f"  - {blocker}", err=True)
    if result.valid:
        click.echo(f"{file}: ok")
    return EXIT_OK if result.valid else EXIT_NO


@policy.command("diff")
@POLICY_FILE
@server_options
@json_option
def policy_diff(file: str, connection: Connection, as_json: bool) -> int:
    """Show what writing FILE would change, and the stored relationships that block it.

    Definitions, relations, permissions and caveats added (+), removed (-) and
    changed (~), then each kind of stored relationship the change would orphan.

    Exit 0 when write would accept it, 1 when errors or stored relationships block it.

    Example: policyd policy diff new.policy
    """
    from policyd.dsl.compiler import compile_policy
    from policyd.schema.diff import diff_schemas

    text = read_text(file, "policy")
    with connection.open() as client:
        try:
            current, _token = client.read_policy(consistency=Consistency.fully_consistent())
        except NotFoundError:
            current = None
        result = client.validate_policy(text, file)
    if not result.valid and not result.blockers:  # the file does not compile
        for diagnostic in result.diagnostics:
            print_diagnostic(diagnostic)
        return EXIT_NO
    before = compile_policy(current, "<server>").schema if current is not None else None
    changes = diff_schemas(before, compile_policy(text, file).schema)
    if as_json:
        echo_json(
            {
                "changes": [
                    {"kind": c.kind.name.lower(), "what": c.what, "before": c.before,
                     "after": c.after}
                    for c in changes
                ],
                "blockers": list(result.blockers),
                "valid": result.valid,
            }
        )  # fmt: skip
        return EXIT_OK if result.valid else EXIT_NO
    for change in changes:
        click.echo(str(change))
    if not changes:
        click.echo("no changes")
    for blocker in result.blockers:
        click.echo(f"blocked by {blocker}")
    return EXIT_OK if result.valid else EXIT_NO
