"""The HTML report: its numbers are the run's own (checked against slow recomputations), it is one
offline file, and in a real headless Chromium it loads without a console error or a network
request, its head table sorts and filters, a row opens the head, and a hover shows the numbers."""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from browser import open_page
from cli_helpers import assert_one_line_error, run_cli, run_here
from tiny import TEXTS, DecodingCharTokenizer, tiny_model

from ropescope.files import atomic_directory, atomic_path, write_table
from ropescope.heads.causal import causal_test
from ropescope.heads.scan import long_head_table, scan_heads
from ropescope.heads.views import prompt_attention
from ropescope.report import read_run, render_page, report_data, write_report


@pytest.fixture(scope="module")
def tiny_run():
    model, tokenizer = tiny_model("gemma3"), DecodingCharTokenizer()
    report = scan_heads(model, tokenizer, TEXTS[:4], threshold=0.3)
    positional = report.table[report.table["class"].isin(["diagonal", "previous-token"])]
    chosen = [(int(r.layer), int(r.head), int(r.target.split()[1])) for r in positional.itertuples()][:2]
    causal = causal_test(model, tokenizer, TEXTS[:4], chosen, n_chunks=2, draws=2) if chosen else None
    attention = prompt_attention(model, tokenizer, TEXTS[0], max_tokens=12)
    return model, tokenizer, report, causal, attention


def test_attention_of_every_head_equals_eager_attention(tiny_run):
    model, tokenizer, _, _, attention = tiny_run
    ids = torch.tensor([tokenizer(TEXTS[0])["input_ids"][:12]])
    with torch.no_grad():
        eager = model(input_ids=ids, output_attentions=True).attentions
    assert len(attention["tokens"]) == 12
    for layer, probs in enumerate(eager):
        for head in range(probs.shape[1]):
            np.testing.assert_allclose(attention["heads"][f"{layer},{head}"], probs[0, head].numpy(), atol=6e-5)


def test_report_numbers_are_the_profiles_own(tiny_run):
    _, _, report, causal, attention = tiny_run
    data = report_data(report.profile, heads=report.table, agreement=report.agreement(), causal=causal)
    prof = report.profile
    for tensor in ("q", "k"):
        np.testing.assert_allclose(data["usage"][tensor], prof.layer_usage(tensor), rtol=1e-5)
        slow = np.array([[[float(x) for x in head] for head in layer] for layer in data["head_usage"][tensor]])
        np.testing.assert_allclose(slow, prof.stats[tensor].mean.numpy(), rtol=1e-5)
    for layer, info in enumerate(data["geometry"]["layers"]):
        np.testing.assert_allclose(info["frequency"], prof.geometry.frequencies(layer), rtol=1e-5)
        np.testing.assert_allclose(info["wavelength"], 2 * np.pi / prof.geometry.frequencies(layer), rtol=1e-5)
    assert len(data["heads"]) == len(report.table)
    first = data["heads"][0]
    assert first["layer"] == report.table.iloc[0]["layer"] and first["class"] == str(report.table.iloc[0]["class"])
    json.dumps(data, allow_nan=False)  # NaN became null: the page's JSON parses
    for tensor in ("q", "k"):
        band = prof.frequency_band(tensor)
        expected = set()
        for row in band.itertuples():  # the band's chunks: every chunk between its fastest and slowest frequency
            g = prof.geometry.frequencies(row.layer)
            expected |= {
                (row.layer, c) for c in range(len(g)) if row.slowest_frequency <= g[c] <= row.fastest_frequency
            }
        assert {tuple(cell) for cell in data["band"][tensor]} == expected and expected
        massive = prof.massive_values(tensors=(tensor,))
        assert [cell[:3] for cell in data["massive"][tensor]] == massive[["layer", "head", "chunk"]].values.tolist()


def test_page_is_one_offline_file(tiny_run, tmp_path):
    _, _, report, causal, attention = tiny_run
    data = report_data(report.profile, heads=report.table, agreement=report.agreement(), attention=attention)
    data["meta"]["prompt_set"] = "</script><script>alert(1)</script>"
    page = render_page(data)
    assert "https://" not in page and "src=" not in page
    assert page.count("http://") == page.count("http://www.w3.org/2000/svg")  # a namespace, never fetched
    assert page.count("</script>") == 2  # the embedded JSON cannot close its element
    assert "&lt;/script&gt;" in page


