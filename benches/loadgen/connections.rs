//! Scenarios about connections rather than messages: `drain` (one recipient
//! connects to a stored backlog, receives and acks all of it), `idle` (many
//! handshaken connections that then stay quiet) and `churn` (connect, upgrade,
//! handshake, close, repeat).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::{Control, Ramp, Tally, Window, count_other};
use crate::pool::{Driver, Phase, Pool};
use crate::wire::{self, Reply};

/// The recipient side of `drain`: slot 0, connected as `recipient_id`.
pub struct Drain {
    recipient_id: String,
    backlog: u64,
    give_up: Duration,
    connect_at: Option<Instant>,
    opened_at: Option<Instant>,
    first_at: Option<Instant>,
    pub finished_at: Option<Instant>,
    received: u64,
    ack_id: Vec<u8>,
    message: Vec<u8>,
    pub tally: Tally,
}

impl Drain {
    pub fn new(recipient_id: String, backlog: u64, give_up: Duration) -> Self {
        Self {
            recipient_id,
            backlog,
            give_up,
            connect_at: None,
            opened_at: None,
            first_at: None,
            finished_at: None,
            received: 0,
            ack_id: Vec::new(),
            message: Vec::new(),
            tally: Tally::default(),
        }
    }

    fn finish(&mut self, now: Instant) {
        let Some(start) = self.connect_at else { return };
        let millis = |at: Option<Instant>| {
            at.map_or(f64::NAN, |at| at.duration_since(start).as_secs_f64() * 1e3)
        };
        self.finished_at = Some(now);
        self.tally
            .figures
            .insert("handshake_ms", millis(self.opened_at));
        self.tally
            .figures
            .insert("first_blob_ms", millis(self.first_at));
        self.tally.figures.insert("drain_ms", millis(Some(now)));
        self.tally.figures.insert("received", self.received as f64);
        let seconds = now.duration_since(start).as_secs_f64();
        self.tally
            .figures
            .insert("blobs_per_sec", self.received as f64 / seconds.max(1e-9));
    }
}

impl Driver for Drain {
    fn tick(&mut self, pool: &mut Pool, now: Instant) -> Option<Instant> {
        let Some(start) = self.connect_at else {
            self.connect_at = Some(now);
            if !pool.connect(0, self.recipient_id.clone(), now) {
                self.finish(now);
                return None;
            }
            return Some(now + Duration::from_millis(50));
        };
        // Done once every blob has arrived and every ack has left this process.
        if self.received >= self.backlog && pool.unsent_bytes(0) == 0 {
            self.finish(now);
            return None;
        }
        if now >= start + self.give_up || pool.conn(0).phase == Phase::Free {
            self.finish(now);
            return None;
        }
        // Re-check right after the flush that follows the last ack.
        Some(if self.received >= self.backlog {
            now
        } else {
            now + Duration::from_millis(50)
        })
    }

    fn opened(&mut self, _pool: &mut Pool, _slot: usize, now: Instant) {
        self.opened_at = Some(now);
    }

    fn received(&mut self, pool: &mut Pool, slot: usize, reply: &Reply, now: Instant) {
        if reply.kind != b"EncryptedUpdate" {
            count_other(&mut self.tally, reply);
            return;
        }
        self.first_at.get_or_insert(now);
        self.ack_id.clear();
        self.ack_id.extend_from_slice(b"d-");
        wire::push_hex(&mut self.ack_id, self.received, wire::SEQ_HEX_DIGITS);
        wire::ack_json(
            &mut self.message,
            &self.ack_id,
            reply.envelope_id,
            pool.unix_secs(),
        );
        pool.send(slot, &self.message);
        self.received += 1;
    }
}

/// `idle`: opens `connections` slots through a ramp, then keeps them open until
/// the main thread sets the stop flag (after it has measured the relay's RSS).
pub struct Idle {
    control: Arc<Control>,
    ramp: Ramp,
    was_open: Vec<bool>,
    pub tally: Tally,
}

