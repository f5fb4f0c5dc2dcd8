//! docs/CONFIG.md's example blocks against the loader: they load, the first shows every key
//! with its default (but the few it fills in as examples), every key the loader takes is in
//! them, and every flag their comments name exists.

use super::*;
use std::collections::BTreeSet;

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CONFIG.md");
    std::fs::read_to_string(path).unwrap()
}

/// The ```toml blocks, in order: the full example, then `[flock]`.
fn toml_blocks(doc: &str) -> Vec<&str> {
    doc.split("```toml\n")
        .skip(1)
        .map(|rest| rest.split_once("```").expect("closed block").0)
        .collect()
}

/// Loads `text` as `flockd --config DIR/flockd.toml` would.
fn load(text: &str, dir: &Path) -> Config {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("flockd.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn temp_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("flockd-doc-{what}-{}", std::process::id()))
}

#[test]
fn the_example_loads_and_shows_the_defaults() {
    let dir = temp_dir("defaults");
    let example = load(toml_blocks(&doc())[0], &dir);
    std::fs::remove_dir_all(&dir).unwrap();
    // What the example fills in where the default is "none".
    let mut expected = Config::default();
    expected.ws.tls = Some(flock_ws::TlsConfig {
        cert: dir.join("fullchain.pem"),
        key: dir.join("privkey.pem"),
        redirect_listen: Some("0.0.0.0:80".parse().unwrap()),
        ..flock_ws::TlsConfig::default()
    });
    expected.plugins.load = vec![flock_plugins::PluginSpec {
        path: dir.join("libflock_plugin_allowlist.so"),
        config: "allowlist.txt".into(),
    }];
    // Section by section, so that a failure names the section.
    let e = &expected;
    let x = &example;
    assert_eq!(
        (
            &x.udp,
            &x.data_dir,
            x.cores,
            &x.cpus,
            x.pin,
            &x.log,
            x.ws_enabled
        ),
        (
            &e.udp,
            &e.data_dir,
            e.cores,
            &e.cpus,
            e.pin,
            &e.log,
            e.ws_enabled
        )
    );
    assert_eq!(x.limits, e.limits, "[limits]");
    assert_eq!(x.timers, e.timers, "[timers]");
    assert_eq!(x.socket, e.socket, "[socket]");
    assert_eq!(x.stun, e.stun, "[stun]");
    assert_eq!(x.login, e.login, "[login]");
    assert_eq!(x.ws, e.ws, "[ws]");
    assert_eq!(x.plugins, e.plugins, "[plugins]");
    assert_eq!(x.flock, e.flock, "no [flock]");
    assert_eq!(example, expected);
    Config::default().validate().unwrap();
}

#[test]
fn the_flock_example_loads() {
    let dir = temp_dir("flock");
    let c = load(toml_blocks(&doc())[1], &dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let m = c.membership().expect("a list");
    assert_eq!((m.me, m.servers.len()), (0, 2));
    assert_eq!(c.flock.key_file, Some(dir.join("flock.key")));
}

/// The tables in `value` (by path: `""`, `"ws"`, `"ws.tls"`, `"plugins.load"`), and the keys
/// of each as (table, key).
type Keys = BTreeSet<(String, String)>;

fn documented_keys(value: &toml::Value, path: &str, tables: &mut BTreeSet<String>, out: &mut Keys) {
    let table = match value {
        toml::Value::Table(t) => t,
        toml::Value::Array(a) => {
            return a.iter().for_each(|v| documented_keys(v, path, tables, out));
        }
        _ => return,
    };
    tables.insert(path.to_string());
    for (key, v) in table {
        out.insert((path.to_string(), key.clone()));
        let inner = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        documented_keys(v, &inner, tables, out);
    }
}

/// The keys the loader takes in the table at `path`, from its answer to an unknown key there
/// ("unknown field `…`, expected one of `a`, `b`").
fn accepted_keys(path: &str) -> Vec<String> {
    let text = match path {
        "" => "zz_unknown = 1\n".to_string(),
        "plugins.load" => "[[plugins.load]]\npath = \"x\"\nzz_unknown = 1\n".into(),
        "flock.servers" => "[[flock.servers]]\nzz_unknown = 1\n".into(),
        _ => format!("[{path}]\nzz_unknown = 1\n"),
    };
    let err = toml::from_str::<Config>(&text)
        .expect_err("an unknown key is refused")
        .to_string();
    let expected = err
        .split_once("unknown field `zz_unknown`, expected ")
        .unwrap_or_else(|| panic!("{path}: {err}"))
        .1;
    let expected = expected.lines().next().unwrap();
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

#[test]
fn every_key_the_loader_takes_is_documented() {
    let (mut tables, mut documented) = (BTreeSet::new(), BTreeSet::new());
    for block in toml_blocks(&doc()) {
        let value: toml::Value = toml::from_str(block).unwrap();
        documented_keys(&value, "", &mut tables, &mut documented);
    }
    let mut accepted = BTreeSet::new();
    for table in tables {
        for key in accepted_keys(&table) {
            accepted.insert((table.to_string(), key));
        }
    }
    let missing: Vec<_> = accepted.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&accepted).collect();
    assert!(
        missing.is_empty(),
        "keys not in docs/CONFIG.md: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "documented keys the loader refuses: {unknown:?}"
    );
}

#[test]
fn every_flag_the_example_names_exists() {
    use clap::CommandFactory;
    let command = crate::Args::command();
    let flags: BTreeSet<&str> = command
        .get_arguments()
        .filter_map(|a| a.get_long())
        .collect();
    let doc = doc();
    for block in toml_blocks(&doc) {
        for word in block.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')) {
            if let Some(flag) = word.strip_prefix("--") {
                assert!(flags.contains(flag), "--{flag} is not a flockd flag");
            }
        }
    }
}

#[test]
fn the_flags_show_the_defaults() {
    use clap::CommandFactory;
    let command = crate::Args::command();
    let help = |flag: &str| {
        let arg = command.get_arguments().find(|a| a.get_long() == Some(flag));
        arg.and_then(|a| a.get_help()).unwrap().to_string()
    };
    let c = Config::default();
    for (flag, default) in [
        ("udp", c.udp.to_string()),
        ("ws", c.ws.listen.to_string()),
        ("data-dir", format!("./{}", c.data_dir.display())),
    ] {
        let shown = format!("[default: {default}]");
        assert!(help(flag).contains(&shown), "--{flag}: {}", help(flag));
    }
}

/// docs/PROTOCOL.md §9 gives the timers' defaults with their keys: the same as here.
#[test]
fn the_protocol_timers_are_the_defaults() {
    let protocol = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md");
    let protocol = std::fs::read_to_string(protocol).unwrap();
    let table = protocol.split_once("## 9. Timers\n").unwrap().1;
    let example: toml::Value = toml::from_str(toml_blocks(&doc())[0]).unwrap();
    let mut checked = 0;
    for row in table.lines().skip(3).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
        let keys: Vec<String> = cells[2]
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|k| k.contains('.'))
            .map(String::from)
            .collect();
        let defaults: Vec<&str> = cells[1].split(" / ").collect();
        if keys.is_empty() {
            continue;
        }
        assert_eq!(keys.len(), defaults.len(), "{row}");
        for (key, default) in keys.iter().zip(defaults) {
            let written: String = default.chars().filter(|c| !" ±".contains(*c)).collect();
            let (table, field) = key.split_once('.').unwrap();
            let ours = example[table][field].as_str().unwrap();
            assert_eq!(
                humantime::parse_duration(&written).unwrap(),
                humantime::parse_duration(ours).unwrap(),
                "PROTOCOL.md §9 on {key}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} timers");
}
