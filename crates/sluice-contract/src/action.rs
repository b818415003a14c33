//! The one change a plan may make, as the engine decides it and as the status stores it.

use serde::{Deserialize, Serialize};

use crate::quantization::Quantization;
use crate::settings::AppliedSettings;
use crate::slo::Knob;

/// What to do now: nothing, or exactly one knob change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Action {
    /// Change nothing.
    Hold,
    /// Set the Deployment's replicas.
    ScaleReplicas {
        /// Current.
        from: u32,
        /// New.
        to: u32,
    },
    /// Switch the service to another quantization.
    SetQuantization {
        /// Current.
        from: Quantization,
        /// New.
        to: Quantization,
    },
    /// Set the `max_tokens` cap of every pod.
    SetMaxTokens {
        /// Current.
        from: u32,
        /// New.
        to: u32,
    },
}

/// Every action kind, for pre-created metric labels.
pub const ACTION_LABELS: [&str; 4] = [
    "hold",
    "scale_replicas",
    "set_quantization",
    "set_max_tokens",
];

impl Action {
    /// The knob changed, if any.
    pub fn knob(&self) -> Option<Knob> {
        match self {
            Action::Hold => None,
            Action::ScaleReplicas { .. } => Some(Knob::Replicas),
            Action::SetQuantization { .. } => Some(Knob::Quantization),
            Action::SetMaxTokens { .. } => Some(Knob::MaxTokens),
        }
    }

    /// True for a change.
    pub fn is_change(&self) -> bool {
        !matches!(self, Action::Hold)
    }

    /// The change that undoes this one.
    pub fn inverse(&self) -> Action {
        match *self {
            Action::Hold => Action::Hold,
            Action::ScaleReplicas { from, to } => Action::ScaleReplicas { from: to, to: from },
            Action::SetQuantization { from, to } => Action::SetQuantization { from: to, to: from },
            Action::SetMaxTokens { from, to } => Action::SetMaxTokens { from: to, to: from },
        }
    }

    /// `settings` with this change applied.
    pub fn apply(&self, settings: &AppliedSettings) -> AppliedSettings {
        let mut s = *settings;
        match *self {
            Action::Hold => {}
            Action::ScaleReplicas { to, .. } => s.replicas = to,
            Action::SetQuantization { to, .. } => s.quantization = to,
            Action::SetMaxTokens { to, .. } => s.max_tokens = to,
        }
        s
    }

    /// True when `settings` already shows this change's new value.
    pub fn is_reflected_in(&self, settings: &AppliedSettings) -> bool {
        match *self {
            Action::Hold => true,
            Action::ScaleReplicas { to, .. } => settings.replicas == to,
            Action::SetQuantization { to, .. } => settings.quantization == to,
            Action::SetMaxTokens { to, .. } => settings.max_tokens == to,
        }
    }

    /// True for a scale-in: the one change that removes serving capacity.
    pub fn shrinks(&self) -> bool {
        matches!(*self, Action::ScaleReplicas { from, to } if to < from)
    }

    /// Short human form, e.g. `replicas 2 -> 4`.
    pub fn describe(&self) -> String {
        match self {
            Action::Hold => "hold".into(),
            Action::ScaleReplicas { from, to } => format!("replicas {from} -> {to}"),
            Action::SetQuantization { from, to } => format!("quantization {from} -> {to}"),
            Action::SetMaxTokens { from, to } => format!("maxTokens {from} -> {to}"),
        }
    }

    /// Metric label (one of [`ACTION_LABELS`]).
    pub fn label(&self) -> &'static str {
        match self {
            Action::Hold => ACTION_LABELS[0],
            Action::ScaleReplicas { .. } => ACTION_LABELS[1],
            Action::SetQuantization { .. } => ACTION_LABELS[2],
            Action::SetMaxTokens { .. } => ACTION_LABELS[3],
        }
    }

    /// Event reason.
    pub fn event_reason(&self) -> &'static str {
        match self {
            Action::Hold => "Hold",
            Action::ScaleReplicas { .. } => "ScaleReplicas",
            Action::SetQuantization { .. } => "SetQuantization",
            Action::SetMaxTokens { .. } => "SetMaxTokens",
        }
    }

    /// The stored form: the knob and its values before and after, as text (`2`, `f16`, `256`).
    pub fn to_stored(&self) -> Option<(Knob, String, String)> {
        let (from, to) = match self {
            Action::Hold => return None,
            Action::ScaleReplicas { from, to } | Action::SetMaxTokens { from, to } => {
                (from.to_string(), to.to_string())
            }
            Action::SetQuantization { from, to } => (from.to_string(), to.to_string()),
        };
        Some((self.knob()?, from, to))
    }

    /// Reads the stored form back. No knob is a hold; a knob whose values do not parse is an
    /// error, never silently a hold.
    pub fn from_stored(
        knob: Option<Knob>,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Action, StoredActionError> {
        let Some(knob) = knob else {
            return Ok(Action::Hold);
        };
        let (Some(from), Some(to)) = (from, to) else {
            return Err(StoredActionError {
                knob,
                value: format!("from={from:?} to={to:?}"),
            });
        };
        let bad = |v: &str| StoredActionError {
            knob,
            value: v.to_owned(),
        };
        let num = |v: &str| v.parse::<u32>().map_err(|_| bad(v));
        let quant = |v: &str| {
            v.parse::<Quantization>()
                .ok()
                .filter(|q| q.as_flag() == v)
                .ok_or_else(|| bad(v))
        };
        Ok(match knob {
            Knob::Replicas => Action::ScaleReplicas {
                from: num(from)?,
                to: num(to)?,
            },
            Knob::MaxTokens => Action::SetMaxTokens {
                from: num(from)?,
                to: num(to)?,
            },
            Knob::Quantization => Action::SetQuantization {
                from: quant(from)?,
                to: quant(to)?,
            },
        })
    }
}

/// A stored decision's knob values that do not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredActionError {
    pub knob: Knob,
    pub value: String,
}

impl std::fmt::Display for StoredActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "failed to read a stored {:?} decision: {:?} is not a valid value",
            self.knob, self.value
        )
    }
}

impl std::error::Error for StoredActionError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_their_stored_form() {
        let actions = [
            Action::ScaleReplicas { from: 1, to: 3 },
            Action::SetQuantization {
                from: Quantization::F16,
                to: Quantization::Q8_0,
            },
            Action::SetMaxTokens { from: 256, to: 128 },
        ];
        for a in actions {
            let (knob, from, to) = a.to_stored().unwrap();
            assert_eq!(
                Action::from_stored(Some(knob), Some(&from), Some(&to)).unwrap(),
                a
            );
        }
        assert_eq!(Action::Hold.to_stored(), None);
        assert_eq!(Action::from_stored(None, None, None).unwrap(), Action::Hold);
    }

    #[test]
    fn a_stored_action_that_does_not_parse_is_an_error_not_a_hold() {
        for (knob, from, to) in [
            (Knob::Replicas, Some("two"), Some("3")),
            (Knob::Quantization, Some("f16"), Some("q3")),
            (Knob::Quantization, Some("f16"), Some("int8")),
            (Knob::MaxTokens, Some("256"), None),
        ] {
            let err = Action::from_stored(Some(knob), from, to).unwrap_err();
            assert_eq!(err.knob, knob);
            assert!(err.to_string().starts_with("failed to read"), "{err}");
        }
    }
}
