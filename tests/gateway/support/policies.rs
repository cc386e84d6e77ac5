//! A gateway started with a `switchboard.toml` holding `[[clients]]` and `[[policies]]`, kept
//! on disk to be edited and re-read, and the rules the tests start from.

use std::path::PathBuf;

use switchboard::config::ServerSpec;

use super::helpers::{Options, TestGateway, copy_valid_agents};

pub const CLIENTS: &str = r#"
[[clients]]
name = "helpdesk-app"
token = "t-help"
agents = ["*"]

[[clients]]
name = "reporter"
token = "t-rep"
agents = ["servicenow"]
"#;

/// helpdesk-app may read incidents; reporter may use servicenow's incident tools but not
/// update them; the OAuth client "portal" may search.
pub const READ_ONLY: &str = r#"
[[policies]]
name = "helpdesk-reads"
effect = "allow"
clients = ["helpdesk-app"]
tools = ["servicenow/get_incident", "servicenow/search_incident"]

[[policies]]
effect = "allow"
clients = ["reporter", "portal"]
tools = ["*/*_incident"]

[[policies]]
name = "no-updates"
effect = "deny"
clients = ["reporter"]
tools = ["*/update_*"]
"#;

/// A gateway started with `switchboard.toml` = `toml` (in a temp dir, next to a copy of
/// the fixture agents), as `switchboard serve --config` would be; the file's path.
pub async fn gateway(toml: &str, watch: bool) -> (TestGateway, PathBuf, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let agents = tmp.path().join("agents");
    copy_valid_agents(&agents);
    let file = tmp.path().join("switchboard.toml");
    std::fs::write(&file, toml).unwrap();
    let loaded = switchboard::config::load_gateway(&file, true, &Default::default())
        .unwrap_or_else(|e| panic!("test config must load: {e}"));
    assert!(loaded.source.is_some(), "the file is kept to be re-read");
    let settings = ServerSpec {
        clients: loaded.clients,
        policies: loaded.policies,
        source: loaded.source,
        ..Options::default().settings
    };
    let gw = TestGateway::spawn_with(Options {
        settings,
        agents_dir: agents,
        watch,
        ..Options::default()
    })
    .await;
    (gw, file, tmp)
}
