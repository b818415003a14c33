//! Status stage (pure part): the status the reconcile wants, from what it applied and observed.
//! Conditions follow the Kubernetes API conventions: one entry per type, `observedGeneration`
//! on each, and `lastTransitionTime` only moves when the condition's status does. Fields the SLO
//! loop owns (`slo`, the `SLOMet` condition) are carried over untouched.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use sluice_api::{AppliedSettings, InferenceServiceStatus, condition};

/// One condition's desired content.
#[derive(Debug, Clone, PartialEq)]
pub struct CondSpec<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: &'a str,
    pub message: String,
}

/// Sets `spec` in `conditions`, keeping `lastTransitionTime` when the status is unchanged.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    spec: CondSpec<'_>,
    generation: i64,
    now: &Time,
) {
    let status = if spec.status { "True" } else { "False" };
    set_condition_status(conditions, spec, status, generation, now);
}

/// Like [`set_condition`] with `Unknown` for `None`: conditions whose truth cannot be known
/// (e.g. `SLOMet` without metrics).
pub fn set_condition_maybe(
    conditions: &mut Vec<Condition>,
    spec: CondSpec<'_>,
    status: Option<bool>,
    generation: i64,
    now: &Time,
) {
    let status = match status {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    };
    set_condition_status(conditions, spec, status, generation, now);
}

fn set_condition_status(
    conditions: &mut Vec<Condition>,
    spec: CondSpec<'_>,
    status: &str,
    generation: i64,
    now: &Time,
) {
    let status = status.to_owned();
    let existing = conditions.iter().position(|c| c.type_ == spec.type_);
    let last_transition_time = match existing.map(|i| &conditions[i]) {
        Some(old) if old.status == status => old.last_transition_time.clone(),
        _ => now.clone(),
    };
    let cond = Condition {
        type_: spec.type_.to_owned(),
        status,
        reason: spec.reason.to_owned(),
        message: spec.message,
        observed_generation: Some(generation),
        last_transition_time,
    };
    match existing {
        Some(i) => conditions[i] = cond,
        None => conditions.push(cond),
    }
}

fn slo_met_placeholder(conditions: &mut Vec<Condition>, generation: i64, now: &Time) {
    if !conditions.iter().any(|c| c.type_ == condition::SLO_MET) {
        conditions.push(Condition {
            type_: condition::SLO_MET.to_owned(),
            status: "Unknown".to_owned(),
            reason: "AwaitingMetrics".to_owned(),
            message: "the SLO loop has not evaluated this service yet".to_owned(),
            observed_generation: Some(generation),
            last_transition_time: now.clone(),
        });
    }
}

/// How far the Deployment's rollout got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollout {
    pub desired: i32,
    pub replicas: i32,
    pub updated: i32,
    pub ready: i32,
    pub available: i32,
    /// The Deployment controller has seen the latest Deployment spec.
    pub observed: bool,
    /// The Deployment reported `ProgressDeadlineExceeded`, with its message.
    pub stalled: Option<String>,
    /// The pod selector as `k=v,k=v` (the scale subresource's selector).
    pub selector: String,
}

