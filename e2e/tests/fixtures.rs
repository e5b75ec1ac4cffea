//! Self-test of the suite's fixtures: the loopback registry and the image builder.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{bail, ensure, Context, Result};
use e2e::images::{
    self, get_blob, get_manifest, push_index, sha256_digest, Compression, Image, ImageConfig,
    Layer, MediaTypes, Platform,
};
use e2e::registry::{skip_reason, Registry, RegistryOptions};
use serde_json::Value;

fn skip(opts: &RegistryOptions) -> bool {
    if let Some(reason) = skip_reason(opts) {
        eprintln!("skipping: {reason}");
        return true;
    }
    if !std::path::Path::new("/bin/busybox").exists() {
        eprintln!("skipping: /bin/busybox not found (apt-get install busybox-static)");
        return true;
    }
    false
}

/// (path, type, link target, contents, mode, uid, gid) of every entry.
type Entry = (String, u8, String, Vec<u8>, u32, u64, u64);

fn entries(tar: &[u8]) -> Result<Vec<Entry>> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let h = entry.header();
        let (kind, mode, uid, gid) = (h.entry_type().as_byte(), h.mode()?, h.uid()?, h.gid()?);
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        out.push((path, kind, link, data, mode, uid, gid));
    }
    Ok(out)
}

fn find<'a>(entries: &'a [Entry], path: &str) -> Result<&'a Entry> {
    entries
        .iter()
        .find(|e| e.0 == path)
        .with_context(|| format!("no entry {path}"))
}

/// GETs a manifest and checks body digest, Docker-Content-Digest and Content-Type.
async fn check_manifest(
    reg: &Registry,
    repo: &str,
    reference: &str,
    accept: &str,
    digest: &str,
    media_type: &str,
) -> Result<Vec<u8>> {
    let (ct, header, body) = get_manifest(reg, repo, reference, accept).await?;
    ensure!(
        sha256_digest(&body) == digest,
        "{repo}:{reference}: body digest {} != {digest}",
        sha256_digest(&body)
    );
    ensure!(
        header.as_deref() == Some(digest),
        "{repo}:{reference}: Docker-Content-Digest {header:?} != {digest}"
    );
    ensure!(
        ct == media_type,
        "{repo}:{reference}: Content-Type {ct} != {media_type}"
    );
    Ok(body)
}

#[test]
fn layer_builder_and_hostile_tars() -> Result<()> {
    let build = || {
        Layer::builder()
            .dir("etc", 0o755)
            .file("/etc/hello", "hi\n", 0o644)
            .owner(1000, 1001)
            .mtime(42)
            .file("etc/owned", "x", 0o600)
            .symlink("etc/link", "/etc/hello")
            .hardlink("etc/hard", "/etc/hello")
            .whiteout("etc/gone")
            .whiteout("top")
            .opaque("/var/lib/")
            .file(&format!("{}/long", "d".repeat(150)), "long", 0o644)
            .symlink("longlink", &"t".repeat(150))
            .build(Compression::None)
    };
    let layer = build();
    ensure!(
        layer.diff_id() == build().diff_id(),
        "builder is not deterministic"
    );
    ensure!(layer.diff_id() == sha256_digest(layer.tar()));
    let e = entries(layer.tar())?;
    ensure!(find(&e, "etc/")?.1 == b'5');
    ensure!(find(&e, "etc/hello")?.3 == b"hi\n");
    let owned = find(&e, "etc/owned")?;
    ensure!(
        (owned.4, owned.5, owned.6) == (0o600, 1000, 1001),
        "{owned:?}"
    );
    ensure!(find(&e, "etc/link")?.2 == "/etc/hello");
    let hard = find(&e, "etc/hard")?;
    ensure!(hard.1 == b'1' && hard.2 == "etc/hello");
    find(&e, "etc/.wh.gone")?;
    find(&e, ".wh.top")?;
    find(&e, "var/lib/.wh..wh..opq")?;
    ensure!(find(&e, &format!("{}/long", "d".repeat(150)))?.3 == b"long");
    ensure!(find(&e, "longlink")?.2 == "t".repeat(150));

    // Compressed blobs decompress back to the tar.
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let l = Layer::from_raw_tar(layer.tar().to_vec(), c);
        let blob = l.compressed()?;
        ensure!(blob == l.compressed()?, "{c:?} not deterministic");
        let back = match c {
            Compression::Gzip => {
                let mut v = Vec::new();
                flate2::read::GzDecoder::new(&blob[..]).read_to_end(&mut v)?;
                v
            }
            Compression::Zstd => zstd::decode_all(&blob[..])?,
            Compression::None => blob.clone(),
        };
        ensure!(back == layer.tar(), "{c:?} round trip");
    }

    let e = entries(&images::hostile_dotdot())?;
    ensure!(e.len() == 1 && e[0].0 == "../escape" && e[0].3 == images::HOSTILE_CONTENT);
    let e = entries(&images::hostile_absolute())?;
    ensure!(e.len() == 1 && e[0].0 == images::HOSTILE_ABS_PATH);
    let e = entries(&images::hostile_symlink_write())?;
    ensure!(e.len() == 2 && e[0].1 == b'2' && e[0].0 == "link" && e[0].2 == "/tmp");
    ensure!(e[1].0 == "link/corral-e2e-symlink-escape" && e[1].1 == b'0');
    let e = entries(&images::hostile_hardlink())?;
    ensure!(e.len() == 1 && e[0].1 == b'1' && e[0].0 == "shadow" && e[0].2 == "/etc/shadow");
    Ok(())
}

