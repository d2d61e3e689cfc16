"""Package cli is the policyd command line: each command parses arguments, calls a function, prints.

Exit codes: 0 success, 1 the input has problems (errors are printed as
``file:line:col: code: message``), 2 the command itself was misused or a file
could not be read.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

from policyd.dsl.compiler import compile_file
from policyd.dsl.formatter import format_text
from policyd.engine import Consistency, Engine, format_explanation
from policyd.errors import Diagnostic, InvalidRequestError, PolicydError, PolicyErrors
from policyd.relationship import parse_object, parse_subject
from policyd.store import open_store
from policyd.validationfile import load_engine, load_validation_files, run_validation_file

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


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


def _engine_for(args: argparse.Namespace) -> Engine:
    if args.file:
        files = load_validation_files(args.file)
        return load_engine(files[0], args.max_depth)
    return Engine(open_store(args.db), max_depth=args.max_depth)


def cmd_check(args: argparse.Namespace) -> int:
    """Answer one check in-process, against a store or a validation file, optionally explained."""
    try:
        resource_text, _, subject_text = args.query.partition("@")
        resource_part, _, permission = resource_text.rpartition("#")
        if not subject_text or not permission:
            raise InvalidRequestError(
                f"expected resource#permission@subject, got {args.query!r}", field="query"
            )
        context = json.loads(args.context) if args.context else {}
        if not isinstance(context, dict):
            raise InvalidRequestError("the context must be a JSON object", field="context")
        engine = _engine_for(args)
        result = engine.check(
            parse_object(resource_part, "resource"),
            permission,
            parse_subject(subject_text),
            context=context,
            consistency=Consistency.fully_consistent(),
            explain=args.explain,
        )
    except json.JSONDecodeError as e:
        print(f"error: context is not JSON: {e.msg}", file=sys.stderr)
        return EXIT_USAGE
    except PolicydError as e:
        _print_error(e)
        return EXIT_USAGE
    missing = f" (needs {', '.join(result.missing)})" if result.missing else ""
    print(f"{result.permissionship.value}{missing}")
    if result.explanation is not None:
        print(format_explanation(result.explanation))
    return EXIT_OK if result.allowed else EXIT_PROBLEMS


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

    check = command("check", cmd_check, "answer one permission check, optionally explained")
    check.add_argument(
        "query", metavar="RESOURCE#PERMISSION@SUBJECT", help="e.g. doc:1#view@user:a"
    )
    source = check.add_mutually_exclusive_group()
    source.add_argument(
        "--db", default="sqlite:///policyd.db", help="store URL (default: sqlite:///policyd.db)"
    )
    source.add_argument(
        "--file", help="a SpiceDB validation file whose schema and relationships to check against"
    )
    check.add_argument("--context", help="caveat context as a JSON object")
    check.add_argument("--explain", action="store_true", help="print why, as an indented tree")
    check.add_argument(
        "--max-depth", type=int, default=50, help="deepest nesting a check may follow"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
