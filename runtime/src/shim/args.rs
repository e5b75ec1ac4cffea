//! The shim's command line, parsed by hand (no clap: the binary must stay small).
//!
//! ```text
//! corral-shim --pod-id <id> --dir <pod state dir> [--share-pid]
//!             [--userns <path>] [--netns <path>] [--ipcns <path>] [--utsns <path>] [--log <file>]
//!             [--cgroup <cgroup.procs file>]...
//! ```
//!
//! The namespace paths are the pod's pinned namespaces: the pause joins them when the pod
//! shares its PID namespace, and container processes will join them later.

use std::ffi::OsString;
use std::path::PathBuf;

pub const USAGE: &str = "usage: corral-shim --pod-id <id> --dir <pod state dir> [--share-pid] \
[--userns <path>] [--netns <path>] [--ipcns <path>] [--utsns <path>] [--log <file>] \
[--cgroup <procs file>]...";

/// The parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    pub pod_id: String,
    /// The pod's state dir (absolute): socket, pid file, pinned PID namespace.
    pub dir: PathBuf,
    /// Start a pause as PID 1 of a new PID namespace shared by the pod.
    pub share_pid: bool,
    /// The pod's user namespace, which owns the others: the pause joins it first.
    pub userns: Option<PathBuf>,
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    /// Where the shim's own diagnostics go (appended); /dev/null when absent.
    pub log: Option<PathBuf>,
    /// The `cgroup.procs` file of each hierarchy of the pod's own cgroup: the shim (and so
    /// the pause) is born there, so the pod is charged for them and they go with it.
    pub cgroup_procs: Vec<PathBuf>,
}

impl Args {
    /// Parse the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
        let mut out = Args::default();
        let mut pod_id = None;
        let mut dir = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let flag = arg
                .to_str()
                .ok_or_else(|| format!("bad argument {arg:?}"))?;
            let mut value = |name: &str| {
                args.next()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match flag {
                "--pod-id" => {
                    let v = value(flag)?;
                    pod_id = Some(v.into_string().map_err(|v| format!("bad --pod-id {v:?}"))?);
                }
                "--dir" => dir = Some(PathBuf::from(value(flag)?)),
                "--share-pid" => out.share_pid = true,
                "--userns" => out.userns = Some(value(flag)?.into()),
                "--netns" => out.netns = Some(value(flag)?.into()),
                "--ipcns" => out.ipcns = Some(value(flag)?.into()),
                "--utsns" => out.utsns = Some(value(flag)?.into()),
                "--log" => out.log = Some(value(flag)?.into()),
                "--cgroup" => out.cgroup_procs.push(value(flag)?.into()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        out.pod_id = pod_id.ok_or("--pod-id is required")?;
        let dir = dir.ok_or("--dir is required")?;
        // The shim changes to `/` at start, so every path it keeps must be absolute.
        out.dir = std::path::absolute(&dir).map_err(|e| format!("--dir {}: {e}", dir.display()))?;
        for path in [
            &mut out.userns,
            &mut out.netns,
            &mut out.ipcns,
            &mut out.utsns,
            &mut out.log,
        ]
        .into_iter()
        .flatten()
        .chain(out.cgroup_procs.iter_mut())
        {
            *path = std::path::absolute(&*path).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(out)
    }

    /// The command line that [`Args::parse`] turns back into `self`.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![
            "--pod-id".into(),
            self.pod_id.clone().into(),
            "--dir".into(),
            self.dir.clone().into(),
        ];
        if self.share_pid {
            out.push("--share-pid".into());
        }
        for (flag, path) in [
            ("--userns", &self.userns),
            ("--netns", &self.netns),
            ("--ipcns", &self.ipcns),
            ("--utsns", &self.utsns),
            ("--log", &self.log),
        ] {
            if let Some(path) = path {
                out.push(flag.into());
                out.push(path.clone().into());
            }
        }
        for procs in &self.cgroup_procs {
            out.push("--cgroup".into());
            out.push(procs.clone().into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn parses_and_round_trips() {
        let args = parse(&[
            "--pod-id",
            "p1",
            "--dir",
            "/run/corral/pods/p1",
            "--share-pid",
            "--userns",
            "/run/user",
            "--netns",
            "/run/n",
            "--utsns",
            "/run/u",
            "--cgroup",
            "/sys/fs/cgroup/memory/p/cgroup.procs",
            "--cgroup",
            "/sys/fs/cgroup/unified/p/cgroup.procs",
        ])
        .unwrap();
        assert_eq!(
            args,
            Args {
                pod_id: "p1".into(),
                dir: "/run/corral/pods/p1".into(),
                share_pid: true,
                userns: Some("/run/user".into()),
                netns: Some("/run/n".into()),
                utsns: Some("/run/u".into()),
                cgroup_procs: vec![
                    "/sys/fs/cgroup/memory/p/cgroup.procs".into(),
                    "/sys/fs/cgroup/unified/p/cgroup.procs".into()
                ],
                ..Args::default()
            }
        );
        assert_eq!(Args::parse(args.to_args()).unwrap(), args);
        let rel = parse(&["--dir", "state", "--pod-id", "p"]).unwrap();
        assert!(rel.dir.is_absolute() && rel.dir.ends_with("state"));
    }

    #[test]
    fn rejects_bad_command_lines() {
        for bad in [
            &["--dir", "/x"][..],
            &["--pod-id", "p"],
            &["--pod-id", "p", "--dir"],
            &["--pod-id", "", "--dir", "/x"],
            &["--pod-id", "p", "--dir", "/x", "--bogus"],
            &["--pod-id", "p", "--dir", "/x", "pause"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
