"""A hostile run: every subcommand driven with bad arguments and bad files, never a traceback or an internal error.

Two parts: the cases a second hostile run found (each kind with its message, exit 2, nothing measured), and a
Hypothesis fuzzer that reads every subcommand and option from the CLI itself (so a new option is fuzzed the day
it is added) and drives them with generated values and files — derandomised, so CI is deterministic. It asserts
exit 0, 1, 2 or 130 with no Python traceback and no "internal error".
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import typer
from conftest import ROOT, write_suite
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchbench.cli import app, main

EXAMPLE = ROOT / "results" / "examples" / "segformer_channels-cpu.jsonl"


def invoke(*args: str) -> tuple[int | str, str]:
    """The CLI in this process: (exit code, stdout + stderr)."""
    sys.argv = ["benchbench", *map(str, args)]
    out = io.StringIO()
    code: int | str = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException as exc:
            import traceback

            code = f"raised {type(exc).__name__}"
            out.write(traceback.format_exc())
    return code, out.getvalue()


def clean(code: int | str, text: str) -> bool:
    return code in (0, 1, 2, 130) and "Traceback" not in text and "internal error" not in text


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files a hostile user hands benchbench: good ones of the wrong kind, damaged ones, huge ones."""
    d = tmp_path_factory.mktemp("hostile")
    p: dict[str, Path] = {}
    p["results"] = d / "results.jsonl"
    shutil.copy(EXAMPLE, p["results"])
    good = json.loads(EXAMPLE.read_text().splitlines()[0])
    p["minimal"] = d / "minimal.jsonl"  # an ok record with a median and nothing else: refused, not crashed on
    p["minimal"].write_text(json.dumps({"schema": "benchbench.result/1", "suite": "s", "run_id": "r", "cell_id": "c",
                                        "params": {"batch_size": 2}, "status": "ok",
                                        "step_time_s": {"median": 0.1}}) + "\n")
    p["bare"] = d / "bare.jsonl"  # the least a record can be and still be accepted: every reader must cope
    p["bare"].write_text(json.dumps({"schema": "benchbench.result/1", "suite": "s", "run_id": "r", "cell_id": "c",
                                     "params": {"batch_size": 2}, "status": "ok",
                                     "step_time_s": {"samples": [0.1, 0.12, 0.11]}}) + "\n")
    p["damaged"] = d / "damaged.jsonl"
    p["damaged"].write_text(json.dumps(good) + "\n{not json\n" + json.dumps({**good, "status": 7}) + "\n")
    p["empty"] = d / "empty.jsonl"
    p["empty"].write_text("")
    p["binary"] = d / "binary.jsonl"
    p["binary"].write_bytes(os.urandom(2048))
    p["folder"] = d / "folder"
    p["folder"].mkdir()
    p["file"] = d / "afile"
    p["file"].write_text("x")
    p["missing"] = d / "missing" / "nothing.jsonl"
    from test_syncs import item, step_with

    p["trace"] = d / "trace.json"
    p["trace"].write_text(json.dumps({"traceEvents": step_with(item).events}))
    zero = step_with(item).events
    for e in zero:
        if e.get("cat") == "kernel":
            e["dur"] = 0
    p["zero_trace"] = d / "zero.json"
    p["zero_trace"].write_text(json.dumps({"traceEvents": zero}))
    p["deep_json"] = d / "deep.json"
    p["deep_json"].write_text("[" * 100_000 + "]" * 100_000)
    p["bad_gz"] = d / "bad.json.gz"
    p["bad_gz"].write_bytes(gzip.compress(b"{\"traceEvents\": [")[:-4])
    p["deep_yaml"] = d / "deep.yaml"
    p["deep_yaml"].write_text("a: " + "[" * 3000 + "]" * 3000 + "\n")
    p["bad_suite"] = write_suite(d / "bad.yaml", "name: bad\narch: Unet\nencodr: resnet18\n")
    p["bad_encoder"] = write_suite(d / "badenc.yaml", "name: be\narch: Unet\nencoder: resnet18x\nresolution: 32\n")
    p["long_name"] = write_suite(d / "long.yaml", "name: " + "x" * 5000 + "\narch: Unet\n")
    p["not_utf8"] = d / "latin1.yaml"
    p["not_utf8"].write_bytes("name: caf\xe9\n".encode("latin-1"))
    p["quickstart"] = ROOT / "suites" / "quickstart.yaml"
    recs = [json.loads(x) for x in EXAMPLE.read_text().splitlines()]
    p["qs_run"] = d / "qs-run.jsonl"  # a `run` of the quickstart suite
    p["qs_run"].write_text("".join(json.dumps({**r, "suite": "quickstart"}) + "\n" for r in recs[:2]))
    p["qs_advise"] = d / "qs-advise.jsonl"  # an advise experiment on it, asked for --knobs amp
    tag = {"role": "base-explained", "knob": "", "base": recs[0]["cell_id"]}
    asked = {"kind": "advise", "options": {"cell": "Unet", "knobs": ["amp"], "repeat_max": 3, "min_runs": 2,
                                           "min_effect": 0.05}}
    p["qs_advise"].write_text(json.dumps({**recs[0], "suite": "quickstart", "run_id": "advise-x", "advise": tag,
                                          "invocation": asked}) + "\n")
    p["db"] = d / "history.db"
    code, text = invoke("history", "add", p["results"], "--db", p["db"])
    assert code == 0, text
    return p


