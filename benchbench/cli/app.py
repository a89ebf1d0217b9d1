"""The CLI's application object, consoles and shared options; `main` turns errors into exit codes.

Exit codes: 0 all cells ok (or no regression), 1 some cells failed (or a
regression), 2 invalid input. Invalid input never shows a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from benchbench.errors import BenchbenchError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Training-speed profiling and benchmarking for segmentation models (SMP + timm).",
    pretty_exceptions_enable=False,
)
# Logs and CI captures are not terminals; rich would wrap tables at 80 columns there.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu or cuda.")]
FilterOpt = Annotated[
    Optional[list[str]],
    typer.Option("--filter", "-f", help="Run only cells with KEY=VALUE (repeatable; same key twice = either)."),
]


class Interrupted(Exception):
    """SIGTERM is handled like Ctrl-C: stop after recording what finished."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted()


def _suite(path: Path, device: str, filters: list[str] | None, available: bool = True) -> Any:
    from benchbench.suite import load_suite

    return load_suite(path, device=None if device == "auto" else device, filters=filters, available=available)


def _records(paths: list[Path]) -> list[dict[str, Any]]:
    from benchbench import results as res

    return res.read_records(paths)


def main() -> None:
    """Entry point: turn invalid input into a message and exit code 2, never a traceback.

    Typer (standalone mode) already turns usage errors into exit code 2 and
    `typer.Exit` into its code; what reaches here is ours to format.
    """
    try:
        app()
    except BenchbenchError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, Interrupted):
        err_console.print("interrupted before anything was measured; nothing was written", highlight=False)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - a bug in benchbench: say so briefly
        if os.environ.get("BENCHBENCH_DEBUG"):
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc}\n"
            "This is a bug in benchbench; rerun with BENCHBENCH_DEBUG=1 for the traceback.",
            highlight=False,
        )
        sys.exit(3)


if __name__ == "__main__":  # pragma: no cover
    main()
