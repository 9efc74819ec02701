//! vauchi-relay: parse the configuration, start the shards, wait for them.

use std::process::ExitCode;

use vauchi_relay::config::Config;

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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let loaded = match Config::from_vars(std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    })) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("vauchi-relay: {error}");
            return ExitCode::from(1);
        }
    };
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    for warning in loaded.config.startup_warnings() {
        tracing::warn!("{warning}");
    }
    match vauchi_relay::relay::start(loaded.config) {
        Ok((running, _lock)) => {
            tracing::info!("listening on {}", running.local_addr);
            running.join();
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("vauchi-relay: {message}");
            ExitCode::from(1)
        }
    }
}
