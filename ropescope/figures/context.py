"""What the figures of one run share: the model, loaded once, its profiles and its head scan."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ropescope.files import name_part
from ropescope.heads.scan import scan_heads
from ropescope.heads.views import head_view
from ropescope.model.loading import LoadedModel, load_model
from ropescope.profiling.run import profile
from ropescope.prompts import load_prompts


@dataclass
class FigureContext:
    """Lazy access to the model, its profiles and its heads, shared by all figures of one run."""

    model_name: str
    out: Path
    prompts: str = "shakespeare"
    notes: list[str] = field(default_factory=list)
    _cache: dict = field(default_factory=dict)
    load_options: dict = field(default_factory=dict)  # keyword arguments of load_model (dtype, device, ...)

    @property
    def name(self) -> str:
        return name_part(self.model_name)

    def stem(self, what: str, per_model: bool = True) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        return self.out / (f"{what}_{self.name}" if per_model else what)

    def model(self) -> LoadedModel:
        if "model" not in self._cache:
            self._cache["model"] = load_model(self.model_name, **self.load_options)
        return self._cache["model"]

    def profile(self, prompts: str | None = None):
        prompts = prompts or self.prompts
        key = ("profile", prompts)
        if key not in self._cache:
            model = self.model()
            tokenizer = model.tokenizer
            self._cache[key] = profile(
                model, tokenizer, load_prompts(prompts), model_id=self.model_name, prompt_set=prompts
            )
        return self._cache[key]

    def heads(self):
        if "heads" not in self._cache:
            model = self.model()
            tokenizer = model.tokenizer
            self._cache["heads"] = scan_heads(
                model, tokenizer, load_prompts(self.prompts), model_id=self.model_name, prompt_set=self.prompts
            )
        return self._cache["heads"]

    def found(self, cls: str):
        """(layer, head) of the strongest head of class ``cls``, or None."""
        table = self.heads().table
        part = table[table["class"].astype(str) == cls]
        return (int(part.iloc[0]["layer"]), int(part.iloc[0]["head"])) if len(part) else None

    def view(self, layer: int, head: int, text: str | None = None, max_tokens: int = 20):
        key = ("view", layer, head, text, max_tokens)
        if key not in self._cache:  # F5, F6, F14-F16 and T3 show the same heads: one forward each
            model = self.model()
            tokenizer = model.tokenizer
            text = text or load_prompts(self.prompts)[0]
            self._cache[key] = head_view(model, tokenizer, layer, head, text, max_tokens=max_tokens)
        return self._cache[key]
