//! The Corral runtime: images, snapshots, sandboxes and containers, and their metadata store.
//! Knows nothing of gRPC; `cri-server` converts at its edge.
#![deny(unsafe_code)]

pub mod error;
pub mod image;
pub mod store;

pub use error::{Error, ErrorKind, Result};
