"""Where a model's weights go when it does not fit on one device: a device map for accelerate.

`--device-map auto|balanced|sequential`, `--max-memory` and `--offload-dir` (and the Python API's
`device_map=`, `max_memory=`, `offload_dir=`) make a `Placement`, which `engine.models.load_model`
hands to transformers (`from_pretrained(device_map=..., max_memory=..., offload_folder=...)`
through `TransformerBridge.boot_transformers`). accelerate then puts whole layers on the GPUs in
index order, each up to its budget, the rest in host memory up to the `cpu` budget, and what is
left on disk, loaded into memory for each forward and dropped after it (docs/scale.md).

Rules, checked here so that a bad value is said before any model loads:

- `--max-memory` takes `DEVICE=SIZE` entries, comma-separated or repeated
  (`--max-memory 0=75GiB,1=75GiB --max-memory cpu=200GiB`); a device named twice is an error.
  DEVICE is `cpu`, `disk`, `mps`, or a GPU index (`0`, `1`; `cuda:1` is read as `1`); a device
  left out gets nothing (as in accelerate). SIZE is bytes, or a number with a unit: `KB`, `MB`,
  `GB`, `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024), in any case (always
  bytes, never bits).
- `--max-memory` or `--offload-dir` without `--device-map` implies `--device-map auto`: they mean
  nothing without a device map.
- A device map places every layer itself, so it does not go with `--device` other than the
  default `cpu` (`check_device`): name the GPUs in `--max-memory` instead.

This module imports no torch: the light install parses the options too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

DEVICE_MAPS = ("auto", "balanced", "sequential")
NAMED_DEVICES = ("cpu", "disk", "mps")
MAX_MEMORY_FORMS = "DEVICE=SIZE entries, comma-separated: cpu=300MB, 0=70GiB,1=70GiB (DEVICE: cpu, disk, mps or a GPU index)"
SIZE_FORMS = "bytes, or a number with a unit: 300MB, 1.5GB, 70GiB (KB, MB, GB, TB: powers of 1000; KiB, MiB, GiB, TiB: of 1024)"

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
_CANONICAL_UNIT = {"": "", "b": "", "kb": "KB", "mb": "MB", "gb": "GB", "tb": "TB", "kib": "KiB", "mib": "MiB", "gib": "GiB", "tib": "TiB"}


class PlacementError(ValueError):
    """A device map, memory budget or offload folder that cannot be used; the message names the
    value and the accepted forms."""


@dataclass(frozen=True)
class Placement:
    """How accelerate places the model: `device_map` (auto, balanced, sequential), `max_memory`
    (device -> size, as written: {"cpu": "300MB", "0": "70GiB"}; keys normalised: GPUs by their
    index), `offload_dir` (where weights that go to disk are written when they cannot be read in
    place from the model's safetensors files)."""

    device_map: str | None = None
    max_memory: dict[str, str] | None = None
    offload_dir: str | None = None

    def __post_init__(self) -> None:
        device_map = self.device_map
        if device_map is None and (self.max_memory or self.offload_dir):
            device_map = "auto"  # the budgets mean nothing without a map
        if device_map is None:
            raise PlacementError("a placement needs a device map (auto, balanced or sequential)")
        object.__setattr__(self, "device_map", device_map_option(device_map))
        if self.max_memory is not None:
            object.__setattr__(self, "max_memory", memory_budgets(self.max_memory) or None)
        if self.offload_dir is not None:
            object.__setattr__(self, "offload_dir", str(self.offload_dir))

    def __hash__(self) -> int:  # a key of caches (a loaded model's), though max_memory is a dict
        return hash((self.device_map, tuple(sorted((self.max_memory or {}).items())), self.offload_dir))

    @classmethod
    def of(
        cls,
        device_map: str | None = None,
        max_memory: Mapping[Any, Any] | str | None = None,
        offload_dir: Any = None,
    ) -> Placement | None:
        """A placement from the Python API's or the command line's values, or None when none is
        asked for. `max_memory`: a dict as accelerate takes it ({0: "70GiB", "cpu": 300_000_000})
        or the command line's text ("cpu=300MB,0=70GiB")."""
        if device_map is None and not max_memory and offload_dir is None:
            return None
        budgets = parse_max_memory(max_memory) if isinstance(max_memory, str) else memory_budgets(max_memory or {})
        return cls(device_map, budgets or None, None if offload_dir is None else str(offload_dir))

    def budgets(self) -> dict[str, int]:
        """Each named device's budget in bytes (GPUs by their index, as text)."""
        return {device: size_bytes(size) for device, size in (self.max_memory or {}).items()}

    def gpus(self) -> list[int]:
        """The GPU indices `max_memory` names."""
        return sorted(int(device) for device in self.max_memory or {} if device.isdigit())

    def describe(self) -> str:
        """One line for progress and messages: "device map auto, max memory cpu=300MB, offload to /tmp/x"."""
        parts = [f"device map {self.device_map}"]
        if self.max_memory:
            parts.append("max memory " + ",".join(f"{device}={size}" for device, size in self.max_memory.items()))
        if self.offload_dir:
            parts.append(f"offload to {self.offload_dir}")
        return ", ".join(parts)

    def computed_on(self) -> str:
        """Where a load with this placement will compute, as far as it is known before the load
        (the device of the result cache's keys): the first GPU the budgets name, the CPU when they
        name none; without budgets GPU 0 when torch sees one (accelerate fills the GPUs first),
        else the CPU. torch is imported only in that last case."""
        if self.max_memory is not None:
            return f"cuda:{self.gpus()[0]}" if self.gpus() else "cpu"
        try:
            import torch
        except ModuleNotFoundError:
            return "cpu"
        return "cuda:0" if torch.cuda.is_available() else "cpu"

    def boot_kwargs(self) -> dict[str, Any]:
        """What `TransformerBridge.boot_transformers` (and so transformers and accelerate) takes:
        `device_map`, `max_memory` with GPUs as integers and sizes in bytes, `offload_folder`."""
        kwargs: dict[str, Any] = {"device_map": self.device_map}
        if self.max_memory:
            kwargs["max_memory"] = {(int(device) if device.isdigit() else device): size for device, size in self.budgets().items()}
        if self.offload_dir:
            kwargs["offload_folder"] = self.offload_dir
        return kwargs


def check_device(device: str, placement: Placement | None) -> None:
    """A device map places every layer itself: with one, `device` must be the default `cpu`."""
    if placement is not None and device != "cpu":
        raise PlacementError(
            f"--device {device} and --device-map {placement.device_map} do not go together: a device map places every "
            "layer itself; name the GPUs it may use in --max-memory (0=70GiB,1=70GiB), or drop --device-map"
        )


def device_map_option(text: str) -> str:
    """`--device-map`: auto, balanced or sequential."""
    if text not in DEVICE_MAPS:
        raise PlacementError(f"device map {text!r} is not one of {', '.join(DEVICE_MAPS)}")
    return text


def parse_max_memory(text: str) -> dict[str, str]:
    """`--max-memory`'s text, "cpu=300MB,0=70GiB", as {"cpu": "300MB", "0": "70GiB"}."""
    budgets: dict[str, str] = {}
    for entry in text.split(","):
        device, separator, size = entry.partition("=")
        if not separator or not device.strip() or not size.strip():
            raise PlacementError(f"max memory {entry.strip()!r}: expected {MAX_MEMORY_FORMS}")
        add_budget(budgets, device, size)
    return budgets


def memory_budgets(given: Mapping[Any, Any]) -> dict[str, str]:
    """A max memory dict as accelerate takes it (GPU keys as integers or text, sizes as bytes or
    text), checked, with its keys and sizes in canonical text."""
    if not isinstance(given, Mapping):
        raise PlacementError(f"max memory must be a dict of device -> size or text like 'cpu=300MB', not {type(given).__name__}")
    budgets: dict[str, str] = {}
    for device, size in given.items():
        add_budget(budgets, device, size)
    return budgets


def add_budget(budgets: dict[str, str], device: Any, size: Any) -> None:
    """One `DEVICE=SIZE` entry into `budgets`; a device named twice is an error."""
    key = memory_device(device)
    if key in budgets:
        raise PlacementError(f"max memory names device {key!r} twice ({budgets[key]} and {size})")
    budgets[key] = canonical_size(size, key)


def memory_device(device: Any) -> str:
    """A max memory key: cpu, disk, mps, or a GPU's index as text ("cuda:1" and 1 are "1")."""
    if isinstance(device, bool):
        raise PlacementError(f"max memory device {device!r} is not a device: write cpu, disk, mps or a GPU index (0, 1, ...)")
    if isinstance(device, int) and device >= 0:
        return str(device)
    text = str(device).strip()
    lowered = text.lower()
    if lowered in NAMED_DEVICES:
        return lowered
    index = lowered.removeprefix("cuda:")
    if index.isdigit():
        return str(int(index))
    raise PlacementError(f"max memory device {text!r} is not a device: write cpu, disk, mps or a GPU index (0, 1, ...)")


def canonical_size(size: Any, device: str = "") -> str:
    """A size as written, checked, in canonical spelling ("300mb" -> "300MB", 1000 -> "1000")."""
    where = f" for {device}" if device else ""
    if isinstance(size, int) and not isinstance(size, bool):
        if size < 0:
            raise PlacementError(f"max memory size {size}{where} is negative: expected {SIZE_FORMS}")
        return str(size)
    match = _SIZE.match(str(size)) if isinstance(size, str) else None
    if match is None or match.group(2).lower() not in _UNITS:
        raise PlacementError(f"max memory size {size!r}{where} is not a size: expected {SIZE_FORMS}")
    return f"{match.group(1)}{_CANONICAL_UNIT[match.group(2).lower()]}"


def size_bytes(size: str) -> int:
    """Bytes of a canonical size ("300MB" -> 300,000,000; "70GiB" -> 75,161,927,680)."""
    match = _SIZE.match(size)
    if match is None or match.group(2).lower() not in _UNITS:
        raise PlacementError(f"max memory size {size!r} is not a size: expected {SIZE_FORMS}")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])
