//! Where the meter's socket lives, and the order in which clients look for it.
//!
//! A client tries, in order: an explicit path (`--socket` or `ANGES_METER_SOCKET`), the system
//! daemon's socket, then the user-mode daemon's socket under `$XDG_RUNTIME_DIR`. Each candidate
//! carries the reason it was chosen so that clients can say which one they used. The daemon's
//! configuration files live here too, since the trainer reads their `[carbon]` section.
//!
//! The daemon and the clients read `ANGES_METER_SOCKET` through the same function,
//! [`socket_from_env`]: an empty value counts as unset for both.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Socket of the system daemon (`systemctl start anges-meterd`).
pub const SYSTEM_SOCKET: &str = "/run/anges/meterd.sock";

/// The system daemon's configuration file (its `[carbon]` section is also the trainer's default).
pub const SYSTEM_CONFIG: &str = "/etc/anges/meterd.toml";

/// The user-mode configuration file for a given configuration folder (`$XDG_CONFIG_HOME`):
/// `<config_dir>/anges/meterd.toml`.
pub fn user_config(config_dir: &Path) -> PathBuf {
    config_dir.join("anges").join("meterd.toml")
}

/// Environment variable that names a socket explicitly.
pub const SOCKET_ENV: &str = "ANGES_METER_SOCKET";

/// Why a socket path is a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketOrigin {
    /// Given on the command line (`--socket`).
    Flag,
    /// Given by the `ANGES_METER_SOCKET` environment variable.
    Env,
    /// The system daemon's well-known path.
    System,
    /// The user-mode daemon's path under `$XDG_RUNTIME_DIR`.
    User,
}

impl std::fmt::Display for SocketOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SocketOrigin::Flag => "--socket",
            SocketOrigin::Env => SOCKET_ENV,
            SocketOrigin::System => "system daemon",
            SocketOrigin::User => "user daemon",
        })
    }
}

/// One place a client may find the meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketCandidate {
    /// Filesystem path of the socket.
    pub path: PathBuf,
    /// Why this path is tried.
    pub origin: SocketOrigin,
}

/// The user-mode socket for a given runtime directory: `$XDG_RUNTIME_DIR/anges/meterd.sock`.
pub fn user_socket(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("anges").join("meterd.sock")
}

/// The user-mode socket from the process environment, if `$XDG_RUNTIME_DIR` is set and absolute.
pub fn user_socket_from_env() -> Option<PathBuf> {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")?;
    let dir = PathBuf::from(dir);
    dir.is_absolute().then(|| user_socket(&dir))
}

/// The socket named by a value of `ANGES_METER_SOCKET`: `None` when unset or empty (an empty
/// assignment, `ANGES_METER_SOCKET= cmd`, is how a shell unsets a variable for one command).
pub fn socket_from_env_value(value: Option<OsString>) -> Option<PathBuf> {
    value.filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The socket named by `ANGES_METER_SOCKET` in the process environment (see
/// [`socket_from_env_value`]); used by the daemon and by every client.
pub fn socket_from_env() -> Option<PathBuf> {
    socket_from_env_value(std::env::var_os(SOCKET_ENV))
}

/// The candidates in the order clients try them.
///
/// An explicit path (flag first, then environment) is the only candidate when given: a user who
/// names a socket must not silently get another one.
pub fn socket_candidates(
    flag: Option<&Path>,
    env: Option<&Path>,
    user_socket: Option<&Path>,
) -> Vec<SocketCandidate> {
    if let Some(path) = flag {
        return vec![SocketCandidate {
            path: path.to_owned(),
            origin: SocketOrigin::Flag,
        }];
    }
    if let Some(path) = env {
        return vec![SocketCandidate {
            path: path.to_owned(),
            origin: SocketOrigin::Env,
        }];
    }
    let mut out = vec![SocketCandidate {
        path: PathBuf::from(SYSTEM_SOCKET),
        origin: SocketOrigin::System,
    }];
    if let Some(path) = user_socket {
        out.push(SocketCandidate {
            path: path.to_owned(),
            origin: SocketOrigin::User,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_flag_wins_and_is_alone() {
        let c = socket_candidates(
            Some(Path::new("/tmp/a.sock")),
            Some(Path::new("/tmp/b.sock")),
            Some(Path::new("/run/user/1000/anges/meterd.sock")),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].path, Path::new("/tmp/a.sock"));
        assert_eq!(c[0].origin, SocketOrigin::Flag);
    }

    #[test]
    fn env_comes_before_system() {
        let c = socket_candidates(None, Some(Path::new("/tmp/b.sock")), None);
        assert_eq!(
            c,
            vec![SocketCandidate {
                path: "/tmp/b.sock".into(),
                origin: SocketOrigin::Env
            }]
        );
    }

    #[test]
    fn an_empty_env_value_is_unset() {
        assert_eq!(socket_from_env_value(None), None);
        assert_eq!(socket_from_env_value(Some(OsString::new())), None);
        assert_eq!(
            socket_from_env_value(Some("/tmp/b.sock".into())),
            Some(PathBuf::from("/tmp/b.sock"))
        );
    }

    #[test]
    fn system_then_user() {
        let user = user_socket(Path::new("/run/user/1000"));
        assert_eq!(user, Path::new("/run/user/1000/anges/meterd.sock"));
        let c = socket_candidates(None, None, Some(&user));
        let origins: Vec<_> = c.iter().map(|c| c.origin).collect();
        assert_eq!(origins, [SocketOrigin::System, SocketOrigin::User]);
        assert_eq!(c[0].path, Path::new(SYSTEM_SOCKET));
    }
}
