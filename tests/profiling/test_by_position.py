"""Statistics by token position: each bucket equals a slow recomputation over exactly its tokens,
the buckets add back up to the whole profile, they survive save/load and merge, the chunked
KV-cache path gives the same buckets, and the figure draws."""

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from cli_helpers import assert_one_line_error, run_cli  # noqa: E402
from reference import slow_chunk_norms  # noqa: E402
from tiny import TEXTS, CharTokenizer, tiny_model  # noqa: E402

import ropescope  # noqa: E402
from ropescope.errors import RopescopeError  # noqa: E402
from ropescope.hooks.position import bucket_labels, position_edges  # noqa: E402
from ropescope.plots.position import position_usage_figure  # noqa: E402
from ropescope.profiling.result import ProfileFileError  # noqa: E402

LONG = [" ".join(TEXTS) * 3, TEXTS[0] * 4, TEXTS[2]]


@pytest.fixture(scope="module")
def setup():
    model, tokenizer = tiny_model("gemma3"), CharTokenizer()
    prof = ropescope.profile(model, tokenizer, LONG, max_tokens=200, batch_size=2, by_position=True)
    return model, tokenizer, prof


def test_edges_are_fixed_log_spaced_and_cover_the_context():
    assert position_edges(256) == (0, 16, 64, 256)
    assert position_edges(32768) == (0, 16, 64, 256, 1024, 4096, 16384, 65536)
    assert position_edges(300) == (0, 16, 64, 256, 1024)
    assert bucket_labels((0, 16, 64)) == ["0-15", "16-63"]


def test_each_bucket_equals_a_slow_recomputation(setup):
    """Capture every pre-RoPE key with a plain hook, bucket by position by hand, average."""
    model, tokenizer, prof = setup
    edges = prof.position_edges
    captured = {}
    with ropescope.capture(model, tensors=("k",), include_bos=False) as cap:
        original = cap._add

        def spy(name, layer, x, mask):  # the pre-RoPE keys the hooks see, as chunk norms by a loop
            norms = slow_chunk_norms(x.double().numpy(), x.shape[-1], cap.geometry.layout)
            captured.setdefault(layer, []).append((torch.from_numpy(norms), mask.clone(), cap._positions.clone()))
            original(name, layer, x, mask)

        cap._add = spy
        ids = [tokenizer(t)["input_ids"][:200] for t in LONG]
        for row in ids:  # one prompt per forward: no padding to reason about
            model(input_ids=torch.tensor([row]))
    layer = 1
    for b in range(len(edges) - 1):
        rows = []
        for norms, mask, positions in captured[layer]:
            inside = mask[0] & (positions[0] >= edges[b]) & (positions[0] < edges[b + 1])
            rows.append(norms[0][:, inside].double())  # [heads, tokens, chunks]
        tokens = torch.cat(rows, dim=1)
        bucket = prof.by_position["k"].buckets[b]
        assert float(bucket.count[layer]) == tokens.shape[1]
        if tokens.shape[1]:
            np.testing.assert_allclose(bucket.mean.numpy()[layer], tokens.mean(dim=1).numpy(), rtol=1e-5)
            np.testing.assert_allclose(bucket.max.numpy()[layer], tokens.amax(dim=1).numpy(), rtol=1e-6)
            np.testing.assert_allclose(
                bucket.std.numpy()[layer], tokens.std(dim=1, correction=0).numpy(), rtol=1e-4, atol=1e-6
            )


def test_buckets_add_up_to_the_whole_profile(setup):
    _, _, prof = setup
    for tensor in ("q", "k", "v"):
        whole, stats = prof.by_position[tensor].whole(), prof.stats[tensor]
        np.testing.assert_array_equal(whole.count.numpy(), stats.count.numpy())
        np.testing.assert_allclose(whole.mean.numpy(), stats.mean.numpy(), rtol=1e-5)
        np.testing.assert_allclose(whole.m2.numpy(), stats.m2.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(whole.max.numpy(), stats.max.numpy())
    assert prof.position_counts().sum() == prof.n_tokens
    frame = prof.frame_by_position()
    assert set(frame.columns) >= {"bucket", "position_from", "position_to", "mean_norm", "n_tokens"}


def test_save_load_merge_and_the_chunked_path(setup, tmp_path):
    model, tokenizer, prof = setup
    prof.save(tmp_path / "p.safetensors")
    back = ropescope.load_profile(tmp_path / "p.safetensors")
    np.testing.assert_array_equal(
        back.by_position["q"].buckets[2].mean.numpy(), prof.by_position["q"].buckets[2].mean.numpy()
    )
    first = ropescope.profile(model, tokenizer, LONG[:1], max_tokens=200, by_position=True)
    rest = ropescope.profile(model, tokenizer, LONG[1:], max_tokens=200, by_position=True)
    merged = first.merge(rest)
    np.testing.assert_allclose(merged.position_usage("k", 1), prof.position_usage("k", 1), rtol=1e-5)
    plain = ropescope.profile(model, tokenizer, LONG[1:], max_tokens=200)
    with pytest.raises(ProfileFileError, match="statistics by position and the other not"):
        first.merge(plain)
    pieces = ropescope.profile(model, tokenizer, LONG, max_tokens=200, batch_size=2, by_position=True, chunk_tokens=48)
    np.testing.assert_allclose(pieces.position_usage("q"), prof.position_usage("q"), rtol=1e-4)
    with pytest.raises(RopescopeError, match="without checkpoints or resuming"):
        ropescope.profile(model, tokenizer, LONG, by_position=True, checkpoint=lambda *a: None)


def test_corrupt_buckets_are_refused(setup, tmp_path):
    _, _, prof = setup
    bucket = prof.by_position["q"].buckets[0]
    original = bucket.count
    bucket.count = original.clone()
    bucket.count[0] += 1  # counts no longer add up
    try:
        prof.save(tmp_path / "bad.safetensors")
    finally:
        bucket.count = original
    with pytest.raises(ProfileFileError, match="position buckets count other tokens"):
        ropescope.load_profile(tmp_path / "bad.safetensors")


def test_position_figure(setup):
    _, _, prof = setup
    fig = position_usage_figure(prof)
    titles = [a.get_title() for a in fig.axes]
    assert "queries: frequency quarters by position" in titles and "keys: chunk share of norm by position" in titles
    lines = [a for a in fig.axes if a.get_title() == "keys: frequency quarters by position"][0].get_lines()
    shares = np.sum(
        [line.get_ydata() for line in lines if line.get_label() in ("fastest 25%", "25-50%", "50-75%", "slowest 25%")],
        axis=0,
    )
    np.testing.assert_allclose(shares, 1.0)  # the four quarters of a bucket add up to its whole norm


def test_cli_by_position_on_real_gemma(tmp_path):
    out = tmp_path / "run"
    prompts = tmp_path / "p.txt"
    prompts.write_text(" ".join(["To be, or not to be, that is the question."] * 40) + "\n")
    result = run_cli("profile", "--prompts", str(prompts), "--by-position", "--chunk-tokens", "128", "--out", str(out))
    assert result.returncode == 0, result.stderr
    names = {p.name for p in out.iterdir()}
    assert {"chunk_norms_by_position.csv", "position_usage_gemma-3-270m.png"} <= names
    prof = ropescope.load_profile(out)
    assert prof.position_counts()[:4].tolist()[:2] == [15.0, 48.0]
    assert_one_line_error(
        run_cli("profile", "--prompts", str(prompts), "--by-position", "--resume", "--out", str(tmp_path / "x")),
        "cannot resume",
    )
