"""Random specs built statement by statement from the grammar.

Most are valid by construction (layers the model has, slots the template has, edges that run
forward) so that prompt expansion and the plan run on them; the rest are wild (huge or negative
numbers, unknown names, misplaced statements, statements out of order) so that the errors of
every stage are exercised too. The generator takes any `random.Random`, so hypothesis can drive
it (`st.randoms()`) and shrink what it finds.
"""

from __future__ import annotations

import random

from fuzz.vocabulary import BUILTIN_NAMES, HUGE_INTS

MODELS = (('"organism:seqcont"', 4, 8), ('"gpt2"', 12, 12), ('"gpt2-medium"', 24, 16), ('"someorg/unknown"', 12, 12))
SLOTS = ("s1", "s2", "s3", "s4", "a", "b")
METRIC_CALLS = ("logit_diff(answer, wrong)", "prob_diff(answer, wrong)", "logprob(answer)", "accuracy(answer)", "kl")
CORRUPTIONS = (
    "random {\n    SLOT = random 1..99\n  }",
    "repeat_last",
    "repeat_all",
    "swap(SLOT, SLOT)",
    "abc",
    "01",
    'file("data/sequences_corrupt.jsonl")',
    "random { SLOT = random months distinct }",
)
ABLATIONS = ("zero", "mean of corrupt", "mean of clean", "resample", "resample of corrupt", "mean")
CLAIMS = ("faithfulness", "completeness", "minimality", "normalized_faithfulness", "f_model", "edge_effect")
SPEC_SETTINGS = (
    "seed = 7",
    "bootstrap = 100",
    "confidence = 0.95",
    "top_k = 3",
    "batch_size = 16",
    "prepend_bos = true",
    "max_prompts = 200000",
    "max_range = 1000000",
    "max_text = 100000",
    "max_list = 1000000",
    "max_slots = 1000",
    "max_template = 1000000",
    "embed_edges = true",
)

WILD_SHARE = 0.3  # the rest are built to be valid, so that expansion and the plan run on them


def generate_spec(rng: random.Random) -> str:
    return _wild_spec(rng) if rng.random() < WILD_SHARE else _valid_spec(rng)


# ---- wild specs --------------------------------------------------------------------------------


def _wild_spec(rng: random.Random) -> str:
    """Header, circuit, one to three prompt sets, metric, ablation, circuit, claims: any of them
    possibly wrong."""
    model, layers, heads = rng.choice(MODELS)
    lines = ["circuitlang 1" if rng.random() < 0.97 else f"circuitlang {_int(rng)}", f"circuit c{rng.randrange(9)} on {model}"]
    lines += [_list_decl(rng) for _ in range(rng.choice((0, 0, 1, 2)))]
    names = [f"p{i}" for i in range(rng.choice((1, 1, 1, 2, 3)))]
    slots = rng.sample(SLOTS, rng.randint(1, 4))
    lines += [_prompts_block(rng, name, slots) for name in names]
    lines.append(f"metric {rng.choice(METRIC_CALLS)}")
    lines.append(f"ablate {rng.choice(ABLATIONS)}")
    nodes = _circuit(rng, lines, layers, heads, slots)
    lines += _edges(rng, nodes)
    lines += [_expect(rng, nodes, slots, names) for _ in range(rng.randint(0, 3))]
    lines += [f"set {rng.choice(SPEC_SETTINGS)}" for _ in range(rng.choice((0, 0, 1)))]
    if rng.random() < 0.2:
        rng.shuffle(lines)  # statements may come in any order after the header... mostly
    return "\n".join(lines) + "\n"


def _int(rng: random.Random, low: int = 0, high: int = 12) -> int:
    return rng.choice(HUGE_INTS) if rng.random() < 0.03 else rng.randint(low, high)


def _list_decl(rng: random.Random) -> str:
    items = [rng.choice(('"red"', '"x y"', str(rng.randint(-5, 99)), '""')) for _ in range(rng.randint(0, 6))]
    cyclic = " cyclic" if rng.random() < 0.3 else ""
    return f"list l{rng.randrange(3)}{cyclic} = [{', '.join(items)}]"


def _prompts_block(rng: random.Random, name: str, slots: list[str]) -> str:
    body = [f'template "{_template(rng, slots)}"' for _ in range(rng.choice((1, 1, 2)))]
    if rng.random() < 0.1:
        body = ['from "data/sequences.jsonl"'] + body
    loops = [f"{var} in {_range(rng)}" for var in ("i", "j")[: rng.choice((1, 1, 2))]]
    body.append("for " + ", ".join(loops))
    body += [f"{slot} = {_expr(rng, 3)}" for slot in slots]
    body += [f"answer = {_expr(rng, 2)}", f"wrong = {_expr(rng, 2)}"]
    if rng.random() < 0.8:
        body.append("corrupt " + rng.choice(CORRUPTIONS).replace("SLOT", rng.choice(slots)))
    if rng.random() < 0.2:
        body.append(f"metric {rng.choice(METRIC_CALLS)}")
    if rng.random() < 0.2:
        body.append(rng.choice(('set answer_prefix = " "', f"set count = {_int(rng, 0, 50)}")))
    if rng.random() < 0.05:
        body = ["generate ioi(n = 10)" if rng.random() < 0.5 else "generate greater_than(n = 10)"]
    separator = "; " if rng.random() < 0.1 else "\n  "
    return f"prompts {name} {{{separator}" + separator.join(body) + "\n}"


