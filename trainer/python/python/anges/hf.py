"""``AngesCallback``: AN-GES (or patience) in the Hugging Face ``Trainer``, on the shared meter.

At each evaluation it reads the meter (a fresh reading including the work just done), feeds
``(metrics[monitor], cumulative CO2)`` to the policy, records %ΔPerf, %ΔEmiss, AER and the
cumulative energy and CO2 in ``state.log_history``, and sets ``control.should_training_stop``
when the policy says so. The run folder gets the same files as ``anges.lightning``'s.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from transformers import TrainerCallback

from . import _callback

__all__ = ["AngesCallback"]


class AngesCallback(TrainerCallback, _callback.Driver):
    """Stops a ``transformers.Trainer`` with an ANGES policy at each evaluation.

    ``monitor`` is the evaluation metric's key (``"eval_roc_auc"``), ``mode`` its direction,
    ``metric`` its ANGES name (guessed from ``monitor`` when omitted); the policy's and the
    meter's options, ``test_monitor`` (e.g. ``"eval_test_roc_auc"`` when the ``Trainer``
    evaluates ``{"valid": …, "test": …}`` and ``monitor`` is ``"eval_valid_roc_auc"``) and the
    labels ``dataset``, ``model`` (default: the model's class name) and ``init`` are those of
    :class:`anges.lightning.AngesEarlyStopping`. After training:
    ``stopped_epoch``, ``history``, ``summary``, ``run_dir``.
    """

    def __init__(
        self,
        monitor: str = "eval_roc_auc",
        mode: str = "max",
        *,
        metric: Optional[str] = None,
        run_dir: Optional[str] = None,
        overwrite: bool = False,
        policy: str = "anges",
        estimated: bool = False,
        job_name: Optional[str] = None,
        test_monitor: Optional[str] = None,
        **options: Any,
    ) -> None:
        options["policy"] = policy
        self._configure(
            monitor, mode, metric, run_dir, overwrite, estimated, job_name, options, test_monitor
        )

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self._start(kwargs.get("model"))

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Optional[Dict[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        if metrics is None:
            return
        losses = [h["loss"] for h in state.log_history if "loss" in h]
        out = self._epoch(metrics, losses[-1] if losses else None)
        if out is None:
            return
        logged = _callback.quantities(out)
        if logged:
            state.log_history.append({**logged, "epoch": state.epoch, "step": state.global_step})
        if out["stop"] is not None:
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._finish()
