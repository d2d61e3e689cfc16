"""Package options holds the option groups commands share: server connection, store, consistency.

Each group is a decorator that adds its options to a command and hands the
command one value built from them (a ``Connection``, a store URL, a
``Consistency``, a ``RelationshipFilter``), so every command spells and reads
them the same way.
"""

from __future__ import annotations

import difflib
import functools
import sys
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from policyd.cli.exits import CommandError, ServerContext
from policyd.consistency import Consistency
from policyd.filters import RelationshipFilter

if TYPE_CHECKING:
    from policyd.client import PolicydClient

DEFAULT_SERVER = "127.0.0.1:50051"
DEFAULT_WAIT = 10.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_SQLITE_FILE = "policyd.db"

Command = Callable[..., Any]
"""A command function, before or after an option decorator."""

SERVER: ContextVar[ServerContext | None] = ContextVar("policyd_cli_server", default=None)
"""The server the running command talks to, for the hints of ``exits.report``."""


def read_bytes(path: str, what: str) -> bytes:
    """A file's bytes, or a CommandError naming the file and what it was for."""
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise CommandError(f"{path}: is a directory, not a {what} file") from None
    except FileNotFoundError:
        raise CommandError(f"{path}: no such {what} file") from None
    except OSError as e:
        raise CommandError(f"{path}: cannot read: {e.strerror}") from None


def read_text(path: str, what: str = "input") -> str:
    """A UTF-8 file's text ('-' is stdin), or a CommandError naming the file."""
    data = sys.stdin.buffer.read() if path == "-" else read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise CommandError(f"{path}:{line}: not UTF-8 text (byte {e.start})") from None


