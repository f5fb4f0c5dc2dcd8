//! `[flock] key_file` takes the Ed25519 keys `openssl genpkey -algorithm ed25519` writes
//! (PKCS#8 v1, PEM and DER): flockd prints the public key openssl derives, and serves with it
//! (an appliance pinning that key registers and its CHECK signatures verify).
use flock_proto::identity::from_hex;
use flock_tests::{workspace_bin, Flockd, TempDir};
use std::path::Path;
use std::process::Command;

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The raw public key as openssl computes it (last 32 bytes of the SubjectPublicKeyInfo).
fn openssl_public_key(key: &Path, form: &str) -> [u8; 32] {
    let spki = openssl(&[
        "pkey",
        "-inform",
        form,
        "-in",
        key.to_str().unwrap(),
        "-pubout",
        "-outform",
        "DER",
    ]);
    spki[spki.len() - 32..].try_into().unwrap()
}

/// A new Ed25519 key from `openssl genpkey` (PKCS#8 v1, PEM) at `path`.
fn genpkey(path: &Path) {
    openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        path.to_str().unwrap(),
    ]);
}

fn config_with_key(dir: &Path, key: &Path) -> std::path::PathBuf {
    let conf = dir.join("flockd.toml");
    std::fs::write(
        &conf,
        format!("[flock]\nkey_file = \"{}\"\n", key.display()),
    )
    .unwrap();
    conf
}

fn print_flock_key(conf: &Path, data: &Path) -> [u8; 32] {
    let out = Command::new(workspace_bin("flockd"))
        .arg("--config")
        .arg(conf)
        .arg("--data-dir")
        .arg(data)
        .arg("--print-flock-key")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "flockd refused the key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    from_hex(String::from_utf8(out.stdout).unwrap().trim())
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn openssl_pem_and_der_keys_are_accepted() {
    let dir = TempDir::new("keyfile");
    let pem = dir.0.join("flock.pem");
    let der = dir.0.join("flock.der");
    genpkey(&pem);
    openssl(&[
        "pkey",
        "-in",
        pem.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]);
    // What openssl writes is PKCS#8 version 1 (INTEGER 0 after the outer SEQUENCE).
    let der_bytes = std::fs::read(&der).unwrap();
    assert_eq!(&der_bytes[2..5], &[0x02, 0x01, 0x00], "a v1 key");
    assert!(std::fs::read_to_string(&pem)
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    let want = openssl_public_key(&pem, "PEM");
    assert_eq!(openssl_public_key(&der, "DER"), want);
    for key in [&pem, &der] {
        let sub = dir.0.join(key.file_name().unwrap()).with_extension("d");
        std::fs::create_dir_all(&sub).unwrap();
        let conf = config_with_key(&sub, key);
        assert_eq!(
            print_flock_key(&conf, &sub.join("data")),
            want,
            "{}",
            key.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flockd_serves_with_an_openssl_key() {
    let dir = TempDir::new("keyfile-serve");
    let pem = dir.0.join("flock.pem");
    genpkey(&pem);
    let conf = config_with_key(&dir.0, &pem);
    let server = Flockd::start(&["--config", conf.to_str().unwrap()]);
    assert_eq!(server.flock_public_key, openssl_public_key(&pem, "PEM"));
    // An appliance pinning openssl's public key registers (the flock signs with that key).
    let mut a = flock_tests::appliance(&server, "openssl-box", 3);
    flock_tests::wait_event(
        &mut a,
        std::time::Duration::from_secs(5),
        "registration",
        |e| matches!(e, flock_appliance::Event::Registered { .. }),
    )
    .await;
    a.shutdown().await;
}
