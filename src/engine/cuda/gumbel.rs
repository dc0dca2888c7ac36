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
//! [`plan_philox`] and [`plan_gumbel_words`] plan the kernel file's test entry points
//! (`philox_kat`, `gumbel_words`) for the known-answer and bit-identity tests;
//! [`CudaEngine::philox4x32`] and [`CudaEngine::gumbel_words`] run those plans.

use super::plan::{Arg, Elem, HostData, Limits, Plan, Planned};
use super::{CudaEngine, CudaTopic, THREADS};
use crate::engine::{AuxOutput, EngineError, OpOutput, TimingSource, topic_op};
use crate::ops::gumbel::{self as gm, GumbelOp};
use crate::ops::{KernelVariant, Op, OpRequest};
use std::time::Duration;

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

/// This engine's registration of the topic.
pub(crate) static TOPIC: CudaTopic = CudaTopic {
    topic: "gumbel",
    source: include_str!("../../../kernels/gumbel.cu"),
    entry_points: &[],
    has_fast_kernel,
    smoke: super::no_smoke,
    host: plan,
};

/// gumbel_softmax has the fast kernel (`gumbel_fast_*`); the noise has one.
fn has_fast_kernel(op: &Op) -> bool {
    matches!(op.get::<GumbelOp>(), Some(GumbelOp::GumbelSoftmax { .. }))
}

