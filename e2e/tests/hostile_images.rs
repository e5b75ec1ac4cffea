//! Hostile images against a real corrald: layers past the unpack bounds are refused in
//! seconds with the bound named (DataLoss) and leave nothing, and a snapshot nobody could
//! walk by path never breaks ImageFsInfo, RemoveImage or other images' pulls.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::client::Cri;
use e2e::daemon::Daemon;
use e2e::images::{self, Compression, Image, ImageConfig, Layer, MediaTypes};
use e2e::registry::{skip_reason, Registry, RegistryOptions};
use e2e::skip::have_root;
use serde_json::json;
use tonic::Code;

/// Entries per layer in the daemon's config, lowered so the 10,000-entry layer is cheap.
const MAX_ENTRIES: u64 = 5_000;
/// Decompressed bytes per layer in the daemon's config, lowered so the bomb stops fast.
const MAX_LAYER_BYTES: u64 = 256 << 20;

/// A registry plus a corrald with lowered image bounds, on this file's bridge and subnet.
async fn setup(test: &str) -> Result<Option<(Registry, Daemon, Cri)>> {
    setup_with(test, "").await
}

/// [`setup`] with more `[image]` keys.
async fn setup_with(test: &str, image_keys: &str) -> Result<Option<(Registry, Daemon, Cri)>> {
    if !have_root(test) {
        return Ok(None);
    }
    if let Some(why) = skip_reason(&RegistryOptions::default()) {
        eprintln!("skipping {test}: {why}");
        return Ok(None);
    }
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = (std::process::id() + NEXT.fetch_add(1, Ordering::Relaxed)) % 200;
    let reg = Registry::start(RegistryOptions::default()).await?;
    let config = format!(
        "[registry.mirrors.\"docker.io\"]\nendpoints = [\"{}\"]\n\
         [image]\nmax_layer_entries = {MAX_ENTRIES}\nmax_layer_bytes = {MAX_LAYER_BYTES}\n{image_keys}\n\
         [network]\nbridge = \"crtup{n}\"\nsubnet = \"10.226.{n}.0/24\"\n",
        reg.url()
    );
    let daemon = Daemon::start(&config).await?;
    let cri = daemon.client().await?;
    Ok(Some((reg, daemon, cri)))
}

fn snapshot_dir(d: &Daemon) -> PathBuf {
    d.root.join("images/snapshots")
}

/// Everything in the snapshot dir: committed snapshots and any leftover.
fn snapshot_entries(d: &Daemon) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(snapshot_dir(d))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn one_layer_image(layer: Layer) -> Image {
    Image {
        layers: vec![layer],
        config: ImageConfig::default(),
        media_types: MediaTypes::Oci,
    }
}

/// `depth` nested directories `d/d/...`, a file at the bottom.
fn deep_layer(depth: usize) -> Layer {
    let mut b = Layer::builder();
    let mut path = String::new();
    for _ in 0..depth {
        path.push_str("d/");
        b = b.dir(&path, 0o755);
    }
    b.file(&format!("{path}bottom"), "deep\n", 0o644)
        .build(Compression::Gzip)
}

fn wide_layer(entries: usize) -> Layer {
    let mut b = Layer::builder().dir("many/", 0o755);
    for i in 1..entries {
        b = b.file(&format!("many/f{i}"), "", 0o644);
    }
    b.build(Compression::Gzip)
}

/// A gzip bomb: one tar entry declaring `gib` GiB of zeros, sent as concatenated gzip
/// members of 1 MiB of zeros each (about 10 MB for 10 GiB). Pushed by hand: its diff id is
/// never reached (the pull must stop at the bound long before), so a stand-in is declared.
async fn push_bomb(reg: &Registry, repo: &str, gib: u64) -> Result<()> {
    use std::io::Write;
    let gzip = |bytes: &[u8]| -> Result<Vec<u8>> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(bytes)?;
        Ok(enc.finish()?)
    };
    let size = gib << 30;
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_path("zeros")?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    let mut blob = gzip(header.as_bytes())?;
    let mib = gzip(&vec![0u8; 1 << 20])?;
    for _ in 0..(size >> 20) {
        blob.extend_from_slice(&mib);
    }
    ensure!(blob.len() < 16 << 20, "bomb of {} bytes", blob.len());
    let layer_digest = images::push_blob(reg, repo, &blob).await?;
    let config = json!({
        "architecture": images::host_arch(),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [images::sha256_digest(b"stand-in")]},
    });
    let config = serde_json::to_vec(&config)?;
    let config_digest = images::push_blob(reg, repo, &config).await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": blob.len(),
        }],
    });
    images::put_manifest(
        reg,
        repo,
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest)?,
    )
    .await?;
    Ok(())
}

