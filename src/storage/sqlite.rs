//! The persistent `sqlite` backend (§10.1, §10.3): one database file per shard,
//! `shard-<i>.db` in WAL mode.
