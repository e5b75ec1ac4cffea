//! RuntimeService RPCs, one file each.

mod runtime_config;
mod status;
mod version;
