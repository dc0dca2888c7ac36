//! Tensor parallelism (Megatron-LM, Shoeybi et al. 2019): `linear` and its column- and row-parallel
//! splits, the vocab-parallel embedding and the vocab-parallel cross-entropy, run by k virtual ranks
//! on one device. This file holds the ops' parameters and input checks, the f64 reference, and the
//! **rank program** every engine executes.
//!
//! # Ranks, shards and collectives
//! A request is turned into a [`Program`] by [`program`]: plain data, no device code. It lists
//! buffers, each owned by a rank (or by nobody, for the finished outputs), and steps, each either
//! local compute on one rank's buffers ([`Step::Linear`], [`Step::EmbedMasked`], the cross-entropy
//! steps) or a [`Step::Collective`] over all ranks' buffers: an all-reduce (sum or max) or an
//! all-gather. Engines only execute programs: the CPU engine on `Vec<f32>`s, wgpu as one compute
//! dispatch (or a few) per step, CUDA as kernel launches where each rank's compute runs on its own
//! stream and the streams are joined with events before every collective. The lesson's views read
//! the same program to show which rank owns what and the bytes each collective moves.
//!
//! A rank never reads another rank's buffers except inside a collective. The inputs are placed on
//! the ranks the way Megatron-Core's `tensor_parallel/mappings.py` and `layers.py` have them:
//! weights are created already sharded (rank r holds its slice), activations that every rank needs
//! are replicated (`copy_to_tensor_model_parallel_region`: identity forward), and splitting an
//! activation along its last axis (`scatter_to_tensor_model_parallel_region`) is local slicing with
//! no communication. So the host hands each rank its slices when the program starts; only the
//! collectives move data between ranks.
//!
//! On one device a collective is a few explicit kernels: an all-reduce copies rank 0's buffer into
//! its output, adds (or takes the max of) ranks 1..k-1 into it **in rank order**, then copies the
//! result into every other rank's output (reduce, then broadcast). An all-gather copies every
//! rank's shard into every rank's full buffer. Real systems move the bytes over links; [`Traffic`]
//! counts what a ring algorithm (NCCL's default for large messages) and a naive one (every rank
//! sends its whole buffer to every other rank) would send, for the lesson's readouts.
//!
//! A multi-GPU backend would slot in at the same seam: give rank r device r and its own CUDA stream,
//! allocate rank r's buffers there, run the compute steps as the CUDA engine does, and execute
//! `Step::Collective` with NCCL (cudarc's `nccl` feature: `Comm::from_devices` gives one
//! communicator per device's stream; `Comm::all_reduce(send, recv, op)` and
//! `Comm::all_gather(send, recv)`) instead of the kernels; `program`, the views and the lesson do
//! not change. Two differences to expect: NCCL's all-gather stacks the shards along the first axis,
//! so a gather along the last axis needs a local rearrangement afterwards (Megatron's
//! `_gather_along_last_dim` does the same with `torch.cat`); and NCCL's ring sums each chunk in a
//! different rank order, so its all-reduce is not bitwise equal to the one here.
//!
//! # The algorithms (every engine does exactly this, in f32)
//! x [n, in], w [out, in] (as `torch.nn.Linear` stores it), b [out] optional; k ranks.
//! - **linear**: y[i,o] = (Σ_j x[i,j] w[o,j]) + b[o], the sum accumulated in f32 in order
//!   j = 0, 1, ..., in-1 (the tiled GEMM walks 16-wide tiles of j in order, each tile in order).
//! - **column_parallel_linear**: rank r holds rows [r·out/k, (r+1)·out/k) of w and b and a copy of
//!   x, and computes its output columns Y_r = x w_rᵀ + b_r with the same GEMM. `gather` all-gathers
//!   the Y_r; without it each rank keeps its shard (what a following row-parallel layer wants) and
//!   the host assembles the output from the shards. Every output element is the same dot product in
//!   the same order as in `linear`: the column split is bitwise equal to the unsplit layer here.
//! - **row_parallel_linear**: rank r holds columns [r·in/k, (r+1)·in/k) of w and of x, computes the
//!   partial sum P_r = x_r w_rᵀ ([n, out], no bias), an all-reduce SUM adds the partials in rank
//!   order, and the bias is added once, after it. The sum over j is now split into k pieces added
//!   in a different order than in `linear`, so the result differs in the last bits.
//! - **vocab_parallel_embedding**: ids [any shape], table [V, h]. Rank r owns rows
//!   [r·V/k, (r+1)·V/k); for an id it owns it copies the row, for the others it writes a row of
//!   -0.0, then an all-reduce SUM. -0.0 is IEEE addition's exact identity (-0 + x = x for every x,
//!   +0 and -0 included; +0 + -0 would give +0), so the result is bit-identical to a plain lookup.
//!   Megatron masks with +0.0 and also returns a zero row for an id outside [0, V); kernelbook
//!   refuses such ids with an error.
//! - **vocab_parallel_cross_entropy**: logits x [n, V], targets [n]. Rank r owns columns
//!   [r·V/k, (r+1)·V/k). (1) local max m_r (NaN ignored, as CUDA's fmaxf does), all-reduce MAX ->
//!   m; (2) predicted p_r = x[i, t_i] - m on the rank that owns t_i, 0 elsewhere, all-reduce SUM;
//!   (3) s_r = Σ_own e^(x - m), all-reduce SUM; (4) loss = ln(s) - p. Megatron-Core's
//!   `cross_entropy.py` does the same three all-reduces of [n] values. The local sums use the GPU
//!   reduction order everywhere: 256 lanes, lane l adding columns l, l+256, ... in order, then a
//!   tree 128, 64, ..., 1 ([`lane_tree_sum`]).
//!
//! Storage: inputs and outputs in the request's dtype (f32, f16 or bf16); every intermediate buffer
//! (partial sums, collective buffers) is f32; every output, the auxiliary ones included, is rounded
//! once to the dtype at the end ([`Step::Finish`]). Auxiliary outputs show the stages: row-parallel
//! `partials` [k, n, out], the embedding's `masked` [k, n, h], the cross-entropy's `local_max`,
//! `local_sum_exp` [k, n] and the all-reduced `max`, `predicted`, `sum_exp` [n]; every split op also
//! returns `unsplit`, the same engine's k = 1 result, so split and unsplit can be compared bit for
//! bit on one engine.
//!
//! # Seeding (Megatron-Core `tensor_parallel/random.py`, `layers.py`)
//! [`init_cpu_then_split`] draws the full weight from one generator seeded with `seed` and slices
//! it (Megatron's `use_cpu_initialization`); [`init_per_rank`] lets rank r draw its own shard from
//! a generator seeded with `seed + 2718 + r` (the tensor-model-parallel seed). Only the first gives
//! the same model for every k.

