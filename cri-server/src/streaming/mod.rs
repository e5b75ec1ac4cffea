//! The streaming server: exec, attach and port-forward over the single-use URLs that the
//! CRI calls `Exec`, `Attach` and `PortForward` return, spoken in SPDY/3.1 or WebSocket.

pub mod channel;
pub mod spdy;
