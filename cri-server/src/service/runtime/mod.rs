//! RuntimeService RPCs, one file each.

mod runtime_config;
mod runtime_config_update;
mod sandbox_list;
mod sandbox_remove;
mod sandbox_run;
mod sandbox_status;
mod sandbox_stop;
mod status;
mod version;
