//! What an operator meets before any pod: `corrald --version`, `corrald config default` and
//! `config dump`, errors in a config file that name the file, the line and the key, and a
//! log file without terminal escape codes.

use std::process::Command;

use anyhow::{ensure, Context, Result};
use e2e::daemon::{corrald_binary, Daemon};
use e2e::skip::have_root;

fn corrald(args: &[&str]) -> Result<std::process::Output> {
    Ok(Command::new(corrald_binary()?).args(args).output()?)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_names_the_release_the_commit_and_the_cri() -> Result<()> {
    let out = corrald(&["--version"])?;
    ensure!(out.status.success(), "{out:?}");
    let v = text(&out.stdout);
    ensure!(v.starts_with("corrald 0."), "{v}");
    ensure!(v.contains("(commit ") && v.contains("CRI v1"), "{v}");
    Ok(())
}

#[test]
fn the_default_config_is_accepted_and_changes_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = corrald(&["config", "default"])?;
    ensure!(out.status.success(), "{out:?}");
    let default_file = dir.path().join("default.toml");
    std::fs::write(&default_file, &out.stdout)?;
    let empty_file = dir.path().join("empty.toml");
    std::fs::write(&empty_file, "")?;
    let from_default = corrald(&["--config", default_file.to_str().unwrap(), "config", "dump"])?;
    let from_empty = corrald(&["--config", empty_file.to_str().unwrap(), "config", "dump"])?;
    ensure!(
        from_default.status.success(),
        "{}",
        text(&from_default.stderr)
    );
    ensure!(from_empty.status.success(), "{}", text(&from_empty.stderr));
    ensure!(
        from_default.stdout == from_empty.stdout,
        "the default file gives another config:\n{}\nvs\n{}",
        text(&from_default.stdout),
        text(&from_empty.stdout)
    );
    // Flags come after the file.
    let dumped = corrald(&[
        "--config",
        default_file.to_str().unwrap(),
        "--log-level",
        "debug",
        "config",
        "dump",
    ])?;
    ensure!(
        text(&dumped.stdout).contains("log_level = \"debug\""),
        "{}",
        text(&dumped.stdout)
    );
    Ok(())
}

#[test]
fn a_bad_config_names_the_file_the_line_and_the_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "log_level = \"info\"\n\n[network]\nbridgee = \"x\"\n",
    )?;
    let out = corrald(&["--config", file.to_str().unwrap(), "config", "dump"])?;
    ensure!(!out.status.success(), "a bad file was accepted");
    let err = text(&out.stderr);
    ensure!(err.contains(file.to_str().unwrap()), "no file named: {err}");
    ensure!(err.contains("line 4"), "no line named: {err}");
    ensure!(err.contains("bridgee"), "no key named: {err}");
    Ok(())
}

#[tokio::test]
async fn a_log_file_has_no_escape_codes() -> Result<()> {
    if !have_root("a_log_file_has_no_escape_codes") {
        return Ok(());
    }
    let daemon = Daemon::start("").await?;
    let mut cri = daemon.client().await?;
    cri.runtime
        .version(proto::VersionRequest::default())
        .await
        .context("Version")?;
    let log = std::fs::read_to_string(daemon.dir().join("corrald.log"))?;
    ensure!(
        log.contains("serving CRI v1"),
        "the log has no start-up line: {log}"
    );
    ensure!(
        !log.contains('\u{1b}'),
        "escape codes in the log file:\n{log}"
    );
    Ok(())
}
