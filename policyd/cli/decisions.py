"""Package decisions holds the commands that ask questions: check, batch-check, expand, lists."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from policyd.cli.exits import EXIT_CONDITIONAL, EXIT_NO, EXIT_OK, CommandError
from policyd.cli.formats import echo_json, found_subject_line, found_subject_to_json, json_object
from policyd.cli.options import (
    Connection,
    consistency_options,
    context_option,
    json_option,
    read_text,
    server_options,
    sqlite_file,
    store_options,
)
from policyd.consistency import Consistency
from policyd.decisions import CheckRequest, CheckResult, ExpandNode, Permissionship
from policyd.errors import InvalidRequestError
from policyd.relationship import ObjectRef, SubjectRef, parse_object, parse_subject

MAX_DEPTH_HELP = "deepest nesting a check may follow (default: 50)"


def parse_query(query: str) -> tuple[ObjectRef, str, SubjectRef]:
    """``resource#permission@subject`` in its three parts."""
    resource_text, _, subject_text = query.partition("@")
    resource_part, _, permission = resource_text.rpartition("#")
    if not subject_text or not permission:
        raise InvalidRequestError(
            f"expected resource#permission@subject, got {query!r}", field="query"
        )
    return parse_object(resource_part, "resource"), permission, parse_subject(subject_text)


def parse_resource_permission(text: str) -> tuple[ObjectRef, str]:
    """``resource#permission`` in its two parts."""
    resource_text, _, permission = text.rpartition("#")
    if not resource_text or not permission:
        raise InvalidRequestError(f"expected resource#permission, got {text!r}", field="query")
    return parse_object(resource_text, "resource"), permission


def _exit_for(results: Sequence[CheckResult]) -> int:
    """0 when every answer grants, 1 when any denies, else 3 (conditional)."""
    answers = {r.permissionship for r in results}
    if Permissionship.NO_PERMISSION in answers:
        return EXIT_NO
    if Permissionship.CONDITIONAL in answers:
        return EXIT_CONDITIONAL
    return EXIT_OK


def _result_json(result: CheckResult) -> dict[str, Any]:
    from policyd.engine import format_explanation

    record: dict[str, Any] = {
        "resource": str(result.resource),
        "permission": result.permission,
        "subject": str(result.subject),
        "permissionship": result.permissionship.value,
        "token": result.token,
    }
    if result.missing:
        record["missing_context"] = list(result.missing)
    if result.explanation is not None:
        record["explanation"] = format_explanation(result.explanation)
    return record


def _needs(missing: Sequence[str]) -> str:
    return f" (needs {', '.join(missing)})" if missing else ""


@click.command()
@click.argument("query", metavar="RESOURCE#PERMISSION@SUBJECT")
@click.option(
    "--file",
    metavar="YAML",
    help="check against this SpiceDB validation file's schema and relationships, in-process",
)
@store_options(default=None)
@context_option
@click.option("--explain", is_flag=True, help="print why, as an indented tree")
@click.option("--max-depth", type=click.IntRange(min=1), default=50, help=MAX_DEPTH_HELP)
@server_options
@consistency_options
@json_option
def check(
    query: str,
    file: str | None,
    store: str | None,
    context: str | None,
    explain: bool,
    max_depth: int,
    connection: Connection,
    consistency: Consistency,
    as_json: bool,
) -> int:
    """Answer one check: may SUBJECT do PERMISSION on RESOURCE.

    Asks the server ($POLICYD_SERVER, --server), or answers in-process from a
    store (--store) or a validation file (--file). Exit 0: has_permission,
    1: no_permission, 3: conditional (the context lacks fields), 2: an error.

    Example: policyd check 'post:1#view@account:did:plc:bob' --explain
    """
    resource, permission, subject = parse_query(query)
    caveat_context = json_object(context, "context")
    if file is not None or store is not None:
        source = click.get_current_context().get_parameter_source("server")
        if source is ParameterSource.COMMANDLINE:
            raise click.UsageError("--server and --store/--file name two sources; give one")
        result = _check_in_process(
            file, store, max_depth, resource, permission, subject, caveat_context, explain
        )
    else:
        with connection.open() as client:
            result = client.check(
                resource,
                permission,
                subject,
                context=caveat_context,
                consistency=consistency,
                explain=explain,
            )
    if as_json:
        echo_json(_result_json(result))
    else:
        click.echo(f"{result.permissionship.value}{_needs(result.missing)}")
        if result.explanation is not None:
            from policyd.engine import format_explanation

            click.echo(format_explanation(result.explanation))
    return _exit_for([result])


