use std::collections::HashMap;

use super::required_image;
use crate::convert::image::to_cri_image;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// An unknown image is not an error: the response carries no image (api.proto).
    pub(crate) async fn image_status(
        &self,
        req: proto::ImageStatusRequest,
    ) -> Result<proto::ImageStatusResponse, CriError> {
        let image = required_image(&req.image, "image.image")?;
        let Some(record) = self.images().resolve(image)? else {
            return Ok(proto::ImageStatusResponse::default());
        };
        let mut info = HashMap::new();
        if req.verbose {
            let config: serde_json::Value =
                serde_json::from_slice(&self.images().config_json(&record)?).map_err(|e| {
                    ::runtime::Error::Internal(format!("stored config of {}: {e}", record.id))
                })?;
            let verbose = serde_json::json!({
                "imageSpec": config,
                "manifestDigest": record.manifest_digest,
                "layers": record.layers,
                "snapshots": self.images().layer_dirs(&record),
            });
            info.insert("info".to_string(), verbose.to_string());
        }
        Ok(proto::ImageStatusResponse {
            image: Some(to_cri_image(&record)),
            info,
        })
    }
}
