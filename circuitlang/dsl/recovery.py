"""Reading on after a syntax error, so that one pass reports every statement that does not parse.

After an error the rest of the broken statement is skipped, up to the `;` or newline that ends it
(newlines inside brackets, and whole `{ }` blocks opened in it, are skipped with it), or up to the
`}` that closes the block around it. The LALR parser's stack is then cut back to where that
separator or brace is accepted and a statement can follow: the start of the next statement in the
same block. Each broken statement gives one error, since nothing after an error inside the same
statement is read as a statement of its own. Recovery stops (the errors found so far stand) at the
end of the file and where no statement can follow: before the `circuitlang N` header.

A mistake in a block's braces would make every later line of the block an error; so the lines are
read as what they most likely are:
- the parser wanted `{` and nothing else (`prompts NAME` without it): the block is skipped up to
  its `}`, as if the `{` were there;
- at top level, a broken statement that can only stand in a block (`template`, `for`, `from`,
  `generate`, an assignment) is a line of a block whose opening was lost: skipped up to its `}`;
- inside a block, a statement that can only stand at top level (`role`, `edge`, ...) after an
  error means the block was not closed: the block is closed there; and a `prompts` or `hypothesis` line
  inside a block closes it before that line, which is then read as the start of the next block.
A block taken as missing its `{` also ends before a line that can only stand at top level.

The parser state and the lexer position are Lark's (`UnexpectedInput.interactive_parser`); the
skipped text is lexed with the contextual lexer's root lexer, which knows every terminal.
"""

from __future__ import annotations

import re
from copy import copy
from typing import Iterator

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import AbstractBasicLexer, ContextualLexer, LexerState, LineCounter
from lark.parser_frontends import PostLexConnector
from lark.parsers.lalr_interactive_parser import InteractiveParser
from lark.parsers.lalr_parser_state import ParserState

SEPARATORS = frozenset(("_NL", "SEMICOLON"))
OPENING, CLOSING = frozenset(("LPAR", "LSQB", "LBRACE")), frozenset(("RPAR", "RSQB", "RBRACE"))
# First words of statements that stand only at top level, or only in a prompts block
# (docs/language.md, section 2); an assignment, the other block statement, starts with a NAME.
TOP_LEVEL_ONLY = frozenset(("CIRCUIT", "USE", "LIST", "PROMPTS", "ABLATE", "ROLE", "MLP", "EDGE", "EXPECT", "HYPOTHESIS"))
# The blocks that open at top level only, with the tokens that may follow their keyword up to the
# `{`: `prompts {`, `prompts NAME {`, `hypothesis {`, `hypothesis on NAME {`.
TOP_LEVEL_BLOCKS = {"PROMPTS": (("LBRACE",), ("NAME", "LBRACE")), "HYPOTHESIS": (("LBRACE",), ("ON", "NAME", "LBRACE"))}
BLOCK_ONLY = frozenset(("TEMPLATE", "FOR", "FROM", "GENERATE"))
# A first token of a statement at top level, in a prompts block and in a corrupt block.
STATEMENT_PROBES = ("ROLE", "TEMPLATE", "NAME")
# Text that neither ends a statement nor opens a group, a string or a comment: skipped as a whole.
PLAIN_TEXT = re.compile(r'[^\s;{}()\[\]"#]+')
# What follows a `}` that closes a block; a `}` with more of its line after it is stray text.
CLOSE_FOLLOWERS = SEPARATORS | {"RBRACE", None}


def later_errors(error: UnexpectedInput) -> Iterator[UnexpectedInput]:
    """The syntax errors after `error`, one per broken statement, in source order. An exception of
    the lexer's post-processing (an expression nested too deep) passes through and ends them."""
    statement_starts: dict[tuple[int, ...], bool] = {}  # per parser stack, for this text's errors
    while _Recovery(error, statement_starts).resynchronise():
        try:
            error.interactive_parser.resume_parse()
            return
        except UnexpectedInput as next_error:
            yield next_error
            error = next_error


