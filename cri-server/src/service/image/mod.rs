//! ImageService RPCs, one file each.

mod image_fs_info;
mod image_list;
mod image_pull;
mod image_remove;
mod image_status;

use crate::status::CriError;

/// The `image.image` string every image RPC needs.
fn required_image<'a>(
    spec: &'a Option<proto::ImageSpec>,
    field: &'static str,
) -> Result<&'a str, CriError> {
    match spec.as_ref().map(|s| s.image.as_str()) {
        Some(i) if !i.is_empty() => Ok(i),
        _ => Err(CriError::invalid(
            field,
            "an image reference or id is required",
        )),
    }
}
