"""A hypothesis's high-level model on the prompts: variables, answers and counterfactual answers,
and the (base, source) pairs of an interchange intervention. No torch.

A prompt's values are its slots and fields as the prompt set wrote them (loop variables, `answer`,
`wrong`, ...); a text that is a whole number in canonical form ("7", "-3", not "07") is the int, so
that `s4 + 1` means the next number. The variables are evaluated in order; the counterfactual answer
of a pair for a variable V is the answer evaluated on the base with V's value taken from the
source (variables computed from V follow it; the others keep the base's values).

Pairs: each base prompt, in dataset order, gets one source drawn (seeded by the spec's seed, the
prompt set and the variable) among the prompts whose counterfactual answer differs from the base's
answer and whose template has every position a carrier of V names. A pair whose counterfactual
answer is the base answer says nothing about the intervention (doing nothing scores it), so such
sources are never drawn; a base with no source that changes its answer gets no pair, and is
counted.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Mapping

from circuitlang.data.datasets import Dataset, _lists, _seed
from circuitlang.data.positions import expand_positions
from circuitlang.data.prompts import Prompt
from circuitlang.data.values import Env, NamedValues, Value, evaluate
from circuitlang.errors import DataError
from circuitlang.ir import models as ir

_WHOLE_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)")
MAX_DRAWS = 64  # sources tried per base before it is counted as having none


@dataclass(frozen=True)
class Pairs:
    """The interchange pairs of one variable: base[i] runs with source[i]'s activations."""

    variable: str
    base: tuple[int, ...]  # dataset prompt indices
    source: tuple[int, ...]
    answer: tuple[str, ...]  # the hypothesis's answer on the base, as text
    counterfactual: tuple[str, ...]  # its answer with the variable's value from the source
    without_source: int  # bases no drawn source changed the answer of

    def __len__(self) -> int:
        return len(self.base)


def prompt_values(prompt: Prompt) -> dict[str, Value]:
    """A prompt's slots and fields, whole numbers as ints (module docstring)."""
    values: dict[str, Value] = {}
    for name, value in (*prompt.values, *prompt.fields):
        values[name] = _typed(value) if isinstance(value, str) else value
    return values


def _typed(text: str) -> Value:
    return int(text) if _WHOLE_NUMBER.fullmatch(text) else text


@dataclass(frozen=True)
class HighLevelModel:
    """A hypothesis with what its expressions may read besides the prompt: the spec's lists and
    its settings (the evaluator's limits)."""

    hypothesis: ir.Hypothesis
    lists: Mapping[str, NamedValues]
    settings: ir.Settings

    @classmethod
    def of(cls, spec: ir.Spec, prompt_set: str) -> "HighLevelModel":
        hypothesis = spec.hypothesis_for(prompt_set)
        assert hypothesis is not None, f"prompt set {prompt_set!r} has no hypothesis"
        return cls(hypothesis, _lists(spec), spec.settings)

    def evaluate(self, prompt: Prompt, overrides: dict[str, Value] | None = None) -> tuple[dict[str, Value], str]:
        """The variables on one prompt and the answer (as text); `overrides` replace a slot's,
        field's or variable's value where it is defined, so later variables follow it."""
        overrides = overrides or {}
        values = prompt_values(prompt)
        values.update({name: value for name, value in overrides.items() if name in values})
        env = Env(values, self.lists, random.Random(0), prompt.label, settings=self.settings)
        for variable in self.hypothesis.variables:
            values[variable.name] = overrides[variable.name] if variable.name in overrides else evaluate(variable.value, env)
        answer = evaluate(self.hypothesis.answer, env)
        if isinstance(answer, tuple):
            raise DataError(
                f"{prompt.label}: the hypothesis's answer is a list {answer!r}", self.hypothesis.answer.span, "the answer is one value"
            )
        return values, str(answer)


def check_answers(model: HighLevelModel, dataset: Dataset, field: str) -> None:
    """The high-level model must reproduce the task: its answer on every prompt is the prompt
    set's answer (the metric's first field). A disagreement is a wrong hypothesis or a typo, and
    every interchange number would be measured against wrong predictions."""
    for prompt in dataset.clean:
        expected = prompt.field(field)
        _, answer = model.evaluate(prompt)
        if isinstance(expected, tuple):
            raise DataError(
                f"{prompt.label}: the answer field '{field}' is a set {expected!r}; an interchange predicts one answer",
                model.hypothesis.span,
                "interchange interventions need a prompt set whose answer is one token",
            )
        if answer != expected:
            raise DataError(
                f"{prompt.label}: the hypothesis's answer is {answer!r} but the prompt set's {field} is {expected!r}",
                model.hypothesis.answer.span,
                f"write the answer so that it reproduces the task on every prompt (e.g. reuse the prompt set's `{field} = ...`)",
            )


