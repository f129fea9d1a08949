"""The stopping policies of ANGES, the trainer's own state machines, fed ``(metric, co2)``.

``make(policy="anges", variant=..., **knobs)`` builds one; ``observe(metric, co2_g)`` feeds the
next epoch's validation metric and cumulative CO2-eq (grams) and returns the decision with its
quantities. The policies, in the project's words (docs/green.md, docs/spec.md §1):

- ``full``: every epoch up to the maximum;
- ``patience``: stop after ``patience`` epochs without a validation improvement larger than
  ``min_delta``;
- ``anges``: stop when the accuracy gained per % of CO2, ``AER = %ΔPerf / %ΔEmiss``, falls below
  ``beta`` × its EMA (``alpha``: weight of the newest AER; ``warmup``: epochs W before any stop).
  ``variant`` picks a preset: ``literal`` (Algorithm 1 as written, α 0.9 β 0.2 W 5: stops at the
  first validation dip), ``history``, ``smoothed``, ``consecutive``, ``plateau`` (the default:
  the best metric so far, K = 10 triggers in a row) and ``window``; ``order``, ``signal``,
  ``smoothing``, ``window``, ``consecutive`` and ``ema_init`` override single knobs.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from . import _anges

__all__ = ["Policy", "make", "full", "patience", "anges", "VARIANTS", "DEFAULT_VARIANT"]

_PRESETS = json.loads(_anges.variants())
#: The default AN-GES variant (``plateau``).
DEFAULT_VARIANT: str = _PRESETS.pop("default")
#: The AN-GES variants and their preset parameters.
VARIANTS: Dict[str, Dict[str, Any]] = _PRESETS


class Policy:
    """A running stopping policy (best-epoch tracking plus the stopping rule)."""

    def __init__(self, higher_is_better: bool = True, **options: Any) -> None:
        from . import _json

        self._inner = _anges.Policy(_json(options), higher_is_better)
        self.spec: Dict[str, Any] = json.loads(self._inner.spec())
        self.label: str = self._inner.label()

    def observe(self, metric: Optional[float], co2_g: Optional[float]) -> Dict[str, Any]:
        """Feeds the next epoch (``metric``: its validation value, ``None`` when not computed;
        ``co2_g``: the cumulative CO2-eq so far, ``None`` unmetered). Returns ``epoch``,
        ``stop`` (``None``, ``"anges"`` or ``"patience"``), ``best`` (this epoch is the best so
        far), ``best_epoch`` and, under AN-GES, ``anges``: ``p``, ``signal``, ``e``,
        ``delta_perf_pct``, ``delta_emiss_pct``, ``aer``, ``ema``, ``decision`` (``reference``,
        ``warm-up``, ``continue``, ``triggered``, ``stop``, ``meter-fault``, …)."""
        return json.loads(
            self._inner.observe(
                None if metric is None else float(metric),
                None if co2_g is None else float(co2_g),
            )
        )


def make(policy: str = "anges", higher_is_better: bool = True, **options: Any) -> Policy:
    """The policy named ``policy`` (``full``, ``patience``, ``anges``) with its options."""
    return Policy(higher_is_better=higher_is_better, policy=policy, **options)


def full(higher_is_better: bool = True) -> Policy:
    """Every epoch (tracks the best epoch only)."""
    return make("full", higher_is_better)


def patience(patience: int = 10, min_delta: float = 0.0, higher_is_better: bool = True) -> Policy:
    """Classic validation early stopping."""
    return make("patience", higher_is_better, patience=patience, min_delta=min_delta)


def anges(variant: Optional[str] = None, higher_is_better: bool = True, **knobs: Any) -> Policy:
    """AN-GES: ``variant`` (default ``plateau``) with ``alpha``, ``beta``, ``warmup``, … over
    its preset."""
    return make("anges", higher_is_better, variant=variant, **knobs)
