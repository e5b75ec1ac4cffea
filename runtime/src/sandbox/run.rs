//! RunPodSandbox: namespaces, network, files, cgroup, shim, record, in that order. A failure
//! at any step releases what the earlier steps made, newest first, and records nothing.

use std::path::PathBuf;

use super::{
    cgroup, files, NamespaceMode, SandboxConfig, SandboxRecord, SandboxState, Sandboxes,
    UserNamespace,
};
use crate::error::{Error, Result};

/// What a run has made so far, for the rollback.
#[derive(Default)]
struct Made {
    dir: Option<PathBuf>,
    namespaces: bool,
    network: bool,
    shm: bool,
    cgroup: Option<super::PodCgroup>,
    shim: Option<crate::shim_client::ShimHandle>,
}

impl Sandboxes {
    pub async fn run(&self, config: SandboxConfig) -> Result<SandboxRecord> {
        validate(&config)?;
        if config.userns.is_some() {
            self.user_namespaces().map_err(|why| {
                Error::invalid(
                    "config.linux.security_context.namespace_options.userns_options",
                    format!("this node cannot run pods with a user namespace: {why}"),
                )
            })?;
        }
        let unique = config.unique_name();
        {
            let mut creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
            let exists = self
                .db
                .list_sandboxes()?
                .iter()
                .any(|s| s.config.unique_name() == unique);
            if exists || !creating.insert(unique.clone()) {
                return Err(Error::AlreadyExists {
                    what: format!("pod sandbox {unique}"),
                });
            }
        }
        let id = new_id();
        let span = tracing::info_span!("sandbox", pod = %id, name = %unique);
        let _e = span.enter();
        let mut made = Made::default();
        let result = self.run_steps(&id, config, &mut made).await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "run failed; releasing what it made");
            self.rollback(&id, made).await;
        }
        self.creating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&unique);
        result
    }

    async fn run_steps(
        &self,
        id: &str,
        config: SandboxConfig,
        made: &mut Made,
    ) -> Result<SandboxRecord> {
        // A short dir name: the shim's socket lives inside, and unix socket paths are
        // limited to 107 bytes. 64 random bits are unique enough for the pods of one node.
        let dir = self.pods_dir.join(&id[..16]);
        if dir.exists() {
            return Err(Error::AlreadyExists {
                what: format!("pod state dir {}", dir.display()),
            });
        }
        std::fs::create_dir(&dir).map_err(Error::io("creating", &dir))?;
        made.dir = Some(dir.clone());
        // Before any kernel resource: what a start-up after a crash half-way must release.
        let pod_cg = super::PodCgroup::plan(id, config.cgroup_parent.as_deref())?;
        crate::intent::write(
            &dir,
            &super::PodIntent {
                id: id.to_string(),
                cgroup: Some(pod_cg.clone()),
            },
        )?;

        let host_net = config.host_network();
        let req = network::NamespaceRequest {
            net: !host_net,
            ipc: config.ipc != NamespaceMode::Node,
            uts: !host_net,
            hostname: (!host_net && !config.hostname.is_empty()).then(|| config.hostname.clone()),
            sysctls: config.sysctls.clone(),
            userns: config.userns.clone(),
        };
        let ns_dir = dir.clone();
        let pinned = tokio::task::spawn_blocking(move || network::pin_namespaces(&ns_dir, &req))
            .await
            .map_err(|e| Error::Internal(format!("namespace task: {e}")))??;
        made.namespaces = true;

        let mut ips = Vec::new();
        if let Some(netns) = &pinned.net {
            let net = self.network.as_ref().ok_or_else(|| {
                Error::Unavailable(format!(
                    "pod network is not ready: {}",
                    self.network_error.as_deref().unwrap_or("unknown")
                ))
            })?;
            made.network = true;
            match net {
                super::PodNetwork::Native(n) => {
                    let pod = n.setup_pod(id, netns, &config.port_mappings).await?;
                    ips.push(std::net::IpAddr::V4(pod.ip));
                }
                super::PodNetwork::Cni(c) => {
                    let dns = config.dns.as_ref().map(|d| network::cni::DnsArgs {
                        servers: d.servers.clone(),
                        searches: d.searches.clone(),
                        options: d.options.clone(),
                    });
                    let req = network::cni::PodRequest {
                        id,
                        netns,
                        name: &config.name,
                        namespace: &config.namespace,
                        uid: &config.uid,
                        annotations: &config.annotations,
                        ports: &config.port_mappings,
                        dns: dns.as_ref(),
                    };
                    ips = c.setup_pod(&req).await?.ips;
                }
            }
        }
        let ip = ips.first().copied();

        let mut record = SandboxRecord {
            id: id.to_string(),
            config,
            state: SandboxState::Ready,
            created_at: crate::clock::now_nanos(),
            ip,
            additional_ips: ips.iter().skip(1).copied().collect(),
            network_error: None,
            dir: dir.clone(),
            netns: pinned.net,
            ipcns: pinned.ipc,
            utsns: pinned.uts,
            userns: pinned.user,
            shim_pid: None,
            pause_pid: None,
            cgroup: None,
        };
        let hostname = if record.config.host_network() {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            record.config.hostname.clone()
        };
        files::write(&record.hostname_file(), &format!("{hostname}\n"))?;
        files::write(&record.hosts_file(), &files::hosts(&hostname, ip))?;
        files::write(
            &record.resolv_conf(),
            &files::resolv_conf(record.config.dns.as_ref())?,
        )?;
        files::mount_shm(&record.shm_dir())?;
        made.shm = true;

        made.cgroup = Some(pod_cg.clone());
        {
            let (cg, resources) = (pod_cg.clone(), record.config.resources.clone());
            cgroup::blocking(move || cg.make(resources.as_ref())).await?;
        }
        let cgroup_procs = pod_cg.cgroup()?.procs_files();
        record.cgroup = Some(pod_cg);

        let spec = crate::shim_client::ShimSpec {
            pod_id: id.to_string(),
            dir: dir.clone(),
            share_pid: record.config.pid == NamespaceMode::Pod,
            netns: record.netns.clone(),
            ipcns: record.ipcns.clone(),
            utsns: record.utsns.clone(),
            userns: record.userns.clone(),
            log: None,
            cgroup_procs,
        };
        let shim = crate::shim_client::spawn(&spec).await?;
        record.shim_pid = Some(shim.pid());
        record.pause_pid = shim.pause_pid();
        made.shim = Some(shim);

        self.db.put_sandbox(&record)?;
        tracing::info!(ip = ?record.ip, "pod sandbox ready");
        Ok(record)
    }

    async fn rollback(&self, id: &str, made: Made) {
        if let Some(shim) = made.shim {
            if let Err(e) = shim.shutdown(std::time::Duration::from_secs(2)).await {
                tracing::error!(error = %e, "rollback: shim shutdown");
            }
        }
        if let Some(cg) = made.cgroup {
            if let Err(e) = cgroup::blocking(move || cg.release()).await {
                tracing::error!(error = %e, "rollback: cgroup");
            }
        }
        let Some(dir) = made.dir else { return };
        if made.shm {
            if let Err(e) = files::unmount_shm(&dir.join("shm")) {
                tracing::error!(error = %e, "rollback: shm");
            }
        }
        if made.network {
            let netns = dir.join("net");
            if let Err(e) = self.teardown_network(id, Some(&netns)).await {
                tracing::error!(error = %e, "rollback: network");
            }
        }
        if made.namespaces {
            let d = dir.clone();
            match tokio::task::spawn_blocking(move || network::release_namespaces(&d)).await {
                Ok(Err(e)) => tracing::error!(error = %e, "rollback: namespaces"),
                Err(e) => tracing::error!(error = %e, "rollback: namespaces task"),
                Ok(Ok(())) => {}
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::error!(error = %e, "rollback: state dir");
        }
    }
}

