//! Who a container's process runs as: the CRI security context's user, else the image
//! config's `User`, resolved against the image's own `/etc/passwd` and `/etc/group`.
//!
//! Those files are read through the image's layer dirs as overlayfs would show them: the
//! topmost layer that has the file wins, and a whiteout (a 0:0 character device), an opaque
//! directory (`trusted.overlay.opaque=y`) or a non-directory in place of a parent hides the
//! layers below.
//!
//! The layers are hostile input, so:
//! - **symlinks are refused**, not followed: if `/etc` or the file itself is a symlink in the
//!   layer that decides, the file counts as unreadable (a name cannot be resolved; a numeric
//!   uid still works). Resolving a link would mean walking the merged view of every layer,
//!   and images with a symlinked `/etc/passwd` are rare enough not to be worth that risk;
//! - only regular files are read (a FIFO would block, a device could be anything), opened
//!   with `O_NOFOLLOW | O_NONBLOCK`;
//! - at most [`MAX_FILE_SIZE`] bytes: a larger file is refused rather than half-parsed.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::config::{SecurityConfig, SupplementalGroupsPolicy};
use crate::error::{Error, Result};

/// The most of `/etc/passwd` or `/etc/group` that is read.
pub const MAX_FILE_SIZE: u64 = 4 << 20;

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

const F_USER: &str = "config.linux.security_context.run_as_user";
const F_GROUP: &str = "config.linux.security_context.run_as_group";
const F_USERNAME: &str = "config.linux.security_context.run_as_username";
const F_SUPPLEMENTAL: &str = "config.linux.security_context.supplemental_groups";
/// Not a CRI field: the image's config, named so that the user sees where the bad value is.
const F_IMAGE_USER: &str = "image config User";

/// One `/etc/passwd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// One `/etc/group` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The process's credentials, as the OCI spec's `process.user` wants them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid, the groups of `/etc/group` that list the user (policy Merge only)
    /// and the requested supplemental groups: sorted, no duplicates. As containerd: the
    /// primary gid is in the list so that `getgroups(2)` (what busybox `id -G` prints, what
    /// ContainerStatus.user reports) shows it.
    pub additional_gids: Vec<u32>,
    /// The user's name when `/etc/passwd` knows it.
    pub username: Option<String>,
    /// The user's home directory from `/etc/passwd`, for `HOME` (as runc sets it).
    pub home: Option<String>,
}

/// The `:`-separated fields of each line of a passwd-style file that is not blank, a
/// comment or a NIS (`+`/`-`) entry.
fn records(text: &str) -> impl Iterator<Item = std::str::Split<'_, char>> {
    text.lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.is_empty() && !line.starts_with(['#', '+', '-']))
        .map(|line| line.split(':'))
}

/// Parses `/etc/passwd`; lines that are blank, comments, NIS (`+`/`-`) entries, or malformed
/// (fewer than four fields, an id that is not a number) are skipped, as libc skips them.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    records(text)
        .filter_map(|mut f| {
            let name = f.next()?;
            let _password = f.next()?;
            let uid = f.next()?.trim().parse().ok()?;
            let gid = f.next()?.trim().parse().ok()?;
            let _gecos = f.next();
            let home = f.next().unwrap_or_default();
            (!name.is_empty()).then(|| PasswdEntry {
                name: name.to_string(),
                uid,
                gid,
                home: home.to_string(),
            })
        })
        .collect()
}

/// Parses `/etc/group`, skipping what [`parse_passwd`] skips.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    records(text)
        .filter_map(|mut f| {
            let name = f.next()?;
            let _password = f.next()?;
            let gid = f.next()?.trim().parse().ok()?;
            let members = f
                .next()
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            (!name.is_empty()).then(|| GroupEntry {
                name: name.to_string(),
                gid,
                members,
            })
        })
        .collect()
}

/// Is this a whiteout as our snapshots write them (a 0:0 character device)?
fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    // Errors (no xattr support, not permitted) mean "not opaque": unpack writes the marker
    // only where it can, and then it can also be read back.
    matches!(xattr::get(dir, OPAQUE_XATTR), Ok(Some(v)) if v.as_slice() == b"y")
}

