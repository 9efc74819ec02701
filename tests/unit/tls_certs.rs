//! The `notAfter` of a certificate (`transport::certs::not_after`), which feeds
//! `relay_tls_certificate_expiry_timestamp_seconds` (§2.8): both ASN.1 time forms
//! (UTCTime up to 2049, GeneralizedTime from 2050), and input that is no
//! certificate.

use rcgen::{CertificateParams, KeyPair};
use vauchi_relay::transport::certs::not_after;

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
