//! The README's reverse-proxy recipes, run for real: nginx (TLS at nginx, the
//! client's address passed in a PROXY protocol v1 header) and Caddy (wss:// and
//! https:// at Caddy, plain ws:// and http:// to the relay) in front of the relay
//! binary, on 127.0.0.1.
//!
//! The proxies are the Debian packages `nginx`, `libnginx-mod-stream` and `caddy`
//! (`.ci/run` installs them). A test whose proxy is missing fails, naming the
//! package; it never skips.

#[path = "../common/mod.rs"]
mod common;
#[path = "../wire/mod.rs"]
mod wire;

mod caddy;
mod harness;
mod nginx;
