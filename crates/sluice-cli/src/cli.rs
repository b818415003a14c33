//! Command-line surface of `sluice` (clap derive). Parsing and range checks live here so every
//! subcommand receives already-validated values; behaviour lives in the subcommand modules.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load-test, analyse and demo LLM inference services run by the Sluice operator.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate load against an inference server and report TTFT, TPOT, throughput and errors.
    Bench(Box<BenchArgs>),
    /// Classify a service's bottleneck from Prometheus SLIs (and Jaeger spans) and name the remedy.
    Analyze(Box<AnalyzeArgs>),
    /// Start a local tiny-model server, run a baseline and an overload, and show what Sluice decides.
    Demo(Box<DemoArgs>),
    /// Simulate a fleet under sluice, HPA, KEDA and static policies on a trace or a pattern.
    Simulate(Box<crate::simulate::SimulateArgs>),
    /// Measure a sluice-server (prefill, decode by batch, memory, limits, start-up) into a profile.
    Profile(Box<crate::profile::ProfileArgs>),
    /// Show an InferenceService: objectives vs SLIs, bottleneck, decisions, what the operator waits for.
    Status(Box<crate::cluster::StatusArgs>),
    /// Explain an InferenceService's latest decision (or `--decision ID`) with its evidence.
    Explain(Box<crate::cluster::ExplainArgs>),
}

/// Which HTTP API the bench calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Endpoint {
    /// `POST /generate` (whole response; TTFT/TPOT taken from the server's reported timings).
    Generate,
    /// `POST /generate/stream` (Server-Sent Events; TTFT = first `token` event).
    GenerateStream,
    /// `POST /v1/completions` without streaming.
    Completions,
    /// `POST /v1/completions` with `stream: true`.
    CompletionsStream,
    /// `POST /v1/chat/completions` without streaming.
    Chat,
    /// `POST /v1/chat/completions` with `stream: true`.
    ChatStream,
}

impl Endpoint {
    /// Request path relative to the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Generate => "/generate",
            Endpoint::GenerateStream => "/generate/stream",
            Endpoint::Completions | Endpoint::CompletionsStream => "/v1/completions",
            Endpoint::Chat | Endpoint::ChatStream => "/v1/chat/completions",
        }
    }

    pub fn is_stream(self) -> bool {
        matches!(
            self,
            Endpoint::GenerateStream | Endpoint::CompletionsStream | Endpoint::ChatStream
        )
    }

    pub fn is_openai(self) -> bool {
        !matches!(self, Endpoint::Generate | Endpoint::GenerateStream)
    }
}

