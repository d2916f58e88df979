"""The Python API: load a spec, bind it to its model, evaluate circuit variants, verify.

    import circuitlang
    spec = circuitlang.load("specs/incr_digits.circ")
    run = circuitlang.open_run(spec, device="cpu")
    values = run.metric([run.circuit(), run.full_model(), run.empty()])   # [3, n_prompts]
    report = circuitlang.verify(run)           # what `circuitlang verify` reports (also from a path or a Spec)
    report.table("minimality")                 # any of its tables, tidy: a DataFrame, or numpy without pandas
    circuitlang.edge_scores(run, "eap-ig")     # every edge's attribution score, tidy
    circuitlang.attention(run, heads=["9.1"])  # attention patterns, mean over the prompt set; .table()
    circuitlang.lens(run).table("direct")      # logit lens and direct contributions, tidy

`Run` is the public face of an engine session (`engine.session.Session`), which the workflows
run on; `run.session` hands it to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, Union

from circuitlang.data.datasets import Dataset, expand_all
from circuitlang.engine.bind import BoundPromptSet
from circuitlang.engine.placement import Placement, check_device
from circuitlang.engine.session import Session, open_session, set_threads
from circuitlang.engine.variants import Receiver, Variant
from circuitlang.ir import models as ir
from circuitlang.ir.lower import load_spec
from circuitlang.ir.node_text import NODE_FORMS, parse_node

if TYPE_CHECKING:
    import torch

    from circuitlang.engine.models import LoadedModel
    from circuitlang.results.lens import AttentionResult, LensResult
    from circuitlang.results.report import Report

NodeLike = Union[ir.Node, str]  # a node, or as a spec writes it: "9.1", "mlp 0", "logits"


def load(path: str | Path, root: str | Path | None = None) -> ir.Spec:
    """Parse and validate a `.circ` file (no model needed); the files it names must lie inside
    `root` (default: its folder)."""
    return load_spec(path, root)


class Run:
    """A spec bound to its loaded model."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def spec(self) -> ir.Spec:
        return self.session.spec

    @property
    def model(self) -> LoadedModel:
        return self.session.model

    @property
    def datasets(self) -> tuple[Dataset, ...]:
        return self.session.datasets

    @property
    def bound(self) -> dict[str, BoundPromptSet]:
        """Each prompt set's prompts as tokens, with the token index of every named position."""
        return self.session.bound

    def metric(self, variants: Sequence[Variant], prompt_set: str | None = None) -> torch.Tensor:
        """The metric of each variant on each prompt: float64 [n_variants, n_prompts]."""
        engine = self.session.engine(prompt_set)
        return engine.run(variants, engine.readout())

    def circuit(self, without: Iterable[NodeLike] = ()) -> Variant:
        """The spec's circuit (minus `without`: nodes or text such as "9.1", "mlp 0"), everything
        else ablated."""
        return self.session.circuit(frozenset(self.nodes(without)))

    def full_model(self, without: Iterable[NodeLike] = ()) -> Variant:
        """The whole model (minus `without`)."""
        return self.session.full_model(frozenset(self.nodes(without)))

    def nodes(self, written: Iterable[NodeLike]) -> list[ir.Node]:
        """Nodes given as objects or text, checked against the model: a string that names no
        node, or a layer or head the model lacks, is a ValueError (never silently ignored)."""
        if isinstance(written, (str, *ir.NODE_TYPES)):
            written = [written]
        cfg = self.session.model.bridge.cfg
        return [_checked_node(item, cfg.n_layers, cfg.n_heads) for item in written]

    def empty(self) -> Variant:
        """Every node ablated."""
        return self.session.empty()


def open_run(
    spec: ir.Spec,
    device: str = "cpu",
    dtype: str | torch.dtype = "float32",
    batch_size: int | None = None,
    threads: int = 0,
    *,
    model: Any = None,
    tokenizer: Any = None,
    device_map: str | None = None,
    max_memory: dict | str | None = None,
    offload_dir: str | Path | None = None,
) -> Run:
    """Load the model, expand and bind every prompt set. `dtype`: the model's precision, named
    ("float32", "float16", "bfloat16") or a torch.dtype. `threads`: torch's CPU threads, chosen
    as the command line chooses them when 0 (one for small models).

    `device_map` ("auto", "balanced", "sequential"), `max_memory` (a dict as accelerate takes it,
    {0: "75GiB", 1: "75GiB"} or {"cpu": "300MB"}, or text as `--max-memory` takes it, "cpu=300MB")
    and `offload_dir`: a model beyond one device, placed by accelerate across the GPUs, host
    memory and disk, as the command line's `--device-map`, `--max-memory`, `--offload-dir` do
    (docs/scale.md); `max_memory` or `offload_dir` alone imply `device_map="auto"`, and `device`
    must then stay "cpu". A bad value is a ValueError.

    `model`: a model already loaded, run instead of the spec's files: a `transformers`
    PreTrainedModel (fine-tuned or edited in a notebook) or a TransformerBridge, used as it is (no
    copy; its own device and dtype, so `device` and `dtype` are ignored). It must have the layers
    and heads of the spec's model (a ModelError names both). `tokenizer`: a fast tokenizer for
    it; by default a bridge's own, else the tokenizer of the model the spec's `on` clause names.
    The result cache keys such a model by the SHA-256 of its weights as they are when the run
    opens (docs/api.md, "Your own model object")."""
    placement = _placement(device, model, device_map, max_memory, offload_dir)
    return Run(_opened(spec, device, dtype, batch_size, threads, model, tokenizer, placement=placement))


