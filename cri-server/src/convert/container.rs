//! CRI ContainerConfig → runtime ContainerConfig: shape checks (required fields, numeric
//! enums, paths) naming the request field. What needs the image or the host (the user name,
//! whether a host path exists) is checked by the runtime when it builds the OCI spec.

use std::path::{Component, Path};

use runtime::container::cdi::{self, CdiRequest};
use runtime::container::config::{
    ContainerConfig, Device, Mount, Propagation, SecurityConfig, SupplementalGroupsPolicy,
};

use super::resources::{oom_score_adj, resources};
use super::sandbox::namespace_mode;
use crate::status::CriError;

/// An InvalidArgument whose field name is built at run time (an index into a list).
fn invalid_at(field: String, reason: impl Into<String>) -> CriError {
    CriError::from(runtime::Error::invalid(field, reason))
}

fn propagation(v: i32, i: usize) -> Result<Propagation, CriError> {
    match proto::MountPropagation::try_from(v) {
        Ok(proto::MountPropagation::PropagationPrivate) => Ok(Propagation::Private),
        Ok(proto::MountPropagation::PropagationHostToContainer) => Ok(Propagation::HostToContainer),
        Ok(proto::MountPropagation::PropagationBidirectional) => Ok(Propagation::Bidirectional),
        Err(_) => Err(invalid_at(
            format!("config.mounts[{i}].propagation"),
            format!("unknown mount propagation {v}"),
        )),
    }
}

fn mount(m: &proto::Mount, i: usize) -> Result<Mount, CriError> {
    let field = |f: &str| format!("config.mounts[{i}].{f}");
    if m.container_path.is_empty() {
        return Err(invalid_at(field("container_path"), "required"));
    }
    let image = match &m.image {
        Some(spec) if spec.image.is_empty() => {
            return Err(invalid_at(field("image.image"), "required"));
        }
        // An image's content is shared by every container using it: never writable.
        Some(_) if !m.readonly => {
            return Err(invalid_at(
                field("readonly"),
                "an image volume must be read-only",
            ));
        }
        Some(spec) => Some(runtime::container::config::ImageVolume {
            reference: spec.image.clone(),
            ..Default::default()
        }),
        None => None,
    };
    if image.is_none() && m.host_path.is_empty() {
        return Err(invalid_at(field("host_path"), "required"));
    }
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        return Err(invalid_at(
            field("uid_mappings"),
            "id-mapped mounts are not supported",
        ));
    }
    if m.recursive_read_only {
        // As containerd and CRI-O: only a read-only, private mount can be read-only all
        // the way down (a propagated submount would appear writable later).
        if !m.readonly {
            return Err(invalid_at(
                field("recursive_read_only"),
                "a recursive read-only mount must be read-only",
            ));
        }
        if m.propagation != proto::MountPropagation::PropagationPrivate as i32 {
            return Err(invalid_at(
                field("recursive_read_only"),
                "a recursive read-only mount needs PROPAGATION_PRIVATE",
            ));
        }
    }
    Ok(Mount {
        container_path: m.container_path.clone(),
        host_path: m.host_path.clone(),
        readonly: m.readonly,
        recursive_readonly: m.recursive_read_only,
        propagation: propagation(m.propagation, i)?,
        image,
    })
}

fn device(d: &proto::Device, i: usize) -> Result<Device, CriError> {
    if d.host_path.is_empty() {
        return Err(invalid_at(
            format!("config.devices[{i}].host_path"),
            "required",
        ));
    }
    Ok(Device {
        container_path: d.container_path.clone(),
        host_path: d.host_path.clone(),
        permissions: d.permissions.clone(),
    })
}

