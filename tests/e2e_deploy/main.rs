//! The README's reverse-proxy recipes, run for real: Caddy (wss:// and https:// at
//! Caddy, plain ws:// and http:// to the relay) in front of the relay binary, on
//! 127.0.0.1.
//!
//! The proxy is the Debian package `caddy` (`.ci/run` installs it). A test whose
//! proxy is missing fails, naming the package; it never skips.

#[path = "../common/mod.rs"]
mod common;
#[path = "../wire/mod.rs"]
mod wire;

mod caddy;
mod harness;
