"""`--ray [ADDRESS]` and `--workers N`, for the commands whose work divides into independent
tasks (verify's specs, compare's transfer columns); circuitlang.cluster runs them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from circuitlang.commands.common import positive_int
from circuitlang.errors import UsageError

if TYPE_CHECKING:
    from circuitlang.cluster.connect import ClusterRequest

RAY_HELP = (
    "spread the work over a Ray cluster (pip install 'circuitlang[cluster]'): the one at ADDRESS, "
    "else $RAY_ADDRESS, else one started on this machine for the run (docs/scale.md)"
)


def add_ray_arguments(parser: argparse.ArgumentParser, work: str) -> None:
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS", help=RAY_HELP)
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help=f"--ray: workers, each holding one model ({work}; default: as many as the cluster has "
        "free CPUs for, --threads each, or free GPUs with --device cuda)",
    )


def ray_request(args: argparse.Namespace) -> ClusterRequest | None:
    """The cluster asked for, or None. `--ray specs/x.circ` (argparse reads the spec as the address)
    is taken as a spec given after a bare `--ray`."""
    if args.ray and (args.ray.endswith(".circ") or Path(args.ray).is_file()):
        args.files = _as_given([Path(args.ray), *args.files], getattr(args, "argv", None))
        args.ray = ""
    if args.ray is None:
        if args.workers is not None:
            raise UsageError(f"{args.command} --workers: the number of Ray workers; add --ray")
        return None
    device = getattr(args, "device", "cpu")
    if device.startswith("cuda:") and device != "cuda:0":
        raise UsageError(f"--device {device} with --ray: Ray gives each worker its own GPU, which it sees as cuda:0; use --device cuda")
    from circuitlang.cluster.connect import ClusterRequest

    return ClusterRequest(args.ray or None, args.workers)


def _as_given(files: list[Path], argv: list[str] | None) -> list[Path]:
    """The specs in the order of the command line (`verify a.circ --ray b.circ`: a, then b)."""
    if argv is None:
        return files
    named = {str(path) for path in files}
    ordered = [Path(token) for token in argv if token in named]
    return ordered if sorted(map(str, ordered)) == sorted(map(str, files)) else files
