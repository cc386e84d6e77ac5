//! The `switchboard` binary: CLI, logging, environment, then the library does the work.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use switchboard::agents::AgentRegistry;
use switchboard::config::{self, Errors, ServerSpec, Vars};
use switchboard::state::AppState;
use switchboard::telemetry::{self, LogFormat};
use switchboard::tools::Resources;

/// jemalloc, configured in `.cargo/config.toml` to hand freed pages back to the OS: parked
/// sessions (see `switchboard::sessions`) then cost what they hold, not the high-water mark.
#[cfg(not(any(target_env = "msvc", feature = "system-allocator")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Switchboard: LLM agents defined in TOML, served to MCP clients.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Options of `serve`, which runs when no command is given.
    #[command(flatten)]
    serve: ServeArgs,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "pretty")]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the agents over MCP (the default).
    Serve(ServeArgs),
    /// Serve one agent to one MCP client over stdin/stdout, for hosts that start their servers
    /// (Claude Desktop, VS Code, Cursor, MAF's MCPStdioTool). Logs go to stderr.
    Stdio(StdioArgs),
    /// Validate switchboard.toml and every agent file; print every error.
    Check(CheckArgs),
    /// Print the admin API's OpenAPI spec (YAML), as checked in at openapi/admin.yaml.
    Openapi,
    /// Probe a running gateway: exit 0 if GET URL answers 2xx, 1 otherwise (container HEALTHCHECK).
    Healthcheck(HealthcheckArgs),
}

#[derive(Args, Clone)]
struct HealthcheckArgs {
    /// URL to GET.
    #[arg(
        long,
        env = "SWITCHBOARD_HEALTHCHECK_URL",
        default_value = "http://127.0.0.1:8080/healthz"
    )]
    url: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    timeout: u64,
}

#[derive(Args, Clone)]
struct CheckArgs {
    /// Gateway config file [default: switchboard.toml, if it exists].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of agent files.
    #[arg(long, default_value = "agents")]
    agents: PathBuf,
}

/// What a running gateway loads: `serve`'s and `stdio`'s options.
#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    check: CheckArgs,
    /// Data directory (embedded incident store, audit trail).
    #[arg(long, default_value = "data")]
    data: PathBuf,
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Listen address, overriding [server] listen.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

