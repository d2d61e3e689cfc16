"""Package workspace is the folder the playground loads validation files from and saves them to.

Only files under the folder are read or written, whatever path the page
sends, so a page cannot make the playground touch anything else. Saving
replaces one document of a file and leaves the others as they were; a policy
named by ``schemaFile`` is written back to that file. After a save the file is
run exactly as ``policyd validate`` runs it, and the page shows that verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from policyd.errors import InvalidRequestError, PolicydError, PolicyErrors
from policyd.playground.scenario import (
    Scenario,
    has_content,
    join_documents,
    parse_scenario,
    render_scenario,
    split_documents,
)
from policyd.validationfile import load_validation_files, run_validation_file

PATTERNS = ("*.yaml", "*.yml")
SKIPPED = frozenset({"node_modules", "__pycache__", "site-packages"})
"""Folders whose YAML files are never validation files (hidden folders are skipped too)."""


@dataclass(frozen=True, slots=True)
class Document:
    """One scenario of a file, with a title from its opening comment."""

    title: str
    scenario: Scenario


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``policyd validate FILE`` says of a file: ok or not, and its lines."""

    ok: bool
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Saved:
    """A save: the files written (relative to the folder) and the verdict on the result."""

    written: tuple[str, ...]
    verdict: Verdict


def title_of(scenario: Scenario, number: int) -> str:
    """A document's title: its ``# ---- title ----`` comment, else its first comment line."""
    comments = [
        line.strip() for line in scenario.header.splitlines() if line.lstrip().startswith("#")
    ]
    ruled = [c for c in comments if c.startswith("# --")]
    for line in ruled or comments:
        text = line.lstrip("#").strip().strip("-").strip()
        if text:
            return text
    return f"document {number}"


def validate(path: Path) -> Verdict:
    """Run a validation file as ``policyd validate`` does."""
    try:
        files = load_validation_files(path)
    except PolicyErrors as e:
        return Verdict(False, tuple(str(d) for d in e.diagnostics))
    except PolicydError as e:
        return Verdict(False, (str(e),))
    failures = [str(f) for loaded in files for f in run_validation_file(loaded)]
    count = sum(len(f.assertions) + len(f.expected) for f in files)
    if failures:
        return Verdict(False, (*failures, f"{len(failures)} of {count} assertions failed"))
    return Verdict(True, (f"ok: {count} assertions passed",))


class Workspace:
    """Validation files under one folder."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, relative: str) -> Path:
        """The file a page names, which must lie under the folder.

        Raises:
            InvalidRequestError: the path leaves the folder or is not a YAML file.
        """
        target = (self.root / relative).resolve()
        if not target.is_relative_to(self.root) or target.suffix not in (".yaml", ".yml"):
            raise InvalidRequestError(
                f"{relative!r} is not a YAML file under {self.root}", field="path"
            )
        return target

    def files(self) -> list[str]:
        """Every validation file under the folder, as relative paths, sorted."""
        found = {p.relative_to(self.root) for pattern in PATTERNS for p in self.root.rglob(pattern)}
        return sorted(
            str(p)
            for p in found
            if not any(part.startswith(".") or part in SKIPPED for part in p.parts)
        )

    def open(self, relative: str) -> list[Document]:
        """The scenarios of a file, one per YAML document.

        Raises:
            InvalidRequestError: the path is not a file under the folder.
            PolicyErrors: a document is not a YAML mapping.
        """
        path = self.path(relative)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise InvalidRequestError(f"cannot read {relative}: {e.strerror}", field="path") from e
        return self.parse(text, relative)

    def parse(self, text: str, name: str) -> list[Document]:
        """The scenarios of a file's text; ``schemaFile`` is read relative to the folder's file.

        Raises:
            PolicyErrors: a document is not a YAML mapping.
        """
        base = self.path(name).parent if name.endswith((".yaml", ".yml")) else self.root
        documents = [d for d in split_documents(text) if has_content(d)]
        scenarios = [parse_scenario(d, name, base) for d in documents]
        return [Document(title_of(s, i + 1), s) for i, s in enumerate(scenarios)]

    def save(self, relative: str, index: int, scenario: Scenario) -> Saved:
        """Write one scenario as document ``index`` of a file (a new file for index 0).

        The other documents keep their text; a ``schemaFile`` policy that changed
        is written to its file. Then the file is validated.

        Raises:
            InvalidRequestError: the path or index is wrong.
        """
        path = self.path(relative)
        documents = split_documents(path.read_text(encoding="utf-8")) if path.exists() else [""]
        positions = [i for i, d in enumerate(documents) if has_content(d)] or [0]
        if index == len(positions):
            documents.append("")
            positions.append(len(documents) - 1)
        if not 0 <= index < len(positions):
            raise InvalidRequestError(f"{relative} has no document {index + 1}", field="index")
        written = [relative]
        if scenario.schema_file is not None:
            policy_path = (path.parent / scenario.schema_file).resolve()
            if not policy_path.is_relative_to(self.root):
                raise InvalidRequestError(
                    f"schemaFile {scenario.schema_file!r} is outside {self.root}", field="schema"
                )
            old = policy_path.read_text(encoding="utf-8") if policy_path.exists() else None
            if old != scenario.policy:
                policy_path.write_text(scenario.policy, encoding="utf-8")
                written.append(str(policy_path.relative_to(self.root)))
        documents[positions[index]] = render_scenario(scenario).text
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(join_documents(documents), encoding="utf-8")
        return Saved(tuple(written), validate(path))