#[test]
fn busybox_layer() -> Result<()> {
    if !std::path::Path::new("/bin/busybox").exists() {
        eprintln!("skipping: /bin/busybox not found (apt-get install busybox-static)");
        return Ok(());
    }
    let layer = Layer::busybox(Compression::Gzip)?;
    let e = entries(layer.tar())?;
    ensure!(find(&e, "bin/busybox")?.3 == std::fs::read("/bin/busybox")?);
    for applet in [
        "sh", "echo", "cat", "ls", "sleep", "true", "false", "id", "env", "pwd", "printf",
    ] {
        ensure!(find(&e, &format!("bin/{applet}"))?.2 == "busybox");
    }
    ensure!(find(&e, "tmp/")?.4 == 0o1777);
    let home = find(&e, "home/app/")?;
    ensure!((home.5, home.6) == (1000, 1000));
    let passwd = String::from_utf8(find(&e, "etc/passwd")?.3.clone())?;
    ensure!(passwd.contains("app:x:1000:1000:"));
    ensure!(String::from_utf8(find(&e, "etc/group")?.3.clone())?.contains("app:x:1000:"));
    Ok(())
}

#[tokio::test]
async fn plain_registry_images() -> Result<()> {
    let opts = RegistryOptions::default();
    if skip(&opts) {
        return Ok(());
    }
    let reg = Registry::start(opts).await?;
    ensure!(reg.url() == format!("http://{}", reg.host()));
    ensure!(reg.ca_cert_path().is_none() && reg.credentials().is_none());
    let v2 = reg
        .client()
        .get(format!("{}/v2/", reg.url()))
        .send()
        .await?;
    ensure!(v2.status() == 200, "GET /v2/: {}", v2.status());

    // A two-layer OCI image: busybox, then a layer with whiteouts and an opaque dir.
    let upper = Layer::builder()
        .whiteout("etc/group")
        .opaque("home")
        .dir("data", 0o755)
        .owner(1000, 1000)
        .file("data/hello.txt", "hello\n", 0o644)
        .build(Compression::Gzip);
    let mut labels = BTreeMap::new();
    labels.insert("org.example.e2e".to_string(), "yes".to_string());
    let oci = Image {
        layers: vec![Layer::busybox(Compression::Gzip)?, upper],
        config: ImageConfig {
            user: Some("1000:1000".into()),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec!["echo hi".into()]),
            env: vec![images::DEFAULT_PATH_ENV.into(), "FOO=bar".into()],
            working_dir: Some("/data".into()),
            labels,
            stop_signal: Some("SIGINT".into()),
            ..ImageConfig::default()
        },
        media_types: MediaTypes::Oci,
    };
    let p = oci.push(&reg, "e2e/oci", &["v1"]).await?;
    ensure!(p.layer_digests.len() == 2);
    let body = check_manifest(
        &reg,
        "e2e/oci",
        "v1",
        images::OCI_MANIFEST,
        &p.manifest_digest,
        images::OCI_MANIFEST,
    )
    .await?;
    ensure!(body == p.manifest_bytes);
    let m: Value = serde_json::from_slice(&body)?;
    ensure!(m["config"]["digest"] == p.config_digest.as_str());
    ensure!(m["config"]["mediaType"] == images::OCI_CONFIG);
    ensure!(m["layers"][1]["mediaType"] == images::OCI_LAYER_GZIP);
    ensure!(m["layers"][1]["digest"] == p.layer_digests[1].as_str());
    // By digest too.
    check_manifest(
        &reg,
        "e2e/oci",
        &p.manifest_digest,
        images::OCI_MANIFEST,
        &p.manifest_digest,
        images::OCI_MANIFEST,
    )
    .await?;
    // Config and layer blobs come back as pushed.
    let config = get_blob(&reg, "e2e/oci", &p.config_digest).await?;
    ensure!(config == p.config_bytes);
    let c: Value = serde_json::from_slice(&config)?;
    ensure!(c["architecture"] == images::host_arch() && c["os"] == "linux");
    ensure!(c["config"]["User"] == "1000:1000" && c["config"]["WorkingDir"] == "/data");
    ensure!(c["config"]["StopSignal"] == "SIGINT");
    ensure!(c["config"]["Labels"]["org.example.e2e"] == "yes");
    ensure!(c["config"]["Env"][1] == "FOO=bar");
    ensure!(c["config"]["Entrypoint"][0] == "/bin/sh" && c["config"]["Cmd"][0] == "echo hi");
    ensure!(c["rootfs"]["type"] == "layers");
    ensure!(c["rootfs"]["diff_ids"][0] == oci.layers[0].diff_id().as_str());
    ensure!(c["rootfs"]["diff_ids"][1] == oci.layers[1].diff_id().as_str());
    ensure!(c["history"].as_array().map(Vec::len) == Some(2));
    let blob = get_blob(&reg, "e2e/oci", &p.layer_digests[1]).await?;
    ensure!(sha256_digest(&blob) == p.layer_digests[1]);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&blob[..]).read_to_end(&mut tar)?;
    ensure!(tar == oci.layers[1].tar());
    let e = entries(&tar)?;
    find(&e, "etc/.wh.group")?;
    find(&e, "home/.wh..wh..opq")?;
    // Pushing the same image again gives the same digests.
    ensure!(oci.push(&reg, "e2e/oci", &["v1-again"]).await? == p);

    // A Docker schema 2 image under three tags.
    let docker = Image {
        layers: vec![Layer::busybox(Compression::Gzip)?],
        config: ImageConfig {
            cmd: Some(vec!["sleep".into(), "3600".into()]),
            ..ImageConfig::default()
        },
        media_types: MediaTypes::Docker,
    };
    let d = docker
        .push(&reg, "e2e/docker", &["a", "b", "latest"])
        .await?;
    ensure!(d.manifest_media_type == images::DOCKER_MANIFEST);
    for tag in ["a", "b", "latest"] {
        let body = check_manifest(
            &reg,
            "e2e/docker",
            tag,
            images::DOCKER_MANIFEST,
            &d.manifest_digest,
            images::DOCKER_MANIFEST,
        )
        .await?;
        let m: Value = serde_json::from_slice(&body)?;
        ensure!(m["config"]["mediaType"] == images::DOCKER_CONFIG);
        ensure!(m["layers"][0]["mediaType"] == images::DOCKER_LAYER_GZIP);
    }

    // A zstd-layer image.
    let zimg = Image {
        layers: vec![Layer::busybox(Compression::Zstd)?],
        config: ImageConfig::default(),
        media_types: MediaTypes::Oci,
    };
    let z = zimg.push(&reg, "e2e/zstd", &["v1"]).await?;
    let body = check_manifest(
        &reg,
        "e2e/zstd",
        "v1",
        images::ACCEPT_ALL_MANIFESTS,
        &z.manifest_digest,
        images::OCI_MANIFEST,
    )
    .await?;
    let m: Value = serde_json::from_slice(&body)?;
    ensure!(m["layers"][0]["mediaType"] == images::OCI_LAYER_ZSTD);
    let blob = get_blob(&reg, "e2e/zstd", &z.layer_digests[0]).await?;
    ensure!(zstd::decode_all(&blob[..])? == zimg.layers[0].tar());

    // An OCI index and a Docker manifest list over two platforms.
    for (mt, repo) in [
        (MediaTypes::Oci, "e2e/multi"),
        (MediaTypes::Docker, "e2e/multi-docker"),
    ] {
        let image = Image {
            media_types: mt,
            ..Image::busybox(ImageConfig::default())?
        };
        let children = [(Platform::host(), &image), (Platform::foreign(), &image)];
        let (index_digest, kids) = push_index(&reg, repo, "latest", mt, &children).await?;
        ensure!(kids.len() == 2 && kids[0].manifest_digest != kids[1].manifest_digest);
        let body = check_manifest(
            &reg,
            repo,
            "latest",
            images::ACCEPT_ALL_MANIFESTS,
            &index_digest,
            mt.index(),
        )
        .await?;
        let idx: Value = serde_json::from_slice(&body)?;
        for (i, (platform, _)) in children.iter().enumerate() {
            let entry = &idx["manifests"][i];
            ensure!(entry["digest"] == kids[i].manifest_digest.as_str());
            ensure!(entry["platform"]["architecture"] == platform.architecture.as_str());
            check_manifest(
                &reg,
                repo,
                &kids[i].manifest_digest,
                mt.manifest(),
                &kids[i].manifest_digest,
                mt.manifest(),
            )
            .await?;
            let c: Value =
                serde_json::from_slice(&get_blob(&reg, repo, &kids[i].config_digest).await?)?;
            ensure!(c["architecture"] == platform.architecture.as_str());
        }
    }

    // Corrupt images: diff_ids that do not match, and a blob tampered with on disk.
    let bad = images::push_corrupt(&reg, "e2e/corrupt", "v1").await?;
    let c: Value =
        serde_json::from_slice(&get_blob(&reg, "e2e/corrupt", &bad.config_digest).await?)?;
    let layer = get_blob(&reg, "e2e/corrupt", &bad.layer_digests[0]).await?;
    ensure!(sha256_digest(&layer) == bad.layer_digests[0]);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&layer[..]).read_to_end(&mut tar)?;
    ensure!(c["rootfs"]["diff_ids"][0] != sha256_digest(&tar).as_str());

    let tampered = images::push_tampered_blob(&reg, "e2e/tampered", "v1").await?;
    let served = get_blob(&reg, "e2e/tampered", &tampered.layer_digests[0]).await?;
    ensure!(
        sha256_digest(&served) != tampered.layer_digests[0],
        "the registry still serves the original blob"
    );
    check_manifest(
        &reg,
        "e2e/tampered",
        "v1",
        images::OCI_MANIFEST,
        &tampered.manifest_digest,
        images::OCI_MANIFEST,
    )
    .await?;

    // Hostile tars push like any layer.
    let hostile = Image {
        layers: vec![Layer::from_raw_tar(
            images::hostile_dotdot(),
            Compression::Gzip,
        )],
        ..Image::default()
    };
    hostile.push(&reg, "e2e/hostile", &["dotdot"]).await?;

    // Drop kills the registry.
    let url = format!("{}/v2/", reg.url());
    drop(reg);
    if reqwest::get(&url).await.is_ok() {
        bail!("registry still answers after drop");
    }
    Ok(())
}

