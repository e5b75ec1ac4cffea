//! A client for the OCI distribution API: mirrors tried in order before the upstream, plain
//! HTTP where an endpoint says `http://`, extra CA files per host, and Docker's token and basic
//! auth. Blobs are streamed to disk and verified against their digest on the way.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use super::reference::{Reference, DOCKER_HUB};
use crate::error::ErrorKind;

pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MT_DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";

/// `[registry]` in the config file; the shape follows containerd's CRI plugin.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registry host (`docker.io`, `registry.k8s.io`, or `*` for every host) → mirror endpoints.
    pub mirrors: BTreeMap<String, MirrorConfig>,
    /// Host (`host[:port]`, of a registry or a mirror endpoint) → TLS and credentials.
    pub configs: BTreeMap<String, HostConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MirrorConfig {
    /// Tried in order; `http://` means plain HTTP. The upstream is tried last.
    pub endpoints: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    pub tls: Option<TlsConfig>,
    pub auth: Option<AuthConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with extra CA certificates trusted for this host.
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

/// Credentials, from the CRI request or from the config file.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub username: String,
    pub password: String,
    /// base64 of `username:password`, as in a Docker config.json.
    pub auth: String,
    /// An OAuth2 refresh token, exchanged at the token endpoint.
    #[serde(rename = "identitytoken")]
    pub identity_token: String,
    /// A bearer token sent as is.
    #[serde(rename = "registrytoken")]
    pub registry_token: String,
}

impl std::fmt::Debug for AuthConfig {
    // Never print secrets into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    pub fn is_empty(&self) -> bool {
        self.username.is_empty()
            && self.password.is_empty()
            && self.auth.is_empty()
            && self.identity_token.is_empty()
            && self.registry_token.is_empty()
    }

    fn basic(&self) -> Result<Option<(String, String)>, RegistryError> {
        if !self.username.is_empty() || !self.password.is_empty() {
            return Ok(Some((self.username.clone(), self.password.clone())));
        }
        if self.auth.is_empty() {
            return Ok(None);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(self.auth.trim())
            .map_err(|_| RegistryError::BadCredentials("auth is not valid base64".into()))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| RegistryError::BadCredentials("auth is not UTF-8".into()))?;
        match text.split_once(':') {
            Some((u, p)) => Ok(Some((u.to_string(), p.to_string()))),
            None => Err(RegistryError::BadCredentials(
                "auth must encode username:password".into(),
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{what} not found at {endpoint}")]
    NotFound { what: String, endpoint: String },
    #[error("{endpoint} requires authentication for {what}: {detail}")]
    Unauthenticated {
        what: String,
        endpoint: String,
        detail: String,
    },
    #[error("{endpoint}: {detail}")]
    Unavailable { endpoint: String, detail: String },
    #[error("invalid credentials: {0}")]
    BadCredentials(String),
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("registry config: {0}")]
    Config(String),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::NotFound { .. } => ErrorKind::NotFound,
            RegistryError::Unauthenticated { .. } => ErrorKind::Unauthenticated,
            RegistryError::Unavailable { .. } => ErrorKind::Unavailable,
            RegistryError::BadCredentials(_) => ErrorKind::InvalidArgument {
                field: "auth".into(),
            },
            RegistryError::Invalid { .. } => ErrorKind::DataLoss,
            RegistryError::Config(_) | RegistryError::Io { .. } => ErrorKind::Internal,
        }
    }

    /// When several endpoints fail, report the most telling failure.
    fn rank(&self) -> u8 {
        match self {
            RegistryError::Invalid { .. } => 4,
            RegistryError::Unauthenticated { .. } => 3,
            RegistryError::NotFound { .. } => 2,
            RegistryError::Unavailable { .. } => 1,
            _ => 0,
        }
    }
}

/// One place a repository can be fetched from.
#[derive(Debug, Clone)]
struct Endpoint {
    /// `scheme://host[:port][/prefix]`, without a trailing `/v2`.
    base: String,
    /// `host[:port]`, the key into `configs`.
    host: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, RegistryError> {
        let url = url.trim_end_matches('/');
        let url = url.strip_suffix("/v2").unwrap_or(url);
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| {
                RegistryError::Config(format!("mirror endpoint {url:?} needs http:// or https://"))
            })?;
        let host = rest.split('/').next().unwrap_or_default().to_string();
        if host.is_empty() {
            return Err(RegistryError::Config(format!(
                "mirror endpoint {url:?} has no host"
            )));
        }
        Ok(Endpoint {
            base: url.to_string(),
            host,
        })
    }
}