/// Arguments of `sluice bench`. Exactly one load model applies: closed-loop users (default,
/// Locust semantics), open-loop Poisson arrivals (`--rate`) or trace replay (`--trace`).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// InferenceService to load instead of a URL (`kubectl sluice bench NAME`): reached through
    /// a port-forward to one of its Ready pods, or its in-cluster URL with --in-cluster.
    #[arg(conflicts_with = "url")]
    pub service: Option<String>,

    /// Base URL of the inference server, e.g. http://127.0.0.1:8000.
    #[arg(long, env = "SLUICE_URL", value_parser = parse_base_url, required_unless_present = "service")]
    pub url: Option<reqwest::Url>,

    /// How to reach the cluster when a service is named.
    #[command(flatten)]
    pub kube: crate::cluster::KubeArgs,

    /// With a service: call its in-cluster URL (`status.endpoint`) instead of port-forwarding,
    /// for a bench run inside the cluster.
    #[arg(long, env = "SLUICE_BENCH_IN_CLUSTER", requires = "service")]
    pub in_cluster: bool,

    /// Closed-loop concurrent users (Locust `--users`); each sends its next request when the previous one ends.
    #[arg(long, env = "SLUICE_BENCH_USERS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub users: u32,

    /// Users started per second until `--users` are running (Locust `--spawn-rate`).
    #[arg(long, allow_hyphen_values = true, env = "SLUICE_BENCH_SPAWN_RATE", default_value_t = 2.0, value_parser = parse_positive_f64)]
    pub spawn_rate: f64,

    /// How long to generate load, e.g. 30s, 5m, 1h30m (Locust `--run-time`); default 1m, or the whole trace with `--trace`.
    #[arg(long, allow_hyphen_values = true, env = "SLUICE_BENCH_RUN_TIME", value_parser = parse_positive_duration)]
    pub run_time: Option<Duration>,

    /// Open-loop mode: Poisson arrivals at this many requests per second instead of closed-loop users.
    #[arg(long, allow_hyphen_values = true, env = "SLUICE_BENCH_RATE", value_parser = parse_positive_f64, conflicts_with = "trace")]
    pub rate: Option<f64>,

    /// Trace-replay mode: an Azure LLM inference trace CSV (TIMESTAMP,ContextTokens,GeneratedTokens).
    #[arg(long, env = "SLUICE_BENCH_TRACE")]
    pub trace: Option<PathBuf>,

    /// Multiply trace inter-arrival times by this factor (0.1 replays ten times faster).
    #[arg(long, allow_hyphen_values = true, env = "SLUICE_BENCH_TIME_SCALE", default_value_t = 1.0, value_parser = parse_positive_f64)]
    pub time_scale: f64,

    /// Replay at most this many trace rows (after skipping `--trace-offset`).
    #[arg(long, env = "SLUICE_BENCH_MAX_REQUESTS")]
    pub max_requests: Option<usize>,

    /// Skip this many trace rows before replaying.
    #[arg(long, env = "SLUICE_BENCH_TRACE_OFFSET", default_value_t = 0)]
    pub trace_offset: usize,

    /// Cap every trace request's prompt at this many tokens (useful on a tiny model).
    #[arg(long, env = "SLUICE_BENCH_MAX_PROMPT_TOKENS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_prompt_tokens: Option<u32>,

    /// API to call.
    #[arg(long, env = "SLUICE_BENCH_ENDPOINT", value_enum, default_value_t = Endpoint::GenerateStream)]
    pub endpoint: Endpoint,

    /// Approximate prompt length in tokens for synthetic (non-trace) requests.
    #[arg(long, env = "SLUICE_BENCH_PROMPT_TOKENS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub prompt_tokens: u32,

    /// `max_tokens` of synthetic requests; with `--trace`, the cap applied to each row's GeneratedTokens.
    #[arg(long, env = "SLUICE_BENCH_MAX_TOKENS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: u32,

    /// Sampling temperature sent with every request.
    #[arg(long, env = "SLUICE_BENCH_TEMPERATURE", default_value_t = 0.0)]
    pub temperature: f64,

    /// Generate every request's full `max_tokens`, past the end-of-sequence token (`ignore_eos`),
    /// so a trace replay reproduces each row's GeneratedTokens whatever the model says.
    #[arg(long, env = "SLUICE_BENCH_IGNORE_EOS")]
    pub ignore_eos: bool,

    /// With --trace, do not calibrate prompts: write one word per trace token instead of
    /// measuring the model's tokens per word with two probe requests first.
    #[arg(long, env = "SLUICE_BENCH_NO_PROMPT_CALIBRATION")]
    pub no_prompt_calibration: bool,

    /// Model name for the OpenAI-compatible endpoints (default: the first of GET /v1/models).
    #[arg(long, env = "SLUICE_BENCH_MODEL")]
    pub model: Option<String>,

    /// Bearer token sent as `Authorization` when the server has auth enabled.
    #[arg(long, env = "SLUICE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Per-request timeout; a request that takes longer counts as a `timeout` error.
    #[arg(long, allow_hyphen_values = true, env = "SLUICE_BENCH_TIMEOUT", default_value = "60s", value_parser = parse_positive_duration)]
    pub timeout: Duration,

    /// Think time between a user's requests: `2s` or a uniform range `1s..3s` (Locust `between`).
    #[arg(long, env = "SLUICE_BENCH_WAIT_TIME", default_value = "0s", value_parser = parse_wait_time)]
    pub wait_time: WaitTime,

    /// At the end of the run, wait this long for in-flight requests before cancelling them (Locust `--stop-timeout`).
    #[arg(long, env = "SLUICE_BENCH_STOP_TIMEOUT", default_value = "0s", value_parser = humantime::parse_duration)]
    pub stop_timeout: Duration,

    /// Open-loop modes: cap on requests in flight; arrivals beyond it are counted as `client_saturated` errors.
    #[arg(long, env = "SLUICE_BENCH_MAX_IN_FLIGHT", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,

    /// Prometheus endpoint scraped for memory/GPU lines of the report (default: <url>/metrics).
    #[arg(long, env = "SLUICE_BENCH_METRICS_URL")]
    pub metrics_url: Option<reqwest::Url>,

    /// Seed for prompts, think times and Poisson arrivals (random when absent).
    #[arg(long, env = "SLUICE_BENCH_SEED")]
    pub seed: Option<u64>,

    /// Print the summary as JSON on stdout instead of the table.
    #[arg(long, env = "SLUICE_BENCH_JSON")]
    pub json: bool,

    /// Write the seed's "Baseline Performance" markdown document to this file.
    #[arg(long, env = "SLUICE_BENCH_REPORT")]
    pub report: Option<PathBuf>,

    /// Write SVG plots (TTFT and TPOT over time, latency CDF) into this directory.
    #[arg(long, env = "SLUICE_BENCH_PLOTS")]
    pub plots: Option<PathBuf>,

    /// Exit with status 1 when any request failed.
    #[arg(long, env = "SLUICE_BENCH_FAIL_ON_ERROR")]
    pub fail_on_error: bool,

    /// Never draw the live progress bar (it is only drawn when stderr is a terminal anyway).
    #[arg(long, env = "SLUICE_BENCH_NO_PROGRESS")]
    pub no_progress: bool,
}