use super::case::{Draw, BenchSpec, Case, Expect, Input};
use super::tolerance::Tolerance;
use super::{
    AuxReference, DTYPE_PARAM, InputDecl, MAX_ELEMENTS, Op, OpDef, OpError, OpKind, OpRequest,
    ParamKind, ParamSpec, ParamValues, Reference, Tensor, Topic, TopicOp,
};
use crate::dtype::DType;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;
use std::borrow::Cow;
use std::ops::Range;

mod cases;
mod collective;
mod program;
mod reference;
mod seeding;
#[cfg(test)]
mod tests;

pub use cases::{boundary_ids, megatron_ce_fixture, suite_cases};
pub use collective::*;
pub use program::*;
pub use reference::{linear_error_scale, reference};
pub use seeding::*;

// ------------------------------------------------------------------------------------------------
// Ops and parameters.
// ------------------------------------------------------------------------------------------------

/// The rank counts the ops accept.
pub const RANK_CHOICES: [usize; 4] = [1, 2, 4, 8];

/// Default rank count for the split ops.
pub const DEFAULT_RANKS: usize = 2;

/// Lanes of the GPU row reductions (threads per block / invocations per workgroup).
pub const LANES: usize = 256;

/// Megatron-Core's seed offset for the tensor-model-parallel generator: seed + 2718 + rank.
pub const RANK_SEED_OFFSET: u64 = 2718;

