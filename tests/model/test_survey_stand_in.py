"""The survey's stand-in for a timm vision tower (timm needs torchvision, whose PyPI wheels do not
import beside the CPU torch): built only while a tiny model is built, restored after, never callable,
and every row it touches is marked in the table."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from transformers.models.timm_wrapper import modeling_timm_wrapper

from ropescope.survey import TIMM_STAND_IN, FamilyRow, markdown, timm_tower_stand_in, tiny_model

no_timm = pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed: real towers")


@no_timm
def test_a_timm_tower_is_stood_in_only_while_building():
    original = modeling_timm_wrapper.TimmWrapperModel.__init__
    model = tiny_model("fast_vlm")
    assert modeling_timm_wrapper.TimmWrapperModel.__init__ is original
    assert model.survey_note == TIMM_STAND_IN
    tower = model.get_submodule("model.vision_tower.timm_model")
    with pytest.raises(RuntimeError, match="takes text only"):
        tower(torch.zeros(1, 3, 8, 8))
    assert tiny_model("llama").survey_note == ""  # no timm tower, nothing stood in


@no_timm
def test_the_stand_in_is_restored_after_an_error():
    original = modeling_timm_wrapper.TimmWrapperModel.__init__
    with pytest.raises(ValueError, match="boom"):
        with timm_tower_stand_in() as stood_in:
            assert modeling_timm_wrapper.TimmWrapperModel.__init__ is not original
            raise ValueError("boom")
    assert stood_in == []
    assert modeling_timm_wrapper.TimmWrapperModel.__init__ is original


def test_the_table_marks_rows_with_a_stand_in():
    checks = ("yes", "yes", "yes")
    rows = [
        FamilyRow("gemma3n", "halves", "16/16", "default", "8", "-", *checks, note=TIMM_STAND_IN),
        FamilyRow("llama", "halves", "16/16", "default", "-", "-", *checks),
    ]
    table = markdown(rows)
    assert "| gemma3n * | halves |" in table and "| llama | halves |" in table
    assert table.rstrip().endswith(f"\\* {TIMM_STAND_IN}: gemma3n. Text prompts never reach a vision tower.")
    assert "note" not in table.splitlines()[0]  # no column of its own
