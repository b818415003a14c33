//! Weight quantization: the levels the operator's ladder moves between and the server's
//! `--quantization` flag, which also takes `auto`.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Weight quantization levels `sluice-server` understands, spelled as its `--quantization` flag.
#[derive(
    JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Default,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
pub enum Quantization {
    /// 32-bit floats.
    #[serde(rename = "f32")]
    #[strum(serialize = "f32")]
    F32,
    /// 16-bit floats.
    #[default]
    #[serde(rename = "f16")]
    #[strum(serialize = "f16")]
    F16,
    /// bfloat16.
    #[serde(rename = "bf16")]
    #[strum(serialize = "bf16")]
    Bf16,
    /// 8-bit blocks (GGML q8_0).
    #[serde(rename = "q8_0")]
    #[strum(serialize = "q8_0")]
    Q8_0,
    /// 4-bit blocks (GGML q4_0).
    #[serde(rename = "q4_0")]
    #[strum(serialize = "q4_0")]
    Q4_0,
    /// 4-bit k-quants (GGML q4k).
    #[serde(rename = "q4k")]
    #[strum(serialize = "q4k")]
    Q4K,
}

impl Quantization {
    /// Every level, highest precision first.
    pub const ALL: &'static [Quantization] = <Self as strum::VariantArray>::VARIANTS;

    /// The value of `sluice-server --quantization` (and the CRD's spelling).
    pub fn as_flag(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for Quantization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_flag())
    }
}

/// Parses a level by its flag spelling or a common alias (`fp16`, `int8`, `q4_k_m`, …).
impl FromStr for Quantization {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<QuantizationFlag>()? {
            QuantizationFlag::Level(q) => Ok(q),
            QuantizationFlag::Auto => Err(format!(
                "{s:?} is not a quantization level (expected one of: {})",
                names(
                    Quantization::ALL
                        .iter()
                        .copied()
                        .map(QuantizationFlag::Level)
                )
            )),
        }
    }
}

/// What `sluice-server --quantization` takes: a level, or `auto` — the checkpoint's own
/// precision for GGUF files, f32 on CPU and f16 on GPU for safetensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum QuantizationFlag {
    #[default]
    Auto,
    Level(Quantization),
}

impl QuantizationFlag {
    /// `auto`, then every level.
    pub fn all() -> impl Iterator<Item = QuantizationFlag> {
        std::iter::once(QuantizationFlag::Auto).chain(
            Quantization::ALL
                .iter()
                .copied()
                .map(QuantizationFlag::Level),
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            QuantizationFlag::Auto => "auto",
            QuantizationFlag::Level(q) => q.as_flag(),
        }
    }

    /// The level, unless `auto`.
    pub fn level(self) -> Option<Quantization> {
        match self {
            QuantizationFlag::Auto => None,
            QuantizationFlag::Level(q) => Some(q),
        }
    }
}

impl From<Quantization> for QuantizationFlag {
    fn from(q: Quantization) -> Self {
        QuantizationFlag::Level(q)
    }
}

impl fmt::Display for QuantizationFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn names(flags: impl Iterator<Item = QuantizationFlag>) -> String {
    flags
        .map(QuantizationFlag::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for QuantizationFlag {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use Quantization as Q;
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        let level = match norm.as_str() {
            "auto" | "none" | "" => return Ok(QuantizationFlag::Auto),
            "f32" | "fp32" => Q::F32,
            "f16" | "fp16" => Q::F16,
            "bf16" => Q::Bf16,
            "q8_0" | "q8" | "int8" | "8bit" => Q::Q8_0,
            "q4_0" | "q4" | "int4" | "4bit" => Q::Q4_0,
            "q4k" | "q4_k" | "q4_k_m" => Q::Q4K,
            _ => {
                return Err(format!(
                    "unknown quantization {s:?} (expected one of: {})",
                    names(QuantizationFlag::all())
                ));
            }
        };
        Ok(QuantizationFlag::Level(level))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_round_trips_through_its_flag_and_serde() {
        for &q in Quantization::ALL {
            assert_eq!(q.as_flag().parse::<Quantization>().unwrap(), q);
            let json = serde_json::to_string(&q).unwrap();
            assert_eq!(json, format!("\"{}\"", q.as_flag()));
            assert_eq!(serde_json::from_str::<Quantization>(&json).unwrap(), q);
        }
        let flags: Vec<_> = QuantizationFlag::all().map(|f| f.to_string()).collect();
        assert_eq!(flags, ["auto", "f32", "f16", "bf16", "q8_0", "q4_0", "q4k"]);
    }

    #[test]
    fn aliases_parse_and_unknown_names_list_the_choices() {
        assert_eq!("Q4_K_M".parse::<Quantization>().unwrap(), Quantization::Q4K);
        assert_eq!("int8".parse::<Quantization>().unwrap(), Quantization::Q8_0);
        assert_eq!(
            "auto".parse::<QuantizationFlag>().unwrap(),
            QuantizationFlag::Auto
        );
        let err = "q3".parse::<QuantizationFlag>().unwrap_err();
        assert!(
            err.contains("unknown quantization") && err.contains("q8_0"),
            "{err}"
        );
        let err = "auto".parse::<Quantization>().unwrap_err();
        assert!(err.contains("not a quantization level"), "{err}");
        // Serde is strict: aliases are for humans on the command line, not for stored specs.
        assert!(serde_json::from_str::<Quantization>("\"int8\"").is_err());
    }
}
