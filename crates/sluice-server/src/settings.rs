//! Run-time settings changed without a restart: the `max_tokens` cap and the weight precision
//! ([`RuntimeSettings`]), asked for by `PUT /admin/settings` or by the settings file
//! (`--settings-file`), which the operator keeps in a ConfigMap mounted into every pod.
//!
//! A new cap applies at once. A new precision is a hot swap of the same model: the new weights
//! load on a blocking thread while the old ones serve, then [`Engine::requantize`] installs them
//! once the running batch drains; queued requests wait for it instead of failing, so a switch
//! fails no request. A switch that would not fit the memory budget with both sets of weights
//! resident is refused, and the reason is reported in [`SettingsReport::pending`].
//!
//! The file is polled, not watched: a ConfigMap volume changes by swapping a symlink, which
//! inotify-based watchers miss or see twice; reading a small file every second costs nothing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_contract::Quantization;
use sluice_contract::admin::{Limits, RuntimeSettings, SettingsReport};

use crate::engine::{Engine, EngineModel};
use crate::model::LoadSpec;

/// How often the settings file is read.
pub const FILE_POLL: Duration = Duration::from_secs(1);

/// Reads a settings file: a clear error for a missing, unreadable or malformed one.
pub fn read_file(path: &Path) -> Result<RuntimeSettings, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("failed to read settings file {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("failed to parse settings file {}: {e}", path.display()))
}

fn parse(text: &str) -> Result<RuntimeSettings, String> {
    let s: RuntimeSettings = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if s.max_tokens == 0 {
        return Err("maxTokens must be at least 1".into());
    }
    Ok(s)
}

/// Approximate bits per weight of a precision, to size a switch's peak memory before loading.
fn bits_per_weight(q: Quantization) -> f64 {
    match q {
        Quantization::F32 => 32.0,
        Quantization::F16 | Quantization::Bf16 => 16.0,
        // GGML blocks: 32 weights in 34 bytes (q8_0), 32 in 18 (q4_0), 256 in 144 (q4k).
        Quantization::Q8_0 => 8.5,
        Quantization::Q4_0 | Quantization::Q4K => 4.5,
    }
}

/// Weight bytes of the model at `to`, from its size at `from`.
pub fn estimate_weight_bytes(bytes: usize, from: Quantization, to: Quantization) -> usize {
    (bytes as f64 * bits_per_weight(to) / bits_per_weight(from)).ceil() as usize
}

struct State {
    wanted: RuntimeSettings,
    /// The precision of the weights serving now.
    running: Quantization,
    /// Why `wanted.quantization` is not serving yet.
    pending: Option<String>,
    /// A switch task is running (it re-reads `wanted` when done).
    switching: bool,
}

/// The server's run-time settings and the precision switch in progress.
pub struct SettingsControl {
    engine: Engine,
    /// What a switch reloads: the model now served, at another precision.
    load: Mutex<LoadSpec>,
    /// Shared with `/model/load`, so two loads never run at once.
    loading: Arc<tokio::sync::Mutex<()>>,
    state: Mutex<State>,
}

