//! The metadata store: one embedded ACID database (redb) under the root dir. Every change that
//! must survive a crash is one transaction, so a kill -9 leaves either the old or the new state.

pub mod container;
mod db;
pub mod image;
pub mod sandbox;

pub use db::Db;