def _template(rng: random.Random, slots: list[str]) -> str:
    words = [f"{{{slot}}}" for slot in slots] + rng.sample(("the", "is", "{{", "}}", "and"), rng.randint(0, 2))
    rng.shuffle(words)
    return " ".join(words)


def _range(rng: random.Random) -> str:
    start = _int(rng, -3, 20)
    if rng.random() < 0.8:
        return f"{start}..{start + _int(rng, 0, 30)}"
    return rng.choice(("months", "number_words", "l0", "[1, 2, 3]", f"{start}..{_int(rng, 0, 5)}"))


def _expr(rng: random.Random, depth: int) -> str:
    if depth <= 0 or rng.random() < 0.5:
        return _atom(rng)
    operator = rng.choice(("+", "-", "*", "//", "%", "+", "+"))
    left, right = _expr(rng, depth - 1), _expr(rng, depth - 1)
    shape = rng.randrange(20)
    if shape == 0:
        return f"({left} {operator} {right})"
    if shape == 1:
        return f"{rng.choice(('months', 'number_words', 'letters', 'names', 'l0'))}[{left}]"
    if shape == 2:
        return f"{rng.choice(('pad', 'str', 'len', 'upper', 'lower', 'capitalize'))}({left})"
    if shape == 3:
        return f"pad({left}, {_int(rng, 0, 5)})"
    if shape == 4:
        return f"random {_range(rng)}" + (" distinct" if rng.random() < 0.2 else "")
    return f"{left} {operator} {right}"


