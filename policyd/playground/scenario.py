"""Package scenario splits a validation file into the playground's panes and puts it back together.

A playground pane holds one part of one YAML document of a validation file
(the file ``policyd validate`` runs): the policy, the relationships, the
assertions and the expected relations, each as the author wrote it. Saving
must not cost the author the comments and order they wrote, so a document is
cut into sections by the lines its top-level keys sit on rather than parsed
and dumped again: the assertions and expected-relations panes hold the YAML
text of their blocks, comments included, and everything around the keys
(a document's opening comments, comments before a key) is kept verbatim and
written back unchanged. A document nobody edited is rendered byte for byte as
it was read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from policyd.errors import Diagnostic, PolicyErrors, SourceSpan

KEYS = ("schema", "schemaFile", "relationships", "assertions", "validation")
"""The top-level keys of a validation document, in the order the playground writes them."""

INDENT = "  "
_SEPARATOR = re.compile(r"^---[ \t]*(?:#.*)?$")


@dataclass(slots=True)
class Scenario:
    """One document of a validation file, as the playground's panes show it.

    ``schema_file`` is set when the document names its policy by ``schemaFile``
    (the policy text is then that file's); ``header``, ``leads`` (per key) and
    ``trailer`` are the comment and blank lines around the keys, kept verbatim.
    """

    policy: str = ""
    relationships: str = ""
    assertions: str = ""
    validation: str = ""
    schema_file: str | None = None
    header: str = ""
    leads: dict[str, str] = field(default_factory=dict)
    trailer: str = ""

    @property
    def pane_keys(self) -> dict[str, str]:
        """The document key each pane is written under."""
        policy_key = "schemaFile" if self.schema_file is not None else "schema"
        return {
            "policy": policy_key,
            "relationships": "relationships",
            "assertions": "assertions",
            "validation": "validation",
        }


@dataclass(frozen=True, slots=True)
class Rendered:
    """A scenario as YAML text, and the 1-based line where each pane's first line sits.

    Every pane line is indented by ``INDENT`` there; a pane written by file
    (``schemaFile``) or left empty has no line.
    """

    text: str
    first_lines: dict[str, int]


def split_documents(text: str) -> list[str]:
    """The documents of a YAML stream, each with its own lines; ``---`` lines separate them."""
    documents: list[str] = []
    current: list[str] = []
    for line in text.splitlines(keepends=True):
        if _SEPARATOR.match(line.rstrip("\r\n")):
            documents.append("".join(current))
            current = []
        else:
            current.append(line)
    documents.append("".join(current))
    return documents


def join_documents(documents: list[str]) -> str:
    """The YAML stream of documents, as ``split_documents`` read it (separator lines ``---``)."""
    out = ""
    for i, document in enumerate(documents):
        if i:
            out += "" if out.endswith("\n") or not out else "\n"
            out += "---\n"
        out += document
    return out


def has_content(document: str) -> bool:
    """Whether a document holds anything but comments and blank lines (YAML skips those)."""
    return any(line.strip() and not line.lstrip().startswith("#") for line in document.splitlines())


def parse_scenario(document: str, name: str, base_dir: Path | None) -> Scenario:
    """Cut one YAML document into panes.

    Args:
        document: the document's text, without ``---`` separators.
        name: the file name diagnostics are reported against.
        base_dir: where ``schemaFile`` is read from; None leaves the policy pane empty.

    Raises:
        PolicyErrors: the document is not YAML, or not a mapping of keys.
    """
    try:
        node = yaml.compose(document)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        span = SourceSpan(name, line, column, line, column)
        raise PolicyErrors([Diagnostic(span, "yaml-invalid", str(e))]) from e
    if not isinstance(node, yaml.MappingNode):
        span = SourceSpan(name, 1, 1, 1, 1)
        raise PolicyErrors([Diagnostic(span, "yaml-invalid", "expected a mapping of keys")])
    lines = document.splitlines(keepends=True)
    entries = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)]
    scenario = Scenario()
    key_lines = [k.start_mark.line for k, _ in entries] + [len(lines)]
    scenario.header = "".join(lines[: key_lines[0]])
    carried = ""
    for i, (key, value) in enumerate(entries):
        region = lines[key_lines[i] + 1 : key_lines[i + 1]]
        text, rest = _section_value(value, region, key_lines[i])
        if key.value in KEYS:
            if carried:
                scenario.leads[key.value] = carried
            _set_pane(scenario, key.value, text, value, base_dir)
        carried = "".join(rest)
    scenario.trailer = carried
    return scenario


def _section_value(value: yaml.Node, region: list[str], key_line: int) -> tuple[str, list[str]]:
    """A key's value as pane text, and the lines after it that belong to what follows."""
    if isinstance(value, yaml.ScalarNode):
        end = value.end_mark.line - key_line - 1  # the lines the scalar's content took
        if value.end_mark.column > 0:
            end += 1
        return str(value.value), region[max(end, 0) :]
    # A block: its lines are those indented under the key; trailing comments at the
    # margin and blank lines belong to the next key.
    last = len(region)
    while last and (not region[last - 1].strip() or not region[last - 1][:1].isspace()):
        last -= 1
    body = region[:last]
    indent = min((len(line) - len(line.lstrip(" ")) for line in body if line.strip()), default=0)
    return "".join(_strip_indent(line, indent) for line in body).rstrip("\n"), region[last:]


def _strip_indent(line: str, indent: int) -> str:
    spaces = len(line) - len(line.lstrip(" "))
    return line[min(spaces, indent) :]


def _set_pane(
    scenario: Scenario, key: str, text: str, value: yaml.Node, base_dir: Path | None
) -> None:
    if key == "schemaFile":
        scenario.schema_file = text
        if base_dir is not None:
            try:
                scenario.policy = (base_dir / text).read_text(encoding="utf-8")
            except OSError:
                scenario.policy = ""
    elif key == "schema":
        scenario.policy = text
    else:
        setattr(scenario, key, text)


def render_scenario(scenario: Scenario, *, inline_policy: bool = False) -> Rendered:
    """The scenario as one YAML document, with where each pane's lines went.

    ``inline_policy`` writes the policy text under ``schema`` even when the
    document named a ``schemaFile``, so the document stands on its own.
    """
    out: list[str] = [scenario.header]
    first_lines: dict[str, int] = {}
    keys = scenario.pane_keys
    if inline_policy:
        keys["policy"] = "schema"
    for pane, key in keys.items():
        lead = scenario.leads.get(key, "")
        if pane == "policy" and key == "schemaFile":
            out.append(f"{lead}schemaFile: {scenario.schema_file}\n")
            continue
        value: str = getattr(scenario, pane)
        if not value.strip() and pane != "policy":
            continue
        out.append(lead)
        line = "".join(out).count("\n") + 2  # the key's line, then the pane's first line
        first_lines[pane] = line
        if pane in ("policy", "relationships"):
            out.append(f"{key}: {_block_indicator(value)}\n{_indented(value)}")
        else:
            out.append(f"{key}:\n{_indented(value)}")
    out.append(scenario.trailer)
    return Rendered("".join(out), first_lines)


def _block_indicator(text: str) -> str:
    """``|-``, with an explicit indentation when the first line starts with a space."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    return f"|{len(INDENT)}-" if first[:1].isspace() else "|-"


def _indented(text: str) -> str:
    lines = text.rstrip("\n").split("\n")
    return "".join(f"{INDENT}{line}\n" if line.strip() else "\n" for line in lines)
