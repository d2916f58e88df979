"""Work spread over a Ray cluster: `verify SPEC... --ray [ADDRESS]` (and `compare`, `discover
--seeds`). Ray is the optional extra `circuitlang[cluster]`, imported only here and only when
`--ray` is given: the light install and every run without `--ray` never import it.

`connect` reaches the cluster (or starts one on this machine for the run), `ray_map` runs a list
of independent work items on workers that each hold one model, and gathers the results in the
items' order. What a work item is (a spec to verify, a transfer cell, a discovery seed) is the
workflows' business (`workflows.suite`); this package only moves it. docs/scale.md says how.
"""
