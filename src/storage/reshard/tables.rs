//! The tables a move knows: every sqlite table that holds records, with the column
//! that places its rows and the one that recognises a copied row, and the meta keys
//! of staging shard 0. A new sqlite table needs its entry here: `copy` refuses a
//! source with rows in a table it does not know, so a shard-count change refuses
//! to start.

/// Meta keys of staging shard 0 (removed before the commit).
pub(super) const META_COPIED: &str = "reshard_copied";
pub(super) const META_PROGRESS_PREFIX: &str = "reshard_progress_";

/// A table that is moved: rows go to `shard_of(shard_column)`, duplicates are
/// recognised by `dedupe_column`, and `renumbered` tables get new `key`s (from one
/// counter per target shared by all of them, as the serving shard's is).
/// `added_later` tables may be missing from a source written before they existed
/// (only the first source is opened through the store); such a source has none of
/// their rows.
pub(super) struct Table {
    pub(super) name: &'static str,
    pub(super) shard_column: &'static str,
    pub(super) dedupe_column: &'static str,
    pub(super) renumbered: bool,
    pub(super) added_later: bool,
}

/// Every table that holds records; `meta` is per-file and rewritten, not moved.
/// The order is the order of `Outcome::Moved`'s counts.
pub(super) const TABLES: [Table; 4] = [
    Table {
        name: "blobs",
        shard_column: "recipient",
        dedupe_column: "id",
        renumbered: true,
        added_later: false,
    },
    Table {
        name: "device_sync",
        shard_column: "identity",
        dedupe_column: "id",
        renumbered: true,
        added_later: false,
    },
    Table {
        name: "recovery_proofs",
        shard_column: "key_hash",
        dedupe_column: "key_hash",
        renumbered: false,
        added_later: false,
    },
    Table {
        // A hint's blob id is unique: the blob is deleted in the transaction that
        // writes its hint (§11.7 step 4), so it is never offloaded twice.
        name: "forwarding_hints",
        shard_column: "routing_id",
        dedupe_column: "blob_id",
        renumbered: true,
        added_later: true,
    },
];
pub(super) const META_TABLE: &str = "meta";
