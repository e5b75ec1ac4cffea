use std::collections::HashMap;

use runtime::image::{AuthConfig, FsUsage};
use runtime::store::image::ImageRecord;

/// An image as CRI shows it. The user comes from the image config: a numeric user is a uid,
/// anything else a name for kubelet's runAsNonRoot checks (as containerd reports it).
pub fn to_cri_image(r: &ImageRecord) -> proto::Image {
    let (uid, username) = image_user(r.config.config.user.as_deref().unwrap_or(""));
    proto::Image {
        id: r.id.clone(),
        repo_tags: r.repo_tags.clone(),
        repo_digests: r.repo_digests.clone(),
        size: r.size,
        uid: uid.map(|value| proto::Int64Value { value }),
        username,
        spec: Some(proto::ImageSpec {
            image: r.id.clone(),
            annotations: HashMap::new(),
            user_specified_image: String::new(),
            runtime_handler: String::new(),
        }),
        pinned: r.pinned,
    }
}

/// `user[:group]` → (uid, username).
fn image_user(user: &str) -> (Option<i64>, String) {
    let user = user.split(':').next().unwrap_or("");
    if user.is_empty() {
        return (None, String::new());
    }
    match user.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, user.to_string()),
    }
}

pub fn to_auth(a: Option<proto::AuthConfig>) -> Option<AuthConfig> {
    a.map(|a| AuthConfig {
        username: a.username,
        password: a.password,
        auth: a.auth,
        identity_token: a.identity_token,
        registry_token: a.registry_token,
    })
    .filter(|a| !a.is_empty())
}

pub fn to_filesystem_usage(u: &FsUsage) -> proto::FilesystemUsage {
    proto::FilesystemUsage {
        timestamp: u.timestamp,
        fs_id: Some(proto::FilesystemIdentifier {
            mountpoint: u.mountpoint.display().to_string(),
        }),
        used_bytes: Some(proto::UInt64Value {
            value: u.used_bytes,
        }),
        inodes_used: Some(proto::UInt64Value {
            value: u.inodes_used,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_forms() {
        assert_eq!(image_user(""), (None, String::new()));
        assert_eq!(image_user("1000"), (Some(1000), String::new()));
        assert_eq!(image_user("1000:1000"), (Some(1000), String::new()));
        assert_eq!(image_user("app"), (None, "app".to_string()));
        assert_eq!(image_user("app:staff"), (None, "app".to_string()));
        assert_eq!(image_user("0"), (Some(0), String::new()));
    }
}
