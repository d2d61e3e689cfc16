"""Package ingest.mappings turns atproto records into relationships, as a YAML file declares.

A mapping file names, per record collection (an NSID), the relationships one
record of it stands for, written in policyd's relationship text with
placeholders::

    mappings:
      - collection: app.bsky.graph.follow
        relationships:
          - "account:{record.subject}#follower@account:{repo}"

Placeholders: ``{repo}`` (the DID of the repo holding the record), ``{uri}``
(the record's AT-URI), ``{collection}``, ``{rkey}``, and ``{record.PATH}``, a
dotted path into the record (``{record.subject.uri}`` for a strong ref). A
record whose placeholder is missing, not a string, or not a valid object id
maps to nothing for that relationship. ``load_mapping`` checks the file's
shape and ``Mapping.validate`` every relationship's types and relation
against the policy, naming the file, the entry and the template.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from policyd.errors import InvalidRelationshipError, PolicydError
from policyd.relationship import ObjectRef, Relationship, SubjectRef
from policyd.schema.ir import Schema
from policyd.store.validation import Validator, shape_of, shape_problem

DEFAULT_MAPPING = "bluesky.yaml"
"""The mapping shipped with policyd: the Bluesky follow, block and list graph."""

_NSID = re.compile(r"\A[a-zA-Z][a-zA-Z0-9-]*(\.[a-zA-Z0-9-]+)+\Z")
_TEMPLATE = re.compile(
    r"\A(?P<rt>[^:#@{}]+):(?P<rid>[^#@]+)#(?P<rel>[^@]+)@(?P<st>[^:#@{}]+):(?P<sid>[^#@]+)"
    r"(?:#(?P<srel>[^#@]+))?\Z"
)
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAMES = ("repo", "uri", "collection", "rkey")
_EXAMPLE = {"repo": "did:plc:example", "uri": "at://did:plc:example/a.b.c/x", "rkey": "x"}


class MappingError(PolicydError, ValueError):
    """A mapping file that is malformed or does not fit the policy."""

    code = "invalid-mapping"


Part = str | tuple[str, ...]
"""A literal piece of an id, or a placeholder: ('repo',), ('record', 'subject', 'uri'), …"""


@dataclass(frozen=True, slots=True)
class Template:
    """One relationship a record stands for, with placeholders in its two ids."""

    text: str
    resource_type: str
    resource_id: tuple[Part, ...]
    relation: str
    subject_type: str
    subject_id: tuple[Part, ...]
    subject_relation: str | None

    def example(self) -> dict[str, Any]:
        """A record holding a valid id at every path the template reads."""
        record: dict[str, Any] = {}
        for part in (*self.resource_id, *self.subject_id):
            if isinstance(part, tuple) and part[0] == "record":
                node = record
                for name in part[1:-1]:
                    node = node.setdefault(name, {})
                node[part[-1]] = _EXAMPLE["repo"]
        return record

    def render(self, values: dict[str, str], record: dict[str, Any]) -> Relationship | None:
        """The relationship for one record, or ``None`` if a placeholder has no string value."""
        resource_id = _render(self.resource_id, values, record)
        subject_id = _render(self.subject_id, values, record)
        if resource_id is None or subject_id is None:
            return None
        return Relationship(
            ObjectRef(self.resource_type, resource_id),
            self.relation,
            SubjectRef(self.subject_type, subject_id, self.subject_relation),
        )


def _render(parts: tuple[Part, ...], values: dict[str, str], record: dict[str, Any]) -> str | None:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        if part[0] != "record":
            out.append(values[part[0]])
            continue
        value: Any = record
        for name in part[1:]:
            value = value.get(name) if isinstance(value, dict) else None
        if not isinstance(value, str) or not value:
            return None
        out.append(value)
    return "".join(out)


def _parts(text: str, where: str) -> tuple[Part, ...]:
    parts: list[Part] = []
    last = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.start() > last:
            parts.append(text[last : match.start()])
        path = tuple(match.group(1).split("."))
        if not (path[0] in _NAMES and len(path) == 1) and not (
            path[0] == "record" and len(path) > 1 and all(path[1:])
        ):
            raise MappingError(
                f"{where}: unknown placeholder {match.group(0)}: expected "
                "{repo}, {uri}, {collection}, {rkey} or {record.FIELD[.FIELD…]}"
            )
        parts.append(path)
        last = match.end()
    if last < len(text):
        parts.append(text[last:])
    if any(isinstance(p, str) and ("{" in p or "}" in p) for p in parts):
        raise MappingError(f"{where}: unbalanced braces in {text!r}")
    return tuple(parts)


def parse_template(text: str, where: str) -> Template:
    """Read ``TYPE:ID#RELATION@TYPE:ID[#RELATION]`` with placeholders in the ids."""
    match = _TEMPLATE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise MappingError(
            f"{where}: expected resource_type:ID#relation@subject_type:ID[#relation], got {text!r}"
        )
    return Template(
        text.strip(),
        match["rt"],
        _parts(match["rid"], where),
        match["rel"],
        match["st"],
        _parts(match["sid"], where),
        match["srel"],
    )