/// Arguments of `sluice analyze`.
#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Prometheus base URL, e.g. http://prometheus.monitoring:9090.
    #[arg(long, env = "SLUICE_PROMETHEUS_URL", value_parser = parse_base_url)]
    pub prometheus: reqwest::Url,

    /// How to reach Prometheus: TLS trust, credentials, headers (the operator's flags).
    #[command(flatten)]
    pub prometheus_connection: sluice_slo::source::ConnectionArgs,

    /// InferenceService to analyse: its pods are the series whose `pod` label is
    /// `<service>-<hash>-<suffix>` (the operator's own selector). Also the Jaeger service name
    /// unless --jaeger-service is given.
    #[arg(long, env = "SLUICE_SERVICE")]
    pub service: String,

    /// Kubernetes namespace of the service (adds a `namespace` label matcher when set).
    #[arg(long, env = "SLUICE_NAMESPACE")]
    pub namespace: Option<String>,

    /// Select the server series by these labels instead, as label=value[,label=value], e.g.
    /// `job=sluice` for servers scraped outside Kubernetes.
    #[arg(long, env = "SLUICE_SELECTOR")]
    pub selector: Option<String>,

    /// Service name of the spans in Jaeger (the servers' OTEL_SERVICE_NAME; default: --service).
    #[arg(long, env = "SLUICE_JAEGER_SERVICE")]
    pub jaeger_service: Option<String>,

    /// Jaeger query base URL, e.g. http://jaeger-query:16686, for the span breakdown.
    #[arg(long, env = "SLUICE_JAEGER_URL", value_parser = parse_base_url)]
    pub jaeger: Option<reqwest::Url>,

    /// How to reach Jaeger's query API: TLS trust, credentials, headers (its own, never
    /// Prometheus').
    #[command(flatten)]
    pub jaeger_connection: JaegerConnectionArgs,

    /// Look-back window for rates, quantiles and traces, e.g. 5m, 1h.
    #[arg(long, allow_hyphen_values = true, env = "SLUICE_ANALYZE_WINDOW", default_value = "1h", value_parser = parse_positive_duration)]
    pub window: Duration,

    /// TTFT P95 objective in milliseconds.
    #[arg(long, allow_hyphen_values = true, env = "SLUICE_SLO_TTFT_P95_MS", default_value_t = 500.0, value_parser = parse_positive_f64)]
    pub ttft_p95_ms: f64,

    /// TPOT (mean) objective in milliseconds.
    #[arg(long, env = "SLUICE_SLO_TPOT_MS", default_value_t = 100.0, value_parser = parse_positive_f64)]
    pub tpot_ms: f64,

    /// Error-rate objective as a fraction, e.g. 0.01.
    #[arg(long, env = "SLUICE_SLO_ERROR_RATE", default_value_t = 0.01, value_parser = parse_positive_f64)]
    pub error_rate: f64,

    /// Memory objective: worst pod's VRAM/KV-cache use over capacity, as a fraction.
    #[arg(long, env = "SLUICE_SLO_MEMORY_RATIO", default_value_t = 0.85, value_parser = parse_positive_f64)]
    pub memory_ratio: f64,

    /// DCGM exporter series of the service's GPUs, as label=value[,label=value] (enables the GPU signals).
    #[arg(long, env = "SLUICE_GPU_SELECTOR")]
    pub gpu_selector: Option<String>,

    /// Fewest replicas the remedy may leave.
    #[arg(long, env = "SLUICE_MIN_REPLICAS", default_value_t = 1)]
    pub min_replicas: u32,

    /// Most replicas the remedy may ask for.
    #[arg(long, env = "SLUICE_MAX_REPLICAS", default_value_t = 4)]
    pub max_replicas: u32,

    /// Quantizations the remedy may use, highest quality first (comma-separated).
    #[arg(
        long,
        env = "SLUICE_QUANTIZATION_LADDER",
        value_delimiter = ',',
        default_value = "f16,q8_0,q4_0"
    )]
    pub quantization_ladder: Vec<sluice_contract::Quantization>,

    /// The service's current quantization (default: the first rung of the ladder).
    #[arg(long, env = "SLUICE_QUANTIZATION")]
    pub quantization: Option<sluice_contract::Quantization>,

    /// The service's `max_tokens` (the ceiling a clamp starts from).
    #[arg(long, env = "SLUICE_MAX_TOKENS", default_value_t = 256)]
    pub max_tokens: u32,

    /// Lowest `max_tokens` a clamp may reach.
    #[arg(long, env = "SLUICE_MAX_TOKENS_FLOOR", default_value_t = 32)]
    pub max_tokens_floor: u32,

    /// Traces fetched from Jaeger at most.
    #[arg(long, env = "SLUICE_JAEGER_LIMIT", default_value_t = 500)]
    pub jaeger_limit: u32,

    /// Operations listed in the span breakdown.
    #[arg(long, env = "SLUICE_TOP_OPERATIONS", default_value_t = 8)]
    pub top_operations: usize,

    /// Print the analysis as JSON instead of text.
    #[arg(long, env = "SLUICE_ANALYZE_JSON")]
    pub json: bool,

    /// Timeout for each Prometheus or Jaeger request.
    #[arg(long, env = "SLUICE_ANALYZE_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub timeout: Duration,
}

