//! proto ↔ runtime types: the only place the two meet.

pub mod image;
pub mod sandbox;
