//! gumbel_noise and gumbel_softmax on the CUDA engine: `kernels/gumbel.cu`, one launch each of
//! `gumbel_{f32,f16,bf16}` with a mode (noise; softmax with one thread per sample row for K <=
//! [`SHORT_K`]; softmax with one block per sample row above, which parks the perturbed logits in
//! an f32 scratch buffer between its passes). f16 and bf16 travel as 16-bit patterns, as in the
//! logits and softmax kernels.
//!
//! [`CudaEngine::philox4x32`] and [`CudaEngine::gumbel_words`] run the kernel file's test entry
//! points (`philox_kat`, `gumbel_words`) for the known-answer and bit-identity tests.

use super::{CudaEngine, THREADS, failed, mib};
use crate::dtype::DType;
use crate::engine::{AuxOutput, EngineError, OpOutput, TimingSource};
use crate::ops::OpRequest;
use crate::ops::gumbel::{self as gm, GumbelOp};
use cudarc::driver::{
    CudaFunction, CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use std::time::{Duration, Instant};

/// Modes of `gumbel_*` (the `MODE_*` defines in `kernels/gumbel.cu`).
pub const MODE_NOISE: i32 = 0;
pub const MODE_SOFTMAX_SHORT: i32 = 1;
pub const MODE_SOFTMAX_ROWS: i32 = 2;

/// Rows of at most this many classes run one thread per sample row (`SHORT_K` in the kernel).
pub const SHORT_K: usize = 64;

/// Most values the kernels index with 32-bit unsigned integers (ops::MAX_ELEMENTS is 2^28).
fn count(n: usize, what: &str) -> Result<u32, EngineError> {
    u32::try_from(n).map_err(|_| {
        EngineError::Unsupported(format!("{n} {what} do not fit the kernels' 32-bit indices"))
    })
}

/// Refuse (as `Unsupported`) what does not fit the device's free memory.
fn check_memory(engine: &CudaEngine, needed: usize) -> Result<(), EngineError> {
    let (free, total) = engine.memory()?;
    if needed > free {
        return Err(EngineError::Unsupported(format!(
            "this request needs {} of device memory, but only {} of {} is free",
            mib(needed),
            mib(free),
            mib(total)
        )));
    }
    Ok(())
}

/// A grid-stride launch of `blocks` blocks of [`THREADS`] (at most the engine's block limit).
fn config(engine: &CudaEngine, blocks: usize) -> LaunchConfig {
    let blocks = u32::try_from(blocks).unwrap_or(u32::MAX);
    LaunchConfig {
        grid_dim: (blocks.clamp(1, engine.max_blocks()), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// What one `gumbel_*` launch needs besides the tensors.
struct Launch {
    rows: u32,
    cols: u32,
    draws: u32,
    key: [u32; 2],
    offset: [u32; 2],
    inv_tau: f32,
    hard: i32,
    mode: i32,
    /// Output values (and soft values, when hard).
    n: usize,
    cfg: LaunchConfig,
}

pub(super) fn execute(
    engine: &CudaEngine,
    req: &OpRequest,
    op: &GumbelOp,
) -> Result<OpOutput, EngineError> {
    let started = Instant::now();
    let dtype = req.dtype;
    let shape = req.output_shape();
    let n: usize = shape.iter().product();
    let cols = req.x.cols();
    let key = gm::key_of(op.seed());
    let offset = [op.offset() as u32, (op.offset() >> 32) as u32];
    let launch = match *op {
        GumbelOp::GumbelNoise { .. } => {
            let calls = req.x.rows() * cols.div_ceil(4);
            Launch {
                rows: count(req.x.rows(), "rows")?,
                cols: count(cols, "columns")?,
                draws: 1,
                key,
                offset,
                inv_tau: 1.0,
                hard: 0,
                mode: MODE_NOISE,
                n,
                cfg: config(engine, calls.div_ceil(THREADS as usize)),
            }
        }
        GumbelOp::GumbelSoftmax {
            tau, hard, draws, ..
        } => {
            let samples = req.x.rows() * draws;
            count(samples, "samples")?;
            let short = cols <= SHORT_K;
            Launch {
                rows: count(req.x.rows(), "rows")?,
                cols: count(cols, "classes")?,
                draws: count(draws, "draws")?,
                key,
                offset,
                inv_tau: gm::inv_tau_f32(tau),
                hard: i32::from(hard),
                mode: if short {
                    MODE_SOFTMAX_SHORT
                } else {
                    MODE_SOFTMAX_ROWS
                },
                n,
                cfg: if short {
                    config(engine, samples.div_ceil(THREADS as usize))
                } else {
                    config(engine, samples)
                },
            }
        }
    };
    let soft_len = if launch.hard == 1 { n } else { 0 };
    let scratch_len = if launch.mode == MODE_SOFTMAX_ROWS {
        n
    } else {
        0
    };
    check_memory(
        engine,
        (req.x.len() + n + soft_len) * dtype.size_bytes() + 4 * scratch_len,
    )?;
    let suffix = match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::Bf16 => "bf16",
    };
    let func = engine.function("gumbel", &format!("gumbel_{suffix}"))?;
    // The noise never reads x: one element stands in for it.
    let x_values: &[f32] = if launch.mode == MODE_NOISE {
        &[0.0]
    } else {
        &req.x.data
    };
    let (y, soft, kernel_time) = match dtype {
        DType::F32 => on_device::<f32>(engine, &func, x_values, &launch)?,
        DType::F16 | DType::Bf16 => {
            let bits = dtype.encode_u16(x_values);
            let (y, soft, t) = on_device::<u16>(engine, &func, &bits, &launch)?;
            (dtype.decode_u16(&y), dtype.decode_u16(&soft), t)
        }
    };
    let mut out = OpOutput::new(
        shape.clone(),
        dtype,
        y,
        kernel_time,
        TimingSource::CudaEvents,
        started.elapsed(),
    );
    if op.hard() {
        out.aux.push(AuxOutput {
            name: gm::SOFT_AUX.into(),
            shape,
            values: soft,
        });
    }
    Ok(out)
}

/// The launch: (y, soft, kernel time) in the storage type; soft is empty unless hard.
fn on_device<T>(
    engine: &CudaEngine,
    func: &CudaFunction,
    host_x: &[T],
    p: &Launch,
) -> Result<(Vec<T>, Vec<T>, Duration), EngineError>
where
    T: DeviceRepr + ValidAsZeroBits + Clone + Default + Unpin,
{
    let hard = p.hard == 1;
    let rows_mode = p.mode == MODE_SOFTMAX_ROWS;
    type State<T> = (CudaSlice<T>, CudaSlice<T>, CudaSlice<T>, CudaSlice<f32>);
    let ((y, soft), time) = engine.timed(
        |stream| -> Result<State<T>, EngineError> {
            Ok((
                stream.clone_htod(host_x).map_err(failed("upload x"))?,
                stream
                    .alloc_zeros::<T>(p.n.max(1))
                    .map_err(failed("allocate y"))?,
                stream
                    .alloc_zeros::<T>(if hard { p.n.max(1) } else { 1 })
                    .map_err(failed("allocate the soft sample"))?,
                stream
                    .alloc_zeros::<f32>(if rows_mode { p.n.max(1) } else { 1 })
                    .map_err(failed("allocate the scratch buffer"))?,
            ))
        },
        |stream, (x, y, soft, scratch)| {
            let mut launch = stream.launch_builder(func);
            launch
                .arg(&*x)
                .arg(y)
                .arg(soft)
                .arg(scratch)
                .arg(&p.rows)
                .arg(&p.cols)
                .arg(&p.draws)
                .arg(&p.key[0])
                .arg(&p.key[1])
                .arg(&p.offset[0])
                .arg(&p.offset[1])
                .arg(&p.inv_tau)
                .arg(&p.hard)
                .arg(&p.mode);
            // SAFETY: the arguments match `gumbel_*(const T* x, T* y, T* soft, float* scratch,
            // unsigned rows, unsigned cols, unsigned draws, unsigned k0, unsigned k1, unsigned
            // off0, unsigned off1, float inv_tau, int hard, int mode)`; x holds rows * cols
            // elements (one, unread, for the noise), y rows * draws * cols (the noise: rows *
            // cols), soft as many when hard and scratch as many f32 in MODE_SOFTMAX_ROWS (one,
            // untouched, otherwise); cols <= SHORT_K in MODE_SOFTMAX_SHORT.
            unsafe { launch.launch(p.cfg) }.map_err(failed("launch the gumbel kernel"))?;
            Ok(())
        },
        |stream, (_, y, soft, _)| {
            let y = stream.clone_dtoh(&y).map_err(failed("download y"))?;
            let soft = if hard {
                stream
                    .clone_dtoh(&soft)
                    .map_err(failed("download the soft sample"))?
            } else {
                Vec::new()
            };
            Ok((y, soft))
        },
    )?;
    let mut y = y;
    y.truncate(p.n);
    Ok((y, soft, time))
}

impl CudaEngine {
    /// Philox4x32-10 on the device (`philox_kat` in `kernels/gumbel.cu`): one output block per
    /// (counter, key). For the known-answer tests.
    pub fn philox4x32(
        &self,
        blocks: &[([u32; 4], [u32; 2])],
    ) -> Result<Vec<[u32; 4]>, EngineError> {
        if blocks.is_empty() {
            return Ok(Vec::new());
        }
        let input: Vec<u32> = blocks
            .iter()
            .flat_map(|(c, k)| c.iter().chain(k.iter()).copied())
            .collect();
        let n = count(blocks.len(), "blocks")?;
        let func = self.function("gumbel", "philox_kat")?;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(THREADS), 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let (words, _) = self.timed(
            |stream| -> Result<(CudaSlice<u32>, CudaSlice<u32>), EngineError> {
                Ok((
                    stream
                        .clone_htod(&input)
                        .map_err(failed("upload the counters"))?,
                    stream
                        .alloc_zeros::<u32>(4 * blocks.len())
                        .map_err(failed("allocate the output"))?,
                ))
            },
            |stream, (input, out)| {
                let mut launch = stream.launch_builder(&func);
                launch.arg(&*input).arg(out).arg(&n);
                // SAFETY: `philox_kat(const unsigned* in, unsigned* out, unsigned n)`: in holds 6n
                // words, out 4n.
                unsafe { launch.launch(cfg) }.map_err(failed("launch philox_kat"))?;
                Ok(())
            },
            |stream, (_, out)| {
                stream
                    .clone_dtoh(&out)
                    .map_err(failed("download the output"))
            },
        )?;
        Ok(words
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect())
    }

    /// The kernel file's word -> Gumbel map (`gumbel_words`) for each word.
    pub fn gumbel_words(&self, words: &[u32]) -> Result<Vec<f32>, EngineError> {
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let n = count(words.len(), "words")?;
        let func = self.function("gumbel", "gumbel_words")?;
        let cfg = config(self, words.len().div_ceil(THREADS as usize));
        let (g, _) = self.timed(
            |stream| -> Result<(CudaSlice<u32>, CudaSlice<f32>), EngineError> {
                Ok((
                    stream
                        .clone_htod(words)
                        .map_err(failed("upload the words"))?,
                    stream
                        .alloc_zeros::<f32>(words.len())
                        .map_err(failed("allocate the output"))?,
                ))
            },
            |stream, (w, g)| {
                let mut launch = stream.launch_builder(&func);
                launch.arg(&*w).arg(g).arg(&n);
                // SAFETY: `gumbel_words(const unsigned* words, float* g, unsigned n)`: both hold
                // n elements.
                unsafe { launch.launch(cfg) }.map_err(failed("launch gumbel_words"))?;
                Ok(())
            },
            |stream, (_, g)| stream.clone_dtoh(&g).map_err(failed("download the noise")),
        )?;
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources;

    #[test]
    fn constants_match_the_kernel_defines() {
        let src = sources::cuda("gumbel").unwrap();
        for (name, value) in [
            ("MODE_NOISE", MODE_NOISE),
            ("MODE_SOFTMAX_SHORT", MODE_SOFTMAX_SHORT),
            ("MODE_SOFTMAX_ROWS", MODE_SOFTMAX_ROWS),
            ("SHORT_K", SHORT_K as i32),
            ("THREADS", THREADS as i32),
        ] {
            assert!(
                src.lines().any(|l| l.starts_with("#define")
                    && l.split_whitespace()
                        .eq(["#define", name, &value.to_string()])),
                "gumbel.cu: #define {name} {value}"
            );
        }
        let wgsl = sources::wgsl("gumbel").unwrap();
        assert!(wgsl.contains(&format!("const SHORT_K: u32 = {SHORT_K}u;")));
    }
}
