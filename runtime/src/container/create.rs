//! CreateContainer: bundle, writable layer, OCI spec, cgroup, then the shim makes the init
//! (all setup done, blocked before `execve`), then one record write. A failure at any step
//! releases what the earlier steps made, newest first, and records nothing.

use std::path::PathBuf;

use super::config::{ContainerConfig, ImageInfo};
use super::{new_id, spec, ContainerRecord, ContainerState, Containers, ImageRef, SPEC_FILE};
use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::image::ImageStore;
use crate::sandbox::{NamespaceMode, SandboxRecord, SandboxState};
use crate::shim::protocol::{CreateContainer, RootfsMount};
use crate::shim_client::PodShim;

/// The cgroup parent of containers whose pod has none (crictl without a cgroup_parent).
pub const DEFAULT_CGROUP_PARENT: &str = crate::cgroups::DEFAULT_PARENT;

#[derive(Default)]
struct Made {
    bundle: Option<PathBuf>,
    layer_dir: Option<PathBuf>,
    cgroup: Option<Cgroup>,
}

impl Containers {
    pub async fn create(
        &self,
        pod: &SandboxRecord,
        images: &ImageStore,
        config: ContainerConfig,
    ) -> Result<ContainerRecord> {
        if pod.state != SandboxState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                pod.id
            )));
        }
        let unique = format!("{}/{}/{}", pod.id, config.name, config.attempt);
        {
            let mut creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
            let exists = self.db.list_containers()?.iter().any(|c| {
                c.pod_id == pod.id
                    && c.config.name == config.name
                    && c.config.attempt == config.attempt
            });
            if exists || !creating.insert(unique.clone()) {
                return Err(Error::AlreadyExists {
                    what: format!(
                        "container {:?} (attempt {}) in pod {}",
                        config.name, config.attempt, pod.id
                    ),
                });
            }
        }
        let id = new_id();
        let span =
            tracing::info_span!("container", pod = %pod.id, container = %id, name = %config.name);
        let _e = span.enter();
        let mut made = Made::default();
        // Hold off image garbage collection until the record (which holds the layers) is in.
        let gc = images.use_guard().await;
        let result = self.create_steps(&id, pod, images, config, &mut made).await;
        drop(gc);
        if let Err(e) = &result {
            tracing::warn!(error = %e, "create failed; releasing what it made");
            self.rollback(made).await;
        }
        self.creating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&unique);
        result
    }

    async fn create_steps(
        &self,
        id: &str,
        pod: &SandboxRecord,
        images: &ImageStore,
        config: ContainerConfig,
        made: &mut Made,
    ) -> Result<ContainerRecord> {
        let started = std::time::Instant::now();
        let image = images
            .resolve(&config.image)?
            .ok_or_else(|| Error::NotFound {
                what: format!("image {:?}", config.image),
            })?;
        // Image volumes: resolved now; their layers are held like the rootfs's.
        let mut config = config;
        let mut held_layers: Vec<String> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
        for (i, m) in config.mounts.iter_mut().enumerate() {
            let Some(volume) = m.image.as_mut() else {
                continue;
            };
            let field = format!("config.mounts[{i}].image.image");
            let found = images
                .resolve(&volume.reference)
                .map_err(|e| Error::invalid(field.clone(), e.to_string()))?
                .ok_or_else(|| Error::NotFound {
                    what: format!("image {:?} ({field})", volume.reference),
                })?;
            let mut dirs = images.layer_dirs(&found);
            dirs.reverse();
            volume.layers = dirs;
            volume.id = found.id.clone();
            held_layers.extend(found.layers.iter().map(|l| l.diff_id.clone()));
        }
        let mut layers = images.layer_dirs(&image);
        layers.reverse();
        let c = &image.config.config;
        let info = ImageInfo {
            id: image.id.clone(),
            reference: image
                .repo_digests
                .first()
                .or(image.repo_tags.first())
                .cloned()
                .unwrap_or_else(|| image.id.clone()),
            layers: layers.clone(),
            entrypoint: c.entrypoint.clone().unwrap_or_default(),
            cmd: c.cmd.clone().unwrap_or_default(),
            env: c.env.clone().unwrap_or_default(),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            user: c.user.clone().unwrap_or_default(),
            stop_signal: c.stop_signal.clone(),
        };
        let target_pid = match config.security.pid {
            Some(NamespaceMode::Target) => {
                Some(self.target_pid(&pod.id, &config.security.target_id)?)
            }
            _ => None,
        };
        check_userns(&config.security, &pod.config)?;
        let pidns = pod.dir.join(crate::shim::protocol::PIDNS_FILE);
        let pod_info = spec::PodInfo {
            pod_id: pod.id.clone(),
            hostname_file: pod.hostname_file(),
            hosts_file: pod.hosts_file(),
            resolv_conf: pod.resolv_conf(),
            shm_dir: pod.shm_dir(),
            netns: pod.netns.clone(),
            ipcns: pod.ipcns.clone(),
            utsns: pod.utsns.clone(),
            pidns: (pod.config.pid == NamespaceMode::Pod && pidns.exists()).then_some(pidns),
            host_network: pod.config.host_network(),
            userns: pod.userns.clone().zip(pod.config.userns.clone()),
        };
        let oci = {
            let config = config.clone();
            let info = info.clone();
            let layers = layers.clone();
            let cdi_dirs = self.cdi_spec_dirs.clone();
            let userns = pod_info.userns.is_some();
            tokio::task::spawn_blocking(move || -> Result<_> {
                // CDI names are checked before anything else is built.
                let cdi = super::cdi::resolve(&cdi_dirs, &config.cdi_devices)?;
                let mut oci = spec::build(&spec::SpecInput {
                    config: &config,
                    image: &info,
                    rootfs_lower: &layers,
                    pod: pod_info,
                    target_pid,
                })?;
                super::cdi::apply(&mut oci, &cdi)?;
                if userns {
                    // CDI's binds too.
                    let mut mounts = oci.mounts().clone().unwrap_or_default();
                    spec::mark_idmapped_binds(&mut mounts);
                    oci.set_mounts(Some(mounts));
                }
                Ok(oci)
            })
            .await
            .map_err(|e| Error::Internal(format!("spec task: {e}")))??
        };
        let stop_signal = spec::stop_signal(&info) as i32;
        let user = oci.process().as_ref().map(|p| super::ProcessUser {
            uid: p.user().uid(),
            gid: p.user().gid(),
            additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
        });
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            "spec built"
        );

        let parent = pod
            .config
            .cgroup_parent
            .as_deref()
            .unwrap_or(DEFAULT_CGROUP_PARENT)
            .trim_end_matches('/');
        let cg_path = format!("{parent}/{id}");
        let cg = Cgroup::new(&cg_path)?;

        let bundle = self.bundles_dir.join(id);
        std::fs::create_dir(&bundle).map_err(Error::io("creating", &bundle))?;
        made.bundle = Some(bundle.clone());
        // Before the cgroup and the init: what a start-up after a crash half-way releases.
        crate::intent::write(
            &bundle,
            &super::ContainerIntent {
                pod_dir: pod.dir.clone(),
                cgroup: cg_path.clone(),
            },
        )?;
        let spec_json = serde_json::to_vec_pretty(&oci)
            .map_err(|e| Error::Internal(format!("encoding the OCI spec: {e}")))?;
        let spec_path = bundle.join(SPEC_FILE);
        std::fs::write(&spec_path, spec_json).map_err(Error::io("writing", &spec_path))?;

        let layer_dir = self.layers_dir.join(id);
        made.layer_dir = Some(layer_dir.clone());
        for sub in ["upper", "work"] {
            let d = layer_dir.join(sub);
            std::fs::create_dir_all(&d).map_err(Error::io("creating", &d))?;
        }

        {
            let cg = cg.clone();
            let resources = config.resources.clone();
            // The device cgroup is written before the init joins, so nothing of the
            // container ever runs without it; exec'd processes join the same cgroup.
            let device_rules = oci
                .linux()
                .as_ref()
                .and_then(|l| l.resources().as_ref())
                .and_then(|r| r.devices().clone())
                .unwrap_or_default();
            made.cgroup = Some(cg.clone());
            tokio::task::spawn_blocking(move || -> Result<()> {
                cg.create()?;
                cg.apply_devices(&device_rules)?;
                if let Some(r) = &resources {
                    cg.apply(r)?;
                }
                Ok(())
            })
            .await
            .map_err(|e| Error::Internal(format!("cgroup task: {e}")))??;
        }
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            "cgroup made"
        );

        let log_path = match config.log_path.as_str() {
            "" => None,
            rel => Some(log_dir(&pod.config.log_directory).join(rel)),
        };
        let request = CreateContainer {
            id: id.to_string(),
            bundle: bundle.clone(),
            rootfs: RootfsMount {
                lower: layers,
                upper: layer_dir.join("upper"),
                work: layer_dir.join("work"),
                readonly: config.security.readonly_rootfs,
            },
            exit_file: bundle.join(super::EXIT_FILE),
            log_path: log_path.clone(),
            log_dir: log_path
                .as_ref()
                .map(|_| log_dir(&pod.config.log_directory)),
            tty: config.tty,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            cgroup_procs: cg.procs_files(),
            oom_file: cg.oom_events_file(),
        };
        let pid = PodShim::new(&pod.dir).create_container(request).await?;
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            "init ready"
        );

        let record = ContainerRecord {
            id: id.to_string(),
            pod_id: pod.id.clone(),
            image: ImageRef {
                name: image
                    .repo_tags
                    .first()
                    .cloned()
                    .unwrap_or_else(|| config.image.clone()),
                id: image.id.clone(),
                reference: info.reference.clone(),
                layers: held_layers,
            },
            config,
            state: ContainerState::Created,
            created_at: crate::clock::now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            pid: Some(pid),
            bundle,
            layer_dir,
            pod_dir: pod.dir.clone(),
            log_path,
            cgroup: cg_path,
            stop_signal,
            user,
        };
        if let Err(e) = self.db.put_container(&record) {
            // The init exists in the shim now: take it back before the rest is undone.
            let shim = PodShim::new(&pod.dir);
            let _ = shim.kill(id, libc::SIGKILL).await;
            let _ = shim.wait(id, std::time::Duration::from_secs(5)).await;
            let _ = shim.forget(id).await;
            return Err(e);
        }
        self.ledger.events.publish(
            &record.id,
            &record.pod_id,
            crate::events::ContainerEventKind::Created,
        );
        tracing::info!(pid, "container created");
        Ok(record)
    }

    /// The init pid of the running container `target` of pod `pod_id` (TARGET pid mode).
    fn target_pid(&self, pod_id: &str, target: &str) -> Result<i32> {
        const FIELD: &str = "config.linux.security_context.namespace_options.target_id";
        if target.is_empty() {
            return Err(Error::invalid(FIELD, "required with pid mode TARGET"));
        }
        let record = self
            .find(target)
            .map_err(|_| Error::invalid(FIELD, format!("{target:?} is ambiguous")))?
            .ok_or_else(|| Error::invalid(FIELD, format!("no container {target:?}")))?;
        match (record.pod_id == pod_id, record.is_running(), record.pid) {
            (true, true, Some(pid)) => Ok(pid),
            (false, _, _) => Err(Error::invalid(FIELD, "the target is in another pod")),
            _ => Err(Error::FailedPrecondition(format!(
                "target container {target} is not running"
            ))),
        }
    }

    async fn rollback(&self, made: Made) {
        if let Some(cg) = made.cgroup {
            let released = tokio::task::spawn_blocking(move || {
                let _ = cg.kill_all();
                cg.delete()
            })
            .await;
            match released {
                Ok(Err(e)) => tracing::error!(error = %e, "rollback: cgroup"),
                Err(e) => tracing::error!(error = %e, "rollback: cgroup task"),
                Ok(Ok(())) => {}
            }
            default_parent_cleanup();
        }
        for dir in [made.bundle, made.layer_dir].into_iter().flatten() {
            if let Err(e) = super::remove::remove_dir(&dir) {
                tracing::error!(error = %e, dir = %dir.display(), "rollback: dir");
            }
        }
    }
}

