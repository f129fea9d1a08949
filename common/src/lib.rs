//! `anges-common`: what the meter daemon and its clients agree on.
//!
//! - [`paths`]: where the meter's socket lives and the order in which clients look for it;
//! - [`protocol`]: the messages exchanged over that socket;
//! - [`codec`]: their framing (length-delimited `postcard`, bounded frames);
//! - [`client`]: the blocking and async client libraries (timeouts, reconnection, re-attachment);
//! - [`codecarbon`]: the CodeCarbon-compatible `emissions.csv` that the trainer and `anges-meter`
//!   write.

pub mod client;
pub mod codec;
pub mod codecarbon;
pub mod paths;
pub mod protocol;
pub mod time;

/// Version of the meter's wire protocol, exchanged in the opening handshake.
pub const PROTOCOL_VERSION: u32 = 1;