class _Recovery:
    """The parser and lexer left by one error, and the steps that take them to the next statement."""

    def __init__(self, error: UnexpectedInput, statement_starts: dict[tuple[int, ...], bool]) -> None:
        interactive = error.interactive_parser
        self.error, self.parser = error, interactive.parser_state
        self.lexer, self.root = _lexer_state(interactive), _root_lexer(interactive)
        self.statement_starts = statement_starts
        self.brackets, self.braces = _open_groups(self.parser)

    def resynchronise(self) -> bool:
        """Skip the rest of the broken statement and leave the parser at the start of the next one;
        False where parsing cannot go on."""
        token = getattr(self.error, "token", None)
        if token is not None and token.type == "$END":
            return False
        if self._block_inside_a_block():
            assert token is not None, "the error is at a `prompts` or `hypothesis` token"
            return self._reopen_at_top_level(token)
        resume = self._end_of_statement()
        if resume is None:
            return False
        if resume.type in SEPARATORS and self.braces and self._peek() in TOP_LEVEL_ONLY:
            if not self._close_blocks(resume):
                return False
        return self._feed_popping(resume) and _header_parsed(self.parser)

    # ---- skipping the broken statement
    def _end_of_statement(self) -> Token | None:
        """Read past the broken statement; the separator or `}` it ends at (not yet fed to the
        parser), or None at the end of the file."""
        skip = _Skip(self.brackets, in_block=self.braces > 0)
        if _only_accepts(self.parser, "LBRACE"):
            skip.brace_pending = True
        elif self._lost_block_line():
            skip.assume_block()
        if isinstance(self.error, UnexpectedToken):  # the token is already lexed: the first one skipped
            token: Token | None = self.error.token
        else:
            _pass_bad_character(self.lexer)
            token = _next_token(self.lexer, self.root)
        while token is not None:
            if skip.ends_at(token) and (token.type != "RBRACE" or self._peek(past_separators=False) in CLOSE_FOLLOWERS):
                return token
            if token.type in SEPARATORS and skip.in_missing_block() and self._peek() in TOP_LEVEL_ONLY:
                return token  # a block whose `{` is missing ends where a top-level statement starts
            token = _next_token(self.lexer, self.root)
        return None

    def _lost_block_line(self) -> bool:
        """Whether the error is at the first word of a block's statement standing at top level."""
        if not isinstance(self.error, UnexpectedToken) or self.braces or not self._starts_statements():
            return False
        kind = self.error.token.type
        return kind in BLOCK_ONLY or (kind == "NAME" and self._peek(past_separators=False) in ("EQUAL", "COMMA"))

    def _block_inside_a_block(self) -> bool:
        """A `prompts` or `hypothesis` block opening inside another block: the block before it was
        not closed."""
        if not (isinstance(self.error, UnexpectedToken) and self.error.token.type in TOP_LEVEL_BLOCKS and self.braces):
            return False
        kinds = self._kinds_ahead()
        ahead = tuple(next(kinds, None) for _ in range(3))
        opens = any(ahead[: len(opening)] == opening for opening in TOP_LEVEL_BLOCKS[self.error.token.type])
        return opens and self._starts_statements()

    def _peek(self, past_separators: bool = True) -> str | None:
        """The kind of the next token (past separators, unless told otherwise), without reading it."""
        kinds = self._kinds_ahead()
        kind = next(kinds, None)
        while past_separators and kind in SEPARATORS:
            kind = next(kinds, None)
        return kind

    def _kinds_ahead(self) -> Iterator[str]:
        """The kinds of the tokens after the lexer's position, read on a copy of it."""
        ahead = LexerState(self.lexer.text, _copied(self.lexer.line_ctr), self.lexer.last_token)
        token = _next_token(ahead, self.root)
        while token is not None:
            yield token.type
            token = _next_token(ahead, self.root)

    # ---- setting the parser at the next statement
    def _reopen_at_top_level(self, token: Token) -> bool:
        """Close the open blocks before `token` and read it as a top-level statement, so the block
        it opens is read (and checked) too."""
        separator = Token.new_borrow_pos("_NL", "\n", token)
        return self._close_blocks(token) and self._feed_popping(separator) and _fed(self.parser, token)

    def _close_blocks(self, at: Token) -> bool:
        """Close every open block, as if `}` stood before `at`."""
        while _open_groups(self.parser)[1]:
            if not self._feed_popping(Token.new_borrow_pos("RBRACE", "}", at)):
                return False
        return True

    def _feed_popping(self, token: Token) -> bool:
        """Cut the stack back to the nearest state that takes `token`, and feed it. A separator
        must lead to where a statement can start: the grammar's optional separators around a
        block's statements also take one where only `}` may follow, and LALR tables may accept a
        token by a reduction that then fails; such states are passed over."""
        parser = self.parser
        states = parser.parse_conf.states
        while True:
            if token.type in states[parser.position]:
                kept = list(parser.state_stack), list(parser.value_stack)
                if _fed(parser, token) and (token.type not in SEPARATORS or self._starts_statements()):
                    return True
                parser.state_stack[:], parser.value_stack[:] = kept
            if len(parser.state_stack) == 1:
                return False
            parser.state_stack.pop()
            parser.value_stack.pop()

    def _starts_statements(self) -> bool:
        """Whether a statement can start here: a probe of a statement's first token is shifted.
        The table alone cannot tell, since its reductions take any token that follows a separator
        anywhere. The probe runs on a copy, without building trees; its answer depends only on the
        stack of states, and a flood of errors meets the same few stacks again and again."""
        stack = tuple(self.parser.state_stack)
        if stack not in self.statement_starts:
            quiet = copy(self.parser.parse_conf)
            quiet.callbacks = {}
            self.statement_starts[stack] = any(
                _fed(ParserState(quiet, self.parser.lexer, list(stack), list(self.parser.value_stack)), Token(kind, ""))
                for kind in STATEMENT_PROBES
            )
        return self.statement_starts[stack]