def _atom(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.5:
        return "i"
    if roll < 0.85:
        return str(_int(rng, 0, 30))
    return rng.choice(("j", '"x"', "s1", rng.choice(BUILTIN_NAMES), "answer", "-i"))


def _circuit(rng: random.Random, lines: list[str], layers: int, heads: int, slots: list[str]) -> list[str]:
    nodes: list[str] = []
    for role in range(rng.randint(0, 3)):
        members = sorted({f"{_int(rng, 0, layers)}.{_int(rng, 0, heads - 1)}" for _ in range(rng.randint(1, 3))})
        clause = rng.choice(
            ("", " q end", f" q end k {slots[0]}", f" k {slots[0]}..{slots[-1]}", f" q {slots[0]} + 1", " at end", f" q {slots[-1]} - 2")
        )
        if rng.random() < 0.1:
            members = [f"{_int(rng, 0, layers)}.*"]
        lines.append(f'role "r{role}": {", ".join(members)}{clause}')
        nodes += members
    if rng.random() < 0.6:
        mlps = sorted({_int(rng, 0, layers) for _ in range(rng.randint(1, 3))})
        form = ", ".join(map(str, mlps)) if rng.random() < 0.8 else f"0..{_int(rng, 0, layers)}"
        lines.append(f"mlp {form}" + (" at end" if rng.random() < 0.2 else ""))
        nodes += [f"mlp {m}" for m in mlps]
    return nodes


def _edges(rng: random.Random, nodes: list[str]) -> list[str]:
    ends = nodes + ["embed", "logits"]
    edges = []
    for _ in range(rng.randint(0, 4)):
        sender, receiver = rng.choice(ends), rng.choice(ends)
        via = rng.choice(("", "", " via q", " via k, v", " via x"))
        edges.append(f"edge {sender} -> {receiver}{via}")
    return edges


def _expect(rng: random.Random, nodes: list[str], slots: list[str], names: list[str]) -> str:
    comparator = rng.choice((">=", "<=", ">", "<"))
    value = rng.choice(("0.8", "0", "-0.5", "1", "100"))
    on = f" on {rng.choice(names)}" if rng.random() < 0.2 else ""
    node = rng.choice(nodes) if nodes else "9.1"
    shape = rng.randrange(4)
    if shape == 0 and "." in node and "*" not in node:
        return f"expect {node} attends end -> {slots[0]}{on} {comparator} {value}"
    if shape == 1:
        return f'expect "r0" {rng.choice(("next_score", "copy_score", "direct_logit"))}{on} {comparator} {value}'
    if shape == 2 and len(nodes) > 1:
        return f"expect {nodes[0]} -> {nodes[-1]} effect{on} {comparator} {value}"
    return f"expect {rng.choice(CLAIMS)}{on} {comparator} {value}"


# ---- valid specs -------------------------------------------------------------------------------

VALID_MODELS = (('"organism:seqcont"', 4, 8), ('"gpt2"', 12, 12))
VALUE_FORMS = (
    "i",
    "i + {n}",
    "i * {n}",
    "(i + {n}) % {m}",
    "i // {m}",
    "months[i + {n}]",
    "number_words[i % 21]",
    "str(i)",
    "upper(letters[i % 26])",
    "pad(i, 3)",
    "names[i % 22]",
    "weekdays[i - {n}]",
)


def _valid_spec(rng: random.Random) -> str:
    model, layers, heads = rng.choice(VALID_MODELS)
    slots = rng.sample(SLOTS[:4], rng.randint(1, 4))
    corrupt = rng.random() < 0.7
    lines = ["circuitlang 1", f"circuit c on {model}"]
    names = [f"p{i}" for i in range(rng.choice((1, 1, 2)))]
    lines += [_valid_prompts(rng, name, slots, corrupt) for name in names]
    lines.append(f"metric {rng.choice(METRIC_CALLS[:3])}")
    lines.append("ablate " + (rng.choice(("mean of corrupt", "resample", "zero")) if corrupt else "zero"))
    nodes = _valid_circuit(rng, lines, layers, heads, slots)
    edges = _valid_edges(rng, nodes)
    lines += [f"edge {a} -> {b}" for a, b in edges]
    lines += _valid_claims(rng, nodes, edges, slots)
    if rng.random() < 0.3:
        lines.append(f"set {rng.choice(('seed = 3', 'bootstrap = 200', 'confidence = 0.9', 'top_k = 2'))}")
    return "\n".join(lines) + "\n"


def _valid_value(rng: random.Random) -> str:
    return rng.choice(VALUE_FORMS).format(n=rng.randint(0, 9), m=rng.randint(1, 9))


def _valid_prompts(rng: random.Random, name: str, slots: list[str], corrupt: bool) -> str:
    body = [f'template "{" ".join("{" + s + "}" for s in slots)}"']
    if rng.random() < 0.3:
        body.append(f'template "then {" and ".join("{" + s + "}" for s in slots)}"')
    start = rng.randint(0, 5)
    body.append(f"for i in {start}..{start + rng.randint(0, 20)}")
    body += [f"{slot} = {_valid_value(rng)}" for slot in slots]
    body += [f"answer = {_valid_value(rng)}", f"wrong = {_valid_value(rng)}"]
    if corrupt:
        body.append(
            f"corrupt random {{ {rng.choice(slots)} = random 1..99 }}"
            if len(slots) < 2 or rng.random() < 0.5
            else f"corrupt swap({slots[0]}, {slots[1]})"
        )
    if rng.random() < 0.2:
        body.append(f"set count = {rng.randint(1, 5)}")
    return f"prompts {name} {{\n  " + "\n  ".join(body) + "\n}"


def _valid_circuit(rng: random.Random, lines: list[str], layers: int, heads: int, slots: list[str]) -> list[str]:
    chosen = rng.sample([f"{layer}.{head}" for layer in range(layers) for head in range(heads)], rng.randint(1, 5))
    for number, head in enumerate(chosen):
        clause = rng.choice(("", " q end", f" q end k {slots[0]}", f" k {slots[0]}..{slots[-1]}"))
        lines.append(f'role "r{number}": {head}{clause}')
    mlps = sorted(rng.sample(range(layers), rng.randint(0, 2)))
    if mlps:
        lines.append("mlp " + ", ".join(map(str, mlps)))
    return chosen + [f"mlp {m}" for m in mlps]


def _residual_order(node: str) -> tuple[int, int]:
    if node.startswith("mlp "):
        return int(node[4:]), 1
    return int(node.split(".")[0]), 0


def _valid_edges(rng: random.Random, nodes: list[str]) -> list[tuple[str, str]]:
    """None, or every node into the logits plus some forward edges between nodes."""
    if rng.random() < 0.4:
        return []
    ordered = sorted(nodes, key=_residual_order)
    edges = [(node, "logits") for node in ordered]
    for sender, receiver in zip(ordered, ordered[1:]):
        if _residual_order(sender)[0] < _residual_order(receiver)[0] and rng.random() < 0.6:
            edges.append((sender, receiver))
    return edges


def _valid_claims(rng: random.Random, nodes: list[str], edges: list[tuple[str, str]], slots: list[str]) -> list[str]:
    claims = [f"expect faithfulness >= 0.{rng.randint(1, 9)}"]
    heads = [n for n in nodes if not n.startswith("mlp")]
    if heads and rng.random() < 0.5:
        claims.append(f"expect {heads[0]} attends end -> {slots[0]} >= 0.2")
    if rng.random() < 0.3:
        claims.append('expect "r0" next_score >= 0.1')
    if edges and rng.random() < 0.3:
        claims.append(f"expect {edges[0][0]} -> {edges[0][1]} effect >= 0.1")
    return claims
