//! The connections of one worker thread and its event loop. A connection goes
//! Connecting -> Upgrading -> AwaitAck -> Open; the scenario (a `Driver`) sees it
//! open, sees each message the relay sends on it, and decides what to send. All
//! output queued during one loop turn leaves in one write per connection; with
//! `--tls` it is sealed in one rustls write first (`tls.rs`), then sent the same way.
//! With `--noise` a connection opens Noise NK after the upgrade (Opening) and each
//! frame is sealed into transport messages as it is queued (`noise.rs`).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::net::{self, EVENT_IN, EVENT_OUT, Epoll};
use crate::noise;
use crate::tls;
use crate::wire::{self, Reply, Rng};

// The read path (`handle`), in its own file to keep this one readable.
#[path = "inbound.rs"]
mod inbound;

/// Where the relay is and how to address it.
pub struct Target {
    pub address: SocketAddr,
    pub host: String,
    pub path: String,
    /// `wss://`: every connection speaks TLS.
    pub tls: Option<tls::Client>,
    /// `--noise`: the relay's Noise public key; every session is a Noise session.
    pub noise: Option<[u8; 32]>,
    /// `--uncoalesced`: every message goes out in its own write at once (its own
    /// TCP segment with TCP_NODELAY), as a real client sends it, instead of one
    /// write per connection per loop turn.
    pub uncoalesced: bool,
}

