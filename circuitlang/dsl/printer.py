"""AST -> canonical `.circ` text (`circuitlang fmt`). Comments are kept where they were: a comment
on its own line stays before the statement that follows it, a trailing comment stays at the end
of its statement's line. Printing and re-parsing gives the same IR (a property test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from circuitlang.dsl import ast
from circuitlang.errors import Span

INDENT = "  "
_PRECEDENCE = {"..": 1, "+": 2, "-": 2, "*": 3, "//": 3, "%": 3}


def format_spec(spec: ast.SpecFile) -> str:
    out = _Writer(list(spec.comments), _comment_owners(spec))
    out.statement(spec.header.span, f"circuitlang {spec.header.version}", 0)
    previous: str | None = None
    for item in spec.items:
        group = _group(item)
        if previous is not None and (group != previous or group == "block"):
            out.blank()
        _item(item, out)
        previous = group
    out.flush_remaining()
    return "\n".join(out.lines).rstrip("\n") + "\n"


@dataclass
class _Writer:
    comments: list[ast.Comment]
    owners: dict[ast.Comment, Span]  # a trailing comment -> the statement it follows on its line
    lines: list[str] = field(default_factory=list)

    def blank(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def leading(self, line: int, depth: int) -> None:
        while self.comments and self.comments[0].line < line:
            self.lines.append(INDENT * depth + self.comments.pop(0).text)

    def trailing(self, span: Span, depth: int) -> None:
        """Attach the comments written after this statement on its last line (and any inside it)."""

        def belongs(comment: ast.Comment) -> bool:
            return comment.line < span.end_line or self.owners.get(comment) == span

        if self.comments and belongs(self.comments[0]):
            self.lines[-1] += "  " + self.comments.pop(0).text
        while self.comments and belongs(self.comments[0]):
            self.lines.append(INDENT * depth + self.comments.pop(0).text)

    def statement(self, span: Span, text: str, depth: int) -> None:
        self.leading(span.line, depth)
        self.lines.append(INDENT * depth + text)
        self.trailing(span, depth)

    def open_block(self, span: Span, text: str, depth: int) -> None:
        self.leading(span.line, depth)
        self.lines.append(INDENT * depth + text + " {")
        # A comment after the `{` belongs to the block's first line.
        if self.comments and self.comments[0].line == span.line and self.comments[0] not in self.owners:
            self.lines[-1] += "  " + self.comments.pop(0).text

    def close_block(self, span: Span, depth: int) -> None:
        self.leading(span.end_line, depth + 1)
        self.lines.append(INDENT * depth + "}")
        self.trailing(span, depth)

    def flush_remaining(self) -> None:
        self.lines.extend(comment.text for comment in self.comments)
        self.comments.clear()


def _comment_owners(spec: ast.SpecFile) -> dict[ast.Comment, Span]:
    """For each comment, the last statement ending before it on the same line (if any)."""
    spans = [spec.header.span]
    for item in spec.items:
        spans.append(item.span)
        body = getattr(item, "body", None) or ()
        for stmt in body:
            spans.append(stmt.span)
            spans.extend(inner.span for inner in (getattr(stmt, "body", None) or ()))
    owners: dict[ast.Comment, Span] = {}
    for comment in spec.comments:
        before = [s for s in spans if s.end_line == comment.line and s.end_column <= comment.column]
        if before:
            owners[comment] = max(before, key=lambda s: s.end_column)
    return owners


def _group(item: ast.Item) -> str:
    """Statements of one group are printed together; groups are separated by a blank line."""
    if isinstance(item, (ast.PromptsDecl, ast.HypothesisDecl)) or (isinstance(item, ast.CorruptDecl) and item.body is not None):
        return "block"
    if isinstance(item, (ast.ExpectMetric, ast.ExpectScore, ast.ExpectAttends, ast.ExpectEdge)):
        return "expect"
    if isinstance(item, (ast.RoleDecl, ast.MlpDecl)):
        return "nodes"
    if isinstance(item, (ast.MetricDecl, ast.AblateDecl)):
        return "measure"
    return type(item).__name__


def _item(item: ast.Item | ast.PromptStmt, out: _Writer, depth: int = 0) -> None:
    if isinstance(item, ast.PromptsDecl):
        out.open_block(item.span, "prompts" + (f" {item.name.name}" if item.name else ""), depth)
        for stmt in item.body:
            _item(stmt, out, depth + 1)
        out.close_block(item.span, depth)
    elif isinstance(item, ast.CorruptDecl) and item.body is not None:
        out.open_block(item.span, _corrupt_head(item), depth)
        for stmt in item.body:
            out.statement(stmt.span, _assign(stmt), depth + 1)
        out.close_block(item.span, depth)
    elif isinstance(item, ast.HypothesisDecl):
        out.open_block(item.span, "hypothesis" + _on(item.on), depth)
        for inner in item.body:
            out.statement(inner.span, statement_text(inner), depth + 1)
        out.close_block(item.span, depth)
    else:
        out.statement(item.span, statement_text(item), depth)


def statement_text(item: object) -> str:
    """One statement (not a block) as canonical text."""
    match item:
        case ast.CircuitDecl(name, model, _):
            return f"circuit {name.name} on {quote(model.value)}"
        case ast.UseDecl(what, name, path, _):
            return f"use {what}" + (f" {name.name}" if name else "") + f" from {quote(path.value)}"
        case ast.ListDecl(name, cyclic, items, _):
            head = f"list {name.name}" + (" cyclic" if cyclic else "") + " = "
            return head + _wrapped_list(items, len(head))
        case ast.TemplateStmt(text, _):
            return f"template {quote(text.value)}"
        case ast.ForStmt(loops, _):
            return "for " + ", ".join(f"{loop.var.name} in {expr_text(loop.source)}" for loop in loops)
        case ast.AssignStmt():
            return _assign(item)
        case ast.FromStmt(path, _):
            return f"from {quote(path.value)}"
        case ast.GenerateStmt(generator, kwargs, _):
            args = ", ".join(f"{kw.name.name} = {expr_text(kw.value)}" for kw in kwargs)
            return f"generate {generator.name}({args})"
        case ast.CorruptDecl():
            return _corrupt_head(item)
        case ast.MetricDecl(name, args, _):
            return f"metric {name.name}" + (f"({', '.join(a.name for a in args)})" if args else "")
        case ast.AblateDecl(kind, source, _):
            return f"ablate {kind.name}" + (f" of {source.name}" if source else "")
        case ast.SetDecl(key, value, _):
            return f"set {key.name} = {_setting(value)}"
        case ast.CarriesStmt():
            return carrier_text(item)
    return _circuit_text(item)


def carrier_text(stmt: ast.CarriesStmt) -> str:
    """A hypothesis's carrier line: `0.0, 0.2 at end carries s3`, `"mover" carries s4`."""
    if stmt.role is not None:
        nodes = quote(stmt.role.value)
    else:
        nodes = ("mlp " if stmt.is_mlp else "") + ", ".join(_member(m) for m in stmt.members)
    return f"{nodes}{clauses_text(stmt.clauses)} carries {stmt.variable.name}"


