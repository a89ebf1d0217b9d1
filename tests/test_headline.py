"""Reports that answer first: the headline's first story is the one a performance engineer would name, a
pairwise difference is split into parts that add up to it, and a difference within the noise is unresolved."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import upd

from benchbench.analysis.findings import find_all
from benchbench.analysis.parts import split_difference, step_parts
from benchbench.report.build import build, headline_lines
from benchbench.results import merge_repeats, read_records
from benchbench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
H100 = ROOT / "tests" / "fixtures" / "h100"
CPU_EXAMPLE = ROOT / "results" / "examples" / "segformer_channels-cpu.jsonl"


def test_segformer_suite_leads_with_decoder_width() -> None:
    recs = merge_repeats(read_records([CPU_EXAMPLE]))
    ref = load_suite(ROOT / "suites" / "segformer_channels.yaml", device="cpu").reference.id
    data = build(recs, ref, "segformer_channels")
    first = data.stories[0]
    assert first.theme == "decoder width" and first.basis == "measured"
    assert "decoder_channels 512 -> 64" in first.sentence and "5.2x" in first.sentence
    assert data.stories[-1].theme == "reference" and "Unet mit_b0" in data.stories[-1].sentence
    assert len(data.stories) <= 5
    assert headline_lines(data)[0].startswith("1. [decoder width, 5.2")
    # the same rule on many cells is one story with a range, not one line per cell
    assert len({s.theme for s in data.stories}) == len(data.stories)


def test_input_pipeline_suite_leads_with_the_input_pipeline() -> None:
    recs = merge_repeats(read_records([H100 / "input_pipeline.jsonl"]))
    data = build(recs, recs[0].cell_id, "input_pipeline")
    first = data.stories[0]
    assert first.theme == "input pipeline" and first.basis == "measured" and first.impact > 5
    assert "data wait +104.2 ms (100%)" in first.sentence and "decoder +0.000" not in first.sentence


def test_a_data_wait_difference_is_split_into_parts_that_add_up() -> None:
    recs = read_records([H100 / "input_pipeline.jsonl"])
    disk = next(r for r in recs if r.params["num_workers"] == 0 and r.params["data"]["kind"] != "synthetic"
                and r.params["amp"] == "none")
    synth = next(r for r in recs if r.params["data"]["kind"] == "synthetic")
    for r in (disk, synth):
        assert sum(step_parts(r).values()) == pytest.approx(r.median)
    split = split_difference(disk, synth)
    assert sum(split["parts_s"].values()) == pytest.approx(split["delta_s"])
    assert max(split["parts_s"], key=lambda k: abs(split["parts_s"][k])) == "data wait"
    [pair] = [f for f in find_all(recs) if f.kind == "pairwise_delta" and set(f.cells) == {disk.cell_id,
                                                                                         synth.cell_id}]
    assert "data wait +104.2 ms (100%)" in pair.sentence and "(0%)" not in pair.sentence


def test_a_data_wait_difference_on_this_cpu(tmp_path: Path, cli, monkeypatch) -> None:
    """Real CPU cells: decoding PNGs in the main process against the same model on in-memory data."""
    from conftest import TESTS, write_suite

    monkeypatch.chdir(TESTS)
    suite = write_suite(tmp_path / "dw.yaml", """
name: dw
arch: "factories:tiny"
device: cpu
resolution: 64
batch_size: 4
classes: 4
warmup: 2
steps: 4
matrix:
  data: [synthetic, {kind: synthetic-disk, image_size: [360, 480], count: 8}]
""")
    out = tmp_path / "r.jsonl"
    code, stdout, err = cli("run", suite, "--output", out, "--reports-dir", tmp_path / "rep")
    assert code == 0, err
    recs = read_records([out])
    [pair] = [f for f in find_all(recs) if f.kind == "pairwise_delta"]
    parts = pair.evidence["parts_s"]
    assert sum(parts.values()) == pytest.approx(pair.evidence["delta_s"])
    assert max(parts, key=lambda k: abs(parts[k])) == "data wait" and "data wait +" in pair.sentence
    assert "1. [input pipeline" in stdout  # the terminal prints the headline under the table


def test_two_identical_cells_differ_only_by_noise() -> None:
    a = next(r for r in read_records([CPU_EXAMPLE]) if r.label == "Segformer mit_b0 dc=128")
    b = upd(a, cell_id="twin00000000", label="twin", params={**a.params, "seed": 1},
            step_time_s={"samples": [s * 1.08 for s in a.samples]})  # 8%: within a 5% run CV
    fs = [f for f in find_all([a, b], pairs=[(a.cell_id, "twin")]) if f.kind == "pairwise_delta"]
    [f] = fs
    assert "unresolved" in f.sentence and "runs a side" in f.sentence and "of which" not in f.sentence
    assert f.evidence["resolved"] is False and f.evidence["runs_to_resolve"] >= 2
    data = build([a, b], a.cell_id, "twins", pairs=[(a.cell_id, "twin")])
    assert all(s.basis != "measured" or s.theme == "reference" for s in data.stories)


def test_a_non_monotonic_scaling_curve_says_so() -> None:
    """The issue's run: mobilevit C=64 at 124 ms, C=128 at 103 ms, one run each: within this CPU's noise."""
    recs = merge_repeats(read_records([CPU_EXAMPLE]))
    for i, r in enumerate(recs):
        c = r.params["decoder_channels"]
        if r.params["encoder"] == "tu-mobilevit_xxs" and r.params["arch"] == "Segformer" and c in (64, 128):
            ms = {64: 124.0, 128: 103.0}[c]
            recs[i] = upd(r, step_time_s={"samples": [s * ms / 1e3 / r.median for s in r.samples]})
    [f] = [f for f in find_all(recs) if f.kind == "channel_scaling" and "mobilevit" in f.sentence]
    assert "not monotonic: C=64 (124 ms) is slower than C=128 (103 ms)" in f.sentence
    assert "unresolved" in f.sentence and f.evidence["unresolved_steps"][0][2] is False


def test_findings_belong_to_cells(tmp_path: Path) -> None:
    from benchbench.report.markdown import render_markdown

    recs = merge_repeats(read_records([CPU_EXAMPLE]))
    data = build(recs, None, "segformer")
    md = render_markdown(data)
    across = md.split("## Across cells")[1].split("## Per cell")[0]
    assert "dominant\\_module" not in across and "channel\\_scaling" in across
    assert md.index("## Headline") < md.index("## Cells")
