"""`circuitlang fmt` writes canonical text that re-parses to the same IR (property-tested)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from circuitlang.dsl.parser import parse
from circuitlang.dsl.printer import format_spec
from circuitlang.ir.lower import load_spec
from tests.conftest import SPECS, lower_text

names = st.sampled_from(["i", "j"])


@st.composite
def expressions(draw, depth: int = 0) -> str:
    """Expression text, fully parenthesized at random, over loop variables i and j."""
    leaves = [st.integers(0, 40).map(str), names, st.just('"w"'), st.integers(0, 30).map(lambda n: f"months[{n}]")]
    if depth >= 3:
        return draw(st.one_of(leaves))
    kind = draw(st.sampled_from(["leaf", "bin", "neg", "call", "paren", "index"]))
    if kind == "leaf":
        return draw(st.one_of(leaves))
    if kind == "bin":
        op = draw(st.sampled_from(["+", "-", "*", "//", "%"]))
        return f"{draw(expressions(depth + 1))} {op} {draw(expressions(depth + 1))}"
    if kind == "neg":
        return f"-{draw(st.sampled_from(['i', '3', '(i + 1)']))}"
    if kind == "call":
        return f"pad({draw(expressions(depth + 1))}, 2)"
    if kind == "index":
        return f"number_words[{draw(expressions(depth + 1))}]"
    return f"({draw(expressions(depth + 1))})"


@st.composite
def heads(draw, count: int) -> list[tuple[int, int]]:
    return draw(st.lists(st.tuples(st.integers(0, 11), st.integers(0, 11)), min_size=count, max_size=count, unique=True))


@st.composite
def specs(draw) -> str:
    sep = draw(st.sampled_from(["\n", "; ", "\n\n  "]))
    comment = lambda: draw(st.sampled_from(["", "  # note", " #x"]))  # noqa: E731
    slots = [f"s{k}" for k in range(1, draw(st.integers(2, 4)) + 1)]
    body = [f'template "{" ".join("{" + s + "}" for s in slots)}"', "for i in 1..9, j in 0..i"]
    body += [f"{slot} = {draw(expressions())}" for slot in slots]
    body += [f"answer = {draw(expressions())}", "wrong = i"]
    corrupt = draw(
        st.sampled_from(
            [
                "corrupt repeat_last",
                "corrupt repeat_all",
                f"corrupt swap({slots[0]}, {slots[1]})",
                f"corrupt random {{{sep}{slots[0]}, {slots[1]} = random 1..99 distinct{sep}}}",
            ]
        )
    )
    body.append(corrupt)
    chosen = draw(heads(draw(st.integers(1, 6))))
    roles = []
    for index, (layer, head) in enumerate(chosen):
        q = draw(st.sampled_from(["", " q end", f" q {slots[0]}..{slots[-1]}", f" q {slots[0]}+1, bos"]))
        k = draw(st.sampled_from(["", f" k {slots[-1]}", f" k {slots[0]}, {slots[1]}-1"]))
        roles.append(f'role "r{index}": {layer}.{head}{q}{k}{comment()}')
    ordered = sorted(chosen)
    edges = [
        f"edge {a[0]}.{a[1]} -> {b[0]}.{b[1]}" + draw(st.sampled_from(["", " via q", " via k, v"]))
        for a, b in zip(ordered, ordered[1:])
        if a[0] < b[0]
    ]
    if edges:  # with edges declared every node needs a declared path to the logits
        edges += [f"edge {layer}.{head} -> logits" for layer, head in chosen] + [
            "edge mlp 3 -> logits",
            "edge mlp 4 -> logits",
            "edge mlp 7 -> logits",
        ]
    first = chosen[0]
    expects = [
        f"expect faithfulness >= {draw(st.sampled_from(['0.8', '0.80', '1', '0.125']))}",
        f"expect {first[0]}.{first[1]} attends end -> {slots[-1]} < 0.5",
        'expect "r0" copy_score > -0.5',
    ]
    metric = draw(st.sampled_from(["logit_diff(answer, wrong)", "logprob(answer)", "kl", "accuracy(answer)"]))
    ablate = draw(st.sampled_from(["mean of corrupt", "mean of clean", "resample", "zero", "mean"]))
    lines = [
        "circuitlang 1" + comment(),
        'circuit gen on "gpt2"',
        "prompts {" + sep + sep.join(body) + sep + "}",
        f"metric {metric}",
        f"ablate {ablate}",
        *roles,
        "mlp 3..4, 7 at end",
        *edges,
        *expects,
        f"set seed = {draw(st.integers(0, 5))}",
    ]
    return "\n".join(lines) + "\n"


def _ir(text: str) -> str:
    return lower_text(text).canonical_json(spans=False)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_fmt_output_reparses_to_the_same_ir(text):
    formatted = format_spec(parse(text, "gen.circ"))
    assert _ir(formatted) == _ir(text)
    assert format_spec(parse(formatted, "gen.circ")) == formatted  # idempotent


def test_shipped_specs_round_trip_and_are_canonical():
    for path in sorted(SPECS.glob("*.circ")):
        text = path.read_text()
        formatted = format_spec(parse(text, str(path)))
        assert formatted == text, f"{path.name} is not in canonical form"
        assert load_spec(path).canonical_json() is not None


def test_comments_survive_formatting():
    text = (
        '# top\ncircuitlang 1\ncircuit c on "gpt2"  # model\nprompts {\n  # inside\n  template "{a}"\n'
        "  a = 1; answer = 2  # trailing\n  wrong = 3\n  # before close\n}\nmetric kl\nablate zero\n# at end\n"
    )
    formatted = format_spec(parse(text))
    for comment in ("# top", "# model", "# inside", "# trailing", "# before close", "# at end"):
        assert comment in formatted
    assert "answer = 2  # trailing" in formatted
