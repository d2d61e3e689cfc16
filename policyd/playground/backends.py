"""Package backends holds where the playground's checks are answered: the panes, or a server.

``MemoryBackend`` builds an in-memory engine from the policy and relationship
panes (kept while the two are unchanged, so checks while editing assertions
cost one check each). ``ServerBackend`` asks a running policyd server through
the gRPC client and never writes to it: the playground only reads there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from policyd.consistency import Consistency
from policyd.decisions import CheckResult
from policyd.dsl.compiler import compile_policy
from policyd.engine import Engine
from policyd.errors import InvalidRelationshipError
from policyd.filters import RelationshipFilter
from policyd.relationship import ObjectRef, Relationship, SubjectRef, parse_relationship
from policyd.schema.ir import Schema
from policyd.store.memory import MemoryStore
from policyd.store.validation import Validator

if TYPE_CHECKING:
    from policyd.client import PolicydClient
    from policyd.playground.scenario import Scenario

MAX_GRAPH_RELATIONSHIPS = 300
"""The most relationships a relationship graph draws; past a few hundred it is unreadable."""

SERVER_SAMPLE = 500
"""How many of a server's relationships the read-only relationships pane shows."""


class Backend(Protocol):
    """Answers checks and finds relationships for the playground."""

    @property
    def read_only(self) -> bool:
        """True when the policy and relationships come from elsewhere and are not edited."""
        ...

    def check(
        self,
        scenario: Scenario,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        context: dict[str, Any],
    ) -> CheckResult:
        """Check with an explanation, over the scenario's data or the server's."""
        ...

    def around(self, scenario: Scenario, start: ObjectRef, depth: int) -> list[Relationship]:
        """Relationships within ``depth`` steps of ``start``, either way along them."""
        ...


def parse_relationship_lines(
    text: str, schema: Schema | None
) -> tuple[list[Relationship], list[tuple[int, int, InvalidRelationshipError]]]:
    """The relationships of the relationships pane, and each bad line's (line, column, error).

    Blank lines and ``//`` comments are skipped, as in a validation file; with a
    schema, each relationship must be one the policy allows.
    """
    validator = Validator(schema) if schema is not None else None
    found: list[Relationship] = []
    problems: list[tuple[int, int, InvalidRelationshipError]] = []
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        try:
            relationship = parse_relationship(line)
            if validator is not None:
                validator.check(relationship, "relationship")
        except InvalidRelationshipError as e:
            problems.append((number, len(raw) - len(raw.lstrip()) + 1, e))
            continue
        found.append(relationship)
    return found, problems


def _touching(relationship: Relationship, objects: set[ObjectRef]) -> bool:
    return relationship.resource in objects or relationship.subject.object in objects


def _neighbours(relationships: Iterable[Relationship]) -> set[ObjectRef]:
    out: set[ObjectRef] = set()
    for r in relationships:
        out.add(r.resource)
        out.add(r.subject.object)
    return out


@dataclass(slots=True)
class _Built:
    key: tuple[str, str]
    engine: Engine
    relationships: list[Relationship]


class MemoryBackend:
    """An engine over the scenario's own policy and relationships, rebuilt when they change."""

    read_only = False

    def __init__(self, max_depth: int = 50) -> None:
        self.max_depth = max_depth
        self._built: _Built | None = None

    def _build(self, scenario: Scenario) -> _Built:
        key = (scenario.policy, scenario.relationships)
        if self._built is None or self._built.key != key:
            compiled = compile_policy(scenario.policy, "policy")
            relationships, _ = parse_relationship_lines(scenario.relationships, compiled.schema)
            engine = Engine(MemoryStore(), max_depth=self.max_depth)
            engine.write_policy(scenario.policy, "policy")
            if relationships:
                engine.import_relationships(relationships)
            self._built = _Built(key, engine, relationships)
        return self._built

    def check(
        self,
        scenario: Scenario,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        context: dict[str, Any],
    ) -> CheckResult:
        """Check over the panes (bad relationship lines left out), with an explanation."""
        return self._build(scenario).engine.check(
            resource,
            permission,
            subject,
            context=context,
            consistency=Consistency.fully_consistent(),
            explain=True,
        )

    def around(self, scenario: Scenario, start: ObjectRef, depth: int) -> list[Relationship]:
        """The pane's relationships within ``depth`` steps of ``start``."""
        relationships, _ = parse_relationship_lines(scenario.relationships, None)
        reached = {start}
        found: list[Relationship] = []
        for _ in range(depth):
            step = [r for r in relationships if _touching(r, reached) and r not in found]
            found += step
            reached |= _neighbours(step)
        return found[:MAX_GRAPH_RELATIONSHIPS]


class ServerBackend:
    """A running policyd server, read through the gRPC client; nothing is written to it."""

    read_only = True

    def __init__(self, client: PolicydClient) -> None:
        self.client = client

    def policy(self) -> str:
        """The policy in force on the server."""
        text, _token = self.client.read_policy(consistency=Consistency.fully_consistent())
        return text

    def sample(self) -> str:
        """The first relationships the server exports, one per line, for the read-only pane."""
        lines: list[str] = []
        for relationship in self.client.export_relationships():
            lines.append(str(relationship))
            if len(lines) >= SERVER_SAMPLE:
                lines.append(f"// … the first {SERVER_SAMPLE} only")
                break
        return "\n".join(lines)

    def check(
        self,
        scenario: Scenario,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        context: dict[str, Any],
    ) -> CheckResult:
        """Check on the server, fully consistent, with an explanation."""
        return self.client.check(
            resource,
            permission,
            subject,
            context=context,
            consistency=Consistency.fully_consistent(),
            explain=True,
        )

    def around(self, scenario: Scenario, start: ObjectRef, depth: int) -> list[Relationship]:
        """The server's relationships within ``depth`` steps of ``start``."""
        found: dict[str, Relationship] = {}
        frontier = {start}
        seen: set[ObjectRef] = set()
        for _ in range(depth):
            step: list[Relationship] = []
            for obj in frontier - seen:
                for f in (
                    RelationshipFilter(resource_type=obj.type, resource_id=obj.id),
                    RelationshipFilter(subject_type=obj.type, subject_id=obj.id),
                ):
                    step += self._read(f)
            seen |= frontier
            for r in step:
                found.setdefault(str(r), r)
            frontier = _neighbours(step)
            if len(found) >= MAX_GRAPH_RELATIONSHIPS:
                break
        return list(found.values())[:MAX_GRAPH_RELATIONSHIPS]

    def _read(self, relationship_filter: RelationshipFilter) -> Iterator[Relationship]:
        for result in self.client.read(
            relationship_filter,
            consistency=Consistency.fully_consistent(),
            limit=MAX_GRAPH_RELATIONSHIPS,
        ):
            yield result.relationship
