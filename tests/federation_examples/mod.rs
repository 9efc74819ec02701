//! The federation examples of PROTOCOL.md §11.2, shared by the codec tests and the
//! fuzzer.

/// The §11.2 examples, exactly as PROTOCOL.md shows them, one per line.
pub const EXAMPLES: [&str; 9] = [
    r#"{"version":1,"message_id":"a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d","timestamp":1767225600,"payload":{"type":"PeerHandshake","relay_id":"7c73f18d-e506-46d4-8d07-f9308b544e6d","version":1,"listen_addr":"0.0.0.0:8080"}}"#,
    r#"{"version":1,"message_id":"b1c2d3e4-f5a6-4b7c-9d8e-0f1a2b3c4d5e","timestamp":1767225600,"payload":{"type":"PeerHandshakeAck","relay_id":"35618a1a-23c5-4583-8bf9-508015ad6889","version":1,"accepted":true,"capacity_used_bytes":52428800,"capacity_max_bytes":1073741824}}"#,
    r#"{"version":1,"message_id":"c2d3e4f5-a6b7-4c8d-ae9f-1a2b3c4d5e6f","timestamp":1767225600,"payload":{"type":"OffloadBlob","blob_id":"8f8b0be7-b5e1-4fd5-b45b-2a6939393c59","routing_id":"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c","data":[1,2,3],"created_at_secs":1767225600,"integrity_hash":"039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81","hop_count":0}}"#,
    r#"{"version":1,"message_id":"d3e4f5a6-b7c8-4d9e-8f0a-2b3c4d5e6f7a","timestamp":1767225601,"payload":{"type":"OffloadAck","blob_id":"8f8b0be7-b5e1-4fd5-b45b-2a6939393c59","accepted":true,"reason":null}}"#,
    r#"{"version":1,"message_id":"e4f5a6b7-c8d9-4e0f-9a1b-3c4d5e6f7a8b","timestamp":1767225601,"payload":{"type":"OffloadAck","blob_id":"8f8b0be7-b5e1-4fd5-b45b-2a6939393c59","accepted":false,"reason":"at capacity"}}"#,
    r#"{"version":1,"message_id":"f5a6b7c8-d9e0-4f1a-8b2c-4d5e6f7a8b9c","timestamp":1767225660,"payload":{"type":"CapacityReport","used_bytes":52428800,"max_bytes":1073741824,"blob_count":1200}}"#,
    r#"{"version":1,"message_id":"a6b7c8d9-e0f1-4a2b-9c3d-5e6f7a8b9c0d","timestamp":1767225700,"payload":{"type":"DrainNotice","drain_timeout_secs":300}}"#,
    r#"{"version":1,"message_id":"b7c8d9e0-f1a2-4b3c-8d4e-6f7a8b9c0d1e","timestamp":1767225700,"payload":{"type":"DrainAck"}}"#,
    r#"{"version":1,"message_id":"c8d9e0f1-a2b3-4c4d-9e5f-7a8b9c0d1e2f","timestamp":1767225700,"payload":{"type":"OffloadRequest","count":10,"total_bytes":4096}}"#,
];
