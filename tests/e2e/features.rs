//! End-to-end tests of device sync (§5.6, §5.7), recovery proofs (§5.8-§5.10),
//! purge (§5.11) and AccountRevoked (§5.12) against the relay binary, including
//! owners on other shards than the session and persistence across a restart.

use crate::common::*;
use serde_json::{Value, json};

const D1: &str = "e22f9a018051dff57acb7463844564c7ace1e00fd315972863c9bcf41a09ccec";
const D2: &str = "6b8550e905f742f37404fb8317caca94ffecb000c0a96c5c040fe85e0705cfae";
const HASH: &str = "4ba705c25362ebd6b2ade2c57108919a1d88a537dd7d0b698f6f412b43df50b5";
/// 64 x "0": shard 3 of 4, while B is on shard 1 (Appendix A.2).
const TOKEN: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn session(relay: &Relay, client_id: &str, extra: Value) -> Client {
    let mut payload = json!({"type": "Handshake", "client_id": client_id});
    payload
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let mut client = relay.connect();
    client.send_json(&envelope("hs", payload));
    assert_eq!(client.recv_json()["payload"]["type"], "HandshakeAck");
    client
}

fn device_sync(
    message_id: &str,
    identity: &str,
    target: &str,
    version: u64,
    data: &[u8],
) -> String {
    envelope(
        message_id,
        json!({"type": "DeviceSyncMessage", "identity_id": identity, "target_device_id": target,
               "sender_device_id": "phone-1", "encrypted_payload": data, "version": version}),
    )
}

/// Sends a request and returns its reply, skipping delivery notifications.
fn request(client: &mut Client, json: &str) -> Value {
    client.send_json(json);
    loop {
        let message = client.recv_json();
        let status = &message["payload"]["status"];
        if status != "Delivered" && status != "ReceivedByRecipient" {
            return message;
        }
    }
}

fn assert_stored_without_blob_id(reply: &Value, message_id: &str) {
    assert_eq!(reply["payload"]["type"], "Acknowledgment", "{reply}");
    assert_eq!(reply["payload"]["status"], "Stored", "{reply}");
    assert_eq!(reply["payload"]["message_id"], message_id);
    assert!(reply["payload"].get("blob_id").is_none(), "{reply}");
}

/// Device sync on connect, live and acked, on sessions over `wire` (`noise.rs`
/// runs it over Noise).
pub(crate) fn device_sync_flow(shards: &str, routing: Value, wire: Wire) {
    let dir = TempDir::new("devsync");
    let relay = Relay::start_over(wire, dir.path(), &[("RELAY_SHARDS", shards)]);
    let mut extra = json!({"device_id": D1});
    extra
        .as_object_mut()
        .unwrap()
        .extend(routing.as_object().unwrap().clone());
    let mut phone = session(&relay, B, json!({"device_id": D2}));
    // Offline delivery: stored before D1 connects, delivered by version.
    for (id, version) in [("v5", 5), ("v3", 3)] {
        assert_stored_without_blob_id(
            &request(
                &mut phone,
                &device_sync(id, B, D1, version, &[version as u8]),
            ),
            id,
        );
    }
    let mut laptop = session(&relay, B, extra);
    let first = laptop.recv_json();
    let second = laptop.recv_json();
    assert_eq!(first["payload"]["type"], "DeviceSyncMessage");
    assert_eq!(first["payload"]["version"], 3);
    assert_eq!(second["payload"]["version"], 5);
    assert_eq!(first["payload"]["sender_device_id"], "phone-1");
    assert_eq!(first["payload"]["identity_id"], B);
    assert_eq!(first["payload"]["target_device_id"], D1);
    // Live push while connected.
    assert_stored_without_blob_id(
        &request(&mut phone, &device_sync("v9", B, D1, 9, &[9])),
        "v9",
    );
    let live = laptop.recv_json();
    assert_eq!(live["payload"]["encrypted_payload"], json!([9]));
    // Acks delete: after acking two, only one comes back on reconnect.
    for message in [&first, &live] {
        let ack = json!({"type": "DeviceSyncAck", "message_id": message["message_id"], "synced_version": 1});
        laptop.send_json(&envelope("dsa", ack));
    }
    // A following request's reply comes first: the acks had no reply.
    let probe = request(&mut laptop, &update_json("probe", A, &[1]));
    assert_eq!(probe["payload"]["message_id"], "probe");
    laptop.close();
    let mut again = session(&relay, B, json!({"device_id": D1}));
    let remaining = again.recv_json();
    assert_eq!(remaining["message_id"], second["message_id"]);
}

#[test]
fn device_sync_is_delivered_on_connect_pushed_live_and_acked() {
    device_sync_flow("2", json!({}), Wire::Plain);
}

