"""A fuzzer for the spec front end: `check --no-tokenize`, `plan` and `fmt`, run in-process; and,
as other targets (fuzz/targets/), for the data files, EAP-IG graph files, model folders and
result-cache entries that circuitlang reads.

Every input must end in success or in `CircuitlangError`s that each carry a span, within a time
and a memory budget; `fmt`'s output must parse again and be a fixed point. See docs/fuzzing.md.
"""
