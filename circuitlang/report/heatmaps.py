"""Patching matrices -> heatmap pictures (PNG or SVG, by the file's extension).

Layer x head for per-head sweeps and path patching; "L.H" x named position (with an example
token under each position) for heads by position; "mlp L" x position for MLPs. The colour map
diverges at 0 with symmetric limits, so white always means "no effect"; the colour bar names the
unit, and every cell carries its value in that same unit (no hidden x100), so a threshold read
off the picture is a threshold on the data. Grey cells do not apply.

matplotlib is imported inside `draw_heatmap`, through its object API and the Agg canvas: no
global pyplot state, no display needed.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from circuitlang.report.patch_files import NORMALIZED_UNIT
from circuitlang.results.patch_report import PatchContext, PatchMatrix
from circuitlang.report.files import write_atomically

MAX_ANNOTATED_CELLS = 900  # beyond this the numbers would be too small to read
NOT_APPLICABLE = "#d0d0d0"
DPI = 110


def draw_heatmap(matrix: PatchMatrix, context: PatchContext, path: Path, normalized: bool = False) -> None:
    from matplotlib import rc_context
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    values = matrix.normalized if normalized else matrix.delta
    limit = _symmetric_limit(values)
    figure = Figure(figsize=_size(matrix), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours = _colour_map()
    image = axes.imshow(np.ma.masked_invalid(values), cmap=colours, norm=Normalize(-limit, limit), aspect="auto", interpolation="nearest")
    _label_axes(axes, matrix)
    if values.size <= MAX_ANNOTATED_CELLS:
        _annotate(axes, values, limit)
    bar = figure.colorbar(image, ax=axes, shrink=min(1.0, max(0.4, 6 / max(len(matrix.rows), 1))))
    bar.set_label(f"normalized effect ({NORMALIZED_UNIT})" if normalized else context.delta_label())
    axes.set_title(_title(matrix, context), fontsize=9, loc="left")
    # SVG: text stays text (searchable, smaller), ids are stable from run to run.
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "circuitlang"}):
        if path.suffix.lower() == ".png":
            write_atomically(path, _compact_png(figure, colours))
        else:
            buffer = io.BytesIO()
            figure.savefig(
                buffer, format=path.suffix.lstrip(".").lower() or "svg", metadata={"Date": None}
            )  # no date: the same numbers give the same file
            write_atomically(path, buffer.getvalue())


def _compact_png(figure, colours) -> bytes:
    """A PNG with a 256-colour palette: the colour map's own colours plus greys for text and lines,
    each pixel mapped to its exact nearest entry (a palette fitted to the pixels would band the
    colour bar). A third of the size of a true-colour file, the same to the eye: the pictures are
    meant to be committed next to the docs."""
    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    buffer.seek(0)
    with Image.open(buffer) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.int32)
    samples = [colours(i / 190)[:3] for i in range(191)] + [(g / 63,) * 3 for g in range(64)] + [colours(np.nan)[:3]]
    palette = np.round(np.array(samples) * 255).astype(np.int32)  # [256, 3]
    keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    unique, inverse = np.unique(keys.ravel(), return_inverse=True)
    distinct = np.stack([unique >> 16, (unique >> 8) & 255, unique & 255], axis=1)
    nearest = ((distinct[:, None, :] - palette[None]) ** 2).sum(-1).argmin(1)
    indexed = Image.fromarray(nearest[inverse].reshape(keys.shape).astype(np.uint8), mode="P")
    indexed.putpalette(palette.astype(np.uint8).ravel().tolist())
    out = io.BytesIO()
    indexed.save(out, format="png", optimize=True)
    return out.getvalue()


def _colour_map():
    from matplotlib import colormaps

    # negative (the metric drops) blue, positive red, 0 white
    return colormaps["RdBu_r"].with_extremes(bad=NOT_APPLICABLE)


def _symmetric_limit(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    limit = float(finite.max()) if finite.size else 0.0
    return limit if limit > 0 else 1.0  # all zero: any scale shows white


def _size(matrix: PatchMatrix) -> tuple[float, float]:
    by_position = matrix.kind != "heads" and matrix.kind != "path"
    width = 2.6 + len(matrix.columns) * (0.85 if by_position else 0.6)
    height = 1.9 + len(matrix.rows) * (0.24 if by_position else 0.42)
    return max(width, 6.4), max(height, 3.2)


def _label_axes(axes, matrix: PatchMatrix) -> None:
    axes.set_xticks(range(len(matrix.columns)))
    axes.set_yticks(range(len(matrix.rows)))
    if matrix.kind in ("heads", "path"):
        axes.set_xticklabels([c.removeprefix("head ") for c in matrix.columns])
        axes.set_yticklabels([r.removeprefix("layer ") for r in matrix.rows])
        grey = matrix.kind == "path" and bool(np.isnan(matrix.delta).any())
        axes.set_xlabel("head" + ("    (grey: no direct path into the receiver)" if grey else ""))
        axes.set_ylabel("layer")
        return
    axes.set_xticklabels([_column_label(c, e) for c, e in zip(matrix.columns, matrix.examples)], fontsize=8)
    axes.set_yticklabels(matrix.rows, fontsize=8 if len(matrix.rows) > 24 else 9)
    axes.set_xlabel("position (example token from the first prompt); 'all' = every position")
    axes.set_ylabel("head (layer.head)" if matrix.kind == "heads_by_position" else "MLP")
    axes.axvline(len(matrix.columns) - 1.5, color="black", linewidth=1.2)  # 'all' is not a position
    if matrix.kind == "heads_by_position":
        _layer_separators(axes, matrix.rows)


def _column_label(column: str, example: str) -> str:
    return f"{column}\n{example!r}" if example else column


def _layer_separators(axes, rows: tuple[str, ...]) -> None:
    layers = [row.split(".")[0] for row in rows]
    for index in range(1, len(layers)):
        if layers[index] != layers[index - 1]:
            axes.axhline(index - 0.5, color="black", linewidth=0.6)


def _annotate(axes, values: np.ndarray, limit: float) -> None:
    digits = _decimals(limit)
    size = 7 if values.size > 120 else 8
    for (i, j), value in np.ndenumerate(values):
        if not math.isfinite(float(value)):
            continue
        text = f"{value:.{digits}f}"
        if float(text) == 0:
            text = text.lstrip("-")  # "-0.00" says nothing "0.00" does not
        colour = "#a0a0a0" if float(text) == 0 else "white" if abs(value) > 0.6 * limit else "black"
        axes.text(j, i, text, ha="center", va="center", fontsize=size, color=colour)


def _decimals(limit: float) -> int:
    """Enough decimals that the largest value shows three significant digits (0 to 4)."""
    return int(min(4, max(0, 2 - math.floor(math.log10(limit)))))


def _title(matrix: PatchMatrix, context: PatchContext) -> str:
    shown = matrix.title[0].upper() + matrix.title[1:]
    source = "paired corrupt prompt" if matrix.kind == "path" else context.ablation
    return (
        f"{shown}\n{Path(context.spec_path).name} · prompt set {context.prompt_set} · {context.n_prompts} prompts"
        f" · patched from: {source}\nclean F(M) = {context.f_model:.4g}, everything ablated F(∅) = "
        f"{context.f_empty:.4g} ({context.metric}, {context.unit})"
    )
