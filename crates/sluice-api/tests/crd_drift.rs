//! The committed CRD YAML (`crds/` and the Helm chart's copy) must equal what the Rust types
//! generate. Regenerate with `SLUICE_UPDATE_CRDS=1 cargo test -p sluice-api --test crd_drift`
//! (or `sluice-operator crd > crds/inferenceservices.sluice.dev.yaml`).

use std::path::PathBuf;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check(relative_dir: &str) {
    let path = repo_root()
        .join(relative_dir)
        .join(sluice_api::CRD_FILE_NAME);
    let generated = sluice_api::crd_yaml().unwrap();
    if std::env::var_os("SLUICE_UPDATE_CRDS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    assert!(
        committed == generated,
        "{} drifted from the Rust types; regenerate with \
         `SLUICE_UPDATE_CRDS=1 cargo test -p sluice-api --test crd_drift`",
        path.display()
    );
}

#[test]
fn crds_dir_matches_types() {
    check("crds");
}

#[test]
fn chart_crds_match_types() {
    check("charts/sluice/crds");
}
