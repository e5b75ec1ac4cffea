use crate::convert::image::to_cri_image;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// All images, or only the one the filter names (by id, tag or digest).
    pub(crate) async fn list_images(
        &self,
        req: proto::ListImagesRequest,
    ) -> Result<proto::ListImagesResponse, CriError> {
        let wanted = req
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|i| !i.is_empty());
        let records = match wanted {
            Some(image) => self.images().resolve(&image)?.into_iter().collect(),
            None => self.images().list()?,
        };
        Ok(proto::ListImagesResponse {
            images: records.iter().map(to_cri_image).collect(),
        })
    }
}
