"""The one model a process holds between specs (a suite in one process, or a Ray worker)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from circuitlang.ir import models as ir

if TYPE_CHECKING:
    from circuitlang.engine.models import LoadedModel
    from circuitlang.engine.placement import Placement


class ModelShelf:
    """The one model this process holds: loaded on first use, reused while the specs ask for the
    same files on the same device, replaced (and freed) when they ask for another."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.model: LoadedModel | None = None

    def load(self, model: ir.ModelRef, device: str, dtype: Any, placement: Placement | None = None) -> LoadedModel:
        from circuitlang.engine.models import load_model

        key = (model.source, model.name, model.path, model.hub_id, device, str(dtype), placement)
        if key != self.key or self.model is None:
            self.key, self.model = None, None  # the old model is freed before the new one loads
            self.model = load_model(model, device, dtype, placement)
            self.key = key
        return self.model
