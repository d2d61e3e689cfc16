"""Package formats reads and writes relationships and backups: SpiceDB text, NDJSON and YAML.

- **text**: one relationship per line, as SpiceDB writes them
  (``doc:1#viewer@user:ann[caveat:{…}][expiration:…]``); ``//`` and ``#``
  lines are comments. Relationships only.
- **ndjson**: one JSON object per line: ``{"policy": TEXT}`` first (when the
  store has a policy), then one flat object per relationship.
- **yaml**: a SpiceDB validation file, ``schema`` and ``relationships``, which
  ``policyd validate`` and ``zed validate`` read too.

ndjson and yaml hold a whole backup: ``policyd export --format ndjson > b``
then ``policyd import b`` restores the policy and the relationships into an
empty server. Every error reading a file names the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import click
import yaml

from policyd.cli.exits import CommandError
from policyd.cli.options import read_text
from policyd.decisions import FoundSubject
from policyd.errors import InvalidRelationshipError, InvalidRequestError, PolicydError
from policyd.relationship import ObjectRef, Relationship, SubjectRef, parse_relationship
from policyd.timestamps import format_timestamp, parse_timestamp

FORMATS = ("text", "ndjson", "yaml")
T = TypeVar("T")
POLICY_KEY = "policy"


def json_object(text: str | None, what: str) -> dict[str, Any]:
    """Parse a JSON object (None or '' is {}), or InvalidRequestError naming ``what``."""
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise InvalidRequestError(f"{what} is not JSON: {e.msg}", field=what) from e
    if not isinstance(value, dict):
        raise InvalidRequestError(f"the {what} must be a JSON object", field=what)
    return value


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


def relationship_from_record(record: dict[str, Any]) -> Relationship:
    """A relationship from its NDJSON object."""
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


def relationship_from_json(text: str) -> Relationship:
    """Parse one NDJSON line written by ``relationship_to_json``."""
    return relationship_from_record(json_object(text, "relationship"))


def parse_relationship_text(text: str) -> Relationship:
    """A relationship given as SpiceDB text or as an NDJSON object."""
    return relationship_from_json(text) if text.startswith("{") else parse_relationship(text)


def relationship_line(relationship: Relationship, fmt: str) -> str:
    """One relationship in ``text`` or ``ndjson`` form."""
    if fmt == "ndjson":
        return json.dumps(relationship_to_json(relationship), sort_keys=True)
    return str(relationship)


def policy_line(text: str) -> str:
    """The NDJSON record that carries the policy at the head of a backup."""
    return json.dumps({POLICY_KEY: text})


def yaml_backup(policy: str | None, relationships: Sequence[Relationship]) -> str:
    """A SpiceDB validation file holding the policy and the relationships."""

    class _Literal(str):
        __slots__ = ()

    class _Dumper(yaml.SafeDumper):
        pass

    def literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.Node:
        return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="|")

    _Dumper.add_representer(_Literal, literal)
    document: dict[str, str] = {}
    if policy is not None:
        document["schema"] = _Literal(policy if policy.endswith("\n") else policy + "\n")
    document["relationships"] = _Literal("".join(f"{r}\n" for r in relationships))
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000)


# ---- reading -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a relationship was read: file and line."""

    source: str
    line: int

    def __str__(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


@dataclass(slots=True)
class Backup:
    """What a set of files holds: an optional policy and the relationships, each with its origin.

    ``relationships`` is read lazily, so a large file streams; ``origins`` fills
    as it goes, the i-th origin for the i-th relationship.
    """

    policy: str | None
    policy_source: str
    relationships: Iterator[Relationship]
    origins: list[Origin]


def _lines(source: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of the non-blank, non-comment lines of a file ('-' is stdin)."""
    for number, line in enumerate(read_text(source).splitlines(), 1):
        text = line.strip()
        if text and not text.startswith(("//", "#")):
            yield number, text


def _is_yaml(source: str, fmt: str) -> bool:
    return fmt == "yaml" or (fmt == "auto" and source.endswith((".yaml", ".yml")))


def read_backup(sources: Sequence[str], fmt: str = "auto") -> Backup:
    """Read relationship files or backups in ``fmt`` ('auto': per file and line).

    Raises:
        CommandError: a file cannot be read, or a line is malformed (naming file and line).
    """
    origins: list[Origin] = []
    policy: str | None = None
    policy_source = ""
    pending: list[tuple[str, Iterator[tuple[int, str]]]] = []
    loaded_files: list[tuple[str, Sequence[Relationship]]] = []
    for position, source in enumerate(sources):
        if _is_yaml(source, fmt):
            loaded = _read_yaml(source)
            if loaded.policy_text:
                if policy is not None:
                    raise CommandError(
                        f"{source}: a second policy (the first is in {policy_source})"
                    )
                policy, policy_source = loaded.policy_text, source
            loaded_files.append((source, loaded.relationships))
            continue
        lines = _lines(source)
        first = next(lines, None)
        if first is not None and fmt in ("auto", "ndjson") and first[1].startswith("{"):
            record = _record(source, *first)
            if POLICY_KEY in record:
                if position != 0 or policy is not None:
                    raise CommandError(
                        f"{source}:{first[0]}: a policy record must be the first line of the "
                        "first file"
                    )
                policy, policy_source = str(record[POLICY_KEY]), source
                first = None
        pending.append((source, lines if first is None else prepend(first, lines)))

    def relationships() -> Iterator[Relationship]:
        for source, loaded_relationships in loaded_files:  # loaded and checked already
            for relationship in loaded_relationships:
                origins.append(Origin(source, 0))
                yield relationship
        for source, lines in pending:
            for number, text in lines:
                origins.append(Origin(source, number))
                try:
                    if fmt == "text" or (fmt == "auto" and not text.startswith("{")):
                        yield parse_relationship(text)
                    else:
                        record = _record(source, number, text)
                        if POLICY_KEY in record:
                            raise CommandError(
                                f"{source}:{number}: a policy record must be the first line of "
                                "the first file"
                            )
                        yield relationship_from_record(record)
                except PolicydError as e:
                    raise CommandError(f"{source}:{number}: {e.code}: {e.message}") from e

    return Backup(policy, policy_source, relationships(), origins)


def prepend(first: T, rest: Iterator[T]) -> Iterator[T]:
    """``first``, then the rest of an iterator that ``first`` was taken from."""
    yield first
    yield from rest


def _record(source: str, number: int, text: str) -> dict[str, Any]:
    try:
        return json_object(text, "line")
    except PolicydError as e:
        raise CommandError(f"{source}:{number}: {e.message}") from e


def _read_yaml(source: str) -> Any:
    from policyd.validationfile import load_validation_files

    read_text(source)  # a missing or unreadable file is named as for the other formats
    files = load_validation_files(source)
    if len(files) != 1:
        raise CommandError(f"{source}: holds {len(files)} YAML documents; a backup holds one")
    return files[0]


def found_subject_to_json(found: FoundSubject) -> dict[str, Any]:
    """A subject's answer (ListSubjects, WatchPermission) as a JSON record."""
    return {
        "subject": str(found.subject),
        "permissionship": found.permissionship.value,
        "missing_context": list(found.missing),
        "excluded": [
            {"subject": str(e.subject), "missing_context": list(e.missing)} for e in found.excluded
        ],
    }


def found_subject_line(found: FoundSubject) -> str:
    """A subject's answer as text: the subject, what it needs, whom a wildcard leaves out."""
    notes = [f"needs {', '.join(found.missing)}"] if found.missing else []
    if found.excluded:
        notes.append(
            "except "
            + ", ".join(
                f"{e.subject}" + (f" if {', '.join(e.missing)} say so" if e.missing else "")
                for e in found.excluded
            )
        )
    return f"{found.subject}" + (f" ({'; '.join(notes)})" if notes else "")


def echo_json(value: Any) -> None:
    """Print one JSON value on its own line."""
    click.echo(json.dumps(value, sort_keys=True, ensure_ascii=False))
