//! SIGTERM and SIGINT for graceful shutdown (§14.1), SIGHUP for reloading the TLS
//! certificates (§2.8). The signals are blocked in every thread before any is
//! started (threads inherit the mask), and one thread receives them with
//! `sigwait`, so no handler ever runs in async-signal context.

use std::sync::mpsc::Sender;

/// What a received signal asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT.
    Shutdown,
    /// SIGHUP.
    Reload,
}

/// The signals the relay receives on its signal thread.
fn handled() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise the local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and every thread it
/// starts.
pub fn block_shutdown_signals() -> std::io::Result<()> {
    let set = handled();
    // SAFETY: pthread_sigmask only reads the set. No memory is shared with a
    // signal handler.
    unsafe {
        let result = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if result != 0 {
            return Err(std::io::Error::from_raw_os_error(result));
        }
    }
    Ok(())
}

/// Starts a thread that sends `event()` on `events` for each SIGTERM, SIGINT or
/// SIGHUP.
pub fn forward_shutdown_signals<T: Send + 'static>(
    events: Sender<T>,
    event: impl Fn(Signal) -> T + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let mut signal: libc::c_int = 0;
                let set = handled();
                // SAFETY: sigwait reads the set and writes the received signal
                // into `signal`.
                if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                    continue;
                }
                let received = if signal == libc::SIGHUP {
                    Signal::Reload
                } else {
                    Signal::Shutdown
                };
                if events.send(event(received)).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}
