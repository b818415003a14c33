//! Pure mapping from the CRD to the SLO engine's inputs: the objectives and knobs
//! ([`sluice_slo::SloSpec`]), the settings in effect ([`sluice_slo::Settings`]) and the label
//! selector that scopes every PromQL query to the service's pods.

use sluice_contract::{AppliedSettings, Knob, Quantization};
use sluice_slo::promql::SelectorError;
use sluice_slo::{Knobs, Selector, Settings, SloSpec, SloTargets, Tuning, Window};

use crate::status::Rollout;
use crate::validate::Validated;

/// The SLI window (`spec.slo.window`, at least 1 s).
pub fn window(v: &Validated) -> Window {
    Window::seconds(v.slo.window_seconds)
}

/// Maps the validated spec and the settings in effect to the engine's spec. Pure.
///
/// A knob missing from `remediation.knobs` is pinned at its current value (min = max, a
/// one-rung ladder, floor = ceiling), so the planner can reason about it but never move it.
/// The quantization ladder starts at `serving.quantization`: step-back restores the level the
/// user chose, and the planner never "improves" fidelity beyond it.
pub fn slo_spec(v: &Validated, eff: &AppliedSettings) -> SloSpec {
    let may = |k: Knob| v.remediation.knobs.contains(&k);
    let (min_replicas, max_replicas) = if may(Knob::Replicas) {
        (v.min_replicas, v.max_replicas)
    } else {
        (eff.replicas, eff.replicas)
    };
    let quantization_ladder: Vec<Quantization> = if may(Knob::Quantization) {
        let start = v.ladder_index(v.serving.quantization).unwrap_or(0);
        v.serving.quantization_ladder[start..].to_vec()
    } else {
        vec![eff.quantization]
    };
    let mt = &v.serving.max_tokens;
    let (max_tokens, max_tokens_floor) = if may(Knob::MaxTokens) {
        (mt.default, mt.floor)
    } else {
        (eff.max_tokens, eff.max_tokens)
    };
    let r = &v.remediation;
    let tuning = Tuning {
        scale_out_cooldown_seconds: r.scale_up_cooldown_secs,
        scale_in_cooldown_seconds: r.scale_down_cooldown_secs,
        quantization_cooldown_seconds: r.quantization_cooldown_secs,
        max_tokens_cooldown_seconds: r.max_tokens_cooldown_secs,
        ..Tuning::default()
    };
    SloSpec {
        mode: v.remediation.mode,
        targets: targets(v),
        knobs: Knobs {
            min_replicas,
            max_replicas,
            quantization_ladder,
            max_tokens,
            max_tokens_floor,
        },
        tuning,
        thresholds: Default::default(),
        capacity: v
            .remediation
            .capacity_rps
            .map(|r| sluice_slo::CapacityModel {
                requests_per_second_per_replica: r,
            }),
    }
}

/// The service's objectives as the engine (and its alert rules) take them.
pub fn targets(v: &Validated) -> SloTargets {
    SloTargets {
        ttft_p95_seconds: Some(v.slo.ttft_p95_seconds),
        tpot_seconds: Some(v.slo.tpot_seconds),
        // The CRD allows 0 ("no errors at all"); the engine needs a positive ratio, and one in
        // a billion is the same objective for any real request count.
        error_ratio: Some(v.slo.error_rate_max.max(1e-9)),
        memory_ratio: v.slo.memory_ratio,
    }
}

/// The settings in effect: the operator's choice plus what the Deployment reports.
pub fn settings(eff: &AppliedSettings, rollout: Option<&Rollout>) -> Settings {
    let to_u32 = |n: i32| u32::try_from(n.max(0)).unwrap_or(0);
    Settings {
        applied: *eff,
        ready_replicas: rollout.map(|r| to_u32(r.ready)).unwrap_or(0),
        // No Deployment yet means nothing rolled out.
        rollout_complete: rollout
            .is_some_and(|r| r.complete() && i64::from(r.desired) == i64::from(eff.replicas)),
    }
}

