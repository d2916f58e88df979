"""Usage errors that say what was probably meant: `verfy` -> `verify`, `--formt` -> `--format`."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from typing import Any, NoReturn, Sequence


class SuggestingParser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors end with "did you mean ...?" when a misspelt command,
    choice or option is close to one it knows. Subcommands' parsers are of this class too
    (`add_subparsers` makes them of the parent's class)."""

    argv: Sequence[str] = ()  # the arguments being parsed, to tell which command an option belongs to

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self.argv = list(sys.argv[1:] if args is None else args)
        return super().parse_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        suggestion = self._suggestion(message)
        super().error(f"{message}\n  hint: did you mean {suggestion}?" if suggestion else message)

    def _suggestion(self, message: str) -> str:
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            return _closest(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        unknown = re.search(r"unrecognized arguments: (.*)", message)
        if unknown:
            options = self._options_of_command()
            found = [(word, _closest(word.split("=")[0], options)) for word in unknown.group(1).split() if word.startswith("-")]
            return ", ".join(f"{best} (for {word})" if len(found) > 1 else best for word, best in found if best)
        return ""

    def _options_of_command(self) -> list[str]:
        """The option strings of the command named in argv (the top-level parser reports options
        no subparser took), else of this parser."""
        parser: argparse.ArgumentParser = self
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                named = [word for word in self.argv if word in action.choices]
                parser = action.choices[named[0]] if named else self
        return [option for action in parser._actions for option in action.option_strings if option.startswith("--")]


def _closest(word: str, known: list[str]) -> str:
    found = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return found[0] if found else ""
