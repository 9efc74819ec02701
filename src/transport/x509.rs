//! The few facts the relay reads from an X.509 certificate (DER) itself: its
//! `notAfter` (§2.8, the expiry gauge) and the names it binds a federation peer's
//! relay id to (§15.3): its DNS subject alternative names, or its subject common
//! names if it has no DNS names. The certificates read here have already been
//! loaded by rustls, or verified by it against the configured CA; anything this
//! walk does not understand yields nothing, never a guess.

/// OID 2.5.29.17, subjectAltName.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// OID 2.5.4.3, commonName.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// GeneralName `dNSName` ([2] IMPLICIT IA5String).
const DNS_NAME_TAG: u8 = 0x82;

/// The `notAfter` of an X.509 certificate (DER) in unix seconds: Certificate ->
/// tbsCertificate -> [version], serialNumber, signature, issuer, validity.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    let fields = TbsFields::of(cert)?;
    let (_, after) = der_time(fields.validity)?;
    der_time(after).map(|(seconds, _)| seconds)
}

/// The names a certificate binds (§15.3): its DNS subject alternative names, or,
/// if it has none, the common names of its subject. Empty if it has neither, or
/// does not parse.
pub fn identity_names(cert: &[u8]) -> Vec<String> {
    let Some(fields) = TbsFields::of(cert) else {
        return Vec::new();
    };
    let dns = fields.extensions.map(dns_names).unwrap_or_default();
    if !dns.is_empty() {
        return dns;
    }
    common_names(fields.subject)
}

/// Whether `relay_id` is one of the certificate's names (exact, ASCII
/// case-insensitive, §15.3).
pub fn names_relay(cert: &[u8], relay_id: &str) -> bool {
    bound_relay_id(cert, relay_id).is_some()
}

/// The certificate's name that `relay_id` matches (exact, ASCII case-insensitive,
/// §15.3), as the certificate spells it: the id a peer is known by, so that one
/// certificate is one peer however its holder writes the name.
pub fn bound_relay_id(cert: &[u8], relay_id: &str) -> Option<String> {
    identity_names(cert)
        .into_iter()
        .find(|name| name.eq_ignore_ascii_case(relay_id))
}

/// The parts of tbsCertificate read here (contents, without tag and length).
struct TbsFields<'a> {
    validity: &'a [u8],
    subject: &'a [u8],
    /// The SEQUENCE OF Extension inside `[3]`, if present.
    extensions: Option<&'a [u8]>,
}

impl<'a> TbsFields<'a> {
    fn of(cert: &'a [u8]) -> Option<TbsFields<'a>> {
        let (certificate, _) = der_element(cert, 0x30)?;
        let (mut tbs, _) = der_element(certificate, 0x30)?;
        if tbs.first() == Some(&0xa0) {
            tbs = der_element(tbs, 0xa0)?.1;
        }
        let (_, rest) = der_element(tbs, 0x02)?; // serialNumber
        let (_, rest) = der_element(rest, 0x30)?; // signature
        let (_, rest) = der_element(rest, 0x30)?; // issuer
        let (validity, rest) = der_element(rest, 0x30)?;
        let (subject, rest) = der_element(rest, 0x30)?;
        let (_, mut rest) = der_element(rest, 0x30)?; // subjectPublicKeyInfo
        let mut extensions = None;
        while let Some((tag, content, after)) = der_any(rest) {
            if tag == 0xa3 {
                extensions = Some(der_element(content, 0x30)?.0);
            }
            rest = after;
        }
        Some(TbsFields {
            validity,
            subject,
            extensions,
        })
    }
}

/// The dNSName entries of the subjectAltName extension.
fn dns_names(mut extensions: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    while let Some((extension, rest)) = der_element(extensions, 0x30) {
        extensions = rest;
        let Some((oid, mut fields)) = der_element(extension, 0x06) else {
            continue;
        };
        if oid != SUBJECT_ALT_NAME {
            continue;
        }
        if fields.first() == Some(&0x01) {
            // critical BOOLEAN
            fields = der_element(fields, 0x01).map_or(&[][..], |(_, rest)| rest);
        }
        let Some((value, _)) = der_element(fields, 0x04) else {
            continue;
        };
        let Some((mut general_names, _)) = der_element(value, 0x30) else {
            continue;
        };
        while let Some((tag, content, rest)) = der_any(general_names) {
            general_names = rest;
            if tag == DNS_NAME_TAG
                && let Ok(name) = std::str::from_utf8(content)
            {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// The commonName attributes of a Name (SEQUENCE OF SET OF AttributeTypeAndValue),
/// in any of the string types a CA writes them in.
fn common_names(mut name: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    while let Some((mut set, rest)) = der_element(name, 0x31) {
        name = rest;
        while let Some((attribute, after)) = der_element(set, 0x30) {
            set = after;
            let Some((oid, value)) = der_element(attribute, 0x06) else {
                continue;
            };
            let Some((tag, text, _)) = der_any(value) else {
                continue;
            };
            // UTF8String, PrintableString, TeletexString, IA5String.
            if oid == COMMON_NAME
                && matches!(tag, 0x0c | 0x13 | 0x14 | 0x16)
                && let Ok(text) = std::str::from_utf8(text)
            {
                names.push(text.to_owned());
            }
        }
    }
    names
}

/// One DER element: its tag, its content and what follows it.
fn der_any(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&len, mut rest) = rest.split_first()?;
    let len = if len < 0x80 {
        usize::from(len)
    } else {
        let count = usize::from(len & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (digits, after) = rest.split_at(count);
        rest = after;
        digits
            .iter()
            .fold(0usize, |n, &d| (n << 8) | usize::from(d))
    };
    (rest.len() >= len).then(|| {
        let (content, after) = rest.split_at(len);
        (tag, content, after)
    })
}

/// One DER element of the given tag: its content and what follows it.
fn der_element(bytes: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match der_any(bytes)? {
        (found, content, rest) if found == tag => Some((content, rest)),
        _ => None,
    }
}

/// A UTCTime (YYMMDDHHMMSSZ, years 1950-2049) or GeneralizedTime
/// (YYYYMMDDHHMMSSZ): unix seconds and what follows.
fn der_time(bytes: &[u8]) -> Option<(i64, &[u8])> {
    let (text, rest, year) = match bytes.first()? {
        0x17 => {
            let (text, rest) = der_element(bytes, 0x17)?;
            let yy = digits(text.get(..2)?)?;
            (
                text.get(2..)?,
                rest,
                if yy < 50 { 2000 + yy } else { 1900 + yy },
            )
        }
        0x18 => {
            let (text, rest) = der_element(bytes, 0x18)?;
            (text.get(4..)?, rest, digits(text.get(..4)?)?)
        }
        _ => return None,
    };
    if text.len() != 11 || text[10] != b'Z' {
        return None;
    }
    let field = |at: usize| digits(&text[at..at + 2]);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3_600 + minute * 60 + second, rest))
}

fn digits(text: &[u8]) -> Option<i64> {
    text.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