def _circuit_text(item: object) -> str:
    match item:
        case ast.RoleDecl(name, members, is_mlp, clauses, _):
            listed = ", ".join(_member(m) for m in members)
            return f"role {quote(name.value)}: " + ("mlp " if is_mlp else "") + listed + clauses_text(clauses)
        case ast.MlpDecl(layers, clauses, _):
            return "mlp " + ", ".join(_member(m) for m in layers) + clauses_text(clauses)
        case ast.EdgeDecl(sender, receiver, channels, _):
            via = f" via {', '.join(c.name for c in channels)}" if channels else ""
            return f"edge {_node(sender)} -> {_node(receiver)}{via}"
        case ast.ExpectMetric(metric, on, op, threshold, _):
            return f"expect {metric.name}{_on(on)} {op} {threshold.text}"
        case ast.ExpectScore(target, score, on, op, threshold, _):
            return f"expect {_node(target)} {score.name}{_on(on)} {op} {threshold.text}"
        case ast.ExpectAttends(target, queries, keys, on, op, threshold, _):
            return f"expect {_node(target)} attends {_positions(queries)} -> {_positions(keys)}{_on(on)} {op} {threshold.text}"
        case ast.ExpectEdge(sender, receiver, score, on, op, threshold, _):
            return f"expect {_node(sender)} -> {_node(receiver)} {score.name}{_on(on)} {op} {threshold.text}"
    raise TypeError(f"cannot print {item!r}")


