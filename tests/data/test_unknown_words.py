"""A word the tokenizer does not know is an error at the place the spec wrote it.

The organism's tokenizer (WordLevel), WordPiece and SentencePiece (Unigram) tokenizers turn such a
word into their unknown token; a prompt would then be run, and an answer scored, on that token, with
numbers that look plausible. `check` (tokenizer at hand) and `verify` (always) refuse it, exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from circuitlang.cli import main
from circuitlang.data.datasets import expand_all
from circuitlang.data.tokenization import tokenize_dataset
from circuitlang.data.unknown_words import unknown_token_id
from circuitlang.ir.lower import load_spec
from tests.conftest import ROOT, SPECS

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]


def months_spec(tmp_path: Path, months: list[str], name: str = "typo.circ") -> Path:
    """organism_months.circ with its months read from a declared list."""
    text = (SPECS / "organism_months.circ").read_text()
    text = text.replace("months[", "my_months[").replace("random months", "random my_months")
    declared = "list my_months cyclic = [" + ", ".join(json.dumps(m) for m in months) + "]\n\n"
    path = tmp_path / name
    path.write_text(text.replace("prompts months {", declared + "prompts months {"))
    return path


def run_json(command: str, path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main([command, "--format", "json", str(path)])
    return code, json.loads(capsys.readouterr().out)


def errors_of(command: str, report: dict) -> list[dict]:
    return report["files"][0]["errors"] if command == "check" else report["errors"]


@pytest.mark.parametrize("command", ["check", "verify"])
def test_misspelt_list_item_is_refused_at_the_item(tmp_path, capsys, command):
    path = months_spec(tmp_path, [m.replace("February", "Febuary") for m in MONTHS])
    code, report = run_json(command, path, capsys)
    assert code == 2
    (error,) = errors_of(command, report)
    line = path.read_text().splitlines().index(next(li for li in path.read_text().splitlines() if "Febuary" in li))
    assert (error["line"], error["column"]) == (line + 1, path.read_text().splitlines()[line].index('"Febuary"') + 1)
    assert error["end_column"] - error["column"] == len('"Febuary"')
    assert "does not know 'Febuary'" in error["message"] and "'<|unk|>'" in error["message"]
    assert "prompt #0 of months (i=0)" in error["message"]
    # every other prompt whose text holds the word, or whose answers do (the clean ones: they are
    # what the metric scores), is counted once
    spec = load_spec(path)
    (dataset,) = expand_all(spec)
    affected = [p for p in dataset.clean if "Febuary" in p.text or "Febuary" in dict(p.fields).values()]
    affected += [p for p in dataset.corrupt if "Febuary" in p.text]
    assert f"; {len(affected) - 1} more prompts of this template" in error["message"]


def test_the_correct_list_verifies_the_shipped_number(tmp_path, capsys):
    """The same spec without the typo is not refused: the check reads the tokenizer, not the spec."""
    path = months_spec(tmp_path, MONTHS, name="fine.circ")
    assert main(["check", str(path)]) == 0


def test_unknown_word_in_the_template_text_is_at_the_template(tmp_path, capsys):
    path = tmp_path / "template.circ"
    text = (SPECS / "organism_months.circ").read_text()
    path.write_text(text.replace('template "{s1} {s2} {s3} {s4}"', 'template "{s1} {s2} then {s3} {s4}"'))
    code, report = run_json("check", path, capsys)
    (error,) = errors_of("check", report)
    assert code == 2 and "does not know 'then' (in the template's own text" in error["message"]
    assert path.read_text().splitlines()[error["line"] - 1].strip().startswith("template")
    assert "23 more prompts" in error["message"]  # the 12 clean prompts and their 12 corrupt ones


def test_unknown_answer_and_corrupt_word_are_at_their_literals(tmp_path, capsys):
    path = tmp_path / "answer.circ"
    text = (SPECS / "organism_months.circ").read_text()
    text = text.replace("  wrong = months[i + 3]", '  wrong = "Decembre"')
    text = text.replace("    s1, s2, s3, s4 = random months", '    s1, s2, s3 = random months\n    s4 = "Aprill"')
    path.write_text(text)
    code, report = run_json("verify", path, capsys)
    assert code == 2
    lines = path.read_text().splitlines()
    found = {error["message"].split("does not know ")[1].split(" ")[0]: error for error in errors_of("verify", report)}
    for word in ("'Aprill'", "the"):  # the corrupt prompt's word, and the answer (" Decembre")
        assert word in found, found.keys()
    corrupt, answer = found["'Aprill'"], found["the"]
    assert lines[corrupt["line"] - 1][corrupt["column"] - 1 :].startswith('"Aprill"')
    assert corrupt["message"].startswith("corrupt prompt #0 of months")
    assert lines[answer["line"] - 1][answer["column"] - 1 :].startswith('"Decembre"')
    assert "the answer ' Decembre' (wrong)" in answer["message"]


def test_unknown_word_from_a_data_file_names_the_prompt(tmp_path, capsys):
    rows = ["s1,s2,s3,s4,answer,wrong", "January,February,March,April,May,April", "March,Aprile,May,June,July,June"]
    (tmp_path / "rows.csv").write_text("\n".join(rows) + "\n")
    path = tmp_path / "file.circ"
    text = (SPECS / "organism_months.circ").read_text()
    start, end = text.index("  for i in 0..11"), text.index("  corrupt random")
    path.write_text(text[:start] + '  from "rows.csv"\n' + text[end:])
    code, report = run_json("check", path, capsys)
    (error,) = errors_of("check", report)
    assert code == 2 and "prompt #1 of months" in error["message"] and "does not know 'Aprile'" in error["message"]
    assert 'from "rows.csv"' in path.read_text().splitlines()[error["line"] - 1]


# ---- other tokenizers: WordPiece and SentencePiece, built here ----------------------------------


def wordpiece(words: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


def sentencepiece(words: list[str]):
    """A Unigram (SentencePiece) tokenizer that knows each word, with and without its "▁" prefix,
    and no single letters: an unknown word cannot be spelt out, it becomes `<unk>`."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    pieces = [("<unk>", 0.0)] + [(p, -1.0) for w in words for p in ("▁" + w, w)]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=0, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    return tokenizer


