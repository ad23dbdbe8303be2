"""Observing: hooks that reduce q, k and v to chunk-norm statistics while text flows through a model.

``with capture(model) as cap: model(**batch)`` leaves ``cap.stats["q" | "k" | "v"]`` filled with
per-(layer, head, chunk) statistics of the chunk 2-norm over every counted token. Nothing of the
activations is kept past its layer: a layer's q, k and v wait (by reference) until all of them have
arrived (or the layer ends) and are reduced together, in one :class:`~ropescope.hooks.stats.JointUpdate`.

Where: q and k are read at the model's own ``apply_rotary_pos_emb`` call (after any QK-norm,
before rotation; :mod:`~ropescope.hooks.rope_call`); v is read from the value projection's output.
On the first batch every layer's rotation is re-done with the read
:class:`~ropescope.model.geometry.RopeGeometry` and compared with the model's own result.
Observing never changes what the model computes; to change it, use :mod:`~ropescope.hooks.intervene`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

from ropescope.errors import GeometryMismatchError, UnsupportedModelError
from ropescope.hooks.model_lse import ModelLse
from ropescope.hooks.position import PositionStats, bucket_slices
from ropescope.hooks.rope_call import RopeCallHooks
from ropescope.hooks.stats import ChunkNormStats, JointUpdate
from ropescope.model.anatomy import ModelAnatomy
from ropescope.model.families import (
    family_adapter,
    is_mla,
    mp_qkv_parts,
    pass_sources,
    post_rope_norm,
    temperature_tuned,
    value_module,
    values_of,
)
from ropescope.model.geometry import chunk_norms, rotate

# Max |ours - model's| / max |model's| accepted by the geometry self-check, by model dtype.
# Half precision: the model rounds cos, sin and every product to 8 (bf16) or 11 (fp16) mantissa
# bits, while ropescope rotates in float32. Full precision: the two rotations agree exactly in every
# run we could reproduce, but one test run saw 1.4e-4 on layer 0 of Gemma 3 270M; a wrong layout,
# frequency or scaling misses by 1e-1 or more, so 1e-3 keeps every real mismatch caught.
# tokens of the first sequence (first query and key head) re-rotated by the geometry self-check: the
# first 16 (a layout error shows from position 1) and every 8th to position 127 (a frequency or
# scaling error grows with the position): 30 tokens with the reach of 128.
VERIFY_LAST = 127
VERIFY_TOKENS = (*range(16), *range(23, VERIFY_LAST + 1, 8))
GEOMETRY_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-3, torch.float16: 4e-3, torch.bfloat16: 3e-2}


class Capture(RopeCallHooks):
    """Installed hooks and the statistics they fill. Use through :func:`ropescope.hooks.capture`.

    ``on_qk(layer, q_rot, k_rot, mask)`` (optional) receives every layer's post-RoPE q and k
    (``[batch, heads, tokens, dims]``) and the counted-token mask, for reducers of its own (head
    scores).

    ``stats`` maps ``"q"``, ``"k"``, ``"v"`` to :class:`~ropescope.hooks.stats.ChunkNormStats` (heads
    are query heads for q and KV heads for k and v). ``include_bos`` decides whether tokens equal to
    the tokenizer's BOS id are counted; padding (``attention_mask == 0``) never is. ``tensors``
    chooses which of q, k, v are reduced; ``verify_geometry`` turns the self-check off.
    """

    def __init__(
        self,
        anatomy: ModelAnatomy,
        *,
        include_bos: bool = False,
        verify_geometry: bool = True,
        tensors: tuple[str, ...] = ("q", "k", "v"),
        on_qk: Callable | None = None,
        by_position: tuple[int, ...] | None = None,
        model_lse: bool = True,
    ):
        super().__init__(anatomy, include_bos=include_bos)
        self.on_qk = on_qk
        # reducers that take each row's softmax normaliser get it from the model's own attention
        # kernel where it computes one (hooks.model_lse; ``model_lse=False``: always recomputed)
        self._model_lse = None
        if on_qk is not None and getattr(on_qk, "uses_lse", False) and model_lse:
            self._model_lse = self.on_qk = ModelLse(on_qk)
        self.verify_geometry = verify_geometry
        self.tensors = tensors
        self.n_heads, self.n_kv_heads = anatomy.n_heads, anatomy.n_kv_heads
        n_layers, chunks = self.geometry.n_layers, self.geometry.n_chunks
        sizes = {t: anatomy.layer_sizes(t) for t in ("q", "k", "v")}
        self.stats = {
            "q": ChunkNormStats(n_layers, self.n_heads, chunks, sizes=sizes["q"]),
            "k": ChunkNormStats(n_layers, self.n_kv_heads, chunks, sizes=sizes["k"]),
            "v": ChunkNormStats(n_layers, self.n_kv_heads, chunks, sizes=sizes["v"]),
        }
        # each layer's q, k and v wait for one another and go to the statistics in one joint update
        self._joint = JointUpdate(self.stats)
        self._waiting: dict[int, tuple[torch.Tensor, list[tuple[str, torch.Tensor]]]] = {}
        self._valued: set[int] = set()  # layers whose values are read (from their value projection)
        self.verified_layers: set[int] = set()
        self._checks: list[tuple] = []  # this pass's geometry self-checks, read when it ends (_check_geometry)
        self._verify_index: dict[tuple, torch.Tensor] = {}  # (tokens, device) -> the tokens the self-check compares
        self._nope_q = None  # a NoPE layer's q, until its k is made
        self._query_scale: dict[int, torch.Tensor] = {}  # a NoPE layer's query scale, handed to it per pass
        # KV sharing: the post-RoPE keys of each layer whose keys later layers reuse, for on_qk
        self._sources = {lr.kv_source for lr in self.geometry.layers if lr.kv_source is not None}
        self._source_keys: dict[int, torch.Tensor] = {}
        # MLA: the parts of q and k RoPE does not see, kept per layer until the layer ends (for on_qk)
        self._mla = {site.layer: site.module for site in anatomy.hooked_sites if is_mla(site.module)}
        self._mla_parts: dict[int, dict[str, torch.Tensor]] = {}
        self._mla_positions: dict[int, torch.Tensor] = {}  # an MLA layer's position_ids, for its query scaling
        # a norm applied after RoPE (Llama 4's qk_norm): head scores wait for its two outputs (q, then k)
        self._post_norm = {site.layer: norms for site in anatomy.hooked_sites if (norms := post_rope_norm(site))}
        self._normed: dict[int, list[torch.Tensor]] = {}
        # partial rotary layers that hand RoPE only their rotary dims (Phi, StableLM, Persimmon): the
        # whole pre-RoPE q and k, read from the modules that make them, for head scores
        self._whole: dict[int, dict[str, torch.Tensor]] = {}
        self._whole_unreadable: dict[int, str] = {}
        self._rotated_shape: dict[int, torch.Size] = {}  # a post-norm layer's q at RoPE, heads first
        # with ``by_position`` (bucket edges, see hooks.position): the same statistics per position bucket
        self.by_position = None
        self._sliced_positions, self._slices = None, None  # bucket column ranges of the current batch
        if by_position is not None:
            heads = {"q": self.n_heads, "k": self.n_kv_heads, "v": self.n_kv_heads}
            self.by_position = {
                t: PositionStats(by_position, n_layers, heads[t], chunks, sizes=sizes[t]) for t in heads
            }

    def install(self) -> None:
        super().install()
        self._register(self.anatomy.base, lambda *args: self._end_of_pass())
        if self._model_lse is not None:
            self._model_lse.install()  # last: a call held past its layer runs when the pass ends
            self._register(self.anatomy.base, lambda *args: self._model_lse.flush())
        for layer, module in self._mla.items():
            scaling = getattr(module, "softmax_scaling", None)
            if self.on_qk is not None and isinstance(scaling, torch.nn.Module):  # Mistral Large 4: per-position
                self._register(module, self._keep_positions(layer), pre=True, with_kwargs=True)
            if self.on_qk is None and layer not in self.geometry.nope_layers:
                continue  # a RoPE layer's statistics come from its RoPE call; its other parts are for on_qk
            # AXK2: one projection per head [query | output gate], the query's no-RoPE dims first
            names = ("q_b_proj", "q_proj", "q_gate_proj")
            query = next(
                (getattr(module, n) for n in names if isinstance(getattr(module, n, None), torch.nn.Module)), None
            )
            if query is None:
                raise UnsupportedModelError(
                    f"layer {layer}: its MLA queries come out of a fused projection ropescope cannot split "
                    "(no q_proj, q_b_proj or q_gate_proj), so head scores cannot see their no-RoPE part"
                )
            self._register(query, self._mla_part(layer, "q_pass"))
            self._register(module.kv_b_proj, self._mla_part(layer, "k_nope"))
            self._register(module, self._mla_scores(layer))
        if self.on_qk is not None:
            for layer in self.geometry.nope_layers:
                site = self.anatomy.sites_by_layer.get(layer)
                if site is not None:
                    hook = self._keep_query_scale(layer)
                    self._register(site.module, hook, pre=True, with_kwargs=True)
            for site in self.anatomy.hooked_sites:
                layer = site.layer
                partial = self.geometry.layer_rotary_dim(layer) < self.geometry.layer_head_dim(layer)
                if not partial or layer in self._mla or layer in self.geometry.nope_layers:
                    continue
                try:
                    q_source, k_source, packing = pass_sources(site)
                except UnsupportedModelError as exc:
                    self._whole_unreadable[layer] = str(exc)  # refused only if its RoPE call needs it
                    continue
                sources = {"qk": q_source} if q_source is k_source else {"q": q_source, "k": k_source}
                for kinds, source in sources.items():
                    self._register(source, self._keep_whole(layer, kinds, packing))
            for layer, norms in self._post_norm.items():
                for norm in dict.fromkeys(norms):  # one module called twice (q, then k), or one each
                    self._register(norm, self._keep_normed(layer))
                site = self.anatomy.sites_by_layer[layer]
                self._register(site.module, self._normed_scores(layer))
        if "v" in self.tensors:
            for site in self.anatomy.sites:
                if self.geometry.layers[site.layer].kv_source is not None:
                    continue  # its values are the source layer's, counted there
                vmod = value_module(site, self.anatomy.model_type)
                if self._values_too_narrow(site.layer, vmod):
                    continue
                self._register(vmod, self._on_value(site.layer))
                self._valued.add(site.layer)

    def _values_too_narrow(self, layer: int, vmod: torch.nn.Module) -> bool:
        """Whether ``layer``'s value heads are narrower than the dims its RoPE turns (MiMo-V2-Flash
        configured with a ``v_head_dim`` below a full-rotary ``head_dim``): values are cut into the
        query's and key's pairs as a control, and such a value has no such pairs, so its statistics
        are left out (NaN, like a KV-sharing layer's keys) with a warning, never cut some other way."""
        if layer in self._mla or family_adapter(self.anatomy.model_type).value_packing != "alone":
            return False
        width, heads = getattr(vmod, "out_features", None), self.anatomy.layer_v_heads(layer)
        if not isinstance(width, int) or not heads or width % heads:
            return False
        r = self.geometry.layer_rotary_dim(layer)
        if width // heads >= r:
            return False
        warnings.warn(
            f"layer {layer}'s values have {width // heads} dims per head, fewer than the {r} its RoPE turns: "
            "they have no chunks to compare with the query's and key's, so their statistics are left out",
            stacklevel=2,
        )
        return True

    def at_rope(self, layer, q, k, cos, sin, rotate_as_model):
        head_dim = self.geometry.layer_head_dim(layer)
        if layer in self._mla:  # the RoPE parts; head scores wait for the rest (see _mla_scores)
            q_rot, k_rot = rotate_as_model(q, k, cos, sin)
            self._record_qk(layer, q, k, q_rot, k_rot)
            if self.on_qk is not None:
                self._mla_parts.setdefault(layer, {}).update(q_rot=q_rot.detach(), k_rot=k_rot.detach())
            return q_rot, k_rot
        whole = self._whole.pop(layer, None)
        if self.on_qk is not None and q.shape[-1] != head_dim:
            q_rot, k_rot = rotate_as_model(q, k, cos, sin)
            self._record_qk(layer, q, k, q_rot, k_rot)
            with torch.no_grad():
                q_all, k_all = self._whole_vectors(layer, whole, q, k, q_rot, k_rot, head_dim)
                self.on_qk(layer, q_all, k_all, self._token_mask(q.shape[2]))
            return q_rot, k_rot
        q_rot, k_rot = rotate_as_model(q, k, cos, sin)
        self._record_qk(layer, q, k, q_rot, k_rot)
        if self.on_qk is not None and layer in self._sources:
            self._source_keys[layer] = k_rot.detach()
        if layer in self._post_norm:
            self._rotated_shape[layer] = q_rot.shape
        if self.on_qk is not None and layer not in self._post_norm:
            with torch.no_grad():
                self.on_qk(layer, q_rot.detach(), k_rot.detach(), self._token_mask(q.shape[2]))
        return q_rot, k_rot

    def _keep_whole(self, layer: int, kinds: str, packing: str):
        """Keep the output of the module that makes a partial rotary layer's whole q (or k, or both)."""

        def hook(module, args, output):
            output = output.detach()
            kept = self._whole.setdefault(layer, {})
            if packing == "per_head_qkv":  # per head [q, k, v]
                batch, seq = output.shape[:2]
                per_head = output.view(batch, seq, self.anatomy.layer_kv_heads(layer), -1)
                d = per_head.shape[-1] // 3
                kept["q"], kept["k"] = per_head[..., :d], per_head[..., d : 2 * d]
            elif packing == "mp_qkv":  # CodeGen's blocks, cut as its forward cuts them
                parts = mp_qkv_parts(output, self.anatomy.sites_by_layer[layer].module, self.n_heads)
                kept["q"], kept["k"] = parts["q"], parts["k"]
            else:
                kept[kinds] = output

        return hook

    def _whole_vectors(self, layer, whole, q, k, q_rot, k_rot, head_dim):
        """``[q_rot | q_pass]`` and ``[k_rot | k_pass]`` of a layer that hands RoPE only its rotary
        dims (the order the model concatenates them in; a dot product is the same in any order).
        The pass parts come from the module outputs kept by :meth:`_keep_whole`, read in whichever
        layout reproduces the RoPE input exactly; anything else is refused, never guessed."""
        r = q.shape[-1]
        if whole is None or set(whole) != {"q", "k"}:
            reason = self._whole_unreadable.get(layer, "")
            raise UnsupportedModelError(
                f"head scores need the whole head vector, but model type {self.anatomy.model_type!r} passes only "
                f"{r} of its {head_dim} dims to apply_rotary_pos_emb and the rest was not seen"
                + (f" ({reason})" if reason else "")
            )
        out = []
        for name, pre, rotated in (("q", q, q_rot), ("k", k, k_rot)):
            x, found = whole[name], None
            candidates = [x.view(*x.shape[:2], pre.shape[1], -1).transpose(1, 2)] if x.dim() == 3 else []
            if x.dim() == 4:
                candidates = [x, x.transpose(1, 2)]
            for candidate in candidates:
                if candidate.shape[:3] == pre.shape[:3] and candidate.shape[-1] == head_dim:
                    if torch.equal(candidate[..., :r], pre.detach()):
                        found = candidate
                        break
            if found is None:
                raise UnsupportedModelError(
                    f"layer {layer}: the whole {name} read for head scores does not hold the {name} handed to "
                    "apply_rotary_pos_emb, so its unrotated dims cannot be trusted"
                )
            out.append(torch.cat([rotated.detach(), found[..., r:].to(rotated.dtype)], dim=-1))
        return out[0], out[1]

    @torch.no_grad()
    def at_shared(self, layer, q, q_rot):
        """A layer reusing an earlier layer's keys and values: its queries are measured (and their
        rotation checked); its keys and values are the source layer's, counted there once. Head
        scores see the source layer's post-RoPE keys, as the model's attention does."""
        q, q_rot = q.detach(), q_rot.detach()
        r = self.geometry.layer_rotary_dim(layer)
        if q.shape[1] != self.n_heads or q.shape[-1] < r:
            raise UnsupportedModelError(
                f"layer {layer}: q at RoPE has shape {tuple(q.shape)}; expected [batch, {self.n_heads} heads, tokens, "
                f">= {r} dims]"
            )
        if self.verify_geometry and layer not in self.verified_layers:
            self._verify(layer, [q], [q_rot], r, "query")
        mask = self._token_mask(q.shape[2])
        if "q" in self.tensors:
            self._add("q", layer, q[..., :r], mask)
        if self.on_qk is not None:
            source = self.geometry.layers[layer].kv_source
            keys = self._source_keys.get(source)
            if keys is None or keys.shape[2] != q.shape[2]:
                raise UnsupportedModelError(f"layer {layer} reuses the keys of layer {source}, which were not seen")
            self.on_qk(layer, q_rot, keys, mask)

    def _leave_layer(self, module, args, output):
        layer = self._layer
        super()._leave_layer(module, args, output)
        self._reduce_waiting(layer)
        if self._model_lse is not None:
            self._model_lse.flush()  # the layer's attention handed over no normaliser: recompute it

    def remove(self) -> None:
        if self._model_lse is not None:
            self._model_lse.remove()
        super().remove()
        self._source_keys.clear()
        self._waiting.clear()  # a layer the pass did not finish (it raised) adds nothing
        self._mla_parts.clear()
        self._checks.clear()  # a pass that did not finish checks nothing
        self._mla_positions.clear()
        self._whole.clear()  # partial-rotary layers' kept q/k outputs: nothing outlives the capture

    def _keep_normed(self, layer: int):
        def hook(module, args, output):
            self._normed.setdefault(layer, []).append(output.detach())

        return hook

    def _normed_scores(self, layer: int):
        """After a layer that normalises q and k after RoPE (Llama 4's L2 ``qk_norm``, Hunyuan's
        ``query_layernorm`` / ``key_layernorm``) ran: the normalised q and k its attention used go to
        ``on_qk`` (heads first)."""

        @torch.no_grad()
        def hook(module, args, output):
            normed = self._normed.pop(layer, [])
            if len(normed) != 2:
                raise UnsupportedModelError(f"layer {layer}: its post-RoPE norms ran {len(normed)} times, not twice")
            heads_first = normed[0].shape == self._rotated_shape.get(layer)  # Hunyuan; Llama 4: [B, S, H, D]
            q, k = normed if heads_first else (x.transpose(1, 2) for x in normed)
            self.on_qk(layer, q, k, self._token_mask(q.shape[2]))

        return hook

    def _mla_part(self, layer: int, name: str):
        """Keep the no-RoPE part of an MLA layer's queries (``q_pass``, from its query projection) or
        keys (``k_nope``, from the latent up-projection) as ``[batch, heads, tokens, dims]``. LongCat-Flash
        multiplies its queries by ``mla_scale_q_lora`` after the projection (its keys' scale is applied
        to the latent, before the up-projection): applied here as its forward does."""
        module = self._mla[layer]
        nope = module.qk_nope_head_dim
        scale = getattr(module, "mla_scale_q_lora", None) if name == "q_pass" else None

        def hook(mod, args, output):
            per_head = _per_head(output.detach(), self.n_heads)[..., :nope].transpose(1, 2)
            self._mla_parts.setdefault(layer, {})[name] = per_head if scale is None else per_head * scale

        return hook

    def _mla_scores(self, layer: int):
        """After an MLA layer ran: its whole query and key heads, RoPE part first (``[q_rot | q_pass]``,
        ``[k_rot | k_nope]``, the one RoPE key broadcast to every head; a dot product is the same in
        any dim order) go to ``on_qk``, the queries scaled per position where the layer scales them
        (Mistral Large 4's ``softmax_scaling``, called as its forward calls it). A NoPE layer of an
        MLA model (Mistral Large 4) has only ``q_pass`` and ``k_nope``, the whole heads: they are its
        q and k for ``on_qk``. Its q statistics are the NoPE control, read where its RoPE layers
        rotate (the last ``qk_rope_head_dim`` dims of each head, which it leaves alone); it has no
        shared RoPE key, so its k statistics stay empty (NaN, as a layer reusing another's keys)."""

        @torch.no_grad()
        def hook(module, args, output):
            parts = self._mla_parts.pop(layer, {})
            if layer in self.geometry.nope_layers:
                if set(parts) != {"q_pass", "k_nope"}:
                    raise UnsupportedModelError(f"layer {layer}: its MLA query and key were not both seen")
                q, k = parts["q_pass"], parts["k_nope"]
                if "q" in self.tensors:  # the control: the dims where its RoPE layers rotate, last in each head
                    slot = q[..., -self.geometry.layer_rotary_dim(layer) :]
                    self._add("q", layer, slot, self._token_mask(q.shape[2]))
                if self.on_qk is None:
                    return
            else:
                if set(parts) != {"q_rot", "k_rot", "q_pass", "k_nope"}:
                    raise UnsupportedModelError(f"layer {layer}: its MLA query and key parts were not all seen")
                k_rot = parts["k_rot"].expand(-1, parts["k_nope"].shape[1], -1, -1)
                q = torch.cat([parts["q_rot"], parts["q_pass"].to(parts["q_rot"].dtype)], dim=-1)
                k = torch.cat([k_rot, parts["k_nope"].to(k_rot.dtype)], dim=-1)
            scaling = getattr(module, "softmax_scaling", None)
            if isinstance(scaling, torch.nn.Module):
                positions = self._mla_positions.pop(layer, None)
                if positions is None:
                    raise UnsupportedModelError(f"layer {layer} scales its queries by position but was handed none")
                q = scaling(q, positions, head_dim_first=True)
            self.on_qk(layer, q, k, self._token_mask(q.shape[2]))

        return hook

    def _keep_positions(self, layer: int):
        """The ``position_ids`` an MLA layer that scales its queries by position is handed."""

        def hook(module, args, kwargs):
            self._mla_positions[layer] = kwargs.get("position_ids")

        return hook

    def _keep_query_scale(self, layer: int):
        """The query scale a NoPE layer is handed with its inputs (BEAM's scalable softmax: its model
        passes ``attention_scaling``, ``(1 + position / 2048) ** 0.1`` per token, to the layers without
        RoPE, which multiply their queries by it); None where it is handed none."""

        def hook(module, args, kwargs):
            self._query_scale[layer] = kwargs.get("attention_scaling")

        return hook

    def at_nope(self, layer, kind, x):
        """A NoPE layer: q arrives first and waits for k; pre- and post-RoPE are the same tensors."""
        if kind == "q":
            self._nope_q = x
            return x
        q, self._nope_q = self._nope_q, None
        self._record_qk(layer, q, x, q, x)
        if self.on_qk is not None:
            with torch.no_grad():
                scaled = temperature_tuned(self.anatomy.sites_by_layer[layer].module, q.detach())
                scale = self._query_scale.pop(layer, None)
                if scale is not None:  # the same arithmetic as the model: in float32, back to q's dtype
                    scaled = (scaled.float() * scale).to(q.dtype)
                self.on_qk(layer, scaled, x.detach(), self._token_mask(q.shape[2]))
        return x

    @torch.no_grad()
    def _record_qk(self, layer, q, k, q_rot, k_rot) -> None:
        q, k, q_rot, k_rot = q.detach(), k.detach(), q_rot.detach(), k_rot.detach()
        r, kv_heads = self.geometry.layer_rotary_dim(layer), self.anatomy.layer_kv_heads(layer)
        mask = self._token_mask(q.shape[2])
        if q.shape[1] != self.n_heads or k.shape[1] != kv_heads or q.shape[-1] < r:
            raise UnsupportedModelError(
                f"layer {layer}: q/k at RoPE have shapes {tuple(q.shape)}, {tuple(k.shape)}; expected "
                f"[batch, {self.n_heads} | {kv_heads} heads, tokens, >= {r} dims]"
            )
        if self.verify_geometry and layer not in self.verified_layers:
            self._verify(layer, [q, k], [q_rot, k_rot], r, "query and key")
        for name, tensor in (("q", q), ("k", k)):
            if name in self.tensors:
                self._add(name, layer, tensor[..., :r], mask)

    def _add(self, name: str, layer: int, x: torch.Tensor, mask: torch.Tensor) -> None:
        """Count ``x`` (``[batch, heads, tokens, r]``: q, k or v before RoPE, cut to the layer's rotary
        dims) in ``stats[name]``: kept until the layer's other tensors arrived (or the layer ends),
        then reduced with them in one :class:`~ropescope.hooks.stats.JointUpdate`. By position: at
        once, per tensor."""
        if self.by_position is None:
            if layer in self._waiting and self._waiting[layer][0] is not mask:  # another pass's: theirs first
                self._reduce_waiting(layer)
            parts = self._waiting.setdefault(layer, (mask, []))[1]
            parts.append((name, x))
            names = {n for n, _ in parts}
            expected = {"q", "k"} & set(self.tensors) | ({"v"} if layer in self._valued else set())
            if names == expected:  # the usual order: v, then q and k at RoPE: reduced at once
                self._reduce_waiting(layer)
            return
        norms = chunk_norms(x, self.geometry.layout)
        self.stats[name].update(layer, norms, mask)
        if self._sliced_positions is not self._positions:  # a new forward pass: its buckets, once
            self._sliced_positions = self._positions
            self._slices = bucket_slices(self.by_position[name].edges, self._positions)
        self.by_position[name].update(layer, norms, mask, self._positions, self._slices)

    @torch.no_grad()
    def _reduce_waiting(self, layer: int | None = None) -> None:
        """The joint statistics update of ``layer``'s waiting tensors (every waiting layer's: None)."""
        for waiting in [layer] if layer is not None else list(self._waiting):
            mask, parts = self._waiting.pop(waiting, (None, None))
            if parts:
                self._joint.update(waiting, parts, mask, self.geometry.layout)

    def _on_value(self, layer: int):
        packing = family_adapter(self.anatomy.model_type).value_packing

        mla = self._mla.get(layer)

        @torch.no_grad()
        def hook(module, args, output):
            output = output.detach() if isinstance(output, torch.Tensor) else tuple(o.detach() for o in output)
            if mla is not None:  # kv_b_proj: per head [k_nope | v]
                v = _per_head(output, self.n_heads)[..., mla.qk_nope_head_dim :].transpose(1, 2)
            else:
                attention = self.anatomy.sites_by_layer[layer].module
                v = values_of(output, packing, self.n_heads, self.anatomy.layer_v_heads(layer), attention)
            self._add("v", layer, v[..., : self.geometry.layer_rotary_dim(layer)], self._token_mask(v.shape[2]))

        return hook

    def _verify(self, layer: int, pres: list, posts: list, r: int, what: str) -> None:
        """Queue the geometry self-check of ``layer``: the first head of each of ``pres`` (``[B, H, S,
        >= r]`` before RoPE: the query, and the key where given) over the first sequence's
        :data:`VERIFY_TOKENS` tokens, re-rotated when the forward pass ends (:meth:`_check_geometry`)
        and compared with the model's own ``posts``. Every head is rotated by the same code and
        angles, so a wrong layout, frequency or scaling shows up there."""
        tokens = self._verify_tokens(pres[0].shape[2], pres[0].device)
        pre = torch.cat([x[:1, :1, tokens, :r].to(pres[0].dtype) for x in pres], dim=1)  # [1, heads, n, r]: a copy
        post = torch.cat([x[:1, :1, tokens, :r].to(posts[0].dtype) for x in posts], dim=1)
        # the pass's positions and the cached token index: the same objects for every layer of a pass
        self._checks.append((layer, what, pre, post, (self._positions, tokens)))

    def _verify_tokens(self, seq: int, device) -> torch.Tensor:
        """The token indices the geometry self-check compares (:data:`VERIFY_TOKENS` cut to ``seq``,
        with the last of them always in), cached per length and device."""
        key = (seq, str(device))
        if key not in self._verify_index:
            last = min(seq, VERIFY_LAST + 1) - 1
            tokens = sorted({t for t in VERIFY_TOKENS if t <= last} | {last})
            self._verify_index[key] = torch.tensor(tokens, device=device)
        return self._verify_index[key]

    def _geometry_errors(self, checks: list[tuple], finite_only: bool = False) -> np.ndarray:
        """``[checks, 2]`` (read on the host in one copy): each check's largest error relative to its
        head's largest magnitude, and whether it compared anything (1.0 or 0.0).

        Checks with the same frequencies, scaling, shapes, dtypes and positions (a model's layers of
        one kind) are re-rotated in one batch: a few dozen kernels a pass instead of a few dozen a
        layer. The plain comparison takes every value; a check it finds non-finite is compared again
        ``finite_only``: over the values both rotations left finite (half-precision overflow is
        reported by the statistics), comparing nothing where none is."""
        groups: dict[tuple, list[int]] = {}
        for index, (layer, _, pre, post, (positions, tokens)) in enumerate(checks):
            lr = self.geometry.layers[layer]
            key = (lr.inv_freq.tobytes(), float(lr.attention_scaling), tuple(pre.shape), pre.dtype, post.dtype,
                   id(positions), id(tokens))  # fmt: skip
            groups.setdefault(key, []).append(index)
        order, reads = [], []
        for members in groups.values():
            layer, _, _, _, (positions, tokens) = checks[members[0]]
            positions = positions[:1, None, tokens.to(positions.device)]  # [1, 1, n]
            lr = self.geometry.layers[layer]
            pre = torch.cat([checks[i][2] for i in members])  # [G, heads, S, r]
            theirs = torch.cat([checks[i][3] for i in members]).float()
            # turn -1: the model turns its pairs the other way (NanoChat), i.e. by -m*g
            inv_freq = torch.as_tensor(lr.inv_freq * self.geometry.turn, dtype=torch.float32, device=pre.device)
            ours = rotate(pre, positions, inv_freq, self.geometry.layout, lr.attention_scaling)
            if finite_only:
                finite = torch.isfinite(theirs) & torch.isfinite(ours)
                zero = torch.zeros((), device=theirs.device)
                theirs, ours = torch.where(finite, theirs, zero), torch.where(finite, ours, zero)
                compared = finite.flatten(1).any(dim=1).float()
            else:
                compared = torch.ones(len(members), device=theirs.device)
            scale = theirs.abs().amax(dim=(2, 3)).clamp(min=1e-30)  # [G, heads]
            error = (ours.sub_(theirs).abs_().amax(dim=(2, 3)) / scale).amax(dim=1)  # [G]
            order += members
            reads.append(torch.stack([error, compared], dim=1).to(checks[0][3].device))
        read = torch.cat(reads).cpu().numpy()
        out = np.empty_like(read)
        out[order] = read
        return out

    def _end_of_pass(self) -> None:
        self._check_geometry()
        self._reduce_waiting()

    def _check_geometry(self) -> None:
        """The self-checks of this forward pass, read at once: a layer whose compared values were all
        non-finite checked nothing (it is checked again on the next pass); one whose error exceeds the
        tolerance stops the run naming the first such layer; the rest are verified."""
        if not self._checks:
            return
        checks, self._checks = self._checks, []
        # one copy to the host for every layer (NumPy reads it there: no scalar read per layer)
        read = self._geometry_errors(checks)
        unsure = np.flatnonzero(~np.isfinite(read[:, 0]))  # a non-finite value somewhere: finite ones only
        if len(unsure):
            read[unsure] = self._geometry_errors([checks[i] for i in unsure], finite_only=True)
        for (layer, what, _, post, _), (error, compared) in zip(checks, read.tolist(), strict=True):
            if not compared:
                continue
            dtype = post.dtype
            tolerance = GEOMETRY_TOLERANCE.get(dtype, 3e-2)
            if not error <= tolerance:
                raise GeometryMismatchError(
                    f"layer {layer}: rotating the captured {what} with the read RoPE geometry "
                    f"({self.geometry.layout} layout) misses the model's own by {error:.2e} of its "
                    f"head's largest magnitude (tolerance {tolerance:.0e})"
                )
            self.verified_layers.add(layer)


def _per_head(output: torch.Tensor, heads: int) -> torch.Tensor:
    """A projection's ``[batch, tokens, heads * d]`` output (or ``[batch, 1, tokens, heads * d]``, as
    MLA's latent up-projection runs on one latent "head") as ``[batch, tokens, heads, d]``."""
    if output.dim() == 4 and output.shape[1] == 1:
        output = output[:, 0]
    return output.reshape(*output.shape[:2], heads, -1)
