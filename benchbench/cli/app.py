"""The CLI's application object, consoles and shared options; `main` turns errors into exit codes.

Exit codes: 0 all cells ok (or no regression), 1 some cells failed (or a
regression), 2 invalid input. Invalid input never shows a traceback.
"""

from __future__ import annotations

import os
import sys
import time
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


from benchbench.session import Interrupted, _on_sigterm  # noqa: E402, F401 - SIGTERM is handled like Ctrl-C


def with_executor_options(fn: Any) -> Any:
    """Give a command that runs cells every executor's options, generated from each executor's config (its fields
    declare their flags: `runner.executor.option`), passed to it as `executor_options={name: {field: value}}`.
    A new executor's options reach every such command without an edit here."""
    import dataclasses
    import functools
    import inspect
    import typing

    from benchbench.runner.executors import EXECUTORS

    hints = typing.get_type_hints(fn, include_extras=True)
    sig = inspect.signature(fn)
    params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()
              if p.name != "executor_options"]
    generated: dict[str, tuple[str, str, str]] = {}  # parameter -> (executor, field, flag)
    for name in EXECUTORS:
        cfg = EXECUTORS[name]().config
        types = typing.get_type_hints(cfg)
        for f in dataclasses.fields(cfg):
            if f.metadata.get("cli") is False or "flag" not in f.metadata:
                continue
            t = types[f.name]
            multiple = typing.get_origin(t) is tuple
            base = list[str] if multiple else next((a for a in typing.get_args(t) if a is not type(None)), t)
            default = f.default if f.default is not dataclasses.MISSING else None
            shown = f" [default: {default}]" if default not in (None, ()) else ""
            param = f"{name}__{f.name}"
            generated[param] = (name, f.name, f.metadata["flag"])
            ann = typing.Annotated[typing.Optional[base], typer.Option(f.metadata["flag"],  # noqa: UP045
                                                                      help=f.metadata["help"] + shown)]
            params.append(inspect.Parameter(param, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann))

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        opts: dict[str, dict[str, Any]] = {name: {} for name in EXECUTORS}
        for param, (name, fld, _) in generated.items():
            value = kwargs.pop(param, None)
            opts[name][fld] = tuple(value) if isinstance(value, list) else value
        return fn(*args, executor_options=opts, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    wrapper._executor_flags = {param: flag for param, (_, _, flag) in generated.items()}  # type: ignore[attr-defined]
    return wrapper


def executor_choice(name: str, executor_options: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The chosen executor's options; another executor's options given here are refused, never ignored."""
    from benchbench.runner.executors import EXECUTORS, spec

    spec(name)  # an unknown executor is an input error before anything runs
    import dataclasses

    for other, fields in executor_options.items():
        if other == name:
            continue
        flags = {f.name: f.metadata.get("flag") for f in dataclasses.fields(EXECUTORS[other]().config)}
        stray = [flags[k] for k, v in fields.items() if v not in (None, ())]
        if stray:
            raise BenchbenchError(f"{', '.join(stray)} set(s) how the {other} executor runs cells: they apply with "
                                  f"--executor {other} only (this command's executor is {name!r})")
    return {k: v for k, v in executor_options.get(name, {}).items() if v not in (None, ())}


def _executor_help() -> str:
    from benchbench.runner.executors import help_line

    return "Where cells run: " + help_line() + "."


ExecutorOpt = Annotated[str, typer.Option("--executor", "--isolation", help=_executor_help())]


_IMPORTED = time.monotonic()


def process_age_s() -> float:
    """Seconds since this process started (the interpreter's start-up and every import included), from the
    kernel's record of its start; since the CLI was imported where there is none."""
    try:
        stat = Path("/proc/self/stat").read_text()
        started = int(stat.rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
        return max(0.0, float(Path("/proc/uptime").read_text().split()[0]) - started)
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


class Parts:
    """A command's wall time from the process's start, in the parts it marks: what came before the first part
    (the interpreter, the imports, reading the suite) is the start-up."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, float]] = [("start-up", process_age_s())]
        self._last = time.monotonic()

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.parts.append((name, now - self._last))
        self._last = now

    def line(self, verbose: bool) -> str:
        """`elapsed 9.1 s`, the process's wall time so far; with the parts where `verbose`."""
        total = sum(s for _, s in self.parts) + time.monotonic() - self._last
        text = f"elapsed {total:.1f} s"
        return text + " (" + ", ".join(f"{n} {s:.1f} s" for n, s in self.parts) + ")" if verbose else text


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


def entry() -> None:
    """The console command: `main`, then the process ends without unloading torch, which takes a second or more
    on a CPU after everything is written, closed and flushed (the atexit handlers run first, as at any exit).
    Where a thread other than the main one is still alive, the interpreter ends as usual, joining it."""
    import atexit
    import threading

    try:
        main()
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    if threading.active_count() > 1:
        sys.exit(code)
    if isinstance(code, str):  # sys.exit("message"): said on stderr, exit 1, as the interpreter does
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    entry()
