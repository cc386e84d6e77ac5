//! The README's configuration reference is in step with what the gateway accepts: every key
//! of every table is documented, and nothing documented is refused.
//!
//! What the gateway accepts is asked of the binary itself: `switchboard check` on files with
//! one unknown key per table answers, for each table, the keys it expects (serde's "expected
//! one of"). What the README documents is read from its `switchboard.toml` examples (TOML
//! blocks, commented-out keys included) and its `agents/<name>.toml` table.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::binary::switchboard;

type Keys = BTreeMap<String, BTreeSet<String>>;

const PROBE: &str = "zzz_probe";

/// The keys `switchboard check` expects in each table, by table (`""`: the top level,
/// `tools.<type>` for each tool kind).
fn accepted() -> (Keys, Keys) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "{PROBE} = 1\n[server]\n{PROBE} = 1\n[admin]\n{PROBE} = 1\n[limits]\n{PROBE} = 1\n\
             [[clients]]\nname = \"a\"\ntoken = \"b\"\nagents = [\"*\"]\n{PROBE} = 1\n\
             [cluster]\nredis_url = \"redis://127.0.0.1:1\"\n{PROBE} = 1\n\
             [metrics]\n{PROBE} = 1\n[audit]\n{PROBE} = 1\n[tasks]\n{PROBE} = 1\n[telemetry]\n{PROBE} = 1\n[costs]\n{PROBE} = 1\n\
             [[policies]]\neffect = \"allow\"\nclients = [\"a\"]\ntools = [\"probe/*\"]\n{PROBE} = 1\n\
             [auth]\n{PROBE} = 1\n[auth.oauth]\nissuer = \"http://127.0.0.1:1\"\n\
             audience = \"http://127.0.0.1:2\"\n{PROBE} = 1\n[auth.oauth.claims]\n{PROBE} = 1\n"
        ),
    )
    .unwrap();
    let agents = dir.path().join("agents");
    std::fs::create_dir(&agents).unwrap();
    std::fs::write(
        agents.join("probe.toml"),
        format!(
            "description = \"x\"\n{PROBE} = 1\n[model]\nmodel = \"m\"\n{PROBE} = 1\n\
             [[tools]]\ntype = \"servicenow\"\n{PROBE} = 1\n\
             [[tools]]\ntype = \"agent\"\nagent = \"other\"\n{PROBE} = 1\n\
             [[tools]]\ntype = \"mcp\"\nurl = \"http://127.0.0.1:1/mcp\"\n{PROBE} = 1\n\
             [[tools]]\ntype = \"ask_user\"\n{PROBE} = 1\n\
             [[servers]]\nurl = \"http://127.0.0.1:1/mcp\"\n{PROBE} = 1\n\
             [workflow]\nkind = \"sequential\"\nsteps = [{{ agent = \"other\", {PROBE} = 1 }}]\n\
             {PROBE} = 1\n"
        ),
    )
    .unwrap();
    std::fs::write(
        agents.join("other.toml"),
        "description = \"y\"\nexpose = [\"tools\"]\n[[tools]]\ntype = \"servicenow\"\n",
    )
    .unwrap();
    let out = switchboard()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .arg("--agents")
        .arg(&agents)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let tool_types = ["servicenow", "agent", "mcp", "ask_user"];
    let (mut server, mut agent) = (Keys::new(), Keys::new());
    for line in text.lines() {
        let Some((file, rest)) = line.trim().split_once(": ") else {
            continue;
        };
        let Some((path, message)) = rest.split_once(": ") else {
            continue;
        };
        let Some(expected) = message.split_once("expected ").map(|(_, e)| e) else {
            continue;
        };
        let keys: BTreeSet<String> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
        let table = path
            .strip_suffix(PROBE)
            .unwrap_or(path)
            .trim_end_matches('.');
        let table = match table.strip_prefix("tools[") {
            Some(i) => {
                let index: usize = i.trim_end_matches(']').parse().unwrap();
                format!("tools.{}", tool_types[index])
            }
            None => table.trim_end_matches("[0]").to_owned(),
        };
        if file.ends_with("switchboard.toml") {
            server.insert(table, keys);
        } else if file.ends_with("probe.toml") {
            agent.insert(table, keys);
        }
    }
    assert_eq!(
        server.len(),
        15,
        "`switchboard check` named the keys of every switchboard.toml table:\n{text}"
    );
    assert_eq!(
        agent.len(),
        9,
        "`switchboard check` named the keys of every agent table, tool kind and workflow table:\n{text}"
    );
    (server, agent)
}

fn readme() -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .unwrap()
}

