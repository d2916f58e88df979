"""The engine on every model family: tiny random GPT-2, GPT-NeoX, Llama, Qwen2 and Gemma 2 models.

On each: the invariants (the full model is the model: its metric equals the Hugging Face model's
own logits; the empty circuit and any node ablation equal a slow reference written here with plain
hooks), edge ablation equal to a reference that rebuilds every receiver's input from the sum of
its visible senders' outputs (not, as the engine does, from the residual minus the others),
path patching equal to TransformerLens' own patching, and node pruning end to end.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch
from transformer_lens import patching

import circuitlang
from circuitlang.api import path_patch
from circuitlang.cli import main
from circuitlang.discover.prune import prune_nodes
from circuitlang.discover.scoring import Scorer, variant_of
from circuitlang.engine.path_patching import Receiver
from circuitlang.engine.scores import direct_logit
from circuitlang.engine.variants import masks_for
from circuitlang.ir import models as ir
from tests.conftest import fast_cases
from tests.family_models import FAMILIES, GROUPED, ROOT, build_family_model

ANIMALS = ["cat", "dog", "cow", "pig", "fox", "owl", "bee", "ant", "rat", "hen"]
SPEC = """circuitlang 1
circuit fam on "./%(family)s"
list animals = %(animals)s
prompts copy {
  template "so {s1} {s2} {s3}"
  for i in 1..12
  s1, s2, s3 = random animals distinct
  answer = s1
  wrong = s3
  corrupt random { s1, s2, s3 = random animals distinct }
}
metric logit_diff(answer, wrong)
ablate %(ablate)s
%(circuit)s
"""
NODES = """role "a": 0.1, 2.3 q end
role "b": 1.0 k s1
role "c": 1.2
mlp 0, 1
"""
EDGES = """edge 0.1 -> 1.2 via v
edge 0.1 -> 2.3 via q
edge 1.0 -> 2.3 via k, v
edge mlp 0 -> 1.2 via k
edge mlp 0 -> mlp 1
edge 0.1 -> mlp 1
edge 1.2 -> logits
edge 2.3 -> logits
edge mlp 1 -> logits
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("families")
    for family in FAMILIES:
        build_family_model(family, root / family)
    return root


def write_spec(root: Path, family: str, circuit: str, ablate: str = "mean of corrupt", name: str = "") -> Path:
    path = root / f"{family}{name}.circ"
    path.write_text(SPEC % {"family": family, "animals": json.dumps(ANIMALS), "ablate": ablate, "circuit": circuit})
    return path


def open_family(root: Path, family: str, circuit: str = NODES, ablate: str = "mean of corrupt", name: str = ""):
    return circuitlang.open_run(circuitlang.load(write_spec(root, family, circuit, ablate, name)))


# ---- the slow reference --------------------------------------------------------------------------


def reference_metric(run, variant) -> torch.Tensor:
    """The metric per prompt of `variant`, by plain hooks on the bridge written for this test: every
    ablated activation replaced by its mean over the corrupt prompts; with edges, every receiver
    in the circuit reads the sum of the embeddings, the output biases and, per sender, its output
    in this run where an edge is declared and its ablation value where not."""
    bridge, family = run.model.bridge, run.model.family
    template = run.bound["copy"].templates[0]
    _, corrupt = bridge.run_with_cache(template.corrupt)
    mean = {name: corrupt[name].mean(0, keepdim=True) for name in corrupt.keys() if corrupt[name].is_floating_point()}
    masks = masks_for(variant, template.template, template.positions, template.seq_len, family.n_layers, family.n_heads)
    state = _ReferenceRun(run, variant, mean, masks)
    with bridge.hooks(fwd_hooks=state.hooks()):
        logits = bridge(template.clean)[:, template.positions["end"]]
    return _logit_diff(template, logits)


def _logit_diff(template, logits: torch.Tensor) -> torch.Tensor:
    answers = torch.tensor([a[0] for a in template.answers["answer"]])
    wrongs = torch.tensor([w[0] for w in template.answers["wrong"]])
    return (logits.gather(1, answers[:, None]) - logits.gather(1, wrongs[:, None]))[:, 0].double()