/// Megatron's default standard deviation for weight init (`init_method_std`).
pub const INIT_STD: f32 = 0.02;

/// Bytes per element in every collective buffer (they are f32 here).
pub const COLLECTIVE_ELEM_BYTES: u64 = 4;

/// The tensor-parallel ops and their parameters.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TpOp {
    Linear,
    ColumnParallelLinear { ranks: usize, gather: bool },
    RowParallelLinear { ranks: usize },
    VocabParallelEmbedding { ranks: usize },
    VocabParallelCrossEntropy { ranks: usize },
}

impl TpOp {
    /// The rank count (1 for `linear`).
    pub fn ranks(&self) -> usize {
        match *self {
            TpOp::Linear => 1,
            TpOp::ColumnParallelLinear { ranks, .. }
            | TpOp::RowParallelLinear { ranks }
            | TpOp::VocabParallelEmbedding { ranks }
            | TpOp::VocabParallelCrossEntropy { ranks } => ranks,
        }
    }

    /// The same op on one rank: what the `unsplit` auxiliary output runs. `None` for `linear`.
    pub fn unsplit(&self) -> Option<TpOp> {
        match *self {
            TpOp::Linear => None,
            TpOp::ColumnParallelLinear { gather, .. } => {
                Some(TpOp::ColumnParallelLinear { ranks: 1, gather })
            }
            TpOp::RowParallelLinear { .. } => Some(TpOp::RowParallelLinear { ranks: 1 }),
            TpOp::VocabParallelEmbedding { .. } => Some(TpOp::VocabParallelEmbedding { ranks: 1 }),
            TpOp::VocabParallelCrossEntropy { .. } => {
                Some(TpOp::VocabParallelCrossEntropy { ranks: 1 })
            }
        }
    }

    /// This op with another rank count (`linear` stays `linear`).
    pub fn with_ranks(&self, k: usize) -> TpOp {
        match *self {
            TpOp::Linear => TpOp::Linear,
            TpOp::ColumnParallelLinear { gather, .. } => {
                TpOp::ColumnParallelLinear { ranks: k, gather }
            }
            TpOp::RowParallelLinear { .. } => TpOp::RowParallelLinear { ranks: k },
            TpOp::VocabParallelEmbedding { .. } => TpOp::VocabParallelEmbedding { ranks: k },
            TpOp::VocabParallelCrossEntropy { .. } => TpOp::VocabParallelCrossEntropy { ranks: k },
        }
    }
}

const RANKS: ParamSpec = ParamSpec {
    name: "ranks",
    kind: ParamKind::Choice {
        choices: &["1", "2", "4", "8"],
        default: "2",
    },
    help: "tensor-parallel size k: virtual ranks on this one device, each with its own shard buffers",
};

const GATHER: ParamSpec = ParamSpec {
    name: "gather",
    kind: ParamKind::Bool { default: true },
    help: "all-gather the ranks' output columns (true), or leave each rank its shard, as when a \
           row-parallel layer follows (false: no collective; the output is assembled on the host)",
};

const LINEAR_INPUTS: &[InputDecl] = &[
    InputDecl {
        name: "x",
        int: false,
        optional: false,
        generated: false,
        help: "activations [n, in] (leading axes allowed: [.., in])",
    },
    InputDecl {
        name: "w",
        int: false,
        optional: false,
        generated: false,
        help: "weight [out, in], as torch.nn.Linear stores it",
    },
    InputDecl {
        name: "b",
        int: false,
        optional: true,
        generated: false,
        help: "bias [out]; absent: no bias",
    },
];