def _check_in_process(
    file: str | None,
    store: str | None,
    max_depth: int,
    resource: ObjectRef,
    permission: str,
    subject: SubjectRef,
    context: dict[str, Any],
    explain: bool,
) -> CheckResult:
    from policyd.engine import Engine

    if file is not None and store is not None:
        raise CommandError("--file and --store name two sources; give one")
    if file is not None:
        from policyd.validationfile import load_engine, load_validation_files

        read_text(file, "validation")
        engine = load_engine(load_validation_files(file)[0], max_depth)
    else:
        assert store is not None
        from policyd.store import open_store

        path = sqlite_file(store)
        if path is not None and not Path(path).is_file():
            raise CommandError(
                f"{path}: no such store file",
                hint="check answers from a server unless --store names an existing store",
            )
        engine = Engine(open_store(store), max_depth=max_depth)
    try:
        return engine.check(
            resource,
            permission,
            subject,
            context=context,
            consistency=Consistency.fully_consistent(),
            explain=explain,
        )
    finally:
        engine.close()


@click.command("batch-check")
@click.argument("queries", nargs=-1, metavar="RESOURCE#PERMISSION@SUBJECT...")
@click.option(
    "-f",
    "--from-file",
    "files",
    multiple=True,
    metavar="FILE",
    help="also check the queries in FILE, one per line ('-' is stdin)",
)
@context_option
@server_options
@consistency_options
@json_option
def batch_check(
    queries: tuple[str, ...],
    files: tuple[str, ...],
    context: str | None,
    connection: Connection,
    consistency: Consistency,
    as_json: bool,
) -> int:
    """Answer many checks at one revision (BatchCheck): one line per query, in order.

    Exit 0 when every answer is has_permission, 1 when any is no_permission,
    3 when the rest are conditional.

    Example: policyd batch-check 'post:1#view@account:a' 'post:2#view@account:a'
    """
    texts = list(queries)
    for source in files:
        texts += [
            line.strip()
            for line in read_text(source).splitlines()
            if line.strip() and not line.strip().startswith(("//", "#"))
        ]
    if not texts:
        raise click.UsageError("give at least one query (or -f FILE)")
    caveat_context = json_object(context, "context")
    items = [CheckRequest(*parse_query(text), caveat_context) for text in texts]
    with connection.open() as client:
        results = client.check_many(items, consistency=consistency)
    for text, result in zip(texts, results, strict=True):
        if as_json:
            echo_json(_result_json(result))
        else:
            click.echo(f"{text} {result.permissionship.value}{_needs(result.missing)}")
    return _exit_for(results)


def _expand_lines(node: ExpandNode, level: int = 0) -> list[str]:
    lines = [f"{'  ' * level}{node.kind.value} {node.target}"]
    lines += [f"{'  ' * (level + 1)}{r}" for r in node.relationships]
    for child in node.children:
        lines += _expand_lines(child, level + 1)
    return lines


def _expand_json(node: ExpandNode) -> dict[str, Any]:
    return {
        "kind": node.kind.value,
        "target": node.target,
        "relationships": [str(r) for r in node.relationships],
        "children": [_expand_json(c) for c in node.children],
    }


