"""What the hypothesis leaves out: the audit's path-patching pairs, known without a model.

For every node of the model outside the circuit (a sender), path patching from the corrupt
prompts into each circuit node it can reach and into the logits (each on its own: a missing
edge), and into all of them at once (a missing node). One recording run per sender and one
replay per receiver group, so a sender with R receivers costs R + 2 runs over the prompts.

The audit runs by default when it costs no more rows than the rest of the verification, and
otherwise only when asked (`verify --audit`); `plan` prints its cost either way.
"""

from __future__ import annotations

from circuitlang.ir import models as ir
from circuitlang.ir.circuit import runs_forward

LOGITS = ir.LOGITS


def model_nodes(shape: ir.ModelShape) -> list[ir.Node]:
    """Every head and MLP, in residual-stream order."""
    nodes: list[ir.Node] = []
    for layer in range(shape.n_layers):
        nodes += [ir.HeadNode(layer=layer, head=head) for head in range(shape.n_heads)]
        nodes.append(ir.MlpNode(layer=layer))
    return nodes


def audit_pairs(circuit: ir.Circuit, shape: ir.ModelShape) -> list[tuple[ir.Node, list[ir.Node]]]:
    """(sender outside the circuit, the circuit nodes and logits it can write into)."""
    inside = [member.node for member in circuit.nodes]
    receivers = [*inside, LOGITS]
    return [(sender, [r for r in receivers if runs_forward(sender, r)]) for sender in model_nodes(shape) if sender not in inside]


def audit_runs(circuit: ir.Circuit, shape: ir.ModelShape) -> int:
    """Forward passes over the prompts: per sender one recording, one replay per receiver, one joint."""
    return sum(2 + len(receivers) for _, receivers in audit_pairs(circuit, shape))
