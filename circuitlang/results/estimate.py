"""A number with its bootstrap confidence interval: the unit of every reported result.

The intervals are drawn in verification/statistics.py (one set of prompt resamples per prompt
set); this is only the value, so that every result model can hold one without the numerics.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Estimate(BaseModel):
    """A number with its bootstrap confidence interval."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def includes_zero(self) -> bool:
        """Whether the interval cannot tell the number from zero (its sign is unknown)."""
        return min(self.low, self.high) <= 0.0 <= max(self.low, self.high)
