"""Expanded prompts -> token ids, slot positions and answer ids, without torch.

Binding rests on three facts only the tokenizer can tell: every prompt of a template (clean and
corrupt) has the same number of tokens, each slot ends on the same token in each of them, and each
answer is one token. They are established here, once, with a `tokenizers.Tokenizer`: `check` loads
one from the model's `tokenizer.json` (the light install has no torch), and the engine's binder
passes the loaded model's tokenizer (a Hugging Face fast tokenizer wraps the same object), so
`check` finds exactly the mistakes `verify` would.

A mistake is reported where the spec can fix it: a slot at the line that assigns it (or the
template's line), a length mismatch at the template, an answer at its assignment, a word the
tokenizer does not know at the list item or literal that holds it (`data.unknown_words`); one message
per problem and template, saying how many other prompts share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from circuitlang.data.datasets import Dataset
from circuitlang.data.positions import SlotError, slot_token_indices
from circuitlang.data.prompts import Prompt
from circuitlang.data.unknown_words import slot_at, unknown_spans, unknown_token_id, written_at
from circuitlang.errors import CircuitlangError, DataError, ModelError, Span, raise_if_any
from circuitlang.ir import models as ir
from circuitlang.ir.model_folder import model_files_root, read_vocabulary_file

TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class TokenizedTemplate:
    """The prompts of one template as token ids. Row i of `clean` pairs with row i of `corrupt`."""

    template: str
    prompt_indices: tuple[int, ...]  # rows -> index in the dataset
    clean: tuple[tuple[int, ...], ...]
    corrupt: tuple[tuple[int, ...], ...] | None
    positions: dict[str, int]  # slot / end / bos -> token index, the same for every row
    answers: dict[str, tuple[tuple[int, ...], ...]]  # field -> per row, its token id(s)


@dataclass
class _Problems:
    """The first error of each kind in a template, and how many prompts repeat it."""

    first: dict[str, DataError] = field(default_factory=dict)
    repeats: dict[str, int] = field(default_factory=dict)
    prompts: dict[str, set[str]] = field(default_factory=dict)  # kind -> prompts counted, where given

    def add(self, kind: str, error: DataError, prompt: str | None = None) -> None:
        """Record a problem; with `prompt` (its label), a prompt that has it twice counts once."""
        counted = self.prompts.setdefault(kind, set())
        if prompt is not None and prompt in counted:
            return
        if prompt is not None:
            counted.add(prompt)
        if kind in self.first:
            self.repeats[kind] = self.repeats.get(kind, 0) + 1
        else:
            self.first[kind] = error

    def errors(self) -> list[DataError]:
        return [_with_repeats(error, self.repeats.get(kind, 0)) for kind, error in self.first.items()]


def tokenize_dataset(
    dataset: Dataset,
    prompt_set: ir.PromptSet,
    lists: tuple[ir.NamedList, ...],
    answer_fields: tuple[str, ...],
    tokenizer: Any,
    bos_id: int | None,
) -> tuple[tuple[TokenizedTemplate, ...], list[DataError]]:
    """Tokenize every prompt of `dataset`, template by template; `bos_id`, when given, is prepended.
    `lists` are the spec's declared lists, where an unknown word may have been written.
    Returns the templates that tokenized cleanly and the errors of the others."""
    tokenized, errors = [], []
    unknown_id = unknown_token_id(tokenizer)
    unknown_token = tokenizer.id_to_token(unknown_id) if unknown_id is not None else None
    for number, template in enumerate(dataset.templates):
        rows = tuple(i for i, p in enumerate(dataset.clean) if p.template == number)
        problems = _Problems()
        where = _Spans(prompt_set, template, lists, unknown_id, unknown_token)
        result = _tokenize_template(dataset, template, rows, where, answer_fields, tokenizer, bos_id, problems)
        if problems.first:
            errors.extend(problems.errors())
        else:
            tokenized.append(result)
    return tuple(tokenized), errors


def _tokenize_template(
    dataset: Dataset,
    template: str,
    rows: tuple[int, ...],
    where: _Spans,
    answer_fields: tuple[str, ...],
    tokenizer: Any,
    bos_id: int | None,
    problems: _Problems,
) -> TokenizedTemplate:
    clean = [_encode(dataset.clean[i], tokenizer, bos_id, where, problems, corrupt=False) for i in rows]
    reference = dataset.clean[rows[0]], *clean[0]
    for i, encoded in zip(rows, clean):
        _same_shape(dataset.clean[i], *encoded, reference, where, problems)
    corrupt = None
    if dataset.corrupt:
        corrupt = [_encode(dataset.corrupt[i], tokenizer, bos_id, where, problems, corrupt=True) for i in rows]
        for i, encoded in zip(rows, corrupt):
            _same_shape(dataset.corrupt[i], *encoded, reference, where, problems)
    answers = {
        name: tuple(_answer_ids(dataset.clean[i], name, dataset.answer_prefix, tokenizer, where, problems) for i in rows)
        for name in answer_fields
    }
    return TokenizedTemplate(
        template, rows, tuple(ids for ids, _ in clean), None if corrupt is None else tuple(ids for ids, _ in corrupt), clean[0][1], answers
    )


class TokenizerPanic(Exception):
    """The tokenizers library panicked (a Rust panic, a BaseException) on a text: the model's
    tokenizer.json holds settings it cannot run, such as a normalizer replacing the empty string."""


def encode_text(tokenizer: Any, text: str) -> Any:  # -> tokenizers.Encoding
    """`tokenizer.encode(text)` without special tokens; a panic of the library becomes a
    TokenizerPanic (an Exception), which callers turn into a model error at the `on` clause."""
    try:
        return tokenizer.encode(text, add_special_tokens=False)
    except BaseException as error:
        if type(error).__name__ != "PanicException":
            raise
        raise TokenizerPanic(f"the model's tokenizer failed on {text[:80]!r}: {error}") from None


def plain(tokenizer: Any) -> Any:
    """The tokenizer with no truncation and no padding, whatever its tokenizer.json says: a prompt
    is tokenized whole and alone (a `truncation` setting would cut prompts silently; a fixed
    padding of 2^40 tokens makes the library allocate terabytes and abort)."""
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def model_error_of(panic: TokenizerPanic, model: ir.ModelRef) -> ModelError:
    hint = "the tokenizer.json's settings are broken; save the model's own tokenizer (tokenizer.save_pretrained)"
    return ModelError(str(panic), model.span, hint)


def _encode(
    prompt: Prompt, tokenizer: Any, bos_id: int | None, where: _Spans, problems: _Problems, corrupt: bool
) -> tuple[tuple[int, ...], dict[str, int]]:
    encoding = encode_text(tokenizer, prompt.text)
    ids, offsets = list(encoding.ids), list(encoding.offsets)
    for start, end in unknown_spans(ids, offsets, where.unknown_id):
        _unknown_in_prompt(prompt, start, end, where, problems, corrupt)
    if bos_id is not None:
        ids, offsets = [bos_id, *ids], [(0, 0), *offsets]
    try:
        return tuple(ids), slot_token_indices(prompt, offsets, first_token=1 if bos_id is not None else 0)
    except SlotError as error:
        problems.add(f"slot {error.slot}", DataError(error.message, where.slot(error.slot, corrupt), error.hint))
        return tuple(ids), {}


def _unknown_in_prompt(prompt: Prompt, start: int, end: int, where: _Spans, problems: _Problems, corrupt: bool) -> None:
    word = prompt.text[start:end].strip() or prompt.text[start:end]
    slot = slot_at(prompt.slot_spans, start, end)
    if slot is None:
        source, span = "in the template's own text", where.template()
    else:
        value = str(dict(prompt.values)[slot])
        source = f"in slot '{slot}'" if value == word else f"in slot '{slot}' = {value!r}"
        span = where.word(slot, value, corrupt)
    problems.add(
        f"unknown {word} at {span}",
        DataError(
            f"{prompt.label}: the tokenizer does not know {word!r} ({source} of {prompt.text!r}): it becomes the "
            f"unknown token {where.unknown_token!r}, so the prompt would be run on that token instead of the word",
            span,
            _UNKNOWN_HINT,
        ),
        prompt.label,
    )


_UNKNOWN_HINT = "check the spelling, or choose words in the model's vocabulary; an unknown token is never scored as the word it replaced"


def _same_shape(
    prompt: Prompt,
    ids: tuple[int, ...],
    positions: dict[str, int],
    reference: tuple[Prompt, tuple[int, ...], dict[str, int]],
    where: _Spans,
    problems: _Problems,
) -> None:
    first, first_ids, first_positions = reference
    if len(ids) != len(first_ids):
        problems.add(
            "length",
            DataError(
                f"{prompt.label}: {prompt.text!r} is {len(ids)} tokens, but {first.label} ({first.text!r}) of the same "
                f"template is {len(first_ids)}",
                where.template(),
                "prompts of one template must tokenize to the same length: choose slot values that are one token "
                "each (or the same number of tokens)",
            ),
        )
        return
    for slot, index in positions.items():
        if first_positions and first_positions.get(slot) != index:
            problems.add(
                f"position {slot}",
                DataError(
                    f"{prompt.label}: slot '{slot}' is token {index} in {prompt.text!r}, but token "
                    f"{first_positions.get(slot)} in {first.text!r}",
                    where.slot(slot, corrupt=False),
                    "every prompt of a template must put each slot on the same token",
                ),
            )


def _answer_ids(prompt: Prompt, name: str, prefix: str, tokenizer: Any, where: _Spans, problems: _Problems) -> tuple[int, ...]:
    value = prompt.field(name)
    members = value if isinstance(value, tuple) else (value,)
    if not members:
        problems.add(
            f"answer {name}",
            DataError(f"{prompt.label}: answer field '{name}' is an empty set", where.assignment(name), "check the answer range"),
        )
    ids = []
    for member in members:
        encoded = list(encode_text(tokenizer, prefix + str(member)).ids)
        if where.unknown_id is not None and where.unknown_id in encoded:
            span = where.word(name, str(member), corrupt=False)
            problems.add(
                f"unknown {member} at {span}",
                DataError(
                    f"{prompt.label}: the tokenizer does not know the answer {prefix + str(member)!r} ({name}): it "
                    f"becomes the unknown token {where.unknown_token!r}, and the metric would score that token",
                    span,
                    _UNKNOWN_HINT,
                ),
                prompt.label,
            )
        elif len(encoded) != 1:
            pieces = [tokenizer.decode([token]) for token in encoded]
            problems.add(
                f"answer {name}",
                DataError(
                    f"{prompt.label}: answer {prefix + str(member)!r} ({name}) is {len(encoded)} tokens {pieces}, not one",
                    where.assignment(name),
                    "the metric compares single next tokens: choose one-token answers, or change `set answer_prefix`",
                ),
            )
        ids.extend(encoded[:1])
    return tuple(ids)


def _with_repeats(error: DataError, repeats: int) -> DataError:
    if not repeats:
        return error
    more = f"; {repeats} more prompt{'s' if repeats > 1 else ''} of this template have the same problem"
    return DataError(error.message + more, error.span, error.hint)


class _Spans:
    """Where in the spec a tokenization problem of one template is fixed."""

    def __init__(
        self, prompt_set: ir.PromptSet, template: str, lists: tuple[ir.NamedList, ...], unknown_id: int | None, unknown_token: str | None
    ) -> None:
        self.prompt_set, self.template_text, self.lists = prompt_set, template, lists
        self.unknown_id, self.unknown_token = unknown_id, unknown_token

    def _source(self) -> Span:
        source = self.prompt_set.generator or self.prompt_set.source
        return source.span if source is not None else self.prompt_set.span

    def template(self) -> Span:
        written = [t for t in self.prompt_set.templates if t.text == self.template_text]
        return written[0].span if written else self._source()

    def _assigned(self, name: str) -> Span | None:
        found = [a.span for a in self.prompt_set.assignments if name in a.targets]
        return found[0] if found else None

    def assignment(self, name: str) -> Span:
        return self._assigned(name) or self._source()

    def slot(self, name: str, corrupt: bool) -> Span:
        corruption = self.prompt_set.corruption
        if corrupt and corruption is not None:
            found = [a.span for a in corruption.assignments if name in a.targets]
            return found[0] if found else corruption.span
        return self._assigned(name) or self.template()

    def word(self, name: str, word: str, corrupt: bool) -> Span:
        """Where the word `word` of slot or answer field `name` was written: the string literal or
        list item holding it, else the line assigning `name`, else the data file or generator."""
        corruption = self.prompt_set.corruption if corrupt else None
        if corruption is not None and corruption.path is not None:
            return corruption.span  # a corrupt prompt read from a file: the message names the prompt
        assigning = [a for a in (corruption.assignments if corruption else ()) if name in a.targets]
        assigning = assigning or [a for a in self.prompt_set.assignments if name in a.targets]
        found = written_at(word, [a.value for a in assigning], self.prompt_set, self.lists)
        return found or (assigning[0].span if assigning else self._source())


# ---- tokenizers available without a model -------------------------------------------------------


def offline_tokenizer_file(model: ir.ModelRef) -> Path | None:
    """The model's `tokenizer.json`, if it can be had without weights or network: in a shipped
    organism, a local folder, or the local Hugging Face cache of a hub model."""
    if model.path is not None:
        path = Path(model.path) / TOKENIZER_FILE
        return path if path.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    cached = try_to_load_from_cache(model.hub_id or model.name, TOKENIZER_FILE)
    return Path(cached) if isinstance(cached, str) else None


def load_tokenizer_file(path: Path, model: ir.ModelRef) -> Any:  # -> tokenizers.Tokenizer
    """The tokenizer of `path`, built from the bytes checked (a regular file inside the model's
    folder, within the limits of ir/model_folder.py), not from a second read of the path."""
    from tokenizers import Tokenizer

    data = read_vocabulary_file(path, model_files_root(model, path.parent), model.span)
    try:
        return plain(Tokenizer.from_str(data.decode("utf-8")))
    except Exception as error:  # tokenizers raises a bare Exception for unreadable files; UnicodeDecodeError
        raise ModelError(
            f"cannot read the tokenizer {path}: {error}",
            model.span,
            "the file must be a Hugging Face tokenizer.json; check --no-tokenize skips this check",
        ) from None


def check_tokenization(spec: ir.Spec, datasets: tuple[Dataset, ...]) -> Path | None:
    """Tokenize every prompt set as binding will, if the model's tokenizer is at hand offline;
    raise every problem found. Returns the tokenizer file used, or None when there was none."""
    path = offline_tokenizer_file(spec.model)
    if path is None:
        return None
    tokenizer = load_tokenizer_file(path, spec.model)
    errors: list[CircuitlangError] = []
    for dataset in datasets:
        prompt_set = spec.prompt_set(dataset.name)
        try:
            errors.extend(tokenize_dataset(dataset, prompt_set, spec.lists, spec.metric_for(prompt_set).args, tokenizer, None)[1])
        except TokenizerPanic as panic:
            raise model_error_of(panic, spec.model) from None
    raise_if_any(errors)
    return path
