//! Validate stage (pure): turns an `InferenceService` into a [`Validated`] service or a
//! [`ValidationError`] that names the field. It re-checks what the CRD's CEL rules check, because
//! objects can predate a rule or live on clusters that do not enforce CEL, and adds the checks a
//! schema cannot express (the name must fit a Service, quantities must parse).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use sluice_api::{BuiltinModel, InferenceService, ModelFormat, Quantization, SloSpec};

use crate::error::ValidationError;
use sluice_contract::{Knob, Mode};

pub mod otlp;
pub use otlp::Tracing;

/// Where the server finds its weights, after validation (exactly one source).
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// Compiled into the server.
    Builtin(BuiltinModel),
    /// An absolute path inside the server image.
    ImagePath(String),
    /// A path relative to the root of a PersistentVolumeClaim.
    Pvc { claim_name: String, path: String },
    /// A Hugging Face repo resolved in a cache on a PersistentVolumeClaim.
    HuggingFace {
        repo_id: String,
        revision: String,
        cache_claim_name: String,
    },
}

/// An `InferenceService` that passed validation: every invariant the build stage relies on holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub generation: i64,
    pub model: ModelSource,
    pub format: ModelFormat,
    pub served_name: String,
    pub serving: Serving,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// `spec.replicas.count` (checked within the bounds, and only where Sluice does not move
    /// replicas).
    pub replica_count: Option<u32>,
    pub slo: Objectives,
    pub remediation: Remediation,
    /// `spec.tracing`.
    pub tracing: Tracing,
}

/// `spec.serving`, checked: what the build stage and the SLO loop read.
#[derive(Debug, Clone, PartialEq)]
pub struct Serving {
    pub quantization: Quantization,
    /// Not empty, no level twice, and `quantization` is on it.
    pub quantization_ladder: Vec<Quantization>,
    pub max_tokens: TokenBounds,
    /// At least 1.
    pub max_concurrent_requests: u32,
    /// At least 1.
    pub max_batch_size: u32,
    /// Drain timeout in whole seconds, rounded up; at least 1.
    pub drain_timeout_secs: u64,
    pub image: Option<String>,
    pub image_pull_secrets: Vec<String>,
    /// The Secret key holding the server's inference API key.
    pub api_key: Option<SecretKey>,
    pub resources: Resources,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub affinity: Option<Affinity>,
}

/// `spec.serving.maxTokens`: `1 <= floor <= default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBounds {
    pub default: u32,
    pub floor: u32,
}

/// One key of a Secret in the service's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKey {
    pub name: String,
    pub key: String,
}

/// `spec.serving.resources`, with quantities whose syntax was checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Resources {
    pub gpu: u32,
    pub cpu: Option<Quantity>,
    pub memory: Option<Quantity>,
}

/// `spec.slo`, in the units the SLO engine reads: every duration positive, ratios in range.
#[derive(Debug, Clone, PartialEq)]
pub struct Objectives {
    pub ttft_p95_seconds: f64,
    pub tpot_seconds: f64,
    /// `vramMaxPercent / 100`, in (0, 1].
    pub memory_ratio: f64,
    /// In [0, 1].
    pub error_rate_max: f64,
    /// The SLI window in whole seconds, rounded up; at least 1.
    pub window_seconds: u64,
    /// An `http://` or `https://` URL (whether it is allowed is the SLO loop's check).
    pub prometheus_url: Option<String>,
}

/// `spec.remediation`, with cooldowns in whole seconds (rounded up).
#[derive(Debug, Clone, PartialEq)]
pub struct Remediation {
    pub mode: Mode,
    pub knobs: Vec<Knob>,
    pub scale_up_cooldown_secs: u64,
    pub scale_down_cooldown_secs: u64,
    pub quantization_cooldown_secs: u64,
    pub max_tokens_cooldown_secs: u64,
    /// `capacity.requestsPerSecondPerReplica`: positive and finite when set.
    pub capacity_rps: Option<f64>,
}

