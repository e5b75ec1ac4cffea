//! SPDY/3.1 frames on the wire (draft-mbelshe-httpbis-spdy-00 section 2.2, and the 3.1
//! changes): encoding, and an incremental decoder over a byte buffer.
//!
//! Every frame starts with 8 bytes. A control frame: the control bit (1), a 15-bit version
//! (3), a 16-bit type, 8 bits of flags, a 24-bit payload length. A DATA frame: the control
//! bit (0), a 31-bit stream id, 8 bits of flags, a 24-bit payload length. Header blocks
//! (SYN_STREAM, SYN_REPLY, HEADERS) stay compressed here: their zlib state belongs to the
//! connection, see [`super::headers`].

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol version this module speaks.
pub const VERSION: u16 = 3;

/// Last frame of the stream in the sender's direction (DATA, SYN_STREAM, SYN_REPLY,
/// HEADERS).
pub const FLAG_FIN: u8 = 0x01;
/// SYN_STREAM: the recipient may not send on this stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

pub const TYPE_SYN_STREAM: u16 = 1;
pub const TYPE_SYN_REPLY: u16 = 2;
pub const TYPE_RST_STREAM: u16 = 3;
pub const TYPE_SETTINGS: u16 = 4;
pub const TYPE_PING: u16 = 6;
pub const TYPE_GOAWAY: u16 = 7;
pub const TYPE_HEADERS: u16 = 8;
pub const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes (spec 2.6.3).
pub mod status {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const UNSUPPORTED_VERSION: u32 = 4;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    pub const STREAM_IN_USE: u32 = 8;
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
    pub const FRAME_TOO_LARGE: u32 = 11;
}

/// GOAWAY status codes (spec 2.6.6).
pub mod goaway {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INTERNAL_ERROR: u32 = 2;
}

/// The largest payload the 24-bit length field can carry.
pub const MAX_LENGTH: usize = (1 << 24) - 1;
/// Default bound on a DATA payload: the field's own maximum, because the Go clients send
/// one frame per `Write` call, whatever its size.
pub const MAX_DATA_PAYLOAD: usize = MAX_LENGTH;
/// Default bound on a control frame's payload (in practice its compressed header block).
pub const MAX_CONTROL_PAYLOAD: usize = 1 << 20;

const HEADER_LEN: usize = 8;
const STREAM_ID_MASK: u32 = 0x7fff_ffff;

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    /// 24 bits.
    pub id: u32,
    pub value: u32,
}

/// A decoded frame. Stream ids are 31 bits; the reserved top bit is dropped on decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        flags: u8,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        flags: u8,
        associated_to: u32,
        /// 3 bits, 0 the highest.
        priority: u8,
        slot: u8,
        header_block: Bytes,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        header_block: Bytes,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        header_block: Bytes,
    },
    WindowUpdate {
        /// 0 for the session's window.
        stream_id: u32,
        delta: u32,
    },
    /// A control frame of a type this version does not define; the spec says to ignore it.
    Unknown {
        kind: u16,
        flags: u8,
        payload: Bytes,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("{kind} frame payload of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        kind: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("unsupported SPDY version {0} (only 3 is spoken)")]
    Version(u16),
    #[error("{kind} frame: {reason}")]
    Invalid {
        kind: &'static str,
        reason: &'static str,
    },
}

fn invalid(kind: &'static str, reason: &'static str) -> FrameError {
    FrameError::Invalid { kind, reason }
}

fn kind_name(kind: u16) -> &'static str {
    match kind {
        TYPE_SYN_STREAM => "SYN_STREAM",
        TYPE_SYN_REPLY => "SYN_REPLY",
        TYPE_RST_STREAM => "RST_STREAM",
        TYPE_SETTINGS => "SETTINGS",
        TYPE_PING => "PING",
        TYPE_GOAWAY => "GOAWAY",
        TYPE_HEADERS => "HEADERS",
        TYPE_WINDOW_UPDATE => "WINDOW_UPDATE",
        _ => "unknown control",
    }
}

