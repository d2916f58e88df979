"""Agreement check: circuitlang's interchange interventions against pyvene's, to float error.

circuitlang (`circuitlang.engine.interchange.interchange`, the model loaded by TransformerLens 4's
TransformerBridge) and pyvene (Wu et al., an independent implementation; the model loaded by
Hugging Face `transformers`' GPT2LMHeadModel from the same weights folder) run the same
interchange interventions on the shipped organism (`specs/organism_incr_digits.circ`, a 4-layer
GPT-2): for fixed (base, source) pairs of the prompt set and several site sets (MLP outputs at
`end`; heads' outputs before W_O, hook_z / pyvene's `head_attention_value_output`, at `end`, at
`s3`, at both; heads and MLPs of different layers mixed), the base prompt runs with each site
set to the source prompt's activation. Both sides get exactly circuitlang's bound token ids (the
BOS the organism's config prepends included) and circuitlang's token positions of the named slots.

Checked per pair: the top next token at `end` is the same, and the logits at the chosen columns
(the base's answer, the source's answer, the base's wrong answer) agree within --atol (1e-4); the
whole vocabulary's logits must agree within it too. First, before any intervention, the clean
end-position logits of every prompt used must agree: the two loaders give the same model. Prints a
table of the largest |difference| per site set; exits 1 on any disagreement, 2 if the pyvene
environment is missing.

pyvene lives in a separate virtual environment (its own pins cannot disturb the project's); the
two sides exchange token ids, positions and sites, and logits, through JSON files, and the pyvene
side (`benchmarks/pyvene_side.py`) imports nothing from circuitlang. Set-up, once:

    python3 -m venv /work/pyvene-env
    /work/pyvene-env/bin/pip install torch==2.13.0     # the CPU build
    /work/pyvene-env/bin/pip install pyvene==0.1.8      # pulls transformers (5.25.0 here)

Run, with the project's environment:

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/pyvene_agreement.py
    ... --pyvene-python /path/to/env/bin/python         # or PYVENE_PYTHON=...; default below
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_PYVENE_PYTHON = "/work/pyvene-env/bin/python"
SPEC = ROOT / "specs" / "organism_incr_digits.circ"
WEIGHTS = ROOT / "circuitlang" / "organisms" / "seqcont" / "weights"
SIDE = Path(__file__).resolve().parent / "pyvene_side.py"
SETUP = """the pyvene environment is missing ({python}). Make it once:
    python3 -m venv /work/pyvene-env
    /work/pyvene-env/bin/pip install torch==2.13.0
    /work/pyvene-env/bin/pip install pyvene==0.1.8
