//! What arrives on a connection of the pool: one read per readiness event, its
//! plaintext (with `--tls`, through the connection's session), the upgrade reply,
//! then WebSocket frames, whose messages go to the scenario's `Driver` (with
//! `--noise`, opened and cut into frames first). A child of `pool`, so it works on
//! the connections' private state.

use std::time::Instant;

use super::{Driver, Phase, Pool, UPGRADE_HEAD_BYTES_MAX};
use crate::net::{self, EVENT_HUP, EVENT_IN, EVENT_OUT};
use crate::wire::{self, UpgradeReply};

/// One readiness event on the connection `key` names.
pub(super) fn handle(pool: &mut Pool, driver: &mut impl Driver, key: u64, events: u32) {
    let slot = (key & 0xffff_ffff) as usize;
    let generation = (key >> 32) as u32;
    if pool.conns[slot].generation != generation || pool.conns[slot].fd < 0 {
        return;
    }
    let now = Instant::now();
    if pool.conns[slot].phase == Phase::Connecting {
        if events & (EVENT_OUT | EVENT_HUP) != 0 && !pool.connected(slot) {
            pool.fail(slot, driver, now);
        }
        return;
    }
    if events & EVENT_OUT != 0 {
        pool.flush_one(slot);
    }
    if events & (EVENT_IN | EVENT_HUP) == 0 {
        return;
    }
    let mut buffer = std::mem::take(&mut pool.read_buffer);
    let count = match net::read(pool.conns[slot].fd, &mut buffer) {
        Ok(0) => {
            pool.read_buffer = buffer;
            pool.stats.closed_by_relay += 1;
            pool.fail(slot, driver, now);
            return;
        }
        Ok(count) => count,
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ) =>
        {
            pool.read_buffer = buffer;
            return;
        }
        Err(_) => {
            pool.read_buffer = buffer;
            pool.stats.closed_by_relay += 1;
            pool.fail(slot, driver, now);
            return;
        }
    };
    let now = Instant::now();
    if pool.conns[slot].tls.is_none() {
        take_input(pool, driver, slot, generation, &mut buffer[..count], now);
        pool.read_buffer = buffer;
        return;
    }
    let mut plain = std::mem::take(&mut pool.plain);
    plain.clear();
    let session = pool.conns[slot].tls.as_mut().expect("checked above");
    let opened = session.open(&buffer[..count], &mut plain);
    // Handshake messages, or the request held until the handshake finished.
    if session.wants_write() {
        pool.mark_dirty(slot);
    }
    pool.read_buffer = buffer;
    match opened {
        Err(error) => {
            pool.stats.tls_failed(error);
            pool.fail(slot, driver, now);
        }
        Ok(closed) => {
            if !plain.is_empty() {
                take_input(pool, driver, slot, generation, &mut plain, now);
            }
            if closed && pool.conns[slot].generation == generation {
                pool.stats.closed_by_relay += 1;
                pool.fail(slot, driver, now);
            }
        }
    }
    pool.plain = plain;
}

/// Hands the bytes of one read (decrypted, with TLS) to `consume`, after what an
/// earlier read left of an incomplete frame; keeps what is left of this one.
fn take_input(
    pool: &mut Pool,
    driver: &mut impl Driver,
    slot: usize,
    generation: u32,
    input: &mut [u8],
    now: Instant,
) {
    let count = input.len();
    let mut pending = std::mem::take(&mut pool.conns[slot].rx);
    let outcome = if pending.is_empty() {
        let outcome = consume(pool, driver, slot, generation, input, now);
        if let Consumed::Upto(used) = outcome {
            pending.extend_from_slice(&input[used..count]);
        }
        outcome
    } else {
        pending.extend_from_slice(input);
        let outcome = consume(pool, driver, slot, generation, &mut pending, now);
        if let Consumed::Upto(used) = outcome {
            pending.drain(..used);
        }
        outcome
    };
    match outcome {
        Consumed::Upto(_) if pool.conns[slot].generation == generation => {
            pool.conns[slot].rx = pending
        }
        Consumed::Upto(_) => {}
        Consumed::Failed => pool.fail(slot, driver, now),
    }
}

enum Consumed {
    /// Bytes before this index were used; the rest is an incomplete frame.
    Upto(usize),
    /// The connection must end (bad upgrade reply, Close frame, protocol error).
    Failed,
}

