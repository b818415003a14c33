//! The status page on fixed objects, parsed from the JSON the apiserver stores so the fixture
//! uses the wire names an on-call engineer would see in `kubectl get -o yaml`.

use super::*;

/// A service mid-remediation: SLO violated, queue-bound, one pending scale-out after a hold.
pub(crate) fn fixture() -> InferenceService {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "chat", "namespace": "apps", "generation": 3},
        "spec": {
            "model": {"builtin": "tiny"},
            "replicas": {"min": 1, "max": 4},
            "slo": {"ttftP95": "1s", "tpotAvg": "50ms", "errorRateMax": 0.001, "window": "2m"}
        },
        "status": {
            "observedGeneration": 3,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Available",
                 "message": "2 of 2 pods ready", "lastTransitionTime": "2026-12-04T19:50:00Z"},
                {"type": "SLOMet", "status": "False", "reason": "QueueBound",
                 "message": "ttftP95 1.84s > 1s", "lastTransitionTime": "2026-12-04T20:00:00Z"}
            ],
            "effective": {"replicas": 3, "quantization": "f16", "maxTokens": 128},
            "endpoint": "http://chat.apps.svc:8080",
            "replicas": 2,
            "readyReplicas": 2,
            "slo": {
                "state": "Violated",
                "slis": {
                    "observedAt": "2026-12-04T20:01:00Z", "window": "2m",
                    "ttftP95Seconds": 1.84, "tpotAvgSeconds": 0.021, "errorRate": 0.0,
                    "requestRatePerSecond": 12.5, "queueDepth": 84.0, "queueWaitSeconds": 1.2,
                    "reportingPods": 2.0, "unknown": ["vramPercent: no memory metrics"]
                },
                "objectives": [
                    {"name": "ttftP95", "state": "Violated", "value": 1.84, "target": 1.0,
                     "since": "2026-12-04T20:00:00Z"},
                    {"name": "tpotAvg", "state": "Met", "value": 0.021, "target": 0.05},
                    {"name": "errorRateMax", "state": "Met", "value": 0.0, "target": 0.001}
                ],
                "bottleneck": {
                    "class": "QueueBound", "rule": "Q1",
                    "summary": "the queue grows faster than the pods drain it",
                    "evidence": ["queueDepthPerPod=42.0000 >= 2.0000"],
                    "since": "2026-12-04T20:00:00Z"
                },
                "decisions": [
                    {"id": 6, "time": "2026-12-04T20:00:00Z", "mode": "Auto", "kind": "Hold",
                     "class": "QueueBound", "rule": "Q1",
                     "reason": "breach seen once; waiting for it to persist",
                     "outcome": "Noted"},
                    {"id": 7, "time": "2026-12-04T20:01:00Z", "mode": "Auto",
                     "kind": "Remediate", "knob": "Replicas", "from": "2", "to": "3",
                     "class": "QueueBound", "rule": "Q1",
                     "reason": "requests queue for admission: one more replica drains it",
                     "evidence": [{"signal": "queueDepthPerPod", "value": 42.0, "op": ">=",
                                   "threshold": 2.0}],
                     "baseline": {"violated": ["ttftP95"], "ttftP95Seconds": 1.84,
                                  "errorRatio": 0.0, "requestRatePerSecond": 12.5,
                                  "replicas": 2},
                     "outcome": "Pending"}
                ]
            }
        }
    }))
    .expect("the fixture is a valid InferenceService")
}

