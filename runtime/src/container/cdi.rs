//! CDI (Container Device Interface): devices named `vendor.com/class=name`, described by
//! spec files in a few directories, and what each does to a container's OCI spec.
//!
//! Spec files (`*.json`, `*.yaml`, `*.yml`, directly in each directory; CDI versions
//! 0.3.0 to 0.8.x) are read when a container asks for a CDI device, at most
//! [`MAX_SPEC_FILES`] per directory and [`MAX_SPEC_BYTES`] each. A later directory wins
//! over an earlier one (the default order puts `/var/run/cdi`, the generated specs, after
//! `/etc/cdi`, as the CDI cache ranks them); two files of one directory that define the
//! same device make it unusable, as in the CDI cache. A file that cannot be read or
//! parsed is skipped with a warning, and named in the error if a device is then not found.
//!
//! Edits, the spec's own (once per spec file) then the device's: `env` (a later value of
//! the same name wins), `deviceNodes` (the node in `/dev` and an allow rule with its
//! permissions, type and numbers read from the host node when the spec leaves them out),
//! `mounts` (binds unless a type is given), `additionalGids`. Hooks, `intelRdt` and
//! `netDevices` are not applied (the built-in executor runs no OCI hooks): a warning says
//! so. `=all` is not special: CDI defines no such name, vendors that want one (NVIDIA)
//! list a device called `all`.
//!
//! Why our own: the `container-device-interface` crate brings oci-spec 0.10 (we have 0.7,
//! so its edits would not apply to our spec types), clap, regex and a JSON-schema
//! validator with its own HTTP stack; what we need is these structs and a hundred lines.
//! YAML through `serde_norway`, the maintained fork of the deprecated `serde_yaml` (same
//! parser and alias-expansion limits, plain serde).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, Mount, Spec};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Where CDI specs are looked for when the configuration names no directories.
pub const DEFAULT_SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];
/// The annotation prefix of devices requested the older way (`cdi.k8s.io/<key>`: a
/// comma-separated list of names).
pub const ANNOTATION_PREFIX: &str = "cdi.k8s.io/";
pub const MAX_SPEC_FILES: usize = 256;
pub const MAX_SPEC_BYTES: u64 = 1 << 20;
/// The CDI versions we read (`cdiVersion`): 0.3.0 to 0.8.x.
const MIN_MINOR: u64 = 3;
const MAX_MINOR: u64 = 8;