/// A duration in whole seconds, rounded up.
fn ceil_secs(d: kube::core::Duration) -> u64 {
    let d = std::time::Duration::from(d);
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Validated {
    /// The ladder position of a quantization, if it is on the ladder.
    pub fn ladder_index(&self, q: Quantization) -> Option<usize> {
        self.serving
            .quantization_ladder
            .iter()
            .position(|l| *l == q)
    }
}

/// Checks `spec.serving.image` against what the operator was installed to run: its own CPU and
/// CUDA server images, or an image under one of `allowed` prefixes. Pure.
pub fn image_allowed(
    v: &Validated,
    opts: &crate::build::BuildOptions,
    allowed: &[String],
) -> Result<(), ValidationError> {
    let Some(image) = &v.serving.image else {
        return Ok(());
    };
    let ok = *image == opts.server_image
        || *image == opts.server_cuda_image
        || allowed.iter().any(|p| image_under(image, p));
    if ok {
        return Ok(());
    }
    Err(ValidationError::InvalidField {
        namespace: v.namespace.clone(),
        name: v.name.clone(),
        field: "spec.serving.image",
        reason: format!(
            "{image:?} is not an image this operator may run (its server images, or one allowed \
             by --allowed-server-images / the chart's server.allowedImages)"
        ),
    })
}

/// Whether `image` is `prefix` or lies under it at a reference boundary: the prefix ends with
/// `/`, `:` or `@`, or the image continues there with one of them. So `registry.example/sluice`
/// admits `registry.example/sluice:1` and `registry.example/sluice/server:1`, never
/// `registry.example/sluice-evil:1` or `registry.example.evil.com/x`. Pure.
pub fn image_under(image: &str, prefix: &str) -> bool {
    const BOUNDARY: [char; 3] = ['/', ':', '@'];
    if prefix.is_empty() {
        return false;
    }
    match image.strip_prefix(prefix) {
        None => false,
        Some("") => true,
        Some(rest) => prefix.ends_with(BOUNDARY) || rest.starts_with(BOUNDARY),
    }
}

/// Validates `isvc`. Pure: reads nothing but its argument.
pub fn validate(isvc: &InferenceService) -> Result<Validated, ValidationError> {
    let name = isvc.metadata.name.clone().unwrap_or_default();
    let namespace = isvc
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| ValidationError::MissingNamespace { name: name.clone() })?;
    let invalid = |field: &'static str, reason: String| ValidationError::InvalidField {
        namespace: namespace.clone(),
        name: name.clone(),
        field,
        reason,
    };
    if !is_dns1035_label(&name) {
        return Err(ValidationError::InvalidName {
            namespace: namespace.clone(),
            name: name.clone(),
        });
    }
    let uid = isvc.metadata.uid.clone().ok_or_else(|| {
        invalid(
            "metadata.uid",
            "missing; the object must come from the API server".into(),
        )
    })?;
    let spec = &isvc.spec;

    let model = model_source(spec, &invalid)?;
    let format = spec.model.format.unwrap_or_default();
    if format == ModelFormat::Gguf {
        let path = match &model {
            ModelSource::ImagePath(p) => p.as_str(),
            ModelSource::Pvc { path, .. } => path.as_str(),
            _ => "",
        };
        if !path.ends_with(".gguf") {
            return Err(invalid(
                "spec.model.format",
                "gguf needs model.image.path or model.pvc.path naming a .gguf file".into(),
            ));
        }
    }

    let serving = &spec.serving;
    if serving.quantization_ladder.is_empty() {
        return Err(invalid(
            "spec.serving.quantizationLadder",
            "must not be empty".into(),
        ));
    }
    for (i, q) in serving.quantization_ladder.iter().enumerate() {
        if serving.quantization_ladder[..i].contains(q) {
            return Err(invalid(
                "spec.serving.quantizationLadder",
                format!("repeats {q}"),
            ));
        }
    }
    if !serving.quantization_ladder.contains(&serving.quantization) {
        return Err(invalid(
            "spec.serving.quantization",
            format!("{} is not in quantizationLadder", serving.quantization),
        ));
    }
    if let Some(r) = &serving.api_key_secret_ref
        && r.name
            .strip_prefix(sluice_api::API_KEY_SECRET_PREFIX)
            .is_none_or(str::is_empty)
    {
        // The CRD's CEL rule says the same; checked again for objects stored before it.
        return Err(invalid(
            "spec.serving.apiKeySecretRef.name",
            format!(
                "{:?} must start with {:?}: only Secrets named for Sluice may be referenced",
                r.name,
                sluice_api::API_KEY_SECRET_PREFIX
            ),
        ));
    }
    let tokens = &serving.max_tokens;
    if tokens.floor == 0 || tokens.default == 0 {
        return Err(invalid(
            "spec.serving.maxTokens",
            "default and floor must be at least 1".into(),
        ));
    }
    if tokens.floor > tokens.default {
        return Err(invalid(
            "spec.serving.maxTokens.floor",
            format!("{} exceeds default {}", tokens.floor, tokens.default),
        ));
    }
    if serving.max_concurrent_requests == 0 || serving.max_batch_size == 0 {
        return Err(invalid(
            "spec.serving",
            "maxConcurrentRequests and maxBatchSize must be at least 1".into(),
        ));
    }
    if serving.drain_timeout.is_negative() || serving.drain_timeout == std::time::Duration::ZERO {
        return Err(invalid(
            "spec.serving.drainTimeout",
            "must be positive".into(),
        ));
    }
    for (field, q) in [
        ("spec.serving.resources.cpu", &serving.resources.cpu),
        ("spec.serving.resources.memory", &serving.resources.memory),
    ] {
        if let Some(q) = q
            && !is_quantity(&q.0)
        {
            return Err(invalid(
                field,
                format!("{:?} is not a Kubernetes quantity", q.0),
            ));
        }
    }
    let replicas = &spec.replicas;
    if replicas.min < 1 {
        return Err(invalid("spec.replicas.min", "must be at least 1".into()));
    }
    if replicas.min > replicas.max {
        return Err(invalid(
            "spec.replicas",
            format!("min {} exceeds max {}", replicas.min, replicas.max),
        ));
    }
    if let Some(count) = replicas.count {
        if count < replicas.min || count > replicas.max {
            return Err(invalid(
                "spec.replicas.count",
                format!(
                    "{count} is outside replicas.min {} .. replicas.max {}",
                    replicas.min, replicas.max
                ),
            ));
        }
        if spec.remediation.mode == Mode::Auto && spec.remediation.knobs.contains(&Knob::Replicas) {
            return Err(invalid(
                "spec.replicas.count",
                "is for kubectl scale, an HPA or KEDA, and Sluice moves replicas itself here: \
                 remove Replicas from remediation.knobs (or leave Auto mode) first"
                    .into(),
            ));
        }
    }
    check_slo(&spec.slo, &invalid)?;
    let tracing =
        otlp::check(spec.tracing.as_ref()).map_err(|(field, reason)| invalid(field, reason))?;
    let c = &spec.remediation.cooldowns;
    for (field, d) in [
        ("spec.remediation.cooldowns.scaleUp", c.scale_up),
        ("spec.remediation.cooldowns.scaleDown", c.scale_down),
        ("spec.remediation.cooldowns.quantization", c.quantization),
        ("spec.remediation.cooldowns.maxTokens", c.max_tokens),
    ] {
        if d.is_negative() || d == std::time::Duration::ZERO {
            return Err(invalid(field, "must be positive".into()));
        }
    }

    let r = &spec.remediation;
    if let Some(c) = &r.capacity {
        let v = c.requests_per_second_per_replica;
        if !(v.is_finite() && v > 0.0) {
            return Err(invalid(
                "spec.remediation.capacity.requestsPerSecondPerReplica",
                format!("{v} is not above 0"),
            ));
        }
    }
    Ok(Validated {
        served_name: spec
            .model
            .served_name
            .clone()
            .unwrap_or_else(|| name.clone()),
        name,
        namespace,
        uid,
        generation: isvc.metadata.generation.unwrap_or(0),
        model,
        format,
        serving: Serving {
            quantization: serving.quantization,
            quantization_ladder: serving.quantization_ladder.clone(),
            max_tokens: TokenBounds {
                default: tokens.default,
                floor: tokens.floor,
            },
            max_concurrent_requests: serving.max_concurrent_requests,
            max_batch_size: serving.max_batch_size,
            drain_timeout_secs: ceil_secs(serving.drain_timeout),
            image: serving.image.clone(),
            image_pull_secrets: serving.image_pull_secrets.clone(),
            api_key: serving.api_key_secret_ref.as_ref().map(|s| SecretKey {
                name: s.name.clone(),
                key: s.key.clone(),
            }),
            resources: Resources {
                gpu: serving.resources.gpu,
                cpu: serving.resources.cpu.clone(),
                memory: serving.resources.memory.clone(),
            },
            node_selector: serving.node_selector.clone(),
            tolerations: serving.tolerations.clone(),
            affinity: serving.affinity.clone(),
        },
        // Both checked above: 1 <= min <= max.
        min_replicas: replicas.min.unsigned_abs(),
        max_replicas: replicas.max.unsigned_abs(),
        replica_count: replicas.count.map(i32::unsigned_abs),
        slo: objectives(&spec.slo),
        remediation: Remediation {
            mode: r.mode,
            knobs: r.knobs.clone(),
            scale_up_cooldown_secs: ceil_secs(c.scale_up),
            scale_down_cooldown_secs: ceil_secs(c.scale_down),
            quantization_cooldown_secs: ceil_secs(c.quantization),
            max_tokens_cooldown_secs: ceil_secs(c.max_tokens),
            capacity_rps: r
                .capacity
                .as_ref()
                .map(|c| c.requests_per_second_per_replica),
        },
        tracing,
    })
}

