//! A weight-stationary, integer matrix multiply for q4_0 and q8_0 weights on CPU batches.
//!
//! Stock candle multiplies a q4_0 matrix one activation row at a time, so a decode step over 16
//! sequences reads every weight 16 times and a batch gains almost nothing. Here:
//!
//! - at load, the weights are repacked so that 8 output columns sit side by side: one 256-bit
//!   register holds four consecutive weights of each of 8 columns, and each i32 lane of the
//!   accumulator is one column's dot product;
//! - activations are quantized to 8 bits per 32-wide block (as ggml does), four of them broadcast
//!   to every lane, and multiplied with exact integer instructions (AVX2 `maddubs`, AVX-512 VNNI
//!   `dpbusd`);
//! - a tile of rows streams past each weight register while it is loaded, so the weights are read
//!   once per tile of rows, and the float work (convert, scale, accumulate) is done once per block
//!   for 8 columns at a time.
//!
//! Every row is computed in the same order whatever the batch size and tiling (see
//! [`kernel`]), so a sequence's logits do not depend on its batch-mates.

mod act;
mod kernel;
pub mod kquant;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result, Tensor};
use half::f16;

pub use kernel::Isa;
pub use kquant::{KFormat, KMatrix};

/// Elements per quantization block (ggml's `QK4_0` = `QK8_0`).
pub const QK: usize = 32;
/// Output columns packed side by side: one i32 lane each in a 256-bit register.
pub const COLS: usize = 8;
/// Column tiles per parallel work item; large enough to amortise scheduling.
const TILES_PER_TASK: usize = 8;

/// How a block's 32 weights are stored. Both are kept as *unsigned* values `w + offset`, the
/// form the u8×i8 instructions want; the offset is cancelled exactly by a per-activation-block
/// starting value (see [`act::Acts::init`]).
///
/// Packed layout, per tile of [`COLS`] columns and per block: groups of four consecutive
/// weights, each group stored for all columns side by side (`[group][column][4]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ggml q4_0, `w + 8` in `0..=15`, two per byte: byte `[p][c][j]` holds element `4p + j` in
    /// its low nibble and element `16 + 4p + j` in its high nibble (4 × 32 bytes per block).
    Q4_0,
    /// ggml q8_0, `w + 128` in `0..=255`: byte `[g][c][j]` is element `4g + j` (8 × 32 bytes).
    Q8_0,
}

impl Format {
    /// Packed bytes of one block for one tile of [`COLS`] columns.
    pub fn tile_block_bytes(self) -> usize {
        match self {
            Format::Q4_0 => QK / 2 * COLS,
            Format::Q8_0 => QK * COLS,
        }
    }

    /// The bias each stored weight carries.
    fn offset(self) -> i32 {
        match self {
            Format::Q4_0 => 8,
            Format::Q8_0 => 128,
        }
    }

    /// Column `c`'s element `e` (unsigned, with the offset) from one packed tile block.
    fn element(self, tile_block: &[u8], c: usize, e: usize) -> u8 {
        match self {
            Format::Q4_0 => {
                let (p, high) = ((e % 16) / 4, e >= 16);
                let byte = tile_block[(p * COLS + c) * 4 + e % 4];
                if high { byte >> 4 } else { byte & 0x0F }
            }
            Format::Q8_0 => tile_block[((e / 4) * COLS + c) * 4 + e % 4],
        }
    }

    fn ggml(self) -> GgmlDType {
        match self {
            Format::Q4_0 => GgmlDType::Q4_0,
            Format::Q8_0 => GgmlDType::Q8_0,
        }
    }
}

/// A `[n, k]` q4_0 or q8_0 weight matrix, repacked into tiles of [`COLS`] columns.
#[derive(Debug, Clone)]
pub struct BlockMatrix {
    format: Format,
    n: usize,
    k: usize,
    /// `[tile][block][column]` f32 scales; padding columns have scale 0.
    scales: Vec<f32>,
    /// `[tile][block][format.tile_block_bytes()]`.
    data: Vec<u8>,
}

