//! The real gateway binary, started as a user starts it.

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// How long a gateway may take to log that it listens.
const START: Duration = Duration::from_secs(30);

thread_local! {
    /// This thread's latest panic, as the panic hook printed it.
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Keeps each thread's panic message (then prints it as before), so that a gateway's log,
/// printed after the panic while the test unwinds, can end by repeating it: a CI excerpt
/// keeps the end of a long output, and a long log would push the reason out of it.
fn keep_panic_messages() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let print = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
            print(info);
        }));
    });
}

/// The `switchboard` binary this test run built.
pub fn switchboard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
}

/// `switchboard check --config <config> --agents <agents>`: whether it passed, and what it
/// printed on stderr.
pub fn check(config: &std::path::Path, agents: &std::path::Path) -> (bool, String) {
    let out = switchboard()
        .arg("check")
        .arg("--config")
        .arg(config)
        .arg("--agents")
        .arg(agents)
        .env_remove("RUST_LOG")
        .output()
        .expect("switchboard check runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `switchboard serve --listen 127.0.0.1:0` at `RUST_LOG=info`: add arguments and
/// environment, then [`spawn_binary`].
pub fn serve_command() -> Command {
    let mut command = switchboard();
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info");
    command
}

/// A gateway process: its address, its log up to "listening", and the rest of its log as it
/// comes (read on a thread, so the gateway never blocks on a full pipe). Killed when dropped;
/// its whole log is printed then if the test failed.
pub struct Spawned {
    /// The process.
    pub child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// The lines it logged up to and including "Switchboard listening.".
    pub startup: Vec<String>,
    rest: Receiver<String>,
}

/// Starts `command` with its stderr piped and waits until it logs "Switchboard listening.".
///
/// # Panics
/// When it exits or stays silent for [`START`] first, with what it logged.
pub fn spawn_binary(command: &mut Command) -> Spawned {
    keep_panic_messages();
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .expect("the switchboard binary starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    let mut startup = Vec::new();
    loop {
        match rx.recv_timeout(START) {
            Ok(line) => {
                let done = line.contains("Switchboard listening.");
                startup.push(line);
                if done {
                    break;
                }
            }
            Err(e) => panic!(
                "the gateway did not log 'listening' ({e:?}); it logged:\n{}",
                startup.join("\n")
            ),
        }
    }
    let addr = startup
        .last()
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .expect("the 'listening' line names addr=")
        .to_owned();
    Spawned {
        child,
        addr,
        startup,
        rest: rx,
    }
}

impl Spawned {
    /// Waits for the process to exit by itself; its exit status.
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().expect("waiting for the gateway")
    }

    /// Stops the process (SIGKILL) and returns everything it logged.
    pub fn kill_and_logs(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut all = self.startup.join("\n");
        all.push('\n');
        loop {
            match self.rest.recv_timeout(START) {
                Ok(line) => {
                    all.push_str(&line);
                    all.push('\n');
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("the log pipe stayed open after kill"),
            }
        }
        all
    }
}

impl Drop for Spawned {
    /// Kills the process; when a test fails (the thread panics), prints what the process
    /// logged, so that the failure shows the gateways' side too.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let mut log = self.startup.join("\n");
            // The pipe closes with the process; a grandchild holding it gets a second.
            while let Ok(line) = self.rest.recv_timeout(Duration::from_secs(1)) {
                log.push('\n');
                log.push_str(&line);
            }
            let failure = PANIC.with(|p| p.borrow().clone()).unwrap_or_default();
            eprintln!(
                "---- gateway pid {} at {} logged:\n{log}\n---- end of its log; the test {failure}",
                self.child.id(),
                self.addr
            );
        }
    }
}
