"""`benchbench advise --attach -- python train.py`: the outside knobs measured on the user's own script, the
code-change knobs listed with their bounds and lines (`benchbench.advise.attached`)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from benchbench.cli.app import console, err_console
from benchbench.errors import BenchbenchError


def parse_outside(knobs: str | None) -> list[str] | None:
    from benchbench.advise.attached import CODE_KNOBS, OUTSIDE_KNOBS

    if knobs is None:
        return None
    names = [k.strip() for k in knobs.split(",") if k.strip()]
    bad = [k for k in names if k not in OUTSIDE_KNOBS]
    if not names or bad:
        code = [k for k in bad if k in CODE_KNOBS]
        why = (f"{', '.join(code)} needs the script's code changed: attach lists it with its bound, it cannot set it"
               if code else f"{', '.join(bad) or knobs!r} is not a knob attach can set")
        raise BenchbenchError(f"--knobs: {why}; the outside knobs are {', '.join(OUTSIDE_KNOBS)}")
    return list(dict.fromkeys(names))


def advise_attached(command: list[str], knobs: str | None, repeat_max: int, min_runs: int, min_effect: float,
                    output: Path | None, json_out: Path | None, results_dir: Path, steps: int,
                    timeout: float, budget_min: float | None = None, vary: list[str] | None = None,
                    epochs: int | None = None) -> int:
    from benchbench.cli.attach import open_session, options
    from benchbench.outputs import Outputs
    from benchbench.runner.attach.launch import parse_command

    named = parse_outside(knobs)
    if repeat_max < 2 or min_runs < 2 or min_runs > repeat_max:
        raise BenchbenchError("need 2 <= --min-runs <= --repeat-max (one run a side cannot be judged)")
    if not 0 < min_effect < 1:
        raise BenchbenchError(f"--min-effect must be between 0 and 1, got {min_effect}")
    if budget_min is not None and budget_min <= 0:
        raise BenchbenchError(f"--budget-min must be positive, got {budget_min:g}")
    from benchbench.advise.vary import parse_vary

    varies = [parse_vary(v) for v in vary or []]
    script = parse_command(command)
    opts = options(steps, "auto", "auto", None, False, timeout, 2, epochs=epochs)
    session = open_session("advise", script, opts, None, results_dir, None, {}, {})
    try:
        report = Path(output or Path("reports") / session.suite.slug)
        session.check_outputs(Outputs().folder(report, "the advise report (--output)")
                              .file(json_out, "the JSON (--json)"))
        with session.measuring() as outcome:  # SIGTERM between two runs, a full disk: ended cleanly
            return _measure(session, script, opts, named, varies, report, json_out, repeat_max, min_runs,
                            min_effect, budget_min)
        outcome.raise_failure()  # a full disk, a refusal: said as before
        return _stopped(130, len(session.records), session.out_path)  # else a signal between two runs
    finally:
        session.close()


def _measure(session: Any, script: Any, opts: Any, named: list[str] | None, varies: list[Any], report: Path,
             json_out: Path | None, repeat_max: int, min_runs: int, min_effect: float,
             budget_min: float | None) -> int:
    """The unmodified script measured and explained, then each knob A/B against it, in the session."""
    from benchbench.advise.attached import code_knobs, degraded_runs, measure_knob, outside_knobs
    from benchbench.cli.attach import record_or_show
    from benchbench.outputs import write_text
    from benchbench.runner.attach.launch import attach as run_attached
    from benchbench.runner.attach.stopping import stopped_code

    run_id, out_path = session.run_id, session.out_path
    t0 = time.monotonic()
    console.print(f"[bold]advise --attach[/]: {escape(' '.join(script.command))} -> {out_path}", highlight=False)
    base, c = run_attached(script.command, opts, run_id)
    record_or_show(session, base)
    if stopped_code(c):
        return _stopped(c, 1, out_path)
    if not base.ok:
        err_console.print(f"[bold red]error:[/] the unmodified script could not be measured: {escape(str(base.error))}",
                          highlight=False, soft_wrap=True)
        return 1
    # every A/B run: the same fixed warm-up (the losses align step by step), no profiler window, no stage timing
    ab = replace(opts, warmup=max(2, base.warmup.steps if base.warmup else 2), profile_steps=0, stages=False)
    runs = [0]

    def run(o: Any) -> Any:
        rec, c = run_attached(o.command or script.command, o, run_id)
        record_or_show(session, rec)
        runs[0] += 1
        if stopped_code(c):
            raise _Stop(c)
        console.print(f"  run {runs[0]}: {escape(rec.label)}: " + (f"{rec.median * 1e3:.1f} ms a step" if rec.ok
                                                                   else f"{rec.status}: {escape(str(rec.error))}"),
                      highlight=False)
        return rec

    cands, skipped = ([], []) if varies and named is None else (outside_knobs(base), [])
    if opts.epochs:  # judged on the whole epoch: every knob, and the validation loader's own
        from benchbench.advise.attached import val_loader_knobs

        cands = [replace(k, statistic="epoch") for k in cands] + val_loader_knobs(base)
    for v in varies:  # the command's own arguments: each value alone against the command as given
        from benchbench.advise.attached import Knob
        from benchbench.advise.vary import variants

        vs, sk = variants(script.command, dict(os.environ), v)
        skipped += sk
        cands += [Knob(v.label, x["to"], why=f"{v.label}: {x['to']} in place of the command's own", command=x["command"]
                       if not v.env else None, env=x["env"], statistic="per_image") for x in vs]
    for s in skipped:
        err_console.print(f"note: --vary {escape(s)}: not measured", highlight=False)
    if named is not None:
        fits = {k.name for k in cands}
        away = [k for k in named if k not in fits]
        if away:
            err_console.print(f"warning: --knobs {', '.join(away)}: does not apply to this script (it has "
                              f"{', '.join(sorted(fits)) or 'none'})", highlight=False)
        cands = [k for k in cands if k.name in named or k.command is not None or k.env]
    results, over = [], []
    try:
        for k in cands:  # the budget is checked between knobs: a knob's A/B is never cut in half
            if budget_min is not None and time.monotonic() - t0 > budget_min * 60:
                over.append(k.name)
                continue
            results.append(measure_knob(k, ab, run, min_runs, repeat_max, min_effect))
    except _Stop as stop:
        return _stopped(stop.code, runs[0] + 1, out_path)
    code = code_knobs(base)
    warnings = degraded_runs(base, results)
    if over:
        warnings.append(f"--budget-min {budget_min:g}: not measured, the budget was spent: {', '.join(over)}")
    doc = {"command": script.command, "base": {"cell_id": base.cell_id, "median_s": base.median,
                                               "epoch_s": base.epochs.wall_s if base.epochs else None,
                                               "lines": base.attached.lines if base.attached else None},
           "measured": [r.to_json() for r in results], "code_changes": code, "runs": runs[0] + 1,
           "minutes": (time.monotonic() - t0) / 60, "results": str(out_path), "warnings": warnings}
    _print(doc, base)
    for w in warnings:
        err_console.print(f"[bold yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    md = report / f"advise-{run_id}.md"
    write_text(md, markdown(doc, base), "the advise report (--output)")
    if json_out:
        write_text(json_out, json.dumps(doc, indent=2, default=str), "the JSON (--json)")
    console.print(f"results: {out_path}\nreport: {md}", highlight=False)
    return 0


class _Stop(Exception):
    """benchbench was stopped by a signal during an A/B run (its record is already kept)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _stopped(code: int, runs: int, out_path: Path) -> int:
    from benchbench.cli.attach import say_stopped

    say_stopped(runs, out_path, "no verdict: the A/B was cut short")
    return code


