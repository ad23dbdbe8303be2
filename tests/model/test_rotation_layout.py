"""The pair layout is read off the RoPE function a layer really calls (at a quarter turn), not off
its module's ``rotate_half``: GLM-4V's function rotates interleaved pairs with ``rotate_half_llm``
while the module's ``rotate_half`` pairs halves."""

from dataclasses import replace

import pytest
import torch

import ropescope
from ropescope.errors import GeometryMismatchError
from ropescope.model.anatomy import inspect_model
from ropescope.model.families import quarter_turn, rotation_layout
from ropescope.model.geometry import RopeGeometry, read_geometry
from ropescope.survey import TEXTS, CharTokenizer, tiny_model


def _halves(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def _interleaved(x):
    return torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).flatten(-2)


def _apply(rotate_half):
    def apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=1):
        cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
        return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin

    return apply_rotary_pos_emb


@pytest.mark.parametrize(
    "rotate_half, expected",
    [
        (_halves, ("halves", 1)),
        (_interleaved, ("interleaved", 1)),
        (lambda x: -_halves(x), ("halves", -1)),  # NanoChat: [x2, -x1], the pairs turn the other way
        (lambda x: -_interleaved(x), ("interleaved", -1)),
        (lambda x: x.flip(-1), None),
        (lambda x: 2 * _halves(x), None),
    ],
)
def test_quarter_turn_of_a_function(rotate_half, expected):
    assert quarter_turn(_apply(rotate_half), "pair", 8) == expected
    assert rotation_layout(_apply(rotate_half), "pair", 8) == (expected[0] if expected else None)


def test_rotation_layout_of_a_function_that_cannot_be_called_this_way():
    def needs_positions(q, k, cos, sin, position_ids):
        return q, k

    assert rotation_layout(needs_positions, "pair", 8) is None


def test_glm4v_reads_interleaved_pairs():
    import transformers.models.glm4v.modeling_glm4v as glm4v

    assert rotation_layout(glm4v.apply_rotary_pos_emb, "pair", 16) == "interleaved"
    assert rotation_layout(_apply(glm4v.rotate_half), "pair", 16) == "halves"  # the module's other helper
    assert read_geometry(tiny_model("glm4v")).layout == "interleaved"


def test_nanochat_turns_its_pairs_the_other_way():
    """NanoChat's pairs turn by -m*g: read as turn -1, saved with the profile, checked by the
    geometry self-check (which fails when the turn is taken as +1)."""
    model = tiny_model("nanochat")
    geometry = read_geometry(model)
    assert (geometry.layout, geometry.turn) == ("halves", -1)
    assert RopeGeometry.from_dict(geometry.to_dict()).to_dict() == geometry.to_dict()
    assert "turn" not in read_geometry(tiny_model("llama")).to_dict()  # the usual way: files unchanged
    prof = ropescope.profile(model, CharTokenizer(), TEXTS[:2])
    assert prof.geometry.turn == -1
    with pytest.raises(GeometryMismatchError, match="misses the model's own"):
        ropescope.profile(inspect_model(model, replace(geometry, turn=1)), CharTokenizer(), TEXTS[:2])
    with pytest.raises(ValueError, match="turn must be 1 or -1"):
        RopeGeometry.from_dict({**geometry.to_dict(), "turn": 2})
