//! AppArmor: the spec's `process.apparmorProfile`, applied at execve as runc does, by
//! writing `exec <profile>` to this process's attr file (the profile must be loaded in the
//! kernel already; the spec side checks that).

use super::InitError;

/// Where the kernel takes the profile for the next execve: the AppArmor-specific file of
/// Linux 5.1 and later (which works beside other LSMs), then the shared one.
const ATTR_FILES: [&str; 2] = ["/proc/self/attr/apparmor/exec", "/proc/self/attr/exec"];

/// What to write.
pub fn command(profile: &str) -> Vec<u8> {
    format!("exec {profile}").into_bytes()
}

/// Make the next execve enter `profile`.
pub fn change_on_exec(profile: &str) -> Result<(), InitError> {
    let mut last = None;
    for file in ATTR_FILES {
        match std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &command(profile)))
        {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => last = Some((file, e)),
            Err(e) => {
                return Err(InitError::step(
                    format_args!("setting the AppArmor profile {profile:?} through {file}"),
                    e,
                ))
            }
        }
    }
    let why = last.map_or_else(String::new, |(file, e)| format!("{file}: {e}"));
    Err(InitError::step(
        format_args!("setting the AppArmor profile {profile:?}"),
        format_args!("no AppArmor attr file ({why})"),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_line_names_the_profile() {
        assert_eq!(super::command("k8s-nginx"), b"exec k8s-nginx".to_vec());
    }
}
