//! RuntimeService RPCs, one file each.

mod container_create;
pub(crate) mod container_events;
mod container_list;
mod container_remove;
mod container_reopen_log;
mod container_start;
mod container_stats;
mod container_stats_list;
mod container_status;
mod container_stop;
mod container_update;
mod exec_sync;
mod metric_descriptors;
mod runtime_config;
mod runtime_config_update;
mod sandbox_list;
mod sandbox_metrics_list;
mod sandbox_remove;
mod sandbox_run;
mod sandbox_stats;
mod sandbox_stats_list;
pub(crate) mod sandbox_status;
mod sandbox_stop;
mod status;
mod version;