class _ReferenceRun:
    def __init__(self, run, variant, mean: dict, masks) -> None:
        self.bridge, self.family, self.weights = run.model.bridge, run.model.family, run.model.attention
        self.variant, self.mean, self.masks = variant, mean, masks
        self.kept = variant.nodes()
        self.declared = {(e.sender, e.receiver, c) for e in variant.edges or () for c in (e.channels or ("",))}
        self.outputs: dict[ir.Node, torch.Tensor] = {}  # sender -> what it wrote in this run
        self.embed: torch.Tensor | None = None
        try:
            self.b_o = self.bridge.b_O
        except AttributeError:
            self.b_o = torch.zeros(self.family.n_layers, self.family.d_model)

    def hooks(self) -> list:
        family = self.family
        hooks = [(family.resid_pre(0), self._embed)]
        for layer in range(family.n_layers):
            for channel in ("q", "k", "v"):
                hooks.append((family.head_input(channel, layer), self._head_input(layer, channel)))
            hooks.append((family.activation("z", layer), self._z(layer)))
            hooks.append((family.mlp_input(layer), self._receiver_input(ir.MlpNode(layer=layer), "", layer)))
            hooks.append((family.activation("mlp_out", layer), self._mlp_out(layer)))
        hooks.append((family.final_residual, self._receiver_input(ir.LOGITS, "")))
        return hooks

    def _embed(self, resid, hook):
        self.embed = resid.clone()
        return resid

    def _z(self, layer: int):
        def hook(z, hook):
            keep = self.masks.z[layer]  # [P, H]
            z = torch.where(keep[None, :, :, None], z, self.mean[hook.name])
            for head in range(self.family.n_heads):
                node = ir.HeadNode(layer=layer, head=head)
                self.outputs[node] = z[:, :, head] @ self.weights.W_O[layer, head]
            return z

        return hook

    def _mlp_out(self, layer: int):
        def hook(out, hook):
            out = torch.where(self.masks.mlp[layer][None, :, None], out, self.mean[hook.name])
            self.outputs[ir.MlpNode(layer=layer)] = out
            return out

        return hook

    def _ablated_output(self, sender: ir.Node) -> torch.Tensor:
        if sender.kind == "mlp":
            return self.mean[self.family.activation("mlp_out", sender.layer)]
        return self.mean[self.family.activation("z", sender.layer)][:, :, sender.head] @ self.weights.W_O[sender.layer, sender.head]

    def _visible(self, receivers: list[ir.Node], channel: str) -> torch.Tensor:
        """The receivers' input as the sum of what they may see (they share one input)."""
        first = receivers[0]
        layer = self.family.n_layers if first.kind == "logits" else first.layer
        total = self.embed.clone()
        for sender, output in self.outputs.items():
            if not self.family.feeds(sender, first):
                continue
            declared = any((sender, r, channel) in self.declared for r in receivers if r in self.kept or r.kind == "logits")
            total = total + (output if declared and sender in self.kept else self._ablated_output(sender))
        for bias_layer in range(layer + (1 if first.kind == "mlp" and not self.family.parallel_attn_mlp else 0)):
            total = total + self.b_o[bias_layer]
        return total

    def _receiver_input(self, receiver: ir.Node, channel: str, layer: int | None = None):
        normalized = receiver.kind == "mlp" and self.family.mlp_reads_normalized  # GPT-J, Phi: after ln1

        def hook(value, hook):
            if self.variant.edges is None or (receiver.kind == "mlp" and receiver not in self.kept):
                return value
            visible = self._visible([receiver], channel)
            return self.bridge.blocks[layer].ln1(visible) if normalized else visible

        return hook

    def _head_input(self, layer: int, channel: str):
        weight, bias = self.weights.input_weights(channel, layer)
        ln1 = self.bridge.blocks[layer].ln1

        def hook(vectors, hook):
            out = vectors.clone()
            for index in range(vectors.shape[2]):
                heads = [index] if channel == "q" else list(self.family.group(index))
                nodes = [ir.HeadNode(layer=layer, head=h) for h in heads]
                if self.variant.edges is not None and any(n in self.kept for n in nodes):
                    out[:, :, index] = ln1(self._visible(nodes, channel)) @ weight[index] + bias[index]
                if channel != "q":
                    keep = self.masks.kv[layer][:, heads].all(-1)  # [P]: the group's shared keys and values
                    out[:, :, index] = torch.where(keep[None, :, None], out[:, :, index], self.mean[hook.name][:, :, index])
            return out

        return hook


