"""Resolve a model name to a :class:`LoadedModel` (model, tokenizer and anatomy), with no network access.

Names ropescope understands, in the order it tries them:

1. a bundled model (:data:`~ropescope.model.bundled.BUNDLED`): a real pretrained checkpoint installed from the package
   registry as a GGUF file, converted once to safetensors in the cache directory;
2. a path to a ``.gguf`` file (converted and cached the same way);
3. a local checkpoint directory (``config.json`` plus weights);
4. a Hugging Face hub id (``org/name`` or a short id such as ``gpt2``), downloaded on first use into
   the Hugging Face cache and read from there afterwards (:mod:`ropescope.model.hub`).

GGUF files are converted once into the cache of :mod:`ropescope.model.bundled`.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from ropescope.errors import ModelLoadError, first_line
from ropescope.model.anatomy import ModelAnatomy, inspect_model
from ropescope.model.bundled import BUNDLED, DEFAULT_MODEL, cache_dir, converted
from ropescope.model.checkpoint_checks import (
    check_config,
    check_fits_in_memory,
    check_sizes_against_weights,
    check_weight_files,
    unknown_rope_type,
)
from ropescope.model.hub import explain, looks_like_hub_id, offline_mode, probe
from ropescope.model.rope_scaling import layer_type_of, parse_rope_scaling, scale_rope
from ropescope.options import DTYPE_NAMES

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


@dataclass(eq=False)
class LoadedModel:
    """A model loaded by :func:`load_model`: the Hugging Face causal LM in eval mode, its tokenizer
    and its :class:`~ropescope.model.anatomy.ModelAnatomy` (RoPE geometry, heads, attention sites,
    logit rules), read once. Every analysis accepts it where it accepts a model, and it unpacks as
    ``model, tokenizer = load_model(...)``."""

    name: str
    model: torch.nn.Module
    tokenizer: object

    @cached_property
    def anatomy(self) -> ModelAnatomy:
        """Read on first use (a model without RoPE loads, and is refused by the first analysis)."""
        return inspect_model(self.model)

    def __iter__(self) -> Iterator:
        return iter((self.model, self.tokenizer))

    def __repr__(self) -> str:
        try:
            g = self.anatomy.geometry
        except Exception:  # no RoPE: say what it is without failing
            return f"LoadedModel({self.name!r}, {type(self.model).__name__})"
        return (
            f"LoadedModel({self.name!r}, {self.anatomy.model_type}, {g.n_layers} layers, "
            f"{self.anatomy.n_heads} heads / {self.anatomy.n_kv_heads} KV, head dim {g.head_dim}, "
            f"{g.n_chunks} chunks, {self.anatomy.dtype})"
        )


def tokenizer_of(model, tokenizer=None):
    """``tokenizer`` if given, else the tokenizer a :class:`LoadedModel` carries (``None`` for others)."""
    return tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    dtype: str = "float32",
    device: str | None = None,
    device_map: str | None = None,
    trust_remote_code: bool = False,
    offline: bool = False,
    allow_missing_weights: bool = False,
    tokenizer: str | None = None,
    revision: str | None = None,
    rope_scaling: str | None = None,
) -> LoadedModel:
    """Load ``name`` (see module docstring) as a :class:`LoadedModel` in eval mode.

    ``dtype`` is one of float32 (default), bfloat16, float16; ``device`` a torch device string;
    ``device_map="auto"`` spreads a large model over the available devices with accelerate.
    A hub id is downloaded unless ``offline`` (or ``HF_HUB_OFFLINE=1``). Remote code runs only
    with ``trust_remote_code=True``. A checkpoint whose tensors do not cover the model (missing,
    unexpected or mis-shaped weights, which transformers would fill with random values) is refused
    unless ``allow_missing_weights``. ``tokenizer`` names where the tokenizer comes from when the
    checkpoint has none of its own (a bundled model, a directory or a hub id); a checkpoint whose
    tokenizer cannot encode text is refused. ``revision`` (hub ids only) is the branch, tag or
    commit to load, as in ``from_pretrained`` (default: the repository's default branch); the
    loaded model's name is then ``"{name}@{revision}"``, so every profile and table names it.
    ``rope_scaling`` (``"TYPE:FACTOR"``: linear, yarn or llama3, see
    :mod:`ropescope.model.rope_scaling`) rebuilds the model's RoPE as a checkpoint configured with
    that scaling would have it, with a context FACTOR times longer; the name then says so
    (``"gemma-3-270m (yarn x4)"``). Raises :class:`ModelLoadError`.
    """
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if device is not None and device_map is not None:
        raise ModelLoadError("give either a device or a device map, not both")
    scaling = parse_rope_scaling(rope_scaling) if rope_scaling is not None else None
    offline = offline_mode(offline)
    if revision is not None:
        revision = _check_revision(name, revision)
    directory = _resolve(name, offline, revision)
    tokenizer_source = _resolve(tokenizer, offline) if tokenizer else None
    model, tokenizer = _load_directory(
        directory,
        DTYPES[dtype],
        device_map,
        trust_remote_code,
        offline,
        allow_missing_weights,
        tokenizer_source,
        revision,
    )
    check_tokenizer(tokenizer, tokenizer_source or directory)
    embeddings = model.get_input_embeddings()
    rows = getattr(embeddings, "num_embeddings", None)
    if tokenizer_source is not None and isinstance(rows, int) and len(tokenizer) > rows:
        raise ModelLoadError(
            f"the tokenizer of {tokenizer_source} has {len(tokenizer):,} tokens but model {name} embeds only "
            f"{rows:,}: they do not belong together"
        )
    if device is not None:
        try:
            model = model.to(device)
        except (RuntimeError, AssertionError) as exc:
            raise ModelLoadError(f"cannot move the model to device {device!r}: {exc}") from None
    model.eval()
    if revision is not None:
        name = f"{name}@{revision}"
    if scaling is not None:
        scale_rope(model, rope_scaling)
        only = layer_type_of(rope_scaling)
        name = f"{name} ({only + ' ' if only else ''}{scaling[0]} x{scaling[1]:g})"
    model.name_or_path = name
    return LoadedModel(name, model, tokenizer)


def _check_revision(name: str, revision: str) -> str:
    """``revision`` as given, refused in one line when it cannot name a hub revision of ``name``."""
    unprintable = any(c.isspace() or not c.isprintable() for c in str(revision))
    if not isinstance(revision, str) or not revision.strip() or unprintable:
        raise ModelLoadError(f"revision {revision!r} is not a branch, tag or commit name")
    if name in BUNDLED or Path(name).expanduser().exists() or name.endswith(".gguf") or not looks_like_hub_id(name):
        raise ModelLoadError(f"--revision applies to hub ids only; {name} is a local or bundled model")
    return revision


def checkpoint_dir(name: str, offline: bool = False) -> str:
    """The plain Hugging Face checkpoint directory behind a model name (for a bundled model or a
    ``.gguf`` file: the converted copy in the cache, converting it first if needed), e.g. for
    ``TransformerBridge.boot_transformers``. A hub id comes back unchanged."""
    return str(_resolve(name, offline_mode(offline)))


def _resolve(name: str, offline: bool = False, revision: str | None = None) -> Path | str:
    """A local directory (bundled and GGUF models: the converted cache) or a hub id whose
    ``config.json`` is now in the Hugging Face cache."""
    if name in BUNDLED:
        return converted(BUNDLED[name].gguf_path(cache_dir()), name)
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {name} does not exist")
        return converted(path, path.stem)
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{name} is a file, not a checkpoint directory or a .gguf file")
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"directory {name} is not a checkpoint (no config.json)")
        return path
    if looks_like_hub_id(name):
        probe(name, offline, ", ".join(BUNDLED), revision)
        return name
    raise ModelLoadError(
        f"unknown model {name!r}: not a bundled model ({', '.join(BUNDLED)}), an existing path, "
        "or a Hugging Face hub id"
    )


def _load_directory(
    source: Path | str,
    dtype: torch.dtype,
    device_map,
    trust_remote_code: bool,
    offline: bool,
    allow_missing: bool,
    tokenizer_source: Path | str | None = None,
    revision: str | None = None,
):
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoTokenizer

    hub = isinstance(source, str)
    kwargs = {"local_files_only": offline or not hub, "trust_remote_code": trust_remote_code}
    if revision is not None:
        kwargs["revision"] = revision
    config, phase = None, "its config.json"
    try:
        config = AutoConfig.from_pretrained(str(source), **kwargs)
        check_config(config, source)
        check_weight_files(source)
        if hub:  # the weights are not here yet: bound the config by this machine's memory before the download
            width = torch.finfo(dtype).bits // 8 if dtype is not None and dtype.is_floating_point else 4
            check_fits_in_memory(config, source, lambda cfg: _on_meta(cfg, trust_remote_code), width)
        else:
            check_sizes_against_weights(config, source, lambda cfg: _on_meta(cfg, trust_remote_code), allow_missing)
        phase = "its weights"
        model, info = model_class(config).from_pretrained(
            str(source), config=config, dtype=dtype, device_map=device_map, output_loading_info=True, **kwargs
        )
        phase = "its tokenizer"
        if tokenizer_source is not None:
            local = offline or not isinstance(tokenizer_source, str)
            tokenizer = _converted_tokenizer(tokenizer_source) or AutoTokenizer.from_pretrained(
                str(tokenizer_source), **{**kwargs, "local_files_only": local, "revision": None}
            )
        else:
            tokenizer = _converted_tokenizer(source) or AutoTokenizer.from_pretrained(str(source), **kwargs)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a checkpoint's files hold becomes one line naming the part
        mapped = explain(source, exc, offline, ", ".join(BUNDLED), revision) if hub else exc
        if mapped is not exc:
            raise mapped from None
        rope_type = unknown_rope_type(config, exc) if config is not None else None
        if rope_type:
            raise ModelLoadError(f"cannot load model {source}: config {rope_type}") from None
        where = " from the hub" if hub else ""
        reason = first_line(exc)
        if phase == "its tokenizer" and tokenizer_source is None:
            reason = f"its tokenizer: {reason} (a checkpoint without tokenizer files? pass --tokenizer NAME_OR_DIR)"
        if "custom code" in reason and not trust_remote_code:
            reason = "the checkpoint ships its own Python code, which ropescope does not run; pass --trust-remote-code "
            reason += "(Python: trust_remote_code=True) only if you trust it"
        elif isinstance(exc, pickle.UnpicklingError):
            reason = (
                f"{phase}: a .bin weights file is corrupt or holds Python objects beyond tensors, which ropescope "
                "never unpickles; use a safetensors copy of the checkpoint"
            )
        elif isinstance(exc, MemoryError):
            reason = f"{phase}: not enough memory (try --dtype bfloat16, or --device-map auto on a GPU machine)"
        elif not isinstance(exc, (OSError, ValueError, KeyError, ImportError, SafetensorError, EOFError)):
            reason = f"{phase}: {type(exc).__name__}: {reason}"  # e.g. a field transformers rejects, a bad .bin file
        raise ModelLoadError(f"cannot load model {source}{where}: {reason}") from None
    if not allow_missing:
        _check_loading_info(source, info)
    return model, tokenizer


PROBE_TEXT = "The quick brown fox jumps over the lazy dog."


def check_tokenizer(tokenizer, source) -> None:
    """Refuse a tokenizer that cannot encode text: one built from a checkpoint without tokenizer
    files (transformers then makes an empty vocabulary, and every prompt would become one unknown
    token, or none)."""
    try:
        ids = list(tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"])
    except Exception as exc:  # noqa: BLE001 - any failure to encode is the reason
        raise ModelLoadError(f"the tokenizer of {source} cannot encode text: {first_line(exc)}") from None
    unknown = getattr(tokenizer, "unk_token_id", None)
    if not ids or all(i == unknown for i in ids):
        raise ModelLoadError(
            f"the tokenizer of {source} encodes {PROBE_TEXT!r} as {len(ids)} token(s), "
            f"{'all unknown' if ids else 'none'}: the checkpoint has no usable tokenizer files; "
            "pass --tokenizer NAME_OR_DIR (Python: tokenizer=...)"
        )


def _on_meta(config, trust_remote_code: bool):
    """``config``'s model built on the meta device: its parameters' shapes, no memory."""
    with torch.device("meta"):
        return model_class(config).from_config(config, trust_remote_code=trust_remote_code)


def model_class(config):
    """The auto class that builds ``config``'s model with its language-model head: a causal LM, or
    an image-text-to-text wrapper (PaliGemma, Qwen2/2.5/3-VL, Gemma 3 4B-27B, ...) whose language
    tower ropescope profiles on text prompts."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return AutoModelForImageTextToText
    return AutoModelForCausalLM


def _converted_tokenizer(source):
    """The tokenizer of a checkpoint ropescope converted from GGUF (in its cache), read straight
    from its ``tokenizer.json`` by the Rust backend: the same token ids as the family's tokenizer
    class (tested on every built-in prompt set), in about 1 s instead of 2.5 s for Gemma's 262k-word
    vocabulary, because the family class first parses the whole file again in Python. ``None`` for
    every other checkpoint, which loads through ``AutoTokenizer`` as usual."""
    import json

    path = Path(str(source))
    converted_root = cache_dir() / "converted"
    if not (path.is_dir() and path.resolve().parent == converted_root.resolve()):
        return None
    if not (path / "tokenizer.json").is_file() or not (path / "tokenizer_config.json").is_file():
        return None
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    settings = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    skip = {"tokenizer_class", "backend", "is_local", "local_files_only", "auto_map"}
    return TokenizersBackend(
        tokenizer_file=str(path / "tokenizer.json"),
        name_or_path=str(path),
        **{k: v for k, v in settings.items() if k not in skip},
    )


def _check_loading_info(source, info: dict) -> None:
    """Refuse weights transformers could not match to the model (it would initialise them randomly)."""
    problems = []
    kinds = (
        ("missing_keys", "missing from"),
        ("mismatched_keys", "of the wrong shape in"),
        ("unexpected_keys", "unknown to the model but in"),
    )
    for key, what in kinds:
        names = sorted(str(n[0] if isinstance(n, tuple) else n) for n in (info.get(key) or ()))
        if names:
            problems.append(f"{len(names)} weight(s) {what} the checkpoint (e.g. {', '.join(names[:3])})")
    if problems:
        raise ModelLoadError(
            f"checkpoint {source} does not match its model: "
            + "; ".join(problems)
            + "; profiling it would measure random weights (pass --allow-missing-weights, in Python "
            "allow_missing_weights=True, if that is what you want)"
        )
