//! Appliance keys: Ed25519 (ring), stored as PKCS#8 DER, one file per appliance.
//!
//! [`load_or_create`] is what an appliance calls at start: it reads the key file, or makes a new
//! key and writes it with mode 0600 (never overwriting a file another process wrote meanwhile).

use flock_proto::identity::{from_hex, PUBLIC_KEY_LEN};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why a key could not be loaded, made or stored.
#[derive(Debug)]
pub enum KeyError {
    /// The file (or its directory) could not be read, created or written.
    Io { path: PathBuf, source: io::Error },
    /// The file exists but does not hold an Ed25519 PKCS#8 key.
    Invalid { path: PathBuf },
    /// The system random number generator failed.
    Random,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Io { path, source } => write!(f, "key file {}: {source}", path.display()),
            KeyError::Invalid { path } => {
                write!(
                    f,
                    "key file {} does not hold an Ed25519 key (PKCS#8 DER expected)",
                    path.display()
                )
            }
            KeyError::Random => write!(f, "the system random number generator failed"),
        }
    }
}

impl std::error::Error for KeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A new key as PKCS#8 DER (the form [`load`] reads).
pub fn generate_pkcs8() -> Result<Vec<u8>, KeyError> {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Random)?;
    Ok(doc.as_ref().to_vec())
}

/// Reads a key pair from PKCS#8 DER bytes (v1 or v2 documents).
pub fn from_pkcs8(der: &[u8]) -> Option<Ed25519KeyPair> {
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).ok()
}

/// Loads the key stored at `path`.
pub fn load(path: &Path) -> Result<Ed25519KeyPair, KeyError> {
    let der = fs::read(path).map_err(io_err(path))?;
    from_pkcs8(&der).ok_or_else(|| KeyError::Invalid {
        path: path.to_path_buf(),
    })
}

/// Loads the key at `path`, or creates one there (directory included, mode 0700; file mode
/// 0600). Returns the key and whether it was created.
pub fn load_or_create(path: &Path) -> Result<(Ed25519KeyPair, bool), KeyError> {
    match load(path) {
        Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        other => return other.map(|k| (k, false)),
    }
    let der = generate_pkcs8()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir(dir).map_err(io_err(dir))?;
    }
    if store_new(path, &der).map_err(io_err(path))? {
        let key = from_pkcs8(&der).ok_or(KeyError::Random)?;
        Ok((key, true))
    } else {
        // Someone else created it between our read and our write: theirs wins.
        load(path).map(|k| (k, false))
    }
}

/// Writes `der` to `path` unless the file exists: to a private temporary file first, then
/// linked into place, so nobody ever reads a partial key. False if `path` already existed.
fn store_new(path: &Path, der: &[u8]) -> io::Result<bool> {
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp_name.push(format!(".tmp{}-{seq}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = private_file(&tmp)?;
        f.write_all(der)?;
        f.sync_all()?;
        drop(f);
        match fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            // A file system without hard links: rename (may replace a concurrent writer's key).
            Err(_) => fs::rename(&tmp, path).map(|()| true),
        }
    })();
    let _ = fs::remove_file(&tmp);
    result
}

#[cfg(unix)]
fn private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn create_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

/// Why a public key given as text was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicKeyError {
    /// Not hex.
    NotHex,
    /// Hex, but not 32 bytes (the length found, in bytes).
    WrongLength(usize),
}

impl fmt::Display for PublicKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicKeyError::NotHex => write!(f, "not a hex string (64 hex digits expected)"),
            PublicKeyError::WrongLength(n) => {
                write!(
                    f,
                    "{n} bytes where an Ed25519 public key has {PUBLIC_KEY_LEN} (64 hex digits)"
                )
            }
        }
    }
}

impl std::error::Error for PublicKeyError {}

/// Parses an Ed25519 public key written as 64 hex digits (surrounding whitespace ignored).
pub fn public_key_from_hex(s: &str) -> Result<[u8; PUBLIC_KEY_LEN], PublicKeyError> {
    let bytes = from_hex(s.trim()).ok_or(PublicKeyError::NotHex)?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| PublicKeyError::WrongLength(bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flock_proto::identity::public_key;
    use flock_testkit::TempDir;

    #[test]
    fn created_then_loaded_again() {
        let dir = TempDir::new("keys");
        let path = dir.0.join("sub").join("box.key");
        let (k1, created) = load_or_create(&path).unwrap();
        assert!(created);
        let (k2, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(public_key(&k1), public_key(&k2));
        assert_eq!(public_key(&load(&path).unwrap()), public_key(&k1));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                fs::metadata(path.parent().unwrap())
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777,
                0o700
            );
        }
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn distinct_files_get_distinct_keys() {
        let dir = TempDir::new("distinct");
        let (a, _) = load_or_create(&dir.0.join("a.key")).unwrap();
        let (b, _) = load_or_create(&dir.0.join("b.key")).unwrap();
        assert_ne!(public_key(&a), public_key(&b));
    }

    #[test]
    fn garbage_file_is_a_clear_error_and_is_kept() {
        let dir = TempDir::new("bad");
        fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("box.key");
        fs::write(&path, b"not a key").unwrap();
        let err = load_or_create(&path).unwrap_err();
        assert!(matches!(err, KeyError::Invalid { .. }), "{err:?}");
        assert!(err.to_string().contains("box.key"), "{err}");
        assert!(err.to_string().contains("Ed25519"), "{err}");
        assert_eq!(
            fs::read(&path).unwrap(),
            b"not a key",
            "a bad key file is never overwritten"
        );
    }

    #[test]
    fn unreadable_path_is_an_io_error() {
        let dir = TempDir::new("unreadable");
        fs::create_dir_all(dir.0.join("box.key")).unwrap(); // a directory where the file should be
        let err = load(&dir.0.join("box.key")).unwrap_err();
        assert!(matches!(err, KeyError::Io { .. }), "{err:?}");
        assert!(load_or_create(&dir.0.join("box.key")).is_err());
        let missing = load(&dir.0.join("missing.key")).unwrap_err();
        assert!(missing.to_string().contains("missing.key"), "{missing}");
    }

    #[test]
    fn public_key_hex() {
        let hex = "00".repeat(31) + "ff";
        let mut want = [0; 32];
        want[31] = 0xff;
        assert_eq!(public_key_from_hex(&format!(" {hex}\n")), Ok(want));
        assert_eq!(public_key_from_hex(&hex.to_uppercase()), Ok(want));
        assert_eq!(public_key_from_hex("zz"), Err(PublicKeyError::NotHex));
        assert_eq!(public_key_from_hex("abc"), Err(PublicKeyError::NotHex));
        assert_eq!(
            public_key_from_hex("abcd"),
            Err(PublicKeyError::WrongLength(2))
        );
    }
}
