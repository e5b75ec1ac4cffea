//! SPDY/3.1, server side: what kubelet, crictl and critest speak to the streaming server
//! after `Upgrade: SPDY/3.1` (the Go clients use github.com/moby/spdystream).
//!
//! - [`frame`]: the wire format of every frame and an incremental decoder over a byte
//!   buffer; header blocks stay compressed at this layer.
//! - [`headers`]: the name/value header block and its zlib compression with the SPDY/3
//!   dictionary; one stateful compressor per direction of a connection.
//! - [`Session`]: a reader task and a writer task on a connection. It hands each stream the
//!   client opens out as a [`NewStream`], which the caller accepts (SYN_REPLY, then the
//!   stream's [`Inbound`](crate::streaming::channel::Inbound) and
//!   [`Outbound`](crate::streaming::channel::Outbound)) or resets.
//!
//! Flow control: spdystream never sends WINDOW_UPDATE and ignores the ones it receives, so
//! a server that honoured the peer's window would stall after the first 64 KiB. The writer
//! therefore never waits on the peer's window: back-pressure is TCP's (a peer that stops
//! reading fills the socket, the writer waits, the bounded session queue fills, and the
//! producers wait). In the other direction SPDY/3.1 requires the receiver to open the
//! window again, so the reader sends WINDOW_UPDATE for the stream and for the session
//! (stream 0) after each [`session::WINDOW_UPDATE_EVERY`] bytes it consumed; a strict
//! client works too. SETTINGS are ignored.
//!
//! Bounds: a DATA payload may be as long as the 24-bit length field allows (Go clients
//! write frames as large as their `Write` calls), a control frame at most 1 MiB, a
//! decompressed header block at most 1 MiB with at most 1000 headers, and a session at most
//! [`session::MAX_STREAMS`] open streams. A frame beyond its bound is refused as soon as
//! its 8-byte header arrives, before its payload is buffered.

pub mod frame;
pub mod headers;
pub mod session;

pub use headers::Headers;
pub use session::{NewStream, Session};

#[cfg(test)]
mod tests;
