"""Engine invariants on a trained model: a tiny GPT-2 taught to continue number sequences."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from circuitlang.organisms.tiny import build_random_gpt2
from tests.engine.test_engine import reference_metric, variants_of

WORDS = [str(i) for i in range(1, 25)] + ["then", "and", "after"]


def train_counting(folder: Path, steps: int = 150) -> None:
    """Train on "i i+1 i+2 i+3" -> "i+4" (token level), enough for a clear logit difference."""
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    model = GPT2LMHeadModel.from_pretrained(folder)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    texts = [" ".join(str(i + k) for k in range(5)) for i in range(1, 19)]
    batch = torch.tensor([[tokenizer.bos_token_id] + tokenizer(t)["input_ids"] for t in texts])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for _ in range(steps):
        loss = model(batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(folder)


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trained")
    build_random_gpt2(root / "tiny", WORDS, n_layers=3, n_heads=4, d_model=32, seed=1)
    train_counting(root / "tiny")
    return root


@pytest.mark.slow
def test_invariants_on_a_trained_model(trained_dir):
    from tests.engine.test_engine import open_spec

    run = open_spec(trained_dir, name="trained.circ")
    model, empty = run.metric([run.full_model()]), run.metric([run.empty()])
    assert float(model.mean()) > 2.0  # it learned the task: the next number beats the repeat
    # Full model as a circuit = the clean model's metric, to 1e-5.
    template = run.bound["digits"].templates[0]
    logits = run.model.bridge(template.clean)[:, -1].double()
    answers = torch.tensor([a[0] for a in template.answers["answer"]])
    wrongs = torch.tensor([w[0] for w in template.answers["wrong"]])
    direct = logits.gather(1, answers[:, None])[:, 0] - logits.gather(1, wrongs[:, None])[:, 0]
    assert torch.allclose(model[0, list(template.prompt_indices)], direct, atol=1e-5)
    # Every variant, including the empty circuit, equals the slow reference.
    variants = variants_of(run)
    assert torch.allclose(run.metric(variants), reference_metric(run, variants, "mean", "corrupt"), atol=1e-5)
    assert float(empty.mean()) < float(model.mean())
    # Reruns are bit-identical.
    assert torch.equal(run.metric(variants), run.metric(variants))
