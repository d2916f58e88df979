"""Byte-identity of every shipped spec's outputs, for a change that must not move a number.

Run it once on the code before the change and once after, then compare:

    python scripts/report_identity.py run /tmp/before --tree /path/to/old/checkout
    python scripts/report_identity.py run /tmp/after
    python scripts/report_identity.py compare /tmp/before /tmp/after

`run` copies specs/ into one fixed folder (a report names the spec's path, so both runs must read
the same path), shrinks the GPT-2 specs to a few prompts (their loops and generators), and for each
spec writes what the command line prints: `plan`, `check --format json`, and `verify --no-cache`
in every format (table, json, junit, markdown, github). The organism specs run at full size; the
GPT-2 specs on the stand-in (GPT-2's shapes and tokenizer, random weights) installed as the hub
model `gpt2`. Timings are the one thing allowed to differ, so they are masked before writing.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path("/tmp/circuitlang-report-identity")  # fixed: reports name the spec's path
TOKENIZER = ROOT / "tests" / "data" / "gpt2-tokenizer"
FORMATS = ("table", "json", "junit", "markdown", "github")
TIMING = [
    (re.compile(r'"seconds": [0-9.e+-]+'), '"seconds": T'),
    (re.compile(r'time="[0-9.e+-]+"'), 'time="T"'),
    (re.compile(r"\b[0-9]+(\.[0-9]+)? ?(s|ms|min)\b"), "T s"),
    (re.compile(r"^verify: .*% of [0-9,]+ rows.*\n", re.M), ""),  # progress lines come as time passes
]
# A spec on the shipped organism names its weights by absolute path, so that path (and with it the
# spec's hash) differs between two checkouts in different folders; compare --ignore-spec-hash.
SPEC_HASH = [
    (re.compile(r'("spec_sha256": |spec_sha256=)"[0-9a-f]{64}"'), r'\1"SHA"'),
    (re.compile(r"spec sha256 `[0-9a-f]{12}`"), "spec sha256 `SHA`"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="write every spec's outputs into OUT")
    run.add_argument("out", type=Path)
    run.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose code runs (default: this one)")
    run.add_argument("--prompts", type=int, default=4, help="prompts per GPT-2 loop or generator (default 4)")
    run.add_argument("--only", nargs="*", default=(), help="spec file names to run (default: all)")
    compare = commands.add_parser("compare", help="diff two outputs of `run`; exit 1 on any difference")
    compare.add_argument("before", type=Path)
    compare.add_argument("after", type=Path)
    compare.add_argument("--ignore-spec-hash", action="store_true", help="the checkouts lie in different folders")
    args = parser.parse_args()
    if args.command == "run":
        write_outputs(args.out, args.tree.resolve(), args.prompts, args.only)
    else:
        sys.exit(compare_outputs(args.before, args.after, args.ignore_spec_hash))


def write_outputs(out: Path, tree: Path, prompts: int, only: list[str]) -> None:
    specs = copy_specs(tree / "specs", prompts)
    env = command_env(tree)
    out.mkdir(parents=True, exist_ok=True)
    for spec in specs:
        if only and spec.name not in only:
            continue
        print(f"{spec.name} ...", flush=True)
        write_spec_outputs(spec, out / spec.stem, env)


def copy_specs(source: Path, prompts: int) -> list[Path]:
    """The shipped specs in WORK/specs, the GPT-2 ones shrunk to `prompts` per loop or generator."""
    target = WORK / "specs"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    for spec in sorted(target.glob("*.circ")):
        text = spec.read_text(encoding="utf-8")
        if re.search(r'^circuit \w+ on "gpt2"', text, re.M):
            spec.write_text(shrink(text, prompts), encoding="utf-8")
    return sorted(target.glob("*.circ"))


def shrink(text: str, prompts: int) -> str:
    """`for i in A..B` keeps its first `prompts` values; a generator's `n = N` becomes `prompts`."""
    text = re.sub(r"for (\w+) in (\d+)\.\.(\d+)", lambda m: f"for {m[1]} in {m[2]}..{int(m[2]) + prompts - 1}", text)
    return re.sub(r"\bn = \d+", f"n = {prompts}", text)


def command_env(tree: Path) -> dict[str, str]:
    hf_home = WORK / "hf-home"
    if not (hf_home / "hub" / "models--gpt2").is_dir():
        sys.path.insert(0, str(tree))
        from circuitlang.organisms.gpt2_standin import install_in_hub_cache

        install_in_hub_cache(hf_home, TOKENIZER)
    return {
        **os.environ,
        "PYTHONPATH": str(tree),
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "COLUMNS": "160",
        "CIRCUITLANG_CACHE_DIR": str(WORK / "cache"),
    }


def write_spec_outputs(spec: Path, out: Path, env: dict[str, str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "circuitlang"]
    record(out / "plan.txt", subprocess.run([*cli, "plan", spec.name], cwd=spec.parent, env=env, capture_output=True, text=True))
    record(
        out / "check.json",
        subprocess.run([*cli, "check", "--format", "json", spec.name], cwd=spec.parent, env=env, capture_output=True, text=True),
    )
    files = {fmt: out / f"verify.{fmt}" for fmt in FORMATS}
    writes = [arg for fmt in FORMATS[1:] for arg in ("--write", f"{fmt}={files[fmt]}")]
    done = subprocess.run(
        [*cli, "verify", "--no-cache", spec.name, "--format", "table", "-o", str(files["table"]), *writes],
        cwd=spec.parent,
        env=env,
        capture_output=True,
        text=True,
    )
    record(out / "verify.exit", done)
    for path in files.values():
        if path.exists():
            path.write_text(mask(path.read_text(encoding="utf-8")), encoding="utf-8")


def record(path: Path, done: subprocess.CompletedProcess[str]) -> None:
    path.write_text(mask(f"exit {done.returncode}\n--- stdout\n{done.stdout}--- stderr\n{done.stderr}"), encoding="utf-8")


def comparable(path: Path, ignore_spec_hash: bool) -> str:
    text = mask(path.read_text(encoding="utf-8"))
    text = re.sub(r"/[^\s\"]*/circuitlang/organisms/", "<tree>/circuitlang/organisms/", text)
    for pattern, replacement in SPEC_HASH if ignore_spec_hash else ():
        text = pattern.sub(replacement, text)
    return text


def mask(text: str) -> str:
    for pattern, replacement in TIMING:
        text = pattern.sub(replacement, text)
    return text


def compare_outputs(before: Path, after: Path, ignore_spec_hash: bool = False) -> int:
    names = sorted(
        {p.relative_to(before) for p in before.rglob("*") if p.is_file()} | {p.relative_to(after) for p in after.rglob("*") if p.is_file()}
    )
    differing = 0
    for name in names:
        a, b = before / name, after / name
        if not (a.exists() and b.exists()):
            print(f"{name}: only in {'before' if a.exists() else 'after'}")
            differing += 1
        elif (texts := [comparable(path, ignore_spec_hash) for path in (a, b)])[0] != texts[1]:
            differing += 1
            lines = difflib.unified_diff(texts[0].splitlines(), texts[1].splitlines(), str(a), str(b), lineterm="")
            print("\n".join(list(lines)[:40]))
    print(json.dumps({"files": len(names), "differing": differing}))
    return 1 if differing else 0


if __name__ == "__main__":
    main()
