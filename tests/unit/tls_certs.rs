//! What the relay reads from a certificate itself (`transport::x509`): the
//! `notAfter`, which feeds `relay_tls_certificate_expiry_timestamp_seconds` (§2.8),
//! in both ASN.1 time forms (UTCTime up to 2049, GeneralizedTime from 2050); the
//! names a federation peer's relay id is bound to (§15.3): DNS subject alternative
//! names, else subject common names; and input that is no certificate.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use vauchi_relay::transport::x509::{identity_names, names_relay, not_after};

fn certificate(sans: &[&str], common_name: Option<&str>) -> Vec<u8> {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    if let Some(cn) = common_name {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    params
        .distinguished_name
        .push(DnType::OrganizationName, "not a name");
    let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
    cert.der().to_vec()
}

#[test]
fn dns_names_bind_the_relay_id() {
    let der = certificate(
        &["relay-a", "relay-a.example", "127.0.0.1"],
        Some("relay-cn"),
    );
    assert_eq!(identity_names(&der), ["relay-a", "relay-a.example"]);
    assert!(names_relay(&der, "relay-a"));
    assert!(names_relay(&der, "RELAY-A.Example"));
    // The common name does not count once there are DNS names, nor do IPs.
    assert!(!names_relay(&der, "relay-cn"));
    assert!(!names_relay(&der, "127.0.0.1"));
    assert!(!names_relay(&der, "relay-"));
    assert!(!names_relay(&der, "relay-a.example.org"));
}

#[test]
fn without_dns_names_the_common_name_binds_it() {
    let der = certificate(&["127.0.0.1"], Some("7c73f18d-e506-46d4-8d07-f9308b544e6d"));
    assert_eq!(
        identity_names(&der),
        ["7c73f18d-e506-46d4-8d07-f9308b544e6d"]
    );
    assert!(names_relay(&der, "7C73F18D-E506-46D4-8D07-F9308B544E6D"));
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
    let nameless = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
    assert!(identity_names(nameless.der()).is_empty());
    assert!(!names_relay(nameless.der(), ""));
}

#[test]
fn input_that_is_not_a_certificate_names_nothing() {
    let der = certificate(&["relay-a"], None);
    assert!(identity_names(&[]).is_empty());
    for cut in [1, 4, 20, der.len() / 2, der.len() - 1] {
        assert!(identity_names(&der[..cut]).is_empty(), "cut at {cut}");
    }
}

fn certificate_expiring(year: i32, month: u8, day: u8) -> (Vec<u8>, i64) {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_after = rcgen::date_time_ymd(year, month, day);
    let expected = params.not_after.unix_timestamp();
    let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
    (cert.der().to_vec(), expected)
}

#[test]
fn reads_utc_times_and_generalized_times() {
    for (year, month, day) in [(2026, 12, 2), (2049, 12, 31), (2050, 1, 1), (2100, 2, 28)] {
        let (der, expected) = certificate_expiring(year, month, day);
        assert_eq!(not_after(&der), Some(expected), "{year}-{month}-{day}");
    }
    // 2024-02-29 exists; the day count crosses a leap day.
    let (der, expected) = certificate_expiring(2024, 2, 29);
    assert_eq!(expected, 1_709_164_800);
    assert_eq!(not_after(&der), Some(expected));
}

#[test]
fn input_that_is_not_a_certificate_has_no_expiry() {
    let (der, _) = certificate_expiring(2030, 1, 1);
    assert_eq!(not_after(&[]), None);
    assert_eq!(not_after(b"-----BEGIN CERTIFICATE-----"), None);
    for cut in [1, 4, 20, der.len() / 2] {
        assert_eq!(not_after(&der[..cut]), None, "cut at {cut}");
    }
    let mut wrong_tag = der.clone();
    wrong_tag[0] = 0x31;
    assert_eq!(not_after(&wrong_tag), None);
}
