//! The request conversions and error mapping of corrald, as a library so that the fuzz
//! targets (`fuzz/`) and the corpus replay test reach them; the daemon itself is `main.rs`.

pub mod convert;
#[doc(hidden)]
pub mod fuzzing;
pub mod status;
pub mod streaming;
