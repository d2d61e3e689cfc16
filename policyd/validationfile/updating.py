"""Writing a validation file's expected relations from the current answers (``validate --update``).

As ``zed validate --update`` does: each ``resource#permission`` key of the
``validation`` block gets the subjects that hold it now, each with the paths
it is found through. A key keeps the kinds of subject it listed (accounts
only, say); a key with none lists the plain subjects of every type.
"""

from __future__ import annotations

import json

from policyd.consistency import Consistency
from policyd.engine import Engine
from policyd.validationfile.loading import ExpectedRelations, ValidationFile
from policyd.validationfile.membership import Membership
from policyd.validationfile.running import load_engine


def _block_lines(engine: Engine, block: ExpectedRelations, consistency: Consistency) -> list[str]:
    found = Membership(engine, consistency).userset(block.resource, block.permission)
    kinds = sorted({(s.subject.type, s.subject.relation) for s in block.subjects}, key=str)
    if not kinds:
        kinds = sorted({(s.type, None) for s in found if s.relation is None}, key=str)
    lines = []
    for subject_type, subject_relation in kinds:
        listed = engine.list_subjects(
            block.resource, block.permission, subject_type, subject_relation,
            consistency=consistency,
        )  # fmt: skip
        for subject in listed.subjects:
            at = found.get(subject.subject)
            paths = "/".join(f"<{p}>" for p in sorted(at.paths)) if at is not None else ""
            lines.append(f"[{subject}] is {paths}" if paths else f"[{subject}]")
    return lines


def expected_relations_text(file: ValidationFile, max_depth: int = 50) -> str | None:
    """The ``validation`` block (its YAML, unindented) from the current answers; None if absent."""
    if not file.expected:
        return None
    engine = load_engine(file, max_depth)
    consistency = Consistency.fully_consistent()
    out: list[str] = []
    for block in file.expected:
        out.append(f"{json.dumps(f'{block.resource}#{block.permission}')}:")
        lines = _block_lines(engine, block, consistency)
        out += [f"  - {json.dumps(line, ensure_ascii=False)}" for line in lines] or ["  []"]
    return "\n".join(out)
