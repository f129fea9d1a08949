//! `anges._anges`, the native half of the Python package `anges` (PyO3, CPython's stable ABI
//! from 3.9): the `anges-tracking` crate exposed to Python, without libtorch.
//!
//! - [`Meter`]: the meter session of `anges-train --meter auto|daemon|local` for this process;
//! - [`Policy`]: the stopping policies, the same state machines as the trainer's;
//! - [`Session`]: a metered, policed, logged run that the callbacks drive per validation;
//! - [`replay`], [`variants`]: the CLI's replay of a run folder, and the AN-GES presets.
//!
//! Options and results cross the boundary as JSON text: the pure-Python layer
//! (`python/anges/__init__.py`) turns keyword arguments into a JSON object and results back into
//! dicts, so the names and checks are those of [`anges_tracking::options`]. Every error is an
//! `anges.AngesError` carrying the Rust message; nothing here panics on what a user or the OS
//! controls (a poisoned lock is recovered, a finished meter is an error), and PyO3 turns any
//! panic into a Python exception rather than letting it cross the boundary. Blocking readings
//! (up to a few seconds when the daemon is slow) release the interpreter.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use anges_tracking::emissions::{EpochEnergy, EpochMeter, MeterOptions};
use anges_tracking::options::{
    self, ANGES_OPTIONS, LABEL_OPTIONS, METER_OPTIONS, Options, STOP_OPTIONS,
};
use anges_tracking::policy::{self as policies, AngesVariant};
use anges_tracking::replay::{self as replays, ReplayGrid};
use anges_tracking::session::{self, SessionConfig};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

pyo3::create_exception!(
    _anges,
    AngesError,
    PyException,
    "An error of ANGES (a bad option, no meter, an unreadable run folder); the message is the \
     Rust library's."
);

/// A Python exception carrying `e`'s message.
fn err(e: impl std::fmt::Display) -> PyErr {
    AngesError::new_err(e.to_string())
}

/// `value` as JSON text.
fn to_json(value: &impl Serialize) -> PyResult<String> {
    serde_json::to_string(value).map_err(err)
}

/// The options object of `json` (`{}` for an empty string), with only the `known` names.
fn parse_options(json: &str, known: &[&[&str]]) -> PyResult<Options> {
    let options: Options = if json.trim().is_empty() {
        Options::new()
    } else {
        serde_json::from_str(json).map_err(|e| err(format!("options: {e}")))?
    };
    options::check_names(&options, known).map_err(err)?;
    Ok(options)
}

/// The meter's tuning: the defaults, or the estimate at a fixed rate (`estimated`, for tests and
/// CI: the same figures' provenance on any machine).
fn meter_options(estimated: bool) -> MeterOptions {
    if estimated {
        MeterOptions::estimated()
    } else {
        MeterOptions::default()
    }
}

/// `lock`'s guard, even when a thread panicked while holding it.
fn lock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(|e| e.into_inner())
}

/// What [`Meter::read`] returns: the cumulative figures after the last reading.
#[derive(Debug, Serialize)]
struct Reading<'a> {
    /// Energy charged to the job since the meter started, joules.
    energy_j: f64,
    /// CO2-eq since the meter started, grams.
    co2_g: f64,
    /// The last reading's increment, joules.
    delta_j: f64,
    /// The last reading's increment, grams.
    delta_g: f64,
    /// Whether the energy came from hardware counters.
    measured: bool,
    /// `daemon`, `local` or `local-gap`.
    source: String,
    /// A meter fault of the last reading.
    fault: Option<&'a str>,
    /// `energy_j` split by kind of domain (cpu, memory, gpu), when known.
    domains: Option<Domains>,
    /// Readings taken.
    readings: usize,
}

/// Joules by kind of domain.
#[derive(Debug, Serialize)]
struct Domains {
    cpu: f64,
    memory: f64,
    gpu: f64,
}

/// The meter of this process (`anges.Meter` wraps it).
#[pyclass(module = "anges._anges")]
struct Meter {
    inner: Mutex<MeterState>,
}

/// The meter and the readings taken.
struct MeterState {
    meter: Option<EpochMeter>,
    readings: usize,
}

