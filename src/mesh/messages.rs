//! The mesh vocabulary: every message that crosses executors, one named struct per
//! kind, and the addresses they carry. A handler takes its message whole.
//!
//! This module imports nothing from the shards or the federation executor that
//! handle these messages: only the protocol's types, the per-key indices' verdicts,
//! storage ids and the process-wide connection slot.

use crate::keyed::nonce::NonceVerdict;
use crate::noise::Channel;
use crate::process::ConnectionSlot;
use crate::protocol::Id64;
use crate::protocol::decode::Handshake;
use crate::protocol::encode::Notification;
use crate::storage::BlobId;
use crate::transport::Parts;

/// Where a reply goes: a request slot of a session on some shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    pub shard: usize,
    pub session: u64,
    pub slot: u64,
}

/// A session on some shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionRef {
    pub shard: usize,
    pub session: u64,
}

/// A scatter-gather request (a proof query or a purge) waiting on some shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatherTo {
    pub shard: usize,
    pub id: u64,
}

/// One shard's contribution to a gather.
#[derive(Debug)]
pub enum Part {
    /// Unexpired proofs found for the queried hashes.
    Proofs(Vec<(Id64, Vec<u8>)>),
    BlobsDeleted(u64),
    DeviceSyncDeleted(u64),
    ProofsDeleted(u64),
    /// A storage step failed: the reply is `storage_unavailable`.
    Failed,
}

/// Every cross-shard message; each kind's handler is named in `shard/dispatch.rs`.
#[derive(Debug)]
pub enum MeshMessage {
    Session(HandedSession),
    NonceCheck(NonceCheck),
    Store(StoreBlob),
    Reply(Reply),
    ReplyFrames(ReplyFrames),
    PushOrdered(PushOrdered),
    StoreDeviceSync(StoreDeviceSync),
    AckDeviceSync(AckDeviceSync),
    RegisterDevice(RegisterDevice),
    UnregisterDevice(UnregisterDevice),
    StoreProof(StoreProof),
    QueryProofs(QueryProofs),
    PurgeDeviceSync(PurgeDeviceSync),
    PurgeProof(PurgeProof),
    GatherPart(GatherPart),
    /// Graceful shutdown (§14.1), from the main thread.
    Shutdown,
    OffloadCandidates(OffloadCandidates),
    OffloadCommit(OffloadCommit),
    AcceptOffload(AcceptOffload),
    Notify(Notify),
}

/// An accepted connection whose Handshake names a routing_id the receiving shard
/// owns. `transport` is the connection taken apart (its fd and any TLS state),
/// owned by the receiver; `remainder` holds bytes the accepting shard read past the
/// Handshake (pipelined frames). On a Noise session (§15.1) `noise` is its cipher
/// state, holding any plaintext decrypted past the Handshake frame; `remainder`
/// is then the WebSocket bytes after the message that carried it.
#[derive(Debug)]
pub struct HandedSession {
    pub transport: Parts,
    pub remainder: Vec<u8>,
    pub noise: Option<Box<Channel>>,
    pub handshake: Box<Handshake>,
    pub slot: ConnectionSlot,
}

/// Check and record a handshake nonce for a key the receiver owns (§4.3 step 4).
#[derive(Debug)]
pub struct NonceCheck {
    pub key: Id64,
    pub nonce: [u8; 32],
    pub now: u64,
    pub verdict: flume::Sender<NonceVerdict>,
}

/// Store an EncryptedUpdate for a recipient the receiver owns (§5.2).
#[derive(Debug)]
pub struct StoreBlob {
    pub reply: ReplyTo,
    pub request_message_id: String,
    pub recipient: Id64,
    pub ciphertext: Vec<u8>,
    pub sender: Option<Id64>,
}

/// The reply frame for a request carried out by another shard.
#[derive(Debug)]
pub struct Reply {
    pub reply: ReplyTo,
    pub frame: Vec<u8>,
}

/// Several frames for one slot (the device-sync snapshot of §4.6).
#[derive(Debug)]
pub struct ReplyFrames {
    pub reply: ReplyTo,
    pub frames: Vec<Vec<u8>>,
}

/// A live device-sync push, ordered after the session's pending replies.
#[derive(Debug)]
pub struct PushOrdered {
    pub session: u64,
    pub frame: Vec<u8>,
}

