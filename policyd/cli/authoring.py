"""Package authoring holds the commands on local files: fmt, lint, validate, convert."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import click

from policyd.cli.exits import EXIT_NO, EXIT_OK, print_diagnostic, print_policyd_error
from policyd.cli.options import read_text
from policyd.errors import PolicydError

FILES = click.argument("files", nargs=-1, required=True, metavar="FILE...")


@click.command()
@FILES
@click.option("--check", is_flag=True, help="exit 1 if any file is not in canonical form")
@click.option("-w", "--write", is_flag=True, help="rewrite the files in place")
def fmt(files: tuple[str, ...], check: bool, write: bool) -> int:
    """Print .policy files in canonical form (or --check them, or -w rewrite them).

    Example: policyd fmt --check policies/*.policy
    """
    from policyd.dsl.formatter import format_text

    if check and write:
        raise click.UsageError("--check and --write exclude each other")
    status = EXIT_OK
    for path in files:
        text = read_text(path, "policy")
        try:
            formatted = format_text(text, path)
        except PolicydError as e:
            print_policyd_error(e)
            status = EXIT_NO
            continue
        if check:
            if formatted != text:
                click.echo(f"{path}: not formatted", err=True)
                status = EXIT_NO
        elif write:
            if formatted != text:
                Path(path).write_text(formatted, encoding="utf-8")
        else:
            sys.stdout.write(formatted)
    return status


@click.command()
@FILES
@click.option("--warnings-as-errors", is_flag=True, help="exit 1 on warnings too")
def lint(files: tuple[str, ...], warnings_as_errors: bool) -> int:
    """Type-check .policy files: each error and warning as file:line:col: code: message.

    Example: policyd lint --warnings-as-errors policies/*.policy
    """
    from policyd.dsl.compiler import compile_policy, resolve_relative_import

    status = EXIT_OK
    for path in files:
        text = read_text(path, "policy")
        try:
            compiled = compile_policy(text, path, resolve_import=resolve_relative_import)
        except PolicydError as e:
            print_policyd_error(e)
            status = EXIT_NO
            continue
        for warning in compiled.warnings:
            print_diagnostic(warning)
        if warnings_as_errors and compiled.warnings:
            status = EXIT_NO
        if not compiled.warnings:
            click.echo(f"{path}: ok")
    return status


@click.command()
@FILES
@click.option("--max-depth", type=click.IntRange(min=1), default=50, help="deepest nesting")
@click.option(
    "--update",
    is_flag=True,
    help="rewrite each file's `validation:` block (expected relations) from the current "
    "answers, as `zed validate --update` does; assertions still run",
)
def validate(files: tuple[str, ...], max_depth: int, update: bool) -> int:
    """Run SpiceDB validation files: schema, relationships, assertions, expected relations.

    Example: policyd validate policies/*.test.yaml
    """
    from policyd.validationfile import load_validation_files, run_validation_file

    status = EXIT_OK
    for path in files:
        read_text(path, "validation")
        if update:
            try:
                changed = _update_expected_relations(path, max_depth)
            except PolicydError as e:
                print_policyd_error(e)
                status = EXIT_NO
                continue
            if changed:
                click.echo(f"{path}: updated the validation block")
        try:
            loaded_files = load_validation_files(path)
        except PolicydError as e:
            print_policyd_error(e)
            status = EXIT_NO
            continue
        failed = 0
        assertions = 0
        for loaded in loaded_files:
            for warning in loaded.policy.warnings:
                print_diagnostic(warning)
            assertions += len(loaded.assertions) + len(loaded.expected)
            for failure in run_validation_file(loaded, max_depth):
                failed += 1
                click.echo(f"{failure}", err=True)
                if failure.explanation:
                    click.echo(textwrap.indent(failure.explanation, "    "), err=True)
        if failed:
            status = EXIT_NO
            click.echo(f"{path}: {failed} of {assertions} assertions failed", err=True)
        else:
            click.echo(f"{path}: ok: {assertions} assertions passed")
    return status


def _update_expected_relations(path: str, max_depth: int) -> bool:
    """Rewrite each document's ``validation`` block from the current answers; whether it changed.

    Every other key, comment and document keeps its text (the playground's
    document splicing).
    """
    from policyd.playground.scenario import (
        has_content,
        join_documents,
        parse_scenario,
        render_scenario,
        split_documents,
    )
    from policyd.validationfile import load_validation_files
    from policyd.validationfile.updating import expected_relations_text

    loaded = load_validation_files(path)
    text = read_text(path, "validation")
    documents = split_documents(text)
    positions = [i for i, d in enumerate(documents) if has_content(d)]
    for position, file in zip(positions, loaded, strict=True):
        block = expected_relations_text(file, max_depth)
        if block is None:
            continue
        scenario = parse_scenario(documents[position], path, None)
        scenario.validation = block
        documents[position] = render_scenario(scenario).text
    updated = join_documents(documents)
    if updated == text:
        return False
    Path(path).write_text(updated, encoding="utf-8")
    return True


@click.command()
@click.argument("file", metavar="FILE")
@click.option("-o", "--output", metavar="OUT", help="write here instead of stdout")
def convert(file: str, output: str | None) -> int:
    """Convert an OpenFGA model or store file to a policy or validation files.

    FILE is a model (.fga, DSL schema 1.1, or its .json form), printed as a
    policy, or a store file (.fga.yaml), printed as validation files.

    Example: policyd convert model.fga > model.policy
    """
    from policyd.openfga import convert_model_file, convert_store_file

    path = Path(file)
    read_text(file, "model")
    store_file = path.suffix in (".yaml", ".yml")
    try:
        text = convert_store_file(path) if store_file else convert_model_file(path)
    except PolicydError as e:
        print_policyd_error(e)
        return EXIT_NO
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK
