"""Hooks that reduce q, k and v to chunk-norm statistics while text flows through a model.

``with capture(model) as cap: model(**batch)`` leaves ``cap.stats["q" | "k" | "v"]`` filled with
per-(layer, head, chunk) statistics of the chunk 2-norm over every counted token. Nothing of the
activations is kept: each tensor is reduced inside the hook that sees it.

Where: q and k are read at the model's own ``apply_rotary_pos_emb`` call (after any QK-norm,
before rotation), temporarily wrapped in the family's modeling module; v is read from the value
projection's output. On the first batch every layer's rotation is re-done with the read
:class:`~ropescope.rope.RopeGeometry` and compared with the model's own result.

On exit, also after an exception inside the block, every hook is removed and every wrapped function
restored, so the model computes exactly what it computed before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from ropescope.adapters import attention_sites, text_config, value_module
from ropescope.errors import GeometryMismatchError, UnsupportedModelError
from ropescope.rope import RopeGeometry, chunk_norms, read_geometry, rotate
from ropescope.stats import ChunkNormStats

# Max |ours - model's| / max |model's| accepted by the geometry self-check, by model dtype.
# Half precision: the model rounds cos, sin and every product to 8 (bf16) or 11 (fp16) mantissa
# bits, while ropescope rotates in float32.
VERIFY_TOKENS = 256  # tokens of the first sequence re-rotated by the geometry self-check
GEOMETRY_TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}


class Capture:
    """Installed hooks and the statistics they fill. Use through :func:`capture`.

    ``on_qk(layer, q_rot, k_rot, mask)`` (optional) receives every layer's post-RoPE q and k
    (``[batch, heads, tokens, dims]``) and the counted-token mask, for reducers of its own (head
    scores). ``edit_q(layer, q)`` and ``edit_k(layer, k)`` (optional) return replacements for the
    pre-RoPE query or key that the model then rotates and uses; ``edit_angles(layer, cos, sin,
    positions)`` returns replacement ``cos, sin`` (other frequencies, as p-RoPE). Interventions are
    active only inside the context.

    ``stats`` maps ``"q"``, ``"k"``, ``"v"`` to :class:`~ropescope.stats.ChunkNormStats` (heads are
    query heads for q and KV heads for k and v). ``include_bos`` decides whether tokens equal to the
    tokenizer's BOS id are counted; padding (``attention_mask == 0``) never is.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        geometry: RopeGeometry | None = None,
        *,
        include_bos: bool = False,
        verify_geometry: bool = True,
        tensors: tuple[str, ...] = ("q", "k", "v"),
        on_qk: Callable | None = None,
        edit_q: Callable | None = None,
        edit_k: Callable | None = None,
        edit_angles: Callable | None = None,
    ):
        self.model = model
        self.on_qk = on_qk
        self.edit_q, self.edit_k, self.edit_angles = edit_q, edit_k, edit_angles
        self.cfg = text_config(model)
        self.geometry = geometry or read_geometry(model)
        self.include_bos = include_bos
        self.verify_geometry = verify_geometry
        self.tensors = tensors
        self.sites = self._find_sites()
        n_layers = self.geometry.n_layers
        n_heads = int(self.cfg.num_attention_heads)
        n_kv = int(getattr(self.cfg, "num_key_value_heads", None) or n_heads)
        chunks = self.geometry.n_chunks
        self.stats = {
            "q": ChunkNormStats(n_layers, n_heads, chunks),
            "k": ChunkNormStats(n_layers, n_kv, chunks),
            "v": ChunkNormStats(n_layers, n_kv, chunks),
        }
        self.n_heads, self.n_kv_heads = n_heads, n_kv
        self.verified_layers: set[int] = set()
        self.max_seq_len = 0
        self._mask: torch.Tensor | None = None
        self._positions: torch.Tensor | None = None
        self._layer: int | None = None
        self._handles: list = []
        self._patched: list[tuple[object, object]] = []

    # -- installation -------------------------------------------------------------------------
    def _find_sites(self):
        return attention_sites(self.model)

    def install(self) -> None:
        base = getattr(self.model, self.model.base_model_prefix, self.model)
        self._handles.append(base.register_forward_pre_hook(self._on_model_input, with_kwargs=True))
        for site in self.sites:
            self._handles.append(site.module.register_forward_pre_hook(self._enter_layer(site.layer)))
            self._handles.append(site.module.register_forward_hook(self._leave_layer))
            if "v" in self.tensors:
                vmod = value_module(site, self.cfg.model_type)
                self._handles.append(vmod.register_forward_hook(self._on_value(site.layer)))
        for code in {id(s.code_module): s.code_module for s in self.sites}.values():
            original = code.apply_rotary_pos_emb
            self._patched.append((code, original))
            code.apply_rotary_pos_emb = self._wrap_rope(original)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for code, original in reversed(self._patched):
            code.apply_rotary_pos_emb = original
        self._patched.clear()
        self._layer = None

    # -- hooks --------------------------------------------------------------------------------
    def _on_model_input(self, module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        reference = input_ids if input_ids is not None else embeds
        if reference is None:
            raise UnsupportedModelError("capture needs input_ids or inputs_embeds in the forward call")
        batch, seq = reference.shape[0], reference.shape[1]
        mask = kwargs.get("attention_mask")
        if mask is None or mask.dim() != 2:
            mask = torch.ones(batch, seq, dtype=torch.bool, device=reference.device)
        mask = mask[:, -seq:].bool()  # with a KV cache the mask also spans the cached tokens
        bos = getattr(self.cfg, "bos_token_id", None)
        if not self.include_bos and input_ids is not None and isinstance(bos, int):
            mask = mask & (input_ids != bos)
        positions = kwargs.get("position_ids")
        if positions is None:
            positions = torch.arange(seq, device=reference.device)[None, :].expand(batch, seq)
        self._mask, self._positions = mask, positions
        self.max_seq_len = max(self.max_seq_len, int(positions.max()) + 1 if positions.numel() else 0)

    def _enter_layer(self, layer: int):
        def hook(module, args):
            self._layer = layer

        return hook

    def _leave_layer(self, module, args, output):
        self._layer = None

    def _wrap_rope(self, original):
        def apply_rotary_pos_emb(q, k, cos, sin, *args, **kwargs):
            layer = self._layer
            if layer is not None:
                if self.edit_q is not None:
                    q = self.edit_q(layer, q)
                if self.edit_k is not None:
                    k = self.edit_k(layer, k)
                if self.edit_angles is not None:
                    cos, sin = self.edit_angles(layer, cos, sin, self._positions)
            q_rot, k_rot = original(q, k, cos, sin, *args, **kwargs)
            if layer is not None:
                self._record_qk(layer, q, k, q_rot, k_rot)
                if self.on_qk is not None:
                    with torch.no_grad():
                        self.on_qk(layer, q_rot.detach(), k_rot.detach(), self._token_mask(q.shape[2]))
            return q_rot, k_rot

        return apply_rotary_pos_emb

    @torch.no_grad()
    def _record_qk(self, layer, q, k, q_rot, k_rot) -> None:
        q, k, q_rot, k_rot = q.detach(), k.detach(), q_rot.detach(), k_rot.detach()
        r = self.geometry.rotary_dim
        mask = self._token_mask(q.shape[2])
        if q.shape[1] != self.n_heads or k.shape[1] != self.n_kv_heads or q.shape[-1] < r:
            raise UnsupportedModelError(
                f"layer {layer}: q/k at RoPE have shapes {tuple(q.shape)}, {tuple(k.shape)}; expected "
                f"[batch, {self.n_heads} | {self.n_kv_heads} heads, tokens, >= {r} dims]"
            )
        if self.verify_geometry and layer not in self.verified_layers:
            self._verify(layer, q[..., :r], q_rot[..., :r], "query")
            self._verify(layer, k[..., :r], k_rot[..., :r], "key")
            self.verified_layers.add(layer)
        layout = self.geometry.layout
        if "q" in self.tensors:
            self.stats["q"].update(layer, chunk_norms(q[..., :r], layout), mask)
        if "k" in self.tensors:
            self.stats["k"].update(layer, chunk_norms(k[..., :r], layout), mask)

    def _on_value(self, layer: int):
        @torch.no_grad()
        def hook(module, args, output):
            output = output.detach()
            batch, seq = output.shape[0], output.shape[1]
            v = output.view(batch, seq, self.n_kv_heads, -1).transpose(1, 2)
            norms = chunk_norms(v[..., : self.geometry.rotary_dim], self.geometry.layout)
            self.stats["v"].update(layer, norms, self._token_mask(seq))

        return hook

    def _token_mask(self, seq: int) -> torch.Tensor:
        if self._mask is None or self._mask.shape[1] != seq:
            raise UnsupportedModelError(
                "capture sees one full forward pass at a time; cached generation is not supported"
            )
        return self._mask

    def _verify(self, layer: int, pre: torch.Tensor, post: torch.Tensor, what: str) -> None:
        """Re-rotate the first sequence's first ``VERIFY_TOKENS`` tokens and compare (cheap, and
        every position pattern of a wrong layout or frequency shows up within them)."""
        lr = self.geometry.layers[layer]
        inv_freq = torch.as_tensor(lr.inv_freq, dtype=torch.float32, device=pre.device)
        pre, post = pre[:1, :, :VERIFY_TOKENS], post[:1, :, :VERIFY_TOKENS]
        positions = self._positions[:1, None, :VERIFY_TOKENS]  # [1, 1, S] against [1, H, S, r]
        ours = rotate(pre, positions, inv_freq, self.geometry.layout, lr.attention_scaling)
        theirs = post.float()
        finite = torch.isfinite(theirs) & torch.isfinite(ours)  # overflow is reported by the stats
        if not bool(finite.any()):
            return
        scale = float(theirs[finite].abs().max().clamp(min=1e-30))
        error = float((ours - theirs)[finite].abs().max()) / scale
        tolerance = GEOMETRY_TOLERANCE.get(post.dtype, 3e-2)
        if not error <= tolerance:
            raise GeometryMismatchError(
                f"layer {layer}: rotating the captured {what} with the read RoPE geometry "
                f"({self.geometry.layout} layout) misses the model's own by {error:.2e} of its "
                f"largest magnitude (tolerance {tolerance:.0e})"
            )


@contextlib.contextmanager
def capture(model: torch.nn.Module, geometry: RopeGeometry | None = None, **options):
    """Context manager: hook ``model`` and yield a :class:`Capture` whose ``stats`` fill up.

    ``model`` is a Hugging Face model or a TransformerLens ``TransformerBridge`` (read through its
    hook points, :mod:`ropescope.bridge`).

    ``options`` are those of :class:`Capture` (``include_bos``, ``verify_geometry``, ``tensors``,
    ``on_qk``, ``edit_q``, ``edit_k``, ``edit_angles``). Every hook and patch is removed on exit,
    also when the block raises.
    """
    from ropescope.bridge import BridgeCapture, is_bridge

    cap = (BridgeCapture if is_bridge(model) else Capture)(model, geometry, **options)
    try:
        cap.install()
        yield cap
    finally:
        cap.remove()
