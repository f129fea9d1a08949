//! Who may do what: the caller's credentials ([`Peer`], from `SO_PEERCRED` on the socket or from
//! the bus daemon on D-Bus) and the rules of [`AccessPolicy`].
//!
//! - A client may register only a PID it owns, i.e. whose `/proc/<pid>` belongs to its uid, and
//!   only a cgroup directory it owns (a delegated cgroup); root may register anything. A PID
//!   that is not the caller's gets the same answer whether or not it exists (`hidepid`).
//! - A job is visible and removable only by its owner, root, and members of the daemon's admin
//!   group.
//!
//! Every path is resolved under a configurable root so that tests can use a fixture tree.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use anges_common::protocol::{ErrorKind, ProtoError};

/// The credentials of a connected client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Effective uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Process id, when the kernel (or bus) reports one.
    pub pid: Option<u32>,
    /// Supplementary groups (read from `/proc/<pid>/status` or given by the bus).
    pub groups: Vec<u32>,
}

/// The rules, and where to look things up.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    root: PathBuf,
    admin_gid: Option<u32>,
}

/// Where cgroup v2 is mounted, below the policy's root.
const CGROUP_MOUNT: &str = "sys/fs/cgroup";

impl AccessPolicy {
    /// Rules that look up `/proc` and `/sys/fs/cgroup` under `root` (use `/`), with an optional
    /// admin group whose members see every job.
    pub fn new(root: impl Into<PathBuf>, admin_gid: Option<u32>) -> Self {
        AccessPolicy {
            root: root.into(),
            admin_gid,
        }
    }

