//! The tables on stdout, and the JSON file.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::concurrency::ConcurrencyResult;
use crate::memory::MemoryReport;
use crate::stats::Summary;

pub fn write_json<T: Serialize + ?Sized>(path: Option<&Path>, value: &T) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_vec_pretty(value)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

pub fn latencies(results: &[Summary]) {
    println!(
        "{:<12} {:<22} {:<28} {:>4} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "runtime", "call", "subject", "n", "min ms", "median", "p90", "p99", "max"
    );
    for r in results {
        println!(
            "{:<12} {:<22} {:<28} {:>4} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            r.runtime,
            r.call,
            r.subject,
            r.runs,
            r.min_ms,
            r.median_ms,
            r.p90_ms,
            r.p99_ms,
            r.max_ms
        );
    }
}

pub fn concurrency(results: &[ConcurrencyResult]) {
    println!(
        "{:<12} {:>5} {:>14} {:>14} {:>12} {:>12} {:>17}",
        "runtime", "pods", "all running ms", "per pod min", "median", "max", "teardown wall ms"
    );
    for r in results {
        println!(
            "{:<12} {:>5} {:>14.1} {:>14.1} {:>12.1} {:>12.1} {:>17.1}",
            r.runtime,
            r.pods,
            r.start_wall_ms,
            r.per_pod.min_ms,
            r.per_pod.median_ms,
            r.per_pod.max_ms,
            r.teardown_wall_ms
        );
    }
}

pub fn memory(m: &MemoryReport) {
    let kib = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("{v}"));
    println!(
        "{}: {} pods running{}",
        m.runtime,
        m.pods,
        m.image.as_deref().map_or(String::new(), |i| format!(
            ", each with one container of {i}"
        ))
    );
    println!("{:<36} {:>10} {:>10}", "per pod", "mean", "median");
    let rows = [
        ("processes", m.processes_per_pod, m.median_processes),
        ("RSS KiB", m.rss_kib_per_pod, m.median_rss_kib),
        ("PSS KiB", m.pss_kib_per_pod, m.median_pss_kib),
        (
            "runtime's processes (no container)",
            m.runtime_processes_per_pod,
            m.median_runtime_processes,
        ),
    ];
    for (name, mean, median) in rows {
        println!("{name:<36} {mean:>10.1} {median:>10.1}");
    }
    println!(
        "{:<36} {:>10} {:>10.1}",
        "runtime's RSS KiB (no container)", "", m.median_runtime_rss_kib
    );
    println!(
        "{:<36} {:>10} {:>10.1}",
        "runtime's PSS KiB (no container)", "", m.median_runtime_pss_kib
    );
    println!(
        "daemon RSS KiB before / with the pods: {} / {}",
        kib(m.daemon_rss_kib_before),
        kib(m.daemon_rss_kib_after)
    );
    for (comm, (n, rss, pss)) in &m.by_command {
        println!("  {comm:<24} {n:>5} processes, RSS {rss:>8} KiB, PSS {pss:>8} KiB in all");
    }
}
