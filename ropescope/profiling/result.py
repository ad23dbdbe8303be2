"""The :class:`Profile`: chunk-norm statistics of one model over one prompt set, saved and reloaded.

A profile holds, for each tensor kind (``q``: queries, ``k``: keys, ``v``: values) and every layer,
head and chunk, the number of tokens seen and the mean, standard deviation and maximum of the chunk
2-norm over those tokens; plus metadata (model, config, RoPE geometry, prompts, versions).

Saved as one checksummed ``.safetensors`` file (:mod:`ropescope.files`): the arrays, the
per-prompt hashes as one uint64 array (so millions of prompts keep the header small) and the rest
of the metadata as JSON. Loading never executes code and refuses impossible content
(:mod:`ropescope.profiling.content`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ropescope.errors import ProfileFileError
from ropescope.files import read_checked, write_checked
from ropescope.hooks.position import PositionStats
from ropescope.hooks.stats import ChunkNormStats
from ropescope.model.geometry import RopeGeometry
from ropescope.profiling.bands import BAND_LEVEL, frequency_band
from ropescope.profiling.compare import compare_profiles
from ropescope.profiling.content import check_content, check_position_content, check_position_edges
from ropescope.profiling.notebook import profile_html, profile_line

FORMAT = "ropescope-profile"
# 6: the per-layer "shared_key" flag in the geometry (False on an MLA layer without RoPE, whose key
# statistics are then absent; older files load with every layer's key shared); 5: per-layer head
# sizes, KV-head counts and KV-sharing sources in the geometry, NaN for the heads and chunks a layer
# does not have (Gemma 4, Gemma 3n); 4: per-layer "rope" and "attention" flags in the geometry (NoPE
# layers, hybrid models' other layers; older files load with every layer rotating); 3: prompt hashes
# as an array; 2: the header is one metadata key
FORMAT_VERSION = 6
READABLE_VERSIONS = ("1", "2", "3", "4", "5", "6")  # 1: the same fields as four metadata keys
HASHES = "prompt_hashes"
MAX_PROMPT_SET_NAME = 200  # characters; longer merged names are summarised
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
    by_position: dict[str, PositionStats] | None = None  # profile(by_position=True): per position bucket

    def __repr__(self) -> str:
        return profile_line(self)

    def _repr_html_(self) -> str:
        return profile_html(self)

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
        """``[layers, chunks]``: mean chunk norm over all counted tokens and all heads of a layer (NaN
        past a layer's own chunks where layers differ in head size, and on a layer that counted no
        token: a tensor never profiled, a layer without softmax attention, a KV-sharing layer's keys)."""
        mean = self._measured_mean(tensor)
        if not np.isnan(mean).any():
            return mean.mean(axis=1)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: chunks the layer lacks
            return np.nanmean(mean, axis=1)

    def head_usage(self, layer: int, tensor: str = "q") -> np.ndarray:
        """``[heads, chunks]``: mean chunk norm of each head of ``layer`` over all counted tokens (the
        layer's own heads and chunks where layers differ; no key or value heads on a layer that
        reuses an earlier layer's keys and values)."""
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer {layer} is out of range: the model has layers 0..{self.n_layers - 1}")
        mean = self._measured_mean(tensor)[layer]
        heads, chunks = self.geometry.layer_sizes(mean.shape[0], tensor)[layer]
        return mean[:heads, :chunks]

    def massive_values(self, threshold: float = 5.0, tensors: tuple[str, ...] = ("q", "k")) -> pd.DataFrame:
        """The massive query and key chunks (Jin et al., ICML 2025; their ``lambda = 5``): one row
        per (tensor, layer, head, chunk) whose root-mean-square norm over the counted tokens exceeds
        ``threshold`` times its head's mean over chunks, with its frequency, wavelength, ratio and
        whether it is on the slow (low-frequency) side of the 1-radian boundary. See
        :mod:`ropescope.profiling.massive`."""
        from ropescope.profiling.massive import massive_table

        return massive_table(self, threshold, tensors)

    def frequency_band(self, tensor: str = "q", level: float = BAND_LEVEL) -> pd.DataFrame:
        """Each rotating layer's measured high-norm frequency band (Oka et al., ICLR 2026): the
        peak chunk of the layer's mean chunk norm and the unbroken run of chunks around it, in
        frequency order, at ``level`` x the peak or more; see
        :func:`ropescope.profiling.bands.frequency_band`."""
        return frequency_band(self, tensor, level)

    def concentration(self, tensor: str = "q") -> np.ndarray:
        """``[layers, heads]``: each head's largest root-mean-square chunk norm over its mean (1 =
        flat; massive values start at 5)."""
        from ropescope.profiling.massive import concentration

        return concentration(self._stats(tensor))

    def _measured_mean(self, tensor: str) -> np.ndarray:
        """``[layers, heads, chunks]`` mean chunk norm, NaN on layers that counted no token (not 0:
        nothing was measured there)."""
        stats = self._stats(tensor)
        mean = stats.mean.numpy().copy()
        mean[stats.count.numpy() == 0] = np.nan
        return mean

    def _stats(self, tensor: str) -> ChunkNormStats:
        if tensor not in self.stats:
            raise ValueError(f"unknown tensor {tensor!r}; expected one of {', '.join(TENSORS)}")
        return self.stats[tensor]

    def frame(self) -> pd.DataFrame:
        """Tidy table: one row per (tensor, layer, head, chunk).

        Columns: ``tensor`` (q/k/v), ``layer``, ``head`` (0-based), ``chunk`` (0 = fastest),
        ``frequency`` (rad/token), ``wavelength`` (tokens), ``mean_norm``, ``std_norm``,
        ``max_norm`` (chunk 2-norm over counted tokens; NaN where no token was counted, ``n_tokens``
        0: a hybrid's layers without attention, values left out), ``n_tokens``. Where layers differ
        in head size or KV-head count (Gemma 4), a layer has rows only for the heads and chunks it has.
        """
        geometry = self.geometry
        freqs = geometry.frequency_table()
        with np.errstate(divide="ignore", invalid="ignore"):
            wavelengths = 2 * np.pi / freqs
        parts = []
        for tensor in TENSORS:
            stats = self.stats[tensor]
            n_layers, n_heads, n_chunks = stats.mean.shape
            layer, head, chunk = np.meshgrid(
                np.arange(n_layers), np.arange(n_heads), np.arange(n_chunks), indexing="ij"
            )
            present = ~stats.absent.numpy().ravel()
            counted = stats.count.numpy()[layer].ravel() > 0  # nothing measured (a hybrid's other layers,
            unmeasured = np.where(counted, 1.0, np.nan)  # values left out): NaN, never a 0 norm
            parts.append(
                pd.DataFrame(
                    {
                        "tensor": tensor,
                        "layer": layer.ravel(),
                        "head": head.ravel(),
                        "chunk": chunk.ravel(),
                        "frequency": freqs[layer, chunk].ravel(),
                        "wavelength": wavelengths[layer, chunk].ravel(),
                        "mean_norm": stats.mean.numpy().ravel() * unmeasured,
                        "std_norm": stats.std.numpy().ravel() * unmeasured,
                        "max_norm": stats.max.numpy().ravel() * unmeasured,
                        "n_tokens": stats.count.numpy()[layer].ravel().astype(np.int64),
                    }
                )[present]
            )
        return pd.concat(parts, ignore_index=True)

    # -- by position (profile(..., by_position=True)) ------------------------------------------
    @property
    def position_edges(self) -> tuple[int, ...] | None:
        """Bucket edges (token positions, 0-based) of :attr:`by_position`, or None."""
        edges = self.meta.get("position_edges")
        return tuple(edges) if edges else None

    def _require_positions(self) -> dict[str, PositionStats]:
        if self.by_position is None:
            raise ValueError("this profile has no statistics by position: profile with by_position=True")
        return self.by_position

    def position_usage(self, tensor: str = "q", layer: int | None = None) -> np.ndarray:
        """``[buckets, chunks]``: mean chunk norm in each position bucket, over the heads of ``layer``
        (all layers when None, each layer weighted alike); NaN for a bucket that counted no token."""
        buckets = self._require_positions()[tensor].buckets
        rows = []
        for bucket in buckets:
            mean = bucket.mean.numpy()
            counted = bucket.count.numpy() > 0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: chunks no counted layer has
                if layer is not None:
                    rows.append(np.nanmean(mean[layer], axis=0) if counted[layer] else np.full(mean.shape[-1], np.nan))
                else:
                    rows.append(
                        np.nanmean(mean[counted], axis=(0, 1)) if counted.any() else np.full(mean.shape[-1], np.nan)
                    )
        return np.array(rows)

    def position_counts(self) -> np.ndarray:
        """Query tokens counted in each position bucket (layer 0)."""
        return np.array([float(b.count[0]) for b in self._require_positions()["q"].buckets])

    def frame_by_position(self) -> pd.DataFrame:
        """Tidy table of :attr:`by_position`: one row per (tensor, bucket, layer, head, chunk).

        Columns: ``tensor``, ``bucket`` (0-based), ``position_from`` and ``position_to`` (token
        positions, inclusive), ``layer``, ``head``, ``chunk``, ``mean_norm``, ``std_norm``,
        ``max_norm`` (chunk 2-norm over the bucket's counted tokens), ``n_tokens``.
        """
        edges, parts = self.position_edges, []
        for tensor, stats in self._require_positions().items():
            for b, bucket in enumerate(stats.buckets):
                n_layers, n_heads, n_chunks = bucket.mean.shape
                layer, head, chunk = np.meshgrid(
                    np.arange(n_layers), np.arange(n_heads), np.arange(n_chunks), indexing="ij"
                )
                parts.append(
                    pd.DataFrame(
                        {
                            "tensor": tensor,
                            "bucket": b,
                            "position_from": edges[b],
                            "position_to": edges[b + 1] - 1,
                            "layer": layer.ravel(),
                            "head": head.ravel(),
                            "chunk": chunk.ravel(),
                            "mean_norm": bucket.mean.numpy().ravel(),
                            "std_norm": bucket.std.numpy().ravel(),
                            "max_norm": bucket.max.numpy().ravel(),
                            "n_tokens": bucket.count.numpy()[layer].ravel().astype(np.int64),
                        }
                    )[~bucket.absent.numpy().ravel()]
                )
        return pd.concat(parts, ignore_index=True)

    def compare(self, other: Profile, by: str = "geometry"):
        """Difference/ratio maps and rank correlations against ``other``
        (:func:`ropescope.profiling.compare.compare_profiles`)."""
        return compare_profiles(self, other, by=by)

    @property
    def tensors(self) -> tuple[str, ...]:
        """The tensors this profile measured: ``("q", "k", "v")`` for ``profile``, ``("q", "k")`` for a
        head scan (profiles saved before this was recorded: those with any token counted)."""
        saved = self.meta.get("tensors")
        if saved is not None:
            return tuple(saved)
        return tuple(t for t in TENSORS if bool((self.stats[t].count > 0).any()))

    # -- merge --------------------------------------------------------------------------------
    def merge(self, other: Profile) -> Profile:
        """The profile of the union of both prompt sets (same model and options required).

        Refused when a prompt (by its sha256) is in both profiles: its tokens would count twice."""
        dtypes = self.meta.get("dtype"), other.meta.get("dtype")
        if dtypes[0] != dtypes[1]:  # the same model run in another precision: other numbers, say so first
            raise ProfileFileError(
                f"cannot merge profiles made in different dtypes: {dtypes[0]} vs {dtypes[1]} (the same model in "
                "another precision gives other statistics); profile both prompt sets with one --dtype"
            )
        if self.meta.get("model_fingerprint") != other.meta.get("model_fingerprint"):
            raise ProfileFileError(
                f"cannot merge profiles of different models: {self.meta.get('model_id')!r} vs "
                f"{other.meta.get('model_id')!r} (model fingerprints {self.meta.get('model_fingerprint')} vs "
                f"{other.meta.get('model_fingerprint')})"
            )
        kinds = self.meta.get("weights_fingerprint_kind"), other.meta.get("weights_fingerprint_kind")
        if kinds[0] != kinds[1]:  # the same weights would look like others
            raise ProfileFileError(
                "cannot merge these profiles: one was made by an older ropescope that fingerprinted the weights "
                f"another way ({kinds[0] or 'the old kind'} vs {kinds[1] or 'the old kind'}); profile its prompts again"
            )
        weights = self.meta.get("weights_fingerprint"), other.meta.get("weights_fingerprint")
        if weights[0] != weights[1]:
            raise ProfileFileError(
                f"cannot merge profiles of different weights of one architecture: {self.meta.get('model_id')!r} vs "
                f"{other.meta.get('model_id')!r} (weight fingerprints {weights[0]} vs {weights[1]})"
            )
        if self.tensors != other.tensors:
            raise ProfileFileError(
                f"cannot merge a profile of {'/'.join(self.tensors)} with one of {'/'.join(other.tensors)}: "
                "the merged file would claim statistics over tokens it never counted"
            )
        if self.meta.get("include_bos") != other.meta.get("include_bos"):
            raise ProfileFileError(
                f"cannot merge profiles with different include_bos: {self.meta.get('include_bos')!r} vs "
                f"{other.meta.get('include_bos')!r}"
            )
        shared = set(self.meta.get("prompt_hashes", ())) & set(other.meta.get("prompt_hashes", ()))
        if shared:
            raise ProfileFileError(
                f"cannot merge: {len(shared)} prompt(s) are in both profiles (e.g. sha256 {sorted(shared)[0]}), so "
                "their tokens would count twice; merge profiles of disjoint prompt sets"
            )
        meta = dict(self.meta)
        hashes = sorted(self.meta["prompt_hashes"] + other.meta["prompt_hashes"])
        meta.update(
            n_tokens=self.n_tokens + other.n_tokens,
            n_prompts=self.meta["n_prompts"] + other.meta["n_prompts"],
            max_seq_len=max(self.meta["max_seq_len"], other.meta["max_seq_len"]),
            prompt_hashes=hashes,
            prompt_set_hash=prompt_set_hash(hashes),
            prompt_set=_merged_name(self.meta["prompt_set"], other.meta["prompt_set"]),
        )
        stats = {t: self.stats[t].merged(other.stats[t]) for t in TENSORS}
        if (self.by_position is None) != (other.by_position is None):
            raise ProfileFileError(
                "cannot merge: one profile has statistics by position and the other not; "
                "profile both with --by-position or neither"
            )
        if self.by_position is None:
            return Profile(meta, stats)
        if self.position_edges != other.position_edges:
            raise ProfileFileError(
                f"cannot merge: position buckets differ ({self.position_edges} vs {other.position_edges})"
            )
        by_position = {t: self.by_position[t].merged(other.by_position[t]) for t in TENSORS}
        return Profile(meta, stats, by_position)

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the profile atomically to ``path`` (a ``.safetensors`` file)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        for tensor in TENSORS:
            arrays.update(self.stats[tensor].to_arrays(tensor))
            if self.by_position is not None:
                arrays.update(self.by_position[tensor].to_arrays(f"position.{tensor}"))
        meta = {k: v for k, v in self.meta.items() if k != HASHES}
        arrays[HASHES] = np.array([int(h, 16) for h in self.meta.get(HASHES, [])], dtype=np.uint64)
        write_checked(path, arrays, FORMAT, FORMAT_VERSION, json.dumps(meta, sort_keys=True))
        return path


def load_profile(path: str | os.PathLike) -> Profile:
    """Load a profile saved by :meth:`Profile.save`: a file, or a run directory holding one.

    Raises :class:`ProfileFileError` for a missing, truncated, tampered or foreign file, and for one
    whose checksum passes but whose content no profiling run could produce.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "profile.safetensors"
    arrays, header = read_checked(path, "profile", FORMAT, READABLE_VERSIONS)
    try:
        meta = json.loads(header["meta"])
        if isinstance(meta, dict) and HASHES in arrays:
            hashes = arrays[HASHES]
            if hashes.dtype != np.uint64 or hashes.ndim != 1:
                raise ValueError(f"array {HASHES} is {hashes.dtype} of shape {hashes.shape}")
            meta[HASHES] = [f"{int(h):016x}" for h in hashes.tolist()]
        stats = {t: ChunkNormStats.from_arrays(arrays, t) for t in TENSORS}
        by_position = None
        if isinstance(meta, dict) and meta.get("position_edges") is not None:
            edges = check_position_edges(meta["position_edges"])
            by_position = {t: PositionStats.from_arrays(arrays, f"position.{t}", edges) for t in TENSORS}
    except (KeyError, ValueError, TypeError) as exc:
        raise ProfileFileError(f"{path} is an incomplete ropescope profile ({exc})") from None
    try:
        check_content(meta, stats)
        if by_position is not None:
            check_position_content(meta, stats, by_position)
    except ValueError as exc:
        raise ProfileFileError(f"{path} is not a possible ropescope profile: {exc}") from None
    return Profile(meta, stats, by_position)


def _merged_name(first: str, second: str) -> str:
    """``first+second``, summarised as ``"N merged prompt sets"`` once longer than
    :data:`MAX_PROMPT_SET_NAME` characters (a profile merged thousands of times keeps a short name)."""
    name = f"{first}+{second}"
    if len(name) <= MAX_PROMPT_SET_NAME:
        return name

    def sets(piece: str) -> int:
        summary = re.fullmatch(r"(\d+) merged prompt sets", piece)
        return int(summary.group(1)) if summary else 1

    return f"{sum(sets(piece) for piece in name.split('+'))} merged prompt sets"


def prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def prompt_set_hash(hashes: list[str]) -> str:
    """Order-independent hash of a prompt set (sha256 over the sorted per-prompt hashes)."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:16]
