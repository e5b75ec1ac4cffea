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

/// A loopback registry that serves a manifest and config, then a layer that stops after a
/// few bytes and keeps the connection open: the pull ends in the progress timeout, naming
/// the registry and the layer, and keeps nothing of the layer.
async fn stalling_registry() -> Result<(String, String, tokio::task::JoinHandle<()>)> {
    use sha2::{Digest, Sha256};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let digest = |b: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(b)));
    let layer = vec![7u8; 1 << 20];
    let layer_digest = digest(&layer);
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]},"config":{}}"#.to_vec();
    let config_digest = digest(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let host = listener.local_addr()?.to_string();
    let (ld, cd) = (layer_digest.clone(), config_digest.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let (manifest, config, ld, cd) =
                (manifest.clone(), config.clone(), ld.clone(), cd.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let Ok(n) = conn.read(&mut buf).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                let reply = |ct: &str, body: &[u8]| {
                    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nDocker-Content-Digest: {}\r\nConnection: close\r\n\r\n", body.len(), digest(body)).into_bytes();
                    r.extend_from_slice(body);
                    r
                };
                if path == "/v2/" {
                    let _ = conn.write_all(&reply("application/json", b"{}")).await;
                } else if path.contains("/manifests/") {
                    let _ = conn
                        .write_all(&reply(
                            "application/vnd.oci.image.manifest.v1+json",
                            manifest.as_bytes(),
                        ))
                        .await;
                } else if path.ends_with(&cd) {
                    let _ = conn
                        .write_all(&reply("application/octet-stream", &config))
                        .await;
                } else if path.ends_with(&ld) {
                    // The head and 64 KiB of the layer, then nothing, for ever.
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", 1 << 20);
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(&[7u8; 65536]).await;
                    tokio::time::sleep(std::time::Duration::from_secs(600)).await;
                } else {
                    let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
                }
            });
        }
    });
    Ok((host, layer_digest, task))
}

#[tokio::test]
async fn a_stalled_pull_ends_in_the_progress_timeout_and_keeps_nothing() -> Result<()> {
    if !have_root("a_stalled_pull_ends_in_the_progress_timeout_and_keeps_nothing") {
        return Ok(());
    }
    let (host, layer, registry) = stalling_registry().await?;
    let daemon = Daemon::start("image_pull_progress_timeout = \"2s\"\n").await?;
    let mut cri = daemon.client().await?;
    let started = std::time::Instant::now();
    let e = cri
        .pull(&format!("{host}/e2e/stall:latest"), None)
        .await
        .err()
        .context("a stalled pull succeeded")?;
    let took = started.elapsed();
    registry.abort();
    let msg = format!("{e:#}");
    ensure!(msg.contains("image_pull_progress_timeout"), "{msg}");
    ensure!(
        msg.contains(&layer) && msg.contains(&host),
        "registry or layer not named: {msg}"
    );
    ensure!(
        took < std::time::Duration::from_secs(30),
        "the pull took {took:?}"
    );
    let ingest = daemon.dir().join("root/images/content/ingest");
    let left: Vec<_> = std::fs::read_dir(&ingest)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    ensure!(left.is_empty(), "ingest files left: {left:?}");
    Ok(())
}
