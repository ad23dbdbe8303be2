"""Load stage: a model name becomes a :class:`LoadedModel`, its family adapter and its RoPE geometry.

- :mod:`~ropescope.model.bundled`: the bundled real checkpoints and the GGUF conversion cache;
- :mod:`~ropescope.model.loading`: names (bundled, ``.gguf``, directory, hub id) -> :class:`LoadedModel`;
- :mod:`~ropescope.model.families`: where each architecture family applies RoPE, finding its attention layers;
- :mod:`~ropescope.model.geometry`: :class:`RopeGeometry` (frequencies, layout, windows), chunking and rotation;
- :mod:`~ropescope.model.anatomy`: :class:`ModelAnatomy`, everything analyses need, read once;
- :mod:`~ropescope.model.rope_scaling`: context extension at inference (linear, YaRN, Llama 3), restored on exit.
"""

from typing import TYPE_CHECKING

from ropescope._lazy import lazy_attributes

# name -> the module that defines it, imported on first use (the command line's --help imports none)
_WHERE = {
    "BUNDLED": "ropescope.model.bundled",
    "DEFAULT_MODEL": "ropescope.model.bundled",
    "DTYPES": "ropescope.model.loading",
    "LoadedModel": "ropescope.model.loading",
    "LogitRule": "ropescope.model.anatomy",
    "ModelAnatomy": "ropescope.model.anatomy",
    "RopeGeometry": "ropescope.model.geometry",
    "checkpoint_dir": "ropescope.model.loading",
    "chunk_dims": "ropescope.model.geometry",
    "chunk_norms": "ropescope.model.geometry",
    "inspect_model": "ropescope.model.anatomy",
    "is_bridge": "ropescope.model.anatomy",
    "load_model": "ropescope.model.loading",
    "model_status": "ropescope.model.bundled",
    "read_geometry": "ropescope.model.geometry",
    "rotate": "ropescope.model.geometry",
    "split_pairs": "ropescope.model.geometry",
}
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)

if TYPE_CHECKING:  # what type checkers and editors see
    from ropescope.model.anatomy import LogitRule, ModelAnatomy, inspect_model, is_bridge
    from ropescope.model.bundled import BUNDLED, DEFAULT_MODEL, model_status
    from ropescope.model.geometry import RopeGeometry, chunk_dims, chunk_norms, read_geometry, rotate, split_pairs
    from ropescope.model.loading import DTYPES, LoadedModel, checkpoint_dir, load_model

__all__ = [
    "BUNDLED",
    "DEFAULT_MODEL",
    "DTYPES",
    "LoadedModel",
    "LogitRule",
    "ModelAnatomy",
    "RopeGeometry",
    "checkpoint_dir",
    "chunk_dims",
    "chunk_norms",
    "inspect_model",
    "is_bridge",
    "load_model",
    "model_status",
    "read_geometry",
    "rotate",
    "split_pairs",
]
