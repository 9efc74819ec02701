//! The offload manager (PROTOCOL.md §11.7): every capacity interval, above the
//! threshold, the oldest hop-0 blobs relay-wide go to the least-full eligible peer.
//! A blob is deleted here only after the peer accepted it, by its owner shard, in
//! the transaction that writes its hint; refusals, timeouts and lost links keep it.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::limits::{OFFLOAD_BATCH_BLOBS_MAX, OFFLOAD_TOO_LARGE_BLOBS_MAX};
use crate::mesh::{Candidate, MeshMessage, OffloadCandidates, OffloadCommit};
use crate::metrics::OffloadSentResult;
use crate::process::unix_now;
use crate::storage::BlobId;

use super::messages::{self, FedMessage};
use super::node::{AckOutcome, LinkOut, Node, within};
use super::registry::{BoundedSet, LinkId};

pub async fn manage(node: Rc<Node>) {
    let interval = Duration::from_secs(node.config.federation_capacity_interval_secs);
    let mut too_large = BoundedSet::new(OFFLOAD_TOO_LARGE_BLOBS_MAX);
    loop {
        glommio::timer::sleep(interval).await;
        if node.stopping.get() {
            return;
        }
        tick(&node, &mut too_large).await;
    }
}

/// Whether `used` bytes are below the offload threshold: §11.7 acts unless
/// `used / RELAY_MAX_STORAGE_BYTES < threshold`, so a ratio exactly at the
/// threshold still offloads.
fn below_threshold(node: &Node, used: u64) -> bool {
    let max = node.config.max_storage_bytes;
    max == 0 || (used as f64 / max as f64) < node.config.federation_offload_threshold
}

/// An offer sent, with where its OffloadAck will arrive.
type Offered = (Candidate, flume::Receiver<AckOutcome>);

/// The peer a round offers to, over its outbound link.
struct Target {
    peer: String,
    link: LinkId,
    url: String,
}

