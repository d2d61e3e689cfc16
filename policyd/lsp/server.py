"""Package server is ``policyd lsp``: the Language Server Protocol over stdio, with pygls.

Diagnostics come from the real compiler and type checker (the same codes and
messages as ``policyd lint``), formatting from ``policyd fmt``'s formatter,
and hover, go to definition, references, rename and completion from the
symbol index (symbols.py). Each open document is analysed once per change;
a document that does not parse keeps its last index, so hover and navigation
keep working while the author types.
"""

from __future__ import annotations

from dataclasses import dataclass

from lsprotocol import types
from pygls import uris
from pygls.lsp.server import LanguageServer

from policyd.dsl.compiler import compile_policy, resolve_relative_import
from policyd.dsl.formatter import format_text
from policyd.dsl.parser import parse_policy
from policyd.errors import Diagnostic, PolicydError, PolicyErrors, PolicySyntaxError, Severity
from policyd.lsp.symbols import Key, Occurrence, Range, SymbolIndex, index

NAME = "policyd"
VERSION = "0.1.0"
KEYWORDS = ("definition", "relation", "permission", "caveat", "use", "import", "partial", "nil")


@dataclass(slots=True)
class Analysis:
    """What the server knows of one document: its diagnostics and its last good index."""

    diagnostics: list[types.Diagnostic]
    symbols: SymbolIndex


def _lsp_range(r: Range) -> types.Range:
    return types.Range(types.Position(r.line, r.start), types.Position(r.line, r.end))


def _diagnostic(d: Diagnostic, lines: list[str]) -> types.Diagnostic:
    """An LSP diagnostic; a point span is widened to the word it points at."""
    line, start = d.span.line - 1, d.span.column - 1
    end_line, end = d.span.end_line - 1, d.span.end_column - 1
    if (end_line, end) <= (line, start):
        text = lines[line] if 0 <= line < len(lines) else ""
        end_line, end = line, start
        while end < len(text) and (text[end].isalnum() or text[end] == "_"):
            end += 1
        end = max(end, start + 1)
    severity = (
        types.DiagnosticSeverity.Error
        if d.severity is Severity.ERROR
        else types.DiagnosticSeverity.Warning
    )
    return types.Diagnostic(
        range=types.Range(types.Position(line, start), types.Position(end_line, end)),
        message=d.message,
        severity=severity,
        code=d.code,
        source=NAME,
    )


def analyse(text: str, uri: str, previous: SymbolIndex | None) -> Analysis:
    """Compile a document for diagnostics and index its symbols.

    A document saved as a file resolves its imports relative to that file, as
    ``policyd lint`` does; diagnostics located in an imported file are left to
    that file's own document.
    """
    lines = text.split("\n")
    path = uris.to_fs_path(uri)
    name = path or uri
    resolver = resolve_relative_import if path is not None else None
    found: list[Diagnostic]
    try:
        found = list(compile_policy(text, name, resolve_import=resolver).warnings)
    except PolicySyntaxError as e:
        assert e.span is not None
        found = [Diagnostic(e.span, e.code, e.message)]
    except PolicyErrors as e:
        found = list(e.diagnostics)
    try:
        symbols = index(parse_policy(text, name), text)
    except PolicydError:
        symbols = previous or SymbolIndex()
    mine = [d for d in found if d.span.file in (name, "<policy>")]  # "<policy>": no span known
    return Analysis([_diagnostic(d, lines) for d in mine], symbols)


def hover_text(symbols: SymbolIndex, key: Key) -> str | None:
    """Markdown for a symbol: its declaration as written, its doc, and a definition's members."""
    declaration = symbols.declarations.get(key)
    if declaration is None:
        return None
    parts = [f"```policy\n{declaration.text}\n```"]
    if declaration.doc:
        parts.append(declaration.doc)
    if key[0] == "type":
        members = symbols.members.get(key[1], [])
        if members:
            parts.append("members: " + ", ".join(f"`{m}`" for m in members))
    return "\n\n".join(parts)


def completions(symbols: SymbolIndex, line_text: str, line: int) -> list[types.CompletionItem]:
    """Names that fit where the cursor is, judged from the text before it on its line."""
    before = line_text.rstrip()
    item = types.CompletionItem
    kind = types.CompletionItemKind
    if before.endswith("->") or before.endswith(".any(") or before.endswith(".all("):
        head = before.rsplit("->", 1)[0] if before.endswith("->") else before.rsplit(".", 1)[0]
        relation = head.split()[-1].lstrip("(") if head.split() else ""
        owner = symbols.definition_at(line)
        targets = symbols.relation_types.get((owner or "", relation), [])
        names = sorted({m for t in targets for m in symbols.members.get(t, [])})
        return [item(label=n, kind=kind.Field) for n in names]
    if before.endswith("#"):
        type_name = before[:-1].split()[-1].lstrip(":|") if before[:-1].split() else ""
        return [item(label=m, kind=kind.Field) for m in symbols.members.get(type_name, [])]
    if before.endswith(" with") or before.endswith(" and"):
        caveats = sorted(k[1] for k in symbols.declarations if k[0] == "caveat")
        return [item(label=c, kind=kind.Function) for c in caveats]
    stripped = before.lstrip()
    if stripped.startswith("relation ") and ":" in stripped:
        types_ = sorted(k[1] for k in symbols.declarations if k[0] == "type")
        return [item(label=t, kind=kind.Class) for t in types_]
    if stripped.startswith("permission ") and "=" in stripped:
        owner = symbols.definition_at(line)
        return [item(label=m, kind=kind.Field) for m in symbols.members.get(owner or "", [])]
    return [item(label=k, kind=kind.Keyword) for k in KEYWORDS]


