"""Package formatter prints a policy syntax tree in its canonical text form (``policyd fmt``).

The output parses back to an equal tree, so formatting never changes what a
policy means; formatting formatted text changes nothing. Comments survive:
each is printed on its own line above the declaration it was attached to.
"""

from __future__ import annotations

from typing import assert_never

from policyd.dsl import ast
from policyd.dsl.parser import parse_policy

INDENT = "    "
MAX_WIDTH = 100
"""Lines longer than this are split where the language allows (permission expressions)."""

# Binding strength of each expression form, loosest first; atoms bind tightest.
_ARROW_PRECEDENCE = 4
_ATOM_PRECEDENCE = 5


def format_text(text: str, source_name: str = "<policy>") -> str:
    """Parse policy text and print it in canonical form.

    Raises:
        PolicySyntaxError: the text does not parse (one error).
        PolicyErrors: the text does not parse (several errors).
    """
    return format_policy(parse_policy(text, source_name))


def format_policy(tree: ast.PolicyFile) -> str:
    """Print a syntax tree in canonical form: the text ends with one newline, or is empty."""
    lines: list[str] = []
    previous: ast.TopLevel | None = None
    for item in tree.items:
        if previous is not None and _blank_between(previous, item):
            lines.append("")
        lines.extend(_comment_lines(item.layout.comments, ""))
        lines.extend(_with_trailing(_top_level_lines(item), item.layout.trailing))
        previous = item
    if tree.trailing_comments:
        if lines:
            lines.append("")
        lines.extend(_comment_lines(tree.trailing_comments, ""))
    return "".join(line + "\n" for line in lines)


def _blank_between(previous: ast.TopLevel, item: ast.TopLevel) -> bool:
    """Runs of ``use`` flags and of imports stay together; any other neighbours get a blank line."""
    same_kind = type(previous) is type(item)
    if same_kind and isinstance(item, ast.UseFlag | ast.ImportStmt):
        return item.layout.blank_before
    return True


def _top_level_lines(item: ast.TopLevel) -> list[str]:
    match item:
        case ast.UseFlag():
            return [f"use {item.name}"]
        case ast.ImportStmt():
            return [f"import {item.quoted}"]
        case ast.DefinitionDecl():
            return _block_lines(f"definition {item.name}", item.members, item.trailing_comments)
        case ast.PartialDecl():
            return _block_lines(f"partial {item.name}", item.members, item.trailing_comments)
        case ast.CaveatDecl():
            return _caveat_lines(item)
        case _:
            assert_never(item)


def _block_lines(
    header: str, members: tuple[ast.Member, ...], trailing_comments: tuple[str, ...]
) -> list[str]:
    if not members and not trailing_comments:
        return [header + " {}"]
    lines = [header + " {"]
    for index, member in enumerate(members):
        if index > 0 and member.layout.blank_before:
            lines.append("")
        lines.extend(_comment_lines(member.layout.comments, INDENT))
        lines.extend(_with_trailing(_member_lines(member), member.layout.trailing))
    lines.extend(_comment_lines(trailing_comments, INDENT))
    lines.append("}")
    return lines


def _member_lines(member: ast.Member) -> list[str]:
    """A member on one line, or a permission too long for one split at its outermost operator.

    The split puts each operand of the outermost run of one operator on its
    own line, the operator first: the grouping stays exactly what one line
    would print, and a line's length alone decides, so formatting is stable.
    """
    line = INDENT + _member_text(member)
    if len(line) <= MAX_WIDTH or not isinstance(member, ast.PermissionDecl):
        return [line]
    expr = member.expr
    if not isinstance(expr, ast.BinaryExpr):
        return [line]
    operands = _run_of(expr, expr.op)
    strength = ast.PRECEDENCE[expr.op]
    lines = [INDENT + _permission_head(member) + _operand(operands[0], strength, expr.op)]
    lines += [
        f"{INDENT * 2}{expr.op} {_operand(operand, strength + 1, expr.op)}"
        for operand in operands[1:]
    ]
    return lines


def _run_of(expr: ast.Expr, op: str) -> list[ast.Expr]:
    """The operands of a left-associated run of ``op``: ``a + b + c`` is [a, b, c]."""
    if isinstance(expr, ast.BinaryExpr) and expr.op == op:
        return [*_run_of(expr.left, op), expr.right]
    return [expr]


def _member_text(member: ast.Member) -> str:
    match member:
        case ast.RelationDecl():
            types = " | ".join(format_type_ref(t) for t in member.types)
            return f"relation {member.name}: {types}"
        case ast.PermissionDecl():
            return _permission_head(member) + format_expr(member.expr)
        case ast.PartialRef():
            return f"...{member.name}"
        case _:
            assert_never(member)