def draw_pairs(model: HighLevelModel, dataset: Dataset, variable: str, seed: int) -> Pairs:
    rng = random.Random(_seed(seed, f"{dataset.name}/interchange/{variable}"))
    evaluated = [model.evaluate(prompt) for prompt in dataset.clean]
    values, answers = [v for v, _ in evaluated], [a for _, a in evaluated]
    keys = _position_keys(model.hypothesis, variable, dataset.templates)
    base, source, answer, counterfactual, without = [], [], [], [], 0
    for b in range(len(dataset.clean)):
        found = _draw_source(model, dataset, variable, b, values, answers[b], keys, rng)
        if found is None:
            without += 1
            continue
        base.append(b)
        source.append(found[0])
        answer.append(answers[b])
        counterfactual.append(found[1])
    return Pairs(variable, tuple(base), tuple(source), tuple(answer), tuple(counterfactual), without)


def _draw_source(
    model: HighLevelModel,
    dataset: Dataset,
    variable: str,
    b: int,
    values: list[dict[str, Value]],
    answer: str,
    keys: list[frozenset[tuple[str, int]]],
    rng: random.Random,
) -> tuple[int, str] | None:
    base = dataset.clean[b]
    for _ in range(MAX_DRAWS):
        s = rng.randrange(len(dataset.clean))
        if s == b or not keys[base.template] <= keys[dataset.clean[s].template]:
            continue
        if values[s][variable] == values[b][variable]:
            continue
        _, counterfactual = model.evaluate(base, {variable: values[s][variable]})
        if counterfactual != answer:
            return s, counterfactual
    return None


def _position_keys(hypothesis: ir.Hypothesis, variable: str, templates: tuple[str, ...]) -> list[frozenset[tuple[str, int]]]:
    """Per template, the (position name, offset) pairs the variable's carriers read there: a
    source must have every one the base has, so that each site has a value to take."""
    sites = [site for carrier in hypothesis.carriers_of(variable) for site in carrier.sites]
    return [frozenset(key for site in sites for key in expand_positions(site.positions, template)) for template in templates]


@dataclass(frozen=True)
class ScrubSources:
    """Causal scrubbing's prompts (docs/verify.md, "Causal scrubbing"): per base, the prompt every
    node outside the circuit takes its output from, and per carrier node (`nodes`, in the order the
    hypothesis first names them) the prompt its carrier sites take their outputs from: one that
    agrees with the base on every variable the node carries."""

    nodes: tuple[ir.Node, ...]
    base: tuple[int, ...]
    random: tuple[int, ...]  # same template as the base, not the base
    agreeing: tuple[tuple[int, ...], ...]  # [base][node]
    only_the_base_agrees: int  # node draws where no other prompt agreed (the base's own output kept)

    def source_of(self, base: int, node: ir.Node) -> int:
        return self.agreeing[base][self.nodes.index(node)]


def draw_scrub_sources(model: HighLevelModel, dataset: Dataset, seed: int) -> ScrubSources:
    hypothesis = model.hypothesis
    rng = random.Random(_seed(seed, f"{dataset.name}/scrubbing"))
    values = [model.evaluate(prompt)[0] for prompt in dataset.clean]
    carried = _carried_by_node(hypothesis)
    keys = {v: _position_keys(hypothesis, v, dataset.templates) for v in hypothesis.carried}
    by_template: dict[int, list[int]] = {}
    for index, prompt in enumerate(dataset.clean):
        by_template.setdefault(prompt.template, []).append(index)
    sharing: dict[ir.Node, dict[tuple[Value, ...], list[int]]] = {node: {} for node in carried}  # node -> its values -> prompts
    for index, prompt_values_ in enumerate(values):
        for node, variables in carried.items():
            sharing[node].setdefault(tuple(prompt_values_[v] for v in variables), []).append(index)
    base, randoms, agreeing, alone = [], [], [], 0
    for b, prompt in enumerate(dataset.clean):
        others = [i for i in by_template[prompt.template] if i != b]
        if not others:
            continue  # a template with one prompt has nothing to resample from
        base.append(b)
        randoms.append(rng.choice(others))
        chosen = []
        for node, variables in carried.items():
            same = sharing[node][tuple(values[b][v] for v in variables)]
            candidates = [s for s in same if s != b and all(keys[v][prompt.template] <= keys[v][dataset.clean[s].template] for v in variables)]
            alone += not candidates
            chosen.append(rng.choice(candidates) if candidates else b)
        agreeing.append(tuple(chosen))
    return ScrubSources(tuple(carried), tuple(base), tuple(randoms), tuple(agreeing), alone)


def _carried_by_node(hypothesis: ir.Hypothesis) -> dict[ir.Node, tuple[str, ...]]:
    """Each carrier node and the variables it carries: a node in two carriers takes one source that
    agrees on both, so that no site gets two values."""
    carried: dict[ir.Node, list[str]] = {}
    for carrier in hypothesis.carriers:
        for node in carrier.nodes:
            carried.setdefault(node, [])
            if carrier.variable not in carried[node]:
                carried[node].append(carrier.variable)
    return {node: tuple(variables) for node, variables in carried.items()}
