"""ropescope: how a pretrained RoPE language model uses each rotary frequency.

Quick start::

    import ropescope
    model, tokenizer = ropescope.load_model("gemma-3-270m")
    prof = ropescope.profile(model, tokenizer, ropescope.load_prompts("shakespeare"))
    prof.frame()            # tidy DataFrame: tensor, layer, head, chunk, frequency, mean_norm, ...
    ropescope.plots.layer_usage_figure(prof)
"""

__version__ = "0.1.0"

from ropescope.capture import capture  # noqa: E402
from ropescope.errors import RopescopeError  # noqa: E402
from ropescope.models import load_model  # noqa: E402
from ropescope.profile import Profile, load_profile  # noqa: E402
from ropescope.profiler import profile  # noqa: E402
from ropescope.prompts import load_prompts  # noqa: E402
from ropescope.rope import RopeGeometry, read_geometry  # noqa: E402

__all__ = [
    "Profile",
    "RopeGeometry",
    "RopescopeError",
    "capture",
    "load_model",
    "load_profile",
    "load_prompts",
    "profile",
    "read_geometry",
]
