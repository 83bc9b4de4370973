//! SPDY/3 frames on the wire, as the SPDY/3.1 draft lays them out (and as moby/spdystream, the
//! runtimes' and kubelets' implementation, reads them): an 8-byte header, then the payload.
//! Header blocks are zlib-compressed with [`DICTIONARY`], one compression stream per direction
//! for the whole connection, each block ended with a sync flush.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::DICTIONARY;

/// The protocol version this framing speaks.
pub const VERSION: u16 = 3;
/// The largest payload a frame's 24-bit length can carry.
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;

/// A header block: lower-case names, and values that may hold several NUL-separated values.
pub type Headers = Vec<(String, String)>;

/// One frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// (flags, id, value) for each setting.
    Settings(Vec<(u8, u32, u32)>),
    Ping(u32),
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
}

/// Why bytes are not SPDY.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("SPDY version {0} is not supported (only 3)")]
    Version(u16),
    #[error("a SPDY {what} frame is too short")]
    Short { what: &'static str },
    #[error("a SPDY header block does not decompress: {0}")]
    Compression(String),
    #[error("a SPDY header block is malformed")]
    HeaderBlock,
    #[error("a SPDY frame of {0} bytes is too large")]
    TooLarge(usize),
}

/// Writes frames, compressing header blocks on the connection's outgoing zlib stream.
pub struct Encoder {
    zlib: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        let mut zlib = Compress::new(Compression::default(), true);
        zlib.set_dictionary(DICTIONARY)
            .expect("a fresh zlib stream takes a dictionary");
        Self { zlib }
    }

    /// Appends `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) {
        match frame {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                fin,
                unidirectional,
                headers,
            } => {
                let block = self.header_block(headers);
                let flags = flag(*fin, FLAG_FIN) | flag(*unidirectional, FLAG_UNIDIRECTIONAL);
                control_header(out, SYN_STREAM, flags, 10 + block.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(associated_to & 0x7fff_ffff);
                out.put_u8((priority & 0x07) << 5);
                out.put_u8(0);
                out.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => {
                let block = self.header_block(headers);
                control_header(out, SYN_REPLY, flag(*fin, FLAG_FIN), 4 + block.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_slice(&block);
            }
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                let block = self.header_block(headers);
                control_header(out, HEADERS, flag(*fin, FLAG_FIN), 4 + block.len());
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(out, RST_STREAM, 0, 8);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::Settings(entries) => {
                control_header(out, SETTINGS, 0, 4 + 8 * entries.len());
                out.put_u32(entries.len() as u32);
                for (flags, id, value) in entries {
                    out.put_u32((u32::from(*flags) << 24) | (id & 0x00ff_ffff));
                    out.put_u32(*value);
                }
            }
            Frame::Ping(id) => {
                control_header(out, PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_header(out, GOAWAY, 0, 8);
                out.put_u32(last_good_stream_id & 0x7fff_ffff);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(out, WINDOW_UPDATE, 0, 8);
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(delta & 0x7fff_ffff);
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                // Longer data goes out as several frames, the last one carrying FIN.
                let mut chunks = data.chunks(MAX_PAYLOAD).peekable();
                if chunks.peek().is_none() {
                    data_header(out, *stream_id, flag(*fin, FLAG_FIN), 0);
                }
                while let Some(chunk) = chunks.next() {
                    let last = chunks.peek().is_none();
                    data_header(out, *stream_id, flag(*fin && last, FLAG_FIN), chunk.len());
                    out.put_slice(chunk);
                }
            }
        }
    }

    fn header_block(&mut self, headers: &Headers) -> Vec<u8> {
        let mut plain = Vec::new();
        plain.put_u32(headers.len() as u32);
        for (name, value) in headers {
            plain.put_u32(name.len() as u32);
            plain.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
            plain.put_u32(value.len() as u32);
            plain.put_slice(value.as_bytes());
        }
        let mut compressed = Vec::with_capacity(plain.len() + 64);
        let mut consumed = 0usize;
        // A sync flush is complete once all input is taken and output space is left over.
        loop {
            let before = self.zlib.total_in();
            self.zlib
                .compress_vec(&plain[consumed..], &mut compressed, FlushCompress::Sync)
                .expect("zlib compression into a growable buffer does not fail");
            consumed += (self.zlib.total_in() - before) as usize;
            if consumed == plain.len() && compressed.len() < compressed.capacity() {
                return compressed;
            }
            compressed.reserve(compressed.capacity().max(64));
        }
    }
}

fn flag(on: bool, bit: u8) -> u8 {
    if on { bit } else { 0 }
}

fn control_header(out: &mut BytesMut, kind: u16, flags: u8, length: usize) {
    debug_assert!(length <= MAX_PAYLOAD, "control frame of {length} bytes");
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32((u32::from(flags) << 24) | length as u32);
}

fn data_header(out: &mut BytesMut, stream_id: u32, flags: u8, length: usize) {
    out.put_u32(stream_id & 0x7fff_ffff);
    out.put_u32((u32::from(flags) << 24) | length as u32);
}

/// Reads frames, decompressing header blocks on the connection's incoming zlib stream.
pub struct Decoder {
    zlib: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self {
            zlib: Decompress::new(true),
        }
    }

    /// Takes one whole frame off the front of `buffer`, or `None` until one has arrived.
    /// Control frames of types this framing does not know are skipped.
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            if buffer.len() < 8 {
                return Ok(None);
            }
            let first = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
            let flags = buffer[4];
            let length = (usize::from(buffer[5]) << 16)
                | (usize::from(buffer[6]) << 8)
                | usize::from(buffer[7]);
            if buffer.len() < 8 + length {
                buffer.reserve(8 + length - buffer.len());
                return Ok(None);
            }
            buffer.advance(8);
            let mut payload = buffer.split_to(length).freeze();
            if first & 0x8000_0000 == 0 {
                return Ok(Some(Frame::Data {
                    stream_id: first & 0x7fff_ffff,
                    fin: flags & FLAG_FIN != 0,
                    data: payload,
                }));
            }
            let version = ((first >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(FrameError::Version(version));
            }
            let fin = flags & FLAG_FIN != 0;
            let need = |payload: &Bytes, size: usize, what: &'static str| {
                if payload.len() < size {
                    Err(FrameError::Short { what })
                } else {
                    Ok(())
                }
            };
            let frame = match (first & 0xffff) as u16 {
                SYN_STREAM => {
                    need(&payload, 10, "SYN_STREAM")?;
                    let stream_id = payload.get_u32() & 0x7fff_ffff;
                    let associated_to = payload.get_u32() & 0x7fff_ffff;
                    let priority = payload.get_u8() >> 5;
                    payload.advance(1);
                    Frame::SynStream {
                        stream_id,
                        associated_to,
                        priority,
                        fin,
                        unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                        headers: self.header_block(&payload)?,
                    }
                }
                SYN_REPLY => {
                    need(&payload, 4, "SYN_REPLY")?;
                    let stream_id = payload.get_u32() & 0x7fff_ffff;
                    Frame::SynReply {
                        stream_id,
                        fin,
                        headers: self.header_block(&payload)?,
                    }
                }
                HEADERS => {
                    need(&payload, 4, "HEADERS")?;
                    let stream_id = payload.get_u32() & 0x7fff_ffff;
                    Frame::Headers {
                        stream_id,
                        fin,
                        headers: self.header_block(&payload)?,
                    }
                }
                RST_STREAM => {
                    need(&payload, 8, "RST_STREAM")?;
                    Frame::RstStream {
                        stream_id: payload.get_u32() & 0x7fff_ffff,
                        status: payload.get_u32(),
                    }
                }
                SETTINGS => {
                    need(&payload, 4, "SETTINGS")?;
                    let count = payload.get_u32() as usize;
                    need(&payload, count.saturating_mul(8), "SETTINGS")?;
                    let entries = (0..count)
                        .map(|_| {
                            let flags_and_id = payload.get_u32();
                            (
                                (flags_and_id >> 24) as u8,
                                flags_and_id & 0x00ff_ffff,
                                payload.get_u32(),
                            )
                        })
                        .collect();
                    Frame::Settings(entries)
                }
                PING => {
                    need(&payload, 4, "PING")?;
                    Frame::Ping(payload.get_u32())
                }
                GOAWAY => {
                    need(&payload, 8, "GOAWAY")?;
                    Frame::GoAway {
                        last_good_stream_id: payload.get_u32() & 0x7fff_ffff,
                        status: payload.get_u32(),
                    }
                }
                WINDOW_UPDATE => {
                    need(&payload, 8, "WINDOW_UPDATE")?;
                    Frame::WindowUpdate {
                        stream_id: payload.get_u32() & 0x7fff_ffff,
                        delta: payload.get_u32() & 0x7fff_ffff,
                    }
                }
                _ => continue,
            };
            return Ok(Some(frame));
        }
    }

    fn header_block(&mut self, compressed: &[u8]) -> Result<Headers, FrameError> {
        let fail = |e: &dyn std::fmt::Display| FrameError::Compression(e.to_string());
        let mut plain = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut consumed = 0usize;
        loop {
            let before = self.zlib.total_in();
            let result = self.zlib.decompress_vec(
                &compressed[consumed..],
                &mut plain,
                FlushDecompress::Sync,
            );
            consumed += (self.zlib.total_in() - before) as usize;
            match result {
                Ok(Status::Ok | Status::BufError) => {}
                Ok(Status::StreamEnd) => return Err(fail(&"the zlib stream ended")),
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib.set_dictionary(DICTIONARY).map_err(|e| fail(&e))?;
                    continue;
                }
                Err(e) => return Err(fail(&e)),
            }
            if consumed == compressed.len() && plain.len() < plain.capacity() {
                break;
            }
            plain.reserve(plain.capacity().max(64));
        }
        parse_header_block(&plain)
    }
}

