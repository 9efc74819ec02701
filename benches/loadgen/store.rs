//! `store`: every connection sends EncryptedUpdates to its own random recipient
//! and counts Stored acks. Closed loop keeps `window` requests in flight per
//! connection; open loop (`--rate`) sends on a fixed schedule and measures
//! latency from each request's intended send time, so a stalled relay shows up
//! as latency instead of as a slower sender (no coordinated omission).
//! With `total` set, it stores exactly that many blobs (the `drain` fill phase).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::{Control, Ramp, Stream, Tally, Window, count_other};
use crate::pool::{Driver, Phase, Pool};
use crate::wire::{self, Reply, UpdateTemplate};

pub struct Store {
    control: Arc<Control>,
    ramp: Ramp,
    window: usize,
    /// Open loop: time between two sends of this thread.
    interval: Option<Duration>,
    send_quantum: Duration,
    warmup: Duration,
    duration: Duration,
    /// Fill mode: store exactly this many blobs, then stop.
    total: Option<u64>,
    streams: Vec<Stream>,
    timing: Option<Window>,
    next_send: Instant,
    next_slot: usize,
    measured_outstanding: u64,
    answered: u64,
    was_open: Vec<bool>,
    message: Vec<u8>,
    pub tally: Tally,
}

pub struct StoreSetup {
    pub connections: usize,
    pub window: usize,
    pub rate_per_thread: Option<f64>,
    pub send_quantum: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    pub size_bytes: usize,
    /// Every connection sends to this recipient instead of a random one.
    pub recipient: Option<String>,
    pub total: Option<u64>,
    /// Distinguishes this thread's message ids from other threads'.
    pub thread_index: usize,
}

impl Store {
    pub fn new(control: Arc<Control>, setup: StoreSetup, pool: &mut Pool) -> Self {
        let unix_secs = pool.unix_secs();
        let streams = (0..setup.connections)
            .map(|slot| {
                let recipient = setup
                    .recipient
                    .clone()
                    .unwrap_or_else(|| wire::random_id(pool.rng()));
                let tag = format!("s{:x}.{slot:x}", setup.thread_index);
                Stream::new(UpdateTemplate::new(
                    &tag,
                    &recipient,
                    setup.size_bytes,
                    false,
                    pool.rng(),
                    unix_secs,
                ))
            })
            .collect();
        Self {
            control,
            ramp: Ramp::new(setup.connections, 256),
            window: setup.window.max(1),
            interval: setup
                .rate_per_thread
                .map(|rate| Duration::from_secs_f64(1.0 / rate.max(0.001))),
            send_quantum: setup.send_quantum,
            warmup: setup.warmup,
            duration: setup.duration,
            total: setup.total,
            streams,
            timing: None,
            next_send: Instant::now(),
            next_slot: 0,
            measured_outstanding: 0,
            answered: 0,
            was_open: vec![false; setup.connections],
            message: Vec::with_capacity(4096),
            tally: Tally::default(),
        }
    }

    fn send(&mut self, pool: &mut Pool, slot: usize, intended: Instant) {
        if self.total.is_some_and(|total| self.tally.sent >= total) {
            return;
        }
        self.streams[slot].next(&mut self.message, intended, 0);
        pool.send(slot, &self.message);
        self.tally.sent += 1;
        if self.timing.is_some_and(|timing| timing.contains(intended)) {
            self.measured_outstanding += 1;
        }
    }

    fn begin(&mut self, pool: &mut Pool, start: Instant) {
        let timing = if self.total.is_some() {
            let forever = Duration::from_secs(1 << 30);
            Window {
                measure_from: start,
                end: start + forever,
                grace_end: start + forever,
            }
        } else {
            Window::new(start, self.warmup, self.duration)
        };
        self.timing = Some(timing);
        self.next_send = start;
        if self.interval.is_none() {
            for slot in 0..self.streams.len() {
                if pool.conn(slot).phase == Phase::Open {
                    for _ in 0..self.window {
                        self.send(pool, slot, start);
                    }
                }
            }
        }
    }

