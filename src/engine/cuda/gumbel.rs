//! gumbel_noise and gumbel_softmax on the CUDA engine: `kernels/gumbel.cu`, one launch each.
//!
//! - The simple kernel `gumbel_{f32,f16,bf16}` with a mode: the noise; softmax with one thread per
//!   sample row for K <= [`SHORT_K`]; softmax with one block per sample row above, which parks the
//!   perturbed logits in an f32 scratch buffer between its passes. [`KernelVariant::Simple`] runs
//!   it (the lesson's kernel), and so does everything the fast kernel does not cover.
//! - The fast kernel `gumbel_fast_{f32,f16,bf16}` ([`KernelVariant::Fast`], for gumbel_softmax with
//!   K > [`SHORT_K`]): one block per sample row, x read once, each output written once, the noise
//!   never stored. A hard sample without `return_soft` streams through any K; a soft sample keeps
//!   the row in registers, up to [`FAST_MAX_VALUES`] values.
//!
//! Both take the logarithm table of the noise ([`gm::ln_table_words`]) as a `uint2` buffer. f16 and
//! bf16 travel as 16-bit patterns, as in the logits and softmax kernels.
//!
//! [`CudaEngine::philox4x32`] and [`CudaEngine::gumbel_words`] run the kernel file's test entry
//! points (`philox_kat`, `gumbel_words`) for the known-answer and bit-identity tests.

use super::{CudaEngine, THREADS, failed, mib};
use crate::dtype::DType;
use crate::engine::{AuxOutput, EngineError, OpOutput, TimingSource};
use crate::ops::gumbel::{self as gm, GumbelOp};
use crate::ops::{KernelVariant, OpRequest};
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

/// Most threads in a block of the fast kernel (`FAST_THREADS`).
pub const FAST_THREADS: usize = 1024;

/// Groups of 4 values each thread of the fast kernel keeps in registers (`FAST_MAX_GROUPS`).
pub const FAST_MAX_GROUPS: usize = 8;

/// The longest row the fast kernel keeps in registers (a soft sample); longer rows with a soft
/// sample run the simple kernel. A hard sample alone streams and has no limit.
pub const FAST_MAX_VALUES: usize = FAST_THREADS * FAST_MAX_GROUPS * 4;

/// Most values the kernels index with 32-bit unsigned integers (ops::MAX_ELEMENTS is 2^29).
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

