//! Image references, parsed and normalised the way Docker and containerd do it:
//! `busybox` → `docker.io/library/busybox:latest`.
//!
//! Grammar (distribution/reference): `[domain/]path[:tag][@digest]`, where the first component
//! is a domain only when it has a `.` or `:`, or is `localhost`, and more components follow.

use std::fmt;

/// Registry host of Docker Hub as it appears in normalised names.
pub const DOCKER_HUB: &str = "docker.io";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A fully normalised image reference. Always has a tag or a digest (or both).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    pub reference: String,
    pub reason: &'static str,
}

impl Reference {
    /// Parse and normalise. A reference with neither tag nor digest gets `:latest`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let err = |reason| ReferenceError {
            reference: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(err("empty reference"));
        }
        if input.trim() != input {
            return Err(err("surrounding whitespace"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                validate_digest(d).map_err(err)?;
                (r, Some(d.to_string()))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that comes after the last '/', so `host:5000/repo` keeps its port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let colon = last_slash + i;
                (&rest[..colon], Some(rest[colon + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag {
            validate_tag(t).map_err(err)?;
        }
        if name.is_empty() {
            return Err(err("empty repository name"));
        }
        let (domain, path) = split_domain(name);
        validate_domain(&domain).map_err(err)?;
        if is_hex64(&path) && domain == DOCKER_HUB && tag.is_none() && digest.is_none() {
            return Err(err(
                "a 64-hex-digit repository name is ambiguous with an image id",
            ));
        }
        for component in path.split('/') {
            validate_path_component(component).map_err(err)?;
        }
        let path = if domain == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(err("repository name longer than 255 characters"));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// Registry host as written in the name (`docker.io`, `registry.k8s.io`, `127.0.0.1:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Repository path inside the registry (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `domain/path`, the name RepoTags and RepoDigests are built on.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `repository:tag` when the reference has a tag.
    pub fn tagged_name(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}:{}", self.repository(), t))
    }

    /// `repository@digest` for a given manifest digest.
    pub fn digested_name(&self, digest: &str) -> String {
        format!("{}@{}", self.repository(), digest)
    }

    /// What to ask the registry's manifest endpoint for: the digest when there is one.
    pub fn manifest_reference(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d,
            (None, Some(t)) => t,
            // parse() always sets one of the two.
            (None, None) => "latest",
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn split_domain(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            let domain = if first == "index.docker.io" {
                DOCKER_HUB
            } else {
                first
            };
            (domain.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    }
}

fn validate_domain(domain: &str) -> Result<(), &'static str> {
    let (host, port) = match domain.rsplit_once(':') {
        // An IPv6 literal in brackets keeps its colons.
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (domain, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err("invalid registry port");
        }
    }
    if host.starts_with('[') && host.ends_with(']') {
        return Ok(());
    }
    let ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err("invalid registry host")
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn validate_path_component(c: &str) -> Result<(), &'static str> {
    if c.is_empty() {
        return Err("empty path component");
    }
    let bytes = c.as_bytes();
    if bytes.iter().any(|b| b.is_ascii_uppercase()) {
        return Err("repository name must be lowercase");
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err("path component must start and end with a letter or digit");
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let valid = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !valid {
            return Err("invalid character in repository name");
        }
    }
    Ok(())
}

fn validate_tag(t: &str) -> Result<(), &'static str> {
    let b = t.as_bytes();
    if b.is_empty() || b.len() > TAG_MAX {
        return Err("tag must be 1 to 128 characters");
    }
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if !word(b[0]) || !b.iter().all(|&c| word(c) || c == b'.' || c == b'-') {
        return Err("invalid character in tag");
    }
    Ok(())
}

/// Only sha256 is accepted: it is what every registry serves, and what we verify with.
pub fn validate_digest(d: &str) -> Result<(), &'static str> {
    match d.split_once(':') {
        Some(("sha256", hex)) if is_hex64(hex) => Ok(()),
        Some(("sha256", _)) => Err("sha256 digest must be 64 lowercase hex digits"),
        Some(_) => Err("unsupported digest algorithm (only sha256)"),
        None => Err("digest must be algorithm:hex"),
    }
}

pub fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        let cases: &[(&str, &str)] = &[
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("user/app:v1", "docker.io/user/app:v1"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("localhost/app", "localhost/app:latest"),
            ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t"),
            ("host:5000/app", "host:5000/app:latest"),
            ("a.b/c__d-e.f_g", "a.b/c__d-e.f_g:latest"),
        ];
        for (input, want) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *want, "{input}");
        }
    }

    #[test]
    fn digests() {
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.digested_name(D), format!("docker.io/library/busybox@{D}"));
        let r = Reference::parse(&format!("quay.io/x/y:t@{D}")).unwrap();
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.tagged_name().as_deref(), Some("quay.io/x/y:t"));
    }

    #[test]
    fn parts() {
        let r = Reference::parse("gcr.io/proj/img:v2").unwrap();
        assert_eq!(r.domain(), "gcr.io");
        assert_eq!(r.path(), "proj/img");
        assert_eq!(r.repository(), "gcr.io/proj/img");
        assert_eq!(r.manifest_reference(), "v2");
    }

    #[test]
    fn rejects_malformed() {
        let bad = [
            "",
            " busybox",
            "BusyBox",
            "busybox:",
            "busybox:-tag",
            "busybox:a b",
            "busybox@sha256:abc",
            "busybox@md5:0123",
            "busybox@",
            "a//b",
            "a/b/",
            "/a",
            "-a",
            "a-",
            "a..b/c",
            "host:port/app",
            "a$b",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ];
        for input in bad {
            assert!(
                Reference::parse(input).is_err(),
                "{input:?} should be rejected"
            );
        }
        let long = format!("a/{}", "b".repeat(300));
        assert!(Reference::parse(&long).is_err());
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
    }
}
