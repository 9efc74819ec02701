//! What the process needs from the kernel, checked at startup so that the relay
//! fails fast with a message saying what to change (§2.1, GLOMMIO-NOTES): io_uring
//! must be allowed, the memlock limit must let glommio create its executors, and
//! the open-file limit should cover `RELAY_MAX_CONNECTIONS`.

use crate::limits::{FILES_RESERVED, MEMLOCK_MIN_BYTES};

/// Probes io_uring with a one-entry ring. `Err` says why it is unavailable.
pub fn check_io_uring() -> Result<(), String> {
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        && text.trim() == "2"
    {
        return Err(
            "io_uring is disabled by the kernel (/proc/sys/kernel/io_uring_disabled = 2); \
                    set it to 0 (sysctl kernel.io_uring_disabled=0)"
                .to_owned(),
        );
    }
    // io_uring_params is 120 bytes; zeroed it asks for the defaults.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes only `params`, which is large enough;
    // the returned descriptor is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        let error = std::io::Error::last_os_error();
        return Err(format!(
            "io_uring is unavailable ({error}); the relay needs it. In a container, allow the \
             io_uring_setup, io_uring_enter and io_uring_register system calls in the seccomp \
             profile (Docker 25+ and containerd 2 block them by default); gVisor has no io_uring"
        ));
    }
    // SAFETY: `fd` is the descriptor io_uring_setup just returned, owned here.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

fn limit(resource: libc::__rlimit_resource_t) -> libc::rlimit {
    let mut value = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `value`.
    unsafe { libc::getrlimit(resource, &mut value) };
    value
}

/// Raises a soft limit to its hard limit; returns the soft limit in effect.
fn raise_to_hard(resource: libc::__rlimit_resource_t) -> u64 {
    let mut value = limit(resource);
    if value.rlim_cur < value.rlim_max {
        value.rlim_cur = value.rlim_max;
        // SAFETY: setrlimit reads `value`; failure leaves the old limit.
        unsafe { libc::setrlimit(resource, &value) };
    }
    limit(resource).rlim_cur
}

/// The memlock limit glommio needs (§13.2 RELAY_SHARDS, GLOMMIO-NOTES).
pub fn check_memlock() -> Result<(), String> {
    let soft = raise_to_hard(libc::RLIMIT_MEMLOCK);
    if soft < MEMLOCK_MIN_BYTES {
        return Err(format!(
            "the memlock limit is {} KiB; the relay needs at least {} KiB (raise it with \
             `ulimit -l`, LimitMEMLOCK= in the systemd unit, or --ulimit memlock= in Docker)",
            soft / 1024,
            MEMLOCK_MIN_BYTES / 1024
        ));
    }
    Ok(())
}

/// Raises the open-file limit to its hard limit (§2.1) and returns a warning when
/// it cannot hold `max_connections` connections.
pub fn raise_open_files(max_connections: u64) -> Option<String> {
    let soft = raise_to_hard(libc::RLIMIT_NOFILE);
    (soft < max_connections.saturating_add(FILES_RESERVED)).then(|| {
        format!(
            "the open-file limit is {soft}, below RELAY_MAX_CONNECTIONS + {FILES_RESERVED}; raise it \
             (LimitNOFILE= in the systemd unit, or `ulimit -n`) or lower RELAY_MAX_CONNECTIONS"
        )
    })
}
