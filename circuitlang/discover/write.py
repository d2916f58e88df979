"""Write a found circuit as a `.circ` file a researcher can edit and then `verify`.

Takes the spec the search started from (its model, prompts, metric and ablation are kept, with
their comments) and a circuit in IR form; gives canonical `.circ` text in which the base spec's
roles, MLPs, edges, claims and `use circuit` lines are replaced by the found circuit. Scores can
travel as comments: a header block, and one trailing comment per role line or edge. The text is
parsed back before it is returned, so a writer bug shows here and not in the researcher's editor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

from circuitlang.dsl import ast
from circuitlang.dsl.parser import parse
from circuitlang.dsl.printer import clauses_text, format_spec, statement_text
from circuitlang.ir import models as ir
from circuitlang.ir.lower import lower
from circuitlang.ir.paths import default_root

NO_SPAN = ir.Span(path="<found>", line=1, column=1, end_line=1, end_column=1)  # for AST built from the IR

BARE_MLP_ROLE = "mlp"  # the role lowering gives MLPs declared by a bare `mlp` line
# A hypothesis names circuit nodes and its claims name carriers: both go with the circuit they were written for.
_CIRCUIT_ITEMS = (
    ast.RoleDecl,
    ast.MlpDecl,
    ast.EdgeDecl,
    ast.ExpectMetric,
    ast.ExpectScore,
    ast.ExpectAttends,
    ast.ExpectEdge,
    ast.HypothesisDecl,
)


@dataclass(frozen=True)
class FoundCircuit:
    """What a search found, with the notes to write next to it."""

    circuit: ir.Circuit
    header: tuple[str, ...] = ()  # comment lines under the version header
    claims: tuple[str, ...] = ()  # `expect ...` lines
    node_notes: Mapping[ir.Node, str] = field(default_factory=dict)  # trailing comment on the node's line
    edge_notes: Mapping[tuple[ir.Node, ir.Node], str] = field(default_factory=dict)


def write_spec(base_path: Path, found: FoundCircuit, out_path: Path, name: str | None = None, root: Path | None = None) -> str:
    """The `.circ` text for `out_path`: the base spec's setting with the found circuit.

    Relative paths in the base spec (model folder, data files, `use`) are rewritten to stay correct
    from `out_path`'s folder; they must lie inside `root`, the base spec's project root.
    """
    base = parse(base_path.read_text(encoding="utf-8"), str(base_path))
    kept_items = [
        _rebase(item, base_path.resolve().parent, out_path.resolve().parent, name) for item in base.items if not _is_circuit_item(item)
    ]
    comments = _comments_kept(base)
    setting = format_spec(replace(base, items=tuple(kept_items), comments=comments))
    text = _insert_header(setting, found.header) + "\n" + "\n".join(circuit_lines(found)) + "\n"
    if found.claims:
        text += "\n" + "\n".join(found.claims) + "\n"
    written = parse(text, str(out_path))
    # What was evaluated must also be a valid spec (positions, roles, edges, claims).
    lower(written, root if root is not None else default_root(base_path))
    return format_spec(written)


def _comments_kept(base: ast.SpecFile) -> tuple[ast.Comment, ...]:
    """The base spec's comments, without those about its circuit: the header above the `circuit`
    line, comments inside a replaced statement, and the comment block directly above one."""
    first = min((item.span.line for item in base.items if isinstance(item, ast.CircuitDecl)), default=0)
    own_lines = {c.line for c in base.comments}
    dropped: set[int] = set()
    for item in base.items:
        if _is_circuit_item(item):
            dropped.update(range(item.span.line, item.span.end_line + 1))
            line = item.span.line - 1
            while line in own_lines and line > first:
                dropped.add(line)
                line -= 1
    return tuple(c for c in base.comments if c.line > first and c.line not in dropped)


def circuit_lines(found: FoundCircuit) -> list[str]:
    """Role lines (nodes with the same role and positions share a line), then edges, printed by the
    spec printer from the IR."""
    groups: dict[tuple[str, str, str], list[ir.CircuitNode]] = {}
    for member in found.circuit.nodes:
        kind = "mlp" if member.node.kind == "mlp" else "head"
        groups.setdefault((member.role, kind, clauses_text(_clauses(member))), []).append(member)
    lines = []
    shared = _roles_with_several_position_sets(groups)
    for (role, kind, clauses), members in groups.items():
        if role in shared:  # a role is declared once, with one set of positions: name each set apart
            role = f"{role} ({clauses.strip() or 'all positions'})"
        notes = [found.node_notes[m.node] for m in members if m.node in found.node_notes]
        lines.append(statement_text(_declaration(role, kind, members)) + (f"  # {'; '.join(notes)}" if notes else ""))
    if found.circuit.edges:
        lines.append("")
    for edge in found.circuit.edges:
        note = found.edge_notes.get((edge.sender, edge.receiver))
        lines.append(statement_text(_edge_decl(edge)) + (f"  # {note}" if note else ""))
    return lines


def _declaration(role: str, kind: str, members: list[ir.CircuitNode]) -> ast.RoleDecl | ast.MlpDecl:
    clauses = _clauses(members[0])
    if kind == "mlp":
        layers = tuple(ast.MlpRef(m.node.layer, NO_SPAN) for m in members if m.node.kind == "mlp")
        if role == BARE_MLP_ROLE:
            return ast.MlpDecl(layers, clauses, NO_SPAN)
        return ast.RoleDecl(ast.StrLit(role, NO_SPAN), layers, True, clauses, NO_SPAN)
    heads = tuple(ast.HeadRef(m.node.layer, m.node.head, NO_SPAN) for m in members if m.node.kind == "head")
    return ast.RoleDecl(ast.StrLit(role, NO_SPAN), heads, False, clauses, NO_SPAN)


def _edge_decl(edge: ir.Edge) -> ast.EdgeDecl:
    every = edge.channels == ("q", "k", "v")
    channels = None if every or not edge.channels else tuple(ast.Ident(c, NO_SPAN) for c in edge.channels)
    return ast.EdgeDecl(_node(edge.sender), _node(edge.receiver), channels, NO_SPAN)


def _roles_with_several_position_sets(groups: Mapping[tuple[str, str, str], object]) -> set[str]:
    seen: dict[str, int] = {}
    for role, _, _ in groups:
        seen[role] = seen.get(role, 0) + 1
    return {role for role, count in seen.items() if count > 1}


def _is_circuit_item(item: ast.Item) -> bool:
    return isinstance(item, _CIRCUIT_ITEMS) or (isinstance(item, ast.UseDecl) and item.what == "circuit")


def _insert_header(text: str, header: Sequence[str]) -> str:
    first, _, rest = text.partition("\n")
    return "\n".join([first, *(f"# {line}" if line else "#" for line in header), rest])


def _clauses(member: ir.CircuitNode) -> tuple[ast.PositionClause, ...]:
    wanted: tuple[tuple[str, tuple[ir.Position, ...] | None], ...]
    if member.node.kind == "mlp":
        wanted = (("at", member.q),)
    else:
        wanted = (("q", member.q), ("k", member.k))
    return tuple(
        ast.PositionClause(ast.Ident(kind, NO_SPAN), tuple(map(_position, positions)), NO_SPAN)
        for kind, positions in wanted
        if positions is not None
    )


def _position(position: ir.Position) -> ast.Position:
    if isinstance(position, ir.PositionRange):
        return ast.PosRange(_ref(position.start), _ref(position.stop), NO_SPAN)
    return _ref(position)


def _ref(position: ir.PositionRef) -> ast.PosRef:
    return ast.PosRef(position.name, position.offset, NO_SPAN)


def _node(node: ir.Node) -> ast.NodeRef:
    match node:
        case ir.HeadNode():
            return ast.HeadRef(node.layer, node.head, NO_SPAN)
        case ir.MlpNode():
            return ast.MlpRef(node.layer, NO_SPAN)
        case ir.EmbedNode():
            return ast.Embed(NO_SPAN)
    return ast.Logits(NO_SPAN)


def _rebase(item: ast.Item, old_dir: Path, new_dir: Path, name: str | None) -> ast.Item:
    """Keep relative file references pointing at the same files from the new folder."""
    match item:
        case ast.CircuitDecl():
            model = item.model
            if model.value.startswith("."):
                model = _moved(model, old_dir, new_dir)
            return replace(item, model=model, name=replace(item.name, name=name) if name else item.name)
        case ast.UseDecl():
            return replace(item, path=_moved(item.path, old_dir, new_dir))
        case ast.PromptsDecl():
            return replace(item, body=tuple(_rebase_statement(s, old_dir, new_dir) for s in item.body))
        case ast.CorruptDecl():
            return _rebase_corrupt(item, old_dir, new_dir)
    return item


def _rebase_statement(statement: ast.PromptStmt, old_dir: Path, new_dir: Path) -> ast.PromptStmt:
    if isinstance(statement, ast.FromStmt):
        return replace(statement, path=_moved(statement.path, old_dir, new_dir))
    if isinstance(statement, ast.CorruptDecl):
        return _rebase_corrupt(statement, old_dir, new_dir)
    return statement


def _rebase_corrupt(decl: ast.CorruptDecl, old_dir: Path, new_dir: Path) -> ast.CorruptDecl:
    if decl.kind.name == "file" and decl.args:
        moved = tuple(_moved(a, old_dir, new_dir) if isinstance(a, ast.StrLit) else a for a in decl.args)
        return replace(decl, args=moved)
    return decl


def _moved(path: ast.StrLit, old_dir: Path, new_dir: Path) -> ast.StrLit:
    if old_dir == new_dir or Path(path.value).expanduser().is_absolute() or path.value.startswith("~"):
        return path
    relative = os.path.relpath(old_dir / path.value, new_dir)
    return replace(path, value=relative if relative.startswith(".") else f"./{relative}")
