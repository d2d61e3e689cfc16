"""Package cli is the policyd command line: each command parses arguments, calls a function, prints.

Exit codes: 0 success, 1 the input has problems (errors are printed as
``file:line:col: code: message``), 2 the command itself was misused or a file
could not be read.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from policyd import client
from policyd.consistency import Consistency
from policyd.dsl.compiler import compile_file
from policyd.dsl.formatter import format_text
from policyd.engine import Engine, format_explanation
from policyd.engine.cache import DEFAULT_CAPACITY
from policyd.errors import (
    Diagnostic,
    InvalidRelationshipError,
    InvalidRequestError,
    NotFoundError,
    PolicydError,
    PolicyErrors,
)
from policyd.filters import RelationshipFilter
from policyd.relationship import (
    ObjectRef,
    Operation,
    Relationship,
    RelationshipUpdate,
    SubjectRef,
    parse_object,
    parse_relationship,
    parse_subject,
)
from policyd.store import open_store
from policyd.timestamps import format_timestamp, parse_timestamp
from policyd.validationfile import load_engine, load_validation_files, run_validation_file

if TYPE_CHECKING:
    from policyd.atproto import XrpcSettings

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
MAX_WORKER_RESTARTS = 10
DEFAULT_SERVER = "127.0.0.1:50051"

LOG = logging.getLogger("policyd")


def _print_error(error: PolicydError) -> None:
    if isinstance(error, PolicyErrors):
        for diagnostic in error.diagnostics:
            _print_diagnostic(diagnostic)
    elif error.span is not None:
        print(f"{error.span}: {error.code}: {error.message}", file=sys.stderr)
    else:
        print(f"error: {error.code}: {error.message}", file=sys.stderr)


def _print_diagnostic(diagnostic: Diagnostic) -> None:
    print(diagnostic, file=sys.stderr)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        print(f"{path}: cannot read: {e.strerror}", file=sys.stderr)
        return None


def cmd_fmt(args: argparse.Namespace) -> int:
    """Print each policy in canonical form, or check or rewrite files in place."""
    status = EXIT_OK
    for path in args.files:
        text = _read(path)
        if text is None:
            return EXIT_USAGE
        try:
            formatted = format_text(text, path)
        except PolicydError as e:
            _print_error(e)
            status = EXIT_PROBLEMS
            continue
        if args.check:
            if formatted != text:
                print(f"{path}: not formatted", file=sys.stderr)
                status = EXIT_PROBLEMS
        elif args.write:
            if formatted != text:
                Path(path).write_text(formatted, encoding="utf-8")
        else:
            sys.stdout.write(formatted)
    return status


def cmd_lint(args: argparse.Namespace) -> int:
    """Compile each policy and report every error and warning."""
    status = EXIT_OK
    for path in args.files:
        if not Path(path).is_file():
            print(f"{path}: cannot read: no such file", file=sys.stderr)
            return EXIT_USAGE
        try:
            compiled = compile_file(path)
        except PolicydError as e:
            _print_error(e)
            status = EXIT_PROBLEMS
            continue
        for warning in compiled.warnings:
            _print_diagnostic(warning)
        if args.warnings_as_errors and compiled.warnings:
            status = EXIT_PROBLEMS
        if not compiled.warnings:
            print(f"{path}: ok")
    return status


def cmd_validate(args: argparse.Namespace) -> int:
    """Load SpiceDB validation files, run their assertions and expected relations."""
    status = EXIT_OK
    for path in args.files:
        if not Path(path).is_file():
            print(f"{path}: cannot read: no such file", file=sys.stderr)
            return EXIT_USAGE
        try:
            files = load_validation_files(path)
        except PolicydError as e:
            _print_error(e)
            status = EXIT_PROBLEMS
            continue
        failed = 0
        assertions = 0
        for loaded in files:
            for warning in loaded.policy.warnings:
                _print_diagnostic(warning)
            assertions += len(loaded.assertions) + len(loaded.expected)
            for failure in run_validation_file(loaded, args.max_depth):
                failed += 1
                print(f"{failure}", file=sys.stderr)
                if failure.explanation:
                    print(textwrap.indent(failure.explanation, "    "), file=sys.stderr)
        if failed:
            status = EXIT_PROBLEMS
            print(f"{path}: {failed} of {assertions} assertions failed", file=sys.stderr)
        else:
            print(f"{path}: ok: {assertions} assertions passed")
    return status


def cmd_convert(args: argparse.Namespace) -> int:
    """Print the policy for an OpenFGA model, or validation files for an OpenFGA store file.

    Example: ``policyd convert model.fga > model.policy``, then
    ``policyd convert tests.fga.yaml > tests.yaml && policyd validate tests.yaml``.
    """
    from policyd.openfga import convert_model_file, convert_store_file

    path = Path(args.file)
    if not path.is_file():
        print(f"{path}: cannot read: no such file", file=sys.stderr)
        return EXIT_USAGE
    store_file = path.suffix in (".yaml", ".yml")
    try:
        text = convert_store_file(path) if store_file else convert_model_file(path)
    except PolicydError as e:
        _print_error(e)
        return EXIT_PROBLEMS
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _engine_for(args: argparse.Namespace) -> Engine:
    if args.file:
        files = load_validation_files(args.file)
        return load_engine(files[0], args.max_depth)
    return Engine(open_store(args.db), max_depth=args.max_depth)


def _parse_query(query: str) -> tuple[ObjectRef, str, SubjectRef]:
    resource_text, _, subject_text = query.partition("@")
    resource_part, _, permission = resource_text.rpartition("#")
    if not subject_text or not permission:
        raise InvalidRequestError(
            f"expected resource#permission@subject, got {query!r}", field="query"
        )
    return parse_object(resource_part, "resource"), permission, parse_subject(subject_text)


def _json_object(text: str | None, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise InvalidRequestError(f"{what} is not JSON: {e.msg}", field=what) from e
    if not isinstance(value, dict):
        raise InvalidRequestError(f"the {what} must be a JSON object", field=what)
    return value


def cmd_check(args: argparse.Namespace) -> int:
    """Answer one check on a server (--server), a store (--db) or a validation file (--file)."""
    try:
        resource, permission, subject = _parse_query(args.query)
        context = _json_object(args.context, "context")
        if args.server:
            with _client(args) as connection:
                result = connection.check(
                    resource,
                    permission,
                    subject,
                    context=context,
                    consistency=_consistency(args),
                    explain=args.explain,
                )
        else:
            result = _engine_for(args).check(
                resource,
                permission,
                subject,
                context=context,
                consistency=Consistency.fully_consistent(),
                explain=args.explain,
            )
    except PolicydError as e:
        _print_error(e)
        return EXIT_USAGE
    missing = f" (needs {', '.join(result.missing)})" if result.missing else ""
    print(f"{result.permissionship.value}{missing}")
    if result.explanation is not None:
        print(format_explanation(result.explanation))
    return EXIT_OK if result.allowed else EXIT_PROBLEMS


# ---- client commands ----------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> client.PolicydClient:
    tls: bool | bytes = False
    if args.tls_ca:
        tls = Path(args.tls_ca).read_bytes()
    elif args.tls:
        tls = True
    return client.PolicydClient(
        args.server, token=args.token or os.environ.get("POLICYD_TOKEN"), tls=tls
    )


def _consistency(args: argparse.Namespace) -> Consistency:
    if getattr(args, "at_least_as_fresh", None):
        return Consistency.at_least_as_fresh(args.at_least_as_fresh)
    return Consistency.fully_consistent()


def _client_command(
    run: Callable[[argparse.Namespace, client.PolicydClient], int],
) -> Callable[[argparse.Namespace], int]:
    """A command handler that opens a client and prints policyd errors the usual way."""

    def handler(args: argparse.Namespace) -> int:
        try:
            with _client(args) as connection:
                return run(args, connection)
        except PolicydError as e:
            _print_error(e)
            return EXIT_PROBLEMS
        except OSError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE

    return handler


def _lines(sources: Sequence[str]) -> Iterator[tuple[str, int, str]]:
    """(source name, line number, text) of every non-blank, non-comment line; '-' is stdin."""
    for source in sources:
        stream = sys.stdin if source == "-" else open(source, encoding="utf-8")  # noqa: SIM115
        try:
            for number, line in enumerate(stream, 1):
                text = line.strip()
                if text and not text.startswith(("//", "#")):
                    yield source, number, text
        finally:
            if stream is not sys.stdin:
                stream.close()


def relationship_to_json(relationship: Relationship) -> dict[str, Any]:
    """The NDJSON form of a relationship: flat fields, empty ones left out."""
    record: dict[str, Any] = {
        "resource_type": relationship.resource.type,
        "resource_id": relationship.resource.id,
        "relation": relationship.relation,
        "subject_type": relationship.subject.type,
        "subject_id": relationship.subject.id,
    }
    if relationship.subject.relation:
        record["subject_relation"] = relationship.subject.relation
    if relationship.caveat_name:
        record["caveat_name"] = relationship.caveat_name
        if relationship.caveat_context:
            record["caveat_context"] = relationship.caveat_context
    if relationship.expires_at is not None:
        record["expires_at"] = format_timestamp(relationship.expires_at)
    return record


def _expiry(text: object) -> datetime | None:
    if not text:
        return None
    try:
        return parse_timestamp(str(text))
    except ValueError as e:
        raise InvalidRelationshipError(str(e), field="expires_at") from e


def relationship_from_json(text: str) -> Relationship:
    """Parse one NDJSON line written by ``relationship_to_json``."""
    record = _json_object(text, "relationship")
    try:
        relationship = Relationship(
            ObjectRef(str(record["resource_type"]), str(record["resource_id"])),
            str(record["relation"]),
            SubjectRef(
                str(record["subject_type"]),
                str(record["subject_id"]),
                record.get("subject_relation") or None,
            ),
            record.get("caveat_name") or None,
            dict(record.get("caveat_context") or {}),
            _expiry(record.get("expires_at")),
        )
    except KeyError as e:
        raise InvalidRequestError(f"missing field {e.args[0]!r}", field=str(e.args[0])) from e
    relationship.validate()
    return relationship


def _parse_line(text: str, fmt: str) -> Relationship:
    if fmt == "ndjson" or (fmt == "auto" and text.startswith("{")):
        return relationship_from_json(text)
    return parse_relationship(text)


def _read_relationships(sources: Sequence[str], fmt: str) -> Iterator[Relationship]:
    for source, number, text in _lines(sources):
        try:
            yield _parse_line(text, fmt)
        except PolicydError as e:
            raise InvalidRequestError(f"{source}:{number}: {e.message}", field=e.field) from e


def _print_relationship(relationship: Relationship, fmt: str) -> None:
    if fmt == "ndjson":
        print(json.dumps(relationship_to_json(relationship), sort_keys=True))
    else:
        print(relationship)


def run_write(args: argparse.Namespace, connection: client.PolicydClient) -> int:
    """Write relationships given as text (or NDJSON) on the command line or in files."""
    operation = Operation(args.operation)
    relationships = [_parse_line(text, "auto") for text in args.relationships]
    relationships += list(_read_relationships(args.from_file or [], "auto"))
    if not relationships:
        print("error: no relationships given", file=sys.stderr)
        return EXIT_USAGE
    token = connection.write([RelationshipUpdate(operation, r) for r in relationships])
    print(token)
    return EXIT_OK


def _filter(args: argparse.Namespace) -> RelationshipFilter:
    return RelationshipFilter(
        resource_type=args.resource_type,
        resource_id=args.resource_id,
        relation=args.relation,
        subject_type=args.subject_type,
        subject_id=args.subject_id,
        subject_relation=args.subject_relation,
    )


def run_read(args: argparse.Namespace, connection: client.PolicydClient) -> int:
    """Print the relationships a filter matches."""
    for found in connection.read(_filter(args), consistency=_consistency(args), limit=args.limit):
        _print_relationship(found.relationship, args.format)
    return EXIT_OK


def run_list_objects(args: argparse.Namespace, connection: client.PolicydClient) -> int:
    """Print the ids of the resources on which the subject holds the permission."""
    type_text, _, subject_text = args.query.partition("@")
    resource_type, _, permission = type_text.partition("#")
    if not permission or not subject_text:
        raise InvalidRequestError(
            f"expected type#permission@subject, got {args.query!r}", field="query"
        )
    found = connection.list_objects(
        resource_type,
        permission,
        parse_subject(subject_text),
        context=_json_object(args.context, "context"),
        consistency=_consistency(args),
        limit=args.limit,
    )
    for listed in found:
        item = listed.found
        missing = f" (needs {', '.join(item.missing)})" if item.missing else ""
        print(f"{resource_type}:{item.resource_id}{missing}")
    return EXIT_OK


def run_list_subjects(args: argparse.Namespace, connection: client.PolicydClient) -> int:
    """Print the subjects of a type that hold the permission on the resource."""
    resource_text, _, permission = args.query.rpartition("#")
    if not resource_text or not permission:
        raise InvalidRequestError(
            f"expected resource#permission, got {args.query!r}", field="query"
        )
    subject_type, _, subject_relation = args.subject_type.partition("#")
    found = connection.list_subjects(
        parse_object(resource_text, "resource"),
        permission,
        subject_type,
        subject_relation or None,
        context=_json_object(args.context, "context"),
        consistency=_consistency(args),
    )
    for listed in found:
        item = listed.found
        notes = [f"needs {', '.join(item.missing)}"] if item.missing else []
        if item.excluded:
            notes.append(
                "except "
                + ", ".join(
                    f"{e.subject}" + (f" if {', '.join(e.missing)} say so" if e.missing else "")
                    for e in item.excluded
                )
            )
        print(f"{item.subject}" + (f" ({'; '.join(notes)})" if notes else ""))
    return EXIT_OK


def run_delete(args: argparse.Namespace, connection: client.PolicydClient) -> int:
    """Delete the relationships a filter matches."""
    token, count = connection.delete(_filter(args), limit=args.limit)
    print(f"deleted {count}")
    print(token)
    return EXIT_OK


def run_watch(args: argparse.Namespace, connection: client.PolicydClient) -> int:
    """Print changes after a token, one line per change: token, kind, relationship."""
    for seen, change in enumerate(connection.watch(args.after, timeout=args.timeout), 1):
        for kind, relationship in change.updates:
            print(f"{change.token} {kind} {relationship or ''}".rstrip(), flush=True)
        if args.count and seen >= args.count:
            break
    return EXIT_OK


def run_import(args: argparse.Namespace, connection: client.PolicydClient) -> int:
    """Load relationships from files in one transaction."""
    token, count = connection.import_relationships(_read_relationships(args.files, args.format))
    print(f"imported {count}")
    print(token)
    return EXIT_OK


def run_export(args: argparse.Namespace, connection: client.PolicydClient) -> int:
    """Print every relationship, one per line."""
    for relationship in connection.export_relationships(consistency=_consistency(args)):
        _print_relationship(relationship, args.format)
    return EXIT_OK


def run_policy_write(args: argparse.Namespace, connection: client.PolicydClient) -> int:
    """Store a policy on the server."""
    text = _read(args.file)
    if text is None:
        return EXIT_USAGE
    token, warnings = connection.write_policy(text, args.file)
    for warning in warnings:
        _print_diagnostic(warning)
    print(token)
    return EXIT_OK


def run_policy_read(args: argparse.Namespace, connection: client.PolicydClient) -> int:
    """Print the policy in force."""
    text, _token = connection.read_policy(consistency=_consistency(args))
    sys.stdout.write(text)
    return EXIT_OK


def run_policy_validate(args: argparse.Namespace, connection: client.PolicydClient) -> int:
    """Compile a policy on the server without storing it."""
    text = _read(args.file)
    if text is None:
        return EXIT_USAGE
    result = connection.validate_policy(text, args.file)
    for diagnostic in result.diagnostics:
        _print_diagnostic(diagnostic)
    if result.valid:
        print(f"{args.file}: ok")
    return EXIT_OK if result.valid else EXIT_PROBLEMS


# ---- serve --------------------------------------------------------------------------------------


def _store_url(args: argparse.Namespace) -> str:
    if args.store == "postgres":
        dsn = args.dsn or os.environ.get("POLICYD_DSN")
        if not dsn:
            raise InvalidRequestError("--store postgres needs --dsn (or POLICYD_DSN)", field="dsn")
        return str(dsn)
    if args.store == "memory":
        return "memory://"
    return f"sqlite://{args.db}"


def _ensure_policy(engine: Engine, path: str) -> None:
    text = Path(path).read_text(encoding="utf-8")
    try:
        current, _revision = engine.read_policy(Consistency.fully_consistent())
    except NotFoundError:
        current = None
    if current != text:
        written = engine.write_policy(text, path)
        for warning in written.warnings:
            _print_diagnostic(warning)
        LOG.info("wrote policy %s at revision %d", path, written.revision)


def _count(text: str) -> int:
    """An argparse type: a whole number, zero or more."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got {text!r}")
    return int(text)


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()):
        raise InvalidRequestError(f"expected HOST:PORT, got {address!r}", field="listen")
    return host, int(port)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the gRPC API (and metrics) until SIGTERM or SIGINT."""
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    token = args.token or os.environ.get("POLICYD_TOKEN") or None
    if token is None and not args.insecure_no_auth:
        print(
            "error: a bearer token is required: --token or POLICYD_TOKEN "
            "(or --insecure-no-auth to serve without one)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if token is None:
        LOG.warning(
            "SERVING WITHOUT AUTHENTICATION (--insecure-no-auth): anyone who can reach "
            "%s can read and change every relationship and the policy",
            args.listen,
        )
    if bool(args.tls_cert) != bool(args.tls_key):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return EXIT_USAGE
    try:
        url = _store_url(args)
        _split_address(args.listen)
        xrpc = _xrpc_settings(args)
        if args.workers > 1:
            if args.store == "memory":
                raise InvalidRequestError(
                    "--workers needs a shared store, not memory", field="store"
                )
            return _supervise(args, url, token, xrpc)
        return _serve_one(args, url, token, xrpc)
    except PolicydError as e:
        _print_error(e)
        return EXIT_USAGE


def _xrpc_settings(args: argparse.Namespace) -> XrpcSettings | None:
    """The checkUserAccess settings of ``--xrpc-listen`` and its flags, checked; None without it."""
    if not args.xrpc_listen:
        return None
    from policyd.atproto import XrpcSettings, load_config
    from policyd.atproto.did import DEFAULT_PLC_URL

    if not args.service_did:
        raise InvalidRequestError(
            "--xrpc-listen needs --service-did: this app's did:…#fragment, the managingApp "
            "its spaces name",
            field="service_did",
        )
    settings = XrpcSettings(
        args.xrpc_listen,
        args.service_did,
        load_config(args.spaces_config),
        args.plc_url or DEFAULT_PLC_URL,
        args.insecure_loopback_http,
        args.tls_cert,
        args.tls_key,
    )
    settings.validate()
    return settings


def _serve_one(
    args: argparse.Namespace, url: str, token: str | None, xrpc: XrpcSettings | None = None
) -> int:
    from prometheus_client import CollectorRegistry

    from policyd.api.limits import Limits
    from policyd.api.metrics import (
        MetricsPublisher,
        WorkerRegistry,
        multiprocess_dir,
        serve_metrics,
    )
    from policyd.api.server import PolicydServer, ServerConfig

    store = open_store(url, read_dsn=args.read_dsn)
    engine = Engine(store, max_depth=args.max_depth, cache_capacity=args.decision_cache_size)
    if args.policy:
        _ensure_policy(engine, args.policy)
    config = ServerConfig(
        listen=args.listen,
        token=token,
        tls_cert=Path(args.tls_cert).read_bytes() if args.tls_cert else None,
        tls_key=Path(args.tls_key).read_bytes() if args.tls_key else None,
        threads=args.threads,
        reuse_port=args.reuse_port,
        limits=Limits(max_message_bytes=args.max_message_bytes),
        gc_every=args.gc_every,
        gc_window=timedelta(seconds=args.gc_window),
    )
    # A worker of --workers N writes its metrics where the supervisor serves their sum.
    shared = WorkerRegistry() if multiprocess_dir() is not None else None
    registry = shared if shared is not None else CollectorRegistry()
    xrpc_server = None
    if xrpc is not None:
        from policyd.atproto import XrpcServer

        xrpc_server = XrpcServer(engine, xrpc, registry, grace=args.grace)
    server = PolicydServer(engine, store, config, registry)
    if shared is not None:
        publisher = MetricsPublisher(shared)
        publisher.start()
        server.on_stop(publisher.stop)
    metrics_server = None
    if args.metrics_listen != "off":
        metrics_server, metrics_port = serve_metrics(registry, args.metrics_listen)
        host = args.metrics_listen.rpartition(":")[0]
        print(f"policyd metrics on http://{host}:{metrics_port}/metrics", flush=True)
    if xrpc_server is not None:
        xrpc_server.start()
        server.on_stop(xrpc_server.stop)
        print(f"policyd xrpc on {xrpc_server.url}", flush=True)
    server.start()
    server.stop_on_signals(grace=args.grace)
    print(f"policyd listening on {server.address}", flush=True)
    while not server.wait(1.0):
        pass
    if metrics_server is not None:
        metrics_server.shutdown()
    return EXIT_OK


def _supervise(
    args: argparse.Namespace, url: str, token: str | None, xrpc: XrpcSettings | None = None
) -> int:
    """Run ``--workers`` processes sharing the port (SO_REUSEPORT); forward SIGTERM to them.

    Worker 0 alone serves ``--xrpc-listen``, so that one replay cache sees every
    service-auth token (one process answers well past the target; README). The
    supervisor serves ``--metrics-listen``: the sum of every worker's metrics
    (api/metrics.py says how each one combines).
    """
    import signal
    import socket
    import subprocess
    import time

    from policyd.api.metrics import SharedMetrics, serve_metrics

    host, port = _split_address(args.listen)
    if port == 0:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host.strip("[]"), 0))
            port = probe.getsockname()[1]
    if args.policy:
        store = open_store(url)
        try:
            _ensure_policy(Engine(store), args.policy)
        finally:
            store.close()
    if xrpc is not None:
        store = open_store(url)
        try:
            xrpc.check_policy(Engine(store, index=False))
        finally:
            store.close()
    env = dict(os.environ)
    if token is not None:
        env["POLICYD_TOKEN"] = token
    if args.store == "postgres":
        env["POLICYD_DSN"] = url
    shared = None
    if args.metrics_listen != "off":
        _split_address(args.metrics_listen)
        shared = SharedMetrics()
        env.update(shared.environment())

    def spawn(index: int) -> subprocess.Popen[bytes]:
        command = [
            sys.executable, "-m", "policyd.cli", "serve",
            "--listen", f"{host}:{port}", "--reuse-port", "--workers", "1",
            "--store", args.store, "--db", args.db,
            "--threads", str(args.threads), "--grace", str(args.grace),
            "--max-message-bytes", str(args.max_message_bytes),
            "--max-depth", str(args.max_depth), "--log-level", args.log_level,
            "--decision-cache-size", str(args.decision_cache_size), "--metrics-listen", "off",
            "--gc-every", str(args.gc_every), "--gc-window", str(args.gc_window),
        ]  # fmt: skip
        if args.read_dsn:
            command += ["--read-dsn", args.read_dsn]
        if token is None:
            command.append("--insecure-no-auth")
        if args.tls_cert:
            command += ["--tls-cert", args.tls_cert, "--tls-key", args.tls_key]
        if xrpc is not None and index == 0:
            command += ["--xrpc-listen", xrpc.listen, "--service-did", xrpc.service_did]
            command += ["--plc-url", xrpc.plc_url]
            if args.spaces_config:
                command += ["--spaces-config", args.spaces_config]
            if xrpc.allow_loopback_http:
                command.append("--insecure-loopback-http")
        return subprocess.Popen(command, env=env)

    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in workers:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    metrics_server = None
    if shared is not None:
        metrics_server, metrics_port = serve_metrics(shared.registry, args.metrics_listen)
        metrics_host = args.metrics_listen.rpartition(":")[0]
        print(f"policyd metrics on http://{metrics_host}:{metrics_port}/metrics", flush=True)
    workers = [spawn(i) for i in range(args.workers)]
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    print(f"policyd listening on {host}:{port} with {args.workers} workers", flush=True)
    restarts = 0
    while not stopping:
        time.sleep(0.2)
        for i, child in enumerate(workers):
            if not stopping and child.poll() is not None:
                if shared is not None:
                    shared.worker_exited(child.pid)
                if restarts >= MAX_WORKER_RESTARTS:
                    LOG.error("worker %d exited with %s; giving up", i, child.returncode)
                    forward(signal.SIGTERM, None)
                    break
                LOG.warning("worker %d exited with %s; restarting", i, child.returncode)
                restarts += 1
                workers[i] = spawn(i)
    deadline = time.monotonic() + args.grace + 10
    status = EXIT_OK
    for child in workers:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)
            status = EXIT_PROBLEMS
    if metrics_server is not None:
        metrics_server.shutdown()
    if shared is not None:
        shared.close()
    return status


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark harness (policyd.bench.harness) with the remaining arguments."""
    from policyd.bench.harness import main as bench_main

    return bench_main(args.harness_args)