impl Target {
    /// Loopback targets get spread over 127.0.0.1..=127.0.0.250 as source
    /// addresses, so tens of thousands of connections (and TIME_WAITs) never
    /// exhaust one address's ephemeral ports.
    fn source_for(&self, counter: u64) -> Option<Ipv4Addr> {
        match self.address {
            SocketAddr::V4(v4) if v4.ip().is_loopback() => {
                Some(Ipv4Addr::new(127, 0, 0, 1 + (counter % 250) as u8))
            }
            _ => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    Free,
    Connecting,
    Upgrading,
    /// `--noise`: the opening sent, its reply awaited.
    Opening,
    AwaitAck,
    Open,
}

pub struct Conn {
    fd: libc::c_int,
    generation: u32,
    pub phase: Phase,
    pub client_id: String,
    pub connect_started: Instant,
    rx: Vec<u8>,
    fragment: Vec<u8>,
    /// Frames queued for the next write (plaintext when the connection has TLS).
    tx: Vec<u8>,
    /// TLS: the session, and its records not yet accepted by the kernel.
    tls: Option<Box<tls::Session>>,
    sealed: Vec<u8>,
    /// `--noise`: the session's Noise state.
    noise: Option<Box<noise::Session>>,
    waiting_writable: bool,
    dirty: bool,
}

impl Conn {
    /// The bytes for the socket: the queued frames, or with TLS their records
    /// (the frames sealed now, in one write).
    fn outgoing(&mut self) -> &mut Vec<u8> {
        match &mut self.tls {
            Some(session) => {
                session.seal(&mut self.tx, &mut self.sealed);
                &mut self.sealed
            }
            None => &mut self.tx,
        }
    }
}

/// Transport-level outcomes, counted per thread and merged for the report.
#[derive(Default)]
pub struct IoStats {
    pub connect_errors: u64,
    pub refused_upgrades: BTreeMap<String, u64>,
    pub closed_by_relay: u64,
    pub close_codes: BTreeMap<u16, u64>,
    pub malformed_messages: u64,
    /// Failed TLS sessions (bad records, certificate refused), and why the first did.
    pub tls_errors: u64,
    pub tls_first_error: Option<String>,
    /// Connections opened, by negotiated TLS version and cipher suite.
    pub tls_sessions: BTreeMap<String, u64>,
}

impl IoStats {
    fn tls_failed(&mut self, error: String) {
        self.tls_errors += 1;
        self.tls_first_error.get_or_insert(error);
    }

    pub fn merge(&mut self, other: &IoStats) {
        self.connect_errors += other.connect_errors;
        self.closed_by_relay += other.closed_by_relay;
        self.malformed_messages += other.malformed_messages;
        self.tls_errors += other.tls_errors;
        if self.tls_first_error.is_none() {
            self.tls_first_error = other.tls_first_error.clone();
        }
        for (suite, count) in &other.tls_sessions {
            *self.tls_sessions.entry(suite.clone()).or_default() += count;
        }
        for (status, count) in &other.refused_upgrades {
            *self.refused_upgrades.entry(status.clone()).or_default() += count;
        }
        for (code, count) in &other.close_codes {
            *self.close_codes.entry(*code).or_default() += count;
        }
    }
}

/// What a scenario does with its connections.
pub trait Driver {
    /// Called each loop turn before output is flushed. Returns when it next wants
    /// to be called, or None to stop the loop.
    fn tick(&mut self, pool: &mut Pool, now: Instant) -> Option<Instant>;
    /// The HandshakeAck arrived on `slot`.
    fn opened(&mut self, pool: &mut Pool, slot: usize, now: Instant);
    /// A message arrived on an open `slot`.
    fn received(&mut self, pool: &mut Pool, slot: usize, reply: &Reply, now: Instant);
    /// `slot` failed or was closed by the relay; it is Free again.
    fn lost(&mut self, _pool: &mut Pool, _slot: usize, _now: Instant) {}
}

pub struct Pool {
    epoll: Epoll,
    conns: Vec<Conn>,
    dirty: Vec<usize>,
    target: std::sync::Arc<Target>,
    source_counter: u64,
    rng: Rng,
    read_buffer: Vec<u8>,
    /// TLS: the plaintext of one read.
    plain: Vec<u8>,
    /// Noise: one transport message being sealed.
    noise_scratch: Vec<u8>,
    message: Vec<u8>,
    unix_secs: u64,
    pub stats: IoStats,
}

/// Upper bound of an HTTP response head we wait for.
const UPGRADE_HEAD_BYTES_MAX: usize = 16 * 1024;
/// One read per readiness event; level-triggered epoll reports the rest.
const READ_BUFFER_BYTES: usize = 256 * 1024;
/// Longest sleep in the loop, so drivers notice shared stop flags promptly.
const WAIT_MAX: Duration = Duration::from_millis(50);

impl Pool {
    pub fn new(
        target: std::sync::Arc<Target>,
        slots: usize,
        seed: u64,
        source_offset: u64,
    ) -> std::io::Result<Self> {
        let now = Instant::now();
        let conns = (0..slots)
            .map(|_| Conn {
                fd: -1,
                generation: 0,
                phase: Phase::Free,
                client_id: String::new(),
                connect_started: now,
                rx: Vec::new(),
                fragment: Vec::new(),
                tx: Vec::new(),
                tls: None,
                sealed: Vec::new(),
                noise: None,
                waiting_writable: false,
                dirty: false,
            })
            .collect();
        Ok(Self {
            epoll: Epoll::new(1024)?,
            conns,
            dirty: Vec::new(),
            target,
            source_counter: source_offset,
            rng: Rng::new(seed),
            read_buffer: vec![0; READ_BUFFER_BYTES],
            plain: Vec::new(),
            noise_scratch: Vec::new(),
            message: Vec::new(),
            unix_secs: wire::unix_now_secs(),
            stats: IoStats::default(),
        })
    }

    pub fn slots(&self) -> usize {
        self.conns.len()
    }

    pub fn conn(&self, slot: usize) -> &Conn {
        &self.conns[slot]
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    pub fn unix_secs(&self) -> u64 {
        self.unix_secs
    }

    /// Bytes queued on `slot` and not yet accepted by the kernel.
    pub fn unsent_bytes(&self, slot: usize) -> usize {
        self.conns[slot].tx.len() + self.conns[slot].sealed.len()
    }

    fn key(&self, slot: usize) -> u64 {
        (self.conns[slot].generation as u64) << 32 | slot as u64
    }

    /// Starts connecting `slot` (which must be Free) as `client_id`.
    /// Returns false (and counts the error) if the connect failed at once.
    pub fn connect(&mut self, slot: usize, client_id: String, now: Instant) -> bool {
        assert_eq!(
            self.conns[slot].phase,
            Phase::Free,
            "connect on a busy slot"
        );
        self.source_counter += 1;
        let source = self.target.source_for(self.source_counter);
        let fd = match net::connect(self.target.address, source) {
            Ok(fd) => fd,
            Err(_) => {
                self.stats.connect_errors += 1;
                return false;
            }
        };
        let conn = &mut self.conns[slot];
        conn.fd = fd;
        conn.generation = conn.generation.wrapping_add(1);
        conn.phase = Phase::Connecting;
        conn.client_id = client_id;
        conn.connect_started = now;
        let key = self.key(slot);
        if self.epoll.add(fd, EVENT_IN | EVENT_OUT, key).is_err() {
            self.stats.connect_errors += 1;
            self.release(slot);
            return false;
        }
        true
    }

    /// Queues one protocol message (prefix + JSON, as built by `wire`) on `slot`;
    /// on a Noise session, sealed in as many transport messages as it needs.
    pub fn send(&mut self, slot: usize, message: &[u8]) {
        let conn = &mut self.conns[slot];
        let rng = &mut self.rng;
        match conn.noise.as_mut().filter(|session| session.is_open()) {
            None => wire::encode_frame(&mut conn.tx, wire::OPCODE_BINARY, message, rng.mask()),
            Some(session) => {
                let tx = &mut conn.tx;
                session.seal(message, &mut self.noise_scratch, |sealed| {
                    wire::encode_frame(tx, wire::OPCODE_BINARY, sealed, rng.mask());
                });
            }
        }
        if self.target.uncoalesced && conn.phase == Phase::Open {
            self.flush_one(slot);
        } else {
            self.mark_dirty(slot);
        }
    }

    /// `--noise`: starts `slot`'s session with the opening, right after the upgrade.
    fn open_noise(&mut self, slot: usize, public: &[u8; 32]) {
        let (session, opening) = noise::Session::start(public);
        let mask = self.rng.mask();
        let conn = &mut self.conns[slot];
        wire::encode_frame(&mut conn.tx, wire::OPCODE_BINARY, &opening, mask);
        conn.noise = Some(Box::new(session));
        conn.phase = Phase::Opening;
        self.mark_dirty(slot);
    }

    /// Makes sure `slot` is flushed at the end of this loop turn.
    fn mark_dirty(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(slot);
        }
    }

    /// Closes `slot`; when graceful, a Close frame (1000) goes out first (with TLS,
    /// followed by close_notify).
    pub fn close(&mut self, slot: usize, graceful: bool) {
        if graceful && self.conns[slot].phase == Phase::Open {
            let mask = self.rng.mask();
            let conn = &mut self.conns[slot];
            wire::encode_frame(
                &mut conn.tx,
                wire::OPCODE_CLOSE,
                &1000u16.to_be_bytes(),
                mask,
            );
            if let Some(session) = &mut conn.tls {
                session.seal(&mut conn.tx, &mut conn.sealed);
                session.close(&mut conn.sealed);
            }
            let out = if conn.tls.is_some() {
                &conn.sealed
            } else {
                &conn.tx
            };
            let _ = net::write(conn.fd, out);
        }
        self.release(slot);
    }

    fn release(&mut self, slot: usize) {
        let conn = &mut self.conns[slot];
        if conn.fd >= 0 {
            net::close(conn.fd);
        }
        conn.fd = -1;
        conn.generation = conn.generation.wrapping_add(1);
        conn.phase = Phase::Free;
        conn.rx = Vec::new();
        conn.fragment = Vec::new();
        conn.tx.clear();
        conn.tls = None;
        conn.sealed.clear();
        conn.noise = None;
        conn.waiting_writable = false;
    }

    /// Closes every connection without ceremony (end of a scenario).
    pub fn close_all(&mut self) {
        for slot in 0..self.conns.len() {
            if self.conns[slot].phase != Phase::Free {
                self.release(slot);
            }
        }
    }

    fn flush(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            self.conns[slot].dirty = false;
            self.flush_one(slot);
        }
        self.dirty = dirty;
        self.dirty.clear();
    }

    fn flush_one(&mut self, slot: usize) {
        let key = self.key(slot);
        let conn = &mut self.conns[slot];
        if conn.fd < 0 || conn.phase == Phase::Connecting {
            return;
        }
        let fd = conn.fd;
        let out = conn.outgoing();
        if out.is_empty() {
            return;
        }
        let mut written = 0;
        while written < out.len() {
            match net::write(fd, &out[written..]) {
                Ok(count) => written += count,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The read side reports the end of the connection.
                    out.clear();
                    return;
                }
            }
        }
        out.drain(..written);
        let want_writable = !out.is_empty();
        if want_writable != conn.waiting_writable {
            conn.waiting_writable = want_writable;
            let interest = if want_writable {
                EVENT_IN | EVENT_OUT
            } else {
                EVENT_IN
            };
            let _ = self.epoll.modify(conn.fd, interest, key);
        }
    }

