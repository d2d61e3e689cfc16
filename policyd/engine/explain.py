"""Package explain renders a decision's Explanation as an indented tree a person can read."""

from __future__ import annotations

from policyd.decisions import Explanation, Permissionship

_MARK = {
    Permissionship.HAS_PERMISSION: "✓",
    Permissionship.NO_PERMISSION: "✗",
    Permissionship.CONDITIONAL: "?",
}


def format_explanation(explanation: Explanation, indent: str = "  ") -> str:
    """One line per step: a mark (✓ granted, ✗ denied, ? conditional), what, and any note."""
    lines: list[str] = []

    def visit(node: Explanation, level: int) -> None:
        text = f"{indent * level}{_MARK[node.result]} {node.what}"
        if node.missing:
            text += f" (needs {', '.join(node.missing)})"
        if node.note:
            text += f" — {node.note}"
        lines.append(text)
        for child in node.children:
            visit(child, level + 1)

    visit(explanation, 0)
    return "\n".join(lines)