def cmd_playground(args: argparse.Namespace) -> int:
    """Serve the playground page on loopback until interrupted (policyd.playground)."""
    from policyd.playground.backends import MemoryBackend, ServerBackend
    from policyd.playground.server import Playground, serve
    from policyd.playground.workbench import Workbench
    from policyd.playground.workspace import Workspace

    path = Path(args.path)
    root, initial = (path.parent, path.name) if path.is_file() else (path, None)
    if not root.is_dir():
        print(f"{args.path}: no such file or folder", file=sys.stderr)
        return EXIT_USAGE
    backend = ServerBackend(_client(args)) if args.server else MemoryBackend(args.max_depth)
    playground = Playground(
        Workbench(backend), Workspace(root), initial_file=initial, server_address=args.server
    )
    try:
        host, port = _split_address(args.listen)
    except PolicydError as e:
        _print_error(e)
        return EXIT_USAGE

    def ready(url: str) -> None:
        print(f"playground on {url}", flush=True)

    serve(playground, host.strip("[]"), port, ready)
    return EXIT_OK


def cmd_lsp(args: argparse.Namespace) -> int:
    """Serve the Language Server Protocol on stdin and stdout (policyd.lsp)."""
    from policyd.lsp.server import main as serve_lsp

    serve_lsp()
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = argparse.ArgumentParser(
        prog="policyd",
        description="Relationship-based authorization: policies, relationships, decisions.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help_text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    fmt = command("fmt", cmd_fmt, "print .policy files in canonical form")
    fmt.add_argument("files", nargs="+", metavar="FILE", help=".policy files")
    mode = fmt.add_mutually_exclusive_group()
    mode.add_argument(
        "--check", action="store_true", help="exit 1 if any file is not in canonical form"
    )
    mode.add_argument("-w", "--write", action="store_true", help="rewrite the files in place")

    lint = command("lint", cmd_lint, "type-check .policy files and report errors and warnings")
    lint.add_argument("files", nargs="+", metavar="FILE", help=".policy files")
    lint.add_argument("--warnings-as-errors", action="store_true", help="exit 1 on warnings too")

    validate = command(
        "validate",
        cmd_validate,
        "run SpiceDB validation files: schema, relationships, assertions, expected relations",
    )
    validate.add_argument("files", nargs="+", metavar="FILE", help="validation YAML files")
    validate.add_argument(
        "--max-depth", type=int, default=50, help="deepest nesting a check may follow"
    )

    convert = command(
        "convert",
        cmd_convert,
        "convert an OpenFGA model (.fga DSL 1.1 or .json) to a policy, or an OpenFGA store "
        "file (.fga.yaml) to validation files",
    )
    convert.add_argument("file", metavar="FILE", help="model.fga, model.json or tests.fga.yaml")
    convert.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")

    def server_options(sub: argparse.ArgumentParser, *, required_server: bool = True) -> None:
        group = sub.add_argument_group("server connection")
        group.add_argument(
            "--server",
            metavar="HOST:PORT",
            default=os.environ.get("POLICYD_SERVER", DEFAULT_SERVER) if required_server else None,
            help=f"policyd server address (default: $POLICYD_SERVER or {DEFAULT_SERVER})"
            if required_server
            else "ask this policyd server instead of opening a store in-process",
        )
        group.add_argument("--token", help="bearer token (default: $POLICYD_TOKEN)")
        group.add_argument("--tls", action="store_true", help="use TLS with the system roots")
        group.add_argument("--tls-ca", metavar="PEM", help="use TLS trusting this CA certificate")

    def consistency_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--at-least-as-fresh",
            metavar="TOKEN",
            help="read at a revision no older than this consistency token "
            "(default: fully consistent)",
        )

    def filter_options(sub: argparse.ArgumentParser) -> None:
        group = sub.add_argument_group("filter (unset fields match anything)")
        group.add_argument("--resource-type")
        group.add_argument("--resource-id")
        group.add_argument("--relation")
        group.add_argument("--subject-type")
        group.add_argument("--subject-id")
        group.add_argument("--subject-relation", help="'' selects subjects without a relation")

    check = command("check", cmd_check, "answer one permission check, optionally explained")
    check.add_argument(
        "query", metavar="RESOURCE#PERMISSION@SUBJECT", help="e.g. doc:1#view@user:a"
    )
    source = check.add_mutually_exclusive_group()
    source.add_argument(
        "--db", default="sqlite://policyd.db", help="store URL (default: sqlite://policyd.db)"
    )
    source.add_argument(
        "--file", help="a SpiceDB validation file whose schema and relationships to check against"
    )
    check.add_argument("--context", help="caveat context as a JSON object")
    check.add_argument("--explain", action="store_true", help="print why, as an indented tree")
    check.add_argument(
        "--max-depth", type=int, default=50, help="deepest nesting a check may follow"
    )
    server_options(check, required_server=False)
    consistency_option(check)

    serve = command("serve", cmd_serve, "serve the gRPC API and Prometheus metrics")
    serve.add_argument(
        "--listen",
        default="127.0.0.1:50051",
        metavar="HOST:PORT",
        help="gRPC address (default: 127.0.0.1:50051; port 0 picks a free one)",
    )
    serve.add_argument(
        "--metrics-listen",
        default="127.0.0.1:9090",
        metavar="HOST:PORT|off",
        help="Prometheus /metrics address (default: 127.0.0.1:9090); 'off' disables it. "
        "With --workers N the one endpoint reports the sum of all workers",
    )
    serve.add_argument(
        "--store",
        choices=["sqlite", "postgres", "memory"],
        default="sqlite",
        help="storage backend (default: sqlite)",
    )
    serve.add_argument(
        "--db", default="policyd.db", help="SQLite file (default: policyd.db in the working dir)"
    )
    serve.add_argument("--dsn", help="PostgreSQL DSN for --store postgres (or $POLICYD_DSN)")
    serve.add_argument(
        "--read-dsn",
        help="a hot standby of --dsn (streaming replication) for snapshot reads; writes, the "
        "head and the change log stay on --dsn",
    )
    serve.add_argument(
        "--gc-every",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="collect old row versions this often; 0 never (default: 600)",
    )
    serve.add_argument(
        "--gc-window",
        type=float,
        default=86400.0,
        metavar="SECONDS",
        help="keep revisions this much history readable, at_exact_snapshot and Watch "
        "(default: 86400)",
    )
    serve.add_argument("--token", help="preshared bearer token (default: $POLICYD_TOKEN)")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve without a token; anyone who can connect may read and write everything",
    )
    serve.add_argument(
        "--tls-cert", metavar="PEM", help="TLS certificate chain (gRPC, and XRPC if served)"
    )
    serve.add_argument("--tls-key", metavar="PEM", help="TLS private key")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port and the database (default: 1)",
    )
    serve.add_argument(
        "--policy", metavar="FILE", help="write this policy at start unless it is already in force"
    )
    serve.add_argument("--threads", type=int, default=16, help="threads per process (default: 16)")
    serve.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds in-flight calls get to finish on SIGTERM (default: 10)",
    )
    serve.add_argument(
        "--max-message-bytes",
        type=int,
        default=4 * 1024 * 1024,
        help="largest request or response message (default: 4 MiB)",
    )
    serve.add_argument(
        "--max-depth", type=int, default=50, help="deepest nesting a check may follow"
    )
    cache = serve.add_mutually_exclusive_group()
    cache.add_argument(
        "--decision-cache-size",
        type=_count,
        default=DEFAULT_CAPACITY,
        metavar="N",
        help=f"decisions each worker caches (default: {DEFAULT_CAPACITY:,}; 0 turns the cache off)",
    )
    cache.add_argument(
        "--no-decision-cache",
        dest="decision_cache_size",
        action="store_const",
        const=0,
        help="compute every decision (the same as --decision-cache-size 0), e.g. to measure "
        "cold checks",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (debug logs one line per request)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    spaces = serve.add_argument_group(
        "atproto spaces: policyd as a space's managing app (checkUserAccess)"
    )
    spaces.add_argument(
        "--xrpc-listen",
        metavar="HOST:PORT",
        help="serve com.atproto.simplespace.checkUserAccess over HTTP here "
        "(default: off; with --workers, worker 0 serves it)",
    )
    spaces.add_argument(
        "--service-did",
        metavar="DID#FRAGMENT",
        help="this app's service identifier, the managingApp of its spaces and the aud of "
        "the service-auth tokens it accepts",
    )
    spaces.add_argument(
        "--plc-url",
        metavar="URL",
        help="PLC directory resolving did:plc (default: https://plc.directory)",
    )
    spaces.add_argument(
        "--spaces-config",
        metavar="YAML",
        help="settings of the request-to-check mapping, token checks and DID cache (README)",
    )
    spaces.add_argument(
        "--insecure-loopback-http",
        action="store_true",
        help="for tests: fetch DID documents over plain HTTP from loopback hosts "
        "(did:web:127.0.0.1%%3APORT, an http:// PLC directory on 127.0.0.1)",
    )

    write = command(
        "write", _client_command(run_write), "write relationships on a server, atomically"
    )
    write.add_argument(
        "relationships",
        nargs="*",
        metavar="RELATIONSHIP",
        help='e.g. "post:1#viewer@account:did:plc:a" (text or NDJSON)',
    )
    write.add_argument(
        "--operation",
        choices=[o.value for o in Operation],
        default="touch",
        help="touch (create or replace; default), create (fail if it exists) or delete",
    )
    write.add_argument(
        "-f",
        "--from-file",
        action="append",
        metavar="FILE",
        help="also write the relationships in FILE, one per line ('-' is stdin)",
    )
    server_options(write)

    read = command("read", _client_command(run_read), "print the relationships a filter matches")
    filter_options(read)
    read.add_argument("--limit", type=int, default=0, help="at most this many (default: all)")
    read.add_argument("--format", choices=["text", "ndjson"], default="text")
    consistency_option(read)
    server_options(read)

    list_objects = command(
        "list-objects",
        _client_command(run_list_objects),
        "list the resources of a type on which a subject holds a permission",
    )
    list_objects.add_argument(
        "query", metavar="TYPE#PERMISSION@SUBJECT", help="e.g. post#view@account:did:plc:a"
    )
    list_objects.add_argument("--context", help="caveat context as a JSON object")
    list_objects.add_argument("--limit", type=int, default=0, help="at most this many")
    consistency_option(list_objects)
    server_options(list_objects)

    list_subjects = command(
        "list-subjects",
        _client_command(run_list_subjects),
        "list the subjects of a type that hold a permission on a resource",
    )
    list_subjects.add_argument("query", metavar="RESOURCE#PERMISSION", help="e.g. space:cats#read")
    list_subjects.add_argument(
        "subject_type", metavar="SUBJECT_TYPE[#RELATION]", help="e.g. account or space#member"
    )
    list_subjects.add_argument("--context", help="caveat context as a JSON object")
    consistency_option(list_subjects)
    server_options(list_subjects)

    delete = command(
        "delete", _client_command(run_delete), "delete the relationships a filter matches"
    )
    filter_options(delete)
    delete.add_argument("--limit", type=int, default=0, help="at most this many (default: all)")
    server_options(delete)

    watch = command(
        "watch", _client_command(run_watch), "print relationship changes as they happen"
    )
    watch.add_argument("--after", metavar="TOKEN", help="start after this token (default: now)")
    watch.add_argument("--timeout", type=float, help="stop after this many seconds")
    watch.add_argument("--count", type=int, default=0, help="stop after this many revisions")
    server_options(watch)

    import_ = command(
        "import",
        _client_command(run_import),
        "load relationships from files in one transaction (text or NDJSON, one per line)",
    )
    import_.add_argument("files", nargs="+", metavar="FILE", help="files to load ('-' is stdin)")
    import_.add_argument(
        "--format",
        choices=["auto", "text", "ndjson"],
        default="auto",
        help="line format: SpiceDB relationship text, NDJSON, or auto (per line)",
    )
    server_options(import_)

    export = command(
        "export", _client_command(run_export), "print every relationship, one per line"
    )
    export.add_argument("--format", choices=["text", "ndjson"], default="text")
    consistency_option(export)
    server_options(export)

    policy = commands.add_parser(
        "policy", help="write, read or validate the policy on a server",
        description="write, read or validate the policy on a server",
    )  # fmt: skip
    policy_commands = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    for name, handler, help_text in (
        ("write", run_policy_write, "store a policy file on the server"),
        ("read", run_policy_read, "print the policy in force"),
        ("validate", run_policy_validate, "compile a policy file on the server, store nothing"),
    ):
        sub = policy_commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=_client_command(handler))
        if name != "read":
            sub.add_argument("file", metavar="FILE", help=".policy file")
        else:
            consistency_option(sub)
        server_options(sub)

    playground = command(
        "playground",
        cmd_playground,
        "a local web page to edit a policy, relationships and assertions and see decisions "
        "as graphs",
    )
    playground.add_argument(
        "path",
        nargs="?",
        default=".",
        metavar="FILE_OR_FOLDER",
        help="a validation file to open, or the folder whose YAML files to offer "
        "(default: the working dir); saves stay inside that folder",
    )
    playground.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="page address (default: 127.0.0.1:8080; port 0 picks a free one)",
    )
    playground.add_argument(
        "--max-depth", type=int, default=50, help="deepest nesting a check may follow"
    )
    server_options(playground, required_server=False)

    command(
        "lsp",
        cmd_lsp,
        "a language server for .policy files over stdio (diagnostics, hover, definitions, "
        "references, rename, completion, formatting)",
    )

    bench = command(
        "bench",
        cmd_bench,
        "benchmark decisions/s and latency, side by side with SpiceDB and Python peers",
    )
    bench.add_argument(
        "harness_args",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="harness options; 'policyd bench --help' lists them",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["bench"]:  # the harness parses its own options, --help included
        return cmd_bench(argparse.Namespace(harness_args=arguments[1:]))
    args = build_parser().parse_args(arguments)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
