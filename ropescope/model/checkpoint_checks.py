"""Checks of a checkpoint's files before the model is built, so a bad file is named in one line.

transformers builds a model from whatever ``config.json`` says: a ``rope_theta`` of ``"abc"`` fails
deep inside the rotary module with a ``TypeError``, ``0`` or a negative base gives infinite or NaN
frequencies that only show up as NaN activations, and a damaged weights file fails with the
safetensors reader's message, which names no file. These checks read the config object and the
weights files' headers (not their data) and say which field or file is wrong.
"""

from __future__ import annotations

import math
import os
import re
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


def weight_shapes(directory) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a local checkpoint's ``*.safetensors`` files, read from their headers
    (no tensor data is read); empty when there are none (a hub id, ``.bin`` weights)."""
    from safetensors import safe_open

    path = Path(str(directory))
    shapes: dict[str, tuple[int, ...]] = {}
    if not path.is_dir():
        return shapes
    for weights in sorted(path.glob("*.safetensors")):
        with safe_open(str(weights), framework="numpy") as handle:
            for name in handle.keys():
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes


_SIZE_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "head_dim",
    "moe_intermediate_size",
)  # sizes that appear as a dimension of some weight


def check_sizes_against_weights(config, directory, build, allow_missing: bool = False) -> None:
    """Refuse, before anything is allocated, a ``config.json`` that asks for more than the weights
    hold (a memory bomb: a million layers, a vocabulary of 10^12, absurd widths).

    ``build(config)`` builds the model on the meta device (no memory). Checked: the config's layer
    count against the layers the weight names show, then the parameter count of the meta model
    against the tensors in the files' headers (more than twice as many is refused, naming the config
    field whose value no weight's shape has). When every size field is some weight's dimension the
    model is not built (the common case costs only the headers). With ``allow_missing`` (the user
    asks for weights the files lack to be drawn at random) a bigger model is allowed, up to what fits
    in this machine's memory in float32."""
    shapes = weight_shapes(directory)
    if not shapes:
        return
    where_file = f"{directory}/config.json"
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = {int(m.group(1)) for name in shapes for m in [re.search(r"\blayers\.(\d+)\.", name)] if m}
    n_layers = config_value(cfg, "num_hidden_layers")
    if layers and isinstance(n_layers, int) and n_layers > max(layers) + 1 and not allow_missing:
        raise ModelLoadError(
            f"{where_file}: num_hidden_layers is {n_layers:,} but the weights hold {max(layers) + 1} layers: the "
            "checkpoint does not match its model (--allow-missing-weights draws the missing layers at random)"
        )
    if layers and isinstance(n_layers, int) and n_layers > 1000 * (max(layers) + 1):
        raise ModelLoadError(f"{where_file}: num_hidden_layers is {n_layers:,}; the weights hold {max(layers) + 1}")
    dims = {d for shape in shapes.values() for d in shape}
    sizes = {key: config_value(cfg, key) for key in _SIZE_FIELDS if isinstance(config_value(cfg, key), int)}
    if all(value in dims for value in sizes.values()):
        return  # every size the config names is a dimension of some weight: nothing to build to be sure
    held = sum(math.prod(shape) for shape in shapes.values())
    try:
        meta = build(config)
    except Exception:  # noqa: BLE001 - a family that cannot be built on the meta device: transformers decides
        return
    wanted = sum(p.numel() for p in meta.parameters())
    limit = 2 * held + 1_000_000
    if allow_missing:
        limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4  # float32 parameters in RAM
    if wanted <= limit:
        return
    culprits = [f"{key} {value:,}" for key, value in sizes.items() if value not in dims]
    hint = f" (no weight has a dimension of its {', '.join(culprits)})" if culprits else ""
    raise ModelLoadError(
        f"{where_file} asks for {wanted:,} parameters but the weights hold {held:,}{hint}; "
        "the config does not belong to these weights"
    )


