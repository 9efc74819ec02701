//! 64-hex identifiers (PROTOCOL.md §3.4) and shard assignment (§10.2, Appendix A.2).

use vauchi_relay::protocol::{Id64, shard_of};

const A: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const B: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn parse_accepts_exactly_64_hex_of_either_case() {
    let lower = Id64::parse(A).expect("A parses");
    let upper = Id64::parse(&A.to_uppercase()).expect("upper-case A parses");
    assert_eq!(lower, upper);
    assert_eq!(lower.to_hex(), A);
    assert_eq!(upper.to_hex(), A);
    assert_eq!(Id64::parse(ZEROS).map(|id| id.0), Some([0u8; 32]));
    let mixed = "D75a980182B10AB7d54bfed3c964073a0ee172f3daa62325af021a68f707511A";
    assert_eq!(Id64::parse(mixed), Some(lower));
    assert_eq!(format!("{lower}"), A);
}

#[test]
fn parse_rejects_everything_else() {
    let cases: &[&str] = &[
        "",
        &A[..63],
        &format!("{A}0"),
        &format!("{}g", &A[..63]),
        &format!("{}G", &A[..63]),
        &format!(" {}", &A[..63]),
        &format!("{}-", &A[..63]),
        &format!("0x{}", &A[..62]),
        // 64 bytes, but not 64 characters of hex: a two-byte character.
        &format!("{}é", &A[..62]),
        &"ä".repeat(32),
    ];
    for case in cases {
        assert_eq!(Id64::parse(case), None, "{case:?}");
    }
}

#[test]
fn appendix_a2_shard_assignment() {
    // (key, first 8 bytes of SHA-256, as u64, shards for N = 1, 2, 3, 4, 8, 16)
    let upper_a = A.to_uppercase();
    let rows: &[(&str, &str, u64, [usize; 6])] = &[
        (
            A,
            "4ebbe859de728e52",
            5673383628285054546,
            [0, 0, 0, 2, 2, 2],
        ),
        (
            &upper_a,
            "4ebbe859de728e52",
            5673383628285054546,
            [0, 0, 0, 2, 2, 2],
        ),
        (
            B,
            "9ee202a85da63321",
            11448716124878156577,
            [0, 1, 0, 1, 1, 1],
        ),
        (
            ZEROS,
            "60e05bd1b195af2f",
            6980680378609938223,
            [0, 1, 1, 3, 7, 15],
        ),
    ];
    for (key, prefix_hex, as_u64, shards) in rows {
        let id = Id64::parse(key).expect("vector key parses");
        let prefix = u64::from_str_radix(prefix_hex, 16).expect("vector prefix");
        assert_eq!(prefix, *as_u64, "{key}");
        // With a modulus above every u64 value, shard_of returns the u64 itself.
        assert_eq!(shard_of(&id, usize::MAX) as u64, *as_u64, "{key}");
        for (n, expected) in [1, 2, 3, 4, 8, 16].into_iter().zip(shards) {
            assert_eq!(shard_of(&id, n), *expected, "{key} N={n}");
        }
    }
}

#[test]
fn random_uuids_are_version_4_and_distinct_across_pool_refills() {
    use vauchi_relay::protocol::ids::random_uuid;
    // 1000 ids span several 4 KiB refills of the per-thread pool (256 ids each).
    let ids: std::collections::HashSet<_> = (0..1000).map(|_| random_uuid()).collect();
    assert_eq!(ids.len(), 1000);
    for id in &ids {
        assert_eq!(id.get_version_num(), 4, "{id}");
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122, "{id}");
    }
    // Another thread has its own pool and draws other ids.
    let other: Vec<_> = std::thread::spawn(|| (0..300).map(|_| random_uuid()).collect())
        .join()
        .expect("thread");
    assert!(other.iter().all(|id| !ids.contains(id)));
}
