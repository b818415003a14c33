//! A local `sluice-server` child process for the demo: found next to this executable (or on
//! PATH), started on a free loopback port, waited for until ready, and always killed — on drop
//! (`kill_on_drop`), on normal exit and on Ctrl-C.

use sluice_contract::server::ServerArgs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use thiserror::Error;
use tokio::process::{Child, Command};
use tokio::time::Instant;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(
        "failed to find sluice-server next to {exe} or on PATH: build it with `cargo build -p sluice-server` or pass --server-bin"
    )]
    NotFound { exe: String },
    #[error("failed to use --server-bin {path}: not a file")]
    BadPath { path: PathBuf },
    #[error("failed to find a free port on 127.0.0.1: {0}")]
    Port(std::io::Error),
    #[error("failed to create the demo's temporary directory: {0}")]
    TempDir(std::io::Error),
    #[error("failed to start {bin}: {source}")]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "failed to start sluice-server: it exited with {status} before it was ready; log:\n{log}"
    )]
    Exited { status: String, log: String },
    #[error("failed to start sluice-server: not ready on port {port} after {secs} s; log:\n{log}")]
    NotReady { port: u16, secs: u64, log: String },
}

/// Finds the server binary: explicit path, next to the running executable, then PATH.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ServerError> {
    let name = format!("sluice-server{}", std::env::consts::EXE_SUFFIX);
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(ServerError::BadPath {
                path: p.to_path_buf(),
            })
        };
    }
    let exe = std::env::current_exe().unwrap_or_default();
    if let Some(dir) = exe.parent() {
        let candidate = dir.join(&name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
        .ok_or_else(|| ServerError::NotFound {
            exe: exe.display().to_string(),
        })
}

/// A loopback port nobody listens on right now, never handed out before by this process: the
/// kernel may give a just-released port to the next `bind(0)`, and two replicas started
/// together on one port would leave one of them failing to bind while the fleet counts it.
pub fn free_port() -> Result<u16, ServerError> {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(ServerError::Port)?;
        // A poisoned lock only means a panic mid-insert; the set is whole.
        if GIVEN.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
            return Ok(port);
        }
    }
}

/// The running server. Dropping it kills the process.
#[derive(Debug)]
pub struct LocalServer {
    child: Child,
    pub port: u16,
    log: PathBuf,
    // Holds the log directory until the server is gone.
    _dir: tempfile::TempDir,
}

impl LocalServer {
    /// Starts `bin` with `settings` (rendered by the server's own [`ServerArgs`]) and waits for
    /// `/ready`.
    pub async fn start(
        bin: &Path,
        settings: &ServerArgs,
        ready_within: Duration,
    ) -> Result<LocalServer, ServerError> {
        let port = settings.port;
        let dir = tempfile::tempdir().map_err(ServerError::TempDir)?;
        let log = dir.path().join("sluice-server.log");
        let out = std::fs::File::create(&log).map_err(ServerError::TempDir)?;
        let err = out.try_clone().map_err(ServerError::TempDir)?;
        let child = Command::new(bin)
            .args(settings.to_args())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ServerError::Spawn {
                bin: bin.to_path_buf(),
                source,
            })?;
        let mut server = LocalServer {
            child,
            port,
            log,
            _dir: dir,
        };
        server.wait_ready(ready_within).await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<(), ServerError> {
        let client = reqwest::Client::new();
        let url = format!("{}/ready", self.url());
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ServerError::Exited {
                    status: status.to_string(),
                    log: self.log_tail(),
                });
            }
            let ready = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ServerError::NotReady {
            port: self.port,
            secs: limit.as_secs(),
            log: self.log_tail(),
        })
    }

    /// Kills the process and reaps it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Stops the server as Kubernetes stops a pod: SIGTERM, so it drains what it holds, then a
    /// kill if it has not exited within `grace`.
    pub async fn terminate(mut self, grace: Duration) {
        #[cfg(unix)]
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}
