//! The effective settings: the replica count, quantization and `max_tokens` cap actually applied.
//! They are an input of the build stage next to the validated spec, so the SLO loop can choose
//! them without the pipeline changing shape.
//!
//! What runs is **observed, never remembered**: [`derive`] starts from the children — the
//! Deployment's replica count and the settings in the operator's ConfigMap — not from
//! `status.effective`, which is only a log. Deleting status, or re-creating the CR over its
//! children, changes nothing that runs.
//!
//! Changes of mode or knobs **freeze, never reset** (like HPA's `scalingPolicy: Disabled` or
//! KEDA's paused annotation): leaving `Auto`, or withdrawing a knob, keeps the value now
//! running. A change of the spec's own value for a knob (its starting quantization or default
//! cap) is the user speaking and wins; the ConfigMap records which spec values its settings
//! were derived from, so the two cases are told apart.

use sluice_contract::admin::RuntimeSettings;
use sluice_contract::{AppliedSettings, Knob, Mode, Quantization};

use crate::validate::Validated;

/// The settings in the operator's ConfigMap, and the spec values they were derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// What the servers run (the ConfigMap's settings file).
    pub runtime: RuntimeSettings,
    /// `spec.serving.quantization` when the settings were written.
    pub spec_quantization: Quantization,
    /// `spec.serving.maxTokens.default` when the settings were written.
    pub spec_max_tokens: u32,
}

/// What runs now, read from the children.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Running {
    /// The Deployment's `spec.replicas`, when the Deployment exists.
    pub replicas: Option<u32>,
    /// The ConfigMap's settings, when it exists and parses.
    pub settings: Option<Recorded>,
}

/// The starting point the spec declares: fewest replicas (or `replicas.count`), starting
/// quantization, default cap.
pub fn start(v: &Validated) -> AppliedSettings {
    AppliedSettings {
        replicas: v.replica_count.unwrap_or(v.min_replicas),
        quantization: v.serving.quantization,
        max_tokens: v.serving.max_tokens.default,
    }
}

/// Whether the operator chooses the replica count: `Auto` with the `Replicas` knob. Otherwise
/// `replicas.count` (the scale subresource) or whoever scales the Deployment decides it.
pub fn moves_replicas(v: &Validated) -> bool {
    v.remediation.mode == Mode::Auto && v.remediation.knobs.contains(&Knob::Replicas)
}

/// The settings in force before this reconcile decides anything. Pure.
///
/// - Replicas: the operator's choice (what the Deployment runs, within the bounds) when it moves
///   replicas; else `replicas.count` when set; else what the Deployment runs, untouched.
/// - Quantization and cap: what the ConfigMap says runs, kept within the spec's bounds, unless
///   the spec's own value for that knob changed since it was written.
/// - Nothing running yet: the spec's starting point.
pub fn derive(v: &Validated, running: &Running) -> AppliedSettings {
    let start = start(v);
    let replicas = match (moves_replicas(v), v.replica_count, running.replicas) {
        (true, _, Some(n)) => n.clamp(v.min_replicas, v.max_replicas),
        (false, Some(count), _) => count,
        (false, None, Some(n)) => n,
        (_, _, None) => start.replicas,
    };
    let Some(r) = running.settings else {
        return AppliedSettings { replicas, ..start };
    };
    let quantization = if r.spec_quantization == v.serving.quantization
        && v.ladder_index(r.runtime.quantization) >= v.ladder_index(v.serving.quantization)
        && v.ladder_index(r.runtime.quantization).is_some()
    {
        r.runtime.quantization
    } else {
        start.quantization
    };
    let mt = &v.serving.max_tokens;
    let max_tokens = if r.spec_max_tokens == mt.default {
        u32::try_from(r.runtime.max_tokens)
            .unwrap_or(u32::MAX)
            .clamp(mt.floor, mt.default)
    } else {
        start.max_tokens
    };
    AppliedSettings {
        replicas,
        quantization,
        max_tokens,
    }
}
