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
        // Unix nanoseconds, as the store stamps `created_at`.
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let pulled = self.images().pull(image, to_auth(req.auth)).await;
        let record = match pulled {
            Ok(record) => record,
            Err(e) => {
                crate::metrics::record_pull(false, 0);
                return Err(e.into());
            }
        };
        // The store keeps the `created_at` of the pull that first stored an image, so one
        // older than this call was already here: nothing came from the registry and it adds
        // no bytes. A new image counts its whole registry size (config plus compressed
        // layers), even when some layers were already stored for another image; and two
        // concurrent first pulls of one image both count it. Both are upper bounds, which is
        // what a byte counter of pulls is for.
        let fetched = if record.created_at >= started {
            record.size
        } else {
            0
        };
        crate::metrics::record_pull(true, fetched);
        Ok(proto::PullImageResponse {
            image_ref: record.id,
        })
    }
}