impl SettingsControl {
    /// A control for a server running `load` at precision `running` with cap `max_tokens`.
    pub fn new(
        engine: Engine,
        load: LoadSpec,
        running: Quantization,
        max_tokens: usize,
        loading: Arc<tokio::sync::Mutex<()>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            engine,
            load: Mutex::new(load),
            loading,
            state: Mutex::new(State {
                wanted: RuntimeSettings {
                    max_tokens,
                    quantization: running,
                },
                running,
                pending: None,
                switching: false,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a switch task panicked mid-update of plain values.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the server stands.
    pub fn report(&self) -> SettingsReport {
        let st = self.state();
        SettingsReport {
            wanted: st.wanted,
            running: RuntimeSettings {
                max_tokens: self.engine.shared().limits.max_tokens(),
                quantization: st.running,
            },
            pending: st.pending.clone(),
        }
    }

    /// Records that `/model/load` replaced the model: later switches reload `load`, and the
    /// running precision is `running` (None: not one a switch can name, so the next wish for
    /// any precision reloads).
    pub fn model_replaced(&self, load: LoadSpec, running: Option<Quantization>) {
        *self.load.lock().unwrap_or_else(|p| p.into_inner()) = load;
        let mut st = self.state();
        match running {
            Some(q) => st.running = q,
            // A precision no wish equals: the next switch reloads whatever is asked for.
            None => st.pending = Some("the loaded model's precision has no name".into()),
        }
    }

    /// Asks for `wanted`: the cap at once, a precision switch in the background.
    pub fn apply(self: &Arc<Self>, wanted: RuntimeSettings) -> Result<SettingsReport, String> {
        if wanted.max_tokens == 0 {
            return Err("maxTokens must be at least 1".into());
        }
        let shared = self.engine.shared();
        shared
            .limits
            .apply(Limits::max_tokens(wanted.max_tokens), &shared.metrics)?;
        let start = {
            let mut st = self.state();
            st.wanted = wanted;
            if wanted.quantization == st.running {
                st.pending = None;
                false
            } else if st.switching {
                false
            } else {
                st.switching = true;
                st.pending = Some(format!("loading {} weights", wanted.quantization));
                true
            }
        };
        if start {
            let this = self.clone();
            tokio::spawn(async move { this.switch().await });
        }
        Ok(self.report())
    }

    /// Switches precision until the running one is the wanted one (the wish may change while a
    /// load is under way) or a switch is refused.
    async fn switch(self: Arc<Self>) {
        let _guard = self.loading.clone().lock_owned().await;
        loop {
            let (to, from) = {
                let st = self.state();
                (st.wanted.quantization, st.running)
            };
            if to == from {
                let mut st = self.state();
                st.pending = None;
                st.switching = false;
                return;
            }
            match self.switch_once(from, to).await {
                Ok(()) => {
                    tracing::info!(%from, %to, "weight precision switched at run time");
                    self.state().running = to;
                }
                Err(why) => {
                    tracing::warn!(%from, %to, "{why}");
                    let mut st = self.state();
                    st.pending = Some(why);
                    st.switching = false;
                    return;
                }
            }
        }
    }

    async fn switch_once(&self, from: Quantization, to: Quantization) -> Result<(), String> {
        let shared = self.engine.shared();
        let Some(view) = self.engine.model() else {
            return Err(format!(
                "refused to switch to {to}: no model is loaded to switch"
            ));
        };
        let old = view.info.weight_bytes;
        let new = estimate_weight_bytes(old, from, to);
        let budget = shared.memory_budget_bytes as usize;
        if old.saturating_add(new) > budget {
            return Err(format!(
                "refused to switch {from} -> {to}: the old weights ({} MB) and the new ones \
                 (about {} MB) must both be resident during the switch, and the memory budget is \
                 {} MB",
                old >> 20,
                new >> 20,
                budget >> 20
            ));
        }
        let mut spec = self.load.lock().unwrap_or_else(|p| p.into_inner()).clone();
        spec.quantization = to.into();
        let loaded = tokio::task::spawn_blocking(move || crate::model::load(&spec))
            .await
            .map_err(|e| format!("failed to switch to {to}: the load task failed: {e}"))?
            .map_err(|e| format!("failed to switch to {to}: {e}"))?;
        self.engine.requantize(EngineModel::serve(loaded));
        // Reported as running once the engine has installed it: new requests are validated
        // against the new epoch as soon as it is published, which `requantize` does at once.
        Ok(())
    }
}

/// Applies the settings file whenever its content changes, until the process ends. A file that
/// goes missing or fails to parse leaves the running settings alone and is reported once per
/// distinct content.
pub async fn watch_file(control: Arc<SettingsControl>, path: PathBuf, every: Duration) {
    let mut last: Option<Result<String, String>> = None;
    loop {
        tokio::time::sleep(every).await;
        let now = std::fs::read_to_string(&path).map_err(|e| e.to_string());
        if last.as_ref() == Some(&now) {
            continue;
        }
        match &now {
            Ok(text) => match parse(text).and_then(|s| control.apply(s)) {
                Ok(report) => tracing::info!(?report, "settings file applied"),
                Err(e) => tracing::warn!(
                    file = %path.display(),
                    "failed to apply the settings file: {e}; the running settings stay"
                ),
            },
            Err(e) => tracing::warn!(
                file = %path.display(),
                "failed to read the settings file: {e}; the running settings stay"
            ),
        }
        last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_format_is_the_contract_type() {
        assert_eq!(
            parse(r#"{"maxTokens": 256, "quantization": "q8_0"}"#),
            Ok(RuntimeSettings {
                max_tokens: 256,
                quantization: Quantization::Q8_0
            })
        );
        for bad in [
            r#"{"maxTokens": 0, "quantization": "q8_0"}"#,
            r#"{"maxTokens": 256, "quantization": "q3"}"#,
            r#"{"maxTokens": 256}"#,
            r#"{"maxTokens": 256, "quantization": "f16", "extra": 1}"#,
            "not json",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_switch_is_sized_by_bits_per_weight() {
        assert_eq!(
            estimate_weight_bytes(1600, Quantization::F16, Quantization::Q8_0),
            850
        );
        assert_eq!(
            estimate_weight_bytes(850, Quantization::Q8_0, Quantization::Q4_0),
            450
        );
        assert_eq!(
            estimate_weight_bytes(450, Quantization::Q4K, Quantization::F32),
            3200
        );
    }
}