/// A seccomp or AppArmor profile as one string: `runtime/default`, `unconfined` or
/// `localhost/<ref>` (the values of the old kubelet annotations); empty when not given.
/// Without the structured field, the deprecated string one (`legacy`, named
/// `legacy_field`) in the same forms, as containerd reads them.
fn profile(
    p: Option<&proto::SecurityProfile>,
    field: &'static str,
    legacy: &str,
    legacy_field: &'static str,
) -> Result<String, CriError> {
    use proto::security_profile::ProfileType;
    let Some(p) = p else {
        return match legacy {
            "" => Ok(String::new()),
            "runtime/default" | "docker/default" => Ok("runtime/default".to_string()),
            "unconfined" => Ok("unconfined".to_string()),
            other if other.len() > "localhost/".len() && other.starts_with("localhost/") => {
                Ok(other.to_string())
            }
            other => Err(CriError::invalid(
                legacy_field,
                format!("invalid profile {other:?}"),
            )),
        };
    };
    if !p.localhost_ref.is_empty() && p.profile_type != ProfileType::Localhost as i32 {
        return Err(CriError::invalid(
            field,
            "localhost_ref may only be set for a Localhost profile",
        ));
    }
    match ProfileType::try_from(p.profile_type) {
        Ok(ProfileType::RuntimeDefault) => Ok("runtime/default".to_string()),
        Ok(ProfileType::Unconfined) => Ok("unconfined".to_string()),
        Ok(ProfileType::Localhost) if p.localhost_ref.is_empty() => Err(CriError::invalid(
            field,
            "a Localhost profile needs localhost_ref",
        )),
        // containerd trims the prefix "just in case" a ref carries it; so do we.
        Ok(ProfileType::Localhost) => Ok(format!(
            "localhost/{}",
            p.localhost_ref
                .strip_prefix("localhost/")
                .unwrap_or(&p.localhost_ref)
        )),
        Err(_) => Err(CriError::invalid(
            field,
            format!("unknown profile type {}", p.profile_type),
        )),
    }
}

fn security(sc: Option<&proto::LinuxContainerSecurityContext>) -> Result<SecurityConfig, CriError> {
    let Some(sc) = sc else {
        return Ok(SecurityConfig::default());
    };
    let caps = sc.capabilities.clone().unwrap_or_default();
    if !caps.add_ambient_capabilities.is_empty() {
        return Err(CriError::invalid(
            "config.linux.security_context.capabilities.add_ambient_capabilities",
            "ambient capabilities are not supported",
        ));
    }
    let supplemental_groups_policy =
        match proto::SupplementalGroupsPolicy::try_from(sc.supplemental_groups_policy) {
            Ok(proto::SupplementalGroupsPolicy::Merge) => SupplementalGroupsPolicy::Merge,
            Ok(proto::SupplementalGroupsPolicy::Strict) => SupplementalGroupsPolicy::Strict,
            Err(_) => {
                return Err(CriError::invalid(
                    "config.linux.security_context.supplemental_groups_policy",
                    format!("unknown policy {}", sc.supplemental_groups_policy),
                ))
            }
        };
    let userns = super::sandbox::userns(
        sc.namespace_options
            .as_ref()
            .and_then(|n| n.userns_options.as_ref()),
    )?;
    let (pid, target_id) = match &sc.namespace_options {
        Some(ns) => (
            Some(namespace_mode(
                ns.pid,
                "config.linux.security_context.namespace_options.pid",
            )?),
            ns.target_id.clone(),
        ),
        None => (None, String::new()),
    };
    Ok(SecurityConfig {
        run_as_user: sc.run_as_user.as_ref().map(|v| v.value),
        run_as_group: sc.run_as_group.as_ref().map(|v| v.value),
        run_as_username: sc.run_as_username.clone(),
        supplemental_groups: sc.supplemental_groups.clone(),
        supplemental_groups_policy,
        privileged: sc.privileged,
        readonly_rootfs: sc.readonly_rootfs,
        no_new_privs: sc.no_new_privs,
        add_capabilities: caps.add_capabilities,
        drop_capabilities: caps.drop_capabilities,
        pid,
        target_id,
        userns,
        // Exactly the request's lists, as containerd and CRI-O: kubelet sends the default
        // lists for procMount Default and empty ones for Unmasked, which must mask nothing.
        masked_paths: Some(sc.masked_paths.clone()),
        readonly_paths: Some(sc.readonly_paths.clone()),
        #[allow(deprecated)]
        apparmor: profile(
            sc.apparmor.as_ref(),
            "config.linux.security_context.apparmor",
            &sc.apparmor_profile,
            "config.linux.security_context.apparmor_profile",
        )?,
        #[allow(deprecated)]
        seccomp: profile(
            sc.seccomp.as_ref(),
            "config.linux.security_context.seccomp",
            &sc.seccomp_profile_path,
            "config.linux.security_context.seccomp_profile_path",
        )?,
    })
}