/// The keys of the README's `switchboard.toml` examples: every TOML block with one of the
/// gateway's tables, keys in comments (`# node_id = ...`) counted.
fn documented_server_keys(readme: &str) -> Keys {
    let tables = [
        "server",
        "admin",
        "limits",
        "clients",
        "cluster",
        "metrics",
        "auth",
        "policies",
        "audit",
        "tasks",
        "telemetry",
        "costs",
    ];
    // Tables inside tables; any other nested table is a map (`agent_scopes`), one key.
    let nested = ["auth.oauth", "auth.oauth.claims"];
    let mut keys = Keys::new();
    for block in readme.split("```toml").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        let text: String = block
            .lines()
            .map(|line| {
                let uncommented = line.trim_start().strip_prefix("# ").unwrap_or(line);
                let is_key = uncommented.split_once(" = ").is_some_and(|(k, _)| {
                    k.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                });
                if is_key { uncommented } else { line }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let Ok(parsed) = toml::from_str::<toml::Table>(&text) else {
            continue;
        };
        if !parsed.keys().any(|k| tables.contains(&k.as_str())) {
            continue;
        }
        let mut stack: Vec<(String, &toml::Value)> =
            parsed.iter().map(|(k, v)| (k.clone(), v)).collect();
        for table in parsed.keys() {
            keys.entry(String::new()).or_default().insert(table.clone());
        }
        while let Some((table, value)) = stack.pop() {
            let entries = match value {
                toml::Value::Table(t) => vec![t],
                toml::Value::Array(a) => a.iter().filter_map(|v| v.as_table()).collect(),
                _ => Vec::new(),
            };
            for entry in entries {
                keys.entry(table.clone())
                    .or_default()
                    .extend(entry.keys().cloned());
                for (k, v) in entry {
                    let path = format!("{table}.{k}");
                    if nested.contains(&path.as_str()) {
                        stack.push((path, v));
                    }
                }
            }
        }
    }
    keys
}

/// The keys of the README's `agents/<name>.toml` table: its first column (`[model] key`,
/// `[workflow] key`, `[workflow.steps] key`, `[[tools]] key` after a `[[tools]] type = "..."`
/// row), and for a tool kind's own row the keys its description names (`` `url` ``,
/// `` `prefix = "gh_"` ``).
fn documented_agent_keys(readme: &str) -> Keys {
    let section = readme
        .split("### `agents/<name>.toml`")
        .nth(1)
        .expect("the README has an agents/<name>.toml reference")
        .split("\n### ")
        .next()
        .unwrap_or_default();
    let backticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let key_of = |text: &str| -> Option<String> {
        let key = text.split(" = ").next().unwrap_or(text).trim();
        key.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            .then(|| key.to_owned())
            .filter(|k| !k.is_empty())
    };
    let mut keys = Keys::new();
    let mut tool = String::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let names = backticked(cells[0]);
        let Some(first) = names.first() else { continue };
        if let Some(kind) = first.strip_prefix("[[tools]] type = ") {
            tool = format!("tools.{}", kind.trim_matches('"'));
            keys.entry(String::new())
                .or_default()
                .insert("tools".into());
            let named: BTreeSet<String> = cells
                .get(2)
                .map(|c| backticked(c).iter().filter_map(|t| key_of(t)).collect())
                .unwrap_or_default();
            keys.entry(tool.clone()).or_default().extend(named);
            continue;
        }
        let (table, first_key) = if let Some(k) = first.strip_prefix("[model] ") {
            keys.entry(String::new())
                .or_default()
                .insert("model".into());
            ("model".to_owned(), k.to_owned())
        } else if let Some(k) = first.strip_prefix("[workflow] ") {
            keys.entry(String::new())
                .or_default()
                .insert("workflow".into());
            ("workflow".to_owned(), k.to_owned())
        } else if let Some(k) = first.strip_prefix("[workflow.steps] ") {
            ("workflow.steps".to_owned(), k.to_owned())
        } else if let Some(k) = first.strip_prefix("[[tools]] ") {
            (tool.clone(), k.to_owned())
        } else if let Some(k) = first.strip_prefix("[[servers]] ") {
            keys.entry(String::new())
                .or_default()
                .insert("servers".into());
            ("servers".to_owned(), k.to_owned())
        } else {
            (String::new(), first.clone())
        };
        let entry = keys.entry(table).or_default();
        entry.insert(first_key);
        entry.extend(names.iter().skip(1).filter_map(|t| key_of(t)));
    }
    keys
}

fn differences(what: &str, accepted: &Keys, documented: &Keys) -> Vec<String> {
    let mut problems = Vec::new();
    for (table, keys) in accepted {
        let shown = documented.get(table).cloned().unwrap_or_default();
        let name = if table.is_empty() { "top level" } else { table };
        for key in keys.difference(&shown) {
            problems.push(format!(
                "{what}: `{key}` ({name}) is accepted but not in the README"
            ));
        }
        for key in shown.difference(keys) {
            problems.push(format!(
                "{what}: `{key}` ({name}) is in the README but refused"
            ));
        }
    }
    for table in documented.keys().filter(|t| !accepted.contains_key(*t)) {
        problems.push(format!(
            "{what}: the README documents a table `{table}` the gateway does not have"
        ));
    }
    problems
}

#[test]
fn the_readme_documents_every_config_key_and_no_other() {
    let (server, agent) = accepted();
    let readme = readme();
    let mut documented = documented_server_keys(&readme);
    // "any [limits] key overrides the default for this client"
    let limits = documented.get("limits").cloned().unwrap_or_default();
    documented
        .entry("clients".into())
        .or_default()
        .extend(limits);
    let mut problems = differences("switchboard.toml", &server, &documented);
    problems.extend(differences(
        "agents/<name>.toml",
        &agent,
        &documented_agent_keys(&readme),
    ));
    assert!(
        problems.is_empty(),
        "README.md's configuration reference is out of step:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_readme_check_sees_a_missing_key() {
    let readme = readme().replace("heartbeat_ms = 1000", "");
    let (server, _) = accepted();
    let problems = differences(
        "switchboard.toml",
        &server,
        &documented_server_keys(&readme),
    );
    assert!(
        problems.iter().any(|p| p.contains("`heartbeat_ms`")),
        "{problems:?}"
    );
}
