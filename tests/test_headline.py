"""Reports that answer first: the headline's first story is the one a performance engineer would name, a
pairwise difference is split into parts that add up to it, and a difference within the noise is unresolved."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import upd

from benchbench.analysis.findings import find_all
from benchbench.analysis.parts import split_difference, step_parts
from benchbench.report.build import build, headline_lines
from benchbench.results import pool_repeats, read_records
from benchbench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
H100 = ROOT / "tests" / "fixtures" / "h100"
CPU_EXAMPLE = ROOT / "results" / "examples" / "segformer_channels-cpu.jsonl"


def test_segformer_suite_leads_with_decoder_width() -> None:
    recs = pool_repeats(read_records([CPU_EXAMPLE]))
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
    recs = pool_repeats(read_records([H100 / "input_pipeline.jsonl"]))
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
    recs = pool_repeats(read_records([CPU_EXAMPLE]))
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

    recs = pool_repeats(read_records([CPU_EXAMPLE]))
    data = build(recs, None, "segformer")
    md = render_markdown(data)
    across = md.split("## Across cells")[1].split("## Per cell")[0]
    assert "dominant\\_module" not in across and "channel\\_scaling" in across
    assert md.index("## Headline") < md.index("## Cells")


def _contended(r):
    return upd(r, cpu_contention={"cores": [0, 1], "n_cores": 2, "cell_threads": 2, "contended": True,
                                  "others_share": 0.41, "why": "others used 41% of the cell's 2 cores (python 0.8 s)"})


def test_a_contended_cell_is_warned_of_before_anything_else() -> None:
    from benchbench.report.markdown import render_markdown

    recs = pool_repeats(read_records([CPU_EXAMPLE]))
    recs[0] = _contended(recs[0])
    data = build(recs, None, "segformer")
    [w] = data.warnings
    assert recs[0].label in w and "others used 41%" in w and "rerun it alone" in w
    assert headline_lines(data)[0] == f"warning: {w}"
    md = render_markdown(data)
    assert md.index("Before you read on") < md.index("## Headline") and "others used 41%" in md
    from benchbench.report.html import render_html

    html = render_html(data)
    section = html.split('id="warnings"', 1)[1].split("</section>", 1)[0]
    assert "others used 41%" in section and html.index('id="warnings"') < html.index('id="headline"')
    assert build(pool_repeats(read_records([CPU_EXAMPLE])), None, "segformer").warnings == []


def test_a_headline_never_ranks_as_measured_what_was_measured_on_a_contended_machine() -> None:
    """The newcomer's run: every cell contended. The report warned of each, yet its headline ranked "decoder width
    21.73x, measured" from those cells. Now every story of unfit cells says so on its own line, carries no figure
    in its tag, and ranks after every trusted one."""
    from benchbench.report.markdown import render_markdown

    recs = [_contended(r) for r in pool_repeats(read_records([CPU_EXAMPLE]))]
    data = build(recs, None, "segformer")
    assert data.stories and all(s.unfit for s in data.stories)
    lines = [ln for ln in headline_lines(data) if not ln.startswith("warning:")]
    assert lines and all("not ranked: unfit machine" in ln and "Not ranked — " in ln for ln in lines), lines
    assert all("x measured" not in ln for ln in lines)
    head = render_markdown(data).split("## Headline")[1].split("##")[0]
    assert ", measured)" not in head and "rerun them alone" in head
    # one contended cell: the stories it alone carries go last; the trusted ones lead as before
    mixed = pool_repeats(read_records([CPU_EXAMPLE]))
    dc512 = next(i for i, r in enumerate(mixed) if r.label == "Segformer mit_b0 dc=512")
    mixed[dc512] = _contended(mixed[dc512])
    st = build(mixed, None, "segformer").stories
    fit = [s for s in st if not s.unfit]
    assert fit and st[: len(fit)] == fit, [(s.theme, s.unfit) for s in st]
    assert all(mixed[dc512].cell_id not in s.sentence for s in fit)


def test_a_cell_whose_steps_vary_is_warned_of_and_its_difference_unresolved() -> None:
    a = next(r for r in read_records([CPU_EXAMPLE]) if r.label == "Segformer mit_b0 dc=128")
    med = a.median
    wild = [med * f for f in (0.3, 2.5, 0.4, 1.0, 3.0, 0.5, 1.6)]  # CV ~ 80% over 7 steps
    b = upd(a, cell_id="wild00000000", label="wild", params={**a.params, "seed": 1},
            step_time_s={"samples": [s * 1.6 for s in wild]})  # 60% slower: beyond an 8% run CV, not this spread
    [w] = build([a, b], a.cell_id, "wild").warnings
    assert w.startswith("wild: its 7 timed steps vary") and "no stable figure" in w
    [f] = [f for f in find_all([a, b], pairs=[(a.cell_id, "wild")]) if f.kind == "pairwise_delta"]
    assert f.evidence["resolved"] is False and "steps' own spread" in f.sentence
    # the same 60% with steady steps is resolved
    c = upd(b, step_time_s={"samples": [s * 1.6 for s in a.samples]})
    [g] = [f for f in find_all([a, c], pairs=[(a.cell_id, "wild")]) if f.kind == "pairwise_delta"]
    assert g.evidence["resolved"] is True


def test_a_reference_story_within_the_noise_is_context() -> None:
    a = next(r for r in read_records([CPU_EXAMPLE]) if r.label == "Segformer mit_b0 dc=128")
    b = upd(a, cell_id="twin00000000", label="twin", params={**a.params, "seed": 1},
            step_time_s={"samples": [s * 1.02 for s in a.samples]})
    [s] = [s for s in build([a, b], a.cell_id, "twins").stories if s.theme == "reference"]
    assert "unresolved, not a difference" in s.sentence and s.basis == "context"


def test_a_channel_curve_the_encoder_made_is_not_the_decoders() -> None:
    """When the module that changed most between the widest and narrowest decoder is the encoder, the curve
    is the machine's noise, never a decoder-width story."""
    recs = pool_repeats(read_records([CPU_EXAMPLE]))
    group = sorted((r for r in recs if r.params["encoder"] == "mit_b0" and r.params["arch"] == "Segformer"),
                   key=lambda r: -r.params["decoder_channels"])
    wide = group[0]
    assert wide.breakdown and "encoder" in wide.breakdown.modules
    mods = {k: v.model_dump() for k, v in wide.breakdown.modules.items()}
    mods["encoder"]["forward"] += 10.0  # the encoder, not the decoder, grew
    i = recs.index(wide)
    recs[i] = upd(wide, breakdown={**wide.breakdown.model_dump(), "modules": mods})
    [f] = [f for f in find_all(recs) if f.kind == "channel_scaling" and "mit_b0" in f.sentence]
    assert f.evidence["grew_most"] == "encoder" and "not the decoder's width" in f.sentence
    from benchbench.analysis.headline import impact

    assert impact(f) == (1.0, "context")
    [other] = [f for f in find_all(recs) if f.kind == "channel_scaling" and "mobilevit" in f.sentence]
    assert other.evidence["grew_most"] == "decoder" and impact(other)[1] == "measured"
