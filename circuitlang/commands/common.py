"""What every command needs: load a spec, open a run on a device, show progress, and answer a
misspelt option value with the nearest valid one. Problems are raised as typed errors
(circuitlang.errors); the command line's entry point prints them and picks the exit code."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from circuitlang.data.datasets import expand_all
from circuitlang.engine.placement import DEVICE_MAPS, MAX_MEMORY_FORMS, Placement, PlacementError, check_device, parse_max_memory
from circuitlang.errors import InputError, UsageError
from circuitlang.ir import models as ir
from circuitlang.ir.lower import load_spec
from circuitlang.ir.paths import read_regular
from circuitlang.ir.suggest import did_you_mean
from circuitlang.report.files import special_target

if TYPE_CHECKING:  # torch is imported only by commands that run a model
    from circuitlang.engine.session import Session

# An edge's entry in an EAP-IG Graph.to_json file is ~70 bytes; room for long scores and indentation.
BYTES_PER_EDGE = 200


ROOT_HELP = "the project root: every file the spec names (data, `use`, model folder) must lie inside it (default: the spec's folder)"


DEVICE_HELP = "cpu (default), cuda, cuda:1, ..."
DEVICE_MAP_HELP = (
    "place the model's layers across the GPUs, host memory and disk with accelerate, for a model that does not fit "
    "on one device: auto, balanced or sequential (docs/scale.md); not with --device other than cpu"
)
MAX_MEMORY_HELP = (
    "what each device may hold of the weights under --device-map (which it implies): DEVICE=SIZE, comma-separated or "
    "repeated, e.g. 0=75GiB,1=75GiB or cpu=300MB; DEVICE is cpu, disk, mps or a GPU index; a device left out holds "
    "nothing; what fits nowhere else goes to disk"
)
OFFLOAD_DIR_HELP = (
    "folder for the weights that go to disk under --device-map (which it implies), when they cannot be read in place "
    "from the model's safetensors files (default: a temporary folder)"
)


def device_option(text: str) -> str:
    """`--device`, checked as the command line is read: a device torch does not know, or a GPU this
    machine lacks, is a usage error (exit 2) naming the option, before any spec or model is read."""
    if text == "cpu":  # the default: torch stays unimported until the spec has been checked
        return text
    try:
        import torch
    except ModuleNotFoundError:  # the command itself then says which extra it needs
        return text
    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"unknown device '{text}': use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"device '{text}' is not supported: use cpu, cuda or cuda:N")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"'{text}' was asked for, but torch sees no Apple GPU (MPS): use --device cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(
            f"'{text}' was asked for, but torch sees no CUDA device: use --device cpu, or run on a machine with a GPU and a CUDA build of torch"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"'{text}': this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    return text


def add_device_argument(parser) -> None:  # argparse.ArgumentParser
    """`--device`, and `--device-map`, `--max-memory`, `--offload-dir` for a model beyond one device
    (`placement_from_args` reads them)."""
    parser.add_argument("--device", default="cpu", type=device_option, help=DEVICE_HELP)
    parser.add_argument("--device-map", choices=DEVICE_MAPS, type=one_of(DEVICE_MAPS), default=None, help=DEVICE_MAP_HELP)
    parser.add_argument("--max-memory", action="append", type=max_memory_option, default=None, metavar="DEVICE=SIZE", help=MAX_MEMORY_HELP)
    parser.add_argument("--offload-dir", type=offload_dir_option, default=None, metavar="DIR", help=OFFLOAD_DIR_HELP)


def max_memory_option(text: str) -> dict[str, str]:
    """`--max-memory`, checked as the command line is read: sizes, device names, and GPUs this
    machine has (when torch is installed)."""
    try:
        budgets = parse_max_memory(text)
    except PlacementError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    gpus = [int(device) for device in budgets if device.isdigit()]
    if gpus:
        try:
            import torch
        except ModuleNotFoundError:  # the command itself then says which extra it needs
            return budgets
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if max(gpus) >= count:
            raise argparse.ArgumentTypeError(f"{text!r} names GPU {max(gpus)}, but torch sees {count} CUDA device(s), numbered from 0")
    return budgets


def offload_dir_option(text: str) -> Path:
    """`--offload-dir`: a folder, or a path where one can be made."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"'{text}' is not a folder")
    return path


def placement_from_args(args: argparse.Namespace) -> Placement | None:
    """The placement `--device-map`, `--max-memory` and `--offload-dir` ask for (None without
    them); a device named twice in `--max-memory`, or `--device` other than cpu with a device
    map, is a UsageError (exit 2)."""
    budgets: dict[str, str] = {}
    for given in getattr(args, "max_memory", None) or []:
        for device, size in given.items():
            if device in budgets:
                raise UsageError(f"--max-memory names device {device!r} twice ({budgets[device]} and {size}): {MAX_MEMORY_FORMS}")
            budgets[device] = size
    offload = getattr(args, "offload_dir", None)
    try:
        placement = Placement.of(getattr(args, "device_map", None), budgets or None, None if offload is None else str(offload))
        check_device(getattr(args, "device", "cpu"), placement)
    except PlacementError as error:
        raise UsageError(f"error: {error}") from None
    return placement


