"""One invocation of benchbench that measures: the session `run`, `advise` and `tune-batch` are planners on.

A session owns what every measuring command must get right, once:

- the run id, the results file and its store (all-or-nothing appends, a damaged tail set aside);
- what it was asked (`Invocation`: its kind, the suite's hash, the options its planner depends on), recorded in
  every record, so `--resume` continues *that* session — a command line that contradicts it, another suite's
  file, or another kind's file (a `run`'s file resumed by `advise`) is refused;
- every output checked before anything is measured;
- the executor, built from its config (its command-line options), with its work folder where it needs one;
- the environment, and the device's peak calibrated in a child process unless the executor measures them on
  its nodes;
- a clean stop: SIGTERM (from the session's start) and Ctrl-C end the running cell's process group, a full
  disk or an executor's refusal stop the session; what finished is kept, and the resume command is one line.

The CLI parses, renders and chooses exit codes; planners decide what to run next.
"""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchbench.errors import BenchbenchError, short_repr
from benchbench.outputs import Outputs
from benchbench.record import Record
from benchbench.record.parts import Invocation
from benchbench.results import ResultStore, ResultsWriteError, new_run_id, read_records
from benchbench.runner.executor import Executor
from benchbench.runner.executors import config_of, get_executor, spec

Kind = Literal["run", "advise", "tune"]
PREFIX = {"run": "", "advise": "advise-", "tune": "tune-"}


class Interrupted(Exception):
    """SIGTERM or SIGHUP, raised where the session is, so it stops like Ctrl-C: recording what finished."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted()


def file_sha1(path: Path | None) -> str | None:
    try:
        return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:12] if path else None
    except OSError:
        return None


def kind_of(r: Record) -> Kind:
    """The kind of session that wrote a record (older records: what they carry says)."""
    if r.invocation is not None:
        return r.invocation.kind
    return "advise" if r.advise is not None else "tune" if r.probe_of is not None else "run"


def resume_path(resume: str | Path, results_dir: Path, slug: str, kind: Kind) -> Path:
    """The file `--resume` names, or this suite's latest session of this kind for `--resume latest`."""
    if str(resume) != "latest":
        p = Path(resume)
        if not p.is_file():
            raise BenchbenchError(f"--resume: results file not found: {p}")
        return p
    runs = sorted(p for p in (Path(results_dir) / slug).glob(f"{PREFIX[kind]}*.jsonl")
                  if kind != "run" or not p.name.startswith(("advise-", "tune-")))
    if not runs:
        raise BenchbenchError(f"--resume latest: no earlier {kind} of this suite in {Path(results_dir) / slug}")
    return runs[-1]


def continue_options(prior: list[Record], kind: Kind, suite_name: str, suite_path: Path | None,
                     given: dict[str, Any], resume: Path) -> tuple[dict[str, Any], str | None]:
    """The options the resumed session was asked, and a note; a command line that contradicts them is refused."""
    others = sorted({r.suite for r in prior} - {suite_name})
    if others:
        raise BenchbenchError(f"--resume: that results file belongs to suite {', '.join(map(short_repr, others))}, "
                              f"not {short_repr(suite_name)}; resume it with its own suite")
    kinds = {kind_of(r) for r in prior}
    if kinds - {kind}:
        k = sorted(kinds - {kind})[0]
        cmd = {"run": "run --resume", "advise": "advise --resume", "tune": "tune-batch --resume"}[k]
        raise BenchbenchError(f"--resume {resume}: that results file was written by `{k}`, not `{kind}`; a results "
                              f"file belongs to one kind of session (resume it with `{cmd}`)")
    inv = next((r.invocation for r in reversed(prior) if r.invocation is not None), None)
    if inv is None:  # written before sessions recorded what they were asked: the command line decides
        return dict(given), None
    asked = inv.options
    clash = [f"--{k.replace('_', '-')} {v!r} (the {kind} had {asked.get(k)!r})" for k, v in given.items()
             if v is not None and v != asked.get(k) and not (not asked.get(k) and not v)]
    if clash:
        raise BenchbenchError(f"--resume continues the {kind} as it was started; this command line contradicts it: "
                              + "; ".join(clash) + ". Leave these options out to continue it, or start anew.")
    note = None
    if inv.suite_sha1 and suite_path is not None and inv.suite_sha1 != file_sha1(suite_path):
        note = f"{suite_path} changed since this {kind} started; cells it no longer has are left, new ones run"
    return {k: asked.get(k, given.get(k)) for k in set(given) | set(asked)}, note


def script_suite(name: str, cell_id: str, label: str, params: dict[str, Any]) -> Any:
    """A user's script as a suite of one cell (`attach`, `advise --attach`): the session's run id, results file,
    output checks, signals, invocation and `--resume` are then the same as a suite's."""
    from benchbench.suite import Cell, Suite

    cell = Cell(cell_id, label, params)
    return Suite(name=name, description="", path=None, device=str(params.get("device") or "auto"), cells=[cell],
                 reference=cell)


@dataclass
class Outcome:
    """How a session's measuring ended."""

    interrupted: bool = False  # SIGTERM or Ctrl-C
    write_failed: str | None = None  # the results file could not take a record (a full disk)
    refused: str | None = None  # the executor refused to go on (SLURM refused a job)

    @property
    def stopped(self) -> bool:
        return self.interrupted or self.write_failed is not None or self.refused is not None

    @property
    def exit_code(self) -> int:
        return 1 if self.write_failed else 2 if self.refused else 130 if self.interrupted else 0

    def raise_failure(self) -> None:
        """A full disk or a refusal, raised again for a command that reports it as an error (attach)."""
        if self.write_failed:
            raise ResultsWriteError(self.write_failed)
        if self.refused:
            raise BenchbenchError(self.refused)


