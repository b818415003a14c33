//! A linear layer whose weight is either a full-precision tensor or a ggml-quantized block
//! tensor. Activations stay f32 at the boundary so the rest of the model is precision-agnostic.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Result, Tensor};

use super::qmm::{BlockMatrix, Isa, KMatrix};
use super::quant::{Quantization, QuantizationExt};

/// `y = x · Wᵀ (+ b)` on a stacked batch of rows.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    bytes: usize,
}

#[derive(Debug, Clone)]
enum Weight {
    Full(Tensor),
    Quantized(QMatMul),
    /// q4_0 / q8_0 on an x86 CPU with AVX2: our weight-stationary integer kernel, so a batch
    /// reads each weight block once per tile of rows rather than once per row.
    Block(std::sync::Arc<BlockMatrix>),
    /// Q4_K / Q5_K / Q6_K likewise (the K-quant member of the same kernel family).
    KBlock(std::sync::Arc<KMatrix>),
}

impl Linear {
    /// Holds `w` (shape `[out, in]`) at the requested precision, quantizing in-process when asked.
    ///
    /// Tensors whose input width is not a multiple of the block size cannot be block-quantized;
    /// they fall back to the next coarser block type that fits, then to f32, as llama.cpp does.
    pub fn from_tensor(w: Tensor, bias: Option<Tensor>, quant: Quantization) -> Result<Self> {
        let bias = bias.map(|b| b.to_dtype(DType::F32)).transpose()?;
        match quant.ggml() {
            Some(kind) => {
                let in_features = w.dim(1)?;
                let kind = fitting_block_type(kind, in_features);
                match kind {
                    Some(kind) => {
                        let q = QTensor::quantize(&w.to_dtype(DType::F32)?, kind)?;
                        Self::from_qtensor(q, bias)
                    }
                    None => Self::full(w.to_dtype(DType::F32)?, bias),
                }
            }
            None => {
                let dtype = quant.dtype().unwrap_or(DType::F32);
                Self::full(w.to_dtype(dtype)?, bias)
            }
        }
    }

    /// Wraps a tensor read from a GGUF file as stored.
    pub fn from_qtensor(q: QTensor, bias: Option<Tensor>) -> Result<Self> {
        let mut bytes = q.storage_size_in_bytes();
        let weight = match q.dtype() {
            // Full-precision GGUF tensors run through the dense path like safetensors ones.
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                Weight::Full(q.dequantize(&q.device())?.to_dtype(match q.dtype() {
                    GgmlDType::F16 => DType::F16,
                    GgmlDType::BF16 => DType::BF16,
                    _ => DType::F32,
                })?)
            }
            // Without AVX2 (e.g. aarch64) only the portable reference would run, far slower than
            // candle's own kernels there, so those keep candle.
            GgmlDType::Q4_0 | GgmlDType::Q8_0
                if q.device().is_cpu() && Isa::detect() != Isa::Scalar =>
            {
                let m = BlockMatrix::from_qtensor(&q)?;
                // Scales are widened to f32, so this is a little more than the ggml size.
                bytes = m.bytes();
                Weight::Block(std::sync::Arc::new(m))
            }
            GgmlDType::Q4K | GgmlDType::Q5K | GgmlDType::Q6K
                if q.device().is_cpu() && Isa::detect() != Isa::Scalar =>
            {
                let m = KMatrix::from_qtensor(&q)?;
                // f32 super-block scales and byte sub-block scales: a little over ggml's size.
                bytes = m.bytes();
                Weight::KBlock(std::sync::Arc::new(m))
            }
            _ => Weight::Quantized(QMatMul::from_qtensor(q)?),
        };
        let bias_bytes = bias.as_ref().map_or(0, tensor_bytes);
        Ok(Self {
            weight,
            bias,
            bytes: bytes + bias_bytes,
        })
    }

    fn full(w: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let bytes = tensor_bytes(&w) + bias.as_ref().map_or(0, tensor_bytes);
        Ok(Self {
            weight: Weight::Full(w),
            bias,
            bytes,
        })
    }

    /// Bytes the weight (and bias) occupy in memory.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// `x`: `[rows, in]` f32 → `[rows, out]` f32.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            Weight::Full(w) if w.dtype() == DType::F32 => x.matmul(&w.t()?)?,
            Weight::Full(w) => x
                .to_dtype(w.dtype())?
                .matmul(&w.t()?)?
                .to_dtype(DType::F32)?,
            Weight::Quantized(q) => q.forward(x)?,
            Weight::Block(q) => q.forward(x)?,
            Weight::KBlock(q) => q.forward(x)?,
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// The requested block type if `in_features` fits its block, else a coarser one that does.
fn fitting_block_type(kind: GgmlDType, in_features: usize) -> Option<GgmlDType> {
    let candidates: &[GgmlDType] = match kind {
        GgmlDType::Q4K => &[GgmlDType::Q4K, GgmlDType::Q4_0, GgmlDType::Q8_0],
        GgmlDType::Q4_0 => &[GgmlDType::Q4_0, GgmlDType::Q8_0],
        other => std::slice::from_ref(match other {
            GgmlDType::Q8_0 => &GgmlDType::Q8_0,
            _ => return None,
        }),
    };
    candidates
        .iter()
        .copied()
        .find(|k| in_features.is_multiple_of(k.block_size()))
}

pub fn tensor_bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn weights(out: usize, inp: usize) -> Tensor {
        let data: Vec<f32> = (0..out * inp)
            .map(|i| ((i * 37 % 101) as f32 / 101.0) - 0.5)
            .collect();
        Tensor::from_vec(data, (out, inp), &Device::Cpu).unwrap()
    }

    #[test]
    fn every_precision_approximates_the_f32_product() {
        let w = weights(64, 256);
        let x = weights(3, 256);
        let exact = Linear::from_tensor(w.clone(), None, Quantization::F32)
            .unwrap()
            .forward(&x)
            .unwrap();
        for q in [
            Quantization::F16,
            Quantization::Bf16,
            Quantization::Q8_0,
            Quantization::Q4_0,
            Quantization::Q4K,
        ] {
            let lin = Linear::from_tensor(w.clone(), None, q).unwrap();
            let y = lin.forward(&x).unwrap();
            assert_eq!(y.dims(), &[3, 64]);
            let err = (y - &exact).unwrap().abs().unwrap().max_all().unwrap();
            let err = err.to_scalar::<f32>().unwrap();
            assert!(err < 1.0, "{q}: max abs error {err}");
            assert!(lin.bytes() < 64 * 256 * 4, "{q} should be smaller than f32");
        }
    }

    #[test]
    fn unfit_widths_fall_back_to_a_coarser_block() {
        assert_eq!(
            fitting_block_type(GgmlDType::Q4K, 64),
            Some(GgmlDType::Q4_0)
        );
        assert_eq!(fitting_block_type(GgmlDType::Q4_0, 48), None);
        assert_eq!(
            fitting_block_type(GgmlDType::Q8_0, 512),
            Some(GgmlDType::Q8_0)
        );
    }
}