#[test]
fn device_sync_reaches_a_session_placed_on_another_shard_by_its_routing_token() {
    device_sync_flow("4", json!({"routing_token": TOKEN}), Wire::Plain);
}

#[test]
fn device_sync_refusals() {
    let dir = TempDir::new("devsync-refuse");
    let relay = Relay::start(dir.path(), &[("RELAY_MAX_BLOBS_PER_USER", "1")]);
    let mut plain = session(&relay, B, json!({}));
    let foreign = request(&mut plain, &device_sync("f", A, D1, 1, &[1]));
    assert_eq!(foreign["payload"]["code"], "not_permitted");
    assert_eq!(foreign["payload"]["message_id"], "f");
    let ack = request(
        &mut plain,
        &envelope(
            "a",
            json!({"type": "DeviceSyncAck", "message_id": "x", "synced_version": 1}),
        ),
    );
    assert_eq!(ack["payload"]["code"], "not_permitted");
    let bad_target = request(&mut plain, &device_sync("t", B, "not-hex", 1, &[1]));
    assert_eq!(bad_target["payload"]["code"], "invalid_field");
    assert_stored_without_blob_id(
        &request(&mut plain, &device_sync("q1", B, D1, 1, &[1])),
        "q1",
    );
    let over = request(&mut plain, &device_sync("q2", B, D1, 2, &[1]));
    assert_eq!(over["payload"]["code"], "quota_exceeded");
}

fn proof_store(message_id: &str, hash: &str, data: &[u8]) -> String {
    envelope(
        message_id,
        json!({"type": "RecoveryProofStore", "key_hash": hash, "proof_data": data}),
    )
}

fn proof_query(message_id: &str, hashes: &[&str]) -> String {
    envelope(
        message_id,
        json!({"type": "RecoveryProofQuery", "key_hashes": hashes}),
    )
}

#[test]
fn recovery_proofs_are_stored_replaced_and_queried_across_shards() {
    recovery_proofs_are_stored_replaced_and_queried_across_shards_over(Wire::Plain);
}

/// [`recovery_proofs_are_stored_replaced_and_queried_across_shards`], on sessions over `wire`
/// (`noise.rs` runs it over Noise).
pub(crate) fn recovery_proofs_are_stored_replaced_and_queried_across_shards_over(wire: Wire) {
    let dir = TempDir::new("proofs");
    let relay = Relay::start_over(wire, dir.path(), &[("RELAY_SHARDS", "4")]);
    let mut client = session(&relay, A, json!({}));
    // HASH, B and TOKEN hash to different shards of 4.
    assert_stored_without_blob_id(
        &request(&mut client, &proof_store("s1", HASH, &[5, 6, 7])),
        "s1",
    );
    assert_stored_without_blob_id(&request(&mut client, &proof_store("s2", TOKEN, &[1])), "s2");
    assert_stored_without_blob_id(&request(&mut client, &proof_store("s3", HASH, &[8])), "s3");
    let upper = TOKEN.to_uppercase();
    let answer = request(
        &mut client,
        &proof_query("q", &[TOKEN, B, "zz", HASH, &upper]),
    );
    assert_eq!(answer["message_id"], "q", "echoes the query's message_id");
    assert_eq!(answer["payload"]["type"], "RecoveryProofResponse");
    assert_eq!(
        answer["payload"]["proofs"],
        json!([{"key_hash": TOKEN, "proof_data": [1]}, {"key_hash": HASH, "proof_data": [8]}])
    );
    let empty = request(&mut client, &proof_query("e", &[]));
    assert_eq!(empty["payload"]["proofs"], json!([]));
    let too_many: Vec<&str> = vec![HASH; 101];
    assert_eq!(
        request(&mut client, &proof_query("m", &too_many))["payload"]["code"],
        "invalid_field"
    );
    assert_eq!(
        request(&mut client, &proof_store("b", "xyz", &[1]))["payload"]["code"],
        "invalid_field"
    );
}

#[test]
fn the_recovery_bucket_limits_proof_requests() {
    let dir = TempDir::new("recovery-rate");
    let relay = Relay::start(dir.path(), &[("RELAY_RECOVERY_RATE_LIMIT", "2")]);
    let mut client = session(&relay, A, json!({}));
    for i in 0..2 {
        assert_eq!(
            request(&mut client, &proof_query(&format!("q{i}"), &[HASH]))["payload"]["type"],
            "RecoveryProofResponse"
        );
    }
    let refused = request(&mut client, &proof_query("q2", &[HASH]));
    assert_eq!(refused["payload"]["code"], "rate_limited");
    assert_eq!(refused["payload"]["message_id"], "q2");
    // Other messages still pass: the general bucket is separate.
    assert_eq!(
        request(&mut client, &update_json("u", B, &[1]))["payload"]["status"],
        "Stored"
    );
}

