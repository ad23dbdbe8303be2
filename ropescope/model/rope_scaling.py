"""Context extension at inference: a model's RoPE rescaled the way ``transformers`` itself would.

``with rope_scaling(lm, "yarn:4") as scaled:`` rebuilds every rotary-embedding module of the model
from a copy of its config whose RoPE parameters name that scaling, with transformers' own RoPE
initialisation functions (``ROPE_INIT_FUNCTIONS``: linear position interpolation, YaRN, Llama 3),
swaps the new modules in, and raises the configured context by the factor. The model then computes
exactly what a checkpoint configured with that ``rope_parameters`` computes; ropescope reads the
new frequencies and ``attention_scaling`` from the new modules' buffers as always. On exit the
original module objects and config values come back, so the model is bit-identical to before
(also when the block raises).

Scalings (``TYPE:FACTOR``, FACTOR > 1: the context grows FACTOR times; ``LAYER_TYPE=TYPE:FACTOR``
scales one layer type of a model with RoPE per layer type, e.g. ``full_attention=linear:8`` as
Gemma 3 4B-27B ship it, the others kept):

- ``linear``: every frequency divided by FACTOR (position interpolation, Chen et al. 2023);
- ``yarn``: YaRN (Peng et al., ICLR 2024) with transformers' defaults (beta_fast 32, beta_slow 1,
  attention factor ``0.1 ln(FACTOR) + 1``), the model's context as the original length;
- ``llama3``: Llama 3.1's band-wise rule (low_freq_factor 1, high_freq_factor 4), the model's
  context as the original length.

Refused in one line: ``dynamic`` (NTK frequencies change with each prompt's length, so one
geometry cannot describe a run), ``longrope`` (its per-dimension factors come from training), and
models whose RoPE is already scaled or proportional (scaling them again is not one of these rules).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch

from ropescope.errors import RopescopeError, UnsupportedModelError
from ropescope.model.anatomy import inspect_model
from ropescope.model.geometry import text_config

SCALINGS = ("linear", "yarn", "llama3")
REFUSED = {
    "dynamic": "dynamic NTK scaling changes the frequencies with each prompt's length, "
    "so no one geometry describes a run",
    "longrope": "LongRoPE's per-dimension factors come from training; load a checkpoint that ships them",
}


def layer_type_of(text: str) -> str | None:
    """The layer type a scaling is limited to (``"full_attention=linear:8"`` -> ``"full_attention"``), or None."""
    head, sep, _ = str(text).strip().partition("=")
    return head.strip() if sep else None


def parse_rope_scaling(text: str) -> tuple[str, float]:
    """``"yarn:4"`` (or ``"full_attention=yarn:4"``) -> ``("yarn", 4.0)``; refuses unknown types and
    factors that are not > 1."""
    only = layer_type_of(text)
    if only is not None:
        if not only:
            raise RopescopeError(f"rope scaling {text!r} names no layer type before '='")
        text = str(text).split("=", 1)[1]
    kind, _, factor_text = str(text).strip().partition(":")
    kind = kind.strip().lower()
    if kind in REFUSED:
        raise RopescopeError(f"rope scaling {kind!r} is not supported: {REFUSED[kind]}")
    if kind not in SCALINGS:
        raise RopescopeError(f"unknown rope scaling {text!r}: use TYPE:FACTOR with TYPE one of {', '.join(SCALINGS)}")
    try:
        factor = float(factor_text)
    except ValueError:
        raise RopescopeError(f"rope scaling {text!r} needs a factor, e.g. {kind}:4") from None
    if not factor > 1 or factor != factor or factor == float("inf"):
        raise RopescopeError(f"rope scaling factor must be a finite number above 1, got {factor_text!r}")
    return kind, factor


def _scaled_parameters(params: dict, kind: str, factor: float, context: int) -> dict:
    """One layer type's ``rope_parameters`` with the scaling added."""
    current = params.get("rope_type", "default")
    if current != "default":
        raise UnsupportedModelError(
            f"this model's RoPE is already {current!r}; rope scaling applies to plain RoPE only"
        )
    out = dict(params, rope_type=kind, factor=factor)
    if kind in ("yarn", "llama3"):
        out["original_max_position_embeddings"] = context
    if kind == "llama3":
        out.setdefault("low_freq_factor", 1.0)
        out.setdefault("high_freq_factor", 4.0)
    return out