/// The shared default parent goes once its last container has.
pub(super) fn default_parent_cleanup() {
    if let Ok(cg) = Cgroup::new(DEFAULT_CGROUP_PARENT) {
        cg.delete_if_unused();
    }
}

/// The pod's log directory (`/` when it names none), which the shim opens the log file
/// beneath.
fn log_dir(dir: &str) -> PathBuf {
    match dir {
        "" => PathBuf::from("/"),
        dir => PathBuf::from(dir),
    }
}

/// A container's `userns_options` must say what its pod has (kubelet sends the pod's):
/// POD with the pod's maps (or none) in a pod with a user namespace, NODE in one without.
fn check_userns(
    sec: &super::config::SecurityConfig,
    pod: &crate::sandbox::SandboxConfig,
) -> Result<()> {
    const F: &str = "config.linux.security_context.namespace_options.userns_options";
    let Some((mode, maps)) = &sec.userns else {
        return Ok(());
    };
    let empty = maps.uids.is_empty() && maps.gids.is_empty();
    match (mode, &pod.userns) {
        (NamespaceMode::Node, None) => Ok(()),
        (NamespaceMode::Pod, Some(ours)) if empty || maps == ours => Ok(()),
        (NamespaceMode::Pod, Some(_)) => Err(Error::invalid(
            F,
            "a container's mappings must be its pod's",
        )),
        (NamespaceMode::Pod, None) => Err(Error::invalid(
            format!("{F}.mode"),
            "the pod has no user namespace of its own",
        )),
        (NamespaceMode::Node, Some(_)) => Err(Error::invalid(
            format!("{F}.mode"),
            "the pod has a user namespace: a container cannot use the host's",
        )),
        (NamespaceMode::Container | NamespaceMode::Target, _) => Err(Error::invalid(
            format!("{F}.mode"),
            "only POD and NODE are supported",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{IdMapping, UserNamespace};

    fn ns(host_id: u32) -> UserNamespace {
        let m = IdMapping {
            container_id: 0,
            host_id,
            length: 65536,
        };
        UserNamespace {
            uids: vec![m],
            gids: vec![m],
        }
    }

    #[test]
    fn a_containers_user_namespace_is_its_pods() {
        // A record of a version before user namespaces (no `userns`) still reads.
        let pod = |userns: Option<UserNamespace>| {
            let mut c: crate::sandbox::SandboxConfig = serde_json::from_value(serde_json::json!({
                "name": "p", "uid": "u", "namespace": "n", "attempt": 0, "hostname": "",
                "log_directory": "", "labels": {}, "annotations": {}, "dns": null,
                "port_mappings": [], "network": "Pod", "pid": "Pod", "ipc": "Pod",
                "cgroup_parent": null, "sysctls": {}, "runtime_handler": ""
            }))
            .expect("config");
            c.userns = userns;
            c
        };
        let sec =
            |userns: Option<(NamespaceMode, UserNamespace)>| super::super::config::SecurityConfig {
                userns,
                ..Default::default()
            };
        let ok = [
            (sec(None), pod(Some(ns(65536)))),
            (sec(None), pod(None)),
            (
                sec(Some((NamespaceMode::Pod, ns(65536)))),
                pod(Some(ns(65536))),
            ),
            (
                sec(Some((NamespaceMode::Pod, UserNamespace::default()))),
                pod(Some(ns(65536))),
            ),
            (
                sec(Some((NamespaceMode::Node, UserNamespace::default()))),
                pod(None),
            ),
        ];
        for (s, p) in &ok {
            assert!(check_userns(s, p).is_ok(), "{s:?}");
        }
        let bad = [
            (
                sec(Some((NamespaceMode::Pod, ns(131072)))),
                pod(Some(ns(65536))),
            ),
            (sec(Some((NamespaceMode::Pod, ns(65536)))), pod(None)),
            (
                sec(Some((NamespaceMode::Node, UserNamespace::default()))),
                pod(Some(ns(65536))),
            ),
            (
                sec(Some((NamespaceMode::Container, UserNamespace::default()))),
                pod(None),
            ),
        ];
        for (s, p) in &bad {
            match check_userns(s, p) {
                Err(Error::InvalidArgument { field, .. }) => {
                    assert!(field.contains("userns_options"), "{field}")
                }
                other => panic!("{s:?}: {other:?}"),
            }
        }
    }
}
