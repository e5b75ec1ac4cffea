//! The files a pod's containers share: hostname, hosts, resolv.conf, and a /dev/shm tmpfs.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

use super::DnsConfig;
use crate::error::{Error, Result};

/// Size of the pod's /dev/shm, as Docker and containerd default it.
pub const SHM_SIZE: u64 = 64 << 20;

pub fn hosts(hostname: &str, ip: Option<IpAddr>) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        let _ = writeln!(s, "{ip}\t{hostname}");
    }
    s
}

/// resolv.conf from the CRI DNSConfig; the host's when none is given.
pub fn resolv_conf(dns: Option<&DnsConfig>) -> Result<String> {
    let Some(dns) =
        dns.filter(|d| !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()))
    else {
        return std::fs::read_to_string("/etc/resolv.conf")
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(String::new())
                } else {
                    Err(e)
                }
            })
            .map_err(Error::io("reading", "/etc/resolv.conf"));
    };
    let mut s = String::new();
    for server in &dns.servers {
        let _ = writeln!(s, "nameserver {server}");
    }
    if !dns.searches.is_empty() {
        let _ = writeln!(s, "search {}", dns.searches.join(" "));
    }
    if !dns.options.is_empty() {
        let _ = writeln!(s, "options {}", dns.options.join(" "));
    }
    Ok(s)
}

pub fn write(path: &Path, content: &str) -> Result<()> {
    std::fs::write(path, content).map_err(Error::io("writing", path))
}

/// A size-limited tmpfs for the pod's /dev/shm.
pub fn mount_shm(dir: &Path) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    let data = format!("mode=1777,size={SHM_SIZE}");
    mount(
        Some("shm"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(|e| Error::io("mounting shm on", dir)(e.into()))
}

/// Idempotent: not mounted (or gone) is fine.
pub fn unmount_shm(dir: &Path) -> Result<()> {
    use nix::mount::{umount2, MntFlags};
    match umount2(dir, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::io("unmounting", dir)(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        let dns = DnsConfig {
            servers: vec!["10.0.0.10".into(), "8.8.8.8".into()],
            searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns)).unwrap(),
            "nameserver 10.0.0.10\nnameserver 8.8.8.8\nsearch ns.svc.cluster.local svc.cluster.local\noptions ndots:5\n"
        );
    }

    #[test]
    fn hosts_names_the_pod() {
        let h = hosts("web-0", Some(std::net::Ipv4Addr::new(10, 89, 0, 2).into()));
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.89.0.2\tweb-0\n"));
        assert!(!hosts("web-0", None).contains("web-0"));
    }
}
