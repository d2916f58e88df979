"""How edge scores rank edges for a faithfulness curve (light: no torch, so `--help` stays cheap).

MIB (Mueller et al. 2025) evaluates a circuit track's scores both ways, with the `absolute`
argument of its `evaluate_area_under_curve`: by |score|, so that an edge that hurts the metric
counts as much as one that helps it, and by the signed score, so that edges that help come first
and those that hurt come last. Its leaderboard takes CPR from the signed ranking and CMD from the
absolute one (docs/discover.md, "Faithfulness curves").
"""

from __future__ import annotations

from enum import Enum


class Ranking(Enum):
    ABSOLUTE = "abs"  # the largest |score| first: edges that matter either way
    SIGNED = "signed"  # the largest score first: edges whose removal lowers the metric most

    def strength(self, score: float) -> float:
        """The sort key, largest first; an unscored edge (NaN) ranks below every score."""
        if score != score:
            return float("-inf")
        return abs(score) if self is Ranking.ABSOLUTE else score

    @property
    def by(self) -> str:
        """How outputs say it: "by |score|" or "by signed score"."""
        return "by |score|" if self is Ranking.ABSOLUTE else "by signed score"


RANKINGS = tuple(ranking.value for ranking in Ranking)
