"""Lowering of `prompts` blocks, their corruption and metric: AST -> IR prompt sets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from circuitlang.dsl import ast
from circuitlang.errors import CircuitlangError, Span, SpecError
from circuitlang.ir import models as ir
from circuitlang.ir.expressions import Scope, constant_value, lower_assigned, lower_expr, lower_template
from circuitlang.ir.paths import confined, is_file
from circuitlang.ir.stdlib import CORRUPTIONS, GENERATORS, METRICS, PROMPT_SETTINGS
from circuitlang.ir.suggest import did_you_mean


def lower_prompt_set(
    decl: ast.PromptsDecl,
    name: str,
    lists: set[str],
    root: Path,
    outer_corruption: ast.CorruptDecl | None,
    top_metric: ir.Metric | None,
    errors: list[CircuitlangError],
) -> ir.PromptSet:
    """One `prompts` block. `outer_corruption` is a top-level `corrupt` that applies to it.

    When the block's data origin (its file or generator) is itself wrong, checks that depend on
    it (slots, fields, corruption slots) are skipped: one mistake gives one error, not a cascade.
    """
    body = decl.body
    templates = [_template(s, errors) for s in body if isinstance(s, ast.TemplateStmt)]
    origin = _origin(decl, root, bool(templates), errors)
    scope = Scope(lists=set(lists), open_world=origin.open_world)
    loops = tuple(_loop(loop, scope, errors) for stmt in body if isinstance(stmt, ast.ForStmt) for loop in stmt.loops)
    assignments = _assignments([s for s in body if isinstance(s, ast.AssignStmt)], scope, errors)
    slots = None if origin.failed else _slots(templates, origin.generator)
    if not origin.open_world:
        _check_slots_assigned(templates, scope.variables, errors)
    corruption = _corruption_for(decl, outer_corruption, slots, scope, root, errors)
    metrics = [s for s in body if isinstance(s, ast.MetricDecl)]
    _at_most_one(metrics, "`metric` line", "keep one metric per prompt set", errors)
    metric = lower_metric(metrics[0], errors) if metrics else None
    settings = _prompt_settings([s for s in body if isinstance(s, ast.SetDecl)], errors)
    generator = origin.generator
    prefix = settings.get("answer_prefix", GENERATORS[generator.name].answer_prefix if generator else " ")
    prompt_set = ir.PromptSet(
        name=name,
        templates=tuple(templates),
        loops=loops,
        assignments=assignments,
        source=origin.source,
        generator=generator,
        corruption=corruption,
        metric=metric,
        answer_prefix=str(prefix),
        count=settings.get("count"),
        span=decl.span,
    )
    if not origin.failed:
        check_metric_fields(metric or top_metric, prompt_set, errors)
    return prompt_set


@dataclass(frozen=True)
class _Origin:
    """Where a prompt set's rows come from; `failed` when that part of the block was wrong."""

    source: ir.FileSource | None
    generator: ir.Generator | None
    open_world: bool  # a data file or generator supplies names the block does not assign
    failed: bool


def _origin(decl: ast.PromptsDecl, root: Path, has_templates: bool, errors: list[CircuitlangError]) -> _Origin:
    body = decl.body
    sources = [s for s in body if isinstance(s, ast.FromStmt)]
    generators = [s for s in body if isinstance(s, ast.GenerateStmt)]
    _at_most_one([s for s in body if isinstance(s, ast.ForStmt)], "`for` line", "put every loop on one line: for i in 1..9, j in 1..3", errors)
    _at_most_one(sources, "`from` file", "combine the rows into one file", errors)
    _at_most_one(generators, "`generate` line", "use one prompts block per generator", errors)
    source = _file_source(sources[0], root, errors) if sources else None
    generator = _generator(generators[0], errors) if generators else None
    if generators and has_templates:
        errors.append(
            SpecError("a generated prompt set brings its own templates", decl.span, "remove the `template` lines or the `generate` line")
        )
    for stmt in body if generators else ():
        if isinstance(stmt, (ast.ForStmt, ast.FromStmt, ast.AssignStmt)):
            errors.append(
                SpecError(
                    "a generated prompt set brings its own values; this line would be ignored",
                    stmt.span,
                    "remove it, or write the prompts with template/for lines instead",
                )
            )
    if not generators and not has_templates:
        errors.append(
            SpecError("prompts block has no template", decl.span, 'add a line such as: template "{s1} {s2} {s3}"  (or generate ioi(...))')
        )
    failed = (bool(sources) and source is None) or (bool(generators) and generator is None)
    return _Origin(source, generator, bool(sources or generators), failed)