#[pymethods]
impl Meter {
    /// Registers this process with the meter: `options` is a JSON object of the meter's options
    /// (`meter`, `socket`, `region`, `intensity`, `intensity_csv`, `pue`, `meter_config`).
    #[new]
    #[pyo3(signature = (options, job_name, estimated = false))]
    fn new(py: Python<'_>, options: &str, job_name: &str, estimated: bool) -> PyResult<Self> {
        let options = parse_options(options, &[METER_OPTIONS])?;
        let config = options::meter_config(&options).map_err(err)?;
        let tuning = meter_options(estimated);
        let meter = py
            .detach(|| EpochMeter::start_with(&config, job_name, &tuning))
            .map_err(err)?;
        if meter.is_none() {
            return Err(err(
                "meter=\"off\": nothing to read; use auto, daemon or local",
            ));
        }
        Ok(Meter {
            inner: Mutex::new(MeterState { meter, readings: 0 }),
        })
    }

    /// The cumulative figures as JSON: with `fresh`, a new reading that includes the work done
    /// so far (it waits for the daemon's next publication, the in-process engine's next tick);
    /// without, the latest figures already published (no wait; they may miss up to one
    /// publication interval of work, which the next reading includes).
    #[pyo3(signature = (fresh = true))]
    fn read(&self, py: Python<'_>, fresh: bool) -> PyResult<String> {
        let mut state = lock(&self.inner);
        let state = &mut *state;
        let Some(meter) = state.meter.as_mut() else {
            return Err(err("the meter is closed"));
        };
        let reading: EpochEnergy = py.detach(|| meter.read(fresh));
        state.readings += 1;
        let last = &reading;
        let domains = meter.kind_shares().map(|[cpu, memory, gpu]| Domains {
            cpu: cpu * last.cumulative_j,
            memory: memory * last.cumulative_j,
            gpu: gpu * last.cumulative_j,
        });
        to_json(&Reading {
            energy_j: last.cumulative_j,
            co2_g: last.cumulative_g,
            delta_j: last.energy_j,
            delta_g: last.co2_g,
            measured: last.measured,
            source: last.source.to_string(),
            fault: last.fault.as_deref(),
            domains,
            readings: state.readings,
        })
    }

    /// One line: `daemon /run/anges/meterd.sock (measured: perf)` or `local (estimated: …)`.
    fn describe(&self) -> PyResult<String> {
        self.with_meter(|m| Ok(m.describe()))
    }

    /// The daemon's id of this job (`None` for the in-process engine).
    fn daemon_job(&self) -> Option<u64> {
        lock(&self.inner)
            .meter
            .as_ref()
            .and_then(EpochMeter::daemon_job)
    }

    /// Whether the meter's sources are all hardware counters.
    fn measured(&self) -> PyResult<bool> {
        self.with_meter(|m| Ok(m.measured()))
    }

    /// The carbon intensity and PUE applied, as JSON.
    fn carbon(&self) -> PyResult<String> {
        self.with_meter(|m| to_json(m.carbon()))
    }

    /// Ends metering (unregisters the job) and returns the final figures as JSON, with the
    /// daemon's own total of the job; `None` when already closed.
    fn close(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let meter = lock(&self.inner).meter.take();
        match meter {
            None => Ok(None),
            Some(m) => {
                let fin = py.detach(|| m.finish());
                let (energy_j, co2_g) = fin.total();
                let mut value = serde_json::to_value(&fin).map_err(err)?;
                value["energy_j"] = energy_j.into();
                value["co2_g"] = co2_g.into();
                to_json(&value).map(Some)
            }
        }
    }
}

impl Meter {
    /// `f` of the open meter; an error once it is closed.
    fn with_meter<T>(&self, f: impl FnOnce(&EpochMeter) -> PyResult<T>) -> PyResult<T> {
        let state = lock(&self.inner);
        let meter = state
            .meter
            .as_ref()
            .ok_or_else(|| err("the meter is closed"))?;
        f(meter)
    }
}