#[derive(Args, Clone)]
struct StdioArgs {
    /// The agent to serve: its file's name in the agents directory, without `.toml`.
    agent: String,
    /// Call as this configured client (a [[clients]] name): its [[policies]] apply, and logs
    /// and audit records name it. No token is asked (the process runs as you); without it the
    /// caller is anonymous.
    #[arg(long = "as", value_name = "CLIENT")]
    as_client: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format;
    // `serve` and `stdio` start logging once their config is read: with `[telemetry]` the
    // same subscriber exports traces.
    if !matches!(
        cli.command,
        None | Some(Command::Serve(_) | Command::Stdio(_))
    ) {
        telemetry::init(format);
    }
    // TLS for outbound HTTPS (LLM APIs) uses ring; install it before any client exists.
    switchboard::net::install_crypto_provider();
    let vars: Vars = std::env::vars().collect();
    let result = match cli.command {
        Some(Command::Check(args)) => check(&args, &vars),
        Some(Command::Healthcheck(a)) => healthcheck(&a),
        Some(Command::Openapi) => {
            print!("{}", switchboard::admin::spec::yaml());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Serve(args)) => serve(args, vars, format),
        Some(Command::Stdio(args)) => stdio(args, vars, format),
        None => serve(cli.serve, vars, format),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Validates everything; returns the settings and specs, or every error.
fn validate(
    args: &CheckArgs,
    vars: &Vars,
) -> Result<(ServerSpec, Vec<switchboard::agents::AgentSpec>), Errors> {
    let (path, required) = match &args.config {
        Some(p) => (p.as_path(), true),
        None => (Path::new("switchboard.toml"), false),
    };
    let settings = config::load_gateway(path, required, vars);
    let specs = AgentRegistry::validate_dir(&args.agents, vars);
    match (settings, specs) {
        (Ok(s), Ok(a)) => {
            let errors = check_client_agents(&s, &a, path);
            if errors.is_empty() {
                Ok((s, a))
            } else {
                Err(errors)
            }
        }
        (s, a) => {
            let mut errors = Errors::default();
            errors.extend(s.err().into_iter().flat_map(|e| e.0));
            errors.extend(a.err().into_iter().flat_map(|e| e.0));
            Err(errors)
        }
    }
}

fn healthcheck(a: &HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match runtime.block_on(switchboard::healthcheck::probe(
        &a.url,
        std::time::Duration::from_secs(a.timeout),
    )) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("unhealthy: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Every agent a client (or `[auth.oauth] agent_scopes`, or a `[[policies]]` tool glob) names
/// must exist, and so must
/// `[server] default_agent`'s.
fn check_client_agents(
    settings: &ServerSpec,
    specs: &[switchboard::agents::AgentSpec],
    file: &Path,
) -> Errors {
    use switchboard::config::clients::AgentAccess;
    let mut errors = Errors::default();
    if let config::DefaultAgent::Named(name) = &settings.default_agent
        && !specs.iter().any(|s| s.name == *name)
    {
        let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        errors.0.push(config::Error::key(
            file,
            "server.default_agent",
            format!(
                "unknown agent {:?}: the agents are {}; name one of them, or \"\" to serve none at /sse, /messages and /mcp",
                name.as_str(),
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ),
        ));
    }
    for (i, client) in settings.clients.iter().enumerate() {
        if let AgentAccess::Only(names) = &client.agents {
            for (j, name) in names.iter().enumerate() {
                if !specs.iter().any(|s| s.name.as_str() == name) {
                    errors.0.push(config::Error::key(
                        file,
                        format!("clients[{i}].agents[{j}]"),
                        format!("unknown agent {name:?}"),
                    ));
                }
            }
        }
    }
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    errors.extend(config::policies::unknown_agents(
        &settings.policies,
        &names,
        file,
    ));
    for name in settings.oauth.iter().flat_map(|o| o.agent_scopes.keys()) {
        if !specs.iter().any(|s| s.name.as_str() == name) {
            errors.0.push(config::Error::key(
                file,
                format!("auth.oauth.agent_scopes.{name}"),
                format!("unknown agent {name:?}"),
            ));
        }
    }
    errors
}

/// What a valid configuration may still get wrong: in cluster mode, the embedded store
/// is one file on one host.
fn warnings(settings: &ServerSpec, specs: &[switchboard::agents::AgentSpec]) -> Vec<String> {
    use switchboard::tools::ToolConfig;
    use switchboard::tools::servicenow::StoreKind;
    if settings.cluster.is_none() {
        return Vec::new();
    }
    specs
        .iter()
        .filter(|spec| {
            spec.tools
                .iter()
                .any(|t| matches!(t, ToolConfig::Servicenow(c) if c.store == StoreKind::Embedded))
        })
        .map(|spec| {
            format!(
                "{}: cluster mode: agent {:?} uses the embedded incident store (SQLite in --data): replicas on one host may share that directory (SQLite locks across processes), replicas on several hosts must use store = \"table_api\" instead",
                spec.file.display(),
                spec.name.as_str()
            )
        })
        .collect()
}

fn check(args: &CheckArgs, vars: &Vars) -> anyhow::Result<ExitCode> {
    match validate(args, vars) {
        Ok((settings, specs)) => {
            for warning in warnings(&settings, &specs) {
                eprintln!("warning: {warning}");
            }
            let names: Vec<_> = specs.iter().map(|s| s.name.to_string()).collect();
            println!(
                "OK: {} agent{} in {}: {}",
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                args.agents.display(),
                names.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprint!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The resources agents share, for a gateway of `settings` keeping its files in `data`.
fn resources(data: &Path, settings: &config::ServerSpec) -> Resources {
    let mut resources = Resources::new(data);
    resources.costs = std::sync::Arc::new(switchboard::costs::Costs::new(
        settings.costs.clone(),
        std::sync::Arc::new(switchboard::costs::SystemClock),
    ));
    resources
}

/// Logging (and, with `[telemetry]`, trace export from `runtime`) for a gateway of
/// `settings`; `None` when no traces are exported. An exporter that cannot be built is
/// logged, and the gateway runs without traces.
fn start_logging(
    format: LogFormat,
    settings: &config::ServerSpec,
    runtime: &tokio::runtime::Runtime,
) -> Option<telemetry::Tracing> {
    match telemetry::init_with(format, &settings.telemetry, runtime.handle().clone()) {
        Ok(tracing) => tracing,
        Err(e) => {
            tracing::error!(error = %e, "[telemetry]: cannot export traces; running without them.");
            None
        }
    }
}

fn serve(args: ServeArgs, vars: Vars, format: LogFormat) -> anyhow::Result<ExitCode> {
    let ServeArgs { run: args, listen } = args;
    let (mut settings, specs) = match validate(&args.check, &vars) {
        Ok(v) => v,
        Err(errors) => {
            telemetry::init(format);
            eprint!("{errors}");
            eprintln!(
                "Not starting: fix the errors above (`switchboard check` runs the same validation)."
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let startup_warnings = warnings(&settings, &specs);
    if let Some(listen) = listen {
        settings.listen = listen;
    }
    // For containers: the names clients use to reach the gateway, without a config file.
    if let Some(hosts) = vars
        .get("SWITCHBOARD_ALLOWED_HOSTS")
        .filter(|h| !h.trim().is_empty())
    {
        settings.allowed_hosts = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
    }
    // For containers behind a balancer: whose X-Forwarded-For to believe.
    if let Some(list) = vars
        .get("SWITCHBOARD_TRUSTED_PROXIES")
        .filter(|v| !v.trim().is_empty())
    {
        let mut trusted = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match config::proxies::Network::parse(entry) {
                Ok(n) => trusted.push(n),
                Err(e) => {
                    eprintln!("error: SWITCHBOARD_TRUSTED_PROXIES: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        settings.trusted_proxies = trusted;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let traces = start_logging(format, &settings, &runtime);
    let result = runtime.block_on(async move {
        let registry = match AgentRegistry::build(&args.check.agents, &vars, specs, resources(&args.data, &settings)) {
            Ok(r) => r,
            Err(errors) => {
                eprint!("{errors}");
                return Ok(ExitCode::FAILURE);
            }
        };
        // Best effort, bounded: an upstream that is down now is retried when a call needs it.
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            registry.connect_upstreams(),
        )
        .await;
        let stop = switchboard::shutdown::signal();
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr().context("no local address")?;
        // Cluster mode: join before serving; a replica that cannot reach Redis does not start.
        let cluster = match settings.cluster.clone() {
            Some(c) => {
                let host = switchboard::cluster::host_name();
                let url = switchboard::cluster::advertise_url(c.advertise_url.as_deref(), addr, &host);
                match switchboard::cluster::Cluster::join(c, url, &host).await {
                    Ok(cluster) => Some(cluster),
                    Err(e) => {
                        let file = args.check.config.as_deref().unwrap_or(Path::new("switchboard.toml"));
                        eprintln!("error: {}: cluster.redis_url: {e}", file.display());
                        eprintln!("Not starting: cluster mode needs Redis (remove [cluster] to run a single gateway).");
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            None => None,
        };
        if registry.is_empty() {
            tracing::warn!(dir = %args.check.agents.display(), "No agents found: add agents/<name>.toml files.");
        }
        for agent in registry.iter() {
            let (sse, mcp) = switchboard::app::agent_urls(addr, agent.name().as_str());
            tracing::info!(agent = %agent.name(), sse = %sse, mcp = %mcp, tools = agent.exposed_tool_count(), "Agent ready.");
        }
        // The seed's URLs (`/sse` + `/messages`, and `/mcp`) serve the default agent.
        match settings.default_agent.name() {
            Some(name) if registry.iter().any(|a| a.name().as_str() == name) => {
                tracing::info!(agent = name, sse = %format!("http://{addr}/sse"), mcp = %format!("http://{addr}/mcp"), "Default agent.");
            }
            Some(name) => {
                tracing::info!(agent = name, "No default agent: /sse, /messages and /mcp answer 404 until an agent of this name is loaded ([server] default_agent).");
            }
            None => {}
        }
        if let Some(oauth) = &settings.oauth {
            tracing::info!(issuers = %oauth.issuers.join(", "), audience = %oauth.audience, "MCP access needs an access token of an issuer ([auth.oauth]) or a client token.");
        } else if settings.clients.is_empty() {
            tracing::warn!("No clients configured ([[clients]] in switchboard.toml or MCP_SECRET_TOKEN): MCP access is open to anyone who can reach this address; limits apply per client IP.");
        } else {
            let names: Vec<&str> = settings.clients.iter().map(|c| c.name.as_str()).collect();
            tracing::info!(clients = %names.join(", "), "MCP access needs a client token.");
        }
        for warning in &startup_warnings {
            tracing::warn!("{warning}");
        }
        if settings.admin_token.is_none() {
            tracing::warn!("No admin token configured ([admin] token or SWITCHBOARD_ADMIN_TOKEN): the admin API answers loopback peers only.");
        }
        let trail = match switchboard::audit::Trail::start(
            &settings.audit,
            &args.data,
            registry.resources().metrics.clone(),
        )
        .await
        {
            Ok(trail) => trail,
            Err(e) => {
                eprintln!("error: [audit]: {e}");
                eprintln!("Not starting: the audit trail cannot be kept (set [audit] enabled = false to run without one).");
                return Ok(ExitCode::FAILURE);
            }
        };
        let state = AppState::with_cluster(settings, registry, cluster.clone(), trail);
        // Agent files and switchboard.toml's [[policies]] are applied live: on change
        // (watched), on SIGHUP, on POST /admin/reload.
        if let Err(e) = state.watch_agents_dir(&args.check.agents) {
            tracing::warn!(error = %e, dir = %args.check.agents.display(), "Cannot watch the agents directory or switchboard.toml; reload with SIGHUP or POST /admin/reload.");
        }
        let _sighup = switchboard::shutdown::on_sighup(state.clone());
        tracing::info!(%addr, data = %args.data.display(), console = %format!("http://{addr}/ui"), "Switchboard listening.");
        switchboard::app::run(listener, state, stop)
            .await
            .context("server failed")?;
        if let Some(cluster) = cluster {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), cluster.leave()).await;
        }
        tracing::info!("Stopped.");
        Ok(ExitCode::SUCCESS)
    });
    // The last spans go out while the runtime's workers still run.
    if let Some(traces) = traces {
        traces.shutdown();
    }
    result
}

/// `switchboard stdio <agent>`: the same validation as `serve`, then one agent served over
/// stdin/stdout (see `switchboard::mcp::stdio`) until the client closes stdin or a signal
/// comes. stdout carries JSON-RPC only: every message here goes to stderr.
fn stdio(args: StdioArgs, vars: Vars, format: LogFormat) -> anyhow::Result<ExitCode> {
    use switchboard::config::audit::JsonlTarget;
    let (mut settings, specs) = match validate(&args.run.check, &vars) {
        Ok(v) => v,
        Err(errors) => {
            telemetry::init(format);
            eprint!("{errors}");
            eprintln!(
                "Not starting: fix the errors above (`switchboard check` runs the same validation)."
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    if !specs.iter().any(|s| s.name.as_str() == args.agent) {
        let mut names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        eprintln!(
            "error: unknown agent {:?}: the agents in {} are {}",
            args.agent,
            args.run.check.agents.display(),
            if names.is_empty() {
                "none (add agents/<name>.toml files)".to_owned()
            } else {
                names.join(", ")
            }
        );
        eprintln!("Not starting: name one of them (switchboard stdio <agent>).");
        return Ok(ExitCode::FAILURE);
    }
    let client = match stdio_client(&args, &settings) {
        Ok(client) => client,
        Err(message) => {
            eprintln!("error: {message}");
            eprintln!(
                "Not starting: name a configured client with --as, or leave it out to call anonymously."
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    // stdout is the MCP channel here: the JSON-lines copy of the trail cannot go there.
    let jsonl_dropped = settings.audit.jsonl == Some(JsonlTarget::Stdout);
    if jsonl_dropped {
        settings.audit.jsonl = None;
    }
    // A local server for one client: two workers are plenty, whatever the machine.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let traces = start_logging(format, &settings, &runtime);
    let result = runtime.block_on(async move {
        if jsonl_dropped {
            tracing::warn!("[audit] jsonl = \"stdout\" is not followed by switchboard stdio, whose stdout carries MCP: records still go to the audit store; give a file path to keep the JSON lines too.");
        }
        let data = &args.run.data;
        let registry = match AgentRegistry::build(&args.run.check.agents, &vars, specs, resources(data, &settings)) {
            Ok(r) => r,
            Err(errors) => {
                eprint!("{errors}");
                return Ok(ExitCode::FAILURE);
            }
        };
        let Some(agent) = registry.get(&args.agent).cloned() else {
            eprintln!("error: agent {:?} was validated but not built", args.agent);
            return Ok(ExitCode::FAILURE);
        };
        // Best effort, bounded: an upstream that is down now is retried when a call needs it.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), agent.connect_upstreams()).await;
        let metrics = registry.resources().metrics.clone();
        let trail = match switchboard::audit::Trail::start(&settings.audit, data, metrics.clone()).await {
            Ok(trail) => trail,
            Err(e) => {
                eprintln!("error: [audit]: {e}");
                eprintln!("Not starting: the audit trail cannot be kept (set [audit] enabled = false to run without one).");
                return Ok(ExitCode::FAILURE);
            }
        };
        let tools = agent.exposed_tool_count();
        let session = switchboard::mcp::stdio::StdioSession::new(agent, &settings, trail, metrics, client.clone());
        tracing::info!(agent = %args.agent, tools, caller = %client.as_deref().unwrap_or("anonymous"), session = %session.id(), data = %data.display(), "Serving over stdio.");
        // Non-blocking pipes when the host gave pipes (Linux), else tokio's blocking stdio.
        let (stdin, stdout) = rmcp::transport::stdio_pipes();
        let transport = rmcp::transport::async_rw::AsyncRwTransport::new_server(stdin, stdout);
        let ended = session.serve(transport, switchboard::shutdown::signal()).await;
        drop(registry);
        match ended {
            Ok(how) => {
                tracing::info!(ended = ?how, "Stopped.");
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                tracing::error!(error = %e, "Stdio session failed.");
                Ok(ExitCode::FAILURE)
            }
        }
    });
    if let Some(traces) = traces {
        traces.shutdown();
    }
    // A read of a terminal's stdin (not a pipe) cannot be cancelled: do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}

/// The configured client `--as` names, checked: it exists and may use the agent.
fn stdio_client(
    args: &StdioArgs,
    settings: &ServerSpec,
) -> Result<Option<std::sync::Arc<str>>, String> {
    let Some(name) = args.as_client.as_deref() else {
        return Ok(None);
    };
    let file = args
        .run
        .check
        .config
        .as_deref()
        .unwrap_or(Path::new("switchboard.toml"))
        .display()
        .to_string();
    let Some(client) = settings.clients.iter().find(|c| c.name == name) else {
        let names: Vec<&str> = settings.clients.iter().map(|c| c.name.as_str()).collect();
        return Err(if names.is_empty() {
            format!(
                "--as {name:?}: no clients are configured ([[clients]] in {file}, or MCP_SECRET_TOKEN)"
            )
        } else {
            format!(
                "--as {name:?}: unknown client: the clients of {file} are {}",
                names.join(", ")
            )
        });
    };
    if !client.agents.allows(&args.agent) {
        return Err(format!(
            "--as {name:?}: {file}: {}.agents: client {name:?} may not use agent {:?}",
            client.limits_key, args.agent
        ));
    }
    Ok(Some(std::sync::Arc::from(name)))
}