def check_metric_fields(metric: ir.Metric | None, prompt_set: ir.PromptSet, errors: list[CircuitlangError]) -> None:
    """Each metric argument must be an answer field of the prompt set (not a slot)."""
    fields = fields_of(prompt_set)
    if metric is None or fields is None:
        return
    for arg, span in zip(metric.args, metric.arg_spans):
        if arg not in fields:
            why = "is a slot, not an answer field" if arg in slot_names(prompt_set) else "is not defined"
            errors.append(
                SpecError(
                    f"metric argument '{arg}' {why} in prompt set '{prompt_set.name}'",
                    span,
                    f"answer fields there: {', '.join(sorted(fields)) or 'none'}",
                )
            )


def fields_of(prompt_set: ir.PromptSet) -> set[str] | None:
    """Answer fields a prompt set defines; None when a data file may add more."""
    if prompt_set.source is not None:
        return None
    names = {t for a in prompt_set.assignments for t in a.targets} - set(slot_names(prompt_set))
    if prompt_set.generator is not None:
        names |= set(GENERATORS[prompt_set.generator.name].fields)
    return names


def slot_names(prompt_set: ir.PromptSet) -> tuple[str, ...]:
    """Slots of every template, in first-seen order."""
    return _slots(list(prompt_set.templates), prompt_set.generator)


def _slots(templates: list[ir.Template] | tuple[ir.Template, ...], generator: ir.Generator | None) -> tuple[str, ...]:
    ordered: list[str] = list(GENERATORS[generator.name].slots) if generator else []
    for template in templates:
        for slot in template.slots:
            if slot not in ordered:
                ordered.append(slot)
    return tuple(ordered)


def _template(stmt: ast.TemplateStmt, errors: list[CircuitlangError]) -> ir.Template:
    """The template with the slots that could be read, so a typo in one brace does not also
    make every position that uses its slots an error."""
    template, problems = lower_template(stmt.text)
    errors.extend(problems)
    return template


def _at_most_one(stmts: Sequence[ast.PromptStmt], what: str, hint: str, errors: list[CircuitlangError]) -> None:
    for extra in stmts[1:]:
        errors.append(SpecError(f"a prompts block takes one {what}; this is a second one", extra.span, hint))


def _file_source(stmt: ast.FromStmt, root: Path, errors: list[CircuitlangError]) -> ir.FileSource | None:
    try:
        path = confined(stmt.path.value, stmt.path.span, root, "data file")
    except SpecError as error:
        errors.append(error)
        return None
    if path.suffix.lower() not in (".jsonl", ".csv"):
        errors.append(
            SpecError(
                f"cannot read prompts from '{stmt.path.value}': unknown file type",
                stmt.path.span,
                "use a .jsonl file (one object per line) or a .csv with a header",
            )
        )
        return None
    if not is_file(path):
        errors.append(
            SpecError(f"file not found: '{stmt.path.value}' (looked in {path})", stmt.path.span, "paths are relative to the spec file's folder")
        )
        return None
    return ir.FileSource(path=str(path), written=stmt.path.value, span=stmt.span, root=str(root))


def _generator(stmt: ast.GenerateStmt, errors: list[CircuitlangError]) -> ir.Generator | None:
    signature = GENERATORS.get(stmt.generator.name)
    if signature is None:
        errors.append(
            SpecError(f"unknown generator '{stmt.generator.name}'", stmt.generator.span, f"generators: {', '.join(sorted(GENERATORS))}")
        )
        return None
    params = dict(signature.params)
    for kwarg in stmt.kwargs:
        value = constant_value(kwarg.value)
        default = signature.params.get(kwarg.name.name)
        if default is None:
            errors.append(
                SpecError(
                    f"{stmt.generator.name}() has no parameter '{kwarg.name.name}'",
                    kwarg.name.span,
                    f"parameters: {', '.join(signature.params)}",
                )
            )
        elif value is None or type(value) is not type(default):
            errors.append(
                SpecError(
                    f"{kwarg.name.name} must be {_TYPE_WORDS[type(default)]} literal",
                    kwarg.value.span,
                    f"for example {kwarg.name.name} = {default!r}",
                )
            )
        elif kwarg.name.name in signature.choices and value not in signature.choices[kwarg.name.name]:
            allowed = signature.choices[kwarg.name.name]
            errors.append(
                SpecError(
                    f"{kwarg.name.name} must be one of {', '.join(map(str, allowed))}",
                    kwarg.value.span,
                    f'for example {kwarg.name.name} = "{allowed[0]}"',
                )
            )
        else:
            params[kwarg.name.name] = value
    return ir.Generator(name=stmt.generator.name, params=tuple(params.items()), span=stmt.span)


def _loop(loop: ast.Loop, scope: Scope, errors: list[CircuitlangError]) -> ir.Loop:
    """A loop's range may use the variables of loops before it on the line."""
    lowered = ir.Loop(var=loop.var.name, source=lower_expr(loop.source, scope, errors), span=loop.span)
    scope.variables.add(loop.var.name)
    return lowered


