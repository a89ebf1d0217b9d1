"""`benchbench advise --attach --ranks 1,2 -- torchrun --nproc-per-node 2 train.py …`: the user's DDP script at
each process count, alternated run by run, and the scaling answer in parts (`benchbench.advise.scaling`)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from benchbench.cli.app import console
from benchbench.errors import BenchbenchError


def advise_ranks(command: list[str], ranks: str, runs: int, output: Path | None, json_out: Path | None,
                 results_dir: Path, steps: int, timeout: float) -> int:
    from benchbench.advise.scaling import parse_ranks, with_nproc
    from benchbench.cli.attach import open_session, options
    from benchbench.outputs import Outputs
    from benchbench.runner.attach.launch import parse_command

    counts = parse_ranks(ranks)
    script = parse_command(command)
    if script.launcher != "torchrun":
        raise BenchbenchError("--ranks sets how many processes torchrun starts: give a torchrun command "
                              "(`torchrun --nproc-per-node 2 train.py …`)")
    if runs < 1:
        raise BenchbenchError(f"--min-runs must be at least 1 with --ranks, got {runs}")
    commands = {n: with_nproc(command, n) for n in counts}
    # no profiler window and no stage timing: only the ranks' clocks are read, every run alike
    opts = replace(options(steps, "auto", "auto", None, False, timeout, 0), stages=False)
    session = open_session("advise", script, opts, None, results_dir, None, {}, {})
    try:
        report = Path(output or Path("reports") / session.suite.slug)
        session.check_outputs(Outputs().folder(report, "the advise report (--output)")
                              .file(json_out, "the JSON (--json)"))
        with session.measuring() as outcome:
            return _measure(session, commands, opts, runs, report, json_out)
        outcome.raise_failure()
        from benchbench.cli.advise_attach import _stopped

        return _stopped(130, len(session.records), session.out_path)
    finally:
        session.close()


def _measure(session: Any, commands: dict[int, list[str]], opts: Any, runs: int, report: Path,
             json_out: Path | None) -> int:
    from benchbench.advise.scaling import scaling
    from benchbench.cli.advise_attach import _stopped
    from benchbench.cli.attach import record_or_show
    from benchbench.outputs import write_text
    from benchbench.runner.attach.launch import attach as run_attached
    from benchbench.runner.attach.stopping import stopped_code

    t0 = time.monotonic()
    counts = sorted(commands)
    console.print(f"[bold]advise --attach --ranks[/] {','.join(map(str, counts))}: "
                  f"{escape(' '.join(commands[counts[-1]]))} -> {session.out_path}", highlight=False)
    points: dict[int, list[Any]] = {n: [] for n in counts}
    done = 0
    for k in range(runs):  # alternated, each order reversed the next round: a drift in the machine hits both
        for n in counts if k % 2 == 0 else counts[::-1]:
            rec, c = run_attached(commands[n], opts, session.run_id)
            record_or_show(session, rec)
            done += 1
            if stopped_code(c):
                return _stopped(c, done, session.out_path)
            console.print(f"  run {done}: {n} rank(s): " + (f"{rec.median * 1e3:.1f} ms a step, "
                                                             f"{rec.throughput:.1f} img/s" if rec.ok else
                                                             f"{rec.status}: {escape(str(rec.error))}"),
                          highlight=False)
            points[n].append(rec)
    answer = scaling(points)
    answer.update(command=commands[counts[-1]], runs=done, minutes=(time.monotonic() - t0) / 60,
                  results=str(session.out_path))
    _print(answer)
    md = report / f"{session.run_id}-ranks.md"
    write_text(md, markdown(answer), "the advise report (--output)")
    if json_out:
        write_text(json_out, json.dumps(answer, indent=2, default=str), "the JSON (--json)")
    console.print(f"results: {session.out_path}\nreport: {md}", highlight=False)
    return 0


def _print(answer: dict[str, Any]) -> None:
    from benchbench.advise.scaling import sentence

    t = Table(title=f"scaling ({answer['runs']} runs, {answer['minutes']:.1f} min)")
    for c in ("ranks", "runs", "step ms", "img/s [runs]", "speed-up", "efficiency"):
        t.add_column(c)
    for row in answer["rows"]:
        tps = row["throughput_runs"]
        t.add_row(str(row["ranks"]), str(row["runs"]), f"{row['step_s'] * 1e3:.1f}",
                  f"{row['throughput']:.1f} [{min(tps):.1f}-{max(tps):.1f}]",
                  f"{row['speedup']:.2f}x" if "speedup" in row else "1.00x (base)",
                  f"{row['efficiency']:.0%}" if "efficiency" in row else "-")
    console.print(t)
    for row in answer["rows"]:
        if "efficiency" in row:
            console.print(escape(sentence(row, answer["base_ranks"])), highlight=False)
    console.print(escape(f"note: {answer['note']}"), highlight=False)


def markdown(answer: dict[str, Any]) -> str:
    from benchbench.advise.scaling import PARTS, sentence

    lines = [f"# advise --attach --ranks: `{' '.join(answer['command'])}`", "",
             f"{answer['runs']} runs, {answer['minutes']:.1f} min; each count run alternately. Throughput is ranks x "
             "batch a rank / the mean step; the mean step is split on each rank's own clock, so the parts of the "
             "efficiency lost add up to it.", "",
             "| ranks | runs | step ms | img/s | img/s by run | speed-up | efficiency | "
             + " | ".join(PARTS[k] + " (points)" for k in PARTS) + " |",
             "|" + "---|" * (7 + len(PARTS))]
    for row in answer["rows"]:
        lost = row.get("lost") or {}
        lines.append(f"| {row['ranks']} | {row['runs']} | {row['step_s'] * 1e3:.1f} | {row['throughput']:.1f} | "
                     + ", ".join(f"{x:.1f}" for x in row["throughput_runs"]) + " | "
                     + (f"{row['speedup']:.2f}x | {row['efficiency']:.0%} | " if "efficiency" in row else
                        "base | - | ")
                     + " | ".join(f"{lost[k] * 100:+.1f}" if k in lost else "-" for k in PARTS) + " |")
    lines += [""] + [sentence(r, answer["base_ranks"]) for r in answer["rows"] if "efficiency" in r]
    lines += ["", f"_{answer['note']}_", ""]
    return "\n".join(lines)
