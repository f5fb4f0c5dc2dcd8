//! The README's browser demo, for real: flockd, the `flock-appliance` simulator binary with a
//! personas file, and headless Chromium on the demo page flockd serves. Wrong passwords end in
//! `bad-credentials` (this flockd allows two attempts): the page shows the server's words and
//! resets; after opening again, the right password opens a data channel to the simulator's WebRTC
//! peer, whose echo of the page's greeting and of a typed message shows on the page. The second
//! test submits every form with Enter, in a stock Chromium (no loopback candidates, mDNS names,
//! no media permission), as a newcomer following the README would. All on loopback: the
//! simulator's peer binds 127.0.0.1 because its server is there, and sends nowhere else.

use flock_tests::browser::Browser;
use flock_tests::simulator::Simulator;
use flock_tests::{Flockd, TempDir};
use serde_json::json;
use std::future::Future;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
/// WebDriver's Enter key.
const ENTER: &str = "\u{E007}";
const PERSONAS: &str = "\
[[persona]]
id = \"alice\"
name = \"Alice\"
password = \"wonderland\"

[[persona]]
id = \"bob\"
name = \"Bob\"
password = \"builder\"
";

/// Runs a test body with a hard time bound.
async fn bounded(f: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(90), f)
        .await
        .expect("test took longer than 90 s");
}

/// flockd (two credential attempts per websocket) and the simulator `demo-box` with
/// [`PERSONAS`], registered.
fn demo(dir: &TempDir) -> (Flockd, Simulator) {
    let config = dir.0.join("flockd.toml");
    std::fs::write(&config, "[login]\nmax_attempts = 2\n").unwrap();
    let server = Flockd::start(&["--config", config.to_str().unwrap()]);
    let personas = dir.0.join("personas.toml");
    std::fs::write(&personas, PERSONAS).unwrap();
    let mut sim = Simulator::start(&server, "demo-box", &dir.0, &personas, &[]);
    sim.wait_line("registered", WAIT);
    (server, sim)
}

