//! Command-line interface of `anges-meterd`.
//!
//! Every flag may also come from the configuration file (`/etc/anges/meterd.toml` by default);
//! flags win over the file.

use std::path::PathBuf;

use clap::Parser;

pub use anges_meter_engine::attribution::IdlePolicy;
pub use anges_meter_engine::sensors::SensorChoice;

/// ANGES energy and CO2 meter.
///
/// Samples CPU energy (RAPL via perf_event, else powercap, else an estimate) and GPU energy
/// (NVML) at high frequency, converts it to CO2-eq with a grid carbon intensity, attributes it to
/// the registered jobs, and publishes cumulative figures to unprivileged clients over a local
/// socket and D-Bus. Run it as a system service (`systemctl start anges-meterd`) or, for a
/// developer, with `--user`.
#[derive(Debug, Clone, Parser)]
#[command(name = "anges-meterd", version, about, long_about)]
pub struct Cli {
    /// Configuration file (TOML). Flags override its values. Default /etc/anges/meterd.toml, or
    /// $XDG_CONFIG_HOME/anges/meterd.toml with --user (a missing default file means defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Unprivileged developer mode: socket under $XDG_RUNTIME_DIR/anges, state under
    /// $XDG_STATE_HOME/anges, session D-Bus instead of the system bus.
    #[arg(long)]
    pub user: bool,

    /// Socket path (default: $ANGES_METER_SOCKET when set and not empty, else
    /// /run/anges/meterd.sock, or $XDG_RUNTIME_DIR/anges/meterd.sock with --user).
    // Not `env = "ANGES_METER_SOCKET"`: clap would take an empty value as a (refused) path, while
    // the clients take it as unset. `Cli::socket_path` reads it like the clients do.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// CPU energy source [default: auto].
    #[arg(long, value_enum)]
    pub sensor: Option<SensorChoice>,

    /// Root of the sysfs/procfs tree the sensors read (for fixture trees in tests) [default: /].
    #[arg(long, value_name = "DIR")]
    pub sysfs_root: Option<PathBuf>,

    /// Sampling rate of the energy counters, in Hz (1..=1000) [default: 100].
    #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rate_hz: Option<u32>,

    /// Rate of accounting ticks (job attribution and published totals), in Hz [default: 10].
    #[arg(long, value_name = "HZ")]
    pub attribution_hz: Option<f64>,

    /// Who pays for idle power: `busy` (share of busy CPU time) or `capacity` (share of all CPU
    /// capacity; idle stays unattributed) [default: busy].
    #[arg(long, value_enum)]
    pub idle_policy: Option<IdlePolicy>,

    /// Minimum interval between readings published to unprivileged clients, in milliseconds:
    /// at least 100 in system mode, to blunt the RAPL power side channel (CVE-2020-8694); a
    /// --user daemon accepts down to 1, with a warning [default: 100].
    #[arg(long, value_name = "MS")]
    pub publish_interval_ms: Option<u64>,

    /// GPUs to meter, as NVML indices ("0,2"), like CUDA_VISIBLE_DEVICES. Default: all.
    #[arg(long, value_name = "LIST")]
    pub gpus: Option<String>,

    /// Constant grid carbon intensity, gCO2eq/kWh.
    #[arg(long, value_name = "G_PER_KWH", conflicts_with_all = ["region", "intensity_csv"])]
    pub intensity: Option<f64>,

    /// Grid carbon intensity from the built-in table of country figures (ISO 3166 code, e.g. FR).
    #[arg(long, value_name = "CODE", conflicts_with = "intensity_csv")]
    pub region: Option<String>,

    /// Grid carbon intensity as a time series CSV (`timestamp,g_per_kwh`).
    #[arg(long, value_name = "FILE")]
    pub intensity_csv: Option<PathBuf>,

    /// Power usage effectiveness of the facility (≥ 1) [default: 1].
    #[arg(long, value_name = "PUE")]
    pub pue: Option<f64>,

    /// Directory where cumulative totals are persisted across restarts (default
    /// /var/lib/anges, or $XDG_STATE_HOME/anges with --user).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Serve Prometheus/OpenMetrics on this loopback address (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Also serve per-job series on the metrics endpoint: every user's job names, uids and ids,
    /// to anyone who can reach the port.
    #[arg(long)]
    pub metrics_per_job: bool,

    /// Do not publish the D-Bus interface.
    #[arg(long)]
    pub no_dbus: bool,

    /// Log filter (tracing EnvFilter syntax), e.g. "info" or "anges_meterd=debug".
    #[arg(long, value_name = "FILTER", env = "ANGES_LOG", default_value = "info")]
    pub log: String,
}

impl Cli {
    /// The socket asked for: `--socket`, else `ANGES_METER_SOCKET` read as the clients read it
    /// ([`anges_common::paths::socket_from_env`]: empty means unset).
    pub fn socket_path(&self) -> Option<PathBuf> {
        self.socket
            .clone()
            .or_else(anges_common::paths::socket_from_env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rate_is_bounded() {
        assert!(Cli::try_parse_from(["anges-meterd", "--rate-hz", "1000"]).is_ok());
        assert!(Cli::try_parse_from(["anges-meterd", "--rate-hz", "1001"]).is_err());
        assert!(Cli::try_parse_from(["anges-meterd", "--rate-hz", "0"]).is_err());
    }

    #[test]
    fn the_socket_variable_is_not_read_by_clap() {
        // clap would turn `ANGES_METER_SOCKET=` into an error (or a path ""); the variable is
        // read by `Cli::socket_path` through the clients' function instead.
        let cmd = Cli::command();
        let socket = cmd
            .get_arguments()
            .find(|a| a.get_id() == "socket")
            .expect("--socket");
        assert_eq!(socket.get_env(), None);
        let cli = Cli::try_parse_from(["anges-meterd", "--socket", "/tmp/x.sock"]).unwrap();
        assert_eq!(cli.socket_path(), Some(PathBuf::from("/tmp/x.sock")));
    }

    #[test]
    fn intensity_sources_are_exclusive() {
        let r = Cli::try_parse_from(["anges-meterd", "--intensity", "50", "--region", "FR"]);
        assert!(r.is_err());
    }
}
