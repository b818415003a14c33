//! `spec.tracing`, checked: whether the pods export spans, where to, how many and trusting
//! which CA. The build stage resolves [`Endpoint::Inherit`] against the operator's default.

use sluice_api::TracingSpec;

/// Where the pods send spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Not declared: the operator's `--pod-otlp-endpoint`, or no export without one.
    Inherit,
    /// Declared empty: no export, whatever the operator's default.
    Off,
    /// An `http://` or `https://` OTLP/HTTP endpoint.
    Url(String),
}

/// A ConfigMap key in the service's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapKey {
    pub name: String,
    pub key: String,
}

/// The pods' trace export.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    pub endpoint: Endpoint,
    /// In `0..=1`; None traces every request.
    pub sampling_ratio: Option<f64>,
    /// PEM CA bundle trusted for an `https://` endpoint.
    pub ca: Option<ConfigMapKey>,
}

impl Default for Tracing {
    fn default() -> Self {
        Self {
            endpoint: Endpoint::Inherit,
            sampling_ratio: None,
            ca: None,
        }
    }
}

/// Checks `spec.tracing`; the error is `(field, reason)` for the caller's `InvalidField`.
pub fn check(spec: Option<&TracingSpec>) -> Result<Tracing, (&'static str, String)> {
    let Some(spec) = spec else {
        return Ok(Tracing::default());
    };
    let endpoint = match spec.otlp_endpoint.as_deref().map(str::trim) {
        None => Endpoint::Inherit,
        Some("") => Endpoint::Off,
        Some(url) => {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            match rest {
                Some(r) if !r.is_empty() && !r.chars().any(|c| c.is_whitespace() || c == ',') => {
                    Endpoint::Url(url.trim_end_matches('/').to_string())
                }
                _ => {
                    return Err((
                        "spec.tracing.otlpEndpoint",
                        format!("{url:?} is not an http:// or https:// URL"),
                    ));
                }
            }
        }
    };
    if let Some(r) = spec.sampling_ratio
        && !(0.0..=1.0).contains(&r)
    {
        return Err((
            "spec.tracing.samplingRatio",
            format!("{r} is not between 0 and 1"),
        ));
    }
    let ca = match &spec.ca_config_map_ref {
        None => None,
        Some(r) if r.name.is_empty() || r.key.is_empty() => {
            return Err((
                "spec.tracing.caConfigMapRef",
                "needs both a name and a key".into(),
            ));
        }
        Some(r) => Some(ConfigMapKey {
            name: r.name.clone(),
            key: r.key.clone(),
        }),
    };
    Ok(Tracing {
        endpoint,
        sampling_ratio: spec.sampling_ratio,
        ca,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_api::ConfigMapKeyRef;

    fn spec(endpoint: Option<&str>, ratio: Option<f64>) -> TracingSpec {
        TracingSpec {
            otlp_endpoint: endpoint.map(str::to_string),
            sampling_ratio: ratio,
            ca_config_map_ref: None,
        }
    }

    #[test]
    fn unset_inherits_the_operator_default() {
        assert_eq!(check(None).unwrap(), Tracing::default());
        assert_eq!(
            check(Some(&spec(None, Some(0.5)))).unwrap().endpoint,
            Endpoint::Inherit
        );
    }

    #[test]
    fn empty_turns_export_off() {
        assert_eq!(
            check(Some(&spec(Some(""), None))).unwrap().endpoint,
            Endpoint::Off
        );
    }

    #[test]
    fn a_url_is_kept_without_its_trailing_slash() {
        let t = check(Some(&spec(Some("https://otel.tracing:4318/"), Some(0.1)))).unwrap();
        assert_eq!(
            t.endpoint,
            Endpoint::Url("https://otel.tracing:4318".into())
        );
        assert_eq!(t.sampling_ratio, Some(0.1));
    }

    #[test]
    fn bad_values_name_their_field() {
        for (s, field) in [
            (spec(Some("otel:4318"), None), "spec.tracing.otlpEndpoint"),
            (spec(Some("http://"), None), "spec.tracing.otlpEndpoint"),
            (spec(Some("http://a b"), None), "spec.tracing.otlpEndpoint"),
            (spec(None, Some(1.5)), "spec.tracing.samplingRatio"),
            (spec(None, Some(f64::NAN)), "spec.tracing.samplingRatio"),
        ] {
            assert_eq!(check(Some(&s)).unwrap_err().0, field, "{s:?}");
        }
        let mut s = spec(None, None);
        s.ca_config_map_ref = Some(ConfigMapKeyRef {
            name: "ca".into(),
            key: String::new(),
        });
        assert_eq!(
            check(Some(&s)).unwrap_err().0,
            "spec.tracing.caConfigMapRef"
        );
    }
}
