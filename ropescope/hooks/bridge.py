"""Profile a TransformerLens ``TransformerBridge`` through its own hook points.

``ropescope.profile(bridge, tokenizer, texts)`` accepts a bridge (``TransformerBridge.boot_transformers``)
as well as a Hugging Face model. The bridge wraps the Hugging Face modules in place, so ropescope
cannot wrap ``apply_rotary_pos_emb`` there (:mod:`~ropescope.hooks.rope_call`); it reads the same
tensors at the bridge's hooks instead:

- pre-RoPE query and key: ``blocks.{i}.attn.hook_q_normed`` / ``hook_k_normed`` when the family
  applies QK-norm (Gemma 3, Qwen 3), else ``hook_q`` / ``hook_k``;
- post-RoPE query and key: ``hook_rot_q`` / ``hook_rot_k`` (for the geometry self-check and for
  ``on_qk`` reducers);
- values: ``hook_v``.

The statistics are reduced inside the hooks by the same code as the Hugging Face path (nothing is
cached), so both paths give the same profile on the same weights (``tests/test_bridge.py``). The RoPE
geometry is read from the bridge's underlying model (``bridge.original_model``).
"""

from __future__ import annotations

import contextlib
import threading

import torch

from ropescope.errors import UnsupportedModelError
from ropescope.hooks.observe import Capture
from ropescope.model.anatomy import ModelAnatomy


class BridgeCapture(Capture):
    """A :class:`~ropescope.hooks.observe.Capture` fed by a TransformerBridge's hook points.

    Same ``stats``, options and guarantees as :class:`Capture`. Interventions are not available
    through a bridge (:func:`ropescope.hooks.intervene` refuses one).
    """

    def __init__(self, anatomy: ModelAnatomy, **options):
        self.bridge = anatomy.runnable
        self._hook_names = self._hook_point_names(self.bridge)
        self._pending: dict[int, dict[str, torch.Tensor]] = {}
        self._hooked_layer = None  # the layer whose hook fired last
        self._stack = contextlib.ExitStack()
        super().__init__(anatomy, **options)

    @staticmethod
    def _hook_point_names(bridge) -> list[tuple[str, str]]:
        """``(slot, hook name)`` pairs. ``hook_q_normed`` exists on families that may apply QK-norm
        (Cohere only does when configured), so q and k are read from both hooks and the later one to
        fire, the one RoPE is applied to, wins; the geometry self-check would catch a wrong pick."""
        names = set(bridge.hook_dict)
        chosen = [("q", "hook_q"), ("k", "hook_k"), ("q_rot", "hook_rot_q"), ("k_rot", "hook_rot_k"), ("v", "hook_v")]
        missing = [name for _, name in chosen if f"blocks.0.attn.{name}" not in names]
        if missing:
            raise UnsupportedModelError(
                f"this TransformerBridge has no attention hook(s) {', '.join(missing)}; "
                "ropescope needs the pre- and post-RoPE query/key hooks"
            )
        for slot in ("q", "k"):
            if f"blocks.0.attn.hook_{slot}_normed" in names:
                chosen.append((slot, f"hook_{slot}_normed"))
        return chosen

    def install(self) -> None:
        self._owner = threading.get_ident()
        self._enter_eval()
        self._register(self.bridge, self._on_model_input, pre=True, with_kwargs=True)
        self._register(self.bridge, self._pass_ended)
        hooks = []
        for layer in range(self.geometry.n_layers):
            for slot, name in self._hook_names:
                if slot == "v" and "v" not in self.tensors:
                    continue
                hooks.append((f"blocks.{layer}.attn.{name}", self._only_mine(self._hook(layer, slot, name))))
        self._stack.enter_context(self.bridge.hooks(fwd_hooks=hooks))

    def _pass_ended(self, *args) -> None:
        self._hooked_layer = None
        self._end_of_pass()  # the pass's geometry self-checks, then the waiting statistics

    def remove(self) -> None:
        super().remove()
        self._stack.close()
        self._pending.clear()

    def _hook(self, layer: int, slot: str, name: str):
        """The hook of one tensor of one layer. The pre-RoPE q and k are held (by reference) until their
        post-RoPE version arrives, then checked; a layer's q, k and v are reduced together once a hook
        of another layer fires (or the pass ends); the
        post-RoPE pair goes to ``on_qk`` once both arrived."""
        heads = self.n_heads if slot in ("q", "q_rot") else self.anatomy.layer_kv_heads(layer)

        @torch.no_grad()
        def hook(tensor, hook):
            if self._hooked_layer != layer:  # the previous layer is done: its statistics, now
                if self._hooked_layer is not None:
                    self._reduce_waiting(self._hooked_layer)
                self._hooked_layer = layer
            seq = self._positions.shape[1]
            tensor = _heads_first(tensor.detach(), heads, seq, name)
            if slot == "v":
                self._add("v", layer, tensor[..., : self.geometry.layer_rotary_dim(layer)], self._token_mask(seq))
                return None
            pending = self._pending.setdefault(layer, {})
            pending[slot] = tensor
            if "q_rot" in pending and "k_rot" in pending and "q" in pending and "k" in pending:
                del self._pending[layer]
                q, k, q_rot, k_rot = pending["q"], pending["k"], pending["q_rot"], pending["k_rot"]
                self._record_qk(layer, q, k, q_rot, k_rot)
                if self.on_qk is not None:
                    self.on_qk(layer, q_rot, k_rot, self._token_mask(seq))
            return None

        return hook


def _heads_first(tensor: torch.Tensor, heads: int, seq: int, name: str) -> torch.Tensor:
    """``tensor`` as ``[batch, heads, tokens, d]``, telling the two layouts apart by shape.

    Where heads == tokens the shape cannot tell, and the TransformerLens convention decides:
    ``hook_q_normed`` / ``hook_k_normed`` are ``[batch, heads, tokens, d]``; ``hook_q``, ``hook_k``,
    ``hook_rot_q``, ``hook_rot_k`` and ``hook_v`` are ``[batch, tokens, heads, d]``.
    """
    if tensor.dim() != 4:
        raise UnsupportedModelError(f"TransformerBridge hook {name} gave a {tensor.dim()}-d tensor; expected 4-d")
    heads_first = tensor.shape[1] == heads and tensor.shape[2] == seq
    tokens_first = tensor.shape[1] == seq and tensor.shape[2] == heads
    if heads_first and tokens_first:
        heads_first = name.endswith("_normed")
    elif not (heads_first or tokens_first):
        raise UnsupportedModelError(
            f"TransformerBridge hook {name} gave shape {tuple(tensor.shape)}; expected {heads} heads and {seq} tokens"
        )
    return tensor if heads_first else tensor.transpose(1, 2)
