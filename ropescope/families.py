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
  layer's logit rule (:mod:`ropescope.heads.attention`) equals the model's own eager
  ``output_attentions`` to 1e-5;
- **p-RoPE**: p = 1 leaves the logits bit-identical and p = 0.5 changes them.

:data:`VARIANTS` adds configurations the defaults do not reach: the exact Gemma 7B head geometry
and the RoPE scaling types (``llama3``, ``longrope``, ``yarn``, ``dynamic``). A check that fails
says why in a few words; a family whose tiny model cannot be built is listed with the reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from ropescope.errors import NoRopeError

SMALL = dict(
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
)
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
TEXTS = ("To be, or not to be", "that is the question: whether 'tis nobler in the mind to suffer")


@dataclass(frozen=True)
class FamilyRow:
    """One row of the family table: ``profile``, ``heads`` and ``prope`` are "yes" or why not."""

    family: str
    layout: str
    rotary_fraction: str
    scaling: str
    sliding_window: str
    profile: str
    heads: str
    prope: str

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
    """Every model type the installed ``transformers`` can build a causal LM for."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def tiny_config(model_type: str, overrides: dict | None = None):
    """The family's own config class with the :data:`SMALL` sizes it knows, plus ``overrides``."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    cls = CONFIG_MAPPING[model_type]
    known = set(cls().to_dict())
    config = cls(**{**{k: v for k, v in SMALL.items() if k in known}, **(overrides or {})})
    config._attn_implementation = "eager"
    return config


def tiny_model(model_type: str, overrides: dict | None = None, seed: int = 0) -> torch.nn.Module:
    """A tiny random model of ``model_type`` (eager attention, norm weights perturbed off 0/1)."""
    from transformers import AutoModelForCausalLM

    config = tiny_config(model_type, overrides)
    with torch.device("meta"):
        size = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    if size > MAX_PARAMETERS:
        raise ValueError(
            f"its tiny config keeps {size / 1e6:.0f}M parameters (a multimodal wrapper: use its text model)"
        )
    torch.manual_seed(seed)
    return perturb_norms(AutoModelForCausalLM.from_config(config)).eval()


def perturb_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Add N(0, 0.3^2) noise to every norm weight (random init leaves RMSNorm weights at 0 or 1,
    which would hide a missed or misplaced QK-norm); draws from the current torch seed."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(0.3 * torch.randn_like(param))
    return model


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
            return FamilyRow(name, "-", "-", "-", "-", *(["tiny model not buildable: " + _reason(exc)] * 3))
        if not _mentions_rope(model.config):
            return None
        try:
            anatomy = inspect_model(model)
        except NoRopeError:
            return None
        except Exception as exc:  # noqa: BLE001
            return FamilyRow(name, "-", "-", _scaling(model), "-", *([_reason(exc)] * 3))
        g = anatomy.geometry
        windows = sorted({lr.window for lr in g.layers if lr.window})
        described = (
            g.layout,
            f"{g.rotary_dim}/{g.head_dim}",
            _scaling(model),
            ", ".join(map(str, windows)) if windows else "-",
        )
        return FamilyRow(name, *described, _check(_profile, anatomy), _check(_heads, anatomy), _check(_prope, anatomy))


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
    from ropescope.heads.scan import require_full_heads

    require_full_heads(anatomy)
    check_attention_rule(anatomy, torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]]), tolerance=1e-5)


def _prope(anatomy) -> None:
    from ropescope.prope.interventions import check_reached, p_rope

    ids = torch.tensor([CharTokenizer()(TEXTS[1])["input_ids"]])
    with torch.no_grad():
        base = anatomy.hf(input_ids=ids, use_cache=False).logits
        with p_rope(anatomy, 1.0):
            same = anatomy.hf(input_ids=ids, use_cache=False).logits
        with p_rope(anatomy, 0.5) as reached:
            changed = anatomy.hf(input_ids=ids, use_cache=False).logits
    check_reached(reached, range(anatomy.n_layers), anatomy.model_type)
    if not torch.equal(base, same):
        raise ValueError("p = 1 does not leave the logits bit-identical")
    if torch.equal(base, changed):
        raise ValueError("p = 0.5 leaves the logits unchanged: the intervention does not reach the rotation")


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
    """The table as Markdown (what the README shows)."""
    header = ["family", "layout", "rotary dims", "RoPE scaling", "sliding window", "profile", "heads", "p-RoPE"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(str(v).replace("|", "/") for v in asdict(row).values()) + " |")
    return "\n".join(lines) + "\n"
