//! TLS on the gateway port: rustls with the ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`.
//!
//! Every handshake asks the [`CertStore`] for the certificate, so a reload (SIGHUP, or the
//! watcher seeing the files change) reaches new handshakes at once while open connections
//! keep the one they started with. A file that does not parse, or a key that does not match
//! the certificate, leaves the running certificate in place.

use crate::config::human;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

/// `[ws.tls]`: serve https/wss on `ws.listen`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, the server's certificate first (certbot's `fullchain.pem`).
    pub cert: PathBuf,
    /// PEM private key: PKCS#8, SEC1 (EC) or PKCS#1 (RSA).
    pub key: PathBuf,
    /// A plain-HTTP listener that answers every request with a redirect to https (308);
    /// absent = none.
    pub redirect_listen: Option<SocketAddr>,
    /// How often the files are checked for a new certificate (content, not modification
    /// time, so a rename or a symlink swap counts); "0s" = on SIGHUP only.
    #[serde(with = "human")]
    pub watch_interval: Duration,
    /// TLS handshakes under way at once; connections past it are closed before any TLS work.
    pub max_handshakes: usize,
    /// Sessions remembered for resumption by id (TLS 1.2); tickets (TLS 1.2 and 1.3) cost
    /// the server no memory.
    pub session_cache: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            redirect_listen: None,
            watch_interval: Duration::from_secs(10),
            max_handshakes: 256,
            session_cache: 4096,
        }
    }
}

impl TlsConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.cert.as_os_str().is_empty() || self.key.as_os_str().is_empty() {
            return Err("ws.tls: cert and key are both required".into());
        }
        if self.max_handshakes == 0 {
            return Err("ws.tls: max_handshakes must be at least 1".into());
        }
        Ok(())
    }
}

/// The certificate in use and how reloads went.
#[derive(Debug)]
pub struct CertStore {
    provider: Arc<CryptoProvider>,
    paths: Mutex<Paths>,
    current: RwLock<Arc<CertifiedKey>>,
    /// Unix time the current certificate expires (its notAfter).
    not_after: AtomicU64,
    reloads: AtomicU64,
    failures: AtomicU64,
}

#[derive(Debug)]
struct Paths {
    cert: PathBuf,
    key: PathBuf,
    /// Digest of the files behind the current certificate.
    loaded: [u8; 32],
    /// Digest of the files of the last failed attempt: the same broken files are reported
    /// once, not at every check.
    failed: Option<[u8; 32]>,
}

/// What a certificate reload did (SIGHUP, the file watcher).
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    /// The files hold the certificate in use.
    Unchanged,
    /// New handshakes now get the new certificate.
    Replaced,
    /// The files could not be used (the message names the file); the old certificate stays.
    Failed(String),
}

impl CertStore {
    /// Loads `cert` and `key`; an error names the file and says what is wrong with it.
    pub fn open(cert: &Path, key: &Path) -> Result<CertStore, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (files, digest) = read_files(cert, key)?;
        let (certified, not_after) = parse(&provider, cert, key, &files)?;
        Ok(CertStore {
            provider,
            paths: Mutex::new(Paths {
                cert: cert.into(),
                key: key.into(),
                loaded: digest,
                failed: None,
            }),
            current: RwLock::new(Arc::new(certified)),
            not_after: AtomicU64::new(not_after),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// Re-reads the files (at new paths when given) and swaps the certificate in when they
    /// changed and are good. A failure is logged and counted once per content by the watcher
    /// (`explicit` false), at every call by SIGHUP (`explicit` true).
    pub fn reload(&self, new_paths: Option<(&Path, &Path)>, explicit: bool) -> Reload {
        let mut paths = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
        if explicit {
            paths.failed = None;
        }
        if let Some((cert, key)) = new_paths {
            if paths.cert != cert || paths.key != key {
                (paths.cert, paths.key) = (cert.into(), key.into());
                paths.loaded = [0; 32];
            }
        }
        let (files, digest) = match read_files(&paths.cert, &paths.key) {
            Ok(read) => read,
            // A missing or unreadable file: reported once until the error changes.
            Err(e) => return self.failed(&mut paths, Sha256::digest(&e).into(), e),
        };
        if digest == paths.loaded {
            return Reload::Unchanged;
        }
        match parse(&self.provider, &paths.cert, &paths.key, &files) {
            Ok((certified, not_after)) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(certified);
                self.not_after.store(not_after, Relaxed);
                (paths.loaded, paths.failed) = (digest, None);
                self.reloads.fetch_add(1, Relaxed);
                tracing::info!(cert = %paths.cert.display(), not_after, "TLS certificate reloaded");
                Reload::Replaced
            }
            Err(e) => self.failed(&mut paths, digest, e),
        }
    }

    /// Counts and logs a failed reload, once for the same files (or the same error).
    fn failed(&self, paths: &mut Paths, digest: [u8; 32], e: String) -> Reload {
        if paths.failed != Some(digest) {
            paths.failed = Some(digest);
            self.failures.fetch_add(1, Relaxed);
            tracing::error!("TLS certificate not reloaded, the running one stays: {e}");
        }
        Reload::Failed(e)
    }

    /// Unix time the certificate in use expires.
    pub fn not_after(&self) -> u64 {
        self.not_after.load(Relaxed)
    }

    /// Certificates swapped in since start.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Relaxed)
    }

    /// Reloads that found files it could not use.
    pub fn failures(&self) -> u64 {
        self.failures.load(Relaxed)
    }

    /// The server configuration for the acceptor: it resolves every handshake through `self`.
    pub fn server_config(self: &Arc<Self>, session_cache: usize) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.session_storage = ServerSessionMemoryCache::new(session_cache.max(1));
        if let Ok(ticketer) = rustls::crypto::ring::Ticketer::new() {
            config.ticketer = ticketer;
        }
        Arc::new(config)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The contents of the certificate and key files.
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
}

/// Both files, and a digest of their contents.
fn read_files(cert: &Path, key: &Path) -> Result<(Files, [u8; 32]), String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let files = Files {
        cert: read(cert)?,
        key: read(key)?,
    };
    let mut h = Sha256::new();
    h.update((files.cert.len() as u64).to_be_bytes());
    h.update(&files.cert);
    h.update(&files.key);
    Ok((files, h.finalize().into()))
}

fn parse(
    provider: &CryptoProvider,
    cert: &Path,
    key: &Path,
    files: &Files,
) -> Result<(CertifiedKey, u64), String> {
    let (cert_pem, key_pem) = (&files.cert, &files.key);
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("{}: no CERTIFICATE in the file", cert.display()));
    };
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| {
            format!(
                "{}: the first certificate does not parse: {e}",
                cert.display()
            )
        })?
        .1
        .validity()
        .not_after
        .timestamp()
        .max(0) as u64;
    let der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        format!(
            "{}: no PKCS#8, SEC1 or PKCS#1 private key: {e}",
            key.display()
        )
    })?;
    let certified = CertifiedKey::from_der(chain, der, provider).map_err(|e| {
        format!(
            "{} does not go with the certificate in {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok((certified, not_after))
}