const EMBEDDING_INPUTS: &[InputDecl] = &[
    InputDecl {
        name: "ids",
        int: true,
        optional: false,
        generated: false,
        help: "token ids, any shape (usually [n]); each in [0, V)",
    },
    InputDecl {
        name: "table",
        int: false,
        optional: false,
        generated: false,
        help: "embedding table [V, h]; V divisible by ranks",
    },
];

const CE_INPUTS: &[InputDecl] = &[
    InputDecl {
        name: "x",
        int: false,
        optional: false,
        generated: false,
        help: "logits [n, V] (leading axes allowed); V divisible by ranks",
    },
    InputDecl {
        name: "targets",
        int: true,
        optional: false,
        generated: true,
        help: "target ids, one per row of logits; each in [0, V) (made up on generated inputs: spread over the vocabulary)",
    },
];

const fn def(
    name: &'static str,
    summary: &'static str,
    inputs: &'static [InputDecl],
    params: &'static [ParamSpec],
) -> OpDef {
    OpDef {
        name,
        topic: "tensor_parallel",
        summary,
        inputs,
        params,
        draw: Draw::LOGITS,
    }
}

pub const LINEAR: OpKind = OpKind::new(&def(
    "linear",
    "y = x wᵀ + b with a tiled GEMM (16x16 tiles); x [.., in], w [out, in], b [out] optional; output [.., out]",
    LINEAR_INPUTS,
    &[DTYPE_PARAM],
));

pub const COLUMN_PARALLEL_LINEAR: OpKind = OpKind::new(&def(
    "column_parallel_linear",
    "w split by output rows over k ranks, yᵣ = x·wᵣᵀ + bᵣ on each rank, then all-gather (param gather); output [.., out]; aux unsplit",
    LINEAR_INPUTS,
    &[RANKS, GATHER, DTYPE_PARAM],
));

pub const ROW_PARALLEL_LINEAR: OpKind = OpKind::new(&def(
    "row_parallel_linear",
    "w split by input columns and x split to match, partial sums all-reduced, bias added once; output [.., out]; aux partials [k, n, out], unsplit",
    LINEAR_INPUTS,
    &[RANKS, DTYPE_PARAM],
));

pub const VOCAB_PARALLEL_EMBEDDING: OpKind = OpKind::new(&def(
    "vocab_parallel_embedding",
    "table [V, h] split by rows; each rank copies the rows of the ids it owns, zeros the rest, all-reduce; output ids.shape + [h]; aux masked [k, n, h], unsplit",
    EMBEDDING_INPUTS,
    &[RANKS, DTYPE_PARAM],
));

pub const VOCAB_PARALLEL_CROSS_ENTROPY: OpKind = OpKind::new(&def(
    "vocab_parallel_cross_entropy",
    "loss = ln(Σ e^x) - x[target] with the vocabulary split over k ranks: all-reduce max, predicted logit, sum-exp; output [n]; aux local_max, local_sum_exp [k, n], max, predicted, sum_exp, unsplit [n]",
    CE_INPUTS,
    &[RANKS, DTYPE_PARAM],
));

/// The topic, as listed in [`super::TOPICS`].
pub static TOPIC: TensorParallelTopic = TensorParallelTopic;

/// The topic's registration: its five ops, their parsing, check cases and bench cases.
pub struct TensorParallelTopic;