@pytest.mark.parametrize("args,message", [
    # outputs that cannot be written: refused before anything is measured, exit 2
    (["advise", "{quickstart}", "--cell", "Unet", "--device", "cpu", "-o", "{file}"], "is a file, not a directory"),
    (["advise", "{quickstart}", "--cell", "Unet", "--device", "cpu", "--json", "{file}/x.json"],
     "is a file, not a directory"),
    (["compare", "{results}", "{results}", "--markdown", "{file}/x.md"], "--markdown"),
    (["compare", "{results}", "{results}", "--json", "{folder}"], "is a directory"),
    (["history", "show", "--db", "{db}", "-o", "{file}/t.png"], "the trend plot (-o)"),
    (["history", "check", "--db", "{db}", "--markdown", "{file}/x.md"], "--markdown"),
    (["history", "add", "{results}", "--db", "{file}/x.db"], "the history store"),
    (["merge", "{results}", "-o", "{file}/m.jsonl"], "the merged results (--output)"),
    (["report", "{results}", "-o", "{file}"], "the reports (--output)"),
    (["run", "{quickstart}", "--device", "cpu", "--trace", "{file}/tr"], "--trace"),
    (["run", "{quickstart}", "--device", "cpu", "--reports-dir", "{file}"], "--reports-dir"),
    (["tune-batch", "{quickstart}", "--device", "cpu", "--results-dir", "{file}"], "cannot write results"),
    (["baseline", "save", "{results}", "--name", "a", "--baselines-dir", "{file}"], "the baseline (--baselines-dir)"),
    (["baseline", "save", "{results}", "--name", "../x"], "baseline name"),
    # records the validator accepts, readers can use; what they cannot use is refused with file:line
    (["report", "{minimal}", "-o", "{folder}"], "no benchbench result records"),
    (["history", "add", "{minimal}", "--db", "{folder}/m.db"], "no benchbench result records"),
    # traces and suites that would recurse or crash
    (["explain-trace", "{deep_json}"], "nested too deeply"),
    (["list", "{deep_yaml}"], "too deeply"),
    (["list", "{long_name}"], "characters"),
    (["list", "{bad_encoder}"], "unknown encoder"),
    # advise's options, refused before the first run
    (["advise", "{quickstart}", "--cell", "Unet", "--device", "cpu", "--knobs", ",,"], "names no knob"),
    (["advise", "{quickstart}", "--cell", "Unet", "--device", "cpu", "--knobs", "workers"], "not a knob"),
    (["advise", "{quickstart}", "--cell", "Unet", "--device", "cpu", "--knobs", "cache"], "not a knob that applies"),
    (["advise", "{quickstart}", "--cell", "Unet", "--device", "cpu", "--budget-min", "nan"], "--budget-min"),
    (["advise", "{quickstart}", "--cell", "Unet", "--device", "cpu", "--resume", "{qs_run}"],
     "written by `run`, not `advise`"),
    (["advise", "{quickstart}", "--device", "cpu", "--resume", "{qs_advise}", "--knobs", "compile"],
     "contradicts it: --knobs ['compile'] (the advise had ['amp'])"),
    # SLURM's options: names, not shell text; never ignored silently
    (["run", "{quickstart}", "--device", "cpu", "--executor", "slurm", "--slurm-partition", "gpu\n#SBATCH --x"],
     "not a SLURM name"),
    (["run", "{quickstart}", "--device", "cpu", "--executor", "slurm", "--slurm-constraint", "a;rm -rf /"],
     "not a SLURM name"),
    (["run", "{quickstart}", "--device", "cpu", "--slurm-partition", "gpu"], "apply with --executor slurm only"),
])
def test_each_kind_is_a_message_and_exit_2(pool, tmp_path, monkeypatch, args, message) -> None:
    monkeypatch.chdir(tmp_path)
    code, text = invoke(*(a.format(**pool) for a in args))
    assert code == 2 and message in text, text[-2000:]
    assert clean(code, text)
    assert not list(tmp_path.rglob("*.jsonl")), "something was measured before the refusal"