impl Idle {
    pub fn new(control: Arc<Control>, connections: usize) -> Self {
        Self {
            control,
            ramp: Ramp::new(connections, 512),
            was_open: vec![false; connections],
            tally: Tally::default(),
        }
    }
}

impl Driver for Idle {
    fn tick(&mut self, pool: &mut Pool, now: Instant) -> Option<Instant> {
        if self.control.stopped() {
            let open = (0..pool.slots())
                .filter(|&slot| pool.conn(slot).phase == Phase::Open)
                .count();
            self.tally.figures.insert("open_at_end", open as f64);
            return None;
        }
        let failed = self
            .ramp
            .advance(pool, now, |pool, _| wire::random_id(pool.rng()));
        self.control.failed.fetch_add(failed, Ordering::Relaxed);
        Some(now + Duration::from_millis(20))
    }

    fn opened(&mut self, pool: &mut Pool, slot: usize, now: Instant) {
        self.ramp.settled();
        self.was_open[slot] = true;
        Tally::record(
            &mut self.tally.latency,
            pool.conn(slot).connect_started,
            now,
        );
        self.tally.completed += 1;
        self.control.opened.fetch_add(1, Ordering::Relaxed);
    }

    fn received(&mut self, _pool: &mut Pool, _slot: usize, reply: &Reply, _now: Instant) {
        count_other(&mut self.tally, reply);
    }

    fn lost(&mut self, _pool: &mut Pool, slot: usize, _now: Instant) {
        if self.was_open[slot] {
            self.tally
                .count(|| "idle connection closed by relay".to_string());
        } else {
            self.was_open[slot] = true;
            self.ramp.settled();
            self.control.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `churn`: each slot loops connect -> upgrade -> Handshake -> HandshakeAck ->
/// Close. Counts handshakes completed inside the window and their latency
/// (connect start to HandshakeAck).
pub struct Churn {
    control: Arc<Control>,
    timing: Option<Window>,
    warmup: Duration,
    duration: Duration,
    pub tally: Tally,
}

impl Churn {
    pub fn new(control: Arc<Control>, warmup: Duration, duration: Duration) -> Self {
        Self {
            control,
            timing: None,
            warmup,
            duration,
            tally: Tally::default(),
        }
    }

    fn reconnect(&mut self, pool: &mut Pool, slot: usize, now: Instant) {
        if self.timing.is_some_and(|timing| now < timing.end) {
            let id = wire::random_id(pool.rng());
            pool.connect(slot, id, now);
        }
    }
}

impl Driver for Churn {
    fn tick(&mut self, pool: &mut Pool, now: Instant) -> Option<Instant> {
        if self.control.stopped() {
            return None;
        }
        let Some(timing) = self.timing else {
            self.timing = Some(Window::new(now, self.warmup, self.duration));
            for slot in 0..pool.slots() {
                self.reconnect(pool, slot, now);
            }
            return Some(now);
        };
        // Slots whose connect failed at once are retried here.
        if now < timing.end {
            for slot in 0..pool.slots() {
                if pool.conn(slot).phase == Phase::Free {
                    self.reconnect(pool, slot, now);
                }
            }
            return Some(now + Duration::from_millis(10));
        }
        let busy = (0..pool.slots()).any(|slot| pool.conn(slot).phase != Phase::Free);
        if busy && now < timing.grace_end {
            Some(now + Duration::from_millis(10))
        } else {
            None
        }
    }

    fn opened(&mut self, pool: &mut Pool, slot: usize, now: Instant) {
        if self.timing.is_some_and(|timing| timing.contains(now)) {
            self.tally.completed += 1;
            Tally::record(
                &mut self.tally.latency,
                pool.conn(slot).connect_started,
                now,
            );
        }
        pool.close(slot, true);
        self.reconnect(pool, slot, now);
    }

    fn received(&mut self, _pool: &mut Pool, _slot: usize, reply: &Reply, _now: Instant) {
        count_other(&mut self.tally, reply);
    }

    fn lost(&mut self, pool: &mut Pool, slot: usize, now: Instant) {
        self.tally.count(|| "connection failed".to_string());
        self.reconnect(pool, slot, now);
    }
}
