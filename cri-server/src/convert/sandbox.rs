//! PodSandboxConfig → runtime SandboxConfig (validating numeric enums and ports, naming the
//! field), and SandboxRecord → the CRI status and list messages.

use std::collections::HashMap;
use std::net::IpAddr;

use runtime::sandbox::{
    DnsConfig, IdMapping, NamespaceMode, PortMapping, Protocol, SandboxConfig, SandboxRecord,
    SandboxState, UserNamespace,
};

use super::resources::resources;
use crate::status::CriError;

pub fn namespace_mode(v: i32, field: &'static str) -> Result<NamespaceMode, CriError> {
    match proto::NamespaceMode::try_from(v) {
        Ok(proto::NamespaceMode::Pod) => Ok(NamespaceMode::Pod),
        Ok(proto::NamespaceMode::Container) => Ok(NamespaceMode::Container),
        Ok(proto::NamespaceMode::Node) => Ok(NamespaceMode::Node),
        Ok(proto::NamespaceMode::Target) => Ok(NamespaceMode::Target),
        Err(_) => Err(CriError::invalid(
            field,
            format!("unknown namespace mode {v}"),
        )),
    }
}

fn to_proto_mode(m: NamespaceMode) -> i32 {
    (match m {
        NamespaceMode::Pod => proto::NamespaceMode::Pod,
        NamespaceMode::Container => proto::NamespaceMode::Container,
        NamespaceMode::Node => proto::NamespaceMode::Node,
        NamespaceMode::Target => proto::NamespaceMode::Target,
    }) as i32
}

/// `userns_options` of a pod: None or NODE is the host's user namespace, POD the pod's own
/// with the request's maps (checked by the runtime); CONTAINER and TARGET are refused, as
/// the CRI says.
/// The same field names in PodSandboxConfig and ContainerConfig.
pub fn userns(
    u: Option<&proto::UserNamespace>,
) -> Result<Option<(NamespaceMode, UserNamespace)>, CriError> {
    const MODE: &str = "config.linux.security_context.namespace_options.userns_options.mode";
    const UIDS: &str = "config.linux.security_context.namespace_options.userns_options.uids";
    let Some(u) = u else { return Ok(None) };
    let mode = namespace_mode(u.mode, MODE)?;
    if matches!(mode, NamespaceMode::Container | NamespaceMode::Target) {
        return Err(CriError::invalid(MODE, "a user namespace is POD or NODE"));
    }
    let maps = |m: &[proto::IdMapping]| -> Vec<IdMapping> {
        m.iter()
            .map(|m| IdMapping {
                container_id: m.container_id,
                host_id: m.host_id,
                length: m.length,
            })
            .collect()
    };
    if mode == NamespaceMode::Node && !(u.uids.is_empty() && u.gids.is_empty()) {
        return Err(CriError::invalid(UIDS, "mode NODE takes no mappings"));
    }
    Ok(Some((
        mode,
        UserNamespace {
            uids: maps(&u.uids),
            gids: maps(&u.gids),
        },
    )))
}

fn to_proto_userns(u: Option<&UserNamespace>) -> proto::UserNamespace {
    let maps = |m: &[IdMapping]| {
        m.iter()
            .map(|m| proto::IdMapping {
                container_id: m.container_id,
                host_id: m.host_id,
                length: m.length,
            })
            .collect()
    };
    match u {
        Some(u) => proto::UserNamespace {
            mode: proto::NamespaceMode::Pod as i32,
            uids: maps(&u.uids),
            gids: maps(&u.gids),
        },
        None => proto::UserNamespace {
            mode: proto::NamespaceMode::Node as i32,
            ..Default::default()
        },
    }
}

fn port(v: i32, what: &str, allow_zero: bool) -> Result<u16, CriError> {
    let min = if allow_zero { 0 } else { 1 };
    if v < min || v > 65535 {
        return Err(CriError::invalid(
            "config.port_mappings",
            format!("{what} {v} out of range {min}-65535"),
        ));
    }
    Ok(v as u16)
}