impl Topic for TensorParallelTopic {
    fn name(&self) -> &'static str {
        "tensor_parallel"
    }

    fn ops(&self) -> &'static [OpKind] {
        &[
            LINEAR,
            COLUMN_PARALLEL_LINEAR,
            ROW_PARALLEL_LINEAR,
            VOCAB_PARALLEL_EMBEDDING,
            VOCAB_PARALLEL_CROSS_ENTROPY,
        ]
    }

    fn parse(&self, kind: OpKind, values: &ParamValues) -> Result<Op, OpError> {
        parse(kind, values).map(Op::new)
    }

    fn cases(&self, large: bool) -> Vec<Case> {
        suite_cases(large)
    }

    /// The cross-entropy on one rank at GPT-2's padded vocabulary, [8192, 50304] on a hardware GPU
    /// and [64, 50304] elsewhere, both kernels (the fused one-read kernel is the fast one).
    fn bench(&self, _size: (usize, usize), gpu: bool) -> Vec<BenchSpec> {
        let (n, v) = if gpu { (8192, 50304) } else { (64, 50304) };
        BenchSpec::parsed(
            "vocab_parallel_cross_entropy",
            &[("ranks", "1")],
            vec![n, v],
            true,
            7,
        )
        .into_iter()
        .collect()
    }
}

/// Build the op from checked parameter values.
pub fn parse(kind: OpKind, values: &ParamValues) -> Result<TpOp, OpError> {
    let ranks = match values.get_choice("ranks") {
        Some(s) => s.parse::<usize>().map_err(|_| OpError::BadParam {
            name: "ranks".into(),
            reason: format!("'{s}' is not a rank count (1, 2, 4 or 8)"),
        })?,
        None => DEFAULT_RANKS,
    };
    let op = match kind.name() {
        "linear" => TpOp::Linear,
        "column_parallel_linear" => TpOp::ColumnParallelLinear {
            ranks,
            gather: values.get_bool("gather").unwrap_or(true),
        },
        "row_parallel_linear" => TpOp::RowParallelLinear { ranks },
        "vocab_parallel_embedding" => TpOp::VocabParallelEmbedding { ranks },
        "vocab_parallel_cross_entropy" => TpOp::VocabParallelCrossEntropy { ranks },
        other => return Err(OpError::UnknownOp(other.into())),
    };
    op.validate()?;
    Ok(op)
}

fn bad_input(name: &str, reason: String) -> OpError {
    OpError::BadInput {
        name: name.into(),
        reason,
    }
}

/// Shapes of a linear request: (rows, in, out).
fn linear_dims(req: &OpRequest) -> (usize, usize, usize) {
    let out = req
        .input("w")
        .map_or(0, |w| w.shape.first().copied().unwrap_or(0));
    (req.x.rows(), req.x.cols(), out)
}

/// Rows and V of a cross-entropy request.
fn ce_dims(req: &OpRequest) -> (usize, usize) {
    (req.x.rows(), req.x.cols())
}

/// (number of ids, V, h) of an embedding request.
fn embedding_dims(req: &OpRequest) -> (usize, usize, usize) {
    let (v, h) = req.input("table").map_or((0, 0), |t| (t.rows(), t.cols()));
    (req.x.len(), v, h)
}

/// The first id outside [0, v), if any: (index, value).
fn out_of_range(ids: &[f32], v: usize) -> Option<(usize, f32)> {
    ids.iter()
        .enumerate()
        .find(|(_, t)| **t < 0.0 || **t >= v as f32)
        .map(|(i, t)| (i, *t))
}

fn check_size(what: &str, shape: &[usize]) -> Result<(), OpError> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match n {
        Some(n) if n <= MAX_ELEMENTS => Ok(()),
        _ => Err(bad_input(
            "x",
            format!(
                "the {what} {shape:?} would hold more than the limit of {MAX_ELEMENTS} (2^29) values"
            ),
        )),
    }
}

impl TopicOp for TpOp {
    fn kind(&self) -> OpKind {
        match self {
            TpOp::Linear => LINEAR,
            TpOp::ColumnParallelLinear { .. } => COLUMN_PARALLEL_LINEAR,
            TpOp::RowParallelLinear { .. } => ROW_PARALLEL_LINEAR,
            TpOp::VocabParallelEmbedding { .. } => VOCAB_PARALLEL_EMBEDDING,
            TpOp::VocabParallelCrossEntropy { .. } => VOCAB_PARALLEL_CROSS_ENTROPY,
        }
    }

