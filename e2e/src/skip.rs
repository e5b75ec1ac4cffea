//! Tests that need root say so and skip, instead of failing on a developer's laptop.

/// True when the test can go on; prints why not otherwise.
pub fn have_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        eprintln!("skipping {test}: needs root (namespaces, mounts, mknod, chown)");
        false
    }
}
