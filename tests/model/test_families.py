"""Every decoder-only RoPE family of the installed transformers, checked on a tiny random model.

``ropescope families`` (:mod:`ropescope.survey`) says "yes" or why not for profile, heads
and p-RoPE. Here every "yes" is re-checked against recomputations that share no code with the
survey or the capture path: chunk-norm statistics from q and k recorded by this file's own wrapper
of the family's ``apply_rotary_pos_emb`` and v cut out of the value projection by hand, averaged in
NumPy; previous-token scores from the model's own eager ``output_attentions``; p = 1 logits equal
bit for bit. The docs' families table (docs/reference/families.md) is the survey's output."""

from __future__ import annotations

import functools
import inspect
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from reference import slow_chunk_norms

import ropescope
from ropescope.survey import TEXTS, VARIANTS, CharTokenizer, markdown, survey, tiny_model

REPO = Path(__file__).resolve().parents[2]
# The families the hub-and-families issue named; each must be fully supported.
NAMED = [
    "gemma (Gemma 7B heads)",
    "smollm3 (NoPE layer 3)",
    "cohere2 (NoPE global layer)",
    "gpt_oss",
    "granite_swa",
    "gemma2",
    "gemma3_text",
    "llama (llama3 scaling)",
    "llama (dynamic scaling)",
    "qwen2 (yarn scaling)",
    "phi3 (longrope scaling)",
    "mistral",
    "mixtral",
    "qwen3_moe",
    "qwen2",
    "qwen3",
    "gpt_neox",
    "cohere",
    "glm",
    "olmo2",
    "granite",
    "gemma3",
    "vaultgemma",
    "qwen2_vl",
    "qwen2_5_vl",
    "qwen3_vl",
    "qwen3_next",
    "qwen3_5",
    "falcon_h1",
    "gemma4_text (one head size)",
    "gemma4_text",
    "gemma4",
    "gemma4_unified",
    "gemma4_unified_text",
    "gemma4_text (K = V, KV sharing)",
    "gemma3n_text",
    "gemma3n_text (KV sharing)",
    "deepseek_v3",
    "deepseek_v2",
    "llama4_text",
    "llama4_text (chunked attention, temperature tuning)",
    "exaone4",
    "afmoe",
]


_BUILT: dict = {}


def _built(model_type: str, overrides: dict | None = None, seed: int = 0) -> torch.nn.Module:
    """Each tiny model built once for this file: the survey's and every test's (a model ropescope
    profiled, head-scored and p-RoPEd is left exactly as it was, so sharing it is part of the check)."""
    key = (model_type, repr(overrides), seed)
    if key not in _BUILT:
        _BUILT[key] = tiny_model(model_type, overrides, seed)
    return _BUILT[key]


@pytest.fixture(scope="module")
def rows():
    with mock.patch("ropescope.survey.tiny_model", _built):
        table = survey()
    yield table
    _BUILT.clear()


def _model(family: str):
    model_type, overrides = VARIANTS.get(family, (family, None))
    return _built(model_type, overrides)


def test_named_families_are_supported(rows):
    by_name = {r.family: r for r in rows}
    missing = [name for name in NAMED if name not in by_name or not by_name[name].supported]
    assert not missing, [(n, by_name.get(n)) for n in missing]
    assert sum(r.supported for r in rows) >= len(NAMED)