def test_a_huge_value_is_never_printed_whole(pool, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, text = invoke("list", pool["long_name"])
    assert code == 2 and "x" * 200 not in text and "5,000 characters" in text


def test_the_least_record_accepted_is_read_by_every_reader(pool, tmp_path, monkeypatch) -> None:
    """What validation accepts, every reader handles: a record of samples and little else."""
    monkeypatch.chdir(tmp_path)
    bare = pool["bare"]
    for args in (["report", bare, "-o", tmp_path / "rep"], ["compare", bare, bare], ["export", bare, "-o", "e.json"],
                 ["history", "add", bare, "--db", "h.db"], ["history", "show", "--db", "h.db", "-o", "t.html"],
                 ["history", "check", "--db", "h.db"], ["report", bare, "-o", tmp_path / "rep2", "--history", "h.db"],
                 ["merge", bare, "-o", "m.jsonl"], ["explain-trace", pool["trace"], "--record", bare]):
        code, text = invoke(*args)
        assert clean(code, text) and code in (0, 1), (args, text[-1500:])


def test_help_is_not_cut_out_of_a_terminal() -> None:
    code, text = invoke("run", "--help")
    assert code == 0 and "--executor" in text and "--isol…" not in text and "--isolation" in text


def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sbatch: str = "exit 1") -> None:
    """SLURM's client commands on PATH, as scripts: `sbatch` does what the test says."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in (("sbatch", sbatch), ("srun", "exit 0"), ("squeue", "exit 0"), ("sacct", "exit 1"),
                       ("scancel", "exit 0")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


def test_a_slurm_script_cannot_be_given_a_line_of_the_users_choosing(tmp_path, monkeypatch) -> None:
    """A valid partition and constraint land in their #SBATCH lines and nowhere else; the header keeps its time
    limit. (Invalid ones never get here: `check_slurm_name`, tested above.)"""
    pytest.importorskip("submitit")
    fake_slurm(tmp_path, monkeypatch)
    from submitit.slurm.slurm import _make_sbatch_string

    from benchbench.runner.slurm import SlurmConfig, SlurmExecutor

    ex = SlurmExecutor(SlurmConfig(partition="gpu,debug", constraint="a100&nvlink", time_min=30), tmp_path)
    params = ex._executor(1, 1).parameters  # what submitit renders into the script
    text = _make_sbatch_string(command="python -c pass", folder=str(tmp_path), **{
        k: v for k, v in params.items() if k in ("partition", "constraint", "time", "cpus_per_task", "nodes",
                                                 "job_name")})
    lines = text.splitlines()
    header = [ln for ln in lines if ln.startswith("#SBATCH")]
    assert any(ln.replace("'", "") == "#SBATCH --partition=gpu,debug" for ln in header), header
    assert any(ln.replace("'", "") == "#SBATCH --constraint=a100&nvlink" for ln in header), header
    assert "#SBATCH --time=30" in header
    # nothing of the values outside their own header line
    assert sum("a100" in ln for ln in lines) == 1 and sum("debug" in ln for ln in lines) == 1
    with pytest.raises(Exception, match="not a SLURM name"):
        SlurmConfig(partition="gpu\n#SBATCH --time=99999")


def test_slurm_without_submitit_says_how_to_install_it(pool, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if it were not installed
    code, text = invoke("run", pool["quickstart"], "--device", "cpu", "--executor", "slurm")
    assert code == 2 and "pip install 'benchbench[slurm]'" in text


def test_a_refused_sbatch_is_slurms_message_and_loses_no_cell(pool, tmp_path, monkeypatch) -> None:
    """sbatch that fails (no controller, a bad partition): SLURM's own words, exit 2, the resume command."""
    pytest.importorskip("submitit")
    monkeypatch.chdir(tmp_path)
    fake_slurm(tmp_path, monkeypatch, "echo 'sbatch: error: invalid partition specified: nope' >&2; exit 1")
    suite = write_suite(tmp_path / "s.yaml", "name: s\narch: Unet\nencoder: resnet18\nresolution: 32\nbatch_size: 2\n"
                                             "warmup: 1\nsteps: 1\n")
    code, text = invoke("run", suite, "--device", "cpu", "--executor", "slurm", "--slurm-partition", "nope",
                        "--no-explain", "-o", tmp_path / "r.jsonl")
    assert code == 2 and "invalid partition specified: nope" in text and "Resume with:" in text, text[-2000:]
    assert clean(code, text)