/// Most values the kernels index with 32-bit unsigned integers (ops::MAX_ELEMENTS is 2^29).
fn count(n: usize, what: &str) -> Result<u32, EngineError> {
    u32::try_from(n).map_err(|_| {
        EngineError::Unsupported(format!("{n} {what} do not fit the kernels' 32-bit indices"))
    })
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

/// One launch of `gumbel_*` or `gumbel_fast_*`:
///
/// `gumbel_*(const T* x, T* y, T* soft, float* scratch, const uint2* ln_table, unsigned rows,
/// unsigned cols, unsigned draws, unsigned k0, unsigned k1, unsigned off0, unsigned off1,
/// float inv_tau, int hard, int want_soft, int mode)`, and `gumbel_fast_*` has the same list
/// without scratch and mode. x holds rows * cols elements (one, unread, for the noise), y rows *
/// draws * cols (the noise: rows * cols), soft as many when want_soft and scratch as many f32 in
/// MODE_SOFTMAX_ROWS (one, untouched, otherwise); the table holds 256 uint2 (512 words, 256-byte
/// aligned by cuMemAlloc); cols <= SHORT_K in MODE_SOFTMAX_SHORT. The fast kernel's block has
/// fast_threads(cols) <= FAST_THREADS threads, so a row that is kept in registers (cols <=
/// FAST_MAX_VALUES) has at most FAST_MAX_GROUPS groups per thread; cols > 0.
fn plan(req: &OpRequest, limits: &Limits) -> Result<Planned, EngineError> {
    let op = topic_op::<GumbelOp>(req)?;
    let dtype = req.dtype;
    let shape = req.output_shape();
    let n: usize = shape.iter().product();
    let cols = req.x.cols();
    let key = gm::key_of(op.seed());
    let offset = [op.offset() as u32, (op.offset() >> 32) as u32];
    // The kernel, draws, inv_tau, hard, want_soft, and the grid and block.
    let (kernel, draws, inv_tau, hard, want_soft, grid, block) = match *op {
        GumbelOp::GumbelNoise { .. } => {
            let calls = req.x.rows() * cols.div_ceil(4);
            count(req.x.rows(), "rows")?;
            count(cols, "columns")?;
            (
                Kernel::Simple(MODE_NOISE),
                1,
                1.0,
                0,
                0,
                limits.grid(calls.div_ceil(THREADS as usize)),
                THREADS,
            )
        }
        GumbelOp::GumbelSoftmax {
            tau, hard, draws, ..
        } => {
            let samples = req.x.rows() * draws;
            count(samples, "samples")?;
            // Everything but a hard sample alone keeps the row (the soft values need the sum).
            let keeps_row = !hard || op.soft_aux();
            let kernel = softmax_kernel(req.kernel, cols, keeps_row);
            let (grid, block) = match kernel {
                Kernel::Fast => (limits.grid(samples), fast_threads(cols)),
                Kernel::Simple(MODE_SOFTMAX_SHORT) => {
                    (limits.grid(samples.div_ceil(THREADS as usize)), THREADS)
                }
                Kernel::Simple(_) => (limits.grid(samples), THREADS),
            };
            count(req.x.rows(), "rows")?;
            count(cols, "classes")?;
            (
                kernel,
                count(draws, "draws")?,
                gm::inv_tau_f32(tau),
                i32::from(hard),
                i32::from(op.soft_aux()),
                grid,
                block,
            )
        }
    };
    let soft_len = if want_soft == 1 { n } else { 0 };
    let scratch_len = if kernel == Kernel::Simple(MODE_SOFTMAX_ROWS) {
        n
    } else {
        0
    };
    // The noise never reads x: one element stands in for it.
    let x_values: &[f32] = if kernel == Kernel::Simple(MODE_NOISE) {
        &[0.0]
    } else {
        &req.x.data
    };
    let mut p = Plan::new("gumbel");
    let x = p.upload("x", HostData::stored(dtype, x_values));
    let y = p.zeros("y", Elem::stored(dtype), n);
    let soft = p.zeros("the soft sample", Elem::stored(dtype), soft_len);
    let scratch = p.zeros("the scratch buffer", Elem::F32, scratch_len);
    let table = p.upload("the logarithm table", HostData::U32(gm::ln_table_words()));
    // The two kernels share their arguments but for the simple one's scratch (after soft) and
    // mode (last).
    let mut args = vec![Arg::In(x), Arg::Out(y), Arg::Out(soft)];
    if let Kernel::Simple(_) = kernel {
        args.push(Arg::Out(scratch));
    }
    args.extend([
        Arg::In(table),
        Arg::U32(req.x.rows() as u32),
        Arg::U32(cols as u32),
        Arg::U32(draws),
        Arg::U32(key[0]),
        Arg::U32(key[1]),
        Arg::U32(offset[0]),
        Arg::U32(offset[1]),
        Arg::F32(inv_tau),
        Arg::I32(hard),
        Arg::I32(want_soft),
    ]);
    let entry = match kernel {
        Kernel::Fast => format!("gumbel_fast_{}", dtype.name()),
        Kernel::Simple(mode) => {
            args.push(Arg::I32(mode));
            format!("gumbel_{}", dtype.name())
        }
    };
    p.launch(entry, grid, block, args);
    p.read(y);
    let soft_aux = op.soft_aux();
    if soft_aux {
        p.read(soft);
    }
    Ok(Planned {
        plan: p,
        decode: Box::new(move |d| {
            let mut out = OpOutput::new(
                shape.clone(),
                dtype,
                d.stored(y, dtype, n)?,
                Duration::ZERO,
                TimingSource::CudaEvents,
                Duration::ZERO,
            );
            if soft_aux {
                out.aux.push(AuxOutput {
                    name: gm::SOFT_AUX.into(),
                    shape,
                    values: d.stored(soft, dtype, n)?,
                });
            }
            Ok(out)
        }),
    })
}

/// Philox4x32-10 on the device: `philox_kat(const unsigned* in, unsigned* out, unsigned n)`, one
/// thread per (counter, key) block; in holds 6n words, out 4n. The result is one output block per
/// input block (none, and no launch, for none).
pub fn plan_philox(blocks: &[([u32; 4], [u32; 2])]) -> Result<Planned<Vec<[u32; 4]>>, EngineError> {
    let input: Vec<u32> = blocks
        .iter()
        .flat_map(|(c, k)| c.iter().chain(k.iter()).copied())
        .collect();
    let n = count(blocks.len(), "blocks")?;
    let mut p = Plan::new("gumbel");
    let i = p.upload("the counters", HostData::U32(input));
    let o = p.zeros("the output", Elem::U32, 4 * blocks.len());
    if n > 0 {
        p.launch(
            "philox_kat",
            n.div_ceil(THREADS),
            THREADS,
            vec![Arg::In(i), Arg::Out(o), Arg::U32(n)],
        );
    }
    p.read(o);
    Ok(Planned {
        plan: p,
        decode: Box::new(move |d| {
            Ok(d.u32(o)?
                .chunks_exact(4)
                .map(|c| [c[0], c[1], c[2], c[3]])
                .collect())
        }),
    })
}

/// The kernel file's word -> Gumbel map for each word: `gumbel_words(const unsigned* words, float*
/// g, const uint2* ln_table, unsigned n)`, a grid-stride loop; words and g hold n elements, the
/// table 256 uint2 (no launch for no words).
pub fn plan_gumbel_words(words: &[u32], limits: &Limits) -> Result<Planned<Vec<f32>>, EngineError> {
    let n = count(words.len(), "words")?;
    let mut p = Plan::new("gumbel");
    let w = p.upload("the words", HostData::U32(words.to_vec()));
    let g = p.zeros("the noise", Elem::F32, words.len());
    let table = p.upload("the logarithm table", HostData::U32(gm::ln_table_words()));
    if n > 0 {
        p.launch(
            "gumbel_words",
            limits.grid(words.len().div_ceil(THREADS as usize)),
            THREADS,
            vec![Arg::In(w), Arg::Out(g), Arg::In(table), Arg::U32(n)],
        );
    }
    p.read(g);
    let len = words.len();
    Ok(Planned {
        plan: p,
        decode: Box::new(move |d| d.f32(g, len)),
    })
}

impl CudaEngine {
    /// Philox4x32-10 on the device ([`plan_philox`]): one output block per (counter, key). For
    /// the known-answer tests.
    pub fn philox4x32(
        &self,
        blocks: &[([u32; 4], [u32; 2])],
    ) -> Result<Vec<[u32; 4]>, EngineError> {
        if blocks.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.run_planned(plan_philox(blocks)?)?.0)
    }

    /// The kernel file's word -> Gumbel map ([`plan_gumbel_words`]) for each word.
    pub fn gumbel_words(&self, words: &[u32]) -> Result<Vec<f32>, EngineError> {
        if words.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .run_planned(plan_gumbel_words(words, &self.limits())?)?
            .0)
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
