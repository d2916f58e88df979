"""Reaching a Ray cluster: the address given, else $RAY_ADDRESS, else a cluster started on this
machine for the run (and stopped after it).

`ray.init` on an address nothing answers retries for minutes; a TCP probe of the address first
makes an unreachable cluster a `ClusterError` (exit 3) within PROBE_TIMEOUT_S seconds.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from circuitlang.errors import ClusterError, MissingExtra

ADDRESS_VARIABLE = "RAY_ADDRESS"
PROBE_TIMEOUT_S = 5.0
LOCAL_OBJECT_STORE_BYTES = 256 << 20  # reports and cache entries travel through it, never weights
DEFAULT_RAY_PORT = 6379
UNREACHABLE_HINT = (
    "start one with `ray start --head` and pass its address (host:6379), set RAY_ADDRESS, or omit the address to run a local cluster"
)


@dataclass(frozen=True)
class ClusterRequest:
    """`--ray [ADDRESS]` and `--workers N`. `address`: None (or "") for $RAY_ADDRESS, else a local
    cluster; `workers`: None for one per CPU the cluster has (per GPU, on a GPU device)."""

    address: str | None = None
    workers: int | None = None


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingExtra("error: --ray needs Ray, which is not installed\n  hint: pip install 'circuitlang[cluster]'") from None
    return ray


@contextmanager
def connected(request: ClusterRequest) -> Iterator[Any]:
    """The `ray` module, connected; a cluster this process started is shut down on leaving. A Ray
    already initialized by the caller (a notebook, a test) is used as it is and left running."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    address = request.address or os.environ.get(ADDRESS_VARIABLE) or None
    if address is not None and address != "auto":
        probe(address)
    try:
        if address is None:
            ray.init(
                address="local",  # a new cluster for the run, even where `ray start` left one running
                num_cpus=os.cpu_count(),
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            )
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as error:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError...
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        reason = f"{type(error).__name__}: {_first_line(error)}"
        raise ClusterError(f"error: cannot start or reach {where}: {reason}\n  hint: {UNREACHABLE_HINT}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def probe(address: str) -> None:
    """Raise ClusterError unless something accepts a TCP connection at the address's host and port."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            pass
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error) or type(error).__name__
        raise ClusterError(
            f"error: the Ray cluster at {address} cannot be reached ({host}:{port}: {reason})\n  hint: {UNREACHABLE_HINT}"
        ) from None


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of `host:port`, `ray://host:port` or `host` (Ray's default port)."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    try:
        return host.strip("[]"), int(port) if port else DEFAULT_RAY_PORT
    except ValueError:
        raise ClusterError(f"error: {address!r} is not a Ray address\n  hint: write host:port, e.g. 10.0.0.5:6379") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