/// The registry client shared by all pulls. Cheap to share; holds one HTTP client per TLS setup.
pub struct Registry {
    config: RegistryConfig,
    default_client: reqwest::Client,
    host_clients: HashMap<String, reqwest::Client>,
    /// A blob that sends no byte for this long is abandoned (`image_pull_progress_timeout`);
    /// None: never.
    progress_timeout: Option<Duration>,
}

/// How often a long blob fetch logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// containerd's `image_pull_progress_timeout` default.
pub const DEFAULT_PROGRESS_TIMEOUT: Duration = Duration::from_secs(300);
/// How long any other read (a manifest, a token) may stall when blobs may stall for ever.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

fn client_builder(progress_timeout: Option<Duration>) -> reqwest::ClientBuilder {
    // The blob loop has its own, named, progress timeout; the client's read timeout is the
    // backstop for everything else, and never fires before the blob's.
    let read_timeout = progress_timeout.map_or(READ_TIMEOUT, |t| {
        t.max(READ_TIMEOUT) + Duration::from_secs(30)
    });
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(read_timeout)
        .user_agent(concat!("corral/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(16)
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Result<Registry, RegistryError> {
        Registry::with_progress_timeout(config, Some(DEFAULT_PROGRESS_TIMEOUT))
    }

    /// With `progress_timeout` for blobs (None: a stalled blob is waited for as long as the
    /// client's read timeout allows).
    pub fn with_progress_timeout(
        config: RegistryConfig,
        progress_timeout: Option<Duration>,
    ) -> Result<Registry, RegistryError> {
        for (host, m) in &config.mirrors {
            for e in &m.endpoints {
                Endpoint::parse(e).map_err(|e| {
                    RegistryError::Config(format!("registry.mirrors.{host:?}: {e}"))
                })?;
            }
        }
        let default_client = client_builder(progress_timeout)
            .build()
            .map_err(|e| RegistryError::Config(format!("http client: {e}")))?;
        let mut host_clients = HashMap::new();
        for (host, hc) in &config.configs {
            let Some(tls) = &hc.tls else { continue };
            let mut b = client_builder(progress_timeout);
            if let Some(ca) = &tls.ca_file {
                let pem = std::fs::read(ca).map_err(|e| {
                    RegistryError::Config(format!(
                        "registry.configs.{host:?}.tls.ca_file {ca:?}: {e}"
                    ))
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    RegistryError::Config(format!(
                        "registry.configs.{host:?}.tls.ca_file {ca:?}: {e}"
                    ))
                })?;
                for c in certs {
                    b = b.add_root_certificate(c);
                }
            }
            if tls.insecure_skip_verify {
                b = b.danger_accept_invalid_certs(true);
            }
            let client = b
                .build()
                .map_err(|e| RegistryError::Config(format!("registry.configs.{host:?}: {e}")))?;
            host_clients.insert(host.clone(), client);
        }
        Ok(Registry {
            config,
            default_client,
            host_clients,
            progress_timeout,
        })
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// The endpoints for a registry host: its mirrors (or `*`'s), then the upstream.
    fn endpoints(&self, domain: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        let mirrors = self
            .config
            .mirrors
            .get(domain)
            .or_else(|| self.config.mirrors.get("*"));
        if let Some(m) = mirrors {
            // Validated in new().
            out.extend(m.endpoints.iter().filter_map(|e| Endpoint::parse(e).ok()));
        }
        let upstream = if domain == DOCKER_HUB {
            "registry-1.docker.io"
        } else {
            domain
        };
        let upstream = Endpoint {
            base: format!("https://{upstream}"),
            host: domain.to_string(),
        };
        let plain = Endpoint {
            base: upstream.base.replacen("https://", "http://", 1),
            host: domain.to_string(),
        };
        if !out.iter().any(|e| e.base == upstream.base) {
            out.push(upstream);
        }
        // Like Docker and containerd, a registry on the loopback may speak plain HTTP: try
        // TLS first, then HTTP.
        if is_loopback_host(domain) && !out.iter().any(|e| e.base == plain.base) {
            out.push(plain);
        }
        out
    }

    fn client_for(&self, host: &str) -> &reqwest::Client {
        self.host_clients.get(host).unwrap_or(&self.default_client)
    }

    /// Open a session for one repository; `auth` from the CRI request wins over the config file.
    pub fn session(&self, reference: &Reference, auth: Option<AuthConfig>) -> Session<'_> {
        Session {
            registry: self,
            repo: reference.path().to_string(),
            endpoints: self.endpoints(reference.domain()),
            request_auth: auth.filter(|a| !a.is_empty()),
            authorization: Mutex::new(HashMap::new()),
            preferred: Mutex::new(0),
        }
    }
}

/// A manifest (or index) as fetched: bytes verified against `digest`.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub media_type: String,
    pub digest: String,
    pub bytes: Vec<u8>,
}

/// A pull's view of one repository across its endpoints. Remembers which endpoint answered
/// and the tokens it got, so later requests go straight there.
pub struct Session<'a> {
    registry: &'a Registry,
    repo: String,
    endpoints: Vec<Endpoint>,
    request_auth: Option<AuthConfig>,
    /// Endpoint index → `Authorization` header value that worked.
    authorization: Mutex<HashMap<usize, String>>,
    preferred: Mutex<usize>,
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Session<'_> {
    /// Fetch a manifest or index by tag or digest. When `reference` is a digest the bytes must
    /// hash to it.
    /// Manifests are small; one over `max` bytes (`image.max_manifest_bytes`) is hostile.
    pub async fn manifest(&self, reference: &str, max: u64) -> Result<Fetched, RegistryError> {
        let accept = [
            MT_OCI_INDEX,
            MT_DOCKER_LIST,
            MT_OCI_MANIFEST,
            MT_DOCKER_MANIFEST,
        ]
        .join(", ");
        let what = format!("manifest {}:{reference}", self.repo);
        let resp = self.get("manifests", reference, &accept, &what).await?;
        let header_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_string());
        let bytes = read_capped(resp, max, "image.max_manifest_bytes", &what).await?;
        let digest = sha256_digest(&bytes);
        if reference.contains(':') && digest != reference {
            return Err(RegistryError::Invalid {
                what,
                reason: format!("content hashes to {digest}"),
            });
        }
        let media_type = detect_media_type(&bytes, header_type.as_deref()).map_err(|reason| {
            RegistryError::Invalid {
                what: what.clone(),
                reason,
            }
        })?;
        Ok(Fetched {
            media_type,
            digest,
            bytes,
        })
    }

    /// Fetch a small blob (an image config) into memory, verified; `max` is the bound
    /// `image.<key>`.
    pub async fn small_blob(
        &self,
        digest: &str,
        size: u64,
        max: u64,
        key: &'static str,
    ) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {digest}");
        if size > max {
            return Err(RegistryError::Invalid {
                what,
                reason: format!("declared size {size} exceeds image.{key} = {max}"),
            });
        }
        let resp = self.get("blobs", digest, "*/*", &what).await?;
        let bytes = read_capped(resp, max, &format!("image.{key}"), &what).await?;
        verify(
            &what,
            digest,
            size,
            &sha256_digest(&bytes),
            bytes.len() as u64,
        )?;
        Ok(bytes)
    }

    /// Stream a blob into `dest` (created or truncated), hashing as it goes. On a digest or
    /// size mismatch the caller removes `dest`.
    pub async fn blob_to_file(
        &self,
        digest: &str,
        size: u64,
        dest: &Path,
    ) -> Result<(), RegistryError> {
        let what = format!("blob {digest}");
        let resp = self.get("blobs", digest, "*/*", &what).await?;
        let endpoint = resp.url().host_str().map_or_else(
            || self.repo.clone(),
            |h| match resp.url().port() {
                Some(p) => format!("{h}:{p}/{}", self.repo),
                None => format!("{h}/{}", self.repo),
            },
        );
        let io_err = |source| RegistryError::Io {
            path: dest.to_path_buf(),
            source,
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(io_err)?;
        let mut hasher = Sha256::new();
        let mut written: u64 = 0;
        let mut stream = resp.bytes_stream();
        let started = std::time::Instant::now();
        let mut reported = started;
        tracing::info!(digest, bytes = size, %endpoint, "fetching layer");
        loop {
            let next = match self.registry.progress_timeout {
                Some(t) => match tokio::time::timeout(t, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        return Err(RegistryError::Unavailable {
                            endpoint: endpoint.clone(),
                            detail: format!(
                                "no bytes of {what} for {}s after {written} of {size} \
                                 (image_pull_progress_timeout); the pull is cancelled",
                                t.as_secs()
                            ),
                        })
                    }
                },
                None => stream.next().await,
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| RegistryError::Unavailable {
                endpoint: endpoint.clone(),
                detail: format!("reading {what}: {e}"),
            })?;
            if reported.elapsed() >= PROGRESS_EVERY {
                reported = std::time::Instant::now();
                tracing::info!(digest, bytes = written, of = size, %endpoint, "fetching layer: progress");
            }
            written += chunk.len() as u64;
            if written > size {
                return Err(RegistryError::Invalid {
                    what,
                    reason: format!("more than the declared {size} bytes"),
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io_err)?;
        }
        file.flush().await.map_err(io_err)?;
        file.sync_data().await.map_err(io_err)?;
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(
            digest,
            bytes = written,
            seconds = format!("{secs:.3}"),
            mib_per_s = format!("{:.1}", written as f64 / (1 << 20) as f64 / secs.max(1e-6)),
            %endpoint,
            "layer fetched"
        );
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        verify(&what, digest, size, &got, written)
    }

    /// GET `/v2/<repo>/<kind>/<reference>` from the first endpoint that has it.
    async fn get(
        &self,
        kind: &str,
        reference: &str,
        accept: &str,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let start = self.preferred.lock().map(|p| *p).unwrap_or(0);
        let n = self.endpoints.len();
        let mut best: Option<RegistryError> = None;
        for i in (0..n).map(|k| (start + k) % n) {
            match self.get_at(i, kind, reference, accept, what).await {
                Ok(resp) => {
                    if let Ok(mut p) = self.preferred.lock() {
                        *p = i;
                    }
                    return Ok(resp);
                }
                Err(e) => {
                    tracing::debug!(endpoint = %self.endpoints[i].base, error = %e, "registry endpoint failed");
                    if best.as_ref().is_none_or(|b| e.rank() > b.rank()) {
                        best = Some(e);
                    }
                }
            }
        }
        Err(best.unwrap_or_else(|| RegistryError::Unavailable {
            endpoint: self.repo.clone(),
            detail: "no endpoint".into(),
        }))
    }

    fn auth_for(&self, i: usize) -> Result<Option<AuthConfig>, RegistryError> {
        if let Some(a) = &self.request_auth {
            return Ok(Some(a.clone()));
        }
        let host = &self.endpoints[i].host;
        Ok(self
            .registry
            .config
            .configs
            .get(host)
            .and_then(|c| c.auth.clone())
            .filter(|a| !a.is_empty()))
    }

    async fn get_at(
        &self,
        i: usize,
        kind: &str,
        reference: &str,
        accept: &str,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let ep = &self.endpoints[i];
        let client = self.registry.client_for(&ep.host);
        let url = format!("{}/v2/{}/{kind}/{reference}", ep.base, self.repo);
        let cached = self
            .authorization
            .lock()
            .ok()
            .and_then(|m| m.get(&i).cloned());
        let send = |authz: Option<String>| {
            let mut req = client.get(&url).header(reqwest::header::ACCEPT, accept);
            if let Some(a) = authz {
                req = req.header(reqwest::header::AUTHORIZATION, a);
            }
            req.send()
        };
        let unavailable = |e: reqwest::Error| RegistryError::Unavailable {
            endpoint: ep.base.clone(),
            detail: format!("{what}: {}", crate::error::chain(&e)),
        };
        let mut resp = send(cached.clone()).await.map_err(unavailable)?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            let challenge = resp
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let authz = self.authorize(i, client, &challenge, what).await?;
            resp = send(Some(authz.clone())).await.map_err(unavailable)?;
            if resp.status().is_success() {
                if let Ok(mut m) = self.authorization.lock() {
                    m.insert(i, authz);
                }
            }
        }
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        Err(match status {
            reqwest::StatusCode::NOT_FOUND => RegistryError::NotFound {
                what: what.to_string(),
                endpoint: ep.base.clone(),
            },
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
                RegistryError::Unauthenticated {
                    what: what.to_string(),
                    endpoint: ep.base.clone(),
                    detail: format!("{status}: {}", body.trim()),
                }
            }
            _ => RegistryError::Unavailable {
                endpoint: ep.base.clone(),
                detail: format!("{what}: {status}: {}", body.trim()),
            },
        })
    }

    /// Answer a `WWW-Authenticate` challenge: Basic with the credentials, or Bearer through the
    /// token endpoint (anonymous, basic, refresh token) or with the given registry token.
    async fn authorize(
        &self,
        i: usize,
        client: &reqwest::Client,
        challenge: &str,
        what: &str,
    ) -> Result<String, RegistryError> {
        let ep = &self.endpoints[i];
        let auth = self.auth_for(i)?;
        let unauth = |detail: String| RegistryError::Unauthenticated {
            what: what.to_string(),
            endpoint: ep.base.clone(),
            detail,
        };
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            let Some((user, pass)) = auth.as_ref().map(|a| a.basic()).transpose()?.flatten() else {
                return Err(unauth("no credentials given (basic auth required)".into()));
            };
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            return Ok(format!("Basic {token}"));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauth(format!("unsupported challenge {challenge:?}")));
        }
        if let Some(a) = auth.as_ref().filter(|a| !a.registry_token.is_empty()) {
            return Ok(format!("Bearer {}", a.registry_token));
        }
        let realm = params
            .get("realm")
            .ok_or_else(|| unauth("bearer challenge without realm".into()))?;
        let service = params.get("service").cloned().unwrap_or_default();
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", self.repo));
        let token_err = |e: reqwest::Error| RegistryError::Unavailable {
            endpoint: realm.clone(),
            detail: format!("token request: {}", crate::error::chain(&e)),
        };
        let resp = match auth.as_ref() {
            Some(a) if !a.identity_token.is_empty() => {
                let form = [
                    ("grant_type", "refresh_token"),
                    ("refresh_token", a.identity_token.as_str()),
                    ("service", service.as_str()),
                    ("scope", scope.as_str()),
                    ("client_id", "corral"),
                ];
                client
                    .post(realm)
                    .form(&form)
                    .send()
                    .await
                    .map_err(token_err)?
            }
            _ => {
                let mut req = client
                    .get(realm)
                    .query(&[("service", service.as_str()), ("scope", scope.as_str())]);
                if let Some((u, p)) = auth.as_ref().map(|a| a.basic()).transpose()?.flatten() {
                    req = req.basic_auth(u, Some(p));
                }
                req.send().await.map_err(token_err)?
            }
        };
        let status = resp.status();
        if !status.is_success() {
            return Err(unauth(format!("token endpoint {realm} answered {status}")));
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let body = read_capped(resp, 1 << 20, "the token size limit", "token response").await?;
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| unauth(format!("token endpoint {realm}: bad response: {e}")))?;
        let token = if t.token.is_empty() {
            t.access_token
        } else {
            t.token
        };
        if token.is_empty() {
            return Err(unauth(format!("token endpoint {realm} returned no token")));
        }
        Ok(format!("Bearer {token}"))
    }
}