/// A stopping policy fed `(metric, co2)` per epoch (`anges.policies` wraps it).
#[pyclass(module = "anges._anges")]
struct Policy {
    inner: Mutex<(policies::Policy, usize)>,
    spec: policies::StopSpec,
}

#[pymethods]
impl Policy {
    /// The policy the JSON options name (`policy`, `variant`, `alpha`, `beta`, `warmup`, …,
    /// `patience`, `min_delta`), for a metric where higher is better or not.
    #[new]
    #[pyo3(signature = (options, higher_is_better = true))]
    fn new(options: &str, higher_is_better: bool) -> PyResult<Self> {
        let options = parse_options(options, &[STOP_OPTIONS, ANGES_OPTIONS])?;
        let spec = options::stop_spec(&options).map_err(err)?;
        Ok(Policy {
            inner: Mutex::new((policies::Policy::new(spec, higher_is_better), 0)),
            spec,
        })
    }

    /// Feeds the next epoch: the validation metric (`None`: not computed) and the cumulative
    /// CO2-eq in grams (`None`: unmetered); returns the verdict as JSON.
    #[pyo3(signature = (metric, co2_g))]
    fn observe(&self, metric: Option<f64>, co2_g: Option<f64>) -> PyResult<String> {
        let mut inner = lock(&self.inner);
        let (policy, epochs) = &mut *inner;
        *epochs += 1;
        let v = policy.observe(*epochs, metric, co2_g);
        to_json(&serde_json::json!({
            "epoch": *epochs,
            "stop": v.stop,
            "best": v.new_best,
            "best_epoch": policy.best_epoch(),
            "anges": v.anges,
        }))
    }

    /// The policy with its parameters, as JSON.
    fn spec(&self) -> PyResult<String> {
        to_json(&self.spec)
    }

    /// A short label (`anges(α=0.9 β=0.2 W=5)`).
    fn label(&self) -> String {
        self.spec.label()
    }
}

/// A metered, policed, logged run (`anges.Session` wraps it).
#[pyclass(module = "anges._anges")]
struct Session {
    inner: Mutex<session::Session>,
}

#[pymethods]
impl Session {
    /// Starts a run in `run_dir`: `options` holds the policy's and the meter's options and the
    /// run's labels (`dataset`, `model`, `init`) as JSON,
    /// `metric` names the validation metric (`roc-auc`, `prc-auc`, `rmse`, `mae`).
    #[new]
    #[pyo3(signature = (run_dir, metric, options, job_name, overwrite = false, estimated = false))]
    fn new(
        py: Python<'_>,
        run_dir: PathBuf,
        metric: &str,
        options: &str,
        job_name: String,
        overwrite: bool,
        estimated: bool,
    ) -> PyResult<Self> {
        let options = parse_options(
            options,
            &[STOP_OPTIONS, ANGES_OPTIONS, METER_OPTIONS, LABEL_OPTIONS],
        )?;
        let config = SessionConfig {
            dir: run_dir,
            metric: options::metric(metric).map_err(err)?,
            stop: options::stop_spec(&options).map_err(err)?,
            meter: options::meter_config(&options).map_err(err)?,
            meter_options: meter_options(estimated),
            job_name,
            overwrite,
            labels: options::labels(&options).map_err(err)?,
        };
        let session = py.detach(|| session::Session::start(config)).map_err(err)?;
        Ok(Session {
            inner: Mutex::new(session),
        })
    }

    /// Reports the epoch that just ended (validation value, training loss, test value); reads
    /// the meter, feeds the policy, logs the epoch; returns the outcome as JSON.
    #[pyo3(signature = (valid, train_loss = None, test = None))]
    fn epoch(
        &self,
        py: Python<'_>,
        valid: Option<f64>,
        train_loss: Option<f64>,
        test: Option<f64>,
    ) -> PyResult<String> {
        let mut s = lock(&self.inner);
        let s = &mut *s;
        let out = py
            .detach(|| s.epoch(valid, train_loss, test))
            .map_err(err)?;
        to_json(&out)
    }