async fn fs_info(cri: &mut Cri) -> Result<(u64, u64), tonic::Status> {
    let resp = cri
        .images
        .image_fs_info(proto::ImageFsInfoRequest {})
        .await?
        .into_inner();
    let fs = resp.image_filesystems.first().cloned().unwrap_or_default();
    Ok((
        fs.used_bytes.map(|v| v.value).unwrap_or_default(),
        fs.inodes_used.map(|v| v.value).unwrap_or_default(),
    ))
}

/// A normal image pulls, ImageFsInfo answers and the image is removed, leaving no snapshot.
async fn service_is_healthy(reg: &Registry, d: &Daemon, cri: &mut Cri, after: &str) -> Result<()> {
    let image = Image::busybox(ImageConfig::default())?;
    image.push(reg, "library/healthy", &["v1"]).await?;
    let id = cri
        .pull("healthy:v1", None)
        .await
        .with_context(|| format!("a normal pull after {after}"))?;
    fs_info(cri)
        .await
        .with_context(|| format!("ImageFsInfo after {after}"))?;
    cri.remove_image(&id)
        .await
        .with_context(|| format!("RemoveImage after {after}"))?;
    ensure!(
        snapshot_entries(d).is_empty(),
        "after {after}: left in the snapshot dir: {:?}",
        snapshot_entries(d)
    );
    Ok(())
}

#[tokio::test]
async fn layers_past_the_bounds_are_refused_in_seconds_naming_the_bound() -> Result<()> {
    let Some((reg, daemon, mut cri)) = setup("layers_past_the_bounds").await? else {
        return Ok(());
    };
    one_layer_image(deep_layer(5_000))
        .push(&reg, "hostile/deep", &["v1"])
        .await?;
    one_layer_image(wide_layer(10_000))
        .push(&reg, "hostile/wide", &["v1"])
        .await?;
    push_bomb(&reg, "hostile/bomb", 10).await?;

    for (repo, bound) in [
        ("hostile/deep", "image.max_depth"),
        ("hostile/wide", "image.max_layer_entries"),
        ("hostile/bomb", "image.max_layer_bytes"),
    ] {
        let started = Instant::now();
        let err = cri
            .pull(&format!("{repo}:v1"), None)
            .await
            .err()
            .with_context(|| format!("{repo} was pulled"))?;
        let took = started.elapsed();
        eprintln!("{repo}: refused in {took:?}: {}", err.message());
        assert_eq!(err.code(), Code::DataLoss, "{repo}: {err:?}");
        assert!(err.message().contains(bound), "{repo}: {}", err.message());
        assert!(took < Duration::from_secs(20), "{repo} took {took:?}");
        // Nothing kept: no image, no snapshot, no unpack left half-done.
        let listed = cri.list_images().await?;
        assert!(
            listed
                .iter()
                .all(|i| i.repo_tags.iter().all(|t| !t.contains(repo))),
            "{repo} listed: {listed:?}"
        );
        assert!(
            snapshot_entries(&daemon).is_empty(),
            "{repo}: {:?}",
            snapshot_entries(&daemon)
        );
        service_is_healthy(&reg, &daemon, &mut cri, repo).await?;
    }
    Ok(())
}

