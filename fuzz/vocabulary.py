"""Tokens of the `.circ` language, for insertions and for the statement generator."""

from __future__ import annotations

from circuitlang.ir import stdlib
from circuitlang.ir.circuit import HEAD_CLAUSES, MLP_CLAUSES

KEYWORDS = ("circuitlang", "circuit", "on", "use", "from", "list", "cyclic", "prompts", "template", "for", "in",
            "generate", "corrupt", "metric", "ablate", "of", "set", "role", "mlp", "edge", "via", "embed",
            "logits", "expect", "attends", "random", "distinct", "hypothesis", "carries")
PUNCTUATION = ("{", "}", "(", ")", "[", "]", ",", ";", ":", "=", "..", "->", "+", "-", "*", "//", "%",
               ">=", "<=", ">", "<", ".", "*", "\n", "  ", "#", '"', "\\")
BUILTIN_NAMES = (*stdlib.BUILTIN_LISTS, *stdlib.CORRUPTIONS, *stdlib.FUNCTIONS, *stdlib.GENERATORS,
                 *stdlib.METRICS, *stdlib.METRIC_CLAIMS, *stdlib.SCORE_CLAIMS, *stdlib.EDGE_CLAIMS, *stdlib.INTERCHANGE_CLAIMS,
                 *stdlib.SPEC_SETTINGS, *stdlib.PROMPT_SETTINGS, *stdlib.POSITION_KEYWORDS, *stdlib.CHANNELS,
                 *HEAD_CLAUSES, *MLP_CLAUSES, "mean", "zero", "resample", "answer", "wrong", "n")
SPEC_NAMES = ("s1", "s2", "s3", "s4", "i", "j", "x", "digits", "clean", "corrupt")
NUMBERS = ("0", "1", "9", "11", "12", "95", "100000", "0.5", "9.1", "0.0", "11.11", "12.12", "3.*", "-1",
           "4294967296", "9223372036854775807", "9223372036854775808", "18446744073709551616", "1" + "0" * 30)
STRINGS = ('"gpt2"', '"organism:seqcont"', '"{s1} {s2}"', '"{a}"', '"{{"', '"}}"', '"{"', '""', '"\\n"',
           '"./"', '"."', '"/"', '"~"', '"../specs"', '"data/three_rows.csv"', '"data/sequences.jsonl"',
           '"incr_digits.circ"', '"data/lib_digits.circ"', '"x.jsonl"', '"/etc/passwd"', '"../../etc/passwd"',
           '"~/x.csv"', '"nul\\u0000"', '"\\t"')

TOKENS = (*KEYWORDS, *PUNCTUATION, *BUILTIN_NAMES, *SPEC_NAMES, *NUMBERS, *STRINGS)
# Integers at the edges of machine words and of Python's int-to-str limit.
HUGE_INTS = (2**31, 2**32, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63), 10**4299)