def test_the_command_prints_the_table(rows):
    """``ropescope families --markdown`` (the command that regenerates the docs' table) prints the
    survey's rows, and without ``--markdown`` one aligned line per family."""
    import subprocess

    only = ["llama", "phi3", "persimmon"]
    run = [sys.executable, "-m", "ropescope", "families", "--only", ",".join(only)]
    table = subprocess.run([*run, "--markdown"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert table.returncode == 0, table.stderr
    assert table.stdout == markdown([r for r in rows if r.family in only])
    plain = subprocess.run(run, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert plain.returncode == 0, plain.stderr
    lines = plain.stdout.splitlines()
    assert sorted(line.split()[0] for line in lines[1:-1]) == sorted(only)
    assert lines[-1].startswith("3 of 3 RoPE families")


def test_docs_show_the_table(rows):
    page = (REPO / "docs" / "reference" / "families.md").read_text(encoding="utf-8")
    assert markdown(rows) in page, "regenerate it: ropescope families --markdown"


def _as_heads_first(x, seq: int, head_dim: int):
    """A q or k as a NoPE layer's norm or projection made it, as [B, H, S, D] (this file's own
    reading: the token axis is the one as long as the prompt)."""
    if x.dim() == 3:
        return x.view(*x.shape[:-1], -1, head_dim).transpose(1, 2)
    return x.transpose(1, 2) if x.shape[1] == seq else x


def _chunk_of(model, layer: int) -> int | None:
    """The attention chunk of ``layer`` as the config states it (Llama 4's chunked layers), or None."""
    config = model.config.get_text_config()
    types = getattr(config, "layer_types", None) or []
    if layer < len(types) and types[layer] == "chunked_attention":
        return getattr(config, "attention_chunk_size", None)
    return None


def _rope_function_names(code) -> list[str]:
    """This file's own list of a modeling module's RoPE functions: apply_rotary_pos_emb and its
    variants (DeepSeek's apply_rotary_pos_emb_interleave), and apply_rotary_emb (complex numbers:
    Llama 4, DeepSeek V2)."""
    return [
        n
        for n in vars(code)
        if (n.startswith("apply_rotary_pos_emb") or n == "apply_rotary_emb") and callable(getattr(code, n))
    ]


def _called_by(module) -> bool:
    """Whether the function now running was called by ``module``'s own forward (not by a submodule
    such as a sparse-attention indexer, which rotates q and k of its own); any caller where the
    forward names no RoPE function (it calls one through a helper)."""
    forward = inspect.unwrap(type(module).forward)
    source = inspect.getsource(forward)
    if "apply_rotary_pos_emb" not in source and "apply_rotary_emb(" not in source:
        return True
    frame = sys._getframe(2)
    package = str(Path(ropescope.__file__).parent)
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame = frame.f_back  # ropescope's dispatcher and hooks, installed over this file's wrapper
    return frame is not None and frame.f_code is forward.__code__


def _attention_modules(model):
    """Modules named ...Attention... (or ...MLA, LongCat-Flash's two per decoder layer) that know their
    layer index, leaving out one that holds another of the same index (a wrapper around the attention
    proper: DBRX, Mllama's decoder layers)."""
    found = [
        m
        for _, m in model.named_modules()
        if ("Attention" in type(m).__name__ or type(m).__name__.endswith("MLA"))
        and getattr(m, "layer_idx", None) is not None
    ]
    found = [m for m in found if not any(o is not m and o.layer_idx == m.layer_idx for o in m.modules() if o in found)]
    types = getattr(model.config.get_text_config(), "layer_types", None) or []
    found = [m for m in found if m.layer_idx >= len(types) or types[m.layer_idx] != "linear_attention"]  # MiniMax
    if len({m.layer_idx for m in found}) < len(found):  # a vision tower numbering its layers too
        inside = list(model.get_decoder().modules())
        found = [m for m in found if any(m is o for o in inside)]
    return found


def _recorded_qkv(model, ids):
    """Per layer number, q and k as the model's attention hands them to its RoPE function (on a layer
    that makes no such call, a NoPE layer: as its QK-norm or else its projections make them; on a
    layer reusing another's keys, q only), v from the value projection (MLA: the latent
    up-projection's value part; K = V: the key projection); a hybrid model's layers without
    attention modules are absent."""
    attention = _attention_modules(model)
    code = sys.modules[type(attention[0]).__module__]
    by_layer = {m.layer_idx: m for m in attention}
    calls, projected, values, running, nope_mla = {}, {}, {}, [None], {}
    seen = {}
    originals = {name: getattr(code, name) for name in _rope_function_names(code)}

    def make(original):
        first = list(inspect.signature(original).parameters)[0]
        single = first in ("x", "tensor")  # one tensor per call: Gemma 4 (x: q, then k), GPT-J (tensor: k, then q)
        key_first = first == "tensor"
        complex_call = list(inspect.signature(original).parameters)[0] == "xq"  # Llama 4: freqs_cis

        def wrapped(*args, **kwargs):
            if running[0] is not None and _called_by(by_layer[running[0]]):
                if not single:
                    q, k = args[0].detach().double().clone(), args[1].detach().double().clone()
                    if complex_call and q.shape[1] == ids.shape[1]:  # Llama 4: [B, S, H, D]
                        q, k = q.transpose(1, 2), k.transpose(1, 2)
                    calls[running[0]] = (q, k)
                else:
                    x = args[0].detach().double().clone()
                    if key_first or kwargs.get("unsqueeze_dim", args[3] if len(args) > 3 else 1) == 2:
                        x = x.transpose(1, 2)  # [B, S, H, D] -> [B, H, S, D] (GPT-J's always are)
                    seen.setdefault(running[0], []).append(x)
                    if len(seen[running[0]]) == 2:
                        made = seen[running[0]]
                        calls[running[0]] = (made[1], made[0]) if key_first else tuple(made)
            return original(*args, **kwargs)

        return wrapped

    handles = []
    for module in attention:
        layer = module.layer_idx
        handles.append(module.register_forward_pre_hook(lambda m, a, layer=layer: running.__setitem__(0, layer)))
        if getattr(module, "is_kv_shared_layer", False):
            continue  # reuses an earlier layer's keys and values (Gemma 3n / 4): only its q is its own
        if hasattr(module, "kv_b_proj") and hasattr(module, "qk_nope_head_dim"):
            target, cut = module.kv_b_proj, ("mla", module.qk_nope_head_dim)  # per head [k_nope | v]
        elif getattr(module, "v_proj", False) is None and getattr(module, "use_alternative_attention", False):
            target, cut = module.k_proj, None  # K = V (Gemma 4's global layers): the values are k_proj's output
        elif hasattr(module, "v_proj"):
            target, cut = module.v_proj, None
        elif type(module).__name__ == "CodeGenAttention":  # 4 blocks of [q | v | k], cut by its own _split_heads
            target, cut = module.qkv_proj, ("codegen", module)
        elif type(getattr(module, "qkv_proj", None)).__name__ == "ZayaCCAProjection":  # returns (q, k, v)
            target, cut = module.qkv_proj, "third output"
        elif hasattr(module, "qkv_proj"):  # Phi-3: [q | k | v]
            target, cut = module.qkv_proj, "tail"
        elif hasattr(module, "Wqkv"):  # DBRX: [q | k | v], clamped to +-clip_qkv before the split
            target, cut = module.Wqkv, ("clamped tail", module.clip_qkv)
        elif hasattr(module, "new_decoder_architecture"):  # Falcon: its own _split_heads cuts the projection
            target, cut = module.query_key_value, ("split", module)
        else:  # GPT-NeoX: per head [q, k, v]
            target, cut = module.query_key_value, "per_head"

        # a value head as wide as the module says (MiMo-V2-Flash: v_head_dim, narrower than head_dim)
        width = getattr(module, "v_head_dim", None) or getattr(module, "head_dim", None)

        def hook(mod, args, out, layer=layer, cut=cut, d=width):
            if cut == "third output":  # [B, S, kv heads, d] -> [B, S, kv heads * d], as a plain projection's
                out = out[2].flatten(2)
            values[layer] = (out.detach().double().clone(), cut, d)

        handles.append(target.register_forward_hook(hook))
        if hasattr(module, "kv_b_proj") and not getattr(module, "use_rope", True):
            # an MLA layer without RoPE (Mistral Large 4): its q's control is read where the model's
            # RoPE layers rotate, the last qk_rope_head_dim dims of each head; it has no shared RoPE key
            slot = model.config.get_text_config().qk_rope_head_dim

            def keep_slot(mod, args, out, layer=layer, width=module.qk_head_dim, slot=slot):
                q = out.detach().double().clone().view(*out.shape[:2], -1, width)[..., width - slot :]
                nope_mla[layer] = q.transpose(1, 2)

            handles.append(module.q_proj.register_forward_hook(keep_slot))
            continue
        # q and k as a layer without RoPE hands them to its attention: after its QK-norm, if any
        if isinstance(getattr(module, "qk_scale_factor", None), float):  # MuSE: qk_norm(q) * factor, then qk_norm(k)

            def keep_both(mod, args, out, layer=layer, factor=module.qk_scale_factor, d=module.head_dim):
                made = projected.setdefault(layer, {})
                name = "k" if "q" in made else "q"
                x = _as_heads_first(out.detach().double().clone(), ids.shape[1], d)
                made[name] = x * factor if name == "q" else x

            handles.append(module.qk_norm.register_forward_hook(keep_both))
            continue
        normed = all(getattr(module, f"{n}_norm", None) is not None for n in "qk")
        for name in ("q", "k"):
            source = getattr(module, f"{name}_norm" if normed else f"{name}_proj", None)
            if source is None:
                continue

            def keep(mod, args, out, layer=layer, name=name, d=getattr(module, "head_dim", None)):
                try:
                    x = _as_heads_first(out.detach().double().clone(), ids.shape[1], d)
                except (RuntimeError, TypeError):  # not a per-head layout (fused or low-rank projections)
                    return
                projected.setdefault(layer, {})[name] = x

            handles.append(source.register_forward_hook(keep))
    for name, original in originals.items():
        setattr(code, name, make(original))
    try:
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)
    finally:
        for name, original in originals.items():
            setattr(code, name, original)
        for h in handles:
            h.remove()
    for layer, qk in projected.items():
        if layer not in calls and layer not in seen and len(qk) == 2:  # a layer that made no RoPE call: NoPE
            calls[layer] = (qk["q"], qk["k"])
    for layer, made in seen.items():
        if len(made) == 1:  # rotated its q only: KV sharing
            calls[layer] = (made[0], None)
    for layer, q in nope_mla.items():
        calls[layer] = (q, None)
    return calls, values


def _bos(model):
    """The BOS id the model's configs name (text config first), or None."""
    for config in (model.config.get_text_config(), model.config):
        if isinstance(getattr(config, "bos_token_id", None), int):
            return config.bos_token_id
    return None


def _slow_profile(model, geometry, n_heads, n_kv):
    """Mean chunk norms ``[layers, heads, chunks]`` from this file's own record, each layer with its own
    rotary dims and head counts, NaN-padded to the widest layer (Gemma 4), NaN for keys and values a
    layer does not make (KV sharing) and for layers without attention (hybrids)."""
    layout = geometry.layout
    collected = {t: {} for t in "qkv"}
    for text in TEXTS:
        row = CharTokenizer()(text)["input_ids"]
        keep = np.array([t != _bos(model) for t in row])  # BOS left out, as ropescope does by default
        calls, values = _recorded_qkv(model, torch.tensor([row]))
        for layer, (q, k) in calls.items():
            r = geometry.layer_rotary_dim(layer)
            for name, x in (("q", q), ("k", k)):
                if x is None:
                    continue
                x = x[0].permute(1, 0, 2).numpy()  # [S, H, D]
                collected[name].setdefault(layer, []).append(slow_chunk_norms(x[..., :r], r, layout)[keep])
        for layer, (out, cut, d) in values.items():
            r = geometry.layer_rotary_dim(layer)
            out = out[0].numpy()  # [S, width]
            if out.ndim == 3:  # MLA's up-projection runs on [B, 1, S, latent]
                out = out[0]
            if isinstance(cut, tuple) and cut[0] == "split":  # Falcon: [S, heads, d] from its own code
                v = cut[1]._split_heads(torch.from_numpy(out)[None])[2][0].numpy()
            elif isinstance(cut, tuple) and cut[0] == "codegen":  # as CodeGenAttention.forward: mp_num = 4
                blocks = torch.from_numpy(out)[None].reshape(1, out.shape[0], 4, -1)
                part = blocks.shape[-1] // 3
                value = blocks[..., part : 2 * part]  # [q | v | k] in each block
                v = cut[1]._split_heads(value, n_heads, cut[1].head_dim, mp_num=4)[0].numpy()
            elif isinstance(cut, tuple) and cut[0] == "mla":  # MLA: per query head [k_nope | v]
                v = out.reshape(out.shape[0], n_heads, -1)[..., cut[1] :]
            elif cut == "tail" or (isinstance(cut, tuple) and cut[0] == "clamped tail"):
                if isinstance(cut, tuple) and cut[1] is not None:
                    out = np.clip(out, -cut[1], cut[1])
                d = out.shape[-1] // (n_heads + 2 * n_kv)
                v = out[:, (n_heads + n_kv) * d :].reshape(out.shape[0], n_kv, d)
            elif cut == "per_head":
                per_head = out.reshape(out.shape[0], n_kv, -1)
                v = per_head[..., 2 * (per_head.shape[-1] // 3) :]
            else:
                heads = out.shape[-1] // d if d else n_kv  # the layer's own KV-head count
                v = out.reshape(out.shape[0], heads, -1)
            collected["v"].setdefault(layer, []).append(slow_chunk_norms(v[..., :r], r, layout)[keep])
    result = {}
    for t, per in collected.items():
        out = np.full((geometry.n_layers, n_heads if t == "q" else n_kv, geometry.n_chunks), np.nan)
        for i, parts in per.items():
            mean = np.concatenate(parts).mean(0)
            out[i, : mean.shape[0], : mean.shape[1]] = mean
        result[t] = out
    return result


def test_every_supported_family_profiles_exactly(rows):
    wrong = []
    for row in (r for r in rows if r.profile == "yes"):
        model = _model(row.family)
        anatomy = ropescope.inspect_model(model)
        prof = ropescope.profile(model, CharTokenizer(), list(TEXTS), batch_size=2)
        slow = _slow_profile(model, anatomy.geometry, anatomy.n_heads, anatomy.n_kv_heads)
        attention = list(anatomy.geometry.attention_layers)  # a hybrid's other layers count nothing
        for tensor in "qkv":
            ours = prof.stats[tensor].mean.numpy().copy()
            ours[prof.stats[tensor].count.numpy() == 0] = np.nan  # as the profile reads it: nothing measured there
            others = [i for i in range(len(ours)) if i not in attention]
            if (
                ours.shape != slow[tensor].shape
                or not np.allclose(ours[attention], slow[tensor][attention], rtol=1e-5, atol=1e-6, equal_nan=True)
                or not np.isnan(slow[tensor][others]).all()
                or prof.stats[tensor].count.numpy()[others].any()
            ):
                wrong.append((row.family, tensor))
    assert not wrong, wrong


def test_every_supported_family_scores_heads_like_its_own_attention(rows):
    wrong = []
    for row in (r for r in rows if r.heads == "yes"):
        model = _model(row.family)
        if _previous_token_misses(model, list(TEXTS)):
            wrong.append(row.family)
    assert not wrong, wrong


def _previous_token_misses(model, texts: list[str]) -> list[int]:
    """The layers whose ``offset_1`` scores from ``scan_heads`` miss the mean of the model's own
    attention on key ``i - 1`` over rows ``i >= 2`` that can see it (Llama 4's chunked layers: not the
    first row of a chunk) by more than 1e-5."""
    report = ropescope.scan_heads(model, CharTokenizer(), texts, max_offset=2)
    sums, counts = {}, {}
    for text in texts:
        ids = torch.tensor([CharTokenizer()(text)["input_ids"]])
        for layer, a in _effective_attention(model, ids).items():
            chunk = _chunk_of(model, layer)
            prev = np.array([a[:, i, i - 1] for i in range(2, a.shape[1]) if not chunk or i % chunk])
            if len(prev):
                sums[layer] = sums.get(layer, 0) + prev.sum(0)
                counts[layer] = counts.get(layer, 0) + len(prev)
    table = report.table.set_index(["layer", "head"])
    misses = []
    for layer in sums:
        theirs = sums[layer] / counts[layer]
        ours = np.array([table.loc[(layer, h), "offset_1"] for h in range(len(theirs))])
        if not np.allclose(ours, theirs, atol=1e-5):
            misses.append(layer)
    return misses


def _slow_rotate(x, angles, layout, scaling):
    """x [H, S, r] turned chunk by chunk by angles [S, r/2] (radians) in NumPy, times scaling."""
    out = x.copy()
    half = x.shape[-1] // 2
    first = np.arange(half) if layout == "halves" else np.arange(0, 2 * half, 2)
    second = first + half if layout == "halves" else first + 1
    a, b = x[..., first], x[..., second]
    cos, sin = np.cos(angles) * scaling, np.sin(angles) * scaling
    out[..., first], out[..., second] = a * cos - b * sin, b * cos + a * sin
    return out


def test_every_supported_family_p_rope_turns_exactly_the_chunks_it_names(rows):
    """Under p-RoPE at p = 0.5 the q each rotating layer hands its attention is the q it computed,
    turned by m * g_k for the faster half of the chunks and not at all for the slower half: recorded
    by this file's own wrapper (installed under ropescope's) and re-rotated in NumPy."""
    wrong = []
    for row in (r for r in rows if r.prope == "yes"):
        model = _model(row.family)
        geometry = ropescope.inspect_model(model).geometry
        code = sys.modules[type(_attention_modules(model)[0]).__module__]
        names = _rope_function_names(code)
        if any(list(inspect.signature(getattr(code, n)).parameters)[0] not in ("q", "xq") for n in names):
            continue  # one tensor per call (Gemma 4): covered by tests/model/test_gemma4_rope.py
        attention = {m.layer_idx: m for m in _attention_modules(model)}
        originals, seen, running, kwargs_of = {n: getattr(code, n) for n in names}, [], [None], {}

        def make(name, original, _seen=seen, _running=running, _attention=attention, kwargs_of=kwargs_of):
            @functools.wraps(original)  # keeps the signature ropescope reads the call shape from
            def wrapped(q, k=None, *args, **kwargs):
                if k is None:  # a query rotated alone (Qwen4-Exp's token selector): not the attention's pair
                    return original(q, k, *args, **kwargs)
                q_rot, k_rot = original(q, k, *args, **kwargs)
                if _running[0] is not None and _called_by(_attention[_running[0]]):
                    post = q_rot.detach().double().numpy().copy()
                    pre = q.detach().double().numpy().copy()
                    if name == "apply_rotary_emb":  # complex: [.., tokens, .., dims] against freqs_cis [B, S, D/2]
                        axis = 2 if q.shape[1] == args[0].shape[-2] and q.shape[2] != args[0].shape[-2] else 1
                    else:
                        axis = kwargs.get("unsqueeze_dim", args[2] if len(args) > 2 else 1)
                    kwargs_of[id(pre)] = axis
                    _seen.append((pre, post, name))
                return q_rot, k_rot

            return wrapped

        positions_of = {}  # layer -> the positions its attention is handed (PaliGemma counts from 1)

        def enter(mod, a, kw, layer, _running=running, _positions=positions_of):
            _running[0] = layer
            if isinstance(kw.get("position_ids"), torch.Tensor):  # [B, S], or axes first: multimodal RoPE
                given = kw["position_ids"]  # (text prompts put the same positions on every axis)
                _positions[layer] = given.reshape(-1, given.shape[-1])[0].numpy()

        handles = [
            m.register_forward_pre_hook(functools.partial(enter, layer=layer), with_kwargs=True)
            for layer, m in attention.items()
        ]
        ids = torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]])
        ropescope.hooks.verify_geometry(model)  # its probe runs before this file's wrapper records
        for name, original in originals.items():
            setattr(code, name, make(name, original))
        try:
            with torch.no_grad(), ropescope.p_rope(model, 0.5):
                model(input_ids=ids, use_cache=False)
        finally:
            for name, original in originals.items():
                setattr(code, name, original)
            for h in handles:
                h.remove()
        r = geometry.rotary_dim
        if len(seen) != len(geometry.rotating_layers):
            wrong.append((row.family, "calls", len(seen)))
        for layer, (pre, post, name) in zip(geometry.rotating_layers, seen, strict=False):
            g = np.array(geometry.frequencies(layer))
            g[int(0.5 * len(g)) :] = 0.0
            where = positions_of.get(layer, np.arange(ids.shape[1]))
            angles = where[:, None] * g[None, :] * geometry.turn  # NanoChat turns by -m*g
            if kwargs_of[id(pre)] == 2:  # [B, S, H, D] (unsqueeze_dim=2): heads first, as _slow_rotate takes them
                pre, post = pre.transpose(0, 2, 1, 3), post.transpose(0, 2, 1, 3)
            expected = _slow_rotate(pre[0][..., :r], angles, geometry.layout, geometry.layers[layer].attention_scaling)
            if name.endswith("_interleave"):  # DeepSeek's: interleaved pairs in, even dims then odd dims out
                expected = np.concatenate([expected[..., 0::2], expected[..., 1::2]], axis=-1)
            if not np.allclose(post[0][..., :r], expected, rtol=1e-4, atol=1e-5):
                wrong.append((row.family, layer))
                break
    assert not wrong, wrong


def test_every_supported_family_perplexity_is_its_own_loss(rows):
    """At p = 1 (the unmodified model) perplexity equals the model's own mean next-token loss."""
    from ropescope.prope.perplexity import perplexity, token_windows

    text = " ".join(TEXTS) * 2
    wrong = []
    for row in (r for r in rows if r.prope == "yes"):
        model = _model(row.family)
        head = model.get_output_embeddings().weight
        kept = head.detach().clone()  # the shared model gets its head back afterwards
        try:
            with torch.no_grad():
                head.mul_(20.0)  # a sharp head: the output multiplier matters
            ours = perplexity(model, CharTokenizer(), text, context=48, batch_size=2)["nll"]
            total, count = 0.0, 0
            with torch.no_grad():
                for window in token_windows(CharTokenizer(), text, 48):
                    ids = torch.tensor([window])
                    logits = model(input_ids=ids, use_cache=False).logits[0, :-1].double()
                    total += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
                    count += len(window) - 1
        finally:
            with torch.no_grad():
                head.copy_(kept)
        if not abs(ours - total / count) <= 1e-5 * max(1.0, total / count):
            wrong.append((row.family, ours, total / count))
    assert not wrong, wrong


def _effective_attention(model, ids):
    """Each layer's attention on every key as its value receives it, ``[H, S, S]`` float64: the model's
    own ``output_attentions``, which include learned sinks in their softmax (GPT-OSS) or, where the
    model reports them before the sink (rows summing to 1, Granite-SWA scales its attention output
    by ``sigmoid(LSE - sink)``), times that factor, with each row's log-normaliser recovered from the
    diagonal: ``LSE_i = scaling * q_i.k_i - log A_ii`` from this file's own record of post-RoPE q, k."""
    attention_modules = {
        m.layer_idx: m
        for _, m in model.named_modules()
        if "Attention" in type(m).__name__ and isinstance(getattr(m, "sinks", None), torch.Tensor)
    }
    first = next(iter(attention_modules.values()), None)
    code = sys.modules[type(first).__module__] if first is not None else None
    rotated = []
    if code is not None:
        original = code.apply_rotary_pos_emb

        def wrapped(q, k, cos, sin, *args, **kwargs):
            out = original(q, k, cos, sin, *args, **kwargs)
            rotated.append((out[0].detach().double(), out[1].detach().double()))
            return out

        code.apply_rotary_pos_emb = wrapped
    try:
        with torch.no_grad():
            attentions = model(input_ids=ids, output_attentions=True, use_cache=False).attentions
    finally:
        if code is not None:
            code.apply_rotary_pos_emb = original
    # by layer number: a hybrid model returns maps for its attention layers only (or None elsewhere)
    numbers = sorted(m.layer_idx for m in _attention_modules(model))
    if len(attentions) != len(numbers):
        attentions = [attentions[i] for i in numbers]
    result = {}
    for position, (layer, a) in enumerate(zip(numbers, attentions, strict=True)):
        a = a[0].double().numpy()
        if layer in attention_modules and np.allclose(a.sum(-1), 1.0, atol=1e-6):
            module = attention_modules[layer]
            q, k = rotated[position][0][0].numpy(), rotated[position][1][0].numpy()  # [H, S, D], [Hkv, S, D]
            k = np.repeat(k, q.shape[0] // k.shape[0], axis=0)
            diagonal = module.scaling * np.einsum("hsd,hsd->hs", q, k)
            lse = diagonal - np.log(np.einsum("hss->hs", a))
            sinks = module.sinks.detach().double().numpy()[:, None]
            a = a * (1.0 / (1.0 + np.exp(-(lse - sinks))))[..., None]
        result[layer] = a
    return result


def test_every_supported_family_keeps_its_logits_at_p_1(rows):
    wrong = []
    for row in (r for r in rows if r.prope == "yes"):
        model = _model(row.family)
        ids = torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]])
        with torch.no_grad():
            base = model(input_ids=ids, use_cache=False).logits
            with ropescope.p_rope(model, 1.0):
                same = model(input_ids=ids, use_cache=False).logits
        if not torch.equal(base, same):
            wrong.append(row.family)
    assert not wrong, wrong