# ---- the tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", fast_cases(FAMILIES, ("gpt2",)))
def test_the_full_model_is_the_hugging_face_model(models: Path, family: str) -> None:
    run = open_family(models, family)
    template = run.bound["copy"].templates[0]
    with torch.no_grad():
        logits = run.model.bridge.original_model(template.clean).logits[:, template.positions["end"]]
    ours = run.metric([run.full_model()])[0]
    assert torch.allclose(ours, _logit_diff(template, logits), atol=1e-4)


@pytest.mark.parametrize("family", fast_cases(FAMILIES, ("llama",)))
def test_node_ablation_and_the_empty_circuit_equal_the_reference(models: Path, family: str) -> None:
    run = open_family(models, family)
    variants = [run.empty(), run.circuit(), run.full_model(without=frozenset({ir.HeadNode(layer=1, head=1)}))]
    ours = run.metric(variants)
    for row, variant in enumerate(variants):
        assert torch.allclose(ours[row], reference_metric(run, variant), atol=1e-5), variant.label
    assert not torch.allclose(ours[0], ours[1], atol=1e-3)  # the ablations do something


EDGE_FAMILIES = [f for f in FAMILIES if f != "gemma2"]


@pytest.mark.parametrize("family", fast_cases(EDGE_FAMILIES, ("neox",)))
def test_edge_ablation_equals_the_sum_of_visible_senders(models: Path, family: str) -> None:
    run = open_family(models, family, NODES + EDGES, name="_edges")
    variant = run.circuit()
    assert variant.edges
    ours = run.metric([variant, run.circuit(without=frozenset({ir.HeadNode(layer=0, head=1)}))])
    assert torch.allclose(ours[0], reference_metric(run, variant), atol=1e-5)
    assert torch.allclose(ours[1], reference_metric(run, run.circuit(without=frozenset({ir.HeadNode(layer=0, head=1)}))), atol=1e-5)
    node_only = run.metric([run.session.circuit().__class__(variant.heads, variant.mlps)])[0]
    assert not torch.allclose(ours[0], node_only, atol=1e-4)  # the edges restrict something


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_last_layer_heads_into_the_logits_equal_transformer_lens_activation_patching(models: Path, family: str) -> None:
    run = open_family(models, family, ablate="resample", name="_pp")
    template = run.bound["copy"].templates[0]
    bridge = run.model.bridge
    _, corrupt_cache = bridge.run_with_cache(template.corrupt)

    def mean_logit_diff(logits: torch.Tensor) -> torch.Tensor:
        return _logit_diff(template, logits[:, template.positions["end"]]).mean()

    expected = patching.get_act_patch_attn_head_out_all_pos(bridge, template.clean, corrupt_cache, mean_logit_diff)
    last = run.model.family.n_layers - 1
    for index in range(run.model.family.n_heads):
        ours = path_patch(run, [ir.HeadNode(layer=last, head=index)], [Receiver(ir.LOGITS)])
        assert ours.mean().item() == pytest.approx(expected[last, index].item(), abs=1e-5)


