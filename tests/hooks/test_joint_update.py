"""One statistics update per layer for q, k and v (``hooks.stats.JointUpdate``), checked against a
slow NumPy recomputation, and the capture path that feeds it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import slow_chunk_norms

import ropescope
from ropescope.hooks.stats import ChunkNormStats, JointUpdate
from ropescope.survey import TEXTS, CharTokenizer, tiny_model

LAYERS, CHUNKS = 3, 4
# (q heads, k heads, v heads, rotary dims) per layer: layer 1 has fewer KV heads than the arrays,
# layer 2 half the chunks (Gemma 4's mixed layer sizes)
GROUPED = (
    [(4, 2, 2, 8), (4, 1, 1, 8), (4, 2, 2, 4)],
    {"q": [(4, 4), (4, 4), (4, 2)], "k": [(2, 4), (1, 4), (2, 2)], "v": [(2, 4), (1, 4), (2, 2)]},
)
# as many key and value heads as query heads (one reduction axis for the three), and one layer with fewer
EQUAL = (
    [(2, 2, 2, 8), (1, 1, 1, 8), (2, 2, 2, 4)],
    {"q": [(2, 4), (1, 4), (2, 2)], "k": [(2, 4), (1, 4), (2, 2)], "v": [(2, 4), (1, 4), (2, 2)]},
)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bfloat16", "float32"])
@pytest.mark.parametrize(("SHAPES", "SIZES"), [GROUPED, EQUAL], ids=["grouped-query", "equal-heads"])
def test_a_joint_update_equals_a_slow_recomputation_per_tensor(SHAPES, SIZES, dtype):
    """Batches arriving in the model's order (v first), some with only k and v, only q (a layer that
    reuses keys) or q and v (an MLA layer without RoPE), an infinite key and a NaN value that leave
    the same token's query counted, and a read between batches: every count, mean, m2, max and
    non-finite count equals NumPy's over exactly the tokens that count for that tensor. In half
    precision the tensors are joined in one float32 copy; float32 ones are read where they are."""
    gen = torch.Generator().manual_seed(0)
    stats = {t: ChunkNormStats(LAYERS, SIZES[t][0][0], CHUNKS, sizes=SIZES[t]) for t in "qkv"}
    joint = JointUpdate(stats)
    seen = {(t, layer): [] for t in "qkv" for layer in range(LAYERS)}  # per tensor and layer: [H, tokens, C]
    offered = {(t, layer): 0 for t in "qkv" for layer in range(LAYERS)}
    for step in range(4):
        for layer, (hq, hk, hv, r) in enumerate(SHAPES):
            batch, seq = 2, 7
            x = {
                t: torch.randn(batch, h, seq, r, generator=gen).to(dtype) for t, h in (("q", hq), ("k", hk), ("v", hv))
            }
            x["k"][1, 0, 3, 0] = float("inf")
            x["v"][0, -1, 5, 1] = float("nan")
            mask = torch.rand(batch, seq, generator=gen) > 0.2
            names = {0: ["v", "q", "k"], 1: ["v", "k"], 2: ["q"], 3: ["v", "q"]}[step]
            joint.update(layer, [(t, x[t]) for t in names], mask, "halves")
            for t in names:
                norms = slow_chunk_norms(x[t].double().numpy(), r, "halves")  # [B, H, S, C]
                for b in range(batch):
                    for s in range(seq):
                        if mask[b, s]:
                            offered[t, layer] += 1
                            if np.isfinite(norms[b, :, s]).all():
                                seen[t, layer].append(norms[b, :, s])
        if step == 1:
            assert float(stats["q"].count[0]) > 0  # a read folds the shared running sums; later batches go on
    for t in "qkv":
        for layer in range(LAYERS):
            heads, chunks = SIZES[t][layer]
            tokens = np.stack(seen[t, layer], axis=1)  # [H, tokens, C]
            assert float(stats[t].count[layer]) == tokens.shape[1]
            assert float(stats[t].nonfinite[layer]) == offered[t, layer] - tokens.shape[1]
            mean = stats[t].mean.numpy()[layer]
            # the norms themselves are float32 (as in every profile): rtol 1e-6 is their rounding
            np.testing.assert_allclose(mean[:heads, :chunks], tokens.mean(axis=1), rtol=1e-6)
            m2 = ((tokens - tokens.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
            np.testing.assert_allclose(stats[t].m2.numpy()[layer][:heads, :chunks], m2, rtol=1e-5)
            np.testing.assert_allclose(stats[t].max.numpy()[layer][:heads, :chunks], tokens.max(axis=1), rtol=1e-6)
            assert np.isnan(mean[heads:]).all() and np.isnan(mean[:, chunks:]).all()  # what the layer lacks


def test_the_capture_reduces_each_layer_once_with_all_its_tensors(monkeypatch):
    """A profile hands each layer's q, k and v to one joint update (not one update per tensor), and the
    result equals a profile whose tensors are reduced one at a time by ``ChunkNormStats.update``."""
    model, tokenizer = tiny_model("llama"), CharTokenizer()
    calls = []
    original = JointUpdate.update

    def counting(self, layer, parts, mask, layout):
        calls.append((layer, sorted(name for name, _ in parts)))
        return original(self, layer, parts, mask, layout)

    monkeypatch.setattr(JointUpdate, "update", counting)
    joint = ropescope.profile(model, tokenizer, list(TEXTS), batch_size=2)
    layers = model.config.num_hidden_layers
    batches = -(-len(TEXTS) // 2)
    assert calls == [(layer, ["k", "q", "v"]) for _ in range(batches) for layer in range(layers)]

    def one_at_a_time(self, layer, parts, mask, layout):
        from ropescope.model.geometry import chunk_norms

        for name, x in parts:
            self.members[name].update(layer, chunk_norms(x, layout), mask)

    monkeypatch.setattr(JointUpdate, "update", one_at_a_time)
    separate = ropescope.profile(model, tokenizer, list(TEXTS), batch_size=2)
    for t in "qkv":
        for field in ("count", "mean", "m2", "max", "nonfinite"):
            np.testing.assert_allclose(
                getattr(joint.stats[t], field).numpy(), getattr(separate.stats[t], field).numpy(), rtol=1e-12
            )


def test_prompts_of_many_lengths_keep_one_cached_row():
    """The ones the sums multiply by are one cached row, grown to the longest block, and the scratch
    blocks one buffer each, not one tensor per prompt length (a run over prompts of thousands of
    lengths keeps its memory)."""
    stats = {t: ChunkNormStats(1, 2, 2) for t in "qkv"}
    joint = JointUpdate(stats)
    for seq in (5, 9, 3, 12, 7):
        x = torch.randn(1, 2, seq, 4)
        joint.update(0, [(t, x) for t in "qkv"], torch.ones(1, seq, dtype=torch.bool), "halves")
    assert tuple(joint._constants["ones", "cpu"].shape) == (1, 12)
    # float32 tensors are read where they are: no joined copy of them is made
    assert sorted(name for name, *_ in joint._constants) == ["block", "ones", "zero"]
    # the largest block's size: 12 tokens x (3 tensors x 2 heads x 2 chunks + 3 counting columns)
    assert joint._constants["block", "cpu", torch.float64].numel() == 12 * (12 + 3)
    assert float(stats["q"].count[0]) == 5 + 9 + 3 + 12 + 7


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bfloat16", "float32"])
def test_scratch_made_in_inference_mode_serves_a_later_update_outside_it(dtype):
    """The reused scratch blocks made inside ``torch.inference_mode`` (a profile's forward) are
    inference tensors, which may not be written outside it: an update under plain ``no_grad`` after
    one in inference mode makes its own and counts the same as two updates in inference mode."""
    x = torch.randn(2, 2, 6, 8, generator=torch.Generator().manual_seed(3)).to(dtype)
    mask = torch.ones(2, 6, dtype=torch.bool)
    results = []
    for later in (torch.inference_mode, torch.no_grad):
        stats = {t: ChunkNormStats(1, 2, 4) for t in "qkv"}
        joint = JointUpdate(stats)
        with torch.inference_mode():
            joint.update(0, [(t, x) for t in "qkv"], mask, "halves")
        with later():
            joint.update(0, [(t, x * 2) for t in "qkv"], mask, "halves")
        results.append([stats[t].mean.clone() for t in "qkv"])
    for ours, theirs in zip(*results, strict=True):
        assert torch.equal(ours, theirs)
    assert float(stats["q"].count[0]) == 24