/// TLS trust, credentials and headers for Jaeger's query API (behind an ingress with a private
/// CA, an OAuth proxy's bearer token, a multi-tenant gateway). Credentials are files, never values.
#[derive(Debug, Clone, Default, Args)]
pub struct JaegerConnectionArgs {
    /// PEM bundle of CA certificates trusted for an `https://` Jaeger, besides the system's.
    #[arg(long, env = "SLUICE_JAEGER_CA_FILE")]
    pub jaeger_ca_file: Option<std::path::PathBuf>,
    /// File holding a bearer token for Jaeger.
    #[arg(
        long,
        env = "SLUICE_JAEGER_BEARER_TOKEN_FILE",
        conflicts_with = "jaeger_basic_auth_user"
    )]
    pub jaeger_bearer_token_file: Option<std::path::PathBuf>,
    /// Basic-auth user for Jaeger; the password is read from `--jaeger-basic-auth-password-file`.
    #[arg(
        long,
        env = "SLUICE_JAEGER_BASIC_AUTH_USER",
        requires = "jaeger_basic_auth_password_file"
    )]
    pub jaeger_basic_auth_user: Option<String>,
    /// File holding Jaeger's basic-auth password.
    #[arg(
        long,
        env = "SLUICE_JAEGER_BASIC_AUTH_PASSWORD_FILE",
        requires = "jaeger_basic_auth_user"
    )]
    pub jaeger_basic_auth_password_file: Option<std::path::PathBuf>,
    /// Extra header on every Jaeger query, `Name=value` (repeatable), e.g. a tenant header.
    #[arg(long = "jaeger-header", env = "SLUICE_JAEGER_HEADERS", value_delimiter = ',', value_parser = sluice_slo::source::parse_header)]
    pub jaeger_headers: Vec<(String, String)>,
}

