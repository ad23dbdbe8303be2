"""The one place ropescope touches a running model: each layer's call to ``apply_rotary_pos_emb``.

Every supported Hugging Face family calls a module-level ``apply_rotary_pos_emb(q, k, cos, sin,
...)`` with q and k laid out ``[batch, heads, tokens, dims]`` after any QK-norm. :class:`RopeCallHooks`
wraps that function in the family's modeling module for as long as it is installed, knows which
layer is running (forward pre/post hooks on the attention modules) and what the batch's token mask
and positions are (a pre-hook on the base model), and hands each call to :meth:`at_rope`.
Observing (:mod:`~ropescope.hooks.observe`) and intervening (:mod:`~ropescope.hooks.intervene`)
are two subclasses. :meth:`remove` restores every function and removes every hook, so the model
computes exactly what it computed before, also after an exception.

Several hook sets may be installed at once (a capture inside an intervention, two captures): each
modeling module gets one dispatcher that runs the installed sets in order of installation (the
last installed sees the call first, as if each had wrapped the function in turn). Removing a set
takes it out of that list, so sets may be removed in any order; the module's own function comes
back when the last one goes.
"""

from __future__ import annotations

import sys
import threading

import torch

from ropescope.errors import UnsupportedModelError
from ropescope.model.anatomy import ModelAnatomy
from ropescope.model.families import complex_head_axis, forward_code, is_mla, key_first, output_order
from ropescope.model.modes import enter_eval, restore_training
from ropescope.model.nope import nope_layout, nope_projections, query_factor


