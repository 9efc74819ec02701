//! Storage work a shard has handed to its store and waits on, by token: what to do
//! when its completion comes back. One named struct per kind; `completions.rs`
//! routes each to its handler.

use crate::keyed::mailbox::Entry;
use crate::mesh::{Candidate, GatherTo, Part, ReplyTo};
use crate::protocol::Id64;
use crate::storage::{BlobId, HintRecord, RecoveryProofRecord};

/// The data of a read, by key in the order asked (`None`: the key is gone).
pub type ReadData = Vec<Option<Vec<u8>>>;

pub enum Pending {
    Store(StoreCommit),
    /// Deletions (acks, expiry, device-sync acks): nothing waits on them.
    Delete,
    Backlog(BacklogRead),
    DeviceSync(DeviceSyncCommit),
    Proof(ProofCommit),
    CandidatesRead(CandidatesRead),
    HintSwap(HintSwap),
    Offer(OfferCommit),
    PurgeStep(PurgeStep),
}

/// An EncryptedUpdate's insert (§5.2): the ack, then the live push.
pub struct StoreCommit {
    pub reply: ReplyTo,
    pub request_message_id: String,
    pub recipient: Id64,
    pub key: u64,
    pub id: BlobId,
    pub sender: Option<Id64>,
    pub ciphertext: Vec<u8>,
}

/// A chunk of a session's connect-time delivery being read (§4.6).
pub struct BacklogRead {
    pub session: u64,
    pub entries: Vec<Entry>,
}

/// A DeviceSyncMessage's insert (§5.6).
pub struct DeviceSyncCommit {
    pub reply: ReplyTo,
    pub request_message_id: String,
    pub identity: Id64,
    pub key: u64,
}

/// A RecoveryProofStore's upsert (§5.8).
pub struct ProofCommit {
    pub reply: ReplyTo,
    pub request_message_id: String,
    pub record: RecoveryProofRecord,
}

/// Federation: offload candidates whose data is being read (§11.7 step 2).
pub struct CandidatesRead {
    pub reply: flume::Sender<Vec<Candidate>>,
    pub entries: Vec<(Id64, Entry)>,
}

/// Federation: a blob replaced by its hint in one transaction (§11.7 step 4).
pub struct HintSwap {
    pub recipient: Id64,
    pub key: u64,
    pub hint: HintRecord,
    pub reply: flume::Sender<bool>,
}

/// Federation: a blob a peer offloaded here (§11.4).
pub struct OfferCommit {
    pub recipient: Id64,
    pub key: u64,
    pub id: BlobId,
    pub data: Vec<u8>,
    pub reply: flume::Sender<bool>,
}

/// A purge step's deletions: `part` is reported to the gather once committed.
pub struct PurgeStep {
    pub gather: GatherTo,
    pub part: Part,
}
