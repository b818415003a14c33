//! Weight precision choices: full precision dtypes and the ggml block quantizations the
//! operator's ladder moves between (f16 -> 8-bit -> 4-bit).

use std::fmt;
use std::str::FromStr;

use candle_core::DType;
use candle_core::quantized::GgmlDType;

/// The precision the linear layers are held in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantization {
    /// Full precision as the checkpoint stores it for GGUF; f32 on CPU and f16 on GPU for
    /// safetensors.
    Auto,
    F32,
    F16,
    Bf16,
    Q8_0,
    Q4_0,
    Q4K,
}

impl Quantization {
    pub const ALL: [Quantization; 7] = [
        Quantization::Auto,
        Quantization::F32,
        Quantization::F16,
        Quantization::Bf16,
        Quantization::Q8_0,
        Quantization::Q4_0,
        Quantization::Q4K,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::Auto => "auto",
            Quantization::F32 => "f32",
            Quantization::F16 => "f16",
            Quantization::Bf16 => "bf16",
            Quantization::Q8_0 => "q8_0",
            Quantization::Q4_0 => "q4_0",
            Quantization::Q4K => "q4k",
        }
    }

    /// The ggml block type for quantized choices; `None` for full precision.
    pub fn ggml(self) -> Option<GgmlDType> {
        match self {
            Quantization::Q8_0 => Some(GgmlDType::Q8_0),
            Quantization::Q4_0 => Some(GgmlDType::Q4_0),
            Quantization::Q4K => Some(GgmlDType::Q4K),
            _ => None,
        }
    }

    /// The dtype for full-precision choices; `None` for quantized ones and `Auto`.
    pub fn dtype(self) -> Option<DType> {
        match self {
            Quantization::F32 => Some(DType::F32),
            Quantization::F16 => Some(DType::F16),
            Quantization::Bf16 => Some(DType::BF16),
            _ => None,
        }
    }

    /// Names what a GGUF tensor type is, for reporting a file's stored precision.
    pub fn from_ggml(dtype: GgmlDType) -> String {
        match dtype {
            GgmlDType::F32 => "f32".into(),
            GgmlDType::F16 => "f16".into(),
            GgmlDType::BF16 => "bf16".into(),
            GgmlDType::Q8_0 => "q8_0".into(),
            GgmlDType::Q4_0 => "q4_0".into(),
            GgmlDType::Q4K => "q4k".into(),
            other => format!("{other:?}").to_lowercase(),
        }
    }
}

impl fmt::Display for Quantization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Quantization {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        let q = match norm.as_str() {
            "auto" | "none" | "" => Quantization::Auto,
            "f32" | "fp32" => Quantization::F32,
            "f16" | "fp16" => Quantization::F16,
            "bf16" => Quantization::Bf16,
            "q8_0" | "q8" | "int8" | "8bit" => Quantization::Q8_0,
            "q4_0" | "q4" | "int4" | "4bit" => Quantization::Q4_0,
            "q4k" | "q4_k" | "q4_k_m" => Quantization::Q4K,
            _ => {
                return Err(format!(
                    "unknown quantization {s:?} (expected one of: {})",
                    Quantization::ALL.map(|q| q.as_str()).join(", ")
                ));
            }
        };
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_canonical_names_and_aliases() {
        for q in Quantization::ALL {
            assert_eq!(q.as_str().parse::<Quantization>().unwrap(), q);
        }
        assert_eq!("Q4_K_M".parse::<Quantization>().unwrap(), Quantization::Q4K);
        assert_eq!("int8".parse::<Quantization>().unwrap(), Quantization::Q8_0);
        let err = "q3".parse::<Quantization>().unwrap_err();
        assert!(err.contains("q8_0"), "{err}");
    }
}