@pytest.mark.parametrize("family", fast_cases(FAMILIES, ("phi",)))
def test_node_pruning_runs_end_to_end(models: Path, family: str) -> None:
    scorer = Scorer(open_family(models, family, circuit="", name="_prune").session)
    result = prune_nodes(scorer, target=0.5, schedule="fb", include_mlps=True)
    again = scorer.faithfulness([variant_of(result.nodes)])[0]
    assert again == pytest.approx(result.faithfulness, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("family", GROUPED)
def test_heads_sharing_keys_must_agree_on_their_key_positions_and_edges(models: Path, family: str, capsys) -> None:
    disagreeing = NODES.replace('role "c": 1.2', 'role "c": 1.1')  # 1.1 shares 1.0's keys but reads all positions
    path = write_spec(models, family, disagreeing, name="_group")
    assert main(["verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert "1.1 and 1.0 read the same keys and values" in err and "`k` positions" in err
    edges = NODES.replace('role "b": 1.0 k s1', 'role "b": 1.0, 1.1') + EDGES + "edge 0.1 -> 1.0 via k\nedge 1.1 -> logits\n"
    path = write_spec(models, family, edges, name="_group_edges")
    assert main(["verify", str(path)]) == 2
    assert "senders into k differ" in capsys.readouterr().err


def test_edges_are_refused_where_heads_do_not_add_up(models: Path, capsys) -> None:
    path = write_spec(models, "gemma2", NODES + EDGES, name="_edges_refused")
    assert main(["verify", str(path)]) == 2
    assert "normalizes the sum of a layer's head outputs" in capsys.readouterr().err


def test_an_edge_from_a_head_into_its_own_layers_parallel_mlp_is_refused(models: Path, capsys) -> None:
    path = write_spec(models, "neox", NODES + EDGES + "edge 1.0 -> mlp 1\n", name="_parallel")
    assert main(["verify", str(path)]) == 2
    assert "mlp 1 does not read 1.0" in capsys.readouterr().err


HOOK_POINT = re.compile(r"blocks\.|ln_final\.hook|hook_(resid|q|k|v|z|mlp_out|pattern|attn_out)\b")


def test_the_family_adapter_is_the_one_place_that_names_hook_points() -> None:
    """Hook names in code (string literals and f-strings; docstrings and comments aside) appear
    only in engine/family.py, so that a family with other names changes one module."""
    offenders = []
    for path in sorted((ROOT / "circuitlang").rglob("*.py")):
        if path.name == "family.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if HOOK_POINT.search(node.value):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not offenders, "\n".join(offenders)


# the bridge's submodules and hook points as attributes: blocks, their norms, attention and its
# projection, the wrapped modules, and the hook points' private list of hooks
MODULE_PATH = {
    "blocks",
    "ln1",
    "ln2",
    "ln1_post",
    "ln_final",
    "attn",
    "o",
    "original_component",
    "hook_in",
    "hook_out",
    "hook_hidden_states",
    "_forward_hooks",
}


def test_the_family_adapter_is_the_one_place_that_reaches_into_the_bridges_modules() -> None:
    """Module paths (`blocks[l].ln1`, `attn.o.original_component`, `ln_final.hook_in`, a hook
    point's `_forward_hooks`) are spelled only in engine/family.py; elsewhere the code asks
    `Family` for the module (`Family.blocks`, `Family.attention_norm` ...)."""
    offenders = []
    for path in sorted((ROOT / "circuitlang").rglob("*.py")):
        if path.name == "family.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in MODULE_PATH and not _asks_family(node.value):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    assert not offenders, "\n".join(offenders)


def _asks_family(owner: ast.expr) -> bool:
    """`Family.blocks(...)`, `self.family.attention_norm(...)`: the adapter's own functions."""
    name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
    return name in ("Family", "family")


@pytest.mark.parametrize("family", fast_cases([f for f in FAMILIES if f != "gemma2"], ("gptj",)))  # Gemma 2 soft-caps its logits
def test_direct_logit_effects_add_up_to_the_metric(models: Path, family: str) -> None:
    """The final norm at its clean scale is linear: the direct effects of the embeddings, every
    head, every MLP and the attention output biases add up to the model's logit difference, with
    the right centring (LayerNorm or not) and gain (read off the norm) for each family."""
    run = open_family(models, family, name="_dla")
    engine, family_ = run.session.engine(), run.model.family
    template = engine.bound.templates[0]
    nodes = [ir.HeadNode(layer=layer, head=head) for layer in range(family_.n_layers) for head in range(family_.n_heads)] + [
        ir.MlpNode(layer=layer) for layer in range(family_.n_layers)
    ]
    total = sum(direct_logit(engine, node) for node in nodes)
    rest = engine.clean_cache(template).resid_pre[0] + _output_biases(run).sum(0)  # what no node writes
    remainder = _direct(engine, template, rest)
    expected = run.metric([run.full_model()])[0]
    assert torch.allclose(total + remainder, expected, atol=1e-4)


def _output_biases(run) -> torch.Tensor:
    try:
        return run.model.bridge.b_O
    except AttributeError:
        return torch.zeros(run.model.family.n_layers, run.model.family.d_model)


def _direct(engine, template, contribution: torch.Tensor) -> torch.Tensor:
    """The same linear map, by hand: the final norm with its scale frozen at the clean run's."""
    bridge = engine.model.bridge
    end = template.positions["end"]
    final, part = engine.clean_cache(template).final_residual[:, end], contribution[..., end, :]
    if not bridge.cfg.normalization_type.startswith("RMS"):
        final, part = final - final.mean(-1, keepdim=True), part - part.mean(-1, keepdim=True)
    scale = final.pow(2).mean(-1, keepdim=True).add(bridge.cfg.eps).sqrt()
    normalized = bridge.ln_final(final) - (bridge.ln_final.b if bridge.cfg.normalization_type == "LN" else 0)
    gain = normalized * scale / final  # the norm's gain, elementwise (no entry of `final` is 0 here)
    answers = torch.tensor([a[0] for a in template.answers["answer"]])
    wrongs = torch.tensor([w[0] for w in template.answers["wrong"]])
    direction = (bridge.W_U[:, answers] - bridge.W_U[:, wrongs]).T
    return ((part / scale) * gain * direction).sum(-1).double()


@pytest.mark.parametrize("family", fast_cases(["neox", "gptj", "phi"], ("neox",)))
def test_attribution_gradients_equal_finite_differences_with_parallel_blocks(models: Path, family: str) -> None:
    """EAP on parallel blocks (and GPT-J's and Phi's shared norm, where an MLP's input is reached
    after the norm): each score equals the central difference of adding and removing a little of
    the edge. Central, with a step of 1e-3: these models' attention takes its softmax in float32
    even in a float64 model, which drowns one-sided differences with smaller steps."""
    from circuitlang.discover import attribution as discovery
    from circuitlang.engine import attribution
    from circuitlang.engine.session import open_session
    from tests.engine.test_attribution import _offset_of, _zero_offsets

    scorer = Scorer(open_session(circuitlang.load(write_spec(models, family, "", name="_eap")), dtype=torch.float64))
    scores = discovery.edge_scores(scorer, "eap")
    engine, graph = scorer.engine, discovery.attribution_graph(scorer)
    template = engine.bound.templates[0]
    rows = torch.arange(template.n_prompts)
    start = engine.clean_cache(template).resid_pre[0][rows]
    differences = attribution._sender_differences(engine, template, graph, rows)
    head, mlp = (lambda layer, h: ir.HeadNode(layer=layer, head=h)), (lambda layer: ir.MlpNode(layer=layer))
    for sender, receiver, channel in [(head(0, 1), mlp(1), ""), (mlp(0), mlp(2), ""), (mlp(1), head(2, 3), "k"), (head(1, 2), ir.LOGITS, "")]:
        values = []
        for step in (-1e-3, 1e-3):  # removing, then adding, a thousandth of the sender's difference
            offsets = _zero_offsets(scorer, len(rows), start)
            with torch.no_grad():
                _offset_of(offsets, receiver, channel).add_(step * differences[graph.senders().index(sender)])
                values.append(float(attribution.run_with_offsets(engine, template, engine.readout(), rows, start, offsets).mean()))
        assert (values[1] - values[0]) / 2e-3 == pytest.approx(scores[(sender, receiver, channel)], rel=2e-3, abs=2e-6)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_edge_searches_and_curves_are_refused_where_the_graph_does_not_fit(models: Path, family: str, capsys) -> None:
    spec = write_spec(models, family, "", name="_refused")
    assert main(["discover", str(spec), "--method", "acdc", "-o", str(models / f"{family}_found.circ")]) == 2
    assert "use --method prune" in capsys.readouterr().err
    assert main(["curve", str(spec), "--method", "eap"]) == 2
    assert "a faithfulness curve evaluates circuits of edges, but" in capsys.readouterr().err


def test_the_engine_refuses_edge_variants_where_edges_are_undefined(models: Path) -> None:
    run = open_family(models, "gemma2")
    with pytest.raises(ValueError, match="edge ablation is not defined on this model"):
        run.metric([variant_of([ir.HeadNode(layer=0, head=1)], [])])


@pytest.mark.slow
def test_head_scores_through_w_o_are_left_empty_where_heads_do_not_write_alone(models: Path, capsys) -> None:
    path = write_spec(models, "gemma2", NODES + "expect 0.1 direct_logit > 0\nexpect mlp 0 direct_logit > -1000\n", name="_scores")
    assert main(["verify", str(path), "--no-audit"]) == 1
    out = capsys.readouterr().out
    assert "0.1 direct_logit > 0 on copy for 0.1: not computed" in out
    assert "mlp 0 direct_logit > -1000" in out and out.count("not computed") == 1


@pytest.mark.slow
def test_the_api_refuses_to_attribute_where_the_graph_does_not_fit(models: Path) -> None:
    with pytest.raises(ValueError, match="shares keys and values between groups"):
        circuitlang.edge_scores(open_family(models, "llama"), "eap")
    scores = circuitlang.edge_scores(open_family(models, "gptj"), "eap", kind="records")
    assert len(scores) > 0 and abs(scores[0]["score"]) >= abs(scores[-1]["score"])
