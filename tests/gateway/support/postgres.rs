//! A real PostgreSQL server of the test's own: Debian's binaries (`apt-get install
//! postgresql`; `.ci/run` installs it), a fresh cluster in a temp dir made by `initdb`,
//! listening on a free loopback port with password (SCRAM) authentication. The tests run as
//! root and PostgreSQL refuses to, so its programs run as `nobody`, who owns the data dir.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The uid and gid of `nobody` (Debian's 65534).
const NOBODY: u32 = 65534;

/// The role the gateway connects as.
pub const USER: &str = "switchboard";

/// Its password.
pub const PASSWORD: &str = "pg-test-s3cret";

/// How long the server may take to start or stop.
const DEADLINE: Duration = Duration::from_secs(60);

pub struct PgServer {
    child: Option<Child>,
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
}

impl PgServer {
    /// `initdb` a new cluster and start it; returns once it accepts connections.
    pub fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        let out = as_nobody(Command::new(bin.join("initdb")), dir.path())
            .arg("-D")
            .arg(dir.path().join("data"))
            .args(["-U", USER, "-A", "scram-sha-256", "--pwfile"])
            .arg(&pwfile)
            .args(["--no-locale", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}/initdb: {e}", bin.display()));
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut server = Self {
            child: None,
            bin,
            port: free_port(),
            dir,
        };
        server.start_again();
        server
    }

    /// The URL the gateway is given.
    pub fn url(&self) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// The same server with `password` instead of the right one.
    pub fn url_with_password(&self, password: &str) -> String {
        self.url().replace(PASSWORD, password)
    }

    /// Starts (again) on the same data dir and port; returns once it accepts connections.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).unwrap();
        std::os::unix::fs::chown(self.dir.path().join("postgres.log"), Some(NOBODY), None).unwrap();
        let child = as_nobody(Command::new(self.bin.join("postgres")), self.dir.path())
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=40",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}/postgres: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + DEADLINE;
        while !self.accepts_connections() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("postgres exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections on port {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: sessions are ended, as in a restart or failover).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Whether it answers `pg_isready` (accepting connections, not starting up).
    fn accepts_connections(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
            ])
            .status()
            .is_ok_and(|s| s.success())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// A client of the database itself, to look behind the gateway.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with the server programs.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("postgres").is_file() && bin.join("initdb").is_file())
                .then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server under /usr/lib/postgresql/*/bin: the audit tests on PostgreSQL \
             need Debian's postgresql package (`apt-get install postgresql`; .ci/run installs it)"
        ),
    }
}

/// `command`, run as `nobody` in `dir` (std drops root's supplementary groups with the uid).
fn as_nobody(mut command: Command, dir: &Path) -> Command {
    command
        .uid(NOBODY)
        .gid(NOBODY)
        .current_dir(dir)
        .env_remove("PGDATA")
        .env("LC_ALL", "C");
    command
}

/// A port free now on 127.0.0.1 (PostgreSQL takes a number, not a bound socket).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
