"""Holes on the statistics' hot path: a self-check that compared nothing is not a pass, a float32
sum that overflows while every norm is finite is summed in float64, and TF32 never reaches
ropescope's own matrix products."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ropescope
from ropescope.errors import GeometryMismatchError
from ropescope.hooks.precision import full_float32
from ropescope.hooks.stats import ChunkNormStats
from ropescope.model.anatomy import inspect_model
from ropescope.model.geometry import rotate
from ropescope.survey import TEXTS, CharTokenizer, tiny_model


def test_a_self_check_with_nothing_finite_is_not_a_pass():
    model = tiny_model("llama")
    anatomy = inspect_model(model)
    wrong = inspect_model(model, anatomy.geometry.with_layout("interleaved"))
    ids = torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]])
    with ropescope.capture(wrong, verify_geometry=True) as cap:
        q, k = torch.full((1, 4, 5, 16), float("nan")), torch.full((1, 2, 5, 16), float("nan"))
        cap._positions, cap._mask = torch.arange(5)[None], torch.ones(1, 5, dtype=torch.bool)
        cap._record_qk(0, q, k, q, k)  # a first batch that overflowed everywhere: nothing to compare
        assert 0 not in cap.verified_layers
        with pytest.raises(GeometryMismatchError, match="layer 0"):
            with torch.no_grad():
                model(input_ids=ids)


@pytest.mark.parametrize("layout", ["halves", "interleaved"])
def test_a_self_check_with_some_values_overflowed_compares_the_finite_ones(layout):
    """The batched self-check reads every value first; one that meets an overflow is compared again
    over the finite values only: a right geometry passes there, a wrong one is still caught."""
    model = tiny_model("llama")  # rotates its halves
    anatomy = inspect_model(model)
    geometry = anatomy.geometry if layout == "halves" else anatomy.geometry.with_layout(layout)
    lr = anatomy.geometry.layers[0]
    inv_freq = torch.as_tensor(lr.inv_freq, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 4, 40, 16, generator=generator), torch.randn(1, 2, 40, 16, generator=generator)
    positions = torch.arange(40)
    q_rot, k_rot = (rotate(x, positions, inv_freq, "halves", lr.attention_scaling) for x in (q, k))
    q[0, 0, 3, 5] = q_rot[0, 0, 3, 5] = float("inf")  # an overflowed value, in a token the check reads
    k_rot[0, 0, 39, 0] = float("nan")
    with ropescope.capture(model, verify_geometry=True) as cap:
        cap.geometry = geometry
        cap._positions, cap._mask = positions[None], torch.ones(1, 40, dtype=torch.bool)
        cap._record_qk(0, q, k, q_rot, k_rot)
        if layout == "halves":
            cap._check_geometry()
            assert 0 in cap.verified_layers
        else:
            with pytest.raises(GeometryMismatchError, match="layer 0"):
                cap._check_geometry()


def test_overflowing_float32_sums_of_finite_norms_are_exact():
    values = np.array([3e38, 2.5e38, 3.2e38, 1e38], dtype=np.float32)  # each finite, the sum is not
    norms = torch.from_numpy(values)[None, None, :, None].expand(1, 1, 4, 2).contiguous()  # [B, H, S, C]
    stats = ChunkNormStats(1, 1, 2)
    stats.update(0, norms, torch.ones(1, 4, dtype=torch.bool))
    expected = values.astype(np.float64)
    assert stats.nonfinite[0] == 0 and stats.count[0] == 4
    assert np.allclose(stats.mean[0, 0].numpy(), expected.mean(), rtol=1e-7)
    assert np.allclose(stats.m2[0, 0].numpy(), ((expected - expected.mean()) ** 2).sum(), rtol=1e-6)
    assert np.isfinite(stats.m2.numpy()).all()


def test_full_float32_pins_and_restores_the_matmul_precision(monkeypatch):
    matmul = torch.backends.cuda.matmul
    seen = []
    isfinite = torch.isfinite

    def spy(*args):  # runs inside update, among its reductions
        seen.append(matmul.fp32_precision)
        return isfinite(*args)

    monkeypatch.setattr(torch, "isfinite", spy)

    before = matmul.fp32_precision
    try:
        matmul.fp32_precision = "tf32"  # as a user on an Ampere GPU might set it
        with full_float32():
            assert matmul.fp32_precision == "ieee"
        assert matmul.fp32_precision == "tf32"
        ChunkNormStats(1, 1, 2).update(0, torch.ones(1, 1, 3, 2), torch.ones(1, 3, dtype=torch.bool))
        assert seen == ["ieee"] and matmul.fp32_precision == "tf32"
    finally:
        matmul.fp32_precision = before


def test_a_layer_that_runs_twice_in_one_pass_is_refused():
    model = tiny_model("llama")
    layer = model.model.layers[0]
    once = layer.forward

    def twice(*args, **kwargs):  # a looped model (Dory) runs its layers several times per token
        out = once(*args, **kwargs)
        return once(out if isinstance(out, torch.Tensor) else out[0], *args[1:], **kwargs)

    ids = torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]])
    layer.forward = twice
    try:
        with pytest.raises(ropescope.errors.UnsupportedModelError, match="layer 0 ran twice in one forward pass"):
            ropescope.profile(model, CharTokenizer(), [TEXTS[1]])
    finally:
        del layer.forward
    prof = ropescope.profile(model, CharTokenizer(), [TEXTS[1], TEXTS[0]], batch_size=1)  # passes: no false alarm
    assert (prof.stats["q"].count > 0).all()
    with torch.no_grad():
        model(input_ids=ids)