def add_root_argument(parser) -> None:  # argparse.ArgumentParser
    parser.add_argument("--root", type=Path, default=None, metavar="DIR", help=ROOT_HELP)


def load_checked(path: Path, root: Path | None = None) -> ir.Spec:
    """The spec, validated and with its prompts expanded once (so that a data error is found before
    any model loads); raises the spec's CircuitlangError."""
    spec = load_spec(path, root)
    expand_all(spec)
    return spec


def open_checked(spec: ir.Spec, device: str = "cpu", threads: int = 0, placement: Placement | None = None) -> "Session":
    """Load the model (placed by `placement`, a device map, when given) and bind the prompts;
    raises a DataError (a prompt the tokenizer splits differently) or a ModelError."""
    from circuitlang.engine.session import open_session

    session = open_session(spec, device=device, placement=placement)
    set_threads(session, threads)
    return session


def set_threads(session: "Session", threads: int) -> None:
    from circuitlang.engine.session import set_threads as apply

    apply(session, threads)


def why_unwritable(path: Path | None) -> str:
    """Why `path` cannot take a report, or "" (the folder is created on write when missing)."""
    if path is None:
        return ""
    if path.is_dir():
        return "it is a directory"
    special = special_target(path)
    if special:
        return special
    folder = next((p for p in path.resolve().parents if p.exists()), None)
    if folder is not None and not (folder.is_dir() and os.access(folder, os.W_OK)):
        return f"{folder} is not a writable folder"
    return ""


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def unknown_value(value: str, choices: Sequence[str], forms: str = "") -> str:
    """What to say of an option value that names nothing: the value, the nearest choice when one is
    close, and the choices (or `forms`, the ways to write a value, when they are too many to list)."""
    expected = f"expected {forms}" if forms else f"choose from {', '.join(choices)}"
    return f"{value!r}: {did_you_mean(value, choices)}{expected}"


def one_of(choices: Sequence[str]) -> Callable[[str], str]:
    """An argparse `type` for an option with fixed choices: a misspelt value gets the nearest one
    (argparse's own message for `choices` names none)."""

    def checked(value: str) -> str:
        if value not in choices:
            raise argparse.ArgumentTypeError(unknown_value(value, choices))
        return value

    return checked


PROGRESS_INTERVAL_S = 30.0  # seconds between progress lines without a terminal


@contextmanager
def progress_display(command: str) -> Iterator[Callable[[str], None]]:
    """Where a long command's progress lines go: on a terminal one live line; without one (CI
    logs) a line on stderr every PROGRESS_INTERVAL_S seconds, so a long run is visibly alive.
    Never stdout, which carries the command's results."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from circuitlang.verification.progress import EverySoOften

    console = Console(emoji=False, stderr=True)
    if not console.is_terminal:
        yield EverySoOften(lambda line: print(f"{command}: {line}", file=sys.stderr, flush=True), PROGRESS_INTERVAL_S)
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}", markup=False), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("loading the model", total=None)
        yield lambda line: progress.update(task, description=line)


VALUES_PER_ENTRY = 4  # an entry is its name, an object, a score and a flag: the JSON values it adds


def graph_value_limit(shape: ir.ModelShape | None, max_edges: int) -> int:
    """How many JSON values a graph file of this model may hold. Every node (embeddings, each head
    and MLP, the logits) may send an edge to every other on three channels, so a graph has at most
    3 n^2 edges and n nodes; with no known shape, `max_edges`. Parsing allocates about 100 bytes
    per value, so this bounds the memory a file can make `json` take, whatever its size."""
    if shape is None:
        entries = 2 * max_edges
    else:
        nodes = 2 + shape.n_layers * (shape.n_heads + 1)
        entries = min(2 * max_edges, 3 * nodes * nodes + nodes)
    return VALUES_PER_ENTRY * entries + 1000


def read_graph_json(path: Path, max_bytes: int, max_values: int | None = None) -> object:
    """The graph file's JSON; its size (a regular file of at most `max_bytes`) and its number of
    values (at most `max_values`, counted from its brackets and commas before parsing: `{},{},...`
    would make json hold about 27 bytes per byte) are checked before it is parsed. A file that
    cannot be read or is not JSON raises an InputError."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(f"{path}: {size:,} bytes, more than the {max_bytes:,} the graph size limit allows (raise it with --max-edges N)")
        data = read_regular(path, max_bytes, "graph file")
        values = data.count(b",") + data.count(b"{") + data.count(b"[")
        if max_values is not None and values > max_values:
            raise InputError(
                f"{path}: about {values:,} JSON values, more than a graph of the base spec's model can hold ({max_values:,}): "
                "not an EAP-IG graph of this model"
            )
        return json.loads(data.decode("utf-8"))
    except OSError as error:
        raise InputError(f"{path}: cannot read: {error.strerror or error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not JSON: {error} (export the graph with EAP-IG's Graph.to_json)") from None
    except (ValueError, RecursionError):  # integers over 4300 digits, nesting past Python's stack
        raise InputError(
            f"{path}: a number too long or nesting too deep for an EAP-IG graph (export the graph with EAP-IG's Graph.to_json)"
        ) from None
