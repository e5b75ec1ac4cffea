//! Network configurations: `.conflist` files and single-plugin `.conf`/`.json` files from the
//! config directory, validated as hostile input (size, JSON shape, names, versions).
//!
//! Each plugin's object is kept as the JSON the administrator wrote, so that keys we don't
//! know reach the plugin unchanged (libcni does the same); the spec types of `rscni-types`
//! only check it.

use std::io::Read;
use std::path::{Path, PathBuf};

use rscni_types::types::{NetConf, NetConfList};
use rscni_types::version::SpecVersion;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Larger than any real network config (Calico's are a few KiB).
pub const MAX_CONF_BYTES: u64 = 1 << 20;
/// At most this many files of a directory are looked at.
const MAX_FILES: usize = 1000;

/// One plugin of a chain.
#[derive(Clone, Debug, PartialEq)]
pub struct Plugin {
    /// The binary's name in the bin dirs.
    pub kind: String,
    /// The object as written, without the runtime's keys.
    pub conf: Map<String, Value>,
}

impl Plugin {
    /// Whether the plugin declares `capability` (`"capabilities": {"portMappings": true}`).
    pub fn wants(&self, capability: &str) -> bool {
        self.conf
            .get("capabilities")
            .and_then(|c| c.get(capability))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// A network: a list of plugins run in order for ADD, in reverse for DEL.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkList {
    pub name: String,
    /// `cniVersion` as given (injected into each plugin's config).
    pub cni_version: String,
    pub version: SpecVersion,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub plugins: Vec<Plugin>,
    /// The file it came from (for messages).
    pub source: PathBuf,
}

impl NetworkList {
    /// Parses a `.conflist` (`is_list`) or a single plugin's `.conf`.
    pub fn parse(bytes: &[u8], is_list: bool, source: &Path) -> Result<NetworkList> {
        let bad = |why: String| Error::invalid(format!("cni config {}", source.display()), why);
        if bytes.len() as u64 > MAX_CONF_BYTES {
            return Err(bad(format!("larger than {MAX_CONF_BYTES} bytes")));
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let Value::Object(mut top) = value else {
            return Err(bad("not a JSON object".into()));
        };
        let (list, raw_plugins) = if is_list {
            let list: NetConfList = serde_json::from_value(Value::Object(top.clone()))
                .map_err(|e| bad(e.to_string()))?;
            let plugins = match top.remove("plugins") {
                Some(Value::Array(p)) => p,
                _ => return Err(bad("\"plugins\" must be a non-empty array".into())),
            };
            (list, plugins)
        } else {
            // A single plugin: a list of one, as libcni's ConfListFromConf.
            let conf: NetConf = serde_json::from_value(Value::Object(top.clone()))
                .map_err(|e| bad(e.to_string()))?;
            let list = NetConfList {
                cni_version: conf.cni_version.clone(),
                cni_versions: Vec::new(),
                name: conf.name.clone(),
                disable_check: false,
                disable_gc: false,
                load_only_inlined_plugins: false,
                plugins: vec![conf],
            };
            (list, vec![Value::Object(top)])
        };
        validate_name(&list.name).map_err(bad)?;
        let version = list.version().map_err(|e| bad(e.to_string()))?;
        if !version.is_supported() {
            return Err(bad(format!(
                "cniVersion {version} is not supported (0.3.0 or later)"
            )));
        }
        if raw_plugins.is_empty() {
            return Err(bad("no plugins".into()));
        }
        let mut plugins = Vec::with_capacity(raw_plugins.len());
        for (i, raw) in raw_plugins.into_iter().enumerate() {
            let Value::Object(mut conf) = raw else {
                return Err(bad(format!("plugins[{i}] is not an object")));
            };
            let kind = conf
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            validate_type(&kind).map_err(|e| bad(format!("plugins[{i}].type: {e}")))?;
            if let Some(ipam) = conf.get("ipam").and_then(|i| i.get("type")) {
                let t = ipam.as_str().unwrap_or_default();
                validate_type(t).map_err(|e| bad(format!("plugins[{i}].ipam.type: {e}")))?;
            }
            // The runtime's keys are ours to set on each call.
            for key in ["name", "cniVersion", "runtimeConfig", "prevResult"] {
                conf.remove(key);
            }
            plugins.push(Plugin { kind, conf });
        }
        let cni_version = if list.cni_version.is_empty() {
            version.to_string()
        } else {
            list.cni_version.clone()
        };
        Ok(NetworkList {
            name: list.name,
            cni_version,
            version,
            disable_check: list.disable_check,
            disable_gc: list.disable_gc,
            plugins,
            source: source.to_path_buf(),
        })
    }

    /// The list as a `.conflist` document (what the result cache keeps).
    pub fn to_json(&self) -> Value {
        let plugins = self
            .plugins
            .iter()
            .map(|p| Value::Object(p.conf.clone()))
            .collect();
        serde_json::json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "disableCheck": self.disable_check,
            "disableGC": self.disable_gc,
            "plugins": Value::Array(plugins),
        })
    }

    /// The stdin config of plugin `i` for one call: its own object plus the list's name and
    /// version, the runtime's capability arguments it declared, and the previous result.
    pub fn plugin_stdin(
        &self,
        i: usize,
        runtime_config: &Map<String, Value>,
        prev_result: Option<&Value>,
        extra: &[(&str, Value)],
    ) -> Result<Vec<u8>> {
        let plugin = self
            .plugins
            .get(i)
            .ok_or_else(|| Error::Internal(format!("no plugin {i} in network {}", self.name)))?;
        let mut conf = plugin.conf.clone();
        conf.insert("name".into(), Value::String(self.name.clone()));
        conf.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        let wanted: Map<String, Value> = runtime_config
            .iter()
            .filter(|(k, _)| plugin.wants(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !wanted.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(wanted));
        }
        if let Some(prev) = prev_result {
            conf.insert("prevResult".into(), prev.clone());
        }
        for (k, v) in extra {
            conf.insert((*k).to_string(), v.clone());
        }
        serde_json::to_vec(&Value::Object(conf))
            .map_err(|e| Error::Internal(format!("encoding a plugin config: {e}")))
    }
}

/// What a config directory holds: the network new pods get, or why there is none.
#[derive(Clone, Debug)]
pub enum DirState {
    Ready(std::sync::Arc<NetworkList>),
    /// No usable config; the reason names the dir and each file that was refused.
    Missing(String),
}

/// The first valid network config of `dir` in lexical order of file names (`.conf`,
/// `.conflist`, `.json`), as kubelet's and containerd's loaders choose; files that fail
/// validation are skipped and named in the reason when none is valid.
pub fn load_dir(dir: &Path) -> DirState {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            return DirState::Missing(format!(
                "no network config: cannot read {}: {e}",
                dir.display()
            ))
        }
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .take(MAX_FILES)
        .map(|e| e.path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conf" | "conflist" | "json")
            )
        })
        .collect();
    files.sort();
    let mut refused = Vec::new();
    for file in files {
        match load_file(&file) {
            Ok(list) => return DirState::Ready(std::sync::Arc::new(list)),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "skipping a CNI config");
                refused.push(e.to_string());
            }
        }
    }
    let mut why = format!("no valid network config in {}", dir.display());
    if !refused.is_empty() {
        why.push_str(": ");
        why.push_str(&refused.join("; "));
    }
    DirState::Missing(why)
}

