//! Images the suite builds itself, in memory, and pushes to a [`Registry`] through the
//! distribution HTTP API: layers as tar archives (written by a small ustar/PAX writer here,
//! so the output is deterministic and hostile entries are possible), OCI or Docker schema 2
//! manifests and configs, OCI indexes and Docker manifest lists.
//!
//! All tar entries carry a fixed mtime (default [`DEFAULT_MTIME`]) and empty user/group
//! names; gzip output has no timestamp. Building the same image twice gives the same digests.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::registry::Registry;

/// mtime of every entry unless [`LayerBuilder::mtime`] says otherwise (2024-01-01T00:00:00Z).
pub const DEFAULT_MTIME: u64 = 1_704_067_200;
/// `created` of every config and history entry.
pub const CREATED: &str = "2024-01-01T00:00:00Z";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// An `Accept` header value listing every manifest and index type above.
pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// Where the hostile tars below try to write on the host.
pub const HOSTILE_ABS_PATH: &str = "/tmp/corral-e2e-abs-escape";
pub const HOSTILE_SYMLINK_PATH: &str = "/tmp/corral-e2e-symlink-escape";
/// Contents of the files in the hostile tars.
pub const HOSTILE_CONTENT: &[u8] = b"corral-e2e: this file escaped the rootfs\n";

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The host architecture in Go naming (`GOARCH`).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

// ---------------------------------------------------------------------------------------
// tar writer

const BLOCK: usize = 512;

/// Appends ustar entries (with PAX `path`/`linkpath` records when names do not fit) to a
/// buffer. Writes names verbatim: no normalisation, no refusal of `..` or absolute paths.
#[derive(Debug, Default, Clone)]
struct TarWriter {
    buf: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct EntryMeta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

fn put_octal(field: &mut [u8], value: u64) {
    // width-1 octal digits, then NUL.
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    let s = s.as_bytes();
    // A value too large for the field keeps its low digits; never happens for our sizes.
    let s = &s[s.len().saturating_sub(digits)..];
    field[..s.len()].copy_from_slice(s);
    field[digits] = 0;
}

fn put_bytes(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

impl TarWriter {
    fn pad(&mut self) {
        let rem = self.buf.len() % BLOCK;
        if rem != 0 {
            self.buf.resize(self.buf.len() + BLOCK - rem, 0);
        }
    }

    fn header(
        &mut self,
        name: &[u8],
        typeflag: u8,
        link: &[u8],
        size: u64,
        meta: EntryMeta,
    ) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        put_bytes(&mut h[0..100], name);
        put_octal(&mut h[100..108], u64::from(meta.mode & 0o7777));
        put_octal(&mut h[108..116], meta.uid);
        put_octal(&mut h[116..124], meta.gid);
        put_octal(&mut h[124..136], size);
        put_octal(&mut h[136..148], meta.mtime);
        h[156] = typeflag;
        put_bytes(&mut h[157..257], link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        put_octal(&mut h[329..337], 0);
        put_octal(&mut h[337..345], 0);
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        h
    }

    fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
        // "<len> key=value\n" where <len> counts the whole record including itself.
        let base = 1 + key.len() + 1 + value.len() + 1;
        let mut len = base + 1;
        while len != base + len.to_string().len() {
            len = base + len.to_string().len();
        }
        let mut rec = format!("{len} {key}=").into_bytes();
        rec.extend_from_slice(value);
        rec.push(b'\n');
        rec
    }

    /// One entry; `data` is the content of regular files (empty for everything else).
    fn entry(&mut self, name: &[u8], typeflag: u8, link: &[u8], data: &[u8], meta: EntryMeta) {
        let mut pax = Vec::new();
        if name.len() > 100 {
            pax.extend(Self::pax_record("path", name));
        }
        if link.len() > 100 {
            pax.extend(Self::pax_record("linkpath", link));
        }
        if !pax.is_empty() {
            let h = self.header(
                b"././@PaxHeader",
                b'x',
                b"",
                pax.len() as u64,
                EntryMeta {
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    ..meta
                },
            );
            self.buf.extend_from_slice(&h);
            self.buf.extend_from_slice(&pax);
            self.pad();
        }
        let h = self.header(name, typeflag, link, data.len() as u64, meta);
        self.buf.extend_from_slice(&h);
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&[0u8; 2 * BLOCK]);
        self.buf
    }
}

