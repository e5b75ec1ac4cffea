//! cgroup v1: the rules written in order to `devices.allow` and `devices.deny`.

use std::path::{Path, PathBuf};

use super::Rule;
use crate::cgroups::{fs, CgroupError, Result};

/// Each write, in order: the file and the line.
pub(super) fn plan(dir: &Path, rules: &[Rule]) -> Vec<(PathBuf, String)> {
    rules
        .iter()
        .map(|r| {
            let file = if r.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            (dir.join(file), r.v1_text())
        })
        .collect()
}

/// Writes the rules. A cgroup that has processes already (an update) is briefly
/// deny-all between a leading `a` deny and the allows after it; at create it has none.
pub(super) fn apply(dir: &Path, rules: &[Rule]) -> Result<()> {
    for (file, line) in plan(dir, rules) {
        fs::write(&file, &line).map_err(|e| match e {
            CgroupError::Io { source, .. } => CgroupError::DeviceRule {
                path: file.clone(),
                rule: line.clone(),
                source,
            },
            other => other,
        })?;
    }
    Ok(())
}
