//! Thin libc layer for the load generator: an epoll instance, non-blocking TCP
//! sockets that can bind a chosen loopback source address, and RLIMIT_NOFILE.
//! Every fd made here is owned by exactly one worker thread.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Readable, writable and hang-up interest bits as epoll spells them.
pub const EVENT_IN: u32 = libc::EPOLLIN as u32;
pub const EVENT_OUT: u32 = libc::EPOLLOUT as u32;
pub const EVENT_HUP: u32 = (libc::EPOLLHUP | libc::EPOLLERR | libc::EPOLLRDHUP) as u32;

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// One level-triggered epoll instance; the key of each registration is a u64 the
/// caller chooses (slot and generation).
pub struct Epoll {
    fd: libc::c_int,
    events: Vec<libc::epoll_event>,
}

impl Epoll {
    pub fn new(capacity: usize) -> io::Result<Self> {
        // SAFETY: plain syscall without pointers.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(Self {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; capacity],
        })
    }

    fn control(&self, op: libc::c_int, fd: libc::c_int, interest: u32, key: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: interest | libc::EPOLLRDHUP as u32,
            u64: key,
        };
        // SAFETY: `event` lives across the call; epoll copies it.
        check(unsafe { libc::epoll_ctl(self.fd, op, fd, &mut event) }).map(|_| ())
    }

    pub fn add(&self, fd: libc::c_int, interest: u32, key: u64) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, interest, key)
    }

    pub fn modify(&self, fd: libc::c_int, interest: u32, key: u64) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_MOD, fd, interest, key)
    }

    /// Waits up to `timeout` (nanosecond precision, so open-loop schedules are not
    /// rounded to milliseconds) and returns the ready (key, events) pairs.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<impl Iterator<Item = (u64, u32)> + '_> {
        let spec = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        // SAFETY: the buffer holds `events.len()` entries and outlives the call.
        let count = unsafe {
            libc::epoll_pwait2(
                self.fd,
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                &spec,
                std::ptr::null(),
            )
        };
        let count = match check(count) {
            Ok(count) => count as usize,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => 0,
            Err(error) => return Err(error),
        };
        Ok(self.events[..count]
            .iter()
            .map(|event| (event.u64, event.events)))
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

/// Starts a non-blocking connect to `target`. With `source` set, binds that IPv4
/// address first (port chosen at connect time, so each source address has its own
/// ephemeral port range towards the target).
pub fn connect(target: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<libc::c_int> {
    let SocketAddr::V4(target) = target else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "only IPv4 targets are supported",
        ));
    };
    // SAFETY: plain syscall without pointers.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    let result = (|| {
        set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
        if let Some(source) = source {
            set_int_option(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
            let address = sockaddr(source, 0);
            // SAFETY: `address` is a valid sockaddr_in for the call's duration.
            check(unsafe {
                libc::bind(
                    fd,
                    (&address as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            })?;
        }
        let address = sockaddr(*target.ip(), target.port());
        // SAFETY: as above.
        let result = unsafe {
            libc::connect(
                fd,
                (&address as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        match check(result) {
            Ok(_) => Ok(()),
            Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
            Err(error) => Err(error),
        }
    })();
    match result {
        Ok(()) => Ok(fd),
        Err(error) => {
            close(fd);
            Err(error)
        }
    }
}

fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn set_int_option(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` lives across the call.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// The pending error of a socket whose non-blocking connect has finished.
pub fn take_error(fd: libc::c_int) -> io::Result<()> {
    let mut value: libc::c_int = 0;
    let mut length = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: both out-pointers are valid for the call.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut value as *mut libc::c_int).cast(),
            &mut length,
        )
    })?;
    if value == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(value))
    }
}

/// Reads into `buffer`; Ok(0) is end of stream; WouldBlock comes back as an error.
pub fn read(fd: libc::c_int, buffer: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buffer`.
    let count = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
    if count < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(count as usize)
    }
}

pub fn write(fd: libc::c_int, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `bytes`.
    let count = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
    if count < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(count as usize)
    }
}

pub fn close(fd: libc::c_int) {
    // SAFETY: the caller owns `fd` and forgets it after this call.
    unsafe { libc::close(fd) };
}

/// Raises the soft open-file limit to the hard limit and returns the new soft limit.
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 0;
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `limit` is a valid in-pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    // SAFETY: as above.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_cur
}