/// One file, read with its size bounded; symlinks are followed (operators link configs
/// in) but only regular files are read.
pub fn load_file(path: &Path) -> Result<NetworkList> {
    let ctx = format!("reading {}", path.display());
    let file = std::fs::File::open(path).map_err(Error::io(ctx.clone()))?;
    let meta = file.metadata().map_err(Error::io(ctx.clone()))?;
    if !meta.is_file() {
        return Err(Error::invalid(
            format!("cni config {}", path.display()),
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONF_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Error::io(ctx))?;
    let is_list = path.extension().and_then(|e| e.to_str()) == Some("conflist");
    NetworkList::parse(&bytes, is_list, path)
}

/// The spec's rule for network names (and container ids): an ASCII alphanumeric, then
/// alphanumerics, `_`, `.`, `-`. Also bounded, since it becomes part of a file name.
pub fn validate_name(name: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let ok = name.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid network name {name:?}"))
    }
}

/// A plugin type names a file in the bin dirs: never a path.
fn validate_type(kind: &str) -> std::result::Result<(), String> {
    let ok = !kind.is_empty()
        && kind.len() <= 255
        && kind != "."
        && kind != ".."
        && kind
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(format!("{kind:?} is not a plugin name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{
        "cniVersion": "1.0.0", "name": "k8s-pod-network",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.233.0.0/24"}]]}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]}"#;

    #[test]
    fn conflist_parses_and_keeps_unknown_keys() {
        let l =
            NetworkList::parse(LIST.as_bytes(), true, Path::new("10-x.conflist")).expect("parse");
        assert_eq!(l.name, "k8s-pod-network");
        assert_eq!(l.version, SpecVersion::new(1, 0, 0));
        assert_eq!(l.plugins.len(), 2);
        assert_eq!(l.plugins[0].kind, "bridge");
        assert_eq!(l.plugins[0].conf["bridge"], "cni0");
        assert!(l.plugins[1].wants("portMappings"));
        assert!(!l.plugins[0].wants("portMappings"));

        let mut rc = Map::new();
        rc.insert("portMappings".into(), serde_json::json!([{"hostPort": 80}]));
        rc.insert("bandwidth".into(), serde_json::json!({"ingressRate": 1}));
        let prev = serde_json::json!({"cniVersion": "1.0.0", "ips": []});
        let stdin: Value =
            serde_json::from_slice(&l.plugin_stdin(1, &rc, Some(&prev), &[]).expect("stdin"))
                .expect("json");
        assert_eq!(stdin["name"], "k8s-pod-network");
        assert_eq!(stdin["cniVersion"], "1.0.0");
        assert_eq!(stdin["snat"], true);
        assert_eq!(stdin["runtimeConfig"]["portMappings"][0]["hostPort"], 80);
        assert!(stdin["runtimeConfig"].get("bandwidth").is_none());
        assert_eq!(stdin["prevResult"], prev);
        let first: Value =
            serde_json::from_slice(&l.plugin_stdin(0, &rc, None, &[]).expect("stdin"))
                .expect("json");
        assert!(first.get("runtimeConfig").is_none());
        assert!(first.get("prevResult").is_none());
    }

    #[test]
    fn single_conf_is_a_list_of_one() {
        let conf = r#"{"cniVersion": "0.3.1", "name": "net1", "type": "ptp",
                       "ipam": {"type": "host-local", "subnet": "10.234.0.0/24"}}"#;
        let l = NetworkList::parse(conf.as_bytes(), false, Path::new("x.conf")).expect("parse");
        assert_eq!(l.plugins.len(), 1);
        assert_eq!(l.plugins[0].kind, "ptp");
        assert!(!l.plugins[0].conf.contains_key("name"));
        assert_eq!(l.cni_version, "0.3.1");
        let round = NetworkList::parse(
            &serde_json::to_vec(&l.to_json()).expect("json"),
            true,
            Path::new("cache"),
        )
        .expect("round trip");
        assert_eq!(round.plugins, l.plugins);
    }

    #[test]
    fn hostile_configs_are_refused() {
        let p = Path::new("bad.conflist");
        for (text, why) in [
            ("[]", "array"),
            ("{", "truncated"),
            (
                r#"{"cniVersion":"1.0.0","name":"a/b","plugins":[{"type":"bridge"}]}"#,
                "name",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "no plugins",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]}"#,
                "type path",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge","ipam":{"type":"/x"}}]}"#,
                "ipam path",
            ),
            (
                r#"{"cniVersion":"0.2.0","name":"n","plugins":[{"type":"bridge"}]}"#,
                "old version",
            ),
            (
                r#"{"cniVersion":"x.y","name":"n","plugins":[{"type":"bridge"}]}"#,
                "bad version",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[7]}"#,
                "plugin not object",
            ),
        ] {
            assert!(
                NetworkList::parse(text.as_bytes(), true, p).is_err(),
                "{why}"
            );
        }
        let huge = vec![b' '; (MAX_CONF_BYTES + 1) as usize];
        assert!(NetworkList::parse(&huge, true, p).is_err());
    }

    #[test]
    fn dir_picks_the_first_valid_file() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(matches!(load_dir(dir.path()), DirState::Missing(_)));
        std::fs::write(dir.path().join("05-broken.conflist"), "{").expect("write");
        std::fs::write(dir.path().join("README"), "not a config").expect("write");
        match load_dir(dir.path()) {
            DirState::Missing(why) => assert!(why.contains("05-broken"), "{why}"),
            DirState::Ready(_) => panic!("a broken file was taken"),
        }
        std::fs::write(
            dir.path().join("20-b.conflist"),
            LIST.replace("k8s-pod-network", "b"),
        )
        .expect("write");
        std::fs::write(
            dir.path().join("10-a.conflist"),
            LIST.replace("k8s-pod-network", "a"),
        )
        .expect("write");
        match load_dir(dir.path()) {
            DirState::Ready(l) => assert_eq!(l.name, "a"),
            DirState::Missing(why) => panic!("{why}"),
        }
    }
}