pub fn sandbox_config(
    c: proto::PodSandboxConfig,
    runtime_handler: String,
) -> Result<SandboxConfig, CriError> {
    super::limits::sandbox(&c, &runtime_handler)?;
    let meta = c
        .metadata
        .ok_or_else(|| CriError::invalid("config.metadata", "required"))?;
    let linux = c.linux.unwrap_or_default();
    let ns = linux
        .security_context
        .and_then(|s| s.namespace_options)
        .unwrap_or_default();
    const NS: &str = "config.linux.security_context.namespace_options";
    let mut port_mappings = Vec::new();
    for p in c.port_mappings {
        let protocol = match proto::Protocol::try_from(p.protocol) {
            Ok(proto::Protocol::Tcp) => Protocol::Tcp,
            Ok(proto::Protocol::Udp) => Protocol::Udp,
            Ok(proto::Protocol::Sctp) => Protocol::Sctp,
            Err(_) => {
                return Err(CriError::invalid(
                    "config.port_mappings",
                    format!("unknown protocol {}", p.protocol),
                ))
            }
        };
        let host_ip = if p.host_ip.is_empty() {
            None
        } else {
            Some(p.host_ip.parse::<IpAddr>().map_err(|_| {
                CriError::invalid(
                    "config.port_mappings",
                    format!("host_ip {:?} is not an IP", p.host_ip),
                )
            })?)
        };
        port_mappings.push(PortMapping {
            protocol,
            container_port: port(p.container_port, "container_port", false)?,
            host_port: port(p.host_port, "host_port", true)?,
            host_ip,
        });
    }
    let userns = userns(ns.userns_options.as_ref())?
        .filter(|(mode, _)| *mode == NamespaceMode::Pod)
        .map(|(_, maps)| maps);
    let cgroup_parent = Some(linux.cgroup_parent).filter(|p| !p.is_empty());
    let resources = linux
        .resources
        .or(linux.overhead)
        .map(|r| resources(&r, "config.linux.resources"))
        .transpose()?;
    Ok(SandboxConfig {
        name: meta.name,
        uid: meta.uid,
        namespace: meta.namespace,
        attempt: meta.attempt,
        hostname: c.hostname,
        log_directory: c.log_directory,
        labels: c.labels.into_iter().collect(),
        annotations: c.annotations.into_iter().collect(),
        dns: c.dns_config.map(|d| DnsConfig {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        port_mappings,
        network: namespace_mode(
            ns.network,
            "config.linux.security_context.namespace_options.network",
        )
        .map_err(|_| CriError::invalid(NS, format!("unknown network mode {}", ns.network)))?,
        pid: namespace_mode(
            ns.pid,
            "config.linux.security_context.namespace_options.pid",
        )?,
        ipc: namespace_mode(
            ns.ipc,
            "config.linux.security_context.namespace_options.ipc",
        )?,
        cgroup_parent,
        sysctls: linux.sysctls.into_iter().collect(),
        runtime_handler,
        userns,
        resources,
    })
}

fn metadata(r: &SandboxRecord) -> proto::PodSandboxMetadata {
    proto::PodSandboxMetadata {
        name: r.config.name.clone(),
        uid: r.config.uid.clone(),
        namespace: r.config.namespace.clone(),
        attempt: r.config.attempt,
    }
}

pub fn state(s: SandboxState) -> i32 {
    (match s {
        SandboxState::Ready => proto::PodSandboxState::SandboxReady,
        SandboxState::NotReady => proto::PodSandboxState::SandboxNotready,
    }) as i32
}

fn map(m: &std::collections::BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub fn to_status(r: &SandboxRecord, host_ip: Option<String>) -> proto::PodSandboxStatus {
    let ip = match (r.ip, r.config.host_network()) {
        (Some(ip), _) => ip.to_string(),
        (None, true) => host_ip.unwrap_or_default(),
        (None, false) => String::new(),
    };
    proto::PodSandboxStatus {
        id: r.id.clone(),
        metadata: Some(metadata(r)),
        state: state(r.state),
        created_at: r.created_at,
        network: Some(proto::PodSandboxNetworkStatus {
            ip,
            additional_ips: r
                .additional_ips
                .iter()
                .map(|ip| proto::PodIp { ip: ip.to_string() })
                .collect(),
        }),
        linux: Some(proto::LinuxPodSandboxStatus {
            namespaces: Some(proto::Namespace {
                options: Some(proto::NamespaceOption {
                    network: to_proto_mode(r.config.network),
                    pid: to_proto_mode(r.config.pid),
                    ipc: to_proto_mode(r.config.ipc),
                    target_id: String::new(),
                    userns_options: Some(to_proto_userns(r.config.userns.as_ref())),
                }),
            }),
        }),
        labels: map(&r.config.labels),
        annotations: map(&r.config.annotations),
        runtime_handler: r.config.runtime_handler.clone(),
    }
}

pub fn to_list_item(r: &SandboxRecord) -> proto::PodSandbox {
    proto::PodSandbox {
        id: r.id.clone(),
        metadata: Some(metadata(r)),
        state: state(r.state),
        created_at: r.created_at,
        labels: map(&r.config.labels),
        annotations: map(&r.config.annotations),
        runtime_handler: r.config.runtime_handler.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(container_id: u32) -> proto::IdMapping {
        proto::IdMapping {
            container_id,
            host_id: 65536,
            length: 65536,
        }
    }

    #[test]
    fn userns_options_modes() {
        assert_eq!(userns(None).ok(), Some(None));
        let pod = proto::UserNamespace {
            mode: proto::NamespaceMode::Pod as i32,
            uids: vec![mapping(0)],
            gids: vec![mapping(0)],
        };
        let (mode, maps) = userns(Some(&pod)).ok().flatten().expect("POD");
        assert_eq!(mode, NamespaceMode::Pod);
        assert_eq!(maps.uids[0].host_id, 65536);
        assert_eq!(to_proto_userns(Some(&maps)), pod);
        assert_eq!(
            to_proto_userns(None).mode,
            proto::NamespaceMode::Node as i32
        );
        for (bad, field) in [
            (
                proto::NamespaceMode::Container as i32,
                "userns_options.mode",
            ),
            (proto::NamespaceMode::Target as i32, "userns_options.mode"),
            (42, "userns_options.mode"),
        ] {
            let u = proto::UserNamespace {
                mode: bad,
                ..Default::default()
            };
            match userns(Some(&u)) {
                Err(CriError::InvalidArgument { field: f, .. }) => assert!(f.ends_with(field)),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let node_with_maps = proto::UserNamespace {
            mode: proto::NamespaceMode::Node as i32,
            uids: vec![mapping(0)],
            ..Default::default()
        };
        assert!(userns(Some(&node_with_maps)).is_err());
    }
}