#[tokio::test]
async fn tls_htpasswd_registry() -> Result<()> {
    let opts = RegistryOptions {
        tls: true,
        htpasswd: Some(("e2e-user".into(), "e2e-pass word".into())),
    };
    if skip(&opts) {
        return Ok(());
    }
    let reg = Registry::start(opts).await?;
    ensure!(reg.url() == format!("https://{}", reg.host()));
    let ca = reg.ca_cert_path().context("no CA")?;
    ensure!(std::fs::read_to_string(ca)?.contains("BEGIN CERTIFICATE"));
    let (user, pass) = reg.credentials().context("no credentials")?;

    let url = format!("{}/v2/", reg.url());
    let anon = reg.client().get(&url).send().await?;
    ensure!(
        anon.status() == 401,
        "anonymous GET /v2/: {}",
        anon.status()
    );
    ensure!(anon.headers().contains_key("www-authenticate"));
    let wrong = reg
        .client()
        .get(&url)
        .basic_auth(&user, Some("nope"))
        .send()
        .await?;
    ensure!(wrong.status() == 401, "wrong password: {}", wrong.status());
    let ok = reg
        .client()
        .get(&url)
        .basic_auth(&user, Some(&pass))
        .send()
        .await?;
    ensure!(
        ok.status() == 200,
        "authenticated GET /v2/: {}",
        ok.status()
    );
    // Also reachable as https://localhost:PORT (the certificate names it).
    let localhost = reg
        .client()
        .get(format!("https://localhost:{}/v2/", reg.port()))
        .basic_auth(&user, Some(&pass))
        .send()
        .await?;
    ensure!(localhost.status() == 200);
    // A client that does not trust the suite's CA is refused.
    let untrusting = reqwest::Client::builder().no_proxy().build()?;
    ensure!(
        untrusting.get(&url).send().await.is_err(),
        "untrusted TLS accepted"
    );

    let image = Image::busybox(ImageConfig {
        cmd: Some(vec!["/bin/true".into()]),
        ..ImageConfig::default()
    })?;
    let p = image.push(&reg, "private/busybox", &["v1"]).await?;
    check_manifest(
        &reg,
        "private/busybox",
        "v1",
        images::OCI_MANIFEST,
        &p.manifest_digest,
        images::OCI_MANIFEST,
    )
    .await?;
    let anon = reg
        .client()
        .get(format!("{}/v2/private/busybox/manifests/v1", reg.url()))
        .send()
        .await?;
    ensure!(
        anon.status() == 401,
        "anonymous manifest GET: {}",
        anon.status()
    );
    Ok(())
}
