"""Attention patterns -> heatmaps, as SVG text or PNG bytes: one picture per head, query positions
(attending from) down, key positions (attended to) across, each labelled by its name and an
example token. The colour scale is fixed at 0 to 1 (attention is a probability), so two heads'
pictures compare by eye; every cell carries its value; grey cells are keys after the query,
which a causal model cannot attend to. With named positions a row need not sum to 1: the tokens
between them are left out (the title says so).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from circuitlang.report.heatmaps import MAX_ANNOTATED_CELLS, NOT_APPLICABLE, _annotate
from circuitlang.report.lens_plot import figure_output
from circuitlang.results.lens import AttentionResult


def attention_picture(result: AttentionResult, head: str, image: str = "svg") -> str | bytes:
    """The pattern of `head` ("1.0") in `result`."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    values = np.array(result.pattern(head).pattern, dtype=float)
    values[np.triu_indices_from(values, k=1)] = np.nan  # keys after the query
    labels = [f"{p}\n{e!r}" if e else p for p, e in zip(result.positions, result.examples)]
    size = len(labels)
    figure = Figure(figsize=(max(5.6, 2.6 + 0.75 * size), max(4.2, 2.4 + 0.5 * size)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = colormaps["Blues"].with_extremes(bad=NOT_APPLICABLE)
    shown = axes.imshow(np.ma.masked_invalid(values), cmap=colours, norm=Normalize(0.0, 1.0), aspect="auto", interpolation="nearest")
    axes.set_xticks(range(size), labels, fontsize=8)
    axes.set_yticks(range(size), labels, fontsize=8)
    axes.set_xlabel("key: attended to")
    axes.set_ylabel("query: attending from")
    if values.size <= MAX_ANNOTATED_CELLS:
        _annotate(axes, values, 1.0)
    figure.colorbar(shown, ax=axes, shrink=min(1.0, max(0.4, 6 / size))).set_label("attention (probability)")
    axes.set_title(_title(result, head), fontsize=9, loc="left")
    return figure_output(figure, colours, image)


def _title(result: AttentionResult, head: str) -> str:
    context = result.context
    layer, index = head.split(".")
    where = f"{Path(context.spec_path).name} · {context.model}\nprompt set {context.prompt_set} · {result.described}"
    note = "named positions only: a row need not sum to 1" if result.position_kind == "named" else "every token"
    return f"Attention of head {head} (layer {layer}, head {index})\n{where}\n{note}; grey: keys after the query"