/// The CRI's rules for a pod's user namespace (one uid and one gid mapping, each mapping
/// the container's root) plus Kubernetes' (no host network, PID or IPC namespace with it),
/// and ours: the host's root is never inside the range.
fn validate_userns(c: &SandboxConfig, userns: &UserNamespace) -> Result<()> {
    const F: &str = "config.linux.security_context.namespace_options.userns_options";
    for (name, maps) in [("uids", &userns.uids), ("gids", &userns.gids)] {
        let field = format!("{F}.{name}");
        let [m] = maps.as_slice() else {
            return Err(Error::invalid(
                field,
                format!("exactly one mapping is supported, got {}", maps.len()),
            ));
        };
        if m.container_id != 0 {
            return Err(Error::invalid(
                field,
                format!(
                    "the mapping must start at container id 0, not {}",
                    m.container_id
                ),
            ));
        }
        if m.length == 0 || m.host_id.checked_add(m.length - 1).is_none() {
            return Err(Error::invalid(
                field,
                format!(
                    "{} ids from host id {} do not fit in 32 bits",
                    m.length, m.host_id
                ),
            ));
        }
        if m.host_id == 0 {
            return Err(Error::invalid(
                field,
                "the host's root (id 0) must not be mapped into a pod",
            ));
        }
    }
    let shared = [
        (c.network == NamespaceMode::Node, "network"),
        (c.pid == NamespaceMode::Node, "pid"),
        (c.ipc == NamespaceMode::Node, "ipc"),
    ];
    if let Some((_, ns)) = shared.iter().find(|(node, _)| *node) {
        return Err(Error::invalid(
            format!("config.linux.security_context.namespace_options.{ns}"),
            "a pod with its own user namespace cannot share the host's",
        ));
    }
    Ok(())
}

fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Checks that need no kernel: everything that would otherwise fail half-way.
fn validate(c: &SandboxConfig) -> Result<()> {
    if c.name.is_empty() || c.uid.is_empty() || c.namespace.is_empty() {
        return Err(Error::invalid(
            "config.metadata",
            "name, uid and namespace are required",
        ));
    }
    if matches!(c.network, NamespaceMode::Container | NamespaceMode::Target) {
        return Err(Error::invalid(
            "config.linux.security_context.namespace_options.network",
            "a pod's network namespace is POD or NODE",
        ));
    }
    if matches!(c.ipc, NamespaceMode::Container | NamespaceMode::Target) {
        return Err(Error::invalid(
            "config.linux.security_context.namespace_options.ipc",
            "a pod's IPC namespace is POD or NODE",
        ));
    }
    if let Some(userns) = &c.userns {
        validate_userns(c, userns)?;
    }
    if c.pid == NamespaceMode::Target {
        return Err(Error::invalid(
            "config.linux.security_context.namespace_options.pid",
            "TARGET is for containers, not pods",
        ));
    }
    for key in c.sysctls.keys() {
        let kind = network::validate_sysctl(key)
            .map_err(|e| Error::invalid("config.linux.sysctls", e.to_string()))?;
        let allowed = match kind {
            network::SysctlKind::Net => !c.host_network(),
            network::SysctlKind::Ipc => c.ipc != NamespaceMode::Node,
        };
        if !allowed {
            return Err(Error::invalid(
                "config.linux.sysctls",
                format!("{key} would change the host's namespace"),
            ));
        }
    }
    for (i, p) in c.port_mappings.iter().enumerate() {
        if p.container_port == 0 {
            return Err(Error::invalid(
                "config.port_mappings",
                format!("entry {i}: container_port must be 1-65535"),
            ));
        }
    }
    if let Some(parent) = &c.cgroup_parent {
        crate::cgroups::validate_path(parent)
            .map_err(|e| Error::invalid("config.linux.cgroup_parent", e.to_string()))?;
    }
    if c.hostname.len() > 64 {
        return Err(Error::invalid(
            "config.hostname",
            "longer than 64 characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::IdMapping;

    fn config(userns: Option<UserNamespace>) -> SandboxConfig {
        SandboxConfig {
            name: "p".into(),
            uid: "u".into(),
            namespace: "n".into(),
            attempt: 0,
            hostname: String::new(),
            log_directory: String::new(),
            labels: Default::default(),
            annotations: Default::default(),
            dns: None,
            port_mappings: Vec::new(),
            network: NamespaceMode::Pod,
            pid: NamespaceMode::Pod,
            ipc: NamespaceMode::Pod,
            cgroup_parent: None,
            sysctls: Default::default(),
            runtime_handler: String::new(),
            userns,
            resources: None,
        }
    }

    fn maps(uids: Vec<(u32, u32, u32)>, gids: Vec<(u32, u32, u32)>) -> UserNamespace {
        let m = |v: Vec<(u32, u32, u32)>| {
            v.into_iter()
                .map(|(container_id, host_id, length)| IdMapping {
                    container_id,
                    host_id,
                    length,
                })
                .collect()
        };
        UserNamespace {
            uids: m(uids),
            gids: m(gids),
        }
    }

    fn refused_field(c: &SandboxConfig) -> String {
        match validate(c) {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("want InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn user_namespace_maps_follow_the_cri_rules() {
        let good = (0, 65536, 65536);
        assert!(validate(&config(Some(maps(vec![good], vec![good])))).is_ok());
        assert!(validate(&config(None)).is_ok());
        let uids = "config.linux.security_context.namespace_options.userns_options.uids";
        let gids = "config.linux.security_context.namespace_options.userns_options.gids";
        for (bad, field) in [
            (maps(vec![good, (0, 1000, 10)], vec![good]), uids),
            (maps(vec![], vec![good]), uids),
            (maps(vec![good], vec![(1, 1000, 10)]), gids),
            (maps(vec![(0, 0, 65536)], vec![good]), uids),
            (maps(vec![(0, 1000, 0)], vec![good]), uids),
            (maps(vec![(0, u32::MAX, 2)], vec![good]), uids),
        ] {
            assert_eq!(refused_field(&config(Some(bad.clone()))), field, "{bad:?}");
        }
        for (mode, field) in [
            (
                "network",
                "config.linux.security_context.namespace_options.network",
            ),
            ("pid", "config.linux.security_context.namespace_options.pid"),
            ("ipc", "config.linux.security_context.namespace_options.ipc"),
        ] {
            let mut c = config(Some(maps(vec![good], vec![good])));
            match mode {
                "network" => c.network = NamespaceMode::Node,
                "pid" => c.pid = NamespaceMode::Node,
                _ => c.ipc = NamespaceMode::Node,
            }
            assert_eq!(refused_field(&c), field);
        }
    }
}
