//! The effective settings: the replica count, quantization and `max_tokens` cap actually applied.
//! They are an input of the build stage next to the validated spec, so the SLO loop can choose
//! them without the pipeline changing shape: it records its choice in `status.effective`, and
//! [`derive`] carries that choice forward as long as the spec still allows it.

use sluice_contract::{AppliedSettings, Knob, Mode};

use crate::validate::Validated;

/// The starting point the spec declares: fewest replicas, starting quantization, default cap.
pub fn start(v: &Validated) -> AppliedSettings {
    AppliedSettings {
        replicas: v.min_replicas,
        quantization: v.serving.quantization,
        max_tokens: v.serving.max_tokens.default,
    }
}

/// Chooses the effective settings for this reconcile. Pure.
///
/// In `Auto` mode a previously chosen value (from `status.effective`) is kept for every knob the
/// spec lets the operator move, clamped into the spec's current bounds, so that a remediation
/// survives reconciles while a tightened spec still wins. Otherwise, and for knobs it may not
/// move, the spec's starting value applies.
pub fn derive(v: &Validated, previous: Option<&AppliedSettings>) -> AppliedSettings {
    let start = start(v);
    let Some(prev) = previous else {
        return start;
    };
    if v.remediation.mode != Mode::Auto {
        return start;
    }
    let may = |k: Knob| v.remediation.knobs.contains(&k);
    AppliedSettings {
        replicas: if may(Knob::Replicas) {
            prev.replicas.clamp(v.min_replicas, v.max_replicas)
        } else {
            start.replicas
        },
        quantization: if may(Knob::Quantization) && v.ladder_index(prev.quantization).is_some() {
            prev.quantization
        } else {
            start.quantization
        },
        max_tokens: if may(Knob::MaxTokens) {
            prev.max_tokens
                .clamp(v.serving.max_tokens.floor, v.serving.max_tokens.default)
        } else {
            start.max_tokens
        },
    }
}
