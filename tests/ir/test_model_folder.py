"""The files of a model folder are checked before anything reads them (ir/model_folder.py): place,
kind, size, and a tokenizer's count of entries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from circuitlang.cli import main
from circuitlang.errors import ModelError, Span
from circuitlang.ir import model_folder
from circuitlang.ir.model_folder import MAX_VOCABULARY_ENTRIES, check_model_folder, count_entries
from circuitlang.organisms.tiny import build_random_gpt2

WORDS = ["1", "2", "3", "Mary", "John", "gave", "to"]
SPAN = Span(path="s.circ", line=2, column=14, end_line=2, end_column=22)
BODY = 'prompts p { template "{a}"; a = 1; answer = 2; wrong = 1 }\nmetric logit_diff(answer, wrong)\nablate zero\n'


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    return build_random_gpt2(tmp_path_factory.mktemp("built") / "tiny", WORDS, n_layers=1, n_heads=2, d_model=8)


@pytest.fixture
def project(tmp_path, tiny_folder) -> Path:
    """A project folder holding a copy of the tiny model and a spec that names it."""
    folder = tmp_path / "project"
    (folder / "tiny").mkdir(parents=True)
    for file in tiny_folder.iterdir():
        (folder / "tiny" / file.name).write_bytes(file.read_bytes())
    (folder / "s.circ").write_text('circuitlang 1\ncircuit t on "./tiny"\n' + BODY)
    return folder


def check(project: Path, capsys) -> tuple[int, str]:
    code = main(["check", str(project / "s.circ")])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_the_folder_as_saved_passes(project, capsys):
    code, said = check(project, capsys)
    assert code == 0, said
    assert "tokenized" in said or "ok" in said.lower()


def test_a_tokenizer_with_more_entries_than_any_model_has_is_refused_before_it_is_built(project, capsys, monkeypatch):
    """A 36 MB tokenizer.json of 3 million merges made `check` take 1.6 GB; the entries are counted
    from the bytes, and the tokenizer is never built."""
    built = []
    monkeypatch.setattr("tokenizers.Tokenizer.from_str", lambda *args: built.append(args))
    merges = b'"a b",' * (MAX_VOCABULARY_ENTRIES + 1)
    (project / "tiny" / "tokenizer.json").write_bytes(b'{"model": {"type": "BPE", "vocab": {}, "merges": [' + merges + b'"a b"]}}')
    code, said = check(project, capsys)
    assert code == 3 and not built
    assert f"more than the {MAX_VOCABULARY_ENTRIES:,} a tokenizer may have" in said and "Traceback" not in said


def test_the_entry_count_bounds_the_strings_a_reference_parse_finds(tiny_folder):
    """The count from the bytes is at least the number of strings json finds (keys and values):
    an escaped quote only raises it."""
    data = (tiny_folder / "tokenizer.json").read_bytes()
    data = data.replace(b'"Mary"', b'"Ma\\"ry"', 1)  # a token with a quote in it

    def strings(value) -> int:
        if isinstance(value, str):
            return 1
        if isinstance(value, dict):
            return len(value) + sum(strings(v) for v in value.values())
        return sum(strings(v) for v in value) if isinstance(value, list) else 0

    parsed = strings(json.loads(data))
    assert parsed <= count_entries(data, "strings") <= parsed + data.count(b'\\"')
    assert count_entries(b"a b\nc d\n", "lines") >= 2


def test_a_tokenizer_linked_from_outside_the_project_is_refused(project, tmp_path, capsys):
    """Every file of a local model folder resolves inside the project root, as data files do: a
    link would let a spec from a pull request read any tokenizer.json-shaped file of the machine."""
    outside = tmp_path / "outside"
    outside.mkdir()
    os.replace(project / "tiny" / "tokenizer.json", outside / "tokenizer.json")
    (project / "tiny" / "tokenizer.json").symlink_to(outside / "tokenizer.json")
    code, said = check(project, capsys)
    assert code == 3 and "is a link to" in said and "outside" in said and "--root" in said
    assert main(["check", "--root", str(tmp_path), str(project / "s.circ")]) == 0  # a wider root admits it


def test_a_hub_snapshot_file_may_link_into_its_repo_but_not_out_of_it(tmp_path, tiny_folder):
    """A snapshot of the Hugging Face cache is links into the repository's blobs/; a link out of the
    repository folder is refused."""
    from circuitlang.data.tokenization import load_tokenizer_file
    from circuitlang.ir.models import ModelRef

    repo = tmp_path / "hub" / "models--org--tiny"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (repo / "blobs" / "1234").write_bytes((tiny_folder / "tokenizer.json").read_bytes())
    (snapshot / "tokenizer.json").symlink_to(repo / "blobs" / "1234")
    model = ModelRef(source="hub", name="org/tiny", hub_id="org/tiny", span=SPAN)
    assert load_tokenizer_file(snapshot / "tokenizer.json", model).get_vocab_size() > 0

    (tmp_path / "elsewhere.json").write_bytes((tiny_folder / "tokenizer.json").read_bytes())
    (snapshot / "tokenizer.json").unlink()
    (snapshot / "tokenizer.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(ModelError, match="outside"):
        load_tokenizer_file(snapshot / "tokenizer.json", model)


@pytest.mark.parametrize(
    ("name", "limit"),
    [
        ("tokenizer_config.json", model_folder.MAX_SMALL_FILE_BYTES),
        ("model.safetensors.index.json", model_folder.MAX_SMALL_FILE_BYTES),
        ("tokenizer.json", model_folder.MAX_VOCABULARY_BYTES),
        ("tokenizer.model", model_folder.MAX_VOCABULARY_BYTES),
        ("chat_template.jinja", model_folder.MAX_SMALL_FILE_BYTES),
    ],
)
def test_a_model_file_past_its_size_limit_is_refused_before_it_is_read(tmp_path, name, limit):
    """Sizes come from stat: a sparse file one byte over the limit is refused without a read."""
    folder = tmp_path / "m"
    folder.mkdir()
    with open(folder / name, "wb") as file:
        file.truncate(limit + 1)
    with pytest.raises(ModelError, match=f"more than the {limit:,} a model's {name} may have"):
        check_model_folder(folder, tmp_path, SPAN)
    if name != "tokenizer.json":  # (a tokenizer.json is read to count its entries: 128 MB)
        os.truncate(folder / name, limit)
        check_model_folder(folder, tmp_path, SPAN)  # at the limit: admitted


def test_weights_have_no_size_limit_here_and_other_files_are_not_read(tmp_path):
    """Weights are weighed against memory by the estimate; a README or remote code is never read
    by a load, so neither is checked."""
    folder = tmp_path / "m"
    folder.mkdir()
    with open(folder / "model.safetensors", "wb") as file:
        file.truncate(model_folder.MAX_VOCABULARY_BYTES * 4)
    os.mkfifo(folder / "README.md")
    os.mkfifo(folder / "modeling_evil.py")
    state = check_model_folder(folder, tmp_path, SPAN)
    assert set(state.files) == {"model.safetensors"}


def test_a_file_swapped_for_a_link_during_the_load_is_refused(tmp_path, tiny_folder, monkeypatch):
    """transformers reads by path after the check: a tokenizer.json replaced in between (here by a
    link out of the project) is refused, whatever the load made of it."""
    import circuitlang
    from circuitlang.engine import models

    folder = tmp_path / "tiny"
    folder.mkdir()
    for file in tiny_folder.iterdir():
        (folder / file.name).write_bytes(file.read_bytes())
    (tmp_path / "s.circ").write_text('circuitlang 1\ncircuit t on "./tiny"\n' + BODY)
    (tmp_path.parent / "planted.json").write_bytes((tiny_folder / "tokenizer.json").read_bytes())
    boot = models._boot

    def swap_then_boot(location, device, dtype, placement=None):
        (folder / "tokenizer.json").unlink()
        (folder / "tokenizer.json").symlink_to(tmp_path.parent / "planted.json")
        return boot(location, device, dtype, placement)

    monkeypatch.setattr(models, "_boot", swap_then_boot)
    with pytest.raises(ModelError, match="changed while it was loaded: tokenizer.json"):
        circuitlang.open_run(circuitlang.load(tmp_path / "s.circ"))


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("truncation", {"direction": "Right", "max_length": 1, "strategy": "LongestFirst", "stride": 5}),
        ("normalizer", {"type": "Replace", "pattern": {"String": ""}, "content": "x"}),
        (
            "padding",
            {"strategy": {"Fixed": 2**40}, "direction": "Right", "pad_to_multiple_of": None, "pad_id": 0, "pad_type_id": 0, "pad_token": "x"},
        ),
    ],
)
def test_tokenizer_settings_the_library_cannot_run_are_a_model_error(project, capsys, setting, value):
    """Found by fuzzing model folders: a truncation whose stride passes its length and a Replace of
    the empty string made the tokenizers library panic (a traceback); a fixed padding of 2^40
    made it allocate terabytes and abort. Prompts are tokenized whole, without truncation or
    padding, and a panic is a model error at the `on` clause."""
    path = project / "tiny" / "tokenizer.json"
    if setting == "normalizer":  # the panic needs a byte-level tokenizer and a text of several words
        from circuitlang.ir.shapes import organisms_root

        path.write_bytes((organisms_root() / "seqcont" / "weights" / "tokenizer.json").read_bytes())
        spec = project / "s.circ"
        spec.write_text(spec.read_text().replace('template "{a}"', 'template "one two {a}"'))
    tokenizer = json.loads(path.read_text())
    path.write_text(json.dumps(tokenizer | {setting: value}))
    code, said = check(project, capsys)
    assert "Traceback" not in said
    if setting == "normalizer":
        assert code == 3 and "the model's tokenizer failed on" in said and "s.circ:2:" in said
    else:
        assert code == 0, said  # truncation and padding are not used: prompts are tokenized whole
