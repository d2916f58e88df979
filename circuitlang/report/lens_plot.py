"""Lens results -> heatmaps, as SVG text or PNG bytes (to write to a file or embed in a page).

- `lens_picture`: the logit lens, the residual stream after the embeddings and each layer (rows)
  read at each position (columns), in the metric's units;
- `direct_picture`: the direct contributions at the metric's readout position (`end`), layer x
  head, with each layer's MLP as a last column beyond a black line.

The house style of the patching heatmaps (report/heatmaps.py): a colour map diverging at 0 with
symmetric limits (white: nothing), every cell carrying its value in the colour bar's unit, the
spec, prompt set and prompt count in the title, positions labelled by name with an example token.
matplotlib is imported inside the functions, through its object API and the Agg canvas.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from circuitlang.report.heatmaps import MAX_ANNOTATED_CELLS, _annotate, _colour_map, _compact_png, _symmetric_limit
from circuitlang.results.lens import LensResult, ReadContext

FORMATS = ("svg", "png")


def lens_picture(result: LensResult, image: str = "svg") -> str | bytes:
    """Stage x position: the metric read through the final norm and the unembedding."""
    title = (
        f"Logit lens: {result.context.metric} read from the residual stream after each layer\n"
        f"{_source(result.context)}\nlast row at {_readout_label(result)} = the model's own metric, "
        f"{result.lens[-1, result.readout]:.4g} {result.context.unit}"
    )
    return _heatmap(
        result.lens,
        rows=[_stage_label(stage) for stage in result.stages],
        columns=[_position_label(p, e) for p, e in zip(result.positions, result.examples)],
        axis_labels=("position (example token from the first prompt)", "residual stream after"),
        bar_label=f"{result.context.metric_name} ({result.context.unit})",
        title=title,
        image=image,
    )


def direct_picture(result: LensResult, image: str = "svg", position: int | None = None) -> str | bytes:
    """Layer x (heads, MLP): each node's direct contribution at `end` (or column `position`)."""
    if result.direct is None:
        raise ValueError(f"no direct contributions to draw: {result.direct_note}")
    column = result.readout if position is None else position
    at = {piece: i for i, piece in enumerate(result.pieces)}
    rest = {name: float(result.direct[at[name], column]) for name in ("embed", "bias")}
    attention_bias = sum(float(result.direct[at[f"attn bias {layer}"], column]) for layer in range(result.n_layers))
    total = float(result.direct[:, column].sum())
    title = (
        f"Direct contributions at {result.positions[column]} along {result.direction}, final norm's scale frozen at the clean run\n"
        f"{_source(result.context)}\nnot shown: embeddings {rest['embed']:.3g}, attention biases {attention_bias:.3g}, "
        f"final biases {rest['bias']:.3g}; everything adds up to {total:.4g} ({result.context.unit})"
    )
    return _heatmap(
        result.head_grid(column),
        rows=[str(layer) for layer in range(result.n_layers)],
        columns=[str(head) for head in range(result.n_heads)] + ["MLP"],
        axis_labels=("head (and the layer's MLP)", "layer"),
        bar_label=f"direct contribution ({result.context.unit})",
        title=title,
        image=image,
        separator=result.n_heads - 0.5,
    )


def figure_output(figure: Any, colours: Any, image: str) -> str | bytes:
    """The figure as SVG text (text kept as text, stable ids, no date) or compact PNG bytes."""
    from matplotlib import rc_context

    if image not in FORMATS:
        raise ValueError(f"image {image!r}: choose {' or '.join(FORMATS)}")
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "circuitlang"}):
        if image == "png":
            return _compact_png(figure, colours)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
        return buffer.getvalue().decode("utf-8")


def _heatmap(
    values: np.ndarray,
    rows: list[str],
    columns: list[str],
    axis_labels: tuple[str, str],
    bar_label: str,
    title: str,
    image: str,
    separator: float | None = None,
) -> str | bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    limit = _symmetric_limit(values)
    figure = Figure(figsize=(max(6.4, 2.8 + 0.9 * len(columns)), max(3.4, 2.2 + 0.42 * len(rows))), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = _colour_map()
    shown = axes.imshow(np.ma.masked_invalid(values), cmap=colours, norm=Normalize(-limit, limit), aspect="auto", interpolation="nearest")
    axes.set_xticks(range(len(columns)), columns, fontsize=8)
    axes.set_yticks(range(len(rows)), rows, fontsize=9)
    axes.set_xlabel(axis_labels[0])
    axes.set_ylabel(axis_labels[1])
    if separator is not None:
        axes.axvline(separator, color="black", linewidth=1.2)
    if values.size <= MAX_ANNOTATED_CELLS:
        _annotate(axes, values, limit)
    figure.colorbar(shown, ax=axes, shrink=min(1.0, max(0.4, 6 / max(len(rows), 1)))).set_label(bar_label)
    axes.set_title(title, fontsize=9, loc="left")
    return figure_output(figure, colours, image)


def _source(context: ReadContext) -> str:
    return f"{Path(context.spec_path).name} · {context.model} · prompt set {context.prompt_set} · mean over {context.n_prompts} prompts"


def _stage_label(stage: str) -> str:
    return "embeddings" if stage == "embed" else stage


def _position_label(position: str, example: str) -> str:
    return f"{position}\n{example!r}" if example else position


def _readout_label(result: LensResult) -> str:
    return result.positions[result.readout]
