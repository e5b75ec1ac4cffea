//! CRI v1 types and the tonic service traits, re-exported from `k8s-cri`.
//!
//! Nothing here is written by hand: `cri-server` is the only crate that uses these types, and
//! it converts them to the runtime's own types at its edge (DESIGN.md, Layout).

pub use k8s_cri::v1::*;

/// Server-side service traits and wrappers.
pub mod server {
    pub use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
    pub use k8s_cri::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
}

/// Client stubs, used by the e2e suite and the benchmark.
pub mod client {
    pub use k8s_cri::v1::image_service_client::ImageServiceClient;
    pub use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
}
