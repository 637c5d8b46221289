"""Known model sizes for estimates: name -> parameter counts from the models' own papers/cards.

`params` is every weight (what must fit in memory); `active_params` the weights one token passes
through (equal for dense models, smaller for mixture-of-experts), which sets the FLOPs per token.
Names are lowercase with dashes; `lookup_model` also accepts dots/underscores/case variations.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict


class KnownModel(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    params: float
    active_params: float
    source: str


def _dense(name: str, params: float, source: str) -> KnownModel:
    return KnownModel(name=name, params=params, active_params=params, source=source)


KNOWN_MODELS: tuple[KnownModel, ...] = (
    _dense("gpt-2-1.5b", 1.5e9, "Radford et al. 2019 (GPT-2 XL)"),
    _dense("bert-large", 340e6, "Devlin et al. 2018"),
    _dense("llama-2-7b", 6.74e9, "Touvron et al. 2023, Llama 2"),
    _dense("llama-2-13b", 13.0e9, "Touvron et al. 2023, Llama 2"),
    _dense("llama-2-70b", 69.0e9, "Touvron et al. 2023, Llama 2"),
    _dense("llama-3-8b", 8.03e9, "Meta Llama 3 model card"),
    _dense("llama-3-70b", 70.6e9, "Meta Llama 3 model card"),
    _dense("llama-3.1-405b", 405e9, "Meta Llama 3.1 model card"),
    _dense("mistral-7b", 7.24e9, "Jiang et al. 2023, Mistral 7B"),
    KnownModel(
        name="mixtral-8x7b",
        params=46.7e9,
        active_params=12.9e9,
        source="Jiang et al. 2024, Mixtral of Experts",
    ),
    _dense("falcon-40b", 40e9, "TII Falcon-40B model card"),
    _dense("gpt-3-175b", 175e9, "Brown et al. 2020, GPT-3"),
)

_BY_KEY = {re.sub(r"[^a-z0-9]", "", m.name): m for m in KNOWN_MODELS}


def lookup_model(name: str) -> KnownModel | None:
    """The known model called `name` (case, dots, dashes and underscores ignored), else None."""
    return _BY_KEY.get(re.sub(r"[^a-z0-9]", "", name.lower()))


def known_model_names() -> tuple[str, ...]:
    return tuple(m.name for m in KNOWN_MODELS)
