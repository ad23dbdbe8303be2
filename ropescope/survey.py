"""Which families of the installed ``transformers`` ropescope supports, found by trying each one.

:func:`survey` enumerates every causal-LM model type of the installed ``transformers``
(``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``), builds a tiny randomly initialised model from its own
config class (2 layers, width 64, 4 heads, 2 KV heads, head dim 16: :func:`tiny_config`) and keeps
the families that hold RoPE frequencies. For each it runs the three checks that stand behind a
"yes" (``ropescope families`` prints the table; ``tests/model/test_families.py`` re-checks every
"yes" against slow recomputations that share no code with these):

- **profile**: :func:`~ropescope.profiling.run.profile` on two prompts of different lengths in one
  padded batch, whose geometry self-check re-rotates every layer's captured pre-RoPE q and k with
  the frequencies read from the model's buffers and compares with the model's own rotation;
- **heads**: every layer's attention recomputed from the captured post-RoPE q and k with the
  layer's logit rule (:mod:`ropescope.hooks.attention`) equals the model's own eager
  ``output_attentions`` to 1e-5;
- **p-RoPE**: p = 1 leaves the logits bit-identical and p = 0.25 changes them (a quarter: a
  proportional layer's slower half may not turn at all, LFM 3).

:data:`VARIANTS` adds configurations the defaults do not reach: the exact Gemma 7B head geometry
and the RoPE scaling types (``llama3``, ``longrope``, ``yarn``, ``dynamic``). A check that fails
says why in a few words; a family whose tiny model cannot be built is listed with the reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import torch

from ropescope.errors import NoRopeError, UnsupportedModelError

SMALL = dict(
    n_group=1,  # DeepSeek-style grouped expert routing over the few tiny experts
    topk_group=1,
    num_kv_shared_layers=0,  # two layers cannot share keys and values; the "KV sharing" variants do
    vocab_size=128,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=256,
    moe_intermediate_size=32,
    shared_expert_intermediate_size=32,
    num_experts=4,
    num_local_experts=4,
    n_routed_experts=4,
    num_experts_per_tok=2,
    top_k_experts=2,  # Gemma 4 / DiffusionGemma name it so
    sliding_window=8,
    kv_lora_rank=16,
    q_lora_rank=16,
    qk_rope_head_dim=8,
    qk_nope_head_dim=8,
    v_head_dim=16,
    first_k_dense_replace=0,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    vocab_size_per_layer_input=128,  # Gemma 3n / 4 per-layer input embeddings
    hidden_size_per_layer_input=8,
    n_embd=64,  # GPT-J / CodeGen name their sizes the GPT-2 way (the same values as above)
    n_layer=2,
    n_head=4,
    n_positions=256,
    rotary_dim=8,  # GPT-J / CodeGen rotate the first 8 of each head's 16 dims
)
# settings a family's default config leaves unset though its model needs them, or sets against the
# tiny sizes, filled as its published checkpoints set them (the model types' own names and sizes)
_DOTS3_NOTE = dict(
    layer_types=["indexed_attention", "sliding_attention"],
    per_layer_config={
        1: dict(
            num_attention_heads=4,
            num_key_value_heads=4,
            q_lora_rank=16,
            kv_lora_rank=16,
            head_dim=16,
            qk_nope_head_dim=8,
            qk_rope_head_dim=8,
            v_head_dim=16,
        )
    },
)
_QWEN4_EXP = dict(
    indexer_n_heads=2, indexer_kv_heads=1, indexer_head_dim=16, indexer_budget=128, indexer_compress_ratio=4
)
FILL = {
    "dots1": dict(n_shared_experts=1),
    "lfm2_moe": dict(layer_types=["conv", "full_attention"]),
    # a standalone Omni thinker reads the vision-start id off a config that does not hold it
    "qwen2_5_omni_thinker": dict(vision_start_token_id=120),
    "qwen3_omni_moe_thinker": dict(vision_start_token_id=120),
    "muse_glimmer": dict(projector_hidden_size=64),
    "muse_spark": dict(  # and its audio tower's stages
        projector_hidden_size=64,
        audio_config=dict(patch_sizes=[16], hidden_sizes=[32], depths=[1], out_hidden_size=64),
    ),
    "chameleon": dict(  # the image-token map (text prompts use none) and a VQ-VAE as small as it goes
        vocabulary_map={"<image>": 4},
        vq_config=dict(
            embed_dim=32,
            num_embeddings=64,
            latent_channels=32,
            resolution=32,
            base_channels=32,
            channel_multiplier=[1, 2],
            num_res_blocks=1,
        ),
    ),
    "unlimited_ocr": dict(text_config=dict(num_key_value_heads=4)),  # its eager attention repeats no grouped keys
    "deepseek_ocr2": dict(text_config=dict(mlp_layer_types=["dense", "dense"])),
    "laguna": dict(num_attention_heads_per_layer=[4, 4]),  # its query heads per layer, as many as the tiny config's
    "zaya": dict(num_experts_per_tok=1),  # its config accepts one expert per token only
    # the layer each layer takes its keys and values from, as layer numbers: the first two layers' own
    "mistral_large4": dict(text_config=dict(kv_source_layers=[0, 1])),
    # its expert groups and experts per token, under their stored names
    "bailing_hybrid": dict(num_expert_group=1, topk_group=1, num_experts_per_token=2),
    # its indexed layers' token selector (unset by default): 128 tokens in blocks of 4, dense on the survey's prompts
    "qwen4_exp_text": _QWEN4_EXP,
    "qwen4_exp": dict(text_config=_QWEN4_EXP),
    # towers and tables under names of their own that the tiny sizes do not reach
    "longcat_flash": dict(num_layers=2, ffn_hidden_size=96, expert_ffn_hidden_size=32, moe_topk=2, zero_expert_num=2),
    "blt": dict(encoder_hash_byte_group_vocab=64),
    # a full DSA indexer layer, then one that shares its top-k (cut to its last two entries, the
    # default pattern leaves two sharing layers and no full one before them)
    "hy_v4": dict(indexer_types=["full", "shared"]),
    # its RoPE (off by default) and hybrid layers, which run its shared attention blocks
    "zamba2": dict(use_mem_rope=True, layers_block_type=["mamba", "hybrid"]),
    # the width its projector reads from the timm tower's arguments (unset by default)
    "perception_lm": dict(vision_config=dict(model_args={"embed_dim": 32})),
    "janus": dict(
        vq_config=dict(
            num_embeddings=64,
            latent_channels=32,
            base_channels=32,
            channel_multiplier=[1, 2],
            num_res_blocks=1,
            image_token_embed_dim=64,
        )
    ),
    # the vision layers it injects into the language layers (by index) and a Q-Former 64 wide (one head)
    "granite4_vision": dict(
        deepstack_layer_map=[[0, 0]],
        spatial_target_layers=[0, 1, 0, 1],
        downsample_rate="1/2",
        vision_config=dict(hidden_size=64, num_attention_heads=2),
    ),
    "molmo2": dict(adapter_config=dict(vision_feature_layer=[0])),  # the layers it reads: the tiny tower's one
    # an indexed (sparse MLA) layer, then a sliding MLA layer with its own sizes, as tiny as the first's
    "dots3_note_text": _DOTS3_NOTE,
    "dots3_note": dict(
        text_config=_DOTS3_NOTE,
        vision_config=dict(adapter_in_dim=32, adapter_out_dim=64),
        audio_config=dict(adapter_input_size=32, adapter_out_dim=64),
    ),
    # hybrids whose first layers are all recurrent / Mamba: one attention layer among the tiny ones
    "recurrent_gemma": dict(num_hidden_layers=3, attention_window_size=8),  # recurrent, recurrent, attention
    "bamba": dict(attn_layer_indices=[1]),
    "granitemoehybrid": dict(layer_types=["mamba", "attention"], position_embedding_type="rope"),  # default: NoPE
    "dbrx": dict(  # sizes under DBRX's own names; clip_qkv 2 (DBRX Instruct: 8) clamps a third of the tiny q, k, v
        d_model=64,
        n_heads=4,
        n_layers=2,
        max_seq_len=256,
        attn_config=dict(kv_n_heads=2, rope_theta=10_000.0, clip_qkv=2.0),
        ffn_config=dict(ffn_hidden_size=96, moe_num_experts=4, moe_top_k=2),
    ),
}
MAX_PARAMETERS = 20_000_000  # a "tiny" config that stays larger did not shrink (a multimodal wrapper)

# name -> (model type, config overrides): what the default configs do not exercise
VARIANTS = {
    "gemma (Gemma 7B heads)": (
        "gemma",
        dict(hidden_size=256, head_dim=256, num_attention_heads=16, num_key_value_heads=16, intermediate_size=128),
    ),
    "llama (llama3 scaling)": (
        "llama",
        dict(
            rope_parameters=dict(
                rope_type="llama3",
                rope_theta=500_000.0,
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=64,
            )
        ),
    ),
    "llama (dynamic scaling)": (
        "llama",
        dict(rope_parameters=dict(rope_type="dynamic", rope_theta=10_000.0, factor=2.0)),
    ),
    "qwen2 (yarn scaling)": (
        "qwen2",
        dict(
            rope_parameters=dict(rope_type="yarn", rope_theta=10_000.0, factor=4.0, original_max_position_embeddings=64)
        ),
    ),
    "phi3 (longrope scaling)": (
        "phi3",
        dict(
            max_position_embeddings=256,
            original_max_position_embeddings=64,
            rope_parameters=dict(
                rope_type="longrope",
                rope_theta=10_000.0,
                short_factor=[1.0] * 8,
                long_factor=[2.0] * 8,
                original_max_position_embeddings=64,
            ),
        ),
    ),
}
# NoPE layers: SmolLM3 skips RoPE on every fourth layer, Cohere 2 (Command R7B) on its global layers
VARIANTS["smollm3 (NoPE layer 3)"] = ("smollm3", dict(num_hidden_layers=4))
# Falcon's three fused query-key-value layouts: multi-query (the default row), one key per head, and
# the new decoder architecture (Falcon 40B / 180B: grouped keys broadcast to every query head)
VARIANTS["falcon (one key per head)"] = ("falcon", dict(multi_query=False))
VARIANTS["falcon (new decoder architecture)"] = ("falcon", dict(new_decoder_architecture=True, num_kv_heads=2))
VARIANTS["cohere2 (NoPE global layer)"] = (
    "cohere2",
    dict(num_hidden_layers=4, layer_types=["sliding_attention"] * 3 + ["full_attention"]),
)
# Gemma 4's RoPE (q and k rotated in separate calls; proportional RoPE on global layers: a quarter of
# the pairs rotate at theta^(-2i/head_dim)) with one head size for every layer (the default row has
# global heads twice as large, as the real Gemma 4)
VARIANTS["gemma4_text (one head size)"] = ("gemma4_text", dict(per_layer_config={}))
# Gemma 4 26B/31B-like: 32-dim global heads (twice the sliding ones) with one KV head, their keys used
# as values (K = V), and the last two layers reusing earlier layers' keys and values (KV sharing)
VARIANTS["gemma4_text (K = V, KV sharing)"] = (
    "gemma4_text",
    dict(
        num_hidden_layers=6,
        layer_types=["sliding_attention", "full_attention"] * 3,
        attention_k_eq_v=True,
        num_kv_shared_layers=2,
        per_layer_config={str(i): {"head_dim": 32, "num_key_value_heads": 1} for i in (1, 3, 5)},
    ),
)
# Llama 4 (RoPE as complex numbers, NoPE every fourth layer, L2 qk-norm after RoPE) with an 8-token
# attention chunk and NoPE-layer query temperature rising from token 4, so short prompts reach both
VARIANTS["llama4_text (chunked attention, temperature tuning)"] = (
    "llama4_text",
    dict(num_hidden_layers=4, attention_chunk_size=8, floor_scale=4),
)
VARIANTS["gemma3n_text (KV sharing)"] = (
    "gemma3n_text",
    dict(
        num_hidden_layers=6,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
        num_kv_shared_layers=3,
    ),
)
TEXTS = ("To be, or not to be", "that is the question: whether 'tis nobler in the mind to suffer")


@dataclass(frozen=True)
class FamilyRow:
    """One row of the family table: ``profile``, ``heads`` and ``prope`` are "yes" or why not."""

    family: str
    layout: str
    rotary_fraction: str
    scaling: str
    sliding_window: str
    nope_layers: str
    profile: str
    heads: str
    prope: str
    # why the tiny model is not wholly the family's own (a vision tower stood in), or ""
    note: str = field(default="", compare=False)

    @property
    def supported(self) -> bool:
        return self.profile == self.heads == self.prope == "yes"


class CharTokenizer:
    """One id per character (3..95), BOS (id 1) first, pad id 0: enough to drive a tiny model."""

    pad_token_id = 0
    bos_token_id = 1

    def __call__(self, text: str, add_special_tokens: bool = True):
        ids = [3 + (ord(c) % 93) for c in text]
        return {"input_ids": ([self.bos_token_id] if add_special_tokens else []) + ids}


def causal_lm_families() -> list[str]:
    """Every model type the installed ``transformers`` can build a causal LM or an
    image-text-to-text model (a language tower behind a vision encoder) for."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    return sorted(set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES) | set(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES))


