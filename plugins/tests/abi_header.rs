//! `include/flock_plugin.h` matches `abi.rs`: a C program compiled against the header prints
//! every struct's size and every field's offset, and they must equal Rust's.

use flock_plugins::abi::*;
use std::collections::BTreeMap;
use std::mem::{offset_of, size_of};
use std::process::Command;

macro_rules! layouts {
    ($($c:literal => $r:ty { $($f:ident),* })*) => {{
        let mut rust = BTreeMap::new();
        let mut c = String::new();
        $(
            rust.insert($c.to_string(), size_of::<$r>());
            c += &format!("  printf(\"%s %zu\\n\", \"{0}\", sizeof({0}));\n", $c);
            $(
                rust.insert(format!("{}.{}", $c, stringify!($f)), offset_of!($r, $f));
                c += &format!("  printf(\"%s %zu\\n\", \"{0}.{1}\", offsetof({0}, {1}));\n", $c, stringify!($f));
            )*
        )*
        (rust, c)
    }};
}

#[test]
fn header_layout_matches_rust() {
    let (mut rust, body) = layouts! {
        "flock_str" => FlockStr { ptr, len }
        "flock_addr" => FlockAddr { text, family, ip, port }
        "flock_registration" => FlockRegistration { struct_size, key_change, name, fingerprint, addr }
        "flock_login" => FlockLogin { struct_size, appliance, persona, client, origin }
        "flock_persona" => FlockPersona { id, name }
        "flock_persona_query" => FlockPersonaQuery { struct_size, appliance, client, personas, count }
        "flock_audit_event" => FlockAuditEvent { struct_size, kind, name, addr, old_addr, fingerprint, persona, reason }
        "flock_plugin_table" => FlockPluginV1 {
            abi_version, struct_size, name, init, admit_registration, authorize_login, filter_personas, audit
        }
    };
    let consts = [
        ("FLOCK_PLUGIN_ABI_VERSION", ABI_VERSION as i64),
        ("FLOCK_ALLOW", ALLOW.into()),
        ("FLOCK_DENY", DENY.into()),
        ("FLOCK_RETRY_AFTER", RETRY_AFTER.into()),
        ("FLOCK_ERROR", ERROR.into()),
        ("FLOCK_AUDIT_REGISTERED", AUDIT_REGISTERED.into()),
        ("FLOCK_AUDIT_EXPIRED", AUDIT_EXPIRED.into()),
        ("FLOCK_AUDIT_ADDRESS_CHANGED", AUDIT_ADDRESS_CHANGED.into()),
        ("FLOCK_AUDIT_LOGIN_OK", AUDIT_LOGIN_OK.into()),
        ("FLOCK_AUDIT_LOGIN_FAILED", AUDIT_LOGIN_FAILED.into()),
    ];
    let mut program =
        String::from("#include \"flock_plugin.h\"\n#include <stdio.h>\nint main(void) {\n");
    program += &body;
    for (name, value) in consts {
        program += &format!("  printf(\"%s %lld\\n\", \"{name}\", (long long)({name}));\n");
        rust.insert(name.to_string(), value as usize);
    }
    program += "  return 0;\n}\n";

    let dir = flock_testkit::TempDir::new("abi");
    std::fs::write(dir.0.join("layout.c"), program).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let exe = dir.0.join("layout");
    let built = Command::new(&cc)
        .args([
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I",
            flock_plugins::INCLUDE_DIR,
            "-o",
        ])
        .arg(&exe)
        .arg(dir.0.join("layout.c"))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    let c: BTreeMap<String, usize> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.parse::<i64>().unwrap() as usize)
        })
        .collect();
    assert_eq!(c, rust);
}

#[test]
fn header_compiles_as_cpp_too() {
    let dir = flock_testkit::TempDir::new("abi-cpp");
    let src = dir.0.join("t.cpp");
    std::fs::write(
        &src,
        "#include \"flock_plugin.h\"\nint main() { return sizeof(flock_plugin_table) == 0; }\n",
    )
    .unwrap();
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let Ok(out) = Command::new(&cxx)
        .args([
            "-fsyntax-only",
            "-Wall",
            "-Werror",
            "-I",
            flock_plugins::INCLUDE_DIR,
        ])
        .arg(&src)
        .output()
    else {
        eprintln!("no C++ compiler ({cxx}): skipped");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