@dataclass
class Session:
    kind: Kind
    suite: Any  # suite.Suite
    suite_path: Path | None
    out_path: Path
    run_id: str
    store: ResultStore
    invocation: Invocation
    options: dict[str, Any]
    executor_name: str
    executor_config: Any
    prior: list[Record] = field(default_factory=list)
    note: str | None = None
    records: list[Record] = field(default_factory=list)
    _executor: Executor | None = None
    _old_term: Any = None

    @classmethod
    def open(cls, kind: Kind, load_suite: Any, suite_path: Path | None, *, given: dict[str, Any],
             defaults: dict[str, Any], executor: str = "process", executor_options: dict[str, Any] | None = None,
             output: Path | None = None, results_dir: Path = Path("results"), resume: str | Path | None = None
             ) -> Session:
        """`load_suite(options)` builds the suite from the options that decide it (a run's filters)."""
        # from the start: a SIGTERM (a CI cancel, a job's time limit) or SIGHUP (a closed terminal) before the
        # first cell too
        old = {sig: signal.signal(sig, _on_sigterm) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            config = config_of(executor, executor_options)  # an unknown executor or a bad option: before anything
            prior: list[Record] = []
            note = None
            opts = dict(given)
            out_path: Path | None = None
            if resume:
                whole = load_suite({})
                out_path = resume_path(resume, results_dir, whole.slug, kind)
                ResultStore(out_path).repair_tail()  # a session cut mid-write (full disk) resumes on a whole file
                prior = read_records([out_path], warn=True) if out_path.stat().st_size else []
                opts, note = continue_options(prior, kind, whole.name, suite_path, given, out_path)
            opts = {k: (defaults.get(k) if opts.get(k) is None else opts[k]) for k in set(opts) | set(defaults)}
            suite = load_suite(opts)
            run_id = prior[-1].run_id if prior else PREFIX[kind] + new_run_id()
            if output is not None:
                out_path = output
            elif out_path is None:
                out_path = Path(results_dir) / suite.slug / f"{run_id}.jsonl"
            recorded = {k: opts.get(k) for k in given}
            inv = Invocation(kind=kind, suite_sha1=file_sha1(suite_path), options=recorded)
            return cls(kind, suite, suite_path, out_path, run_id, ResultStore(out_path), inv, opts, executor, config,
                       prior, note, _old_term=old)
        except BaseException:
            for sig, h in old.items():
                signal.signal(sig, h)
            raise

    # ------------------------------------------------------------------ before measuring
    def check_outputs(self, outputs: Outputs | None = None) -> None:
        """Every output this session will write, checked before anything is measured."""
        (outputs or Outputs()).check()
        self.store.check_writable()

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            s = spec(self.executor_name)
            folder = self.out_path.parent / ".submitit" / self.run_id if s.capabilities.work_folder else None
            self._executor = get_executor(self.executor_name, None, folder) if self.executor_config is None else \
                s.build(self.executor_config, folder)
        return self._executor

    @property
    def inline(self) -> bool:
        return self.executor_name == "inline"

    def environment(self, calibrate: bool, extra_dtypes: tuple[str, ...] = (), recalibrate: bool = False
                    ) -> dict[str, Any]:
        """The environment fingerprint, and the device's measured peak when asked: kept from an earlier run on
        this machine, or measured in a child process (unless the executor measures both where its cells run)."""
        from benchbench.measure.env import environment
        from benchbench.runner import calibrate_peak

        env = dict(environment(self.suite.device))
        if calibrate and not spec(self.executor_name).capabilities.measures_env_on_node:
            env["peak_flops"] = calibrate_peak(self.suite, "inline" if self.inline else "process", extra_dtypes,
                                               env.get("fingerprint"), recalibrate)
        return env

    # ------------------------------------------------------------------ measuring
    def record(self, rec: Record) -> Record:
        """A measured record, stamped with what this session was asked, appended (all or nothing) and kept."""
        rec = rec.model_copy(update={"invocation": self.invocation})
        self.store.append(rec)
        self.records.append(rec)
        return rec

    @contextmanager
    def measuring(self) -> Iterator[Outcome]:
        """Around the measuring: a signal, a full disk or an executor's refusal ends it cleanly (the running
        cell's process group is ended by its executor as the exception passes), never a traceback."""
        out = Outcome()
        try:
            yield out
        except (KeyboardInterrupt, Interrupted):
            out.interrupted = True
        except ResultsWriteError as exc:
            out.write_failed = str(exc)
        except BenchbenchError as exc:
            out.refused = str(exc)

    def resume_command(self, command: str, device: str = "auto", outputs: tuple[str, ...] = ()) -> str:
        """The one-line command that continues this session (its options are recorded in the file; where its
        reports go is not, so `outputs` carries the options that named them)."""
        import shlex

        where = f" {self.suite_path}" if self.suite_path else ""
        return f"benchbench {command}{where} --resume {self.out_path}" + (f" --device {device}" if device != "auto"
                                                                         else "") + \
            "".join(f" {shlex.quote(x)}" for x in outputs)

    def close(self) -> None:
        if self._old_term is not None:
            for sig, h in self._old_term.items():
                signal.signal(sig, h)
            self._old_term = None