or name another interpreter that has pyvene with --pyvene-python or PYVENE_PYTHON."""

# (base, source) dataset indices of the prompt set: fixed, different numbers on each side.
BASE = (0, 5, 17, 40, 94, 12, 63, 88, 31, 50)
SOURCE = (60, 2, 3, 41, 0, 77, 30, 9, 86, 20)

# Site sets: (kind, layer, head or None, named positions). "head" is the head's output before W_O.
SITE_SETS: dict[str, tuple[tuple[str, int, int | None, tuple[str, ...]], ...]] = {
    "mlp 1 at end": (("mlp", 1, None, ("end",)),),
    "mlps 0, 2, 3 at end": (("mlp", 0, None, ("end",)), ("mlp", 2, None, ("end",)), ("mlp", 3, None, ("end",))),
    "heads 0.0, 0.2, 0.4 at end": (("head", 0, 0, ("end",)), ("head", 0, 2, ("end",)), ("head", 0, 4, ("end",))),
    "heads 1.3, 2.5 at s3": (("head", 1, 3, ("s3",)), ("head", 2, 5, ("s3",))),
    "heads 0.0, 1.2 at s3 and end": (("head", 0, 0, ("s3", "end")), ("head", 1, 2, ("s3", "end"))),
    "mix: mlp 0 at s3, 1.1 at end, mlp 2 at end, 3.7 at s3+end": (
        ("mlp", 0, None, ("s3",)),
        ("head", 1, 1, ("end",)),
        ("mlp", 2, None, ("end",)),
        ("head", 3, 7, ("s3", "end")),
    ),
}


@dataclass(frozen=True)
class Row:
    name: str
    pairs: int
    top_agree: int
    max_at_columns: float
    max_over_vocab: float
    moved: int = 0  # pairs whose top token the intervention changed (circuitlang's run)
    effect: float = 0.0  # the largest |intervened - clean| logit at the columns: what the check resolves

    def ok(self, atol: float) -> bool:
        return self.top_agree == self.pairs and self.max_at_columns <= atol and self.max_over_vocab <= atol


def sites_ir(sites):
    from circuitlang.errors import Span
    from circuitlang.ir import models as ir

    span = Span(path="pyvene_agreement", line=1, column=1, end_line=1, end_column=2)
    out = []
    for kind, layer, head, positions in sites:
        node = ir.MlpNode(layer=layer) if kind == "mlp" else ir.HeadNode(layer=layer, head=head)
        out.append(ir.Site(node=node, positions=tuple(ir.PositionRef(name=p, span=span) for p in positions)))
    return tuple(out)


def patched(engine, sites, base, source, columns):
    """circuitlang's interchange, its result as float64 / long tensors (whatever array type the
    engine returns)."""
    import numpy as np
    import torch

    from circuitlang.engine.interchange import interchange

    result = interchange(engine, sites, list(base), list(source), columns)
    return torch.as_tensor(np.asarray(result.top)), torch.as_tensor(np.asarray(result.logits, dtype=np.float64))


def compare(run, pyvene_python: str, site_sets=SITE_SETS, base=BASE, source=SOURCE) -> tuple[Row, list[Row], dict]:
    """The clean check's row, one row per site set, and the pyvene side's versions."""
    import torch

    bound = run.session.bound[run.spec.prompt_sets[0].name]
    where = {p: (t, r) for t in bound.templates for r, p in enumerate(t.prompt_indices)}
    engine = run.session.engine()
    vocab = int(run.model.bridge.cfg.d_vocab)
    everything = torch.arange(vocab)

    def ids(prompt: int) -> list[int]:
        template, row = where[prompt]
        return [int(t) for t in template.clean[row]]

    def answer(prompt: int, field: str) -> int:
        template, row = where[prompt]
        return int(template.answers[field][row][0])

    for prompt in {*base, *source}:  # pyvene reads the last token: end must be it
        template, _ = where[prompt]
        assert template.positions["end"] == template.seq_len - 1, template.template

    columns = [[answer(b, "answer"), answer(s, "answer"), answer(b, "wrong")] for b, s in zip(base, source)]
    clean_prompts = sorted({*base, *source})
    pairs = []
    for sites in site_sets.values():
        for b, s in zip(base, source):
            (tb, _), (ts, _) = where[b], where[s]
            pairs.append(
                {
                    "base": ids(b),
                    "source": ids(s),
                    "sites": [
                        {
                            "kind": kind,
                            "layer": layer,
                            "head": head,
                            "base_positions": [tb.positions[p] for p in positions],
                            "source_positions": [ts.positions[p] for p in positions],
                        }
                        for kind, layer, head, positions in sites
                    ],
                }
            )
    with tempfile.TemporaryDirectory(prefix="pyvene-agreement-") as folder:
        request, answer_file = Path(folder) / "in.json", Path(folder) / "out.json"
        request.write_text(json.dumps({"weights": str(WEIGHTS), "clean": [ids(p) for p in clean_prompts], "pairs": pairs}))
        done = subprocess.run([pyvene_python, str(SIDE), str(request), str(answer_file)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the pyvene side failed ({done.returncode}):\n{done.stderr[-4000:]}")
        theirs = json.loads(answer_file.read_text())

    # The unintervened model first: the two loaders must give the same logits.
    n = len(clean_prompts)
    top, logits = patched(engine, [()] * n, clean_prompts, clean_prompts, everything.expand(n, vocab))
    them = torch.tensor(theirs["clean"], dtype=torch.float64)
    clean_diff = float((logits - them).abs().max())
    clean = Row("clean (no intervention)", n, int((top == them.argmax(-1)).sum()), clean_diff, clean_diff)

    # Each site set; beside the agreement, how far the intervention moved circuitlang's own logits
    # (an intervention that did nothing on one side would show as a difference of that size).
    rows = []
    k = len(base)
    chosen = torch.tensor(columns)
    clean_top, clean_logits = patched(engine, [()] * k, base, base, chosen)
    for i, (name, sites) in enumerate(site_sets.items()):
        top, logits = patched(engine, [sites_ir(sites)] * k, base, source, everything.expand(k, vocab))
        them = torch.tensor(theirs["pairs"][i * k : (i + 1) * k], dtype=torch.float64)
        at_columns = float((logits.gather(1, chosen) - them.gather(1, chosen)).abs().max())
        over_vocab = float((logits - them).abs().max())
        moved = int((top != clean_top).sum())
        effect = float((logits.gather(1, chosen) - clean_logits).abs().max())
        rows.append(Row(name, k, int((top == them.argmax(-1)).sum()), at_columns, over_vocab, moved, effect))
    return clean, rows, theirs["versions"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pyvene-python", default=os.environ.get("PYVENE_PYTHON", DEFAULT_PYVENE_PYTHON), help="the interpreter of the pyvene environment"
    )
    parser.add_argument("--atol", type=float, default=1e-4)
    args = parser.parse_args(argv)
    if not Path(args.pyvene_python).exists():
        print(SETUP.format(python=args.pyvene_python), file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from importlib.metadata import version

    import circuitlang as cl

    run = cl.open_run(cl.load(SPEC))
    clean, rows, versions = compare(run, args.pyvene_python)
    mine = {name: version(name) for name in ("transformer-lens", "transformers", "torch")}
    print(f"circuitlang side: TransformerLens {mine['transformer-lens']}, transformers {mine['transformers']}, torch {mine['torch']}")
    print(f"pyvene side:      pyvene {versions['pyvene']}, transformers {versions['transformers']}, torch {versions['torch']}")
    print(f"{len(BASE)} (base, source) pairs of {SPEC.name}; columns: base answer, source answer, base wrong; atol {args.atol:g}\n")
    header = f"{'site set':<58} {'top agrees':>10} {'max |d| at columns':>18} {'max |d| over vocab':>18} {'top moved':>9} {'effect':>7}"
    print(header)
    print("-" * len(header))
    for row in (clean, *rows):
        moved, effect = ("-", "-") if row is clean else (f"{row.moved}/{row.pairs}", f"{row.effect:.2f}")
        agree = f"{row.top_agree}/{row.pairs}"
        print(f"{row.name:<58} {agree:>10} {row.max_at_columns:>18.2e} {row.max_over_vocab:>18.2e} {moved:>9} {effect:>7}")
    print("\n|d|: circuitlang's logit minus pyvene's. top moved: pairs whose top token the intervention changed;")
    print("effect: the largest |intervened - unintervened| logit at the columns (circuitlang), the size of what is compared.")
    bad = [row.name for row in (clean, *rows) if not row.ok(args.atol)]
    if bad:
        print(f"\nDISAGREE: {', '.join(bad)}")
        return 1
    print(f"\nagree: every top token, every logit within {args.atol:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
