//! See `runtime::fuzzing::shim_protocol`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| runtime::fuzzing::shim_protocol(data));
