//! What every scenario shares: the options, the clock base, the cross-thread
//! control block, the measurement window, per-thread tallies, a connect ramp,
//! and the per-connection stream of EncryptedUpdates with its in-flight queue.

use std::collections::{BTreeMap, VecDeque};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::pool::{IoStats, Pool};
use crate::wire::{self, UpdateTemplate};

/// Command-line options shared by the scenarios (see `usage` in loadgen.rs).
#[derive(Clone, Debug)]
pub struct Options {
    pub window: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub rate: Option<f64>,
    /// Open loop: sends that fall due within this quantum go out in one loop
    /// turn. Latency still counts from each intended time, so batching is paid
    /// for in the figures, and the generator saves a wake-up per message.
    pub send_quantum: Duration,
    pub size_bytes: usize,
    pub backlog: u64,
    pub threads: usize,
}

static BASE: OnceLock<Instant> = OnceLock::new();

/// The instant all nanosecond stamps count from (shared by all threads).
pub fn base() -> Instant {
    *BASE.get_or_init(Instant::now)
}

pub fn stamp_of(instant: Instant) -> u64 {
    instant.saturating_duration_since(base()).as_nanos() as u64
}

pub fn instant_of(stamp: u64) -> Instant {
    base() + Duration::from_nanos(stamp)
}

/// Cross-thread coordination. The main thread sets `start_stamp` once every
/// worker's connections are open, so all workers measure the same window.
#[derive(Default)]
pub struct Control {
    pub stop: AtomicBool,
    pub opened: AtomicUsize,
    pub failed: AtomicUsize,
    pub start_stamp: AtomicU64,
}

impl Control {
    pub fn start(&self) -> Option<Instant> {
        match self.start_stamp.load(Ordering::Acquire) {
            0 => None,
            stamp => Some(instant_of(stamp)),
        }
    }

    pub fn set_start(&self, at: Instant) {
        self.start_stamp
            .store(stamp_of(at).max(1), Ordering::Release);
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Warm-up from `start` to `measure_from`, measurement until `end`, then up to
/// `grace` more to collect replies to requests sent inside the window.
#[derive(Clone, Copy)]
pub struct Window {
    pub measure_from: Instant,
    pub end: Instant,
    pub grace_end: Instant,
}

impl Window {
    pub fn new(start: Instant, warmup: Duration, duration: Duration) -> Self {
        let measure_from = start + warmup;
        let end = measure_from + duration;
        Self {
            measure_from,
            end,
            grace_end: end + Duration::from_secs(5),
        }
    }

    pub fn contains(&self, at: Instant) -> bool {
        at >= self.measure_from && at < self.end
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid")
}

/// One thread's results; merged across threads for the report.
pub struct Tally {
    /// Main latency (µs): ack latency, send-to-receive, or connect-to-ack.
    pub latency: Histogram<u64>,
    /// Secondary latency (µs), e.g. the senders' Stored acks in `live`.
    pub secondary: Histogram<u64>,
    /// Operations completed inside the window (acks, deliveries, handshakes).
    pub completed: u64,
    pub sent: u64,
    /// Replies other than the expected ones, by kind or code.
    pub outcomes: BTreeMap<String, u64>,
    /// Requests sent inside the window that got no reply before the grace ended.
    pub unanswered: u64,
    /// Scenario-specific figures (name, value), summed across threads.
    pub figures: BTreeMap<&'static str, f64>,
    pub io: IoStats,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            latency: new_histogram(),
            secondary: new_histogram(),
            completed: 0,
            sent: 0,
            outcomes: BTreeMap::new(),
            unanswered: 0,
            figures: BTreeMap::new(),
            io: IoStats::default(),
        }
    }
}

impl Tally {
    pub fn merge(&mut self, other: &Tally) {
        self.latency.add(&other.latency).expect("same bounds");
        self.secondary.add(&other.secondary).expect("same bounds");
        self.completed += other.completed;
        self.sent += other.sent;
        self.unanswered += other.unanswered;
        for (name, count) in &other.outcomes {
            *self.outcomes.entry(name.clone()).or_default() += count;
        }
        for (name, value) in &other.figures {
            *self.figures.entry(name).or_default() += value;
        }
        self.io.merge(&other.io);
    }

    pub fn count(&mut self, name: impl FnOnce() -> String) {
        *self.outcomes.entry(name()).or_default() += 1;
    }

    pub fn record(histogram: &mut Histogram<u64>, from: Instant, to: Instant) {
        let micros = to.saturating_duration_since(from).as_micros() as u64;
        histogram.saturating_record(micros.max(1));
    }
}

/// Counts a reply that is not the one a scenario waits for.
pub fn count_other(tally: &mut Tally, reply: &wire::Reply) {
    let kind = String::from_utf8_lossy(reply.kind);
    let detail = if reply.kind == b"Error" {
        reply.code
    } else {
        reply.status
    };
    let detail = String::from_utf8_lossy(detail);
    tally.count(|| {
        if detail.is_empty() {
            kind.into_owned()
        } else {
            format!("{kind} {detail}")
        }
    });
}

/// Opens slots `next..end` in order with at most `in_progress_max` connections
/// still being set up at a time (so the relay's listen backlog never overflows).
/// Drivers call `settled` when a ramped connection opens or fails.
pub struct Ramp {
    pub next: usize,
    pub end: usize,
    pub in_progress: usize,
    pub in_progress_max: usize,
}

impl Ramp {
    pub fn new(end: usize, in_progress_max: usize) -> Self {
        Self {
            next: 0,
            end,
            in_progress: 0,
            in_progress_max,
        }
    }

    /// Returns how many connects failed at once.
    pub fn advance(
        &mut self,
        pool: &mut Pool,
        now: Instant,
        mut id_for: impl FnMut(&mut Pool, usize) -> String,
    ) -> usize {
        let mut failed = 0;
        while self.next < self.end && self.in_progress < self.in_progress_max {
            let slot = self.next;
            let id = id_for(pool, slot);
            self.next += 1;
            if pool.connect(slot, id, now) {
                self.in_progress += 1;
            } else {
                failed += 1;
            }
        }
        failed
    }

    pub fn settled(&mut self) {
        self.in_progress = self.in_progress.saturating_sub(1);
    }

    pub fn done(&self) -> bool {
        self.next >= self.end
    }
}

/// A connection's EncryptedUpdate sequence and its requests awaiting a reply,
/// in send order (replies come back in request order, §4.8).
pub struct Stream {
    pub template: UpdateTemplate,
    pub next_seq: u64,
    pub inflight: VecDeque<(u64, Instant)>,
}

impl Stream {
    pub fn new(template: UpdateTemplate) -> Self {
        Self {
            template,
            next_seq: 0,
            inflight: VecDeque::new(),
        }
    }

    /// Writes the next request into `message` and remembers its intended time.
    pub fn next(&mut self, message: &mut Vec<u8>, intended: Instant, stamp: u64) {
        self.template.write(message, self.next_seq, stamp);
        self.inflight.push_back((self.next_seq, intended));
        self.next_seq += 1;
    }

    /// Matches a reply's payload message_id (`<tag>-<hex seq>`) to its request
    /// and returns the request's intended send time.
    pub fn complete(&mut self, request_id: &[u8]) -> Option<Instant> {
        let dash = request_id.iter().rposition(|&byte| byte == b'-')?;
        let seq = wire::parse_hex(&request_id[dash + 1..])?;
        while let Some(&(front, intended)) = self.inflight.front() {
            if front > seq {
                return None;
            }
            self.inflight.pop_front();
            if front == seq {
                return Some(intended);
            }
        }
        None
    }
}
