//! `live`: recipient connections stay open and ack every pushed blob with
//! ReceivedByRecipient; sender connections send to them on an open-loop
//! schedule. Each ciphertext starts with the intended send time (ns since the
//! shared clock base), so the latency is intended-send to receipt.
//! Slots `0..pairs` are recipients, `pairs..2*pairs` their senders.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::{
    Control, Options, Ramp, Stream, Tally, Window, count_other, instant_of, stamp_of,
};
use crate::pool::{Driver, Phase, Pool};
use crate::wire::{self, Reply, UpdateTemplate};

pub struct Live {
    control: Arc<Control>,
    pairs: usize,
    ramp: Ramp,
    recipient_ids: Vec<String>,
    streams: Vec<Stream>,
    interval: Duration,
    send_quantum: Duration,
    warmup: Duration,
    duration: Duration,
    timing: Option<Window>,
    next_send: Instant,
    next_pair: usize,
    measured_outstanding: u64,
    acks_sent: u64,
    ack_tag: String,
    was_open: Vec<bool>,
    message: Vec<u8>,
    pub tally: Tally,
}

impl Live {
    /// `rate_per_thread` msgs/s over this thread's `pairs`; warm-up, duration
    /// and ciphertext size come from `options`.
    pub fn new(
        control: Arc<Control>,
        pairs: usize,
        rate_per_thread: f64,
        options: &Options,
        thread_index: usize,
        pool: &mut Pool,
    ) -> Self {
        let unix_secs = pool.unix_secs();
        let recipient_ids: Vec<String> = (0..pairs).map(|_| wire::random_id(pool.rng())).collect();
        let streams = recipient_ids
            .iter()
            .enumerate()
            .map(|(pair, recipient)| {
                let tag = format!("l{thread_index:x}.{pair:x}");
                Stream::new(UpdateTemplate::new(
                    &tag,
                    recipient,
                    options.size_bytes.max(8),
                    true,
                    pool.rng(),
                    unix_secs,
                ))
            })
            .collect();
        Self {
            control,
            pairs,
            ramp: Ramp::new(2 * pairs, 256),
            recipient_ids,
            streams,
            interval: Duration::from_secs_f64(1.0 / rate_per_thread.max(0.001)),
            send_quantum: options.send_quantum,
            warmup: options.warmup,
            duration: options.duration,
            timing: None,
            next_send: Instant::now(),
            next_pair: 0,
            measured_outstanding: 0,
            acks_sent: 0,
            ack_tag: format!("a{thread_index:x}-"),
            was_open: vec![false; 2 * pairs],
            message: Vec::with_capacity(4096),
            tally: Tally::default(),
        }
    }

    fn next_open_pair(&mut self, pool: &Pool) -> Option<usize> {
        for _ in 0..self.pairs {
            let pair = self.next_pair;
            self.next_pair = (self.next_pair + 1) % self.pairs;
            if pool.conn(self.pairs + pair).phase == Phase::Open {
                return Some(pair);
            }
        }
        None
    }
}

impl Driver for Live {
    fn tick(&mut self, pool: &mut Pool, now: Instant) -> Option<Instant> {
        if self.control.stopped() {
            return None;
        }
        if !self.ramp.done() {
            let (pairs, recipients) = (self.pairs, &self.recipient_ids);
            let failed = self.ramp.advance(pool, now, |pool, slot| {
                if slot < pairs {
                    recipients[slot].clone()
                } else {
                    wire::random_id(pool.rng())
                }
            });
            self.control.failed.fetch_add(failed, Ordering::Relaxed);
        }
        let Some(timing) = self.timing else {
            match self.control.start() {
                Some(start) => {
                    let start = start.max(now);
                    self.timing = Some(Window::new(start, self.warmup, self.duration));
                    self.next_send = start;
                }
                None => return Some(now + Duration::from_millis(1)),
            }
            return Some(now);
        };
        while self.next_send <= now && self.next_send < timing.end {
            let Some(pair) = self.next_open_pair(pool) else {
                break;
            };
            let intended = self.next_send;
            self.streams[pair].next(&mut self.message, intended, stamp_of(intended));
            pool.send(self.pairs + pair, &self.message);
            self.tally.sent += 1;
            if timing.contains(intended) {
                self.measured_outstanding += 1;
            }
            self.next_send += self.interval;
        }
        if now >= timing.end {
            if self.measured_outstanding == 0 || now >= timing.grace_end {
                self.tally.unanswered += self.measured_outstanding;
                self.tally
                    .figures
                    .insert("acks_sent", self.acks_sent as f64);
                return None;
            }
            return Some(timing.grace_end);
        }
        Some(self.next_send.max(now + self.send_quantum).min(timing.end))
    }

    fn opened(&mut self, _pool: &mut Pool, slot: usize, _now: Instant) {
        self.ramp.settled();
        self.was_open[slot] = true;
        self.control.opened.fetch_add(1, Ordering::Relaxed);
    }

    fn received(&mut self, pool: &mut Pool, slot: usize, reply: &Reply, now: Instant) {
        if slot < self.pairs {
            if reply.kind != b"EncryptedUpdate" {
                count_other(&mut self.tally, reply);
                return;
            }
            let Some(stamp) = wire::ciphertext_stamp(reply.ciphertext) else {
                self.tally
                    .count(|| "EncryptedUpdate without stamp".to_string());
                return;
            };
            let intended = instant_of(stamp);
            if let Some(timing) = self.timing {
                if timing.contains(now) {
                    self.tally.completed += 1;
                }
                if timing.contains(intended) {
                    self.measured_outstanding = self.measured_outstanding.saturating_sub(1);
                    Tally::record(&mut self.tally.latency, intended, now);
                }
            }
            let mut ack_id = self.ack_tag.clone().into_bytes();
            wire::push_hex(&mut ack_id, self.acks_sent, wire::SEQ_HEX_DIGITS);
            wire::ack_json(
                &mut self.message,
                &ack_id,
                reply.envelope_id,
                pool.unix_secs(),
            );
            pool.send(slot, &self.message);
            self.acks_sent += 1;
            return;
        }
        let pair = slot - self.pairs;
        if reply.kind == b"Acknowledgment" && reply.status == b"Stored" {
            if let Some(intended) = self.streams[pair].complete(reply.request_id)
                && self.timing.is_some_and(|timing| timing.contains(intended))
            {
                Tally::record(&mut self.tally.secondary, intended, now);
            }
            return;
        }
        count_other(&mut self.tally, reply);
        if reply.kind == b"Error" || reply.status == b"Failed" {
            // A refused request will never be delivered.
            if let Some(intended) = self.streams[pair].complete(reply.request_id)
                && self.timing.is_some_and(|timing| timing.contains(intended))
            {
                self.measured_outstanding = self.measured_outstanding.saturating_sub(1);
            }
        }
    }

    fn lost(&mut self, _pool: &mut Pool, slot: usize, _now: Instant) {
        if !self.was_open[slot] {
            self.was_open[slot] = true;
            self.ramp.settled();
            self.control.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
