//! Headless Chromium driven over WebDriver (chromedriver + fantoccini), for tests of the
//! browser client. Helpers panic on failure with the page's `#status` and the browser console
//! log, so a test reads as a script. Every wait is bounded.

use crate::TempDir;
use fantoccini::wd::{TimeoutConfiguration, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// WebDriver's limit for one (async) script.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(20);

/// A chromedriver process (in its own process group, so Chromium dies with it) and a
/// WebDriver session on a fresh profile.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _dir: TempDir, // the Chromium profile and chromedriver's log
    log: Mutex<Vec<String>>,
    /// Started by [`Browser::start_stock`].
    stock: bool,
}

impl Browser {
    /// Starts chromedriver and headless Chromium set up for loopback WebRTC (see below).
    /// Panics (never skips) if either is missing.
    pub async fn start() -> Browser {
        Browser::launch(false, &[]).await
    }

    /// As [`Browser::start`], with extra Chromium flags (e.g. a pinned test certificate:
    /// `--ignore-certificate-errors-spki-list=…`, honoured with a `--user-data-dir`).
    pub async fn start_with_args(extra: &[String]) -> Browser {
        Browser::launch(false, extra).await
    }

    /// Like [`Browser::start`], but WebRTC as in a Chromium anyone runs: no loopback
    /// candidates, local addresses behind mDNS names, and no media permission for any page.
    pub async fn start_stock() -> Browser {
        Browser::launch(true, &[]).await
    }

