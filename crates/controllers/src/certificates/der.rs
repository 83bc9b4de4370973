//! The few DER encodings an X.509 certificate is written with. rcgen cannot write a subject
//! with two values of one attribute type (a user's several groups, O=a and O=b), so the signer
//! writes certificates itself and copies the request's subject and key verbatim.

use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::TimeZone;

const BOOLEAN: u8 = 0x01;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const NULL: u8 = 0x05;
const OBJECT_IDENTIFIER: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;

/// A tag, its definite length and `content`.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let significant = &bytes[bytes
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(bytes.len() - 1)..];
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

pub fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

/// An explicitly tagged `[n]` (context-specific, constructed) wrapping `content`.
pub fn explicit(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, content)
}

/// An implicitly tagged `[n]` primitive (a GeneralName's dNSName, iPAddress…).
pub fn implicit(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0x80 | n, content)
}

pub fn oid(arcs: &[u64]) -> Vec<u8> {
    assert!(arcs.len() >= 2, "an OID has at least two arcs");
    let mut content = Vec::new();
    let mut push = |mut arc: u64| {
        let mut base128 = vec![(arc & 0x7f) as u8];
        arc >>= 7;
        while arc > 0 {
            base128.push(0x80 | (arc & 0x7f) as u8);
            arc >>= 7;
        }
        content.extend(base128.iter().rev());
    };
    push(arcs[0] * 40 + arcs[1]);
    arcs[2..].iter().copied().for_each(push);
    tlv(OBJECT_IDENTIFIER, &content)
}

/// A non-negative INTEGER from big-endian `magnitude`.
pub fn unsigned(magnitude: &[u8]) -> Vec<u8> {
    let start = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len());
    let mut content = magnitude[start..].to_vec();
    if content.first().is_none_or(|b| b & 0x80 != 0) {
        content.insert(0, 0);
    }
    tlv(INTEGER, &content)
}

pub fn boolean(value: bool) -> Vec<u8> {
    tlv(BOOLEAN, &[if value { 0xff } else { 0 }])
}

pub fn null() -> Vec<u8> {
    tlv(NULL, &[])
}

pub fn octet_string(content: &[u8]) -> Vec<u8> {
    tlv(OCTET_STRING, content)
}

/// A BIT STRING of whole bytes.
pub fn bit_string(bytes: &[u8]) -> Vec<u8> {
    tlv(BIT_STRING, &[&[0], bytes].concat())
}

/// A BIT STRING of named bits (bit 0 first), without trailing zero bits as DER wants them.
pub fn named_bits(bits: u16) -> Vec<u8> {
    if bits == 0 {
        return tlv(BIT_STRING, &[0]);
    }
    // Named bit 0 is the most significant bit of the first byte.
    let reversed = bits.reverse_bits().to_be_bytes();
    let used = 16 - bits.leading_zeros() as usize;
    let bytes = used.div_ceil(8);
    let unused = (bytes * 8 - used) as u8;
    tlv(BIT_STRING, &[&[unused], &reversed[..bytes]].concat())
}

/// A certificate validity time: UTCTime through 2049, GeneralizedTime after (RFC 5280).
pub fn time(at: Timestamp) -> Vec<u8> {
    let t = at.to_zoned(TimeZone::UTC).datetime();
    let rest = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.year() < 2050 {
        tlv(UTC_TIME, format!("{:02}{rest}", t.year() % 100).as_bytes())
    } else {
        tlv(
            GENERALIZED_TIME,
            format!("{:04}{rest}", t.year()).as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_past_127_take_the_long_form() {
        assert_eq!(tlv(0x04, &[7; 3])[..2], [0x04, 3]);
        assert_eq!(tlv(0x04, &[7; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[7; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn object_identifiers_are_base_128() {
        // 1.2.840.10045.4.3.2, ecdsa-with-SHA256.
        assert_eq!(
            oid(&[1, 2, 840, 10045, 4, 3, 2]),
            [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]
        );
    }

    #[test]
    fn integers_stay_positive_and_minimal() {
        assert_eq!(unsigned(&[0, 0, 1]), [0x02, 1, 1]);
        assert_eq!(unsigned(&[0x80]), [0x02, 2, 0, 0x80]);
        assert_eq!(unsigned(&[0, 0]), [0x02, 1, 0]);
    }

    #[test]
    fn named_bits_drop_trailing_zeros() {
        // digitalSignature (bit 0) alone: one byte 0x80, 7 unused bits.
        assert_eq!(named_bits(1), [0x03, 2, 7, 0x80]);
        // digitalSignature + keyEncipherment (bits 0 and 2): 0xa0, 5 unused bits.
        assert_eq!(named_bits(0b101), [0x03, 2, 5, 0xa0]);
        // decipherOnly (bit 8) needs a second byte.
        assert_eq!(named_bits(1 << 8), [0x03, 3, 7, 0, 0x80]);
    }

    #[test]
    fn times_before_2050_are_utc_time_and_later_generalized() {
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(
            time(at("2026-03-04T05:06:07Z")),
            tlv(UTC_TIME, b"260304050607Z")
        );
        assert_eq!(
            time(at("2051-01-02T03:04:05Z")),
            tlv(GENERALIZED_TIME, b"20510102030405Z")
        );
    }
}