def _placement(device: str, model: Any, device_map: str | None, max_memory: Any, offload_dir: Any) -> Placement | None:
    """The placement the keyword arguments ask for (None without them), checked (a ValueError)."""
    placement = Placement.of(device_map, max_memory, offload_dir)
    check_device(device, placement)
    if placement is not None and model is not None:
        raise ValueError("device_map, max_memory and offload_dir place the spec's model as it loads; a model= object keeps its own placement")
    return placement


def _opened(
    spec: ir.Spec,
    device: str,
    dtype: str | torch.dtype,
    batch_size: int | None,
    threads: int,
    model: Any,
    tokenizer: Any,
    cache: Any = None,
    placement: Placement | None = None,
) -> Session:
    from circuitlang.engine.models import torch_dtype

    session = open_session(spec, device, torch_dtype(dtype), batch_size, cache=cache, given=model, tokenizer=tokenizer, placement=placement)
    set_threads(session, threads)
    return session


def verify(
    spec: str | Path | ir.Spec | Run,
    progress: Callable[[str], None] | None = None,
    audit: bool | None = None,
    *,
    device: str = "cpu",
    dtype: str | torch.dtype = "float32",
    root: str | Path | None = None,
    cache: bool = False,
    model: Any = None,
    tokenizer: Any = None,
    device_map: str | None = None,
    max_memory: dict | str | None = None,
    offload_dir: str | Path | None = None,
) -> "Report":
    """Every experiment the spec needs and every claim: the Report `circuitlang verify` prints.

    `spec` is a path to a `.circ` file, a loaded Spec, or an open Run (which keeps the model
    loaded between calls; `device` and `dtype` are then the Run's). `progress` is called with
    progress lines; `audit=None` audits where it is cheap, as the command does. `cache=True`
    reads and writes the command line's result cache (docs/verify.md): when it holds every array,
    the spec's model is not loaded at all, as on the command line; each prompt set's report says
    how many arrays came from it (`report.prompt_sets[i].cache`). It is off by default because a
    notebook can change a loaded model's weights after they were hashed: with a Run, the weights
    are hashed again first, and a change since `open_run` is a ValueError. `model` and
    `tokenizer`: a model object to run instead of the spec's files, and `device_map`,
    `max_memory`, `offload_dir`: the spec's model placed beyond one device, as `open_run` takes them."""
    from circuitlang.engine.result_cache import ResultCache
    from circuitlang.workflows.verify import verify as verify_session
    from circuitlang.workflows.verify import verify_cached

    placement = None if isinstance(spec, Run) else _placement(device, model, device_map, max_memory, offload_dir)
    results = ResultCache.from_environment() if cache else None
    if results is not None and model is None and not isinstance(spec, Run):
        loaded = _as_spec(spec, root)
        where = device if placement is None else placement.computed_on()
        report = verify_cached(loaded, expand_all(loaded), results, audit, where, str(dtype).removeprefix("torch."))
        if report is not None:
            return report
        spec = loaded
    if isinstance(spec, Run) and results is not None:
        _check_weights_unchanged(spec)
    run = spec if isinstance(spec, Run) else Run(_opened(_as_spec(spec, root), device, dtype, None, 0, model, tokenizer, results, placement))
    return verify_session(run.session, progress, audit, results)


