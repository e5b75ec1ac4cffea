//! Manifests, indexes and image configs as fetched from a registry: parsed leniently (unknown
//! fields ignored) but validated strictly where we act on a value (digests, sizes, media types).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::reference::validate_digest;

/// Largest layer we accept, declared or streamed: far above any real image, well below what
/// would fill a disk by accident.
pub const MAX_LAYER_BYTES: u64 = 64 << 30;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// The parts of an image config (OCI image-spec `config.json`) the runtime uses.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ImageConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: ContainerConfig,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ContainerConfig {
    #[serde(rename = "User", default)]
    pub user: Option<String>,
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "StopSignal", default)]
    pub stop_signal: Option<String>,
    #[serde(rename = "Volumes", default)]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

fn invalid(what: &str, reason: impl Into<String>) -> String {
    format!("{what}: {}", reason.into())
}

pub fn validate_descriptor(d: &Descriptor, what: &str) -> Result<u64, String> {
    validate_digest(&d.digest).map_err(|r| invalid(what, format!("digest {:?}: {r}", d.digest)))?;
    if d.size < 0 || d.size as u64 > MAX_LAYER_BYTES {
        return Err(invalid(what, format!("size {} out of range", d.size)));
    }
    Ok(d.size as u64)
}

/// Layer media types we can unpack. Foreign (non-distributable) layers are refused: they point
/// at URLs outside the registry, which a node should not fetch silently.
pub fn is_supported_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd"
    )
}

pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    let m: Manifest =
        serde_json::from_slice(bytes).map_err(|e| invalid("manifest", e.to_string()))?;
    validate_descriptor(&m.config, "manifest config")?;
    for (i, l) in m.layers.iter().enumerate() {
        validate_descriptor(l, &format!("manifest layer {i}"))?;
        if !is_supported_layer(&l.media_type) {
            return Err(invalid(
                &format!("manifest layer {i}"),
                format!("unsupported media type {:?}", l.media_type),
            ));
        }
    }
    Ok(m)
}

pub fn parse_config(bytes: &[u8], layers: usize) -> Result<ImageConfigFile, String> {
    let c: ImageConfigFile =
        serde_json::from_slice(bytes).map_err(|e| invalid("image config", e.to_string()))?;
    if c.rootfs.diff_ids.len() != layers {
        return Err(invalid(
            "image config",
            format!("{} diff_ids for {layers} layers", c.rootfs.diff_ids.len()),
        ));
    }
    for d in &c.rootfs.diff_ids {
        validate_digest(d).map_err(|r| invalid("image config diff_id", format!("{d:?}: {r}")))?;
    }
    Ok(c)
}

/// Go's name for this machine's architecture, as image platforms spell it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "arm" => "arm",
        other => other,
    }
}

/// Pick the manifest for linux/<host arch> from an index, like containerd's default matcher:
/// an exact os/arch match, preferring `v8` (or no variant) on arm64.
pub fn select_platform<'a>(index: &'a Index, arch: &str) -> Result<&'a Descriptor, String> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .collect();
    let pick = candidates
        .iter()
        .find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                arch != "arm64" || matches!(p.variant.as_deref(), None | Some("v8") | Some(""))
            })
        })
        .or(candidates.first())
        .copied();
    let d = pick.ok_or_else(|| {
        let available: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .map(|p| format!("{}/{}", p.os, p.architecture))
            .collect();
        format!(
            "no manifest for linux/{arch} in the index (has: {})",
            available.join(", ")
        )
    })?;
    validate_descriptor(d, "index entry")?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn index(entries: &[(&str, &str, Option<&str>, &str)]) -> Index {
        Index {
            manifests: entries
                .iter()
                .map(|(os, arch, variant, digest)| Descriptor {
                    media_type: String::new(),
                    digest: digest.to_string(),
                    size: 10,
                    platform: Some(Platform {
                        os: os.to_string(),
                        architecture: arch.to_string(),
                        variant: variant.map(str::to_string),
                    }),
                })
                .collect(),
        }
    }

    #[test]
    fn selects_host_platform() {
        let i = index(&[
            ("linux", "arm64", Some("v8"), D1),
            ("linux", "amd64", None, D2),
        ]);
        assert_eq!(select_platform(&i, "amd64").unwrap().digest, D2);
        assert_eq!(select_platform(&i, "arm64").unwrap().digest, D1);
        let err = select_platform(&i, "s390x").unwrap_err();
        assert!(err.contains("linux/amd64"), "{err}");
        let i = index(&[("windows", "amd64", None, D1)]);
        assert!(select_platform(&i, "amd64").is_err());
    }

    #[test]
    fn manifest_validation() {
        let ok = format!(
            r#"{{"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":5}},
               "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{D2}","size":7}}]}}"#
        );
        assert_eq!(parse_manifest(ok.as_bytes()).unwrap().layers.len(), 1);
        let bad_digest = ok.replace(D2, "sha256:xyz");
        assert!(parse_manifest(bad_digest.as_bytes()).is_err());
        let negative = ok.replace("\"size\":7", "\"size\":-1");
        assert!(parse_manifest(negative.as_bytes()).is_err());
        let foreign = ok.replace(
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        );
        assert!(parse_manifest(foreign.as_bytes()).is_err());
    }

    #[test]
    fn config_needs_matching_diff_ids() {
        let c = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{D1}"]}},"config":{{"User":"1000","Env":["A=1"]}}}}"#
        );
        let parsed = parse_config(c.as_bytes(), 1).unwrap();
        assert_eq!(parsed.config.user.as_deref(), Some("1000"));
        assert!(parse_config(c.as_bytes(), 2).is_err());
        assert!(parse_config(b"{}", 0).is_err());
    }
}