    /// Reads a peer's supplementary groups from `/proc/<pid>/status` (empty when unreadable).
    pub fn groups_of(&self, pid: u32) -> Vec<u32> {
        let path = self.root.join(format!("proc/{pid}/status"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Vec::new();
        };
        text.lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .map(|g| {
                g.split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `true` for root and members of the admin group.
    pub fn is_admin(&self, peer: &Peer) -> bool {
        peer.uid == 0
            || self
                .admin_gid
                .is_some_and(|g| peer.gid == g || peer.groups.contains(&g))
    }

    /// May `peer` see and remove a job owned by `owner_uid`?
    pub fn can_see(&self, peer: &Peer, owner_uid: u32) -> bool {
        peer.uid == owner_uid || self.is_admin(peer)
    }

    /// Checks that `peer` may register process `pid`.
    ///
    /// A non-root caller gets one answer for a PID that does not exist and for a PID of another
    /// uid (`PermissionDenied`, same message, no owner named): the daemon sees every process,
    /// and telling the two apart would reveal processes that `hidepid` hides from the caller,
    /// and their owners. Root, who sees everything anyway, gets `NoSuchTarget` for a missing PID.
    pub fn check_pid(&self, peer: &Peer, pid: u32) -> Result<(), ProtoError> {
        if pid == 0 {
            return Err(ProtoError::new(
                ErrorKind::InvalidRequest,
                "PID 0 is not a process",
            ));
        }
        let path = self.root.join(format!("proc/{pid}"));
        let owner = std::fs::metadata(&path).ok().map(|m| m.uid());
        match owner {
            _ if peer.uid == 0 && owner.is_some() => Ok(()),
            None if peer.uid == 0 => Err(ProtoError::new(
                ErrorKind::NoSuchTarget,
                format!("no process with PID {pid}"),
            )),
            Some(owner) if owner == peer.uid => Ok(()),
            _ => Err(ProtoError::new(
                ErrorKind::PermissionDenied,
                format!(
                    "PID {pid} is not a process of uid {} (it does not exist or belongs to another user)",
                    peer.uid
                ),
            )),
        }
    }

    /// Resolves a cgroup path relative to the cgroup root and checks that `peer` owns it.
    pub fn check_cgroup(&self, peer: &Peer, rel: &str) -> Result<PathBuf, ProtoError> {
        let rel_path = Path::new(rel.trim_start_matches('/'));
        if rel_path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(ProtoError::new(
                ErrorKind::InvalidRequest,
                "a cgroup path may not contain '.' or '..'",
            ));
        }
        let path = self.root.join(CGROUP_MOUNT).join(rel_path);
        let meta = std::fs::metadata(&path)
            .map_err(|_| ProtoError::new(ErrorKind::NoSuchTarget, format!("no cgroup {rel}")))?;
        if !meta.is_dir() {
            return Err(ProtoError::new(
                ErrorKind::NoSuchTarget,
                format!("{rel} is not a cgroup"),
            ));
        }
        self.check_owner(peer, meta.uid(), &format!("cgroup {rel}"))?;
        Ok(Path::new("/").join(CGROUP_MOUNT).join(rel_path))
    }

    fn check_owner(&self, peer: &Peer, owner: u32, what: &str) -> Result<(), ProtoError> {
        if peer.uid == 0 || peer.uid == owner {
            Ok(())
        } else {
            Err(ProtoError::new(
                ErrorKind::PermissionDenied,
                format!("{what} belongs to uid {owner}, not to uid {}", peer.uid),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: Vec<u32>) -> Peer {
        Peer {
            uid,
            gid,
            pid: None,
            groups,
        }
    }

    /// A fixture root whose `/proc/<pid>` directories are owned by the test's own uid.
    fn fixture() -> (tempfile::TempDir, u32) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/4242")).unwrap();
        std::fs::write(
            dir.path().join("proc/4242/status"),
            "Name:\tx\nGroups:\t10 27 1000 \n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("sys/fs/cgroup/user.slice/job.scope")).unwrap();
        let uid = std::fs::metadata(dir.path().join("proc/4242"))
            .unwrap()
            .uid();
        (dir, uid)
    }

    #[test]
    fn owner_may_register_own_pid_others_may_not() {
        let (dir, owner) = fixture();
        let policy = AccessPolicy::new(dir.path(), None);
        assert!(policy.check_pid(&peer(owner, owner, vec![]), 4242).is_ok());
        let other = owner.wrapping_add(1).max(1);
        let err = policy
            .check_pid(&peer(other, other, vec![]), 4242)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::PermissionDenied);
        assert!(policy.check_pid(&peer(0, 0, vec![]), 4242).is_ok());
        let err = policy.check_pid(&peer(0, 0, vec![]), 999_999).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NoSuchTarget);
    }

    #[test]
    fn a_missing_pid_and_another_users_pid_look_alike() {
        let (dir, owner) = fixture();
        let policy = AccessPolicy::new(dir.path(), None);
        let other = owner.wrapping_add(1).max(1);
        let theirs = policy
            .check_pid(&peer(other, other, vec![]), 4242)
            .unwrap_err();
        let missing = policy
            .check_pid(&peer(other, other, vec![]), 999_999)
            .unwrap_err();
        assert_eq!(theirs.kind, missing.kind);
        assert_eq!(
            theirs.message.replace("4242", "N"),
            missing.message.replace("999999", "N")
        );
        let err = policy
            .check_pid(&peer(owner, owner, vec![]), 0)
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
    }

    #[test]
    fn cgroup_paths_are_confined_and_owned() {
        let (dir, owner) = fixture();
        let policy = AccessPolicy::new(dir.path(), None);
        let p = policy
            .check_cgroup(&peer(owner, owner, vec![]), "/user.slice/job.scope")
            .unwrap();
        assert_eq!(p, Path::new("/sys/fs/cgroup/user.slice/job.scope"));
        let err = policy
            .check_cgroup(&peer(owner, owner, vec![]), "user.slice/../..")
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        let other = owner.wrapping_add(1).max(1);
        let err = policy
            .check_cgroup(&peer(other, other, vec![]), "user.slice/job.scope")
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::PermissionDenied);
    }

    #[test]
    fn visibility_owner_root_admin_group() {
        let (dir, _) = fixture();
        let policy = AccessPolicy::new(dir.path(), Some(27));
        assert_eq!(policy.groups_of(4242), vec![10, 27, 1000]);
        assert!(policy.can_see(&peer(1000, 1000, vec![]), 1000));
        assert!(!policy.can_see(&peer(1001, 1001, vec![]), 1000));
        assert!(policy.can_see(&peer(0, 0, vec![]), 1000));
        assert!(policy.can_see(&peer(1001, 1001, vec![27]), 1000));
        assert!(policy.can_see(&peer(1001, 27, vec![]), 1000));
        let no_admin = AccessPolicy::new(dir.path(), None);
        assert!(!no_admin.can_see(&peer(1001, 1001, vec![27]), 1000));
    }
}
