"""Case number -> input bytes, reproducibly: the same (seed, index) always gives the same case."""

from __future__ import annotations

import random

from fuzz.corpus import seeds
from fuzz.generate import generate_spec
from fuzz.mutate import mutate

GENERATED_SHARE = 0.35  # the rest are mutated seeds


def build_case(seed: int, index: int) -> bytes:
    rng = random.Random(f"{seed}:{index}")
    corpus = [s.data for s in seeds()]
    if rng.random() < GENERATED_SHARE:
        data = generate_spec(rng).encode("utf-8")
        return mutate(rng, data, corpus) if rng.random() < 0.5 else data
    return mutate(rng, rng.choice(corpus), corpus)
