"""The peak memory a verification will need, estimated before any weights are loaded.

`verify` keeps, per prompt set, the clean run's activations (and the corrupt run's when the set
has a corruption) for every prompt: the residual stream entering each layer and the final one,
each head's z, k and v, each MLP's output. That cache, not the model, is what grows with the
number of prompts (a 100,000-prompt verification of the 4-layer organism needs about 15 GB).
The formula is in docs/verify.md; tests/compile/test_memory.py measures it against a real run's peak.

Sizes are bytes; the model's dimensions come from its config.json (a local folder, a shipped
organism, a model in the Hugging Face cache) or a small table of known hub models.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from circuitlang.data.datasets import Dataset
from circuitlang.engine.placement import Placement
from circuitlang.ir import models as ir
from circuitlang.ir.model_folder import model_files_root, read_config

BYTES_PER_FLOAT = 4  # verify runs in float32 unless --dtype says otherwise
MIN_CPU_BATCH, MAX_CPU_BATCH = 64, 256  # rows per forward on the CPU (`cpu_batch_size`)
# The Python runtime with torch, transformers and TransformerLens imported and a model booted,
# before any activation: about 530 MB measured on CPU (Linux, torch 2.13, TransformerLens 4).
RUNTIME_BYTES = 550 * 2**20
# One expanded and bound prompt (clean or corrupt) as Python objects: text, slot spans, fields,
# token ids: 1.5-5.7 KB allocated per prompt expanding the shipped specs (answer token sets are the
# large ones), about 3 KB resident per prompt of the organism's digits.
PROMPT_BYTES = 4 * 2**10
INDEX_BYTES = 8  # numpy's int64 indices and float64 values of the bootstrap (verification.statistics)

# d_model, vocab, context, tied embeddings of hub models known without a download (GPT-2 and
# Pythia families; d_mlp is 4 d_model in all of them). Layers and heads are in ir.shapes.
KNOWN_HUB_SIZES: dict[str, tuple[int, int, int, bool]] = {
    "gpt2": (768, 50257, 1024, True),
    "gpt2-medium": (1024, 50257, 1024, True),
    "gpt2-large": (1280, 50257, 1024, True),
    "gpt2-xl": (1600, 50257, 1024, True),
    "distilgpt2": (768, 50257, 1024, True),
    "EleutherAI/pythia-70m": (512, 50304, 2048, False),
    "EleutherAI/pythia-160m": (768, 50304, 2048, False),
    "EleutherAI/pythia-410m": (1024, 50304, 2048, False),
}


@dataclass(frozen=True)
class ModelSize:
    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int
    vocab: int
    n_ctx: int
    tied: bool  # the unembedding is the embedding's transpose (one matrix, not two)

    @classmethod
    def of(cls, shape: ir.ModelShape, d_model: int, d_mlp: int, vocab: int, n_ctx: int, tied: bool) -> ModelSize:
        """Layers and heads from the model's shape (ir.shapes offline, engine.session.Session.shape
        once loaded), the widths from where the caller read them."""
        return cls(shape.n_layers, shape.n_heads, d_model, d_mlp, vocab, n_ctx, tied)

    @property
    def parameters(self) -> int:
        d, layers = self.d_model, self.n_layers
        per_layer = 4 * d * d + 4 * d + 2 * d * self.d_mlp + self.d_mlp + d + 4 * d  # attention, MLP, two norms
        embeddings = self.vocab * d * (1 if self.tied else 2) + self.n_ctx * d
        return layers * per_layer + embeddings + 2 * d


@dataclass(frozen=True)
class MemoryEstimate:
    model: int  # the weights
    caches: int  # activations kept for every prompt, all prompt sets together
    largest_pass: int  # the largest transient: a batch, or a pass over every prompt of a template
    prompts: int  # expanded and bound prompts as Python objects
    bootstrap: int = 0  # the resamples' prompt indices of every set, and one set's gathered metric values
    runtime: int = RUNTIME_BYTES
    tokens_exact: bool = True  # False: prompt lengths are rough (no tokenizer at hand)

    @property
    def total(self) -> int:
        return self.model + self.caches + self.largest_pass + self.prompts + self.bootstrap + self.runtime

    @property
    def on_device(self) -> int:
        """What lives on the accelerator with `--device cuda` (the rest stays in host memory)."""
        return self.model + self.caches + self.largest_pass

    def render(self) -> str:
        rough = "" if self.tokens_exact else " (prompt lengths guessed: no tokenizer at hand)"
        return (
            f"memory: about {human(self.total)} at peak (model {human(self.model)}, cached activations "
            f"{human(self.caches)}, largest pass {human(self.largest_pass)}, prompts {human(self.prompts)}, "
            f"bootstrap {human(self.bootstrap)}, runtime {human(self.runtime)}){rough}"
        )


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def estimate_memory(
    spec: ir.Spec,
    datasets: tuple[Dataset, ...],
    size: ModelSize,
    token_count: Callable[[str], int] | None = None,
    batch_size: int | None = None,
    audit: bool | None = None,
    bytes_per_float: int = BYTES_PER_FLOAT,
) -> MemoryEstimate:
    """`token_count(text)`: tokens of a prompt (BOS included); without it, a rough count (English
    BPE text averages about 4 bytes a token). Binding makes every prompt of a template the same
    length, so one prompt per template is measured. `audit`: as `verify --audit/--no-audit`; None
    (it runs when cheap) counts it."""
    count = token_count or rough_token_count
    lengths_of = {dataset.name: _template_lengths(dataset, count) for dataset in datasets}
    batch = batch_size or _default_batch(spec, size, list(lengths_of.values()))
    caches, largest, prompts = 0, 0, 0
    for dataset in datasets:
        prompt_set = spec.prompt_set(dataset.name)
        lengths = lengths_of[dataset.name]
        rows = sum(n * length for n, length in lengths)  # token positions over the set's clean prompts
        longest = max(length for _, length in lengths)
        caches += _cache_bytes(spec, prompt_set, size, rows, len(dataset.clean), audit) * bytes_per_float
        recorded = _recorded_inputs(spec, audit) if prompt_set.corruption is not None else 0
        full_logits = spec.hypothesis_for(dataset.name) is not None
        largest = max(largest, _largest_pass(size, lengths, batch, longest, recorded, _edge_senders(spec), full_logits) * bytes_per_float)
        prompts += PROMPT_BYTES * (len(dataset.clean) + len(dataset.corrupt))
    return MemoryEstimate(
        size.parameters * bytes_per_float,
        caches,
        largest,
        prompts,
        _bootstrap_bytes(spec, [len(d.clean) for d in datasets]),
        tokens_exact=token_count is not None,
    )


def _bootstrap_bytes(spec: ir.Spec, prompts: list[int]) -> int:
    """Every set's resamples ([bootstrap, n] prompt indices, int64, kept for the whole run) and one
    [bootstrap, n] float64 gather of a metric, alive while an estimate is taken, for the largest set."""
    return INDEX_BYTES * spec.settings.bootstrap * (sum(prompts) + max(prompts, default=0))


def _default_batch(spec: ir.Spec, size: ModelSize, lengths: list[list[tuple[int, int]]]) -> int:
    """The session's choice on the CPU (engine.session): `set batch_size`, else `cpu_batch_size`
    of the smallest prompt set."""
    if "batch_size" in spec.settings.model_fields_set or not lengths:
        return spec.settings.batch_size
    smallest = min(sum(n * length for n, length in per_set) for per_set in lengths)
    return cpu_batch_size(size, smallest, max(length for per_set in lengths for _, length in per_set))


def rough_token_count(text: str) -> int:
    return len(text.encode("utf-8")) // 4 + 2  # BOS, and the rounding up


def _template_lengths(dataset: Dataset, count: Callable[[str], int]) -> list[tuple[int, int]]:
    """(prompts, tokens per prompt) per template."""
    first: dict[int, str] = {}
    sizes: dict[int, int] = {}
    for prompt in dataset.clean:
        first.setdefault(prompt.template, prompt.text)
        sizes[prompt.template] = sizes.get(prompt.template, 0) + 1
    return [(sizes[t], count(text)) for t, text in first.items()]


def _cache_bytes(spec: ir.Spec, prompt_set: ir.PromptSet, size: ModelSize, rows: int, n: int, audit: bool | None) -> int:
    """Per token of every prompt: the residual entering each layer and the final one, z, k and v
    of every head (n_heads x d_head = d_model each), each MLP's output: (5 L + 1) d_model floats;
    once for the clean run, once more for the corrupt run when it is kept (resampling from it,
    path patching declared edges or the audit; a mean over it keeps only the means); the clean
    logits for `kl`."""
    resampled = spec.ablation.kind == "resample" and spec.ablation.source == "corrupt"
    patched = bool(spec.circuit.edges) or audit is not False
    runs = 2 if prompt_set.corruption is not None and (resampled or patched) else 1
    per_token = _cached_floats_per_token(size)
    metric = spec.metric_for(prompt_set)
    logits = n * size.vocab if metric is not None and metric.name == "kl" else 0
    return runs * rows * per_token + logits


def _largest_pass(
    size: ModelSize, lengths: list[tuple[int, int]], batch: int, longest: int, recorded: int, edge_senders: int, full_logits: bool = False
) -> int:
    """What lives next to the caches for a while: the minimality base run, which keeps its
    residual at every layer (with declared edges also the running total entering each layer and
    each edge sender's contribution) from the first criterion to the end, plus the larger of a
    batch of `batch` rows through the whole model (the caches are collected a batch at a time,
    and variants run that way) and path patching (declared edges, the audit), which runs all
    prompts of a template in one forward pass, with every layer's z frozen and each receiver's
    input recorded. In floats. `full_logits`: a batch's logits over the whole vocabulary at the
    end position are held too (interchange interventions read the top token; causal scrubbing's
    metric may)."""
    forward = _forward_floats(size, longest)
    batched = batch * longest * forward + (batch * size.vocab if full_logits else 0)
    rows = max(n * length for n, length in lengths)
    trunk = rows * (size.n_layers + 1 + (size.n_layers + edge_senders if edge_senders else 0)) * size.d_model
    patched = rows * (forward + (size.n_layers + recorded) * size.d_model) if recorded else 0
    return trunk + max(batched, patched)


def _edge_senders(spec: ir.Spec) -> int:
    """Senders whose contribution an edge-ablated base run keeps (the embeddings always)."""
    return len({edge.sender for edge in spec.circuit.edges} | {"embed"}) if spec.circuit.edges else 0


def _recorded_inputs(spec: ir.Spec, audit: bool | None) -> int:
    """Receivers' inputs one path-patching pass records ([prompts, positions, d_model] each), 0
    when nothing is patched. A declared edge records its receiver's (q, k and v at most); the
    audit records every circuit node's (q, k, v of a head, an MLP's) and the logits', twice (one
    group per receiver and one with all of them)."""
    if audit is not False:
        return 2 * (sum(3 if member.node.kind == "head" else 1 for member in spec.circuit.nodes) + 1)
    return 3 if spec.circuit.edges else 0


def cpu_batch_size(size: ModelSize, token_positions: int, longest: int) -> int:
    """Rows per forward on the CPU when the spec sets none: as many as keep a batch's transient
    activations (`_forward_floats` per token of its `longest` prompts) within the cached ones of
    a prompt set of `token_positions` tokens (all its clean prompts together), so that a
    verification's peak stays near twice one cached forward of its prompts (benchmarks/README.md,
    "Peak memory"); at least MIN_CPU_BATCH, below which a forward's fixed costs dominate, and at
    most MAX_CPU_BATCH, beyond which the CPU gains nothing."""
    cached = token_positions * _cached_floats_per_token(size)
    per_row = longest * _forward_floats(size, longest)
    return max(MIN_CPU_BATCH, min(MAX_CPU_BATCH, cached // per_row))


def _cached_floats_per_token(size: ModelSize) -> int:
    return (5 * size.n_layers + 1) * size.d_model


def _forward_floats(size: ModelSize, tokens: int) -> int:
    """Floats alive per token inside one layer's forward pass: the residual and its norms, q, k,
    v, z and the attention output, the attention scores and pattern, the MLP's hidden layer."""
    return 12 * size.d_model + 2 * size.d_mlp + 2 * size.n_heads * tokens


