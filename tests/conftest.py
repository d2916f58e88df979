"""Shared helpers for the test suite."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Before anything imports huggingface_hub (which reads these once): the tests never reach a hub,
# and never read or write the user's Hugging Face cache. The session's own cache starts empty and
# receives the GPT-2 stand-in when a test asks for it (`gpt2_hub`).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


def session_folder(variable: str, prefix: str) -> str:
    """The session's own folder, made once: this module is imported twice (by pytest, and as
    `tests.conftest` by test modules), and pytest-xdist's workers inherit the controller's
    environment. Each worker (`-n 2`) gets its own subfolder, so that workers never write the same
    files (the GPT-2 stand-in, cached results) at the same time."""
    folder = os.environ.get(variable)
    if folder is None:
        folder = tempfile.mkdtemp(prefix=prefix)
        os.environ[variable] = folder
        atexit.register(shutil.rmtree, folder, True)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        folder = os.path.join(folder, worker)
        os.makedirs(folder, exist_ok=True)
    return folder


TEST_HF_HOME = session_folder("CIRCUITLANG_TEST_HF_HOME", "circuitlang-test-hf-")
os.environ["HF_HOME"] = TEST_HF_HOME
# The same for verify's result cache: the session's own folder, never the user's ~/.cache.
TEST_CACHE_DIR = session_folder("CIRCUITLANG_TEST_CACHE_DIR", "circuitlang-test-cache-")
os.environ["CIRCUITLANG_CACHE_DIR"] = TEST_CACHE_DIR
os.environ.setdefault("CIRCUITLANG_CACHE_KEY", "circuitlang tests")  # the key file stays out of the home folder

from pathlib import Path

import pytest
import torch

from circuitlang.data.datasets import Dataset, expand_all
from circuitlang.dsl.parser import parse
from circuitlang.errors import CircuitlangError, flatten
from circuitlang.ir import models as ir
from circuitlang.ir.lower import load_spec, lower

ROOT = Path(__file__).resolve().parent.parent
GPT2_TOKENIZER_FILES = ROOT / "tests" / "data" / "gpt2-tokenizer"  # OpenAI's encoder.json and vocab.bpe

# The tests run many tiny tensor operations, where a second thread only adds synchronization (and,
# on a busy 2-core machine, long waits); speed is measured in benchmarks/, not here.
torch.set_num_threads(1)
SPECS = ROOT / "specs"


def fast_cases(values, keep, *, unpack: bool = False) -> list:
    """Cases for `pytest.mark.parametrize` of which only some run in the fast loop (`pytest -m "not
    slow"`): those `keep` names (a collection of values, or a predicate) stay unmarked, the others
    are marked slow; every case still runs in the full suite. With several argument names
    (`unpack`), a case is a tuple, and a collection in `keep` names its first value."""

    def kept(value) -> bool:
        if callable(keep):
            return keep(value)
        return (value[0] if unpack else value) in keep

    def slow(value):
        return pytest.param(*value, marks=pytest.mark.slow) if unpack else pytest.param(value, marks=pytest.mark.slow)

    return [value if kept(value) else slow(value) for value in values]


def lower_text(text: str, path: str = "test.circ") -> ir.Spec:
    return lower(parse(text, path))


def errors_of(path: Path) -> list[CircuitlangError]:
    """Every error `circuitlang check` would report for a file (parse, lower, expand)."""
    try:
        expand_all(load_spec(path))
    except CircuitlangError as error:
        return flatten([error])
    return []


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write spec text (and optional side files) into a temporary folder; return its path."""

    def write(text: str, name: str = "spec.circ", **files: str) -> Path:
        for file_name, content in files.items():
            (tmp_path / file_name.replace("__", ".")).write_text(content, encoding="utf-8")
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def datasets_of(text: str, tmp_path: Path) -> tuple[Dataset, ...]:
    path = tmp_path / "spec.circ"
    path.write_text(text, encoding="utf-8")
    return expand_all(load_spec(path))


@pytest.fixture(scope="session")
def gpt2_hub() -> Path:
    """GPT-2 small's shapes and real tokenizer with random weights, installed in the session's
    Hugging Face cache as the hub model `gpt2`: `on "gpt2"` loads it through the hub code path."""
    from circuitlang.organisms.gpt2_standin import install_in_hub_cache

    return install_in_hub_cache(Path(TEST_HF_HOME), GPT2_TOKENIZER_FILES)
