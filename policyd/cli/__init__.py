"""Package cli is the policyd command line, on click: each command parses, calls the API, prints.

The commands live by concern: ``serve`` (and its workers), ``policy``,
``relationships`` (write, read, delete, import, export), ``decisions`` (check,
batch-check, expand, list-objects, list-subjects), ``watch`` (watch,
watch-permission), ``authoring`` (fmt, lint, validate, convert) and ``tools``
(playground, lsp, bench), and ``ingest``. Shared
option groups are in ``options``, file formats in ``formats``, and every error
reaches the user through ``exits.report`` with the exit codes ``exits`` lists.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from policyd import __version__
from policyd.cli.authoring import convert, fmt, lint, validate
from policyd.cli.decisions import batch_check, check, expand, list_objects, list_subjects
from policyd.cli.exits import EXIT_ERROR, EXIT_OK, CommandError, report
from policyd.cli.formats import relationship_from_json, relationship_to_json
from policyd.cli.ingest import ingest
from policyd.cli.options import SERVER, SuggestingGroup
from policyd.cli.policy import policy
from policyd.cli.relationships import delete, export, import_, read, write
from policyd.cli.serve import serve
from policyd.cli.tools import bench, lsp, playground
from policyd.cli.watch import watch, watch_permission
from policyd.errors import PolicydError

__all__ = ["cli", "guarded", "main", "relationship_from_json", "relationship_to_json"]

EXIT_INTERRUPTED = 130


@click.group(cls=SuggestingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="policyd", message="%(prog)s %(version)s")
def cli() -> None:
    """Relationship-based authorization: policies, relationships, decisions.

    Client commands ask the server at $POLICYD_SERVER (default 127.0.0.1:50051)
    with the token in $POLICYD_TOKEN, waiting up to 10 s for a server that is
    starting. Exit codes: 0 done (check: allowed), 1 a negative answer or
    problems found, 2 an error, 3 check answered conditional.
    """


for command in (
    serve,
    check,
    batch_check,
    expand,
    list_objects,
    list_subjects,
    write,
    read,
    delete,
    watch,
    watch_permission,
    import_,
    export,
    policy,
    fmt,
    lint,
    validate,
    convert,
    playground,
    lsp,
    ingest,
    bench,
):
    cli.add_command(command)


def _quiet_broken_pipe() -> None:
    """After the reader of stdout went away: send the rest to /dev/null, so exit says nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (captured in tests)
        pass


def guarded(function: Callable[[], Any]) -> int:
    """Run a command's body through the one error path; returns the exit code."""
    SERVER.set(None)
    try:
        result = function()
    except BrokenPipeError:  # `policyd read | head -1`: the reader has all it wanted
        _quiet_broken_pipe()
        return EXIT_OK
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except (CommandError, PolicydError) as e:
        return report(e, SERVER.get())
    except UnicodeDecodeError as e:
        click.echo(f"error: input is not UTF-8 text: {e.reason} at byte {e.start}", err=True)
        return EXIT_ERROR
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        click.echo(f"error: {where}{e.strerror or e}", err=True)
        return EXIT_ERROR
    return result if isinstance(result, int) else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    arguments = sys.argv[1:] if argv is None else list(argv)

    def run() -> Any:
        # click's own main() turns a broken pipe into exit 1; this path keeps it quiet.
        try:
            with cli.make_context("policyd", arguments) as ctx:
                return cli.invoke(ctx)
        except click.exceptions.Exit as e:
            return e.exit_code
        except click.ClickException as e:
            e.show()
            return e.exit_code
        except click.Abort:
            raise KeyboardInterrupt from None

    return guarded(run)