// ---------------------------------------------------------------------------------------
// layers

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

/// Which family of media types an image (or index) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaTypes {
    #[default]
    Oci,
    Docker,
}

impl MediaTypes {
    pub fn manifest(self) -> &'static str {
        match self {
            MediaTypes::Oci => OCI_MANIFEST,
            MediaTypes::Docker => DOCKER_MANIFEST,
        }
    }

    pub fn index(self) -> &'static str {
        match self {
            MediaTypes::Oci => OCI_INDEX,
            MediaTypes::Docker => DOCKER_MANIFEST_LIST,
        }
    }

    pub fn config(self) -> &'static str {
        match self {
            MediaTypes::Oci => OCI_CONFIG,
            MediaTypes::Docker => DOCKER_CONFIG,
        }
    }

    /// Docker schema 2 has no zstd layer type: a Docker image with a zstd layer uses the
    /// OCI `+zstd` type for it, as BuildKit does.
    pub fn layer(self, compression: Compression) -> &'static str {
        match (self, compression) {
            (MediaTypes::Oci, Compression::Gzip) => OCI_LAYER_GZIP,
            (MediaTypes::Oci, Compression::None) => OCI_LAYER_TAR,
            (_, Compression::Zstd) => OCI_LAYER_ZSTD,
            (MediaTypes::Docker, Compression::Gzip) => DOCKER_LAYER_GZIP,
            (MediaTypes::Docker, Compression::None) => DOCKER_LAYER_TAR,
        }
    }
}

/// One layer: its uncompressed tar and how it is compressed when pushed.
#[derive(Clone)]
pub struct Layer {
    tar: Vec<u8>,
    compression: Compression,
    /// The compressed blob, made on first use.
    blob: OnceLock<Vec<u8>>,
}

impl std::fmt::Debug for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layer")
            .field("tar_len", &self.tar.len())
            .field("compression", &self.compression)
            .finish()
    }
}

impl Layer {
    pub fn builder() -> LayerBuilder {
        LayerBuilder::default()
    }

    /// A layer from tar bytes as they are (hostile archives, see [`hostile_dotdot`] & co).
    pub fn from_raw_tar(bytes: Vec<u8>, compression: Compression) -> Layer {
        Layer {
            tar: bytes,
            compression,
            blob: OnceLock::new(),
        }
    }

