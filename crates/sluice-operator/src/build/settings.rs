//! The settings ConfigMap: the server's run-time settings (`max_tokens` cap, weight precision)
//! as the file every pod reads at start and re-reads while running (`--settings-file`). Moving a
//! knob rewrites this ConfigMap, never the pod template, so no knob restarts a pod; a pod created
//! later starts with the current values. Its annotations record the spec values the settings were
//! derived from, which [`crate::effective::derive`] needs to tell a user's change from a freeze.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sluice_contract::AppliedSettings;
use sluice_contract::admin::{RuntimeSettings, SETTINGS_FILE};

use super::child_meta;
use crate::effective::Recorded;
use crate::validate::Validated;

/// Where the ConfigMap is mounted in the server container (a directory: a file mounted by
/// `subPath` would never see an update).
pub const SETTINGS_MOUNT: &str = "/etc/sluice";
/// Annotation: `spec.serving.quantization` when the settings were written.
pub const SPEC_QUANTIZATION_ANNOTATION: &str = "sluice.dev/spec-quantization";
/// Annotation: `spec.serving.maxTokens.default` when the settings were written.
pub const SPEC_MAX_TOKENS_ANNOTATION: &str = "sluice.dev/spec-max-tokens";

/// The ConfigMap's name: the service's, with a suffix (a user's own ConfigMap named like the
/// service is left alone).
pub fn settings_name(v: &Validated) -> String {
    format!("{}-settings", v.name)
}

/// The server's path of the settings file.
pub fn settings_path() -> String {
    format!("{SETTINGS_MOUNT}/{SETTINGS_FILE}")
}

/// The run-time settings of `eff`.
pub fn runtime(eff: &AppliedSettings) -> RuntimeSettings {
    RuntimeSettings {
        max_tokens: eff.max_tokens as usize,
        quantization: eff.quantization,
    }
}

/// The ConfigMap. Pure.
pub fn build_settings(v: &Validated, eff: &AppliedSettings) -> ConfigMap {
    let mut meta = child_meta(v);
    meta.name = Some(settings_name(v));
    meta.annotations = Some(BTreeMap::from([
        (
            SPEC_QUANTIZATION_ANNOTATION.to_owned(),
            v.serving.quantization.to_string(),
        ),
        (
            SPEC_MAX_TOKENS_ANNOTATION.to_owned(),
            v.serving.max_tokens.default.to_string(),
        ),
    ]));
    let json = serde_json::to_string(&runtime(eff))
        // Two plain fields: serialising them cannot fail.
        .unwrap_or_default();
    ConfigMap {
        metadata: meta,
        data: Some(BTreeMap::from([(SETTINGS_FILE.to_owned(), json)])),
        ..ConfigMap::default()
    }
}

/// What a ConfigMap built by [`build_settings`] records; None when it is missing a part or a
/// part does not parse (the spec's starting point then applies).
pub fn recorded(cm: &ConfigMap) -> Option<Recorded> {
    let runtime = serde_json::from_str(cm.data.as_ref()?.get(SETTINGS_FILE)?).ok()?;
    let notes = cm.metadata.annotations.as_ref()?;
    Some(Recorded {
        runtime,
        spec_quantization: notes.get(SPEC_QUANTIZATION_ANNOTATION)?.parse().ok()?,
        spec_max_tokens: notes.get(SPEC_MAX_TOKENS_ANNOTATION)?.parse().ok()?,
    })
}