def _assignments(stmts: list[ast.AssignStmt], scope: Scope, errors: list[CircuitlangError]) -> tuple[ir.Assignment, ...]:
    """Assignments in order; each may use names assigned on earlier lines."""
    lowered: list[ir.Assignment] = []
    seen: dict[str, ast.Ident] = {}
    for stmt in stmts:
        value = lower_assigned(stmt.value, scope, errors)
        for target in stmt.targets:
            if target.name in seen or target.name in scope.variables - set(seen):
                errors.append(SpecError(f"'{target.name}' is assigned twice", target.span, "give each slot or field one value per prompt"))
            seen[target.name] = target
        scope.variables.update(t.name for t in stmt.targets)
        lowered.append(ir.Assignment(targets=tuple(t.name for t in stmt.targets), value=value, span=stmt.span))
    return tuple(lowered)


def _check_slots_assigned(templates: list[ir.Template], defined: set[str], errors: list[CircuitlangError]) -> None:
    for template in templates:
        for slot in template.slots:
            if slot not in defined:
                errors.append(
                    SpecError(f"slot '{{{slot}}}' has no value", slot_span(template, slot), f"add a line `{slot} = ...` to the prompts block")
                )


def slot_span(template: ir.Template, slot: str) -> Span:
    """The span of `{slot}` inside the template string (slots are unique within a template)."""
    offset = template.text.find("{" + slot + "}")
    column = template.span.column + 1 + max(offset, 0)  # +1 for the opening quote
    return Span(path=template.span.path, line=template.span.line, column=column, end_line=template.span.line, end_column=column + len(slot) + 2)


def _corruption_for(
    decl: ast.PromptsDecl, outer: ast.CorruptDecl | None, slots: tuple[str, ...] | None, scope: Scope, root: Path, errors: list[CircuitlangError]
) -> ir.Corruption | None:
    inner = [s for s in decl.body if isinstance(s, ast.CorruptDecl)]
    _at_most_one(inner, "`corrupt` block", "one corruption per prompt set", errors)
    chosen = inner[0] if inner else outer
    return lower_corruption(chosen, slots, scope, root, errors) if chosen else None


def lower_corruption(
    decl: ast.CorruptDecl, slots: tuple[str, ...] | None, scope: Scope, root: Path, errors: list[CircuitlangError]
) -> ir.Corruption | None:
    """`slots` is None when the prompt set's own origin was wrong: slot checks are then skipped."""
    kind = CORRUPTIONS.get(decl.kind.name)
    if kind is None:
        errors.append(SpecError(f"unknown corruption '{decl.kind.name}'", decl.kind.span, f"corruptions: {', '.join(CORRUPTIONS)}"))
        return None
    args = _corrupt_args(decl)
    if args is None or len(args) != kind.n_args:
        errors.append(SpecError(f"corrupt {decl.kind.name} takes {kind.n_args} literal argument(s)", decl.kind.span, kind.description))
        return None
    if kind.needs_body != (decl.body is not None):
        errors.append(
            SpecError(
                f"corrupt {decl.kind.name} " + ("needs a { ... } body" if kind.needs_body else "takes no { ... } body"),
                decl.kind.span,
                kind.description,
            )
        )
        return None
    missing = [slot for slot in kind.requires if slots is not None and slot not in slots]
    if missing:
        errors.append(SpecError(f"corrupt {decl.kind.name} needs the slot(s) {', '.join(missing)}", decl.kind.span, kind.description))
        return None
    assignments = _corrupt_assignments(decl.body or (), slots, scope, errors)
    _check_slot_args(decl, args, slots, errors)
    path = _corrupt_file(decl, args, root, errors)
    return ir.Corruption(kind=decl.kind.name, args=args, assignments=assignments, path=path, span=decl.span, root=str(root) if path else "")


def _corrupt_args(decl: ast.CorruptDecl) -> tuple[ir.Value, ...] | None:
    """Arguments are literals, or slot names (swap(s1, s2)), which are kept as their text; None
    when one of them is computed."""
    args = tuple(a.name if isinstance(a, ast.Var) else constant_value(a) for a in decl.args or ())
    values = tuple(a for a in args if a is not None)
    return values if len(values) == len(args) else None


def _corrupt_assignments(
    body: tuple[ast.AssignStmt, ...], slots: tuple[str, ...] | None, scope: Scope, errors: list[CircuitlangError]
) -> tuple[ir.Assignment, ...]:
    for stmt in body:
        for target in stmt.targets:
            if slots is not None and target.name not in slots:
                errors.append(
                    SpecError(
                        f"corruption assigns '{target.name}', which is not a slot",
                        target.span,
                        did_you_mean(target.name, slots) + f"slots: {', '.join(slots)}",
                    )
                )
    inner = Scope(variables=set(scope.variables), lists=scope.lists, open_world=scope.open_world)
    return _assignments_allowing_redefinition(body, inner, errors)


