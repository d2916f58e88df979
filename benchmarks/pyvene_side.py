"""The pyvene half of `pyvene_agreement.py`: interchange interventions run by pyvene on the model
loaded by Hugging Face `transformers`, in a separate virtual environment (pyvene's own pins).

It imports nothing from circuitlang. It reads a JSON file written by `pyvene_agreement.py`:

    {"weights": "<folder with config.json + model.safetensors>",
     "clean": [[token ids], ...],                  # prompts to run without intervention
     "pairs": [{"base": [ids], "source": [ids],
                "sites": [{"kind": "mlp" | "head", "layer": L, "head": H or null,
                           "base_positions": [..], "source_positions": [..]}, ...]}, ...]}

and writes a JSON file with the logits at the last token of each clean prompt and of each
intervened base (the whole vocabulary), and the versions of pyvene, transformers and torch.

Each site is one pyvene representation: an MLP's output (`mlp_output`, unit `pos`) or one head's
output before the output projection (`head_attention_value_output`, unit `h.pos`, the input of
`attn.c_proj` split into heads), all in one group so that a single source prompt feeds them all,
with `VanillaIntervention` (the base's activation at the base positions replaced by the source's
at the source positions). Pairs run one at a time (batch size 1, no padding; the attention mask
is all ones). Run as:

    /work/pyvene-env/bin/python benchmarks/pyvene_side.py IN.json OUT.json
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version

import pyvene as pv
import torch
from transformers import GPT2LMHeadModel

COMPONENT = {"mlp": ("mlp_output", "pos"), "head": ("head_attention_value_output", "h.pos")}


def inputs(ids: list[int]) -> dict[str, torch.Tensor]:
    """A batch of one prompt, every token attended (the BOS id is also GPT-2's padding id: say so)."""
    return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}


def locations(site: dict, which: str) -> list:
    """pyvene's unit locations for one representation and a batch of one: `[[positions]]` for
    unit `pos`, and `[[[heads]], [[positions]]]` (heads x positions of example 0) for `h.pos`."""
    positions = [site[f"{which}_positions"]]
    return positions if site["kind"] == "mlp" else [[[site["head"]]], positions]


@torch.no_grad()
def intervened(model: GPT2LMHeadModel, pair: dict) -> list[float]:
    sites = pair["sites"]
    base = inputs(pair["base"])
    if not sites:
        return model(**base).logits[0, -1].tolist()
    representations = [
        pv.RepresentationConfig(
            layer=site["layer"],
            component=COMPONENT[site["kind"]][0],
            unit=COMPONENT[site["kind"]][1],
            max_number_of_units=len(site["base_positions"]),
            group_key=0,
        )
        for site in sites
    ]
    config = pv.IntervenableConfig(representations=representations, intervention_types=pv.VanillaIntervention)
    intervenable = pv.IntervenableModel(config, model)
    intervenable.disable_model_gradients()
    unit_locations = {"sources->base": ([locations(s, "source") for s in sites], [locations(s, "base") for s in sites])}
    _, counterfactual = intervenable(base, [inputs(pair["source"])], unit_locations=unit_locations)
    return counterfactual.logits[0, -1].tolist()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    spec = json.loads(open(argv[1]).read())
    torch.set_grad_enabled(False)
    model = GPT2LMHeadModel.from_pretrained(spec["weights"], attn_implementation="eager", dtype=torch.float32).eval()
    clean = [model(**inputs(ids)).logits[0, -1].tolist() for ids in spec["clean"]]
    pairs = [intervened(model, pair) for pair in spec["pairs"]]
    versions = {name: version(name) for name in ("pyvene", "transformers", "torch")}
    with open(argv[2], "w") as out:
        json.dump({"clean": clean, "pairs": pairs, "versions": versions}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