def _verdict(r: dict[str, Any]) -> str:
    """A verdict with what kind of change it was: a training change is judged per image and never recommended on
    speed alone."""
    tail = " (recommended)" if r["recommended"] else " per image (a training change)" if \
        r.get("kind") == "training change" and r["verdict"] in ("faster", "slower") else ""
    return r["verdict"] + tail


def _iv(r: dict[str, Any]) -> str:
    if r["speedup"] is None:
        return ""
    lo, hi = r["interval"] or (None, None)
    return f"{r['speedup']:.2f}x" + (f" [{lo:.2f}-{hi:.2f}]" if lo else "")


def _print(doc: dict[str, Any], base: Any) -> None:
    ep = doc["base"].get("epoch_s")
    t = Table(title=f"advise --attach: {base.label} ({doc['runs']} runs, {doc['minutes']:.1f} min; base "
                    f"{base.median * 1e3:.1f} ms a step" + (f", {ep:.2f} s an epoch: judged on the epoch)" if ep
                                                            else ")"))
    for c in ("knob", "to", "verdict", "speed-up [95%]", "numerics", "why"):
        t.add_column(c, overflow="fold")
    for r in doc["measured"]:
        t.add_row(r["knob"], str(r["to"]), _verdict(r), _iv(r),
                  (r["numerics"] or {}).get("verdict", ""), escape(r["why"]),
                  style="green" if r["recommended"] else None)
    console.print(t)
    for c in doc["code_changes"]:
        b = f"at most {c['bound']:.2f}x" if c["bound"] else "unbounded"
        console.print(escape(f"needs the code changed: {c['knob']} -> {c['to']} ({b}; {c['why']}): {c['change']}"
                             + (f" at {c['where']}" if c["where"] else "")), highlight=False)


def markdown(doc: dict[str, Any], base: Any) -> str:
    lines = [f"# advise --attach: `{' '.join(doc['command'])}`", "",
             f"Base: {base.median * 1e3:.1f} ms a step"
             + (f", {doc['base']['epoch_s']:.2f} s an epoch (every knob judged on the whole epoch)"
                if doc["base"].get("epoch_s") else "")
             + f" ({base.label}, cell {base.cell_id}); {doc['runs']} runs, "
             f"{doc['minutes']:.1f} min. Each knob alternated with the unmodified script, fresh processes, the "
             "interval over run medians.", ""]
    lines += [f"> **Warning:** {w}" for w in doc.get("warnings") or []] + ([""] if doc.get("warnings") else [])
    lines += ["## Measured (set from outside the script, or its own arguments with --vary)", "",
             "| knob | to | verdict | speed-up [95%] | numerics | why |", "|---|---|---|---|---|---|"]
    for r in doc["measured"]:
        lines.append(f"| {r['knob']} | {r['to']} | {_verdict(r)} | "
                     f"{_iv(r)} | {(r['numerics'] or {}).get('why', '')} | {r['why']} |")
    if not doc["measured"]:
        lines.append("| (none applies) | | | | | |")
    lines += ["", "## Needs the code changed (bounds from the explanation, not measured)", "",
              "| knob | to | bound | why | change | where |", "|---|---|---|---|---|---|"]
    for c in doc["code_changes"]:
        bound = f"{c['bound']:.2f}x" if c["bound"] else "unbounded"
        lines.append(f"| {c['knob']} | {c['to']} | {bound} | {c['why']} | {c['change']} | {c['where'] or ''} |")
    return "\n".join(lines) + "\n"