#[tokio::test]
async fn a_tree_just_under_the_bounds_pulls_and_is_removed() -> Result<()> {
    let Some((reg, daemon, mut cri)) = setup("a_tree_just_under_the_bounds").await? else {
        return Ok(());
    };
    let image = Image {
        layers: vec![
            Layer::busybox(Compression::Gzip)?,
            deep_layer(200),
            // The directory and its files: exactly the entries bound.
            wide_layer(MAX_ENTRIES as usize),
        ],
        config: ImageConfig::default(),
        media_types: MediaTypes::Oci,
    };
    let pushed = image.push(&reg, "library/under", &["v1"]).await?;
    let id = cri.pull("under:v1", None).await?;
    assert_eq!(id, pushed.config_digest);

    let deep = snapshot_dir(&daemon)
        .join(image.layers[1].diff_id().trim_start_matches("sha256:"))
        .join("d/".repeat(200))
        .join("bottom");
    assert_eq!(std::fs::read_to_string(&deep)?, "deep\n");
    let wide = snapshot_dir(&daemon)
        .join(image.layers[2].diff_id().trim_start_matches("sha256:"))
        .join("many");
    assert_eq!(std::fs::read_dir(&wide)?.count(), MAX_ENTRIES as usize - 1);
    let (_, inodes) = fs_info(&mut cri).await?;
    assert!(inodes > MAX_ENTRIES + 200, "{inodes} inodes");

    cri.remove_image(&id).await?;
    assert!(cri.image_status(&id).await?.is_none());
    assert!(
        snapshot_entries(&daemon).is_empty(),
        "{:?}",
        snapshot_entries(&daemon)
    );
    Ok(())
}

/// `depth` nested directories planted below `dir` with mkdirat: no path names the bottom.
fn plant_deep_tree(dir: &Path, depth: usize) -> Result<()> {
    use nix::dir::Dir;
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let mut current = Dir::open(dir, flags, Mode::empty())?;
    for _ in 0..depth {
        nix::sys::stat::mkdirat(Some(current.as_raw_fd()), "deep", Mode::S_IRWXU)?;
        current = Dir::openat(Some(current.as_raw_fd()), "deep", flags, Mode::empty())?;
    }
    Ok(())
}

#[tokio::test]
async fn an_unwalkable_snapshot_fails_no_call() -> Result<()> {
    let Some((reg, mut daemon, mut cri)) = setup("an_unwalkable_snapshot").await? else {
        return Ok(());
    };
    let broken = Image {
        layers: vec![Layer::builder()
            .file("broken.txt", "broken\n", 0o644)
            .build(Compression::Gzip)],
        config: ImageConfig::default(),
        media_types: MediaTypes::Oci,
    };
    let other = Image::busybox(ImageConfig::default())?;
    broken.push(&reg, "library/broken", &["v1"]).await?;
    other.push(&reg, "library/other", &["v1"]).await?;
    let broken_id = cri.pull("broken:v1", None).await?;
    let other_id = cri.pull("other:v1", None).await?;
    let (_, inodes_before) = fs_info(&mut cri).await?;

    // 5,000 levels: a path to the bottom is ~30 KB, far past PATH_MAX.
    let snapshot =
        snapshot_dir(&daemon).join(broken.layers[0].diff_id().trim_start_matches("sha256:"));
    plant_deep_tree(&snapshot, 5_000)?;
    // And in an unpack left by a kill, which the next start sweeps.
    let leftover = snapshot_dir(&daemon).join(".tmp-0000000000000001");
    std::fs::create_dir(&leftover)?;
    plant_deep_tree(&leftover, 5_000)?;

    // ImageFsInfo measures the whole tree, deep part included.
    let (_, inodes) = fs_info(&mut cri).await?;
    assert!(
        inodes >= inodes_before + 10_000,
        "{inodes_before} → {inodes} inodes"
    );
    // Another image's pull, and its removal.
    let third = Image::busybox(ImageConfig {
        env: vec!["THIRD=1".into()],
        ..ImageConfig::default()
    })?;
    third.push(&reg, "library/third", &["v1"]).await?;
    let third_id = cri.pull("third:v1", None).await?;
    cri.remove_image(&third_id).await?;
    cri.remove_image(&other_id).await?;

    // A restart sweeps the deep leftover, and comes up whatever the snapshots hold.
    daemon.restart().await?;
    let mut cri = daemon.client().await?;
    assert!(!leftover.exists(), "the deep leftover survived a restart");
    fs_info(&mut cri).await?;

    // The broken image itself is removed, deep tree and all.
    let started = Instant::now();
    cri.remove_image(&broken_id).await?;
    eprintln!("removed the 5,000-deep snapshot in {:?}", started.elapsed());
    assert!(cri.image_status(&broken_id).await?.is_none());
    assert!(!snapshot.exists(), "the broken snapshot is still there");
    assert!(
        snapshot_entries(&daemon).is_empty(),
        "{:?}",
        snapshot_entries(&daemon)
    );
    fs_info(&mut cri).await?;
    service_is_healthy(&reg, &daemon, &mut cri, "the broken snapshot").await?;
    Ok(())
}

