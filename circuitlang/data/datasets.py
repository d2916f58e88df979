"""IR prompt sets -> datasets of rendered clean prompts and their paired corrupt prompts.

Expansion is deterministic: every random draw comes from an RNG seeded by the spec's seed and
the prompt set's name, so the same spec gives the same prompts on every machine.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from typing import Iterator

from circuitlang.data.corruptions import CORRUPTERS, apply_assignments
from circuitlang.data.files import read_rows
from circuitlang.data.generators import GENERATOR_FUNCTIONS
from circuitlang.data.positions import check_positions_in_templates
from circuitlang.data.prompts import Prompt, render, template_slots
from circuitlang.data.values import Env, NamedValues, Scalar, Value, evaluate, range_values
from circuitlang.errors import CircuitlangError, DataError, LimitError, raise_if_any
from circuitlang.ir import models as ir
from circuitlang.ir.limits import limit_error
from circuitlang.ir.stdlib import BUILTIN_LISTS


@dataclass(frozen=True)
class Dataset:
    name: str
    templates: tuple[str, ...]
    clean: tuple[Prompt, ...]
    corrupt: tuple[Prompt, ...]  # corrupt[i] pairs with clean[i]; empty without a corruption
    answer_prefix: str


def expand_all(spec: ir.Spec) -> tuple[Dataset, ...]:
    """Every prompt set of the spec, with all data errors collected."""
    datasets, errors = [], []
    for prompt_set in spec.prompt_sets:
        try:
            dataset = expand(spec, prompt_set)
            _check_metric_fields(dataset, spec.metric_for(prompt_set), prompt_set)
            datasets.append(dataset)
        except CircuitlangError as error:
            errors.append(error)
    errors.extend(check_positions_in_templates(spec, {d.name: d.templates for d in datasets}))
    raise_if_any(errors)
    return tuple(datasets)


def expand(spec: ir.Spec, prompt_set: ir.PromptSet) -> Dataset:
    rng = random.Random(_seed(spec.settings.seed, prompt_set.name))
    lists = _lists(spec)
    rows = _rows(prompt_set, lists, rng, spec.settings)
    if not rows:
        raise DataError(f"prompt set '{prompt_set.name}' has no prompts", prompt_set.span, "check the loop ranges or the data file")
    templates = tuple(dict.fromkeys(template for template, _, _ in rows))
    clean = tuple(_prompt(prompt_set, i, templates, row) for i, row in enumerate(rows))
    corrupt = _corrupt(prompt_set, rows, templates, lists, rng, spec.settings)
    return Dataset(prompt_set.name, templates, clean, corrupt, prompt_set.answer_prefix)


def _check_metric_fields(dataset: Dataset, metric: ir.Metric, prompt_set: ir.PromptSet) -> None:
    """Rows from a data file must give every field the metric scores (checked once expanded)."""
    span = prompt_set.source.span if prompt_set.source else prompt_set.span
    for prompt in dataset.clean:
        names = dict(prompt.fields)
        for arg in metric.args:
            if arg not in names:
                raise DataError(
                    f"{prompt.label}: metric argument '{arg}' has no value",
                    span,
                    f"add a column '{arg}' to the data file or assign it in the prompts block",
                )


def _seed(seed: int, name: str) -> int:
    return seed * 1_000_003 + zlib.crc32(name.encode())


def _lists(spec: ir.Spec) -> dict[str, NamedValues]:
    lists = {name: NamedValues(b.values, b.cyclic) for name, b in BUILTIN_LISTS.items()}
    lists.update({named.name: NamedValues(named.values, named.cyclic) for named in spec.lists})
    return lists


Row = tuple[str, dict[str, Value], str]  # template, variables, label


def _rows(prompt_set: ir.PromptSet, lists: dict[str, NamedValues], rng: random.Random, settings: ir.Settings) -> list[Row]:
    """The clean rows, in expansion order, made one at a time: `set count = N` stops after the Nth,
    so a count bounds the work and the rows it drops are never made (nor draw from the RNG)."""
    if prompt_set.generator is not None:
        return _generated_rows(prompt_set, rng, settings)
    known = None if prompt_set.source else _known_loop_product(prompt_set.loops, lists)
    unbounded = prompt_set.count is None or prompt_set.count > settings.max_prompts
    if unbounded and known is not None and len(prompt_set.templates) * known > settings.max_prompts:
        raise _too_many_prompts(prompt_set, settings)  # known from the loops alone: refused before any row is made
    rows: list[Row] = []
    for row in _built_rows(prompt_set, lists, rng, settings):
        rows.append(row)
        if len(rows) > settings.max_prompts:
            raise _too_many_prompts(prompt_set, settings)
        if len(rows) == prompt_set.count:
            break
    return rows


def _generated_rows(prompt_set: ir.PromptSet, rng: random.Random, settings: ir.Settings) -> list[Row]:
    """A generator makes its rows one after another from the RNG, so its first N rows are those
    of `n = N`: a count is passed on as a smaller n."""
    generator = prompt_set.generator
    assert generator is not None
    params = dict(generator.params)
    asked = params.get("n", 0)
    if isinstance(asked, int) and prompt_set.count is not None:
        params["n"] = min(asked, prompt_set.count)
    n = params.get("n")
    if isinstance(n, int) and n > settings.max_prompts:
        raise limit_error(
            "generated prompts",
            f"generate {generator.name}(n = {asked}) asks for more than {{limit}} prompts",
            settings,
            generator.span,
            "keep fewer with `set count = N`",
        )
    made = GENERATOR_FUNCTIONS[generator.name](params, rng)
    return [(template, values, f"prompt #{i} of {prompt_set.name}") for i, (template, values) in enumerate(made)]


def _built_rows(prompt_set: ir.PromptSet, lists: dict[str, NamedValues], rng: random.Random, settings: ir.Settings) -> Iterator[Row]:
    file_rows = read_rows(prompt_set.source) if prompt_set.source else [{}]
    index = 0
    steps = _LoopSteps(prompt_set, settings)
    for template in prompt_set.templates:
        for file_row in file_rows:
            for bindings in _loop_bindings(prompt_set.loops, dict(file_row), lists, rng, prompt_set.name, steps):
                label = f"prompt #{index} of {prompt_set.name}" + _describe(bindings, prompt_set)
                env = Env(dict(file_row) | bindings, lists, rng, label, settings=settings)
                apply_assignments(prompt_set.assignments, env)
                index += 1
                yield template.text, env.variables, label


class _LoopSteps:
    """Counts the loop values a set goes through. Prompts are bounded by `max_prompts`, but loops
    can go on without making any (`for i in 1..10**20, j in 1..0`): each loop may take at most
    that many steps more than the prompts it helps make."""

    def __init__(self, prompt_set: ir.PromptSet, settings: ir.Settings) -> None:
        self.prompt_set, self.settings = prompt_set, settings
        self.taken, self.allowed = 0, len(prompt_set.loops) * (settings.max_prompts + 1)

    def take(self) -> None:
        self.taken += 1
        if self.taken > self.allowed:
            raise limit_error(
                "loop product",
                f"the loops of {self.prompt_set.name} go through more than {len(self.prompt_set.loops)} x {{limit}} values",
                self.settings,
                self.prompt_set.loops[-1].span,
                "an empty inner loop makes no prompts",
            )


def _loop_bindings(
    loops: tuple[ir.Loop, ...], base: dict[str, Value], lists: dict[str, NamedValues], rng: random.Random, name: str, steps: _LoopSteps
) -> Iterator[dict[str, Value]]:
    """The product of the loops, first loop outermost, made lazily; a later loop's range may use an
    earlier loop's variable. A loop's range is enumerated, never made whole (`for i in 1..10**9`
    with `set count = 10` makes ten values)."""
    if not loops:
        yield {}
        return
    loop, inner = loops[0], loops[1:]
    env = Env(dict(base), lists, rng, f"a loop of {name} ({loop.var})", settings=steps.settings)
    source = range_values(loop.source, env) if isinstance(loop.source, ir.RangeE) else evaluate(loop.source, env)
    if not isinstance(source, (tuple, range)):
        raise DataError(
            f"{env.label}: loop over {source!r}, which is not a range or list", loop.source.span, "write e.g. for i in 1..95 or for m in months"
        )
    for value in source:
        steps.take()
        binding: dict[str, Value] = {loop.var: value}
        for bound in _loop_bindings(inner, base | binding, lists, rng, name, steps):
            yield binding | bound


def _known_loop_product(loops: tuple[ir.Loop, ...], lists: dict[str, NamedValues]) -> int | None:
    """How many combinations the loops make, when every loop goes over a range of integer literals
    or a declared list (nothing drawn, nothing depending on another loop); None otherwise."""
    product = 1
    for loop in loops:
        size = _constant_size(loop.source, lists)
        if size is None:
            return None
        product *= size
    return product


def _constant_size(source: ir.Expr, lists: dict[str, NamedValues]) -> int | None:
    if isinstance(source, ir.RangeE):
        start, stop = _literal(source.start), _literal(source.stop)
        return None if start is None or stop is None else max(0, stop - start + 1)
    if isinstance(source, ir.VarE) and source.name in lists:
        return len(lists[source.name].values)
    return None


def _literal(expr: ir.Expr) -> int | None:
    if isinstance(expr, ir.IntE):
        return expr.value
    if isinstance(expr, ir.NegE) and isinstance(expr.operand, ir.IntE):
        return -expr.operand.value
    return None


def _too_many_prompts(prompt_set: ir.PromptSet, settings: ir.Settings) -> LimitError:
    advice = "keep fewer with `set count = N` in the block"
    if prompt_set.loops:
        return limit_error(
            "loop product", f"the loops of {prompt_set.name} make more than {{limit}} prompts", settings, prompt_set.loops[-1].span, advice
        )
    span = prompt_set.source.span if prompt_set.source else prompt_set.span
    return limit_error("prompts per set", f"prompt set '{prompt_set.name}' makes more than {{limit}} prompts", settings, span, advice)


def _describe(bindings: dict[str, Value], prompt_set: ir.PromptSet) -> str:
    return " (" + ", ".join(f"{k}={v}" for k, v in bindings.items()) + ")" if bindings else ""


def _prompt(prompt_set: ir.PromptSet, index: int, templates: tuple[str, ...], row: Row) -> Prompt:
    template, variables, label = row
    slots = template_slots(template)
    values = {slot: _slot_text(variables, slot, label, prompt_set) for slot in slots}
    text, spans = render(template, values)
    return Prompt(index, label, templates.index(template), text, spans, tuple(values.items()), _fields(variables, slots))


def _slot_text(variables: dict[str, Value], slot: str, label: str, prompt_set: ir.PromptSet) -> Scalar:
    if slot not in variables:
        span = prompt_set.source.span if prompt_set.source else prompt_set.span
        raise DataError(f"{label}: slot '{{{slot}}}' has no value", span, "assign it in the prompts block or add the column to the data file")
    value = variables[slot]
    if isinstance(value, tuple):
        assigned = [a.span for a in prompt_set.assignments if slot in a.targets]
        raise DataError(
            f"{label}: slot '{{{slot}}}' got a list {value!r}",
            (assigned or [prompt_set.span])[-1],
            "a slot takes one value; index the list or use random",
        )
    return str(value)


def _fields(variables: dict[str, Value], slots: tuple[str, ...]) -> tuple[tuple[str, Value], ...]:
    def as_text(value: Value) -> Value:
        return tuple(str(v) for v in value) if isinstance(value, tuple) else str(value)

    return tuple((name, as_text(value)) for name, value in variables.items() if name not in slots)


def _corrupt(
    prompt_set: ir.PromptSet,
    rows: list[Row],
    templates: tuple[str, ...],
    lists: dict[str, NamedValues],
    rng: random.Random,
    settings: ir.Settings,
) -> tuple[Prompt, ...]:
    corruption = prompt_set.corruption
    if corruption is None:
        return ()
    path = corruption.path
    file_rows = read_rows(ir.FileSource(path=path, written=path, span=corruption.span, root=corruption.root)) if path else None
    if file_rows is not None and len(file_rows) < len(rows):
        raise DataError(
            f"corrupt file has {len(file_rows)} row(s) for {len(rows)} clean prompts",
            corruption.span,
            "give one corrupt row per clean prompt, in the same order",
        )
    generator_params = dict(prompt_set.generator.params) if prompt_set.generator else {}
    corrupted = []
    for i, (template, variables, label) in enumerate(rows):
        slots = template_slots(template)
        env = Env(dict(variables), lists, rng, f"corruption of {label}", generator_params, settings)
        values = CORRUPTERS[corruption.kind](corruption, {s: variables[s] for s in slots}, slots, env, file_rows[i] if file_rows else None)
        corrupted.append((template, variables | values, f"corrupt {label}"))
    return tuple(_prompt(prompt_set, i, templates, row) for i, row in enumerate(corrupted))