/// Shutdown has begun (§14.1): no new offers.
fn draining(node: &Node) -> bool {
    node.shared
        .draining
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// One offload round.
async fn tick(node: &Rc<Node>, too_large: &mut BoundedSet<BlobId>) {
    if draining(node) {
        return;
    }
    let used = node.used_bytes();
    if below_threshold(node, used) {
        return;
    }
    let Some((target, mut exclude)) = choose(node) else {
        return;
    };
    exclude.extend(too_large.iter().copied());
    let candidates = gather(node, Arc::new(exclude)).await;
    let offered = offer(node, target.link, candidates, used, too_large).await;
    settle(node, &target, offered).await;
}

/// The least-full eligible peer with an outbound link (§11.7 step 1), and the
/// blobs it refused before (not offered to it again).
fn choose(node: &Node) -> Option<(Target, ahash::HashSet<BlobId>)> {
    let registry = node.registry.borrow();
    let peer = registry.choose(&node.relay_id, node.config.federation_offload_refuse)?;
    let entry = registry.get(peer).expect("chosen from the registry");
    let (Some(link), Some(url)) = (entry.outbound, entry.url.clone()) else {
        return None;
    };
    let exclude: ahash::HashSet<BlobId> = entry.refused.iter().copied().collect();
    let target = Target {
        peer: peer.to_owned(),
        link,
        url,
    };
    Some((target, exclude))
}

/// Queues the candidates on the link as OffloadBlobs, oldest first (step 3), each
/// awaited in `pending_acks`; a frame over the message limit is remembered in
/// `too_large`.
async fn offer(
    node: &Node,
    link: LinkId,
    candidates: Vec<Candidate>,
    mut used: u64,
    too_large: &mut BoundedSet<BlobId>,
) -> Vec<Offered> {
    let limit = node.message_size_limit();
    let mut offered: Vec<Offered> = Vec::new();
    for candidate in candidates {
        // Step 7, ahead of time: offer no more than it takes to fall below.
        if below_threshold(node, used) || draining(node) || node.stopping.get() {
            break;
        }
        let blob_id = candidate.id.to_string();
        let frame = offer_frame(&candidate, blob_id.clone());
        if frame.len() > limit {
            too_large.insert(candidate.id);
            continue;
        }
        let (answer, outcome) = flume::bounded(1);
        node.pending_acks
            .borrow_mut()
            .insert(blob_id.clone(), (link.0, answer));
        if !queue(node, link, frame).await {
            node.pending_acks.borrow_mut().remove(&blob_id);
            break;
        }
        used = used.saturating_sub(candidate.data.len() as u64);
        offered.push((candidate, outcome));
    }
    offered
}

/// The OffloadBlob for a candidate (a hop-0 blob, §11.7 step 3).
fn offer_frame(candidate: &Candidate, blob_id: String) -> Vec<u8> {
    messages::encode(
        &FedMessage::OffloadBlob {
            blob_id,
            routing_id: candidate.recipient.to_hex(),
            integrity_hash: messages::integrity_hash(&candidate.data),
            data: candidate.data.clone(),
            created_at_secs: candidate.created_at_secs,
            hop_count: 0,
        },
        unix_now(),
    )
}

/// Waits for each offer's OffloadAck, all within one peer timeout (steps 4-6): an
/// accepted blob is committed away, a refused one remembered for this peer, an
/// unanswered one kept.
async fn settle(node: &Node, target: &Target, offered: Vec<Offered>) {
    let deadline = Instant::now() + node.peer_timeout();
    for (candidate, outcome) in offered {
        let wait = deadline.saturating_duration_since(Instant::now());
        let answer = within(wait, outcome.recv_async())
            .await
            .and_then(Result::ok);
        node.pending_acks
            .borrow_mut()
            .remove(&candidate.id.to_string());
        match answer {
            Some(AckOutcome::Accepted) => {
                node.metrics().inc_offload_sent(OffloadSentResult::Accepted);
                // Drain waits for this commit too (§14.1 step 4).
                node.committing.set(node.committing.get() + 1);
                commit(node, &candidate, &target.url).await;
                node.committing.set(node.committing.get() - 1);
            }
            Some(AckOutcome::Refused(reason)) => {
                node.metrics().inc_offload_sent(OffloadSentResult::Refused);
                node.registry
                    .borrow_mut()
                    .refused(&target.peer, candidate.id, &reason);
            }
            None => node.metrics().inc_offload_sent(OffloadSentResult::Timeout),
        }
    }
}

/// Queues a frame on the link, waiting for room up to the peer timeout; false if
/// the link is gone or stuck.
async fn queue(node: &Node, link: LinkId, frame: Vec<u8>) -> bool {
    let out = node.links.borrow().get(&link.0).map(|e| e.out.clone());
    let Some(out) = out else { return false };
    let queued = within(node.peer_timeout(), out.send_async(LinkOut::Frame(frame))).await;
    matches!(queued, Some(Ok(())))
}

/// The oldest candidates relay-wide (§11.7 step 2): each shard's oldest, merged.
async fn gather(node: &Node, exclude: Arc<ahash::HashSet<BlobId>>) -> Vec<Candidate> {
    let mut answers = Vec::new();
    for shard in &node.shards {
        let (reply, answer) = flume::bounded(1);
        let message = MeshMessage::OffloadCandidates(OffloadCandidates {
            limit: OFFLOAD_BATCH_BLOBS_MAX,
            exclude: Arc::clone(&exclude),
            reply,
        });
        if shard.send_async(message).await.is_ok() {
            answers.push(answer);
        }
    }
    let mut all = Vec::new();
    for answer in answers {
        if let Ok(found) = answer.recv_async().await {
            all.extend(found);
        }
    }
    all.sort_by_key(|c| (c.created_at_secs, c.seq, c.shard, c.key));
    all.truncate(OFFLOAD_BATCH_BLOBS_MAX);
    all
}

/// Step 4 on the owner shard; waits for its commit so the next tick sees it.
async fn commit(node: &Node, candidate: &Candidate, url: &str) {
    let (reply, answer) = flume::bounded(1);
    let message = MeshMessage::OffloadCommit(OffloadCommit {
        recipient: candidate.recipient,
        key: candidate.key,
        id: candidate.id,
        relay_url: url.to_owned(),
        reply,
    });
    if node.shards[candidate.shard]
        .send_async(message)
        .await
        .is_ok()
    {
        let _ = answer.recv_async().await;
    }
}
