"""``AngesEarlyStopping``: AN-GES (or patience) as a Lightning callback, on the shared meter.

Shaped like Lightning's ``EarlyStopping``: at each validation end it reads the meter (a fresh
reading that includes the epoch's work), feeds ``(monitor, cumulative CO2)`` to the policy,
logs %ΔPerf, %ΔEmiss, AER and the cumulative energy and CO2 to the trainer's logger, and stops
the trainer when the policy says so. The run folder gets the trainer's ``epochs.jsonl`` and
``epochs.csv``, ``summary.json`` and a CodeCarbon-compatible ``emissions.csv`` when the fit
ends, so ``anges-train replay RUN_DIR`` replays it.

The five lines a Lightning script adds::

    from anges.lightning import AngesEarlyStopping
    stop = AngesEarlyStopping(monitor="val_roc_auc", mode="max", run_dir="runs/mine")
    trainer = L.Trainer(max_epochs=100, callbacks=[stop])
    trainer.fit(model, data)
    print(stop.summary["co2_g"], stop.stopped_epoch)
"""

from __future__ import annotations

from typing import Any, Optional

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # pragma: no cover - the standalone package
    from pytorch_lightning.callbacks import Callback  # type: ignore[no-redef]

from . import _callback

__all__ = ["AngesEarlyStopping"]


class AngesEarlyStopping(Callback, _callback.Driver):
    """Stops a Lightning fit with an ANGES policy fed the validation metric and the job's CO2.

    ``monitor`` is the logged validation value (e.g. ``"val_roc_auc"``), ``mode`` its direction;
    ``metric`` names it for the log (``roc-auc``, ``prc-auc``, ``rmse``, ``mae``; guessed from
    ``monitor`` when omitted). ``policy`` (``anges``, ``patience``, ``full``), ``variant`` and
    the AN-GES knobs (``alpha``, ``beta``, ``warmup``, ``consecutive``, …) or ``patience`` and
    ``min_delta`` choose the rule; ``meter``, ``socket``, ``region``, ``intensity``,
    ``intensity_csv``, ``pue``, ``meter_config`` the meter (as :class:`anges.Meter`).
    ``test_monitor`` names a logged test value (e.g. ``"test_roc_auc"`` from a second
    validation dataloader) recorded beside the validation one; ``dataset``, ``model`` (default:
    the LightningModule's class name) and ``init`` label the run for ``anges-train summarize``,
    which groups runs by them.
    The training loss written to the log is the mean of ``training_step``'s losses over the
    epoch's batches, weighted by their size.

    After the fit: ``stopped_epoch`` (1-based epoch the policy stopped after, 0 if it did not),
    ``history`` (every epoch's outcome), ``summary`` (``summary.json``), ``run_dir``.
    """

    def __init__(
        self,
        monitor: str = "val_roc_auc",
        mode: str = "max",
        *,
        metric: Optional[str] = None,
        run_dir: Optional[str] = None,
        overwrite: bool = False,
        policy: str = "anges",
        log_quantities: bool = True,
        verbose: bool = False,
        estimated: bool = False,
        job_name: Optional[str] = None,
        test_monitor: Optional[str] = None,
        **options: Any,
    ) -> None:
        super().__init__()
        options["policy"] = policy
        self._configure(
            monitor, mode, metric, run_dir, overwrite, estimated, job_name, options, test_monitor
        )
        self._loss_sum = 0.0
        self._loss_rows = 0
        self.log_quantities = log_quantities
        self.verbose = verbose

    @property
    def state_key(self) -> str:
        return f"AngesEarlyStopping{{monitor={self.monitor}, mode={self.mode}}}"

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero:
            self._start(pl_module)
            if self.verbose and self.session is not None:
                print(f"anges: {self.session.describe}; run folder {self.run_dir}")

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._loss_sum, self._loss_rows = 0.0, 0

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        value = _callback.number(loss)
        if value is not None:
            rows = _callback.batch_rows(batch)
            self._loss_sum += value * rows
            self._loss_rows += rows

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        loss = self._loss_sum / self._loss_rows if self._loss_rows else None
        out = self._epoch(trainer.callback_metrics, loss)
        should_stop = False
        if out is not None:
            if self.log_quantities and trainer.loggers:
                logged = _callback.quantities(out)
                for logger in trainer.loggers:
                    logger.log_metrics(logged, step=trainer.global_step)
            if self.verbose:
                print(f"anges: epoch {out['epoch']}: {out.get('anges')}")
            should_stop = out["stop"] is not None
        should_stop = trainer.strategy.reduce_boolean_decision(should_stop, all=False)
        trainer.should_stop = trainer.should_stop or should_stop

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._finish()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._finish()