# the random configurations' seed: fixed for a run (ROPESCOPE_PROPERTY_SEED picks another), and
# mixed with each family's name, so every family draws its own configuration
PROPERTY_SEED = int(__import__("os").environ.get("ROPESCOPE_PROPERTY_SEED", "0"))
LONG_TEXTS = [*TEXTS, "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles " * 2]


def _random_overrides(family: str, model_type: str, base: dict | None, attempt: int) -> dict:
    """A configuration of ``family`` nobody picked: query heads, a GQA ratio, the head size, a
    sliding window and an attention chunk shorter than the longest prompt, where the config has them."""
    import random
    import zlib

    rng = random.Random(zlib.crc32(f"{family}:{PROPERTY_SEED}:{attempt}".encode()))
    text = _built(model_type, base).config.get_text_config()
    settings = text.to_dict()
    drawn = dict(base or {})
    mla = "qk_rope_head_dim" in settings
    heads = rng.choice([2, 4, 8])
    if not mla and isinstance(settings.get("num_attention_heads"), int):
        drawn["num_attention_heads"] = heads
        if isinstance(settings.get("num_key_value_heads"), int):
            drawn["num_key_value_heads"] = rng.choice([d for d in (1, 2, heads) if heads % d == 0])
    if not mla and isinstance(settings.get("head_dim"), int):
        drawn["head_dim"] = rng.choice([8, 16, 32])
    if isinstance(settings.get("sliding_window"), int):
        drawn["sliding_window"] = rng.choice([3, 5, 7, 12])
    if isinstance(settings.get("attention_chunk_size"), int):
        drawn["attention_chunk_size"] = rng.choice([4, 6, 9])
    return drawn


