//! What every thread of the process shares, apart from the mesh: the atomics of
//! [`Shared`] (draining, connection and session counts, blob gauges, metrics), the
//! [`ConnectionSlot`] that holds one of `RELAY_MAX_CONNECTIONS` (§2.2) wherever the
//! connection goes, and the [`Clock`] (unix seconds for the protocol, monotonic time
//! for timers and buckets), which a test may drive by hand.
//!
//! Shards and the federation executor both depend on this module; it depends on
//! neither.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::addresses::{AddressCounts, AddressKey};
use crate::metrics::{Global, ShardMetrics, TlsListener};
use crate::noise::StaticKey;
use crate::transport::certs::ServerCerts;

/// State shared by every executor thread: atomics, and the main listener's
/// certificates (behind their own lock).
pub struct Shared {
    pub started: Instant,
    pub draining: AtomicBool,
    /// Blobs indexed per shard, for `/health` (§2.4).
    pub blob_counts: Vec<AtomicU64>,
    /// Open connections on the main port (§2.2).
    pub connections: AtomicU64,
    /// Client sessions open on all shards (shutdown waits for none to be left).
    pub sessions_open: AtomicU64,
    /// The federation executor is running: shards keep serving its requests (and
    /// their stores stay open) until it has drained (§14.1 step 4).
    pub federation_running: AtomicBool,
    /// Per-shard metrics, merged at scrape time (§12).
    pub metrics: Arc<[ShardMetrics]>,
    pub global_metrics: Arc<Global>,
    /// Built-in TLS on the main listener (§2.8); `None`: plain TCP.
    pub main_tls: Option<ServerCerts>,
    /// Federation mTLS (§15.3), in effect (federation enabled); `None`: plain
    /// federation on the main port.
    pub federation_tls: Option<ServerCerts>,
    /// Open connections per client address (§2.10); `None`: unlimited.
    pub addresses: Option<AddressCounts>,
    /// The static Noise key every shard answers openings with (§15.1).
    pub noise_key: StaticKey,
}

impl Shared {
    pub fn new(shards: usize) -> Shared {
        Shared {
            started: Instant::now(),
            draining: AtomicBool::new(false),
            blob_counts: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            connections: AtomicU64::new(0),
            sessions_open: AtomicU64::new(0),
            federation_running: AtomicBool::new(false),
            metrics: (0..shards).map(|_| ShardMetrics::new()).collect(),
            global_metrics: Arc::new(Global::new(shards as u32)),
            main_tls: None,
            federation_tls: None,
            addresses: None,
            // Replaced by the configured or stored key at startup
            // (`with_noise_key`); a shard assembled by a test answers with this one.
            noise_key: StaticKey::generate(),
        }
    }

    /// The same, with at most `limit` connections per client address (0:
    /// unlimited), IPv6 addresses grouped by their first `ipv6_prefix_len` bits.
    pub fn with_address_limit(mut self, limit: u64, ipv6_prefix_len: u8) -> Shared {
        self.addresses = (limit > 0).then(|| AddressCounts::new(limit, ipv6_prefix_len));
        self
    }

    /// The same, answering Noise openings with `key` (§15.1).
    pub fn with_noise_key(mut self, key: StaticKey) -> Shared {
        self.noise_key = key;
        self
    }

    /// The same, with TLS built into the main listener and federation mTLS.
    pub fn with_tls(
        mut self,
        main: Option<ServerCerts>,
        federation: Option<ServerCerts>,
    ) -> Shared {
        self.main_tls = main;
        self.federation_tls = federation;
        self
    }

    /// The TLS listeners in effect and their certificates (§2.8).
    pub fn certificates(&self) -> impl Iterator<Item = (TlsListener, &ServerCerts)> {
        let main = self.main_tls.as_ref().map(|c| (TlsListener::Main, c));
        let federation = self
            .federation_tls
            .as_ref()
            .map(|c| (TlsListener::Federation, c));
        main.into_iter().chain(federation)
    }

    pub fn blob_count(&self) -> u64 {
        self.blob_counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Takes one connection slot, or `None` at the limit (§2.2).
    pub fn admit(self: &Arc<Self>, max_connections: u64) -> Option<ConnectionSlot> {
        if self.connections.fetch_add(1, Ordering::Relaxed) < max_connections {
            Some(ConnectionSlot {
                shared: Arc::clone(self),
                address: None,
            })
        } else {
            self.connections.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

/// Holds one slot of `RELAY_MAX_CONNECTIONS` (§2.2), and of its client address's
/// `RELAY_MAX_CONNECTIONS_PER_IP` once counted (§2.10), until dropped; it travels
/// with the connection to the owner shard or the federation executor.
pub struct ConnectionSlot {
    shared: Arc<Shared>,
    address: Option<AddressKey>,
}

impl ConnectionSlot {
    /// Counts the connection against its client address's limit (§2.10); false if
    /// the address is at the limit. Without a limit, always true.
    pub fn admit_address(&mut self, client: std::net::IpAddr) -> bool {
        let Some(counts) = &self.shared.addresses else {
            return true;
        };
        if self.address.is_some() {
            return true;
        }
        let key = counts.key(client);
        let admitted = counts.try_add(key);
        if admitted {
            self.address = Some(key);
        }
        admitted
    }
}

impl std::fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionSlot")
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
        if let (Some(key), Some(counts)) = (self.address, &self.shared.addresses) {
            counts.remove(key);
        }
    }
}

/// Unix time now (§1.2), from the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The time as a shard sees it: the system clock, or a hand-driven one for tests
/// of the shard's rules (`Clock::manual`), which moves only when told to.
#[derive(Clone)]
pub struct Clock {
    origin: Instant,
    manual: Option<Arc<ManualTime>>,
}

/// The hand of a manual clock: unix seconds at its origin and the time elapsed.
pub struct ManualTime {
    unix_at_origin: u64,
    elapsed_micros: AtomicU64,
}

impl ManualTime {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.elapsed_micros
            .fetch_add(by.as_micros() as u64, Ordering::Relaxed);
    }

    fn elapsed(&self) -> Duration {
        Duration::from_micros(self.elapsed_micros.load(Ordering::Relaxed))
    }
}

impl Clock {
    pub fn system() -> Clock {
        Clock {
            origin: Instant::now(),
            manual: None,
        }
    }

    /// A clock that starts at `unix_secs` and moves only by `advance`.
    pub fn manual(unix_secs: u64) -> (Clock, Arc<ManualTime>) {
        let hand = Arc::new(ManualTime {
            unix_at_origin: unix_secs,
            elapsed_micros: AtomicU64::new(0),
        });
        let clock = Clock {
            origin: Instant::now(),
            manual: Some(Arc::clone(&hand)),
        };
        (clock, hand)
    }

    /// Unix seconds (§1.2).
    pub fn unix_secs(&self) -> u64 {
        match &self.manual {
            None => unix_now(),
            Some(hand) => hand.unix_at_origin + hand.elapsed().as_secs(),
        }
    }

    /// The monotonic now, for deadlines.
    pub fn instant(&self) -> Instant {
        match &self.manual {
            None => Instant::now(),
            Some(hand) => self.origin + hand.elapsed(),
        }
    }

    /// Monotonic seconds since the clock was made, for token buckets.
    pub fn monotonic_secs(&self) -> f64 {
        (self.instant() - self.origin).as_secs_f64()
    }
}