    /// A tiny rootfs around the host's static `/bin/busybox` (Debian `busybox-static`):
    /// `bin/busybox` plus applet symlinks ([`BUSYBOX_APPLETS`]: sh, echo, cat, ls, sleep,
    /// true, false, id, env, pwd, printf, ...), `etc/passwd` (root; `app` 1000:1000 with
    /// home `/home/app`; nobody), `etc/group`, `tmp` (1777), `root` (0700), `home/app`
    /// owned by 1000:1000. No `proc`, `sys` or `dev`: the runtime creates mount points.
    ///
    /// Built and compressed once per process and compression, then cloned.
    pub fn busybox(compression: Compression) -> Result<Layer> {
        static CACHE: [OnceLock<Layer>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let cell = &CACHE[match compression {
            Compression::Gzip => 0,
            Compression::Zstd => 1,
            Compression::None => 2,
        }];
        if let Some(layer) = cell.get() {
            return Ok(layer.clone());
        }
        let layer = Self::build_busybox(compression)?;
        layer.compressed()?;
        Ok(cell.get_or_init(|| layer).clone())
    }

    fn build_busybox(compression: Compression) -> Result<Layer> {
        let bin = busybox_binary()?;
        let mut b = Layer::builder()
            .dir("bin", 0o755)
            .file("bin/busybox", bin, 0o755);
        for applet in BUSYBOX_APPLETS {
            b = b.symlink(&format!("bin/{applet}"), "busybox");
        }
        Ok(b.dir("etc", 0o755)
            .file(
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\n\
                 app:x:1000:1000:app:/home/app:/bin/sh\n\
                 nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
                0o644,
            )
            .file(
                "etc/group",
                "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n",
                0o644,
            )
            .dir("root", 0o700)
            .dir("tmp", 0o1777)
            .dir("home", 0o755)
            .owner(1000, 1000)
            .dir("home/app", 0o755)
            .owner(0, 0)
            .build(compression))
    }

    /// The uncompressed tar.
    pub fn tar(&self) -> &[u8] {
        &self.tar
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// `sha256:<hex>` of the uncompressed tar (what goes in `rootfs.diff_ids`).
    pub fn diff_id(&self) -> String {
        sha256_digest(&self.tar)
    }

    /// The blob as pushed: the tar compressed per [`Layer::compression`]. Deterministic
    /// (gzip without a timestamp, fixed levels). Computed once, then cached.
    pub fn compressed(&self) -> Result<Vec<u8>> {
        if let Some(blob) = self.blob.get() {
            return Ok(blob.clone());
        }
        let blob = self.compress()?;
        Ok(self.blob.get_or_init(|| blob).clone())
    }

    fn compress(&self) -> Result<Vec<u8>> {
        match self.compression {
            Compression::None => Ok(self.tar.clone()),
            Compression::Gzip => {
                let mut enc = flate2::GzBuilder::new()
                    .mtime(0)
                    .write(Vec::new(), flate2::Compression::fast());
                enc.write_all(&self.tar)
                    .context("gzip-compressing a layer")?;
                enc.finish().context("gzip-compressing a layer")
            }
            Compression::Zstd => {
                zstd::stream::encode_all(&self.tar[..], 3).context("zstd-compressing a layer")
            }
        }
    }

    /// `sha256:<hex>` of the compressed blob (the layer's descriptor digest).
    pub fn digest(&self) -> Result<String> {
        Ok(sha256_digest(&self.compressed()?))
    }
}

/// Applets symlinked to `busybox` in `/bin` by [`Layer::busybox`].
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "sleep", "true", "false", "id", "env", "pwd", "printf", "mkdir",
    "rm", "touch", "hostname", "head", "tail", "wc", "grep", "test", "kill", "ps", "whoami",
    "stat", "readlink", "ln", "cp", "mv", "chmod", "date", "uname", "seq", "tee", "dd", "yes",
    "wget", "nc", "ip", "mount", "sync", "httpd", "tr", "xargs",
];

/// The host's `/bin/busybox`, checked to be a static binary.
fn busybox_binary() -> Result<Vec<u8>> {
    let path = "/bin/busybox";
    let bytes = std::fs::read(path).with_context(|| {
        format!("reading {path}: the e2e images need Debian's busybox-static (apt-get install busybox-static)")
    })?;
    if elf_has_interp(&bytes) {
        bail!("{path} is dynamically linked: the e2e images need Debian's busybox-static (apt-get install busybox-static)");
    }
    Ok(bytes)
}

/// Whether an ELF file has a PT_INTERP program header (is dynamically linked).
fn elf_has_interp(elf: &[u8]) -> bool {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return false;
    }
    let is64 = elf[4] == 2;
    let le = elf[5] == 1;
    let rd = |off: usize, n: usize| -> Option<u64> {
        let b = elf.get(off..off + n)?;
        let mut v = 0u64;
        for i in 0..n {
            let byte = if le { b[n - 1 - i] } else { b[i] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    };
    let (phoff, phentsize, phnum) = if is64 {
        (rd(0x20, 8), rd(0x36, 2), rd(0x38, 2))
    } else {
        (rd(0x1c, 4), rd(0x2a, 2), rd(0x2c, 2))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
        return false;
    };
    (0..phnum).any(|i| {
        usize::try_from(phoff + i * phentsize)
            .ok()
            .and_then(|off| rd(off, 4))
            == Some(3)
    })
}

/// Builds a layer's tar entry by entry, in order. Paths are relative to the rootfs; a
/// leading `/` is stripped; directories get a trailing `/`. Parents are not added
/// implicitly. Owner 0:0 and mtime [`DEFAULT_MTIME`] unless changed by [`LayerBuilder::owner`]
/// / [`LayerBuilder::mtime`], which apply to the entries added after them.
#[derive(Debug, Clone)]
pub struct LayerBuilder {
    tar: TarWriter,
    uid: u64,
    gid: u64,
    mtime: u64,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        LayerBuilder {
            tar: TarWriter::default(),
            uid: 0,
            gid: 0,
            mtime: DEFAULT_MTIME,
        }
    }
}

fn rel(path: &str) -> &str {
    path.trim_start_matches('/')
}

impl LayerBuilder {
    fn meta(&self, mode: u32) -> EntryMeta {
        EntryMeta {
            mode,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
        }
    }