    fn connected(&mut self, slot: usize) -> bool {
        if net::take_error(self.conns[slot].fd).is_err() {
            self.stats.connect_errors += 1;
            return false;
        }
        let mut key_bytes = [0u8; 16];
        key_bytes[..8].copy_from_slice(&self.rng.next().to_ne_bytes());
        key_bytes[8..].copy_from_slice(&self.rng.next().to_ne_bytes());
        let request = wire::upgrade_request(&self.target.host, &self.target.path, key_bytes);
        // With TLS the request waits in the session until its handshake has finished.
        let session = match self.target.tls.as_ref().map(tls::Client::session) {
            None => None,
            Some(Ok(session)) => Some(Box::new(session)),
            Some(Err(error)) => {
                self.stats.tls_failed(error);
                return false;
            }
        };
        let key = self.key(slot);
        let conn = &mut self.conns[slot];
        conn.phase = Phase::Upgrading;
        conn.tls = session;
        conn.tx.extend_from_slice(&request);
        let _ = self.epoll.modify(conn.fd, EVENT_IN, key);
        self.mark_dirty(slot);
        true
    }

    fn fail(&mut self, slot: usize, driver: &mut impl Driver, now: Instant) {
        self.release(slot);
        driver.lost(self, slot, now);
    }
}

/// Runs the loop until the driver's tick returns None.
pub fn run(pool: &mut Pool, driver: &mut impl Driver) -> std::io::Result<()> {
    let mut ready: Vec<(u64, u32)> = Vec::with_capacity(1024);
    loop {
        let now = Instant::now();
        let Some(wake) = driver.tick(pool, now) else {
            pool.flush();
            return Ok(());
        };
        pool.flush();
        let timeout = wake.saturating_duration_since(Instant::now()).min(WAIT_MAX);
        ready.clear();
        ready.extend(pool.epoll.wait(timeout)?);
        for &(key, events) in &ready {
            inbound::handle(pool, driver, key, events);
        }
    }
}