fn lstat(path: &Path) -> io::Result<Option<Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn refused(path: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {why}", path.display()),
    )
}

/// What one layer says about a path.
enum InLayer {
    /// The layer has nothing there and hides nothing: look lower.
    Absent,
    /// The layer hides the path from lower layers (whiteout, opaque parent, a
    /// non-directory parent).
    Hidden,
    Found(PathBuf),
}

fn look_in_layer(layer: &Path, rel: &Path) -> io::Result<InLayer> {
    let mut parents: Vec<_> = rel.components().collect();
    let Some(name) = parents.pop() else {
        return Err(refused(rel, "empty path"));
    };
    let mut dir = layer.to_path_buf();
    let mut opaque = false;
    for comp in parents {
        dir.push(comp);
        match lstat(&dir)? {
            None if opaque => return Ok(InLayer::Hidden),
            None => return Ok(InLayer::Absent),
            Some(m) if m.file_type().is_symlink() => {
                return Err(refused(&dir, "is a symlink in the image; not followed"))
            }
            Some(m) if m.is_dir() => opaque |= is_opaque(&dir),
            // A whiteout, or a file where a directory was: nothing lower shows through.
            Some(_) => return Ok(InLayer::Hidden),
        }
    }
    let path = dir.join(name);
    match lstat(&path)? {
        None if opaque => Ok(InLayer::Hidden),
        None => Ok(InLayer::Absent),
        Some(m) if is_whiteout(&m) => Ok(InLayer::Hidden),
        Some(m) if m.file_type().is_symlink() => {
            Err(refused(&path, "is a symlink in the image; not followed"))
        }
        Some(m) if m.is_file() => Ok(InLayer::Found(path)),
        Some(_) => Err(refused(&path, "is not a regular file")),
    }
}

/// Reads at most [`MAX_FILE_SIZE`] of a regular file without following a symlink.
fn read_bounded(path: &Path) -> io::Result<String> {
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    // Re-checked on the open file: the lstat before could have raced a rename.
    if !file.metadata()?.is_file() {
        return Err(refused(path, "is not a regular file"));
    }
    let mut buf = Vec::new();
    file.take(MAX_FILE_SIZE + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_FILE_SIZE {
        return Err(refused(
            path,
            &format!("is larger than {} MiB", MAX_FILE_SIZE >> 20),
        ));
    }
    // Lossy: a stray non-UTF-8 byte in a GECOS field must not hide every user.
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The text of `rel` (such as `etc/passwd`) as the overlay of `layers` (topmost first) would
/// show it; `None` when no layer has it or it is whited out.
pub fn read_layered(layers: &[PathBuf], rel: &str) -> io::Result<Option<String>> {
    let rel = Path::new(rel.trim_start_matches('/'));
    for layer in layers {
        match look_in_layer(layer, rel)? {
            InLayer::Absent => continue,
            InLayer::Hidden => return Ok(None),
            InLayer::Found(path) => return read_bounded(&path).map(Some),
        }
    }
    Ok(None)
}

/// A lazily read `/etc/passwd` or `/etc/group`: read once, and only when a name must be
/// resolved.
struct Lazy<'a, T> {
    layers: &'a [PathBuf],
    rel: &'static str,
    parse: fn(&str) -> Vec<T>,
    loaded: Option<io::Result<Option<Vec<T>>>>,
}

impl<'a, T> Lazy<'a, T> {
    fn new(layers: &'a [PathBuf], rel: &'static str, parse: fn(&str) -> Vec<T>) -> Self {
        Lazy {
            layers,
            rel,
            parse,
            loaded: None,
        }
    }

    /// The entries, `Ok(None)` when the image has no such file.
    fn get(&mut self) -> std::result::Result<Option<&[T]>, String> {
        let (layers, rel, parse) = (self.layers, self.rel, self.parse);
        let loaded = self
            .loaded
            .get_or_insert_with(|| read_layered(layers, rel).map(|t| t.map(|t| parse(&t))));
        match loaded {
            Ok(entries) => Ok(entries.as_deref()),
            Err(e) => Err(format!("reading /{rel} of the image: {e}")),
        }
    }

    /// The entries, or none when the file is missing or unreadable (logged): for lookups
    /// that are optional, such as the gid of a numeric uid.
    fn get_or_empty(&mut self) -> &[T] {
        match self.get() {
            Ok(entries) => entries.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an unreadable image file");
                &[]
            }
        }
    }
}