@pytest.mark.parametrize("build, unknown", [(wordpiece, "[UNK]"), (sentencepiece, "<unk>")])
def test_other_tokenizers_report_the_unknown_word_at_its_list_item(tmp_path, build, unknown):
    path = months_spec(tmp_path, MONTHS)
    spec = load_spec(path)
    (dataset,) = expand_all(spec)
    tokenizer = build([m for m in MONTHS if m != "July"])
    assert tokenizer.id_to_token(unknown_token_id(tokenizer)) == unknown
    prompt_set = spec.prompt_set(dataset.name)
    templates, errors = tokenize_dataset(dataset, prompt_set, spec.lists, ("answer", "wrong"), tokenizer, None)
    assert not templates and errors
    july = next(e for e in errors if "'July'" in e.message)
    assert f"unknown token {unknown!r}" in july.message
    item = path.read_text().splitlines()[july.span.line - 1][july.span.column - 1 :]
    assert item.startswith('"July"')


@pytest.mark.parametrize("build", [wordpiece, sentencepiece])
def test_other_tokenizers_that_know_every_word_bind_cleanly(tmp_path, build):
    spec = load_spec(months_spec(tmp_path, MONTHS))
    (dataset,) = expand_all(spec)
    prompt_set = spec.prompt_set(dataset.name)
    templates, errors = tokenize_dataset(dataset, prompt_set, spec.lists, ("answer", "wrong"), build(MONTHS), None)
    assert not errors and len(templates) == 1


def test_byte_level_bpe_has_no_unknown_token():
    from circuitlang.organisms.gpt2_standin import gpt2_tokenizer

    tokenizer = gpt2_tokenizer(ROOT / "tests" / "data" / "gpt2-tokenizer").backend_tokenizer
    assert unknown_token_id(tokenizer) is None


def test_unknown_word_from_a_generator_is_at_the_generator(tmp_path):
    """The organism's own tokenizer without one of the IOI generator's words."""
    from tokenizers import Tokenizer

    organism = ROOT / "circuitlang" / "organisms" / "seqcont" / "weights" / "tokenizer.json"
    serialized = json.loads(organism.read_text())
    spec = load_spec(SPECS / "organism_ioi.circ")
    (dataset,) = expand_all(spec)
    word = dataset.clean[0].text.split()[0]
    del serialized["model"]["vocab"]["Ġ" + word], serialized["model"]["vocab"][word]
    tokenizer = Tokenizer.from_str(json.dumps(serialized))
    prompt_set = spec.prompt_set(dataset.name)
    _, errors = tokenize_dataset(dataset, prompt_set, spec.lists, ("answer", "wrong"), tokenizer, None)
    unknown = [e for e in errors if f"does not know {word!r}" in e.message]
    assert unknown and all(e.span == prompt_set.generator.span for e in unknown)