@click.command()
@click.argument("query", metavar="RESOURCE#PERMISSION")
@server_options
@consistency_options
@json_option
def expand(query: str, connection: Connection, consistency: Consistency, as_json: bool) -> int:
    """Print the userset tree of a permission on a resource (Expand), indented.

    Example: policyd expand 'space:cats#read'
    """
    resource, permission = parse_resource_permission(query)
    with connection.open() as client:
        tree, token = client.expand(resource, permission, consistency=consistency)
    if as_json:
        echo_json({"token": token, "tree": _expand_json(tree)})
    else:
        click.echo("\n".join(_expand_lines(tree)))
    return EXIT_OK


def _page_options(function: Any) -> Any:
    function = click.option(
        "--cursor", metavar="CURSOR", default="", help="continue after an earlier listing's cursor"
    )(function)
    return click.option(
        "--limit",
        type=click.IntRange(min=0),
        default=0,
        help="at most this many; then the cursor to continue is printed on stderr (0: all)",
    )(function)


def print_cursor(cursor: str, as_json: bool) -> None:
    """Tell where a listing cut by ``--limit`` continues (stderr, or a JSON line)."""
    if not cursor:
        return
    if as_json:
        echo_json({"after_cursor": cursor})
    else:
        click.echo(f"more: --cursor {cursor}", err=True)


@click.command("list-objects")
@click.argument("query", metavar="TYPE#PERMISSION@SUBJECT")
@context_option
@_page_options
@server_options
@consistency_options
@json_option
def list_objects(
    query: str,
    context: str | None,
    limit: int,
    cursor: str,
    connection: Connection,
    consistency: Consistency,
    as_json: bool,
) -> int:
    """List the resources of a type on which a subject holds a permission.

    Example: policyd list-objects 'post#view@account:did:plc:carol'
    """
    type_text, _, subject_text = query.partition("@")
    resource_type, _, permission = type_text.partition("#")
    if not permission or not subject_text:
        raise InvalidRequestError(f"expected type#permission@subject, got {query!r}", field="query")
    after = ""
    with connection.open() as client:
        for listed in client.list_objects(
            resource_type,
            permission,
            parse_subject(subject_text),
            context=json_object(context, "context"),
            consistency=consistency,
            limit=limit,
            cursor=cursor,
        ):
            item = listed.found
            after = listed.after_cursor or after
            if as_json:
                echo_json(
                    {
                        "resource": f"{resource_type}:{item.resource_id}",
                        "permissionship": item.permissionship.value,
                        "missing_context": list(item.missing),
                        "token": listed.token,
                    }
                )
            else:
                click.echo(f"{resource_type}:{item.resource_id}{_needs(item.missing)}")
    print_cursor(after, as_json)
    return EXIT_OK


@click.command("list-subjects")
@click.argument("query", metavar="RESOURCE#PERMISSION")
@click.argument("subject_type", metavar="SUBJECT_TYPE[#RELATION]")
@context_option
@_page_options
@server_options
@consistency_options
@json_option
def list_subjects(
    query: str,
    subject_type: str,
    context: str | None,
    limit: int,
    cursor: str,
    connection: Connection,
    consistency: Consistency,
    as_json: bool,
) -> int:
    """List the subjects of a type that hold a permission on a resource.

    Example: policyd list-subjects 'space:cats#read' account
    """
    resource, permission = parse_resource_permission(query)
    type_name, _, relation = subject_type.partition("#")
    after = ""
    with connection.open() as client:
        for listed in client.list_subjects(
            resource,
            permission,
            type_name,
            relation or None,
            context=json_object(context, "context"),
            consistency=consistency,
            limit=limit,
            cursor=cursor,
        ):
            after = listed.after_cursor or after
            if as_json:
                echo_json({**found_subject_to_json(listed.found), "token": listed.token})
            else:
                click.echo(found_subject_line(listed.found))
    print_cursor(after, as_json)
    return EXIT_OK
