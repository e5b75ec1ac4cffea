//! The container's AppArmor profile, as `process.apparmorProfile` of its spec (the shim
//! applies it at execve). As containerd, except that RuntimeDefault loads no profile of
//! ours (that needs apparmor_parser): RuntimeDefault and Unconfined leave the container
//! unconfined; a Localhost profile must be loaded in the kernel, and on a node without
//! AppArmor it is refused.

use std::io;

use crate::error::{Error, Result};

/// The CRI field every AppArmor error names.
pub const FIELD: &str = "config.linux.security_context.apparmor";

const ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
const PROFILES: &str = "/sys/kernel/security/apparmor/profiles";

/// Whether the kernel enforces AppArmor (the module is there and says `Y`).
pub fn host_enabled() -> bool {
    std::fs::read_to_string(ENABLED).is_ok_and(|s| s.trim_start().starts_with('Y'))
}

/// The profile for a container asking for `value` (`runtime/default`, `unconfined`,
/// `localhost/<name>` or empty), on this node.
pub fn profile(value: &str) -> Result<Option<String>> {
    select(value, host_enabled, |name| {
        std::fs::read_to_string(PROFILES).map(|list| is_loaded(&list, name))
    })
}

/// [`profile`] with the node's answers given: whether AppArmor is on, and whether a
/// profile is loaded.
pub fn select(
    value: &str,
    enabled: impl FnOnce() -> bool,
    loaded: impl FnOnce(&str) -> io::Result<bool>,
) -> Result<Option<String>> {
    match value {
        "" | "unconfined" | "runtime/default" => Ok(None),
        other => {
            let Some(name) = other.strip_prefix("localhost/") else {
                return Err(Error::invalid(
                    FIELD,
                    format!("unknown AppArmor profile {other:?}"),
                ));
            };
            if !enabled() {
                return Err(Error::invalid(
                    FIELD,
                    format!("apparmor is not supported on this node (profile {name:?})"),
                ));
            }
            // A name we would write into the attr file: one word, no control characters.
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::invalid(
                    FIELD,
                    format!("{name:?} is not an AppArmor profile name"),
                ));
            }
            match loaded(name) {
                Ok(true) => Ok(Some(name.to_string())),
                Ok(false) => Err(Error::invalid(
                    FIELD,
                    format!("apparmor profile not found: {name}"),
                )),
                Err(e) => Err(Error::invalid(
                    FIELD,
                    format!("apparmor profile {name}: reading {PROFILES}: {e}"),
                )),
            }
        }
    }
}

/// Whether `list` (the kernel's profiles file: `<name> (<mode>)` per line) has `name`.
fn is_loaded(list: &str, name: &str) -> bool {
    list.lines().any(|line| {
        line.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with(" ("))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: Result<Option<String>>) -> String {
        match r {
            Err(Error::InvalidArgument { field, reason }) => format!("{field}: {reason}"),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn without_apparmor_only_localhost_is_refused() {
        let off = || false;
        let never = |_: &str| -> io::Result<bool> { panic!("no look-up without AppArmor") };
        for value in ["", "unconfined", "runtime/default"] {
            assert_eq!(select(value, off, never).ok(), Some(None), "{value}");
        }
        let e = field(select("localhost/k8s-nginx", off, never));
        assert!(e.starts_with(FIELD), "{e}");
        assert!(e.contains("apparmor is not supported"), "{e}");
    }

    #[test]
    fn with_apparmor_a_loaded_localhost_profile_is_used() {
        let list = "k8s-nginx (enforce)\nk8s-nginx-two (complain)\n";
        let lookup = |name: &str| Ok(is_loaded(list, name));
        assert_eq!(
            select("localhost/k8s-nginx", || true, lookup).ok(),
            Some(Some("k8s-nginx".to_string()))
        );
        let e = field(select("localhost/k8s", || true, lookup));
        assert!(e.contains("apparmor profile not found: k8s"), "{e}");
        let e = field(select("localhost/a b", || true, lookup));
        assert!(e.contains("not an AppArmor profile name"), "{e}");
        assert_eq!(select("runtime/default", || true, lookup).ok(), Some(None));
        assert!(!is_loaded(list, "k8s-nginx-"));
    }
}
