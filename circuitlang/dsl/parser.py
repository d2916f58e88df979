"""Text -> AST. A Lark LALR parser with positions on; syntax errors become `SyntaxErrorInSpec`
with the file, line, column and a hint, never a Lark traceback. After a syntax error the parser
reads on from the next statement (recovery.py), so every broken statement is reported.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from importlib import resources
from typing import Any, Iterator

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.lark import PostLex

from circuitlang.dsl import ast
from circuitlang.dsl.recovery import later_errors
from circuitlang.dsl.syntax_hints import hint_for_unexpected
from circuitlang.errors import MAX_ERRORS, CircuitlangError, Span, SpecErrors, SyntaxErrorInSpec

SUPPORTED_VERSIONS = (1,)
# Words that start statements (docs/language.md, section 17): never a slot, variable or loop name.
STATEMENT_KEYWORDS = frozenset(
    (
        "circuitlang",
        "circuit",
        "use",
        "list",
        "prompts",
        "template",
        "for",
        "from",
        "generate",
        "corrupt",
        "metric",
        "ablate",
        "set",
        "role",
        "mlp",
        "edge",
        "expect",
        "hypothesis",
    )
)
MAX_DEPTH = 200  # nesting of the syntax tree; building the AST recurses, so deeper input is refused here


class _TooDeep(Exception):
    """Raised by the post-lexer at the token that makes an expression nest past MAX_DEPTH."""

    def __init__(self, token: Token) -> None:
        super().__init__(token)
        self.token = token


class _Nesting:
    """How deep the expression being lexed already nests, at one bracket level: a chain of `+`/`-`
    nests one level per operator, a chain of `*`, `//`, `%` one per operator within a term, and
    each unary minus one more. These are lower bounds of the tree's depth, so refusing past
    MAX_DEPTH here refuses nothing the tree check would accept, and does it before Lark builds a
    tree (thousands of `+` terms took seconds)."""

    SUM, PRODUCT = {"PLUS", "MINUS"}, {"STAR", "__ANON_2", "PERCENT"}  # __ANON_2: "//"
    OPERANDS = {"INT", "NAME", "STRING", "DECIMAL", "RPAR", "RSQB"}

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums = self.products = self.negations = 0
        self.after_operand = False

    def add(self, token: Token) -> bool:
        """Count `token`; False when the expression now nests too deep."""
        kind = token.type
        if kind in self.OPERANDS:
            self.negations, self.after_operand = 0, True
        elif kind == "MINUS" and not self.after_operand:
            self.negations += 1
        elif kind in self.SUM:
            self.sums, self.products, self.after_operand = self.sums + 1, 0, False
        elif kind in self.PRODUCT:
            self.products, self.after_operand = self.products + 1, False
        else:  # a comma, `=`, `..`, a keyword, the end of the statement: a new expression starts
            self.reset()
        return max(self.sums, self.products, self.negations) <= MAX_DEPTH


class _DropNewlinesInBrackets(PostLex):
    """Newlines inside (...) and [...] continue the line, so long lists can span lines. Also
    refuses brackets and operator chains nested past MAX_DEPTH as they stream by."""

    always_accept = ("_NL",)
    _open = {"LPAR", "LSQB"}
    _close = {"RPAR", "RSQB"}

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        levels = [_Nesting()]
        for token in stream:
            if token.type in self._open:  # the group is one operand of the level around it
                levels.append(_Nesting())
                if len(levels) > MAX_DEPTH:
                    raise _TooDeep(token)
            elif token.type in self._close:
                if len(levels) > 1:
                    levels.pop()
            elif token.type == "_NL" and len(levels) > 1:
                continue
            if not levels[-1].add(token):
                raise _TooDeep(token)
            yield token


@lru_cache(maxsize=1)
def _grammar_text() -> str:
    return resources.files("circuitlang.dsl").joinpath("grammar.lark").read_text(encoding="utf-8")


class _CommentSink(threading.local):
    """Where the lexer puts the comments of the parse running on this thread."""

    comments: list[Token] | None = None

    def append(self, token: Token) -> None:
        if self.comments is not None:
            self.comments.append(token)


_COMMENTS = _CommentSink()


@lru_cache(maxsize=1)
def _parser() -> Lark:
    """The parser, built once: compiling the grammar costs far more than parsing a spec."""
    return Lark(
        _grammar_text(),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=_DropNewlinesInBrackets(),
        lexer_callbacks={"COMMENT": _COMMENTS.append},
    )


def parse(text: str, path: str = "<string>") -> ast.SpecFile:
    """Parse `.circ` text into an AST. Raises `SyntaxErrorInSpec` pointing at the mistake, or
    `SpecErrors` holding one syntax error per broken statement when there are several."""
    parser = _parser()
    text = text.removeprefix("\ufeff")  # a byte-order mark, as `check` reads it (utf-8-sig)
    source = text if text.endswith("\n") else text + "\n"
    comments: list[Token] = []
    _COMMENTS.comments = comments
    try:
        tree = _syntax_tree(parser, source, path)
        _check_depth(tree, path)
        spec = _ToAst(path).transform(tree)
    except _TooDeep as error:
        raise _too_deep(_token_span(path, error.token)) from None
    except VisitError as error:  # an exception raised while building the AST
        if isinstance(error.orig_exc, CircuitlangError):
            raise error.orig_exc from None
        if isinstance(error.orig_exc, ValueError) and "integer string conversion" in str(error.orig_exc):
            raise SyntaxErrorInSpec(
                "a number with more than 4300 digits",
                _span_of(error.obj, path),
                "numbers in a spec are counts, indices and thresholds: write a smaller one",
            ) from None
        raise
    finally:
        _COMMENTS.comments = None
    header, items = spec
    found = tuple(ast.Comment(c.value.rstrip(), *_start(c)) for c in comments)
    return ast.SpecFile(path=path, header=header, items=tuple(items), comments=found)


def _syntax_tree(parser: Lark, source: str, path: str) -> Tree:
    """The parse tree of `source`. A syntax error is reported with every later one the recovery
    finds; the tree of a file that does not parse is never used, so no meaning is checked in it."""
    try:
        return parser.parse(source)
    except UnexpectedInput as error:
        first = error
    errors = [_syntax_error(first, source, path, parser)]
    try:
        for later in later_errors(first):
            # Past the cap an error is only counted (SpecErrors): the first one there stands for the rest.
            found = _syntax_error(later, source, path, parser) if len(errors) <= MAX_ERRORS else errors[-1]
            if len(errors) > MAX_ERRORS or found.span != errors[-1].span:
                errors.append(found)  # (an open block is reported once, however often reading on meets it)
    except _TooDeep as error:  # raised while reading on: the error stands, and reading stops there
        errors.append(_too_deep(_token_span(path, error.token)))
    raise errors[0] if len(errors) == 1 else SpecErrors(errors)


def _check_depth(tree: Tree, path: str) -> None:
    """Refuse input nested deeper than MAX_DEPTH (e.g. thousands of `+` terms), at its place,
    before anything recurses over it."""
    stack: list[tuple[Tree, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_deep(_span_of(node, path))
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


def _too_deep(span: Span) -> SyntaxErrorInSpec:
    return SyntaxErrorInSpec(
        f"this expression nests more than {MAX_DEPTH} levels deep", span, "split it into several assignments, or use a list and a loop"
    )


def _span_of(node: object, path: str) -> Span:
    meta = getattr(node, "meta", None)
    line, column = (getattr(meta, "line", 1), getattr(meta, "column", 1)) if meta is not None else (1, 1)
    return Span(path=path, line=line, column=column, end_line=line, end_column=column + 1)


def _syntax_error(error: UnexpectedInput, source: str, path: str, parser: Lark) -> SyntaxErrorInSpec:
    unclosed = _unclosed_block(error, source, path, parser)
    if unclosed is not None:
        return unclosed
    line, column = _error_position(error, source)
    width = len(getattr(error, "token", "") or " ") if isinstance(error, UnexpectedToken) else 1
    span = Span(path=path, line=line, column=column, end_line=line, end_column=column + max(1, width))
    message, hint = hint_for_unexpected(error, source, parser)
    return SyntaxErrorInSpec(message, span, hint)


# Statements that only stand at the top level: met inside a block at the start of a line (or the
# end of the file met there), they mean the block's `}` is missing.
TOP_LEVEL_ONLY = frozenset({"CIRCUIT", "USE", "LIST", "PROMPTS", "ABLATE", "ROLE", "EDGE", "EXPECT", "HYPOTHESIS", "$END"})


def _unclosed_block(error: UnexpectedInput, source: str, path: str, parser: Lark) -> SyntaxErrorInSpec | None:
    """A block whose `}` is missing is noticed at the next top-level statement, lines below; the
    error belongs at the `{` left open, found by lexing the text before the statement."""
    if not (isinstance(error, UnexpectedToken) and error.token.type in TOP_LEVEL_ONLY and "RBRACE" in error.expected):
        return None
    if error.token.type != "$END" and error.token.column != 1:  # indented: a statement put inside the block
        return None
    end = error.token.start_pos if error.token.type != "$END" else len(source)
    open_braces: list[Token] = []
    try:
        for token in parser.lex(source[:end]):
            if token.type == "LBRACE":
                open_braces.append(token)
            elif token.type == "RBRACE" and open_braces:
                open_braces.pop()
    except Exception:  # noqa: BLE001 - text the lexer cannot read: the plain message stands
        return None
    if not open_braces:
        return None
    line, column = _start(open_braces[-1])
    where = "by the end of the file" if error.token.type == "$END" else f"before '{error.token}' on line {error.token.line}"
    span = Span(path=path, line=line, column=column, end_line=line, end_column=column + 1)
    return SyntaxErrorInSpec(f"this '{{' is not closed {where}", span, "close the block with '}' on a line of its own after its last statement")


def _error_position(error: UnexpectedInput, source: str) -> tuple[int, int]:
    if isinstance(error, UnexpectedEOF) or getattr(error, "line", -1) in (-1, None):
        lines = source.rstrip("\n").split("\n")
        return len(lines), len(lines[-1]) + 1
    token = getattr(error, "token", None)
    if isinstance(error, UnexpectedToken) and token is not None and token.type == "$END":
        lines = source.rstrip("\n").split("\n")
        return len(lines), len(lines[-1]) + 1
    return error.line, error.column


def _span(path: str, meta: Any) -> Span:
    return Span(path=path, line=meta.line, column=meta.column, end_line=meta.end_line, end_column=meta.end_column)


def _start(token: Token) -> tuple[int, int]:
    """The line and column of a token the lexer made: with positions on it sets them on every token
    (Lark types them Optional for tokens made by hand)."""
    assert token.line is not None and token.column is not None, f"token {token!r} has no position"
    return token.line, token.column


def _token_span(path: str, token: Token) -> Span:
    line, column = _start(token)
    assert token.end_line is not None and token.end_column is not None, f"token {token!r} has no end"
    return Span(path=path, line=line, column=column, end_line=token.end_line, end_column=token.end_column)


def _unquote(token: Token, path: str) -> str:
    """Decode a string literal. Only \\" \\\\ \\n \\t are escapes; anything else is an error."""
    body, out, i = token.value[1:-1], [], 0
    line, start = _start(token)
    escapes = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
    while i < len(body):
        char = body[i]
        if char == "\0":  # no file name, model name or text of a prompt holds one; paths would fail on it
            column = start + 1 + i
            raise SyntaxErrorInSpec(
                "a NUL character in a string",
                Span(path=path, line=line, column=column, end_line=line, end_column=column + 1),
                "remove it: strings in a spec are text",
            )
        if char == "\\":
            nxt = body[i + 1]
            if nxt not in escapes:
                column = start + 1 + i
                raise SyntaxErrorInSpec(
                    f"unknown escape '\\{nxt}' in string",
                    Span(path=path, line=line, column=column, end_line=line, end_column=column + 2),
                    'the escapes are \\" \\\\ \\n and \\t; write a literal backslash as \\\\',
                )
            out.append(escapes[nxt])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _split_head(token: Token, path: str) -> tuple[int, int]:
    layer, head = token.value.split(".")
    if len(head) > 1 and head.startswith("0"):
        # 9.01 would silently be head 1; heads are integers, not decimals.
        raise SyntaxErrorInSpec(
            f"'{token.value}' is not a head: head numbers have no leading zeros", _token_span(path, token), f"write {layer}.{int(head)}"
        )
    return int(layer), int(head)


