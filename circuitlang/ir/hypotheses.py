"""Lowering of `hypothesis` blocks: a high-level model of one prompt set (variables computed from
each prompt, the answer as a function of them) and the nodes that carry its variables.

Checked here, before any model runs: the prompt set a block is about, the names its expressions
use, that the answer depends on every carried value, and that the carriers are nodes of the circuit
at positions of the prompt set's templates (docs/language.md, "Hypotheses: what nodes carry").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from circuitlang.dsl import ast
from circuitlang.dsl.printer import carrier_text
from circuitlang.errors import CircuitlangError, Span, SpecError
from circuitlang.ir import models as ir
from circuitlang.ir.circuit import _PositionChecker, expand_member, where
from circuitlang.ir.expressions import Scope, lower_assigned
from circuitlang.ir.prompt_sets import fields_of, slot_names
from circuitlang.ir.suggest import did_you_mean

ANSWER = "answer"  # the line `answer = ...` of a block: the answer, not a variable


@dataclass(frozen=True)
class Hypotheses:
    """The hypotheses that lowered, and what claims about the others need to know: the prompt sets
    whose block had errors, and whether a block's prompt set could not be told. A claim about
    such a block is not checked further; the block's own errors say what to fix."""

    lowered: tuple[ir.Hypothesis, ...] = ()
    broken: frozenset[str] = frozenset()
    unresolved: bool = False

    def declared(self) -> int:
        return len(self.lowered) + len(self.broken)


def lower_hypotheses(
    items: list[ast.Item],
    circuit: ir.Circuit,
    prompt_sets: tuple[ir.PromptSet, ...],
    lists: set[str],
    shape: ir.ModelShape | None,
    model: ir.ModelRef,
    errors: list[CircuitlangError],
) -> Hypotheses:
    lowered: dict[str, ir.Hypothesis] = {}
    first: dict[str, ast.HypothesisDecl] = {}
    broken: set[str] = set()
    unresolved = False
    for decl in (item for item in items if isinstance(item, ast.HypothesisDecl)):
        prompt_set = _prompt_set(decl, prompt_sets, errors)
        if prompt_set is None:
            unresolved = True
            continue
        name = prompt_set.name
        if name in first:
            errors.append(
                SpecError(
                    f"a second hypothesis for prompt set '{name}' (the first is at {where(first[name].span, decl.span)})",
                    decl.span,
                    "a prompt set has one hypothesis: merge the two blocks, or write `hypothesis on OTHER` for another prompt set",
                )
            )
            continue
        first[name] = decl
        before = len(errors)
        hypothesis = _Block(decl, prompt_set, circuit, lists, shape, model, errors).lower()
        if hypothesis is None or len(errors) > before:
            broken.add(name)
        else:
            lowered[name] = hypothesis
    return Hypotheses(tuple(lowered.values()), frozenset(broken), unresolved)


def _prompt_set(decl: ast.HypothesisDecl, prompt_sets: tuple[ir.PromptSet, ...], errors: list[CircuitlangError]) -> ir.PromptSet | None:
    """The prompt set a block is about; None (and an error, unless the spec has no prompt sets,
    which is an error of its own) when it cannot be told."""
    names = [p.name for p in prompt_sets]
    if decl.on is None:
        if len(prompt_sets) == 1:
            return prompt_sets[0]
        if prompt_sets:
            errors.append(
                SpecError(
                    "with several prompt sets a hypothesis says which one it models",
                    decl.span,
                    f"write `hypothesis on NAME {{`; prompt sets: {', '.join(names)}",
                )
            )
        return None
    found = next((p for p in prompt_sets if p.name == decl.on.name), None)
    if found is None and prompt_sets:
        errors.append(
            SpecError(
                f"no prompt set named '{decl.on.name}'",
                decl.on.span,
                did_you_mean(decl.on.name, names) + f"prompt sets: {', '.join(names)}",
            )
        )
    return found


def _query_clause(nodes: list[ir.Node]) -> str:
    """The clause that gives these nodes their query positions on a circuit line."""
    kinds = {node.kind for node in nodes}
    return "`at`" if kinds == {"mlp"} else "`q`" if kinds == {"head"} else "`q` or `at`"


def _given_names(prompt_set: ir.PromptSet) -> dict[str, str]:
    """The names a prompt set gives each prompt, with what each is: its slots, its answer fields
    (a generator's too) and its loop variables, in that order."""
    given = {slot: "a slot" for slot in slot_names(prompt_set)}
    for name in sorted(fields_of(prompt_set) or ()):
        given.setdefault(name, "a field")
    for loop in prompt_set.loops:
        given.setdefault(loop.var, "a loop variable")
    return given


