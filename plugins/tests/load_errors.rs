//! Every start-up failure stops the load with a message naming the file and the reason.

use flock_plugins::{LoadErrorKind, Plugins};
use flock_testkit::plugins::*;

fn error(spec: flock_plugins::PluginSpec) -> (String, LoadErrorKind) {
    match Plugins::load(&[spec]) {
        Ok(_) => panic!("loaded"),
        Err(e) => (e.to_string(), e.reason),
    }
}

#[test]
fn missing_file() {
    let (msg, kind) = error(spec("/nonexistent/libnothing.so", ""));
    assert!(matches!(kind, LoadErrorKind::MissingFile(_)));
    assert!(
        msg.starts_with("plugin /nonexistent/libnothing.so: cannot open the file"),
        "{msg}"
    );
}

#[test]
fn not_a_library() {
    let dir = TempDir::new("notlib");
    let path = dir.0.join("libtext.so");
    std::fs::write(&path, "not ELF").unwrap();
    let (msg, kind) = error(spec(&path, ""));
    assert!(matches!(kind, LoadErrorKind::NotALibrary(_)));
    assert!(
        msg.contains("libtext.so") && msg.contains("not a loadable shared library"),
        "{msg}"
    );
}

#[test]
fn missing_symbol() {
    let dir = TempDir::new("nosym");
    let (msg, kind) = error(spec(broken_plugin(&dir, &["-DNO_SYMBOL"]), ""));
    assert!(matches!(kind, LoadErrorKind::MissingSymbol));
    assert!(msg.contains("missing symbol `flock_plugin_v1`"), "{msg}");
}

#[test]
fn null_table() {
    let dir = TempDir::new("null");
    let (msg, kind) = error(spec(broken_plugin(&dir, &["-DNULL_TABLE"]), ""));
    assert!(matches!(kind, LoadErrorKind::NullTable));
    assert!(msg.contains("returned NULL"), "{msg}");
}

#[test]
fn abi_version_mismatch() {
    let dir = TempDir::new("abi");
    let (msg, kind) = error(spec(broken_plugin(&dir, &["-DWRONG_ABI"]), ""));
    assert!(matches!(
        kind,
        LoadErrorKind::AbiMismatch {
            found: 2,
            expected: 1
        }
    ));
    assert!(
        msg.contains("ABI version mismatch: the plugin has version 2, this flockd expects 1"),
        "{msg}"
    );
}

#[test]
fn struct_too_small() {
    let dir = TempDir::new("small");
    let (msg, kind) = error(spec(broken_plugin(&dir, &["-DTOO_SMALL"]), ""));
    let needed = std::mem::size_of::<flock_plugins::abi::FlockPluginV1>() as u32;
    assert!(
        matches!(kind, LoadErrorKind::StructTooSmall { found, needed: n } if found == needed - 8 && n == needed)
    );
    assert!(msg.contains("plugin table too small"), "{msg}");
}

#[test]
fn c_init_error_carries_the_plugins_message() {
    let dir = TempDir::new("cinit");
    let (msg, kind) = error(spec(broken_plugin(&dir, &["-DINIT_FAILS"]), ""));
    assert!(matches!(kind, LoadErrorKind::Init { code: 3, .. }));
    assert!(
        msg.contains("init of `broken` failed (code 3): no database at /nonexistent"),
        "{msg}"
    );
}

#[test]
fn rust_init_error_and_init_panic() {
    let (msg, _) = error(testkit("init=fail"));
    assert!(
        msg.contains("init of `testkit` failed (code -1): asked to fail"),
        "{msg}"
    );
    let (msg, _) = error(testkit("init=panic"));
    assert!(
        msg.contains("init panicked: asked to panic in init"),
        "{msg}"
    );
}

#[test]
fn c_example_without_config_refuses_to_start() {
    let dir = TempDir::new("denyp");
    let out = dir.0.join("libdeny_persona.so");
    let lib = flock_plugins::testing::build_c_plugin(
        flock_plugins::testing::DENY_PERSONA_C.as_ref(),
        &out,
        &[],
    );
    let (msg, _) = error(spec(lib, ""));
    assert!(
        msg.contains(
            "init of `deny-persona` failed (code -1): config must be the persona id to deny"
        ),
        "{msg}"
    );
}

#[test]
fn the_first_failure_stops_the_chain() {
    let good = testkit("");
    let err = Plugins::load(&[good, spec("/nonexistent/second.so", "")])
        .err()
        .expect("fails");
    assert_eq!(err.path, std::path::Path::new("/nonexistent/second.so"));
}

#[test]
fn a_valid_c_plugin_loads() {
    let dir = TempDir::new("ok");
    let plugins = Plugins::load(&[spec(broken_plugin(&dir, &[]), "")]).unwrap();
    assert_eq!(plugins.names(), ["broken"]);
}