def test_merge_on_a_full_disk_leaves_no_partial_file(pool, tmp_path) -> None:
    """The merged file is written beside its target and renamed: a full disk leaves nothing that blocks a rerun."""
    import subprocess

    out = tmp_path / "m.jsonl"
    script = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000)); "
              "sys.argv = ['benchbench', 'merge', sys.argv[1], '-o', sys.argv[2]]; "
              "import signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              "from benchbench.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", script, str(pool["results"]), str(out)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "could not write the merged results" in r.stderr, r.stderr[-1500:]
    assert not out.exists() and not list(tmp_path.glob(".m.jsonl*"))
    code, text = invoke("merge", pool["results"], "-o", out)  # the rerun goes through
    assert code == 0 and out.exists(), text


# ---------------------------------------------------------------- the fuzzer

def commands() -> list[tuple[tuple[str, ...], list]]:
    group = typer.main.get_command(app)

    def walk(c, prefix=()):
        if hasattr(c, "commands"):
            for name, sub in c.commands.items():
                yield from walk(sub, (*prefix, name))
        else:
            yield prefix, [p for p in c.params if (getattr(p, "opts", None) or [""])[0] != "--help"]

    return list(walk(group))


COMMANDS = commands()
#: commands that measure: only ever given suites that fail validation, so the fuzzer never trains a model
MEASURING = {("run",), ("advise",), ("tune-batch",)}
FILES = ["results", "minimal", "bare", "damaged", "empty", "binary", "folder", "file", "missing", "trace",
         "zero_trace", "deep_json", "bad_gz", "db"]
BAD_SUITES = ["bad_suite", "bad_encoder", "deep_yaml", "long_name", "not_utf8", "empty", "binary", "folder",
              "missing", "results"]
WORDS = ["", "0", "-1", "1", "3", "nan", "inf", "1e309", "0.5", "abc", "a,b", ",,", "../x", "a\nb", "x" * 3000,
         "cpu", "cuda", "auto", "1/2", "3/2", "md", "html,md", "pytest-benchmark", "slurm", "inline", "Unet",
         "arch=Unet", "latest", "process"]


@st.composite
def invocation(draw, command: tuple, tmp: Path, pool: dict[str, Path]) -> list[str]:
    path, params = command
    args = list(path)
    for p in params:
        if p.param_type_name == "argument":
            names = BAD_SUITES if path in MEASURING else (FILES + ["quickstart"] if path == ("list",) else FILES)
            for _ in range(draw(st.integers(1, 2)) if p.nargs == -1 else 1):
                args.append(str(pool[draw(st.sampled_from(names))]))
            continue
        if not draw(st.booleans()):
            continue
        opt = draw(st.sampled_from(p.opts))
        if p.is_flag:
            args.append(opt if not p.secondary_opts or draw(st.booleans()) else p.secondary_opts[0])
            continue
        value = draw(st.one_of(st.sampled_from(WORDS), st.sampled_from(FILES).map(lambda k: str(pool[k])),
                               st.sampled_from(["out/x.json", "out", "afile/x"]).map(lambda v: str(tmp / v))))
        args += [opt, value]
    return args


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fuzz-cwd")
    (d / "afile").write_text("x")
    return d


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c, _ in COMMANDS])
def test_every_subcommand_survives_generated_bad_input(command, pool, fuzz_dir) -> None:
    cwd = os.getcwd()
    os.chdir(fuzz_dir)
    try:
        # CI: 25 derandomised examples a subcommand; BENCHBENCH_FUZZ_EXAMPLES=N explores N random ones each
        many = int(os.environ.get("BENCHBENCH_FUZZ_EXAMPLES", "0"))

        @settings(max_examples=many or 25, deadline=None, derandomize=not many, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(st.data())
        def run(data) -> None:
            args = data.draw(invocation(command, fuzz_dir, pool))
            code, text = invoke(*args)
            assert clean(code, text), ([a[:200] for a in args], text[-3000:])

        run()
    finally:
        os.chdir(cwd)
