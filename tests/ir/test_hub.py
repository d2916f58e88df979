"""Hub models: aliases at check time, downloads with network, the cache offline, a fast failure without.

The download path runs against a small hub served from this process (`FakeHub`): it answers the
requests huggingface_hub and transformers make (`/api/models/...`, HEAD and GET of
`/{repo}/resolve/{revision}/{file}`) for one tiny GPT-2. Commands run in subprocesses because
huggingface_hub reads `HF_ENDPOINT`, `HF_HOME` and `HF_HUB_OFFLINE` when it is imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from circuitlang.errors import SpecError
from circuitlang.ir import hub
from circuitlang.ir.lower import load_spec
from circuitlang.ir.shapes import KNOWN_HUB_SHAPES

BODY = (
    'prompts p { template "{a} {b}"; for i in 1..4; a = i; b = i + 1; answer = i + 2; wrong = i + 1 }\n'
    'metric logit_diff(answer, wrong)\nablate zero\nrole "r": 0.0, 1.1\n'
)
WORDS = [str(i) for i in range(1, 12)]
REPO = "someorg/tiny-gpt2"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
COMMAND_TIMEOUT_S = 240  # a bound on each subprocess, far above what a run takes


# ---- names and aliases (no torch) -------------------------------------------------------------


def test_aliases_resolve_case_insensitively_as_transformer_lens_does():
    assert hub.official_hub_name("gpt2-small") == "gpt2"
    assert hub.official_hub_name("GPT2-Small") == "gpt2"
    assert hub.official_hub_name("pythia-70m") == "EleutherAI/pythia-70m"
    assert hub.official_hub_name("EleutherAI/pythia-70m") == "EleutherAI/pythia-70m"
    assert hub.official_hub_name("gtp2") is None


def test_nearest_names_suggest_the_intended_model():
    assert hub.nearest_hub_names("gtp2")[0] == "gpt2"
    assert "EleutherAI/pythia-70m" in hub.nearest_hub_names("EleutherAI/pythia-71m")
    assert hub.nearest_hub_names("zzzzzzzz") == []


def test_every_known_shape_is_keyed_by_a_name_the_loader_uses():
    for name in KNOWN_HUB_SHAPES:  # an official name, or a full repo id TransformerLens does not list
        assert hub.official_hub_name(name) == name or (hub.official_hub_name(name) is None and "/" in name)


def test_alias_checks_with_the_shape_of_its_official_model(write_spec):
    spec = load_spec(write_spec('circuitlang 1\ncircuit c on "gpt2-small"\n' + BODY))
    assert spec.model.name == "gpt2-small" and spec.model.hub_id == "gpt2"
    assert (spec.shape.n_layers, spec.shape.n_heads) == (12, 12)
    model = json.loads(spec.canonical_json())["model"]
    assert model == {"name": "gpt2-small", "path": None, "source": "hub"}  # the IR keeps the name as written


def test_unknown_bare_hub_name_is_a_check_error_with_a_did_you_mean(write_spec):
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec('circuitlang 1\ncircuit c on "gtp2"\n' + BODY))
    assert "'gtp2' is not a model name TransformerLens knows" in caught.value.message
    assert "'gpt2'" in caught.value.hint and caught.value.span.line == 2


def test_unknown_org_repo_is_allowed_at_check_time(write_spec):
    spec = load_spec(write_spec(f'circuitlang 1\ncircuit c on "{REPO}"\n' + BODY))
    assert spec.model.hub_id == REPO and spec.shape is None


def test_check_command_exits_2_on_a_misspelt_model(tmp_path):
    path = tmp_path / "typo.circ"
    path.write_text('circuitlang 1\ncircuit c on "gtp2"\n' + BODY)
    result = _circuitlang(["check", str(path)], _env(tmp_path, offline=True))
    assert result.returncode == 2, result.stderr
    assert "did you mean 'gpt2'" in result.stdout + result.stderr


def test_shipped_alias_table_equals_transformer_lens():
    pytest.importorskip("transformer_lens")
    shipped = json.loads((Path(hub.__file__).with_name(hub.TABLE_FILE)).read_text(encoding="utf-8"))
    assert shipped == hub.table_from_transformer_lens(), "regenerate with: python -m circuitlang.ir.hub"


# ---- loading ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE=1", "hub-unreachable"])
def test_uncached_hub_model_fails_within_five_seconds(tmp_path, offline):
    spec = _write(tmp_path, "gpt2")
    env = _env(tmp_path, offline=offline)
    if not offline:
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"  # a hub that refuses, as without network
    started = time.monotonic()
    result = _circuitlang(["verify", str(spec)], env)
    elapsed = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert "'gpt2' is not in the local Hugging Face cache" in result.stderr
    assert ("HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached") in result.stderr
    assert "run once with network" in result.stderr and 'on "./models/gpt2"' in result.stderr
    assert "hub.circ:2:" in result.stderr  # the span is the `on` line
    added = elapsed - _seconds_to_fail_before_the_hub(spec, env)
    assert added < 5, f"the hub took {added:.1f} s of {elapsed:.1f} s"


def test_a_hub_that_accepts_but_never_answers_is_given_up_on_in_time(monkeypatch):
    pytest.importorskip("torch")
    import socket

    from huggingface_hub import constants

    from circuitlang.engine.models import probe_hub

    with socket.socket() as silent:  # connections land in the backlog and are never answered
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the probe itself runs only when online
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        answer, detail = probe_hub("gpt2", timeout=1.0)
        elapsed = time.monotonic() - started
    assert answer == "unreachable" and "no answer within 1 s" in detail
    assert elapsed < 1.5


@pytest.mark.slow
def test_hub_model_downloads_then_loads_from_the_cache_offline(tmp_path, fake_hub: FakeHub):
    spec = _write(tmp_path, REPO)
    online = _env(tmp_path, offline=False)
    online["HF_ENDPOINT"] = fake_hub.url
    first = _circuitlang(["verify", str(spec), "--format", "json"], online)
    assert first.returncode in (0, 1), first.stderr
    snapshot = tmp_path / "hf_home" / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    assert (snapshot / "config.json").is_file() and (snapshot / "model.safetensors").is_file()
    weights = [path for method, path in fake_hub.requests if method == "GET" and path.endswith("/model.safetensors")]
    assert weights and all(path.startswith(f"/{REPO}/resolve/") for path in weights)
    report = json.loads(first.stdout)

    fake_hub.requests.clear()
    second = _circuitlang(["verify", str(spec), "--format", "json"], _env(tmp_path, offline=True))
    assert second.returncode == first.returncode, second.stderr
    assert fake_hub.requests == []  # offline: nothing asked of the hub
    assert json.loads(second.stdout)["model"] == report["model"]  # the same weights, from the cache


@pytest.mark.slow
def test_repo_the_hub_does_not_have_names_the_nearest_known_ones(tmp_path, fake_hub: FakeHub):
    spec = _write(tmp_path, "EleutherAI/pythia-71m")
    env = _env(tmp_path, offline=False)
    env["HF_ENDPOINT"] = fake_hub.url
    started = time.monotonic()
    result = _circuitlang(["verify", str(spec)], env)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr  # a name that names nothing: the spec's to fix
    assert "the Hugging Face hub has no model 'EleutherAI/pythia-71m'" in result.stderr
    assert "'EleutherAI/pythia-70m'" in result.stderr
    assert elapsed - _seconds_to_fail_before_the_hub(spec, env) < 5


def _seconds_to_fail_before_the_hub(spec: Path, env: dict[str, str]) -> float:
    """The same run failing just before the hub is asked (the loader refuses an unknown device
    first; the command line refuses it before reading the spec, so the run goes through the API):
    its time, measured now, is the start-up (imports, checks) that the hub's bound leaves out, so
    a busy machine does not read as a slow hub."""
    run = (
        "import sys; from circuitlang.cli import main; from circuitlang.commands import common; "
        "common.device_option = lambda text: text; "  # let the loader see the device, as the API does
        f"sys.exit(main(['verify', {str(spec)!r}, '--device', 'bogus']))"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", run], env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert result.returncode == 3 and "unknown device 'bogus'" in result.stderr, result.stderr
    return time.monotonic() - started


# ---- helpers ----------------------------------------------------------------------------------


def _write(folder: Path, model: str) -> Path:
    path = folder / "hub.circ"
    path.write_text(f'circuitlang 1\ncircuit t on "{model}"\n' + BODY)
    return path


def _env(tmp_path: Path, offline: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"}}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def _circuitlang(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "circuitlang", *args], env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:  # bound, then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeHub:
    """A Hugging Face hub on 127.0.0.1 serving one repo, answering as huggingface_hub expects."""

    def __init__(self, repo: str, folder: Path) -> None:
        self.repo = repo
        self.files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub_ = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                hub_._answer(self, body=True)

            def do_HEAD(self) -> None:
                hub_._answer(self, body=False)

            def log_message(self, *args: object) -> None:  # keep pytest's output clean
                pass

        return Handler

    def _answer(self, request: BaseHTTPRequestHandler, body: bool) -> None:
        path = request.path.split("?", 1)[0]
        self.requests.append((request.command, path))
        if path.startswith("/api/models/"):
            self._api(request, path[len("/api/models/") :], body)
        elif "/resolve/" in path:
            repo, rest = path.lstrip("/").split("/resolve/", 1)
            self._file(request, repo, rest.split("/", 1)[1] if "/" in rest else "", body)
        else:
            self._send(request, 404, b"", {"X-Error-Code": "RepoNotFound"}, body)

    def _api(self, request: BaseHTTPRequestHandler, rest: str, body: bool) -> None:
        repo = rest.split("/revision/", 1)[0].split("/tree/", 1)[0]
        if repo != self.repo:
            self._send(request, 404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"}, body)
        elif "/tree/" in rest:
            folder = rest.split("/tree/", 1)[1].partition("/")[2]  # after the revision; the repo has no folders
            if folder:
                self._send(request, 404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, body)
            else:
                self._json(
                    request, [{"type": "file", "path": name, "size": len(data), "oid": _sha1(data)} for name, data in self.files.items()], body
                )
        else:
            self._json(
                request,
                {
                    "id": repo,
                    "modelId": repo,
                    "sha": COMMIT,
                    "private": False,
                    "gated": False,
                    "disabled": False,
                    "tags": [],
                    "siblings": [{"rfilename": n} for n in self.files],
                },
                body,
            )

    def _file(self, request: BaseHTTPRequestHandler, repo: str, name: str, body: bool) -> None:
        if repo != self.repo:
            self._send(request, 404, b"", {"X-Error-Code": "RepoNotFound"}, body)
        elif name not in self.files:
            self._send(request, 404, b"", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, body)
        else:
            data = self.files[name]
            self._send(
                request, 200, data, {"X-Repo-Commit": COMMIT, "ETag": f'"{_sha1(data)}"', "Content-Type": "application/octet-stream"}, body
            )

    def _json(self, request: BaseHTTPRequestHandler, value: object, body: bool) -> None:
        self._send(request, 200, json.dumps(value).encode(), {"Content-Type": "application/json"}, body)

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
        request.send_response(status)
        for key, value in headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if body:
            request.wfile.write(data)


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@pytest.fixture(scope="module")
def fake_hub(tmp_path_factory) -> Iterator[FakeHub]:
    pytest.importorskip("transformer_lens")
    from circuitlang.organisms.tiny import build_random_gpt2

    folder = build_random_gpt2(tmp_path_factory.mktemp("hub") / "tiny", WORDS, n_layers=2, n_heads=2, d_model=16)
    server = FakeHub(REPO, folder)
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()
    server.thread.join(timeout=5)


class StallingHub(FakeHub):
    """Answers the API and the small files, then sends the weights' headers and stops sending."""

    def _file(self, request: BaseHTTPRequestHandler, repo: str, name: str, body: bool) -> None:
        if name.endswith(".safetensors") and body:
            data = self.files[name]
            request.send_response(200)
            for key, value in {"X-Repo-Commit": COMMIT, "ETag": f'"{_sha1(data)}"', "Content-Length": str(len(data))}.items():
                request.send_header(key, value)
            request.end_headers()
            request.wfile.write(data[:100])
            request.wfile.flush()
            time.sleep(120)  # the stall: the connection stays open, no more bytes come
            return
        super()._file(request, repo, name, body)