    /// A regular file with `contents` and permission bits `mode` (e.g. `0o644`, `0o4755`).
    pub fn file(mut self, path: &str, contents: impl AsRef<[u8]>, mode: u32) -> Self {
        let meta = self.meta(mode);
        self.tar
            .entry(rel(path).as_bytes(), b'0', b"", contents.as_ref(), meta);
        self
    }

    /// A directory (`mode` e.g. `0o755`, `0o1777`).
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let meta = self.meta(mode);
        let mut name = rel(path).trim_end_matches('/').to_string();
        name.push('/');
        self.tar.entry(name.as_bytes(), b'5', b"", b"", meta);
        self
    }

    /// A symbolic link at `path` pointing to `target` (written verbatim).
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let meta = self.meta(0o777);
        self.tar
            .entry(rel(path).as_bytes(), b'2', target.as_bytes(), b"", meta);
        self
    }

    /// A hard link at `path` to the earlier entry `target` (a path in the layer; a leading
    /// `/` is stripped).
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let meta = self.meta(0o644);
        self.tar.entry(
            rel(path).as_bytes(),
            b'1',
            rel(target).as_bytes(),
            b"",
            meta,
        );
        self
    }

    /// A whiteout deleting `path` from lower layers: adds the empty file `dir/.wh.name`.
    pub fn whiteout(self, path: &str) -> Self {
        let p = rel(path).trim_end_matches('/');
        let wh = match p.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/.wh.{name}"),
            None => format!(".wh.{p}"),
        };
        self.file(&wh, b"", 0o644)
    }

    /// An opaque-directory marker: adds the empty file `dir/.wh..wh..opq` (the directory's
    /// contents from lower layers are hidden).
    pub fn opaque(self, dir: &str) -> Self {
        let d = rel(dir).trim_end_matches('/');
        let marker = if d.is_empty() {
            ".wh..wh..opq".to_string()
        } else {
            format!("{d}/.wh..wh..opq")
        };
        self.file(&marker, b"", 0o644)
    }

    /// Owner of the entries added from now on.
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = u64::from(uid);
        self.gid = u64::from(gid);
        self
    }

    /// mtime (seconds since the epoch) of the entries added from now on.
    pub fn mtime(mut self, secs: u64) -> Self {
        self.mtime = secs;
        self
    }

    pub fn build(self, compression: Compression) -> Layer {
        Layer {
            tar: self.tar.finish(),
            compression,
            blob: OnceLock::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// hostile tars

/// (name, typeflag, link target, contents) of a raw tar entry.
type RawEntry<'a> = (&'a [u8], u8, &'a [u8], &'a [u8]);

fn hostile(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut w = TarWriter::default();
    for &(name, typeflag, link, data) in entries {
        let mode = match typeflag {
            b'2' => 0o777,
            b'5' => 0o755,
            _ => 0o644,
        };
        w.entry(
            name,
            typeflag,
            link,
            data,
            EntryMeta {
                mode,
                uid: 0,
                gid: 0,
                mtime: DEFAULT_MTIME,
            },
        );
    }
    w.finish()
}

/// A regular file `../escape` ([`HOSTILE_CONTENT`]): extraction must not write outside the
/// rootfs.
pub fn hostile_dotdot() -> Vec<u8> {
    hostile(&[(b"../escape", b'0', b"", HOSTILE_CONTENT)])
}

/// A regular file with the absolute name [`HOSTILE_ABS_PATH`]: it must land inside the
/// rootfs (or be refused), never on the host.
pub fn hostile_absolute() -> Vec<u8> {
    hostile(&[(HOSTILE_ABS_PATH.as_bytes(), b'0', b"", HOSTILE_CONTENT)])
}

/// A symlink `link -> /tmp`, then a regular file `link/corral-e2e-symlink-escape`: writing
/// through the symlink must not create [`HOSTILE_SYMLINK_PATH`] on the host.
pub fn hostile_symlink_write() -> Vec<u8> {
    hostile(&[
        (b"link", b'2', b"/tmp", b""),
        (
            b"link/corral-e2e-symlink-escape",
            b'0',
            b"",
            HOSTILE_CONTENT,
        ),
    ])
}

/// A hard link `shadow` to `/etc/shadow`: must not link (or copy) the host's file.
pub fn hostile_hardlink() -> Vec<u8> {
    hostile(&[(b"shadow", b'1', b"/etc/shadow", b"")])
}

// ---------------------------------------------------------------------------------------
// images

/// The `config` part of an image config, plus the platform. `Default`: no user, entrypoint,
/// cmd, working dir, labels or stop signal; `env` is the usual
/// `PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`; architecture
/// [`host_arch`]; os `linux`; no variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    pub user: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
}