fn consume(
    pool: &mut Pool,
    driver: &mut impl Driver,
    slot: usize,
    generation: u32,
    bytes: &mut [u8],
    now: Instant,
) -> Consumed {
    let mut at = 0;
    if pool.conns[slot].phase == Phase::Upgrading {
        match wire::parse_upgrade_reply(bytes) {
            UpgradeReply::Incomplete if bytes.len() > UPGRADE_HEAD_BYTES_MAX => {
                return Consumed::Failed;
            }
            UpgradeReply::Incomplete => return Consumed::Upto(0),
            UpgradeReply::Refused(status) => {
                *pool.stats.refused_upgrades.entry(status).or_default() += 1;
                return Consumed::Failed;
            }
            UpgradeReply::Accepted(head_bytes) => {
                at = head_bytes;
                match pool.target.noise {
                    Some(public) => pool.open_noise(slot, &public),
                    None => send_handshake(pool, slot, generation),
                }
            }
        }
    }
    while let Some(frame) = wire::decode_frame(&mut bytes[at..]) {
        let payload = at + frame.payload.start..at + frame.payload.end;
        at = payload.end;
        match frame.opcode {
            wire::OPCODE_BINARY | wire::OPCODE_TEXT | wire::OPCODE_CONTINUATION => {
                let conn = &mut pool.conns[slot];
                if frame.fin && conn.fragment.is_empty() {
                    deliver(pool, driver, slot, &bytes[payload], now);
                } else {
                    conn.fragment.extend_from_slice(&bytes[payload]);
                    if frame.fin {
                        let message = std::mem::take(&mut conn.fragment);
                        deliver(pool, driver, slot, &message, now);
                    }
                }
                if pool.conns[slot].generation != generation {
                    return Consumed::Upto(at);
                }
            }
            wire::OPCODE_CLOSE => {
                let code = bytes[payload]
                    .get(..2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]))
                    .unwrap_or(1005);
                *pool.stats.close_codes.entry(code).or_default() += 1;
                return Consumed::Failed;
            }
            wire::OPCODE_PING => {
                let mask = pool.rng.mask();
                wire::encode_frame(&mut pool.conns[slot].tx, 0xA, &bytes[payload], mask);
                pool.mark_dirty(slot);
            }
            _ => {}
        }
    }
    Consumed::Upto(at)
}

/// Sends `slot`'s Handshake; the HandshakeAck opens it.
fn send_handshake(pool: &mut Pool, slot: usize, generation: u32) {
    let mut message = std::mem::take(&mut pool.message);
    let message_id = format!("h-{slot}-{generation}");
    wire::handshake_json(
        &mut message,
        &message_id,
        &pool.conns[slot].client_id,
        pool.unix_secs,
    );
    pool.send(slot, &message);
    pool.message = message;
    pool.conns[slot].phase = Phase::AwaitAck;
}

/// A data message: a protocol message, or on a Noise session the opening's reply
/// or a transport message carrying (parts of) protocol messages.
fn deliver(pool: &mut Pool, driver: &mut impl Driver, slot: usize, message: &[u8], now: Instant) {
    let generation = pool.conns[slot].generation;
    let opening = pool.conns[slot].phase == Phase::Opening;
    let Some(session) = pool.conns[slot].noise.as_mut() else {
        return deliver_frame(pool, driver, slot, message, now);
    };
    let opened = if opening {
        session.finish(message)
    } else {
        session.open(message)
    };
    if opened.is_err() {
        pool.stats.malformed_messages += 1;
        return;
    }
    if opening {
        return send_handshake(pool, slot, generation);
    }
    while let Some(frame) = pool.conns[slot].noise.as_mut().and_then(|s| s.next_frame()) {
        deliver_frame(pool, driver, slot, &frame, now);
        if pool.conns[slot].generation != generation {
            return;
        }
    }
}

fn deliver_frame(
    pool: &mut Pool,
    driver: &mut impl Driver,
    slot: usize,
    message: &[u8],
    now: Instant,
) {
    let Some(reply) = wire::parse_reply(message) else {
        pool.stats.malformed_messages += 1;
        return;
    };
    if pool.conns[slot].phase == Phase::AwaitAck && reply.kind == b"HandshakeAck" {
        pool.conns[slot].phase = Phase::Open;
        if let Some(session) = &pool.conns[slot].tls {
            *pool
                .stats
                .tls_sessions
                .entry(session.describe())
                .or_default() += 1;
        }
        driver.opened(pool, slot, now);
    } else {
        driver.received(pool, slot, &reply, now);
    }
}
