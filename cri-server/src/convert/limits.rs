//! Bounds on every CRI request, checked before anything is made: one place, each limit a
//! named const citing where it comes from. A request over a limit is InvalidArgument naming
//! the field and the limit; the offending value is never echoed whole (a 10 MiB name would
//! otherwise come back in the error and in our logs).
//!
//! The limits are those Kubernetes validates, or the kernel's where the value reaches the
//! kernel, or (for lists neither bounds) generous round numbers far above real pods. They
//! keep a careless or hostile client from storing unbounded records (every list answer
//! carries them), writing lines into resolv.conf or /etc/hosts, or reaching outside the
//! paths it names (`..`, /proc magic links).

use std::path::{Component, Path};

use crate::status::CriError;

/// The longest path the kernel takes: PATH_MAX (4096) counts the terminating NUL.
pub const MAX_PATH: usize = 4095;
/// Pod names are DNS-1123 subdomains in Kubernetes (`ValidatePodName`).
pub const MAX_POD_NAME: usize = 253;
/// Namespaces are DNS-1123 labels (63) in Kubernetes (`ValidateNamespaceName`), but other
/// CRI clients (critest: a name plus a UUID) send longer ones: a DNS-1123 subdomain's 253.
pub const MAX_NAMESPACE: usize = 253;
/// Kubernetes makes UIDs as RFC 4122 UUIDs (36 characters; static pods get a 32-digit
/// hash) and validates no length: 128 leaves room for other clients.
pub const MAX_UID: usize = 128;
/// Container names are DNS-1123 labels (63) in Kubernetes (`validateContainers`), but
/// other CRI clients send longer ones (critest: a name plus a UUID, 64-72 bytes); a
/// DNS-1123 subdomain's 253 bounds them all.
pub const MAX_CONTAINER_NAME: usize = 253;
/// HOST_NAME_MAX: sethostname(2) refuses a longer name.
pub const MAX_HOSTNAME: usize = 64;
/// RuntimeClass handlers are DNS-1123 labels in Kubernetes; 253 for other clients.
pub const MAX_RUNTIME_HANDLER: usize = 253;
/// Label keys are qualified names (`IsQualifiedName`): an optional DNS-1123 subdomain
/// prefix of at most 253, a '/', and a name of at most 63.
pub const MAX_LABEL_KEY_PREFIX: usize = 253;
pub const MAX_LABEL_KEY_NAME: usize = 63;
/// Kubernetes' own label values are at most 63, but kubelet puts the pod name (a DNS-1123
/// subdomain, up to 253) in `io.kubernetes.pod.name` on every pod and container: 253.
pub const MAX_LABEL_VALUE: usize = 253;
/// Kubernetes bounds no label count; each label is bounded above, so 1024 bounds the lot.
pub const MAX_LABELS: usize = 1024;
/// Kubernetes' `TotalAnnotationSizeLimitB`: keys plus values, 256 KiB.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 << 10;
/// kubelet's `MaxDNSNameservers` (glibc's and musl's MAXNS: more are ignored anyway).
pub const MAX_DNS_SERVERS: usize = 3;
/// kubelet's `MaxDNSSearchPaths`.
pub const MAX_DNS_SEARCHES: usize = 32;
/// kubelet's `MaxDNSSearchListChars`: the search line, domains joined by spaces.
pub const MAX_DNS_SEARCH_CHARS: usize = 2048;
/// Kubernetes bounds no option count; resolv(5) knows about a dozen options.
pub const MAX_DNS_OPTIONS: usize = 32;
/// One server, search domain or option: a DNS name's longest (253).
pub const MAX_DNS_ENTRY: usize = 253;
/// MAX_ARG_STRLEN (32 pages of 4 KiB): execve(2) refuses a longer argument or environment
/// string (`KEY=VALUE`), counting its NUL.
pub const MAX_ARG_STRLEN: usize = 128 << 10;
/// All environment strings together (each with its NUL). execve's own limit is a quarter
/// of the stack rlimit (2 MiB at the usual 8 MiB) for arguments and environment together:
/// half of it each. Thousands of service-link variables fit.
pub const MAX_ENV_TOTAL: usize = 1 << 20;
/// All of command + args (or an exec's cmd) together, each with its NUL: the other half.
pub const MAX_ARGV_TOTAL: usize = 1 << 20;
/// Far above real pods (tens of volumes); each mount is a syscall in the container's init.
pub const MAX_MOUNTS: usize = 1024;
pub const MAX_DEVICES: usize = 1024;
pub const MAX_CDI_DEVICES: usize = 1024;
/// Each mapping is a set of NAT rules on the host.
pub const MAX_PORT_MAPPINGS: usize = 1024;
/// Above the namespaced sysctls a pod can set (net.* for a few interfaces, ipc, kernel.shm*).
pub const MAX_SYSCTLS: usize = 1024;
/// A sysctl value is written in one write(2) to /proc/sys, which takes at most a page.
pub const MAX_SYSCTL_VALUE: usize = 4095;
/// NGROUPS_MAX: setgroups(2) refuses more.
pub const MAX_SUPPLEMENTAL_GROUPS: usize = 65536;
/// Each of add/drop: the kernel has 41 capabilities, plus `ALL`; room for repeats.
pub const MAX_CAPABILITIES: usize = 64;
/// Each of masked and read-only paths; the defaults are about 15.
pub const MAX_SECURITY_PATHS: usize = 1024;
/// Unified (cgroup v2) entries: one per interface file, a few dozen exist.
pub const MAX_UNIFIED: usize = 256;
/// Hugepage sizes: a machine has two or three.
pub const MAX_HUGEPAGE_LIMITS: usize = 16;
/// A value written to a cgroup file (one write, at most a page).
pub const MAX_CGROUP_VALUE: usize = 4095;
/// LOGIN_NAME_MAX.
pub const MAX_USERNAME: usize = 256;