/// A grid-stride launch of `blocks` blocks of `threads` (at most the engine's block limit).
fn config(engine: &CudaEngine, blocks: usize, threads: u32) -> LaunchConfig {
    let blocks = u32::try_from(blocks).unwrap_or(u32::MAX);
    LaunchConfig {
        grid_dim: (blocks.clamp(1, engine.max_blocks()), 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Which kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    /// `gumbel_*` in one of its modes.
    Simple(i32),
    /// `gumbel_fast_*`.
    Fast,
}

/// The kernel for gumbel_softmax with K classes: the fast one when asked for and it covers the
/// row (K > SHORT_K; a soft sample only up to [`FAST_MAX_VALUES`]), else the simple one.
fn softmax_kernel(variant: KernelVariant, cols: usize, keeps_row: bool) -> Kernel {
    let fast =
        variant == KernelVariant::Fast && cols > SHORT_K && (!keeps_row || cols <= FAST_MAX_VALUES);
    if fast {
        Kernel::Fast
    } else if cols <= SHORT_K {
        Kernel::Simple(MODE_SOFTMAX_SHORT)
    } else {
        Kernel::Simple(MODE_SOFTMAX_ROWS)
    }
}

/// Threads per block of the fast kernel: one per Philox group of the row (a multiple of 32), at
/// most [`FAST_THREADS`]. A soft sample keeps up to FAST_MAX_GROUPS groups per thread, so K up to
/// [`FAST_MAX_VALUES`] always fits.
fn fast_threads(cols: usize) -> u32 {
    (cols.div_ceil(4).next_multiple_of(32)).clamp(32, FAST_THREADS) as u32
}

/// What one launch needs besides the tensors.
struct Launch {
    kernel: Kernel,
    rows: u32,
    cols: u32,
    draws: u32,
    key: [u32; 2],
    offset: [u32; 2],
    inv_tau: f32,
    hard: i32,
    /// Hard mode: also write the soft sample (`return_soft`).
    want_soft: i32,
    /// Output values.
    n: usize,
    cfg: LaunchConfig,
}

impl Launch {
    fn soft_len(&self) -> usize {
        if self.want_soft == 1 { self.n } else { 0 }
    }

    fn scratch_len(&self) -> usize {
        if self.kernel == Kernel::Simple(MODE_SOFTMAX_ROWS) {
            self.n
        } else {
            0
        }
    }
}

/// This engine's registration of the topic.
pub(crate) static TOPIC: super::CudaTopic = super::CudaTopic {
    topic: "gumbel",
    source: include_str!("../../../kernels/gumbel.cu"),
    entry_points: &[],
    has_fast_kernel,
    smoke: super::no_smoke,
    host: super::HostCode::Direct(run_request),
};

/// gumbel_softmax has the fast kernel (`gumbel_fast_*`); the noise has one.
fn has_fast_kernel(op: &crate::ops::Op) -> bool {
    matches!(op.get::<GumbelOp>(), Some(GumbelOp::GumbelSoftmax { .. }))
}

fn run_request(engine: &CudaEngine, req: &OpRequest) -> Result<OpOutput, EngineError> {
    execute(engine, req, crate::engine::topic_op::<GumbelOp>(req)?)
}

fn execute(
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
                kernel: Kernel::Simple(MODE_NOISE),
                rows: count(req.x.rows(), "rows")?,
                cols: count(cols, "columns")?,
                draws: 1,
                key,
                offset,
                inv_tau: 1.0,
                hard: 0,
                want_soft: 0,
                n,
                cfg: config(engine, calls.div_ceil(THREADS as usize), THREADS),
            }
        }
        GumbelOp::GumbelSoftmax {
            tau, hard, draws, ..
        } => {
            let samples = req.x.rows() * draws;
            count(samples, "samples")?;
            // Everything but a hard sample alone keeps the row (the soft values need the sum).
            let keeps_row = !hard || op.soft_aux();
            let kernel = softmax_kernel(req.kernel, cols, keeps_row);
            let cfg = match kernel {
                Kernel::Fast => config(engine, samples, fast_threads(cols)),
                Kernel::Simple(MODE_SOFTMAX_SHORT) => {
                    config(engine, samples.div_ceil(THREADS as usize), THREADS)
                }
                Kernel::Simple(_) => config(engine, samples, THREADS),
            };
            Launch {
                kernel,
                rows: count(req.x.rows(), "rows")?,
                cols: count(cols, "classes")?,
                draws: count(draws, "draws")?,
                key,
                offset,
                inv_tau: gm::inv_tau_f32(tau),
                hard: i32::from(hard),
                want_soft: i32::from(op.soft_aux()),
                n,
                cfg,
            }
        }
    };
    check_memory(
        engine,
        (req.x.len() + n + launch.soft_len()) * dtype.size_bytes() + 4 * launch.scratch_len(),
    )?;
    let suffix = match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::Bf16 => "bf16",
    };
    let name = match launch.kernel {
        Kernel::Fast => format!("gumbel_fast_{suffix}"),
        Kernel::Simple(_) => format!("gumbel_{suffix}"),
    };
    let func = engine.function("gumbel", &name)?;
    // The noise never reads x: one element stands in for it.
    let x_values: &[f32] = if launch.kernel == Kernel::Simple(MODE_NOISE) {
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
    if op.soft_aux() {
        out.aux.push(AuxOutput {
            name: gm::SOFT_AUX.into(),
            shape,
            values: soft,
        });
    }
    Ok(out)
}

