//! Starting the relay under test (release binary, fresh data directory, limits
//! lifted so they do not interfere, with `--tls` a throwaway certificate),
//! learning its port from its log, reading its VmRSS, and stopping it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Relay {
    child: Child,
    data_dir: PathBuf,
    pub address: SocketAddr,
    /// With TLS, the DER of its self-signed certificate (the one the client trusts).
    pub certificate: Option<Vec<u8>>,
    /// The last lines the relay logged, shown if it dies.
    log_tail: Arc<Mutex<Vec<String>>>,
}

/// How long the relay may take to log its listening address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_TAIL_LINES: usize = 40;

/// The relay binary: `--relay-bin`, else the one cargo built next to this bench
/// (`target/release/vauchi-relay` under the bench profile).
pub fn default_binary() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_vauchi-relay") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/vauchi-relay"),
    }
}

impl Relay {
    pub fn start(
        binary: &PathBuf,
        backend: &str,
        shards: usize,
        extra_env: &[(String, String)],
        tls: bool,
    ) -> Result<Self, String> {
        let data_dir = std::env::temp_dir().join(format!(
            "vauchi-loadgen-{}-{}",
            std::process::id(),
            crate::common::stamp_of(std::time::Instant::now())
        ));
        std::fs::create_dir_all(&data_dir)
            .map_err(|error| format!("cannot create {}: {error}", data_dir.display()))?;
        let mut command = Command::new(binary);
        command
            .env("RELAY_LISTEN_ADDR", "127.0.0.1:0")
            .env("RELAY_METRICS_ADDR", "127.0.0.1:0")
            .env("RELAY_DATA_DIR", &data_dir)
            .env("RELAY_SHARDS", shards.to_string())
            .env("RELAY_STORAGE_BACKEND", backend)
            .env("RELAY_RATE_LIMIT", "1000000")
            .env("RELAY_MAX_BLOBS_PER_USER", "0")
            .env("RELAY_MAX_STORAGE_PER_USER", "0")
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in extra_env {
            command.env(name, value);
        }
        // The relay ignores files in its data directory that are not its own.
        let certificate = if tls {
            let (cert, key, der) = crate::tls::self_signed(&data_dir)?;
            command
                .env("RELAY_TLS_CERT_FILE", cert)
                .env("RELAY_TLS_KEY_FILE", key);
            Some(der)
        } else {
            None
        };
        let mut child = command
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log_tail = Arc::new(Mutex::new(Vec::new()));
        let (found, address_rx) = mpsc::channel();
        let tail = Arc::clone(&log_tail);
        // Keep draining stderr for the relay's whole life so it never blocks on a
        // full pipe; remember the tail for error messages.
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = listening_address(&line)
                    && let Some(found) = found.take()
                {
                    let _ = found.send(address);
                }
                let mut tail = tail.lock().expect("log tail lock");
                if tail.len() == LOG_TAIL_LINES {
                    tail.remove(0);
                }
                tail.push(line);
            }
        });
        let mut relay = Self {
            child,
            data_dir,
            address: "0.0.0.0:0".parse().expect("literal"),
            certificate,
            log_tail,
        };
        match address_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(address) => {
                relay.address = address;
                Ok(relay)
            }
            Err(_) => Err(format!(
                "relay did not report `listening on`; its log:\n{}",
                relay.log_tail()
            )),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_tail(&self) -> String {
        self.log_tail.lock().expect("log tail lock").join("\n")
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // SIGTERM first (graceful shutdown), then SIGKILL if it lingers.
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        for _ in 0..50 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Parses `... listening on 127.0.0.1:PORT ...` from one log line.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// VmRSS of `pid` in KiB, from /proc/<pid>/status.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) of `pid`, from /proc/<pid>/stat.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of them, in clock ticks.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / per_second))
}

pub fn self_test() {
    assert_eq!(
        listening_address("2026-01-01T00:00:00Z  INFO vauchi_relay: listening on 127.0.0.1:41234"),
        Some("127.0.0.1:41234".parse().expect("literal"))
    );
    assert_eq!(
        listening_address("listening on [::1]:80 now"),
        Some("[::1]:80".parse().expect("literal"))
    );
    assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    assert!(cpu_time(std::process::id()).is_some());
}
