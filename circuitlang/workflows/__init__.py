"""The workflows: one command's work on an open session, with no printing and no exit codes.

`verify` (the plan's steps -> Report), `patch` (sweeps -> PatchReport), `transfer` (circuits on
each other's prompt sets -> Transfer), `discover` (a search -> FoundCircuit). Each is called by
its command in `commands/` (or `cli`) and by the Python API (`api`); they return the models of
`results/`, which `report/` renders.
"""
