"""One module per command beyond check/fmt/plan/verify; registered in `circuitlang.cli.MODULE_COMMANDS`."""