/// The request's ContainerConfig, checked for shape, in the runtime's terms.
pub fn container_config(c: &proto::ContainerConfig) -> Result<ContainerConfig, CriError> {
    super::limits::container(c)?;
    let meta = c
        .metadata
        .as_ref()
        .ok_or_else(|| CriError::invalid("config.metadata", "required"))?;
    if meta.name.is_empty() {
        return Err(CriError::invalid("config.metadata.name", "required"));
    }
    let image = c
        .image
        .as_ref()
        .map(|i| i.image.as_str())
        .filter(|i| !i.is_empty())
        .ok_or_else(|| CriError::invalid("config.image.image", "required"))?;

    let mut envs = Vec::with_capacity(c.envs.len());
    for (i, kv) in c.envs.iter().enumerate() {
        if kv.key.is_empty() {
            return Err(invalid_at(format!("config.envs[{i}].key"), "empty"));
        }
        if kv.key.contains('=') || kv.key.contains('\0') || kv.value.contains('\0') {
            return Err(invalid_at(
                format!("config.envs[{i}].key"),
                format!("{:?} may hold neither '=' nor NUL", kv.key),
            ));
        }
        envs.push((kv.key.clone(), kv.value.clone()));
    }
    let mounts = c
        .mounts
        .iter()
        .enumerate()
        .map(|(i, m)| mount(m, i))
        .collect::<Result<Vec<_>, _>>()?;
    let devices = c
        .devices
        .iter()
        .enumerate()
        .map(|(i, d)| device(d, i))
        .collect::<Result<Vec<_>, _>>()?;
    let cdi_devices = cdi_devices(c)?;

    // Relative to the pod's log directory: it must stay inside it.
    let log = Path::new(&c.log_path);
    if log.is_absolute() {
        return Err(CriError::invalid(
            "config.log_path",
            format!(
                "{:?} must be relative to the pod's log directory",
                c.log_path
            ),
        ));
    }
    if log.components().any(|p| p == Component::ParentDir) {
        return Err(CriError::invalid(
            "config.log_path",
            format!("{:?} must not contain \"..\"", c.log_path),
        ));
    }

    let linux = c.linux.as_ref();
    const RESOURCES: &str = "config.linux.resources";
    let cri_resources = linux.and_then(|l| l.resources.as_ref());
    let resources = cri_resources.map(|r| resources(r, RESOURCES)).transpose()?;
    let oom_score_adj = cri_resources
        .map(|r| oom_score_adj(r.oom_score_adj, RESOURCES))
        .transpose()?
        .flatten();
    let security = security(linux.and_then(|l| l.security_context.as_ref()))?;

    Ok(ContainerConfig {
        name: meta.name.clone(),
        attempt: meta.attempt,
        image: image.to_string(),
        command: c.command.clone(),
        args: c.args.clone(),
        working_dir: c.working_dir.clone(),
        envs,
        mounts,
        devices,
        labels: c
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        annotations: c
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        log_path: c.log_path.clone(),
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        resources,
        oom_score_adj,
        security,
        cdi_devices,
    })
}

