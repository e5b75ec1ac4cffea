//! `memory`: K pods running (each with one container when an image is given); the RSS and
//! PSS of every process the runtime started per pod, found through cgroups and the process
//! tree rather than by name:
//!
//! - every process in the pod's cgroup (the `cgroup_parent` the bench chose for it, in any
//!   hierarchy), which holds the containers and whatever the runtime put there;
//! - from each pid the runtime reports for the pod (ContainerStatus and PodSandboxStatus
//!   verbose `info.pid`), the chain of its ancestors up to, not including, the first that is
//!   not the pod's own: pid 1, the daemon, an ancestor of the bench or the daemon, or one
//!   that is an ancestor of another pod's processes as well. That finds per-pod monitors
//!   that live outside the pod's cgroup (containerd's shim);
//! - and every descendant of those.
//!
//! Figures per pod, as sums over its processes, then the mean and median over pods; and the
//! same without the container's own processes (the container's pid and its descendants):
//! what the runtime costs beyond the workload.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde::Serialize;

use crate::calls::{self, Bench, PodRef};
use crate::cgroups;
use crate::stats::median;

/// (RSS, PSS) in KiB of a process, from smaps_rollup.
pub fn rss_pss(pid: i32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("Rss:")?, field("Pss:")?))
}

/// The parent pid from the text of /proc/<pid>/stat.
fn parse_ppid(stat: &str) -> Option<i32> {
    // comm may hold spaces and parentheses: fields resume after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The cgroup paths of a process, one per hierarchy, from the text of /proc/<pid>/cgroup.
fn parse_cgroups(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .map(str::to_string)
        .collect()
}

#[derive(Debug, Clone)]
struct Proc {
    ppid: i32,
    comm: String,
    cgroups: Vec<String>,
}

/// Every process on the host now, by pid.
fn snapshot() -> HashMap<i32, Proc> {
    let mut procs = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return procs;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Some(ppid) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| parse_ppid(&s))
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map(|s| parse_cgroups(&s))
            .unwrap_or_default();
        procs.insert(
            pid,
            Proc {
                ppid,
                comm,
                cgroups,
            },
        );
    }
    procs
}

fn ancestors(procs: &HashMap<i32, Proc>, pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut cur = pid;
    while let Some(p) = procs.get(&cur) {
        if p.ppid <= 1 || out.contains(&p.ppid) || out.len() > 64 {
            break;
        }
        out.push(p.ppid);
        cur = p.ppid;
    }
    out
}

/// What the bench knows of one pod: its cgroup parent and the pids its runtime reported.
pub struct PodPids {
    pub cgroup: String,
    pub container_pid: Option<i32>,
    pub sandbox_pid: Option<i32>,
}

