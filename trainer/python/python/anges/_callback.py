"""What the Lightning and Hugging Face callbacks share: the metric named by ``monitor`` and
``mode``, the session they drive, and the quantities they log."""

from __future__ import annotations

import math
import os
import time
from typing import Any, Dict, List, Optional

from . import Session

_BY_NAME = (
    ("prc", "prc-auc"),
    ("average_precision", "prc-auc"),
    ("roc", "roc-auc"),
    ("auc", "roc-auc"),
    ("rmse", "rmse"),
    ("mae", "mae"),
)
_HIGHER = {"roc-auc": True, "prc-auc": True, "rmse": False, "mae": False}


def resolve_metric(monitor: str, mode: str, metric: Optional[str]) -> str:
    """The ANGES metric the monitored value is: ``metric`` when given, else the one its name
    says (``…roc…``/``…auc…`` → ``roc-auc``, ``…prc…`` → ``prc-auc``, ``…rmse…``, ``…mae…``).
    ``mode`` must agree with the metric's direction (``max`` for the AUCs, ``min`` for the
    errors)."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode={mode!r}: use 'max' or 'min'")
    if metric is None:
        name = monitor.lower()
        metric = next((m for key, m in _BY_NAME if key in name), None)
        if metric is None:
            raise ValueError(
                f"monitor={monitor!r}: say which metric it is with metric='roc-auc', "
                "'prc-auc' (higher is better), 'rmse' or 'mae' (lower is better); the run's "
                "epochs.jsonl records it under that name so that anges-train replay reads it"
            )
    metric = metric.replace("_", "-")
    if metric not in _HIGHER:
        raise ValueError(f"metric={metric!r}: use roc-auc, prc-auc, rmse or mae")
    if _HIGHER[metric] != (mode == "max"):
        raise ValueError(
            f"mode={mode!r} contradicts metric={metric!r} "
            f"({'higher' if _HIGHER[metric] else 'lower'} is better)"
        )
    return metric


def default_run_dir(root: str = "runs") -> str:
    """``runs/<UTC time>-python`` (with ``-2``, ``-3``, … when taken)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = os.path.join(root, f"{stamp}-python")
    n = 2
    while os.path.exists(path):
        path = os.path.join(root, f"{stamp}-python-{n}")
        n += 1
    return path


def number(value: Any) -> Optional[float]:
    """A float from a Python number or a 0-d tensor; ``None`` for anything else or NaN."""
    if value is None:
        return None
    try:
        if hasattr(value, "item"):
            value = value.item()
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def batch_rows(batch: Any) -> int:
    """The rows of a batch: the length of its first tensor (in a tuple, list or dict), else 1."""
    first = batch
    if isinstance(batch, dict):
        first = next(iter(batch.values()), None)
    elif isinstance(batch, (list, tuple)) and batch:
        first = batch[0]
    shape = getattr(first, "shape", None)
    return int(shape[0]) if shape else 1


def quantities(out: Dict[str, Any], prefix: str = "anges/") -> Dict[str, float]:
    """The numbers of an epoch's outcome worth logging: %ΔPerf, %ΔEmiss, AER, EMA and the
    cumulative energy and CO2."""
    logged: Dict[str, float] = {}
    step = out.get("anges") or {}
    for key, name in (
        ("delta_perf_pct", "delta_perf_pct"),
        ("delta_emiss_pct", "delta_emiss_pct"),
        ("aer", "aer"),
        ("ema", "ema"),
    ):
        if step.get(key) is not None:
            logged[prefix + name] = float(step[key])
    energy = out.get("energy") or {}
    if energy.get("cumulative_j") is not None:
        logged[prefix + "energy_j"] = float(energy["cumulative_j"])
        logged[prefix + "co2_g"] = float(energy["cumulative_g"])
    return logged


class Driver:
    """The state and the per-evaluation step the Lightning and Hugging Face callbacks share:
    the options, the session (started on the main process only), each epoch's outcome, the
    stop, and the summary written at the end."""

    def _configure(
        self,
        monitor: str,
        mode: str,
        metric: Optional[str],
        run_dir: Optional[str],
        overwrite: bool,
        estimated: bool,
        job_name: Optional[str],
        options: Dict[str, Any],
        test_monitor: Optional[str] = None,
    ) -> None:
        self.monitor = monitor
        #: The logged test value reported beside the validation one (``None``: none).
        self.test_monitor = test_monitor
        self.mode = mode
        self.metric = resolve_metric(monitor, mode, metric)
        self.run_dir = run_dir
        self.overwrite = overwrite
        self.estimated = estimated
        self.job_name = job_name
        self.options: Dict[str, Any] = dict(options)
        self.session: Optional[Session] = None
        #: The 1-based epoch after which the policy stopped the run (0: it did not).
        self.stopped_epoch = 0
        #: Every epoch's outcome (as ``Session.epoch`` returns it).
        self.history: List[Dict[str, Any]] = []
        #: ``summary.json`` once the run ended.
        self.summary: Optional[Dict[str, Any]] = None

    def _start(self, model: Any = None) -> None:
        """Starts the session; ``model`` (the trained module) names the run's ``model`` label
        by its class when the options give none."""
        if self.session is None:
            if self.options.get("model") is None and model is not None:
                self.options["model"] = type(model).__name__
            self.session = Session(
                self.run_dir or default_run_dir(),
                self.metric,
                overwrite=self.overwrite,
                estimated=self.estimated,
                job_name=self.job_name,
                **self.options,
            )
            self.run_dir = self.session.run_dir

    def _epoch(self, logged: Dict[str, Any], train_loss: Any) -> Optional[Dict[str, Any]]:
        """Reports an evaluation from the ``logged`` values (``monitor``'s and, when set,
        ``test_monitor``'s); the outcome, ``None`` when this process has no session."""
        if self.session is None:
            return None
        test = logged.get(self.test_monitor) if self.test_monitor else None
        out = self.session.epoch(number(logged.get(self.monitor)), number(train_loss), number(test))
        self.history.append(out)
        if out["stop"] is not None and not self.stopped_epoch:
            self.stopped_epoch = out["epoch"]
        return out

    def _finish(self) -> None:
        if self.session is not None and self.summary is None:
            self.summary = self.session.finish()
