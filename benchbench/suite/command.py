"""A suite over the user's own command: `command:` in place of a workload, `{name}` placeholders filled from the
cell's axes — the YOLOv5-seg document's method ("change one variable at a time") on the training people have:

```yaml
name: yolo-knobs
command: yolo segment train model=yolo11n-seg.yaml data=roads.yaml batch={batch_size} workers={num_workers}
matrix: {batch_size: [8, 16], num_workers: [0, 4]}
```

Each cell is the filled command, run as `benchbench attach` runs it (`runner.command_cell`). Any name a
placeholder uses is an axis; an axis no placeholder uses, or a placeholder no cell fills, is refused before
anything runs. Values are scalars, written into the command as YAML would read them back (`true`, `8`, `ram`);
`{{` and `}}` are literal braces. The command is split like a shell line (`shlex`) before it is filled, so a value
with spaces stays one argument. `env:` sets environment variables, whose values may hold placeholders too
(`nnUNet_n_proc_DA: "{da_procs}"`). The run's own settings (steps, warm-up, profile_steps, timeout_s, device,
gate_threshold) are attach's options, set at the top level."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

from benchbench.errors import BenchbenchError, did_you_mean, short_repr
from benchbench.policy import ATTACH
from benchbench.suite.matrix import expand, resolve_device
from benchbench.suite.schema import Cell, Suite

#: the keys a command suite may have beside its matrix sections: attach's options for every cell
RUN_KEYS = ("steps", "warmup", "profile_steps", "timeout_s", "device", "gate_threshold")
KEYS = ("name", "description", "command", "env", "matrix", "include", "exclude", "profiles", "reference",
        *RUN_KEYS)
DEFAULTS: dict[str, Any] = {"steps": ATTACH.steps, "warmup": "auto", "profile_steps": ATTACH.profile_steps,
                            "timeout_s": ATTACH.timeout_s}
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # an environment variable's name (env:, --vary env:)
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|\{|\}")


def placeholders(text: str) -> list[str]:
    return [m.group(1) for m in PLACEHOLDER.finditer(text) if m.group(1)]


def render(value: Any) -> str:
    """A value as the command reads it: YAML's spelling of booleans (`true`), numbers and strings as written."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def fill(text: str, values: dict[str, Any], where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok in ("{{", "}}"):
            return tok[0]
        if m.group(1) is None:
            raise BenchbenchError(f"{where}: a lone {tok!r} in {short_repr(text)} (write {tok * 2} for a brace)")
        name = m.group(1)
        if name not in values:
            raise BenchbenchError(f"{where}: placeholder {{{name}}} is filled by no axis of this cell "
                                  f"(its axes: {', '.join(values) or 'none'})")
        return render(values[name])

    return PLACEHOLDER.sub(sub, text)


def _template(raw: Any) -> list[str]:
    if isinstance(raw, str):
        try:
            parts = shlex.split(raw)
        except ValueError as exc:
            raise BenchbenchError(f"command: {exc} in {short_repr(raw)}") from None
    elif isinstance(raw, list) and all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in raw):
        parts = [str(x) for x in raw]
    else:
        raise BenchbenchError(f"command must be a string or a list of arguments, got {short_repr(raw)}")
    if not parts:
        raise BenchbenchError("command is empty: give the training command, e.g. `command: python train.py "
                              "--batch-size {batch_size}`")
    return parts


