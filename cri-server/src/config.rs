//! corrald's configuration: embedded defaults, then the TOML file, then command-line flags.

use std::path::{Path, PathBuf};

use runtime::image::{ImageLimits, RegistryConfig};
use runtime::sandbox::NetworkConfig;
use serde::{Deserialize, Serialize};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/corral/config.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    Cgroupfs,
}

/// The whole file. Every field has a default, so an empty file (or none) is a valid config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The CRI socket (`/path` or `unix:///path`).
    pub listen: String,
    /// Persistent data: metadata database, content store, snapshots.
    pub root: PathBuf,
    /// Runtime state that must not survive a reboot: pinned namespaces, bundles, sockets.
    pub state: PathBuf,
    /// `tracing` filter directive (`info`, `debug`, `runtime=debug,info`).
    pub log_level: String,
    pub log_format: LogFormat,
    /// Only `cgroupfs` for now; reported to kubelet through RuntimeConfig.
    pub cgroup_driver: CgroupDriver,
    pub registry: RegistryConfig,
    /// `[image]`: bounds on what one pull may fetch and unpack (see README).
    pub image: ImageLimits,
    /// The pod bridge and its subnet.
    pub network: NetworkConfig,
    /// `host:port` for corrald's own Prometheus metrics over HTTP (`GET /metrics`), e.g.
    /// `127.0.0.1:9109`. Empty (the default): no metrics endpoint. The endpoint has no
    /// authentication, so keep it on loopback or a trusted network.
    pub metrics_address: String,
    /// `[streaming]`: the exec/attach/port-forward server (loopback, a free port).
    pub streaming: cri_server::streaming::StreamingConfig,
    /// How long a starting corrald waits for `<root>/corrald.lock` while another (say one
    /// that was just killed and is still exiting) holds it, before giving up.
    pub root_lock_wait_seconds: u64,
    /// Where CDI device specs are read from; a later directory wins over an earlier one.
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// A pull whose layer sends no byte for this long is cancelled (containerd's key and
    /// default, a Go duration: "5m0s", "90s", "1h"); "0" never cancels.
    pub image_pull_progress_timeout: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "/run/corral/corral.sock".into(),
            root: "/var/lib/corral".into(),
            state: "/run/corral".into(),
            log_level: "info".into(),
            log_format: LogFormat::Text,
            cgroup_driver: CgroupDriver::Cgroupfs,
            registry: RegistryConfig::default(),
            image: ImageLimits::default(),
            network: NetworkConfig::default(),
            metrics_address: String::new(),
            streaming: Default::default(),
            root_lock_wait_seconds: 30,
            cdi_spec_dirs: runtime::container::cdi::DEFAULT_SPEC_DIRS
                .iter()
                .map(PathBuf::from)
                .collect(),
            image_pull_progress_timeout: "5m0s".into(),
        }
    }
}

