//! Weight precision choices: full precision dtypes and the ggml block quantizations the
//! operator's ladder moves between (f16 -> 8-bit -> 4-bit). The levels and the `--quantization`
//! flag are the contract crate's; this module maps them to candle's types.

use candle_core::DType;
use candle_core::quantized::GgmlDType;

pub use sluice_contract::{Quantization, QuantizationFlag};

/// What candle needs to know about a level.
pub trait QuantizationExt {
    /// The ggml block type for quantized levels; `None` for full precision.
    fn ggml(self) -> Option<GgmlDType>;
    /// The dtype for full-precision levels; `None` for quantized ones.
    fn dtype(self) -> Option<DType>;
}

impl QuantizationExt for Quantization {
    fn ggml(self) -> Option<GgmlDType> {
        match self {
            Quantization::Q8_0 => Some(GgmlDType::Q8_0),
            Quantization::Q4_0 => Some(GgmlDType::Q4_0),
            Quantization::Q4K => Some(GgmlDType::Q4K),
            Quantization::F32 | Quantization::F16 | Quantization::Bf16 => None,
        }
    }

    fn dtype(self) -> Option<DType> {
        match self {
            Quantization::F32 => Some(DType::F32),
            Quantization::F16 => Some(DType::F16),
            Quantization::Bf16 => Some(DType::BF16),
            Quantization::Q8_0 | Quantization::Q4_0 | Quantization::Q4K => None,
        }
    }
}

/// Names what a GGUF tensor type is, for reporting a file's stored precision.
pub fn ggml_name(dtype: GgmlDType) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_maps_to_exactly_one_candle_type() {
        for &q in Quantization::ALL {
            assert!(q.ggml().is_some() != q.dtype().is_some(), "{q}");
            if let Some(g) = q.ggml() {
                assert_eq!(ggml_name(g), q.as_flag());
            }
        }
    }
}
