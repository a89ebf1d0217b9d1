"""History store and change points on a 20-night series built from real H100 records."""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path

import pytest

from benchbench.errors import BenchbenchError
from benchbench.history.changepoint import changes, e_divisive
from benchbench.history.store import HistoryStore, series
from benchbench.results import read_records

GATE = Path(__file__).parent / "fixtures" / "h100" / "gate-aa-5pct-9pct.jsonl"


def nights(n: int = 20, step_at: int | None = None, factor: float = 1.08, fp_change_at: int | None = None,
           commit_at: int | None = None) -> list[dict]:
    """Night i: the three processes of one real A run (alternating the two A/A runs: their real spread),
    step samples scaled by `factor` from night `step_at` on."""
    recs = [r.to_json() for r in read_records([GATE])]
    run_ids = list(dict.fromkeys(r["run_id"] for r in recs))
    a_runs = [[r for r in recs if r["run_id"] == rid] for rid in run_ids[:2]]
    out = []
    for i in range(n):
        scale = factor if step_at is not None and i >= step_at - 1 else 1.0
        for r in a_runs[i % 2]:
            r = copy.deepcopy(r)
            r["run_id"] = f"night{i + 1:02d}"
            r["started_at"] = f"2026-11-{i + 1:02d}T02:17:{r.get('repeat', 0):02d}Z"
            st = r["step_time_s"]
            st["samples"] = [x * scale for x in st["samples"]]
            for k in ("median", "p10", "p90", "mean", "min", "max", "iqr"):
                st[k] = st[k] * scale  # (re-derived from the samples when read: kept consistent anyway)
            env = dict(r["env"])
            env["git_commit"] = f"c{i + 1:02d}" if commit_at is None or i + 1 >= commit_at else "c00"
            if fp_change_at is not None and i + 1 >= fp_change_at:
                env["fingerprint"] = "newdriver"
                env["gpu_driver"] = "590.00"
            r["env"] = env
            out.append(r)
    return out


