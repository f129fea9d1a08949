//! `anges-common`: what the meter daemon and its clients agree on.
//!
//! Today this crate owns the socket locations ([`paths`]); the wire protocol and the blocking and
//! async client libraries join it with the meter's serving issue (see `docs/architecture.md`).

pub mod paths;

/// Version of the meter's wire protocol, exchanged in the opening handshake.
pub const PROTOCOL_VERSION: u32 = 1;