/// `PATH` of [`ImageConfig::default`].
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            user: None,
            entrypoint: None,
            cmd: None,
            env: vec![DEFAULT_PATH_ENV.to_string()],
            working_dir: None,
            labels: BTreeMap::new(),
            stop_signal: None,
            architecture: host_arch().to_string(),
            os: "linux".to_string(),
            variant: None,
        }
    }
}

/// An image to push.
#[derive(Debug, Clone, Default)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: ImageConfig,
    pub media_types: MediaTypes,
}

/// What [`Image::push`] put in the registry. Digests are `sha256:<hex>` of the exact bytes
/// pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub manifest_digest: String,
    pub config_digest: String,
    /// Digests of the compressed layer blobs, in order.
    pub layer_digests: Vec<String>,
    pub manifest_bytes: Vec<u8>,
    pub config_bytes: Vec<u8>,
    /// The manifest's media type (its `Content-Type` when pushed).
    pub manifest_media_type: String,
}

/// The target platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/<host_arch()>`.
    pub fn host() -> Platform {
        Platform::linux(host_arch(), None)
    }

    pub fn linux(architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// An architecture other than the host's (`arm64` on amd64, `amd64` elsewhere).
    pub fn foreign() -> Platform {
        let arch = if host_arch() == "amd64" {
            "arm64"
        } else {
            "amd64"
        };
        Platform::linux(arch, None)
    }
}

impl Image {
    /// An OCI image of one busybox layer (gzip) with the given config.
    pub fn busybox(config: ImageConfig) -> Result<Image> {
        Ok(Image {
            layers: vec![Layer::busybox(Compression::Gzip)?],
            config,
            media_types: MediaTypes::Oci,
        })
    }

    /// The config JSON (valid OCI image config; Docker's container.image.v1 is the same
    /// shape). `diff_ids` are taken from the layers.
    pub fn config_json(&self) -> Value {
        let diff_ids: Vec<String> = self.layers.iter().map(Layer::diff_id).collect();
        config_value(&self.config, &diff_ids, self.layers.len())
    }

