use crate::convert::image::to_filesystem_usage;
use crate::service::CriService;
use crate::status::CriError;

impl CriService {
    /// Bytes and inodes under the image store, measured now (kubelet's image GC acts on it).
    pub(crate) async fn image_fs_info(
        &self,
        _req: proto::ImageFsInfoRequest,
    ) -> Result<proto::ImageFsInfoResponse, CriError> {
        let usage = self.images().fs_usage().await?;
        Ok(proto::ImageFsInfoResponse {
            image_filesystems: vec![to_filesystem_usage(&usage)],
            container_filesystems: Vec::new(),
        })
    }
}