impl Frame {
    /// The frame's name in the spec, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Data { .. } => "DATA",
            Frame::SynStream { .. } => "SYN_STREAM",
            Frame::SynReply { .. } => "SYN_REPLY",
            Frame::RstStream { .. } => "RST_STREAM",
            Frame::Settings { .. } => "SETTINGS",
            Frame::Ping { .. } => "PING",
            Frame::GoAway { .. } => "GOAWAY",
            Frame::Headers { .. } => "HEADERS",
            Frame::WindowUpdate { .. } => "WINDOW_UPDATE",
            Frame::Unknown { .. } => "unknown control",
        }
    }

    /// Append the frame's wire form to `dst`. Fails only when a payload does not fit the
    /// 24-bit length field or an id does not fit 31 bits (the buffer is then unchanged).
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), FrameError> {
        match self {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let len = checked_len("DATA", data.len())?;
                let id = checked_id("DATA", *stream_id)?;
                dst.reserve(HEADER_LEN + data.len());
                dst.put_u32(id);
                dst.put_u32(u32::from(*flags) << 24 | len);
                dst.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                flags,
                associated_to,
                priority,
                slot,
                header_block,
            } => {
                let len = checked_len("SYN_STREAM", 10 + header_block.len())?;
                let id = checked_id("SYN_STREAM", *stream_id)?;
                let assoc = checked_id("SYN_STREAM", *associated_to)?;
                put_control_header(dst, TYPE_SYN_STREAM, *flags, len);
                dst.put_u32(id);
                dst.put_u32(assoc);
                dst.put_u8((priority & 0x07) << 5);
                dst.put_u8(*slot);
                dst.put_slice(header_block);
            }
            Frame::SynReply {
                stream_id,
                flags,
                header_block,
            }
            | Frame::Headers {
                stream_id,
                flags,
                header_block,
            } => {
                let kind = if matches!(self, Frame::SynReply { .. }) {
                    TYPE_SYN_REPLY
                } else {
                    TYPE_HEADERS
                };
                let len = checked_len(kind_name(kind), 4 + header_block.len())?;
                let id = checked_id(kind_name(kind), *stream_id)?;
                put_control_header(dst, kind, *flags, len);
                dst.put_u32(id);
                dst.put_slice(header_block);
            }
            Frame::RstStream { stream_id, status } => {
                let id = checked_id("RST_STREAM", *stream_id)?;
                put_control_header(dst, TYPE_RST_STREAM, 0, 8);
                dst.put_u32(id);
                dst.put_u32(*status);
            }
            Frame::Settings { flags, entries } => {
                let len = checked_len("SETTINGS", 4 + 8 * entries.len())?;
                put_control_header(dst, TYPE_SETTINGS, *flags, len);
                // len is 4 + 8 * entries, checked above.
                dst.put_u32((len - 4) / 8);
                for e in entries {
                    dst.put_u32(u32::from(e.flags) << 24 | (e.id & 0x00ff_ffff));
                    dst.put_u32(e.value);
                }
            }
            Frame::Ping { id } => {
                put_control_header(dst, TYPE_PING, 0, 4);
                dst.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                let id = checked_id("GOAWAY", *last_good_stream_id)?;
                put_control_header(dst, TYPE_GOAWAY, 0, 8);
                dst.put_u32(id);
                dst.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let id = checked_id("WINDOW_UPDATE", *stream_id)?;
                let delta = checked_id("WINDOW_UPDATE", *delta)?;
                put_control_header(dst, TYPE_WINDOW_UPDATE, 0, 8);
                dst.put_u32(id);
                dst.put_u32(delta);
            }
            Frame::Unknown {
                kind,
                flags,
                payload,
            } => {
                let len = checked_len("unknown control", payload.len())?;
                put_control_header(dst, *kind, *flags, len);
                dst.put_slice(payload);
            }
        }
        Ok(())
    }
}

fn checked_len(kind: &'static str, len: usize) -> Result<u32, FrameError> {
    if len > MAX_LENGTH {
        return Err(FrameError::TooLarge {
            kind,
            len,
            limit: MAX_LENGTH,
        });
    }
    // MAX_LENGTH fits 24 bits, so the conversion cannot fail past the check.
    u32::try_from(len).map_err(|_| invalid(kind, "length does not fit 24 bits"))
}

fn checked_id(kind: &'static str, id: u32) -> Result<u32, FrameError> {
    if id > STREAM_ID_MASK {
        return Err(invalid(kind, "stream id or delta does not fit 31 bits"));
    }
    Ok(id)
}

fn put_control_header(dst: &mut BytesMut, kind: u16, flags: u8, len: u32) {
    dst.reserve(HEADER_LEN + len as usize);
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(kind);
    dst.put_u32(u32::from(flags) << 24 | len);
}

/// Splits a byte stream into frames. Stateless apart from its bounds: partial input stays in
/// the caller's buffer until the rest arrives.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    max_data: usize,
    max_control: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(MAX_DATA_PAYLOAD, MAX_CONTROL_PAYLOAD)
    }
}

impl Decoder {
    /// A decoder refusing DATA payloads over `max_data` and control payloads over
    /// `max_control` bytes.
    pub fn new(max_data: usize, max_control: usize) -> Decoder {
        Decoder {
            max_data,
            max_control,
        }
    }

