"""Each pair's frequency is the angle the model's own rotary module turns it by at position 1, also
where the module keeps its ``inv_freq`` permuted and puts the angles back in its forward
(ERNIE-4.5-VL), where it recomposes multimodal sections without reordering text (Qwen-VL, GLM-4V,
Qwen3.5), and where a vision tower of the same wrapper keeps an ``inv_freq`` of its own (read: the
language model's)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ropescope.model.anatomy import inspect_model
from ropescope.model.families import language_model
from ropescope.survey import tiny_model


def _turns_at_position_1(rotary) -> np.ndarray:
    """The angles the rotary module's cos/sin turn each dim by at position 1 (text: every axis)."""
    with torch.no_grad():
        try:
            cos, sin = rotary(torch.zeros(1), torch.tensor([[1]]))
        except (RuntimeError, IndexError, ValueError):  # multimodal sections: one row of positions per axis
            cos, sin = rotary(torch.zeros(1), torch.ones(3, 1, 1, dtype=torch.long))
    return torch.atan2(sin, cos).reshape(-1).double().numpy()


@pytest.mark.parametrize("model_type", ["ernie4_5_vl_moe", "qwen2_vl", "glm4v_moe", "qwen3_5_text"])
def test_frequencies_are_the_angles_the_rotary_module_turns_by(model_type):
    model = tiny_model(model_type)
    rotary = (language_model(model) or model.model).rotary_emb
    geometry = inspect_model(model).geometry
    layer = geometry.attention_layers[0]
    read = geometry.layers[layer].inv_freq
    turns = _turns_at_position_1(rotary)
    n = len(read)
    per_pair = turns[0::2][:n] if geometry.layout == "interleaved" else turns[:n]
    assert np.allclose(read, per_pair, rtol=1e-6, atol=0)
    if model_type == "ernie4_5_vl_moe":  # the buffer alone is in another order, and a tower has its own
        assert not np.allclose(rotary.inv_freq.double().numpy(), per_pair)
        assert any("vision" in name for name, _ in model.named_buffers() if name.endswith(".inv_freq"))
