"""Named positions come from the template, never from searching the text for a token."""

from __future__ import annotations

import re

import pytest

from circuitlang.data.positions import expand_positions, slot_token_indices, token_positions
from circuitlang.data.prompts import render
from circuitlang.errors import DataError
from circuitlang.ir import models as ir
from tests.conftest import datasets_of

HEADER = 'circuitlang 1\ncircuit c on "gpt2"\nmetric logit_diff(answer, wrong)\nablate zero\n'


def gpt2_like_offsets(text: str) -> list[tuple[int, int]]:
    """A stand-in for GPT-2's pre-tokenizer: each word with its leading space is one token."""
    return [(m.start(), m.end()) for m in re.finditer(r" ?[^ ]+", text)]


def test_repeated_number_gets_the_position_of_its_own_slot(tmp_path):
    # "1 2 3 3": searching for "3" (tokens.index) finds position 2 for both s3 and s4. The
    # template says s4 is the fourth slot, so its position must be token 3.
    spec = HEADER + 'prompts { template "{s1} {s2} {s3} {s4}"; s1 = 1; s2 = 2; s3 = 3; s4 = 3\nanswer = 4; wrong = 3 }\n'
    (dataset,) = datasets_of(spec, tmp_path)
    prompt = dataset.clean[0]
    assert prompt.text == "1 2 3 3"
    tokens = [prompt.text[a:b] for a, b in gpt2_like_offsets(prompt.text)]
    assert tokens.index(" 3") == 2  # the seeds' bug: token search picks the first "3" for s4
    positions = slot_token_indices(prompt, gpt2_like_offsets(prompt.text))
    assert positions == {"bos": 0, "end": 3, "s1": 0, "s2": 1, "s3": 2, "s4": 3}


def test_repeated_name_in_ioi_style_prompt_keeps_s1_and_s2_apart():
    text, spans = render("When {s1} and {io} met, {s2} gave it to", {"s1": "Tom", "io": "Amy", "s2": "Tom"})
    from circuitlang.data.prompts import Prompt

    prompt = Prompt(0, "p", 0, text, spans, (), ())
    positions = slot_token_indices(prompt, gpt2_like_offsets(text))
    assert (positions["s1"], positions["io"], positions["s2"]) == (1, 3, 5)


def test_slot_merged_with_following_text_is_an_error_naming_the_prompt():
    from circuitlang.data.prompts import Prompt

    text, spans = render("{a}9 end", {"a": "1"})
    prompt = Prompt(0, "prompt #0 of demo", 0, text, spans, (), ())
    with pytest.raises(DataError, match=r"prompt #0 of demo: slot 'a' ends inside the token '19'"):
        slot_token_indices(prompt, gpt2_like_offsets(text))


def test_ranges_expand_in_template_order_and_offsets_are_checked():
    span = ir.Span(path="x", line=1, column=1, end_line=1, end_column=2)
    ref = lambda name, offset=0: ir.PositionRef(name=name, offset=offset, span=span)  # noqa: E731
    positions = (ir.PositionRange(start=ref("b"), stop=ref("d"), span=span), ref("end"), ref("a", 1))
    assert expand_positions(positions, "{a} {b} {c} {d}") == (("b", 0), ("c", 0), ("d", 0), ("end", 0), ("a", 1))
    from circuitlang.data.prompts import Prompt

    text, spans = render("{a} {b}", {"a": "x", "b": "y"})
    prompt = Prompt(0, "p", 0, text, spans, (), ())
    named = slot_token_indices(prompt, gpt2_like_offsets(text))
    assert token_positions((ref("a", 1),), prompt, "{a} {b}", named, 2) == (1,)
    with pytest.raises(DataError, match="falls outside the prompt"):
        token_positions((ref("b", 1),), prompt, "{a} {b}", named, 2)
