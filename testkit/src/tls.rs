//! Test certificates and TLS clients: a CA made on the spot, leaves it signs with chosen
//! serials, and a client that trusts only that CA.

use base64::Engine;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, SerialNumber,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A certificate authority for one test.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
    der: CertificateDer<'static>,
    pem: String,
}

/// A leaf certificate and its key, as PEM.
pub struct Leaf {
    /// The chain: the leaf, then the CA (as certbot's `fullchain.pem`).
    pub chain_pem: String,
    /// PKCS#8.
    pub key_pem: String,
    pub serial: u64,
    /// SHA-256 of the leaf's SubjectPublicKeyInfo, base64 (Chromium's
    /// `--ignore-certificate-errors-spki-list`).
    pub spki_sha256_base64: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Flock test CA");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa {
            der: cert.der().clone(),
            pem: cert.pem(),
            cert,
            key,
        }
    }

    /// The CA certificate as PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A leaf for `localhost`, `127.0.0.1` and `::1` with serial `serial`.
    pub fn leaf(&self, serial: u64) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ])
        .expect("leaf params");
        params.serial_number = Some(SerialNumber::from(serial));
        params
            .distinguished_name
            .push(DnType::CommonName, "flock test server");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        let spki = key.public_key_der();
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
            serial,
            spki_sha256_base64: base64::engine::general_purpose::STANDARD
                .encode(Sha256::digest(&spki)),
        }
    }

    /// A client that trusts this CA only, offering ALPN `http/1.1`.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).expect("CA in the root store");
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Opens TLS to `addr` as `localhost` with `config` (e.g. [`TestCa::client_config`]).
    pub async fn connect(
        config: Arc<ClientConfig>,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl Leaf {
    /// Writes `cert.pem` and `key.pem` into `dir` (replacing them in place).
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &self.chain_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}

/// The serial of the certificate a TLS client was shown.
pub fn peer_serial<T>(tls: &TlsStream<T>) -> u64 {
    let (_, conn) = tls.get_ref();
    let leaf = &conn.peer_certificates().expect("server certificate")[0];
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).expect("certificate parses");
    let bytes = cert.raw_serial();
    bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b))
}