    /// The next open slot after the last one used (round robin), if any.
    fn next_open_slot(&mut self, pool: &Pool) -> Option<usize> {
        for _ in 0..self.streams.len() {
            let slot = self.next_slot;
            self.next_slot = (self.next_slot + 1) % self.streams.len();
            if pool.conn(slot).phase == Phase::Open {
                return Some(slot);
            }
        }
        None
    }
}

impl Driver for Store {
    fn tick(&mut self, pool: &mut Pool, now: Instant) -> Option<Instant> {
        if self.control.stopped() {
            return None;
        }
        if !self.ramp.done() {
            let failed = self
                .ramp
                .advance(pool, now, |pool, _| wire::random_id(pool.rng()));
            self.control.failed.fetch_add(failed, Ordering::Relaxed);
        }
        let Some(timing) = self.timing else {
            match self.control.start() {
                Some(start) => self.begin(pool, start.max(now)),
                None => return Some(now + Duration::from_millis(1)),
            }
            return Some(now);
        };
        if let Some(total) = self.total {
            let done = self.answered >= total;
            return if done
                || (0..self.streams.len()).all(|slot| pool.conn(slot).phase == Phase::Free)
            {
                None
            } else {
                Some(now + Duration::from_millis(50))
            };
        }
        if let Some(interval) = self.interval {
            while self.next_send <= now && self.next_send < timing.end {
                let Some(slot) = self.next_open_slot(pool) else {
                    break;
                };
                let intended = self.next_send;
                self.send(pool, slot, intended);
                self.next_send += interval;
            }
        }
        if now >= timing.end {
            if self.measured_outstanding == 0 || now >= timing.grace_end {
                self.tally.unanswered += self.measured_outstanding;
                return None;
            }
            return Some(timing.grace_end);
        }
        Some(if self.interval.is_some() {
            self.next_send.max(now + self.send_quantum).min(timing.end)
        } else {
            timing.end
        })
    }

    fn opened(&mut self, pool: &mut Pool, slot: usize, now: Instant) {
        self.ramp.settled();
        self.was_open[slot] = true;
        self.control.opened.fetch_add(1, Ordering::Relaxed);
        // A connection that opens after the start joins the closed loop at once.
        if let (Some(timing), None) = (self.timing, self.interval)
            && now < timing.end
        {
            for _ in 0..self.window {
                self.send(pool, slot, now);
            }
        }
    }

    fn received(&mut self, pool: &mut Pool, slot: usize, reply: &Reply, now: Instant) {
        let answered = match (reply.kind, reply.status) {
            (b"Acknowledgment", b"Stored") => {
                if self.timing.is_some_and(|timing| timing.contains(now)) {
                    self.tally.completed += 1;
                }
                true
            }
            (b"Acknowledgment", b"Failed") | (b"Error", _) => {
                count_other(&mut self.tally, reply);
                true
            }
            _ => {
                count_other(&mut self.tally, reply);
                false
            }
        };
        if !answered {
            return;
        }
        self.answered += 1;
        let Some(intended) = self.streams[slot].complete(reply.request_id) else {
            return;
        };
        if let Some(timing) = self.timing {
            if timing.contains(intended) {
                self.measured_outstanding -= 1;
                if reply.status == b"Stored" {
                    Tally::record(&mut self.tally.latency, intended, now);
                }
            }
            if self.interval.is_none() && now < timing.end {
                self.send(pool, slot, now);
            }
        }
    }

    fn lost(&mut self, _pool: &mut Pool, slot: usize, _now: Instant) {
        if !self.was_open[slot] {
            self.was_open[slot] = true;
            self.ramp.settled();
            self.control.failed.fetch_add(1, Ordering::Relaxed);
        }
        // Requests that died with the connection can never be answered.
        if let Some(timing) = self.timing {
            let lost = self.streams[slot]
                .inflight
                .drain(..)
                .filter(|&(_, intended)| timing.contains(intended))
                .count();
            self.measured_outstanding -= lost as u64;
            self.tally.unanswered += lost as u64;
        }
    }
}
