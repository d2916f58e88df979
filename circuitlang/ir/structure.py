"""The shape of a circuit's declared edges, checked before anything runs.

When a spec declares edges, a node's clean output reaches the logits only along declared edges
(every other path carries its ablated value). Two mistakes follow from a missing line and
silently change every number:

- a node with no declared path to the logits contributes nothing: under edge ablation it is
  indistinguishable from an ablated node, so faithfulness, completeness and its minimality say
  nothing about it (an error: the spec does not state the hypothesis it means to);
- a node with no declared inputs reads only the embeddings (`set embed_edges = all`, the default)
  or nothing clean at all (`embed_edges = declared`, without an `edge embed -> X`): plausible for
  an early node, suspicious for a late one (a warning).

Without declared edges every node reads and writes the full residual stream: nothing to check.
"""

from __future__ import annotations

from circuitlang.errors import CircuitlangError, SpecError
from circuitlang.ir import models as ir

LOGITS = ir.LOGITS
EMBED = ir.EMBED


def reaching_logits(circuit: ir.Circuit) -> set[ir.Node]:
    """Nodes from which a chain of declared edges leads to the logits."""
    feeding: dict[ir.Node, set[ir.Node]] = {}
    for edge in circuit.edges:
        feeding.setdefault(edge.receiver, set()).add(edge.sender)
    reached, frontier = set(), [LOGITS]
    while frontier:
        for sender in feeding.get(frontier.pop(), ()):
            if sender not in reached:
                reached.add(sender)
                frontier.append(sender)
    return reached


def structure_errors(circuit: ir.Circuit) -> list[CircuitlangError]:
    """Every circuit node without a declared path to the logits, at the line that names it."""
    if not circuit.edges:
        return []
    reached = reaching_logits(circuit)
    return [
        SpecError(
            f"{member.node} has no declared path to the logits: with edges declared, its output "
            "reaches nothing, so the verification would treat it as ablated",
            member.span,
            f"declare an edge from {member.node} towards the logits (e.g. `edge {member.node} -> logits`), "
            f"or remove {member.node} from the circuit",
        )
        for member in circuit.nodes
        if member.node not in reached
    ]


def structure_warnings(spec: ir.Spec) -> list[CircuitlangError]:
    """Circuit nodes beyond layer 0 with no declared input from another node (and, with
    `embed_edges = declared`, any node with no declared input at all)."""
    circuit = spec.circuit
    if not circuit.edges:
        return []
    inputs: dict[ir.Node, set[ir.Node]] = {}
    for edge in circuit.edges:
        inputs.setdefault(edge.receiver, set()).add(edge.sender)
    warnings: list[CircuitlangError] = []
    for member in circuit.nodes:
        senders = inputs.get(member.node, set())
        if spec.settings.embed_edges == "declared" and not senders:
            warnings.append(
                SpecError(
                    f"{member.node} has no declared inputs, and `embed_edges = declared` cuts "
                    "its embeddings too: it reads only ablated activations",
                    member.span,
                    f"declare the edges into {member.node} (`edge embed -> {member.node}` for the embeddings)",
                )
            )
        elif member.node.layer and not senders - {EMBED}:
            warnings.append(
                SpecError(
                    f"{member.node} has no declared input from another node: it reads only the embeddings",
                    member.span,
                    f"if an earlier node feeds it, declare that edge (`edge ... -> {member.node}`)",
                )
            )
    return warnings
