//! The mesh: one bounded flume channel into every shard, and the one enum that lists
//! every message that crosses shards. Requests use `try_send` and are refused with
//! `overloaded` when the target's queue is full; replies and notifications, which
//! must not be lost while their sender is busy, go through a per-destination
//! outbox drained by a forwarder task, so a shard never blocks on a peer.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::rc::Rc;

use crate::protocol::Id64;
use crate::protocol::decode::Handshake;
use crate::protocol::encode::Notification;
use crate::session::nonce::NonceVerdict;
use crate::storage::BlobId;

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

/// Every cross-shard message.
#[derive(Debug)]
pub enum MeshMessage {
    /// An accepted connection whose Handshake names a routing_id this shard owns.
    /// `fd` is a duplicate the receiver now owns; `remainder` holds bytes the
    /// accepting shard read past the Handshake (pipelined frames).
    Session {
        fd: RawFd,
        remainder: Vec<u8>,
        handshake: Box<Handshake>,
        slot: super::accept::ConnectionSlot,
    },
    /// Check and record a handshake nonce for a key this shard owns (§4.3 step 4).
    NonceCheck {
        key: Id64,
        nonce: [u8; 32],
        now: u64,
        verdict: flume::Sender<NonceVerdict>,
    },
    /// Store an EncryptedUpdate for a recipient this shard owns (§5.2).
    Store {
        reply: ReplyTo,
        request_message_id: String,
        recipient: Id64,
        ciphertext: Vec<u8>,
        sender: Option<Id64>,
    },
    /// The reply frame for a request carried out by another shard.
    Reply { reply: ReplyTo, frame: Vec<u8> },
    /// Several frames for one slot (the device-sync snapshot of §4.6).
    ReplyFrames {
        reply: ReplyTo,
        frames: Vec<Vec<u8>>,
    },
    /// A live device-sync push, ordered after the session's pending replies.
    PushOrdered { session: u64, frame: Vec<u8> },
    /// Store a DeviceSyncMessage for an identity this shard owns (§5.6).
    StoreDeviceSync {
        reply: ReplyTo,
        request_message_id: String,
        identity: Id64,
        target: Id64,
        sender_device_id: String,
        payload: Vec<u8>,
        version: u64,
    },
    /// DeviceSyncAck (§5.7).
    AckDeviceSync {
        identity: Id64,
        target: Id64,
        id: uuid::Uuid,
    },
    /// A session with a device_id opened: register it for live device-sync pushes
    /// and answer with the pending messages into `slot` (§4.6 item 3).
    RegisterDevice {
        identity: Id64,
        device: Id64,
        session: SessionRef,
        slot: u64,
    },
    UnregisterDevice {
        identity: Id64,
        device: Id64,
        session: SessionRef,
    },
    /// RecoveryProofStore for a hash this shard owns (§5.8).
    StoreProof {
        reply: ReplyTo,
        request_message_id: String,
        key_hash: Id64,
        proof_data: Vec<u8>,
    },
    /// The part of a RecoveryProofQuery this shard owns (§5.9).
    QueryProofs {
        gather: GatherTo,
        key_hashes: Vec<Id64>,
    },
    /// Purge step 3 (§5.11).
    PurgeDeviceSync { gather: GatherTo, identity: Id64 },
    /// Purge step 4 (§5.11).
    PurgeProof { gather: GatherTo, key_hash: Id64 },
    /// One shard's contribution to a gather.
    GatherPart { gather: GatherTo, part: Part },
    /// Graceful shutdown (§14.1), from the main thread.
    Shutdown,
    /// Federation (§11.7 step 2): this shard's oldest offload candidates, with
    /// their data, excluding blobs in flight or refused by the chosen peer.
    OffloadCandidates {
        limit: usize,
        exclude: std::sync::Arc<ahash::HashSet<BlobId>>,
        reply: flume::Sender<Vec<super::offload::Candidate>>,
    },
    /// Federation (§11.7 step 4): the peer accepted the blob; replace it by a hint.
    /// The reply says whether the blob was still there and the hint committed.
    OffloadCommit {
        recipient: Id64,
        key: u64,
        id: BlobId,
        relay_url: String,
        reply: flume::Sender<bool>,
    },
    /// Federation acceptor (§11.4 item 4): store an offered blob; the reply says
    /// whether it committed.
    AcceptOffload {
        recipient: Id64,
        data: Vec<u8>,
        created_at_secs: u64,
        hop_count: u8,
        reply: flume::Sender<bool>,
    },
    /// A notification for a sender whose sessions this shard owns (§7.3).
    Notify {
        sender: Id64,
        blob_id: BlobId,
        status: Notification,
    },
}

/// This shard's ends of the mesh.
pub struct Mesh {
    senders: Vec<flume::Sender<MeshMessage>>,
    outboxes: Vec<RefCell<VecDeque<MeshMessage>>>,
    forwarder_running: Vec<std::cell::Cell<bool>>,
}

impl Mesh {
    pub fn new(senders: Vec<flume::Sender<MeshMessage>>) -> Mesh {
        let shards = senders.len();
        Mesh {
            senders,
            outboxes: (0..shards).map(|_| RefCell::new(VecDeque::new())).collect(),
            forwarder_running: (0..shards).map(|_| std::cell::Cell::new(false)).collect(),
        }
    }

    pub fn shards(&self) -> usize {
        self.senders.len()
    }

    /// Sends a request, or gives it back when the target's queue is full.
    // The message comes back by value so the caller can answer for it; boxing every
    // mesh message to shrink the error would cost an allocation per request.
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, to: usize, message: MeshMessage) -> Result<(), MeshMessage> {
        self.senders[to]
            .try_send(message)
            .map_err(|e| e.into_inner())
    }

    /// Sends a reply or notification without blocking and without losing it: when
    /// the target's queue is full it waits in this shard's outbox, in order. The
    /// outbox is bounded by the requests in flight, which admission bounds.
    pub fn post(self: &Rc<Self>, to: usize, message: MeshMessage) {
        if self.outboxes[to].borrow().is_empty() {
            match self.senders[to].try_send(message) {
                Ok(()) => return,
                Err(flume::TrySendError::Disconnected(_)) => return,
                Err(flume::TrySendError::Full(message)) => {
                    self.outboxes[to].borrow_mut().push_back(message)
                }
            }
        } else {
            self.outboxes[to].borrow_mut().push_back(message);
        }
        if !self.forwarder_running[to].replace(true) {
            let mesh = Rc::clone(self);
            glommio::spawn_local(async move {
                loop {
                    let next = mesh.outboxes[to].borrow_mut().pop_front();
                    let Some(message) = next else { break };
                    if mesh.senders[to].send_async(message).await.is_err() {
                        mesh.outboxes[to].borrow_mut().clear();
                        break;
                    }
                }
                mesh.forwarder_running[to].set(false);
            })
            .detach();
        }
    }
}
