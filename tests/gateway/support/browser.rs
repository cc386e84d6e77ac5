//! A real browser for the console tests: Debian's headless Chromium driven over WebDriver
//! (chromedriver) with fantoccini. `.ci/run` installs both when missing; without them the
//! tests fail saying so, never skip.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// Browsers are started one at a time: each is a chromedriver plus a Chromium, heavy on
/// two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the page may take to show something.
pub const PAGE_DEADLINE: Duration = Duration::from_secs(10);

/// A headless Chromium session.
pub struct Browser {
    pub client: Client,
    _driver: Driver,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

fn program(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    candidates.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// The port chromedriver (started with `--port=0`, so the OS picks one and nothing is picked,
/// released and raced for) says it listens on: "... started successfully on port N.".
fn announced_port(stdout: std::process::ChildStdout) -> u16 {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                let _ = tx.send(rest.trim_end_matches('.').parse::<u16>().ok());
                break;
            }
        }
        // Keep reading, so that chromedriver never blocks on a full pipe.
        for _ in lines {}
    });
    rx.recv_timeout(Duration::from_secs(20))
        .ok()
        .flatten()
        .expect("chromedriver did not announce its port within 20 s")
}

/// Where screenshots go: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("console-screenshots")
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless Chromium session.
    pub async fn start() -> Self {
        let turn = ONE_AT_A_TIME.lock().await;
        let driver_bin = program("CHROMEDRIVER", &["chromedriver"]).expect(
            "chromedriver not found: install Debian's chromium and chromium-driver packages \
             (`apt-get install chromium chromium-driver`; .ci/run does this) or set CHROMEDRIVER",
        );
        let chromium = program(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        )
        .expect(
            "chromium not found: install Debian's chromium package (`apt-get install chromium`; \
                 .ci/run does this) or set CHROMIUM",
        );
        let mut driver = Driver(
            std::process::Command::new(&driver_bin)
                .arg("--port=0")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver_bin.display())),
        );
        let port = announced_port(driver.0.stdout.take().expect("stdout is piped"));
        let webdriver = format!("http://127.0.0.1:{port}");
        // Poll chromedriver's status until it answers.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ready = reqwest::get(format!("{webdriver}/status"))
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .is_some();
            if ready {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not answer on {webdriver} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&webdriver)
            .await
            .unwrap_or_else(|e| panic!("cannot open a Chromium session: {e}"));
        Self {
            client,
            _driver: driver,
            _profile: profile,
            _turn: turn,
        }
    }

    /// Opens `url`.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Sets the location's hash (a route of the console) without reloading the page.
    pub async fn route(&self, hash: &str) {
        self.client
            .execute("location.hash = arguments[0];", vec![json!(hash)])
            .await
            .unwrap();
    }

    /// Waits for the first element matching `css`.
    pub async fn wait(&self, css: &str, what: &str) -> Element {
        self.client
            .wait()
            .at_most(PAGE_DEADLINE)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{what}: no {css} within {PAGE_DEADLINE:?}: {e}"))
    }

    /// Waits until `check` holds for the page, evaluated as a JS expression returning a
    /// boolean; `deadline` at most.
    pub async fn wait_js(&self, expr: &str, deadline: Duration, what: &str) {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let v = self
                .client
                .execute(&format!("return !!({expr});"), vec![])
                .await
                .unwrap();
            if v == Value::Bool(true) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "{what}: `{expr}` still false after {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the console has rendered `view` (`agents`, `sessions`, `session`,
    /// `clients`, `client`, `traffic`, `audit`, `call`) with data.
    pub async fn wait_view(&self, view: &str, what: &str) -> Element {
        self.wait(
            &format!("[data-testid=\"view\"][data-view=\"{view}\"]"),
            what,
        )
        .await
    }

    /// Waits until nothing matches `css`.
    pub async fn wait_gone(&self, css: &str, what: &str) {
        let expr = format!("document.querySelector({}) === null", json!(css));
        self.wait_js(&expr, PAGE_DEADLINE, what).await;
    }

    /// The text of the element matching `css` (which must exist now).
    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// Clicks the element matching `css`, once it exists.
    pub async fn click(&self, css: &str, what: &str) {
        self.wait(css, what).await.click().await.unwrap();
    }

    /// Saves a screenshot as `target/console-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Sets the window's size (e.g. a phone's width).
    pub async fn resize(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.unwrap();
    }

    /// Errors the page logged to its console since the last call (Chromium's browser log,
    /// read through chromedriver).
    pub async fn console_errors(&self) -> Vec<String> {
        let log = self.client.issue_cmd(BrowserLog).await.unwrap();
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Ends the session and chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// The chromedriver process, killed (and its browser with it) when dropped, also when a
/// test fails half-way.
struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver's `POST /session/{id}/se/log` (`{"type": "browser"}`): the page's console.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}