/// The /proc entries of a process that are magic links (or hold them): a host path through
/// one is resolved by the kernel into another process's root, cwd, files or namespaces.
const PROC_MAGIC: [&str; 6] = ["root", "cwd", "fd", "exe", "map_files", "ns"];

/// An InvalidArgument for `field`, whose name may be built at run time.
fn invalid(field: impl Into<String>, reason: impl Into<String>) -> CriError {
    CriError::from(runtime::Error::invalid(field, reason))
}

/// A value for an error message: at most 64 characters of it.
fn shown(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((end, _)) => format!("{:?}…", &s[..end]),
        None => format!("{s:?}"),
    }
}

fn at_most(field: &str, len: usize, max: usize, unit: &str) -> Result<(), CriError> {
    if len > max {
        return Err(invalid(
            field,
            format!("{len} {unit} is over the limit of {max}"),
        ));
    }
    Ok(())
}

/// A string's length in bytes against `max`.
fn len(field: &str, s: &str, max: usize) -> Result<(), CriError> {
    at_most(field, s.len(), max, "bytes")
}

/// A list's length against `max`.
fn count<T>(field: &str, v: &[T], max: usize) -> Result<(), CriError> {
    at_most(field, v.len(), max, "entries")
}

fn no_nul(field: &str, s: &str) -> Result<(), CriError> {
    if s.contains('\0') {
        return Err(invalid(field, format!("{} contains NUL", shown(s))));
    }
    Ok(())
}

/// Text that is logged or written into a line-based file: no control characters (a
/// newline would add a line), NUL included.
fn no_control(field: &str, s: &str) -> Result<(), CriError> {
    if s.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("{} contains a control character", shown(s)),
        ));
    }
    Ok(())
}

/// One word of a resolv.conf line: also no blank (it would be several words).
fn word(field: &str, s: &str, max: usize) -> Result<(), CriError> {
    len(field, s, max)?;
    no_control(field, s)?;
    if s.is_empty() || s.chars().any(char::is_whitespace) {
        return Err(invalid(
            field,
            format!("{} must be one non-empty word", shown(s)),
        ));
    }
    Ok(())
}

/// A path's common bounds: length, no NUL, no `..` component.
fn path(field: &str, p: &str) -> Result<(), CriError> {
    len(field, p, MAX_PATH)?;
    no_nul(field, p)?;
    if Path::new(p).components().any(|c| c == Component::ParentDir) {
        return Err(invalid(field, format!("{} contains \"..\"", shown(p))));
    }
    Ok(())
}

fn absolute_path(field: &str, p: &str) -> Result<(), CriError> {
    path(field, p)?;
    if !p.starts_with('/') {
        return Err(invalid(
            field,
            format!("{} is not an absolute path", shown(p)),
        ));
    }
    Ok(())
}