def _env(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BenchbenchError(f"env must be a mapping of NAME: value, got {short_repr(raw)}")
    out = {}
    for k, v in raw.items():
        if not isinstance(k, str) or not ENV_NAME.fullmatch(k):
            raise BenchbenchError(f"env: {short_repr(k)} is no environment variable name")
        if isinstance(v, (dict, list)):
            raise BenchbenchError(f"env.{k} must be a single value, got {short_repr(v)}")
        out[k] = render(v) if not isinstance(v, str) else v
    return out


def _scalars(axes: dict[str, Any], where: str) -> None:
    for k, v in axes.items():
        if isinstance(v, (dict, list)):
            raise BenchbenchError(f"{where}.{k}: a command's axis takes single values (a number, a word, true/false),"
                                  f" got {short_repr(v)}")


def _run_settings(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(DEFAULTS)
    for k in RUN_KEYS:
        if k in doc:
            out[k] = doc[k]
    if not isinstance(out["steps"], int) or isinstance(out["steps"], bool) or out["steps"] < 1:
        raise BenchbenchError(f"steps must be a whole number of at least 1, got {short_repr(out['steps'])}")
    w = out["warmup"]
    if w != "auto" and (not isinstance(w, int) or isinstance(w, bool) or w < 0):
        raise BenchbenchError(f"warmup must be auto or a number of steps, got {short_repr(w)}")
    if not isinstance(out["profile_steps"], int) or out["profile_steps"] < 0:
        raise BenchbenchError(f"profile_steps must be 0 or more, got {short_repr(out['profile_steps'])}")
    t = out["timeout_s"]
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or t <= 0:
        raise BenchbenchError(f"timeout_s must be a positive number of seconds, got {short_repr(t)}")
    out["timeout_s"] = float(t)
    g = out.get("gate_threshold")
    if g is not None and not (isinstance(g, float) and 0 < g < 1):
        raise BenchbenchError(f"gate_threshold must be a fraction between 0 and 1 (0.02 = 2%), got {short_repr(g)}")
    return out


def command_cell_id(template: list[str], env: dict[str, str], axes: dict[str, Any], device: str) -> str:
    """The same command, environment and axis values on the same device: the same cell, night after night."""
    blob = json.dumps({"command": template, "env": env, "axes": axes, "device": device}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def label(axes: dict[str, Any], varied: list[str]) -> str:
    return " ".join(f"{k}={render(axes[k])}" for k in varied if k in axes) or "command"


def build_command_suite(doc: dict[str, Any], device: str | None, filters: list[str] | None, path: Path | None,
                        available: bool = True) -> Suite:
    from benchbench.suite.select import pick_command_reference

    for key in doc:
        if key not in KEYS:
            raise BenchbenchError(f"unknown key '{key}' in a command suite{did_you_mean(str(key), KEYS)}. A command "
                                  f"suite's keys: {', '.join(KEYS)}; its axes go under matrix:")
    name = doc.get("name") or (path.stem if path else "suite")
    if not isinstance(name, str) or len(name) > 120:
        raise BenchbenchError(f"name must be a string of at most 120 characters, got {short_repr(name, 60)}")
    description = doc.get("description") or ""
    if not isinstance(description, str):
        raise BenchbenchError(f"description must be a string, got {short_repr(description)}")
    template, env = _template(doc["command"]), _env(doc.get("env"))
    for t in [*template, *env.values()]:
        lone = next((m.group(0) for m in PLACEHOLDER.finditer(t) if m.group(0) in ("{", "}")), None)
        if lone:
            raise BenchbenchError(f"command: a lone {lone!r} in {short_repr(t)}: a placeholder is {{name}}; write "
                                  f"{lone * 2} for a brace")
    used = list(dict.fromkeys(n for t in [*template, *env.values()] for n in placeholders(t)))
    settings = _run_settings(doc)
    matrix, include, exclude = _sections(doc, "")
    profiles = doc.get("profiles") or {}
    if not isinstance(profiles, dict) or set(profiles) - {"cpu", "cuda"}:
        raise BenchbenchError("profiles must be a mapping with 'cpu:' and/or 'cuda:' entries")
    dev = resolve_device(device, str(settings.get("device") or "auto"), available)
    if dev in profiles:  # as a workload suite's: axis by axis into the matrix, lists replaced, settings over
        prof = profiles[dev] or {}
        if not isinstance(prof, dict):
            raise BenchbenchError(f"profiles.{dev} must be a mapping")
        bad = [k for k in prof if k not in ("matrix", "include", "exclude", *RUN_KEYS)]
        if bad:
            raise BenchbenchError(f"profiles.{dev}.{bad[0]}: a profile sets matrix, include, exclude and the run's "
                                  f"settings ({', '.join(RUN_KEYS)})")
        pm, pi, pe = _sections(prof, f"profiles.{dev}.")
        matrix.update(pm)
        include = pi if "include" in prof else include
        exclude = pe if "exclude" in prof else exclude
        settings = _run_settings({**settings, **{k: prof[k] for k in RUN_KEYS if k in prof}})
    axes_named = list(dict.fromkeys([*matrix, *(k for inc in include for k in inc)]))
    unused = [a for a in axes_named if a not in used]
    if unused:
        raise BenchbenchError(f"axis {', '.join(map(repr, unused))} is used by no placeholder of the command or its "
                              f"env{did_you_mean(unused[0], used)} (placeholders: "
                              f"{', '.join('{' + u + '}' for u in used) or 'none'})")
    combos = expand(matrix, exclude, include)
    if not combos:
        raise BenchbenchError("the matrix is empty after exclude/include: no cells to run")
    cells, seen = [], set()
    varied = [a for a in axes_named if len({json.dumps(c.get(a), sort_keys=True) for c in combos}) > 1]
    for i, combo in enumerate(combos):
        where = f"cell {i + 1} ({', '.join(f'{k}={render(v)}' for k, v in combo.items())})"
        args = [fill(t, combo, where) for t in template]
        filled_env = {k: fill(v, combo, f"{where}, env.{k}") for k, v in env.items()}
        cid = command_cell_id(template, env, combo, dev)
        if cid in seen:
            continue
        seen.add(cid)
        params = {"command": args, "env": filled_env, "axes": combo, "template": template, "data": {"kind": "command"},
                  "device": dev, **settings}
        cells.append(Cell(id=cid, label=label(combo, varied), params=params))
    if filters:
        from benchbench.suite.select import apply_filters

        cells = apply_filters(cells, filters)
    return Suite(name=name, description=description, path=path, device=dev, cells=cells,
                 reference=pick_command_reference(doc.get("reference"), cells), varied=varied)


def _sections(doc: dict[str, Any], where: str) -> tuple[dict[str, list[Any]], list[dict[str, Any]],
                                                        list[dict[str, Any]]]:
    matrix = doc.get("matrix") or {}
    if not isinstance(matrix, dict):
        raise BenchbenchError(f"{where}matrix must be a mapping of axis: [values]")
    for k, vs in matrix.items():
        if not isinstance(vs, list) or not vs:
            raise BenchbenchError(f"{where}matrix.{k} must be a non-empty list of values, got {short_repr(vs)}")
        for v in vs:
            _scalars({k: v}, f"{where}matrix")
    lists = []
    for key in ("include", "exclude"):
        raw = doc.get(key) or []
        if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
            raise BenchbenchError(f"{where}{key} must be a list of mappings of axis: value")
        for x in raw:
            _scalars(x, f"{where}{key}")
        lists.append([{str(k): v for k, v in x.items()} for x in raw])
    return {str(k): v for k, v in matrix.items()}, lists[0], lists[1]