/// Store a DeviceSyncMessage for an identity the receiver owns (§5.6).
#[derive(Debug)]
pub struct StoreDeviceSync {
    pub reply: ReplyTo,
    pub request_message_id: String,
    pub identity: Id64,
    pub target: Id64,
    pub sender_device_id: String,
    pub payload: Vec<u8>,
    pub version: u64,
}

/// DeviceSyncAck (§5.7).
#[derive(Debug)]
pub struct AckDeviceSync {
    pub identity: Id64,
    pub target: Id64,
    pub id: uuid::Uuid,
}

/// A session with a device_id opened: register it for live device-sync pushes and
/// answer with the pending messages into `slot` (§4.6 item 3).
#[derive(Debug)]
pub struct RegisterDevice {
    pub identity: Id64,
    pub device: Id64,
    pub session: SessionRef,
    pub slot: u64,
}

/// A session with a device_id closed.
#[derive(Debug)]
pub struct UnregisterDevice {
    pub identity: Id64,
    pub device: Id64,
    pub session: SessionRef,
}

/// RecoveryProofStore for a hash the receiver owns (§5.8).
#[derive(Debug)]
pub struct StoreProof {
    pub reply: ReplyTo,
    pub request_message_id: String,
    pub key_hash: Id64,
    pub proof_data: Vec<u8>,
}

/// The part of a RecoveryProofQuery the receiver owns (§5.9).
#[derive(Debug)]
pub struct QueryProofs {
    pub gather: GatherTo,
    pub key_hashes: Vec<Id64>,
}

/// Purge step 3 (§5.11).
#[derive(Debug)]
pub struct PurgeDeviceSync {
    pub gather: GatherTo,
    pub identity: Id64,
}

/// Purge step 4 (§5.11).
#[derive(Debug)]
pub struct PurgeProof {
    pub gather: GatherTo,
    pub key_hash: Id64,
}

/// One shard's contribution to a gather.
#[derive(Debug)]
pub struct GatherPart {
    pub gather: GatherTo,
    pub part: Part,
}

/// Federation (§11.7 step 2): the receiver's oldest offload candidates, with their
/// data, excluding blobs in flight or refused by the chosen peer.
#[derive(Debug)]
pub struct OffloadCandidates {
    pub limit: usize,
    pub exclude: std::sync::Arc<ahash::HashSet<BlobId>>,
    pub reply: flume::Sender<Vec<Candidate>>,
}

/// One offload candidate with its data (§11.7 step 2).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub shard: usize,
    pub key: u64,
    pub id: BlobId,
    pub recipient: Id64,
    pub created_at_secs: u64,
    pub seq: u64,
    pub data: Vec<u8>,
}

/// Federation (§11.7 step 4): the peer accepted the blob; replace it by a hint. The
/// reply says whether the blob was still there and the hint committed.
#[derive(Debug)]
pub struct OffloadCommit {
    pub recipient: Id64,
    pub key: u64,
    pub id: BlobId,
    pub relay_url: String,
    pub reply: flume::Sender<bool>,
}

/// Federation acceptor (§11.4 item 4): store an offered blob; the reply says
/// whether it committed.
#[derive(Debug)]
pub struct AcceptOffload {
    pub recipient: Id64,
    pub data: Vec<u8>,
    pub created_at_secs: u64,
    pub hop_count: u8,
    pub reply: flume::Sender<bool>,
}

/// A notification for a sender whose sessions the receiver owns (§7.3).
#[derive(Debug)]
pub struct Notify {
    pub sender: Id64,
    pub blob_id: BlobId,
    pub status: Notification,
}

/// Work for the federation executor, from the shards and the main thread.
#[derive(Debug)]
pub enum ToFederation {
    /// An upgraded `/federation` connection (§11.4).
    Inbound(InboundLink),
    /// Every listener is bound: dial the peers, start reports and offloading
    /// (§13.4 step 5).
    Start,
    /// Graceful shutdown (§14.1 steps 2 and 4).
    Shutdown,
}

/// An upgraded `/federation` connection, taken apart (`transport` is owned by the
/// receiver); `remainder` holds bytes read past the upgrade request.
#[derive(Debug)]
pub struct InboundLink {
    pub transport: Parts,
    pub remainder: Vec<u8>,
    pub slot: ConnectionSlot,
}