/// CDI devices as containerd takes them: `cdi_devices` first, then the names in the
/// `cdi.k8s.io/*` annotations; a name given twice is used once. The names are resolved
/// (and their syntax checked) at create, against the spec files.
fn cdi_devices(c: &proto::ContainerConfig) -> Result<Vec<CdiRequest>, CriError> {
    let mut out: Vec<CdiRequest> = Vec::new();
    for (i, d) in c.cdi_devices.iter().enumerate() {
        if d.name.is_empty() {
            return Err(invalid_at(format!("config.cdi_devices[{i}].name"), "empty"));
        }
        out.push(CdiRequest {
            name: d.name.clone(),
            field: format!("config.cdi_devices[{i}]"),
        });
    }
    let annotations = c
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.extend(cdi::from_annotations(&annotations));
    let mut seen = std::collections::HashSet::new();
    out.retain(|r| seen.insert(r.name.clone()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::sandbox::NamespaceMode;
    use tonic::Code;

    fn base() -> proto::ContainerConfig {
        proto::ContainerConfig {
            metadata: Some(proto::ContainerMetadata {
                name: "app".into(),
                attempt: 2,
            }),
            image: Some(proto::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            log_path: "app/2.log".into(),
            ..Default::default()
        }
    }

    fn ok(c: &proto::ContainerConfig) -> ContainerConfig {
        match container_config(c) {
            Ok(c) => c,
            Err(e) => panic!("unexpected error: {}", e.message()),
        }
    }

    /// The error's message, which starts with `invalid <field>:`; asserts the code.
    fn invalid(c: &proto::ContainerConfig) -> String {
        match container_config(c) {
            Err(e) => {
                assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
                e.message()
            }
            Ok(c) => panic!("want an error, got {c:?}"),
        }
    }

    fn assert_field(c: &proto::ContainerConfig, field: &str) {
        let msg = invalid(c);
        assert!(
            msg.starts_with(&format!("invalid {field}:")),
            "want field {field}, got {msg:?}"
        );
    }

    #[test]
    fn cdi_devices_from_the_field_then_annotations() {
        let mut c = base();
        c.cdi_devices = vec![
            proto::CdiDevice {
                name: "vendor.test/dev=one".into(),
            },
            proto::CdiDevice {
                name: "vendor.test/dev=two".into(),
            },
        ];
        c.annotations.insert(
            "cdi.k8s.io/extra".into(),
            "vendor.test/dev=two,vendor.test/dev=three".into(),
        );
        c.annotations
            .insert("other".into(), "vendor.test/dev=four".into());
        let r = ok(&c);
        let got: Vec<(&str, &str)> = r
            .cdi_devices
            .iter()
            .map(|d| (d.name.as_str(), d.field.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("vendor.test/dev=one", "config.cdi_devices[0]"),
                ("vendor.test/dev=two", "config.cdi_devices[1]"),
                (
                    "vendor.test/dev=three",
                    "config.annotations[\"cdi.k8s.io/extra\"]"
                ),
            ]
        );
        c.cdi_devices.push(proto::CdiDevice::default());
        assert_field(&c, "config.cdi_devices[2].name");
    }

    #[test]
    fn maps_the_basics() {
        let mut c = base();
        c.command = vec!["/bin/sh".into()];
        c.args = vec!["-c".into(), "true".into()];
        c.working_dir = "/w".into();
        c.envs = vec![
            proto::KeyValue {
                key: "A".into(),
                value: "1".into(),
            },
            proto::KeyValue {
                key: "A".into(),
                value: "2".into(),
            },
        ];
        c.tty = true;
        c.stdin = true;
        c.labels.insert("l".into(), "v".into());
        c.mounts = vec![proto::Mount {
            container_path: "/data".into(),
            host_path: "/srv".into(),
            readonly: true,
            propagation: proto::MountPropagation::PropagationBidirectional as i32,
            ..Default::default()
        }];
        c.devices = vec![proto::Device {
            container_path: String::new(),
            host_path: "/dev/fuse".into(),
            permissions: "rwm".into(),
        }];
        let r = ok(&c);
        assert_eq!((r.name.as_str(), r.attempt), ("app", 2));
        assert_eq!(r.image, "busybox");
        assert_eq!(r.command, ["/bin/sh"]);
        assert_eq!(r.args, ["-c", "true"]);
        assert_eq!(
            r.envs,
            [("A".to_string(), "1".to_string()), ("A".into(), "2".into())]
        );
        assert!(r.tty && r.stdin && !r.stdin_once);
        assert_eq!(r.labels.get("l").map(String::as_str), Some("v"));
        assert_eq!(r.mounts[0].propagation, Propagation::Bidirectional);
        assert!(r.mounts[0].readonly);
        assert_eq!(r.devices[0].host_path, "/dev/fuse");
        assert_eq!(r.log_path, "app/2.log");
        assert!(r.resources.is_none());
        assert_eq!(r.security, SecurityConfig::default());
    }

    #[test]
    fn security_context() {
        let mut c = base();
        c.linux = Some(proto::LinuxContainerConfig {
            resources: Some(proto::LinuxContainerResources {
                cpu_shares: 256,
                memory_limit_in_bytes: 1 << 20,
                ..Default::default()
            }),
            security_context: Some(proto::LinuxContainerSecurityContext {
                capabilities: Some(proto::Capability {
                    add_capabilities: vec!["NET_ADMIN".into()],
                    drop_capabilities: vec!["ALL".into()],
                    ..Default::default()
                }),
                privileged: true,
                namespace_options: Some(proto::NamespaceOption {
                    pid: proto::NamespaceMode::Target as i32,
                    target_id: "abc".into(),
                    ..Default::default()
                }),
                run_as_user: Some(proto::Int64Value { value: 1000 }),
                run_as_group: Some(proto::Int64Value { value: 0 }),
                run_as_username: "alice".into(),
                readonly_rootfs: true,
                supplemental_groups: vec![5, 6],
                supplemental_groups_policy: proto::SupplementalGroupsPolicy::Strict as i32,
                no_new_privs: true,
                masked_paths: vec![],
                readonly_paths: vec!["/proc/sys".into()],
                seccomp: Some(proto::SecurityProfile {
                    profile_type: proto::security_profile::ProfileType::Localhost as i32,
                    localhost_ref: "/var/lib/kubelet/seccomp/x.json".into(),
                }),
                apparmor: Some(proto::SecurityProfile {
                    profile_type: proto::security_profile::ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
        });
        let r = ok(&c);
        let s = &r.security;
        assert_eq!(s.run_as_user, Some(1000));
        assert_eq!(s.run_as_group, Some(0), "a zero gid is still given");
        assert_eq!(s.run_as_username, "alice");
        assert_eq!(s.supplemental_groups, [5, 6]);
        assert_eq!(
            s.supplemental_groups_policy,
            SupplementalGroupsPolicy::Strict
        );
        assert!(s.privileged && s.readonly_rootfs && s.no_new_privs);
        assert_eq!(s.add_capabilities, ["NET_ADMIN"]);
        assert_eq!(s.drop_capabilities, ["ALL"]);
        assert_eq!(s.pid, Some(NamespaceMode::Target));
        assert_eq!(s.target_id, "abc");
        assert_eq!(
            s.masked_paths,
            Some(vec![]),
            "empty masks nothing (Unmasked)"
        );
        assert_eq!(s.readonly_paths, Some(vec!["/proc/sys".to_string()]));
        assert_eq!(s.seccomp, "localhost//var/lib/kubelet/seccomp/x.json");
        assert_eq!(s.apparmor, "runtime/default");
        let res = r.resources.unwrap_or_default();
        assert_eq!(res.cpu_shares, Some(256));
        assert_eq!(res.memory_limit, Some(1 << 20));
    }

    #[test]
    #[allow(deprecated)]
    fn seccomp_and_apparmor_profiles_new_and_deprecated_forms() {
        use proto::security_profile::ProfileType;
        let with = |sc: proto::LinuxContainerSecurityContext| proto::ContainerConfig {
            linux: Some(proto::LinuxContainerConfig {
                resources: None,
                security_context: Some(sc),
            }),
            ..base()
        };
        let sp = |t: ProfileType, r: &str| {
            Some(proto::SecurityProfile {
                profile_type: t as i32,
                localhost_ref: r.into(),
            })
        };
        let seccomp_of = |sc| ok(&with(sc)).security.seccomp;
        for (legacy, want) in [
            ("", ""),
            ("runtime/default", "runtime/default"),
            ("docker/default", "runtime/default"),
            ("unconfined", "unconfined"),
            ("localhost//p/x.json", "localhost//p/x.json"),
        ] {
            let sc = proto::LinuxContainerSecurityContext {
                seccomp_profile_path: legacy.into(),
                apparmor_profile: legacy.into(),
                ..Default::default()
            };
            let got = ok(&with(sc));
            assert_eq!(got.security.seccomp, want, "{legacy}");
            assert_eq!(got.security.apparmor, want, "{legacy}");
        }
        // The structured field wins over the deprecated one.
        assert_eq!(
            seccomp_of(proto::LinuxContainerSecurityContext {
                seccomp: sp(ProfileType::Unconfined, ""),
                seccomp_profile_path: "runtime/default".into(),
                ..Default::default()
            }),
            "unconfined"
        );
        // A ref that carries the prefix anyway (containerd trims it).
        assert_eq!(
            seccomp_of(proto::LinuxContainerSecurityContext {
                seccomp: sp(ProfileType::Localhost, "localhost//p/x.json"),
                ..Default::default()
            }),
            "localhost//p/x.json"
        );
        for bad in ["localhost/", "/p/x.json", "default"] {
            assert_field(
                &with(proto::LinuxContainerSecurityContext {
                    seccomp_profile_path: bad.into(),
                    ..Default::default()
                }),
                "config.linux.security_context.seccomp_profile_path",
            );
            assert_field(
                &with(proto::LinuxContainerSecurityContext {
                    apparmor_profile: bad.into(),
                    ..Default::default()
                }),
                "config.linux.security_context.apparmor_profile",
            );
        }
        assert_field(
            &with(proto::LinuxContainerSecurityContext {
                seccomp: sp(ProfileType::RuntimeDefault, "/p/x.json"),
                ..Default::default()
            }),
            "config.linux.security_context.seccomp",
        );
    }

    #[test]
    fn shape_errors_name_the_field() {
        let mut c = base();
        c.metadata = None;
        assert_field(&c, "config.metadata");

        let mut c = base();
        c.metadata = Some(proto::ContainerMetadata::default());
        assert_field(&c, "config.metadata.name");

        let mut c = base();
        c.image = None;
        assert_field(&c, "config.image.image");
        c.image = Some(proto::ImageSpec::default());
        assert_field(&c, "config.image.image");

        let mut c = base();
        c.envs = vec![
            proto::KeyValue {
                key: "OK".into(),
                value: String::new(),
            },
            proto::KeyValue {
                key: String::new(),
                value: "x".into(),
            },
        ];
        assert_field(&c, "config.envs[1].key");
        c.envs[1].key = "A=B".into();
        assert_field(&c, "config.envs[1].key");

        let mount = |container: &str, host: &str| proto::Mount {
            container_path: container.into(),
            host_path: host.into(),
            ..Default::default()
        };
        let mut c = base();
        c.mounts = vec![mount("/a", "/b"), mount("", "/b")];
        assert_field(&c, "config.mounts[1].container_path");
        c.mounts[1] = mount("/a", "");
        assert_field(&c, "config.mounts[1].host_path");
        c.mounts[1] = mount("/a", "/b");
        c.mounts[1].propagation = 7;
        assert_field(&c, "config.mounts[1].propagation");
        c.mounts[1].propagation = 0;
        c.mounts[1].recursive_read_only = true;
        assert_field(&c, "config.mounts[1].recursive_read_only");

        let mut c = base();
        c.devices = vec![proto::Device::default()];
        assert_field(&c, "config.devices[0].host_path");

        let mut c = base();
        c.log_path = "/var/log/x.log".into();
        assert_field(&c, "config.log_path");
        c.log_path = "../../etc/x".into();
        assert_field(&c, "config.log_path");
        c.log_path = String::new();
        ok(&c);

        let with_sc = |sc: proto::LinuxContainerSecurityContext| proto::ContainerConfig {
            linux: Some(proto::LinuxContainerConfig {
                resources: None,
                security_context: Some(sc),
            }),
            ..base()
        };
        assert_field(
            &with_sc(proto::LinuxContainerSecurityContext {
                namespace_options: Some(proto::NamespaceOption {
                    pid: 9,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            "config.linux.security_context.namespace_options.pid",
        );
        assert_field(
            &with_sc(proto::LinuxContainerSecurityContext {
                seccomp: Some(proto::SecurityProfile {
                    profile_type: proto::security_profile::ProfileType::Localhost as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
            "config.linux.security_context.seccomp",
        );
        assert_field(
            &with_sc(proto::LinuxContainerSecurityContext {
                apparmor: Some(proto::SecurityProfile {
                    profile_type: 5,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
            "config.linux.security_context.apparmor",
        );
        assert_field(
            &with_sc(proto::LinuxContainerSecurityContext {
                supplemental_groups_policy: 7,
                ..Default::default()
            }),
            "config.linux.security_context.supplemental_groups_policy",
        );

        let mut c = base();
        c.linux = Some(proto::LinuxContainerConfig {
            resources: Some(proto::LinuxContainerResources {
                cpu_shares: -1,
                ..Default::default()
            }),
            security_context: None,
        });
        assert_field(&c, "config.linux.resources.cpu_shares");
    }
}
