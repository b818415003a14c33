//! A real Kubernetes control plane for the cluster tests: `scripts/cluster.sh` starts etcd,
//! kube-apiserver (RBAC, service-account tokens, an audit log), kube-controller-manager,
//! kube-scheduler and kwok's fake nodes on loopback, in a temporary directory. The script's
//! watchdog takes the cluster down when the test process ends, however it ends.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One running control plane.
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    // Keeps the directory (logs, audit log) until the cluster is dropped.
    _tmp: tempfile::TempDir,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("failed to run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Cluster {
    /// Starts a fresh control plane (building the binaries first if they are not cached; see
    /// `scripts/build-control-plane.sh`). Panics with the script's output when it cannot.
    pub fn start() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("sluice-cluster-")
            .tempdir()
            .expect("create the cluster directory");
        let dir = tmp.path().join("cluster");
        run(Command::new("bash")
            .arg(repo_root().join("scripts/cluster.sh"))
            .arg("up")
            .arg("--dir")
            .arg(&dir)
            .arg("--owner-pid")
            .arg(std::process::id().to_string()));
        let bin = std::fs::read_to_string(dir.join("bin-dir"))
            .expect("cluster.sh wrote bin-dir")
            .trim()
            .into();
        Self {
            dir,
            bin,
            _tmp: tmp,
        }
    }

    /// One control plane shared by every test of this process (each test uses its own
    /// namespaces); started by the first caller.
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(Cluster::start)
    }

    /// The admin kubeconfig (`system:masters`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The CA that signed the apiserver's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    /// `https://127.0.0.1:<port>` of the apiserver.
    pub fn server_url(&self) -> String {
        let port = std::fs::read_to_string(self.dir.join("ports/apiserver")).expect("port file");
        format!("https://127.0.0.1:{}", port.trim())
    }

    /// The directory holding the control plane's binaries (kubectl, helm, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// `kubectl` with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.arg("--kubeconfig").arg(self.kubeconfig());
        cmd
    }

    /// `helm` with the admin kubeconfig and its own cache and config under the cluster
    /// directory.
    pub fn helm(&self) -> Command {
        let mut cmd = Command::new(self.bin.join("helm"));
        cmd.arg("--kubeconfig")
            .arg(self.kubeconfig())
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"));
        cmd
    }

    /// Runs `cmd`, panics with its output unless it succeeds, returns stdout.
    pub fn check(cmd: &mut Command) -> String {
        run(cmd)
    }

    /// Runs `cmd` and returns (success, stdout + stderr): for commands expected to fail.
    pub fn try_run(cmd: &mut Command) -> (bool, String) {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("failed to run {cmd:?}: {e}"));
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// Stops one component (`etcd`, `kube-apiserver`, `kube-controller-manager`,
    /// `kube-scheduler`, `kwok`).
    pub fn stop(&self, component: &str) {
        self.script(&["stop", component]);
    }

    /// Starts a stopped component again with its original flags; for the apiserver, returns
    /// once it is ready.
    pub fn start_component(&self, component: &str) {
        self.script(&["start", component]);
    }

    fn script(&self, args: &[&str]) {
        run(Command::new("bash")
            .arg(repo_root().join("scripts/cluster.sh"))
            .args(args)
            .arg("--dir")
            .arg(&self.dir));
    }

    /// The audit log (JSON lines, one event per request, metadata level).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// A component's log file.
    pub fn log(&self, component: &str) -> PathBuf {
        self.dir.join(format!("logs/{component}.log"))
    }

    /// A scratch directory inside the cluster directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.dir.join("scratch").join(name);
        std::fs::create_dir_all(&p).expect("create scratch dir");
        p
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/cluster.sh"))
            .arg("down")
            .arg("--dir")
            .arg(&self.dir)
            .status();
    }
}