def _wrapped_list(items: ast.ListLit, indent: int, width: int = 100) -> str:
    """A list literal, continued on aligned lines when it would pass `width` characters."""
    texts = [expr_text(i) for i in items.items]
    lines, current = [], "["
    for i, text in enumerate(texts):
        piece = text + ("," if i < len(texts) - 1 else "]")
        if len(current) > 1 and indent + len(current) + 1 + len(piece) > width:
            lines.append(current)
            current = " " * indent + " " + piece
        else:
            current += ("" if current.endswith("[") else " ") + piece
    lines.append(current if texts else "[]")
    return "\n".join(lines)


def _corrupt_head(item: ast.CorruptDecl) -> str:
    args = f"({', '.join(expr_text(a) for a in item.args)})" if item.args is not None else ""
    return f"corrupt {item.kind.name}{args}"


def _assign(stmt: ast.AssignStmt) -> str:
    return ", ".join(t.name for t in stmt.targets) + f" = {expr_text(stmt.value)}"


def _setting(value: ast.SettingValue) -> str:
    match value:
        case ast.Number(_, text, _):
            return text
        case ast.StrLit(text, _):
            return quote(text)
        case ast.Var(name, _):
            return name
    return str(value.value)  # an IntLit


def _member(member: object) -> str:
    match member:
        case ast.HeadRef(layer, head, _):
            return f"{layer}.{head}"
        case ast.LayerHeads(layer, _):
            return f"{layer}.*"
        case ast.MlpRef(layer, _):
            return str(layer)
        case ast.LayerRange(start, stop, _):
            return f"{start}..{stop}"
    raise TypeError(f"cannot print {member!r}")


def _node(node: object) -> str:
    match node:
        case ast.HeadRef(layer, head, _):
            return f"{layer}.{head}"
        case ast.MlpRef(layer, _):
            return f"mlp {layer}"
        case ast.Embed():
            return "embed"
        case ast.Logits():
            return "logits"
        case ast.RoleRef(name, _):
            return quote(name)
        case ast.VariableRef(name, _):
            return name
    raise TypeError(f"cannot print {node!r}")


def clauses_text(clauses: tuple[ast.PositionClause, ...]) -> str:
    """Position clauses as they follow a role or mlp line: ` q end k s1..s4`."""
    return "".join(f" {c.kind.name} {_positions(c.positions)}" for c in clauses)


def _positions(positions: tuple[ast.Position, ...]) -> str:
    return ", ".join(_position(p) for p in positions)


def _position(position: ast.Position) -> str:
    if isinstance(position, ast.PosRange):
        return f"{_position(position.start)}..{_position(position.stop)}"
    return position.name + (f"{position.offset:+d}" if position.offset else "")


def _on(on: ast.Ident | None) -> str:
    return f" on {on.name}" if on else ""


def quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def expr_text(expr: ast.Expr, parent: int = 0) -> str:
    """An expression with only the parentheses its precedence needs."""
    match expr:
        case ast.IntLit(value, _):
            return str(value)
        case ast.StrLit(value, _):
            return quote(value)
        case ast.Var(name, _):
            return name
        case ast.Index(name, index, _):
            return f"{name.name}[{expr_text(index)}]"
        case ast.Call(function, args, _):
            return f"{function.name}({', '.join(expr_text(a) for a in args)})"
        case ast.ListLit(items, _):
            return "[" + ", ".join(expr_text(i) for i in items) + "]"
        case ast.Neg(operand, _):
            return _wrap(f"-{expr_text(operand, 4)}", 4, parent)
        case ast.Range(start, stop, _):
            return _wrap(f"{expr_text(start, 2)}..{expr_text(stop, 2)}", 1, parent)
        case ast.Random(source, distinct, _):
            return _wrap(f"random {expr_text(source, 1)}" + (" distinct" if distinct else ""), 0, parent)
        case ast.BinOp(op, left, right, _):
            level = _PRECEDENCE[op]
            # Operators are left-associative, so a right operand at the same level needs parentheses.
            return _wrap(f"{expr_text(left, level)} {op} {expr_text(right, level + 1)}", level, parent)
    raise TypeError(f"cannot print {expr!r}")


def _wrap(text: str, level: int, parent: int) -> str:
    return f"({text})" if level < parent else text
