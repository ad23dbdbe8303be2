"""Eval mode for the length of a measurement, the model's own modes restored after.

A model left in training mode (``model.train()``, a notebook after fine-tuning) drops attention
weights and hidden units at random: no two measurements would agree, and none would describe the
model as it is used. Every entry point runs the model in eval mode and gives each module its own
mode back when it ends, also when it raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def enter_eval(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Put every module of ``model`` that is in training mode into eval mode; returns those modules
    (for :func:`restore_training`)."""
    training = [module for module in model.modules() if module.training]
    for module in training:
        module.training = False
    return training


def restore_training(modules: list[torch.nn.Module]) -> None:
    """Put back in training mode the modules :func:`enter_eval` took out of it."""
    for module in modules:
        module.training = True


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside the block; each module's own mode after it."""
    training = enter_eval(model)
    try:
        yield
    finally:
        restore_training(training)
