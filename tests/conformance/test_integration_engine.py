"""SpiceDB's integration corpus through the engine: assertions hold, and lookups agree with Check.

For every file, every resource and subject that appears in it, and every
relation and permission of the resource's type: ListObjects returns the
resource exactly when Check grants (or conditionally grants) it, with the same
conditional mark, and ListSubjects returns the subject (directly, or through
a wildcard that does not exclude it) exactly then too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from policyd.consistency import Consistency
from policyd.decisions import Permissionship
from policyd.engine import Engine
from policyd.relationship import WILDCARD, ObjectRef, SubjectRef
from policyd.validationfile import (
    ValidationFile,
    load_engine,
    load_validation_files,
    run_validation_file,
)
from tests.corpus import integration_cases, requires_corpus

pytestmark = requires_corpus

CASES = integration_cases()
FRESH = Consistency.fully_consistent()


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_assertions_hold(path: Path) -> None:
    for loaded in load_validation_files(path):
        failures = run_validation_file(loaded)
        assert not failures, "\n".join(f"{f}\n{f.explanation}" for f in failures)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_assertions_hold_reading_the_store(path: Path) -> None:
    for loaded in load_validation_files(path):
        failures = run_validation_file(loaded, index=False)
        assert not failures, "\n".join(f"{f}\n{f.explanation}" for f in failures)


def objects_and_subjects(loaded: ValidationFile) -> tuple[set[ObjectRef], set[SubjectRef]]:
    """Every object that appears as a resource or subject, and every subject, in a file."""
    objects: set[ObjectRef] = set()
    subjects: set[SubjectRef] = set()
    for rel in loaded.relationships:
        objects.add(rel.resource)
        if rel.subject.id != WILDCARD:
            objects.add(rel.subject.object)
            subjects.add(rel.subject)
            subjects.add(SubjectRef(rel.subject.type, rel.subject.id))
    for assertion in loaded.assertions:
        objects.add(assertion.resource)
        if assertion.subject.id != WILDCARD:
            subjects.add(assertion.subject)
    return objects, subjects


def agreement_problems(engine: Engine, loaded: ValidationFile) -> list[str]:
    schema = engine.schema(FRESH)
    objects, subjects = objects_and_subjects(loaded)
    problems: list[str] = []
    for type_name in sorted({o.type for o in objects}):
        definition = schema.definition(type_name)
        if definition is None:
            continue
        ids = sorted(o.id for o in objects if o.type == type_name)
        for member in [*definition.relations, *definition.permissions]:
            for subject in sorted(subjects, key=str):
                listed = {
                    found.resource_id: found.conditional
                    for found in engine.list_objects(
                        type_name, member, subject, consistency=FRESH
                    ).objects
                }
                for resource_id in ids:
                    resource = ObjectRef(type_name, resource_id)
                    result = engine.check(resource, member, subject, consistency=FRESH)
                    granted = result.permissionship is not Permissionship.NO_PERMISSION
                    conditional = result.permissionship is Permissionship.CONDITIONAL
                    where = f"{resource}#{member}@{subject}: check {result.permissionship.value}"
                    if granted != (resource_id in listed):
                        problems.append(
                            f"{where}, ListObjects {'has' if resource_id in listed else 'lacks'} it"
                        )
                    elif granted and listed[resource_id] != conditional:
                        problems.append(f"{where}, ListObjects conditional={listed[resource_id]}")
                    in_subjects = (
                        engine.list_subjects(
                            resource, member, subject.type, subject.relation, consistency=FRESH
                        ).answer_for(subject)[0]
                        is not Permissionship.NO_PERMISSION
                    )
                    if granted != in_subjects:
                        problems.append(
                            f"{where}, ListSubjects {'has' if in_subjects else 'lacks'} it"
                        )
    return problems


@pytest.mark.parametrize("index", [True, False], ids=["index", "store-reads"])
@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_lookups_agree_with_check(path: Path, index: bool) -> None:
    for loaded in load_validation_files(path):
        engine = load_engine(loaded, index=index)
        problems = agreement_problems(engine, loaded)
        assert not problems, "\n".join(problems[:20])
