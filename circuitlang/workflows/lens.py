"""`lens`: the logit lens and the direct contributions on one prompt set, engine results -> LensResult.

The workflow behind `circuitlang lens` and `circuitlang.lens`: reads the clean run's residual
stream through the unembedding after every layer (`engine.lens.logit_lens`) and splits the final
one into its pieces (`engine.lens.direct_contributions`), at the positions asked for, and averages
over the prompts. Nothing here prints or exits; a request that cannot be read raises `CannotRead`
with the reason. The helpers every reading workflow shares (the context, the positions) are here
too; workflows/attention.py uses them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuitlang.engine import lens as engine_lens
from circuitlang.engine.bind import BoundPromptSet
from circuitlang.engine.session import Session
from circuitlang.ir import models as ir
from circuitlang.ir.stdlib import METRICS
from circuitlang.results.lens import POSITION_KINDS, LensResult, ReadContext


class CannotRead(Exception):
    """What was asked cannot be read on this spec or model; the message says why and what to do."""


@dataclass(frozen=True)
class LensRequest:
    prompt_set: str
    positions: str | None = None  # "tokens", "named", or None: tokens with one template, else named


def lens(session: Session, request: LensRequest) -> LensResult:
    check_prompt_set(session.spec, request.prompt_set)
    engine = session.engine(request.prompt_set)
    kind = position_kind(engine.bound, request.positions)
    read = engine_lens.columns(engine.bound, session.model.tokenizer, kind == "tokens")
    values = engine_lens.logit_lens(engine, read).numpy()  # [n, stages, positions]
    why = engine_lens.why_no_contributions(engine)
    direct = None if why else engine_lens.direct_contributions(engine, read).numpy()
    return LensResult(
        read_context(session.spec, engine.bound),
        tuple(column.label for column in read),
        tuple(column.example for column in read),
        kind,
        engine_lens.stage_labels(engine.n_layers),
        values.mean(0),
        _stderr(values),
        engine.n_layers,
        engine.n_heads,
        engine_lens.contribution_labels(engine.n_layers, engine.n_heads),
        None if direct is None else direct.mean(0),
        None if direct is None else _stderr(direct),
        direction_text(engine.bound.metric),
        why or "",
    )


def check_prompt_set(spec: ir.Spec, name: str) -> None:
    names = [p.name for p in spec.prompt_sets]
    if name not in names:
        raise CannotRead(f"no prompt set '{name}' in {spec.path}: it has {', '.join(names)}")


def position_kind(bound: BoundPromptSet, asked: str | None) -> str:
    """Every token index with one template, the named positions with several (a token index means
    a different token in each template); asking for tokens with several templates is an error."""
    if asked is not None and asked not in POSITION_KINDS:
        raise CannotRead(f"positions {asked!r}: choose {' or '.join(POSITION_KINDS)}")
    several = len(bound.templates) > 1
    if asked == "tokens" and several:
        raise CannotRead(
            f"prompt set '{bound.name}' has {len(bound.templates)} templates, so a token index means a different token in each: "
            "read the named positions, or one prompt"
        )
    return asked or ("named" if several else "tokens")


def read_context(spec: ir.Spec, bound: BoundPromptSet) -> ReadContext:
    metric = bound.metric
    written = f"{metric.name}({', '.join(metric.args)})" if metric.args else metric.name
    return ReadContext(spec.path, spec.name, spec.model.name, bound.name, bound.n_prompts, written, metric.name)


def direction_text(metric: ir.Metric) -> str:
    """What the direct contributions are read along, in words."""
    if not metric.args:
        return ""
    kind = METRICS[metric.name]
    if metric.name == "prob_diff":  # token sets: the mean column of each
        return f"mean logit over {metric.args[0]} − mean logit over {metric.args[1]}"
    if kind.contrast:
        return f"logit[{metric.args[0]}] − logit[{metric.args[1]}]"
    return f"logit[{metric.args[0]}]"


def _stderr(values: np.ndarray) -> np.ndarray:
    """Standard error of the mean over prompts (axis 0); zeros for a single prompt."""
    n = values.shape[0]
    if n < 2:
        return np.zeros(values.shape[1:])
    return values.std(0, ddof=1) / np.sqrt(n)