def verify_suite(
    specs: Sequence[str | Path],
    progress: Callable[[str], None] | None = None,
    audit: bool | None = None,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    root: str | Path | None = None,
    cache: bool = False,
    threads: int = 0,
    ray: str | bool | None = None,
    workers: int | None = None,
) -> list["Report"]:
    """Each spec's Report, in the order given, as `circuitlang verify SPEC...` makes them: in this
    process one after another, or with `ray` on a Ray cluster (`pip install 'circuitlang[cluster]'`;
    True: $RAY_ADDRESS, else a local cluster for the call; a string: the cluster's address;
    `workers`: how many), each prompt set of each spec a task (docs/scale.md). The reports are the
    ones the specs get verified alone. A spec's error is raised (its CircuitlangError) once every
    spec has run; `cache`, `audit`, `device`, `dtype`: as `verify`."""
    from circuitlang.engine.result_cache import ResultCache
    from circuitlang.workflows.suite import SpecWork, VerifyOptions, verify_in_process, verify_on_ray

    works = [SpecWork(index, str(path), loaded := load(path, root), expand_all(loaded)) for index, path in enumerate(specs)]
    options = VerifyOptions(device, str(dtype).removeprefix("torch."), threads, audit, cache)
    results = ResultCache.from_environment() if cache else None
    if ray is None or ray is False:
        outcomes = verify_in_process(works, options, results, progress)
    else:
        from circuitlang.cluster.connect import ClusterRequest

        outcomes = verify_on_ray(works, options, results, ClusterRequest(ray if isinstance(ray, str) else None, workers), progress)
    failed = [error for outcome in outcomes for error in outcome.errors]
    if failed:
        raise failed[0]
    return [outcome.report for outcome in outcomes if outcome.report is not None]


def _check_weights_unchanged(run: Run) -> None:
    from circuitlang.engine.models import weights_hash

    if weights_hash(run.model.bridge.original_model) != run.model.identity.weights_sha256:
        raise ValueError("the model's weights changed since open_run: open a new run (its engines hold runs of the old weights)")


def _as_spec(spec: str | Path | ir.Spec, root: str | Path | None) -> ir.Spec:
    if isinstance(spec, (str, Path)):
        spec = load(spec, root)
    if not isinstance(spec, ir.Spec):
        raise TypeError(f"verify takes a path to a .circ file, a Spec or a Run, not {type(spec).__name__}")
    return spec


def _as_run(spec: str | Path | ir.Spec | Run, device: str, dtype: str | torch.dtype, root: str | Path | None, **placement: Any) -> Run:
    return spec if isinstance(spec, Run) else open_run(_as_spec(spec, root), device=device, dtype=dtype, **placement)


def path_patch(
    run: Run, senders: Iterable[NodeLike], receivers: Sequence[Receiver | NodeLike], prompt_set: str | None = None, freeze_mlps: bool = False
) -> torch.Tensor:
    """Per prompt: the metric after patching senders -> receivers (see engine.path_patching).
    Nodes may be text ("9.1", "mlp 0", "logits"); a receiver given as a node gets every channel.
    A sender that cannot reach a receiver (a later layer) is a ValueError: the patch would be a
    silent no-op."""
    from circuitlang.engine.path_patching import path_patch as patch
    from circuitlang.ir.eap_ig import feeds

    sending = run.nodes(senders)
    receiving = [r if isinstance(r, Receiver) else _receiver(run.nodes([r])[0]) for r in receivers]
    parallel = bool(getattr(run.session.model.bridge.cfg, "parallel_attn_mlp", False))
    for sender in sending:
        for receiver in receiving:
            if not feeds(sender, receiver.node, parallel):
                raise ValueError(f"{sender} cannot send to {receiver.node}: path patching runs from earlier nodes to later ones")
    engine = run.session.engine(prompt_set)
    return patch(engine, sending, receiving, engine.readout(), freeze_mlps)


def edge_scores(
    run: Run, method: str = "eap-ig", steps: int | None = None, prompt_set: str | None = None, kind: str = "auto", ig_grid: str = "left"
):
    """Every edge's EAP or EAP-IG score (the estimated drop of the metric when that edge alone is
    removed, under the spec's ablation; docs/discover.md), as a tidy table: one row per edge with
    `sender`, `receiver`, `channel` ("" into MLPs and the logits) and `score`, largest |score|
    first. EAP-IG takes `steps` gradients (default 5) at the points of `ig_grid`: "left", alpha =
    k/steps for k = 0..steps-1 from the corrupt inputs, as Hanna et al.'s code and MIB, or "right",
    k = 1..steps. A DataFrame with pandas installed, else a numpy structured array (`kind=`
    chooses). A method this spec or model cannot attribute is a ValueError saying why."""
    from circuitlang.discover.attribution import edge_scores as scores_of
    from circuitlang.discover.attribution import why_not_attributable
    from circuitlang.discover.curves import ranked
    from circuitlang.discover.methods import EAP_IG_STEPS, IG_GRIDS, IGGrid
    from circuitlang.discover.scoring import Scorer
    from circuitlang.results.tidy import tidy

    if method not in ("eap", "eap-ig"):
        raise ValueError(f"method {method!r}: choose eap or eap-ig")
    if ig_grid not in IG_GRIDS:
        raise ValueError(f"ig_grid {ig_grid!r}: choose one of {', '.join(IG_GRIDS)}")
    scorer = Scorer(run.session, prompt_set)
    why = run.session.model.family.why_no_edge_graph() or why_not_attributable(scorer, method)
    if why:
        raise ValueError(why)
    scores = scores_of(scorer, method, steps or EAP_IG_STEPS, IGGrid(ig_grid))
    rows = [{"sender": str(s), "receiver": str(r), "channel": c, "score": scores[(s, r, c)]} for s, r, c in ranked(scores)]
    return tidy(rows, kind)