@dataclass(frozen=True, slots=True)
class Mapping:
    """Every collection's templates, loaded from one file (``source`` names it in errors)."""

    source: str
    templates: dict[str, tuple[Template, ...]]

    @property
    def collections(self) -> frozenset[str]:
        """The record collections this mapping reads; every other record is skipped unread."""
        return frozenset(self.templates)

    def relationships(
        self, repo: str, collection: str, rkey: str, record: dict[str, Any], validator: Validator
    ) -> tuple[tuple[Relationship, ...], int]:
        """What one record stands for, and how many of its templates yielded nothing valid."""
        values = {
            "repo": repo,
            "collection": collection,
            "rkey": rkey,
            "uri": f"at://{repo}/{collection}/{rkey}",
        }
        found: dict[tuple[str, ...], Relationship] = {}
        skipped = 0
        for template in self.templates.get(collection, ()):
            rel = template.render(values, record)
            if rel is None:
                skipped += 1
                continue
            try:
                validator.check(rel, "record")
            except InvalidRelationshipError:
                skipped += 1
                continue
            found[rel.key] = rel
        return tuple(found.values()), skipped

    def validate(self, schema: Schema | None) -> None:
        """Check every template against the policy: types, relation, allowed subject.

        Raises:
            MappingError: naming the file, the entry and the template, for each problem.
        """
        if schema is None:
            raise MappingError(f"{self.source}: the store has no policy yet; write one first")
        problems = []
        for collection, index, template in self._entries():
            rel = template.render({**_EXAMPLE, "collection": collection}, template.example())
            assert rel is not None, "an example record fills every placeholder"
            problem: str | None = None
            try:
                rel.validate()
            except InvalidRelationshipError as e:
                problem = e.message
            found = shape_problem(schema, shape_of(rel))
            problem = problem or (found[1] if found else None)
            if problem:
                problems.append(
                    f"{self.source}: mappings[{index}] ({collection}): {template.text}: {problem}"
                )
        if problems:
            raise MappingError("\n".join(problems))

    def _entries(self) -> Iterator[tuple[str, int, Template]]:
        for index, (collection, templates) in enumerate(self.templates.items()):
            for template in templates:
                yield collection, index, template


def load_mapping(path: str | Path | None = None) -> Mapping:
    """Load a mapping file, or the default Bluesky graph mapping when ``path`` is None.

    Raises:
        MappingError: unreadable, not YAML, or not the documented shape (naming where).
    """
    if path is None:
        source = f"<default {DEFAULT_MAPPING}>"
        text = resources.files("policyd.ingest").joinpath(DEFAULT_MAPPING).read_text()
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise MappingError(f"{source}: cannot read: {e.strerror}") from e
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise MappingError(f"{source}: not YAML: {e}") from e
    return parse_mapping(document, source)


def parse_mapping(document: Any, source: str) -> Mapping:
    """A Mapping from a parsed YAML document (see the module docstring for the shape)."""
    if not isinstance(document, dict) or set(document) != {"mappings"}:
        raise MappingError(f"{source}: expected a map with one key, 'mappings'")
    entries = document["mappings"]
    if not isinstance(entries, list) or not entries:
        raise MappingError(f"{source}: 'mappings' must be a non-empty list")
    templates: dict[str, tuple[Template, ...]] = {}
    for index, entry in enumerate(entries):
        where = f"{source}: mappings[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"collection", "relationships"}:
            raise MappingError(f"{where}: expected keys 'collection' and 'relationships'")
        collection, texts = entry["collection"], entry["relationships"]
        if not isinstance(collection, str) or not _NSID.fullmatch(collection):
            raise MappingError(f"{where}: collection must be an NSID, got {collection!r}")
        if collection in templates:
            raise MappingError(f"{where}: {collection} is mapped twice; list both relationships")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise MappingError(f"{where}: relationships must be a non-empty list of strings")
        templates[collection] = tuple(parse_template(t, f"{where} ({collection})") for t in texts)
    return Mapping(source, templates)


def mapped_collections(mapping: Mapping) -> Sequence[str]:
    """The collections in file order (for Jetstream's ``wantedCollections``)."""
    return list(mapping.templates)
