"""Hook stage: two context managers that always restore the model on exit.

- :func:`capture` *observes*: it reduces q, k, v to chunk-norm statistics inside the hooks
  (:mod:`~ropescope.hooks.observe` for Hugging Face models, :mod:`~ropescope.hooks.bridge` for a
  TransformerLens ``TransformerBridge``; :mod:`~ropescope.hooks.stats` holds the accumulators);
- :func:`intervene` *edits* the pre-RoPE q/k or the rotation angles (:mod:`~ropescope.hooks.intervene`).

Both go through the same wrapped ``apply_rotary_pos_emb`` (:mod:`~ropescope.hooks.rope_call`) and
nest: ``with capture(m) as cap, intervene(m, ...)`` observes the edited model (the intervention
wraps the call the capture already wraps, so the capture sees the edited q, k and angles).

Reducers of the post-RoPE q and k (head scores, your own) plug into a capture through
:mod:`~ropescope.hooks.reducers`; :mod:`~ropescope.hooks.attention` recomputes a layer's attention
block by block for them.
"""

from __future__ import annotations

import contextlib
import json
import weakref
from collections.abc import Callable, Iterator

from ropescope.errors import UnsupportedModelError
from ropescope.hooks.bridge import BridgeCapture
from ropescope.hooks.intervene import Intervention, zero_chunks
from ropescope.hooks.observe import Capture
from ropescope.hooks.reducers import Reducer, fan_out
from ropescope.hooks.stats import ChunkNormStats
from ropescope.model.anatomy import inspect_model
from ropescope.model.geometry import RopeGeometry
from ropescope.model.nope import hooks_installed


@contextlib.contextmanager
def capture(model, geometry: RopeGeometry | None = None, **options) -> Iterator[Capture]:
    """Hook ``model`` and yield a :class:`Capture` whose ``stats`` fill up as forward passes run.

    ``model`` is a Hugging Face model, a :class:`~ropescope.model.LoadedModel` or a TransformerLens
    ``TransformerBridge``. ``options`` are those of :class:`Capture` (``include_bos``,
    ``verify_geometry``, ``tensors``, ``on_qk``), and ``reducers``: a list of reducers
    (:mod:`~ropescope.hooks.reducers`) that all see every layer's post-RoPE q and k (instead of one
    ``on_qk``). Every hook and patch is removed on exit, also when the block raises.
    """
    anatomy = inspect_model(model, geometry)
    if "reducers" in options:
        if options.get("on_qk") is not None:
            raise TypeError("pass either on_qk or reducers, not both")
        options["on_qk"] = fan_out(anatomy, options.pop("reducers"))
    cap = (BridgeCapture if anatomy.bridge else Capture)(anatomy, **options)
    try:
        cap.install()
        yield cap
    finally:
        cap.remove()


_VERIFIED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> the geometry it was verified with


def verify_geometry(model) -> None:
    """Check once per model anatomy that its read RoPE geometry is the rotation the model performs
    (the self-check of :class:`Capture` on a 16-token probe), before anything is named by chunk:
    p-RoPE and chunk ablation act on chunks, and a family whose pairs or frequencies differ from the
    read geometry would have other chunks changed than the ones named. Raises
    :class:`~ropescope.errors.GeometryMismatchError`."""
    import torch

    anatomy = inspect_model(model)
    key = json.dumps(anatomy.geometry.to_dict(), sort_keys=True)
    if anatomy.bridge or _VERIFIED.get(anatomy.hf) == key:
        return
    if hooks_installed(anatomy.sites):
        raise UnsupportedModelError(
            "p-RoPE and chunk ablation check the model's RoPE geometry once before they start; enter them "
            "before any capture or intervention (or call ropescope.hooks.verify_geometry(model) first)"
        )
    embeddings = anatomy.hf.get_input_embeddings()
    vocab = int(getattr(embeddings, "num_embeddings", 16) or 16)
    ids = (torch.arange(3, 19, device=embeddings.weight.device) % vocab)[None]
    with torch.no_grad(), capture(anatomy, tensors=("q", "k"), include_bos=True):
        anatomy.base(input_ids=ids, use_cache=False)
    _VERIFIED[anatomy.hf] = key


@contextlib.contextmanager
def intervene(
    model,
    *,
    edit_q: Callable | None = None,
    edit_k: Callable | None = None,
    edit_angles: Callable | None = None,
) -> Iterator[Intervention]:
    """Inside the block, forward passes of ``model`` use the edited q, k or angles (see
    :mod:`~ropescope.hooks.intervene`); on exit the model computes exactly what it did before."""
    anatomy = inspect_model(model)
    if anatomy.bridge:
        raise UnsupportedModelError(
            "interventions (p-RoPE, chunk ablation) need a Hugging Face model, not a TransformerBridge"
        )
    hooks = Intervention(anatomy, edit_q=edit_q, edit_k=edit_k, edit_angles=edit_angles)
    try:
        hooks.install()
        yield hooks
    finally:
        hooks.remove()


__all__ = [
    "BridgeCapture",
    "Capture",
    "ChunkNormStats",
    "Intervention",
    "Reducer",
    "capture",
    "intervene",
    "zero_chunks",
]
