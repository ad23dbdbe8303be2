"""Hooks and interventions act only on the forwards of the thread that installed them: another
thread running plain forwards of the same model object at the same time gets the unmodified model
(bit for bit), and the hooked thread's numbers equal a run alone."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import ropescope
from ropescope.survey import TEXTS, CharTokenizer, tiny_model

PLAIN_FORWARDS = 1500


def _ids(text: str) -> torch.Tensor:
    return torch.tensor([CharTokenizer()(text)["input_ids"]])


def _beside(model, work) -> list[str]:
    """Run ``work()`` in this thread while another thread runs plain forwards of ``model``; returns
    what the other thread found wrong (its logits must be the unmodified model's)."""
    ids = _ids(TEXTS[1])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    wrong: list[str] = []
    started, done = threading.Event(), threading.Event()

    def plain():
        with torch.no_grad():
            for n in range(PLAIN_FORWARDS):
                started.set()
                if not torch.equal(model(input_ids=ids).logits, expected):
                    wrong.append(f"forward {n}")
                if done.is_set() and n > 50:
                    break

    other = threading.Thread(target=plain)
    other.start()
    assert started.wait(timeout=120)
    try:
        work()
    finally:
        done.set()
        other.join(timeout=600)
    assert not other.is_alive()
    return wrong


@pytest.mark.parametrize("entry", ["p_rope", "capture", "profile", "intervene"])
def test_another_threads_forwards_run_the_unmodified_model(entry):
    model = tiny_model("llama")
    texts = list(TEXTS) * 8
    alone = ropescope.profile(model, CharTokenizer(), texts).frame()["mean_norm"].to_numpy()
    seen = {}

    def captured() -> int:
        with ropescope.capture(model) as cap, torch.no_grad():
            for text in texts:
                model(input_ids=_ids(text))
        return int(cap.stats["q"].count.sum())

    alone_tokens = captured()

    def work():
        if entry == "profile":
            seen["profile"] = ropescope.profile(model, CharTokenizer(), texts).frame()["mean_norm"].to_numpy()
            return
        if entry == "capture":
            seen["tokens"] = captured()
            return
        context = (
            ropescope.p_rope(model, 0.25)
            if entry == "p_rope"
            else ropescope.intervene(model, edit_q=lambda layer, q: q * 0.5)
        )
        with context, torch.no_grad():
            changed = [model(input_ids=_ids(text)).logits for text in texts]
        with torch.no_grad():
            assert not torch.equal(changed[1], model(input_ids=_ids(texts[1])).logits)  # it did change them

    wrong = _beside(model, work)
    assert not wrong, wrong[:5]
    if entry == "profile":
        np.testing.assert_array_equal(seen["profile"], alone)
    if entry == "capture":  # counted the hooked thread's tokens only: every prompt's, none of the other's
        assert seen["tokens"] == alone_tokens
