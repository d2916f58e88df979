"""AST -> IR: resolve `use` lines, lower every declaration, and collect every error at once.

`load_spec(path)` is the front door: read, parse, lower. Errors are gathered per statement and
raised together (`SpecErrors`) so a researcher fixes a file in one round, not ten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from circuitlang.dsl import ast
from circuitlang.dsl.parser import SUPPORTED_VERSIONS
from circuitlang.errors import CircuitlangError, ModelError, Span, SpecError, raise_if_any
from circuitlang.ir import models as ir
from circuitlang.ir.circuit import lower_circuit
from circuitlang.ir.expectations import lower_expectations
from circuitlang.ir.expressions import constant_value
from circuitlang.ir.hypotheses import lower_hypotheses
from circuitlang.ir.paths import default_root
from circuitlang.ir.limits import static_limit_errors
from circuitlang.ir.prompt_sets import lower_metric, lower_prompt_set
from circuitlang.ir.settings import lower_settings
from circuitlang.ir.structure import structure_errors
from circuitlang.ir.shapes import model_shape, resolve_model
from circuitlang.ir.stdlib import BUILTIN_LISTS
from circuitlang.ir.uses import read_spec_file, resolve_uses


def load_spec(path: str | Path, root: str | Path | None = None) -> ir.Spec:
    """Read, parse and lower a `.circ` file (with the files its `use` lines name). Every path the
    spec names must lie inside `root` (default: the spec's folder); see `ir.paths`."""
    spec_file = read_spec_file(Path(path))
    return lower(spec_file, root)


def lower(spec_file: ast.SpecFile, root: str | Path | None = None) -> ir.Spec:
    errors: list[CircuitlangError] = []
    root = Path(root).resolve() if root is not None else default_root(spec_file.path)
    items = resolve_uses(spec_file, errors, root)
    _check_version(spec_file.header, errors)
    name, model = _circuit_decl(spec_file, items, root, errors)
    shape = _shape(model, errors)
    lists = _lists(items, errors)
    list_names = {named.name for named in lists} | set(BUILTIN_LISTS)
    metric = _top_metric(items, errors)
    prompt_sets = _prompt_sets(items, list_names, root, name, metric, spec_file, errors)
    _check_every_set_has_a_metric(items, prompt_sets, spec_file.header, errors)
    ablation = _ablation(items, spec_file.header, errors)
    _check_corruption_for_ablation(ablation, prompt_sets, _without_corrupt_block(items), errors)
    before = len(errors)
    circuit = lower_circuit(items, shape, model, prompt_sets, errors)
    if len(errors) == before:  # a rejected edge line would make the structure look broken: one error is enough
        errors.extend(structure_errors(circuit))
    hypotheses = lower_hypotheses(items, circuit, prompt_sets, list_names, shape, model, errors)
    _check_hypotheses_have_an_answer_field(hypotheses.lowered, prompt_sets, metric, errors)
    expectations = lower_expectations(items, circuit, prompt_sets, hypotheses, errors)
    settings = lower_settings(items, errors)
    errors.extend(static_limit_errors(lists, prompt_sets, settings))  # the limits are settings
    raise_if_any(errors)
    return ir.Spec(
        version=spec_file.header.version,
        name=name,
        path=spec_file.path,
        model=model,
        shape=shape,
        lists=lists,
        prompt_sets=prompt_sets,
        metric=metric,
        ablation=ablation,
        circuit=circuit,
        expectations=expectations,
        settings=settings,
        hypotheses=hypotheses.lowered,
    )


def _check_hypotheses_have_an_answer_field(
    hypotheses: tuple[ir.Hypothesis, ...], prompt_sets: tuple[ir.PromptSet, ...], metric: ir.Metric | None, errors: list[CircuitlangError]
) -> None:
    """An interchange compares the model's top token with the hypothesis's answer, and the
    hypothesis must reproduce the prompt set's answer field: the metric's first field. A metric
    that names no field (kl) leaves nothing to compare."""
    for hypothesis in hypotheses:
        prompt_set = next(p for p in prompt_sets if p.name == hypothesis.prompt_set)
        used = prompt_set.metric or metric
        if used is not None and not used.args:
            errors.append(
                SpecError(
                    f"the hypothesis on '{prompt_set.name}' needs an answer field, and the metric {used.name} names none",
                    hypothesis.span,
                    "use a metric that names the answer, e.g. logit_diff(answer, wrong), for the prompt set with the hypothesis",
                )
            )


def _check_version(header: ast.Header, errors: list[CircuitlangError]) -> None:
    if header.version not in SUPPORTED_VERSIONS:
        errors.append(
            SpecError(
                f"circuitlang version {header.version} is not supported",
                header.span,
                f"this circuitlang reads version(s) {', '.join(map(str, SUPPORTED_VERSIONS))}",
            )
        )


def _circuit_decl(spec_file: ast.SpecFile, items: list[ast.Item], root: Path, errors: list[CircuitlangError]) -> tuple[str, ir.ModelRef]:
    decls = [item for item in items if isinstance(item, ast.CircuitDecl)]
    for extra in decls[1:]:
        errors.append(
            SpecError(
                "a spec has one `circuit` line; this is a second one", extra.span, 'split the file, or share parts with `use circuit from "..."`'
            )
        )
    if not decls:
        errors.append(
            SpecError('missing `circuit NAME on "MODEL"` line', spec_file.header.span, 'add e.g. circuit incr_digits on "gpt2" after the header')
        )
        return "unnamed", ir.ModelRef(source="hub", name="", span=spec_file.header.span)
    decl = decls[0]
    try:
        return decl.name.name, resolve_model(decl.model.value, root, decl.model.span)
    except (ModelError, SpecError) as error:  # SpecError: a folder outside the project root
        errors.append(error)
        return decl.name.name, ir.ModelRef(source="hub", name="", span=decl.model.span)


def _shape(model: ir.ModelRef, errors: list[CircuitlangError]) -> ir.ModelShape | None:
    if not model.name:
        return None
    try:
        return model_shape(model)
    except (ModelError, SpecError) as error:  # SpecError: a folder with no config.json
        errors.append(error)
        return None


def _lists(items: list[ast.Item], errors: list[CircuitlangError]) -> tuple[ir.NamedList, ...]:
    lowered: dict[str, ir.NamedList] = {}
    for decl in (item for item in items if isinstance(item, ast.ListDecl)):
        if decl.name.name in BUILTIN_LISTS:
            errors.append(
                SpecError(
                    f"list '{decl.name.name}' would hide the built-in list of that name",
                    decl.name.span,
                    f"choose another name, e.g. my_{decl.name.name}",
                )
            )
            continue
        if decl.name.name in lowered:
            errors.append(
                SpecError(
                    f"list '{decl.name.name}' is declared twice", decl.name.span, f"the first is at {lowered[decl.name.name].span}; rename one"
                )
            )
            continue
        values = tuple(constant_value(item) for item in decl.items.items)
        for value, item in zip(values, decl.items.items):
            if value is None:
                errors.append(
                    SpecError("list items must be literal numbers or strings", item.span, 'for example: list colors = ["red", "green"]')
                )
        if not values:
            errors.append(SpecError(f"list '{decl.name.name}' is empty", decl.items.span, "give it at least one item"))
        kept = [(value, item.span) for value, item in zip(values, decl.items.items) if value is not None]
        lowered[decl.name.name] = ir.NamedList(
            name=decl.name.name,
            values=tuple(value for value, _ in kept),
            cyclic=decl.cyclic,
            span=decl.span,
            value_spans=tuple(span for _, span in kept),
        )
    return tuple(lowered.values())


def _prompt_sets(
    items: list[ast.Item],
    lists: set[str],
    root: Path,
    spec_name: str,
    metric: ir.Metric | None,
    spec_file: ast.SpecFile,
    errors: list[CircuitlangError],
) -> tuple[ir.PromptSet, ...]:
    decls = [item for item in items if isinstance(item, ast.PromptsDecl)]
    outer = [item for item in items if isinstance(item, ast.CorruptDecl)]
    uses_prompts = any(isinstance(i, ast.UseDecl) and i.what == "prompts" for i in spec_file.items)
    if not decls:
        if not uses_prompts:  # a failed `use prompts` has already said what is missing
            errors.append(
                SpecError("the spec has no `prompts` block", spec_file.header.span, "add prompts { template ... } describing the task")
            )
        return ()
    _check_outer_corruption(decls, outer, errors)
    _check_prompt_names(decls, errors)
    chosen_outer = outer[0] if outer and len(decls) == 1 else None
    return tuple(lower_prompt_set(decl, decl.name.name if decl.name else spec_name, lists, root, chosen_outer, metric, errors) for decl in decls)


def _check_outer_corruption(decls: list[ast.PromptsDecl], outer: list[ast.CorruptDecl], errors: list[CircuitlangError]) -> None:
    for extra in outer[1:]:
        errors.append(SpecError("a second top-level `corrupt` block", extra.span, "give each prompts block its own corrupt block inside it"))
    if outer and len(decls) > 1:
        errors.append(
            SpecError(
                "a top-level `corrupt` block is ambiguous with several prompts blocks",
                outer[0].span,
                "move it inside the prompts block it corrupts",
            )
        )
    if outer and len(decls) == 1 and any(isinstance(s, ast.CorruptDecl) for s in decls[0].body):
        errors.append(SpecError("this prompt set already has a corrupt block inside it", outer[0].span, "keep one of the two"))


def _check_prompt_names(decls: list[ast.PromptsDecl], errors: list[CircuitlangError]) -> None:
    seen: dict[str, ast.PromptsDecl] = {}
    for decl in decls:
        if decl.name is None and len(decls) > 1:
            errors.append(SpecError("with several prompts blocks each needs a name", decl.span, "write e.g. `prompts digits {`"))
        elif decl.name is not None and decl.name.name in seen:
            errors.append(SpecError(f"prompt set '{decl.name.name}' is declared twice", decl.name.span, "give each prompts block its own name"))
        if decl.name is not None:
            seen[decl.name.name] = decl


def _top_metric(items: list[ast.Item], errors: list[CircuitlangError]) -> ir.Metric | None:
    """The spec-wide metric; None is allowed only when every prompt set names its own."""
    decls = [item for item in items if isinstance(item, ast.MetricDecl)]
    for extra in decls[1:]:
        errors.append(SpecError("a second top-level `metric` line", extra.span, "put task-specific metrics inside their prompts block"))
    return lower_metric(decls[0], errors) if decls else None


def _check_every_set_has_a_metric(
    items: list[ast.Item], prompt_sets: tuple[ir.PromptSet, ...], header: ast.Header, errors: list[CircuitlangError]
) -> None:
    has_top = any(isinstance(item, ast.MetricDecl) for item in items)
    if not has_top and any(p.metric is None for p in prompt_sets):
        errors.append(SpecError("no `metric` line", header.span, "add e.g. `metric logit_diff(answer, wrong)` at top level"))


def _without_corrupt_block(items: list[ast.Item]) -> set[Span]:
    """Spans of prompts blocks that have no corrupt block, inside them or at top level."""
    blocks = [item for item in items if isinstance(item, ast.PromptsDecl)]
    if any(isinstance(item, ast.CorruptDecl) for item in items) and len(blocks) == 1:
        return set()
    return {b.span for b in blocks if not any(isinstance(s, ast.CorruptDecl) for s in b.body)}


def _check_corruption_for_ablation(
    ablation: ir.Ablation, prompt_sets: tuple[ir.PromptSet, ...], uncorrupted: set[Span], errors: list[CircuitlangError]
) -> None:
    if ablation.source != "corrupt":
        return
    for prompt_set in prompt_sets:
        if prompt_set.span in uncorrupted:
            written = "ablate resample" if ablation.kind == "resample" else f"ablate {ablation.kind} of corrupt"
            errors.append(
                SpecError(
                    f"prompt set '{prompt_set.name}' has no corruption, but `{written}` takes its values from the corrupt prompts",
                    prompt_set.span,
                    "add a corrupt block to the prompt set, or ablate mean of clean / zero",
                )
            )


def _ablation(items: list[ast.Item], header: ast.Header, errors: list[CircuitlangError]) -> ir.Ablation:
    decls = [item for item in items if isinstance(item, ast.AblateDecl)]
    for extra in decls[1:]:
        errors.append(SpecError("a second `ablate` line", extra.span, "a spec has one ablation"))
    if not decls:
        errors.append(
            SpecError("no `ablate` line", header.span, "say how nodes outside the circuit are ablated: ablate mean of corrupt | resample | zero")
        )
        return ir.Ablation(kind="zero", source=None, span=header.span)
    decl = decls[0]
    kind = next((known for known in ABLATION_SOURCES if known == decl.kind.name), None)
    if kind is None:
        errors.append(
            SpecError(f"unknown ablation '{decl.kind.name}'", decl.kind.span, "ablations: mean of corrupt, mean of clean, resample, zero")
        )
        return ir.Ablation(kind="zero", source=None, span=decl.span)
    return ir.Ablation(kind=kind, source=_ablation_source(decl, kind, errors), span=decl.span)


AblationKind = Literal["mean", "resample", "zero"]
AblationSource = Literal["corrupt", "clean"]
# What each ablation may take after `of`; the first is meant where no `of` is written.
ABLATION_SOURCES: dict[AblationKind, tuple[AblationSource, ...]] = {"mean": ("corrupt", "clean"), "resample": ("corrupt",), "zero": ()}


def _ablation_source(decl: ast.AblateDecl, kind: AblationKind, errors: list[CircuitlangError]) -> AblationSource | None:
    allowed = ABLATION_SOURCES[kind]
    default = allowed[0] if allowed else None
    if decl.source is None:
        return default
    source = next((known for known in allowed if known == decl.source.name), None)
    if source is None:
        errors.append(
            SpecError(
                f"'ablate {kind} of {decl.source.name}' is not an ablation",
                decl.source.span,
                f"{kind} takes " + (f"of {' or of '.join(allowed)}" if allowed else "no `of`"),
            )
        )
        return default
    return source
