//! The Corral runtime: images, snapshots, sandboxes and containers, and their metadata store.
//! Knows nothing of gRPC; `cri-server` converts at its edge.
#![deny(unsafe_code)]

pub mod cgroups;
mod clock;
pub mod container;
pub mod error;
pub mod events;
pub mod fstree;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
mod intent;
pub mod locks;
pub mod sandbox;
pub mod shim;
pub mod shim_client;
pub mod stats;
pub mod store;

pub use error::{Error, ErrorKind, Result};
