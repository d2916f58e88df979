"""The published datasets (`version = "wang2022"`, `"hanna2023"`) against GPT-2's real tokenizer.

The tables in circuitlang/data/generators.py are checked here by recomputing them with the rule
the reference code applies (Hanna et al.'s get_valid_years), and every word they use must be one
GPT-2 token where the templates put it; docs/published_circuits.md gives their sources.
"""

from __future__ import annotations

import pytest

from circuitlang.data import generators as g
from tests.conftest import GPT2_TOKENIZER_FILES, datasets_of


@pytest.fixture(scope="module")
def gpt2_tokens():
    from tokenizers import Tokenizer, models, pre_tokenizers

    bpe = Tokenizer(models.BPE.from_file(str(GPT2_TOKENIZER_FILES / "encoder.json"), str(GPT2_TOKENIZER_FILES / "vocab.bpe")))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return lambda text: [bpe.id_to_token(i).replace("Ġ", " ") for i in bpe.encode(text).ids]


def test_hanna_years_are_the_reference_rule_on_gpt2s_tokenizer(gpt2_tokens):
    expected = []
    for century in range(11, 18):
        split = [yy for yy in range(100) if gpt2_tokens(f" {century}{yy:02d}") == [f" {century}", f"{yy:02d}"]]
        expected += [(century, yy) for yy in split[1:-1]]  # without the first and last of the century
    assert g.HANNA_YEARS == tuple(expected) and len(expected) == 617
    assert all(gpt2_tokens(f" {c}01") == [f" {c}", "01"] for c in range(11, 18))  # the 01 corruption splits alike


def test_published_words_are_single_gpt2_tokens(gpt2_tokens):
    assert len(g.HANNA_NOUNS) == len(set(g.HANNA_NOUNS)) == 120
    assert len(g.WANG_NAMES) == len(set(g.WANG_NAMES)) == 99
    for word in (*g.HANNA_NOUNS, *g.WANG_NAMES, *g.IOI_PLACES, *g.IOI_OBJECTS):
        assert gpt2_tokens(" " + word) == [" " + word]
    assert all(len(gpt2_tokens(f"{yy:02d}")) == 1 for yy in range(100))  # the metric's year tokens


IOI = """circuitlang 1
circuit c on "gpt2"
prompts ioi {{
  generate ioi(n = {n}, order = "{order}", version = "wang2022")
  corrupt abc
}}
metric logit_diff(answer, wrong)
ablate mean of corrupt
role "r": 9.9 q end
"""


def test_wang2022_uses_the_reference_templates_and_names(tmp_path):
    [mixed] = datasets_of(IOI.format(n=2000, order="mixed"), tmp_path)
    assert set(mixed.templates) == set(g.WANG_BABA + g.IOI_VERSIONS["wang2022"].abba) and len(mixed.templates) == 14
    assert g.IOI_VERSIONS["wang2022"].abba[0] == "Then, {io} and {s1} went to the {place}. {s2} gave a {object} to"
    names = set(g.WANG_NAMES)
    for clean, corrupt in zip(mixed.clean, mixed.corrupt):
        values, corrupted = dict(clean.values), dict(corrupt.values)
        assert values["s1"] == values["s2"] != values["io"] and {values["io"], values["s1"]} <= names
        abc = (corrupted["io"], corrupted["s1"], corrupted["s2"])
        assert len(set(abc)) == 3 and set(abc) <= names and not set(abc) & {values["io"], values["s1"]}
    [baba] = datasets_of(IOI.format(n=200, order="baba"), tmp_path)
    assert set(baba.templates) == set(g.WANG_BABA)


def test_hanna2023_prompts_are_the_reference_prompts(tmp_path):
    text = IOI.format(n=0, order="mixed").replace(
        'generate ioi(n = 0, order = "mixed", version = "wang2022")', 'generate greater_than(n = 3000, version = "hanna2023")'
    )
    text = text.replace("corrupt abc", "corrupt 01").replace("logit_diff", "prob_diff").replace("9.9 q end", "9.1")
    [years] = datasets_of(text, tmp_path)
    assert years.templates == (" The {noun} lasted from the year {xx}{yy} to the year {xx2}",)
    seen = {(int(dict(p.values)["xx"]), int(dict(p.values)["yy"])) for p in years.clean}
    assert seen <= set(g.HANNA_YEARS) and len(seen) > 500
    assert {dict(p.values)["noun"] for p in years.clean} == set(g.HANNA_NOUNS)
    first = years.clean[0]
    yy = int(dict(first.values)["yy"])
    assert dict(first.fields)["answer"] == tuple(f"{y:02d}" for y in range(yy + 1, 100))
    assert all(dict(p.values)["yy"] == "01" for p in years.corrupt)
