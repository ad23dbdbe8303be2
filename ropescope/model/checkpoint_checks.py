"""Checks of a checkpoint's files before the model is built, so a bad file is named in one line.

transformers builds a model from whatever ``config.json`` says: a ``rope_theta`` of ``"abc"`` fails
deep inside the rotary module with a ``TypeError``, ``0`` or a negative base gives infinite or NaN
frequencies that only show up as NaN activations, and a damaged weights file fails with the
safetensors reader's message, which names no file. These checks read the config object and the
weights files' headers (not their data) and say which field or file is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from ropescope.errors import ModelLoadError, UnsupportedModelError, first_line
from ropescope.model.families import config_value
from ropescope.model.geometry import refuse_per_layer_heads


def rope_parameter_sets(config) -> Iterator[tuple[str, dict]]:
    """``(where, parameters)`` for every RoPE parameter dict of a config (its text config for a
    multimodal wrapper): ``rope_parameters`` (one dict, or one per layer type as in Gemma 3), the
    older ``rope_scaling`` dict and a top-level ``rope_theta``."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    params = getattr(cfg, "rope_parameters", None)
    if isinstance(params, dict):
        if params and all(isinstance(v, dict) for v in params.values()):
            for layer_type, sub in params.items():
                yield f"rope_parameters.{layer_type}.", sub
        else:
            yield "rope_parameters.", params
    scaling = getattr(cfg, "rope_scaling", None)
    if isinstance(scaling, dict) and scaling is not params:
        yield "rope_scaling.", scaling
    if "rope_theta" in getattr(cfg, "__dict__", {}):
        yield "", {"rope_theta": cfg.__dict__["rope_theta"]}


SHAPE_FIELDS = ("num_hidden_layers", "num_attention_heads", "num_key_value_heads", "hidden_size", "head_dim")


def check_config(config, source) -> None:
    """Refuse config fields no model can be built from, naming the field: a layer, head or width
    count (:data:`SHAPE_FIELDS`) that is not a positive integer, a ``rope_theta`` (the base of the
    frequencies ``theta^(-2i/d)``) that is not a finite positive number, a scaling ``factor`` or
    ``partial_rotary_factor`` that is not a positive number (the latter at most 1)."""
    where_file = f"{source}/config.json" if Path(str(source)).is_dir() else f"config of {source}"
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    try:
        refuse_per_layer_heads(cfg)
    except UnsupportedModelError as exc:
        raise ModelLoadError(f"cannot load model {source}: {exc}") from None
    for key in SHAPE_FIELDS:
        value = config_value(cfg, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ModelLoadError(f"{where_file}: {key} must be a positive integer, got {value!r}")
    for where, params in rope_parameter_sets(config):
        for key, upper in (("rope_theta", None), ("factor", None), ("partial_rotary_factor", 1.0)):
            if key not in params or params[key] is None:
                continue
            value = params[key]
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or value <= 0 or (upper is not None and value > upper):
                bound = f"in (0, {upper:g}]" if upper is not None else "a finite positive number"
                raise ModelLoadError(f"{where_file}: {where}{key} must be {bound}, got {value!r}")


def unknown_rope_type(config, exc: BaseException) -> str | None:
    """The one-line reason when ``exc`` (raised while building the model) is the lookup of a
    ``rope_type`` transformers does not know; ``None`` otherwise."""
    if not isinstance(exc, KeyError) or not exc.args:
        return None
    for where, params in rope_parameter_sets(config):
        for key in ("rope_type", "type"):
            if params.get(key) == exc.args[0]:
                try:
                    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

                    known = ", ".join(["default", *ROPE_INIT_FUNCTIONS])
                except ImportError:  # pragma: no cover - every supported transformers has it
                    known = "see transformers' modeling_rope_utils"
                return f"{where}{key} {exc.args[0]!r} is unknown to the installed transformers (known: {known})"
    return None


def check_weight_files(directory) -> None:
    """Open the header of every ``*.safetensors`` file of a local checkpoint (cheap: no tensor data
    is read) and name the first one that is truncated or corrupt."""
    from safetensors import SafetensorError, safe_open

    path = Path(str(directory))
    if not path.is_dir():
        return
    for weights in sorted(path.glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="numpy") as handle:
                handle.keys()
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(
                f"weights file {weights} is truncated or corrupt ({first_line(exc)}); download or copy it again"
            ) from None