impl JaegerConnectionArgs {
    /// The connection these flags describe.
    pub fn connection(&self) -> sluice_slo::source::Connection {
        sluice_slo::source::Connection {
            ca_file: self.jaeger_ca_file.clone(),
            bearer_token_file: self.jaeger_bearer_token_file.clone(),
            basic_auth: self
                .jaeger_basic_auth_user
                .clone()
                .zip(self.jaeger_basic_auth_password_file.clone())
                .map(|(username, password_file)| sluice_slo::source::BasicAuth {
                    username,
                    password_file,
                }),
            headers: self.jaeger_headers.clone(),
        }
    }
}

/// Arguments of `sluice demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// The `sluice-server` binary to start (default: next to this executable, then on PATH).
    #[arg(long, env = "SLUICE_SERVER_BIN")]
    pub server_bin: Option<PathBuf>,

    /// Read SLIs from this Prometheus instead of scraping the demo server's /metrics directly.
    #[arg(long, env = "SLUICE_PROMETHEUS_URL", value_parser = parse_base_url)]
    pub prometheus: Option<reqwest::Url>,

    /// Port of the demo server on 127.0.0.1 (default: a free port).
    #[arg(long, env = "SLUICE_DEMO_PORT")]
    pub port: Option<u16>,

    /// Length of the baseline phase.
    #[arg(long, env = "SLUICE_DEMO_BASELINE", default_value = "15s", value_parser = parse_positive_duration)]
    pub baseline: Duration,

    /// Length of the overload phase.
    #[arg(long, env = "SLUICE_DEMO_OVERLOAD", default_value = "15s", value_parser = parse_positive_duration)]
    pub overload: Duration,

    /// Also write the baseline report and plots into this directory.
    #[arg(long, env = "SLUICE_DEMO_OUT")]
    pub out: Option<PathBuf>,

    /// Closed-loop scenarios to run after the overload (`queue`, `memory`, `compute`; `none`
    /// for none).
    #[arg(
        long,
        env = "SLUICE_DEMO_SCENARIOS",
        value_delimiter = ',',
        default_value = "queue,memory,compute"
    )]
    pub scenarios: Vec<String>,
}

/// Uniform think time between `min` and `max` (equal for a fixed wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WaitTime {
    pub min: Duration,
    pub max: Duration,
}

fn parse_base_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "invalid URL {s:?}: scheme must be http or https, not {other}"
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("invalid URL {s:?}: no host"));
    }
    Ok(url)
}

/// Durations must be positive: a zero-length run or timeout is always a typo.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 30s, 5m, 1h30m"))?;
    if d.is_zero() {
        return Err(format!("invalid duration {s:?}: must be greater than zero"));
    }
    Ok(d)
}