/// One requested device: its name and the request field it came from, for errors.
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize, PartialEq, Eq)]
pub struct CdiRequest {
    pub name: String,
    pub field: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CdiSpec {
    pub cdi_version: String,
    pub kind: String,
    #[serde(default)]
    pub devices: Vec<CdiDevice>,
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CdiDevice {
    pub name: String,
    #[serde(default)]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEdits {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(default)]
    pub mounts: Vec<CdiMount>,
    #[serde(default)]
    pub hooks: Vec<serde_json::Value>,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
    #[serde(default)]
    pub intel_rdt: Option<serde_json::Value>,
    #[serde(default)]
    pub net_devices: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    pub path: String,
    #[serde(default)]
    pub host_path: Option<String>,
    #[serde(default, rename = "type")]
    pub typ: Option<String>,
    #[serde(default)]
    pub major: Option<i64>,
    #[serde(default)]
    pub minor: Option<i64>,
    #[serde(default)]
    pub file_mode: Option<u32>,
    #[serde(default)]
    pub permissions: Option<String>,
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CdiMount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default, rename = "type")]
    pub typ: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

/// Parses a spec file's text: JSON if it is `.json`, else YAML (of which JSON is a part).
pub fn parse_spec(text: &str, json: bool) -> std::result::Result<CdiSpec, String> {
    let spec: CdiSpec = if json {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_norway::from_str(text).map_err(|e| e.to_string())?
    };
    check_version(&spec.cdi_version)?;
    let (vendor, class) = spec
        .kind
        .split_once('/')
        .ok_or_else(|| format!("kind {:?} is not vendor/class", spec.kind))?;
    if !valid_vendor(vendor) || !valid_class(class) {
        return Err(format!("kind {:?} is not a valid vendor/class", spec.kind));
    }
    for d in &spec.devices {
        if !valid_device_name(&d.name) {
            return Err(format!("device name {:?} is not valid", d.name));
        }
    }
    Ok(spec)
}

fn check_version(v: &str) -> std::result::Result<(), String> {
    let mut parts = v.split('.');
    let num = |p: Option<&str>| p.and_then(|s| s.parse::<u64>().ok());
    match (num(parts.next()), num(parts.next()), parts.next()) {
        (Some(0), Some(minor), Some(patch))
            if (MIN_MINOR..=MAX_MINOR).contains(&minor) && patch.parse::<u64>().is_ok() =>
        {
            Ok(())
        }
        _ => Err(format!(
            "cdiVersion {v:?} is not one we read (0.{MIN_MINOR}.0 to 0.{MAX_MINOR}.x)"
        )),
    }
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// CDI's name rules: a vendor is a domain-like name (`nvidia.com`), a class alphanumerics
/// with `_` and `-`, a device name alphanumerics with `_ - . :`; each starts and ends with
/// an alphanumeric.
fn valid_name(s: &str, extra: &[char]) -> bool {
    let ends = s.chars().next().is_some_and(alnum) && s.chars().last().is_some_and(alnum);
    ends && s.len() <= 253 && s.chars().all(|c| alnum(c) || extra.contains(&c))
}

fn valid_vendor(s: &str) -> bool {
    valid_name(s, &['_', '-', '.'])
}

fn valid_class(s: &str) -> bool {
    valid_name(s, &['_', '-'])
}

fn valid_device_name(s: &str) -> bool {
    valid_name(s, &['_', '-', '.', ':'])
}

/// Splits `vendor.com/class=name` into kind and name, checked.
pub fn parse_qualified(name: &str) -> std::result::Result<(&str, &str), String> {
    let (kind, dev) = name.split_once('=').ok_or_else(|| {
        format!("{name:?} is not a fully-qualified CDI name (vendor.com/class=name)")
    })?;
    let (vendor, class) = kind
        .split_once('/')
        .ok_or_else(|| format!("{name:?} has no vendor/class"))?;
    if !valid_vendor(vendor) {
        return Err(format!("{name:?}: vendor {vendor:?} is not valid"));
    }
    if !valid_class(class) {
        return Err(format!("{name:?}: class {class:?} is not valid"));
    }
    if !valid_device_name(dev) {
        return Err(format!("{name:?}: device name {dev:?} is not valid"));
    }
    Ok((kind, dev))
}

/// Device names from `cdi.k8s.io/*` annotations, in key order (each value a
/// comma-separated list), with the annotation as the field.
pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Vec<CdiRequest> {
    annotations
        .iter()
        .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
        .flat_map(|(k, v)| {
            v.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(move |n| CdiRequest {
                    name: n.to_string(),
                    field: format!("config.annotations[{k:?}]"),
                })
        })
        .collect()
}

/// A spec file that was read: where it was, its directory's rank, what it says.
struct Loaded {
    path: PathBuf,
    rank: usize,
    spec: CdiSpec,
}

/// Reads every spec file of `dirs`; the unreadable ones are returned as (path, why).
fn load_dirs(dirs: &[PathBuf]) -> (Vec<Loaded>, Vec<(PathBuf, String)>) {
    let mut loaded = Vec::new();
    let mut bad = Vec::new();
    for (rank, dir) in dirs.iter().enumerate() {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                bad.push((dir.clone(), e.to_string()));
                continue;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml" | "yml")
                )
            })
            .collect();
        files.sort();
        if files.len() > MAX_SPEC_FILES {
            tracing::warn!(dir = %dir.display(), count = files.len(), max = MAX_SPEC_FILES, "too many CDI spec files; the rest are ignored");
            files.truncate(MAX_SPEC_FILES);
        }
        for path in files {
            match read_spec(&path) {
                Ok(spec) => loaded.push(Loaded { path, rank, spec }),
                Err(why) => {
                    tracing::warn!(file = %path.display(), error = %why, "CDI spec skipped");
                    bad.push((path, why));
                }
            }
        }
    }
    (loaded, bad)
}

fn read_spec(path: &Path) -> std::result::Result<CdiSpec, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_SPEC_BYTES {
        return Err(format!("larger than {MAX_SPEC_BYTES} bytes"));
    }
    let mut text = String::new();
    file.take(MAX_SPEC_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    let json = path.extension().and_then(|e| e.to_str()) == Some("json");
    parse_spec(&text, json)
}

/// The edits for the requested devices, in request order: for each spec file used, its
/// own edits once (before its first device's), then each device's.
#[derive(Debug, Default)]
pub struct Resolved {
    pub edits: Vec<ContainerEdits>,
}

