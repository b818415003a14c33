//! Change detection (pure): whether a live object already carries everything the operator wants
//! in it. This is what lets an unchanged InferenceService reconcile with zero writes, while a
//! user's edit to an owned object (or an operator change that only removes a field) is still
//! noticed and put back.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Annotation holding the hash of the desired object the operator last applied.
pub const HASH_ANNOTATION: &str = "sluice.dev/desired-hash";

/// Short, stable hash of a desired object (before the hash annotation is added).
pub fn desired_hash(desired: &Value) -> String {
    let bytes = serde_json::to_vec(desired).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    hex(&digest[..8])
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Adds [`HASH_ANNOTATION`] to a desired object.
pub fn with_hash(mut desired: Value) -> Value {
    let hash = desired_hash(&desired);
    if let Some(meta) = desired.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(HASH_ANNOTATION.to_owned(), Value::String(hash));
        }
    }
    desired
}

/// Whether every field set in `desired` has the same value in `live`. Maps may have extra keys
/// in `live` (server defaults, other managers); lists must match element by element, because
/// the operator owns whole lists (args, ports, volumes). Empty desired maps and lists match a
/// missing field, since the API server drops them.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Null, _) => true,
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => is_subset(dv, lv),
            None => is_empty(dv),
        }),
        (Value::Object(d), Value::Null) => d.values().all(is_empty),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| is_subset(dv, lv))
        }
        (Value::Array(d), Value::Null) => d.is_empty(),
        (Value::Number(d), Value::Number(l)) => d.as_f64() == l.as_f64(),
        (d, l) => d == l,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_empty),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Whether `desired` (already carrying its hash) must be applied over `live`.
pub fn needs_apply(desired: &Value, live: Option<&Value>) -> bool {
    let Some(live) = live else {
        return true;
    };
    let mut desired = desired.clone();
    // `status` is never ours to write through the main resource.
    if let Some(obj) = desired.as_object_mut() {
        obj.remove("status");
    }
    !is_subset(&desired, live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_defaults_do_not_count_as_drift() {
        let desired = json!({"spec": {"ports": [{"name": "http", "port": 8000}]}});
        let live = json!({"spec": {"ports": [{"name": "http", "port": 8000, "protocol": "TCP"}],
                                    "clusterIP": "10.0.0.1"}});
        assert!(is_subset(&desired, &live));
    }

    #[test]
    fn changed_scalars_and_list_lengths_are_drift() {
        let desired = json!({"args": ["--max-tokens", "256"]});
        assert!(!is_subset(
            &desired,
            &json!({"args": ["--max-tokens", "128"]})
        ));
        assert!(!is_subset(
            &desired,
            &json!({"args": ["--max-tokens", "256", "--x"]})
        ));
        assert!(!is_subset(&json!({"replicas": 2}), &json!({"replicas": 3})));
        assert!(is_subset(
            &json!({"replicas": 2}),
            &json!({"replicas": 2.0})
        ));
    }

    #[test]
    fn empty_desired_collections_match_missing_fields() {
        assert!(is_subset(&json!({"a": {}, "b": []}), &json!({})));
        assert!(!is_subset(&json!({"a": {"x": 1}}), &json!({})));
    }

    #[test]
    fn hash_changes_with_content_and_is_stable() {
        let a = json!({"metadata": {"name": "x"}, "spec": {"replicas": 1}});
        let b = json!({"metadata": {"name": "x"}, "spec": {"replicas": 2}});
        assert_eq!(desired_hash(&a), desired_hash(&a.clone()));
        assert_ne!(desired_hash(&a), desired_hash(&b));
        let hashed = with_hash(a.clone());
        assert_eq!(
            hashed["metadata"]["annotations"][HASH_ANNOTATION],
            Value::String(desired_hash(&a))
        );
    }

    #[test]
    fn a_removed_field_changes_the_hash_so_it_is_applied() {
        let old = with_hash(json!({"metadata": {}, "spec": {"nodeSelector": {"gpu": "a100"}}}));
        let new = with_hash(json!({"metadata": {}, "spec": {}}));
        // The live object still has the old field and old hash: the subset check alone would
        // pass, the hash does not.
        assert!(needs_apply(&new, Some(&old)));
        assert!(!needs_apply(&old, Some(&old)));
    }
}