    /// Ends the run: unregisters the job, writes `summary.json` and `emissions.csv`; returns the
    /// summary as JSON (the same one on a second call).
    fn finish(&self, py: Python<'_>) -> PyResult<String> {
        let mut s = lock(&self.inner);
        let s = &mut *s;
        let summary = py.detach(|| s.finish()).map_err(err)?;
        to_json(&summary)
    }

    /// The meter in one line (`None` unmetered).
    fn describe(&self) -> Option<String> {
        lock(&self.inner).describe()
    }

    /// The daemon's id of the job (`None` for the in-process engine).
    fn daemon_job(&self) -> Option<u64> {
        lock(&self.inner).daemon_job()
    }

    /// The run folder.
    fn run_dir(&self) -> PathBuf {
        lock(&self.inner).dir().to_owned()
    }
}

/// The values of a listed option.
fn list_of<T: DeserializeOwned>(values: Vec<serde_json::Value>, name: &str) -> PyResult<Vec<T>> {
    serde_json::from_value(serde_json::Value::Array(values))
        .map_err(|e| err(format!("{name}: {e}")))
}

/// `anges-train replay RUN_DIR`: the policies of the options' grid (JSON: `policy`, `variant`
/// and the other knobs, with `alpha`, `beta`, `warmup`, `patience` as lists or numbers) replayed
/// on the run's log; returns `{"metric", "epochs", "outcomes": [...], "table"}` as JSON.
#[pyfunction]
#[pyo3(signature = (run_dir, options))]
fn replay(py: Python<'_>, run_dir: PathBuf, options: &str) -> PyResult<String> {
    let mut options = parse_options(options, &[STOP_OPTIONS, ANGES_OPTIONS])?;
    // Lists of α, β, W and patience make the grid; the single values go to the base policy.
    let mut list = |name: &str| -> PyResult<Vec<serde_json::Value>> {
        match options.get(name) {
            Some(serde_json::Value::Array(values)) => {
                let values = values.clone();
                options.remove(name);
                Ok(values)
            }
            _ => Ok(Vec::new()),
        }
    };
    let (alpha, beta, warmup, patience) = (
        list("alpha")?,
        list("beta")?,
        list("warmup")?,
        list("patience")?,
    );
    let spec = options::stop_spec(&options).map_err(err)?;
    let mut grid = ReplayGrid {
        stop: spec.kind(),
        alpha: list_of(alpha, "alpha")?,
        beta: list_of(beta, "beta")?,
        warmup: list_of(warmup, "warmup")?,
        ..ReplayGrid::default()
    };
    match spec {
        policies::StopSpec::Anges(p) => grid.anges = p,
        policies::StopSpec::Patience {
            patience: base,
            min_delta,
        } => {
            let listed: Vec<usize> = list_of(patience, "patience")?;
            grid.patience = if listed.is_empty() {
                vec![base]
            } else {
                listed
            };
            grid.min_delta = min_delta;
        }
        policies::StopSpec::Full => {}
    }
    let (run, outcomes) = py
        .detach(|| replays::run_replay::<replays::SummaryHead>(&run_dir, &grid))
        .map_err(err)?;
    to_json(&serde_json::json!({
        "metric": run.metric,
        "epochs": run.epochs.len(),
        "outcomes": outcomes,
        "table": replays::format_table(&run, &outcomes),
    }))
}

/// The AN-GES variants with their preset parameters, as JSON (`{"plateau": {...}, …}`), and the
/// default variant's name under `"default"`.
#[pyfunction]
fn variants() -> PyResult<String> {
    let mut map = serde_json::Map::new();
    for v in AngesVariant::ALL {
        map.insert(
            v.name().to_owned(),
            serde_json::to_value(v.preset()).map_err(err)?,
        );
    }
    map.insert(
        "default".into(),
        AngesVariant::DEFAULT.name().to_owned().into(),
    );
    to_json(&map)
}

/// The native module `anges._anges`.
#[pymodule]
fn _anges(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Meter>()?;
    m.add_class::<Policy>()?;
    m.add_class::<Session>()?;
    m.add_function(wrap_pyfunction!(replay, m)?)?;
    m.add_function(wrap_pyfunction!(variants, m)?)?;
    m.add("AngesError", m.py().get_type::<AngesError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
