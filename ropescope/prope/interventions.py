"""p-RoPE and chunk ablation applied to a loaded model at inference, as context managers built on
:func:`~ropescope.hooks.intervene`: the model's own buffers are untouched, and on exit it computes
exactly what it did before."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from ropescope.errors import RopescopeError, UnsupportedModelError
from ropescope.hooks import intervene, verify_geometry, zero_chunks
from ropescope.model.anatomy import inspect_model
from ropescope.model.geometry import RopeGeometry, chunk_dims
from ropescope.prope.frequencies import check_p, p_rope_frequencies

# Largest |cos ours - cos model's| accepted when matching the layout of the model's cos, by its dtype:
# the model computes angles in float32 and rounds cos to bfloat16 (half an ulp below 1: 2^-9) or
# float16 (2^-12); the candidate layouts differ by far more wherever two chunks' frequencies differ.
COS_TOLERANCE = {torch.bfloat16: 8e-3, torch.float16: 1e-3}


TRIG = ("cos", "polar")  # torch.cos / torch.sin (most families), torch.polar (complex RoPE: Llama 4)


def _trig(angles: torch.Tensor, scaling: float, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of ``angles`` times ``scaling``, by the arithmetic the model itself uses (they
    differ in the last bit), so p = 1 reproduces the model's own rotation exactly."""
    if method == "polar":
        turns = torch.polar(torch.ones_like(angles), angles) * scaling
        return turns.real, turns.imag
    return angles.cos() * scaling, angles.sin() * scaling


def _angles_editor(geometry: RopeGeometry, frequencies: dict[int, np.ndarray]):
    """``edit_angles`` for :func:`~ropescope.hooks.intervene`: cos/sin of ``frequencies[layer]``
    (rad/token per chunk) laid out as the model lays out its own cos/sin.

    Families differ there (``cat(freqs, freqs)``, ``repeat_interleave(freqs, 2)``, or one value per
    chunk), independently of the pair layout of q and k (GLM rotates interleaved pairs but emits
    ``cat`` cos). The layout is read off the model: the first call per layer computes cos with the
    layer's own frequencies in each candidate layout and keeps the one equal to the model's cos."""

    def candidates(chunks: int) -> dict[str, np.ndarray]:
        return {
            "cat": np.concatenate([np.arange(chunks)] * 2),
            "repeat": np.repeat(np.arange(chunks), 2),
            "half": np.arange(chunks),
        }

    found: dict[int, np.ndarray] = {}  # layer -> chunk of every cos/sin column; its keys: the layers reached
    trig: dict[int, str] = {}

    def angles_of(freq, dim_chunk, positions, like):
        g = torch.as_tensor(freq, dtype=torch.float32, device=like.device)[
            torch.as_tensor(dim_chunk, device=like.device)
        ]
        if like.dim() >= 3 and like.shape[0] == 1 and positions.shape[0] > 1:
            positions = positions[:1]  # the model computed one cos for the whole batch
        angles = positions[..., None].float() * g
        return angles.reshape(like.shape) if angles.numel() == like.numel() else angles

    def edit(layer, cos, sin, positions):
        if layer not in frequencies:
            return cos, sin
        scaling = geometry.layers[layer].attention_scaling
        if layer not in found:
            own = geometry.frequencies(layer)
            chunks = len(own)
            for dim_chunk in candidates(chunks).values():
                if len(dim_chunk) != cos.shape[-1]:
                    continue
                mine = angles_of(own, dim_chunk, positions, cos).cos() * scaling
                tolerance = COS_TOLERANCE.get(cos.dtype, 1e-3) * max(scaling, 1e-6)
                if mine.shape == cos.shape and torch.allclose(mine, cos.float(), atol=tolerance):
                    found[layer] = dim_chunk
                    break
            else:
                raise UnsupportedModelError(
                    f"layer {layer}: cannot tell how the model lays out its cos/sin ({tuple(cos.shape)}) over "
                    f"{chunks} chunks, so p-RoPE cannot replace them"
                )
        if layer not in trig:  # which cos/sin arithmetic gives the model's own bits (torch.cos, or torch.polar)
            own = angles_of(geometry.frequencies(layer), found[layer], positions, cos)
            trig[layer] = next((m for m in TRIG if torch.equal(_trig(own, scaling, m)[0].to(cos.dtype), cos)), "cos")
        angles = angles_of(frequencies[layer], found[layer], positions, cos)
        new_cos, new_sin = _trig(angles, scaling, trig[layer])
        return new_cos.to(cos.dtype), new_sin.to(sin.dtype)

    edit.reached = found.keys()  # a live view: the layers whose cos/sin were replaced so far
    return edit