impl BlockMatrix {
    /// Repacks the blocks of a q4_0 or q8_0 `QTensor` (no requantization: same values).
    pub fn from_qtensor(q: &QTensor) -> Result<Self> {
        let format = match q.dtype() {
            GgmlDType::Q4_0 => Format::Q4_0,
            GgmlDType::Q8_0 => Format::Q8_0,
            other => candle_core::bail!("expected a q4_0 or q8_0 tensor, got {other:?}"),
        };
        let (n, k) = q.shape().dims2()?;
        if k % QK != 0 {
            candle_core::bail!("{format:?} rows must be a multiple of {QK} wide, got {k}");
        }
        let raw = q.data()?;
        let kb = k / QK;
        // ggml blocks: an f16 scale, then 16 (q4_0) or 32 (q8_0) bytes of weights.
        let ggml_block = 2 + format.tile_block_bytes() / COLS;
        if raw.len() != n * kb * ggml_block {
            candle_core::bail!(
                "{format:?} tensor holds {} bytes, expected {}",
                raw.len(),
                n * kb * ggml_block
            );
        }
        let tiles = n.div_ceil(COLS);
        let tbb = format.tile_block_bytes();
        let mut scales = vec![0f32; tiles * kb * COLS];
        // Padding columns hold the value 0 (the offset itself).
        let pad = match format {
            Format::Q4_0 => 0x88,
            Format::Q8_0 => 0x80,
        };
        let mut data = vec![pad; tiles * kb * tbb];
        for col in 0..n {
            let (t, c) = (col / COLS, col % COLS);
            for b in 0..kb {
                let src = &raw[(col * kb + b) * ggml_block..(col * kb + b + 1) * ggml_block];
                let tb = t * kb + b;
                scales[tb * COLS + c] = f16::from_le_bytes([src[0], src[1]]).to_f32();
                let dst = &mut data[tb * tbb..(tb + 1) * tbb];
                for (e, &v) in src[2..].iter().enumerate() {
                    let (g, j) = (e / 4, e % 4);
                    // q4_0 bytes already pair element e with e + 16, which is the packed
                    // layout's pairing; q8_0 bytes flip their sign bit to add 128.
                    dst[(g * COLS + c) * 4 + j] = match format {
                        Format::Q4_0 => v,
                        Format::Q8_0 => v ^ 0x80,
                    };
                }
            }
        }
        Ok(Self {
            format,
            n,
            k,
            scales,
            data,
        })
    }

    /// Quantizes a full-precision `[n, k]` matrix with ggml's rounding.
    pub fn quantize(w: &Tensor, format: Format) -> Result<Self> {
        Self::from_qtensor(&QTensor::quantize(
            &w.to_dtype(candle_core::DType::F32)?,
            format.ggml(),
        )?)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Bytes held in memory.
    pub fn bytes(&self) -> usize {
        self.scales.len() * std::mem::size_of::<f32>() + self.data.len()
    }

    /// `x`: `[m, k]` → `[m, n]` f32, on the best instruction set this CPU has.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_on(x, Isa::detect())
    }

    /// [`Self::forward`] on a chosen instruction set (for tests and benchmarks); one the CPU
    /// lacks falls back to the next it has.
    pub fn forward_on(&self, x: &Tensor, isa: Isa) -> Result<Tensor> {
        let (m, x) = input_rows(x, self.k, self.format)?;
        let acts = act::Acts::quantize(&x, m, self.k, self.format.offset());
        let weights = kernel::Weights {
            format: self.format,
            tiles: self.n.div_ceil(COLS),
            kb: self.k / QK,
            scales: &self.scales,
            data: &self.data,
        };
        run_tiles(m, self.n, |tile0, count, out| {
            // SAFETY: `run_tiles` hands each tile range to one task only.
            #[allow(unsafe_code)]
            unsafe {
                kernel::tiles(isa, &weights, &acts, tile0, count, out)
            }
        })
    }
}

/// `x` (`[m, k]`, any float dtype) as `m` and its row-major f32 values; a width other than the
/// weights' `k` is an error naming `format`.
fn input_rows(x: &Tensor, k: usize, format: impl std::fmt::Debug) -> Result<(usize, Vec<f32>)> {
    let (m, width) = x.dims2()?;
    if width != k {
        candle_core::bail!(
            "{format:?} matmul: input width {width} does not match weight width {k}"
        );
    }
    let values = x
        .to_dtype(candle_core::DType::F32)?
        .contiguous()?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok((m, values))
}

/// Computes an `[m, n]` output whose columns come in tiles of [`COLS`]: `tiles(tile0, count,
/// out)` fills tiles `tile0..tile0 + count`, called once per disjoint range, in parallel.
///
/// The tasks run on candle's own worker pool: the rest of the model runs there too, and a
/// second pool would fight its spinning workers for the same cores.
fn run_tiles(
    m: usize,
    n: usize,
    tiles: impl Fn(usize, usize, &kernel::Out<'_>) + Sync,
) -> Result<Tensor> {
    let total = n.div_ceil(COLS);
    let mut out = vec![0f32; m * n];
    let shared = kernel::Out::new(&mut out, m, n);
    candle_core::utils::barrier_pool().execute_chunked(total.div_ceil(TILES_PER_TASK), |range| {
        for task in range {
            let tile0 = task * TILES_PER_TASK;
            tiles(tile0, TILES_PER_TASK.min(total - tile0), &shared);
        }
    });
    Tensor::from_vec(out, (m, n), &Device::Cpu)
}

#[cfg(test)]
mod tests;
