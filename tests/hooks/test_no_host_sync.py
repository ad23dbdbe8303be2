"""Profiling and head scores read nothing back from the device while prompts run: one more prompt
costs exactly the model's own host synchronisations, none of ropescope's (on a GPU the stream never
waits for ropescope inside a run; results are read once, at the end)."""

from __future__ import annotations

import pytest
import torch
from tiny import TEXTS, tiny_model
from torch.utils._python_dispatch import TorchDispatchMode

import ropescope
from ropescope.model.anatomy import inspect_model
from ropescope.profiling.run import pad_batch, run_forward
from ropescope.survey import CharTokenizer

# a scalar read on the host: .item(), float(t), int(t), bool(t) (is_nonzero), torch.equal
SYNCS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.item.default,
    torch.ops.aten.is_nonzero.default,
    torch.ops.aten.equal.default,
}


class Reads(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func in SYNCS
        return func(*args, **(kwargs or {}))


def _reads(fn) -> int:
    fn()  # warm-up: one-off probes of the model
    with Reads() as reads:
        fn()
    return reads.count


@pytest.mark.parametrize("family", ["gemma3", "qwen3"])
def test_one_more_prompt_adds_no_host_read_of_ropescope(family):
    model, tok = tiny_model(family), CharTokenizer()
    text = TEXTS[3]
    ids, mask = pad_batch([tok(text)["input_ids"]], tok.pad_token_id)
    anatomy = inspect_model(model)

    def forward():
        with torch.inference_mode():
            run_forward(anatomy, ids, mask)

    own = _reads(forward)  # the model's own reads per forward pass (its mask code)
    profile_one = _reads(lambda: ropescope.profile(model, tok, [text]))
    profile_two = _reads(lambda: ropescope.profile(model, tok, [text, text], batch_size=1))
    assert profile_two - profile_one == own
    heads_one = _reads(lambda: ropescope.scan_heads(model, tok, [text]))
    heads_two = _reads(lambda: ropescope.scan_heads(model, tok, [text, text]))
    assert heads_two - heads_one == own


def test_the_geometry_self_check_reads_nothing_per_layer():
    """The first pass's self-check of every layer is read once, when the pass ends (one copy to the
    host), not as two scalar reads per layer; and it still checks: the layers are verified."""
    model = tiny_model("gemma3")
    ids = torch.tensor([CharTokenizer()(TEXTS[3])["input_ids"]])

    def run(verify: bool):
        with torch.inference_mode(), ropescope.capture(model, verify_geometry=verify) as cap:
            model(input_ids=ids)
        return cap

    run(True)  # warm-up: one-off probes of the model
    with Reads() as unchecked:
        run(False)
    with Reads() as checked:
        cap = run(True)
    assert checked.count == unchecked.count
    assert cap.verified_layers == set(inspect_model(model).geometry.rotating_layers)
