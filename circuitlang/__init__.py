"""circuitlang: declare a transformer circuit in a `.circ` file and check it against the model.

Pipeline (one direction, each stage a pure function on frozen data):
`dsl` (text -> AST) -> `ir` (AST -> IR, validated) -> `data` (prompts) -> `compile` (the plan)
-> `engine` (torch) -> `verification` (numbers and claims, numpy) -> `results` (the result models)
-> `report` (tables, files, pictures). `workflows` run one command's work on a session (verify,
patch, transfer, discover); `commands` and `cli` parse the command line, write files and exit.
"""

__version__ = "0.1.0"


def __getattr__(name: str):  # the model-facing API imports torch, so it is loaded on first use
    if name in ("load", "open_run", "Run", "verify", "verify_suite", "path_patch", "edge_scores", "attention", "lens"):
        from circuitlang import api

        return getattr(api, name)
    raise AttributeError(name)