/// The launch: (y, soft, kernel time) in the storage type; soft is empty unless asked for.
fn on_device<T>(
    engine: &CudaEngine,
    func: &CudaFunction,
    host_x: &[T],
    p: &Launch,
) -> Result<(Vec<T>, Vec<T>, Duration), EngineError>
where
    T: DeviceRepr + ValidAsZeroBits + Clone + Default + Unpin,
{
    let table = gm::ln_table_words();
    type State<T> = (
        CudaSlice<T>,
        CudaSlice<T>,
        CudaSlice<T>,
        CudaSlice<f32>,
        CudaSlice<u32>,
    );
    let ((y, soft), time) = engine.timed(
        |stream| -> Result<State<T>, EngineError> {
            Ok((
                stream.clone_htod(host_x).map_err(failed("upload x"))?,
                stream
                    .alloc_zeros::<T>(p.n.max(1))
                    .map_err(failed("allocate y"))?,
                stream
                    .alloc_zeros::<T>(p.soft_len().max(1))
                    .map_err(failed("allocate the soft sample"))?,
                stream
                    .alloc_zeros::<f32>(p.scratch_len().max(1))
                    .map_err(failed("allocate the scratch buffer"))?,
                stream
                    .clone_htod(&table)
                    .map_err(failed("upload the logarithm table"))?,
            ))
        },
        |stream, (x, y, soft, scratch, table)| {
            // The two kernels share their arguments but for the simple one's scratch (after
            // soft) and mode (last).
            let mut launch = stream.launch_builder(func);
            launch.arg(&*x).arg(y).arg(soft);
            if let Kernel::Simple(_) = p.kernel {
                launch.arg(scratch);
            }
            launch
                .arg(&*table)
                .arg(&p.rows)
                .arg(&p.cols)
                .arg(&p.draws)
                .arg(&p.key[0])
                .arg(&p.key[1])
                .arg(&p.offset[0])
                .arg(&p.offset[1])
                .arg(&p.inv_tau)
                .arg(&p.hard)
                .arg(&p.want_soft);
            if let Kernel::Simple(mode) = &p.kernel {
                launch.arg(mode);
            }
            // SAFETY: the arguments match `gumbel_*(const T* x, T* y, T* soft, float* scratch,
            // const uint2* ln_table, unsigned rows, unsigned cols, unsigned draws, unsigned k0,
            // unsigned k1, unsigned off0, unsigned off1, float inv_tau, int hard, int want_soft,
            // int mode)`, and `gumbel_fast_*` has the same list without scratch and mode. x holds
            // rows * cols elements (one, unread, for the noise), y rows * draws * cols (the noise:
            // rows * cols), soft as many when want_soft and scratch as many f32 in
            // MODE_SOFTMAX_ROWS (one, untouched, otherwise); the table holds 256 uint2 (512 words,
            // 256-byte aligned by cuMemAlloc); cols <= SHORT_K in MODE_SOFTMAX_SHORT. The fast
            // kernel's block has fast_threads(cols) <= FAST_THREADS threads, so a row that is kept
            // in registers (cols <= FAST_MAX_VALUES) has at most FAST_MAX_GROUPS groups per thread;
            // cols > 0.
            unsafe { launch.launch(p.cfg) }.map_err(failed("launch the gumbel kernel"))?;
            Ok(())
        },
        |stream, (_, y, soft, _, _)| {
            let y = stream.clone_dtoh(&y).map_err(failed("download y"))?;
            let soft = if p.want_soft == 1 {
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
        let cfg = config(self, words.len().div_ceil(THREADS as usize), THREADS);
        let table = gm::ln_table_words();
        type State = (CudaSlice<u32>, CudaSlice<f32>, CudaSlice<u32>);
        let (g, _) = self.timed(
            |stream| -> Result<State, EngineError> {
                Ok((
                    stream
                        .clone_htod(words)
                        .map_err(failed("upload the words"))?,
                    stream
                        .alloc_zeros::<f32>(words.len())
                        .map_err(failed("allocate the output"))?,
                    stream
                        .clone_htod(&table)
                        .map_err(failed("upload the logarithm table"))?,
                ))
            },
            |stream, (w, g, table)| {
                let mut launch = stream.launch_builder(&func);
                launch.arg(&*w).arg(g).arg(&*table).arg(&n);
                // SAFETY: `gumbel_words(const unsigned* words, float* g, const uint2* ln_table,
                // unsigned n)`: words and g hold n elements, the table 256 uint2.
                unsafe { launch.launch(cfg) }.map_err(failed("launch gumbel_words"))?;
                Ok(())
            },
            |stream, (_, g, _)| stream.clone_dtoh(&g).map_err(failed("download the noise")),
        )?;
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;


    #[test]
    fn constants_match_the_kernel_defines() {
        let src = TOPIC.source;
        for (name, value) in [
            ("MODE_NOISE", MODE_NOISE),
            ("MODE_SOFTMAX_SHORT", MODE_SOFTMAX_SHORT),
            ("MODE_SOFTMAX_ROWS", MODE_SOFTMAX_ROWS),
            ("SHORT_K", SHORT_K as i32),
            ("THREADS", THREADS as i32),
            ("FAST_THREADS", FAST_THREADS as i32),
            ("FAST_MAX_GROUPS", FAST_MAX_GROUPS as i32),
            ("LN_TABLE_LEN", gm::LN_TABLE_LEN as i32),
        ] {
            assert!(
                src.lines().any(|l| l.starts_with("#define")
                    && l.split_whitespace()
                        .eq(["#define", name, &value.to_string()])),
                "gumbel.cu: #define {name} {value}"
            );
        }
        let wgsl = crate::engine::wgpu::source("gumbel").unwrap();
        assert!(wgsl.contains(&format!("const SHORT_K: u32 = {SHORT_K}u;")));
    }

    /// The noise's constants in the kernel are the Rust ones (the table itself comes from the host).
    #[test]
    fn noise_constants_match_the_rust_ones() {
        let src = TOPIC.source;
        for (name, value) in [
            ("LN2_Q40", format!("{}ull", gm::LN2_Q40)),
            ("THIRD_Q16", format!("{}u", gm::THIRD_Q16)),
            ("FIVE_24THS_Q32", format!("{}u", gm::FIVE_24THS_Q32)),
            ("SERIES_BELOW", format!("{:#x}u", gm::SERIES_BELOW)),
        ] {
            assert!(
                src.lines().any(|l| {
                    let mut words = l.split_whitespace();
                    words.next() == Some("#define")
                        && words.next() == Some(name)
                        && words.next() == Some(value.as_str())
                }),
                "gumbel.cu: #define {name} {value}"
            );
        }
    }

    #[test]
    fn kernel_choice_and_block_size() {
        use KernelVariant::{Fast, Simple};
        assert_eq!(
            softmax_kernel(Fast, 64, true),
            Kernel::Simple(MODE_SOFTMAX_SHORT)
        );
        assert_eq!(softmax_kernel(Fast, 65, true), Kernel::Fast);
        assert_eq!(softmax_kernel(Fast, 32_000, true), Kernel::Fast);
        assert_eq!(softmax_kernel(Fast, FAST_MAX_VALUES, true), Kernel::Fast);
        assert_eq!(
            softmax_kernel(Fast, FAST_MAX_VALUES + 1, true),
            Kernel::Simple(MODE_SOFTMAX_ROWS)
        );
        // A hard sample alone streams: any K.
        assert_eq!(softmax_kernel(Fast, 200_000, false), Kernel::Fast);
        assert_eq!(
            softmax_kernel(Simple, 32_000, false),
            Kernel::Simple(MODE_SOFTMAX_ROWS)
        );
        assert_eq!(
            softmax_kernel(Simple, 5, false),
            Kernel::Simple(MODE_SOFTMAX_SHORT)
        );
        assert_eq!(fast_threads(65), 32);
        assert_eq!(fast_threads(1000), 256);
        assert_eq!(fast_threads(2049), 544);
        assert_eq!(fast_threads(32_000), 1024);
        // Every row the fast kernel keeps fits FAST_MAX_GROUPS groups per thread.
        for cols in [65, 129, 4097, 4100, 20_000, FAST_MAX_VALUES] {
            let threads = fast_threads(cols) as usize;
            assert!(threads.is_multiple_of(32) && threads <= FAST_THREADS);
            assert!(cols.div_ceil(4) <= FAST_MAX_GROUPS * threads, "{cols}");
        }
    }
}
