"""ANGES in any PyTorch training loop: the shared meter and AN-GES early stopping.

The native module (``anges._anges``, Rust through PyO3) is the ANGES library itself: the meter
session of ``anges-train --meter auto`` (the system daemon's socket, the user daemon's, else an
in-process engine, labelled), the stopping policies as the trainer's state machines, the run log
(``epochs.jsonl``, ``epochs.csv``, ``summary.json``, ``emissions.csv``) and the CLI's replay.

- :class:`Meter` -- this process's energy and CO2, as a context manager or an object;
- :mod:`anges.policies` -- patience, the literal AN-GES and its variants, fed ``(metric, co2)``;
- :class:`Session` -- a metered, policed, logged run, one :meth:`Session.epoch` per validation;
- :func:`replay` -- ``anges-train replay`` on a run folder;
- :mod:`anges.lightning` and :mod:`anges.hf` -- the callbacks for Lightning and for the
  Hugging Face ``Trainer``.

Every error is an :class:`AngesError` carrying the Rust library's message.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

from . import _anges
from ._anges import AngesError
from . import policies

__all__ = ["AngesError", "Meter", "Session", "policies", "replay", "METER_OPTIONS"]
__version__ = _anges.__version__

#: The keyword arguments of the meter, named as the trainer's flags without their dashes.
METER_OPTIONS = ("meter", "socket", "region", "intensity", "intensity_csv", "pue", "meter_config")


def _json(options: Dict[str, Any]) -> str:
    """The options with a value, as the JSON object the native module reads."""
    clean = {}
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, tuple):
            value = list(value)
        clean[key] = value
    return json.dumps(clean)


def _job_name(job_name: Optional[str]) -> str:
    return job_name or f"python-{os.getpid()}"


class Meter:
    """This process metered as a job, as ``anges-train --meter auto`` meters a run.

    ``meter`` is ``"auto"`` (the daemon when one answers -- ``socket``, ``$ANGES_METER_SOCKET``,
    the system socket, the user socket -- else the in-process engine), ``"daemon"`` (an error
    without one) or ``"local"``. ``region``, ``intensity``, ``intensity_csv``, ``pue`` and
    ``meter_config`` are the in-process engine's carbon options (a daemon applies its own).
    ``estimated=True`` forces the in-process engine onto the utilisation estimate (tests, CI).

    Use it as a context manager (``with anges.Meter() as m: ...; m.read()``) or call
    :meth:`close` yourself.
    """

    def __init__(
        self,
        meter: str = "auto",
        *,
        socket: Optional[str] = None,
        region: Optional[str] = None,
        intensity: Optional[float] = None,
        intensity_csv: Optional[str] = None,
        pue: Optional[float] = None,
        meter_config: Optional[str] = None,
        job_name: Optional[str] = None,
        estimated: bool = False,
    ) -> None:
        options = dict(
            meter=meter,
            socket=socket,
            region=region,
            intensity=intensity,
            intensity_csv=intensity_csv,
            pue=pue,
            meter_config=meter_config,
        )
        self._inner = _anges.Meter(_json(options), _job_name(job_name), estimated)
        self.final: Optional[Dict[str, Any]] = None

    def read(self, fresh: bool = True) -> Dict[str, Any]:
        """The job's cumulative figures: ``energy_j``, ``co2_g``, the last reading's ``delta_j``
        and ``delta_g``, ``measured``, ``source`` (``daemon``, ``local``, ``local-gap``),
        ``fault``, ``domains`` (joules by ``cpu``, ``memory``, ``gpu`` when known).

        ``fresh=True`` waits for a reading that includes the work just done (the daemon's next
        publication, the engine's next tick: a fraction of a second); ``fresh=False`` returns
        the last reading's figures.
        """
        return json.loads(self._inner.read(fresh))

    @property
    def describe(self) -> str:
        """The meter in one line, e.g. ``daemon /run/anges/meterd.sock (measured: perf)`` or
        ``local (estimated: estimate)``."""
        return self._inner.describe()

    @property
    def source(self) -> str:
        """``daemon`` or ``local``: which meter this process registered with."""
        return "daemon" if self._inner.daemon_job() is not None else "local"

    @property
    def daemon_job(self) -> Optional[int]:
        """The daemon's id of this job (``None`` for the in-process engine)."""
        return self._inner.daemon_job()

    @property
    def measured(self) -> bool:
        """Whether the meter's energy sources are all hardware counters."""
        return self._inner.measured()

    @property
    def carbon(self) -> Dict[str, Any]:
        """The carbon intensity (g/kWh, its source) and the PUE applied."""
        return json.loads(self._inner.carbon())

    def close(self) -> Dict[str, Any]:
        """Unregisters the job and returns the final figures: ``energy_j`` and ``co2_g`` (the
        run's whole charge), ``daemon_job_joules`` and ``daemon_job_grams`` (the daemon's own
        total of the job), ``describe``, ``measured``, ``carbon``, ``hardware``. A second call
        returns the same figures."""
        text = self._inner.close()
        if text is not None:
            self.final = json.loads(text)
        if self.final is None:
            raise AngesError("the meter was closed before any figure")
        return self.final

    def __enter__(self) -> "Meter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Session:
    """A metered, policed, logged run in ``run_dir``: what the callbacks drive.

    ``metric`` names the validation value fed to :meth:`epoch` (``roc-auc``, ``prc-auc``:
    higher is better; ``rmse``, ``mae``: lower is better). The policy's options are those of
    :func:`anges.policies.make` (``policy``, ``variant``, ``alpha``, ``beta``, ``warmup``, …,
    ``patience``, ``min_delta``), the meter's those of :class:`Meter`. ``dataset``, ``model``
    and ``init`` (the starting weights: ``"random"`` or the checkpoint's name) label the run for
    ``anges-train summarize``, which groups runs by them and reports the test value (given to
    :meth:`epoch`) at the best-validation epoch and at the last one. The folder gets
    ``config.json``, ``epochs.jsonl``, ``epochs.csv``, then ``summary.json`` and
    ``emissions.csv`` at :meth:`finish`; one that already holds a run is refused unless
    ``overwrite=True``.
    """

    def __init__(
        self,
        run_dir: "os.PathLike[str] | str",
        metric: str = "roc-auc",
        *,
        overwrite: bool = False,
        job_name: Optional[str] = None,
        estimated: bool = False,
        **options: Any,
    ) -> None:
        self._inner = _anges.Session(
            os.fspath(run_dir), metric, _json(options), _job_name(job_name), overwrite, estimated
        )
        self.summary: Optional[Dict[str, Any]] = None

    def epoch(
        self,
        valid: Optional[float],
        train_loss: Optional[float] = None,
        test: Optional[float] = None,
    ) -> Dict[str, Any]:
        """Reports the epoch that just ended; returns ``epoch``, ``stop`` (``None`` or the
        reason: ``anges``, ``patience``), ``best``, ``best_epoch``, ``anges`` (``p``, ``e``,
        ``delta_perf_pct``, ``delta_emiss_pct``, ``aer``, ``ema``, ``decision``) and ``energy``
        (the meter's reading: ``energy_j``, ``co2_g``, ``cumulative_j``, ``cumulative_g``,
        ``source``, ``measured``, ``fault``)."""
        return json.loads(
            self._inner.epoch(
                None if valid is None else float(valid),
                None if train_loss is None else float(train_loss),
                None if test is None else float(test),
            )
        )

    def finish(self) -> Dict[str, Any]:
        """Ends the run (unregisters the job, writes ``summary.json`` and ``emissions.csv``) and
        returns the summary."""
        self.summary = json.loads(self._inner.finish())
        return self.summary

    @property
    def describe(self) -> Optional[str]:
        """The meter in one line (``None`` unmetered)."""
        return self._inner.describe()

    @property
    def daemon_job(self) -> Optional[int]:
        """The daemon's id of the job (``None`` for the in-process engine)."""
        return self._inner.daemon_job()

    @property
    def run_dir(self) -> str:
        """The run folder."""
        return os.fspath(self._inner.run_dir())


def replay(run_dir: "os.PathLike[str] | str", **options: Any) -> Dict[str, Any]:
    """``anges-train replay RUN_DIR``: replays the policy the options name on the run's
    ``epochs.jsonl`` (lists of ``alpha``, ``beta``, ``warmup`` or ``patience`` make a grid).

    Returns ``metric``, ``epochs`` (logged), ``outcomes`` (one per policy: ``policy``,
    ``stop_epoch``, ``fired``, ``best_epoch``, ``test_metric``, ``co2_g``, ``energy_j``,
    ``delta_perf_pct``, ``delta_emiss_pct``) and ``table`` (the CLI's text table).
    """
    return json.loads(_anges.replay(os.fspath(run_dir), _json(options)))
