//! Debian's nginx in front of gateway processes, with the compose file's own balancer config
//! (`docker-compose.yml`, `configs: balancer:`), so that the tests exercise that config (round
//! robin without stickiness, streaming, `proxy_next_upstream`, `X-Forwarded-For`) and not a
//! stand-in. Only the upstream addresses and the listen address are substituted.
//!
//! The listening socket is bound here on `127.0.0.1:0` and handed to nginx as its stdin with
//! `NGINX="0;"` (nginx's inherited-socket mechanism, the one its binary upgrade uses): the
//! port is never picked, released and raced for. `.ci/run` installs nginx when missing; without
//! it the tests fail saying so, never skip.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running nginx; killed when dropped.
pub struct Nginx {
    /// Where it listens.
    pub addr: SocketAddr,
    backends: Vec<String>,
    access_log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

/// The compose file's balancer config (`configs: balancer: content: |`), with compose's `$$`
/// escapes undone: what nginx reads in the container as `conf.d/default.conf`.
pub fn compose_balancer_config() -> String {
    let compose =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker-compose.yml"))
            .expect("docker-compose.yml is readable");
    let mut lines = compose.lines().skip_while(|l| *l != "configs:");
    assert!(
        lines.next().is_some(),
        "docker-compose.yml has no top-level configs:"
    );
    let mut lines = lines.skip_while(|l| *l != "  balancer:");
    assert!(
        lines.next().is_some() && lines.next() == Some("    content: |"),
        "docker-compose.yml has no configs: balancer: content: | block"
    );
    let mut config = String::new();
    for line in lines.take_while(|l| l.is_empty() || l.starts_with("      ")) {
        config.push_str(line.get(6..).unwrap_or(""));
        config.push('\n');
    }
    config.replace("$$", "$")
}

/// `config` with its `server gw-N:8080;` upstream lines replaced by `backends` and its
/// `listen 8080;` by `listen <addr>;`.
///
/// # Panics
/// When either is not found: the compose file changed shape, and this test must follow it.
fn substitute(config: &str, backends: &[String], listen: SocketAddr) -> String {
    let mut out = String::new();
    let (mut upstreams, mut listens) = (0, 0);
    for line in config.lines() {
        let trimmed = line.trim();
        let indent = &line[..line.len() - line.trim_start().len()];
        if trimmed.starts_with("server gw-") && trimmed.ends_with(":8080;") {
            if upstreams == 0 {
                for b in backends {
                    out.push_str(&format!("{indent}server {b};\n"));
                }
            }
            upstreams += 1;
        } else if trimmed == "listen 8080;" {
            out.push_str(&format!("{indent}listen {listen};\n"));
            listens += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        upstreams > 0 && listens == 1,
        "the compose balancer config changed shape ({upstreams} `server gw-N:8080;` lines, \
         {listens} `listen 8080;`): update tests/gateway/support/nginx.rs\n{config}"
    );
    out
}

fn nginx_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NGINX_BIN") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
        .expect(
            "nginx not found: the cluster tests run behind Debian's nginx with the compose \
             file's balancer config (`apt-get install nginx-light`; .ci/run does this) or set \
             NGINX_BIN",
        )
}

impl Nginx {
    /// Starts nginx with the compose balancer config in front of `backends` (`host:port`),
    /// and waits until it answers.
    pub fn start(backends: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let access_log = dir.path().join("access.log");
        let p = dir.path().display();
        // The image's nginx.conf around the compose file's conf.d/default.conf: a master and
        // one worker (nginx 1.22 crashes serving inherited sockets with `master_process off`),
        // temp paths and logs in the temp dir. The access log records
        // which upstream served each request, for tests that check the round robin.
        let main = format!(
            "daemon off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log stderr notice;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n\
             client_body_temp_path {p}/body;\nproxy_temp_path {p}/proxy;\n\
             fastcgi_temp_path {p}/fastcgi;\nuwsgi_temp_path {p}/uwsgi;\nscgi_temp_path {p}/scgi;\n\
             log_format upstream '$upstream_addr';\naccess_log {} upstream;\n\
             {}\n}}\n",
            access_log.display(),
            substitute(&compose_balancer_config(), backends, addr)
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, main).unwrap();
        let bin = nginx_binary();
        let mut child = Command::new(&bin)
            .arg("-p")
            .arg(dir.path())
            .args(["-e", "stderr", "-c"])
            .arg(&conf)
            .env("NGINX", "0;")
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(listener)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        // Connections queue on the socket from the start; wait until a worker serves them.
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut log: Vec<String> = Vec::new();
        while !log.iter().any(|l| l.contains("start worker process ")) {
            if let Some(status) = child.try_wait().unwrap() {
                log.extend(rx.try_iter());
                panic!("nginx exited ({status}):\n{}", log.join("\n"));
            }
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
                log.push(line);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not start a worker within 20 s:\n{}",
                log.join("\n")
            );
        }
        assert!(
            log.iter().any(|l| l.contains("using inherited sockets")),
            "nginx did not take the socket it was handed:\n{}",
            log.join("\n")
        );
        Self {
            addr,
            backends: backends.to_vec(),
            access_log,
            child,
            _dir: dir,
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Which backend (index) served each finished request, from nginx's access log (the last
    /// upstream tried, when a dead one's turn went to the next). nginx writes the line as the
    /// request ends, so poll it rather than read it once.
    pub fn served_by(&self) -> Vec<usize> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit(", ").next())
            .filter_map(|upstream| self.backends.iter().position(|b| b == upstream))
            .collect()
    }
}

impl Drop for Nginx {
    /// SIGTERM (fast shutdown: the master stops its worker, then exits), not SIGKILL, which
    /// would leave the worker running.
    fn drop(&mut self) {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

#[test]
fn the_compose_config_is_found_and_substituted() {
    let config = compose_balancer_config();
    assert!(config.contains("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"));
    let out = substitute(
        &config,
        &["127.0.0.1:1".into(), "127.0.0.1:2".into()],
        "127.0.0.1:3".parse().unwrap(),
    );
    assert!(
        out.contains("  server 127.0.0.1:1;\n  server 127.0.0.1:2;\n"),
        "{out}"
    );
    assert!(out.contains("listen 127.0.0.1:3;"), "{out}");
    assert!(!out.contains("gw-"), "{out}");
}
