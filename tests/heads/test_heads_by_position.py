"""Heads by position and distance: offset scores per query-position bucket and chunk terms per
relative distance equal slow recomputations from eager attention and captured q/k; the buckets add
back up to the whole scan; the command writes tables and figure on the real Gemma 3 270M."""

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from cli_helpers import run_cli  # noqa: E402
from tiny import TEXTS, CharTokenizer, tiny_model  # noqa: E402

import ropescope  # noqa: E402
from ropescope.heads.by_position import log_distances  # noqa: E402
from ropescope.heads.scan import (  # noqa: E402
    distance_term_table,
    position_score_table,
    sink_heads,
    sink_position_table,
)
from ropescope.plots.heads_position import heads_by_position_figure, sinks_by_frequency_figure  # noqa: E402

PROMPTS = [" ".join(TEXTS) * 2, TEXTS[1] * 3]


@pytest.fixture(scope="module")
def scan():
    model, tokenizer = tiny_model("gemma3"), CharTokenizer()  # sliding window 6 on layers 0 and 2
    return model, tokenizer, ropescope.scan_heads(model, tokenizer, PROMPTS, max_tokens=150, by_position=True)


def test_log_distances():
    assert log_distances(10) == (0, 1, 2, 4, 8)


def test_buckets_add_up_to_the_whole_scan(scan):
    _, _, report = scan
    arrays = report.by_position
    np.testing.assert_allclose(
        arrays.offset_sum.sum(-1), report.arrays.offset_sum, rtol=1e-6
    )  # whole: float32 block sums
    np.testing.assert_array_equal(arrays.offset_rows.sum(-1), report.arrays.offset_rows)


def test_offset_scores_by_position_equal_eager_attention(scan):
    model, tokenizer, report = scan
    edges, K = report.by_position.edges, report.max_offset
    sums = np.zeros_like(report.by_position.offset_sum)
    rows = np.zeros_like(report.by_position.offset_rows)
    for text in PROMPTS:
        ids = torch.tensor([tokenizer(text)["input_ids"][:150]])
        with torch.no_grad():
            attentions = model(input_ids=ids, output_attentions=True).attentions
        for layer, att in enumerate(attentions):
            att = att[0].double().numpy()
            for i in range(att.shape[1]):
                b = int(np.searchsorted(edges, i, side="right") - 1)
                for d in range(K + 1):
                    window = model.config.sliding_window if layer != 1 else None
                    if i >= d + 1 and (window is None or d < window):
                        sums[layer, :, d, b] += att[:, i, i - d]
                        rows[layer, d, b] += 1
    np.testing.assert_array_equal(rows, report.by_position.offset_rows)
    np.testing.assert_allclose(report.by_position.offset_sum, sums, rtol=1e-5, atol=1e-6)
    table = position_score_table(report)
    first = table[(table.layer == 1) & (table["head"] == 0) & (table.offset == 1) & (table.position_from == 16)]
    assert first.score.item() == pytest.approx(sums[1, 0, 1, 1] / rows[1, 1, 1], rel=1e-5)


def test_chunk_terms_by_distance_equal_a_slow_recomputation(scan):
    model, tokenizer, report = scan
    captured = {}

    def on_qk(layer, q_rot, k_rot, mask):
        captured.setdefault(layer, []).append((q_rot[0].double().clone(), k_rot[0].double().clone()))

    with torch.no_grad(), ropescope.capture(model, on_qk=on_qk, tensors=(), include_bos=True):
        for text in PROMPTS:
            model(input_ids=torch.tensor([tokenizer(text)["input_ids"][:150]]))
    arrays, geometry = report.by_position, report.profile.geometry
    half = geometry.rotary_dim // 2  # halves layout: chunk c pairs dims c and c + half
    layer = 1  # the global layer: every distance visible
    scaling = ropescope.inspect_model(model).logit_rules[layer].scaling
    for index, r in enumerate(arrays.distances):
        total, count = np.zeros((4, half)), 0
        for q, k in captured[layer]:
            k = k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)
            for i in range(r, q.shape[1]):
                for c in range(half):
                    total[:, c] += scaling * (
                        (q[:, i, c] * k[:, i - r, c] + q[:, i, c + half] * k[:, i - r, c + half]).numpy()
                    )
                count += 1
        assert arrays.term_rows[layer, index] == count
        np.testing.assert_allclose(arrays.distance_terms()[layer, :, index], total / count, rtol=1e-4, atol=1e-6)
    terms = distance_term_table(report)
    assert set(terms.quarter) == {1, 2, 3, 4}