/// Finds every requested device (duplicates once). Unknown, ambiguous or malformed names
/// are InvalidArgument naming the request field.
pub fn resolve(dirs: &[PathBuf], requests: &[CdiRequest]) -> Result<Resolved> {
    if requests.is_empty() {
        return Ok(Resolved::default());
    }
    for r in requests {
        parse_qualified(&r.name).map_err(|why| Error::invalid(r.field.clone(), why))?;
    }
    let (loaded, bad) = load_dirs(dirs);
    let mut out = Resolved::default();
    let mut seen = HashSet::new();
    let mut specs_used = HashSet::new();
    for r in requests {
        if !seen.insert(r.name.as_str()) {
            continue;
        }
        let (kind, dev) =
            parse_qualified(&r.name).map_err(|why| Error::invalid(r.field.clone(), why))?;
        // Every definition of the device; the highest-ranked directory wins.
        let found: Vec<(usize, &Loaded, &CdiDevice)> = loaded
            .iter()
            .enumerate()
            .filter(|(_, l)| l.spec.kind == kind)
            .flat_map(|(i, l)| {
                l.spec
                    .devices
                    .iter()
                    .filter(|d| d.name == dev)
                    .map(move |d| (i, l, d))
            })
            .collect();
        let Some(top) = found.iter().map(|(_, l, _)| l.rank).max() else {
            let mut why = format!("no CDI device {:?} in {}", r.name, show_dirs(dirs));
            if !bad.is_empty() {
                let files: Vec<String> = bad
                    .iter()
                    .map(|(p, e)| format!("{}: {e}", p.display()))
                    .collect();
                why.push_str(&format!(" (unreadable: {})", files.join("; ")));
            }
            return Err(Error::invalid(r.field.clone(), why));
        };
        let best: Vec<&(usize, &Loaded, &CdiDevice)> =
            found.iter().filter(|(_, l, _)| l.rank == top).collect();
        if best.len() > 1 {
            let files: Vec<String> = best
                .iter()
                .map(|(_, l, _)| l.path.display().to_string())
                .collect();
            return Err(Error::invalid(
                r.field.clone(),
                format!(
                    "CDI device {:?} is defined more than once: {}",
                    r.name,
                    files.join(", ")
                ),
            ));
        }
        let (spec_index, spec, device) = best[0];
        if specs_used.insert(*spec_index) {
            out.edits.push(spec.spec.container_edits.clone());
        }
        out.edits.push(device.container_edits.clone());
    }
    Ok(out)
}

fn show_dirs(dirs: &[PathBuf]) -> String {
    let d: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    d.join(", ")
}

/// Applies the edits to the OCI spec.
pub fn apply(spec: &mut Spec, resolved: &Resolved) -> Result<()> {
    for edits in &resolved.edits {
        apply_edits(spec, edits)?;
    }
    Ok(())
}