/// The texts of the `<li>` of list `#id`.
async fn items(b: &Browser, id: &str) -> Vec<String> {
    let v = b
        .exec(
            "return [...document.querySelectorAll(`#${arguments[0]} li`)].map(li => li.textContent);",
            vec![json!(id)],
        )
        .await;
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_page_resets_after_bad_credentials_then_echoes_through_the_simulator() {
    bounded(async {
        let dir = TempDir::new("demo");
        let (server, mut sim) = demo(&dir);
        let b = Browser::start().await;
        b.goto(&format!("http://{}/", server.ws.unwrap())).await;

        b.fill("appliance", "demo-box").await;
        b.click("open").await;
        b.wait_text("status", |s| s == "choose a persona", WAIT)
            .await;
        let options = b.options("personas").await;
        assert_eq!(options, json!([["alice", "Alice"], ["bob", "Bob"]]));

        b.fill("password", "guess").await;
        b.click("login").await;
        b.wait_text("status", |s| s == "rejected (1 attempt left)", WAIT)
            .await;
        b.fill("password", "guess again").await;
        b.click("login").await;
        b.wait_text(
            "status",
            |s| s == "error: bad-credentials (too many wrong credentials)",
            WAIT,
        )
        .await;
        // Reset: nothing to log in to until the appliance is opened again.
        let state = b
            .exec(
                "return { login: document.getElementById('login').disabled, \
                 personas: document.querySelectorAll('#personas option').length, \
                 password: document.getElementById('password').value, \
                 channel: document.getElementById('channel').textContent };",
                vec![],
            )
            .await;
        assert_eq!(
            state,
            json!({"login": true, "personas": 0, "password": "", "channel": "closed"})
        );
        let steps = items(&b, "steps").await;
        assert!(
            steps
                .iter()
                .any(|s| s == "error: bad-credentials (too many wrong credentials)"),
            "{steps:?}"
        );

        b.click("open").await;
        b.wait_text("status", |s| s == "choose a persona", WAIT)
            .await;
        b.fill("password", "wonderland").await;
        b.click("login").await;
        b.wait_text("channel", |s| s == "open", WAIT).await;
        b.wait_text("received", |s| s == "echo: hello", WAIT).await;
        assert_eq!(b.text("status").await, "connected");
        b.fill("message", "how are you?").await;
        b.click("send").await;
        b.wait_text("received", |s| s == "echo: how are you?", WAIT)
            .await;

        // Each step was shown as it happened: these in this order (each caused the next)...
        let steps = items(&b, "steps").await;
        let ordered = [
            "asking the flock for appliance demo-box",
            "the appliance offers 2 personas: Alice, Bob",
            "logging in as alice",
            "accepted by the appliance",
            "offer from the appliance (",
            "answer sent",
            "data channel \"flock\" open",
        ];
        let mut at = 0;
        for w in ordered {
            match steps[at..].iter().position(|s| s.starts_with(w)) {
                Some(i) => at += i + 1,
                None => panic!("no step {w:?} after step {at} in {steps:#?}"),
            }
        }
        // ...and these after the acceptance, in whatever order they came.
        let accepted = steps
            .iter()
            .position(|s| s == "accepted by the appliance")
            .unwrap();
        for w in [
            "appliance candidate 127.0.0.1:",
            "browser candidate ",
            "ICE connected",
            "connection connected",
        ] {
            assert!(
                steps[accepted..].iter().any(|s| s.starts_with(w)),
                "no step {w:?} in {steps:#?}"
            );
        }
        let messages = items(&b, "messages").await;
        assert_eq!(
            messages.first().map(String::as_str),
            Some("you: hello"),
            "{messages:?}"
        );
        assert!(
            messages.contains(&"appliance: echo: how are you?".to_string()),
            "{messages:?}"
        );

        // The simulator's side of it, and no password in its output.
        let out = sim.wait_line("message \"how are you?\", echoed", WAIT);
        assert!(
            out.contains("webrtc connected") && out.contains("data channel \"flock\" open"),
            "{out}"
        );
        assert!(
            !out.contains("wonderland") && !out.contains("guess"),
            "{out}"
        );
        b.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enter_submits_every_form_of_the_demo_page_in_a_stock_chromium() {
    bounded(async {
        let dir = TempDir::new("demo-enter");
        let (server, _sim) = demo(&dir);
        let b = Browser::start_stock().await;
        b.goto(&format!("http://{}/", server.ws.unwrap())).await;

        b.fill("appliance", &format!("demo-box{ENTER}")).await;
        b.wait_text("status", |s| s == "choose a persona", WAIT)
            .await;
        b.fill("password", &format!("guess{ENTER}")).await;
        b.wait_text("status", |s| s == "rejected (1 attempt left)", WAIT)
            .await;
        b.fill("password", &format!("wonderland{ENTER}")).await;
        b.wait_text("received", |s| s == "echo: hello", WAIT).await;
        b.fill("message", &format!("typed{ENTER}")).await;
        b.wait_text("received", |s| s == "echo: typed", WAIT).await;
        let left = b
            .exec("return document.getElementById('message').value;", vec![])
            .await;
        assert_eq!(left, "", "the message box is cleared once sent");
        b.close().await;
    })
    .await;
}

/// The README's https variant, as written: its openssl command makes the certificate (in a
/// scratch directory standing for the repository root), flockd starts with the README's TLS
/// flags, and a Chromium that accepts the self-signed certificate (as the README tells the
/// reader to) logs in over https and wss and sees the simulator's echo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_https_demo_runs_as_written() {
    bounded(async {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        let section = readme
            .split("**Over https.**")
            .nth(1)
            .expect("the README's https section");
        let block = section
            .split("```sh\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("its commands");
        let mut lines = block.lines();
        let (make_cert, run) = (lines.next().unwrap(), lines.next().unwrap());
        assert!(make_cert.contains("openssl req"), "{make_cert}");
        let root = TempDir::new("demo-https");
        let made = std::process::Command::new("sh")
            .args(["-c", make_cert])
            .current_dir(&root.0)
            .output()
            .expect("sh runs");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let flags: Vec<String> = run
            .split_once(" -- ")
            .expect("flockd's flags after --")
            .1
            .split_whitespace()
            .map(|a| match a.starts_with("flock-data/") {
                true => root.0.join(a).display().to_string(),
                false => a.to_string(),
            })
            .collect();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        assert_eq!(flags[0], "--tls-cert");
        let server = Flockd::start(&flags);
        let personas = root.0.join("personas.toml");
        std::fs::write(&personas, PERSONAS).unwrap();
        let mut sim = Simulator::start(&server, "demo-box", &root.0, &personas, &[]);
        sim.wait_line("registered", WAIT);

        let b = Browser::start_with_args(&["--ignore-certificate-errors".into()]).await;
        let port = server.ws.unwrap().port();
        b.goto(&format!("https://localhost:{port}/")).await;
        b.fill("appliance", "demo-box").await;
        b.click("open").await;
        b.wait_text("status", |s| s == "choose a persona", WAIT)
            .await;
        b.fill("password", "wonderland").await;
        b.click("login").await;
        b.wait_text("received", |s| s == "echo: hello", WAIT).await;
        let scheme = b.exec("return location.protocol;", vec![]).await;
        assert_eq!(scheme, json!("https:"));
        b.close().await;
    })
    .await;
}