def _permission_head(member: ast.PermissionDecl) -> str:
    """``permission NAME[: types] = ``, what comes before the expression."""
    annotation = ": " + " | ".join(member.subject_types) if member.subject_types else ""
    return f"permission {member.name}{annotation} = "


def format_type_ref(ref: ast.TypeRef) -> str:
    """``user``, ``group#member``, ``user:*``, each optionally ``with a and expiration``."""
    text = ref.type
    if ref.relation is not None:
        text += f"#{ref.relation}"
    elif ref.wildcard:
        text += ":*"
    if ref.traits:
        text += " with " + " and ".join(ref.traits)
    return text


def format_expr(expr: ast.Expr) -> str:
    """A permission expression with its grouping spelled out where operators mix.

    ``-`` binds loosest, then ``&``, then ``+``, all left-associative, and
    arrows bind tightest. Few readers know that order, so an operand that is
    itself a different operator is always parenthesised: ``(a + b) - c``,
    ``(a & b) - c``; a run of one operator is not: ``a + b + c``, and
    ``a - (b - c)`` keeps the parentheses its meaning needs.
    """
    match expr:
        case ast.Identifier():
            return expr.name
        case ast.NilExpr():
            return "nil"
        case ast.BinaryExpr():
            strength = ast.PRECEDENCE[expr.op]
            # Left-associative: the left operand may be as loose as the operator itself.
            left = _operand(expr.left, strength, expr.op)
            right = _operand(expr.right, strength + 1, expr.op)
            return f"{left} {expr.op} {right}"
        case ast.ArrowExpr():
            left = _operand(expr.left, _ARROW_PRECEDENCE)
            if expr.spelling == "->":
                return f"{left}->{expr.target}"
            return f"{left}.{expr.spelling}({expr.target})"
        case _:
            assert_never(expr)


def _operand(expr: ast.Expr, weakest_allowed: int, parent_op: str | None = None) -> str:
    """Print ``expr`` in parentheses if it binds looser than allowed or mixes operators.

    ``weakest_allowed`` is the loosest binding that needs none; ``parent_op``
    the operator it is an operand of.
    """
    text = format_expr(expr)
    mixed = isinstance(expr, ast.BinaryExpr) and parent_op is not None and expr.op != parent_op
    return text if _precedence(expr) >= weakest_allowed and not mixed else f"({text})"


def _precedence(expr: ast.Expr) -> int:
    match expr:
        case ast.BinaryExpr():
            return ast.PRECEDENCE[expr.op]
        case ast.ArrowExpr():
            return _ARROW_PRECEDENCE
        case ast.Identifier() | ast.NilExpr():
            return _ATOM_PRECEDENCE
        case _:
            assert_never(expr)


def _caveat_lines(caveat: ast.CaveatDecl) -> list[str]:
    params = ", ".join(f"{p.name} {format_caveat_type(p.type)}" for p in caveat.params)
    lines = [f"caveat {caveat.name}({params}) {{"]
    expression = caveat.expression
    if '"""' in expression or "'''" in expression:
        # A multi-line string literal would change if its lines moved, so only the
        # first line is indented; the parser keeps such bodies exactly as written.
        lines.append(INDENT + expression)
    else:
        lines.extend(INDENT + line if line.strip() else "" for line in expression.split("\n"))
    lines.append("}")
    return lines


def format_caveat_type(ref: ast.CaveatTypeRef) -> str:
    """``int``, ``list<string>``, ``map<list<int>>``."""
    if not ref.args:
        return ref.name
    return f"{ref.name}<{', '.join(format_caveat_type(a) for a in ref.args)}>"


def _with_trailing(lines: list[str], comment: str) -> list[str]:
    """Put an end-of-line comment back after the last line, two spaces out."""
    if comment:
        lines[-1] = f"{lines[-1]}  {comment.rstrip()}"
    return lines


def _comment_lines(comments: tuple[str, ...], indent: str) -> list[str]:
    return [line for comment in comments for line in format_comment(comment, indent)]


def format_comment(comment: str, indent: str) -> list[str]:
    """The lines of one comment printed at ``indent``, without trailing whitespace.

    A block comment whose every continuation line starts with ``*`` (a doc
    comment's gutter) is re-indented so that its stars line up one space in
    from ``indent``. Any other block comment keeps its continuation lines as
    written, since only its author knows how they were meant to line up.
    """
    first, *rest = [line.rstrip() for line in comment.split("\n")]
    if rest and all(line.lstrip().startswith("*") for line in rest):
        rest = [f"{indent} {line.lstrip()}" for line in rest]
    return [indent + first, *rest]
