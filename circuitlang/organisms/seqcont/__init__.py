"""The "seqcont" model organism: a small GPT-2 trained from scratch on the seeds' tasks.

Six tasks, in exactly the text formats circuitlang's prompt sets render (see `tasks.py`):
increasing and decreasing number sequences, months, number words, greater-than and IOI. The
trained weights live in `weights/` (a Hugging Face folder), so a spec names the model as
`on "organism:seqcont"`. `train.py` rebuilds them from a seed; `evaluate.py` reports per-task
accuracy on held-out prompts. The model card is `docs/organism.md`.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent / "weights"