def test_the_page_takes_its_colours_from_the_figures(tiny_run):
    """One palette: the page's script names no colour of its own; the page embeds the figures'."""
    import re
    from importlib import resources

    from ropescope.plots.style import CLASS_COLOURS, PALETTE

    script = (resources.files("ropescope.report") / "assets" / "report.js").read_text()
    assert not re.findall(r"#[0-9a-fA-F]{6}\b", script)
    _, _, report, _, _ = tiny_run
    page = render_page(report_data(report.profile, heads=report.table, agreement=report.agreement()))
    embedded = json.loads(page.split('id="report-data">')[1].split("</script>")[0])
    assert embedded["palette"] == {**PALETTE, "classes": CLASS_COLOURS}


def test_long_head_table_pivots_back_to_the_wide_one(tiny_run):
    table = tiny_run[2].table
    long = long_head_table(table)
    assert set(long.columns) == {"layer", "head", "kv_head", "class", "target", "measure", "value"}
    assert long["value"].dtype == float and not long["measure"].str.contains(" ").any()
    wide = long.pivot_table(index=["layer", "head"], columns="measure", values="value", dropna=False)
    for row in table.itertuples():
        got = wide.loc[(row.layer, row.head)]
        assert got["hf_score"] == pytest.approx(row.hf_score) and got["offset_1"] == pytest.approx(row.offset_1)
        assert [int(got[f"attr_top_chunk_{i}"]) for i in (1, 2, 3)] == [int(c) for c in row.attr_top_chunks.split()]
        target = float("nan") if row.target == "sink" else float(row.target.split()[1])
        assert got["target_offset"] == pytest.approx(target, nan_ok=True)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_tables_round_trip_in_every_format(tmp_path, fmt):
    frame = pd.DataFrame({"layer": [0, 1], "class": ["diagonal", "bos-sink"], "value": [0.5, float("nan")]})
    path = write_table(frame, tmp_path / "t", fmt)
    back = {"csv": pd.read_csv, "parquet": pd.read_parquet, "json": pd.read_json}[fmt](path)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_outputs_follow_the_umask(tmp_path, mask, file_mode, dir_mode):
    old = os.umask(mask)
    try:
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("x")
        with atomic_directory(tmp_path / "run") as tmp:
            (tmp / "b.txt").write_text("y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == dir_mode


def test_report_command_refuses_what_is_not_a_run(capsys, tmp_path):
    assert_one_line_error(run_here(capsys, "report", str(tmp_path / "nope")), "does not exist")
    assert_one_line_error(run_here(capsys, "report", str(tmp_path)), "holds no profile.safetensors")


def _page(tiny_run, tmp_path) -> Path:
    _, _, report, causal, attention = tiny_run
    data = report_data(
        report.profile,
        heads=report.table,
        agreement=report.agreement(),
        causal=causal,
        attention=attention,
        threshold=report.threshold,
    )
    return write_report(data, tmp_path / "report.html")


def _column(page, key: str) -> list[float]:
    index = page.eval_on_selector_all("#head-table th", "ths => ths.map(t => t.dataset.key)").index(key)
    cells = page.eval_on_selector_all("#head-table tbody tr", f"rows => rows.map(r => r.children[{index}].textContent)")
    return [float(c.replace("\u2013", "nan")) for c in cells]


def test_report_in_a_real_browser(tiny_run, tmp_path):
    path = _page(tiny_run, tmp_path)
    n_heads = len(tiny_run[2].table)
    with open_page(path) as (page, log):
        assert page.locator("#head-table tbody tr").count() == n_heads
        page.click("#head-table th[data-key=hf_score]")
        ascending = _column(page, "hf_score")
        assert ascending == sorted(ascending)
        page.click("#head-table th[data-key=hf_score]")
        assert _column(page, "hf_score") == sorted(ascending, reverse=True)
        page.fill("#head-filter", "L1H2")
        assert page.locator("#head-table tbody tr").count() == 1
        page.click("#head-table tbody tr")
        assert page.locator("#head-view h3").first.inner_text().startswith("Layer 1 head 2 (0-based)")
        # the dashed line sits at the scan's threshold (0.3 here), not at a fixed 0.5
        line = page.locator("#head-view line.threshold-line")
        assert line.count() == 1
        y = float(line.get_attribute("y1"))
        grid = page.eval_on_selector_all("#head-view line", "ls => ls.map(l => parseFloat(l.getAttribute('y1')))")
        top, bottom = min(grid), max(grid)  # the lines at 1 and at 0
        assert abs((bottom - y) / (bottom - top) - tiny_run[2].threshold) < 1e-6
        page.hover("#attention-map", position={"x": 120, "y": 40})
        assert "attention" in page.inner_text("#tooltip") or "masked" in page.inner_text("#tooltip")
        page.fill("#head-filter", "")
        page.select_option("#class-filter", "bos-sink")
        shown = page.locator("#head-table tbody tr").count()
        assert shown == int((tiny_run[2].table["class"] == "bos-sink").sum())
        page.hover("#usage-map", position={"x": 100, "y": 60})
        tip = page.inner_text("#tooltip")
        assert "frequency" in tip and "wavelength" in tip and "mean chunk norm" in tip
        layer, chunk = tiny_run[2].profile.frequency_band("q").iloc[0][["layer", "peak_chunk"]].astype(int)
        box = _cell(page, "#usage-map", chunk, layer, n_rows=len(tiny_run[2].profile.geometry.frequencies(0)))
        page.hover("#usage-map", position=box)
        assert "in the layer's frequency band" in page.inner_text("#tooltip")
        pixels = np.frombuffer(page.locator("#usage-map").screenshot(type="png"), dtype=np.uint8)
        assert pixels.std() > 10  # the map is drawn, not blank
        assert not log.console_errors and not log.page_errors, (log.console_errors, log.page_errors)
        assert all(url.startswith("file://") for url in log.requests), log.requests
        assert len(log.requests) == 1


def _cell(page, canvas: str, row: int, column: int, n_rows: int) -> dict:
    """The centre of a heatmap cell in canvas pixels (the page's margins: 58 left, 8 top, 96 right)."""
    width, height = page.eval_on_selector(canvas, "c => [c.clientWidth, c.clientHeight]")
    n_cols = len(page.evaluate("JSON.parse(document.getElementById('report-data').textContent).usage.q"))
    plot_w, plot_h = width - 58 - 96, 420
    return {"x": 58 + (column + 0.5) * plot_w / n_cols, "y": 8 + (row + 0.5) * plot_h / n_rows}


def _page_data(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    start = text.index('id="report-data">') + len('id="report-data">')
    return json.loads(text[start : text.index("</script>", start)])


def test_heads_report_on_real_gemma_in_a_browser(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("To be, or not to be, that is the question.\n\nAll the world's a stage, and all the men.\n")
    out = tmp_path / "run"
    options = ["--out", str(out), "--report", "--format", "json", "--draws", "1"]
    result = run_cli("heads", "--prompts", str(prompts), *options)
    assert result.returncode == 0, result.stderr
    long = pd.read_json(out / "heads_long.json")
    assert len(long) == 72 * long["measure"].nunique()
    data = read_run(out)
    assert data["threshold"] == 0.5 and len(data["heads"]) == 72 and len(data["attention"]["heads"]) == 72
    again = run_cli("report", str(out), "--out", str(tmp_path / "again.html"))
    assert again.returncode == 0, again.stderr
    # --report draws from the results in memory; `report` reads the files back: the same data
    assert _page_data(out / "report.html") == _page_data(tmp_path / "again.html")
    with open_page(out / "report.html") as (page, log):
        assert page.locator("#head-table tbody tr").count() == 72
        assert page.inner_text("header h1") == "ropescope report: gemma-3-270m"
        assert not log.console_errors and not log.page_errors and len(log.requests) == 1


def test_short_reprs_and_notebook_html(tiny_run):
    report = tiny_run[2]
    prof = report.profile
    for obj in (report, prof, prof.geometry):
        assert len(repr(obj)) < 300, repr(obj)
    assert repr(prof).startswith("Profile(") and f"{prof.n_layers} layers" in repr(prof)
    assert "rotary_dim 16 (8 chunks, halves)" in repr(prof.geometry)
    counts = report.class_counts()
    assert sum(counts.values()) == len(report.table)
    assert all(f"{n} {cls}" in repr(report) for cls, n in counts.items() if n)
    page = prof._repr_html_()
    from ropescope.profiling.bands import band_shares

    shares = band_shares(prof, "k")
    for layer in range(prof.n_layers):  # every shaded cell shows the band share of the slow recomputation
        assert f">{shares[layer, 3]:.2f}</td>" in page
    assert report._repr_html_().count("<tr>") >= min(10, len(report.table))