#[test]
fn renders_objectives_bottleneck_decisions_and_what_it_waits_for() {
    let text = render(&fixture(), 5);
    assert!(text.starts_with("InferenceService apps/chat\n"), "{text}");
    assert!(
        text.contains("  SLOMet       False    QueueBound: ttftP95 1.84s > 1s\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "Replicas     2 ready of 2 (in effect: 3 replicas, quantization f16, maxTokens 128)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("Endpoint     http://chat.apps.svc:8080\n"),
        "{text}"
    );
    assert!(
        text.contains("SLO          Violated (SLIs over 2m at 2026-12-04 20:01:00Z)\n"),
        "{text}"
    );
    let objective = text
        .lines()
        .find(|l| l.trim_start().starts_with("ttftP95"))
        .expect("a ttftP95 row");
    let cells: Vec<&str> = objective.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "ttftP95",
            "1.00s",
            "1.84s",
            "Violated",
            "2026-12-04",
            "20:00:00Z"
        ]
    );
    let tpot = text
        .lines()
        .find(|l| l.trim_start().starts_with("tpotAvg"))
        .expect("a tpotAvg row");
    assert_eq!(
        tpot.split_whitespace().collect::<Vec<_>>(),
        ["tpotAvg", "50ms", "21ms", "Met"]
    );
    assert!(
        text.contains(
            "Other SLIs   requests 12.50/s, queue depth 84.0, queue wait 1.20s, pods reporting 2\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("Unreadable   vramPercent: no memory metrics\n"),
        "{text}"
    );
    assert!(
        text.contains("Bottleneck   QueueBound (rule Q1) since 2026-12-04 20:00:00Z\n"),
        "{text}"
    );
    assert!(text.contains("Decisions (2 of 2, newest first;"), "{text}");
    let decisions: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.trim_start().starts_with('6') || l.trim_start().starts_with('7'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        decisions,
        [
            vec![
                "7",
                "2026-12-04",
                "20:01:00Z",
                "Remediate",
                "replicas",
                "2",
                "->",
                "3",
                "QueueBound",
                "Pending"
            ],
            vec![
                "6",
                "2026-12-04",
                "20:00:00Z",
                "Hold",
                "no",
                "change",
                "QueueBound",
                "Noted"
            ],
        ],
        "newest first: {text}"
    );
    assert!(
        text.ends_with(
            "\nWaiting for  decision 7 (replicas 2 -> 3) to roll out and fresh SLIs to judge it\n"
        ),
        "{text}"
    );
}

#[test]
fn caps_the_decision_list() {
    let text = render(&fixture(), 1);
    assert!(text.contains("Decisions (1 of 2, newest first;"), "{text}");
    assert!(!text.contains("Hold"), "{text}");
}

#[test]
fn a_service_without_status_says_the_operator_has_not_seen_it() {
    let mut isvc = fixture();
    isvc.status = None;
    let text = render(&isvc, 5);
    assert_eq!(
        text,
        "InferenceService apps/chat\n\nNo status yet: the operator has not reconciled this \
         object. Is it running and watching namespace apps?\n"
    );
}

#[test]
fn waiting_for_follows_the_operator_state() {
    let mut isvc = fixture();
    isvc.metadata.generation = Some(4);
    let st = isvc.status.clone().unwrap();
    assert_eq!(
        waiting_for(&isvc, &st),
        "the operator to act on generation 4 (it last acted on 3)"
    );

    let mut isvc = fixture();
    let mut st = isvc.status.take().unwrap();
    let slo = st.slo.as_mut().unwrap();
    slo.decisions.pop();
    assert_eq!(
        waiting_for(&isvc, &st),
        "the next evaluation: the breach must persist (or a cooldown end) before it acts"
    );

    let slo = st.slo.as_mut().unwrap();
    slo.state = ObjectiveState::Met;
    assert_eq!(waiting_for(&isvc, &st), "nothing: the objectives hold");

    st.slo = None;
    assert_eq!(waiting_for(&isvc, &st), "the first SLO evaluation");
}

#[test]
fn values_carry_their_units() {
    assert_eq!(seconds(0.85), "850ms");
    assert_eq!(seconds(1.844), "1.84s");
    assert_eq!(objective_value(Objective::ErrorRateMax, 0.001), "0.100%");
    assert_eq!(objective_value(Objective::VramMaxPercent, 91.26), "91.3%");
}
