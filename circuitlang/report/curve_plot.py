"""Faithfulness curves -> an SVG line plot: the normalized faithfulness f against the fraction of
the graph's edges kept.

The x axis is logarithmic, as in MIB's plots, so the small circuits a method is judged by are not
squeezed into the left edge; dashed lines mark f = 0 (the empty circuit) and f = 1 (the model).
Several curves share one plot (methods compared on one task); the legend gives each curve's areas.
Written by hand in plain SVG: no plotting library, the same numbers give the same file.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence
from xml.sax.saxutils import escape

from circuitlang.report.diagram import SPEC_COLOURS

if TYPE_CHECKING:
    from circuitlang.discover.curves import FaithfulnessCurve

WIDTH, HEIGHT = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 64, 230, 40, 52  # margins: the legend sits on the right
FONT = 'font-family="sans-serif" font-size="12"'
TITLE_FONT = 'font-family="sans-serif" font-size="14"'
MARKERS = ("circle", "square", "diamond", "triangle")  # with colour, so curves differ without colour too
Y_LABEL = "normalized faithfulness f (0: no edge, 1: model)"  # not verify's faithfulness F(C)/F(M)


def faithfulness_svg(curves: Sequence["FaithfulnessCurve"], title: str = "faithfulness curve") -> str:
    """The plot of one or more curves as SVG text."""
    x_axis = _LogAxis(min(x for c in curves for x in c.fractions), LEFT, WIDTH - RIGHT)
    y_axis = _LinearAxis(_y_range(curves), HEIGHT - BOTTOM, TOP)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="{TOP - 16}" {TITLE_FONT}>{escape(title)}</text>',
        *_axes(x_axis, y_axis),
    ]
    for index, curve in enumerate(curves):
        parts += _curve(curve, index, x_axis, y_axis)
        parts += _legend_entry(curve, index)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


class _LogAxis:
    """Fractions from a power of ten at or below the smallest up to 1, on a log scale."""

    def __init__(self, smallest: float, start: float, end: float) -> None:
        self.low = math.floor(math.log10(smallest))
        self.start, self.end = start, end

    def at(self, fraction: float) -> float:
        return self.start + (math.log10(fraction) - self.low) / -self.low * (self.end - self.start)

    def ticks(self) -> list[tuple[float, bool]]:
        """(fraction, labelled): the powers of ten labelled, 2 and 5 times them as minor ticks."""
        decades = [10.0**p for p in range(self.low, 1)]
        minor = [d * m for d in decades[:-1] for m in (2, 5)]
        return sorted([(d, True) for d in decades] + [(m, False) for m in minor])


class _LinearAxis:
    def __init__(self, limits: tuple[float, float], start: float, end: float) -> None:
        self.low, self.high = limits
        self.start, self.end = start, end

    def at(self, value: float) -> float:
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)

    def ticks(self) -> list[float]:
        step = _nice_step((self.high - self.low) / 6)
        first = math.ceil(self.low / step - 1e-9)
        return [round(i * step, 10) for i in range(first, int(math.floor(self.high / step + 1e-9)) + 1)]


def _y_range(curves: Sequence["FaithfulnessCurve"]) -> tuple[float, float]:
    """At least 0..1 (the empty circuit and the model), widened to every finite f, with a margin."""
    values = [p.normalized_faithfulness for c in curves for p in c.points if math.isfinite(p.normalized_faithfulness)]
    low, high = min([0.0, *values]), max([1.0, *values])
    margin = 0.05 * (high - low)
    return low - margin, high + margin


def _nice_step(rough: float) -> float:
    power = 10.0 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= rough)


def _axes(x_axis: _LogAxis, y_axis: _LinearAxis) -> list[str]:
    bottom, top = y_axis.start, y_axis.end
    parts = [f'<rect x="{x_axis.start}" y="{top}" width="{x_axis.end - x_axis.start}" height="{bottom - top}" fill="none" stroke="#444444"/>']
    for fraction, labelled in x_axis.ticks():
        x = _f(x_axis.at(fraction))
        parts.append(f'<line x1="{x}" y1="{bottom}" x2="{x}" y2="{bottom + (6 if labelled else 3)}" stroke="#444444"/>')
        if labelled:
            parts.append(f'<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}" stroke="#eeeeee"/>')
            parts.append(f'<text x="{x}" y="{bottom + 20}" {FONT} text-anchor="middle">{_percent(fraction)}</text>')
    for value in y_axis.ticks():
        y = _f(y_axis.at(value))
        parts.append(f'<line x1="{x_axis.start - 5}" y1="{y}" x2="{x_axis.start}" y2="{y}" stroke="#444444"/>')
        parts.append(f'<text x="{x_axis.start - 8}" y="{y}" {FONT} text-anchor="end" dominant-baseline="middle">{value:g}</text>')
    for reference in (0.0, 1.0):
        y = _f(y_axis.at(reference))
        parts.append(f'<line x1="{x_axis.start}" y1="{y}" x2="{x_axis.end}" y2="{y}" stroke="#888888" stroke-dasharray="4 3"/>')
    middle = (x_axis.start + x_axis.end) / 2
    parts.append(f'<text x="{_f(middle)}" y="{bottom + 40}" {FONT} text-anchor="middle">edges kept (fraction of the graph, log scale)</text>')
    parts.append(
        f'<text x="16" y="{_f((top + bottom) / 2)}" {FONT} text-anchor="middle" '
        f'transform="rotate(-90 16 {_f((top + bottom) / 2)})">{Y_LABEL}</text>'
    )
    return parts


def _curve(curve: "FaithfulnessCurve", index: int, x_axis: _LogAxis, y_axis: _LinearAxis) -> list[str]:
    colour = SPEC_COLOURS[index % len(SPEC_COLOURS)]
    points = [
        (x_axis.at(x), y_axis.at(p.normalized_faithfulness))
        for x, p in zip(curve.fractions, curve.points)
        if math.isfinite(p.normalized_faithfulness)
    ]
    line = " ".join(f"{_f(x)},{_f(y)}" for x, y in points)
    parts = [f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>']
    parts += [_marker(MARKERS[index % len(MARKERS)], x, y, colour) for x, y in points]
    return parts


def _marker(shape: str, x: float, y: float, colour: str, size: float = 3.5) -> str:
    if shape == "circle":
        return f'<circle cx="{_f(x)}" cy="{_f(y)}" r="{size}" fill="{colour}"/>'
    if shape == "square":
        return f'<rect x="{_f(x - size)}" y="{_f(y - size)}" width="{2 * size}" height="{2 * size}" fill="{colour}"/>'
    corners = {"diamond": ((0, -1.3), (1.3, 0), (0, 1.3), (-1.3, 0)), "triangle": ((0, -1.3), (1.2, 1), (-1.2, 1))}[shape]
    text = " ".join(f"{_f(x + dx * size)},{_f(y + dy * size)}" for dx, dy in corners)
    return f'<polygon points="{text}" fill="{colour}"/>'


def _legend_entry(curve: "FaithfulnessCurve", index: int) -> list[str]:
    colour = SPEC_COLOURS[index % len(SPEC_COLOURS)]
    x, y = WIDTH - RIGHT + 16, TOP + 10 + 62 * index
    return [
        f'<line x1="{x}" y1="{y}" x2="{x + 22}" y2="{y}" stroke="{colour}" stroke-width="2"/>',
        _marker(MARKERS[index % len(MARKERS)], x + 11, y, colour),
        f'<text x="{x + 30}" y="{y + 4}" {FONT}>{escape(curve.label or f"curve {index + 1}")}</text>',
        f'<text x="{x + 30}" y="{y + 20}" {FONT} fill="#444444">CPR {curve.cpr:.3f}, CMD {curve.cmd:.3f}</text>',
        f'<text x="{x + 30}" y="{y + 36}" {FONT} fill="#444444">over ln x: {curve.cpr_log:.2f}, {curve.cmd_log:.2f}</text>',
    ]


# ---- PNG and PDF: the same plot drawn by matplotlib (the `pictures` extra) ----------------------------

IMAGE_FORMATS = ("svg", "png", "pdf")
MATPLOTLIB_MARKERS = {"circle": "o", "square": "s", "diamond": "D", "triangle": "^"}


def faithfulness_image(curves: Sequence["FaithfulnessCurve"], title: str, image_format: str) -> str | bytes:
    """The plot in `image_format` (svg, png or pdf): SVG text as drawn above, else the bytes of
    the same axes, curves and legend drawn by matplotlib."""
    if image_format == "svg":
        return faithfulness_svg(curves, title)
    import io

    figure = faithfulness_figure(curves, title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=image_format, dpi=150, metadata={"Software": None} if image_format == "png" else None)
    return buffer.getvalue()


def faithfulness_figure(curves: Sequence["FaithfulnessCurve"], title: str):  # -> matplotlib.figure.Figure
    """The SVG's plot as a matplotlib figure: log x from a power of ten to 1, f on y with dashed
    lines at 0 and 1, one line and marker per curve, its areas in the legend."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH / 100, HEIGHT / 100))
    axes = figure.add_axes((LEFT / WIDTH, BOTTOM / HEIGHT, 1 - (LEFT + RIGHT) / WIDTH, 1 - (TOP + BOTTOM) / HEIGHT))
    axes.set_xscale("log")
    axes.set_xlim(10.0 ** _LogAxis(min(x for c in curves for x in c.fractions), 0, 1).low, 1)
    axes.set_ylim(*_y_range(curves))
    for reference in (0.0, 1.0):
        axes.axhline(reference, color="#888888", linestyle=(0, (4, 3)), linewidth=1)
    for index, curve in enumerate(curves):
        kept = [(x, p.normalized_faithfulness) for x, p in zip(curve.fractions, curve.points) if math.isfinite(p.normalized_faithfulness)]
        areas = f"CPR {curve.cpr:.3f}, CMD {curve.cmd:.3f}\nover ln x: {curve.cpr_log:.2f}, {curve.cmd_log:.2f}"
        label = f"{curve.label or f'curve {index + 1}'}\n{areas}"
        axes.plot(
            [x for x, _ in kept],
            [y for _, y in kept],
            color=SPEC_COLOURS[index % len(SPEC_COLOURS)],
            marker=MATPLOTLIB_MARKERS[MARKERS[index % len(MARKERS)]],
            markersize=4,
            linewidth=2,
            label=label,
        )
    axes.set_xlabel("edges kept (fraction of the graph, log scale)")
    axes.set_ylabel(Y_LABEL, fontsize=8)
    axes.set_title(title, fontsize=10, loc="left")
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False)
    return figure


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def _f(value: float) -> str:
    """Coordinates to 0.1 px: enough for the eye, and stable text from run to run."""
    return f"{value:.1f}"