/// `spec.slo` (checked by [`check_slo`]) in the engine's units.
fn objectives(slo: &SloSpec) -> Objectives {
    let secs = |d: kube::core::Duration| std::time::Duration::from(d).as_secs_f64();
    Objectives {
        ttft_p95_seconds: secs(slo.ttft_p95),
        tpot_seconds: secs(slo.tpot_avg),
        memory_ratio: f64::from(slo.vram_max_percent) / 100.0,
        error_rate_max: slo.error_rate_max,
        window_seconds: ceil_secs(slo.window).max(1),
        prometheus_url: slo.prometheus_url.clone(),
    }
}

fn model_source(
    spec: &sluice_api::InferenceServiceSpec,
    invalid: &impl Fn(&'static str, String) -> ValidationError,
) -> Result<ModelSource, ValidationError> {
    let m = &spec.model;
    let mut sources = Vec::new();
    if let Some(b) = m.builtin {
        sources.push(ModelSource::Builtin(b));
    }
    if let Some(image) = &m.image {
        if !image.path.starts_with('/') {
            return Err(invalid("spec.model.image.path", "must be absolute".into()));
        }
        sources.push(ModelSource::ImagePath(image.path.clone()));
    }
    if let Some(pvc) = &m.pvc {
        if pvc.path.starts_with('/') || pvc.path.split('/').any(|c| c == "..") {
            return Err(invalid(
                "spec.model.pvc.path",
                "must be relative and must not contain '..'".into(),
            ));
        }
        sources.push(ModelSource::Pvc {
            claim_name: pvc.claim_name.clone(),
            path: pvc.path.trim_end_matches('/').to_owned(),
        });
    }
    if let Some(hf) = &m.hugging_face {
        if !sluice_contract::model::valid_hf_repo(&hf.repo_id) {
            return Err(invalid(
                "spec.model.huggingFace.repoId",
                "must look like ORG/NAME (letters, digits, '.', '_', '-'; no '..')".into(),
            ));
        }
        // The server's own grammar: a spec that passes here never crash-loops on --model.
        if !sluice_contract::model::valid_hf_revision(&hf.revision) {
            return Err(invalid(
                "spec.model.huggingFace.revision",
                format!(
                    "{:?} is not a branch, tag, commit or ref path the server accepts",
                    hf.revision
                ),
            ));
        }
        sources.push(ModelSource::HuggingFace {
            repo_id: hf.repo_id.clone(),
            revision: hf.revision.clone(),
            cache_claim_name: hf.cache.claim_name.clone(),
        });
    }
    match sources.len() {
        1 => Ok(sources.remove(0)),
        n => Err(invalid(
            "spec.model",
            format!("exactly one of builtin, image, pvc or huggingFace must be set, found {n}"),
        )),
    }
}

fn check_slo(
    slo: &SloSpec,
    invalid: &impl Fn(&'static str, String) -> ValidationError,
) -> Result<(), ValidationError> {
    for (field, d) in [
        ("spec.slo.ttftP95", slo.ttft_p95),
        ("spec.slo.tpotAvg", slo.tpot_avg),
        ("spec.slo.window", slo.window),
    ] {
        if d.is_negative() || d == std::time::Duration::ZERO {
            return Err(invalid(field, "must be positive".into()));
        }
    }
    if slo.vram_max_percent == 0 || slo.vram_max_percent > 100 {
        return Err(invalid(
            "spec.slo.vramMaxPercent",
            "must be in (0, 100]".into(),
        ));
    }
    if !(0.0..=1.0).contains(&slo.error_rate_max) {
        return Err(invalid(
            "spec.slo.errorRateMax",
            "must be a fraction in [0, 1]".into(),
        ));
    }
    if let Some(url) = &slo.prometheus_url {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if !rest.is_some_and(|r| !r.is_empty() && !r.chars().any(char::is_whitespace)) {
            return Err(invalid(
                "spec.slo.prometheusUrl",
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
    }
    Ok(())
}

/// RFC 1035 label: what a Service name must be.
pub fn is_dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// Kubernetes quantity syntax: a signed decimal number followed by a binary suffix (`Ki`…`Ei`),
/// a decimal suffix (`m`, `k`, `M`…`E`) or a decimal exponent (`e3`, `E-2`).
pub fn is_quantity(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    let valid_number = !number.is_empty() && number != "." && number.matches('.').count() <= 1;
    let valid_suffix = matches!(
        suffix,
        "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
    ) || suffix
        .strip_prefix(['e', 'E'])
        .map(|exp| {
            let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit())
        })
        .unwrap_or(false);
    valid_number && valid_suffix
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (hardening): the allow-list matched bare string prefixes, so
    /// `registry.example/sluice` admitted `registry.example/sluice-evil`.
    #[test]
    fn allowed_images_match_at_reference_boundaries() {
        let p = "registry.example/sluice";
        for ok in [
            "registry.example/sluice",
            "registry.example/sluice:1.2",
            "registry.example/sluice@sha256:ab",
            "registry.example/sluice/server:1",
        ] {
            assert!(image_under(ok, p), "{ok}");
        }
        for bad in [
            "registry.example/sluice-evil:1",
            "registry.example/sluicex",
            "registry.example.evil.com/sluice",
            "other/registry.example/sluice",
        ] {
            assert!(!image_under(bad, p), "{bad}");
        }
        assert!(image_under(
            "r.example/sluice-server:2",
            "r.example/sluice-server:"
        ));
        assert!(!image_under("anything", ""));
    }

    #[test]
    fn dns1035_labels() {
        assert!(is_dns1035_label("tiny"));
        assert!(is_dns1035_label("mistral-7b"));
        assert!(!is_dns1035_label("7b"));
        assert!(!is_dns1035_label("a.b"));
        assert!(!is_dns1035_label("trailing-"));
        assert!(!is_dns1035_label(&"a".repeat(64)));
    }

    #[test]
    fn quantities() {
        for ok in ["1", "500m", "0.5", "32Gi", "1e3", "4", "+2", "1.5Gi"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "abc", "1gb", "1..2", ".", "Gi", "1e"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