@pytest.mark.slow
def test_a_download_that_stalls_is_given_up_on_with_a_model_error(tmp_path, tmp_path_factory):
    """A hub that answers its API, then stalls the weights' transfer: `verify` stops after the
    stall bound (here 3 s) with exit 3 and says so, instead of waiting on the client's retries."""
    pytest.importorskip("transformer_lens")
    from circuitlang.organisms.tiny import build_random_gpt2

    folder = build_random_gpt2(tmp_path_factory.mktemp("stall") / "tiny", WORDS, n_layers=2, n_heads=2, d_model=16)
    hub_ = StallingHub(REPO, folder)
    hub_.thread.start()
    try:
        env = _env(tmp_path, offline=False)
        env.update(HF_ENDPOINT=hub_.url, CIRCUITLANG_DOWNLOAD_STALL_S="3", HF_HUB_DOWNLOAD_TIMEOUT="60")
        started = time.monotonic()
        result = _circuitlang(["verify", str(_write(tmp_path, REPO))], env)
        took = time.monotonic() - started
    finally:
        hub_.server.shutdown()
        hub_.server.server_close()
    assert result.returncode == 3, result.stderr
    assert "stalled: no data for 3 s" in result.stderr and "Traceback" not in result.stderr
    assert took < 60


def test_only_the_files_a_load_reads_are_fetched():
    """gpt2's repo holds its weights five ways (safetensors, PyTorch, TF, Flax, ONNX): one is fetched."""
    from circuitlang.engine.hub_download import files_to_fetch

    names = ["config.json", "merges.txt", "vocab.json", "tokenizer.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5"]
    names += ["flax_model.msgpack", "onnx/decoder_model.onnx", "64-8bits.tflite", "README.md", "generation_config.json"]
    assert files_to_fetch(names) == ["config.json", "generation_config.json", "merges.txt", "model.safetensors", "tokenizer.json", "vocab.json"]
    assert "pytorch_model.bin" in files_to_fetch(["config.json", "pytorch_model.bin", "tokenizer.json"])
