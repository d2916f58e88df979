from circuitlang.cli import run

run()