#[tokio::test]
async fn manifests_past_the_bounds_are_refused_naming_the_bound() -> Result<()> {
    let keys = "max_layers = 20\nmax_index_depth = 1\nmax_index_entries = 64\n\
                max_manifest_bytes = 32768\nmax_config_bytes = 16384\n";
    let Some((reg, daemon, mut cri)) = setup_with("manifests_past_the_bounds", keys).await? else {
        return Ok(());
    };
    let tiny = |i: usize| {
        Layer::builder()
            .file(&format!("f{i}"), format!("{i}\n"), 0o644)
            .build(Compression::Gzip)
    };
    Image {
        layers: (0..21).map(tiny).collect(),
        config: ImageConfig::default(),
        media_types: MediaTypes::Oci,
    }
    .push(&reg, "hostile/layers", &["v1"])
    .await?;

    let big_label = ImageConfig {
        labels: [("big".to_string(), "x".repeat(20_000))].into(),
        ..ImageConfig::default()
    };
    Image::busybox(big_label)?
        .push(&reg, "hostile/config", &["v1"])
        .await?;

    // An index of an index: one level more than allowed here.
    let busybox = Image::busybox(ImageConfig::default())?;
    let (inner, inner_bytes, children) = images::push_index_bytes(
        &reg,
        "hostile/nested",
        "inner",
        MediaTypes::Oci,
        &[(images::Platform::host(), &busybox)],
    )
    .await?;
    let index_type = MediaTypes::Oci.index();
    let outer = json!({
        "schemaVersion": 2,
        "mediaType": index_type,
        "manifests": [{
            "mediaType": index_type,
            "digest": inner,
            "size": inner_bytes.len(),
            "platform": {"architecture": images::host_arch(), "os": "linux"},
        }],
    });
    images::put_manifest(
        &reg,
        "hostile/nested",
        "v1",
        index_type,
        &serde_json::to_vec(&outer)?,
    )
    .await?;

    // Indexes listing many manifests (the same one, which the registry insists exists):
    // too many entries, then too many bytes.
    let child = children.first().context("no child pushed")?;
    let index_of = |n: usize| -> Result<Vec<u8>> {
        let entries: Vec<_> = (0..n)
            .map(|i| {
                json!({
                    "mediaType": child.manifest_media_type,
                    "digest": child.manifest_digest,
                    "size": child.manifest_bytes.len(),
                    "platform": {"architecture": "riscv64", "os": "linux", "variant": format!("v{i}")},
                })
            })
            .collect();
        Ok(serde_json::to_vec(
            &json!({"schemaVersion": 2, "mediaType": index_type, "manifests": entries}),
        )?)
    };
    let wide = index_of(100)?;
    ensure!(wide.len() < 32768, "{} bytes", wide.len());
    images::put_manifest(&reg, "hostile/nested", "wide", index_type, &wide).await?;
    let huge = index_of(250)?;
    ensure!(huge.len() > 32768, "{} bytes", huge.len());
    images::put_manifest(&reg, "hostile/nested", "huge", index_type, &huge).await?;

    for (repo, bound) in [
        ("hostile/layers:v1", "image.max_layers"),
        ("hostile/config:v1", "image.max_config_bytes"),
        ("hostile/nested:v1", "image.max_index_depth"),
        ("hostile/nested:wide", "image.max_index_entries"),
        ("hostile/nested:huge", "image.max_manifest_bytes"),
    ] {
        let err = cri
            .pull(repo, None)
            .await
            .err()
            .with_context(|| format!("{repo} was pulled"))?;
        eprintln!("{repo}: {}", err.message());
        assert_eq!(err.code(), Code::DataLoss, "{repo}: {err:?}");
        assert!(err.message().contains(bound), "{repo}: {}", err.message());
        assert!(cri.list_images().await?.is_empty(), "{repo} left an image");
        assert!(
            snapshot_entries(&daemon).is_empty(),
            "{repo}: {:?}",
            snapshot_entries(&daemon)
        );
    }
    // One level of index is within the bound.
    let id = cri.pull("hostile/nested:inner", None).await?;
    cri.remove_image(&id).await?;
    service_is_healthy(&reg, &daemon, &mut cri, "the manifests").await?;
    Ok(())
}