def attention(
    spec: str | Path | ir.Spec | Run,
    heads: Iterable[NodeLike],
    prompt_set: str | None = None,
    prompt: int | None = None,
    positions: str | None = None,
    *,
    device: str = "cpu",
    root: str | Path | None = None,
    device_map: str | None = None,
    max_memory: dict | str | None = None,
    offload_dir: str | Path | None = None,
) -> "AttentionResult":
    """Attention patterns of `heads` ("9.1" or HeadNodes) on the clean prompts: the mean over the
    prompt set, or `prompt`'s alone (its index in the set, from 0). `positions`: "tokens" (every
    token; the default with one template or one prompt) or "named" (the spec's named positions;
    the default with several templates). `.table()` is tidy; report.attention_plot draws a head.
    A head the model lacks, a node that is not a head or a prompt out of range is a ValueError.
    `device_map`, `max_memory`, `offload_dir`: as `open_run` takes them (with a path or a Spec)."""
    from circuitlang.workflows.attention import AttentionRequest
    from circuitlang.workflows.attention import attention as read_attention
    from circuitlang.workflows.lens import CannotRead

    run = _as_run(spec, device, "float32", root, device_map=device_map, max_memory=max_memory, offload_dir=offload_dir)
    nodes = run.nodes(heads)
    chosen = tuple((n.layer, n.head) for n in nodes if isinstance(n, ir.HeadNode))
    if len(chosen) < len(nodes):
        raise ValueError(f"{next(str(n) for n in nodes if n.kind != 'head')!r}: attention patterns are per head: write layer.head, e.g. 0.1")
    request = AttentionRequest(prompt_set or run.spec.prompt_sets[0].name, chosen, prompt, positions)
    try:
        return read_attention(run.session, request)
    except CannotRead as error:
        raise ValueError(str(error)) from None


def lens(
    spec: str | Path | ir.Spec | Run,
    prompt_set: str | None = None,
    positions: str | None = None,
    *,
    device: str = "cpu",
    root: str | Path | None = None,
    device_map: str | None = None,
    max_memory: dict | str | None = None,
    offload_dir: str | Path | None = None,
) -> "LensResult":
    """The logit lens (the metric read from the residual stream after the embeddings and each
    layer, through the final norm and the unembedding) and every node's direct contribution to
    the metric (the final norm's scale frozen at the clean run), per position: a LensResult, whose
    `.table("lens")` and `.table("direct")` are tidy; report.lens_plot draws them. `device_map`,
    `max_memory`, `offload_dir`: as `open_run` takes them (with a path or a Spec)."""
    from circuitlang.workflows.lens import CannotRead, LensRequest
    from circuitlang.workflows.lens import lens as read_lens

    run = _as_run(spec, device, "float32", root, device_map=device_map, max_memory=max_memory, offload_dir=offload_dir)
    try:
        return read_lens(run.session, LensRequest(prompt_set or run.spec.prompt_sets[0].name, positions))
    except CannotRead as error:
        raise ValueError(str(error)) from None


def _receiver(node: ir.Node) -> Receiver:
    return Receiver(node) if node.kind == "head" else Receiver(node, ())


def _checked_node(item: NodeLike, n_layers: int, n_heads: int) -> ir.Node:
    node = parse_node(item) if isinstance(item, str) else item
    if not isinstance(node, ir.NODE_TYPES):
        raise ValueError(f"{item!r} is not a node: write {NODE_FORMS}, or pass a circuitlang Node")
    if node.layer is not None and not 0 <= node.layer < n_layers:
        raise ValueError(f"{item!r}: layer {node.layer} does not exist: the model has layers 0-{n_layers - 1}")
    if node.head is not None and not 0 <= node.head < n_heads:
        raise ValueError(f"{item!r}: head {node.head} does not exist: layers have heads 0-{n_heads - 1}")
    return node