class _Dispatch:
    """One installed RoPE function of one modeling module and the hook sets it runs.

    Hook sets see post-RoPE tensors in the pre-RoPE pair layout: a function whose output permutes the
    dims (DeepSeek's ``apply_rotary_pos_emb_interleave`` takes interleaved pairs and returns them as
    halves) has its output put back in input order for the hooks (:func:`output_order`, read off the
    function itself), and the hooks' result permuted again for the model: the same values, moved, so
    the model computes exactly what it computes without hooks."""

    def __init__(self, code, name: str, original, kind: str = "pair"):
        self.code, self.name, self.original, self.hooks = code, name, original, []
        self._orders: dict[int, tuple[torch.Tensor, torch.Tensor] | None] = {}  # head width -> output order
        self._axes: dict[int, int] = {}  # head width -> head axis of a complex-rotation call

        def apply_rotary_pos_emb(q, k=None, cos=None, sin=None, *args, **kwargs):
            _CALLER.code = sys._getframe(1).f_code  # which code called: the attention's forward, or e.g. an indexer
            if k is None:  # a query rotated alone (Qwen4's token selector): not an attention's q-k pair, untouched
                return original(q, k, cos, sin, *args, **kwargs)
            order = self.order(q.shape[-1], q.device)

            def call(q, k, cos, sin):
                out = original(q, k, cos, sin, *args, **kwargs)
                return out if order is None else (out[0][..., order[1]], out[1][..., order[1]])

            for hooks in list(self.hooks):  # first installed innermost
                call = hooks._wrap(call)
            out = call(q, k, cos, sin)
            return out if order is None else (out[0][..., order[0]], out[1][..., order[0]])

        def one_tensor(x, cos, sin, head_axis: int, rotate):
            """A call that rotates one tensor (q or k): ``rotate(x, cos, sin)`` is the model's own."""
            _CALLER.code = sys._getframe(2).f_code
            order = self.order(x.shape[-1], x.device)

            def call(x, cos, sin):
                out = rotate(x, cos, sin)
                return out if order is None else out[..., order[1]]

            for hooks in list(self.hooks):
                call = hooks._wrap_single(call, head_axis)
            out = call(x, cos, sin)
            return out if order is None else out[..., order[0]]

        def apply_rotary_pos_emb_single(x, cos, sin, *args, **kwargs):
            head_axis = kwargs.get("unsqueeze_dim", args[0] if args else 1)  # 2: x is [B, S, H, D]
            return one_tensor(x, cos, sin, head_axis, lambda t, c, s: original(t, c, s, *args, **kwargs))

        def apply_rotary_pos_emb_sin_cos(tensor, sin, cos, *args, **kwargs):  # GPT-J: [B, S, H, D], sin first
            return one_tensor(tensor, cos, sin, 2, lambda t, c, s: original(t, s, c, *args, **kwargs))

        def apply_rotary_emb(xq, xk, freqs_cis, *args, **kwargs):
            _CALLER.code = sys._getframe(1).f_code
            axis = self.head_axis(xq.shape[-1])

            def heads_first(t):
                return t.transpose(1, 2) if axis == 2 else t

            def call(q, k, cos, sin):  # the hooks' view: cos/sin of every pair (freqs_cis's real and imaginary parts)
                same = cos is real or (cos.shape == real.shape and torch.equal(cos, real) and torch.equal(sin, imag))
                turns = freqs_cis if same else torch.complex(cos.float(), sin.float())  # p = 1: the model's own
                out = original(heads_first(q), heads_first(k), turns, *args, **kwargs)
                return heads_first(out[0]), heads_first(out[1])

            for hooks in list(self.hooks):
                call = hooks._wrap(call)
            real, imag = freqs_cis.real, freqs_cis.imag
            q, k = call(heads_first(xq), heads_first(xk), real, imag)
            return heads_first(q), heads_first(k)

        self.kind = kind
        self.function = {
            "pair": apply_rotary_pos_emb,
            "single": apply_rotary_pos_emb_single,
            "single_sin_cos": apply_rotary_pos_emb_sin_cos,
            "complex": apply_rotary_emb,
        }[kind]
        self.function.ropescope_hooks = True  # tells model.nope's probe not to run under installed hooks

    def head_axis(self, dims: int) -> int:
        """The head axis of q and k in a complex-rotation call (read once per width)."""
        if dims not in self._axes:
            self._axes[dims] = complex_head_axis(self.original, dims)
        return self._axes[dims]

    def order(self, dims: int, device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(order, inverse)`` index tensors of the function's output on ``dims``-wide heads (None
        for the identity), read once per width by :func:`output_order`."""
        if dims not in self._orders:
            self._orders[dims] = output_order(self.original, self.kind, dims)
        found = self._orders[dims]
        if found is None:
            return None
        return found[0].to(device), found[1].to(device)


_CALLER = threading.local()  # .code: the code object that made the RoPE call now running in this thread
# forward passes whose positions are kept (references, no copy) before one reduction folds them into
# the longest prompt seen: fewer kernels per pass than a maximum each time
UNREAD_POSITIONS = 16


class _PerThread:
    """An attribute of a hook set with one value per thread. The RoPE function a hook set wraps is
    shared by every model of the family in the process; keeping "which layer of *my* model is running
    now" per thread means a call from another model (or the same one) in another thread finds no
    layer here and passes through untouched, and is never counted or edited."""

    def __init__(self, default=None):
        self.default = default

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return getattr(obj._thread_state, self.name, self.default)

    def __set__(self, obj, value) -> None:
        setattr(obj._thread_state, self.name, value)


_DISPATCH: dict[tuple[int, str], _Dispatch] = {}  # (id(modeling module), function name) -> its dispatcher


def _text_decoder(base: torch.nn.Module, sites) -> torch.nn.Module | None:
    """The module below ``base`` that holds the decoder layers (``layers``, a ModuleList holding the
    first attention layer), where that is not ``base`` itself: a multimodal wrapper's language model."""
    if not sites:
        return None
    first = sites[0].module
    for _, module in base.named_modules():
        layers = getattr(module, "layers", None)
        if isinstance(layers, torch.nn.ModuleList) and any(first is m for layer in layers for m in layer.modules()):
            return None if module is base else module
    return None


def _implied_positions(kwargs: dict, batch: int, seq: int, device) -> torch.Tensor:
    """The positions a forward call without ``position_ids`` gives its tokens, as the model computes
    them: ``cache_position`` when passed, else the cached length of ``past_key_values`` onwards (a
    cached generation step is at position ``cached``, not 0), else ``0 .. seq - 1``."""
    cache_position = kwargs.get("cache_position")
    if isinstance(cache_position, torch.Tensor) and cache_position.numel() == seq:
        return cache_position.to(device)[None, :].expand(batch, seq)
    past = kwargs.get("past_key_values")
    start = int(past.get_seq_length()) if past is not None and hasattr(past, "get_seq_length") else 0
    return (torch.arange(seq, device=device) + start)[None, :].expand(batch, seq)