    fn validate(&self) -> Result<(), OpError> {
        let k = self.ranks();
        if !RANK_CHOICES.contains(&k) {
            return Err(OpError::BadParam {
                name: "ranks".into(),
                reason: format!("{k} ranks: choose 1, 2, 4 or 8"),
            });
        }
        Ok(())
    }

    fn describe(&self) -> String {
        match self {
            TpOp::Linear => "linear".into(),
            TpOp::ColumnParallelLinear { ranks, gather } => {
                format!("column_parallel_linear ranks={ranks} gather={gather}")
            }
            TpOp::RowParallelLinear { ranks } => format!("row_parallel_linear ranks={ranks}"),
            TpOp::VocabParallelEmbedding { ranks } => {
                format!("vocab_parallel_embedding ranks={ranks}")
            }
            TpOp::VocabParallelCrossEntropy { ranks } => {
                format!("vocab_parallel_cross_entropy ranks={ranks}")
            }
        }
    }

    fn check_inputs(&self, req: &OpRequest) -> Result<(), OpError> {
        let k = self.ranks();
        match self {
            TpOp::Linear | TpOp::ColumnParallelLinear { .. } | TpOp::RowParallelLinear { .. } => {
                let w = req
                    .input("w")
                    .ok_or_else(|| bad_input("w", "is missing".into()))?;
                let inner = req.x.cols();
                if inner == 0 {
                    return Err(bad_input(
                        "x",
                        format!(
                            "shape {:?} has no columns (in = 0): there is nothing to multiply",
                            req.x.shape
                        ),
                    ));
                }
                if w.shape.len() != 2 {
                    return Err(bad_input(
                        "w",
                        format!(
                            "expected a matrix [out, in], got shape {:?} (w is stored [out, in], as in torch.nn.Linear)",
                            w.shape
                        ),
                    ));
                }
                let (out, w_in) = (w.shape[0], w.shape[1]);
                if w_in != inner {
                    return Err(bad_input(
                        "w",
                        format!(
                            "is [{out}, {w_in}] but x has {inner} columns: w must be [out, in] with in = {inner} (x is [.., in])"
                        ),
                    ));
                }
                if let Some(b) = req.input("b")
                    && (b.len() != out || b.cols() != out)
                {
                    return Err(bad_input(
                        "b",
                        format!(
                            "has shape {:?}; the bias holds one value per output, [out] = [{out}]",
                            b.shape
                        ),
                    ));
                }
                match self {
                    TpOp::ColumnParallelLinear { .. } if !out.is_multiple_of(k) => {
                        return Err(bad_input(
                            "w",
                            format!(
                                "has out = {out} rows, not divisible by ranks = {k}: each rank owns out/k rows of w (Megatron requires divisibility too)"
                            ),
                        ));
                    }
                    TpOp::RowParallelLinear { .. } if !inner.is_multiple_of(k) => {
                        return Err(bad_input(
                            "x",
                            format!(
                                "has in = {inner} columns, not divisible by ranks = {k}: each rank owns in/k columns of x and of w"
                            ),
                        ));
                    }
                    _ => {}
                }
                let mut shape = req.x.shape.clone();
                if let Some(last) = shape.last_mut() {
                    *last = out;
                }
                check_size("output", &shape)?;
                if let TpOp::RowParallelLinear { .. } = self {
                    check_size("partial sums", &[k, req.x.rows(), out])?;
                }
            }
            TpOp::VocabParallelEmbedding { .. } => {
                let table = req
                    .input("table")
                    .ok_or_else(|| bad_input("table", "is missing".into()))?;
                if table.shape.len() != 2 {
                    return Err(bad_input(
                        "table",
                        format!("expected a matrix [V, h], got shape {:?}", table.shape),
                    ));
                }
                let (v, h) = (table.shape[0], table.shape[1]);
                if v == 0 {
                    return Err(bad_input("table", "has no rows (V = 0)".into()));
                }
                if !v.is_multiple_of(k) {
                    return Err(bad_input(
                        "table",
                        format!(
                            "has V = {v} rows, not divisible by ranks = {k}: each rank owns V/k rows (Megatron pads the vocabulary to a multiple, e.g. GPT-2's 50257 to 50304)"
                        ),
                    ));
                }
                if let Some((i, id)) = out_of_range(&req.x.data, v) {
                    return Err(bad_input(
                        "ids",
                        format!(
                            "element {i} is {id}, outside [0, V = {v}): ids index the table's rows (Megatron's VocabParallelEmbedding silently returns a zero row for it when k > 1; kernelbook refuses it)"
                        ),
                    ));
                }
                let mut shape = req.x.shape.clone();
                shape.push(h);
                check_size("output", &shape)?;
                check_size("masked lookups", &[k, req.x.len(), h])?;
            }
            TpOp::VocabParallelCrossEntropy { .. } => {
                let targets = req
                    .input("targets")
                    .ok_or_else(|| bad_input("targets", "is missing".into()))?;
                let (rows, v) = ce_dims(req);
                if v == 0 {
                    return Err(bad_input(
                        "x",
                        format!(
                            "shape {:?} has no columns (V = 0): a distribution needs at least one class",
                            req.x.shape
                        ),
                    ));
                }
                if !v.is_multiple_of(k) {
                    return Err(bad_input(
                        "x",
                        format!(
                            "has V = {v} columns, not divisible by ranks = {k}: each rank owns V/k logits of every row"
                        ),
                    ));
                }
                if targets.len() != rows {
                    return Err(bad_input(
                        "targets",
                        format!(
                            "holds {} ids but x has {rows} rows of logits (shape {:?}): one target per row",
                            targets.len(),
                            req.x.shape
                        ),
                    ));
                }
                if let Some((i, t)) = out_of_range(&targets.data, v) {
                    return Err(bad_input(
                        "targets",
                        format!(
                            "element {i} is {t}, outside [0, V = {v}): a target is a column of the logits"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn output_shape(&self, req: &OpRequest) -> Vec<usize> {
        match self {
            TpOp::Linear | TpOp::ColumnParallelLinear { .. } | TpOp::RowParallelLinear { .. } => {
                let (_, _, out) = linear_dims(req);
                let mut shape = req.x.shape.clone();
                if let Some(last) = shape.last_mut() {
                    *last = out;
                }
                shape
            }
            TpOp::VocabParallelEmbedding { .. } => {
                let (_, _, h) = embedding_dims(req);
                let mut shape = req.x.shape.clone();
                shape.push(h);
                shape
            }
            TpOp::VocabParallelCrossEntropy { .. } => {
                let shape = &req.x.shape;
                shape[..shape.len().saturating_sub(1)].to_vec()
            }
        }
    }

    fn reference(&self, req: &OpRequest) -> Reference {
        reference(self, req)
    }

    /// Tolerances, derived from the algorithms' f32 error. The check's tolerance is per op and
    /// dtype (it cannot see the data), so the data-dependent worst-case bound is checked per
    /// element in `tests/integration/tensor_parallel.rs`, and the tolerance here covers inputs of a layer's
    /// scale (|x| ~ 1, |w| ~ 1/√in, so |y| ~ 1):
    /// - linear family: a dot product of length n summed in f32 in any order is within
    ///   γ_n·Σ_j |x_j w_j| of the exact value (Higham, *Accuracy and Stability of Numerical
    ///   Algorithms*, §3.1; γ_n = n·u/(1-n·u), u = 2^-24), plus a rounding for the bias and the
    ///   k-rank all-reduce. That bound is worst-case. Rounding errors that behave like random
    ///   signs give u·√(n/2) per output for a layer's scale, and about 5 times that as the largest
    ///   of a million outputs: measured on the CPU engine (which sums in the kernels' order),
    ///   9.8e-6 at in = 2048 and 1.2e-5 at in = 4096 (the suite's large cases). f32 allows
    ///   2^-15 ≈ 3.1e-5 absolute + 2^-15 relative (or 2 ULP): room for in up to about 20000.
    ///   f16 and bf16 add their one output rounding (docs/numerics.md, Tolerances: 2^-11·|ref| + 2^-24, 2^-8·|ref|,
    ///   1 ULP) on top of the same floor.
    /// - vocab_parallel_embedding: copies and additions of -0.0 are exact: zero tolerance, the
    ///   result must be bit-identical.
    /// - vocab_parallel_cross_entropy: a sum of m positive terms in f32 is within γ_m of the
    ///   exact sum relatively, with m = V/(256·k) + 8 + k additions on the longest path (lane
    ///   sums, tree, ranks); each e^z adds its own error (CUDA's expf 2 ULP). The loss
    ///   ln(s) - p inherits that relative error of s as an absolute error. Measured on the CPU
    ///   engine at V = 50304: sum-exp 9.2e-7 relative, loss 2.1e-6 absolute. f32 allows
    ///   2^-17 ≈ 7.6e-6 absolute + 2^-18 ≈ 3.8e-6 relative (or 2 ULP).
    fn tolerance(&self, dtype: DType) -> Tolerance {
        match self {
            TpOp::VocabParallelEmbedding { .. } => Tolerance {
                rtol: 0.0,
                atol: 0.0,
                max_ulp: 0,
            },
            TpOp::VocabParallelCrossEntropy { .. } => match dtype {
                DType::F32 => Tolerance {
                    rtol: 2f64.powi(-18),
                    atol: 2f64.powi(-17),
                    max_ulp: 2,
                },
                _ => Tolerance::for_dtype(dtype).with_floor(2f64.powi(-17)),
            },
            _ => match dtype {
                DType::F32 => Tolerance {
                    rtol: 2f64.powi(-15),
                    atol: 2f64.powi(-15),
                    max_ulp: 2,
                },
                _ => Tolerance::for_dtype(dtype).with_floor(2f64.powi(-15)),
            },
        }
    }

    fn notes(&self, req: &OpRequest) -> Vec<String> {
        let mut notes = Vec::new();
        let decls = self.kind().inputs();
        let non_finite: usize = decls
            .iter()
            .filter(|d| !d.int)
            .filter_map(|d| req.input(d.name))
            .map(|t| t.data.iter().filter(|v| !v.is_finite()).count())
            .sum();
        if non_finite > 0 {
            notes.push(format!(
                "{non_finite} non-finite input value(s): they propagate (inf·0 = NaN, inf - inf = NaN) as in torch; \
                 the WGSL kernels follow IEEE only as far as the adapter does"
            ));
        }
        if let TpOp::ColumnParallelLinear { gather: false, .. } = self {
            notes.push(
                "gather = false: no collective runs; each rank keeps its output columns and the host assembles them"
                    .into(),
            );
        }
        notes
    }

    /// N(0, 3²) logits and, for the cross-entropy, targets spread over the vocabulary (row i
    /// targets class 7919·i mod V). The other ops need inputs that cannot be made up.
    fn sized_inputs(
        &self,
        shape: &[usize],
        seed: u64,
    ) -> Result<(Tensor, Vec<(String, Tensor)>), OpError> {
        let n: usize = shape.iter().product();
        let x = self.kind().draw().input(1, n, seed).tensor();
        let x = Tensor::new(shape.to_vec(), x.data)?;
        let TpOp::VocabParallelCrossEntropy { .. } = self else {
            return Ok((x, Vec::new()));
        };
        let vocab = x.cols();
        let rows: Vec<usize> = match &shape[..shape.len().saturating_sub(1)] {
            [] => vec![1],
            lead => lead.to_vec(),
        };
        let count: usize = rows.iter().product();
        let targets = (0..count)
            .map(|i| ((i * 7919) % vocab.max(1)) as f32)
            .collect();
        Ok((x, vec![("targets".to_string(), Tensor::new(rows, targets)?)]))
    }
}
