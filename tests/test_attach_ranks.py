"""`attach -- torchrun --nproc-per-node 2 train.py`: a user's DDP script, unmodified, on two gloo ranks of this
CPU — every rank attached, one record with each rank's steps, the straggler named with its cause (or none), the
exposed all-reduce, DDP's settings as built, a failing rank's error as its own, nothing left running.

The record's derivations are also checked on constructed clocks, where the answer is known exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from slurm_cluster import slurm_cluster  # noqa: F401 - the fixture

from benchbench.analysis.findings import find_all
from benchbench.errors import BenchbenchError
from benchbench.record import Record
from benchbench.record.ranks import Distributed
from benchbench.runner.attach.command import parse_command

SCRIPTS = Path(__file__).parent / "scripts"
DDP = SCRIPTS / "train_ddp.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


@pytest.fixture(scope="module")
def camvid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import make_camvid

    return make_camvid(tmp_path_factory.mktemp("ranks") / "camvid", n=16)


def attach(cli, tmp_path: Path, *args: str, steps: int = 8) -> tuple[int, str, str, Record | None]:
    js = tmp_path / "rec.json"
    code, out, err = cli("attach", "--results-dir", tmp_path / "res", "-o", tmp_path / "rep", "--json", js,
                         "--timeout", "300", "--steps", str(steps), "--", *TORCHRUN, str(DDP), *args)
    rec = Record.of(json.loads(js.read_text())) if js.exists() else None
    return code, out, err, rec


def leftover(marker: str) -> list[int]:
    from test_signals import leftover as find

    return find(marker)


# ---------------------------------------------------------------------- the command
def test_torchrun_commands_are_read_with_torchruns_own_parser() -> None:
    s = parse_command(["torchrun", "--standalone", "--nproc-per-node", "2", str(DDP), "--data", "x"])
    assert (s.launcher, s.nproc_per_node, s.script, s.name) == ("torchrun", 2, DDP.resolve(), "train_ddp.py")
    s = parse_command([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(DDP)])
    assert (s.launcher, s.nproc_per_node, s.script) == ("torchrun", 2, DDP.resolve())
    s = parse_command(["srun", "-l", "--ntasks=2", "-c", "1", "--kill-on-bad-exit", sys.executable, str(DDP)])
    assert (s.launcher, s.nproc_per_node, s.script) == ("srun", 2, DDP.resolve())
    assert parse_command(["srun", "-n2", sys.executable, str(DDP)]).nproc_per_node == 2
    for bad, said in ((["torchrun", "--bogus", "2", str(DDP)], "unrecognized arguments: --bogus"),
                      (["srun", "--ntasks", "2", "--nodes", "2", sys.executable, str(DDP)], "the ranks of one node"),
                      (["srun", "--ntasks", "2"], "no program to run"),
                      (["torchrun", "--nproc-per-node", "2", "nope.py"], "nope.py: no such script"),
                      (["torchrun", "--nproc-per-node", "gpu", str(DDP)], "needs a number of ranks"),
                      (["torchrun", "--nnodes", "2", "--nproc-per-node", "2", str(DDP)], "the ranks of one node"),
                      ([sys.executable, "-m", "torch.distributed.launch", str(DDP)], "deprecated")):
        with pytest.raises(BenchbenchError, match=said):
            parse_command(bad)


def test_a_bad_torchrun_command_is_exit_2_before_anything_runs(cli, tmp_path: Path) -> None:
    code, _, err = cli("attach", "--results-dir", tmp_path / "res", "--", "torchrun", "--nproc-per-node", "0",
                       str(DDP))
    assert code == 2 and "number of ranks" in err and "Traceback" not in err


# ---------------------------------------------------------------------- derived from constructed clocks
def _dist(n: int, lag: dict[int, dict[int, float]], broadcast: bool = True, compute: float = 0.1,
          exposed: float = 0.02) -> Distributed:
    """Two ranks' clocks over n steps: rank r's batch comes `lag[r][i]` late at step i; every rank leaves each
    collective at one instant (the last arrival's, plus the all-reduce left exposed)."""
    rows: dict[int, list[list[float | None]]] = {0: [], 1: []}
    t = 0.0
    for i in range(n):
        ex = {r: lag.get(r, {}).get(i, 0.0) for r in rows}
        wait = {r: 0.001 + ex[r] for r in rows}
        s0 = {r: t + wait[r] + 0.001 for r in rows} if broadcast else None
        rel = max(s0.values()) + 0.0005 if s0 else None
        g = {r: (rel if rel else t + wait[r]) + 0.01 + compute for r in rows}
        b1 = max(g.values()) + exposed
        for r in rows:
            rows[r].append([t, wait[r], (rel if rel else t + wait[r]) + 0.01, g[r], b1, b1 + 0.005,
                            s0[r] if s0 else None, rel])
        t = b1 + 0.005
    return Distributed.model_validate({
        "launcher": "torchrun", "world_size": 2, "ranks": [
            {"rank": r, "status": "ok", "host": "h", "step_s": [x[5] - x[0] for x in v], "clock": v,
             "threads": 1, "cores": 2, "workers": 1} for r, v in rows.items()]})


def test_a_rank_whose_data_is_late_is_named_with_its_cause_and_the_others_wait_is_stated() -> None:
    d = _dist(12, {1: dict.fromkeys(range(12), 0.05)})  # rank 1 waits 50 ms more for every batch
    s = d.straggler()
    assert s["named"] and s["rank"] == 1 and s["cause"] == "data" and s["at"] == "buffer broadcast"
    assert s["last_in"] == 11 and s["lag_s"] == pytest.approx(0.05, abs=1e-6)
    assert s["parts_s"]["data"] == pytest.approx(0.05, abs=1e-6) and abs(s["parts_s"]["compute"]) < 1e-6
    w = d.waits()
    assert w[0]["wait_for_slowest_s"] == pytest.approx(0.05, abs=1e-6) and w[1]["wait_for_slowest_s"] == 0
    assert d.exposed_allreduce_s() == pytest.approx(0.02, abs=1e-6)


def test_ranks_that_take_turns_being_last_name_no_straggler() -> None:
    d = _dist(12, {0: dict.fromkeys(range(0, 12, 2), 0.01), 1: dict.fromkeys(range(1, 12, 2), 0.01)},
              broadcast=False)
    s = d.straggler()
    assert s is not None and not s["named"] and s["p_value"] >= 0.5
    assert s["at"] == "gradient all-reduce"
    assert d.exposed_allreduce_s() == pytest.approx(0.02, abs=1e-6)
    # steps 1-11 are judged: rank 0 waits 10 ms in the 6 where rank 1 is late, rank 1 in 5 of them
    assert d.waits()[0]["wait_for_slowest_s"] == pytest.approx(0.01, abs=1e-6)
    assert d.waits()[1]["wait_for_slowest_s"] == pytest.approx(0.0, abs=1e-6)


def test_no_clock_no_figure() -> None:
    """A GPU rank keeps no host clock (its host times are enqueue times): nothing is derived, nothing invented."""
    d = _dist(8, {})
    d.ranks[1].clock = None
    d.ranks[1].clock_note = "on a GPU ..."
    assert d.steps() == [] and d.straggler() is None and d.waits() == {} and d.exposed_allreduce_s() is None


def test_the_cores_asked_for_against_the_cores_there() -> None:
    d = _dist(8, {})
    assert d.oversubscribed() == {"cores": 2, "wanted": 4, "ranks": 2, "oversubscribed": True}


# ---------------------------------------------------------------------- real ranks
@pytest.mark.slow
def test_balanced_ranks_name_no_straggler_and_state_the_exposed_allreduce(cli, tmp_path: Path,
                                                                          camvid: Path) -> None:
    code, _, err, rec = attach(cli, tmp_path, "--data", str(camvid))
    assert code == 0, err
    assert rec is not None and rec.ok and rec.distributed is not None
    d = rec.distributed
    assert d.world_size == 2 and [r.rank for r in d.ranks] == [0, 1] and {r.status for r in d.ranks} == {"ok"}
    assert all(len(r.step_s) == 8 and len(r.clock or []) == 8 and r.backend == "gloo" for r in d.ranks)
    assert len({r.pid for r in d.ranks}) == 2 and len({r.host for r in d.ranks}) == 1
    # DDP as the script built it; every parameter got a gradient
    assert d.ddp.find_unused_parameters is False and d.ddp.bucket_cap_mb == 25.0 and d.ddp.unused_params == 0
    assert rec.attached.model == "Unet" and rec.params["world_size"] == 2 and rec.params["batch_size"] == 2
    assert rec.throughput == pytest.approx(4 / rec.median, rel=1e-6)  # both ranks' batches a step
    s = d.straggler()
    assert s is not None and not s["named"], s  # two balanced ranks take turns
    assert "rank_straggler" not in {f.kind for f in find_all([rec])}
    exposed = d.exposed_allreduce_s()
    assert exposed is not None and exposed > 0
    # the other rank's CPU time is the job's own, not contention
    assert rec.cpu_contention is not None and not rec.cpu_contention.contended, rec.cpu_contention.why
    report = next((tmp_path / "rep").rglob("*.md")).read_text()
    assert "## The ranks" in report and "straggler: none" in report


@pytest.mark.slow
def test_a_rank_with_slow_data_is_named_as_the_straggler_with_its_data_as_the_cause(cli, tmp_path: Path,
                                                                                  camvid: Path) -> None:
    code, out, err, rec = attach(cli, tmp_path, "--data", str(camvid), "--slow-rank", "1", "--slow-s", "0.05")
    assert code == 0, err
    s = rec.distributed.straggler()
    assert s["named"] and s["rank"] == 1 and s["cause"] == "data", s
    assert s["parts_s"]["data"] == pytest.approx(0.1, rel=0.3)  # 2 images at 50 ms, more than rank 0's
    assert rec.distributed.waits()[0]["wait_for_slowest_s"] > 0.07  # rank 0 waits for it
    [f] = [f for f in find_all([rec]) if f.kind == "rank_straggler"]
    assert "rank 1 arrives last" in f.sentence and "its data" in f.sentence and "rank 0 waits" in f.sentence
    assert "1. [stragglers" in out  # the headline leads with it


@pytest.mark.slow
def test_find_unused_parameters_with_an_unused_head_is_stated(cli, tmp_path: Path, camvid: Path) -> None:
    code, _, err, rec = attach(cli, tmp_path, "--data", str(camvid), "--aux-head", steps=6)
    assert code == 0, err
    ddp = rec.distributed.ddp
    assert ddp.find_unused_parameters is True and ddp.unused_params == 2 and ddp.params == 94
    [f] = [f for f in find_all([rec]) if f.kind == "ddp_unused"]
    assert "2 of the model's 94 parameters get no gradient" in f.sentence
    assert rec.attached.model == "WithAuxHead"


@pytest.mark.slow
def test_a_rank_that_raises_stops_every_rank_and_its_error_is_the_records(tmp_path: Path, camvid: Path) -> None:
    marker = uuid.uuid4().hex
    js = tmp_path / "rec.json"
    env = {**os.environ, "BB_TEST_MARKER": marker}
    p = subprocess.run([sys.executable, "-m", "benchbench", "attach", "--results-dir", str(tmp_path / "res"),
                        "-o", str(tmp_path / "rep"), "--json", str(js), "--timeout", "300", "--", *TORCHRUN,
                        str(DDP), "--data", str(camvid), "--crash-rank", "1", "--crash-at", "3"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stderr
    rec = Record.of(json.loads(js.read_text()))
    assert rec.status == "error" and rec.error.startswith("rank 1: the script raised RuntimeError: rank 1: bad "
                                                          "batch at step 3"), rec.error
    d = rec.distributed
    assert d.failed_first == 1
    by = {r.rank: r for r in d.ranks}
    assert by[1].status == "error" and "train_ddp.py:" in by[1].error
    assert by[0].status in ("broken", "stopped"), by[0]  # its all-reduce lost the peer, or torchrun ended it
    time.sleep(0.5)
    assert leftover(marker) == []


@pytest.mark.slow
def test_attach_under_torchrun_stopped_by_sigterm_keeps_each_ranks_steps_and_leaves_nothing(
        tmp_path: Path, camvid: Path) -> None:
    marker = uuid.uuid4().hex
    js = tmp_path / "rec.json"
    env = {**os.environ, "BB_TEST_MARKER": marker, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "benchbench", "attach", "--results-dir", str(tmp_path / "res"),
                             "-o", str(tmp_path / "rep"), "--json", str(js), "--steps", "500", "--", *TORCHRUN,
                             str(DDP), "--data", str(camvid), "--epochs", "500"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = 0
    assert proc.stdout is not None
    while seen < 14:  # rank 0 prints each step: warm-up over, timed steps running
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        seen += line.startswith("epoch ")
    time.sleep(1.0)  # a snapshot of the timed steps is written at most every 0.5 s
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 128 + signal.SIGTERM, err
    time.sleep(0.5)
    assert leftover(marker) == []
    rec = Record.of(json.loads(js.read_text()))
    assert "SIGTERM" in (rec.error or "")
    assert all(len(r.step_s) >= 4 for r in rec.distributed.ranks), [len(r.step_s) for r in rec.distributed.ranks]


@pytest.mark.slow
def test_a_lightning_trainer_with_strategy_ddp_under_torchrun(cli, tmp_path: Path, camvid: Path) -> None:
    """Lightning makes its own DistributedSampler by re-making the script's DataLoader from the arguments its
    `__init__` names: benchbench's wrapper keeps that signature (behind `*a, **k` the batch size was lost and
    the model got a batch of 1)."""
    js = tmp_path / "rec.json"
    code, _, err = cli("attach", "--results-dir", tmp_path / "res", "-o", tmp_path / "rep", "--json", js,
                       "--timeout", "300", "--steps", "6", "--", *TORCHRUN, str(SCRIPTS / "train_lightning.py"),
                       "--data", str(camvid), "--workers", "0", "--devices", "2", "--strategy", "ddp")
    assert code == 0, err
    rec = Record.of(json.loads(js.read_text()))
    d = rec.distributed
    assert rec.ok and [r.status for r in d.ranks] == ["ok", "ok"] and all(len(r.step_s) == 6 for r in d.ranks)
    assert rec.params["batch_size"] == 2 and rec.params["world_size"] == 2
    assert d.ddp is not None and d.ddp.unused_params == 0 and d.exposed_allreduce_s() is not None


# ---------------------------------------------------------------------- the scaling answer
def test_the_process_count_is_set_in_torchruns_own_option() -> None:
    from benchbench.advise.scaling import parse_ranks, with_nproc

    assert with_nproc(["torchrun", "--nproc-per-node", "4", "t.py", "--nproc-per-node", "9"], 2) == \
        ["torchrun", "--nproc-per-node", "2", "t.py", "--nproc-per-node", "9"]  # the script's own flag untouched
    assert with_nproc(["python", "-m", "torch.distributed.run", "--nproc_per_node=4", "t.py"], 1)[3] == \
        "--nproc_per_node=1"
    with pytest.raises(BenchbenchError, match="give it in the command"):
        with_nproc(["torchrun", "t.py"], 2)
    assert parse_ranks("2, 1,4") == [1, 2, 4]
    for bad in ("2", "0,1", "a,b"):
        with pytest.raises(BenchbenchError, match="two or more process counts"):
            parse_ranks(bad)


def test_ranks_needs_a_torchrun_command(cli, tmp_path: Path) -> None:
    code, _, err = cli("advise", "--attach", "--ranks", "1,2", "--results-dir", tmp_path, "--", sys.executable,
                       str(DDP))
    assert code == 2 and "give a torchrun command" in err
    code, _, err = cli("advise", "--ranks", "1,2", str(tmp_path / "s.yaml"))
    assert code == 2 and "use it with --attach" in err


def test_the_efficiency_lost_is_the_sum_of_its_parts_on_constructed_clocks() -> None:
    from benchbench.advise.scaling import scaling, sentence

    def rec(d: Distributed) -> Record:
        from benchbench.record import base_record

        return Record.of({**base_record("s", "r", f"c{d.world_size}", "t", {"batch_size": 2,
                                                                             "world_size": d.world_size}),
                          "status": "ok", "step_time_s": {"samples": d.ranks[0].step_s},
                          "distributed": d.model_dump()})

    one = _dist(8, {})
    one = one.model_copy(update={"world_size": 1, "ranks": one.ranks[:1]})
    two = _dist(8, {1: dict.fromkeys(range(8), 0.03)}, compute=0.12, exposed=0.03)
    ans = scaling({1: [rec(one)], 2: [rec(two)]})
    row = ans["rows"][1]
    assert row["efficiency"] == pytest.approx(ans["rows"][0]["step_s"] / row["step_s"])
    assert sum(row["lost"].values()) == pytest.approx(1 - row["efficiency"], abs=1e-9)
    assert row["lost"]["compute"] > 0 and row["lost"]["exposed_allreduce"] > 0 and row["lost"]["straggler_wait"] > 0
    assert "1 -> 2 ranks" in sentence(row, 1) and "efficient" in sentence(row, 1)


@pytest.mark.slow
def test_advise_ranks_states_the_scaling_efficiency_in_parts(cli, tmp_path: Path, camvid: Path) -> None:
    js = tmp_path / "a.json"
    code, out, err = cli("advise", "--attach", "--ranks", "1,2", "--min-runs", "1", "--steps", "6", "--results-dir",
                         tmp_path / "res", "-o", tmp_path / "rep", "--json", js, "--", *TORCHRUN, str(DDP), "--data",
                         str(camvid))
    assert code == 0, err
    ans = json.loads(js.read_text())
    one, two = ans["rows"]
    assert (one["ranks"], two["ranks"]) == (1, 2) and one["runs"] == two["runs"] == 1
    assert two["speedup"] == pytest.approx(2 * two["efficiency"])
    assert sum(two["lost"].values()) == pytest.approx(1 - two["efficiency"], abs=1e-9)
    assert "1 -> 2 ranks" in out and "efficient" in out
    assert next((tmp_path / "rep").glob("*-ranks.md")).read_text().count("| 2 |") == 1


# ---------------------------------------------------------------------- DDP's own knobs
def test_ddps_knobs_are_offered_where_the_ranks_show_them_safe_and_worth_it() -> None:
    from benchbench.advise.attached import ddp_knobs
    from benchbench.record import base_record

    def rec(**ddp: object) -> Record:
        d = _dist(8, {}, exposed=0.03)
        d = d.model_copy(update={"ddp": {"bucket_cap_mb": 25.0, "find_unused_parameters": False,
                                         "static_graph": False, "gradient_as_bucket_view": False, "params": 94,
                                         "unused_params": 0, **ddp}})
        return Record.of({**base_record("s", "r", "c", "t", {"batch_size": 2, "world_size": 2}), "status": "ok",
                          "step_time_s": {"samples": d.ranks[0].step_s}, "distributed": d.model_dump()})

    names = {k.name: k for k in ddp_knobs(rec(find_unused_parameters=True))}
    assert names["ddp_find_unused_parameters"].torch == {"ddp": {"find_unused_parameters": False}}
    assert "ddp_static_graph" not in names  # with find_unused_parameters on, not offered
    assert names["ddp_bucket_cap_mb"].to == 6.25 and "ddp_gradient_as_bucket_view" in names
    names = {k.name for k in ddp_knobs(rec(find_unused_parameters=True, unused_params=2))}
    assert "ddp_find_unused_parameters" not in names  # 2 parameters do go without a gradient: never assumed
    names = {k.name for k in ddp_knobs(rec())}
    assert "ddp_static_graph" in names and "ddp_find_unused_parameters" not in names


@pytest.mark.slow
def test_advise_measures_find_unused_parameters_off_in_every_rank(cli, tmp_path: Path, camvid: Path) -> None:
    js = tmp_path / "a.json"
    code, _, err = cli("advise", "--attach", "--knobs", "ddp_find_unused_parameters", "--min-runs", "2",
                       "--repeat-max", "2", "--steps", "6", "--results-dir", tmp_path / "res", "-o", tmp_path / "rep",
                       "--json", js, "--", *TORCHRUN, str(DDP), "--data", str(camvid), "--find-unused")
    assert code == 0, err
    doc = json.loads(js.read_text())
    [m] = [m for m in doc["measured"] if m["knob"] == "ddp_find_unused_parameters"]
    assert m["runs"] == 2 and m["verdict"] in ("faster", "slower", "unchanged", "noisy"), m
    assert m["numerics"]["verdict"] == "unchanged", m["numerics"]  # the same training, step by step
    from benchbench.results import read_records

    recs = read_records(list((tmp_path / "res").rglob("advise-*.jsonl")))
    cand = [r for r in recs if "ddp_find_unused_parameters=False" in r.label]
    assert len(cand) == 2 and all(r.distributed.ddp.find_unused_parameters is False for r in cand)
    assert all(r.distributed.ddp.find_unused_parameters is True for r in recs if r not in cand)


@pytest.mark.slow
def test_ranks_started_by_srun_on_slurm(tmp_path: Path, camvid: Path, slurm_cluster) -> None:  # noqa: F811
    """`srun --ntasks 2 python train.py` on the tests' real single-node SLURM: the tasks are the ranks
    (SLURM_PROCID), each attached, one record."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    marker = uuid.uuid4().hex
    js = tmp_path / "rec.json"
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "BB_TEST_MARKER": marker}
    p = subprocess.run([sys.executable, "-m", "benchbench", "attach", "--results-dir", str(tmp_path / "res"),
                        "-o", str(tmp_path / "rep"), "--json", str(js), "--timeout", "300", "--steps", "6", "--",
                        "srun", "--ntasks", "2", sys.executable, str(DDP), "--data", str(camvid)],
                       env=env, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    rec = Record.of(json.loads(js.read_text()))
    d = rec.distributed
    assert d.launcher == "srun" and d.world_size == 2 and [r.status for r in d.ranks] == ["ok", "ok"]
    assert all(len(r.step_s) == 6 and r.clock for r in d.ranks) and d.exposed_allreduce_s() is not None
    time.sleep(0.5)
    assert leftover(marker) == []


# ---------------------------------------------------------------------- GPU ranks: NCCL in their traces
def _nccl_rank(late: float, steps: int = 8) -> object:
    """One rank's profiler window in kineto's format: per 1000 us step, forward and backward kernels, and the
    gradient all-reduce's NCCL kernel launched as the last bucket is ready. Both ranks' all-reduces end at 900 us
    (when the later one has arrived, plus 100 us of transfer): this rank arrives `late` us after rank 0 (650 us),
    its backward running on to 700 + late."""
    from test_syncs import Trace

    from benchbench.timeline.gpu import summarize_gpu
    from benchbench.timeline.reader import build_timeline

    t = Trace()
    for i in range(steps):
        o = i * 1000.0
        t.host("bb.step", o, 1000, "user_annotation")
        t.kernel(o + 1, o + 10, 290)  # forward
        t.kernel(o + 5, o + 300, 400 + late)  # backward
        arrive = o + 650 + late
        t.call("cudaLaunchKernel", arrive - 2, 2,
               ("kernel", "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm*, unsigned long, ncclWork*)",
                arrive, o + 900 - arrive))
    return summarize_gpu(build_timeline({"traceEvents": t.events}))


def test_a_gpu_ranks_collectives_give_its_exposed_communication_and_the_straggler() -> None:
    early, late = _nccl_rank(0.0), _nccl_rank(150.0)
    # rank 0: its all-reduce 650-900 us, compute to 700: 200 us exposed; rank 1: 800-900, compute to 850: 50 us
    assert early.comm_s == pytest.approx(250e-6) and early.comm_exposed_s == pytest.approx(200e-6)
    assert late.comm_s == pytest.approx(100e-6) and late.comm_exposed_s == pytest.approx(50e-6)
    assert len(early.collectives_s) == 8
    d = Distributed.model_validate({"launcher": "torchrun", "world_size": 2, "ranks": [
        {"rank": r, "status": "ok", "host": "h", "step_s": [1e-3] * 8, "data_wait_s": [1e-5] * 8,
         "clock_note": "on a GPU …", "gpu_comm_s": g.comm_s, "gpu_comm_exposed_s": g.comm_exposed_s,
         "gpu_collectives_s": g.collectives_s} for r, g in ((0, early), (1, late))]})
    s = d.straggler()
    assert s["named"] and s["rank"] == 1 and s["unit"] == "collectives" and s["last_in"] == 8
    assert s["lag_s"] == pytest.approx(150e-6) and s["cause"] == "compute_or_host" and s["at"] == "NCCL collective"
    assert d.waits()[0]["wait_for_slowest_s"] == pytest.approx(150e-6)
    assert d.exposed_allreduce_s() == pytest.approx(125e-6)  # the median of the ranks' 200 and 50 us
    from benchbench.analysis.findings import find_all

    [f] = [f for f in find_all([_rec_with(d)]) if f.kind == "rank_straggler"]
    assert "in 8 of 8 collectives" in f.sentence and "a GPU trace's kernels do not tell which" in f.sentence


def _rec_with(d: Distributed) -> Record:
    from benchbench.record import base_record

    return Record.of({**base_record("s", "r", "c", "t", {"batch_size": 2, "world_size": 2}), "status": "ok",
                      "step_time_s": {"samples": [1e-3] * 8}, "distributed": d.model_dump()})


# ---------------------------------------------------------------------- a suite's DDP cells
@pytest.mark.slow
def test_a_suites_ddp_cell_gets_the_same_per_rank_analysis(cli, tmp_path: Path) -> None:
    """`world_size: 2` in a suite: every rank keeps its clock as an attached rank does (not rank 0 alone), so
    the cell has the stragglers' test, each rank's waits and the exposed all-reduce."""
    suite = tmp_path / "s.yaml"
    suite.write_text("name: ddp\narch: Unet\nencoder: resnet18\nresolution: 32\nbatch_size: 2\nclasses: 3\n"
                     "device: cpu\nwarmup: 2\nsteps: 8\nworld_size: 2\n")
    out = tmp_path / "r.jsonl"
    code, _, err = cli("run", suite, "--no-explain", "--output", out, "--reports-dir", tmp_path / "rep")
    assert code == 0, err
    [rec] = [Record.of(json.loads(x)) for x in out.read_text().splitlines()]
    d = rec.distributed
    assert d is not None and d.launcher == "suite" and d.world_size == 2
    assert [r.rank for r in d.ranks] == [0, 1] and all(len(r.clock or []) == 8 for r in d.ranks)
    assert len({r.pid for r in d.ranks}) == 2 and d.ddp is not None and d.ddp.unused_params == 0
    assert d.straggler() is not None and d.exposed_allreduce_s() is not None
    parts = d.step_parts()
    assert parts["step"] == pytest.approx(sum(v for k, v in parts.items() if k != "step"))
    assert "## The ranks" in next((tmp_path / "rep").rglob("*.md")).read_text()
