"""The :class:`Profile`: chunk-norm statistics of one model over one prompt set, saved and reloaded.

A profile holds, for each tensor kind (``q``: queries, ``k``: keys, ``v``: values) and every layer,
head and chunk, the number of tokens seen and the mean, standard deviation and maximum of the chunk
2-norm over those tokens; plus metadata (model, config, RoPE geometry, prompts, versions).

Saved as one ``.safetensors`` file: arrays plus a JSON header. Loading never executes code.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file

from ropescope.atomic import atomic_path
from ropescope.errors import ProfileFileError
from ropescope.rope import RopeGeometry
from ropescope.stats import ChunkNormStats

FORMAT = "ropescope-profile"
FORMAT_VERSION = 1
TENSORS = ("q", "k", "v")
TENSOR_NAMES = {"q": "query", "k": "key", "v": "value"}
TENSOR_PLURALS = {"q": "queries", "k": "keys", "v": "values"}


@dataclass
class Profile:
    """Chunk-norm statistics of one model over one prompt set.

    ``meta`` is JSON-safe metadata; ``stats`` maps ``"q"``, ``"k"``, ``"v"`` to accumulators of shape
    ``[layers, heads, chunks]`` (query heads for q, KV heads for k and v).
    """

    meta: dict
    stats: dict[str, ChunkNormStats]

    # -- derived views ------------------------------------------------------------------------
    @property
    def geometry(self) -> RopeGeometry:
        return RopeGeometry.from_dict(self.meta["geometry"])

    @property
    def n_layers(self) -> int:
        return int(self.meta["n_layers"])

    @property
    def n_tokens(self) -> int:
        """Tokens counted per layer (the same in every layer)."""
        return int(self.meta["n_tokens"])

    def layer_usage(self, tensor: str = "q") -> np.ndarray:
        """``[layers, chunks]``: mean chunk norm over all counted tokens and all heads of a layer."""
        return self._stats(tensor).mean.numpy().mean(axis=1)

    def head_usage(self, layer: int, tensor: str = "q") -> np.ndarray:
        """``[heads, chunks]``: mean chunk norm of each head of ``layer`` over all counted tokens."""
        stats = self._stats(tensor)
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer {layer} is out of range: the model has layers 0..{self.n_layers - 1}")
        return stats.mean.numpy()[layer]

    def _stats(self, tensor: str) -> ChunkNormStats:
        if tensor not in self.stats:
            raise ValueError(f"unknown tensor {tensor!r}; expected one of {', '.join(TENSORS)}")
        return self.stats[tensor]

    def frame(self) -> pd.DataFrame:
        """Tidy table: one row per (tensor, layer, head, chunk).

        Columns: ``tensor`` (q/k/v), ``layer``, ``head`` (0-based), ``chunk`` (0 = fastest),
        ``frequency`` (rad/token), ``wavelength`` (tokens), ``mean_norm``, ``std_norm``,
        ``max_norm`` (chunk 2-norm over counted tokens), ``n_tokens``.
        """
        geometry = self.geometry
        parts = []
        for tensor in TENSORS:
            stats = self.stats[tensor]
            n_layers, n_heads, n_chunks = stats.mean.shape
            layer, head, chunk = np.meshgrid(
                np.arange(n_layers), np.arange(n_heads), np.arange(n_chunks), indexing="ij"
            )
            freqs = np.stack([geometry.frequencies(i) for i in range(n_layers)])
            with np.errstate(divide="ignore"):
                wavelengths = 2 * np.pi / freqs
            parts.append(
                pd.DataFrame(
                    {
                        "tensor": tensor,
                        "layer": layer.ravel(),
                        "head": head.ravel(),
                        "chunk": chunk.ravel(),
                        "frequency": freqs[layer, chunk].ravel(),
                        "wavelength": wavelengths[layer, chunk].ravel(),
                        "mean_norm": stats.mean.numpy().ravel(),
                        "std_norm": stats.std.numpy().ravel(),
                        "max_norm": stats.max.numpy().ravel(),
                        "n_tokens": stats.count.numpy()[layer].ravel().astype(np.int64),
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)

    # -- merge --------------------------------------------------------------------------------
    def merge(self, other: Profile) -> Profile:
        """The profile of the union of both prompt sets (same model and options required)."""
        if self.meta.get("model_fingerprint") != other.meta.get("model_fingerprint"):
            raise ProfileFileError(
                f"cannot merge profiles of different models: {self.meta.get('model_id')!r} vs "
                f"{other.meta.get('model_id')!r} (model fingerprints {self.meta.get('model_fingerprint')} vs "
                f"{other.meta.get('model_fingerprint')})"
            )
        if self.meta.get("include_bos") != other.meta.get("include_bos"):
            raise ProfileFileError(
                f"cannot merge profiles with different include_bos: {self.meta.get('include_bos')!r} vs "
                f"{other.meta.get('include_bos')!r}"
            )
        meta = dict(self.meta)
        hashes = sorted(self.meta["prompt_hashes"] + other.meta["prompt_hashes"])
        meta.update(
            n_tokens=self.n_tokens + other.n_tokens,
            n_prompts=self.meta["n_prompts"] + other.meta["n_prompts"],
            max_seq_len=max(self.meta["max_seq_len"], other.meta["max_seq_len"]),
            prompt_hashes=hashes,
            prompt_set_hash=prompt_set_hash(hashes),
            prompt_set=f"{self.meta['prompt_set']}+{other.meta['prompt_set']}",
        )
        stats = {t: self.stats[t].merged(other.stats[t]) for t in TENSORS}
        return Profile(meta, stats)

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the profile atomically to ``path`` (a ``.safetensors`` file)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        for tensor in TENSORS:
            arrays.update(self.stats[tensor].to_arrays(tensor))
        header = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "meta": json.dumps(self.meta, sort_keys=True),
        }
        header["checksum"] = _checksum(arrays, header["meta"])
        write_atomically(arrays, header, path)
        return path


def load_profile(path: str | os.PathLike) -> Profile:
    """Load a profile saved by :meth:`Profile.save`: a file, or a run directory holding one.

    Raises :class:`ProfileFileError` for a missing, truncated, tampered or foreign file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "profile.safetensors"
    if not path.is_file():
        raise ProfileFileError(f"no saved profile at {path}")
    try:
        arrays = load_file(str(path))
        with safe_open(str(path), framework="numpy") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ProfileFileError(f"{path} is not a readable ropescope profile ({exc})") from None
    if header.get("format") != FORMAT:
        raise ProfileFileError(f"{path} is not a ropescope profile")
    if header.get("format_version") != str(FORMAT_VERSION):
        raise ProfileFileError(
            f"{path} has profile format version {header.get('format_version')}; "
            f"this ropescope reads version {FORMAT_VERSION}"
        )
    if header.get("checksum") != _checksum(arrays, header.get("meta", "")):
        raise ProfileFileError(f"{path} failed its checksum: the file was modified or is corrupt")
    try:
        meta = json.loads(header["meta"])
        stats = {t: ChunkNormStats.from_arrays(arrays, t) for t in TENSORS}
    except (KeyError, ValueError) as exc:
        raise ProfileFileError(f"{path} is an incomplete ropescope profile ({exc})") from None
    return Profile(meta, stats)


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def prompt_set_hash(hashes: list[str]) -> str:
    """Order-independent hash of a prompt set (sha256 over the sorted per-prompt hashes)."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:16]


def _checksum(arrays: dict[str, np.ndarray], meta: str) -> str:
    digest = hashlib.sha256(meta.encode())
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def write_atomically(arrays: dict[str, np.ndarray], metadata: dict[str, str], path: Path) -> None:
    """Write a safetensors file under a temporary name in the same directory, then rename it."""
    with atomic_path(path) as tmp:
        _write_safetensors(arrays, metadata, tmp)


def _write_safetensors(arrays: dict[str, np.ndarray], metadata: dict[str, str], path: Path) -> None:
    """Write float64 ``arrays`` in the safetensors format with a key-sorted header.

    The reference writer orders header keys arbitrarily; sorting makes equal profiles
    byte-identical files.
    """
    header: dict = {"__metadata__": dict(sorted(metadata.items()))}
    offset, blobs = 0, []
    for name in sorted(arrays):
        blob = np.ascontiguousarray(arrays[name], dtype="<f8").tobytes()
        header[name] = {
            "dtype": "F64",
            "shape": list(arrays[name].shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        offset += len(blob)
        blobs.append(blob)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as handle:
        handle.write(len(encoded).to_bytes(8, "little"))
        handle.write(encoded)
        for blob in blobs:
            handle.write(blob)
        handle.flush()
        os.fsync(handle.fileno())
