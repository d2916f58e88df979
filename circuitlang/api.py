"""The Python API: load a spec, bind it to its model, evaluate circuit variants, verify.

    import circuitlang
    spec = circuitlang.load("specs/incr_digits.circ")
    run = circuitlang.open_run(spec, device="cpu")
    values = run.metric([run.circuit(), run.full_model(), run.empty()])   # [3, n_prompts]
    report = circuitlang.api.verify(run)                                  # what `circuitlang verify` reports

`Run` is the public face of an engine session (`engine.session.Session`), which the workflows
run on; `run.session` hands it to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from circuitlang.data.datasets import Dataset
from circuitlang.engine.bind import BoundPromptSet
from circuitlang.engine.models import LoadedModel
from circuitlang.engine.path_patching import Receiver
from circuitlang.engine.session import Session, open_session
from circuitlang.engine.variants import Variant
from circuitlang.ir import models as ir
from circuitlang.ir.lower import load_spec

if TYPE_CHECKING:
    from circuitlang.verify.report_model import Report


def load(path: str | Path, root: str | Path | None = None) -> ir.Spec:
    """Parse and validate a `.circ` file (no model needed); the files it names must lie inside
    `root` (default: its folder)."""
    return load_spec(path, root)


class Run:
    """A spec bound to its loaded model."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def spec(self) -> ir.Spec:
        return self.session.spec

    @property
    def model(self) -> LoadedModel:
        return self.session.model

    @property
    def datasets(self) -> tuple[Dataset, ...]:
        return self.session.datasets

    @property
    def bound(self) -> dict[str, BoundPromptSet]:
        """Each prompt set's prompts as tokens, with the token index of every named position."""
        return self.session.bound

    def metric(self, variants: Sequence[Variant], prompt_set: str | None = None) -> torch.Tensor:
        """The metric of each variant on each prompt: float64 [n_variants, n_prompts]."""
        engine = self.session.engine(prompt_set)
        return engine.run(variants, engine.readout())

    def circuit(self, without: frozenset[ir.Node] = frozenset()) -> Variant:
        """The spec's circuit (minus `without`), everything else ablated."""
        return self.session.circuit(without)

    def full_model(self, without: frozenset[ir.Node] = frozenset()) -> Variant:
        """The whole model (minus `without`)."""
        return self.session.full_model(without)

    def empty(self) -> Variant:
        """Every node ablated."""
        return self.session.empty()


def open_run(spec: ir.Spec, device: str = "cpu", dtype: torch.dtype = torch.float32,
             batch_size: int | None = None) -> Run:
    """Load the model, expand and bind every prompt set."""
    return Run(open_session(spec, device, dtype, batch_size))


def verify(run: Run, progress: Callable[[str], None] | None = None, audit: bool | None = None) -> "Report":
    """Every experiment the spec needs and every claim: the Report `circuitlang verify` prints."""
    from circuitlang.verifier import verify as verify_session

    return verify_session(run.session, progress, audit)


def path_patch(run: Run, senders: Sequence[ir.Node], receivers: Sequence[Receiver], prompt_set: str | None = None,
               freeze_mlps: bool = False) -> torch.Tensor:
    """Per prompt: the metric after patching senders -> receivers (see engine.path_patching)."""
    from circuitlang.engine.path_patching import path_patch as patch

    engine = run.session.engine(prompt_set)
    return patch(engine, senders, receivers, engine.readout(), freeze_mlps)