@contextlib.contextmanager
def p_rope(model, p: float, variant: str = "p", layers: Iterable[int] | None = None):
    """Inside the block, ``layers`` (default: all) of ``model`` use p-RoPE ``variant`` at ``p``.

    The model's own buffers are untouched; on exit it computes exactly what it did before. The
    block receives a live view of the layers whose rotation was replaced so far: after a forward
    pass it must hold every chosen layer, else the model applies RoPE through a path the
    intervention does not reach (:func:`check_reached`).
    """
    check_p(p, variant)
    verify_geometry(model)
    geometry = inspect_model(model).geometry
    chosen = range(geometry.n_layers) if layers is None else list(layers)
    for layer in chosen:
        if not 0 <= layer < geometry.n_layers:
            raise RopescopeError(f"layer {layer} is out of range: the model has layers 0..{geometry.n_layers - 1}")
    chosen = [i for i in chosen if i in geometry.rotating_layers]  # NoPE and non-attention layers: nothing to change
    with _rotating_at(
        model, geometry, {i: p_rope_frequencies(geometry.frequencies(i), p, variant) for i in chosen}
    ) as reached:
        yield reached


@contextlib.contextmanager
def _rotating_at(model, geometry: RopeGeometry, frequencies: dict[int, np.ndarray]):
    """Inside the block, layer ``i`` of ``frequencies`` turns its chunks at ``frequencies[i]``
    (rad/token); yields the live view of the layers whose cos/sin were replaced so far."""
    editor = _angles_editor(geometry, frequencies)
    with intervene(model, edit_angles=editor):
        yield editor.reached


@contextlib.contextmanager
def stop_below(model, cutoffs: dict[int, float]):
    """Inside the block, every chunk of layer ``i`` whose frequency is below ``cutoffs[i]``
    (rad/token) stops rotating (frequency 0), the others keep their own: the test of Oka et al.
    (ICLR 2026) with ``cutoffs`` the slowest frequency of each layer's measured band
    (:func:`below_band_cutoffs`). Layers not in ``cutoffs`` are unchanged. Yields the live view
    of the layers reached, as :func:`p_rope`."""
    verify_geometry(model)
    geometry = inspect_model(model).geometry
    frequencies = {}
    for layer, cutoff in cutoffs.items():
        if layer not in geometry.rotating_layers:
            raise RopescopeError(f"layer {layer} does not rotate q and k, so it has no band to stop below")
        own = np.asarray(geometry.frequencies(layer), dtype=np.float64)
        frequencies[layer] = np.where(own < cutoff, 0.0, own)
    with _rotating_at(model, geometry, frequencies) as reached:
        yield reached


def below_band_cutoffs(band) -> dict[int, float]:
    """``{layer: slowest frequency of its band}`` from a
    :func:`~ropescope.profiling.bands.frequency_band` table, for :func:`stop_below`."""
    return {int(row.layer): float(row.slowest_frequency) for row in band.itertuples()}


def check_reached(reached, layers: Iterable[int], model_type: str) -> None:
    """Raise unless a p-RoPE block's forward passes replaced the rotation of every one of ``layers``."""
    missing = sorted(set(layers) - set(reached))
    if missing:
        shown = ", ".join(map(str, missing[:8])) + (" ..." if len(missing) > 8 else "")
        raise UnsupportedModelError(
            f"p-RoPE did not reach layer(s) {shown} of model type {model_type!r}: the model rotates q and k "
            "without the function ropescope replaces, so its numbers would be plain RoPE's"
        )


@contextlib.contextmanager
def ablate_chunks(model, targets: dict[tuple[int, int], Sequence[int]], tensors: tuple[str, ...] = ("q", "k")):
    """Inside the block, zero chunks of q (query head) and k (its KV head) of chosen heads.

    ``targets`` maps ``(layer, query head)`` to chunk indices (0 = fastest). Zeroing a chunk of q
    removes exactly that chunk's term from the head's logits; zeroing it in k also affects every
    query head that shares the KV head (GQA). Use ``tensors=("q",)`` to touch one head only.
    """
    anatomy = inspect_model(model)
    verify_geometry(anatomy)
    geometry, n_heads = anatomy.geometry, anatomy.n_heads
    for (layer, head), chunks in targets.items():
        if not 0 <= layer < geometry.n_layers or not 0 <= head < n_heads:
            raise RopescopeError(f"head ({layer}, {head}) is out of range")
        own = geometry.layer_chunks(layer)
        if any(not 0 <= c < own for c in chunks):
            raise RopescopeError(f"chunks of layer {layer} must be in 0..{own - 1}, got {list(chunks)}")
        source = geometry.layers[layer].kv_source
        if "k" in tensors and source is not None:
            raise RopescopeError(
                f"layer {layer} reuses the keys of layer {source} (KV sharing): ablate its queries only "
                f"(tensors=('q',)), or the keys at layer {source}, which every sharing layer then sees"
            )
    dims = {layer: chunk_dims(geometry, layer) for layer in {layer for layer, _ in targets}}

    with intervene(
        model,
        edit_q=zero_chunks(dims, targets, "q", n_heads) if "q" in tensors else None,
        edit_k=zero_chunks(dims, targets, "k", n_heads) if "k" in tensors else None,
    ):
        yield