class _Skip:
    """Counts the brackets and braces of the skipped text, to tell where the statement ends: at a
    separator outside them, or at a `}` that closes the block the statement is in."""

    def __init__(self, brackets: int, in_block: bool) -> None:
        self.brackets, self.braces, self.in_block = brackets, 0, in_block
        self.brace_pending = False  # the parser wanted `{` and only `{`: it is awaited
        self.after_separator = self.assumed = False

    def assume_block(self) -> None:
        """The text is inside a block whose `{` is not there: skip up to its `}`."""
        self.braces, self.assumed, self.brace_pending = 1, True, False

    def in_missing_block(self) -> bool:
        """Between the lines of a block whose `{` is awaited or missing."""
        return self.brace_pending or (self.assumed and self.braces == 1 and self.brackets == 0)

    def ends_at(self, token: Token) -> bool:
        kind = token.type
        if self.brace_pending and self._settles_the_brace(token):
            return False
        if kind == "LBRACE":
            self.braces += 1
        elif kind == "RBRACE":
            if self.braces == 0:  # closes the block around the statement; at top level it is stray
                return self.in_block
            self.braces -= 1
        elif kind in OPENING:
            self.brackets += 1
        elif kind in CLOSING:
            self.brackets = max(0, self.brackets - 1)
        return kind in SEPARATORS and self.brackets == 0 and self.braces == 0

    def _settles_the_brace(self, token: Token) -> bool:
        """While `{` is awaited: True when `token` is taken by that question. A `{` opens the block;
        separators are passed; another first token of a line means the `{` was left out."""
        if token.type in SEPARATORS:
            self.after_separator = True
            return True
        if token.type == "LBRACE":
            self.brace_pending, self.braces = False, 1
            return True
        if self.after_separator:
            self.assume_block()
        return False


def _lexer_state(interactive: InteractiveParser) -> LexerState:
    """Where the lexer stopped. Lark types it Optional for a thread made before its text; the
    parse that raised had its text."""
    state = interactive.lexer_thread.state
    assert state is not None, "a parse that raised has a lexer state"
    return state


def _root_lexer(interactive: InteractiveParser) -> AbstractBasicLexer:
    """The contextual lexer's root lexer, which knows every terminal; the parser's post-lexer
    (parser.py) wraps the contextual lexer in a PostLexConnector."""
    connector = interactive.lexer_thread.lexer
    assert isinstance(connector, PostLexConnector), "the parser has a post-lexer"
    contextual = connector.lexer
    assert isinstance(contextual, ContextualLexer), "the parser's lexer is contextual"
    return contextual.root_lexer


def _pass_bad_character(lexer: LexerState) -> None:
    """Step over the character no token starts with, and the plain text after it. A `"` starts a
    string left open, which runs to the end of its line: step over the whole line, whose braces are
    text."""
    text, position = lexer.text.text, lexer.line_ctr.char_pos
    if text[position] == '"':
        end = text.find("\n", position)
        end = len(text) if end < 0 else max(end, position + 1)
    else:
        plain = PLAIN_TEXT.match(text, position)
        end = plain.end() if plain else position + 1
    lexer.line_ctr.feed(text[position:end])


def _next_token(lexer: LexerState, root: AbstractBasicLexer) -> Token | None:
    """The next token of any kind, stepping over characters no token starts with; None at the end."""
    while True:
        try:
            return root.next_token(lexer)
        except EOFError:
            return None
        except UnexpectedCharacters:
            _pass_bad_character(lexer)


def _copied(line_ctr: LineCounter) -> LineCounter:
    duplicate = type(line_ctr)(line_ctr.newline_char)
    duplicate.char_pos, duplicate.line, duplicate.column, duplicate.line_start_pos = (
        line_ctr.char_pos,
        line_ctr.line,
        line_ctr.column,
        line_ctr.line_start_pos,
    )
    return duplicate


def _fed(parser: ParserState, token: Token) -> bool:
    try:
        parser.feed_token(token)
    except UnexpectedToken:
        return False
    return True


def _open_groups(parser: ParserState) -> tuple[int, int]:
    """How many brackets ( [ and braces { are open. The stack keeps an opening token until the
    construct it opens is complete, so the open ones are those still on it."""
    brackets = braces = 0
    for value in parser.value_stack:
        kind = value.type if isinstance(value, Token) else None
        if kind == "LBRACE" or kind == "RBRACE":
            braces += 1 if kind == "LBRACE" else -1
        elif kind in OPENING or kind in CLOSING:
            brackets += 1 if kind in OPENING else -1
    return max(0, brackets), max(0, braces)


def _only_accepts(parser: ParserState, kind: str) -> bool:
    choices = parser.parse_conf.states[parser.position]  # terminals are upper case, rules lower case
    return kind in choices and [name for name in choices if name.isupper()] == [kind]


def _header_parsed(parser: ParserState) -> bool:
    """Statements follow the header: a resynchronisation that left none behind goes nowhere."""
    return any(getattr(value, "data", None) == "header" for value in parser.value_stack)