#[test]
fn purge_deletes_blobs_device_sync_and_the_proof() {
    purge_deletes_blobs_device_sync_and_the_proof_over(Wire::Plain);
}

/// [`purge_deletes_blobs_device_sync_and_the_proof`], on sessions over `wire`
/// (`noise.rs` runs it over Noise).
pub(crate) fn purge_deletes_blobs_device_sync_and_the_proof_over(wire: Wire) {
    let dir = TempDir::new("purge");
    let relay = Relay::start_over(wire, dir.path(), &[("RELAY_SHARDS", "4")]);
    let mut sender = session(&relay, A, json!({}));
    for i in 0..3 {
        assert_eq!(
            request(&mut sender, &update_json(&format!("u{i}"), B, &[i]))["payload"]["status"],
            "Stored"
        );
    }
    let mut owner = session(&relay, B, json!({"device_id": D2}));
    for _ in 0..3 {
        assert_eq!(owner.recv_json()["payload"]["type"], "EncryptedUpdate");
    }
    assert_stored_without_blob_id(&request(&mut owner, &device_sync("d", B, D1, 1, &[1])), "d");
    assert_stored_without_blob_id(&request(&mut owner, &proof_store("p", HASH, &[1])), "p");
    let bad = envelope(
        "bad",
        json!({"type": "PurgeRequest", "include_recovery_proofs": true, "recovery_key_hash": "nope"}),
    );
    assert_eq!(
        request(&mut owner, &bad)["payload"]["code"],
        "invalid_field"
    );
    let purge = envelope(
        "purge",
        json!({"type": "PurgeRequest", "include_device_sync": true, "include_recovery_proofs": true, "recovery_key_hash": HASH}),
    );
    let reply = request(&mut owner, &purge);
    assert_eq!(reply["message_id"], "purge");
    assert_eq!(
        reply["payload"],
        json!({"type": "PurgeResponse", "blobs_deleted": 3, "device_sync_deleted": 1, "recovery_proofs_deleted": 1})
    );
    let query = request(&mut owner, &proof_query("q", &[HASH]));
    assert_eq!(query["payload"]["proofs"], json!([]));
    owner.close();
    // Nothing is delivered any more: the next message is the first one B sees.
    let mut laptop = session(&relay, B, json!({"device_id": D1}));
    assert_eq!(
        request(&mut sender, &update_json("later", B, &[42]))["payload"]["status"],
        "Stored"
    );
    assert_eq!(laptop.recv_json()["payload"]["ciphertext"], json!([42]));
}

#[test]
fn account_revoked_is_stored_as_the_rebuilt_frame() {
    let dir = TempDir::new("revoked");
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "2")]);
    let mut sender = session(&relay, A, json!({}));
    let json = r#"{"version":1,"message_id":"6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d","timestamp":1767225600,"payload":{"type":"AccountRevoked","sender_id":"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a","recipient_id":"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c","timestamp":1767225600,"signature":[17,34],"extra":1}}"#;
    let stored = request(&mut sender, json);
    assert_eq!(stored["payload"]["status"], "Stored");
    assert!(stored["payload"]["blob_id"].is_string());
    let invalid = json.replace("3d4017c3", "zz4017c3");
    assert_eq!(
        request(&mut sender, &invalid)["payload"]["status"],
        "Failed"
    );
    let mut recipient = session(&relay, B, json!({}));
    let delivered = recipient.recv_json();
    assert_eq!(delivered["message_id"], stored["payload"]["blob_id"]);
    let bytes: Vec<u8> =
        serde_json::from_value(delivered["payload"]["ciphertext"].clone()).unwrap();
    let expected = r#"{"version":1,"message_id":"6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d","timestamp":1767225600,"payload":{"type":"AccountRevoked","sender_id":"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a","recipient_id":"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c","timestamp":1767225600,"signature":[17,34]}}"#;
    assert_eq!(bytes, frame(expected));
}

#[test]
fn device_sync_and_proofs_survive_a_restart() {
    let dir = TempDir::new("features-restart");
    {
        let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "2")]);
        let mut phone = session(&relay, B, json!({"device_id": D2}));
        assert_stored_without_blob_id(&request(&mut phone, &device_sync("d", B, D1, 7, &[7])), "d");
        assert_stored_without_blob_id(&request(&mut phone, &proof_store("p", HASH, &[3])), "p");
    }
    let relay = Relay::start(dir.path(), &[("RELAY_SHARDS", "2")]);
    let mut laptop = session(&relay, B, json!({"device_id": D1}));
    assert_eq!(laptop.recv_json()["payload"]["version"], 7);
    let query = request(&mut laptop, &proof_query("q", &[HASH]));
    assert_eq!(
        query["payload"]["proofs"],
        json!([{"key_hash": HASH, "proof_data": [3]}])
    );
}