class _Block:
    """One `hypothesis` block, lowered statement by statement: an expression may use the prompt
    set's names and the variables on earlier lines; carriers may name any variable of the block."""

    def __init__(
        self,
        decl: ast.HypothesisDecl,
        prompt_set: ir.PromptSet,
        circuit: ir.Circuit,
        lists: set[str],
        shape: ir.ModelShape | None,
        model: ir.ModelRef,
        errors: list[CircuitlangError],
    ) -> None:
        self.decl, self.prompt_set, self.circuit, self.lists = decl, prompt_set, circuit, lists
        self.shape, self.model, self.errors = shape, model, errors
        self.given = _given_names(prompt_set)
        # A data file's columns are read when the prompts are expanded, not here; a block whose
        # origin (its generator) was wrong has names nobody can know: every name is accepted.
        self.open_world = prompt_set.source is not None or (not prompt_set.templates and prompt_set.generator is None)
        self.members = {member.node: member for member in circuit.nodes}
        self.checker = _PositionChecker((prompt_set,), errors)
        self.variables: dict[str, ir.Variable] = {}
        self.written: dict[str, Span] = {}  # where each variable is first assigned, for "used before its line"
        for target in (t for stmt in decl.body if isinstance(stmt, ast.AssignStmt) for t in stmt.targets if t.name != ANSWER):
            self.written.setdefault(target.name, target.span)
        self.answer: ir.Expr | None = None
        self.answer_span: Span | None = None

    def lower(self) -> ir.Hypothesis | None:
        carrier_lines: list[ast.CarriesStmt] = []
        before = len(self.errors)
        for stmt in self.decl.body:
            if isinstance(stmt, ast.CarriesStmt):
                carrier_lines.append(stmt)
            else:
                self._assignment(stmt)
        if self.answer is None:
            self.errors.append(
                SpecError(
                    "the hypothesis has no `answer = ...` line",
                    self.decl.span,
                    "say what the answer is as a function of the variables, e.g. `answer = next`",
                )
            )
        # With a line of the model wrong what the answer depends on is not known: its errors say
        # what to fix, and no carrier is reported for what follows from them.
        used = self._used_by_answer() if len(self.errors) == before else None
        carriers = tuple(carrier for carrier in (self._carrier(stmt, used) for stmt in carrier_lines) if carrier is not None)
        if self.answer is None:
            return None
        return ir.Hypothesis(
            prompt_set=self.prompt_set.name,
            variables=tuple(self.variables.values()),
            answer=self.answer,
            carriers=carriers,
            span=self.decl.span,
        )

    # ---- variables and the answer
    def _assignment(self, stmt: ast.AssignStmt) -> None:
        if len(stmt.targets) > 1:
            first, second = stmt.targets[0].name, stmt.targets[1].name
            self.errors.append(
                SpecError(
                    "a hypothesis names one value per line",
                    stmt.targets[1].span,
                    f"write `{first} = ...` and `{second} = ...` on lines of their own",
                )
            )
            return
        target = stmt.targets[0]
        value = self._expression(stmt.value)
        if target.name == ANSWER:
            if self.answer_span is not None:
                self.errors.append(
                    SpecError(
                        f"a second `answer = ...` line (the first is at {where(self.answer_span, stmt.span)})",
                        target.span,
                        "a hypothesis has one answer: keep one of the two lines",
                    )
                )
            else:
                self.answer, self.answer_span = value, stmt.span
            return
        what = self.given.get(target.name)
        if what is not None:
            self.errors.append(
                SpecError(
                    f"'{target.name}' is {what} of prompt set '{self.prompt_set.name}'; a variable needs a name of its own",
                    target.span,
                    f"rename the variable, e.g. {target.name}_value; a carrier can carry {target.name} itself",
                )
            )
        elif target.name in self.variables:
            first_span = self.variables[target.name].span
            self.errors.append(
                SpecError(
                    f"variable '{target.name}' is assigned twice (first at {where(first_span, stmt.span)})",
                    target.span,
                    "give each variable one line, or another name",
                )
            )
        else:
            self.variables[target.name] = ir.Variable(name=target.name, value=value, span=stmt.span)

    def _expression(self, expr: ast.Expr) -> ir.Expr:
        """An expression over the names known on this line. Functions and lists are checked by the
        expression lowering; the names and `random` here."""
        scope = Scope(variables=set(self.given) | set(self.variables), lists=self.lists, open_world=True)
        value = lower_assigned(expr, scope, self.errors)
        randoms = [sub for sub in ir.subexpressions(value) if isinstance(sub, ir.RandomE)]
        if randoms:
            self.errors.append(
                SpecError(
                    "`random` in a hypothesis",
                    randoms[0].span,
                    "a hypothesis computes each value from the prompt: write an expression over its slots, fields and variables",
                )
            )
        for sub in ir.subexpressions(value):
            if isinstance(sub, ir.VarE) and not self._known(sub.name) and sub.name not in self.lists:
                self.errors.append(self._unknown(sub.name, sub.span))
        return value

    def _known(self, name: str) -> bool:
        return name in self.given or name in self.variables or self.open_world

    def _names(self) -> list[str]:
        return [*self.given, *self.variables]

    def _unknown(self, name: str, span: Span) -> SpecError:
        if name in self.written and name not in self.given:
            return SpecError(
                f"'{name}' is used before its line (line {self.written[name].line})",
                span,
                f"a variable may use the variables on earlier lines: move `{name} = ...` above this line",
            )
        return SpecError(
            f"unknown name '{name}' in the hypothesis on {self.prompt_set.name}",
            span,
            did_you_mean(name, self._names())
            + f"names here: {', '.join(self._names())} (the prompt set's slots, fields and loop variables, and the variables on earlier lines)",
        )

    def _used_by_answer(self) -> set[str]:
        """The names the answer depends on, directly or through variables."""
        used: set[str] = set()
        pending = [self.answer] if self.answer is not None else []
        while pending:
            for sub in ir.subexpressions(pending.pop()):
                if isinstance(sub, ir.VarE) and sub.name not in used:
                    used.add(sub.name)
                    if sub.name in self.variables:
                        pending.append(self.variables[sub.name].value)
        return used

    # ---- carriers
    def _carrier(self, stmt: ast.CarriesStmt, used: set[str] | None) -> ir.Carrier | None:
        problems = len(self.errors)
        self._check_carried(stmt.variable, used)
        nodes = self._nodes(stmt)
        at = self._at(stmt.clauses)
        sites = self._sites(stmt, nodes, at)
        if len(self.errors) > problems or not sites:
            return None
        role = stmt.role.value if stmt.role is not None else None
        return ir.Carrier(sites=sites, variable=stmt.variable.name, role=role, text=carrier_text(stmt), span=stmt.span)

    def _check_carried(self, variable: ast.Ident, used: set[str] | None) -> None:
        name = variable.name
        if not self._known(name):
            self.errors.append(
                SpecError(
                    f"'{name}' is not a slot, field or variable of the hypothesis on {self.prompt_set.name}",
                    variable.span,
                    did_you_mean(name, self._names()) + f"a carrier carries one of: {', '.join(self._names())}",
                )
            )
        elif used is not None and self.answer is not None and name not in used:
            depends = [known for known in self._names() if known in used]
            self.errors.append(
                SpecError(
                    f"the answer does not use {name}: an interchange on it predicts no change",
                    variable.span,
                    f"carry a value the answer depends on ({', '.join(depends) or 'it uses none'}), or use {name} in the answer",
                )
            )

    def _nodes(self, stmt: ast.CarriesStmt) -> list[ir.Node]:
        """The carrier's nodes, each a node of the circuit."""
        if stmt.role is not None:
            roles = self.circuit.roles()
            name = stmt.role.value
            if name not in roles:
                self.errors.append(
                    SpecError(
                        f'no role named "{name}"',
                        stmt.role.span,
                        did_you_mean(name, roles) + f"roles: {', '.join(repr(r) for r in roles) or 'none declared'}",
                    )
                )
                return []
            return list(roles[name])
        found: list[ir.Node] = []
        for member in stmt.members:
            for node, span in expand_member(member, self.shape, self.model, self.errors):
                if node not in self.members:
                    self.errors.append(
                        SpecError(f"{node} is not in the circuit", span, f"add {node} to a role (or an `mlp` line), or carry with another node")
                    )
                elif node in found:
                    self.errors.append(SpecError(f"{node} is listed twice", span, "list each node of a carrier once"))
                else:
                    found.append(node)
        return found

    def _at(self, clauses: tuple[ast.PositionClause, ...]) -> tuple[ir.Position, ...] | None:
        """The positions of an `at` clause; None without one."""
        at: tuple[ir.Position, ...] | None = None
        for clause in clauses:
            kind = clause.kind.name
            if kind != "at":
                self.errors.append(
                    SpecError(
                        f"'{kind}' is not a position clause of a carrier",
                        clause.kind.span,
                        "a carrier takes `at POSITIONS`, where its nodes carry the value; without it, each node's q positions "
                        "(an MLP's at positions) from the circuit",
                    )
                )
            elif at is not None:
                self.errors.append(SpecError("'at' is given twice", clause.kind.span, "list every position after one at"))
            else:
                at = tuple(self.checker.lower(p) for p in clause.positions)
        return at

    def _sites(self, stmt: ast.CarriesStmt, nodes: list[ir.Node], at: tuple[ir.Position, ...] | None) -> tuple[ir.Site, ...]:
        if at is not None:
            return tuple(ir.Site(node=node, positions=at) for node in nodes)
        everywhere = [node for node in nodes if self.members[node].q is None]
        if everywhere:
            listed = ", ".join(map(str, everywhere))
            verb = "carries" if len(everywhere) == 1 else "carry"
            at_end = ast.PositionClause(ast.Ident("at", stmt.span), (ast.PosRef("end", 0, stmt.span),), stmt.span)
            self.errors.append(
                SpecError(
                    f"say where {listed} {verb} {stmt.variable.name}: add `at end`",
                    stmt.span,
                    f"the circuit keeps {listed} at every position (its line has no {_query_clause(everywhere)} clause); write the "
                    f"positions where the value is carried, e.g. `{carrier_text(replace(stmt, clauses=(at_end,)))}`",
                )
            )
            return ()
        return tuple(ir.Site(node=node, positions=self.members[node].q or ()) for node in nodes)
