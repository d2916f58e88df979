"""Interchange interventions (engine.interchange) against a slow, obvious reference written here:
one full forward of the source with TransformerLens's own cache, then one full forward of the base
with hooks that overwrite each site, pair by pair, through the bridge's `run_with_hooks`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import circuitlang as cl
from circuitlang.engine.interchange import interchange
from circuitlang.errors import Span
from circuitlang.ir import models as ir
from tests.conftest import SPECS

SPAN = Span(path="test", line=1, column=1, end_line=1, end_column=2)
END = (ir.PositionRef(name="end", span=SPAN),)
S3_AND_END = (ir.PositionRef(name="s3", span=SPAN), ir.PositionRef(name="end", span=SPAN))


@pytest.fixture(scope="module")
def run():
    return cl.open_run(cl.load(SPECS / "organism_incr_digits.circ"))


def reference(run, sites: tuple[ir.Site, ...], base: int, source: int) -> torch.Tensor:
    """End-position logits of prompt `base` with `sites` set to prompt `source`'s activations."""
    bridge, bound = run.model.bridge, run.session.bound[run.spec.prompt_sets[0].name]
    where = {p: (t, r) for t in bound.templates for r, p in enumerate(t.prompt_indices)}
    (base_template, base_row), (source_template, source_row) = where[base], where[source]
    _, cache = bridge.run_with_cache(source_template.clean[source_row : source_row + 1])
    hooks = []
    for site in sites:
        for position in site.positions:
            at_base = base_template.positions[position.name] + position.offset
            at_source = source_template.positions[position.name] + position.offset
            if isinstance(site.node, ir.HeadNode):
                name, head = f"blocks.{site.node.layer}.attn.hook_z", site.node.head
                value = cache[name][0, at_source, head].clone()
                hooks.append((name, _set(at_base, head, value)))
            else:
                name = f"blocks.{site.node.layer}.hook_mlp_out"
                hooks.append((name, _set(at_base, None, cache[name][0, at_source].clone())))
    logits = bridge.run_with_hooks(base_template.clean[base_row : base_row + 1], fwd_hooks=hooks)
    return logits[0, base_template.positions["end"]].double()


def _set(index: int, head: int | None, value: torch.Tensor):
    def hook(activation: torch.Tensor, hook: object) -> torch.Tensor:
        activation = activation.clone()
        if head is None:
            activation[0, index] = value
        else:
            activation[0, index, head] = value
        return activation

    return hook


SITES = {
    "mlp 0 at end": (ir.Site(node=ir.MlpNode(layer=0), positions=END),),
    "heads 0.0 and 1.2 at s3 and end": (
        ir.Site(node=ir.HeadNode(layer=0, head=0), positions=S3_AND_END),
        ir.Site(node=ir.HeadNode(layer=1, head=2), positions=S3_AND_END),
    ),
    "mlp 2 and head 3.1 at end": (ir.Site(node=ir.MlpNode(layer=2), positions=END), ir.Site(node=ir.HeadNode(layer=3, head=1), positions=END)),
}


@pytest.mark.parametrize("name", SITES)
def test_interchange_equals_a_hooked_forward_pair_by_pair(run, name: str) -> None:
    sites = SITES[name]
    base, source = [0, 5, 17, 40, 94], [60, 2, 3, 41, 0]
    vocab = run.model.bridge.cfg.d_vocab
    columns = torch.tensor([[7, 11], [3, 4], [9, 1], [20, 21], [5, vocab - 1]])
    result = interchange(run.session.engine(), [sites] * len(base), base, source, columns)
    for i, (b, s) in enumerate(zip(base, source)):
        expected = reference(run, sites, b, s)
        assert int(result.top[i]) == int(expected.argmax())
        torch.testing.assert_close(torch.from_numpy(result.logits[i]), expected[columns[i]], atol=1e-4, rtol=1e-5)


def test_each_pair_may_name_its_own_sites(run) -> None:
    """The baseline draws a node set per pair: rows with different sites in one batch must each get
    exactly their own overwrites (and a pair with no sites is the clean base run)."""
    per_pair = [SITES["mlp 0 at end"], (), SITES["heads 0.0 and 1.2 at s3 and end"]]
    base, source = [3, 8, 30], [70, 50, 1]
    columns = torch.tensor([[1, 2], [1, 2], [1, 2]])
    result = interchange(run.session.engine(), per_pair, base, source, columns)
    for i, (sites, b, s) in enumerate(zip(per_pair, base, source)):
        torch.testing.assert_close(torch.from_numpy(result.logits[i]), reference(run, sites, b, s)[columns[i]], atol=1e-4, rtol=1e-5)


def test_an_interchange_with_the_source_equal_to_the_base_changes_nothing(run) -> None:
    columns = torch.tensor([[1, 2], [3, 4]])
    same = interchange(run.session.engine(), [SITES["mlp 2 and head 3.1 at end"]] * 2, [4, 9], [4, 9], columns)
    clean = interchange(run.session.engine(), [()] * 2, [4, 9], [4, 9], columns)
    np.testing.assert_allclose(same.logits, clean.logits, atol=1e-5, rtol=1e-6)


def test_base_and_source_of_different_templates_exchange_by_name(tmp_path) -> None:
    """Two templates of different lengths: `s4` and `end` are other token indices in each, and a
    pair takes the source's value at the source's own index."""
    text = (SPECS / "organism_incr_digits.circ").read_text()
    spec = tmp_path / "two.circ"
    spec.write_text(text.replace('  template "{s1} {s2} {s3} {s4}"\n', '  template "{s1} {s2} {s3} {s4}"\n  template "{s2} {s3} {s4}"\n'))
    two = cl.open_run(cl.load(spec))
    bound = two.session.bound[two.spec.prompt_sets[0].name]
    first, second = bound.templates
    assert first.positions["s4"] != second.positions["s4"]
    sites = (
        ir.Site(node=ir.HeadNode(layer=1, head=2), positions=(ir.PositionRef(name="s4", span=SPAN),)),
        ir.Site(node=ir.MlpNode(layer=0), positions=END),
    )
    base = [first.prompt_indices[0], second.prompt_indices[3], first.prompt_indices[7]]
    source = [second.prompt_indices[5], first.prompt_indices[2], second.prompt_indices[9]]
    columns = torch.tensor([[1, 2], [3, 4], [5, 6]])
    result = interchange(two.session.engine(), [sites] * 3, base, source, columns)
    for i, (b, s) in enumerate(zip(base, source)):
        torch.testing.assert_close(torch.from_numpy(result.logits[i]), reference(two, sites, b, s)[columns[i]], atol=1e-4, rtol=1e-5)
