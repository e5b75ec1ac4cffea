//! The body of the `cri_convert` fuzz target, here so that `cargo test` replays the
//! committed corpus through it (`cri-server/tests/fuzz_corpus.rs`).

use prost::Message;

use crate::convert;
use crate::status::CriError;

/// Decode one CRI request from `data[1..]` (`data[0]` picks the message type) and convert it
/// as the handler would. Anything may be refused, but only as InvalidArgument naming a field,
/// and nothing may panic.
pub fn cri_convert(data: &[u8]) {
    let Some((kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => {
            if let Ok(req) = proto::RunPodSandboxRequest::decode(bytes) {
                if let Some(config) = req.config {
                    check(convert::sandbox::sandbox_config(
                        config,
                        req.runtime_handler,
                    ));
                }
            }
        }
        1 => {
            if let Ok(req) = proto::CreateContainerRequest::decode(bytes) {
                if let Some(config) = &req.config {
                    check(convert::container::container_config(config));
                }
                if let Some(config) = req.sandbox_config {
                    check(convert::sandbox::sandbox_config(config, String::new()));
                }
            }
        }
        2 => {
            if let Ok(req) = proto::UpdateContainerResourcesRequest::decode(bytes) {
                if let Some(linux) = &req.linux {
                    check(convert::resources::resources(linux, "linux"));
                    check(convert::resources::oom_score_adj(
                        linux.oom_score_adj,
                        "linux",
                    ));
                }
            }
        }
        _ => {
            if let Ok(req) = proto::PullImageRequest::decode(bytes) {
                let _ = convert::image::to_auth(req.auth);
                if let Some(image) = req.image {
                    let _ = runtime::image::reference::Reference::parse(&image.image);
                }
            }
        }
    }
}

fn check<T>(result: Result<T, CriError>) {
    if let Err(e) = result {
        let message = e.message();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{message}");
        assert!(message.starts_with("invalid "), "no field named: {message}");
        let _ = tonic::Status::from(e);
    }
}