/// The pids of each pod's processes (see the module's doc), and of the container's own.
fn attribute(
    procs: &HashMap<i32, Proc>,
    pods: &[PodPids],
    daemon_pid: Option<i32>,
    me: i32,
) -> Vec<(BTreeSet<i32>, BTreeSet<i32>)> {
    // Never a pod's: pid 1, ourselves, the daemon, and the ancestors of either.
    let mut outside: BTreeSet<i32> = [0, 1, me].into_iter().collect();
    outside.extend(ancestors(procs, me));
    if let Some(d) = daemon_pid {
        outside.insert(d);
        outside.extend(ancestors(procs, d));
    }
    let seeds = |p: &PodPids| {
        [p.container_pid, p.sandbox_pid]
            .into_iter()
            .flatten()
            .filter(|pid| procs.contains_key(pid))
            .collect::<Vec<_>>()
    };
    // Ancestors shared by the processes of more than one pod are nobody's.
    let mut seen_in: HashMap<i32, BTreeSet<usize>> = HashMap::new();
    for (i, p) in pods.iter().enumerate() {
        for s in seeds(p) {
            for a in ancestors(procs, s) {
                seen_in.entry(a).or_default().insert(i);
            }
        }
    }
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, p) in procs {
        children.entry(p.ppid).or_default().push(*pid);
    }
    let descendants = |roots: &BTreeSet<i32>| {
        let mut all = roots.clone();
        let mut todo: Vec<i32> = roots.iter().copied().collect();
        while let Some(p) = todo.pop() {
            for c in children.get(&p).into_iter().flatten() {
                if all.insert(*c) {
                    todo.push(*c);
                }
            }
        }
        all
    };
    pods.iter()
        .map(|p| {
            let mut roots: BTreeSet<i32> = procs
                .iter()
                .filter(|(_, pr)| pr.cgroups.iter().any(|c| cgroups::is_within(c, &p.cgroup)))
                .map(|(pid, _)| *pid)
                .collect();
            for s in seeds(p) {
                roots.insert(s);
                for a in ancestors(procs, s) {
                    let shared = seen_in.get(&a).is_some_and(|pods| pods.len() > 1);
                    if outside.contains(&a) || shared {
                        break;
                    }
                    roots.insert(a);
                }
            }
            roots.retain(|pid| !outside.contains(pid));
            let all = descendants(&roots);
            let workload = p
                .container_pid
                .filter(|pid| procs.contains_key(pid))
                .map(|pid| descendants(&BTreeSet::from([pid])))
                .unwrap_or_default();
            (all, workload)
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct PodMemory {
    pub pod: String,
    pub processes: usize,
    pub rss_kib: u64,
    pub pss_kib: u64,
    /// Without the container's own processes.
    pub runtime_processes: usize,
    pub runtime_rss_kib: u64,
    pub runtime_pss_kib: u64,
    pub commands: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct MemoryReport {
    pub runtime: String,
    pub pods: usize,
    pub image: Option<String>,
    /// Means over pods (the names `hack/bench-sandbox` reads).
    pub processes_per_pod: f64,
    pub rss_kib_per_pod: f64,
    pub pss_kib_per_pod: f64,
    pub median_processes: f64,
    pub median_rss_kib: f64,
    pub median_pss_kib: f64,
    /// The same without the containers' own processes.
    pub runtime_processes_per_pod: f64,
    pub median_runtime_processes: f64,
    pub median_runtime_rss_kib: f64,
    pub median_runtime_pss_kib: f64,
    /// Command name: (processes, RSS KiB, PSS KiB) over all pods.
    pub by_command: BTreeMap<String, (usize, u64, u64)>,
    pub daemon_rss_kib_before: Option<u64>,
    pub daemon_rss_kib_after: Option<u64>,
    pub per_pod: Vec<PodMemory>,
}

pub async fn run(
    b: &mut Bench,
    pods: usize,
    image: Option<&str>,
    daemon_pid: Option<i32>,
) -> anyhow::Result<MemoryReport> {
    if let Some(image) = image {
        calls::pull(&mut b.cri, image).await?;
    }
    let daemon_before = daemon_pid.and_then(rss_pss).map(|(r, _)| r);
    let mut known = Vec::new();
    let mut names = Vec::new();
    for i in 0..pods {
        let pod = PodRef { tag: "mem", i };
        let (pod_id, config) = b.run_pod(&pod).await?;
        let mut container_pid = None;
        if let Some(image) = image {
            let cc = b.container_config(image);
            let ctr = calls::create_container(&mut b.cri, &pod_id, &config, &cc).await?;
            calls::start_container(&mut b.cri, &ctr).await?;
            container_pid = calls::container_pid(&mut b.cri, &ctr).await?;
            if container_pid.is_none() {
                anyhow::bail!("ContainerStatus {ctr}: no pid in the verbose info");
            }
        }
        let sandbox_pid = calls::sandbox_pid(&mut b.cri, &pod_id).await?;
        known.push(PodPids {
            cgroup: b.cgroup_parent(&pod),
            container_pid,
            sandbox_pid,
        });
        names.push(pod_id);
    }
    // Let lazily started helpers start, and startup allocations settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let procs = snapshot();
    let me = std::process::id() as i32;
    let attributed = attribute(&procs, &known, daemon_pid, me);
    let daemon_after = daemon_pid.and_then(rss_pss).map(|(r, _)| r);

    let mut by_command: BTreeMap<String, (usize, u64, u64)> = BTreeMap::new();
    let mut per_pod = Vec::new();
    for (name, (all, workload)) in names.iter().zip(&attributed) {
        let mut m = PodMemory {
            pod: name.clone(),
            processes: 0,
            rss_kib: 0,
            pss_kib: 0,
            runtime_processes: 0,
            runtime_rss_kib: 0,
            runtime_pss_kib: 0,
            commands: Vec::new(),
        };
        for pid in all {
            // Gone, or a zombie: holds no memory, counts for nothing.
            let Some((rss, pss)) = rss_pss(*pid) else {
                continue;
            };
            let comm = procs.get(pid).map(|p| p.comm.clone()).unwrap_or_default();
            m.processes += 1;
            m.rss_kib += rss;
            m.pss_kib += pss;
            if !workload.contains(pid) {
                m.runtime_processes += 1;
                m.runtime_rss_kib += rss;
                m.runtime_pss_kib += pss;
            }
            let e = by_command.entry(comm.clone()).or_default();
            e.0 += 1;
            e.1 += rss;
            e.2 += pss;
            m.commands.push(comm);
        }
        per_pod.push(m);
    }
    let col = |f: fn(&PodMemory) -> f64| per_pod.iter().map(f).collect::<Vec<f64>>();
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let procs_v = col(|m| m.processes as f64);
    let rss_v = col(|m| m.rss_kib as f64);
    let pss_v = col(|m| m.pss_kib as f64);
    let rprocs_v = col(|m| m.runtime_processes as f64);
    let rrss_v = col(|m| m.runtime_rss_kib as f64);
    let rpss_v = col(|m| m.runtime_pss_kib as f64);
    Ok(MemoryReport {
        runtime: b.name.clone(),
        pods,
        image: image.map(str::to_string),
        processes_per_pod: mean(&procs_v),
        rss_kib_per_pod: mean(&rss_v),
        pss_kib_per_pod: mean(&pss_v),
        median_processes: median(&procs_v),
        median_rss_kib: median(&rss_v),
        median_pss_kib: median(&pss_v),
        runtime_processes_per_pod: mean(&rprocs_v),
        median_runtime_processes: median(&rprocs_v),
        median_runtime_rss_kib: median(&rrss_v),
        median_runtime_pss_kib: median(&rpss_v),
        by_command,
        daemon_rss_kib_before: daemon_before,
        daemon_rss_kib_after: daemon_after,
        per_pod,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ppid: i32, cgroup: &str) -> Proc {
        Proc {
            ppid,
            comm: String::new(),
            cgroups: vec![cgroup.to_string()],
        }
    }

    #[test]
    fn stat_and_cgroup_parsing() {
        assert_eq!(parse_ppid("42 (a b) c) S 7 42 42 0"), Some(7));
        assert_eq!(parse_ppid("garbage"), None);
        assert_eq!(
            parse_cgroups("4:memory:/a/b\n0::/c:d\n"),
            vec!["/a/b".to_string(), "/c:d".to_string()]
        );
    }

    /// containerd's shape: a shim outside the pod's cgroup (parent 1), a pause and the
    /// container inside; corrald's: a shim inside, the container its child. Plus a daemon,
    /// the bench, and an unrelated process sharing nothing.
    #[test]
    fn attribution_by_cgroup_and_ancestry() {
        let procs: HashMap<i32, Proc> = [
            (1, p(0, "/")),
            (10, p(1, "/")),            // a session
            (11, p(10, "/")),           // the bench
            (20, p(1, "/")),            // the daemon
            (100, p(1, "/daemon")),     // pod 0's shim, outside its cgroup
            (101, p(100, "/b/p0/sb")),  // pod 0's pause
            (102, p(100, "/b/p0/ctr")), // pod 0's container
            (103, p(102, "/b/p0/ctr")), // its child
            (200, p(1, "/b/p1")),       // pod 1's shim, inside
            (201, p(200, "/b/p1/ctr")), // pod 1's container
            (300, p(1, "/b/p10")),      // not pod 1's, despite the prefix
        ]
        .into_iter()
        .collect();
        let pods = [
            PodPids {
                cgroup: "/b/p0".into(),
                container_pid: Some(102),
                sandbox_pid: Some(101),
            },
            PodPids {
                cgroup: "/b/p1".into(),
                container_pid: Some(201),
                sandbox_pid: Some(200),
            },
        ];
        let got = attribute(&procs, &pods, Some(20), 11);
        assert_eq!(got[0].0, BTreeSet::from([100, 101, 102, 103]));
        assert_eq!(got[0].1, BTreeSet::from([102, 103]));
        assert_eq!(got[1].0, BTreeSet::from([200, 201]));
        assert_eq!(got[1].1, BTreeSet::from([201]));
    }

    /// Shims that are the daemon's children, and a shared parent of all pods' processes.
    #[test]
    fn shared_ancestors_and_the_daemon_are_nobodys() {
        let procs: HashMap<i32, Proc> = [
            (1, p(0, "/")),
            (20, p(1, "/")),   // the daemon
            (30, p(1, "/")),   // a subreaper every shim is reparented to
            (100, p(30, "/")), // pod 0's shim
            (101, p(100, "/b/p0")),
            (200, p(30, "/")), // pod 1's shim
            (201, p(200, "/b/p1")),
            (300, p(20, "/")), // pod 2's shim, the daemon's child
            (301, p(300, "/b/p2")),
        ]
        .into_iter()
        .collect();
        let pod = |c: &str, pid| PodPids {
            cgroup: c.into(),
            container_pid: Some(pid),
            sandbox_pid: None,
        };
        let pods = [pod("/b/p0", 101), pod("/b/p1", 201), pod("/b/p2", 301)];
        let got = attribute(&procs, &pods, Some(20), 999);
        assert_eq!(got[0].0, BTreeSet::from([100, 101]));
        assert_eq!(got[1].0, BTreeSet::from([200, 201]));
        assert_eq!(got[2].0, BTreeSet::from([300, 301]));
    }
}
