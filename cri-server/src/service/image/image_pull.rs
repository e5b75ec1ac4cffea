use super::required_image;
use crate::convert::image::to_auth;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// Pull and unpack; answers with the image id (the config digest), as containerd does.
    pub(crate) async fn pull_image(
        &self,
        req: proto::PullImageRequest,
    ) -> Result<proto::PullImageResponse, CriError> {
        let image = required_image(&req.image, "image.image")?;
        let record = self.images().pull(image, to_auth(req.auth)).await?;
        Ok(proto::PullImageResponse {
            image_ref: record.id,
        })
    }
}