# ---- the model's dimensions --------------------------------------------------------------------


def model_size(model: ir.ModelRef, shape: ir.ModelShape | None) -> ModelSize | None:
    """The model's dimensions without loading it, or None when they cannot be known offline."""
    config = _config(model)
    if config is not None:
        return _size_from_config(config)
    known = KNOWN_HUB_SIZES.get((model.hub_id or model.name).removeprefix("openai-community/"))
    if known is None or shape is None:
        return None
    d_model, vocab, n_ctx, tied = known
    return ModelSize.of(shape, d_model, 4 * d_model, vocab, n_ctx, tied)


def _config(model: ir.ModelRef) -> dict[str, Any] | None:
    folders = [Path(model.path)] if model.path else list(_hub_cache_snapshots(model.hub_id or model.name))
    for folder in folders:
        try:
            config = json.loads(read_config(folder, model_files_root(model, folder)).decode("utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(config, dict):
            return config
    return None


def _hub_cache_snapshots(repo: str) -> Iterable[Path]:
    """Snapshots of `repo` in the Hugging Face cache, as huggingface_hub lays it out."""
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    cache = Path(os.environ.get("HF_HUB_CACHE", home / "hub"))
    return sorted((cache / f"models--{repo.replace('/', '--')}" / "snapshots").glob("*"))


def _size_from_config(config: dict[str, Any]) -> ModelSize | None:
    def first(*keys: str) -> int | None:
        value = next((config[k] for k in keys if config.get(k) is not None), None)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    layers, heads = first("n_layer", "num_hidden_layers"), first("n_head", "num_attention_heads")
    # A config without vocab_size still says how large the blocks are: the estimate counts no
    # vocabulary then, a lower bound, which is enough to refuse 400 layers that cannot fit.
    d_model, vocab = first("n_embd", "hidden_size"), first("vocab_size") or 0
    if layers is None or heads is None or d_model is None:
        return None
    d_mlp = first("n_inner", "intermediate_size") or 4 * d_model
    n_ctx = first("n_positions", "max_position_embeddings") or 0
    tied = config.get("tie_word_embeddings", True) is not False
    return ModelSize(layers, heads, d_model, d_mlp, vocab, n_ctx, tied)


def offline_token_count(model: ir.ModelRef) -> Callable[[str], int] | None:
    """Token counts from the model's tokenizer.json when it is at hand without network (BOS
    counted: an upper bound by one where the model prepends none)."""
    from circuitlang.data.tokenization import TokenizerPanic, encode_text, load_tokenizer_file, offline_tokenizer_file

    path = offline_tokenizer_file(model)
    if path is None:
        return None
    try:
        tokenizer = load_tokenizer_file(path, model)
    except Exception:  # noqa: BLE001 - no tokenizer only makes the estimate an upper bound
        return None

    def count(text: str) -> int:
        try:
            return len(encode_text(tokenizer, text).ids) + 1
        except TokenizerPanic:  # a broken tokenizer: the rough count; binding says what is wrong
            return rough_token_count(text)

    return count


def spec_memory(
    spec: ir.Spec, datasets: tuple[Dataset, ...], audit: bool | None = None, bytes_per_float: int = BYTES_PER_FLOAT
) -> MemoryEstimate | None:
    """The estimate for `plan` and `verify`, or None when the model's size is not known offline."""
    size = model_size(spec.model, spec.shape)
    if size is None:
        return None
    return estimate_memory(spec, datasets, size, offline_token_count(spec.model), audit=audit, bytes_per_float=bytes_per_float)


# ---- what the machine has ----------------------------------------------------------------------

SKIP_CHECK_VARIABLE = "CIRCUITLANG_NO_MEMORY_CHECK"  # set to 1: run even when the estimate says it will not fit


@dataclass(frozen=True)
class PlacedWeights:
    """Where a device map puts the weights, as accelerate fills the devices: the GPUs in index
    order up to their budgets, then host memory up to its, the rest on disk (bytes)."""

    on_gpus: int
    on_host: int
    on_disk: int

    def render(self) -> str:
        parts = [
            f"{human(self.on_gpus)} on GPUs" if self.on_gpus else "",
            f"{human(self.on_host)} in host memory",
            f"{human(self.on_disk)} on disk",
        ]
        return "weights placed: " + ", ".join(p for p in parts if p)


def placed_weights(model: int, placement: Placement, gpu_free: dict[int, int], host_available: int | None) -> PlacedWeights:
    """`model` bytes of weights as `placement` places them. A GPU's budget is its `--max-memory`;
    when that names no GPU, every GPU's free memory (`gpu_free`), as accelerate takes it. The
    host's is its `cpu=` budget; when `--max-memory` names other devices but not `cpu`, none (a
    device left out holds nothing); without `--max-memory`, `host_available` (all of the weights
    when that is unknown)."""
    budgets = placement.budgets()
    gpus = {int(d): size for d, size in budgets.items() if d.isdigit()} if placement.gpus() else dict(gpu_free)
    on_gpus = min(model, sum(gpus.values()))
    if "cpu" in budgets:
        host_budget = budgets["cpu"]
    elif budgets:
        host_budget = 0
    else:
        host_budget = host_available if host_available is not None else model
    on_host = min(model - on_gpus, host_budget)
    return PlacedWeights(on_gpus, on_host, model - on_gpus - on_host)


def memory_refusal(estimate: MemoryEstimate | None, device: str, placement: Placement | None = None) -> str | None:
    """One line saying why `verify` should not start, or None when it fits (or cannot be told).
    With a `placement` (a device map), only the weights it leaves in host memory count there, and
    on the GPUs it uses, what it puts on them (`placed_refusal`)."""
    if estimate is None or os.environ.get(SKIP_CHECK_VARIABLE) == "1":
        return None
    if placement is not None:
        return placed_refusal(estimate, placement)
    on_device = device.startswith("cuda")
    needed = estimate.on_device if on_device else max(0, estimate.total - process_memory())
    available = available_memory(device)
    if available is None or needed <= available:
        return None
    where = f"free on {device}" if on_device else "available on this machine"
    return (
        f"verify would need about {human(needed)} more memory ({estimate.render().removeprefix('memory: ')}), "
        f"more than the {human(available)} {where}: verify fewer prompts (`set count = N` in a prompts block), "
        f"or lower `set batch_size`; {SKIP_CHECK_VARIABLE}=1 runs it anyway"
    )


def placed_refusal(estimate: MemoryEstimate, placement: Placement) -> str | None:
    """The refusal under a device map. Without GPUs, host memory holds everything but the
    weights that go to disk. With GPUs, the cached activations and the largest pass live on them
    (as on one GPU) beside their weights, checked against their free memory together (a split
    puts each layer's activations on its layer's GPU, which this sum does not follow); host
    memory holds the runtime, the prompts, the bootstrap and the weights left to it."""
    gpu_free = _gpu_free_memory()
    host = available_memory("cpu")
    placed = placed_weights(estimate.model, placement, gpu_free, host)  # without a cpu= budget, accelerate fills what is free
    used = placement.gpus() or sorted(gpu_free)
    on_gpus = bool(used) and placed.on_gpus > 0
    activations = estimate.caches + estimate.largest_pass
    gpu_needed = placed.on_gpus + activations if on_gpus else 0
    gpu_available = sum(gpu_free.get(gpu, 0) for gpu in used)
    if on_gpus and gpu_needed > gpu_available:
        return (
            f"verify would need about {human(gpu_needed)} on the GPUs ({placed.render()}; {estimate.render().removeprefix('memory: ')}), "
            f"more than the {human(gpu_available)} free on GPU(s) {', '.join(map(str, used))}: verify fewer prompts "
            f"(`set count = N` in a prompts block), or lower `set batch_size`; {SKIP_CHECK_VARIABLE}=1 runs it anyway"
        )
    host_needed = max(0, estimate.total - estimate.model + placed.on_host - (activations if on_gpus else 0) - process_memory())
    if host is None or host_needed <= host:
        return None
    return (
        f"verify would need about {human(host_needed)} more memory ({placed.render()}; {estimate.render().removeprefix('memory: ')}), "
        f"more than the {human(host)} available on this machine: lower the host's share of the weights (--max-memory cpu=SIZE), "
        f"verify fewer prompts (`set count = N` in a prompts block), or lower `set batch_size`; {SKIP_CHECK_VARIABLE}=1 runs it anyway"
    )


def _gpu_free_memory() -> dict[int, int]:
    """Each visible GPU's free bytes; none without torch or CUDA."""
    try:
        import torch
    except ModuleNotFoundError:
        return {}
    if not torch.cuda.is_available():
        return {}
    return {index: free for index in range(torch.cuda.device_count()) if (free := available_memory(f"cuda:{index}")) is not None}


def available_memory(device: str) -> int | None:
    """Bytes free for the run: the GPU's free memory for cuda, else Linux's MemAvailable (capped
    by the cgroup's limit in a container); None where it cannot be read."""
    if device.startswith("cuda"):
        import torch

        try:
            free, _ = torch.cuda.mem_get_info(torch.device(device))
        except (RuntimeError, AssertionError, ValueError):  # no CUDA: loading the model will say so
            return None
        return int(free)
    host = _meminfo_available()
    container = _cgroup_room()
    return min(v for v in (host, container) if v is not None) if host or container else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


CGROUP = Path("/sys/fs/cgroup")
NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as the largest page-aligned int64


def _cgroup_room(root: Path = CGROUP) -> int | None:
    """The container's limit less what its group uses: cgroup v2 (`memory.max`, "max" is no
    limit), else cgroup v1 (`memory/memory.limit_in_bytes`, a huge number is no limit)."""
    for limit_file, used_file in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = (root / limit_file).read_text().strip()
            used = int((root / used_file).read_text())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= NO_LIMIT:
            return None
        return max(0, int(limit) - used)
    return None


def process_memory() -> int:
    """This process's resident memory (the runtime and prompts already made count against the peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