def _present(children: list[Any]) -> list[Any]:
    return [child for child in children if child is not None]


@v_args(meta=True)
class _ToAst(Transformer):
    """Builds AST nodes bottom-up; every node gets the span Lark computed for its rule."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def _s(self, meta: Any) -> Span:
        return _span(self.path, meta)

    def _ident(self, token: Token) -> ast.Ident:
        return ast.Ident(str(token), _token_span(self.path, token))

    def _variable(self, token: Token) -> ast.Ident:
        """A slot, variable or loop name. A statement keyword is refused even where the lexer read
        it as a name (`{ role = 1 }`): on a line of its own it starts a statement, so the
        formatted file would no longer parse."""
        if token.value in STATEMENT_KEYWORDS:
            raise SyntaxErrorInSpec(
                f"'{token.value}' is a statement keyword and cannot name a slot or variable",
                _token_span(self.path, token),
                f"choose another name, e.g. {token.value}_1 (keywords: docs/language.md, section 17)",
            )
        return self._ident(token)

    def _str(self, token: Token) -> ast.StrLit:
        return ast.StrLit(_unquote(token, self.path), _token_span(self.path, token))

    # ---- file and header
    def start(self, meta: Any, children: list[Any]) -> tuple[ast.Header, list[Any]]:
        return children[0], children[1:]

    def header(self, meta: Any, children: list[Token]) -> ast.Header:
        return ast.Header(int(children[0]), self._s(meta))

    def circuit_decl(self, meta: Any, children: list[Token]) -> ast.CircuitDecl:
        return ast.CircuitDecl(self._ident(children[0]), self._str(children[1]), self._s(meta))

    def use_circuit(self, meta: Any, children: list[Token]) -> ast.UseDecl:
        return ast.UseDecl("circuit", None, self._str(children[0]), self._s(meta))

    def use_prompts(self, meta: Any, children: list[Token]) -> ast.UseDecl:
        return ast.UseDecl("prompts", self._ident(children[0]), self._str(children[1]), self._s(meta))

    def use_list(self, meta: Any, children: list[Token]) -> ast.UseDecl:
        return ast.UseDecl("list", self._ident(children[0]), self._str(children[1]), self._s(meta))

    def list_decl(self, meta: Any, children: list[Any]) -> ast.ListDecl:
        cyclic = len(children) == 3
        return ast.ListDecl(self._ident(children[0]), cyclic, children[-1], self._s(meta))

    # ---- prompt sets
    def prompts_decl(self, meta: Any, children: list[Any]) -> ast.PromptsDecl:
        name = self._ident(children[0]) if children and isinstance(children[0], Token) else None
        body = tuple(children[1:] if name else children)
        return ast.PromptsDecl(name, body, self._s(meta))

    def template_stmt(self, meta: Any, children: list[Token]) -> ast.TemplateStmt:
        return ast.TemplateStmt(self._str(children[0]), self._s(meta))

    def for_stmt(self, meta: Any, children: list[ast.Loop]) -> ast.ForStmt:
        return ast.ForStmt(tuple(children), self._s(meta))

    def loop(self, meta: Any, children: list[Any]) -> ast.Loop:
        return ast.Loop(self._variable(children[0]), children[1], self._s(meta))

    def assign_stmt(self, meta: Any, children: list[Any]) -> ast.AssignStmt:
        targets = tuple(self._variable(token) for token in children[:-1])
        return ast.AssignStmt(targets, children[-1], self._s(meta))

    def from_stmt(self, meta: Any, children: list[Token]) -> ast.FromStmt:
        return ast.FromStmt(self._str(children[0]), self._s(meta))

    def generate_stmt(self, meta: Any, children: list[Any]) -> ast.GenerateStmt:
        return ast.GenerateStmt(self._ident(children[0]), tuple(_present(children[1:])), self._s(meta))

    def kwarg(self, meta: Any, children: list[Any]) -> ast.KwArg:
        return ast.KwArg(self._ident(children[0]), children[1], self._s(meta))

    # ---- corruption, metric, ablation, settings
    def corrupt_decl(self, meta: Any, children: list[Any]) -> ast.CorruptDecl:
        kind, rest = children[0], children[1:]
        args = next((c[1] for c in rest if isinstance(c, tuple) and c[0] == "args"), None)
        body = next((c[1] for c in rest if isinstance(c, tuple) and c[0] == "body"), None)
        return ast.CorruptDecl(kind, args, body, self._s(meta))

    def corrupt_kind(self, meta: Any, children: list[Token]) -> ast.Ident:
        return self._ident(children[0])

    def corrupt_args(self, meta: Any, children: list[Any]) -> tuple[str, tuple[Any, ...]]:
        return ("args", tuple(_present(children)))

    def corrupt_body(self, meta: Any, children: list[Any]) -> tuple[str, tuple[Any, ...]]:
        return ("body", tuple(children))

    def metric_decl(self, meta: Any, children: list[Any]) -> ast.MetricDecl:
        args = tuple(self._ident(t) for t in _present(children[1:])) if len(children) > 1 else None
        return ast.MetricDecl(self._ident(children[0]), args, self._s(meta))

    def ablate_decl(self, meta: Any, children: list[Any]) -> ast.AblateDecl:
        source = self._ident(children[1]) if children[1] is not None else None
        return ast.AblateDecl(self._ident(children[0]), source, self._s(meta))

    def set_decl(self, meta: Any, children: list[Any]) -> ast.SetDecl:
        return ast.SetDecl(self._ident(children[0]), children[1], self._s(meta))

    def setting_decimal(self, meta: Any, children: list[Token]) -> ast.Number:
        return ast.Number(float(children[0]), str(children[0]), self._s(meta))

    def setting_neg_int(self, meta: Any, children: list[Token]) -> ast.IntLit:
        return ast.IntLit(-int(children[0]), self._s(meta))

    def setting_neg_decimal(self, meta: Any, children: list[Token]) -> ast.Number:
        return ast.Number(-float(children[0]), "-" + str(children[0]), self._s(meta))

    def name(self, meta: Any, children: list[Token]) -> ast.Var:
        return ast.Var(str(children[0]), self._s(meta))

    # ---- circuit
    def role_decl(self, meta: Any, children: list[Any]) -> ast.RoleDecl:
        kind, members = children[1]
        return ast.RoleDecl(self._str(children[0]), members, kind == "mlp", tuple(children[2:]), self._s(meta))

    def head_list(self, meta: Any, children: list[Any]) -> tuple[str, tuple[Any, ...]]:
        return ("heads", tuple(children))

    def mlp_list(self, meta: Any, children: list[Any]) -> tuple[str, tuple[Any, ...]]:
        return ("mlp", tuple(children))

    def mlp_decl(self, meta: Any, children: list[Any]) -> ast.MlpDecl:
        layers = tuple(c for c in children if not isinstance(c, ast.PositionClause))
        clauses = tuple(c for c in children if isinstance(c, ast.PositionClause))
        return ast.MlpDecl(layers, clauses, self._s(meta))

    def head(self, meta: Any, children: list[Token]) -> ast.HeadRef:
        layer, head = _split_head(children[0], self.path)
        return ast.HeadRef(layer, head, self._s(meta))

    def layer_heads(self, meta: Any, children: list[Token]) -> ast.LayerHeads:
        return ast.LayerHeads(int(children[0].value.split(".")[0]), self._s(meta))

    def layer(self, meta: Any, children: list[Token]) -> ast.MlpRef:
        return ast.MlpRef(int(children[0]), self._s(meta))

    def layer_range(self, meta: Any, children: list[Token]) -> ast.LayerRange:
        return ast.LayerRange(int(children[0]), int(children[1]), self._s(meta))

    def mlp(self, meta: Any, children: list[Token]) -> ast.MlpRef:
        return ast.MlpRef(int(children[0]), self._s(meta))

    def embed(self, meta: Any, children: list[Token]) -> ast.Embed:
        return ast.Embed(self._s(meta))

    def logits(self, meta: Any, children: list[Token]) -> ast.Logits:
        return ast.Logits(self._s(meta))

    def role_target(self, meta: Any, children: list[Token]) -> ast.RoleRef:
        return ast.RoleRef(_unquote(children[0], self.path), self._s(meta))

    def variable_target(self, meta: Any, children: list[Token]) -> ast.VariableRef:
        return ast.VariableRef(str(children[0]), self._s(meta))

    def position_clause(self, meta: Any, children: list[Any]) -> ast.PositionClause:
        return ast.PositionClause(self._ident(children[0]), tuple(children[1:]), self._s(meta))

    def position_list(self, meta: Any, children: list[Any]) -> tuple[Any, ...]:
        return tuple(children)

    def position_ref(self, meta: Any, children: list[Any]) -> ast.PosRef:
        offset = children[1] if len(children) > 1 and children[1] is not None else 0
        return ast.PosRef(str(children[0]), offset, self._s(meta))

    def position_range(self, meta: Any, children: list[ast.PosRef]) -> ast.PosRange:
        return ast.PosRange(children[0], children[1], self._s(meta))

    def plus_offset(self, meta: Any, children: list[Token]) -> int:
        return int(children[0])

    def minus_offset(self, meta: Any, children: list[Token]) -> int:
        return -int(children[0])

    def edge_decl(self, meta: Any, children: list[Any]) -> ast.EdgeDecl:
        channels = tuple(self._ident(t) for t in _present(children[2:])) if len(children) > 2 else None
        return ast.EdgeDecl(children[0], children[1], channels or None, self._s(meta))

    # ---- hypotheses
    def hypothesis_decl(self, meta: Any, children: list[Any]) -> ast.HypothesisDecl:
        on = children[0] if children and isinstance(children[0], ast.Ident) else None
        return ast.HypothesisDecl(on, tuple(children[1:] if on else children), self._s(meta))

    def carries_stmt(self, meta: Any, children: list[Any]) -> ast.CarriesStmt:
        nodes, clauses, variable = children[0], tuple(children[1:-1]), self._ident(children[-1])
        if isinstance(nodes, Token):  # a role's name
            return ast.CarriesStmt((), False, self._str(nodes), clauses, variable, self._s(meta))
        kind, members = nodes
        return ast.CarriesStmt(members, kind == "mlp", None, clauses, variable, self._s(meta))

    # ---- expectations
    def on_clause(self, meta: Any, children: list[Token]) -> ast.Ident:
        return self._ident(children[0])

    def expect_metric(self, meta: Any, children: list[Any]) -> ast.ExpectMetric:
        metric, on, op, number = children
        return ast.ExpectMetric(self._ident(metric), on, str(op), number, self._s(meta))

    def expect_score(self, meta: Any, children: list[Any]) -> ast.ExpectScore:
        target, score, on, op, number = children
        return ast.ExpectScore(target, self._ident(score), on, str(op), number, self._s(meta))

    def expect_attends(self, meta: Any, children: list[Any]) -> ast.ExpectAttends:
        target, queries, keys, on, op, number = children
        return ast.ExpectAttends(target, queries, keys, on, str(op), number, self._s(meta))

    def expect_edge(self, meta: Any, children: list[Any]) -> ast.ExpectEdge:
        sender, receiver, score, on, op, number = children
        return ast.ExpectEdge(sender, receiver, self._ident(score), on, str(op), number, self._s(meta))

    def num_int(self, meta: Any, children: list[Token]) -> ast.Number:
        return ast.Number(float(children[0]), str(children[0]), self._s(meta))

    num_decimal = num_int

    def num_neg_int(self, meta: Any, children: list[Token]) -> ast.Number:
        return ast.Number(-float(children[0]), "-" + str(children[0]), self._s(meta))

    num_neg_decimal = num_neg_int

    # ---- expressions
    def int(self, meta: Any, children: list[Token]) -> ast.IntLit:
        return ast.IntLit(int(children[0]), self._s(meta))

    def string(self, meta: Any, children: list[Token]) -> ast.StrLit:
        return ast.StrLit(_unquote(children[0], self.path), self._s(meta))

    def var(self, meta: Any, children: list[Token]) -> ast.Var:
        return ast.Var(self._variable(children[0]).name, self._s(meta))

    def index(self, meta: Any, children: list[Any]) -> ast.Index:
        return ast.Index(self._ident(children[0]), children[1], self._s(meta))

    def call(self, meta: Any, children: list[Any]) -> ast.Call:
        return ast.Call(self._ident(children[0]), tuple(_present(children[1:])), self._s(meta))

    def list_literal(self, meta: Any, children: list[Any]) -> ast.ListLit:
        return ast.ListLit(tuple(_present(children)), self._s(meta))

    def range(self, meta: Any, children: list[Any]) -> ast.Range:
        return ast.Range(children[0], children[1], self._s(meta))

    def random(self, meta: Any, children: list[Any]) -> ast.Random:
        return ast.Random(children[0], children[1] is not None, self._s(meta))

    def neg(self, meta: Any, children: list[Any]) -> ast.Neg:
        return ast.Neg(children[0], self._s(meta))

    def _binop(self, op: ast.BinOperator, meta: Any, children: list[Any]) -> ast.BinOp:
        return ast.BinOp(op, children[0], children[1], self._s(meta))

    def add(self, meta: Any, children: list[Any]) -> ast.BinOp:
        return self._binop("+", meta, children)

    def sub(self, meta: Any, children: list[Any]) -> ast.BinOp:
        return self._binop("-", meta, children)

    def mul(self, meta: Any, children: list[Any]) -> ast.BinOp:
        return self._binop("*", meta, children)

    def floordiv(self, meta: Any, children: list[Any]) -> ast.BinOp:
        return self._binop("//", meta, children)

    def mod(self, meta: Any, children: list[Any]) -> ast.BinOp:
        return self._binop("%", meta, children)
