//! vauchi-relay: parse the configuration, start the shards, wait for them.

use std::process::ExitCode;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use vauchi_relay::config::Config;
use vauchi_relay::relay::Running;
use vauchi_relay::signals::{self, Signal};
use vauchi_relay::system;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", vauchi_relay::config::help_text());
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("vauchi-relay {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    init_logging();
    match configure() {
        Ok(config) => serve(config),
        Err(message) => fail(&message),
    }
}

/// Prints why the relay cannot go on and gives the failure status.
fn fail(message: &str) -> ExitCode {
    eprintln!("vauchi-relay: {message}");
    ExitCode::from(1)
}

/// Logs to stderr at the level `RUST_LOG` asks for (`info` by default).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The WebSocket library logs whole frames (payloads, routing ids) at debug and
    // trace: whatever RUST_LOG says, only its warnings pass (§14.2).
    let private = tracing_subscriber::filter::filter_fn(|meta| {
        let target = meta.target();
        let frames = target.starts_with("tungstenite") || target.starts_with("async_tungstenite");
        !frames || *meta.level() <= tracing::Level::WARN
    });
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .with_filter(filter)
                .with_filter(private),
        )
        .init();
}

/// The configuration, its warnings logged, once the kernel and the process limits
/// are known to let the shards run; the shutdown signals are blocked on return.
fn configure() -> Result<Config, String> {
    let loaded = Config::from_vars(std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    }))
    .map_err(|error| error.to_string())?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    for warning in loaded.config.startup_warnings() {
        tracing::warn!("{warning}");
    }
    // Fail fast, saying what to change, when the kernel cannot run the shards.
    for check in [system::check_io_uring(), system::check_memlock()] {
        check?;
    }
    if let Some(warning) = system::raise_open_files(loaded.config.max_connections) {
        tracing::warn!("{warning}");
    }
    // Before any thread starts, so that every thread inherits the mask and only
    // the signal thread receives SIGTERM and SIGINT (§14.1).
    signals::block_shutdown_signals()
        .map_err(|error| format!("cannot block shutdown signals: {error}"))?;
    Ok(loaded.config)
}

/// Starts the relay and runs it until a signal; then drains, bounded by
/// RELAY_FEDERATION_DRAIN_TIMEOUT (§14.1).
fn serve(config: Config) -> ExitCode {
    let drain_timeout = Duration::from_secs(config.federation_drain_timeout_secs);
    let (mut running, _lock) = match vauchi_relay::relay::start(config) {
        Ok(started) => started,
        Err(message) => return fail(&message),
    };
    tracing::info!("listening on {}", running.local_addr);
    let (events, received) = mpsc::channel();
    if let Err(error) = signals::forward_shutdown_signals(events.clone(), Event::Signal) {
        return fail(&format!("cannot start the signal thread: {error}"));
    }
    let Some(finished) = running.take_finished() else {
        return ExitCode::from(1);
    };
    std::thread::spawn(move || {
        finished.wait();
        let _ = events.send(Event::Stopped);
    });
    match next(&received, &running, None) {
        Ok(Event::Signal(_)) => {}
        Ok(Event::Stopped) | Err(_) => {
            tracing::error!("the shards stopped unexpectedly");
            return ExitCode::from(1);
        }
    }
    tracing::info!("shutting down: draining sessions");
    running.shutdown();
    let deadline = Instant::now() + drain_timeout;
    match next(&received, &running, Some(deadline)) {
        Ok(Event::Stopped) => tracing::info!("shutdown complete"),
        Ok(Event::Signal(_)) => tracing::warn!("second signal: exiting at once"),
        // Committed data is intact; what is still queued is dropped (§14.1).
        Err(_) => tracing::warn!("drain timeout reached: exiting"),
    }
    ExitCode::SUCCESS
}

/// What the main thread waits for.
enum Event {
    Signal(Signal),
    Stopped,
}

/// The next shutdown signal or the end of the executors (before `deadline`, if
/// given); SIGHUPs on the way reload the certificates (§2.8).
fn next(
    received: &mpsc::Receiver<Event>,
    running: &Running,
    deadline: Option<Instant>,
) -> Result<Event, mpsc::RecvTimeoutError> {
    loop {
        let event = match deadline {
            None => received
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected)?,
            Some(at) => received.recv_timeout(at.saturating_duration_since(Instant::now()))?,
        };
        match event {
            Event::Signal(Signal::Reload) => running.reload(),
            other => return Ok(other),
        }
    }
}