/// A Go-style duration: numbers with units h, m, s, ms run together ("5m0s", "1h30m",
/// "1500ms"), or a bare "0".
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if text.is_empty() {
        return Err("empty: want a duration such as \"5m0s\" or \"0\"".into());
    }
    let mut total_ms: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{rest:?} is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms_per = match &rest[..unit_len] {
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            "" => return Err("a number without a unit (h, m, s, ms)".into()),
            u => return Err(format!("unknown unit {u:?}: want h, m, s or ms")),
        };
        rest = &rest[unit_len..];
        total_ms = n
            .checked_mul(ms_per)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(|| "too long".to_string())?;
    }
    Ok(std::time::Duration::from_millis(total_ms))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing config {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Load `path`, or the default path when none is given. Only an explicitly named file must
    /// exist: with no file at the default path the embedded defaults apply.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default())
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Config::parse(&text).map_err(|source| ConfigError::Parse { path, source })
    }

    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// `image_pull_progress_timeout` as a duration; None for "0" (never).
    pub fn pull_progress_timeout(&self) -> Result<Option<std::time::Duration>, ConfigError> {
        let d = parse_duration(&self.image_pull_progress_timeout).map_err(|e| {
            ConfigError::Invalid(format!(
                "image_pull_progress_timeout {:?}: {e}",
                self.image_pull_progress_timeout
            ))
        })?;
        Ok((!d.is_zero()).then_some(d))
    }

    /// The socket path, accepting kubelet's `unix://` form.
    pub fn socket_path(&self) -> Result<PathBuf, ConfigError> {
        let p = self.listen.strip_prefix("unix://").unwrap_or(&self.listen);
        if !p.starts_with('/') {
            return Err(ConfigError::Invalid(format!(
                "listen: {:?} must be an absolute unix socket path",
                self.listen
            )));
        }
        Ok(PathBuf::from(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.listen, "/run/corral/corral.sock");
        assert_eq!(c.root, PathBuf::from("/var/lib/corral"));
        assert_eq!(c.state, PathBuf::from("/run/corral"));
        assert_eq!(
            c.socket_path().unwrap(),
            PathBuf::from("/run/corral/corral.sock")
        );
    }

    #[test]
    fn containerd_style_mirrors() {
        let c = Config::parse(
            r#"
            listen = "unix:///tmp/x.sock"
            log_format = "json"
            [registry.mirrors."registry.k8s.io"]
            endpoints = ["http://127.0.0.1:5000"]
            [registry.mirrors."docker.io"]
            endpoints = ["http://127.0.0.1:5000", "https://mirror.example"]
            [registry.configs."127.0.0.1:5443".tls]
            ca_file = "/etc/corral/ca.pem"
            [registry.configs."127.0.0.1:5443".auth]
            username = "u"
            password = "p"
            "#,
        )
        .unwrap();
        assert_eq!(c.socket_path().unwrap(), PathBuf::from("/tmp/x.sock"));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(
            c.registry.mirrors["docker.io"].endpoints,
            ["http://127.0.0.1:5000", "https://mirror.example"]
        );
        let host = &c.registry.configs["127.0.0.1:5443"];
        assert_eq!(
            host.tls.as_ref().and_then(|t| t.ca_file.clone()),
            Some(PathBuf::from("/etc/corral/ca.pem"))
        );
        assert_eq!(host.auth.as_ref().map(|a| a.username.as_str()), Some("u"));
    }

    #[test]
    fn unknown_keys_and_relative_sockets_are_errors() {
        assert!(Config::parse("lisen = \"/x\"").is_err());
        let c = Config::parse("listen = \"relative.sock\"").unwrap();
        assert!(c.socket_path().is_err());
        assert!(Config::load(Some(Path::new("/nonexistent/corral.toml"))).is_err());
    }

    #[test]
    fn image_limits_default_and_override() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.image, ImageLimits::default());
        let c = Config::parse("[image]\nmax_depth = 64\nmax_layer_entries = 5000\n").unwrap();
        assert_eq!(c.image.max_depth, 64);
        assert_eq!(c.image.max_layer_entries, 5000);
        assert_eq!(
            c.image.max_layer_bytes,
            ImageLimits::default().max_layer_bytes
        );
        assert!(Config::parse("[image]\nmax_dept = 64\n").is_err());
    }

    #[test]
    fn cdi_spec_dirs_default_and_override() {
        let d = Config::parse("").unwrap().cdi_spec_dirs;
        assert_eq!(
            d,
            [PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")]
        );
        let c = Config::parse("cdi_spec_dirs = [\"/tmp/cdi\"]").unwrap();
        assert_eq!(c.cdi_spec_dirs, [PathBuf::from("/tmp/cdi")]);
    }

    #[test]
    fn pull_progress_timeouts_are_go_durations() {
        use std::time::Duration;
        assert_eq!(
            Config::default().pull_progress_timeout().unwrap(),
            Some(Duration::from_secs(300))
        );
        for (text, want) in [
            ("5m0s", Some(300_000)),
            ("90s", Some(90_000)),
            ("1h30m", Some(5_400_000)),
            ("1500ms", Some(1_500)),
            ("0", None),
        ] {
            let c = Config::parse(&format!("image_pull_progress_timeout = {text:?}")).unwrap();
            assert_eq!(
                c.pull_progress_timeout().unwrap(),
                want.map(Duration::from_millis),
                "{text}"
            );
        }
        for bad in ["", "5", "5x", "m", "99999999999999999999h"] {
            let c = Config::parse(&format!("image_pull_progress_timeout = {bad:?}")).unwrap();
            let e = c.pull_progress_timeout().unwrap_err().to_string();
            assert!(e.contains("image_pull_progress_timeout"), "{bad}: {e}");
        }
    }

    #[test]
    fn metrics_address_is_off_unless_set() {
        assert_eq!(Config::parse("").unwrap().metrics_address, "");
        let c = Config::parse("metrics_address = \"127.0.0.1:9109\"").unwrap();
        assert_eq!(c.metrics_address, "127.0.0.1:9109");
        assert!(Config::parse("metrics_address = 9109").is_err());
    }
}
