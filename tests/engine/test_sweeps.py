"""Activation and path patching sweeps (`circuitlang patch`) against hand-written hooks on the
TransformerLens bridge (one forward per cell), on the micro model whose circuit is known and on a
random 3-layer model with two templates of different lengths."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import circuitlang
from circuitlang.api import path_patch
from circuitlang.cli import main
from circuitlang.engine import sweeps
from circuitlang.engine.path_patching import Receiver
from circuitlang.ir import models as ir
from circuitlang.organisms.tiny import build_random_gpt2
from tests.micro_model import WORDS, build_copy_model

MICRO = """circuitlang 1
circuit copy on "./micro"
list animals = %(words)s
prompts copy {
  template "{s1} {s2} {s3}"
  for i in 1..16
  s1, s2, s3 = random animals distinct
  answer = s1
  wrong = s3
  corrupt random { s1, s2, s3 = random animals distinct }
}
metric logit_diff(answer, wrong)
ablate mean of corrupt
role "mover": 0.0, 0.1 q end k s1
"""

TINY_WORDS = [str(i) for i in range(1, 25)] + ["then", "and", "after"]
TINY = """circuitlang 1
circuit tiny on "./tiny"
prompts digits {
  template "{s1} {s2} {s3} {s4}"
  template "{s1} then {s2} and {s3} after {s4}"
  for i in 1..6
  s1 = i; s2 = i + 1; s3 = i + 2; s4 = i + 3
  answer = i + 4; wrong = i + 3
  corrupt random { s1, s2, s3, s4 = random 1..20 }
}
metric logit_diff(answer, wrong)
ablate %(ablate)s
role "mover": 2.1
"""


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("patch_micro")
    build_copy_model(root / "micro")
    path = root / "copy.circ"
    path.write_text(MICRO % {"words": json.dumps(WORDS)})
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("patch_tiny")
    build_random_gpt2(root / "tiny", TINY_WORDS, n_layers=3, n_heads=4, d_model=32, seed=3)
    return root


def open_tiny(folder: Path, ablate: str = "mean of corrupt"):
    path = folder / f"{ablate.replace(' ', '_')}.circ"
    path.write_text(TINY % {"ablate": ablate})
    return circuitlang.open_run(circuitlang.load(path), batch_size=9)  # chunks split variants and prompts


def run_sweeps(run):
    engine = run.session.engine()
    readout = engine.readout()
    base = sweeps.baseline(engine, readout)
    return engine, readout, base


# ---- the slow reference: one hooked forward of the bridge per cell and template -----------------


@torch.no_grad()
def reference_delta(run, ablate: str, hook: str, layer: int, head: int | None, name: str | None) -> float:
    """Mean over prompts of metric(patched) - metric(clean), the node's output replaced at `name`
    (every position if None) by its ablation value, written out with run_with_hooks."""
    bridge = run.model.bridge
    total, count = 0.0, 0
    for template in run.bound[run.spec.prompt_sets[0].name].templates:
        _, corrupt = bridge.run_with_cache(template.corrupt)
        source = corrupt[hook.format(layer=layer)]
        value = {"mean of corrupt": source.mean(0, keepdim=True), "resample": source, "zero": torch.zeros_like(source[:1])}[ablate]
        where = slice(None) if name is None else template.positions[name]
        index = (slice(None), where, head) if head is not None else (slice(None), where)
        clean = _logit_diff(bridge(template.clean), template)
        hooks = [(hook.format(layer=layer), _replacer(value, index))]
        patched = _logit_diff(bridge.run_with_hooks(template.clean, fwd_hooks=hooks), template)
        total += float((patched - clean).sum())
        count += template.n_prompts
    return total / count


def _replacer(value: torch.Tensor, index: tuple):
    def replace(activation: torch.Tensor, hook: object) -> torch.Tensor:
        patched = activation.clone()
        patched[index] = value.expand_as(activation)[index]
        return patched

    return replace


def _logit_diff(logits: torch.Tensor, template) -> torch.Tensor:
    answers = torch.tensor([a[0] for a in template.answers["answer"]])
    wrongs = torch.tensor([w[0] for w in template.answers["wrong"]])
    last = logits[:, -1]
    return (last.gather(1, answers[:, None]) - last.gather(1, wrongs[:, None]))[:, 0].double()


Z, MLP_OUT = "blocks.{layer}.attn.hook_z", "blocks.{layer}.hook_mlp_out"


# ---- micro model: the known circuit -------------------------------------------------------------


def test_micro_model_only_the_copying_heads_at_end_matter(micro):
    run = circuitlang.open_run(circuitlang.load(micro))
    engine, readout, base = run_sweeps(run)
    columns = sweeps.named_columns(engine)
    assert [c.label for c in columns] == ["bos", "s1", "s2", "s3 / end"]  # s3 is the last token
    heads = sweeps.head_position_sweep(engine, readout, base, columns)
    delta = heads.delta()
    assert heads.rows == ("0.0", "0.1", "0.2", "0.3") and heads.columns[-1] == "all"
    # 0.0 and 0.1 copy s1 at the end; nothing else writes anything the end position reads.
    assert delta[:2, 3].max() < -0.1 and torch.allclose(delta[:2, 3], delta[:2, 4], atol=1e-6)
    moved = torch.zeros_like(delta, dtype=torch.bool)
    moved[:2, 3:] = True
    assert delta[~moved].abs().max() < 1e-6
    mlps = sweeps.mlp_position_sweep(engine, readout, base, columns)
    assert mlps.delta().abs().max() < 1e-6  # the MLP's weights are zero
    for head in range(4):
        for number, column in enumerate(columns):
            expected = reference_delta(run, "mean of corrupt", Z, 0, head, column.names[0])
            assert float(delta[head, number]) == pytest.approx(expected, abs=1e-5)


def test_normalized_is_the_change_over_the_full_range(micro):
    run = circuitlang.open_run(circuitlang.load(micro))
    engine, readout, base = run_sweeps(run)
    result = sweeps.head_sweep(engine, readout, base)
    f_model, f_empty = (float(v) for v in run.metric([run.full_model(), run.empty()]).mean(1))
    assert float(base.model.mean()) == pytest.approx(f_model, abs=1e-9)
    expected = (result.patched.mean(-1) - f_model) / (f_model - f_empty)
    assert torch.allclose(result.normalized(), expected, atol=1e-9)
    assert result.normalized()[0, 0] < -0.1 and result.normalized()[0, 2].abs() < 1e-7


def test_token_index_columns_agree_with_named_ones(micro):
    run = circuitlang.open_run(circuitlang.load(micro))
    engine, readout, base = run_sweeps(run)
    tokens = sweeps.token_columns(engine)
    assert [c.label for c in tokens] == ["bos", "s1", "s2", "s3 / end"]
    assert torch.allclose(
        sweeps.head_position_sweep(engine, readout, base, tokens).delta(),
        sweeps.head_position_sweep(engine, readout, base, sweeps.named_columns(engine)).delta(),
        atol=1e-9,
    )


# ---- random model, two templates of different lengths ----------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("ablate", ["mean of corrupt", "resample", "zero"])
def test_sweeps_match_hooked_forwards_across_templates(tiny, ablate):
    run = open_tiny(tiny, ablate)
    engine, readout, base = run_sweeps(run)
    columns = sweeps.named_columns(engine)
    # `end` is s4 in both templates; the unnamed words (then, and, after) are never a column.
    assert [c.label for c in columns] == ["bos", "s1", "s2", "s3", "s4 / end"]
    heads = sweeps.head_position_sweep(engine, readout, base, columns).delta()
    mlps = sweeps.mlp_position_sweep(engine, readout, base, columns).delta()
    per_head = sweeps.head_sweep(engine, readout, base).delta()
    for layer, head, number in [(0, 1, 1), (1, 2, 2), (1, 0, 3), (2, 1, 4), (0, 3, 4), (2, 3, 0)]:
        name = columns[number].names[0]
        assert float(heads[layer * 4 + head, number]) == pytest.approx(reference_delta(run, ablate, Z, layer, head, name), abs=1e-5)
    for layer, head in [(0, 0), (1, 3)]:
        expected = reference_delta(run, ablate, Z, layer, head, None)
        assert float(per_head[layer, head]) == pytest.approx(expected, abs=1e-5)
        assert float(heads[layer * 4 + head, -1]) == pytest.approx(expected, abs=1e-5)
    for layer, number in [(0, 2), (1, 4), (2, 4)]:
        assert float(mlps[layer, number]) == pytest.approx(
            reference_delta(run, ablate, MLP_OUT, layer, None, columns[number].names[0]), abs=1e-5
        )
    # The last layer writes to the logits only at `end`: elsewhere it changes nothing.
    assert heads[8:, :4].abs().max() < 1e-6 and mlps[2, :4].abs().max() < 1e-6


def test_token_columns_refuse_several_templates(tiny):
    with pytest.raises(ValueError, match="2 templates"):
        sweeps.token_columns(open_tiny(tiny).session.engine())


def test_path_sweep_cells_are_single_path_patches(tiny):
    run = open_tiny(tiny, "resample")
    engine, readout, base = run_sweeps(run)
    f_model = float(base.model.mean())
    head = ir.HeadNode(layer=2, head=1)
    receivers = [Receiver(head, ("k", "v")), Receiver(ir.MlpNode(layer=1)), Receiver(ir.LOGITS)]
    for receiver, reach in zip(receivers, (2, 2, 3)):
        result = sweeps.path_sweep(engine, readout, base, receiver)
        delta = result.delta()
        assert torch.isnan(delta[reach:]).all() and not torch.isnan(delta[:reach]).any()
        sender = ir.HeadNode(layer=1, head=3)
        expected = float(path_patch(run, [sender], [receiver]).mean()) - f_model
        assert float(delta[1, 3]) == pytest.approx(expected, abs=1e-9)
    assert result.receiver == "logits" and sweeps.receiver_label(receivers[0]) == "2.1 (k, v)"
    # Into the logits, a last-layer head has only the direct path: path patching it from the paired
    # corrupt prompt is activation patching it with resample ablation.
    assert torch.allclose(delta[2], sweeps.head_sweep(engine, readout, base).delta()[2], atol=1e-5)


# ---- the command -------------------------------------------------------------------------------------


def test_patch_command_writes_pictures_and_numbers(micro, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["patch", str(micro), "-o", str(out), "--receiver", "logits", "--image", "svg", "--normalized"])
    assert code == 0
    names = {p.name for p in out.iterdir()}
    for stem in ("heads", "heads_by_position", "mlps_by_position", "path_to_logits"):
        assert {f"{stem}.svg", f"{stem}.csv"} <= names
    document = json.loads((out / "patching.json").read_text())
    assert document["unit"] == "logits" and document["n_prompts"] == 16 and document["ablation"] == "mean of corrupt"
    by_name = {s["name"]: s for s in document["sweeps"]}
    by_position = by_name["heads_by_position"]
    assert by_position["columns"] == ["bos", "s1", "s2", "s3 / end", "all"]
    assert by_position["delta"][0][3] < -0.1 and abs(by_position["delta"][2][3]) < 1e-6
    scale = document["f_model"] - document["f_empty"]
    assert by_position["normalized"][0][3] == pytest.approx(by_position["delta"][0][3] / scale)
    rows = list(csv.DictReader((out / "heads_by_position.csv").open()))
    assert len(rows) == 4 * 5 and rows[0]["delta_unit"] == "logits"
    assert {(r["node"], r["position"]) for r in rows if abs(float(r["delta"])) > 1e-3} == {
        ("0.0", "s3 / end"),
        ("0.1", "s3 / end"),
        ("0.0", "all"),
        ("0.1", "all"),
    }
    svg = (out / "heads.svg").read_text()
    assert "normalized effect (fraction of F(M) − F(∅))" in svg and "16 prompts" in svg
    printed = capsys.readouterr().out
    assert "Δ logit_diff (logits)" in printed and "wrote 9 files" in printed


@pytest.mark.slow
def test_patch_command_png_is_a_picture_with_the_delta_unit(micro, tmp_path):
    from PIL import Image

    assert main(["patch", str(micro), "-o", str(tmp_path), "--kind", "mlps"]) == 0
    with Image.open(tmp_path / "mlps_by_position.png") as image:
        assert image.format == "PNG" and image.width > 400
    assert not (tmp_path / "heads.png").exists()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--receiver", "9.x"], "expected logits, L.H"),
        (["--receiver", "7.0"], "layer 7 does not exist"),
        (["--receiver", "0.9:q"], "head 9 does not exist"),
        (["--prompts", "nope"], "no prompt set 'nope'"),
    ],
)
def test_patch_command_usage_errors_exit_2(micro, tmp_path, capsys, arguments, message):
    assert main(["patch", str(micro), "-o", str(tmp_path), "--kind", "path", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_all_positions_with_several_templates_exits_2(tiny, tmp_path, capsys):
    open_tiny(tiny)  # writes the spec
    code = main(["patch", str(tiny / "mean_of_corrupt.circ"), "-o", str(tmp_path), "--all-positions"])
    assert code == 2 and "2 templates" in capsys.readouterr().err


def test_a_path_sweep_takes_mlps_as_senders(tiny):
    """`--senders mlps`: each layer's MLP is a sender, in a column "mlp" after the heads; each cell
    is the single path patch of that MLP, and an MLP at or after the receiver's layer sends nothing."""
    run = open_tiny(tiny, "resample")
    engine, readout, base = run_sweeps(run)
    f_model = float(base.model.mean())
    receiver = Receiver(ir.HeadNode(layer=2, head=1), ("q",))
    both = sweeps.path_sweep(engine, readout, base, receiver, ("heads", "mlps"))
    assert both.columns[-1] == "mlp" and len(both.columns) == engine.n_heads + 1
    delta = both.delta()
    for layer in (0, 1):
        expected = float(path_patch(run, [ir.MlpNode(layer=layer)], [receiver]).mean()) - f_model
        assert float(delta[layer, -1]) == pytest.approx(expected, abs=1e-9)
    assert torch.isnan(delta[2:, -1]).all()
    heads_only = sweeps.path_sweep(engine, readout, base, receiver).delta()
    assert torch.equal(delta[:, :-1].nan_to_num(7.0), heads_only.nan_to_num(7.0))  # the heads' cells as before
    into_mlp = sweeps.path_sweep(engine, readout, base, Receiver(ir.MlpNode(layer=1)), ("mlps",)).delta()
    assert not torch.isnan(into_mlp[0, 0]) and torch.isnan(into_mlp[1:, 0]).all()  # mlp 0 -> mlp 1 only


def test_the_patch_command_names_mlp_senders_as_specs_do(micro, tmp_path):
    out = tmp_path / "out"
    assert main(["patch", str(micro), "-o", str(out), "--kind", "path", "--senders", "heads", "--senders", "mlps", "--image", "svg"]) == 0
    rows = list(csv.DictReader((out / "path_to_logits.csv").open()))
    assert {r["node"] for r in rows} >= {"0.0", "mlp 0"}
    assert "one sender (a head or an MLP) at a time" in (out / "path_to_logits.svg").read_text()