/// Label selector for the service's server pods as Prometheus sees them (see
/// [`Selector::deployment_pods`]; `sluice analyze --service` uses the same one).
pub fn selector(v: &Validated) -> Result<Selector, SelectorError> {
    Selector::deployment_pods(Some(&v.namespace), &v.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_api::InferenceService;
    use sluice_contract::Mode;

    fn validated(spec: serde_json::Value) -> Validated {
        let obj: InferenceService = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": "tiny", "namespace": "demo", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap();
        crate::validate::validate(&obj).unwrap()
    }

    fn eff(replicas: u32, q: Quantization, max_tokens: u32) -> AppliedSettings {
        AppliedSettings {
            replicas,
            quantization: q,
            max_tokens,
        }
    }

    #[test]
    fn maps_objectives_knobs_and_cooldowns() {
        let v = validated(json!({
            "model": {"builtin": "tiny"},
            "replicas": {"min": 1, "max": 4},
            "serving": {"quantization": "q8_0", "quantizationLadder": ["f16", "q8_0", "q4_0"],
                        "maxTokens": {"default": 512, "floor": 32}},
            "slo": {"ttftP95": "800ms", "tpotAvg": "40ms", "vramMaxPercent": 90,
                    "errorRateMax": 0.01, "window": "2m"},
            "remediation": {"mode": "Advise", "cooldowns": {"scaleUp": "30s", "scaleDown": "5m",
                            "quantization": "10m", "maxTokens": "1m"}},
        }));
        let s = slo_spec(&v, &eff(2, Quantization::Q8_0, 512));
        assert_eq!(s.mode, Mode::Advise);
        assert_eq!(s.targets.ttft_p95_seconds, Some(0.8));
        assert_eq!(s.targets.tpot_seconds, Some(0.04));
        assert_eq!(s.targets.error_ratio, Some(0.01));
        assert_eq!(s.targets.memory_ratio, 0.9);
        assert_eq!(
            s.knobs,
            Knobs {
                min_replicas: 1,
                max_replicas: 4,
                quantization_ladder: vec![Quantization::Q8_0, Quantization::Q4_0],
                max_tokens: 512,
                max_tokens_floor: 32,
            }
        );
        assert_eq!(s.tuning.scale_out_cooldown_seconds, 30);
        assert_eq!(s.tuning.scale_in_cooldown_seconds, 300);
        assert_eq!(s.tuning.quantization_cooldown_seconds, 600);
        assert_eq!(s.tuning.max_tokens_cooldown_seconds, 60);
        assert_eq!(window(&v).as_secs(), 120);
        s.validate().expect("mapped spec is valid for the engine");
    }

    #[test]
    fn knobs_left_out_are_pinned_at_their_current_value() {
        let v = validated(json!({
            "model": {"builtin": "tiny"},
            "replicas": {"min": 1, "max": 8},
            "remediation": {"mode": "Auto", "knobs": ["MaxTokens"]},
        }));
        let s = slo_spec(&v, &eff(3, Quantization::F16, 128));
        assert_eq!((s.knobs.min_replicas, s.knobs.max_replicas), (3, 3));
        assert_eq!(s.knobs.quantization_ladder, vec![Quantization::F16]);
        assert_eq!((s.knobs.max_tokens, s.knobs.max_tokens_floor), (256, 64));
        let s = slo_spec(
            &validated(json!({"model": {"builtin": "tiny"},
                              "remediation": {"knobs": ["Replicas"]}})),
            &eff(1, Quantization::F16, 128),
        );
        assert_eq!((s.knobs.max_tokens, s.knobs.max_tokens_floor), (128, 128));
    }

    #[test]
    fn zero_error_budget_stays_a_valid_objective() {
        let v = validated(json!({"model": {"builtin": "tiny"}, "slo": {"errorRateMax": 0.0}}));
        let s = slo_spec(&v, &eff(1, Quantization::F16, 256));
        assert!(s.targets.error_ratio.unwrap() > 0.0);
        s.validate().unwrap();
    }

    #[test]
    fn settings_follow_the_rollout() {
        let e = eff(2, Quantization::Q4_0, 100);
        let r = Rollout {
            desired: 2,
            replicas: 2,
            updated: 2,
            ready: 2,
            available: 2,
            observed: true,
            stalled: None,
            selector: String::new(),
        };
        let s = settings(&e, Some(&r));
        assert_eq!(
            s,
            Settings {
                applied: eff(2, Quantization::Q4_0, 100),
                ready_replicas: 2,
                rollout_complete: true,
            }
        );
        let rolling = Rollout {
            updated: 1,
            ready: 1,
            available: 1,
            ..r.clone()
        };
        assert!(!settings(&e, Some(&rolling)).rollout_complete);
        // The Deployment still wants 1 while the operator chose 2: not settled.
        let old = Rollout { desired: 1, ..r };
        assert!(!settings(&e, Some(&old)).rollout_complete);
        assert!(!settings(&e, None).rollout_complete);
    }

    #[test]
    fn selector_scopes_to_the_deployment_pods() {
        let v = validated(json!({"model": {"builtin": "tiny"}}));
        assert_eq!(
            selector(&v).unwrap().render(),
            r#"namespace="demo",pod=~"tiny-[a-z0-9]+-[a-z0-9]+""#
        );
    }
}