fn is_loopback_host(domain: &str) -> bool {
    let host = match domain.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => h,
        _ => domain,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn verify(
    what: &str,
    want_digest: &str,
    want_size: u64,
    got_digest: &str,
    got_size: u64,
) -> Result<(), RegistryError> {
    if got_size != want_size {
        return Err(RegistryError::Invalid {
            what: what.to_string(),
            reason: format!("size {got_size}, descriptor says {want_size}"),
        });
    }
    if got_digest != want_digest {
        return Err(RegistryError::Invalid {
            what: what.to_string(),
            reason: format!("content hashes to {got_digest}"),
        });
    }
    Ok(())
}

async fn read_capped(
    resp: reqwest::Response,
    max: u64,
    bound: &str,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let endpoint = resp.url().to_string();
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RegistryError::Unavailable {
            endpoint: endpoint.clone(),
            detail: format!("reading {what}: {e}"),
        })?;
        if (out.len() + chunk.len()) as u64 > max {
            return Err(RegistryError::Invalid {
                what: what.to_string(),
                reason: format!("exceeds {bound} = {max}: more than {max} bytes"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// `Bearer realm="x",service="y"` → ("Bearer", {realm: x, service: y}).
fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        params.insert(key, value.to_string());
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_string(), params)
}

/// The media type of a manifest: the body's `mediaType` when it has one, else the header,
/// else the shape (`manifests` → index).
fn detect_media_type(bytes: &[u8], header: Option<&str>) -> Result<String, String> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(rename = "schemaVersion", default)]
        schema_version: Option<u32>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let p: Probe =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON manifest: {e}"))?;
    if p.schema_version == Some(1) {
        return Err("Docker schema 1 manifests are not supported".into());
    }
    let mt = p
        .media_type
        .or_else(|| header.map(str::to_string))
        .filter(|m| !m.is_empty() && m != "application/json" && m != "text/plain")
        .unwrap_or_else(|| {
            if p.manifests.is_some() {
                MT_OCI_INDEX.to_string()
            } else {
                MT_OCI_MANIFEST.to_string()
            }
        });
    if mt.starts_with(MT_DOCKER_SCHEMA1) {
        return Err("Docker schema 1 manifests are not supported".into());
    }
    match mt.as_str() {
        MT_OCI_INDEX | MT_DOCKER_LIST | MT_OCI_MANIFEST | MT_DOCKER_MANIFEST => Ok(mt),
        other => Err(format!("unsupported manifest media type {other:?}")),
    }
}

pub fn is_index(media_type: &str) -> bool {
    media_type == MT_OCI_INDEX || media_type == MT_DOCKER_LIST
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parsing() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull");
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(s, "Basic");
        assert_eq!(p["realm"], "Registry Realm");
    }

    #[test]
    fn endpoints_put_mirrors_first() {
        let mut config = RegistryConfig::default();
        config.mirrors.insert(
            "docker.io".into(),
            MirrorConfig {
                endpoints: vec![
                    "http://127.0.0.1:5000/".into(),
                    "https://m.example/v2".into(),
                ],
            },
        );
        let r = Registry::new(config).unwrap();
        let eps: Vec<_> = r
            .endpoints("docker.io")
            .into_iter()
            .map(|e| e.base)
            .collect();
        assert_eq!(
            eps,
            [
                "http://127.0.0.1:5000",
                "https://m.example",
                "https://registry-1.docker.io"
            ]
        );
        let eps: Vec<_> = r.endpoints("quay.io").into_iter().map(|e| e.base).collect();
        assert_eq!(eps, ["https://quay.io"]);
        let eps: Vec<_> = r
            .endpoints("127.0.0.1:5000")
            .into_iter()
            .map(|e| e.base)
            .collect();
        assert_eq!(eps, ["https://127.0.0.1:5000", "http://127.0.0.1:5000"]);
        let eps: Vec<_> = r
            .endpoints("localhost")
            .into_iter()
            .map(|e| e.base)
            .collect();
        assert_eq!(eps, ["https://localhost", "http://localhost"]);
    }

    #[test]
    fn bad_mirror_is_a_config_error() {
        let mut config = RegistryConfig::default();
        config.mirrors.insert(
            "docker.io".into(),
            MirrorConfig {
                endpoints: vec!["127.0.0.1:5000".into()],
            },
        );
        assert!(matches!(
            Registry::new(config),
            Err(RegistryError::Config(_))
        ));
    }

    #[test]
    fn auth_decoding() {
        let a = AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("u:p:x"),
            ..Default::default()
        };
        assert_eq!(a.basic().unwrap(), Some(("u".into(), "p:x".into())));
        let a = AuthConfig {
            auth: "!!!".into(),
            ..Default::default()
        };
        assert!(a.basic().is_err());
        assert!(AuthConfig::default().is_empty());
    }

    #[test]
    fn media_type_detection() {
        assert_eq!(
            detect_media_type(br#"{"schemaVersion":2,"manifests":[]}"#, None).unwrap(),
            MT_OCI_INDEX
        );
        assert_eq!(
            detect_media_type(
                br#"{"schemaVersion":2,"config":{}}"#,
                Some(MT_DOCKER_MANIFEST)
            )
            .unwrap(),
            MT_DOCKER_MANIFEST
        );
        assert!(detect_media_type(br#"{"schemaVersion":1}"#, None).is_err());
        assert!(detect_media_type(b"not json", None).is_err());
    }
}
