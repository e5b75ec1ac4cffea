//! Test harness for the end-to-end suite: a loopback registry filled with images the suite
//! builds itself, a real `corrald` on a temporary socket and root, and a CRI client.

pub mod cgroups;
pub mod client;
pub mod daemon;
pub mod harness;
pub mod images;
pub mod registry;
pub mod skip;
pub mod streaming;
pub mod tree;
