//! proto ↔ runtime types: the only place the two meet.

pub mod container;
pub mod container_status;
pub mod image;
pub mod limits;
pub mod resources;
pub mod sandbox;
pub mod stats;