def _location(uri: str, occurrence: Occurrence) -> types.Location:
    return types.Location(uri=uri, range=_lsp_range(occurrence.range))


def build_server() -> LanguageServer:
    """The language server with every feature registered."""
    server = LanguageServer(NAME, VERSION)
    analyses: dict[str, Analysis] = {}

    def refresh(uri: str) -> None:
        document = server.workspace.get_text_document(uri)
        previous = analyses.get(uri)
        analysis = analyse(document.source, uri, previous.symbols if previous else None)
        analyses[uri] = analysis
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(
                uri=uri, version=document.version, diagnostics=analysis.diagnostics
            )
        )

    def occurrence_at(uri: str, position: types.Position) -> Occurrence | None:
        analysis = analyses.get(uri)
        if analysis is None:
            return None
        return analysis.symbols.at(position.line, position.character)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        refresh(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        refresh(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        analyses.pop(params.text_document.uri, None)
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[])
        )

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(params: types.HoverParams) -> types.Hover | None:
        uri = params.text_document.uri
        occurrence = occurrence_at(uri, params.position)
        if occurrence is None:
            return None
        text = hover_text(analyses[uri].symbols, occurrence.key)
        if text is None:
            return None
        return types.Hover(
            contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
            range=_lsp_range(occurrence.range),
        )

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def definition(params: types.DefinitionParams) -> types.Location | None:
        uri = params.text_document.uri
        occurrence = occurrence_at(uri, params.position)
        if occurrence is None:
            return None
        declaration = analyses[uri].symbols.declarations.get(occurrence.key)
        if declaration is None:
            return None
        return types.Location(uri=uri, range=_lsp_range(declaration.range))

    @server.feature(types.TEXT_DOCUMENT_REFERENCES)
    def references(params: types.ReferenceParams) -> list[types.Location]:
        uri = params.text_document.uri
        occurrence = occurrence_at(uri, params.position)
        if occurrence is None:
            return []
        found = analyses[uri].symbols.of(occurrence.key)
        if not params.context.include_declaration:
            found = [o for o in found if not o.declaration]
        return [_location(uri, o) for o in found]

    @server.feature(types.TEXT_DOCUMENT_PREPARE_RENAME)
    def prepare_rename(params: types.PrepareRenameParams) -> types.Range | None:
        occurrence = occurrence_at(params.text_document.uri, params.position)
        return _lsp_range(occurrence.range) if occurrence is not None else None

    @server.feature(types.TEXT_DOCUMENT_RENAME)
    def rename(params: types.RenameParams) -> types.WorkspaceEdit | None:
        uri = params.text_document.uri
        occurrence = occurrence_at(uri, params.position)
        if occurrence is None:
            return None
        edits = [
            types.TextEdit(range=_lsp_range(o.range), new_text=params.new_name)
            for o in analyses[uri].symbols.of(occurrence.key)
        ]
        return types.WorkspaceEdit(changes={uri: edits})

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION,
        types.CompletionOptions(trigger_characters=["#", ">", "(", " "]),
    )
    def complete(params: types.CompletionParams) -> types.CompletionList:
        uri = params.text_document.uri
        analysis = analyses.get(uri)
        document = server.workspace.get_text_document(uri)
        line = (
            document.lines[params.position.line]
            if params.position.line < len(document.lines)
            else ""
        )
        items = completions(
            analysis.symbols if analysis else SymbolIndex(),
            line[: params.position.character],
            params.position.line,
        )
        return types.CompletionList(is_incomplete=False, items=items)

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def formatting(params: types.DocumentFormattingParams) -> list[types.TextEdit]:
        document = server.workspace.get_text_document(params.text_document.uri)
        try:
            formatted = format_text(document.source, params.text_document.uri)
        except PolicydError:
            return []  # a file that does not parse is left as it is; its diagnostics say why
        if formatted == document.source:
            return []
        end = types.Position(len(document.lines), 0)
        return [types.TextEdit(range=types.Range(types.Position(0, 0), end), new_text=formatted)]

    return server


def main() -> None:
    """Serve LSP over stdin and stdout until the client exits."""
    build_server().start_io()