fn apply_edits(spec: &mut Spec, e: &ContainerEdits) -> Result<()> {
    if !e.hooks.is_empty() || e.intel_rdt.is_some() || !e.net_devices.is_empty() {
        tracing::warn!(
            hooks = e.hooks.len(),
            intel_rdt = e.intel_rdt.is_some(),
            net_devices = e.net_devices.len(),
            "CDI edits not applied: the executor runs no OCI hooks and sets no RDT or net devices"
        );
    }
    let mut process = spec.process().clone().unwrap_or_default();
    if !e.env.is_empty() {
        let mut env = process.env().clone().unwrap_or_default();
        for kv in &e.env {
            let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            env.retain(|old| old.split_once('=').map_or(old.as_str(), |(k, _)| k) != key);
            env.push(kv.clone());
        }
        process.set_env(Some(env));
    }
    if !e.additional_gids.is_empty() {
        let mut user = process.user().clone();
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        for g in &e.additional_gids {
            if !gids.contains(g) && *g != 0 {
                gids.push(*g);
            }
        }
        user.set_additional_gids(Some(gids));
        process.set_user(user);
    }
    let (uid, gid) = (process.user().uid(), process.user().gid());
    spec.set_process(Some(process));

    if !e.mounts.is_empty() {
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for m in &e.mounts {
            let mut out = Mount::default();
            let typ = m.typ.clone().unwrap_or_else(|| "bind".to_string());
            let mut options = m.options.clone();
            if typ == "bind" && !options.iter().any(|o| o == "bind" || o == "rbind") {
                options.push("bind".into());
            }
            out.set_destination(PathBuf::from(&m.container_path))
                .set_source(Some(PathBuf::from(&m.host_path)))
                .set_typ(Some(typ))
                .set_options(Some(options));
            mounts.retain(|old| old.destination() != out.destination());
            mounts.push(out);
        }
        spec.set_mounts(Some(mounts));
    }

    if !e.device_nodes.is_empty() {
        let mut linux = spec.linux().clone().unwrap_or_default();
        let mut devices = linux.devices().clone().unwrap_or_default();
        let mut resources = linux.resources().clone().unwrap_or_default();
        let mut rules = resources.devices().clone().unwrap_or_default();
        for n in &e.device_nodes {
            let dev = device_node(n, uid, gid)?;
            if matches!(dev.typ(), LinuxDeviceType::C | LinuxDeviceType::B) {
                let mut rule = LinuxDeviceCgroup::default();
                rule.set_allow(true)
                    .set_typ(Some(dev.typ()))
                    .set_major(Some(dev.major()))
                    .set_minor(Some(dev.minor()))
                    .set_access(Some(
                        n.permissions
                            .clone()
                            .filter(|p| !p.is_empty())
                            .unwrap_or_else(|| "rwm".into()),
                    ));
                rules.push(rule);
            }
            devices.retain(|old| old.path() != dev.path());
            devices.push(dev);
        }
        resources.set_devices(Some(rules));
        linux
            .set_devices(Some(devices))
            .set_resources(Some(resources));
        spec.set_linux(Some(linux));
    }
    Ok(())
}

/// The OCI device for a CDI node: numbers and type from the host node where the spec
/// leaves them out; owner the container's user when the spec names none (as CDI does).
fn device_node(n: &DeviceNode, uid: u32, gid: u32) -> Result<LinuxDevice> {
    let bad =
        |why: String| Error::FailedPrecondition(format!("CDI device node {:?}: {why}", n.path));
    if !n.path.starts_with('/') {
        return Err(bad("the path is not absolute".into()));
    }
    if let Some(p) = n.permissions.as_deref() {
        let mut seen = HashSet::new();
        if !p
            .chars()
            .all(|c| matches!(c, 'r' | 'w' | 'm') && seen.insert(c))
        {
            return Err(bad(format!("permissions {p:?} are not some of \"rwm\"")));
        }
    }
    let host = n.host_path.as_deref().unwrap_or(&n.path);
    let given_type = match n.typ.as_deref() {
        None | Some("") => None,
        Some("c" | "u") => Some(LinuxDeviceType::C),
        Some("b") => Some(LinuxDeviceType::B),
        Some("p") => Some(LinuxDeviceType::P),
        Some(t) => return Err(bad(format!("type {t:?} is not one of b, c, u, p"))),
    };
    let numbers_given =
        n.major.is_some() && (n.minor.is_some() || given_type == Some(LinuxDeviceType::P));
    let (typ, major, minor, mode) = if given_type.is_some() && numbers_given {
        (
            given_type.unwrap_or(LinuxDeviceType::C),
            n.major.unwrap_or(0),
            n.minor.unwrap_or(0),
            n.file_mode,
        )
    } else {
        let meta = std::fs::metadata(host).map_err(|e| bad(format!("host node {host:?}: {e}")))?;
        let ft = meta.file_type();
        let host_type = if ft.is_char_device() {
            LinuxDeviceType::C
        } else if ft.is_block_device() {
            LinuxDeviceType::B
        } else if ft.is_fifo() {
            LinuxDeviceType::P
        } else {
            return Err(bad(format!("host path {host:?} is not a device")));
        };
        let rdev = meta.rdev();
        (
            given_type.unwrap_or(host_type),
            n.major.unwrap_or(nix::sys::stat::major(rdev) as i64),
            n.minor.unwrap_or(nix::sys::stat::minor(rdev) as i64),
            n.file_mode.or(Some(meta.mode() & 0o777)),
        )
    };
    let mut d = LinuxDevice::default();
    d.set_path(PathBuf::from(&n.path))
        .set_typ(typ)
        .set_major(major)
        .set_minor(minor)
        .set_file_mode(mode)
        .set_uid(n.uid.or((uid > 0).then_some(uid)))
        .set_gid(n.gid.or((gid > 0).then_some(gid)));
    Ok(d)
}

#[cfg(test)]
mod tests;