def _valid_random_model(family: str):
    """A random configuration the family's own config class accepts and its own forward runs (three
    draws at most); None where none of the three is valid."""
    model_type, base = VARIANTS.get(family, (family, None))
    for attempt in range(3):
        overrides = _random_overrides(family, model_type, base, attempt)
        try:
            model = tiny_model(model_type, overrides)
            with torch.no_grad():
                model(input_ids=torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]]), use_cache=False)
        except Exception:  # noqa: BLE001 - a configuration the family itself refuses is not a valid draw
            continue
        return model, overrides
    return None


def test_every_yes_holds_on_configurations_nobody_picked(rows):
    """Profile, head scores and p = 1 of every "yes" family, each on a random valid configuration of
    its own (seeded), against the recomputations above: exact, or refused in one line, never wrong."""
    from ropescope.errors import RopescopeError

    wrong, refused, tried = [], [], 0
    for row in (r for r in rows if r.supported):
        drawn = _valid_random_model(row.family)
        if drawn is None:
            continue
        model, overrides = drawn
        tried += 1
        try:
            anatomy = ropescope.inspect_model(model)
            prof = ropescope.profile(model, CharTokenizer(), list(TEXTS), batch_size=2)
            slow = _slow_profile(model, anatomy.geometry, anatomy.n_heads, anatomy.n_kv_heads)
            attention = list(anatomy.geometry.attention_layers)
            for tensor in "qkv":
                ours = prof.stats[tensor].mean.numpy().copy()
                ours[prof.stats[tensor].count.numpy() == 0] = np.nan
                close = np.allclose(ours[attention], slow[tensor][attention], rtol=1e-5, atol=1e-6, equal_nan=True)
                if ours.shape != slow[tensor].shape or not close:
                    wrong.append((row.family, "profile", tensor, overrides))
            for layer in _previous_token_misses(model, LONG_TEXTS):
                wrong.append((row.family, "heads", layer, overrides))
            ids = torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]])
            with torch.no_grad():
                base = model(input_ids=ids, use_cache=False).logits
                with ropescope.p_rope(model, 1.0):
                    if not torch.equal(base, model(input_ids=ids, use_cache=False).logits):
                        wrong.append((row.family, "p = 1", overrides))
        except RopescopeError as exc:  # a refusal in one line is an honest answer
            assert "\n" not in str(exc), (row.family, str(exc))
            refused.append(row.family)
    assert not wrong, (PROPERTY_SEED, wrong)
    assert tried >= 0.8 * sum(r.supported for r in rows), tried  # most families drew a valid configuration