def _assignments_allowing_redefinition(
    body: tuple[ast.AssignStmt, ...], scope: Scope, errors: list[CircuitlangError]
) -> tuple[ir.Assignment, ...]:
    # A corruption re-assigns clean slots on purpose, so "assigned twice" does not apply here.
    return tuple(
        ir.Assignment(targets=tuple(t.name for t in s.targets), value=lower_assigned(s.value, scope, errors), span=s.span) for s in body
    )


def _check_slot_args(decl: ast.CorruptDecl, args: tuple[ir.Value, ...], slots: tuple[str, ...] | None, errors: list[CircuitlangError]) -> None:
    if decl.kind.name != "swap" or slots is None:
        return
    exprs = decl.args or ()  # as many as `args`: lower_corruption checked their number
    for arg, expr in zip(args, exprs):
        if arg not in slots:
            errors.append(
                SpecError(f"swap names '{arg}', which is not a slot", expr.span, did_you_mean(str(arg), slots) + f"slots: {', '.join(slots)}")
            )
    if args[0] == args[1]:
        errors.append(
            SpecError(
                f"swap needs two different slots; both are '{args[0]}'",
                exprs[1].span,
                "a swap of a slot with itself leaves every prompt unchanged",
            )
        )


def _corrupt_file(decl: ast.CorruptDecl, args: tuple[ir.Value, ...], root: Path, errors: list[CircuitlangError]) -> str | None:
    if decl.kind.name != "file":
        return None
    span = (decl.args or ())[0].span  # `file` has one argument: lower_corruption checked it
    try:
        path = confined(str(args[0]), span, root, "corrupt file")
    except SpecError as error:
        errors.append(error)
        return None
    if path.suffix.lower() not in (".jsonl", ".csv"):
        errors.append(
            SpecError(
                f"cannot read corrupt rows from '{args[0]}': unknown file type",
                span,
                "use a .jsonl file (one object per line) or a .csv with a header",
            )
        )
        return None
    if not is_file(path):
        errors.append(SpecError(f"file not found: '{args[0]}' (looked in {path})", span, "paths are relative to the spec file's folder"))
        return None
    return str(path)


def lower_metric(decl: ast.MetricDecl, errors: list[CircuitlangError]) -> ir.Metric | None:
    kind = METRICS.get(decl.name.name)
    if kind is None:
        errors.append(SpecError(f"unknown metric '{decl.name.name}'", decl.name.span, f"metrics: {', '.join(METRICS)}"))
        return None
    arity = kind.arity
    args = decl.args or ()
    if len(args) != arity:
        errors.append(
            SpecError(
                f"metric {decl.name.name} takes {arity} answer field(s), got {len(args)}",
                decl.span,
                "for example: metric logit_diff(answer, wrong)",
            )
        )
        return None
    return ir.Metric(name=decl.name.name, args=tuple(a.name for a in args), arg_spans=tuple(a.span for a in args), span=decl.span)


_TYPE_WORDS = {int: "an integer", str: "a string", float: "a number"}


class _PromptSettings(TypedDict, total=False):
    """The `set` lines of a prompts block (PROMPT_SETTINGS)."""

    answer_prefix: str
    count: int


def _prompt_settings(stmts: list[ast.SetDecl], errors: list[CircuitlangError]) -> _PromptSettings:
    settings: _PromptSettings = {}
    for stmt in stmts:
        expected = PROMPT_SETTINGS.get(stmt.key.name)
        value = None if isinstance(stmt.value, ast.Var) else stmt.value.value
        if expected is None:
            errors.append(
                SpecError(
                    f"unknown prompt-set setting '{stmt.key.name}'", stmt.key.span, f"settings inside prompts: {', '.join(PROMPT_SETTINGS)}"
                )
            )
        elif type(value) is not expected or isinstance(stmt.value, ast.Var):
            errors.append(
                SpecError(
                    f"{stmt.key.name} must be {_TYPE_WORDS[expected]}",
                    stmt.value.span,
                    'for example: set answer_prefix = " "' if expected is str else "set count = 50",
                )
            )
        elif stmt.key.name in settings:
            errors.append(SpecError(f"'{stmt.key.name}' is set twice", stmt.key.span, "keep one of the two lines"))
        elif stmt.key.name == "answer_prefix" and isinstance(value, str):
            settings["answer_prefix"] = value
        elif stmt.key.name == "count" and isinstance(value, int) and value >= 1:
            settings["count"] = value
        else:  # a count below 1: every other value was refused above
            errors.append(SpecError("count must be at least 1", stmt.value.span, "set count = 50"))
    return settings
