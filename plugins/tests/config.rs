//! `PluginSpec` as it appears in flockd's TOML (`[[plugins.load]]`).

use flock_plugins::PluginSpec;

#[derive(serde::Deserialize)]
struct Section {
    load: Vec<PluginSpec>,
}

#[test]
fn specs_parse_and_reject_unknown_keys() {
    let s: Section = toml::from_str(
        r#"
        [[load]]
        path = "/usr/lib/flock/libflock_plugin_allowlist.so"
        config = "/etc/flock/allowlist"
        [[load]]
        path = "libdeny_persona.so"
        "#,
    )
    .unwrap();
    assert_eq!(s.load[0].config, "/etc/flock/allowlist");
    assert_eq!(s.load[1].config, "", "config defaults to empty");
    let err = toml::from_str::<Section>("[[load]]\npath = \"x.so\"\nconfg = \"y\"\n")
        .err()
        .unwrap();
    assert!(err.to_string().contains("unknown field `confg`"), "{err}");
}