    /// Pushes the layer blobs and the config (skipping blobs the repository already has),
    /// then the manifest under each tag; with no tags, by digest only.
    pub async fn push(&self, reg: &Registry, repo: &str, tags: &[&str]) -> Result<Pushed> {
        let diff_ids: Vec<String> = self.layers.iter().map(Layer::diff_id).collect();
        self.push_with_diff_ids(reg, repo, tags, &diff_ids).await
    }

    async fn push_with_diff_ids(
        &self,
        reg: &Registry,
        repo: &str,
        tags: &[&str],
        diff_ids: &[String],
    ) -> Result<Pushed> {
        let mut layer_descs = Vec::new();
        let mut layer_digests = Vec::new();
        for layer in &self.layers {
            let blob = layer.compressed()?;
            let digest = push_blob(reg, repo, &blob).await?;
            layer_descs.push(json!({
                "mediaType": self.media_types.layer(layer.compression),
                "digest": digest,
                "size": blob.len(),
            }));
            layer_digests.push(digest);
        }
        let config_bytes =
            serde_json::to_vec(&config_value(&self.config, diff_ids, self.layers.len()))
                .context("serializing the image config")?;
        let config_digest = push_blob(reg, repo, &config_bytes).await?;

        let media_type = self.media_types.manifest();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": self.media_types.config(),
                "digest": config_digest,
                "size": config_bytes.len(),
            },
            "layers": layer_descs,
        });
        let manifest_bytes =
            serde_json::to_vec(&manifest).context("serializing the image manifest")?;
        let manifest_digest =
            put_manifest_tags(reg, repo, tags, media_type, &manifest_bytes).await?;
        Ok(Pushed {
            manifest_digest,
            config_digest,
            layer_digests,
            manifest_bytes,
            config_bytes,
            manifest_media_type: media_type.to_string(),
        })
    }
}

fn config_value(c: &ImageConfig, diff_ids: &[String], layers: usize) -> Value {
    let mut cfg = Map::new();
    if let Some(user) = &c.user {
        cfg.insert("User".into(), json!(user));
    }
    if let Some(ep) = &c.entrypoint {
        cfg.insert("Entrypoint".into(), json!(ep));
    }
    if let Some(cmd) = &c.cmd {
        cfg.insert("Cmd".into(), json!(cmd));
    }
    if !c.env.is_empty() {
        cfg.insert("Env".into(), json!(c.env));
    }
    if let Some(wd) = &c.working_dir {
        cfg.insert("WorkingDir".into(), json!(wd));
    }
    if !c.labels.is_empty() {
        cfg.insert("Labels".into(), json!(c.labels));
    }
    if let Some(sig) = &c.stop_signal {
        cfg.insert("StopSignal".into(), json!(sig));
    }
    let history: Vec<Value> = (0..layers)
        .map(|i| {
            json!({
                "created": CREATED,
                "created_by": format!("corral-e2e layer {i}"),
            })
        })
        .collect();
    let mut v = json!({
        "created": CREATED,
        "architecture": c.architecture,
        "os": c.os,
        "config": cfg,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    });
    if let (Some(variant), Some(obj)) = (&c.variant, v.as_object_mut()) {
        obj.insert("variant".into(), json!(variant));
    }
    v
}

/// Pushes an OCI index (Docker manifest list for [`MediaTypes::Docker`]) over several
/// platform images under `tag`. Each child is pushed by digest first (untagged; its config
/// gets the entry's platform). Returns the index digest and each child's [`Pushed`].
pub async fn push_index(
    reg: &Registry,
    repo: &str,
    tag: &str,
    media_types: MediaTypes,
    children: &[(Platform, &Image)],
) -> Result<(String, Vec<Pushed>)> {
    let (digest, _bytes, pushed) = push_index_bytes(reg, repo, tag, media_types, children).await?;
    Ok((digest, pushed))
}