def _rotary_modules(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str, torch.nn.Module]]:
    """``(parent, attribute, module)`` of every module that owns an ``inv_freq`` buffer directly."""
    found = []
    for parent in model.modules():
        for attribute, child in parent.named_children():
            own = [name for name, _ in child.named_buffers(recurse=False) if name.endswith("inv_freq")]
            if own:
                found.append((parent, attribute, child))
    return found


class _Swap:
    """The rebuilt rotary modules and config values of one scaling, and how to put them in and back."""

    def __init__(self, hf, kind: str, factor: float, context: int, model_type: str, only: str | None = None):
        self.config = text_config(hf)
        params = getattr(self.config, "rope_parameters", None)
        if not isinstance(params, dict) or not params:
            raise UnsupportedModelError(f"model type {model_type!r} keeps no rope_parameters in its config")
        per_type = all(isinstance(v, dict) for v in params.values())  # per layer type (Gemma 3)
        if only is not None and not per_type:
            raise RopescopeError(f"model type {model_type!r} has one RoPE for every layer: drop {only + '='!r}")
        if only is not None and only not in params:
            raise RopescopeError(f"model type {model_type!r} has no layer type {only!r}: it has {', '.join(params)}")
        if per_type:
            self.params = {
                t: _scaled_parameters(p, kind, factor, context) if only in (None, t) else p for t, p in params.items()
            }
        else:
            self.params = _scaled_parameters(params, kind, factor, context)
        self.context = int(context * factor)
        new_config = copy.deepcopy(self.config)
        new_config.rope_parameters, new_config.max_position_embeddings = self.params, self.context
        rotary = _rotary_modules(hf)
        if not rotary:
            raise UnsupportedModelError(f"model type {model_type!r} has no rotary-embedding module to rebuild")
        self.modules = []
        for parent, attribute, module in rotary:
            try:
                device = next(iter(module.buffers())).device
                replacement = type(module)(new_config).to(device)  # built on the CPU, as at loading
            except Exception as exc:  # a family whose rotary module takes other arguments
                raise UnsupportedModelError(
                    f"cannot rebuild {type(module).__name__} with {kind} scaling ({type(exc).__name__}: {exc})"
                ) from None
            self.modules.append((parent, attribute, module, replacement.eval()))
        self.saved = (self.config.rope_parameters, self.config.max_position_embeddings)

    def apply(self) -> None:
        for parent, attribute, _, replacement in self.modules:
            setattr(parent, attribute, replacement)
        self.config.rope_parameters, self.config.max_position_embeddings = self.params, self.context

    def restore(self) -> None:
        for parent, attribute, module, _ in self.modules:
            setattr(parent, attribute, module)
        self.config.rope_parameters, self.config.max_position_embeddings = self.saved


def _swap(model, scaling: str) -> _Swap:
    kind, factor = parse_rope_scaling(scaling)
    anatomy = inspect_model(model)
    if anatomy.bridge:
        raise RopescopeError("rope scaling works on a Hugging Face model, not a TransformerLens bridge")
    if not anatomy.context_length:
        raise UnsupportedModelError("the model's config states no context length, so a scaling has nothing to extend")
    return _Swap(anatomy.hf, kind, factor, anatomy.context_length, anatomy.model_type, layer_type_of(scaling))


def scale_rope(model: torch.nn.Module, scaling: str) -> None:
    """Rescale a Hugging Face model's RoPE for good (what ``load_model(..., rope_scaling=...)`` does
    to a freshly loaded model); :func:`rope_scaling` is the form that restores it."""
    _swap(model, scaling).apply()


@contextlib.contextmanager
def rope_scaling(model, scaling: str) -> Iterator:
    """Inside the block ``model`` (a loaded model or a Hugging Face model) runs with its RoPE scaled
    by ``scaling`` (``"TYPE:FACTOR"``, see the module docs) and a context FACTOR times longer; yields
    the same object (a loaded model's anatomy is re-read for the block). Everything is restored on
    exit, also after an exception."""
    swap = _swap(model, scaling)
    had_anatomy = "anatomy" in getattr(model, "__dict__", {})
    old_anatomy = model.__dict__.get("anatomy") if had_anatomy else None
    try:
        swap.apply()
        if had_anatomy:
            model.__dict__["anatomy"] = inspect_model(model.model)  # the scaled geometry
        yield model
    finally:
        swap.restore()
        if had_anatomy:
            model.__dict__["anatomy"] = old_anatomy
