"""The organism's tokenizer: word-level, GPT-2 conventions, built in code (no downloads).

Each word of the tasks is one token, in two forms: bare (`Mary`) and with GPT-2's leading-space
marker (`ĠMary`, the byte-level image of " Mary"). Numbers are split into tokens of at most two
digits, so a year written without a space, "1732", is `17` + `32`, and " 1732" is `Ġ17` + `32`:
the century and the year are separate tokens, as the greater-than template needs. Punctuation is
one token per character. Offsets are exact character offsets into the text (a space belongs to
the token it precedes, as in GPT-2), which circuitlang uses to place slots.

Pre-tokenization: a regex `Split` (a word, one or two digits, one punctuation character, each
optionally preceded by one space; any other whitespace character alone), then GPT-2's byte-level
alphabet without its own regex. Anything outside the vocabulary becomes `<|unk|>`.
"""

from __future__ import annotations

import re

BOS = "<|endoftext|>"  # id 0, also EOS and padding, as in GPT-2
UNK = "<|unk|>"  # id 1
PRE_TOKENIZER_PATTERN = r" ?[A-Za-z]+| ?\d\d| ?\d| ?[^\sA-Za-z\d]|\s"
PUNCTUATION = tuple(".,!?:;'\"()-")


def task_words() -> tuple[str, ...]:
    """Every word the six tasks use, in a fixed order (the vocabulary's order)."""
    from circuitlang.data import generators as g
    from circuitlang.ir.stdlib import MONTHS, NAMES, NUMBER_WORDS

    words: list[str] = [str(d) for d in range(10)] + [f"{n:02d}" for n in range(100)]
    words += MONTHS
    words += NUMBER_WORDS + tuple(w.capitalize() for w in NUMBER_WORDS)
    words += NAMES + g.IOI_PLACES + g.IOI_OBJECTS + g.GT_NOUNS
    for template in (*g.IOI_BABA, *g.IOI_ABBA, g.GT_TEMPLATE):
        words += re.findall(r"[A-Za-z]+", re.sub(r"\{[^}]*\}", " ", template))
    return tuple(dict.fromkeys(words))


def build_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {BOS: 0, UNK: 1, "Ġ": 2, "Ċ": 3}  # a lone space and a newline have tokens too
    for word in (*task_words(), *PUNCTUATION):
        for form in (word, "Ġ" + word):
            vocab.setdefault(form, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRE_TOKENIZER_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=BOS, eos_token=BOS, pad_token=BOS, unk_token=UNK, model_max_length=64)
