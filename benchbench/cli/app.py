"""The CLI's application object, consoles and shared options; `main` turns errors into exit codes.

Exit codes: 0 all cells ok (or no regression), 1 some cells failed (or a
regression), 2 invalid input. Invalid input never shows a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from benchbench.errors import BenchbenchError

if not sys.stdout.isatty() and not os.environ.get("TERMINAL_WIDTH"):
    # Out of a terminal (logs, CI, pipes) help would be cut at rich's 80 columns: `--executor,--isol…`.
    import typer.rich_utils

    typer.rich_utils.MAX_WIDTH = 160

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
    list[str] | None,
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
        from rich.markup import escape

        from benchbench.errors import clip

        err_console.print(f"[bold red]error:[/] {escape(clip(str(exc)))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, Interrupted):
        err_console.print("interrupted before anything was measured; nothing was written", highlight=False)
        sys.exit(130)
    except OSError as exc:  # a path the machine refuses (too long, no permission, a full disk): the input's fault
        from rich.markup import escape

        from benchbench.errors import clip

        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        err_console.print(f"[bold red]error:[/] {escape(clip(where + (exc.strerror or str(exc))))}", highlight=False,
                          soft_wrap=True)
        sys.exit(2)
    except Exception as exc:
        if os.environ.get("BENCHBENCH_DEBUG"):
            raise
        from rich.markup import escape

        from benchbench.errors import clip

        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(clip(str(exc)))}\n"
            "This is a bug in benchbench; rerun with BENCHBENCH_DEBUG=1 for the traceback.",
            highlight=False,
        )
        sys.exit(3)


if __name__ == "__main__":  # pragma: no cover
    main()