def test_sinks_by_position_equal_eager_attention_and_a_slow_recomputation(scan):
    model, tokenizer, report = scan
    arrays, geometry = report.by_position, report.profile.geometry
    edges, half = arrays.edges, geometry.rotary_dim // 2
    sums, rows = np.zeros_like(arrays.sink_sum), np.zeros_like(arrays.sink_rows)
    terms = np.zeros_like(arrays.sink_term_sum)
    captured = {}

    def on_qk(layer, q_rot, k_rot, mask):
        captured[layer] = (q_rot[0].double().clone(), k_rot[0].double().clone())

    rules = ropescope.inspect_model(model).logit_rules
    for text in PROMPTS:
        ids = torch.tensor([tokenizer(text)["input_ids"][:150]])
        with torch.no_grad(), ropescope.capture(model, on_qk=on_qk, tensors=(), include_bos=True):
            attentions = model(input_ids=ids, output_attentions=True).attentions
        for layer, att in enumerate(attentions):
            att = att[0].double().numpy()
            q, k = captured[layer]
            k = k.repeat_interleave(q.shape[0] // k.shape[0], dim=0)
            window = model.config.sliding_window if layer != 1 else None
            for i in range(1, att.shape[1]):
                if window is not None and i >= window:
                    continue  # the first token is out of this row's window
                b = int(np.searchsorted(edges, i, side="right") - 1)
                sums[layer, :, b] += att[:, i, 0]
                rows[layer, b] += 1
                for c in range(half):  # one chunk at a time, the two dims of the halves layout
                    terms[layer, :, b, c] += (
                        rules[layer].scaling * (q[:, i, c] * k[:, 0, c] + q[:, i, c + half] * k[:, 0, c + half]).numpy()
                    )
    np.testing.assert_array_equal(rows, arrays.sink_rows)
    np.testing.assert_allclose(arrays.sink_sum, sums, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(arrays.sink_term_sum, terms, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(arrays.sink_sum.sum(-1), report.arrays.sink_sum, rtol=1e-5)  # buckets add up
    heads = sink_heads(report, 2)
    table = sink_position_table(report, heads)
    assert set(zip(table.layer, table["head"], strict=True)) == set(heads)
    one = sink_position_table(report, [(1, 3)])  # the global layer: rows at every position see the first token
    one = one[one.position_from == 16]
    b = edges.index(16)
    assert len(one) == half and one.rows.iloc[0] == rows[1, b] > 0
    np.testing.assert_allclose(one.term, terms[1, 3, b] / rows[1, b], rtol=1e-4)
    assert one.sink.iloc[0] == pytest.approx(sums[1, 3, b] / rows[1, b], rel=1e-5)
    fig = sinks_by_frequency_figure(report, "tiny", count=2)
    assert "which frequencies build the attention sink" in fig._suptitle.get_text()
    assert sum(1 for a in fig.axes if a.get_ylabel().startswith("chunk")) == 2


def test_figure(scan):
    _, _, report = scan
    fig = heads_by_position_figure(report, "tiny")
    assert fig.axes[0].get_xlabel() == "query position (bucket)"
    assert any("semantic/mixed heads" in a.get_title() for a in fig.axes)


def test_heads_by_position_command_on_real_gemma(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text(" ".join(["To be, or not to be, that is the question."] * 12) + "\n")
    out = tmp_path / "run"
    result = run_cli("heads", "--prompts", str(prompts), "--by-position", "--draws", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    names = {p.name for p in out.iterdir()}
    assert {"heads_by_position.csv", "heads_distance_terms.csv", "heads_by_position_gemma-3-270m.png"} <= names
    assert {"sinks_by_position.csv", "sinks_by_frequency_gemma-3-270m.png"} <= names
