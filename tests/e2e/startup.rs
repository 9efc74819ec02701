//! Process-level behaviour at startup: `--help` and `--version`, invalid
//! configuration (§13.1), and failing fast with a useful message when the memlock
//! limit is too low for glommio (issue: startup fails fast and clearly).

use std::process::Command;

use crate::common::TempDir;

fn relay() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vauchi-relay"));
    command
        .env_clear()
        .env("RELAY_LISTEN_ADDR", "127.0.0.1:0")
        .env("RELAY_METRICS_ADDR", "127.0.0.1:0");
    command
}

#[test]
fn help_lists_every_variable_with_its_default() {
    let output = relay().arg("--help").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for variable in [
        "RELAY_LISTEN_ADDR",
        "RELAY_SHARDS",
        "RELAY_SQLITE_SYNCHRONOUS",
        "RELAY_FEDERATION_PEER_TIMEOUT",
        "RUST_LOG",
    ] {
        assert!(text.contains(variable), "{variable} missing from --help");
    }
    assert!(text.contains("0.0.0.0:8080"), "defaults are shown");
    let version = relay().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(version.stdout).unwrap().trim(),
        format!("vauchi-relay {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_invalid_value_exits_1_naming_the_variable_and_value() {
    let dir = TempDir::new("badconfig");
    let output = relay()
        .env("RELAY_DATA_DIR", dir.path())
        .env("RELAY_RATE_LIMIT", "abc")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains(r#"RELAY_RATE_LIMIT="abc""#), "{stderr}");
}

#[test]
fn a_memlock_limit_too_low_for_glommio_stops_startup_with_advice() {
    let dir = TempDir::new("memlock");
    let binary = env!("CARGO_BIN_EXE_vauchi-relay");
    // `ulimit -l` lowers the soft and hard limits, so the relay cannot raise them.
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -l 256 && exec {binary}"))
        .env_clear()
        .env("RELAY_LISTEN_ADDR", "127.0.0.1:0")
        .env("RELAY_METRICS_ADDR", "127.0.0.1:0")
        .env("RELAY_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("memlock") && stderr.contains("LimitMEMLOCK"),
        "{stderr}"
    );
}