_GGUF_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # value type -> bytes
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def check_gguf_header(path: Path) -> None:
    """Walk a GGUF file's header (counts, metadata and tensor descriptions) with every count checked
    against the bytes left in the file, before the GGUF reader allocates anything: a crafted count
    (a trillion tensors, an array of 10^15 entries) is refused naming the field, never read until the
    machine runs out of memory."""
    import struct

    size = path.stat().st_size
    with open(path, "rb") as handle:
        data = memoryview(handle.read(min(size, 64 << 20)))  # headers are far smaller than this
    at = 0

    def refuse(what: str) -> ModelLoadError:
        return ModelLoadError(
            f"GGUF file {path}: {what} (the file has {size:,} bytes): truncated or corrupt (or crafted)"
        )

    def take(fmt: str, what: str):
        nonlocal at
        width = struct.calcsize(fmt)
        if at + width > len(data):
            raise refuse(f"{what} runs past the end of the header")
        value = struct.unpack_from(fmt, data, at)[0]
        at += width
        return value

    def count(what: str, each: int) -> int:
        n = take("<Q", what)
        if n * each > size - at:
            raise refuse(f"{what} is {n:,}, more than can fit")
        return n

    def skip_value(kind: int, what: str) -> None:
        nonlocal at
        if kind in _GGUF_FIXED:
            at += _GGUF_FIXED[kind]
        elif kind == _GGUF_STRING:
            length = count(f"length of {what}", 1)  # (read first: it moves ``at`` past the count)
            at += length
        elif kind == _GGUF_ARRAY:
            inner = take("<I", f"element type of {what}")
            n = count(f"array length of {what}", _GGUF_FIXED.get(inner, 8))
            if inner in _GGUF_FIXED:
                at += n * _GGUF_FIXED[inner]
            else:
                for _ in range(n):
                    skip_value(inner, what)
        else:
            raise refuse(f"{what} has unknown value type {kind}")

    if bytes(data[:4]) != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF file (no GGUF magic number)")
    at = 4
    version = take("<I", "version")
    if version < 2:
        return  # GGUF v1 (32-bit counts) is refused by the reader itself
    tensors = count("tensor_count", 8 + 4 + 4 + 8)
    entries = count("metadata_kv_count", 8 + 4)
    for i in range(entries):
        key_length = count(f"length of metadata key {i}", 1)
        key = bytes(data[at : at + key_length]).decode("utf-8", "replace")[:60]
        at += key_length
        skip_value(take("<I", f"type of metadata {key!r}"), f"metadata {key!r}")
    for i in range(tensors):
        length = count(f"name length of tensor {i}", 1)
        at += length
        dims = take("<I", f"n_dims of tensor {i}")
        if dims > 8:
            raise refuse(f"tensor {i} has {dims:,} dimensions")
        shape = [take("<Q", f"shape of tensor {i}") for _ in range(dims)]
        if math.prod(shape) > 8 * size:
            raise refuse(f"tensor {i} has shape {shape}, more elements than the file could hold")
        at += 4 + 8  # type, offset


def machine_memory() -> int:
    """Bytes of memory a model could be loaded into here: physical RAM plus every GPU's."""
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        import torch

        if torch.cuda.is_available():
            total += sum(torch.cuda.get_device_properties(i).total_memory for i in range(torch.cuda.device_count()))
    except Exception:  # noqa: BLE001 - no GPU information: RAM alone
        pass
    return total


def check_fits_in_memory(config, source, build, bytes_per_parameter: int) -> None:
    """For a checkpoint whose weights are not on disk yet (a hub id): refuse, before the download,
    a config whose model cannot fit in this machine's memory at all (a memory bomb from a crafted
    repository), naming the largest size field. A rough size from the config's own fields decides
    whether the model is built on the meta device for the exact parameter count."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    sizes = {key: config_value(cfg, key) for key in ("num_hidden_layers", *_SIZE_FIELDS)}
    sizes = {k: v for k, v in sizes.items() if isinstance(v, int) and not isinstance(v, bool)}
    hidden, layers = sizes.get("hidden_size", 1), sizes.get("num_hidden_layers", 1)
    rough = sizes.get("vocab_size", 1) * hidden + layers * hidden * (4 * hidden + 3 * sizes.get("intermediate_size", 1))
    memory = machine_memory()
    if rough * bytes_per_parameter <= memory // 2 and layers <= 10_000:
        return
    wanted = rough
    if layers <= 10_000:
        try:
            wanted = sum(p.numel() for p in build(config).parameters())
        except Exception:  # noqa: BLE001 - cannot be built on the meta device: keep the rough size
            pass
    if wanted * bytes_per_parameter > memory:
        largest = max(sizes, key=lambda k: sizes[k]) if sizes else "its sizes"
        gib = wanted * bytes_per_parameter / 2**30
        raise ModelLoadError(
            f"config of {source} asks for about {wanted:,} parameters ({gib:,.0f} GiB), "
            f"more than this machine's memory ({memory / 2**30:,.0f} GiB); its largest size field is {largest} "
            f"{sizes.get(largest, 0):,}"
        )
