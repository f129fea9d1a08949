//! Termination signals for the daemon: SIGTERM and SIGINT are blocked in every thread (call
//! [`TerminationSignals::block`] before spawning any) and received synchronously with `sigwait`,
//! so shutdown runs in ordinary code (persist, join) rather than in a signal handler.

use std::io;

/// The blocked set of termination signals.
#[derive(Debug)]
pub struct TerminationSignals {
    set: libc::sigset_t,
}

impl TerminationSignals {
    /// Blocks SIGTERM and SIGINT in the calling thread (inherited by threads it spawns later).
    pub fn block() -> io::Result<Self> {
        // SAFETY: sigset_t is plain data initialised by sigemptyset before use; the pointers are
        // to locals that outlive the calls.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(TerminationSignals { set })
        }
    }

    /// Waits for SIGTERM or SIGINT and returns its name.
    pub fn wait(&self) -> io::Result<&'static str> {
        let mut sig: libc::c_int = 0;
        // SAFETY: `self.set` was initialised in `block`; `sig` is a valid out-pointer.
        let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(if sig == libc::SIGTERM {
            "SIGTERM"
        } else {
            "SIGINT"
        })
    }
}