/// [`push_index`], also returning the index bytes as pushed.
pub async fn push_index_bytes(
    reg: &Registry,
    repo: &str,
    tag: &str,
    media_types: MediaTypes,
    children: &[(Platform, &Image)],
) -> Result<(String, Vec<u8>, Vec<Pushed>)> {
    let mut entries = Vec::new();
    let mut pushed = Vec::new();
    for (platform, image) in children {
        let mut image = (*image).clone();
        image.config.os = platform.os.clone();
        image.config.architecture = platform.architecture.clone();
        image.config.variant = platform.variant.clone();
        let p = image.push(reg, repo, &[]).await?;
        let mut plat = json!({ "architecture": platform.architecture, "os": platform.os });
        if let (Some(variant), Some(obj)) = (&platform.variant, plat.as_object_mut()) {
            obj.insert("variant".into(), json!(variant));
        }
        entries.push(json!({
            "mediaType": p.manifest_media_type,
            "digest": p.manifest_digest,
            "size": p.manifest_bytes.len(),
            "platform": plat,
        }));
        pushed.push(p);
    }
    let media_type = media_types.index();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": entries,
    });
    let bytes = serde_json::to_vec(&index).context("serializing the index")?;
    let digest = put_manifest_tags(reg, repo, &[tag], media_type, &bytes).await?;
    Ok((digest, bytes, pushed))
}

/// Pushes, under `tag`, a busybox image whose config's `rootfs.diff_ids` do NOT match its
/// layer: every blob is intact and matches its descriptor digest and size (the registry
/// verifies those on upload), but the diff_id is the digest of other bytes. A runtime must
/// check each decompressed layer against `diff_ids` and refuse the image.
pub async fn push_corrupt(reg: &Registry, repo: &str, tag: &str) -> Result<Pushed> {
    let image = Image::busybox(ImageConfig {
        cmd: Some(vec!["/bin/true".into()]),
        ..ImageConfig::default()
    })?;
    let wrong = vec![sha256_digest(
        b"corral-e2e: not the layer you are looking for",
    )];
    image.push_with_diff_ids(reg, repo, &[tag], &wrong).await
}

/// Pushes, under `tag`, a valid small image (one gzip layer with `/hello`), then rewrites
/// the layer blob's bytes in the registry's storage directory behind its back (same length,
/// different content): the registry then serves, for that digest, bytes whose sha256 is not
/// the digest. A runtime must verify blob digests while pulling and fail the pull.
/// Returns what was pushed; `layer_digests[0]` is the tampered blob.
pub async fn push_tampered_blob(reg: &Registry, repo: &str, tag: &str) -> Result<Pushed> {
    let image = Image {
        layers: vec![Layer::builder()
            .file("hello", "corral-e2e tampered layer\n".repeat(64), 0o644)
            .build(Compression::Gzip)],
        config: ImageConfig {
            cmd: Some(vec!["/hello".into()]),
            ..ImageConfig::default()
        },
        media_types: MediaTypes::Oci,
    };
    let pushed = image.push(reg, repo, &[tag]).await?;
    let digest = pushed
        .layer_digests
        .first()
        .ok_or_else(|| anyhow!("pushed image has no layer"))?;
    let path = reg.blob_data_path(digest)?;
    let mut data =
        std::fs::read(&path).with_context(|| format!("reading stored blob {}", path.display()))?;
    if data.is_empty() {
        bail!("stored blob {} is empty", path.display());
    }
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&path, &data)
        .with_context(|| format!("rewriting stored blob {}", path.display()))?;
    Ok(pushed)
}

// ---------------------------------------------------------------------------------------
// registry API

async fn check(resp: reqwest::Response, what: &str) -> Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    bail!("{what}: registry answered {status}: {body}")
}

