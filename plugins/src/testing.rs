//! Finding and building plugins in tests (this crate's and flockd's end-to-end tests).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The plugin crates of the workspace (cdylibs).
pub const PLUGIN_PACKAGES: [&str; 3] = [
    "flock-plugin-allowlist",
    "flock-plugin-login-ratelimit",
    "flock-plugin-testkit",
];

/// The C example plugin's source.
pub const DENY_PERSONA_C: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/deny_persona.c");

/// A C plugin that is broken on request, one way per flag: `-DWRONG_ABI`, `-DTOO_SMALL`,
/// `-DNO_SYMBOL`, `-DNULL_TABLE`, `-DINIT_FAILS` (start-up errors), `-DHOOK_ERRORS` (every hook
/// returns an error code). No flag: a valid plugin with no hooks.
pub const BROKEN_C: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/c/broken.c");

/// The shared library of a workspace plugin package, e.g. `flock-plugin-allowlist` →
/// `target/<profile>/libflock_plugin_allowlist.so`, next to the running test's profile
/// directory. The plugin packages are (re)built once per process with the cargo that runs the
/// tests (a no-op after `cargo build --workspace`), unless `FLOCK_PLUGINS_NO_BUILD` is set.
pub fn plugin_lib(package: &str) -> PathBuf {
    let dir = profile_dir();
    if std::env::var_os("FLOCK_PLUGINS_NO_BUILD").is_none() {
        if let Err(e) = BUILT.get_or_init(|| build_plugins(&dir)) {
            panic!("building the plugin crates failed ({e}): run `cargo build --workspace` first");
        }
    }
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let lib = dir.join(file);
    assert!(
        lib.exists(),
        "{} not built: run `cargo build --workspace` first",
        lib.display()
    );
    lib
}

static BUILT: OnceLock<Result<(), String>> = OnceLock::new();

/// `target/<profile>`: test executables live in its `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

fn build_plugins(profile_dir: &Path) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--manifest-path", manifest]);
    for p in PLUGIN_PACKAGES {
        cmd.args(["-p", p]);
    }
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
        None => return Err("no profile directory".into()),
    }
    cmd.arg("--target-dir")
        .arg(profile_dir.parent().ok_or("no target directory")?);
    let status = cmd.status().map_err(|e| e.to_string())?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| format!("cargo: {status}"))
}

/// Compiles one C source into the shared library `out` against `flock_plugin.h`, with extra
/// compiler arguments (e.g. `-DBROKEN`). Uses `$CC`, else `cc`. Panics with the compiler's
/// output on failure.
pub fn build_c_plugin(src: &Path, out: &Path, args: &[&str]) -> PathBuf {
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let output = Command::new(&cc)
        .args([
            "-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror", "-std=c99",
        ])
        .arg("-I")
        .arg(crate::INCLUDE_DIR)
        .args(args)
        .arg("-o")
        .arg(out)
        .arg(src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc:?}: {e}"));
    assert!(
        output.status.success(),
        "{cc:?} failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    out.to_path_buf()
}