# sizes for the other towers of a multimodal wrapper (vision, audio): as small as their classes allow
SMALL_TOWER = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    depth=1,
    num_layers=1,
    num_attention_heads=2,
    num_heads=2,
    num_key_value_heads=2,
    embed_dim=32,
    head_dim=16,
    image_size=32,
    patch_size=8,
    projection_dim=32,
    out_hidden_size=64,
    vocab_size=128,
    d_model=32,  # Whisper-style audio towers (Qwen2.5-Omni, MuSE Spark) name their sizes so
    encoder_layers=1,
    encoder_attention_heads=2,
    encoder_ffn_dim=64,
    output_dim=64,
)


def tiny_config(model_type: str, overrides: dict | None = None):
    """The family's own config class with the :data:`SMALL` sizes it knows, plus ``overrides``.
    A multimodal wrapper's text config gets :data:`SMALL` too, its other towers :data:`SMALL_TOWER`;
    multimodal RoPE sections (``mrope_section``) are scaled to the smaller head."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    cls = CONFIG_MAPPING[model_type]
    default = cls()
    kwargs = _small_sizes(default.to_dict(), SMALL)
    for name in getattr(default, "sub_configs", {}) or {}:
        sub = getattr(default, name, None)
        if sub is None or not hasattr(sub, "to_dict"):
            continue
        kwargs[name] = _shrunk(sub, SMALL if name == "text_config" else SMALL_TOWER)
        if name == "text_config":
            kwargs[name] = _scaled_sections(kwargs[name], _default_sections(model_type, type(sub)))
    for key, value in FILL.get(model_type, {}).items():  # into a sub-config: merged with its tiny sizes
        both = isinstance(value, dict) and isinstance(kwargs.get(key), dict)
        kwargs[key] = {**kwargs[key], **value} if both else value
    kwargs = {**kwargs, **(overrides or {})}
    kwargs = _scaled_sections(
        _per_layer_cut(
            default.to_dict(), kwargs, keep=set(kwargs), given={*FILL.get(model_type, {}), *(overrides or {})}
        )
    )
    config = cls(**kwargs)
    config._attn_implementation = "eager"
    return config


def _shrunk(config, small: dict) -> dict:
    """A sub-config's settings with the ``small`` sizes it knows, per-layer lists cut to the smaller
    layer count, and its own sub-configs (a vision tower's encoders: DeepSeek-OCR 2's SAM and Qwen2
    encoders) shrunk as towers."""
    settings = config.to_dict()
    shrunk = _per_layer_cut(settings, {**settings, **_small_sizes(settings, small)})
    for name in getattr(config, "sub_configs", {}) or {}:
        nested = getattr(config, name, None)
        if nested is not None and hasattr(nested, "to_dict"):
            shrunk[name] = _shrunk(nested, SMALL_TOWER)
    return shrunk


def _small_sizes(settings: dict, small: dict) -> dict:
    """The sizes of ``small`` a config with these default ``settings`` takes. MLA configs (see
    :func:`_mla_head_dim`) expand their latent keys and values to every query head, and keep their
    ``head_dim`` in the relation their defaults hold: the RoPE part (DeepSeek V3, Kimi) or the
    whole query-key width (dots.llm3's sliding layers)."""
    known = set(settings)
    sizes = {k: v for k, v in small.items() if k in known and not _mla_head_dim(known, k)}
    for k, v in sizes.items():  # a size kept per part (Molmo 2's image height and width, ERNIE-VL's
        if isinstance(settings[k], list) and settings[k]:  # expert sizes per modality): each part small
            sizes[k] = [v] * len(settings[k])
    if "qk_rope_head_dim" in known and "num_key_value_heads" in sizes:
        sizes["num_key_value_heads"] = sizes["num_attention_heads"]  # MLA: one latent KV per query head
    rope, nope, head = (settings.get(k) for k in ("qk_rope_head_dim", "qk_nope_head_dim", "head_dim"))
    if isinstance(head, int) and isinstance(rope, int) and "qk_rope_head_dim" in sizes:
        if head == rope:
            sizes["head_dim"] = sizes["qk_rope_head_dim"]
        elif isinstance(nope, int) and head == rope + nope and "qk_nope_head_dim" in sizes:
            sizes["head_dim"] = sizes["qk_rope_head_dim"] + sizes["qk_nope_head_dim"]
    return sizes


def _mla_head_dim(known: set, key: str) -> bool:
    """MLA configs (DeepSeek V2/V3, Kimi, MiniCPM3) derive ``head_dim`` from ``qk_rope_head_dim``
    (the rotary part only) and expand their latent keys and values to every query head: a tiny
    ``head_dim`` or KV-head count of their own would contradict them."""
    return key == "head_dim" and "qk_rope_head_dim" in known


def _per_layer_cut(full: dict, shrunk: dict, keep: set | None = None, given: set = frozenset()) -> dict:
    """Per-layer settings of a config cut to its smaller layer count: lists as long as the original
    ``num_hidden_layers`` (``layer_types``, ``no_rope_layers``, ...) keep their last entries, dicts
    keyed by layer index keep the layers that remain. ``keep`` limits the result to those keys plus
    the cut ones (a top-level config passes only what it overrides); ``given`` keys stay as given."""
    before, after = full.get("num_hidden_layers"), shrunk.get("num_hidden_layers")
    if not isinstance(before, int) or not isinstance(after, int) or after >= before:
        return shrunk
    result = dict(shrunk)
    for key, value in full.items():
        if key in given or (keep is not None and key not in keep and not isinstance(value, (list, dict))):
            continue
        if isinstance(value, list) and len(value) == before:
            result[key] = value[-after:]  # the last layers: a periodic pattern's special layer comes last
        elif isinstance(value, dict) and value and all(str(k).isdigit() for k in value):
            # the layers kept are the last ones: renumber, and scale per-layer head sizes like the rest
            scale = shrunk.get("head_dim", 0) / full["head_dim"] if full.get("head_dim") else 1.0
            result[key] = {
                str(int(k) - (before - after)): _scaled_layer(v, scale)
                for k, v in value.items()
                if int(k) >= before - after
            }
    return result


def _default_sections(model_type: str, config_class) -> list[int] | None:
    """The multimodal RoPE sections (``mrope_section``) a family uses where its config holds none:
    the default its modeling code reads them with (PaddleOCR-VL [16, 24, 24], ERNIE-4.5-VL
    [22, 22, 20]), Qwen2-VL's [16, 24, 24] where only its config class names them; None where the
    family has no sections."""
    import importlib

    try:
        source = inspect.getsource(importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}"))
    except (ImportError, OSError):
        source = ""
    found = re.search(r'get\("mrope_section", \[([\d, ]+)\]\)', source)
    if found:
        return [int(x) for x in found.group(1).split(",")]
    if "mrope_section" in set(getattr(config_class, "ignore_keys_at_rope_validation", None) or ()):
        return [16, 24, 24]
    return None


def _scaled_layer(settings, scale: float):
    """One layer's own settings with its head size scaled like the config's (Gemma 4's 512-dim
    global heads beside 256-dim sliding ones stay twice as large)."""
    if isinstance(settings, dict) and isinstance(settings.get("head_dim"), int) and scale:
        return {**settings, "head_dim": max(2, int(round(settings["head_dim"] * scale)))}
    return settings


def _scaled_sections(settings: dict, default: list[int] | None = None) -> dict:
    """Multimodal RoPE sections (t/h/w chunk counts) rescaled to sum to the tiny head's chunks, in
    their proportions (``default``: the family's own sections where the config holds none, see
    :func:`_default_sections`)."""
    params = settings.get("rope_parameters") or settings.get("rope_scaling")
    if default and isinstance(params, dict) and "mrope_section" not in params:
        params = {**params, "mrope_section": list(default)}
    if not isinstance(params, dict) or not isinstance(params.get("mrope_section"), list):
        return settings
    head = int(settings.get("head_dim") or SMALL["head_dim"])
    partial = params.get("partial_rotary_factor", settings.get("partial_rotary_factor")) or 1.0
    sections, chunks = params["mrope_section"], int(head * partial) // 2  # the rotating pairs only (GLM-4.5V: half)
    scaled = [max(1, round(s * chunks / sum(sections))) for s in sections]
    scaled[0] += chunks - sum(scaled)
    key = "rope_parameters" if settings.get("rope_parameters") else "rope_scaling"
    return {**settings, key: {**params, "mrope_section": scaled}}


def tiny_model(model_type: str, overrides: dict | None = None, seed: int = 0) -> torch.nn.Module:
    """A tiny random model of ``model_type`` (eager attention, norm weights perturbed off 0/1);
    a vision tower the timm library builds is stood in where timm is not installed
    (:func:`timm_tower_stand_in`; the model's ``survey_note`` then says so, else it is "")."""
    from ropescope.model.loading import model_class

    config = tiny_config(model_type, overrides)
    auto = model_class(config)
    with timm_tower_stand_in() as stood_in:
        with torch.device("meta"):
            size = sum(p.numel() for p in auto.from_config(config).parameters())
        if size > MAX_PARAMETERS:
            raise ValueError(f"its tiny config keeps {size / 1e6:.0f}M parameters (a tower the survey cannot shrink)")
        torch.manual_seed(seed)
        model = perturb_query_scaling(perturb_norms(auto.from_config(config))).eval()
    model.survey_note = TIMM_STAND_IN if stood_in else ""
    return model


TIMM_STAND_IN = "vision tower stood in (timm is not installed)"


@contextlib.contextmanager
def timm_tower_stand_in() -> Iterator[list]:
    """While building: where timm is not installed, a multimodal wrapper's timm vision tower
    (``TimmWrapperModel``: Gemma 3n, FastVLM, PerceptionLM) is built as an empty stand-in instead of
    failing. timm needs torchvision, whose PyPI wheels are CUDA builds that do not import beside the
    CPU torch this project installs. Text prompts never reach a vision tower, so the language tower
    the survey checks is the family's own; the stand-in raises if it is ever called. Yields a list
    that gets one entry per tower stood in."""
    stood_in: list = []
    if importlib.util.find_spec("timm") is not None:
        yield stood_in
        return
    from transformers.modeling_utils import PreTrainedModel
    from transformers.models.timm_wrapper import modeling_timm_wrapper

    cls = modeling_timm_wrapper.TimmWrapperModel
    original = cls.__init__

    def stand_in(self, config):
        PreTrainedModel.__init__(self, config)
        self.features_only = False
        self.timm_model = _TowerStandIn()
        self.post_init()
        stood_in.append(type(config).__name__)

    cls.__init__ = stand_in
    try:
        yield stood_in
    finally:
        cls.__init__ = original


class _TowerStandIn(torch.nn.Module):
    def forward(self, *args, **kwargs):
        raise RuntimeError(f"the survey's tiny model has its {TIMM_STAND_IN}: it takes text only")


def perturb_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Add N(0, 0.3^2) noise to every norm weight (random init leaves RMSNorm weights at 0 or 1,
    which would hide a missed or misplaced QK-norm); draws from the current torch seed."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(0.3 * torch.randn_like(param))
    return model


def perturb_query_scaling(model: torch.nn.Module) -> torch.nn.Module:
    """Draw the per-head query scaling by position (Mistral Large 4's ``softmax_scaling``: ``scale *
    log(position + 1) + bias``), which random init leaves at 1 everywhere and so would hide a scaling
    the head scores missed: scale N(0, 0.3^2), bias 1 + N(0, 0.1^2) (from the current torch seed)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "softmax_scaling." in name:
                noise = 0.3 * torch.randn_like(param) if name.endswith("scale") else 1 + 0.1 * torch.randn_like(param)
                param.copy_(noise)
    return model


def _rotary_dims(geometry) -> str:
    """``rotary/head`` dims, per distinct layer size where layers differ (Gemma 4: ``16/16, 32/32``),
    with the layers that reuse another layer's keys and values (KV sharing) named."""
    sizes = sorted(
        {(geometry.layer_rotary_dim(i), geometry.layer_head_dim(i)) for i in geometry.attention_layers},
        key=lambda s: s[1],
    )
    text = ", ".join(f"{r}/{h}" for r, h in sizes)
    shared = [i for i, lr in enumerate(geometry.layers) if lr.kv_source is not None]
    return text + (f" (layers {', '.join(map(str, shared))} reuse KV)" if shared else "")


def survey(families: list[str] | None = None, progress: Callable[[str], None] | None = None) -> list[FamilyRow]:
    """The family table: one row per RoPE family (and per :data:`VARIANTS` entry), sorted by name."""
    cases = [(f, f, None) for f in (families or causal_lm_families())]
    if families is None:
        cases += [(name, model_type, overrides) for name, (model_type, overrides) in VARIANTS.items()]
    rows = []
    for name, model_type, overrides in cases:
        if progress:
            progress(name)
        row = survey_family(name, model_type, overrides)
        if row is not None:
            rows.append(row)
    return sorted(rows, key=lambda r: r.family)


def survey_family(name: str, model_type: str, overrides: dict | None = None) -> FamilyRow | None:
    """The row of one family, or ``None`` when it has no RoPE at all."""
    from ropescope.model.anatomy import inspect_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = tiny_model(model_type, overrides)
        except Exception as exc:  # noqa: BLE001 - any failure to build is the row's reason
            if not _mentions_rope(_default_config(model_type)):
                return None
            reason = _principled(model_type) or "tiny model not buildable: " + _reason(exc)
            return FamilyRow(name, "-", "-", "-", "-", "-", *([reason] * 3))
        if not _mentions_rope(model.config):
            return None
        try:
            anatomy = inspect_model(model)
        except NoRopeError:
            return None
        except Exception as exc:  # noqa: BLE001
            return FamilyRow(name, "-", "-", _scaling(model), "-", "-", *([_reason(exc)] * 3))
        g = anatomy.geometry
        windows = sorted({lr.window for lr in g.layers if lr.window})
        described = (
            g.layout,
            _rotary_dims(g),
            _scaling(model),
            ", ".join(map(str, windows)) if windows else "-",
            ", ".join(map(str, g.nope_layers)) or "-",
        )
        checks = (_check(_profile, anatomy), _check(_heads, anatomy), _check(_prope, anatomy))
        return FamilyRow(name, *described, *checks, note=getattr(model, "survey_note", ""))


def _principled(model_type: str) -> str | None:
    """Why ropescope refuses a family whatever its sizes (an encoder-decoder, a speculative-decoding
    drafter), where it does: the reason a row gives when its tiny model cannot be built either."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from ropescope.model.families import refuse_drafter, refuse_encoder_decoder

    try:
        refuse_encoder_decoder(_default_config(model_type), model_type)
    except UnsupportedModelError as exc:
        return _reason(exc)
    name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    if name is None:
        return None
    try:
        refuse_drafter(getattr(transformers, name), model_type)
    except UnsupportedModelError as exc:
        return _reason(exc)
    except Exception:  # noqa: BLE001 - a class that cannot be imported: no principled reason known
        return None
    return None


def _check(fn, anatomy) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn(anatomy)
        return "yes"
    except Exception as exc:  # noqa: BLE001 - the reason is the answer
        return _reason(exc)


def _profile(anatomy) -> None:
    from ropescope.profiling.run import profile

    profile(anatomy, CharTokenizer(), list(TEXTS), batch_size=2)


def _heads(anatomy) -> None:
    from ropescope.heads.gate import check_attention_rule

    check_attention_rule(anatomy, torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]]), tolerance=1e-5)


def _prope(anatomy) -> None:
    from ropescope.prope.interventions import check_reached, p_rope
    from ropescope.prope.perplexity import perplexity

    ids = torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]])
    with torch.no_grad():
        base = anatomy.hf(input_ids=ids, use_cache=False).logits
        with p_rope(anatomy, 1.0):
            same = anatomy.hf(input_ids=ids, use_cache=False).logits
        with p_rope(anatomy, 0.25) as reached:
            changed = anatomy.hf(input_ids=ids, use_cache=False).logits
    check_reached(reached, anatomy.geometry.rotating_layers, anatomy.model_type)
    perplexity(anatomy, CharTokenizer(), " ".join(TEXTS), context=32)  # its logits must be reproducible
    if not torch.equal(base, same):
        raise ValueError("p = 1 does not leave the logits bit-identical")
    if torch.equal(base, changed):
        raise ValueError("p = 0.25 leaves the logits unchanged: the intervention does not reach the rotation")


ROTARY_KEYS = ("rope_theta", "rope_parameters", "rotary_dim", "rotary_pct", "partial_rotary_factor", "rope_scaling")


def _mentions_rope(config) -> bool:
    """Whether a config (or its text config) configures rotary positions at all."""
    if config is None:
        return False
    try:
        text = config.get_text_config()
    except Exception:  # noqa: BLE001 - several text configs (an encoder and a decoder)
        text = config
    if getattr(text, "position_embedding_type", None) == "rotary":
        return True
    return any(getattr(c, key, None) for c in (text, config) for key in ROTARY_KEYS)


def _default_config(model_type: str):
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        return CONFIG_MAPPING[model_type]()
    except Exception:  # noqa: BLE001
        return None


def _scaling(model) -> str:
    params = getattr(model.config.get_text_config(), "rope_parameters", None) or {}
    if isinstance(params, dict) and all(isinstance(v, dict) for v in params.values()) and params:
        return "/".join(sorted({str(v.get("rope_type", "default")) for v in params.values()}))
    return str(params.get("rope_type", "default")) if isinstance(params, dict) else "default"


def _reason(exc: BaseException) -> str:
    """The first words of an error, without the list of supported families some messages end with."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.split("; supported families")[0]
    return text if len(text) <= 120 else text[:117] + "..."


def markdown(rows: list[FamilyRow]) -> str:
    """The table as Markdown (what the docs' families page, docs/reference/families.md, shows), with
    a line under it naming the rows whose tiny model is not wholly the family's own (:attr:`FamilyRow.note`)."""
    header = ["family", "layout", "rotary dims", "RoPE scaling", "sliding window", "NoPE layers"]
    header += ["profile", "heads", "p-RoPE"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        values = [v for k, v in asdict(row).items() if k != "note"]
        family = f"{row.family} *" if row.note else row.family
        lines.append("| " + " | ".join(str(v).replace("|", "/") for v in [family, *values[1:]]) + " |")
    notes = sorted({row.note for row in rows if row.note})
    for note in notes:
        named = ", ".join(row.family for row in rows if row.note == note)
        lines += ["", f"\\* {note}: {named}. Text prompts never reach a vision tower."]
    return "\n".join(lines) + "\n"
