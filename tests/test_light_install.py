"""The light install: `pip install circuitlang` (no extras) runs check, fmt and plan.

Each command runs in a fresh interpreter in which the engine's and the pictures' packages cannot
be imported, as in an environment that never installed them (CI also runs the real light install:
see .ci/run). `check` still tokenizes prompts there, with the `tokenizers` package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import GPT2_TOKENIZER_FILES, ROOT, SPECS

ABSENT = ("numpy", "torch", "transformers", "transformer_lens", "safetensors", "matplotlib", "pygraphviz")
WITHOUT_EXTRAS = f"""
import sys
from importlib.abc import MetaPathFinder

class Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {ABSENT!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, Absent())
from circuitlang.cli import main
code = main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in {ABSENT!r})
assert not leaked, leaked
sys.exit(code)
"""


def circuitlang_without_extras(*args: str | Path, cwd: Path = ROOT, hf_home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = os.environ | ({"HF_HOME": str(hf_home)} if hf_home else {})
    return subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


SHIPPED = sorted(SPECS.glob("*.circ"))


@pytest.mark.slow
def test_check_fmt_and_plan_run_without_the_extras():
    checked = circuitlang_without_extras("check", *SHIPPED)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    formatted = circuitlang_without_extras("fmt", "--check", *SHIPPED)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    for spec in SHIPPED:
        planned = circuitlang_without_extras("plan", spec)
        assert planned.returncode == 0 and "total:" in planned.stdout, planned.stderr


@pytest.mark.slow
def test_the_engines_commands_say_which_extra_they_need(tmp_path):
    result = circuitlang_without_extras("verify", SPECS / "organism_incr_digits.circ")
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert "pip install 'circuitlang[engine]'" in result.stderr


@pytest.fixture(scope="module")
def gpt2_tokenizer_folder(tmp_path_factory) -> Path:
    """A folder with GPT-2's config and tokenizer.json but no weights, written with `tokenizers` alone,
    in a project folder where the tests write their specs (`on "./gpt2"`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    folder = tmp_path_factory.mktemp("light-project") / "gpt2"
    folder.mkdir()
    bpe = Tokenizer(models.BPE.from_file(str(GPT2_TOKENIZER_FILES / "encoder.json"), str(GPT2_TOKENIZER_FILES / "vocab.bpe")))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.save(str(folder / "tokenizer.json"))
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 12, "n_head": 12}))
    return folder


NUMBER_WORDS = """circuitlang 1
circuit words on "{model}"

prompts words {{
  template "{{s1}} {{s2}} {{s3}}"
  for i in {first}..{last}
  s1 = {s1}
  s2 = number_words[i + 1]
  s3 = number_words[i + 2]
  answer = number_words[i + 3]
  wrong = number_words[i + 2]
}}

metric logit_diff(answer, wrong)
ablate zero
role "mover": 9.1
"""


def test_check_catches_a_tokenization_mistake_without_torch(gpt2_tokenizer_folder):
    # "Eleven" is two GPT-2 tokens ("Ele", "ven") where "One" is one: the template's length varies.
    spec = gpt2_tokenizer_folder.parent / "capitalized.circ"
    spec.write_text(NUMBER_WORDS.format(model="./gpt2", first=1, last=12, s1="capitalize(number_words[i])"))
    result = circuitlang_without_extras("check", spec)
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        f"{spec}:5:12: data error: prompt #10 of words (i=11): 'Eleven twelve thirteen' is 4 tokens, but "
        "prompt #0 of words (i=1) ('One two three') of the same template is 3; 1 more prompt of this template "
        "has the same problem" in result.stdout.replace("have the same", "has the same")
    )
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
def test_check_places_an_answer_mistake_at_its_line(gpt2_tokenizer_folder):
    spec = gpt2_tokenizer_folder.parent / "year_answer.circ"
    spec.write_text(
        NUMBER_WORDS.format(model="./gpt2", first=1, last=3, s1="number_words[i]").replace("answer = number_words[i + 3]", 'answer = "1732"')
    )
    result = circuitlang_without_extras("check", spec, "--format", "json")
    assert result.returncode == 2
    [error] = json.loads(result.stdout)["files"][0]["errors"]
    assert (error["line"], error["column"]) == (10, 3) and "answer ' 1732' (answer) is 2 tokens [' 17', '32']" in error["message"]


@pytest.mark.slow
def test_check_without_a_tokenizer_says_so_and_no_tokenize_skips(gpt2_tokenizer_folder, tmp_path):
    spec = gpt2_tokenizer_folder.parent / "untokenized.circ"
    spec.write_text(NUMBER_WORDS.format(model="./gpt2", first=1, last=12, s1="capitalize(number_words[i])"))
    skipped = circuitlang_without_extras("check", "--no-tokenize", spec)
    assert skipped.returncode == 0 and "note:" not in skipped.stdout
    uncached = tmp_path / "hub.circ"
    uncached.write_text(spec.read_text().replace('"./gpt2"', '"gpt2"'))
    noted = circuitlang_without_extras("check", uncached, hf_home=tmp_path / "empty-hf-home")
    assert noted.returncode == 0
    assert "note:" in noted.stdout and "no tokenizer for 'gpt2' is available offline" in noted.stdout