class SuggestingGroup(click.Group):
    """A command group that suggests the closest command for a mistyped one."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """The command ``args`` names; a usage error with "did you mean" when none is."""
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            if close:
                ctx.fail(f"no such command '{name}'; did you mean '{close[0]}'?")
        return super().resolve_command(ctx, args)


# ---- server connection ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connection:
    """How to reach a server: its address, token, TLS, and how long to wait for it to be up."""

    server: str
    token: str | None
    tls: bool
    tls_ca: str | None
    wait: float
    timeout: float

    def open(self) -> PolicydClient:
        """A client, once the server accepts connections or ``wait`` seconds have passed.

        A server that is still down after the wait is reported by the first
        call, with grpc's reason (refused, TLS handshake) and a hint.
        """
        from policyd.client import PolicydClient

        tls: bool | bytes = read_bytes(self.tls_ca, "CA certificate") if self.tls_ca else self.tls
        SERVER.set(ServerContext(self.server, tls is not False, bool(self.token)))
        client = PolicydClient(self.server, token=self.token, tls=tls, timeout=self.timeout)
        if self.wait > 0:
            client.wait_until_ready(self.wait)
        return client


def _nonempty(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty", param=param)
    return value


def _server_options(*, optional: bool) -> list[Callable[[Command], Command]]:
    server_help = (
        "ask this policyd server instead of opening a store in-process"
        if optional
        else f"policyd server address (default: $POLICYD_SERVER or {DEFAULT_SERVER})"
    )
    return [
        click.option(
            "--server",
            metavar="HOST:PORT",
            envvar=None if optional else "POLICYD_SERVER",
            show_envvar=not optional,
            default=None if optional else DEFAULT_SERVER,
            callback=_nonempty,
            help=server_help,
        ),
        click.option(
            "--token",
            envvar="POLICYD_TOKEN",
            show_envvar=True,
            help="bearer token (default: $POLICYD_TOKEN)",
        ),
        click.option("--tls", is_flag=True, help="use TLS with the system roots"),
        click.option("--tls-ca", metavar="PEM", help="use TLS trusting this CA certificate"),
        click.option(
            "--wait-for-ready",
            "wait",
            type=click.FloatRange(min=0),
            default=DEFAULT_WAIT,
            envvar="POLICYD_WAIT_FOR_READY",
            metavar="SECONDS",
            help=f"wait this long for a server that is starting (default: {DEFAULT_WAIT:g}; "
            "0 fails at once)",
        ),
        click.option(
            "--rpc-timeout",
            "call_timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=DEFAULT_TIMEOUT,
            metavar="SECONDS",
            help=f"deadline of each call (default: {DEFAULT_TIMEOUT:g})",
        ),
    ]


def _apply(function: Command, decorators: list[Callable[[Command], Command]]) -> Command:
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def server_options(function: Command) -> Command:
    """Add the server connection options; the command gets ``connection: Connection``."""
    return _connection_options(function, optional=False)


def optional_server_options(function: Command) -> Command:
    """Like ``server_options``, but ``--server`` is off unless given: ``connection`` may be None.

    For ``playground``, which works on local files and asks a server only when
    ``--server`` names one.
    """
    return _connection_options(function, optional=True)


def _connection_options(function: Command, *, optional: bool) -> Command:
    @functools.wraps(function)
    def wrapper(
        *args: Any,
        server: str | None,
        token: str | None,
        tls: bool,
        tls_ca: str | None,
        wait: float,
        call_timeout: float,
        **kwargs: Any,
    ) -> Any:
        connection = (
            None
            if server is None
            else Connection(server, token or None, tls, tls_ca, wait, call_timeout)
        )
        return function(*args, connection=connection, **kwargs)

    return _apply(wrapper, _server_options(optional=optional))


# ---- store -----------------------------------------------------------------------------------


STORE_HELP = (
    "store URL: a SQLite file path (or sqlite:///abs/path, sqlite://rel/path), "
    "postgresql://user:pass@host/db[?schema=name] or memory://; "
    "'sqlite', 'postgres' and 'memory' pick a backend with --db/--dsn"
)


def store_url(
    store: str | None, db: str | None, dsn: str | None, default: str | None
) -> str | None:
    """The one store URL ``--store``, ``--db`` and ``--dsn`` name, or ``default``."""
    if store in ("postgres", "postgresql"):
        if not dsn:
            raise CommandError("--store postgres needs --dsn (or POLICYD_DSN)")
        return dsn
    if store == "memory":
        return "memory://"
    if store == "sqlite":
        return db or default or DEFAULT_SQLITE_FILE
    if store is not None:
        if db:
            raise CommandError(f"--db {db} and --store {store} name two stores; give one")
        return store
    return db or dsn or default


def sqlite_file(url: str) -> str | None:
    """The file a SQLite store URL names (None for other stores and for ``:memory:``)."""
    if url.startswith(("memory:", "postgresql://", "postgres://")):
        return None
    rest = url.removeprefix("sqlite:").removeprefix("//")
    return None if rest in ("", ":memory:", "/:memory:") else rest


def store_options(*, default: str | None) -> Callable[[Command], Command]:
    """Add ``--store``, ``--db`` and ``--dsn``; the command gets ``store: str | None`` (a URL)."""

    def decorate(function: Command) -> Command:
        @functools.wraps(function)
        def wrapper(
            *args: Any, store: str | None, db: str | None, dsn: str | None, **kw: Any
        ) -> Any:
            return function(*args, store=store_url(store, db, dsn, default), **kw)

        default_text = f"default: {default}" if default else "default: ask the server"
        return _apply(
            wrapper,
            [
                click.option("--store", metavar="URL", help=f"{STORE_HELP} ({default_text})"),
                click.option(
                    "--db", metavar="PATH", help="a SQLite file (the same as --store PATH)"
                ),
                click.option(
                    "--dsn",
                    envvar="POLICYD_DSN",
                    metavar="URL",
                    help="PostgreSQL URL for --store postgres ($POLICYD_DSN)",
                ),
            ],
        )

    return decorate


# ---- consistency, filters, output ---------------------------------------------------------------


def consistency_options(function: Command) -> Command:
    """Add the four consistency modes; the command gets ``consistency: Consistency``."""

    @functools.wraps(function)
    def wrapper(
        *args: Any,
        at_least_as_fresh: str | None,
        at_exact_snapshot: str | None,
        minimize_latency: bool,
        fully_consistent: bool,
        **kwargs: Any,
    ) -> Any:
        chosen = [
            name
            for name, given in (
                ("--at-least-as-fresh", at_least_as_fresh is not None),
                ("--at-exact-snapshot", at_exact_snapshot is not None),
                ("--minimize-latency", minimize_latency),
                ("--fully-consistent", fully_consistent),
            )
            if given
        ]
        if len(chosen) > 1:
            raise click.UsageError(f"{' and '.join(chosen)} exclude each other: give one")
        if at_least_as_fresh is not None:
            consistency = Consistency.at_least_as_fresh(at_least_as_fresh)
        elif at_exact_snapshot is not None:
            consistency = Consistency.at_exact_snapshot(at_exact_snapshot)
        elif minimize_latency:
            consistency = Consistency.minimize_latency()
        else:
            consistency = Consistency.fully_consistent()
        return function(*args, consistency=consistency, **kwargs)

    return _apply(
        wrapper,
        [
            click.option(
                "--at-least-as-fresh",
                metavar="TOKEN",
                callback=_nonempty,
                help="read at a revision no older than this consistency token (read your writes)",
            ),
            click.option(
                "--at-exact-snapshot",
                metavar="TOKEN",
                callback=_nonempty,
                help="read exactly at this consistency token's revision",
            ),
            click.option(
                "--minimize-latency",
                is_flag=True,
                help="any recent revision the server knows: fastest, possibly stale",
            ),
            click.option(
                "--fully-consistent",
                is_flag=True,
                help="the newest revision (the default)",
            ),
        ],
    )


def filter_options(function: Command) -> Command:
    """Add the relationship filter; the command gets ``relationship_filter``."""

    @functools.wraps(function)
    def wrapper(
        *args: Any,
        resource_type: str | None,
        resource_id: str | None,
        relation: str | None,
        subject_type: str | None,
        subject_id: str | None,
        subject_relation: str | None,
        **kwargs: Any,
    ) -> Any:
        relationship_filter = RelationshipFilter(
            resource_type=resource_type,
            resource_id=resource_id,
            relation=relation,
            subject_type=subject_type,
            subject_id=subject_id,
            subject_relation=subject_relation,
        )
        return function(*args, relationship_filter=relationship_filter, **kwargs)

    return _apply(
        wrapper,
        [
            click.option("--resource-type", help="filter: the resource's type"),
            click.option("--resource-id", help="filter: the resource's id"),
            click.option("--relation", help="filter: the relation"),
            click.option("--subject-type", help="filter: the subject's type"),
            click.option("--subject-id", help="filter: the subject's id"),
            click.option("--subject-relation", help="filter: the subject's relation ('' for none)"),
        ],
    )


def json_option(function: Command) -> Command:
    """Add ``--json``: the command prints JSON (one object per line for streams)."""
    return click.option(
        "--json", "as_json", is_flag=True, help="print JSON (one object per line for lists)"
    )(function)


def context_option(function: Command) -> Command:
    """Add ``--context JSON``: a caveat context."""
    return click.option(
        "--context", metavar="JSON", help='caveat context as a JSON object, e.g. \'{"now": "…"}\''
    )(function)
