//! ImageService end to end: a real corrald pulling from a real registry on loopback, with
//! images the suite builds itself.

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use e2e::client::Cri;
use e2e::daemon::Daemon;
use e2e::images::{self, Compression, Image, ImageConfig, Layer, MediaTypes, Platform};
use e2e::registry::{skip_reason, Registry, RegistryOptions};
use e2e::skip::have_root;
use e2e::tree;
use tonic::Code;

/// A registry plus a corrald whose mirrors for docker.io, registry.k8s.io, gcr.io and
/// quay.io all point at it.
async fn setup(test: &str) -> Result<Option<(Registry, Daemon, Cri)>> {
    if !have_root(test) {
        return Ok(None);
    }
    if let Some(why) = skip_reason(&RegistryOptions::default()) {
        eprintln!("skipping {test}: {why}");
        return Ok(None);
    }
    let reg = Registry::start(RegistryOptions::default()).await?;
    let mirrors: String = ["docker.io", "registry.k8s.io", "gcr.io", "quay.io"]
        .iter()
        .map(|h| {
            format!(
                "[registry.mirrors.{h:?}]\nendpoints = [\"{}\"]\n",
                reg.url()
            )
        })
        .collect();
    let daemon = Daemon::start(&mirrors).await?;
    let cri = daemon.client().await?;
    Ok(Some((reg, daemon, cri)))
}