/// Uploads `bytes` as a blob of `repo` (POST an upload session, then PUT the whole content
/// with `?digest=`), unless `HEAD` says the blob is already there. Returns its digest.
pub async fn push_blob(reg: &Registry, repo: &str, bytes: &[u8]) -> Result<String> {
    let digest = sha256_digest(bytes);
    let head = reg
        .request(Method::HEAD, &format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .with_context(|| format!("HEAD blob {digest} in {repo}"))?;
    if head.status() == StatusCode::OK {
        return Ok(digest);
    }

    let start = reg
        .request(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .header(reqwest::header::CONTENT_LENGTH, "0")
        .send()
        .await
        .with_context(|| format!("starting a blob upload in {repo}"))?;
    let start = check(start, &format!("POST /v2/{repo}/blobs/uploads/")).await?;
    let location = start
        .headers()
        .get(reqwest::header::LOCATION)
        .ok_or_else(|| anyhow!("blob upload in {repo}: no Location header"))?
        .to_str()
        .context("blob upload Location header is not text")?
        .to_string();
    let base = reqwest::Url::parse(&format!("{}/", reg.url())).context("registry URL")?;
    let mut url = base
        .join(&location)
        .with_context(|| format!("blob upload Location {location:?}"))?;
    url.query_pairs_mut().append_pair("digest", &digest);

    let put = reg
        .authorize(reg.client().put(url))
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .with_context(|| format!("uploading blob {digest} to {repo}"))?;
    let put = check(put, &format!("PUT blob {digest} to {repo}")).await?;
    if let Some(got) = put.headers().get("docker-content-digest") {
        if got.as_bytes() != digest.as_bytes() {
            bail!("registry stored blob {digest} as {got:?}");
        }
    }
    Ok(digest)
}

/// `PUT /v2/<repo>/manifests/<reference>` with `Content-Type: media_type`. Returns the
/// digest of `bytes`, checked against the registry's `Docker-Content-Digest`.
pub async fn put_manifest(
    reg: &Registry,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) -> Result<String> {
    let digest = sha256_digest(bytes);
    let resp = reg
        .request(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
        .header(reqwest::header::CONTENT_TYPE, media_type)
        .body(bytes.to_vec())
        .send()
        .await
        .with_context(|| format!("PUT manifest {repo}:{reference}"))?;
    let resp = check(resp, &format!("PUT manifest {repo}:{reference}")).await?;
    if let Some(got) = resp.headers().get("docker-content-digest") {
        if got.as_bytes() != digest.as_bytes() {
            bail!("registry stored manifest {repo}:{reference} as {got:?}, expected {digest}");
        }
    }
    Ok(digest)
}

/// Puts a manifest under each tag, or by its digest when `tags` is empty.
async fn put_manifest_tags(
    reg: &Registry,
    repo: &str,
    tags: &[&str],
    media_type: &str,
    bytes: &[u8],
) -> Result<String> {
    let digest = sha256_digest(bytes);
    if tags.is_empty() {
        put_manifest(reg, repo, &digest, media_type, bytes).await?;
    }
    for tag in tags {
        put_manifest(reg, repo, tag, media_type, bytes).await?;
    }
    Ok(digest)
}

/// `GET /v2/<repo>/manifests/<reference>` with `Accept: accept`. Returns the
/// `Content-Type`, the `Docker-Content-Digest` header (if any) and the body.
pub async fn get_manifest(
    reg: &Registry,
    repo: &str,
    reference: &str,
    accept: &str,
) -> Result<(String, Option<String>, Vec<u8>)> {
    let resp = reg
        .request(Method::GET, &format!("/v2/{repo}/manifests/{reference}"))
        .header(reqwest::header::ACCEPT, accept)
        .send()
        .await
        .with_context(|| format!("GET manifest {repo}:{reference}"))?;
    let resp = check(resp, &format!("GET manifest {repo}:{reference}")).await?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type").unwrap_or_default();
    let digest = header("docker-content-digest");
    let body = resp.bytes().await.context("reading a manifest body")?;
    Ok((content_type, digest, body.to_vec()))
}

/// `GET /v2/<repo>/blobs/<digest>`: the bytes as served (not verified).
pub async fn get_blob(reg: &Registry, repo: &str, digest: &str) -> Result<Vec<u8>> {
    let resp = reg
        .request(Method::GET, &format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .with_context(|| format!("GET blob {repo}@{digest}"))?;
    let resp = check(resp, &format!("GET blob {repo}@{digest}")).await?;
    Ok(resp.bytes().await.context("reading a blob body")?.to_vec())
}
