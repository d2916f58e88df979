"""The memory estimate (compile/memory.py) against real runs, and verify's refusal before loading."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from circuitlang import cli
from circuitlang.cli import main
from circuitlang.compile import memory
from circuitlang.compile.memory import estimate_memory, model_size, offline_token_count, spec_memory
from circuitlang.data.datasets import expand_all
from circuitlang.ir.lower import load_spec
from tests.conftest import ROOT, SPECS

ORGANISM = SPECS / "organism_incr_digits.circ"


def _light_spec(tmp_path: Path, repeats: int) -> Path:
    """The organism's digit circuit on 95 x `repeats` prompts, with few variants (no edges, no
    random subsets): the run's memory is the activation caches, not the schedule's length."""
    lines = [line for line in ORGANISM.read_text().splitlines() if not line.startswith(("edge ", "expect "))]
    text = "\n".join(lines).replace("  for i in 1..95", f"  for i in 1..95, k in 1..{repeats}")
    path = tmp_path / f"light_{repeats}.circ"
    path.write_text(text + "\nset completeness_samples = 0\nset greedy_steps = 0\nset minimality_samples = 0\nset bootstrap = 100\n")
    return path


def _estimate(path: Path, audit: bool | None = False) -> memory.MemoryEstimate:
    spec = load_spec(path)
    estimate = spec_memory(spec, expand_all(spec), audit)
    assert estimate is not None and estimate.tokens_exact
    return estimate


def test_the_parameter_count_is_the_organisms(tmp_path):
    from safetensors import safe_open

    spec = load_spec(ORGANISM)
    with safe_open(Path(spec.model.path) / "model.safetensors", "np") as weights:
        stored = sum(
            weights.get_slice(name).get_shape()[0] * (weights.get_slice(name).get_shape()[1:] or [1])[0]
            for name in weights.keys()
            if not name.endswith(".attn.bias")
        )  # a causal mask, not a weight
    size = model_size(spec.model, spec.shape)
    assert size is not None and size.parameters == stored


def test_the_loaded_models_shape_and_size_are_those_read_offline():
    """engine.session reads the loaded model's shape and size in one place (what verify, its batch
    size and its audit use); for the organism they are what `plan` reads from its config offline."""
    from dataclasses import replace

    from circuitlang.api import open_run
    from circuitlang.engine.session import loaded_size

    spec = load_spec(ORGANISM)
    session = open_run(spec).session
    assert spec.shape is not None and (session.shape.n_layers, session.shape.n_heads) == (spec.shape.n_layers, spec.shape.n_heads)
    offline = model_size(spec.model, spec.shape)
    assert offline is not None and loaded_size(session.facts) == replace(offline, tied=False)


def test_the_cache_estimate_is_the_engines_tensors_exactly():
    """The cached-activation term against the bytes of the tensors the engine holds."""
    from circuitlang.api import open_run

    spec = load_spec(ORGANISM)
    datasets = expand_all(spec)
    estimate = estimate_memory(spec, datasets, model_size(spec.model, spec.shape), offline_token_count(spec.model))
    engine = open_run(spec).session.engine()
    template = engine.bound.templates[0]
    held = 0
    for cache in (engine.clean_cache(template), engine.corrupt_cache(template)):
        tensors = [*cache.resid_pre, cache.final_residual, *(t for layers in cache.acts.values() for t in layers)]
        held += sum(t.nbytes for t in tensors)
    assert estimate.caches == held


def _peak_of_verify(path: Path) -> int:
    """Peak resident bytes of `circuitlang verify --no-audit` in its own process: VmHWM, the high
    water mark of the process's own memory (ru_maxrss would carry the forking parent's over exec)."""
    code = (
        "import re, sys; from pathlib import Path; from circuitlang.cli import main; "
        "code = main(['verify', '--no-audit', '--format', 'json', '-o', sys.argv[2], sys.argv[1]]); "
        "print(re.search(r'VmHWM:\\s+(\\d+) kB', Path('/proc/self/status').read_text()).group(1)); sys.exit(code)"
    )
    out = path.with_suffix(".json")
    result = subprocess.run([sys.executable, "-c", code, str(path), str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    assert json.loads(out.read_text())["prompt_sets"]
    return int(result.stdout.split()[-1]) * 1024


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from Linux's /proc")
def test_the_estimate_is_within_a_quarter_of_the_measured_peak(tmp_path):
    """Two real runs of the organism, 95 and 3,800 prompts: the estimated peak within 25% of the
    measured one, and the growth between them (the part that scales with the prompts, which is
    what a refusal is about) within 25%. Measured on a 2-core Linux VM: 504 and 827-836 MB against
    estimates of 565 and 843 MB (growth 323-332 against 278)."""
    small, large = _light_spec(tmp_path, 1), _light_spec(tmp_path, 40)
    measured = {path: _peak_of_verify(path) for path in (small, large)}
    estimated = {path: _estimate(path).total for path in (small, large)}
    for path in (small, large):
        assert abs(estimated[path] - measured[path]) <= 0.25 * measured[path], (estimated, measured)
    growth_measured = measured[large] - measured[small]
    growth_estimated = estimated[large] - estimated[small]
    assert abs(growth_estimated - growth_measured) <= 0.25 * growth_measured, (estimated, measured)


def test_the_estimate_grows_with_prompts_and_shrinks_with_count(tmp_path):
    large = _estimate(_light_spec(tmp_path, 40))
    path = _light_spec(tmp_path, 40)
    path.write_text(path.read_text().replace("  s1 = i\n", "  s1 = i\n  set count = 95\n", 1))
    counted = _estimate(path)
    assert counted.caches * 40 == pytest.approx(large.caches, rel=1e-9)


def test_a_hub_model_is_sized_from_the_known_table():
    spec = load_spec(SPECS / "incr_digits.circ")
    size = model_size(spec.model, spec.shape)
    assert size is not None and size.d_model == 768 and size.vocab == 50257
    assert 124_000_000 < size.parameters < 125_000_000  # GPT-2 small: 124M parameters, tied


def test_plan_prints_the_estimate(capsys):
    assert main(["plan", str(ORGANISM)]) == 0
    out = capsys.readouterr().out
    assert "memory: about " in out and "cached activations" in out


# ---- the refusal -------------------------------------------------------------------------------


def _no_model(*args, **kwargs):
    raise AssertionError("the model must not be loaded")


def test_verify_refuses_a_run_that_does_not_fit_before_loading_the_model(monkeypatch, capsys):
    monkeypatch.setattr(memory, "available_memory", lambda device: 100 * 2**20)
    monkeypatch.setattr(memory, "process_memory", lambda: 0)
    monkeypatch.setattr(cli, "_run_verification", _no_model)
    monkeypatch.delenv(memory.SKIP_CHECK_VARIABLE, raising=False)
    assert main(["verify", str(ORGANISM)]) == 3
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and out == ""
    assert lines[0].startswith("verify would need about ")
    assert "more than the 100.0 MB available on this machine" in lines[0]
    assert "`set count = N`" in lines[0] and "batch_size" in lines[0]


def test_the_refusal_can_be_overridden(monkeypatch, capsys):
    monkeypatch.setattr(memory, "available_memory", lambda device: 100 * 2**20)
    monkeypatch.setenv(memory.SKIP_CHECK_VARIABLE, "1")
    monkeypatch.setattr(cli, "_run_verification", lambda *args, **kwargs: (_ for _ in ()).throw(RuntimeError("ran")))
    with pytest.raises(RuntimeError, match="ran"):
        main(["verify", str(ORGANISM)])


def test_a_run_that_fits_is_not_refused():
    estimate = _estimate(ORGANISM)
    assert memory.memory_refusal(estimate, "cpu") is None  # under 600 MB: this machine has that


def test_cuda_compares_the_gpus_free_memory_with_the_part_on_the_gpu(monkeypatch):
    torch = pytest.importorskip("torch")
    estimate = _estimate(ORGANISM)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (estimate.on_device - 1, 80 * 2**30))
    assert memory.available_memory("cuda") == estimate.on_device - 1
    refusal = memory.memory_refusal(estimate, "cuda")
    assert refusal is not None and "free on cuda" in refusal
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (estimate.on_device, 80 * 2**30))
    assert memory.memory_refusal(estimate, "cuda") is None


def test_the_available_memory_is_read_from_proc_meminfo():
    available = memory.available_memory("cpu")
    if Path("/proc/meminfo").exists():
        assert available is not None and available > 0


def test_a_hypothesis_counts_a_batch_of_logits_over_the_vocabulary(tmp_path):
    """Interchange interventions read the top token over the whole vocabulary: the largest pass
    holds one batch's end-position logits more (no edges, no audit: the batch is the largest)."""

    def largest(path: Path) -> int:
        spec = load_spec(path)
        size = model_size(spec.model, spec.shape)
        assert size is not None
        return estimate_memory(spec, expand_all(spec), size, offline_token_count(spec.model), batch_size=8, audit=False).largest_pass

    path = _light_spec(tmp_path, 1)
    plain = largest(path)
    path.write_text(path.read_text() + "\nhypothesis {\n  answer = s4 + 1\n  mlp 0 at end carries s4\n}\n")
    vocab = model_size(load_spec(path).model, load_spec(path).shape).vocab  # type: ignore[union-attr]
    assert largest(path) - plain == 8 * vocab * memory.BYTES_PER_FLOAT


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_containers_memory_limit_is_read_under_cgroup_v1_and_v2(tmp_path, version):
    """A 250 MB limit of which 50 MB are used leaves 200 MB, whichever cgroup version says so."""
    folder = tmp_path / "memory" if version == "v1" else tmp_path
    folder.mkdir(exist_ok=True)
    limit, used = ("memory.limit_in_bytes", "memory.usage_in_bytes") if version == "v1" else ("memory.max", "memory.current")
    (folder / limit).write_text(f"{250 * 2**20}\n")
    (folder / used).write_text(f"{50 * 2**20}\n")
    assert memory._cgroup_room(tmp_path) == 200 * 2**20
    (folder / limit).write_text("9223372036854771712\n" if version == "v1" else "max\n")
    assert memory._cgroup_room(tmp_path) is None


def test_a_config_without_vocab_size_is_still_estimated_and_refused_when_it_cannot_fit(tmp_path, monkeypatch, capsys):
    """400 layers of width 1024 and no vocab_size: the blocks alone are 5 billion parameters. The
    estimate counts no vocabulary (a lower bound) rather than none at all, so verify refuses."""
    import json

    from circuitlang.cli import main

    folder = tmp_path / "deep"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 400, "n_head": 16, "n_embd": 1024}))
    spec = tmp_path / "deep.circ"
    spec.write_text(
        'circuitlang 1\ncircuit c on "./deep"\nprompts { template "{a} b"; a = 1; answer = 2; wrong = 3 }\n'
        "metric logit_diff(answer, wrong)\nablate zero\n"
    )
    estimate = spec_memory(load_spec(spec), expand_all(load_spec(spec)))
    assert estimate is not None and estimate.model >= 12 * 400 * 1024**2 * memory.BYTES_PER_FLOAT
    monkeypatch.setattr(memory, "available_memory", lambda device: 2 * 2**30)
    assert main(["verify", str(spec)]) == 3
    assert "GB" in capsys.readouterr().err