fn snapshot_dirs(d: &Daemon) -> Vec<PathBuf> {
    std::fs::read_dir(d.root.join("images/snapshots"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn blob_count(d: &Daemon) -> usize {
    std::fs::read_dir(d.root.join("images/content/blobs/sha256"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

fn app_config() -> ImageConfig {
    ImageConfig {
        user: Some("1000:1000".into()),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec!["echo hello".into()]),
        env: vec![images::DEFAULT_PATH_ENV.into(), "GREETING=hi".into()],
        working_dir: Some("/home/app".into()),
        labels: [("org.corral.test".to_string(), "yes".to_string())].into(),
        stop_signal: Some("SIGINT".into()),
        ..ImageConfig::default()
    }
}

/// Three layers: busybox, one adding files, one deleting a file and making a dir opaque.
fn layered_image(compression: Compression, media_types: MediaTypes) -> Result<Image> {
    let base = Layer::busybox(compression)?;
    let add = Layer::builder()
        .dir("data/", 0o755)
        .file("data/keep.txt", "keep\n", 0o644)
        .file("data/gone.txt", "gone\n", 0o600)
        .dir("data/sub/", 0o750)
        .file("data/sub/old.txt", "old\n", 0o644)
        .owner(1000, 1000)
        .file("data/owned.txt", "mine\n", 0o640)
        .symlink("data/link", "keep.txt")
        .hardlink("data/hard", "data/keep.txt")
        .file("data/setuid", "#!/bin/sh\n", 0o4755)
        .build(compression);
    let delete = Layer::builder()
        .dir("data/", 0o755)
        .whiteout("data/gone.txt")
        .dir("data/sub/", 0o750)
        .opaque("data/sub/")
        .file("data/sub/new.txt", "new\n", 0o644)
        .build(compression);
    Ok(Image {
        layers: vec![base, add, delete],
        config: app_config(),
        media_types,
    })
}

#[tokio::test]
async fn pull_by_tag_and_digest_with_whiteouts_and_config() -> Result<()> {
    let Some((reg, daemon, mut cri)) = setup("pull_by_tag_and_digest").await? else {
        return Ok(());
    };
    let image = layered_image(Compression::Gzip, MediaTypes::Oci)?;
    let pushed = image.push(&reg, "library/layered", &["v1"]).await?;

    // Through the docker.io mirror, by the short name a user types.
    let id = cri.pull("layered:v1", None).await?;
    assert_eq!(id, pushed.config_digest, "image id is the config digest");
    let img = cri
        .image_status("docker.io/library/layered:v1")
        .await?
        .context("status")?;
    assert_eq!(img.id, pushed.config_digest);
    assert_eq!(
        img.repo_tags,
        ["docker.io/library/layered:v1"],
        "original name, not the mirror's"
    );
    assert_eq!(
        img.repo_digests,
        [format!(
            "docker.io/library/layered@{}",
            pushed.manifest_digest
        )]
    );
    assert_eq!(img.uid.map(|u| u.value), Some(1000));
    assert!(img.size > 0);
    let expected_size = pushed.config_bytes.len() as u64
        + image
            .layers
            .iter()
            .map(|l| l.compressed().map(|b| b.len() as u64))
            .sum::<Result<u64>>()?;
    assert_eq!(img.size, expected_size);

    // Verbose status carries the image config as the registry served it.
    let info = cri.image_info(&id).await?;
    let cfg = &info["imageSpec"]["config"];
    assert_eq!(cfg["User"], "1000:1000");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(cfg["Cmd"], serde_json::json!(["echo hello"]));
    assert_eq!(cfg["WorkingDir"], "/home/app");
    assert_eq!(cfg["Env"][1], "GREETING=hi");
    assert_eq!(cfg["Labels"]["org.corral.test"], "yes");
    assert_eq!(cfg["StopSignal"], "SIGINT");

    // Each snapshot holds exactly what its layer's tar held, whiteouts translated.
    let dirs: Vec<PathBuf> = info["snapshots"]
        .as_array()
        .context("snapshots")?
        .iter()
        .map(|v| PathBuf::from(v.as_str().unwrap_or_default()))
        .collect();
    assert_eq!(dirs.len(), 3);
    for (layer, dir) in image.layers.iter().zip(&dirs) {
        let n = tree::compare(layer.tar(), dir)
            .with_context(|| format!("comparing {}", dir.display()))?;
        assert!(n > 0);
    }

    // By digest, and every way of naming it resolves to the same image.
    let by_digest = format!("docker.io/library/layered@{}", pushed.manifest_digest);
    assert_eq!(cri.pull(&by_digest, None).await?, id);
    for name in [
        "layered:v1",
        "docker.io/library/layered:v1",
        by_digest.as_str(),
        id.as_str(),
        id.trim_start_matches("sha256:"),
        &id.trim_start_matches("sha256:")[..12],
    ] {
        let found = cri.image_status(name).await?;
        assert_eq!(found.map(|i| i.id), Some(id.clone()), "lookup by {name}");
    }
    assert_eq!(cri.list_images().await?.len(), 1);

    // ImageFsInfo counts real bytes and inodes.
    let fs = cri
        .images
        .image_fs_info(proto::ImageFsInfoRequest {})
        .await?
        .into_inner();
    let usage = &fs.image_filesystems[0];
    assert!(
        usage.used_bytes.as_ref().map_or(0, |u| u.value) > 1_000_000,
        "busybox is over 1 MB"
    );
    assert!(usage.inodes_used.as_ref().map_or(0, |u| u.value) > 20);
    drop(daemon);
    Ok(())
}

#[tokio::test]
async fn registries_indexes_lists_and_zstd() -> Result<()> {
    let Some((reg, _daemon, mut cri)) = setup("registries_indexes_lists_and_zstd").await? else {
        return Ok(());
    };
    // An OCI index with two platforms: the host's is chosen.
    let host = Image::busybox(ImageConfig::default())?;
    let foreign_cfg = ImageConfig {
        architecture: Platform::foreign().architecture,
        ..ImageConfig::default()
    };
    let foreign = Image {
        layers: vec![Layer::builder()
            .file("foreign", "x", 0o644)
            .build(Compression::Gzip)],
        config: foreign_cfg,
        media_types: MediaTypes::Oci,
    };
    let (index_digest, children) = images::push_index(
        &reg,
        "multi/oci",
        "v1",
        MediaTypes::Oci,
        &[(Platform::foreign(), &foreign), (Platform::host(), &host)],
    )
    .await?;
    let id = cri.pull("registry.k8s.io/multi/oci:v1", None).await?;
    assert_eq!(
        id,
        children[1].config_digest,
        "picked linux/{}",
        images::host_arch()
    );
    let img = cri.image_status(&id).await?.context("status")?;
    assert_eq!(
        img.repo_digests,
        [format!("registry.k8s.io/multi/oci@{index_digest}")],
        "repo digest is the index digest"
    );

    // A Docker manifest list.
    let mut docker_host = Image::busybox(ImageConfig::default())?;
    docker_host.media_types = MediaTypes::Docker;
    docker_host.config.cmd = Some(vec!["docker".into()]);
    let mut docker_foreign = foreign.clone();
    docker_foreign.media_types = MediaTypes::Docker;
    let (_, children) = images::push_index(
        &reg,
        "multi/docker",
        "v1",
        MediaTypes::Docker,
        &[
            (Platform::host(), &docker_host),
            (Platform::foreign(), &docker_foreign),
        ],
    )
    .await?;
    let id = cri.pull("gcr.io/multi/docker:v1", None).await?;
    assert_eq!(id, children[0].config_digest);

    // A zstd layer, and an uncompressed one, unpack to what their tars held.
    let zimage = Image {
        layers: vec![
            Layer::busybox(Compression::Zstd)?,
            Layer::builder()
                .file("plain.txt", "plain\n", 0o644)
                .build(Compression::None),
        ],
        config: ImageConfig::default(),
        media_types: MediaTypes::Oci,
    };
    zimage.push(&reg, "zstd/img", &["v1"]).await?;
    let id = cri.pull("quay.io/zstd/img:v1", None).await?;
    let info = cri.image_info(&id).await?;
    for (layer, dir) in zimage
        .layers
        .iter()
        .zip(info["snapshots"].as_array().context("snapshots")?)
    {
        tree::compare(
            layer.tar(),
            &PathBuf::from(dir.as_str().unwrap_or_default()),
        )?;
    }

    // A Docker schema 2 image pushed directly to the registry, pulled by its loopback name
    // (https first, then plain http, as Docker does for loopback registries).
    let mut docker = Image::busybox(ImageConfig::default())?;
    docker.media_types = MediaTypes::Docker;
    let pushed = docker.push(&reg, "direct/docker", &["v2"]).await?;
    let name = format!("{}/direct/docker:v2", reg.host());
    assert_eq!(cri.pull(&name, None).await?, pushed.config_digest);
    // The same busybox config was pulled through the mirror above: one image, two names.
    let tags = cri
        .image_status(&name)
        .await?
        .map(|i| i.repo_tags)
        .unwrap_or_default();
    assert!(tags.contains(&name), "{tags:?}");
    assert!(
        tags.contains(&"registry.k8s.io/multi/oci:v1".to_string()),
        "{tags:?}"
    );
    Ok(())
}

#[tokio::test]
async fn three_tags_one_image_and_removal_frees_disk() -> Result<()> {
    let Some((reg, mut daemon, mut cri)) = setup("three_tags_one_image").await? else {
        return Ok(());
    };
    let image = Image::busybox(app_config())?;
    let pushed = image.push(&reg, "library/tagged", &["a", "b", "c"]).await?;
    for tag in ["a", "b", "c"] {
        assert_eq!(
            cri.pull(&format!("tagged:{tag}"), None).await?,
            pushed.config_digest
        );
    }
    let list = cri.list_images().await?;
    assert_eq!(list.len(), 1, "one image under three tags");
    let mut tags = list[0].repo_tags.clone();
    tags.sort();
    assert_eq!(
        tags,
        [
            "docker.io/library/tagged:a",
            "docker.io/library/tagged:b",
            "docker.io/library/tagged:c"
        ]
    );
    // ListImages with a filter.
    let filtered = cri
        .images
        .list_images(proto::ListImagesRequest {
            filter: Some(proto::ImageFilter {
                image: Some(e2e::client::spec("tagged:b")),
            }),
        })
        .await?
        .into_inner()
        .images;
    assert_eq!(filtered.len(), 1);
    let filtered = cri
        .images
        .list_images(proto::ListImagesRequest {
            filter: Some(proto::ImageFilter {
                image: Some(e2e::client::spec("nothing:here")),
            }),
        })
        .await?
        .into_inner()
        .images;
    assert!(filtered.is_empty());

    // Images survive a crash of corrald.
    assert!(!snapshot_dirs(&daemon).is_empty());
    daemon.kill9();
    daemon.restart().await?;
    let mut cri = daemon.client().await?;
    let list = cri.list_images().await?;
    assert_eq!(
        list.len(),
        1,
        "images listed again after kill -9 and restart"
    );
    assert_eq!(list[0].repo_tags.len(), 3);

    // Removing by one tag removes the image with all its names, and frees its disk.
    cri.remove_image("tagged:b").await?;
    assert!(cri.list_images().await?.is_empty());
    assert!(cri.image_status("tagged:a").await?.is_none());
    assert!(
        snapshot_dirs(&daemon).is_empty(),
        "snapshots collected: {:?}",
        snapshot_dirs(&daemon)
    );
    assert_eq!(blob_count(&daemon), 0, "blobs collected");
    // Idempotent.
    cri.remove_image("tagged:b").await?;
    cri.remove_image(&pushed.config_digest).await?;

    // A clean stop on SIGTERM removes the socket.
    let status = daemon.stop()?;
    assert!(status.success(), "corrald exit status {status}");
    assert!(!daemon.socket.exists());
    Ok(())
}

#[tokio::test]
async fn a_moved_tag_drops_the_old_image() -> Result<()> {
    let Some((reg, daemon, mut cri)) = setup("a_moved_tag").await? else {
        return Ok(());
    };
    let one = Image::busybox(ImageConfig {
        cmd: Some(vec!["one".into()]),
        ..ImageConfig::default()
    })?;
    let two = Image::busybox(ImageConfig {
        cmd: Some(vec!["two".into()]),
        ..ImageConfig::default()
    })?;
    let p1 = one.push(&reg, "library/moving", &["latest"]).await?;
    assert_eq!(cri.pull("moving", None).await?, p1.config_digest);
    let p2 = two.push(&reg, "library/moving", &["latest"]).await?;
    assert_eq!(cri.pull("moving", None).await?, p2.config_digest);
    // As with containerd, the old image keeps its digest name (kubelet's image GC removes it).
    let mut list = cri.list_images().await?;
    list.sort_by_key(|i| i.repo_tags.len());
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, p1.config_digest);
    assert!(list[0].repo_tags.is_empty(), "the tag moved away");
    assert_eq!(
        list[0].repo_digests,
        [format!("docker.io/library/moving@{}", p1.manifest_digest)]
    );
    assert_eq!(list[1].id, p2.config_digest);
    assert_eq!(list[1].repo_tags, ["docker.io/library/moving:latest"]);
    cri.remove_image(&p1.config_digest).await?;
    assert_eq!(cri.list_images().await?.len(), 1);
    // The shared busybox layer is still there, unpacked once.
    assert_eq!(snapshot_dirs(&daemon).len(), 1);
    Ok(())
}

#[tokio::test]
async fn errors_are_clear_and_leave_nothing() -> Result<()> {
    let Some((reg, daemon, mut cri)) = setup("errors_are_clear").await? else {
        return Ok(());
    };
    // Unknown image.
    let err = cri
        .pull("registry.k8s.io/no/such:image", None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("no/such"), "{}", err.message());

    // Malformed references name the field and the reference.
    for bad in [
        "Upper/Case",
        "busybox:bad tag",
        "busybox@sha256:123",
        "a//b",
    ] {
        let err = cri.pull(bad, None).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}: {err:?}");
        assert!(err.message().contains("image.image"), "{}", err.message());
        assert!(err.message().contains(bad), "{}", err.message());
    }
    let err = cri.pull("", None).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A blob whose bytes do not match its digest.
    images::push_tampered_blob(&reg, "library/tampered", "v1").await?;
    let err = cri.pull("tampered:v1", None).await.unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(err.message().contains("hashes to"), "{}", err.message());

    // A layer whose uncompressed content does not match the config's diff_id.
    images::push_corrupt(&reg, "library/corrupt", "v1").await?;
    let err = cri.pull("corrupt:v1", None).await.unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(err.message().contains("diff"), "{}", err.message());

    // Hostile layers: rejected, nothing written outside, nothing stored.
    let _ = std::fs::remove_file(images::HOSTILE_ABS_PATH);
    let _ = std::fs::remove_file(images::HOSTILE_SYMLINK_PATH);
    let hostile = [
        ("dotdot", images::hostile_dotdot()),
        ("absolute", images::hostile_absolute()),
        ("symlink", images::hostile_symlink_write()),
        ("hardlink", images::hostile_hardlink()),
    ];
    for (name, tar) in hostile {
        let image = Image {
            layers: vec![Layer::from_raw_tar(tar, Compression::Gzip)],
            config: ImageConfig::default(),
            media_types: MediaTypes::Oci,
        };
        image
            .push(&reg, &format!("hostile/{name}"), &["v1"])
            .await?;
        let err = cri
            .pull(&format!("quay.io/hostile/{name}:v1"), None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::DataLoss, "{name}: {err:?}");
        assert!(
            err.message().contains("rejected"),
            "{name}: {}",
            err.message()
        );
    }
    ensure!(
        !PathBuf::from(images::HOSTILE_ABS_PATH).exists(),
        "absolute path escaped"
    );
    ensure!(
        !PathBuf::from(images::HOSTILE_SYMLINK_PATH).exists(),
        "symlink write escaped"
    );
    assert!(!daemon.dir().join("escape").exists());

    assert!(
        cri.list_images().await?.is_empty(),
        "no half image is visible"
    );
    assert!(
        snapshot_dirs(&daemon).is_empty(),
        "no snapshot left: {:?}",
        snapshot_dirs(&daemon)
    );
    let ingest = std::fs::read_dir(daemon.root.join("images/content/ingest"))?.count();
    assert_eq!(ingest, 0, "no ingest file left");
    Ok(())
}

#[tokio::test]
async fn tls_registry_with_basic_auth() -> Result<()> {
    if !have_root("tls_registry_with_basic_auth") {
        return Ok(());
    }
    let opts = RegistryOptions {
        tls: true,
        htpasswd: Some(("corral".into(), "s3cret".into())),
    };
    if let Some(why) = skip_reason(&opts) {
        eprintln!("skipping tls_registry_with_basic_auth: {why}");
        return Ok(());
    }
    let reg = Registry::start(opts).await?;
    let ca = reg.ca_cert_path().context("ca")?.display().to_string();
    let daemon = Daemon::start(&format!(
        "[registry.configs.{:?}.tls]\nca_file = {ca:?}\n",
        reg.host()
    ))
    .await?;
    let mut cri = daemon.client().await?;
    let pushed = Image::busybox(ImageConfig::default())?
        .push(&reg, "private/app", &["v1"])
        .await?;
    let name = format!("{}/private/app:v1", reg.host());

    let err = cri.pull(&name, None).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(
        err.message().contains("no credentials"),
        "{}",
        err.message()
    );

    let wrong = proto::AuthConfig {
        username: "corral".into(),
        password: "wrong".into(),
        ..Default::default()
    };
    let err = cri.pull(&name, Some(wrong)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let good = proto::AuthConfig {
        username: "corral".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    assert_eq!(cri.pull(&name, Some(good)).await?, pushed.config_digest);

    // The docker config.json form: base64 of user:password.
    cri.remove_image(&name).await?;
    use base64::Engine;
    let auth = proto::AuthConfig {
        auth: base64::engine::general_purpose::STANDARD.encode("corral:s3cret"),
        ..Default::default()
    };
    assert_eq!(cri.pull(&name, Some(auth)).await?, pushed.config_digest);
    Ok(())
}

#[tokio::test]
async fn concurrent_pulls_share_one_download() -> Result<()> {
    let Some((reg, daemon, cri)) = setup("concurrent_pulls").await? else {
        return Ok(());
    };
    let image = layered_image(Compression::Zstd, MediaTypes::Oci)?;
    let pushed = image.push(&reg, "library/together", &["v1"]).await?;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut c = cri.clone();
        tasks.push(tokio::spawn(
            async move { c.pull("together:v1", None).await },
        ));
    }
    for t in tasks {
        assert_eq!(t.await??, pushed.config_digest);
    }
    assert_eq!(snapshot_dirs(&daemon).len(), 3, "each layer unpacked once");
    let log = std::fs::read_to_string(&daemon.log)?;
    let fetches = log.matches("layer fetched").count();
    assert_eq!(
        fetches,
        3,
        "each blob downloaded once:\n{}",
        daemon.log_tail(40)
    );
    Ok(())
}

#[tokio::test]
async fn a_pull_killed_midway_leaves_no_image() -> Result<()> {
    let Some((reg, mut daemon, mut cri)) = setup("a_pull_killed_midway").await? else {
        return Ok(());
    };
    // 64 MiB of incompressible data makes the pull last long enough to be killed.
    let mut data = vec![0u8; 64 << 20];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let image = Image {
        layers: vec![
            Layer::busybox(Compression::Gzip)?,
            Layer::builder()
                .file("big", data, 0o644)
                .build(Compression::None),
        ],
        config: ImageConfig::default(),
        media_types: MediaTypes::Oci,
    };
    image.push(&reg, "library/big", &["v1"]).await?;
    let mut c = cri.clone();
    let pull = tokio::spawn(async move { c.pull("big:v1", None).await });
    // Kill as soon as a download is under way: a partial blob sits in the ingest dir.
    let ingest = daemon.root.join("images/content/ingest");
    for _ in 0..2000 {
        if std::fs::read_dir(&ingest).is_ok_and(|mut d| d.next().is_some()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    daemon.kill9();
    assert!(pull.await?.is_err(), "the pull was cut off");
    daemon.restart().await?;
    cri = daemon.client().await?;
    assert!(
        cri.list_images().await?.is_empty(),
        "no half image after kill -9"
    );
    assert!(cri.image_status("big:v1").await?.is_none());
    assert!(
        snapshot_dirs(&daemon).is_empty(),
        "partial snapshots collected at start"
    );
    assert_eq!(
        std::fs::read_dir(daemon.root.join("images/content/ingest"))?.count(),
        0
    );
    // And the pull works after the restart.
    cri.pull("big:v1", None).await?;
    assert_eq!(cri.list_images().await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_second_daemon_on_the_same_root_refuses_to_start() -> Result<()> {
    if !have_root("a_second_daemon") {
        return Ok(());
    }
    let daemon = Daemon::start("root_lock_wait_seconds = 1\n").await?;
    let started = std::time::Instant::now();
    let out = std::process::Command::new(e2e::daemon::corrald_binary()?)
        .arg("--config")
        .arg(&daemon.config)
        .arg("--listen")
        .arg(daemon.dir().join("other.sock"))
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(
        stderr.contains("waiting for the root lock"),
        "it waited first: {stderr}"
    );
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    // The first daemon still serves.
    let mut cri = daemon.client().await?;
    let v = cri
        .runtime
        .version(proto::VersionRequest::default())
        .await?
        .into_inner();
    assert_eq!(v.runtime_name, "corral");
    assert_eq!(v.runtime_api_version, "v1");
    // Socket mode 0660.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&daemon.socket)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    Ok(())
}
