"""The explanation passes on real SMP cells: breakdowns add up and backward is attributed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from benchbench.runner.cell import execute_cell
from benchbench.suite import build_suite


@pytest.fixture(scope="module")
def records() -> dict[str, dict]:
    suite = build_suite(
        {"matrix": {"arch": ["Unet", "Segformer"]}, "encoder": "resnet18", "resolution": 64, "batch_size": 2,
         "warmup": 2, "steps": 3, "classes": 4},
        device="cpu",
    )
    out = {}
    for cell in suite.cells:
        rec = execute_cell({"suite": "t", "run_id": "r", "cell_id": cell.id, "label": cell.label,
                            "params": cell.params, "explain": True, "env": {}})
        assert rec["status"] == "ok", rec["error"]
        assert "explain_errors" not in rec, rec.get("explain_errors")
        out[cell.params["arch"]] = rec
    return out


def test_phases_and_modules_add_up(records: dict[str, dict]) -> None:
    for rec in records.values():
        bd = rec["breakdown"]
        assert bd["phases_sum_s"] == pytest.approx(bd["step_s"], rel=0.10)
        top = {k: v for k, v in bd["modules"].items() if "." not in k}
        fwd = sum(v["forward"] for v in top.values())
        bwd = sum(v["backward"] for v in top.values()) + bd["backward_unattributed_s"]
        assert fwd == pytest.approx(bd["phases"]["forward"], rel=0.10)
        assert bwd == pytest.approx(bd["phases"]["backward"], rel=0.15)
        assert bd["top_ops"] and bd["top_ops"][0]["self_time_s"] > 0


def test_backward_is_attributed_to_encoder_and_decoder(records: dict[str, dict]) -> None:
    for rec in records.values():
        mods = rec["breakdown"]["modules"]
        assert mods["encoder"]["backward"] > 0
        assert mods["decoder"]["backward"] > 0  # module backward hooks report 0 here
    seg = records["Segformer"]["breakdown"]["modules"]
    # resnet18 is CNN-style: SMP's SegFormer decoder builds a 5th (1/2-resolution) branch
    assert "decoder.mlp_stage.4" in seg


def test_flops_memory_fields(records: dict[str, dict]) -> None:
    for rec in records.values():
        fl = rec["flops"]
        assert fl["forward_per_image"] > 0 and fl["train_step_per_image"] > fl["forward_per_image"]
        assert fl["achieved_flops_per_s"] > 0
        mem = rec["memory"]
        assert mem["peak_bytes"] > 0 and set(mem["by_phase"]) == {"forward", "loss", "backward", "optimizer"}
        acts = mem["activations_by_module"]
        assert acts["encoder"] > 0 and acts["decoder"] > 0 and acts["total"] >= acts["encoder"] + acts["decoder"]


def test_report_html_renders_in_chromium_and_escapes(tmp_path: Path, records: dict[str, dict], cli) -> None:
    hostile = '<script>alert("x")</script> $\\frac{1}{0}$ | `x`'
    lines = []
    for rec in records.values():
        rec = dict(rec, suite=hostile, label=rec["label"] + " <img src=x onerror=alert(1)>")
        lines.append(json.dumps(rec))
    res = tmp_path / "r.jsonl"
    res.write_text("\n".join(lines) + "\n")
    ids = [r["cell_id"] for r in records.values()]
    code, _out, err = cli("report", res, "-o", tmp_path / "rep", "--format", "md,html",
                         "--pair", f"{ids[0]},{ids[1]}")
    assert code == 0, err
    [html] = list((tmp_path / "rep").rglob("*.html"))
    [md] = list((tmp_path / "rep").rglob("*.md"))
    text = html.read_text()
    assert "<script>alert" not in text and "<img src=x" not in text
    assert "&lt;script&gt;" in text
    assert "\\<script\\>" in md.read_text()
    assert "pairwise\\_delta" in md.read_text()
    for path in tmp_path.rglob("*"):
        assert str(path).startswith(str(tmp_path))  # hostile suite name stayed inside -o
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not browser:
        pytest.skip("no headless Chromium on this machine (.ci/run installs it)")
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,900", f"--user-data-dir={tmp_path / 'chrome'}", "--dump-dom", html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    body = dom[dom.index("<body") : dom.index(">", dom.index("<body"))]
    assert 'data-rendered="ok"' in body and "data-error" not in body
    assert int(body.split('data-tables="')[1].split('"')[0]) >= 4
    assert int(body.split('data-plots="')[1].split('"')[0]) >= 4
    # the headline's first story is on screen at 1400x900 without scrolling
    assert 0 < int(body.split('data-headline-bottom="')[1].split('"')[0]) <= 900
    assert "<details" in dom and "sortable" in dom


def test_cpu_trace_has_profiler_steps_and_explain_trace_says_no_gpu(tmp_path, cli) -> None:
    """benchbench's own trace: ProfilerStep#N markers (TensorBoard / HTA / Perfetto) around bb.step, no sync."""
    import json

    from conftest import write_suite

    suite = write_suite(tmp_path / "s.yaml", "name: t\narch: Unet\nencoder: resnet18\nresolution: 32\n"
                        "batch_size: 2\nwarmup: 1\nsteps: 2\ndevice: cpu\n")
    code, _, err = cli("run", suite, "--output", tmp_path / "r.jsonl", "--reports-dir", tmp_path / "rep",
                       "--trace", tmp_path / "traces")
    assert code == 0, err
    [trace] = list((tmp_path / "traces").glob("*.json"))
    events = json.loads(trace.read_text())["traceEvents"]
    names = [e.get("name", "") for e in events]
    # the warm-up step is not kept; a 2-step cell is profiled for its 2 steps (at most PROCESS.profile_steps)
    assert sum(n.startswith("ProfilerStep#") for n in names) == 2 and names.count("bb.step") == 2
    assert not any("Synchronize" in n for n in names)
    code, _, err = cli("explain-trace", trace)
    assert code == 2 and "no device work" in err
