"""Command line: thin wrappers that parse, call the library, and choose an exit code.

Exit codes: 0 all cells ok (or no regression), 1 some cells failed (or a
regression), 2 invalid input. Invalid input never shows a traceback. One module
per family of commands; importing them registers their commands on `app`.
"""

# Importing registers the commands, in this order in --help.
from benchbench.cli import listing, run  # noqa: F401, I001
from benchbench.cli import attach, tune, report, gate, trace, history, advise  # noqa: F401
from benchbench.cli.app import app, console, entry, err_console, main

__all__ = ["app", "console", "entry", "err_console", "main"]