impl Rollout {
    /// Reads the rollout state off a Deployment.
    pub fn of(dep: &Deployment) -> Self {
        let desired = dep.spec.replicas.unwrap_or(1);
        let st = dep.status.clone().unwrap_or_default();
        let observed = match (st.observed_generation, dep.metadata.generation) {
            (Some(o), Some(g)) => o >= g,
            _ => false,
        };
        let stalled = st.conditions.iter().flatten().find_map(|c| {
            (c.type_.as_deref() == Some("Progressing")
                && c.status.as_deref() == Some("False")
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
            .then(|| c.message.clone().unwrap_or_default())
        });
        let selector = dep
            .spec
            .selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        Self {
            selector,
            desired,
            replicas: st.replicas.unwrap_or(0),
            updated: st.updated_replicas.unwrap_or(0),
            ready: st.ready_replicas.unwrap_or(0),
            available: st.available_replicas.unwrap_or(0),
            observed,
            stalled,
        }
    }

    /// Every desired pod runs the latest template and is available.
    pub fn complete(&self) -> bool {
        self.observed
            && self.updated >= self.desired
            && self.replicas == self.updated
            && self.available >= self.desired
    }
}

/// Status after a successful apply. Pure.
pub fn reconciled(
    old: Option<&InferenceServiceStatus>,
    generation: i64,
    effective: AppliedSettings,
    endpoint: String,
    rollout: &Rollout,
    now: &Time,
) -> InferenceServiceStatus {
    let mut status = old.cloned().unwrap_or_default();
    let r = rollout;
    let ready = r.desired > 0 && r.available >= r.desired;
    set_condition(
        &mut status.conditions,
        CondSpec {
            type_: condition::READY,
            status: ready,
            reason: if ready { "Available" } else { "PodsNotReady" },
            message: format!("{}/{} replicas ready", r.ready, r.desired),
        },
        generation,
        now,
    );
    let (progressing, reason, message) = match (&r.stalled, r.complete()) {
        (Some(msg), _) => (false, "ProgressDeadlineExceeded", msg.clone()),
        (None, true) => (
            false,
            "RolloutComplete",
            format!("{} replicas up to date", r.updated),
        ),
        (None, false) => (
            true,
            "RollingOut",
            format!(
                "{}/{} replicas updated, {} available",
                r.updated, r.desired, r.available
            ),
        ),
    };
    set_condition(
        &mut status.conditions,
        CondSpec {
            type_: condition::PROGRESSING,
            status: progressing,
            reason,
            message,
        },
        generation,
        now,
    );
    let degraded = match &r.stalled {
        Some(msg) => CondSpec {
            type_: condition::DEGRADED,
            status: true,
            reason: "ProgressDeadlineExceeded",
            message: format!("the server Deployment is not progressing: {msg}"),
        },
        None => CondSpec {
            type_: condition::DEGRADED,
            status: false,
            reason: "AsExpected",
            message: "the spec is valid and its objects are applied".to_owned(),
        },
    };
    set_condition(&mut status.conditions, degraded, generation, now);
    slo_met_placeholder(&mut status.conditions, generation, now);
    status.observed_generation = Some(generation);
    status.effective = Some(effective);
    status.endpoint = Some(endpoint);
    status.replicas = Some(r.replicas);
    status.ready_replicas = Some(r.ready);
    status.selector = Some(r.selector.clone());
    status
}

/// Status after a permanent failure (invalid spec, rejected object): `Degraded` with the
/// reason and message, `Ready`/`Progressing` left as they were except for their generation.
pub fn failed(
    old: Option<&InferenceServiceStatus>,
    generation: i64,
    reason: &str,
    message: &str,
    now: &Time,
) -> InferenceServiceStatus {
    let mut status = old.cloned().unwrap_or_default();
    set_condition(
        &mut status.conditions,
        CondSpec {
            type_: condition::DEGRADED,
            status: true,
            reason,
            message: message.to_owned(),
        },
        generation,
        now,
    );
    if !status
        .conditions
        .iter()
        .any(|c| c.type_ == condition::READY)
    {
        set_condition(
            &mut status.conditions,
            CondSpec {
                type_: condition::READY,
                status: false,
                reason,
                message: "nothing is deployed until the spec is fixed".to_owned(),
            },
            generation,
            now,
        );
    }
    set_condition(
        &mut status.conditions,
        CondSpec {
            type_: condition::PROGRESSING,
            status: false,
            reason,
            message: "waiting for a spec change".to_owned(),
        },
        generation,
        now,
    );
    slo_met_placeholder(&mut status.conditions, generation, now);
    status.observed_generation = Some(generation);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn rollout(desired: i32, available: i32) -> Rollout {
        Rollout {
            desired,
            replicas: desired,
            updated: desired,
            ready: available,
            available,
            observed: true,
            stalled: None,
            selector: "app=x".into(),
        }
    }

    fn eff() -> AppliedSettings {
        AppliedSettings {
            replicas: 2,
            quantization: sluice_api::Quantization::F16,
            max_tokens: 256,
        }
    }

    fn cond<'a>(s: &'a InferenceServiceStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let t1 = t("2025-01-01T00:00:00Z");
        let t2 = t("2025-01-01T00:05:00Z");
        let s1 = reconciled(None, 1, eff(), "e".into(), &rollout(2, 1), &t1);
        assert_eq!(cond(&s1, "Ready").status, "False");
        let s2 = reconciled(Some(&s1), 1, eff(), "e".into(), &rollout(2, 1), &t2);
        assert_eq!(s1, s2, "same observation, same status: no write needed");
        let s3 = reconciled(Some(&s2), 2, eff(), "e".into(), &rollout(2, 2), &t2);
        let ready = cond(&s3, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Available")
        );
        assert_eq!(ready.last_transition_time, t2);
        assert_eq!(ready.observed_generation, Some(2));
        assert_eq!(cond(&s3, "Degraded").last_transition_time, t1);
    }

    #[test]
    fn stalled_rollout_is_degraded() {
        let mut r = rollout(1, 0);
        r.stalled = Some("ReplicaSet has timed out progressing".into());
        let s = reconciled(None, 1, eff(), "e".into(), &r, &t("2025-01-01T00:00:00Z"));
        assert_eq!(cond(&s, "Degraded").status, "True");
        assert_eq!(cond(&s, "Progressing").reason, "ProgressDeadlineExceeded");
    }

    #[test]
    fn slo_fields_are_carried_over() {
        let mut old = InferenceServiceStatus::default();
        old.conditions.push(Condition {
            type_: "SLOMet".into(),
            status: "True".into(),
            reason: "AllObjectivesMet".into(),
            message: "ok".into(),
            observed_generation: Some(1),
            last_transition_time: t("2024-12-31T00:00:00Z"),
        });
        old.slo = Some(sluice_api::SloStatus::default());
        let s = reconciled(
            Some(&old),
            1,
            eff(),
            "e".into(),
            &rollout(1, 1),
            &t("2025-01-01T00:00:00Z"),
        );
        assert_eq!(cond(&s, "SLOMet").reason, "AllObjectivesMet");
        assert!(s.slo.is_some());
    }
}
