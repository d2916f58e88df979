"""The error catalogue: one small spec per user mistake in tests/errors/, each pinned to the exact
error(s) it must produce -- stage, message, line and column.

A case lists *every* error the file must report (so a cascade of follow-on errors is a failure
too). Cases marked `xfail` pin the behaviour we want but circuitlang does not have yet; each
reason says what happens today. They are strict: when the behaviour is fixed the case XPASSes,
the suite fails, and the marker must be removed.

Placeholders in expected messages: `<DIR>` is the absolute path of tests/errors, `<FILE>` the
path of the case file exactly as passed to `load_spec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from circuitlang.data.datasets import expand_all
from circuitlang.errors import CircuitlangError, flatten
from circuitlang.ir.lower import load_spec

ERRORS_DIR = Path(__file__).resolve().parents[1] / "errors"


@dataclass(frozen=True)
class Err:
    stage: str  # syntax | semantic | data | model
    line: int
    column: int
    message: str | None  # None: a syntax error whose wording is not pinned yet
    file: str | None = None  # relative to tests/errors, when the error points into another file


@dataclass(frozen=True)
class Case:
    file: str
    errors: tuple[Err, ...]
    xfail: str | None = None


def syntax(line: int, column: int) -> tuple[Err, ...]:
    return (Err("syntax", line, column, None),)


def semantic(line: int, column: int, message: str) -> tuple[Err, ...]:
    return (Err("semantic", line, column, message),)


def data(line: int, column: int, message: str) -> tuple[Err, ...]:
    return (Err("data", line, column, message),)


def model(line: int, column: int, message: str) -> tuple[Err, ...]:
    return (Err("model", line, column, message),)


CASES: tuple[Case, ...] = (
    # ---- the circuit: heads, layers, positions ------------------------------------------------
    Case("unknown_slot_in_q.circ", semantic(19, 21, "position 's9' is not a slot of prompt set 'digits'")),
    Case("position_not_in_template.circ", semantic(21, 27, "position 'io' is not a slot of prompt set 'digits'")),
    Case("layer_out_of_range.circ", semantic(19, 20, "layer 12 does not exist: gpt2 has layers 0-11")),
    Case("head_out_of_range.circ", semantic(19, 15, "head 9.12 does not exist: layers have heads 0-11")),
    Case("layer_star_unknown_shape.circ", semantic(19, 16, "10.* needs the model's head count, unknown for 'someorg/some-unknown-model'")),
    Case("bad_layer_range.circ", semantic(20, 5, "empty layer range 9..3")),
    Case("position_range_backwards.circ", data(19, 27, "range s3..s1 runs backwards in template #0 of prompt set 'digits' ('{s1} {s2} {s3}')")),
    Case("position_range_with_end.circ", semantic(19, 27, "a range runs between slots; 's1..end' uses end or bos")),
    Case("position_clause_twice.circ", semantic(19, 30, "'k' is given twice")),
    Case("clause_not_for_mlp.circ", semantic(21, 7, "'q' is not a position clause for an MLP")),
    Case("duplicate_role.circ", semantic(20, 6, 'role "mover" is declared twice (first at line 19)')),
    Case("node_in_two_roles.circ", semantic(20, 21, '9.1 is already in the circuit as "mover" (at line 19)')),
    Case("role_named_mlp.circ", semantic(20, 6, '"mlp" is the role of bare `mlp` lines')),
    # ---- edges ----------------------------------------------------------------------------------
    Case("edge_undeclared_node.circ", semantic(21, 6, "edge endpoint 4.4 is not in the circuit")),
    Case("expect_undeclared_edge.circ", semantic(24, 1, "claim about the edge 4.4 -> logits, which is not declared")),
    Case(
        "expect_edge_effect_without_edges.circ",
        semantic(22, 8, "edge_effect is a claim about the declared edges, and the circuit declares none"),
    ),
    Case(
        "edge_node_cut_off.circ",
        semantic(
            20,
            18,
            "4.4 has no declared path to the logits: with edges declared, its output reaches nothing, "
            "so the verification would treat it as ablated",
        ),
    ),
    Case("edge_backwards.circ", semantic(22, 1, "edge 9.1 -> 4.4 runs backwards: 9.1 cannot write into 4.4")),
    Case("edge_from_logits.circ", semantic(25, 1, "edges run from embed towards logits")),
    Case("edge_declared_twice.circ", semantic(25, 1, "edge 9.1 -> mlp 9 is declared twice")),
    Case("edge_within_layer.circ", semantic(26, 1, "edge 9.2 -> 9.1 joins two heads of layer 9, which run in parallel")),
    Case("edge_to_itself.circ", semantic(25, 1, "edge 9.1 -> 9.1 connects 9.1 to itself")),
    Case("via_bad_channel.circ", semantic(22, 24, "unknown channel 'o'")),
    Case("via_on_mlp_receiver.circ", semantic(22, 23, "mlp 9 has one input; `via` is only for head receivers")),
    # ---- metric and ablation --------------------------------------------------------------------
    Case("unknown_metric.circ", semantic(16, 8, "unknown metric 'logit_difference'")),
    Case("metric_wrong_arity.circ", semantic(16, 1, "metric logit_diff takes 2 answer field(s), got 1")),
    Case("metric_arg_is_slot.circ", semantic(16, 27, "metric argument 's3' is a slot, not an answer field in prompt set 'digits'")),
    Case("second_metric_line.circ", semantic(18, 1, "a second top-level `metric` line")),
    Case("missing_ablate.circ", semantic(2, 1, "no `ablate` line")),
    Case("unknown_ablation.circ", semantic(17, 8, "unknown ablation 'average'")),
    Case("ablate_resample_of_clean.circ", semantic(17, 20, "'ablate resample of clean' is not an ablation")),
    Case("ablate_zero_of_corrupt.circ", semantic(17, 16, "'ablate zero of corrupt' is not an ablation")),
    # ---- corruptions ----------------------------------------------------------------------------
    Case("unknown_corruption.circ", semantic(13, 11, "unknown corruption 'shuffle'")),
    Case("corrupt_assigns_non_slot.circ", semantic(14, 9, "corruption assigns 's4', which is not a slot")),
    Case("corrupt_swap_unknown_slot.circ", semantic(13, 20, "swap names 'nope', which is not a slot")),
    Case("corrupt_swap_quoted_unknown_slot.circ", semantic(13, 22, "swap names 'nope', which is not a slot")),
    Case("corrupt_swap_one_argument.circ", semantic(13, 11, "corrupt swap takes 2 literal argument(s)")),
    Case("corrupt_swap_same_slot.circ", semantic(13, 20, "swap needs two different slots; both are 's1'")),
    Case("corrupt_abc_not_ioi.circ", semantic(13, 11, "corrupt abc needs the slot(s) io, s1, s2")),
    Case("corrupt_top_level_and_inner.circ", semantic(18, 1, "this prompt set already has a corrupt block inside it")),
    Case("corrupt_file_not_found.circ", semantic(13, 16, "file not found: 'data/missing.csv' (looked in <DIR>/data/missing.csv)")),
    Case(
        "corrupt_repeat_last_one_slot.circ",
        data(11, 3, "corruption of prompt #0 of digits (i=1): repeat_last needs a template with two or more slots"),
    ),
    Case("corrupt_file_too_short.circ", data(8, 3, "corrupt file has 2 row(s) for 3 clean prompts")),
    Case("corrupt_file_missing_column.circ", data(8, 3, "corruption of prompt #0 of digits: corrupt file row has no column 's3'")),
    # ---- generators -----------------------------------------------------------------------------
    Case("unknown_generator.circ", semantic(6, 12, "unknown generator 'ioj'")),
    Case("bad_generator_parameter.circ", semantic(6, 24, "ioi() has no parameter 'size'")),
    Case("generator_parameter_wrong_type.circ", semantic(6, 20, "n must be an integer literal")),
    Case("generator_bad_choice.circ", semantic(6, 31, "order must be one of mixed, abba, baba")),
    # ---- templates and expressions --------------------------------------------------------------
    Case("template_slot_without_value.circ", semantic(6, 28, "slot '{s4}' has no value")),
    Case("template_unclosed_brace.circ", semantic(6, 23, "unclosed '{' in template")),
    Case("template_duplicate_slot.circ", semantic(6, 23, "slot '{s1}' appears twice in the template")),
    Case("template_error_cascade.circ", semantic(6, 25, "unmatched '}' in template")),
    Case("unknown_name_in_expression.circ", semantic(10, 8, "unknown name 'j'")),
    Case("unknown_list_in_index.circ", semantic(8, 8, "unknown list 'monthz'")),
    Case("unknown_function.circ", semantic(8, 8, "unknown function 'capitalise'")),
    Case("function_wrong_arity.circ", semantic(8, 8, "pad() takes 2 argument(s), got 1")),
    Case("slot_assigned_twice.circ", semantic(9, 3, "'s1' is assigned twice")),
    Case("list_declared_twice.circ", semantic(5, 6, "list 'xs' is declared twice")),
    Case("list_empty.circ", semantic(4, 11, "list 'xs' is empty")),
    Case("list_item_not_literal.circ", semantic(4, 15, "list items must be literal numbers or strings")),
    Case("list_index_out_of_range.circ", data(11, 12, "prompt #1 of words (i=18): index 21 is outside list 'number_words' (0-20)")),
    Case("division_by_zero.circ", data(8, 8, "prompt #0 of digits (i=1): division by zero")),
    Case("text_plus_number.circ", data(8, 8, "prompt #0 of digits (i=1): expected a number, got 'a'")),
    Case("random_distinct_too_few.circ", data(14, 18, "corruption of prompt #0 of digits (i=1): cannot draw 3 distinct values from 2")),
    Case("loop_over_number.circ", data(7, 12, "a loop of digits (i): loop over 5, which is not a range or list")),
    Case("loop_range_empty.circ", data(5, 1, "prompt set 'digits' has no prompts")),
    Case(
        "slot_gets_list.circ",
        data(
            8,
            3,
            "prompt #0 of digits (i=1): slot '{s1}' got a list ('January', 'February', 'March', 'April', "
            "'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December')",
        ),
    ),
    # ---- prompt sets and data files -------------------------------------------------------------
    Case("from_file_not_found.circ", semantic(7, 8, "file not found: 'x.jsonl' (looked in <DIR>/x.jsonl)")),
    Case("unsupported_file_type.circ", semantic(7, 8, "cannot read prompts from 'data/rows.txt': unknown file type")),
    Case("jsonl_not_json.circ", data(7, 3, "data/not_json.jsonl line 2: not JSON (Expecting ',' delimiter)")),
    Case("jsonl_row_not_object.circ", data(7, 3, "data/array_row.jsonl line 1: expected an object, got list")),
    Case("jsonl_bool_value.circ", data(7, 3, "data/bool_value.jsonl line 1: column 's3' holds true")),
    Case("file_missing_slot_column.circ", data(7, 3, "prompt #0 of digits: slot '{s3}' has no value")),
    Case("file_missing_metric_field.circ", data(7, 3, "prompt #0 of digits: metric argument 'wrong' has no value")),
    Case(
        "several_unnamed_prompts.circ",
        semantic(5, 1, "with several prompts blocks each needs a name") + semantic(16, 1, "with several prompts blocks each needs a name"),
    ),
    Case("prompt_setting_unknown.circ", semantic(14, 7, "unknown prompt-set setting 'colour'")),
    Case("prompt_count_zero.circ", semantic(14, 15, "count must be at least 1")),
    Case("answer_prefix_not_string.circ", semantic(14, 23, "answer_prefix must be a string")),
    # ---- settings -------------------------------------------------------------------------------
    Case("unknown_setting.circ", semantic(21, 5, "unknown setting 'seeds'")),
    Case("setting_wrong_type.circ", semantic(21, 17, "bootstrap must be an integer")),
    Case("setting_twice.circ", semantic(28, 5, "'seed' is set twice")),
    Case("setting_not_in_choices.circ", semantic(27, 19, "embed_edges is one of all, declared")),
    Case("confidence_out_of_range.circ", semantic(27, 18, "confidence must be between 0 and 1")),
    # ---- header, circuit line, model ------------------------------------------------------------
    Case("unsupported_version.circ", semantic(2, 1, "circuitlang version 2 is not supported")),
    Case("missing_circuit_line.circ", semantic(2, 1, 'missing `circuit NAME on "MODEL"` line')),
    Case("second_circuit_line.circ", semantic(21, 1, "a spec has one `circuit` line; this is a second one")),
    Case("model_folder_missing.circ", semantic(3, 19, "model folder './no_model_here' does not exist (looked in <DIR>/no_model_here)")),
    Case("unknown_organism.circ", semantic(3, 19, "no shipped organism named 'nope'")),
    Case("hub_name_misspelled.circ", semantic(3, 19, "'gtp2' is not a model name TransformerLens knows")),
    # ---- expectations ---------------------------------------------------------------------------
    Case("unknown_claim.circ", semantic(21, 8, "unknown claim 'faithfullness'")),
    Case("expect_node_not_in_circuit.circ", semantic(21, 8, "claim about 9.2, which is not in the circuit")),
    Case("expect_on_unknown_prompts.circ", semantic(21, 24, "no prompt set named 'digitz'")),
    Case("expect_unknown_role.circ", semantic(27, 8, 'no role named "movers"')),
    Case("expect_unknown_score.circ", semantic(27, 12, "unknown score 'copy_scor'")),
    Case("expect_mlp_attends.circ", semantic(27, 8, "only attention heads attend")),
    # ---- use --------------------------------------------------------------------------------------
    Case("use_missing_file.circ", semantic(19, 18, "file not found: 'data/no_such_file.circ' (looked in <DIR>/data/no_such_file.circ)")),
    Case("use_prompts_missing_name.circ", semantic(5, 13, "'data/lib_digits.circ' has no prompt set 'months'")),
    Case("use_list_missing_name.circ", semantic(4, 10, "'data/lib_digits.circ' declares no list 'colours'")),
    Case("use_cycle.circ", (Err("semantic", 5, 18, "'../use_cycle.circ' uses this file back (a cycle)", file="data/cycle_other.circ"),)),
    # ---- checks added after the language reference was written ---------------------------------
    Case("generate_with_assignment.circ", semantic(6, 3, "a generated prompt set brings its own values; this line would be ignored")),
    Case("range_with_offset.circ", semantic(10, 21, "a range runs between slot names; offsets are not allowed in it")),
    Case(
        "position_missing_in_one_template.circ", data(11, 21, "position 's3' is not a slot of template #0 of prompt set 'digits' ('{s1} {s2}')")
    ),
    Case("slot_named_end.circ", semantic(5, 18, "'{end}' uses the reserved position name 'end'")),
    Case("csv_ragged_row.circ", data(6, 3, "data/ragged.csv line 3: 2 columns in the header but a different number of cells here")),
    Case("corrupt_file_wrong_type.circ", semantic(7, 16, "cannot read corrupt rows from 'data/rows.txt': unknown file type")),
    Case(
        "ablation_without_corruption.circ",
        semantic(4, 1, "prompt set 'digits' has no corruption, but `ablate mean of corrupt` takes its values from the corrupt prompts"),
    ),
    Case("prompt_setting_twice.circ", semantic(8, 7, "'count' is set twice")),
    Case("distinct_nested.circ", semantic(6, 18, "`distinct` draws several values at once, so it must be the whole right-hand side")),
    Case("list_shadows_builtin.circ", semantic(4, 6, "list 'months' would hide the built-in list of that name")),
    Case("negative_seed.circ", semantic(10, 12, "seed must be 0 or more")),
    Case("decimal_in_expression.circ", (Err("syntax", 6, 8, "unexpected '.'"),)),
    # ---- several errors at once -------------------------------------------------------------------
    Case(
        "three_semantic_errors.circ",
        semantic(16, 8, "unknown metric 'logit_difference'")
        + semantic(19, 20, "layer 13 does not exist: gpt2 has layers 0-11")
        + semantic(21, 8, "unknown claim 'faithfullness'"),
    ),
    # ---- syntax (messages not pinned yet: only stage, line and column) ------------------------------
    Case("syntax_missing_equals.circ", syntax(9, 6)),
    Case("syntax_unterminated_string.circ", syntax(6, 12)),
    Case("syntax_stray_character.circ", syntax(19, 19)),
    Case("syntax_head_without_dot.circ", syntax(19, 15)),
    Case("syntax_missing_header.circ", syntax(2, 1)),
    Case("syntax_unknown_escape.circ", (Err("syntax", 6, 22, "unknown escape '\\q' in string"),)),
    Case("bom_at_start.circ", ()),
    Case("number_too_long.circ", syntax(7, 15)),  # refused with its place, not a crash
    Case("expression_too_deep.circ", syntax(8, 810)),  # at the 201st `+`, refused as it is read
)


def errors_of(path: Path) -> list[CircuitlangError]:
    """Everything a user sees for `path`: parse + lower, then prompt expansion; flattened."""
    try:
        spec = load_spec(path)
        expand_all(spec)
    except CircuitlangError as error:
        return flatten([error])
    return []


def _expected_message(message: str | None, path: Path) -> str | None:
    if message is None:
        return None
    return message.replace("<DIR>", str(ERRORS_DIR.resolve())).replace("<FILE>", str(path))


def _param(case: Case):  # type: ignore[no-untyped-def]
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.file.removesuffix(".circ"), marks=marks)


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_error_catalogue(case: Case) -> None:
    path = ERRORS_DIR / case.file
    found = errors_of(path)
    pinned = {i for i, e in enumerate(case.errors) if e.message is None}
    actual = [
        (e.stage, None if i in pinned else e.message, e.span and e.span.line, e.span and e.span.column, e.span and Path(e.span.path).resolve())
        for i, e in enumerate(found)
    ]
    expected = [
        (e.stage, _expected_message(e.message, path), e.line, e.column, (ERRORS_DIR / (e.file or case.file)).resolve()) for e in case.errors
    ]
    assert actual == expected
    for error in found:
        assert error.hint, f"{error.message!r} has no hint"


def test_three_semantic_errors_reported_together_in_source_order() -> None:
    found = errors_of(ERRORS_DIR / "three_semantic_errors.circ")
    assert [e.stage for e in found] == ["semantic"] * 3
    positions = [(e.span.line, e.span.column) for e in found if e.span]
    assert positions == sorted(positions) == [(16, 8), (19, 20), (21, 8)]


def test_catalogue_is_complete_and_documented() -> None:
    """Every spec in tests/errors is a case, and says on its first line what mistake it shows."""
    on_disk = sorted(p.name for p in ERRORS_DIR.glob("*.circ"))
    assert on_disk == sorted(case.file for case in CASES)
    assert len(CASES) >= 30
    for name in on_disk:
        first = (ERRORS_DIR / name).read_text(encoding="utf-8").lstrip("\ufeff").splitlines()[0]
        assert first.startswith("# mistake: "), name
    for helper in (ERRORS_DIR / "data").glob("*.circ"):
        assert helper.read_text(encoding="utf-8").startswith("# helper for "), helper.name
