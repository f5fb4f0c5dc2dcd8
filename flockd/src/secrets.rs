//! The server secret and the flock key, generated into the data directory on first start and
//! reused after. Files are created with mode 0600.
//!
//! - `server.secret`: 32 random bytes, hex. Keys the keep-alive tokens and nonces: keep it
//!   across restarts, or every appliance must register again.
//! - `flock.key`: the flock's Ed25519 key pair (PKCS#8 v2, DER). Shared by all servers of a flock.
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
}

impl Secrets {
    /// Loads the secrets from `dir`, creating the directory and any missing file.
    pub fn load_or_create(dir: &Path) -> Result<Secrets, String> {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
        let rng = SystemRandom::new();
        let secret_path = dir.join("server.secret");
        let server_secret = if secret_path.exists() {
            let text = fs::read_to_string(&secret_path).map_err(|e| format!("cannot read {}: {e}", secret_path.display()))?;
            let bytes = from_hex(&text).filter(|b| b.len() == 32).ok_or_else(|| {
                format!("{} is not 64 hex characters; delete it to generate a new one (appliances will re-register)", secret_path.display())
            })?;
            bytes.try_into().expect("checked length")
        } else {
            let mut s = [0u8; 32];
            rng.fill(&mut s).map_err(|_| "system random generator failed".to_string())?;
            write_private(&secret_path, format!("{}\n", to_hex(&s)).as_bytes())?;
            s
        };
        let key_path = dir.join("flock.key");
        let flock_key = if key_path.exists() {
            let der = fs::read(&key_path).map_err(|e| format!("cannot read {}: {e}", key_path.display()))?;
            Ed25519KeyPair::from_pkcs8(&der).map_err(|e| format!("{} is not an Ed25519 PKCS#8 key: {e}", key_path.display()))?
        } else {
            let der = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "key generation failed".to_string())?;
            write_private(&key_path, der.as_ref())?;
            Ed25519KeyPair::from_pkcs8(der.as_ref()).map_err(|e| format!("generated key unreadable: {e}"))?
        };
        let pub_path = dir.join("flock.pub");
        let pub_hex = format!("{}\n", to_hex(&public_key(&flock_key)));
        if fs::read_to_string(&pub_path).ok().as_deref() != Some(pub_hex.as_str()) {
            fs::write(&pub_path, pub_hex).map_err(|e| format!("cannot write {}: {e}", pub_path.display()))?;
        }
        Ok(Secrets { server_secret, flock_key })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = std::env::temp_dir().join(format!("flockd-secrets-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let a = Secrets::load_or_create(&dir).unwrap();
        let b = Secrets::load_or_create(&dir).unwrap();
        assert_eq!(a.server_secret, b.server_secret);
        assert_eq!(public_key(&a.flock_key), public_key(&b.flock_key));
        let mode = fs::metadata(dir.join("server.secret")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        fs::write(dir.join("server.secret"), "nonsense").unwrap();
        assert!(Secrets::load_or_create(&dir).err().expect("refused").contains("64 hex"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
