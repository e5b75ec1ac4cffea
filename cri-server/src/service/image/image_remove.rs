use super::required_image;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// Removes the image with all its names. Idempotent: removing an unknown image succeeds
    /// (api.proto: "must not return an error if the image has already been removed").
    pub(crate) async fn remove_image(
        &self,
        req: proto::RemoveImageRequest,
    ) -> Result<proto::RemoveImageResponse, CriError> {
        let image = required_image(&req.image, "image.image")?;
        self.images().remove(image).await?;
        Ok(proto::RemoveImageResponse {})
    }
}
