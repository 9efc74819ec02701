//! What counts as one client address for `RELAY_MAX_CONNECTIONS_PER_IP`, and the
//! counts themselves (§2.10).

use std::net::IpAddr;

use vauchi_relay::addresses::{AddressCounts, AddressKey};

fn key(ip: &str, prefix: u8) -> AddressKey {
    AddressKey::of(ip.parse::<IpAddr>().unwrap(), prefix)
}

#[test]
fn ipv6_addresses_in_one_prefix_are_one_address() {
    assert_eq!(
        key("2001:db8:1:2:aaaa::1", 64),
        key("2001:db8:1:2:ffff::9", 64)
    );
    assert_ne!(key("2001:db8:1:2::1", 64), key("2001:db8:1:3::1", 64));
    // A shorter prefix groups more; 128 is the address itself.
    assert_eq!(key("2001:db8:1:2::1", 48), key("2001:db8:1:3::1", 48));
    assert_ne!(key("2001:db8::1", 128), key("2001:db8::2", 128));
    assert_eq!(key("2001:db8::1", 128), key("2001:db8::1", 128));
    // One bit: the halves of the address space.
    assert_eq!(key("2001::", 1), key("7fff::", 1));
    assert_ne!(key("7fff::", 1), key("8000::", 1));
}

#[test]
fn ipv4_addresses_are_whole_and_ipv4_mapped_ipv6_counts_as_ipv4() {
    assert_ne!(key("192.0.2.1", 64), key("192.0.2.2", 64));
    assert_eq!(key("::ffff:192.0.2.1", 64), key("192.0.2.1", 64));
    // The IPv6 prefix never groups IPv4 addresses.
    assert_ne!(key("::ffff:192.0.2.1", 1), key("::ffff:192.0.2.2", 1));
    // An IPv4 address and the IPv6 address with the same low bits differ.
    assert_ne!(key("::c000:201", 128), key("192.0.2.1", 128));
}

#[test]
fn each_address_has_its_own_count_up_to_the_limit() {
    let counts = AddressCounts::new(2, 64);
    let (a, b) = (key("192.0.2.1", 64), key("2001:db8::1", 64));
    assert!(counts.try_add(a));
    assert!(counts.try_add(a));
    assert!(
        !counts.try_add(a),
        "the third connection of a is over the limit"
    );
    assert_eq!(counts.count(a), 2, "a refusal is not counted");
    assert!(counts.try_add(b), "b has its own count");
    assert!(counts.try_add(key("2001:db8::ffff", 64)), "b's /64");
    assert!(!counts.try_add(b));
    assert_eq!(counts.addresses(), 2);

    counts.remove(a);
    assert_eq!(counts.count(a), 1);
    assert!(counts.try_add(a), "a freed slot is reused");
    counts.remove(a);
    counts.remove(a);
    counts.remove(b);
    counts.remove(b);
    assert_eq!(
        counts.addresses(),
        0,
        "an address without connections has no entry"
    );
    // A stray removal never underflows or creates an entry.
    counts.remove(a);
    assert_eq!((counts.count(a), counts.addresses()), (0, 0));
}

#[test]
fn the_counts_are_exact_under_threads_that_add_and_remove_at_once() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 2_000;
    let counts = std::sync::Arc::new(AddressCounts::new(3, 64));
    let contested = key("198.51.100.7", 64);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let counts = std::sync::Arc::clone(&counts);
            std::thread::spawn(move || {
                let own = AddressKey::of(IpAddr::from([10, 0, (t >> 8) as u8, t as u8]), 64);
                let mut admitted = 0;
                for _ in 0..ROUNDS {
                    assert!(counts.try_add(own));
                    if counts.try_add(contested) {
                        admitted += 1;
                        assert!(counts.count(contested) <= 3);
                        counts.remove(contested);
                    }
                    counts.remove(own);
                }
                admitted
            })
        })
        .collect();
    let admitted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(admitted > 0);
    assert_eq!(counts.addresses(), 0);
    assert_eq!(counts.count(contested), 0);
}