/// A host path for a bind mount or device: absolute, no `..` (as Kubernetes validates
/// hostPath volumes), and not through a /proc magic link (`/proc/self`,
/// `/proc/thread-self`, `/proc/<pid>/{root,cwd,fd,exe,map_files,ns}`, also under `task/<tid>`):
/// the kernel follows those into another process's mount namespace or open files.
pub fn host_path(field: &str, p: &str) -> Result<(), CriError> {
    absolute_path(field, p)?;
    let names: Vec<&str> = Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect();
    let magic = match names.as_slice() {
        ["proc", "self" | "thread-self", ..] => true,
        ["proc", pid, entry, ..] if is_pid(pid) && PROC_MAGIC.contains(entry) => true,
        ["proc", pid, "task", tid, entry, ..]
            if is_pid(pid) && is_pid(tid) && PROC_MAGIC.contains(entry) =>
        {
            true
        }
        _ => false,
    };
    if magic {
        return Err(invalid(
            field,
            format!("{} goes through a /proc magic link", shown(p)),
        ));
    }
    Ok(())
}

fn is_pid(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Labels: count, key (`[prefix/]name`) and value lengths, as Kubernetes validates them.
fn labels<'a>(
    field: &str,
    labels: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<(), CriError> {
    at_most(field, labels.len(), MAX_LABELS, "entries")?;
    for (k, v) in labels {
        let (prefix, name) = match k.rsplit_once('/') {
            Some((prefix, name)) => (Some(prefix), name),
            None => (None, k.as_str()),
        };
        if name.is_empty() {
            return Err(invalid(
                field,
                format!("key {} has an empty name", shown(k)),
            ));
        }
        if let Some(prefix) = prefix {
            if prefix.len() > MAX_LABEL_KEY_PREFIX {
                return Err(invalid(
                    field,
                    format!(
                        "key {}: prefix of {} bytes is over the limit of {MAX_LABEL_KEY_PREFIX}",
                        shown(k),
                        prefix.len()
                    ),
                ));
            }
        }
        if name.len() > MAX_LABEL_KEY_NAME {
            return Err(invalid(
                field,
                format!(
                    "key {}: name of {} bytes is over the limit of {MAX_LABEL_KEY_NAME}",
                    shown(k),
                    name.len()
                ),
            ));
        }
        if v.len() > MAX_LABEL_VALUE {
            return Err(invalid(
                field,
                format!(
                    "value of {}: {} bytes is over the limit of {MAX_LABEL_VALUE}",
                    shown(k),
                    v.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Annotations: keys plus values, as Kubernetes counts them.
fn annotations<'a>(
    field: &str,
    annotations: impl Iterator<Item = (&'a String, &'a String)>,
) -> Result<(), CriError> {
    let total: usize = annotations.map(|(k, v)| k.len() + v.len()).sum();
    at_most(
        field,
        total,
        MAX_ANNOTATIONS_BYTES,
        "bytes (keys and values)",
    )
}

/// A metadata name: length, no control character (names are logged, one per line).
fn name(field: &str, s: &str, max: usize) -> Result<(), CriError> {
    len(field, s, max)?;
    no_control(field, s)
}

/// An argument vector (a container's command + args, an exec's cmd): no NUL, each string
/// under MAX_ARG_STRLEN, all together under MAX_ARGV_TOTAL.
fn argv(parts: &[(&str, &[String])]) -> Result<(), CriError> {
    let mut total = 0usize;
    for (field, strings) in parts {
        for (i, s) in strings.iter().enumerate() {
            let f = format!("{field}[{i}]");
            // The kernel counts the terminating NUL.
            at_most(&f, s.len() + 1, MAX_ARG_STRLEN, "bytes (with its NUL)")?;
            no_nul(&f, s)?;
            total += s.len() + 1;
        }
    }
    let field = parts
        .iter()
        .map(|(f, _)| *f)
        .collect::<Vec<_>>()
        .join(" + ");
    at_most(&field, total, MAX_ARGV_TOTAL, "bytes in all")
}

/// An ExecSync (or Exec) command.
pub fn exec_cmd(cmd: &[String]) -> Result<(), CriError> {
    argv(&[("cmd", cmd)])
}

/// Resources of a pod or container: the lists and the strings written to cgroup files.
fn resources(field: &str, r: &proto::LinuxContainerResources) -> Result<(), CriError> {
    count(
        &format!("{field}.hugepage_limits"),
        &r.hugepage_limits,
        MAX_HUGEPAGE_LIMITS,
    )?;
    let unified = format!("{field}.unified");
    at_most(&unified, r.unified.len(), MAX_UNIFIED, "entries")?;
    for (k, v) in &r.unified {
        len(&unified, k, 255)?;
        len(&unified, v, MAX_CGROUP_VALUE)?;
    }
    len(
        &format!("{field}.cpuset_cpus"),
        &r.cpuset_cpus,
        MAX_CGROUP_VALUE,
    )?;
    len(
        &format!("{field}.cpuset_mems"),
        &r.cpuset_mems,
        MAX_CGROUP_VALUE,
    )
}

/// RunPodSandbox's config and runtime handler.
pub fn sandbox(c: &proto::PodSandboxConfig, runtime_handler: &str) -> Result<(), CriError> {
    name("runtime_handler", runtime_handler, MAX_RUNTIME_HANDLER)?;
    if let Some(m) = &c.metadata {
        name("config.metadata.name", &m.name, MAX_POD_NAME)?;
        name("config.metadata.namespace", &m.namespace, MAX_NAMESPACE)?;
        name("config.metadata.uid", &m.uid, MAX_UID)?;
    }
    // Written to /etc/hostname and /etc/hosts: one word.
    if !c.hostname.is_empty() {
        word("config.hostname", &c.hostname, MAX_HOSTNAME)?;
    }
    if !c.log_directory.is_empty() {
        absolute_path("config.log_directory", &c.log_directory)?;
    }
    if let Some(dns) = &c.dns_config {
        count("config.dns_config.servers", &dns.servers, MAX_DNS_SERVERS)?;
        for (i, s) in dns.servers.iter().enumerate() {
            word(&format!("config.dns_config.servers[{i}]"), s, MAX_DNS_ENTRY)?;
        }
        count(
            "config.dns_config.searches",
            &dns.searches,
            MAX_DNS_SEARCHES,
        )?;
        for (i, s) in dns.searches.iter().enumerate() {
            word(
                &format!("config.dns_config.searches[{i}]"),
                s,
                MAX_DNS_ENTRY,
            )?;
        }
        // As kubelet counts: the domains joined by single spaces.
        let chars = dns.searches.iter().map(String::len).sum::<usize>()
            + dns.searches.len().saturating_sub(1);
        at_most(
            "config.dns_config.searches",
            chars,
            MAX_DNS_SEARCH_CHARS,
            "characters in all",
        )?;
        count("config.dns_config.options", &dns.options, MAX_DNS_OPTIONS)?;
        for (i, s) in dns.options.iter().enumerate() {
            word(&format!("config.dns_config.options[{i}]"), s, MAX_DNS_ENTRY)?;
        }
    }
    count("config.port_mappings", &c.port_mappings, MAX_PORT_MAPPINGS)?;
    labels("config.labels", c.labels.iter())?;
    annotations("config.annotations", c.annotations.iter())?;
    if let Some(linux) = &c.linux {
        len("config.linux.cgroup_parent", &linux.cgroup_parent, MAX_PATH)?;
        no_nul("config.linux.cgroup_parent", &linux.cgroup_parent)?;
        at_most(
            "config.linux.sysctls",
            linux.sysctls.len(),
            MAX_SYSCTLS,
            "entries",
        )?;
        for (k, v) in &linux.sysctls {
            len("config.linux.sysctls", k, 255)?;
            len("config.linux.sysctls", v, MAX_SYSCTL_VALUE)?;
            no_nul("config.linux.sysctls", v)?;
        }
        if let Some(sc) = &linux.security_context {
            count(
                "config.linux.security_context.supplemental_groups",
                &sc.supplemental_groups,
                MAX_SUPPLEMENTAL_GROUPS,
            )?;
        }
        if let Some(r) = &linux.resources {
            resources("config.linux.resources", r)?;
        }
        if let Some(r) = &linux.overhead {
            resources("config.linux.overhead", r)?;
        }
    }
    Ok(())
}

/// CreateContainer's config.
pub fn container(c: &proto::ContainerConfig) -> Result<(), CriError> {
    if let Some(m) = &c.metadata {
        name("config.metadata.name", &m.name, MAX_CONTAINER_NAME)?;
    }
    if let Some(image) = &c.image {
        len("config.image.image", &image.image, MAX_PATH)?;
    }
    argv(&[("config.command", &c.command), ("config.args", &c.args)])?;
    if !c.working_dir.is_empty() {
        len("config.working_dir", &c.working_dir, MAX_PATH)?;
        no_nul("config.working_dir", &c.working_dir)?;
    }

    let mut env_total = 0usize;
    for (i, kv) in c.envs.iter().enumerate() {
        let f = format!("config.envs[{i}]");
        // `KEY=VALUE` and its NUL, as execve sees it.
        let size = kv.key.len() + 1 + kv.value.len() + 1;
        at_most(&f, size, MAX_ARG_STRLEN, "bytes (KEY=VALUE with its NUL)")?;
        no_nul(&format!("{f}.key"), &kv.key)?;
        no_nul(&format!("{f}.value"), &kv.value)?;
        if kv.key.contains('=') {
            return Err(invalid(
                format!("{f}.key"),
                format!("{} contains '='", shown(&kv.key)),
            ));
        }
        env_total += size;
    }
    at_most("config.envs", env_total, MAX_ENV_TOTAL, "bytes in all")?;

    count("config.mounts", &c.mounts, MAX_MOUNTS)?;
    for (i, m) in c.mounts.iter().enumerate() {
        absolute_path(
            &format!("config.mounts[{i}].container_path"),
            &m.container_path,
        )?;
        // An image volume names no host path.
        if m.image.is_none() || !m.host_path.is_empty() {
            host_path(&format!("config.mounts[{i}].host_path"), &m.host_path)?;
        }
        if let Some(image) = &m.image {
            len(
                &format!("config.mounts[{i}].image.image"),
                &image.image,
                MAX_PATH,
            )?;
        }
    }
    count("config.devices", &c.devices, MAX_DEVICES)?;
    for (i, d) in c.devices.iter().enumerate() {
        if !d.container_path.is_empty() {
            absolute_path(
                &format!("config.devices[{i}].container_path"),
                &d.container_path,
            )?;
        }
        host_path(&format!("config.devices[{i}].host_path"), &d.host_path)?;
        len(
            &format!("config.devices[{i}].permissions"),
            &d.permissions,
            3,
        )?;
    }
    count("config.cdi_devices", &c.cdi_devices, MAX_CDI_DEVICES)?;
    for (i, d) in c.cdi_devices.iter().enumerate() {
        len(&format!("config.cdi_devices[{i}].name"), &d.name, MAX_PATH)?;
    }
    labels("config.labels", c.labels.iter())?;
    annotations("config.annotations", c.annotations.iter())?;

    // Beneath the pod's log directory, naming a file there.
    if !c.log_path.is_empty() {
        path("config.log_path", &c.log_path)?;
        let p = Path::new(&c.log_path);
        if p.is_absolute() {
            return Err(invalid(
                "config.log_path",
                format!(
                    "{} must be relative to the pod's log directory",
                    shown(&c.log_path)
                ),
            ));
        }
        if c.log_path.ends_with('/')
            || !matches!(p.components().next_back(), Some(Component::Normal(_)))
        {
            return Err(invalid(
                "config.log_path",
                format!("{} does not name a file", shown(&c.log_path)),
            ));
        }
    }

    let Some(linux) = &c.linux else {
        return Ok(());
    };
    if let Some(r) = &linux.resources {
        resources("config.linux.resources", r)?;
    }
    let Some(sc) = &linux.security_context else {
        return Ok(());
    };
    const SC: &str = "config.linux.security_context";
    name(
        &format!("{SC}.run_as_username"),
        &sc.run_as_username,
        MAX_USERNAME,
    )?;
    count(
        &format!("{SC}.supplemental_groups"),
        &sc.supplemental_groups,
        MAX_SUPPLEMENTAL_GROUPS,
    )?;
    if let Some(caps) = &sc.capabilities {
        for (what, list) in [
            ("add_capabilities", &caps.add_capabilities),
            ("drop_capabilities", &caps.drop_capabilities),
            ("add_ambient_capabilities", &caps.add_ambient_capabilities),
        ] {
            let f = format!("{SC}.capabilities.{what}");
            count(&f, list, MAX_CAPABILITIES)?;
            for (i, cap) in list.iter().enumerate() {
                // CAP_DAC_READ_SEARCH, the longest name, is 19.
                name(&format!("{f}[{i}]"), cap, 64)?;
            }
        }
    }
    for (what, list) in [
        ("masked_paths", &sc.masked_paths),
        ("readonly_paths", &sc.readonly_paths),
    ] {
        let f = format!("{SC}.{what}");
        count(&f, list, MAX_SECURITY_PATHS)?;
        for (i, p) in list.iter().enumerate() {
            absolute_path(&format!("{f}[{i}]"), p)?;
        }
    }
    for (what, profile) in [("seccomp", &sc.seccomp), ("apparmor", &sc.apparmor)] {
        if let Some(p) = profile {
            let f = format!("{SC}.{what}.localhost_ref");
            len(&f, &p.localhost_ref, MAX_PATH)?;
            no_nul(&f, &p.localhost_ref)?;
        }
    }
    if let Some(ns) = &sc.namespace_options {
        name(
            &format!("{SC}.namespace_options.target_id"),
            &ns.target_id,
            128,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
