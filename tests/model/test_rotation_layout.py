"""The pair layout is read off the RoPE function a layer really calls (at a quarter turn), not off
its module's ``rotate_half``: GLM-4V's function rotates interleaved pairs with ``rotate_half_llm``
while the module's ``rotate_half`` pairs halves."""

import pytest
import torch

from ropescope.model.families import rotation_layout
from ropescope.model.geometry import read_geometry
from ropescope.survey import tiny_model


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
    [(_halves, "halves"), (_interleaved, "interleaved"), (lambda x: x.flip(-1), None), (lambda x: -_halves(x), None)],
)
def test_rotation_layout_of_a_function(rotate_half, expected):
    assert rotation_layout(_apply(rotate_half), "pair", 8) == expected


def test_rotation_layout_of_a_function_that_cannot_be_called_this_way():
    def needs_positions(q, k, cos, sin, position_ids):
        return q, k

    assert rotation_layout(needs_positions, "pair", 8) is None


def test_glm4v_reads_interleaved_pairs():
    import transformers.models.glm4v.modeling_glm4v as glm4v

    assert rotation_layout(glm4v.apply_rotary_pos_emb, "pair", 16) == "interleaved"
    assert rotation_layout(_apply(glm4v.rotate_half), "pair", 16) == "halves"  # the module's other helper
    assert read_geometry(tiny_model("glm4v")).layout == "interleaved"
