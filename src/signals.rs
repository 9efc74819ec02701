//! SIGTERM and SIGINT for graceful shutdown (§14.1). The signals are blocked in
//! every thread before any is started (threads inherit the mask), and one thread
//! receives them with `sigwait`, so no handler ever runs in async-signal context.

use std::sync::mpsc::Sender;

/// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts.
pub fn block_shutdown_signals() -> std::io::Result<()> {
    // SAFETY: sigemptyset/sigaddset initialise the local set; pthread_sigmask only
    // reads it. No memory is shared with a signal handler.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        let result = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if result != 0 {
            return Err(std::io::Error::from_raw_os_error(result));
        }
    }
    Ok(())
}

/// Starts a thread that sends `event()` on `events` for each SIGTERM or SIGINT.
pub fn forward_shutdown_signals<T: Send + 'static>(
    events: Sender<T>,
    event: impl Fn(i32) -> T + Send + 'static,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                let mut signal: libc::c_int = 0;
                // SAFETY: as above; sigwait writes the received signal into `signal`.
                let result = unsafe {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGTERM);
                    libc::sigaddset(&mut set, libc::SIGINT);
                    libc::sigwait(&set, &mut signal)
                };
                if result == 0 && events.send(event(signal)).is_err() {
                    return;
                }
            }
        })?;
    Ok(())
}
