//! The relay-to-relay federation protocol (PROTOCOL.md §11). [`messages`] turns bytes
//! into typed federation messages and back; no I/O, no storage, no clock.

pub mod messages;