fn id_u32(v: i64, field: &'static str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::invalid(field, format!("{v} is not a valid id")))
}

/// Resolves `name` in passwd; the error names `field`.
fn user_by_name(
    passwd: &mut Lazy<'_, PasswdEntry>,
    name: &str,
    field: &'static str,
) -> Result<PasswdEntry> {
    match passwd.get() {
        Ok(Some(entries)) => entries
            .iter()
            .find(|e| e.name == name)
            .cloned()
            .ok_or_else(|| {
                Error::invalid(
                    field,
                    format!("no user {name:?} in the image's /etc/passwd"),
                )
            }),
        Ok(None) => Err(Error::invalid(
            field,
            format!("user {name:?} cannot be resolved: the image has no /etc/passwd"),
        )),
        Err(e) => Err(Error::invalid(
            field,
            format!("user {name:?} cannot be resolved: {e}"),
        )),
    }
}

/// A group given as a number or a name in the image's `/etc/group`.
fn group_id(group: &mut Lazy<'_, GroupEntry>, spec: &str, field: &'static str) -> Result<u32> {
    if let Ok(gid) = spec.parse::<u32>() {
        return Ok(gid);
    }
    match group.get() {
        Ok(Some(entries)) => entries
            .iter()
            .find(|g| g.name == spec)
            .map(|g| g.gid)
            .ok_or_else(|| {
                Error::invalid(
                    field,
                    format!("no group {spec:?} in the image's /etc/group"),
                )
            }),
        Ok(None) => Err(Error::invalid(
            field,
            format!("group {spec:?} cannot be resolved: the image has no /etc/group"),
        )),
        Err(e) => Err(Error::invalid(
            field,
            format!("group {spec:?} cannot be resolved: {e}"),
        )),
    }
}

/// The passwd entry of `uid`, if the image has one (a numeric uid needs none).
fn by_uid(passwd: &mut Lazy<'_, PasswdEntry>, uid: u32) -> Option<PasswdEntry> {
    passwd.get_or_empty().iter().find(|e| e.uid == uid).cloned()
}

/// Resolves the user and groups of a container, as containerd does:
/// 1. `run_as_username`, looked up in the image's passwd (`run_as_group` overrides its
///    gid);
/// 2. else `run_as_user` (with `run_as_group`, else the gid passwd gives that uid, else 0);
/// 3. else the image's `User`: `""` (root), `name`, `uid`, `name:group`, `uid:gid`,
///    `uid:group`.
///
/// Supplementary groups: see [`ResolvedUser::additional_gids`]; policy Strict reads no
/// `/etc/group` for them (a group named in the image's `User` is still resolved).
///
/// `run_as_group` alone is refused (as CRI-O and critest expect). A name that cannot be
/// resolved is an InvalidArgument naming where it came from; a numeric uid needs no passwd.
pub fn resolve(
    security: &SecurityConfig,
    image_user: &str,
    layers: &[PathBuf],
) -> Result<ResolvedUser> {
    let mut passwd = Lazy::new(layers, "etc/passwd", parse_passwd);
    let mut group = Lazy::new(layers, "etc/group", parse_group);
    let run_as_group = security
        .run_as_group
        .map(|g| id_u32(g, F_GROUP))
        .transpose()?;

    // (uid, the passwd entry if any, the gid asked for explicitly if any)
    let (uid, entry, explicit_gid) = if !security.run_as_username.is_empty() {
        let e = user_by_name(&mut passwd, &security.run_as_username, F_USERNAME)?;
        (e.uid, Some(e), run_as_group)
    } else if let Some(uid) = security.run_as_user {
        let uid = id_u32(uid, F_USER)?;
        (uid, by_uid(&mut passwd, uid), run_as_group)
    } else if run_as_group.is_some() {
        return Err(Error::invalid(
            F_GROUP,
            "run_as_group needs run_as_user or run_as_username",
        ));
    } else {
        let (user, grp) = match image_user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (image_user, None),
        };
        let (uid, entry) = if user.is_empty() {
            if grp.is_some() {
                return Err(Error::invalid(
                    F_IMAGE_USER,
                    format!("{image_user:?} names a group but no user"),
                ));
            }
            (0, by_uid(&mut passwd, 0))
        } else if let Ok(uid) = user.parse::<u32>() {
            (uid, by_uid(&mut passwd, uid))
        } else {
            let e = user_by_name(&mut passwd, user, F_IMAGE_USER)?;
            (e.uid, Some(e))
        };
        let gid = match grp {
            Some("") => {
                return Err(Error::invalid(
                    F_IMAGE_USER,
                    format!("{image_user:?} has an empty group"),
                ))
            }
            Some(g) => Some(group_id(&mut group, g, F_IMAGE_USER)?),
            None => None,
        };
        (uid, entry, gid)
    };
    let gid = explicit_gid.unwrap_or_else(|| entry.as_ref().map_or(0, |e| e.gid));

    let mut additional_gids: Vec<u32> = vec![gid];
    if let (Some(e), SupplementalGroupsPolicy::Merge) =
        (&entry, security.supplemental_groups_policy)
    {
        // containerd skips a group named as the user (its primary group, by convention).
        let member = |g: &&GroupEntry| g.name != e.name && g.members.contains(&e.name);
        additional_gids.extend(group.get_or_empty().iter().filter(member).map(|g| g.gid));
    }
    for &g in &security.supplemental_groups {
        additional_gids.push(id_u32(g, F_SUPPLEMENTAL)?);
    }
    additional_gids.sort_unstable();
    additional_gids.dedup();
    let (username, home) = match entry {
        Some(e) => (Some(e.name), Some(e.home).filter(|h| !h.is_empty())),
        None => (None, None),
    };
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        username,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::fs;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment

daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
+nis::0:0:::
broken:x:notanumber:0::/:/bin/sh
short:x:5
www:x:33:33:www-data:/var/www:/usr/sbin/nologin\r
alice:x:1000:1000::/home/alice:/bin/sh
";
    const GROUP: &str = "\
root:x:0:
daemon:x:1:
wheel:x:10:root,alice
www:x:33:
video:x:44: alice , bob
devs:x:2000:alice
dup:x:10:alice
bad:x:x:alice
";

    fn layer_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        for (rel, text) in files {
            let path = dir.path().join(rel);
            if let Some(parent) = path.parent() {
                if let Err(e) = fs::create_dir_all(parent) {
                    panic!("mkdir {}: {e}", parent.display());
                }
            }
            if let Err(e) = fs::write(&path, text) {
                panic!("write {}: {e}", path.display());
            }
        }
        dir
    }

    fn image() -> tempfile::TempDir {
        layer_with(&[("etc/passwd", PASSWD), ("etc/group", GROUP)])
    }

    fn ok<T>(r: Result<T>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn invalid_field<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(e) => match e.kind() {
                ErrorKind::InvalidArgument { field } => field,
                other => panic!("want InvalidArgument, got {other:?}: {e}"),
            },
            Ok(v) => panic!("want an error, got {v:?}"),
        }
    }

    #[test]
    fn parses_passwd_lines() {
        let entries = parse_passwd(PASSWD);
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["root", "daemon", "www", "alice"]);
        assert_eq!(
            entries[3],
            PasswdEntry {
                name: "alice".into(),
                uid: 1000,
                gid: 1000,
                home: "/home/alice".into()
            }
        );
        assert_eq!(entries[2].home, "/var/www");
        assert!(parse_passwd("").is_empty());
        assert!(parse_passwd(":x:1:1::/:").is_empty(), "empty name");
        assert!(parse_passwd("neg:x:-1:0::/:").is_empty(), "negative uid");
    }

    #[test]
    fn parses_group_lines() {
        let groups = parse_group(GROUP);
        let names: Vec<_> = groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            ["root", "daemon", "wheel", "www", "video", "devs", "dup"]
        );
        assert_eq!(groups[2].members, ["root", "alice"]);
        assert_eq!(groups[4].members, ["alice", "bob"]);
        assert!(groups[0].members.is_empty());
    }

    fn resolve_image_user(user: &str, layers: &[PathBuf]) -> Result<ResolvedUser> {
        resolve(&SecurityConfig::default(), user, layers)
    }

    #[test]
    fn image_user_forms() {
        let img = image();
        let layers = vec![img.path().to_path_buf()];
        // (image User, uid, gid, additional gids, user name)
        type Case<'a> = (&'a str, u32, u32, &'a [u32], Option<&'a str>);
        let cases: &[Case] = &[
            ("", 0, 0, &[0, 10], Some("root")),
            ("root", 0, 0, &[0, 10], Some("root")),
            ("alice", 1000, 1000, &[10, 44, 1000, 2000], Some("alice")),
            ("1000", 1000, 1000, &[10, 44, 1000, 2000], Some("alice")),
            ("alice:www", 1000, 33, &[10, 33, 44, 2000], Some("alice")),
            ("alice:44", 1000, 44, &[10, 44, 2000], Some("alice")),
            ("1000:33", 1000, 33, &[10, 33, 44, 2000], Some("alice")),
            ("1000:video", 1000, 44, &[10, 44, 2000], Some("alice")),
            ("4242", 4242, 0, &[0], None),
            ("4242:4343", 4242, 4343, &[4343], None),
            ("www", 33, 33, &[33], Some("www")),
        ];
        for &(user, uid, gid, groups, name) in cases {
            let r = ok(resolve_image_user(user, &layers));
            assert_eq!((r.uid, r.gid), (uid, gid), "{user:?}");
            assert_eq!(r.additional_gids, groups, "{user:?} groups");
            assert_eq!(r.username.as_deref(), name, "{user:?} name");
            let home = r.home.as_deref();
            assert_eq!(home.is_some(), name.is_some(), "{user:?} home {home:?}");
        }
        for bad in ["nobody", "alice:nogroup", "nobody:0", ":0", "alice:"] {
            assert_eq!(
                invalid_field(resolve_image_user(bad, &layers)),
                F_IMAGE_USER,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn no_passwd_numeric_is_fine_names_are_not() {
        let empty = layer_with(&[]);
        let layers = vec![empty.path().to_path_buf()];
        let r = ok(resolve_image_user("123", &layers));
        assert_eq!((r.uid, r.gid), (123, 0));
        assert_eq!(r.additional_gids, [0], "the primary gid only");
        let r = ok(resolve_image_user("", &layers));
        assert_eq!((r.uid, r.gid), (0, 0));
        assert_eq!(
            invalid_field(resolve_image_user("alice", &layers)),
            F_IMAGE_USER
        );
        assert_eq!(
            invalid_field(resolve_image_user("1:wheel", &layers)),
            F_IMAGE_USER
        );
    }

    #[test]
    fn security_context_wins_over_image() {
        let img = image();
        let layers = vec![img.path().to_path_buf()];
        // The name wins over the uid, as in containerd.
        let sec = SecurityConfig {
            run_as_user: Some(1000),
            run_as_username: "www".into(),
            ..Default::default()
        };
        let r = ok(resolve(&sec, "root", &layers));
        assert_eq!((r.uid, r.gid), (33, 33));

        let sec = SecurityConfig {
            run_as_user: Some(1000),
            supplemental_groups: vec![5, 10, 5, 1000, 7],
            ..Default::default()
        };
        let r = ok(resolve(&sec, "root", &layers));
        assert_eq!((r.uid, r.gid), (1000, 1000));
        // The primary, the user's groups and the requested ones; sorted, no duplicates.
        assert_eq!(r.additional_gids, [5, 7, 10, 44, 1000, 2000]);

        let sec = SecurityConfig {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            ..Default::default()
        };
        let r = ok(resolve(&sec, "root", &layers));
        assert_eq!((r.uid, r.gid), (1000, 3000));

        let sec = SecurityConfig {
            run_as_username: "alice".into(),
            run_as_group: Some(33),
            ..Default::default()
        };
        let r = ok(resolve(&sec, "", &layers));
        assert_eq!((r.uid, r.gid), (1000, 33));

        let bad = |sec: SecurityConfig| invalid_field(resolve(&sec, "", &layers));
        assert_eq!(
            bad(SecurityConfig {
                run_as_username: "mallory".into(),
                ..Default::default()
            }),
            F_USERNAME
        );
        assert_eq!(
            bad(SecurityConfig {
                run_as_group: Some(5),
                ..Default::default()
            }),
            F_GROUP
        );
        assert_eq!(
            bad(SecurityConfig {
                run_as_user: Some(-1),
                ..Default::default()
            }),
            F_USER
        );
        assert_eq!(
            bad(SecurityConfig {
                run_as_user: Some(1),
                supplemental_groups: vec![-3],
                ..Default::default()
            }),
            F_SUPPLEMENTAL
        );
    }

    #[test]
    fn strict_policy_reads_no_group_file() {
        let img = image();
        let layers = vec![img.path().to_path_buf()];
        let strict = |sec: SecurityConfig| SecurityConfig {
            supplemental_groups_policy: SupplementalGroupsPolicy::Strict,
            ..sec
        };
        // containerd's cases: only the primary gid and the requested groups.
        let r = ok(resolve(
            &strict(SecurityConfig {
                run_as_user: Some(1000),
                supplemental_groups: vec![1234],
                ..Default::default()
            }),
            "",
            &layers,
        ));
        assert_eq!(
            (r.uid, r.gid),
            (1000, 1000),
            "the gid still comes from passwd"
        );
        assert_eq!(r.additional_gids, [1000, 1234]);
        let r = ok(resolve(
            &strict(SecurityConfig {
                run_as_user: Some(1000),
                run_as_group: Some(2000),
                supplemental_groups: vec![3333],
                ..Default::default()
            }),
            "0",
            &layers,
        ));
        assert_eq!((r.uid, r.gid), (1000, 2000));
        assert_eq!(r.additional_gids, [2000, 3333]);
        let r = ok(resolve(
            &strict(SecurityConfig::default()),
            "alice",
            &layers,
        ));
        assert_eq!(r.additional_gids, [1000]);
        // A group named in the image's User is still looked up.
        let r = ok(resolve(
            &strict(SecurityConfig::default()),
            "alice:video",
            &layers,
        ));
        assert_eq!((r.gid, r.additional_gids.as_slice()), (44, [44].as_slice()));

        // Merge, the same request: the image's memberships too.
        let r = ok(resolve(
            &SecurityConfig {
                run_as_user: Some(1000),
                supplemental_groups: vec![1234],
                ..Default::default()
            },
            "",
            &layers,
        ));
        assert_eq!(r.additional_gids, [10, 44, 1000, 1234, 2000]);
    }

    #[test]
    fn a_group_named_as_the_user_is_not_a_membership() {
        let img = layer_with(&[
            ("etc/passwd", "bob:x:7:7::/:\n"),
            ("etc/group", "bob:x:77:bob\nops:x:88:bob\n"),
        ]);
        let layers = vec![img.path().to_path_buf()];
        let r = ok(resolve_image_user("bob", &layers));
        assert_eq!(r.additional_gids, [7, 88]);
    }

    #[test]
    fn topmost_layer_wins() {
        let upper = layer_with(&[("etc/passwd", "bob:x:7:7::/:\n")]);
        let lower = image();
        let layers = vec![upper.path().to_path_buf(), lower.path().to_path_buf()];
        let r = ok(resolve_image_user("bob", &layers));
        assert_eq!((r.uid, r.gid), (7, 7));
        assert_eq!(
            invalid_field(resolve_image_user("alice", &layers)),
            F_IMAGE_USER
        );
        // /etc/group is only in the lower layer: still seen.
        let r = ok(resolve_image_user("bob:video", &layers));
        assert_eq!(r.gid, 44);
    }

    /// A 0:0 character device, as unpack writes for a whiteout (needs CAP_MKNOD on older
    /// kernels; skipped where it cannot be made).
    fn whiteout(path: &Path) -> bool {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        if let Some(parent) = path.parent() {
            if let Err(e) = fs::create_dir_all(parent) {
                panic!("mkdir {}: {e}", parent.display());
            }
        }
        match mknod(
            path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            makedev(0, 0),
        ) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("skipping: cannot make a whiteout: {e}");
                false
            }
        }
    }

    #[test]
    fn whiteout_hides_lower_passwd() {
        let upper = layer_with(&[]);
        let lower = image();
        if !whiteout(&upper.path().join("etc/passwd")) {
            return;
        }
        let layers = vec![upper.path().to_path_buf(), lower.path().to_path_buf()];
        assert!(matches!(read_layered(&layers, "etc/passwd"), Ok(None)));
        assert_eq!(
            invalid_field(resolve_image_user("alice", &layers)),
            F_IMAGE_USER
        );
        // Numeric still works, with gid 0 since passwd is gone.
        let r = ok(resolve_image_user("1000", &layers));
        assert_eq!((r.uid, r.gid), (1000, 0));

        // A whited-out /etc hides both files.
        let upper = layer_with(&[]);
        if !whiteout(&upper.path().join("etc")) {
            return;
        }
        let layers = vec![upper.path().to_path_buf(), lower.path().to_path_buf()];
        assert!(matches!(read_layered(&layers, "etc/group"), Ok(None)));
    }

    #[test]
    fn opaque_dir_hides_lower_files() {
        let upper = layer_with(&[("etc/passwd", "bob:x:7:7::/:\n")]);
        if xattr::set(upper.path().join("etc"), OPAQUE_XATTR, b"y").is_err() {
            eprintln!("skipping: cannot set trusted xattrs here");
            return;
        }
        let lower = image();
        let layers = vec![upper.path().to_path_buf(), lower.path().to_path_buf()];
        assert!(matches!(read_layered(&layers, "etc/passwd"), Ok(Some(_))));
        assert!(matches!(read_layered(&layers, "etc/group"), Ok(None)));
    }

    #[test]
    fn a_file_in_place_of_etc_hides_lower() {
        let upper = layer_with(&[("etc", "not a dir")]);
        let lower = image();
        let layers = vec![upper.path().to_path_buf(), lower.path().to_path_buf()];
        assert!(matches!(read_layered(&layers, "etc/passwd"), Ok(None)));
    }

    #[test]
    fn symlinks_are_refused() {
        let outside = layer_with(&[("passwd", "evil:x:0:0::/:\n")]);
        let upper = layer_with(&[]);
        let etc = upper.path().join("etc");
        if let Err(e) = fs::create_dir_all(&etc) {
            panic!("mkdir: {e}");
        }
        if let Err(e) =
            std::os::unix::fs::symlink(outside.path().join("passwd"), etc.join("passwd"))
        {
            panic!("symlink: {e}");
        }
        let layers = vec![upper.path().to_path_buf()];
        assert!(read_layered(&layers, "etc/passwd").is_err());
        assert_eq!(
            invalid_field(resolve_image_user("evil", &layers)),
            F_IMAGE_USER
        );
        // A numeric uid does not need the file.
        let r = ok(resolve_image_user("0", &layers));
        assert_eq!((r.uid, r.gid), (0, 0));

        // A symlinked /etc is refused too.
        let upper = layer_with(&[]);
        if let Err(e) = std::os::unix::fs::symlink(outside.path(), upper.path().join("etc")) {
            panic!("symlink: {e}");
        }
        let layers = vec![upper.path().to_path_buf()];
        assert!(read_layered(&layers, "etc/passwd").is_err());
    }

    #[test]
    fn huge_and_odd_files_are_refused() {
        let big = "x".repeat(MAX_FILE_SIZE as usize + 1);
        let layer = layer_with(&[("etc/passwd", big.as_str())]);
        let layers = vec![layer.path().to_path_buf()];
        assert!(read_layered(&layers, "etc/passwd").is_err());

        let layer = layer_with(&[]);
        let path = layer.path().join("etc/passwd");
        if let Err(e) = fs::create_dir_all(&path) {
            panic!("mkdir: {e}");
        }
        let layers = vec![layer.path().to_path_buf()];
        assert!(read_layered(&layers, "etc/passwd").is_err());

        let layer = layer_with(&[("etc/group", "")]);
        let fifo = layer.path().join("etc/passwd");
        if nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).is_ok() {
            let layers = vec![layer.path().to_path_buf()];
            assert!(read_layered(&layers, "etc/passwd").is_err(), "a FIFO");
        }
    }
}
