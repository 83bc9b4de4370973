//! The protobuf wire format itself: records of (field number, wire type, value), varints.

use std::fmt;

/// One field's value as it sits on the wire; length-delimited values borrow the input.
#[derive(Clone, Copy, Debug)]
pub(super) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl<'a> WireValue<'a> {
    pub fn wire_type(&self) -> u8 {
        match self {
            WireValue::Varint(_) => 0,
            WireValue::Fixed64(_) => 1,
            WireValue::Len(_) => 2,
            WireValue::Fixed32(_) => 5,
        }
    }
}

/// Names a wire type in error messages.
pub(super) fn wire_type_name(wire_type: u8) -> &'static str {
    match wire_type {
        0 => "varint",
        1 => "64-bit",
        2 => "length-delimited",
        5 => "32-bit",
        _ => "unknown",
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum WireError {
    Truncated,
    VarintTooLong,
    LengthPastEnd { length: u64, left: usize },
    BadWireType(u8),
    FieldZero,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("the message ends in the middle of a field"),
            WireError::VarintTooLong => f.write_str("a varint is longer than 10 bytes"),
            WireError::LengthPastEnd { length, left } => write!(
                f,
                "a length of {length} bytes runs past the end of the message ({left} bytes left)"
            ),
            WireError::BadWireType(t) => write!(f, "unsupported wire type {t}"),
            WireError::FieldZero => f.write_str("field number 0 is not allowed"),
        }
    }
}

/// Reads the records of one message.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// The next record, or `None` at the end of the message.
    pub fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, WireError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| WireError::FieldZero)?;
        if number == 0 {
            return Err(WireError::FieldZero);
        }
        let value = match (key & 7) as u8 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(u64::from_le_bytes(self.take_array()?)),
            2 => {
                let length = self.varint()?;
                let left = self.buf.len();
                let n = usize::try_from(length)
                    .ok()
                    .filter(|&n| n <= left)
                    .ok_or(WireError::LengthPastEnd { length, left })?;
                let (value, rest) = self.buf.split_at(n);
                self.buf = rest;
                WireValue::Len(value)
            }
            5 => WireValue::Fixed32(u32::from_le_bytes(self.take_array()?)),
            // 3 and 4 are proto2 groups, which no Kubernetes message uses.
            other => return Err(WireError::BadWireType(other)),
        };
        Ok(Some((number, value)))
    }

    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(if self.buf.len() < 10 {
            WireError::Truncated
        } else {
            WireError::VarintTooLong
        })
    }

    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take_array()?))
    }

    pub fn fixed32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(WireError::Truncated)?;
        self.buf = rest;
        Ok(*head)
    }
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub(super) fn put_key(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

pub(super) fn put_len(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_key(out, number, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub(super) fn put_varint_field(out: &mut Vec<u8>, number: u32, value: u64) {
    put_key(out, number, 0);
    put_varint(out, value);
}