    async fn launch(stock: bool, extra: &[String]) -> Browser {
        for (bin, pkg) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: install the Debian package `{pkg}` (apt-get install {pkg})"
            );
        }
        let dir = TempDir::new("chromium");
        let log_path = dir.0.join("chromedriver.log");
        // Port 0: chromedriver picks a free port and prints it, so no port can be raced. It
        // picks it for IPv6 and then listens on IPv4 at the same number, which another test may
        // hold: that start fails with ERR_ADDRESS_IN_USE and is tried again (3 times at most).
        let mut attempt = 0;
        let (mut guard, port) = loop {
            attempt += 1;
            let _ = std::fs::remove_file(&log_path);
            let mut driver = Command::new(CHROMEDRIVER)
                .arg("--port=0")
                .arg(format!("--log-path={}", log_path.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("spawn chromedriver");
            let stdout = driver.stdout.take().unwrap();
            // Construct now so the driver is killed even if the session never comes up.
            let guard = DriverGuard(Some(driver));
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(p) =
                        line.strip_prefix("ChromeDriver was started successfully on port ")
                    {
                        let _ = tx.send(p.trim_end_matches('.').parse::<u16>().ok());
                    }
                }
            });
            // Up to 10 s for the port line; a failed listen shows in the log at once.
            let mut port = None;
            for _ in 0..50 {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(p) => {
                        port = p;
                        break;
                    }
                    Err(_) if tail(&log_path).contains("ERR_ADDRESS_IN_USE") => break,
                    Err(_) => {}
                }
            }
            if let Some(port) = port {
                break (guard, port);
            }
            let log = tail(&log_path);
            if attempt < 3 && log.contains("ERR_ADDRESS_IN_USE") {
                continue;
            }
            panic!("chromedriver did not start within 10 s\n{log}");
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let profile = dir.0.join("profile");
        let user_data = format!("--user-data-dir={}", profile.display());
        let mut args = vec![
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &user_data,
        ];
        if !stock {
            // WebRTC over loopback only: gather 127.0.0.1 and show real IPs, not mDNS names.
            args.push("--allow-loopback-in-peer-connection");
            args.push("--disable-features=WebRtcHideLocalIpsWithMdns");
        }
        args.extend(extra.iter().map(String::as_str));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        let url = format!("http://{addr}");
        let connect = builder.capabilities(caps).connect(&url);
        let client = match tokio::time::timeout(Duration::from_secs(20), connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => panic!(
                "WebDriver session for {CHROMIUM} failed: {e}\n{}",
                tail(&log_path)
            ),
            Err(_) => panic!(
                "WebDriver session for {CHROMIUM} not up within 20 s\n{}",
                tail(&log_path)
            ),
        };
        // WebDriver's own bounds: scripts and page loads may not hang a test.
        let limits =
            TimeoutConfiguration::new(Some(SCRIPT_TIMEOUT), Some(Duration::from_secs(20)), None);
        let b = Browser {
            client,
            driver: guard.0.take().unwrap(),
            _dir: dir,
            log: Mutex::default(),
            stock,
        };
        let r = b.client.update_timeouts(limits).await;
        b.check(r, "set WebDriver timeouts").await;
        b
    }

    /// Navigates and waits for the page load (WebDriver's default strategy). An http(s)
    /// origin first gets media permissions, so its WebRTC can use loopback (see below), unless
    /// the browser is [stock](Browser::start_stock).
    pub async fn goto(&self, url: &str) {
        if let Ok(u) = url::Url::parse(url) {
            if !self.stock && matches!(u.scheme(), "http" | "https") {
                self.grant_media_permissions(&u.origin().ascii_serialization())
                    .await;
            }
        }
        let r = self.client.goto(url).await;
        self.check(r, &format!("goto {url}")).await;
    }

    /// Grants camera and microphone to `origin` (e.g. `http://127.0.0.1:8080`). Chromium
    /// shows a page only its default-route address unless one of them is granted; loopback
    /// candidates need it too, even with --allow-loopback-in-peer-connection.
    pub async fn grant_media_permissions(&self, origin: &str) {
        let params = json!({"origin": origin, "permissions": ["audioCapture", "videoCapture"]});
        let r = self
            .client
            .issue_cmd(Cdp("Browser.grantPermissions", params))
            .await;
        self.check(r, &format!("grant media permissions to {origin}"))
            .await;
    }

    /// Clears the input `#id` and types `text`.
    pub async fn fill(&self, id: &str, text: &str) {
        let el = self.element(id).await;
        let r = async {
            el.clear().await?;
            el.send_keys(text).await
        }
        .await;
        self.check(r, &format!("fill #{id}")).await;
    }

    pub async fn click(&self, id: &str) {
        let el = self.element(id).await;
        let r = el.click().await;
        self.check(r, &format!("click #{id}")).await;
    }

    /// `textContent` of `#id` (also for hidden elements), or "" if there is no such element.
    pub async fn text(&self, id: &str) -> String {
        let v = self
            .exec(
                "const e = document.getElementById(arguments[0]); return e ? e.textContent : '';",
                vec![json!(id)],
            )
            .await;
        v.as_str().unwrap_or_default().to_string()
    }

    /// `[value, text]` of each option of the select `#id`, as JSON.
    pub async fn options(&self, id: &str) -> Value {
        let js = "return [...document.querySelectorAll(`#${arguments[0]} option`)].map(o => [o.value, o.text]);";
        self.exec(js, vec![json!(id)]).await
    }

    /// Polls `#id`'s text every 50 ms until `pred` holds; panics with diagnostics after `timeout`.
    pub async fn wait_text(
        &self,
        id: &str,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> String {
        let end = Instant::now() + timeout;
        loop {
            let t = self.text(id).await;
            if pred(&t) {
                return t;
            }
            if Instant::now() >= end {
                self.fail(&format!("#{id} is {t:?} after {timeout:?}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `js` as a function body (`arguments` holds `args`) and returns its JSON result.
    pub async fn exec(&self, js: &str, args: Vec<Value>) -> Value {
        let r = self.client.execute(js, args).await;
        self.check(r, "execute").await
    }

    /// Runs async JS: `js` is the body of an async function of `args` (the array `args`);
    /// its return value, or a thrown error as `{"error": "..."}`, comes back as JSON.
    /// Bounded by the session's script timeout ([`SCRIPT_TIMEOUT`]).
    pub async fn exec_async(&self, js: &str, args: Vec<Value>) -> Value {
        let wrapped = format!(
            "const done = arguments[arguments.length - 1];\n\
             (async (args) => {{ {js}\n }})(Array.from(arguments).slice(0, -1))\n\
             .then(done, e => done({{ error: String(e && e.stack || e) }}));"
        );
        let r = self.client.execute_async(&wrapped, args).await;
        self.check(r, "execute_async").await
    }

    /// The browser console log since start (chromedriver hands out each entry once, so
    /// they are kept here).
    pub async fn console_log(&self) -> Vec<String> {
        let fresh = match self.client.issue_cmd(BrowserLog).await {
            Ok(Value::Array(entries)) => entries
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["level"].as_str().unwrap_or("?"),
                        e["message"].as_str().unwrap_or("")
                    )
                })
                .collect(),
            other => vec![format!("(console log unavailable: {other:?})")],
        };
        let mut log = self.log.lock().unwrap();
        log.extend(fresh);
        log.clone()
    }

    /// `#status` text and the console log, for failure messages (5 s at most: the page may
    /// be wedged).
    pub async fn diagnostics(&self) -> String {
        let gather = async {
            let js = "const e = document.getElementById('status'); return e && e.textContent;";
            let status = match self.client.execute(js, vec![]).await {
                Ok(v) => v.to_string(),
                Err(e) => format!("(unreadable: {e})"),
            };
            format!(
                "#status: {status}\nconsole:\n  {}",
                self.console_log().await.join("\n  ")
            )
        };
        tokio::time::timeout(Duration::from_secs(5), gather)
            .await
            .unwrap_or_else(|_| "(page unresponsive)".into())
    }

    /// Panics with `what` and the page's diagnostics.
    pub async fn fail(&self, what: &str) -> ! {
        panic!("{what}\n{}", self.diagnostics().await)
    }

    /// Ends the WebDriver session (Chromium exits); chromedriver is killed on drop.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.clone().close()).await;
    }

    async fn element(&self, id: &str) -> fantoccini::elements::Element {
        let r = self.client.find(Locator::Id(id)).await;
        self.check(r, &format!("find #{id}")).await
    }

    async fn check<T, E: std::fmt::Display>(&self, r: Result<T, E>, what: &str) -> T {
        match r {
            Ok(v) => v,
            Err(e) => self.fail(&format!("{what}: {e}")).await,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// The end of chromedriver's log, for failure messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "chromedriver log ({}):\n{}",
        log.display(),
        lines[lines.len().saturating_sub(30)..].join("\n")
    )
}

/// Kills chromedriver's process group (chromedriver and the Chromium it started) and reaps it.
fn kill_group(child: &mut Child) {
    // SAFETY: plain syscall on the group id we created with process_group(0).
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
}

struct DriverGuard(Option<Child>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            kill_group(c);
        }
    }
}

/// chromedriver's (non-W3C) "get log" command, for the console log.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// A Chrome DevTools Protocol command through chromedriver.
#[derive(Debug)]
struct Cdp(&'static str, Value);

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"cmd": self.0, "params": self.1}).to_string()),
        )
    }
}