def write(path: Path, recs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_e_divisive_finds_a_step_and_nothing_in_noise() -> None:
    flat = [1.0, 1.001, 0.999, 1.0, 1.002, 0.998] * 3
    assert e_divisive(flat) == []
    stepped = flat[:11] + [x * 1.08 for x in flat[11:]]
    [(idx, p)] = e_divisive(stepped)
    assert idx == 11 and p < 0.05
    [c] = changes(stepped, 0.05)
    assert c.ratio == pytest.approx(1.08, abs=0.002)
    assert changes(stepped, 0.10) == []  # significant, but below the threshold


def test_add_is_idempotent(tmp_path: Path, cli) -> None:
    f = write(tmp_path / "n.jsonl", nights(4))
    db = tmp_path / "h.db"
    code, out, _ = cli("history", "add", f, "--db", db)
    assert code == 0 and "12 records added, 0 already there" in out
    code, out, _ = cli("history", "add", f, "--db", db)
    assert code == 0 and "0 records added, 12 already there" in out
    cols = {row[1] for row in sqlite3.connect(db).execute("PRAGMA table_info(records)")}
    assert {"suite", "cell_id", "label", "fingerprint", "git_commit", "started_at", "median_s", "p10_s", "p90_s",
            "cv", "iqr_s"} <= cols


def test_step_at_night_12_is_found_at_night_12(tmp_path: Path, cli) -> None:
    db = tmp_path / "h.db"
    cli("history", "add", write(tmp_path / "n.jsonl", nights(20, step_at=12, commit_at=12)), "--db", db)
    code, out, err = cli("history", "check", "--db", db, "--last", "10", "--json", tmp_path / "c.json")
    assert code == 1 and "regression" in err
    [c] = json.loads((tmp_path / "c.json").read_text())["changes"]
    assert c["night_index"] + 1 == 12 and c["run_id"] == "night12" and c["git_commit"] == "c12"
    assert c["previous_commit"] == "c00" and c["ratio"] == pytest.approx(1.08, abs=0.003)
    assert c["direction"] == "slower" and c["recent"]
    # not within the last 5 nights: reported, exit 0
    code, out, _ = cli("history", "check", "--db", db, "--last", "5")
    assert code == 0 and "night 12 of 20" in out


def test_aa_series_finds_nothing(tmp_path: Path, cli) -> None:
    db = tmp_path / "h.db"
    cli("history", "add", write(tmp_path / "n.jsonl", nights(20)), "--db", db)
    code, out, _ = cli("history", "check", "--db", db, "--last", "20", "--threshold", "0.02")
    assert code == 0 and "no change" in out


def test_fingerprint_change_starts_a_new_series(tmp_path: Path, cli) -> None:
    """A driver upgrade with a 10% speed change is a new series, not a regression."""
    recs = nights(20, step_at=13, factor=1.10, fp_change_at=13)
    store = HistoryStore(tmp_path / "h.db")
    from conftest import as_records

    store.add(as_records(*recs))
    ss = series(store.rows())
    assert [len(s.nights) for s in ss] == [12, 8]
    assert {s.fingerprint for s in ss} == {"newdriver", recs[0]["env"]["fingerprint"]}
    code = __import__("subprocess").run(
        [__import__("sys").executable, "-m", "benchbench", "history", "check", "--db", str(tmp_path / "h.db"),
         "--last", "20"], capture_output=True, text=True)
    assert code.returncode == 0, code.stdout + code.stderr


def test_show_writes_a_trend_plot(tmp_path: Path, cli) -> None:
    db = tmp_path / "h.db"
    cli("history", "add", write(tmp_path / "n.jsonl", nights(20, step_at=12)), "--db", db)
    code, _out, err = cli("history", "show", "--db", db, "-o", tmp_path / "t.png")
    assert code == 0, err
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, _ = cli("history", "show", "--db", db, "--cell", "faulty", "-o", tmp_path / "t.html")
    page = (tmp_path / "t.html").read_text()
    assert code == 0 and "<svg" in page and "+8.0% from night 12 of 20" in page


def test_bad_history_input(tmp_path: Path, cli) -> None:
    code, _, err = cli("history", "check", "--db", tmp_path / "none.db")
    assert code == 2 and "not found" in err
    (tmp_path / "junk.db").write_text("not sqlite at all " * 100)
    code, _, err = cli("history", "add", GATE, "--db", tmp_path / "junk.db")
    assert code == 2 and "not a benchbench history store" in err
    code, _, err = cli("history", "show", "--db", tmp_path / "none.db", "-o", tmp_path / "x.pdf")
    assert code == 2


def test_html_report_has_a_history_section(tmp_path: Path, cli) -> None:
    f = write(tmp_path / "n.jsonl", nights(20, step_at=12))
    db = tmp_path / "h.db"
    cli("history", "add", f, "--db", db)
    code, _out, err = cli("report", f, "-o", tmp_path / "rep", "--history", db)
    assert code == 0, err
    [page] = list((tmp_path / "rep").rglob("*.html"))
    text = page.read_text()
    assert 'id="history">History</h2>' in text and "+8.0% from night 12 of 20" in text and text.count("<svg") >= 2


def test_a_store_made_before_versioning_is_migrated_in_place(tmp_path) -> None:
    """Stores had no schema version (CREATE TABLE IF NOT EXISTS, positional inserts): a new column would never
    reach an existing store. Opening one now adds the columns and sets PRAGMA user_version."""
    import json as _json
    import sqlite3

    from benchbench.history.store import SCHEMA, SCHEMA_VERSION, HistoryStore

    old_schema = SCHEMA  # version 1 is the table as it was
    db = tmp_path / "old.db"
    con = sqlite3.connect(db)
    con.executescript(old_schema)
    con.execute("INSERT INTO records (key, run_id, suite, cell_id, status, median_s, p10_s, p90_s, started_at, "
                "images_per_step) VALUES ('k', 'night1', 's', 'c', 'ok', 0.1, 0.09, 0.11, '2026-11-01T00:00:00Z', 4)")
    con.commit()
    assert con.execute("PRAGMA user_version").fetchone()[0] == 0
    con.close()
    store = HistoryStore(db)
    assert store.version == SCHEMA_VERSION == 6
    cols = {row[1] for row in store.db.execute("PRAGMA table_info(records)")}
    assert {"gpu_throttled", "gpu_shared", "energy_j_per_image", "gpu_conditions_json", "cpu_contended",
            "epoch_s", "epoch_parts_json", "host_speed_json"} <= cols
    rec = {"schema": "benchbench.result/1", "suite": "s", "run_id": "night2", "cell_id": "c", "status": "ok",
           "params": {"batch_size": 4}, "started_at": "2026-11-02T00:00:00Z",
           "step_time_s": {"samples": [0.1, 0.1, 0.1], "median": 0.1},
           "gpu_conditions": {"throttled": True, "shared": False, "energy_j_per_image": 0.5}}
    from benchbench.record import Record

    assert store.add([Record.of(rec)]) == (1, 0)
    rows = store.rows("s")
    assert [r["run_id"] for r in rows] == ["night1", "night2"]
    assert rows[0]["gpu_throttled"] is None and rows[1]["gpu_throttled"] == 1
    assert _json.loads(rows[1]["gpu_conditions_json"])["energy_j_per_image"] == 0.5
    store.close()
    HistoryStore(db).close()  # opening a current store changes nothing
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    with pytest.raises(BenchbenchError, match="newer than this"):
        HistoryStore(db)


def test_the_nightly_check_judges_each_cell_by_its_own_threshold(tmp_path: Path, cli) -> None:
    """A suite's gate_threshold (2% on a GPU) is the cell's minimum effect for compare, for `history check` and
    for the report's history section alike: a +4% step is a regression at the cell's 2%, not at the default 5%."""
    recs = nights(20, step_at=16, factor=1.04)
    for r in recs:
        r["params"] = {**r["params"], "gate_threshold": 0.02}
    db = tmp_path / "h.db"
    assert cli("history", "add", write(tmp_path / "n.jsonl", recs), "--db", db)[0] == 0
    code, out, err = cli("history", "check", "--db", db, "--last", "5")
    assert code == 1 and "regression" in err, out + err
    code, out, err = cli("history", "check", "--db", db, "--last", "5", "--threshold", "0.05")
    assert code == 0, out + err  # an explicit threshold for every cell wins


def test_a_change_that_came_with_a_slower_host_says_so(tmp_path: Path, cli) -> None:
    """A nightly runner whose host got slower (the H200's leases: its thread ran in two states ~2x apart under
    one fingerprint) makes a launch-bound cell +8% slower from night 12. The host figures here are constructed (the
    H100 records predate the probe), each night's three runs spread ±2% as a steady host's are: `history check`
    keeps the regression and says the host moved with it, in the text and the JSON; the same step with the host
    unchanged says nothing of the host."""
    def with_host(recs: list[dict], slower_from: int | None) -> list[dict]:
        for k, r in enumerate(recs):
            night = int(r["run_id"][5:])
            d = (2.4 if slower_from and night >= slower_from else 2.0) * (1 + 0.02 * (k % 3 - 1))
            r["trackers"] = {"host_speed": {"dispatch_us": d, "python_ns": d * 33, "dispatch_blocks_us": [d] * 7,
                                            "python_blocks_ns": [d * 33] * 7}}
        return recs

    for slower_from, said in ((12, True), (None, False)):
        db = tmp_path / f"h{slower_from}.db"
        recs = with_host(nights(20, step_at=12, commit_at=12), slower_from)
        assert cli("history", "add", write(tmp_path / "n.jsonl", recs), "--db", db)[0] == 0
        code, out, err = cli("history", "check", "--db", db, "--last", "10", "--json", tmp_path / "c.json")
        assert code == 1 and "regression" in err
        [c] = json.loads((tmp_path / "c.json").read_text())["changes"]
        if said:
            assert c["host"].startswith("the host ran benchbench's fixed host work 1.20x slower from this night on "
                                        "(torch op dispatch 2.00 -> 2.40 µs") and "33 and 27 run(s)" in c["host"]
            assert "1.20x slower from this night on" in " ".join(out.split())
        else:
            assert c["host"] is None and "fixed host work" not in out
