//! Every limit: at the limit passes, one over fails, and the error names the field and the
//! limit.

use super::*;
use tonic::Code;

fn pod() -> proto::PodSandboxConfig {
    proto::PodSandboxConfig {
        metadata: Some(proto::PodSandboxMetadata {
            name: "web".into(),
            uid: "0d9a3d5c-5c1a-4a5e-9d7f-3f1f1b1b1b1b".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web".into(),
        log_directory: "/var/log/pods/default_web_0d9a".into(),
        ..Default::default()
    }
}

fn ctr() -> proto::ContainerConfig {
    proto::ContainerConfig {
        metadata: Some(proto::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(proto::ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        command: vec!["/bin/sh".into()],
        log_path: "app/0.log".into(),
        ..Default::default()
    }
}

/// The error's message; asserts InvalidArgument, the field, and (when given) the limit.
fn refused(r: Result<(), CriError>, field: &str, limit: Option<usize>) -> String {
    let e = match r {
        Err(e) => e,
        Ok(()) => panic!("want {field} refused, got Ok"),
    };
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    let msg = e.message();
    assert!(
        msg.starts_with(&format!("invalid {field}: ")),
        "want field {field}, got {msg:?}"
    );
    if let Some(limit) = limit {
        assert!(
            msg.contains(&format!("limit of {limit}")),
            "want the limit {limit} named, got {msg:?}"
        );
    }
    assert!(msg.len() < 400, "the value is echoed: {} bytes", msg.len());
    msg
}

fn ok(r: Result<(), CriError>) {
    if let Err(e) = r {
        panic!("unexpected error: {}", e.message());
    }
}

/// `pod()` changed by `f` is accepted.
fn pod_ok(f: impl FnOnce(&mut proto::PodSandboxConfig)) {
    let mut c = pod();
    f(&mut c);
    ok(sandbox(&c, ""));
}

fn pod_bad(field: &str, limit: Option<usize>, f: impl FnOnce(&mut proto::PodSandboxConfig)) {
    let mut c = pod();
    f(&mut c);
    refused(sandbox(&c, ""), field, limit);
}

fn ctr_ok(f: impl FnOnce(&mut proto::ContainerConfig)) {
    let mut c = ctr();
    f(&mut c);
    ok(container(&c));
}

fn ctr_bad(field: &str, limit: Option<usize>, f: impl FnOnce(&mut proto::ContainerConfig)) {
    let mut c = ctr();
    f(&mut c);
    refused(container(&c), field, limit);
}

fn n(len: usize) -> String {
    "a".repeat(len)
}

fn meta(c: &mut proto::PodSandboxConfig) -> &mut proto::PodSandboxMetadata {
    c.metadata.get_or_insert_with(Default::default)
}

fn dns(c: &mut proto::PodSandboxConfig) -> &mut proto::DnsConfig {
    c.dns_config.get_or_insert_with(Default::default)
}

fn linux(c: &mut proto::PodSandboxConfig) -> &mut proto::LinuxPodSandboxConfig {
    c.linux.get_or_insert_with(Default::default)
}

#[test]
fn the_defaults_pass() {
    ok(sandbox(&pod(), "runc"));
    ok(container(&ctr()));
    ok(sandbox(&proto::PodSandboxConfig::default(), ""));
    ok(container(&proto::ContainerConfig::default()));
}

#[test]
fn pod_metadata_and_names() {
    for (field, max, set) in [
        (
            "config.metadata.name",
            MAX_POD_NAME,
            (|c: &mut proto::PodSandboxConfig, v: String| meta(c).name = v)
                as fn(&mut proto::PodSandboxConfig, String),
        ),
        ("config.metadata.namespace", MAX_NAMESPACE, |c, v| {
            meta(c).namespace = v
        }),
        ("config.metadata.uid", MAX_UID, |c, v| meta(c).uid = v),
        ("config.hostname", MAX_HOSTNAME, |c, v| c.hostname = v),
    ] {
        pod_ok(|c| set(c, n(max)));
        pod_bad(field, Some(max), |c| set(c, n(max + 1)));
        pod_bad(field, None, |c| set(c, "a\nb".into()));
    }
    // A 10 MiB name is refused without being echoed.
    pod_bad("config.metadata.name", Some(MAX_POD_NAME), |c| {
        meta(c).name = n(10 << 20)
    });
    // The hostname is one word of /etc/hosts.
    pod_bad("config.hostname", None, |c| c.hostname = "a b".into());
    pod_bad("config.hostname", None, |c| c.hostname = "a\tb".into());

    ok(sandbox(&pod(), &n(MAX_RUNTIME_HANDLER)));
    refused(
        sandbox(&pod(), &n(MAX_RUNTIME_HANDLER + 1)),
        "runtime_handler",
        Some(MAX_RUNTIME_HANDLER),
    );
}

#[test]
fn container_name_and_image() {
    ctr_ok(|c| c.metadata.get_or_insert_with(Default::default).name = n(MAX_CONTAINER_NAME));
    ctr_bad("config.metadata.name", Some(MAX_CONTAINER_NAME), |c| {
        c.metadata.get_or_insert_with(Default::default).name = n(MAX_CONTAINER_NAME + 1)
    });
    ctr_bad("config.image.image", Some(MAX_PATH), |c| {
        c.image.get_or_insert_with(Default::default).image = n(MAX_PATH + 1)
    });
}

#[test]
fn log_directory_and_log_path() {
    pod_ok(|c| c.log_directory = String::new());
    pod_ok(|c| c.log_directory = format!("/{}", n(MAX_PATH - 1)));
    pod_bad("config.log_directory", Some(MAX_PATH), |c| {
        c.log_directory = format!("/{}", n(MAX_PATH))
    });
    for bad in [
        "var/log/pods/x",
        "/var/log/pods/../../etc",
        "/var/log/..",
        "/var/log/\0x",
    ] {
        pod_bad("config.log_directory", None, |c| {
            c.log_directory = bad.into()
        });
    }

    ctr_ok(|c| c.log_path = String::new());
    ctr_ok(|c| c.log_path = "0.log".into());
    ctr_ok(|c| c.log_path = "./app/0.log".into());
    ctr_ok(|c| c.log_path = n(MAX_PATH));
    ctr_bad("config.log_path", Some(MAX_PATH), |c| {
        c.log_path = n(MAX_PATH + 1)
    });
    for bad in [
        "/var/log/x.log",
        "../x.log",
        "app/../../x.log",
        "app/..",
        "app/",
        ".",
        "a\0b",
    ] {
        ctr_bad("config.log_path", None, |c| c.log_path = bad.into());
    }
}

#[test]
fn labels_to_kubernetes_limits() {
    let key = format!("{}/{}", n(MAX_LABEL_KEY_PREFIX), n(MAX_LABEL_KEY_NAME));
    pod_ok(|c| {
        c.labels.insert(key.clone(), n(MAX_LABEL_VALUE));
    });
    pod_bad("config.labels", Some(MAX_LABEL_KEY_PREFIX), |c| {
        c.labels.insert(
            format!("{}/{}", n(MAX_LABEL_KEY_PREFIX + 1), "x"),
            "v".into(),
        );
    });
    pod_bad("config.labels", Some(MAX_LABEL_KEY_NAME), |c| {
        c.labels.insert(n(MAX_LABEL_KEY_NAME + 1), "v".into());
    });
    pod_bad("config.labels", Some(MAX_LABEL_VALUE), |c| {
        c.labels.insert("k".into(), n(MAX_LABEL_VALUE + 1));
    });
    pod_bad("config.labels", None, |c| {
        c.labels.insert("example.com/".into(), "v".into());
    });
    let many = |count: usize| (0..count).map(|i| (format!("k{i}"), String::new()));
    pod_ok(|c| c.labels.extend(many(MAX_LABELS)));
    pod_bad("config.labels", Some(MAX_LABELS), |c| {
        c.labels.extend(many(MAX_LABELS + 1))
    });
    ctr_ok(|c| c.labels.extend(many(MAX_LABELS)));
    ctr_bad("config.labels", Some(MAX_LABELS), |c| {
        c.labels.extend(many(MAX_LABELS + 1))
    });
    ctr_bad("config.labels", Some(MAX_LABEL_VALUE), |c| {
        c.labels.insert("k".into(), n(MAX_LABEL_VALUE + 1));
    });
}

#[test]
fn annotations_total() {
    // Key "k" plus value: exactly the limit, then one byte over.
    let at = |c: &mut std::collections::HashMap<String, String>, extra: usize| {
        c.insert("a".into(), n(MAX_ANNOTATIONS_BYTES / 2 - 1));
        c.insert("b".into(), n(MAX_ANNOTATIONS_BYTES / 2 - 1 + extra));
    };
    pod_ok(|c| at(&mut c.annotations, 0));
    pod_bad("config.annotations", Some(MAX_ANNOTATIONS_BYTES), |c| {
        at(&mut c.annotations, 1)
    });
    ctr_ok(|c| at(&mut c.annotations, 0));
    ctr_bad("config.annotations", Some(MAX_ANNOTATIONS_BYTES), |c| {
        at(&mut c.annotations, 1)
    });
}

#[test]
fn dns_config_as_kubelet_bounds_it() {
    pod_ok(|c| dns(c).servers = vec!["10.96.0.10".into(); MAX_DNS_SERVERS]);
    pod_bad("config.dns_config.servers", Some(MAX_DNS_SERVERS), |c| {
        dns(c).servers = vec!["10.96.0.10".into(); MAX_DNS_SERVERS + 1]
    });
    // 32 domains of 63: 2047 characters with their spaces.
    pod_ok(|c| dns(c).searches = vec![n(63); MAX_DNS_SEARCHES]);
    pod_bad("config.dns_config.searches", Some(MAX_DNS_SEARCHES), |c| {
        dns(c).searches = vec!["a".into(); MAX_DNS_SEARCHES + 1]
    });
    pod_bad(
        "config.dns_config.searches",
        Some(MAX_DNS_SEARCH_CHARS),
        |c| {
            let mut s = vec![n(63); MAX_DNS_SEARCHES];
            s[0].push('a');
            s[1].push('a');
            dns(c).searches = s
        },
    );
    pod_bad("config.dns_config.searches[0]", Some(MAX_DNS_ENTRY), |c| {
        dns(c).searches = vec![n(MAX_DNS_ENTRY + 1)]
    });
    pod_ok(|c| dns(c).options = vec!["ndots:5".into(); MAX_DNS_OPTIONS]);
    pod_bad("config.dns_config.options", Some(MAX_DNS_OPTIONS), |c| {
        dns(c).options = vec!["ndots:5".into(); MAX_DNS_OPTIONS + 1]
    });
    // A newline would add a line to resolv.conf; a blank another word.
    pod_bad("config.dns_config.servers[1]", None, |c| {
        dns(c).servers = vec!["1.1.1.1".into(), "8.8.8.8\nnameserver 6.6.6.6".into()]
    });
    pod_bad("config.dns_config.searches[0]", None, |c| {
        dns(c).searches = vec!["a.svc\noptions debug".into()]
    });
    pod_bad("config.dns_config.searches[0]", None, |c| {
        dns(c).searches = vec!["a b".into()]
    });
    pod_bad("config.dns_config.options[0]", None, |c| {
        dns(c).options = vec!["ndots:1\r".into()]
    });
    pod_bad("config.dns_config.options[0]", None, |c| {
        dns(c).options = vec![String::new()]
    });
}

#[test]
fn pod_lists_and_linux() {
    let ports = |count: usize| vec![proto::PortMapping::default(); count];
    pod_ok(|c| c.port_mappings = ports(MAX_PORT_MAPPINGS));
    pod_bad("config.port_mappings", Some(MAX_PORT_MAPPINGS), |c| {
        c.port_mappings = ports(MAX_PORT_MAPPINGS + 1)
    });
    let sysctls = |count: usize| (0..count).map(|i| (format!("net.x{i}"), "1".to_string()));
    pod_ok(|c| linux(c).sysctls.extend(sysctls(MAX_SYSCTLS)));
    pod_bad("config.linux.sysctls", Some(MAX_SYSCTLS), |c| {
        linux(c).sysctls.extend(sysctls(MAX_SYSCTLS + 1))
    });
    pod_bad("config.linux.sysctls", Some(MAX_SYSCTL_VALUE), |c| {
        linux(c)
            .sysctls
            .insert("net.core.somaxconn".into(), n(MAX_SYSCTL_VALUE + 1));
    });
    pod_bad("config.linux.cgroup_parent", Some(MAX_PATH), |c| {
        linux(c).cgroup_parent = n(MAX_PATH + 1)
    });
    let groups = |count: usize| proto::LinuxSandboxSecurityContext {
        supplemental_groups: vec![1; count],
        ..Default::default()
    };
    pod_ok(|c| linux(c).security_context = Some(groups(MAX_SUPPLEMENTAL_GROUPS)));
    pod_bad(
        "config.linux.security_context.supplemental_groups",
        Some(MAX_SUPPLEMENTAL_GROUPS),
        |c| linux(c).security_context = Some(groups(MAX_SUPPLEMENTAL_GROUPS + 1)),
    );
    let unified = |count: usize| proto::LinuxContainerResources {
        unified: (0..count)
            .map(|i| (format!("memory.x{i}"), "1".into()))
            .collect(),
        ..Default::default()
    };
    pod_ok(|c| linux(c).resources = Some(unified(MAX_UNIFIED)));
    pod_bad("config.linux.resources.unified", Some(MAX_UNIFIED), |c| {
        linux(c).resources = Some(unified(MAX_UNIFIED + 1))
    });
    pod_bad("config.linux.overhead.unified", Some(MAX_UNIFIED), |c| {
        linux(c).overhead = Some(unified(MAX_UNIFIED + 1))
    });
}

fn kv(key: &str, value: String) -> proto::KeyValue {
    proto::KeyValue {
        key: key.into(),
        value,
    }
}

#[test]
fn environment_strings_and_total() {
    // "K=" + value + NUL is exactly MAX_ARG_STRLEN.
    let at = MAX_ARG_STRLEN - 3;
    ctr_ok(|c| c.envs = vec![kv("K", n(at))]);
    ctr_bad("config.envs[1]", Some(MAX_ARG_STRLEN), |c| {
        c.envs = vec![kv("A", "1".into()), kv("K", n(at + 1))]
    });
    // A 1 MiB variable, as the careless client sent.
    ctr_bad("config.envs[0]", Some(MAX_ARG_STRLEN), |c| {
        c.envs = vec![kv("BIG", n(1 << 20))]
    });
    ctr_bad("config.envs[0].key", None, |c| {
        c.envs = vec![kv("A=B", String::new())]
    });
    ctr_bad("config.envs[0].key", None, |c| {
        c.envs = vec![kv("A\0", String::new())]
    });
    ctr_bad("config.envs[0].value", None, |c| {
        c.envs = vec![kv("A", "x\0y".into())]
    });
    // The total: 16 strings of 65536 (with "Kxx=" and NUL) are exactly 1 MiB.
    let total = |extra: usize| {
        (0..16)
            .map(|i| {
                kv(
                    &format!("K{i:02}"),
                    n(65536 - 5 + usize::from(i == 0) * extra),
                )
            })
            .collect::<Vec<_>>()
    };
    ctr_ok(|c| c.envs = total(0));
    ctr_bad("config.envs", Some(MAX_ENV_TOTAL), |c| c.envs = total(1));
}

#[test]
fn command_args_and_exec_cmd() {
    let at = MAX_ARG_STRLEN - 1;
    ctr_ok(|c| c.args = vec![n(at)]);
    ctr_bad("config.args[1]", Some(MAX_ARG_STRLEN), |c| {
        c.args = vec!["-c".into(), n(at + 1)]
    });
    ctr_bad("config.command[0]", Some(MAX_ARG_STRLEN), |c| {
        c.command = vec![n(at + 1)]
    });
    ctr_bad("config.args[0]", None, |c| c.args = vec!["a\0b".into()]);
    // Command and args count together: 8 + 8 strings of 65536 with their NULs.
    let half = vec![n(65535); 8];
    ctr_ok(|c| {
        c.command = half.clone();
        c.args = half.clone();
    });
    ctr_bad("config.command + config.args", Some(MAX_ARGV_TOTAL), |c| {
        c.command = half.clone();
        c.args = half.clone();
        c.args.push(String::new());
    });

    ok(exec_cmd(&vec![n(65535); 16]));
    let mut over = vec![n(65535); 16];
    over.push(String::new());
    refused(exec_cmd(&over), "cmd", Some(MAX_ARGV_TOTAL));
    refused(exec_cmd(&[n(at + 1)]), "cmd[0]", Some(MAX_ARG_STRLEN));
    refused(exec_cmd(&["a\0".into()]), "cmd[0]", None);
}

fn mount(container: &str, host: &str) -> proto::Mount {
    proto::Mount {
        container_path: container.into(),
        host_path: host.into(),
        ..Default::default()
    }
}

#[test]
fn mounts_and_host_paths() {
    ctr_ok(|c| c.mounts = vec![mount("/data", "/srv/data"); MAX_MOUNTS]);
    ctr_bad("config.mounts", Some(MAX_MOUNTS), |c| {
        c.mounts = vec![mount("/data", "/srv/data"); MAX_MOUNTS + 1]
    });
    // /proc itself (node-exporter) and a process's plain files are fine.
    for good in [
        "/proc",
        "/proc/1",
        "/proc/1/status",
        "/proc/sys/net",
        "/proc/1/task/1/stat",
        "/proc/self-x",
        "/srv/proc/self/root",
    ] {
        ctr_ok(|c| c.mounts = vec![mount("/data", good)]);
    }
    for magic in [
        "/proc/self/root",
        "/proc/self",
        "/proc/thread-self",
        "/proc/self/root/etc",
        "/proc/1/root",
        "/proc/1/root/etc/shadow",
        "/proc/1/cwd",
        "/proc/42/fd/3",
        "/proc/42/exe",
        "/proc/42/map_files",
        "/proc/42/ns/net",
        "/proc/42/task/43/root",
        "//proc//1/./root",
    ] {
        ctr_bad("config.mounts[1].host_path", None, |c| {
            c.mounts = vec![mount("/a", "/srv"), mount("/data", magic)]
        });
    }
    for bad in ["", "srv/data", "/srv/../etc", "/srv/\0"] {
        ctr_bad("config.mounts[0].host_path", None, |c| {
            c.mounts = vec![mount("/data", bad)]
        });
    }
    ctr_bad("config.mounts[0].host_path", Some(MAX_PATH), |c| {
        c.mounts = vec![mount("/data", &format!("/{}", n(MAX_PATH)))]
    });
    for bad in ["", "data", "/data/../../etc", "/a\0"] {
        ctr_bad("config.mounts[0].container_path", None, |c| {
            c.mounts = vec![mount(bad, "/srv")]
        });
    }
    // An image volume names no host path.
    ctr_ok(|c| {
        c.mounts = vec![proto::Mount {
            container_path: "/vol".into(),
            image: Some(proto::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            readonly: true,
            ..Default::default()
        }]
    });
}

#[test]
fn devices() {
    let dev = |host: &str| proto::Device {
        container_path: String::new(),
        host_path: host.into(),
        permissions: "rwm".into(),
    };
    ctr_ok(|c| c.devices = vec![dev("/dev/fuse"); MAX_DEVICES]);
    ctr_bad("config.devices", Some(MAX_DEVICES), |c| {
        c.devices = vec![dev("/dev/fuse"); MAX_DEVICES + 1]
    });
    ctr_bad("config.devices[0].host_path", None, |c| {
        c.devices = vec![dev("/proc/self/fd/0")]
    });
    ctr_bad("config.devices[0].container_path", None, |c| {
        let mut d = dev("/dev/fuse");
        d.container_path = "/dev/../etc/x".into();
        c.devices = vec![d]
    });
    ctr_bad("config.devices[0].permissions", Some(3), |c| {
        let mut d = dev("/dev/fuse");
        d.permissions = "rwmx".into();
        c.devices = vec![d]
    });
    let cdi = |count: usize| {
        vec![
            proto::CdiDevice {
                name: "vendor.com/gpu=0".into()
            };
            count
        ]
    };
    ctr_ok(|c| c.cdi_devices = cdi(MAX_CDI_DEVICES));
    ctr_bad("config.cdi_devices", Some(MAX_CDI_DEVICES), |c| {
        c.cdi_devices = cdi(MAX_CDI_DEVICES + 1)
    });
}

#[test]
fn security_context_lists() {
    const SC: &str = "config.linux.security_context";
    let with = |sc: proto::LinuxContainerSecurityContext| {
        move |c: &mut proto::ContainerConfig| {
            c.linux = Some(proto::LinuxContainerConfig {
                resources: None,
                security_context: Some(sc),
            })
        }
    };
    let caps = |add: usize, drop: usize| proto::LinuxContainerSecurityContext {
        capabilities: Some(proto::Capability {
            add_capabilities: vec!["NET_ADMIN".into(); add],
            drop_capabilities: vec!["ALL".into(); drop],
            ..Default::default()
        }),
        ..Default::default()
    };
    ctr_ok(with(caps(MAX_CAPABILITIES, MAX_CAPABILITIES)));
    ctr_bad(
        &format!("{SC}.capabilities.add_capabilities"),
        Some(MAX_CAPABILITIES),
        with(caps(MAX_CAPABILITIES + 1, 0)),
    );
    ctr_bad(
        &format!("{SC}.capabilities.drop_capabilities"),
        Some(MAX_CAPABILITIES),
        with(caps(0, MAX_CAPABILITIES + 1)),
    );
    let groups = |count: usize| proto::LinuxContainerSecurityContext {
        supplemental_groups: vec![1; count],
        ..Default::default()
    };
    ctr_ok(with(groups(MAX_SUPPLEMENTAL_GROUPS)));
    ctr_bad(
        &format!("{SC}.supplemental_groups"),
        Some(MAX_SUPPLEMENTAL_GROUPS),
        with(groups(MAX_SUPPLEMENTAL_GROUPS + 1)),
    );
    let paths = |masked: usize, readonly: usize| proto::LinuxContainerSecurityContext {
        masked_paths: vec!["/proc/kcore".into(); masked],
        readonly_paths: vec!["/proc/sys".into(); readonly],
        ..Default::default()
    };
    ctr_ok(with(paths(MAX_SECURITY_PATHS, MAX_SECURITY_PATHS)));
    ctr_bad(
        &format!("{SC}.masked_paths"),
        Some(MAX_SECURITY_PATHS),
        with(paths(MAX_SECURITY_PATHS + 1, 0)),
    );
    ctr_bad(
        &format!("{SC}.readonly_paths"),
        Some(MAX_SECURITY_PATHS),
        with(paths(0, MAX_SECURITY_PATHS + 1)),
    );
    ctr_bad(
        &format!("{SC}.masked_paths[0]"),
        None,
        with(proto::LinuxContainerSecurityContext {
            masked_paths: vec!["proc/kcore".into()],
            ..Default::default()
        }),
    );
    ctr_bad(
        &format!("{SC}.run_as_username"),
        Some(MAX_USERNAME),
        with(proto::LinuxContainerSecurityContext {
            run_as_username: n(MAX_USERNAME + 1),
            ..Default::default()
        }),
    );
    ctr_bad(
        &format!("{SC}.seccomp.localhost_ref"),
        Some(MAX_PATH),
        with(proto::LinuxContainerSecurityContext {
            seccomp: Some(proto::SecurityProfile {
                profile_type: proto::security_profile::ProfileType::Localhost as i32,
                localhost_ref: n(MAX_PATH + 1),
            }),
            ..Default::default()
        }),
    );
}
