"""The result models: what a workflow returns and every view renders (table, JSON, Markdown,
JUnit, pictures). Plain data (pydantic or frozen dataclasses) with their tidy tables; they import
nothing from the engine, the workflows or `report/` (the one call-time exception is
`Report._repr_markdown_`, the notebook's display hook, which Jupyter looks up on the object).
"""
