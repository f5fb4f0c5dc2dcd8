//! The server secret and the flock key, generated into the data directory on first start and
//! reused after. Files are created with mode 0600.
//!
//! - `server.secret`: 32 random bytes, hex. Keys the keep-alive tokens and nonces: keep it
//!   across restarts, or every appliance must register again.
//! - `flock.key`: the flock's Ed25519 key pair (PKCS#8 v2, DER). Shared by all servers of a flock;
//!   with `[flock] key_file` that file is read instead (and never created). Either file may be
//!   PKCS#8 v1 or v2, DER or PEM (`openssl genpkey -algorithm ed25519` writes v1 PEM).
//! - `flock.pub`: its public key, hex; appliances pin it (`flock-appliance --flock-key @flock.pub`).

use flock_proto::identity::{from_hex, public_key, to_hex};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::Ed25519KeyPair;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

pub struct Secrets {
    pub server_secret: [u8; 32],
    pub flock_key: Ed25519KeyPair,
    /// Keys peer messages; derived from the flock key file's bytes (`flock_proto::membership::peer_secret`).
    pub peer_secret: [u8; 32],
}

impl Secrets {
    /// Loads the secrets from `dir`, creating the directory and any missing file; the flock key
    /// comes from `key_file` when given (it must exist: a made-up key would split the flock).
    pub fn load_or_create(dir: &Path, key_file: Option<&Path>) -> Result<Secrets, String> {
        fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
        let rng = SystemRandom::new();
        let secret_path = dir.join("server.secret");
        let server_secret = if secret_path.exists() {
            let text = fs::read_to_string(&secret_path)
                .map_err(|e| format!("cannot read {}: {e}", secret_path.display()))?;
            let bytes = from_hex(&text).filter(|b| b.len() == 32).ok_or_else(|| {
                format!("{} is not 64 hex characters; delete it to generate a new one (appliances will re-register)", secret_path.display())
            })?;
            bytes.try_into().expect("checked length")
        } else {
            let mut s = [0u8; 32];
            rng.fill(&mut s)
                .map_err(|_| "system random generator failed".to_string())?;
            write_private(&secret_path, format!("{}\n", to_hex(&s)).as_bytes())?;
            s
        };
        let key_path = key_file.map_or_else(|| dir.join("flock.key"), Path::to_path_buf);
        let der = if key_path.exists() || key_file.is_some() {
            fs::read(&key_path)
                .map_err(|e| format!("cannot read the flock key {}: {e}", key_path.display()))?
        } else {
            let der = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| "key generation failed".to_string())?;
            write_private(&key_path, der.as_ref())?;
            der.as_ref().to_vec()
        };
        let der = key_der(&der).map_err(|e| format!("{}: {e}", key_path.display()))?;
        // v1 (no public key: computed from the private one) or v2 (checked against it).
        let flock_key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|e| {
            format!(
                "{} is not an Ed25519 PKCS#8 key (v1 or v2, DER or PEM): {e}",
                key_path.display()
            )
        })?;
        let peer_secret = flock_proto::membership::peer_secret(&der);
        let pub_path = dir.join("flock.pub");
        let pub_hex = format!("{}\n", to_hex(&public_key(&flock_key)));
        if fs::read_to_string(&pub_path).ok().as_deref() != Some(pub_hex.as_str()) {
            fs::write(&pub_path, pub_hex)
                .map_err(|e| format!("cannot write {}: {e}", pub_path.display()))?;
        }
        Ok(Secrets {
            server_secret,
            flock_key,
            peer_secret,
        })
    }
}

/// The DER bytes of a PKCS#8 key file: the file itself, or the body of its PEM
/// `PRIVATE KEY` block (base64 between `-----BEGIN PRIVATE KEY-----` and `-----END PRIVATE
/// KEY-----`).
fn key_der(file: &[u8]) -> Result<Vec<u8>, String> {
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
    const END: &str = "-----END PRIVATE KEY-----";
    let Some(text) = std::str::from_utf8(file)
        .ok()
        .filter(|t| t.trim_start().starts_with("-----BEGIN "))
    else {
        return Ok(file.to_vec());
    };
    let start = text
        .find(BEGIN)
        .ok_or("a PEM file without a PRIVATE KEY block (an unencrypted PKCS#8 key is needed)")?
        + BEGIN.len();
    let len = text[start..]
        .find(END)
        .ok_or("a PEM PRIVATE KEY block without its END line")?;
    let body: String = text[start..start + len]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("the PEM PRIVATE KEY block is not base64: {e}"))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = std::env::temp_dir().join(format!("flockd-secrets-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let a = Secrets::load_or_create(&dir, None).unwrap();
        let b = Secrets::load_or_create(&dir, None).unwrap();
        assert_eq!(a.server_secret, b.server_secret);
        assert_eq!(a.peer_secret, b.peer_secret);
        assert_eq!(public_key(&a.flock_key), public_key(&b.flock_key));
        let mode = fs::metadata(dir.join("server.secret"))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        fs::write(dir.join("server.secret"), "nonsense").unwrap();
        assert!(Secrets::load_or_create(&dir, None)
            .err()
            .expect("refused")
            .contains("64 hex"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_key_file_is_read_never_created() {
        let dir = std::env::temp_dir().join(format!("flockd-keyfile-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (a, b) = (dir.join("a"), dir.join("b"));
        let shared = dir.join("shared.key");
        let e = Secrets::load_or_create(&a, Some(&shared))
            .err()
            .expect("missing key file");
        assert!(
            e.contains("cannot read the flock key") && e.contains("shared.key"),
            "{e}"
        );
        assert!(!shared.exists());
        let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        fs::write(&shared, der.as_ref()).unwrap();
        let (x, y) = (
            Secrets::load_or_create(&a, Some(&shared)).unwrap(),
            Secrets::load_or_create(&b, Some(&shared)).unwrap(),
        );
        assert_eq!(public_key(&x.flock_key), public_key(&y.flock_key));
        assert_eq!(
            x.peer_secret, y.peer_secret,
            "same key file, same peer secret"
        );
        assert_ne!(
            x.server_secret, y.server_secret,
            "server secrets stay per server"
        );
        assert!(!a.join("flock.key").exists());
        assert_eq!(
            fs::read_to_string(a.join("flock.pub")).unwrap().trim(),
            to_hex(&public_key(&x.flock_key))
        );
        // The same key as PEM: the same key pair and, since the peer secret is derived from the
        // DER bytes, the same peer secret.
        use base64::Engine as _;
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der.as_ref())
        );
        fs::write(&shared, pem).unwrap();
        let z = Secrets::load_or_create(&b, Some(&shared)).unwrap();
        assert_eq!(public_key(&z.flock_key), public_key(&x.flock_key));
        assert_eq!(z.peer_secret, x.peer_secret);
        fs::write(
            &shared,
            "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(Secrets::load_or_create(&a, Some(&shared))
            .err()
            .expect("bad base64")
            .contains("not base64"));
        fs::write(&shared, b"junk").unwrap();
        assert!(Secrets::load_or_create(&a, Some(&shared))
            .err()
            .expect("junk")
            .contains("not an Ed25519 PKCS#8 key"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