fn parse_header_block(mut block: &[u8]) -> Result<Headers, FrameError> {
    let take = |block: &mut &[u8]| -> Result<String, FrameError> {
        if block.len() < 4 {
            return Err(FrameError::HeaderBlock);
        }
        let length = block.get_u32() as usize;
        if block.len() < length {
            return Err(FrameError::HeaderBlock);
        }
        let text = String::from_utf8_lossy(&block[..length]).into_owned();
        block.advance(length);
        Ok(text)
    };
    if block.len() < 4 {
        return Err(FrameError::HeaderBlock);
    }
    let count = block.get_u32() as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = take(&mut block)?.to_ascii_lowercase();
        let value = take(&mut block)?;
        headers.push((name, value));
    }
    Ok(headers)
}

/// The first value of header `name` (lower-case) in `headers`.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.split('\0').next().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frames: &[Frame]) -> Vec<Frame> {
        let mut encoder = Encoder::new();
        let mut wire = BytesMut::new();
        for frame in frames {
            encoder.encode(frame, &mut wire);
        }
        let mut decoder = Decoder::new();
        let mut decoded = Vec::new();
        while let Some(frame) = decoder.decode(&mut wire).unwrap() {
            decoded.push(frame);
        }
        assert!(wire.is_empty(), "{} bytes left over", wire.len());
        decoded
    }

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_dictionary_is_the_specs() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert!(DICTIONARY.starts_with(b"\x00\x00\x00\x07options"));
        assert!(DICTIONARY.ends_with(b"enq=0."));
        // zlib names the dictionary by its Adler-32 in every stream's header.
        let mut zlib = Compress::new(Compression::default(), true);
        assert_eq!(zlib.set_dictionary(DICTIONARY).unwrap(), 0xe3c6_a7c2);
    }

    #[test]
    fn every_frame_type_round_trips_with_header_blocks_sharing_one_zlib_stream() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: headers(&[("streamtype", "error")]),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 7,
                fin: true,
                unidirectional: true,
                headers: headers(&[("streamtype", "stdin"), ("port", "80\x0081")]),
            },
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: Vec::new(),
            },
            Frame::Headers {
                stream_id: 3,
                fin: true,
                headers: headers(&[("x", "y")]),
            },
            Frame::Data {
                stream_id: 3,
                fin: false,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 3,
                fin: true,
                data: Bytes::new(),
            },
            Frame::RstStream {
                stream_id: 5,
                status: RST_CANCEL,
            },
            Frame::Settings(vec![(1, 7, 65536)]),
            Frame::Ping(2),
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 1000,
            },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: 0,
            },
        ];
        assert_eq!(round_trip(&frames), frames);
    }

    #[test]
    fn data_frames_lay_out_as_the_spec_says() {
        let mut wire = BytesMut::new();
        Encoder::new().encode(
            &Frame::Data {
                stream_id: 5,
                fin: true,
                data: Bytes::from_static(b"ab"),
            },
            &mut wire,
        );
        assert_eq!(&wire[..], b"\x00\x00\x00\x05\x01\x00\x00\x02ab");
        let mut ping = BytesMut::new();
        Encoder::new().encode(&Frame::Ping(7), &mut ping);
        assert_eq!(
            &ping[..],
            b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x07"
        );
    }

    #[test]
    fn header_names_go_out_lower_case_and_values_keep_nul_separators() {
        let frames = [Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: headers(&[("StreamType", "data"), ("Port", "80\x0090")]),
        }];
        let Frame::SynStream { headers, .. } = &round_trip(&frames)[0] else {
            panic!("not a SYN_STREAM");
        };
        assert_eq!(header(headers, "streamtype"), Some("data"));
        assert_eq!(header(headers, "port"), Some("80"));
    }

    #[test]
    fn partial_frames_wait_for_the_rest() {
        let mut wire = BytesMut::new();
        let mut encoder = Encoder::new();
        encoder.encode(
            &Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: headers(&[("streamtype", "stdout")]),
            },
            &mut wire,
        );
        let whole = wire.split().freeze();
        let mut decoder = Decoder::new();
        let mut buffer = BytesMut::new();
        for (i, byte) in whole.iter().enumerate() {
            buffer.put_u8(*byte);
            let frame = decoder.decode(&mut buffer).unwrap();
            assert_eq!(frame.is_some(), i == whole.len() - 1, "at byte {i}");
        }
    }

    #[test]
    fn unknown_control_frames_are_skipped_and_other_versions_refused() {
        let mut wire = BytesMut::new();
        control_header(&mut wire, 10, 0, 3);
        wire.put_slice(b"abc");
        Encoder::new().encode(&Frame::Ping(1), &mut wire);
        assert_eq!(
            Decoder::new().decode(&mut wire).unwrap(),
            Some(Frame::Ping(1))
        );
        let mut v2 = BytesMut::from(&b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01"[..]);
        assert_eq!(Decoder::new().decode(&mut v2), Err(FrameError::Version(2)));
    }

    #[test]
    fn a_corrupt_header_block_is_an_error() {
        let mut wire = BytesMut::new();
        control_header(&mut wire, SYN_REPLY, 0, 8);
        wire.put_u32(1);
        wire.put_slice(b"junk");
        assert!(matches!(
            Decoder::new().decode(&mut wire),
            Err(FrameError::Compression(_))
        ));
    }
}