fn parse_positive_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("invalid number {s:?}"))?;
    if !v.is_finite() || v <= 0.0 {
        return Err(format!(
            "invalid value {s:?}: must be a finite number greater than zero"
        ));
    }
    Ok(v)
}

fn parse_wait_time(s: &str) -> Result<WaitTime, String> {
    let parse = |p: &str| {
        humantime::parse_duration(p.trim())
            .map_err(|e| format!("invalid wait time {s:?} ({e}); use e.g. 1s or 1s..3s"))
    };
    let (min, max) = match s.split_once("..") {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let d = parse(s)?;
            (d, d)
        }
    };
    if min > max {
        return Err(format!("invalid wait time {s:?}: minimum exceeds maximum"));
    }
    Ok(WaitTime { min, max })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaeger_has_its_own_connection_flags() {
        let cli = Cli::try_parse_from([
            "sluice",
            "analyze",
            "--prometheus",
            "https://thanos.example",
            "--prometheus-bearer-token-file",
            "/var/run/prom-token",
            "--service",
            "chat",
            "--jaeger",
            "https://jaeger.example",
            "--jaeger-ca-file",
            "/etc/ca.pem",
            "--jaeger-basic-auth-user",
            "ops",
            "--jaeger-basic-auth-password-file",
            "/etc/jaeger-password",
            "--jaeger-header",
            "X-Scope-OrgID=team-a",
        ])
        .unwrap();
        let Command::Analyze(a) = cli.command else {
            panic!("not analyze");
        };
        let j = a.jaeger_connection.connection();
        assert_eq!(
            j.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!(j.basic_auth.as_ref().unwrap().username, "ops");
        assert_eq!(
            j.bearer_token_file, None,
            "Prometheus' token is not Jaeger's"
        );
        assert_eq!(
            j.headers,
            [("X-Scope-OrgID".to_owned(), "team-a".to_owned())]
        );
        // A password file without a user, or both credentials, is refused at parse time.
        for bad in [
            vec!["--jaeger-basic-auth-password-file", "/p"],
            vec![
                "--jaeger-bearer-token-file",
                "/t",
                "--jaeger-basic-auth-user",
                "u",
                "--jaeger-basic-auth-password-file",
                "/p",
            ],
        ] {
            let mut args = vec![
                "sluice",
                "analyze",
                "--prometheus",
                "http://p",
                "--service",
                "c",
            ];
            args.extend(bad.iter().copied());
            assert!(Cli::try_parse_from(&args).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_reject_zero_and_garbage() {
        assert_eq!(
            parse_positive_duration("5m").unwrap(),
            Duration::from_secs(300)
        );
        assert_eq!(
            parse_positive_duration("1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert!(
            parse_positive_duration("0s")
                .unwrap_err()
                .contains("greater than zero")
        );
        assert!(
            parse_positive_duration("five minutes")
                .unwrap_err()
                .contains("invalid duration")
        );
        assert!(parse_positive_duration("-5m").is_err());
    }

    #[test]
    fn wait_time_ranges() {
        let w = parse_wait_time("1s..3s").unwrap();
        assert_eq!(
            (w.min, w.max),
            (Duration::from_secs(1), Duration::from_secs(3))
        );
        let w = parse_wait_time("500ms").unwrap();
        assert_eq!(w.min, w.max);
        assert!(parse_wait_time("3s..1s").is_err());
    }

    #[test]
    fn urls_need_http_and_host() {
        assert!(parse_base_url("http://127.0.0.1:8000").is_ok());
        assert!(parse_base_url("ftp://x").unwrap_err().contains("scheme"));
        assert!(parse_base_url("127.0.0.1:8000").is_err());
    }

    #[test]
    fn numbers_must_be_positive() {
        assert!(parse_positive_f64("0").is_err());
        assert!(parse_positive_f64("NaN").is_err());
        assert_eq!(parse_positive_f64("2.5").unwrap(), 2.5);
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
