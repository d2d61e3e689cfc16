"""Package tools holds the long-running helpers: playground, lsp (language server) and bench."""

from __future__ import annotations

from pathlib import Path

import click

from policyd.cli.exits import EXIT_OK, CommandError
from policyd.cli.options import Connection, optional_server_options
from policyd.cli.serve import split_address


@click.command()
@click.argument("path", default=".", metavar="[FILE_OR_FOLDER]")
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    metavar="HOST:PORT",
    help="page address (default: 127.0.0.1:8080; port 0 picks a free one)",
)
@click.option("--max-depth", type=click.IntRange(min=1), default=50, help="deepest nesting")
@optional_server_options
def playground(path: str, listen: str, max_depth: int, connection: Connection | None) -> int:
    """Serve a local page to edit a policy and its tests and see decisions as graphs.

    FILE_OR_FOLDER is a validation file to open, or the folder whose YAML files
    to offer (default: the working dir); saves stay inside that folder. With
    --server, a running server's policy and relationships, read-only.

    Example: policyd playground policies/social.test.yaml
    """
    from policyd.playground.backends import MemoryBackend, ServerBackend
    from policyd.playground.server import Playground, serve
    from policyd.playground.workbench import Workbench
    from policyd.playground.workspace import Workspace

    given = Path(path)
    root, initial = (given.parent, given.name) if given.is_file() else (given, None)
    if not root.is_dir():
        raise CommandError(f"{path}: no such file or folder")
    host, port = split_address(listen)
    if connection is not None:
        backend: MemoryBackend | ServerBackend = ServerBackend(connection.open())
    else:
        backend = MemoryBackend(max_depth)
    page = Playground(
        Workbench(backend),
        Workspace(root),
        initial_file=initial,
        server_address=connection.server if connection is not None else None,
    )

    def ready(url: str) -> None:
        click.echo(f"playground on {url}")

    serve(page, host.strip("[]"), port, ready)
    return EXIT_OK


@click.command()
def lsp() -> int:
    """Serve the language server for .policy files over stdio.

    Diagnostics, hover, definitions, references, rename, completion, formatting.

    Example (any LSP client): command = ["policyd", "lsp"]
    """
    from policyd.lsp.server import main as serve_lsp

    serve_lsp()
    return EXIT_OK


@click.command(
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("harness_args", nargs=-1, type=click.UNPROCESSED, metavar="...")
def bench(harness_args: tuple[str, ...]) -> int:
    """Benchmark decisions/s and latency, side by side with SpiceDB and Python peers.

    The harness parses its own options: `policyd bench --help` lists them.
    """
    from policyd.bench.harness import main as bench_main

    return bench_main(list(harness_args))