    /// The next whole frame at the front of `buf`, removed from it; `Ok(None)` when `buf`
    /// holds only part of one (nothing is consumed). An error leaves `buf` in an unspecified
    /// state: the connection cannot be framed any more.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let first = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let flags = buf[4];
        let len = usize::from(buf[5]) << 16 | usize::from(buf[6]) << 8 | usize::from(buf[7]);
        let control = first & 0x8000_0000 != 0;
        let (kind, limit) = if control {
            let version = ((first >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(FrameError::Version(version));
            }
            let kind = (first & 0xffff) as u16;
            (kind_name(kind), self.max_control)
        } else {
            ("DATA", self.max_data)
        };
        // Refused on the header alone, so an oversized frame is never buffered.
        if len > limit {
            return Err(FrameError::TooLarge { kind, len, limit });
        }
        if buf.len() < HEADER_LEN + len {
            buf.reserve(HEADER_LEN + len - buf.len());
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let payload = buf.split_to(len).freeze();
        if control {
            decode_control((first & 0xffff) as u16, flags, payload).map(Some)
        } else {
            let stream_id = first & STREAM_ID_MASK;
            if stream_id == 0 {
                return Err(invalid("DATA", "stream id 0"));
            }
            Ok(Some(Frame::Data {
                stream_id,
                flags,
                data: payload,
            }))
        }
    }
}

fn decode_control(kind: u16, flags: u8, mut p: Bytes) -> Result<Frame, FrameError> {
    let name = kind_name(kind);
    let exact = |p: &Bytes, n: usize| {
        if p.len() == n {
            Ok(())
        } else {
            Err(invalid(name, "wrong payload length"))
        }
    };
    let stream = |id: u32| {
        let id = id & STREAM_ID_MASK;
        if id == 0 {
            Err(invalid(name, "stream id 0"))
        } else {
            Ok(id)
        }
    };
    let frame = match kind {
        TYPE_SYN_STREAM => {
            if p.len() < 10 {
                return Err(invalid(name, "payload shorter than 10 bytes"));
            }
            let stream_id = stream(p.get_u32())?;
            let associated_to = p.get_u32() & STREAM_ID_MASK;
            let priority = p.get_u8() >> 5;
            let slot = p.get_u8();
            Frame::SynStream {
                stream_id,
                flags,
                associated_to,
                priority,
                slot,
                header_block: p,
            }
        }
        TYPE_SYN_REPLY | TYPE_HEADERS => {
            if p.len() < 4 {
                return Err(invalid(name, "payload shorter than 4 bytes"));
            }
            let stream_id = stream(p.get_u32())?;
            if kind == TYPE_SYN_REPLY {
                Frame::SynReply {
                    stream_id,
                    flags,
                    header_block: p,
                }
            } else {
                Frame::Headers {
                    stream_id,
                    flags,
                    header_block: p,
                }
            }
        }
        TYPE_RST_STREAM => {
            exact(&p, 8)?;
            let stream_id = stream(p.get_u32())?;
            let status = p.get_u32();
            if status == 0 {
                return Err(invalid(name, "status 0"));
            }
            Frame::RstStream { stream_id, status }
        }
        TYPE_SETTINGS => {
            if p.len() < 4 {
                return Err(invalid(name, "payload shorter than 4 bytes"));
            }
            let count = p.get_u32() as usize;
            if count.checked_mul(8) != Some(p.len()) {
                return Err(invalid(name, "entry count does not match the length"));
            }
            let entries = (0..count)
                .map(|_| {
                    let head = p.get_u32();
                    Setting {
                        flags: (head >> 24) as u8,
                        id: head & 0x00ff_ffff,
                        value: p.get_u32(),
                    }
                })
                .collect();
            Frame::Settings { flags, entries }
        }
        TYPE_PING => {
            exact(&p, 4)?;
            Frame::Ping { id: p.get_u32() }
        }
        TYPE_GOAWAY => {
            exact(&p, 8)?;
            Frame::GoAway {
                last_good_stream_id: p.get_u32() & STREAM_ID_MASK,
                status: p.get_u32(),
            }
        }
        TYPE_WINDOW_UPDATE => {
            exact(&p, 8)?;
            Frame::WindowUpdate {
                stream_id: p.get_u32() & STREAM_ID_MASK,
                delta: p.get_u32() & STREAM_ID_MASK,
            }
        }
        _ => Frame::Unknown {
            kind,
            flags,
            payload: p,
        },
    };
    Ok(frame)
}
