"""Models beyond one device: `--device-map`, `--max-memory`, `--offload-dir` (engine.placement).

The shipped organism loaded with a host budget of 1 MB goes to disk whole (accelerate's hooks
bring each module's weights in for its forward and drop them after); every engine path must then
give the numbers of the plain load, bit for bit (measured: no difference at all), and the model's
identity (its weights hash) must not change with placement. The options are parsed and checked
before any model loads, with the accepted forms in the message.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest
import torch

import circuitlang
from circuitlang.api import edge_scores, path_patch
from circuitlang.cli import main
from circuitlang.compile import memory
from circuitlang.engine.variants import circuit_variant
from circuitlang.engine.placement import Placement, PlacementError, check_device, parse_max_memory, size_bytes
from circuitlang.ir import models as ir
from tests.conftest import SPECS

SPEC = SPECS / "organism_incr_digits.circ"
ALL_ON_DISK = "cpu=1MB"  # the organism's 3.4 MB of weights: nothing fits in host memory
PART_ON_DISK = "cpu=2MB"  # the embeddings and layer 0 in host memory, layers 1-3 and the final norm on disk


# ---- the options ---------------------------------------------------------------------------------


def test_max_memory_takes_device_size_entries_comma_separated():
    assert parse_max_memory("cpu=300MB") == {"cpu": "300MB"}
    assert parse_max_memory("0=75GiB, 1=75gib,cpu=1.5gb") == {"0": "75GiB", "1": "75GiB", "cpu": "1.5GB"}
    assert parse_max_memory("cuda:1=2GB,disk=1TB,mps=10") == {"1": "2GB", "disk": "1TB", "mps": "10"}
    assert [size_bytes(s) for s in ("300MB", "70GiB", "1.5GB", "1000", "2KiB")] == [300_000_000, 70 * 2**30, 1_500_000_000, 1000, 2048]


@pytest.mark.parametrize(
    "text, message",
    [
        ("cpu", "expected DEVICE=SIZE"),
        ("cpu=", "expected DEVICE=SIZE"),
        ("gpu0=1GB", "'gpu0' is not a device: write cpu, disk, mps or a GPU index"),
        ("cpu=lots", "'lots' for cpu is not a size"),
        ("cpu=3 parsecs", "'3 parsecs' for cpu is not a size"),
        ("cpu=1MB,cpu=2MB", "names device 'cpu' twice"),
        ("0=1GB,cuda:0=2GB", "names device '0' twice"),
    ],
)
def test_a_bad_max_memory_names_the_value_and_the_forms(text, message):
    with pytest.raises(PlacementError, match=message):
        parse_max_memory(text)


def test_a_placement_says_what_accelerate_gets():
    placement = Placement.of("balanced", {0: "70GiB", "cpu": 300_000_000}, Path("/tmp/offload"))
    assert placement == Placement("balanced", {"0": "70GiB", "cpu": "300000000"}, "/tmp/offload")
    assert placement.boot_kwargs() == {
        "device_map": "balanced",
        "max_memory": {0: 70 * 2**30, "cpu": 300_000_000},
        "offload_folder": "/tmp/offload",
    }
    assert placement.describe() == "device map balanced, max memory 0=70GiB,cpu=300000000, offload to /tmp/offload"
    assert placement.gpus() == [0]
    assert hash(placement) == hash(Placement("balanced", {"cpu": "300000000", "0": "70GiB"}, "/tmp/offload"))


def test_max_memory_or_offload_dir_alone_imply_device_map_auto():
    assert Placement.of() is None
    assert Placement.of(max_memory="cpu=1MB") == Placement("auto", {"cpu": "1MB"})
    assert Placement.of(offload_dir="/tmp/x") == Placement("auto", None, "/tmp/x")
    with pytest.raises(PlacementError, match="device map 'fast' is not one of auto, balanced, sequential"):
        Placement.of("fast")


def test_where_a_placed_run_computes_is_known_before_the_load():
    """The device of the result cache's keys: a run on the CPU and disk reuses a plain CPU run's arrays."""
    assert Placement("auto", {"cpu": "1MB"}).computed_on() == "cpu"
    assert Placement("auto", {"1": "75GiB", "2": "75GiB"}).computed_on() == "cuda:1"
    assert Placement("auto").computed_on() == ("cuda:0" if torch.cuda.is_available() else "cpu")


def test_a_device_map_does_not_go_with_a_device():
    check_device("cpu", Placement("auto"))
    check_device("cuda:1", None)
    with pytest.raises(PlacementError, match="--device cuda:1 and --device-map auto do not go together"):
        check_device("cuda:1", Placement("auto"))


def test_the_command_line_options_make_a_placement():
    from circuitlang.commands.common import placement_from_args
    from circuitlang.errors import UsageError

    args = argparse.Namespace(device="cpu", device_map=None, max_memory=[{"0": "1GB"}, {"cpu": "2MB"}], offload_dir=Path("d"))
    assert placement_from_args(args) == Placement("auto", {"0": "1GB", "cpu": "2MB"}, "d")
    assert placement_from_args(argparse.Namespace(device="cpu", device_map=None, max_memory=None, offload_dir=None)) is None
    with pytest.raises(UsageError, match="names device 'cpu' twice"):
        placement_from_args(argparse.Namespace(device="cpu", device_map=None, max_memory=[{"cpu": "1MB"}, {"cpu": "2MB"}], offload_dir=None))
    with pytest.raises(UsageError, match="do not go together"):
        placement_from_args(argparse.Namespace(device="cuda:1", device_map="auto", max_memory=None, offload_dir=None))


BAD_OPTIONS = [
    (["--device-map", "automatic"], "argument --device-map", "'automatic'"),
    (["--max-memory", "cpu:300MB"], "argument --max-memory", "expected DEVICE=SIZE"),
    (["--max-memory", "ram=1GB"], "argument --max-memory", "'ram' is not a device"),
    (["--max-memory", "cpu=300 MBs"], "argument --max-memory", "is not a size"),
    (["--offload-dir", str(SPEC)], "argument --offload-dir", "is not a folder"),
]
COMMANDS = [
    ["verify", str(SPEC)],
    ["compare", str(SPEC), str(SPEC)],
    ["patch", str(SPEC)],
    ["curve", str(SPEC)],
    ["discover", str(SPEC), "--method", "prune"],
    ["attention", str(SPEC), "--heads", "0.0", "-o", "out"],
    ["lens", str(SPEC), "-o", "out"],
]


@pytest.mark.parametrize("options, where, what", BAD_OPTIONS)
def test_a_bad_placement_option_is_a_usage_error_in_every_command(options, where, what, capsys):
    for command in COMMANDS:
        assert main([*command, *options]) == 2, command
        err = capsys.readouterr().err
        assert where in err and what in err and "Traceback" not in err, err


def test_a_gpu_this_machine_lacks_is_a_usage_error_at_the_option(capsys):
    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has that GPU")
    assert main(["lens", str(SPEC), "-o", "out", "--max-memory", "7=1GB"]) == 2
    err = capsys.readouterr().err
    assert "argument --max-memory" in err and "names GPU 7" in err and "Traceback" not in err


def test_a_device_named_twice_over_repeated_options_is_a_usage_error(tmp_path, capsys):
    assert main(["lens", str(SPEC), "-o", str(tmp_path / "out"), "--max-memory", "cpu=1MB", "--max-memory", "cpu=2MB"]) == 2
    err = capsys.readouterr().err
    assert "--max-memory names device 'cpu' twice (1MB and 2MB)" in err and "Traceback" not in err


def test_the_python_api_checks_the_placement_as_the_command_line_does():
    spec = circuitlang.load(SPEC)
    with pytest.raises(ValueError, match="do not go together"):
        circuitlang.open_run(spec, device="cuda:1", device_map="auto")
    with pytest.raises(ValueError, match="'lots' for cpu is not a size"):
        circuitlang.open_run(spec, max_memory={"cpu": "lots"})
    with pytest.raises(ValueError, match="a model= object keeps its own placement"):
        circuitlang.open_run(spec, model=object(), device_map="auto")


# ---- the memory estimate -------------------------------------------------------------------------


def test_weights_fill_the_gpus_then_host_memory_then_disk():
    gib = 2**30
    auto = Placement("auto")
    assert memory.placed_weights(10 * gib, auto, {}, 4 * gib) == memory.PlacedWeights(0, 4 * gib, 6 * gib)
    assert memory.placed_weights(10 * gib, auto, {0: 6 * gib, 1: 6 * gib}, 64 * gib) == memory.PlacedWeights(10 * gib, 0, 0)
    host_budget = Placement("auto", {"cpu": "1GiB"})
    assert memory.placed_weights(10 * gib, host_budget, {0: 6 * gib}, 64 * gib) == memory.PlacedWeights(6 * gib, gib, 3 * gib)
    gpu_only = Placement("auto", {"0": "2GiB"})  # a device left out of --max-memory holds nothing
    assert memory.placed_weights(10 * gib, gpu_only, {0: 80 * gib, 1: 80 * gib}, 64 * gib) == memory.PlacedWeights(2 * gib, 0, 8 * gib)


def test_the_refusal_counts_only_the_weights_left_in_host_memory(monkeypatch):
    mib = 2**20
    estimate = memory.MemoryEstimate(model=900 * mib, caches=20 * mib, largest_pass=10 * mib, prompts=0, runtime=50 * mib)
    monkeypatch.setattr(memory, "available_memory", lambda device: 300 * mib)
    monkeypatch.setattr(memory, "process_memory", lambda: 0)
    monkeypatch.setattr(memory, "_gpu_free_memory", lambda: {})
    assert "available on this machine" in memory.memory_refusal(estimate, "cpu")
    assert memory.memory_refusal(estimate, "cpu", Placement("auto", {"cpu": "100MiB"})) is None
    refusal = memory.memory_refusal(estimate, "cpu", Placement("auto", {"cpu": "500MiB"}))
    assert "weights placed: 500.0 MB in host memory, 400.0 MB on disk" in refusal and "--max-memory cpu=SIZE" in refusal
    # without a host budget accelerate fills the memory that is free, and the caches find no room
    assert "available on this machine" in memory.memory_refusal(estimate, "cpu", Placement("auto"))


def test_on_gpus_the_weights_and_activations_are_checked_against_their_free_memory(monkeypatch):
    mib = 2**20
    estimate = memory.MemoryEstimate(model=900 * mib, caches=200 * mib, largest_pass=100 * mib, prompts=0, runtime=50 * mib)
    monkeypatch.setattr(memory, "available_memory", lambda device: 100 * mib)
    monkeypatch.setattr(memory, "process_memory", lambda: 0)
    monkeypatch.setattr(memory, "_gpu_free_memory", lambda: {0: 700 * mib, 1: 700 * mib})
    assert memory.memory_refusal(estimate, "cpu", Placement("auto")) is None  # 1.2 GB on two GPUs with 1.4 GB free
    refusal = memory.memory_refusal(estimate, "cpu", Placement("auto", {"0": "600MiB", "1": "600MiB"}))
    assert refusal is None
    monkeypatch.setattr(memory, "_gpu_free_memory", lambda: {0: 500 * mib, 1: 500 * mib})
    refusal = memory.memory_refusal(estimate, "cpu", Placement("auto"))
    assert "on the GPUs" in refusal and "free on GPU(s) 0, 1" in refusal


# ---- the engine: every path gives the plain load's numbers ---------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    spec = circuitlang.load(SPEC)
    plain = circuitlang.open_run(spec, threads=1)
    offload = tmp_path_factory.mktemp("offload")
    on_disk = circuitlang.open_run(spec, threads=1, device_map="auto", max_memory=ALL_ON_DISK, offload_dir=offload)
    assert on_disk.model.bridge.original_model.hf_device_map == {"": "disk"}
    return plain, on_disk


def _json_without_timing(report) -> str:
    data = report.model_dump()
    data.pop("seconds")
    return json.dumps(data, sort_keys=True, default=str)


def test_the_model_is_offloaded_and_its_identity_does_not_change(runs):
    plain, on_disk = runs
    assert next(on_disk.model.bridge.original_model.parameters()).is_meta
    assert on_disk.model.identity == plain.model.identity
    assert on_disk.session.facts == plain.session.facts
    assert str(on_disk.model.device) == "cpu" == on_disk.model.bridge.cfg.device


def test_a_model_partly_on_disk_has_the_same_identity_and_numbers(runs):
    plain, _ = runs
    run = circuitlang.open_run(circuitlang.load(SPEC), threads=1, max_memory=PART_ON_DISK)
    placed = run.model.bridge.original_model.hf_device_map
    assert placed["transformer.h.0"] == "cpu" and placed["transformer.h.3"] == "disk"
    assert run.model.identity == plain.model.identity
    variants = [run.circuit(), run.full_model(), run.empty()]
    assert torch.equal(run.metric(variants), plain.metric([plain.circuit(), plain.full_model(), plain.empty()]))


def test_the_weights_hash_of_a_plain_load_is_as_it_always_was(runs):
    """The hash keys the result cache: a plain load's must not change (the rule for offloaded
    tensors only adds to the rule for tensors in memory)."""
    plain, _ = runs
    digest, first = hashlib.sha256(), {}
    for name, tensor in sorted(plain.model.bridge.original_model.state_dict().items()):
        digest.update(f"{len(name)}:{name}:{tuple(tensor.shape)}:{tensor.dtype}:".encode())
        view = (tensor.device, tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tensor.stride())
        if view in first:
            digest.update(f"same as {len(first[view])}:{first[view]}\n".encode())
            continue
        first[view] = name
        digest.update(b"bytes:")
        digest.update(tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy())
    assert plain.model.identity.weights_sha256 == digest.hexdigest()


def test_node_ablation_through_the_trunk_and_kept_heads_shortcuts(runs, monkeypatch):
    plain, on_disk = runs
    engine = on_disk.session.engine()
    assert engine._blocks_callable and engine.shortcuts.heads_by_hand  # the shortcuts are not bypassed
    taken: list[str] = []
    for_rows = engine.shortcuts.for_rows

    def spied(*args, **kwargs):
        shortcuts = for_rows(*args, **kwargs)
        taken.extend(type(given).__name__ for given in shortcuts.attention.values())
        return shortcuts

    monkeypatch.setattr(engine.shortcuts, "for_rows", spied)
    circuit = on_disk.spec.circuit
    nodes = [circuit_variant(circuit, use_edges=False), circuit_variant(circuit, frozenset({ir.HeadNode(layer=0, head=0)}), use_edges=False)]
    variants = [*nodes, on_disk.circuit(), on_disk.full_model(), on_disk.empty()]
    assert torch.equal(on_disk.metric(variants), plain.metric(variants))
    assert {"KeptHeads", "AblatedAttention"} <= set(taken)


def test_the_attention_weights_of_offloaded_layers_are_read_and_not_kept(runs):
    plain, on_disk = runs
    for name in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V"):
        for layer in range(4):
            assert torch.equal(getattr(on_disk.model.attention, name)[layer], getattr(plain.model.attention, name)[layer]), (name, layer)
    assert on_disk.model.attention.W_O._layers == {}  # read anew each time: offloading keeps them out of memory
    assert set(plain.model.attention.W_O._layers) == {0, 1, 2, 3}


def test_verify_gives_the_same_report(runs):
    """Node and edge ablation (the organism's circuit has edges), path patching (the audit),
    minimality, the node scores, the attention claims."""
    plain, on_disk = runs
    assert _json_without_timing(circuitlang.verify(on_disk)) == _json_without_timing(circuitlang.verify(plain))


def test_interchange_interventions_and_causal_scrubbing_give_the_same_report():
    spec = circuitlang.load(SPECS / "variables_digits.circ")  # a hypothesis: IIA, graded IIA, scrubbing
    on_disk = circuitlang.open_run(spec, threads=1, max_memory=ALL_ON_DISK)
    plain = circuitlang.open_run(spec, threads=1)
    assert _json_without_timing(circuitlang.verify(on_disk)) == _json_without_timing(circuitlang.verify(plain))


def test_path_patching_gives_the_same_numbers(runs):
    plain, on_disk = runs
    senders, receivers = ["0.0", "mlp 0"], ["logits", "mlp 2", "1.2"]
    assert torch.equal(path_patch(on_disk, senders, receivers), path_patch(plain, senders, receivers))


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_attribution_gradients_give_the_same_scores(runs, method):
    plain, on_disk = runs
    mine, theirs = (edge_scores(run, method, kind="numpy") for run in (on_disk, plain))
    assert (mine == theirs).all()


def test_the_lens_and_attention_give_the_same_numbers(runs):
    plain, on_disk = runs
    for table in ("lens", "direct"):
        mine, theirs = (circuitlang.lens(run).table(table, kind="records") for run in (on_disk, plain))
        assert mine == theirs
    mine, theirs = (circuitlang.attention(run, ["0.0", "3.1"]).table(kind="records") for run in (on_disk, plain))
    assert mine == theirs


def test_node_scores_give_the_same_numbers(runs):
    from circuitlang.engine import scores
    from circuitlang.engine.head_reads import attention_between

    plain, on_disk = runs
    head = ir.HeadNode(layer=0, head=0)
    for run_score in (
        lambda e: scores.direct_logit(e, head),
        lambda e: scores.direct_logit(e, ir.MlpNode(layer=1)),
        lambda e: scores.ov_scores(e, head, "copy", 5),
        lambda e: scores.ov_scores(e, head, "next", 5),
        lambda e: torch.stack(attention_between(e, ["s1", "s4", "end"])[1]),
    ):
        assert torch.equal(run_score(on_disk.session.engine()), run_score(plain.session.engine()))


def test_the_lens_command_writes_the_same_tables(runs, tmp_path):
    """The command line's options reach the engine (lens: the unembedding, the final norm, W_O)."""
    assert main(["lens", str(SPEC), "-o", str(tmp_path / "plain"), "--threads", "1", "--image", "svg"]) == 0
    placed = ["--device-map", "sequential", "--max-memory", ALL_ON_DISK, "--offload-dir", str(tmp_path / "offload")]
    assert main(["lens", str(SPEC), "-o", str(tmp_path / "disk"), "--threads", "1", "--image", "svg", *placed]) == 0
    tables = sorted(p.name for p in (tmp_path / "plain").glob("*.csv"))
    assert tables and tables == sorted(p.name for p in (tmp_path / "disk").glob("*.csv"))
    for name in tables:
        assert (tmp_path / "disk" / name).read_text() == (tmp_path / "plain" / name).read_text(), name


def test_the_verify_command_gives_the_same_report(tmp_path, monkeypatch):
    from circuitlang.engine import models

    booted = []
    boot = models._boot
    monkeypatch.setattr(models, "_boot", lambda *args: booted.append(args[-1]) or boot(*args))
    assert main(["verify", str(SPEC), "--no-cache", "--threads", "1", "--format", "json", "-o", str(tmp_path / "plain.json")]) == 0
    placed = ["--max-memory", ALL_ON_DISK, "--offload-dir", str(tmp_path / "offload")]
    assert main(["verify", str(SPEC), "--no-cache", "--threads", "1", "--format", "json", "-o", str(tmp_path / "disk.json"), *placed]) == 0
    assert booted == [None, Placement("auto", {"cpu": "1MB"}, str(tmp_path / "offload"))]
    mine, theirs = (json.loads((tmp_path / name).read_text()) for name in ("disk.json", "plain.json"))
    mine.pop("seconds"), theirs.pop("seconds")
    assert mine == theirs


@pytest.mark.slow
def test_gpt2_with_most_layers_on_disk_verifies_to_the_same_report(gpt2_hub):
    """GPT-2's shapes (the stand-in: 124M parameters, 500 MB in float32) with 300 MB of host
    memory for the weights: accelerate puts the later blocks on disk."""
    from tests.organisms.test_gpt2 import _few_prompts

    spec = _few_prompts(circuitlang.load(SPECS / "incr_digits.circ"))
    plain = circuitlang.verify(spec)
    run = circuitlang.open_run(spec, max_memory={"cpu": "300MB"})
    assert "disk" in run.model.bridge.original_model.hf_device_map.values()
    placed = circuitlang.verify(run)
    assert placed.model == plain.model  # the identity, with the weights hash
    assert _json_without_timing(placed) == _json_without_timing(plain)
