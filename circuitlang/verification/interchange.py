"""Interchange scores from per-pair arrays (numpy only): IIA, graded IIA and the baseline's IIA,
each with a bootstrap interval over pairs (docs/verify.md, "Interchange interventions").

Per pair i (base b, source s, counterfactual answer c, base answer a, c != a):
- correct[i]: the intervened run's top next token (over the whole vocabulary) is c;
- toward[i] = L_int(c) - L_int(a), the intervened run's logit difference toward c;
- clean[i] = L_b(a) - L_b(c), the clean base run's logit difference toward its own answer.
IIA = mean(correct); graded IIA = mean(toward) / mean(clean) (a ratio of means, as faithfulness is:
1 when the intervention moves the model to c as firmly as it held a, 0 when it is undecided, -1
when nothing moved); baseline IIA = mean(correct) of the same pairs with a same-size set of nodes
that carries nothing the hypothesis declares (none when the model has too few such nodes).
"""

from __future__ import annotations

import numpy as np

from circuitlang.results.report import InterchangeScore, Scrubbing
from circuitlang.verification.statistics import Resamples, ratio


def interchange_score(
    target: str,
    variable: str,
    nodes: list[str],
    without_source: int,
    correct: np.ndarray,
    toward: np.ndarray,
    clean: np.ndarray,
    baseline_correct: np.ndarray | None,
    resamples: Resamples,
) -> InterchangeScore:
    arrays = {"correct": correct.astype(float), "toward": toward, "clean": clean}
    if baseline_correct is not None:
        arrays["baseline"] = baseline_correct.astype(float)
    return InterchangeScore(
        target=target,
        variable=variable,
        nodes=nodes,
        pairs=len(correct),
        without_source=without_source,
        iia=resamples.estimate(arrays, lambda m: m["correct"]),
        graded_iia=resamples.estimate(arrays, lambda m: ratio(m["toward"], m["clean"])),
        baseline_iia=None if baseline_correct is None else resamples.estimate(arrays, lambda m: m["baseline"]),
    )


def scrubbing(
    sites: int, only_the_base_agrees: int, model: np.ndarray, scrubbed: np.ndarray, random: np.ndarray, resamples: Resamples
) -> Scrubbing:
    """Per base prompt: the metric of the model, of the scrubbed model and of the model on the
    random prompt (all read with the base's answers); recovered is a ratio of means."""
    arrays = {"model": model, "scrubbed": scrubbed, "random": random}
    return Scrubbing(
        prompts=len(model),
        sites=sites,
        only_the_base_agrees=only_the_base_agrees,
        f_model=resamples.estimate(arrays, lambda m: m["model"]),
        f_scrubbed=resamples.estimate(arrays, lambda m: m["scrubbed"]),
        f_random=resamples.estimate(arrays, lambda m: m["random"]),
        recovered=resamples.estimate(arrays, lambda m: ratio(m["scrubbed"] - m["random"], m["model"] - m["random"])),
    )