class RopeCallHooks:
    """Hooks around every layer's RoPE call. Subclasses implement :meth:`at_rope`.

    The state of the forward pass now running (its token mask and positions, the layer inside it,
    a rotated query waiting for its key) is per thread (:class:`_PerThread`)."""

    _mask = _PerThread()
    _positions = _PerThread()
    _layer = _PerThread()
    _single_calls = _PerThread(0)
    _pending_q = _PerThread()
    _entered = _PerThread()
    _nope_turn = _PerThread(0)  # calls so far, in the running layer, of a norm shared by q and k

    def __init__(self, anatomy: ModelAnatomy, *, include_bos: bool = True):
        self.anatomy = anatomy
        self.model = anatomy.hf
        self.cfg = anatomy.config
        self.geometry = anatomy.geometry
        self.include_bos = include_bos
        self._thread_state = threading.local()
        self._longest: torch.Tensor | int = 0  # 1 + the largest position seen (on the device until read)
        self._unread_positions: list[torch.Tensor] = []  # passes' positions not yet in _longest
        self._mask: torch.Tensor | None = None
        self._positions: torch.Tensor | None = None
        self._layer: int | None = None
        self._single_calls, self._pending_q = 0, None  # families that rotate q and k in separate calls
        self._entered = set()
        self._handles: list = []
        self._patched: list[_Dispatch] = []
        self._forward_code = {site.layer: forward_code(site) for site in anatomy.hooked_sites}
        # layers rotating q and k in separate calls: which comes first (GPT-J rotates its key first)
        self._first_single = {
            site.layer: "k" if key_first(site) else "q"
            for site in anatomy.hooked_sites
            if site.rope_call.startswith("single")
        }

    # -- what a subclass does at each RoPE call ------------------------------------------------
    def at_rope(self, layer: int, q, k, cos, sin, rotate):
        """Called inside ``apply_rotary_pos_emb`` of ``layer``; ``rotate(q, k, cos, sin)`` is the
        model's own rotation. Returns what the model gets: ``(q_rot, k_rot)``."""
        raise NotImplementedError

    def at_nope(self, layer: int, kind: str, x):
        """Called with the ``kind`` ("q" or "k") of a NoPE layer as its projection makes it
        (``[batch, heads, tokens, dims]``, what the attention uses); returns what the model gets."""
        return x

    # -- installation -------------------------------------------------------------------------
    def _enter_eval(self) -> None:
        """Run the model in eval mode while the hooks are installed (:mod:`ropescope.model.modes`);
        every module's own mode comes back on :meth:`remove`."""
        self._training = enter_eval(self.anatomy.runnable)

    def _restore_modes(self) -> None:
        restore_training(getattr(self, "_training", []))
        self._training = []

    def _only_mine(self, hook):
        """``hook`` run only in the thread that installed this set: hooks on a module fire in every
        thread that runs it, and another thread's plain forward of the same model object must run
        the unmodified model, counted by nothing (a hook returning None changes nothing)."""
        owner = self._owner

        def filtered(*args, **kwargs):
            if threading.get_ident() != owner:
                return None
            return hook(*args, **kwargs)

        return filtered

    def _register(self, module: torch.nn.Module, hook, *, pre: bool = False, with_kwargs: bool = False) -> None:
        """A forward (``pre``: pre-) hook on ``module``, this thread's only (:meth:`_only_mine`),
        removed by :meth:`remove`."""
        register = module.register_forward_pre_hook if pre else module.register_forward_hook
        self._handles.append(register(self._only_mine(hook), with_kwargs=with_kwargs))

    def install(self) -> None:
        self._owner = threading.get_ident()
        self._enter_eval()
        base = self.anatomy.base  # the decoder every forward pass goes through (also the causal LM's)
        self._register(base, self._on_model_input, pre=True, with_kwargs=True)
        sites = self.anatomy.sites
        inner = _text_decoder(base, sites)
        if inner is not None:  # a wrapper computes its text decoder's positions (PaliGemma: from 1)
            self._register(inner, self._on_decoder_input, pre=True, with_kwargs=True)
        for site in sites:
            self._register(site.module, self._enter_layer(site.layer), pre=True)
            self._register(site.module, self._leave_layer)
        functions = {
            (id(s.code_module), name): (s.code_module, name, s.rope_call) for s in sites for name in s.rope_functions
        }
        for key, (code, name, kind) in functions.items():
            dispatch = _DISPATCH.get(key)
            if dispatch is None or getattr(code, name) is not dispatch.function:
                dispatch = _DISPATCH[key] = _Dispatch(code, name, getattr(code, name), kind)
                setattr(code, name, dispatch.function)
            dispatch.hooks.append(self)
            self._patched.append(dispatch)
        for site in sites:  # read each function's output order now, not in the middle of a forward pass
            for name in site.rope_functions:
                dispatch = _DISPATCH[(id(site.code_module), name)]
                for dims in {self.geometry.layer_rotary_dim(site.layer), self.geometry.layer_head_dim(site.layer)}:
                    dispatch.order(dims, "cpu")
                    if dispatch.kind == "complex":
                        dispatch.head_axis(dims)
        for site in sites:
            if not self.geometry.layers[site.layer].rope:
                if is_mla(site.module):  # Mistral Large 4: read from its MLA projections (hooks.observe)
                    continue
                q_proj, k_proj = nope_projections(site)
                factor = query_factor(site.module)
                q_hook, k_hook = self._nope_hook(site.layer, "q", factor), self._nope_hook(site.layer, "k")
                if q_proj is k_proj:  # one norm called on q, then on k (MuSE's qk_norm)
                    self._register(q_proj, self._nope_in_turn(q_hook, k_hook))
                else:
                    self._register(q_proj, q_hook)
                    self._register(k_proj, k_hook)

    def _nope_in_turn(self, q_hook, k_hook):
        """One hook for a module a NoPE layer calls on its query and then on its key."""

        def hook(module, args, output):
            turn, self._nope_turn = self._nope_turn, self._nope_turn + 1
            return (q_hook if turn == 0 else k_hook)(module, args, output)

        return hook

    def _nope_hook(self, layer: int, kind: str, factor: float | None = None):
        """``factor``: the constant the layer multiplies this output by before attention (MuSE's
        ``qk_scale_factor``): the reducers see the product, an edit is handed back divided by it."""
        heads = self.anatomy.n_heads if kind == "q" else self.anatomy.layer_kv_heads(layer)
        layout = nope_layout(self.model, layer).get(kind)
        if layout is None:
            raise UnsupportedModelError(
                f"layer {layer} applies no RoPE, and its {kind} comes in a shape ropescope cannot read"
            )

        def hook(module, args, output):
            if layout == "bhsd":
                x = output
            elif layout == "bshd":
                x = output.transpose(1, 2)
            else:
                x = output.view(*output.shape[:-1], heads, -1).transpose(1, 2)  # [B, H, S, D]
            used = x if factor is None else x * factor
            edited = self.at_nope(layer, kind, used)
            if edited is used:
                return None
            if factor is not None:
                edited = edited / factor
            return edited if layout == "bhsd" else edited.transpose(1, 2).reshape(output.shape)

        return hook

    def remove(self) -> None:
        """Remove this hook set (in any order relative to others); idempotent."""
        self._restore_modes()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for dispatch in self._patched:
            if self in dispatch.hooks:
                dispatch.hooks.remove(self)
            if not dispatch.hooks:
                if getattr(dispatch.code, dispatch.name) is dispatch.function:
                    setattr(dispatch.code, dispatch.name, dispatch.original)
                if _DISPATCH.get((id(dispatch.code), dispatch.name)) is dispatch:
                    del _DISPATCH[(id(dispatch.code), dispatch.name)]
        self._patched.clear()
        self._layer = None

    # -- hooks --------------------------------------------------------------------------------
    def _on_model_input(self, module, args, kwargs):
        """Record the batch's counted-token mask (padding never counts; BOS only with
        ``include_bos``) and positions, before the first layer runs."""
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
        bos = self.anatomy.bos_token_id
        if not self.include_bos and input_ids is not None and bos is not None:
            mask = mask & (input_ids != bos)
        positions = kwargs.get("position_ids")
        if positions is None:
            positions = _implied_positions(kwargs, batch, seq, reference.device)
        self._mask = mask
        self._entered = set()  # the layers this forward pass has run (in this thread)
        self._set_positions(positions)

    def _set_positions(self, positions: torch.Tensor) -> None:
        """The positions this forward pass's RoPE turns its tokens by, and the longest so far."""
        self._positions = positions
        if positions.numel():  # kept on the device, reduced every UNREAD_POSITIONS passes: read once, by max_seq_len
            self._unread_positions.append(positions)
            if len(self._unread_positions) >= UNREAD_POSITIONS:
                self._reduce_positions()

    def _reduce_positions(self) -> None:
        unread, self._unread_positions = self._unread_positions, []
        if unread:
            largest = torch.cat([p.reshape(-1) for p in unread]).max() + 1
            self._longest = torch.clamp(largest, min=self._longest)

    def _on_decoder_input(self, module, args, kwargs):
        """A multimodal wrapper's text decoder: the positions it is handed are the ones its RoPE
        turns by (PaliGemma counts from 1); taken where they are one row of positions per token."""
        positions = kwargs.get("position_ids")
        mask = getattr(self, "_mask", None)
        if isinstance(positions, torch.Tensor) and mask is not None and positions.shape == mask.shape:
            self._set_positions(positions)

    @property
    def max_seq_len(self) -> int:
        """1 + the largest token position any forward pass has had (the longest prompt's length)."""
        self._reduce_positions()
        return int(self._longest)

    @max_seq_len.setter
    def max_seq_len(self, value: int) -> None:
        self._unread_positions = []
        self._longest = int(value)

    def _enter_layer(self, layer: int):
        def hook(module, args):
            if self._entered is None:
                self._entered = set()
            if layer in self._entered:
                self._entered.clear()
                raise UnsupportedModelError(
                    f"layer {layer} ran twice in one forward pass (a looped or weight-shared model, such as Dory's "
                    "recurrent loops); ropescope counts every layer once per token and cannot measure it"
                )
            self._entered.add(layer)
            self._layer = layer
            self._single_calls, self._pending_q, self._nope_turn = 0, None, 0

        return hook

    def _leave_layer(self, module, args, output):
        layer, self._layer = self._layer, None
        if self._pending_q is not None:
            (kind, q, q_rot), self._pending_q = self._pending_q, None
            if kind != "q":
                raise UnsupportedModelError(f"layer {layer} rotated its keys but no queries")
            if self.geometry.layers[layer].kv_source is None:
                raise UnsupportedModelError(
                    f"layer {layer} rotated its queries but no keys, and the model does not say whose keys it "
                    "reuses (is_kv_shared_layer); ropescope cannot measure it"
                )
            self.at_shared(layer, q, q_rot)

    def at_shared(self, layer: int, q, q_rot) -> None:
        """A layer that reuses an earlier layer's keys and values (KV sharing) has rotated its query
        (``q`` before and ``q_rot`` after RoPE, ``[batch, heads, tokens, dims]``) and no key; called
        once the layer has run. Observers override it."""

    def at_rope_one(self, layer: int, kind: str, x, cos, sin, rotate_one):
        """One tensor (``kind`` "q" or "k") of a family that rotates q and k in separate calls (q
        first, GPT-J k first): ``x`` is ``[batch, heads, tokens, dims]``, ``rotate_one(x, cos, sin)``
        the model's own rotation. By default the first is rotated and kept until the second arrives,
        then both go to :meth:`at_rope` (whose rotation of the first returns the rotation already
        handed to the model)."""
        if self._pending_q is None:
            rotated = rotate_one(x, cos, sin)
            self._pending_q = (kind, x, rotated)
            return rotated
        (first, kept, kept_rot), self._pending_q = self._pending_q, None
        if first == kind:
            raise UnsupportedModelError(f"layer {layer} rotated two {'queries' if kind == 'q' else 'keys'} in one pass")
        if kind == "k":

            def rotate(q_, k_, cos_, sin_):
                return kept_rot, rotate_one(k_, cos_, sin_)

            return self.at_rope(layer, kept, x, cos, sin, rotate)[1]

        def rotate_key_kept(q_, k_, cos_, sin_):
            return rotate_one(q_, cos_, sin_), kept_rot

        return self.at_rope(layer, x, kept, cos, sin, rotate_key_kept)[0]

    def _from_attention(self, layer: int) -> bool:
        """Whether the RoPE call now running was made by the layer's attention ``forward`` itself. A
        layer whose forward names its RoPE function has its other calls passed through untouched
        (DeepSeek V3.2's and GLM-5's sparse-attention indexers rotate q and k of their own inside the
        layer, to choose keys, not to attend with them)."""
        expected = self._forward_code.get(layer)
        return expected is None or getattr(_CALLER, "code", None) is expected

    def _wrap_single(self, inner, head_axis: int):
        """``inner`` (one tensor's rotation) passed through :meth:`at_rope_one` while one of this
        set's layers runs; the first call of a layer is its query, the second its key."""

        def heads_first(t):
            return t.transpose(1, 2) if head_axis == 2 else t

        def rotate_one(t, cos, sin):
            return heads_first(inner(heads_first(t), cos, sin))

        def call(x, cos, sin):
            layer = self._layer
            if layer is None or not self._from_attention(layer):
                return inner(x, cos, sin)
            first = self._first_single.get(layer, "q")
            kind = first if self._single_calls == 0 else ("k" if first == "q" else "q")
            self._single_calls += 1
            return heads_first(self.at_rope_one(layer, kind, heads_first(x), cos, sin, rotate_one))

        return call

    def _wrap(self, inner):
        """``inner`` (the rotation as seen by this set: the model's own, or the next set's) passed
        through :meth:`at_rope` while one of this set's layers runs."""

        def call(q, k, cos, sin):
            layer = self._layer
            if layer is None or not self._from_attention(layer):
                return inner(q, k, cos, sin)
            return self.at_rope(layer, q, k, cos, sin, inner)

        return call

    def _token_mask(self, seq: int) -> torch.Tensor:
        if self._mask is None or self._mask.shape[1] != seq:
            raise UnsupportedModelError(
                "capture sees one full forward pass at a time; cached generation is not supported"
            )
        return self._mask
