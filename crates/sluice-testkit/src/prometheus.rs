//! A real Prometheus (the Debian package's binary) on a free loopback port, scraping the given
//! targets every second under the labels a test chooses, e.g. the `namespace` and `pod` a
//! Deployment's pod would carry in a cluster.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::net::{free_port, http_get_body, http_get_status};
use crate::proc::Proc;

/// The `prometheus` binary: `SLUICE_PROMETHEUS_BIN`, else PATH, else `/usr/bin/prometheus`.
pub fn prometheus_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_PROMETHEUS_BIN") {
        return PathBuf::from(p);
    }
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    });
    let bin = from_path.unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"));
    assert!(
        bin.is_file(),
        "prometheus not found on PATH or at /usr/bin/prometheus: install it with \
         scripts/install-deps.sh (Debian package `prometheus`) or set SLUICE_PROMETHEUS_BIN"
    );
    bin
}

/// One scrape job: `address` (`127.0.0.1:PORT`) with extra target labels.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    pub job: String,
    pub address: String,
    pub labels: Vec<(String, String)>,
    /// Keep the scraped series' own labels where they clash with the target's (Prometheus's
    /// `honor_labels`, the ServiceMonitor's `honorLabels`): the operator's SLO series carry the
    /// namespace of the service they describe.
    pub honor_labels: bool,
}

impl ScrapeTarget {
    /// A target labelled like a Kubernetes pod as Prometheus discovers it (`namespace`, `pod`),
    /// so the operator's pod selector matches it exactly as in a cluster; the job is the pod name.
    pub fn pod(address: String, namespace: &str, pod: &str) -> Self {
        Self {
            job: pod.to_owned(),
            address,
            labels: vec![
                ("namespace".into(), namespace.to_owned()),
                ("pod".into(), pod.to_owned()),
            ],
            honor_labels: false,
        }
    }

    /// The operator's own metrics endpoint, scraped as the chart's ServiceMonitor does it: as a
    /// pod of `namespace`, with `honor_labels`.
    pub fn operator(address: String, namespace: &str, pod: &str) -> Self {
        Self {
            honor_labels: true,
            ..Self::pod(address, namespace, pod)
        }
    }
}

/// A `--web.config.file` and the files it names (name, contents).
type WebConfig<'a> = (&'a str, &'a [(&'a str, &'a [u8])]);

/// Prometheus scraping [`ScrapeTarget`]s every second; killed on drop.
pub struct Prometheus {
    proc: Proc,
    port: u16,
    _dir: TempDir,
}

impl Prometheus {
    /// Writes the config, starts Prometheus on a free port and waits (up to 60 s) for
    /// `/-/ready`.
    pub fn start(targets: &[ScrapeTarget]) -> Self {
        Self::start_on(free_port(), targets)
    }

    /// Like [`Prometheus::start`] on a given port: for a URL that had to be configured before
    /// the targets were known.
    pub fn start_on(port: u16, targets: &[ScrapeTarget]) -> Self {
        Self::launch(port, targets, None)
    }

    /// Prometheus serving its API as its `--web.config.file` says (TLS, basic auth): `web_config`
    /// is that file's YAML, with paths relative to a directory holding `files` (name, contents).
    /// Ready when its log says so, since a plain-HTTP probe cannot tell.
    pub fn start_with_web_config(web_config: &str, files: &[(&str, &[u8])]) -> Self {
        Self::launch(free_port(), &[], Some((web_config, files)))
    }

    fn launch(port: u16, targets: &[ScrapeTarget], web: Option<WebConfig<'_>>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for t in targets {
            cfg.push_str(&format!(
                "  - job_name: {}\n    honor_labels: {}\n    static_configs:\n      - targets: ['{}']\n        labels:\n",
                t.job, t.honor_labels, t.address
            ));
            for (k, v) in &t.labels {
                cfg.push_str(&format!("          {k}: {v}\n"));
            }
        }
        let cfg_path = dir.path().join("prometheus.yml");
        std::fs::write(&cfg_path, cfg).expect("write prometheus.yml");
        let mut cmd = Command::new(prometheus_binary());
        cmd.arg(format!("--config.file={}", cfg_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // The Debian build looks for its console templates under /etc; none are needed.
            .arg(format!(
                "--web.console.templates={}",
                dir.path().join("consoles").display()
            ))
            .arg(format!(
                "--web.console.libraries={}",
                dir.path().join("console_libraries").display()
            ))
            .current_dir(dir.path());
        if let Some((web_config, files)) = web {
            for (name, bytes) in files {
                std::fs::write(dir.path().join(name), bytes).expect("write web config file");
            }
            let path = dir.path().join("web.yml");
            std::fs::write(&path, web_config).expect("write web.yml");
            cmd.arg(format!("--web.config.file={}", path.display()));
        }
        let mut proc = Proc::spawn(cmd, dir.path().join("prometheus.log"));
        let start = Instant::now();
        let ready = |proc: &Proc| match web {
            None => http_get_status(port, "/-/ready") == Some(200),
            Some(_) => proc
                .log_tail()
                .contains("Server is ready to receive web requests"),
        };
        while !ready(&proc) {
            if let Some(status) = proc.exited() {
                panic!("prometheus exited with {status}:\n{}", proc.log_tail());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "prometheus not ready within 60 s:\n{}",
                proc.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Self {
            proc,
            port,
            _dir: dir,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `https://127.0.0.1:PORT`, for a Prometheus started with TLS.
    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The tail of Prometheus' own log.
    pub fn log_tail(&self) -> String {
        self.proc.log_tail()
    }

    /// Waits until `n` targets report `up`, panicking with the target list after `timeout`.
    pub fn wait_targets_up(&self, n: usize, timeout: Duration) {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            if let Some(body) = http_get_body(self.port, "/api/v1/targets") {
                if body.matches(r#""health":"up""#).count() >= n {
                    return;
                }
                last = body;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "prometheus targets not up within {timeout:?}: {last}\n{}",
            self.log_tail()
        );
    }

    /// Waits until an instant query's answer mentions `needle` (e.g. a pod name: the series
    /// has been scraped), panicking after `timeout`. `query` must be URL-encoded.
    pub fn wait_for(&self, query: &str, needle: &str, timeout: Duration) {
        let start = Instant::now();
        let path = format!("/api/v1/query?query={query}");
        while start.elapsed() < timeout {
            if http_get_body(self.port, &path).is_some_and(|b| b.contains(needle)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "prometheus never answered {query} with {needle} within {timeout:?}\n{}",
            self.log_tail()
        );
    }
}
