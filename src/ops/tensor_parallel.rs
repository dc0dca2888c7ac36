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
    /// element in `tests/tensor_parallel.rs`, and the tolerance here covers inputs of a layer's
    /// scale (|x| ~ 1, |w| ~ 1/√in, so |y| ~ 1):
    /// - linear family: a dot product of length n summed in f32 in any order is within
    ///   γ_n·Σ_j |x_j w_j| of the exact value (Higham, *Accuracy and Stability of Numerical
    ///   Algorithms*, §3.1; γ_n = n·u/(1-n·u), u = 2^-24), plus a rounding for the bias and the
    ///   k-rank all-reduce. That bound is worst-case. Rounding errors that behave like random
    ///   signs give u·√(n/2) per output for a layer's scale, and about 5 times that as the largest
    ///   of a million outputs: measured on the CPU engine (which sums in the kernels' order),
    ///   9.8e-6 at in = 2048 and 1.2e-5 at in = 4096 (the suite's large cases). f32 allows
    ///   2^-15 ≈ 3.1e-5 absolute + 2^-15 relative (or 2 ULP): room for in up to about 20000.
    ///   f16 and bf16 add their one output rounding (REFERENCE.md: 2^-11·|ref| + 2^-24, 2^-8·|ref|,
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

// ------------------------------------------------------------------------------------------------
// Shards and collectives.
// ------------------------------------------------------------------------------------------------

/// Rank r's part of an axis of length `len` split over k ranks: [r·len/k, (r+1)·len/k).
/// `len` must be divisible by k (checked on the request).
pub fn shard(len: usize, ranks: usize, rank: usize) -> Range<usize> {
    let per = len / ranks.max(1);
    rank * per..(rank + 1) * per
}

/// Every rank's part of an axis.
pub fn shards(len: usize, ranks: usize) -> Vec<Range<usize>> {
    (0..ranks).map(|r| shard(len, ranks, r)).collect()
}

/// The rank that owns index `i` of an axis of length `len` split over k ranks.
pub fn owner(i: usize, len: usize, ranks: usize) -> usize {
    let per = (len / ranks.max(1)).max(1);
    (i / per).min(ranks.saturating_sub(1))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReduceOp {
    Sum,
    /// Max, ignoring NaN (IEEE maxNum, CUDA's fmaxf).
    Max,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "SUM",
            ReduceOp::Max => "MAX",
        }
    }

    /// The reduction of two f32 values, as every engine does it.
    pub fn apply(self, acc: f32, v: f32) -> f32 {
        match self {
            ReduceOp::Sum => acc + v,
            ReduceOp::Max => acc.max(v),
        }
    }
}

/// A collective over k ranks' buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Collective {
    /// Every rank holds `len` values; afterwards every rank holds their elementwise reduction.
    AllReduce { op: ReduceOp, len: usize },
    /// Every rank holds a [rows, chunk] shard; afterwards every rank holds all shards side by side,
    /// [rows, k·chunk] (gathered along the last axis).
    AllGather { rows: usize, chunk: usize },
}

/// Bytes a collective sends over the links between ranks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Ring algorithm (NCCL's for large messages): all-reduce = reduce-scatter + all-gather, each
    /// rank sends 2(k-1)/k of the buffer; all-gather: each rank forwards k-1 shards.
    pub ring_per_rank: u64,
    pub ring_total: u64,
    /// Naive: every rank sends its whole buffer (all-reduce) or its shard (all-gather) directly to
    /// each of the k-1 others.
    pub naive_per_rank: u64,
    pub naive_total: u64,
}

impl Collective {
    /// Values in one rank's result buffer.
    pub fn result_len(&self, ranks: usize) -> usize {
        match *self {
            Collective::AllReduce { len, .. } => len,
            Collective::AllGather { rows, chunk } => rows * chunk * ranks,
        }
    }

    /// "all-reduce SUM of 64 values", "all-gather of [4, 8] shards".
    pub fn describe(&self) -> String {
        match *self {
            Collective::AllReduce { op, len } => {
                format!("all-reduce {} of {len} values", op.name())
            }
            Collective::AllGather { rows, chunk } => {
                format!("all-gather of [{rows}, {chunk}] shards")
            }
        }
    }

    /// Bytes sent for `ranks` ranks and `elem_bytes` per value (0 on one rank).
    pub fn traffic(&self, ranks: usize, elem_bytes: u64) -> Traffic {
        let k = ranks as u64;
        if k <= 1 {
            return Traffic::default();
        }
        match *self {
            Collective::AllReduce { len, .. } => {
                let n = len as u64 * elem_bytes;
                // Reduce-scatter and all-gather: k-1 steps each, a chunk of n/k per step.
                let ring_per_rank = 2 * (k - 1) * n / k;
                let naive_per_rank = (k - 1) * n;
                Traffic {
                    ring_per_rank,
                    ring_total: ring_per_rank * k,
                    naive_per_rank,
                    naive_total: naive_per_rank * k,
                }
            }
            Collective::AllGather { rows, chunk } => {
                let shard = (rows * chunk) as u64 * elem_bytes;
                let per_rank = (k - 1) * shard;
                Traffic {
                    ring_per_rank: per_rank,
                    ring_total: per_rank * k,
                    naive_per_rank: per_rank,
                    naive_total: per_rank * k,
                }
            }
        }
    }
}

/// "1.23 MB" style, powers of 1000 (link bandwidths are quoted in GB/s).
pub fn format_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes < 1000 {
        format!("{bytes} B")
    } else if b < 1e6 {
        format!("{:.1} kB", b / 1e3)
    } else if b < 1e9 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.2} GB", b / 1e9)
    }
}

/// The collectives vocab-parallel cross-entropy runs for n rows (three all-reduces of [n]).
pub fn cross_entropy_collectives(rows: usize) -> [Collective; 3] {
    [
        Collective::AllReduce {
            op: ReduceOp::Max,
            len: rows,
        },
        Collective::AllReduce {
            op: ReduceOp::Sum,
            len: rows,
        },
        Collective::AllReduce {
            op: ReduceOp::Sum,
            len: rows,
        },
    ]
}

/// What gathering full logits instead would move: an all-gather of every rank's [n, V/k] logits.
pub fn gather_logits_collective(rows: usize, vocab: usize, ranks: usize) -> Collective {
    Collective::AllGather {
        rows,
        chunk: vocab / ranks.max(1),
    }
}

// ------------------------------------------------------------------------------------------------
// The rank program.
// ------------------------------------------------------------------------------------------------

/// Index of a buffer in a [`Program`].
pub type BufId = usize;

/// What a buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BufKind {
    /// Values in the request's storage dtype: inputs, and outputs after [`Step::Finish`].
    Stored,
    /// f32 working values: partial results and collective buffers.
    F32,
    /// Non-negative integer ids (u32 on the GPUs).
    Index,
}

/// One buffer: its owner, kind, length and initial contents.
#[derive(Clone, Debug)]
pub struct BufferSpec<'a> {
    /// For people: "w shard", "partial sum".
    pub label: &'static str,
    /// The rank that owns it; `None` for the finished outputs (the host's).
    pub rank: Option<usize>,
    pub kind: BufKind,
    pub len: usize,
    /// Initial values (dtype-rounded for `Stored`, exact integers for `Index`); `None`: zeros.
    pub init: Option<Cow<'a, [f32]>>,
}

/// One step of a program. Compute steps read and write only their rank's buffers.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// y[i,o] = (Σ_j x[i,j] w[o,j]) + b[o], j in order, f32. x [rows, inner] and w [out, inner]
    /// and b [out] are `Stored`; y [rows, out] is `F32`.
    Linear {
        rank: usize,
        x: BufId,
        w: BufId,
        b: Option<BufId>,
        y: BufId,
        rows: usize,
        inner: usize,
        out: usize,
    },
    /// y[i,:] = table[ids[i] - start, :] if start <= ids[i] < start + count, else -0.0.
    /// table [count, h] `Stored`, ids `Index`, y [n, h] `F32`.
    EmbedMasked {
        rank: usize,
        ids: BufId,
        table: BufId,
        y: BufId,
        n: usize,
        h: usize,
        start: usize,
        count: usize,
    },
    /// out[i] = max_j x[i,j] over the rank's columns, NaN ignored (-inf for a row of NaN).
    LocalMax {
        rank: usize,
        x: BufId,
        out: BufId,
        rows: usize,
        cols: usize,
    },
    /// out[i] = x[i, t_i - start] - max[i] if the rank owns t_i (start <= t_i < start + cols),
    /// else 0.
    Predicted {
        rank: usize,
        x: BufId,
        targets: BufId,
        max: BufId,
        out: BufId,
        rows: usize,
        cols: usize,
        start: usize,
    },
    /// out[i] = Σ_j e^(x[i,j] - max[i]) over the rank's columns, in [`lane_tree_sum`] order.
    SumExp {
        rank: usize,
        x: BufId,
        max: BufId,
        out: BufId,
        rows: usize,
        cols: usize,
    },
    /// out[i] = ln(sum_exp[i]) - predicted[i].
    Loss {
        rank: usize,
        sum_exp: BufId,
        predicted: BufId,
        out: BufId,
        rows: usize,
    },
    /// A collective: `inputs[r]` is rank r's buffer, `outputs[r]` receives rank r's result
    /// (out of place, so the inputs stay readable). All `F32`.
    Collective {
        collective: Collective,
        inputs: Vec<BufId>,
        outputs: Vec<BufId>,
    },
    /// dst[i] = round_to_dtype(src[i] + b[i % cols]) (no bias: + nothing). src `F32`, b and dst
    /// `Stored`.
    Finish {
        src: BufId,
        bias: Option<BufId>,
        dst: BufId,
        len: usize,
        cols: usize,
    },
}

impl Step {
    /// The rank whose buffers a compute step uses; `None` for collectives and finishing.
    pub fn rank(&self) -> Option<usize> {
        match *self {
            Step::Linear { rank, .. }
            | Step::EmbedMasked { rank, .. }
            | Step::LocalMax { rank, .. }
            | Step::Predicted { rank, .. }
            | Step::SumExp { rank, .. }
            | Step::Loss { rank, .. } => Some(rank),
            Step::Collective { .. } | Step::Finish { .. } => None,
        }
    }
}

/// How an output is read back from its (`Stored`) buffers.
#[derive(Clone, Debug, PartialEq)]
pub enum Gather {
    /// One buffer.
    One(BufId),
    /// One buffer per rank, stacked along a new first axis.
    Stack(Vec<BufId>),
    /// One [rows, chunk] buffer per rank, side by side along the last axis (no collective: the
    /// host assembles them).
    Columns {
        shards: Vec<BufId>,
        rows: usize,
        chunk: usize,
    },
}

impl Gather {
    /// The buffers it reads.
    pub fn buffers(&self) -> Vec<BufId> {
        match self {
            Gather::One(b) => vec![*b],
            Gather::Stack(v) | Gather::Columns { shards: v, .. } => v.clone(),
        }
    }

    /// Assemble the output from the buffers' values.
    pub fn collect<'v>(&self, read: impl Fn(BufId) -> &'v [f32]) -> Vec<f32> {
        match self {
            Gather::One(b) => read(*b).to_vec(),
            Gather::Stack(v) => v.iter().flat_map(|&b| read(b).iter().copied()).collect(),
            Gather::Columns {
                shards,
                rows,
                chunk,
            } => {
                let mut out = Vec::with_capacity(rows * chunk * shards.len());
                for i in 0..*rows {
                    for &s in shards {
                        out.extend_from_slice(&read(s)[i * chunk..(i + 1) * chunk]);
                    }
                }
                out
            }
        }
    }
}

/// One output of a program: the main output first, then the auxiliary ones.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramOutput {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub from: Gather,
}

/// A request as work for k ranks: buffers, steps in order, and the outputs to read back.
#[derive(Clone, Debug)]
pub struct Program<'a> {
    pub ranks: usize,
    pub buffers: Vec<BufferSpec<'a>>,
    pub steps: Vec<Step>,
    pub outputs: Vec<ProgramOutput>,
}

impl Program<'_> {
    /// The collectives in order.
    pub fn collectives(&self) -> Vec<Collective> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Collective { collective, .. } => Some(*collective),
                _ => None,
            })
            .collect()
    }
}

struct Builder<'a> {
    buffers: Vec<BufferSpec<'a>>,
    steps: Vec<Step>,
}

impl<'a> Builder<'a> {
    fn add(
        &mut self,
        label: &'static str,
        rank: Option<usize>,
        kind: BufKind,
        len: usize,
        init: Option<Cow<'a, [f32]>>,
    ) -> BufId {
        self.buffers.push(BufferSpec {
            label,
            rank,
            kind,
            len,
            init,
        });
        self.buffers.len() - 1
    }

    fn input(&mut self, label: &'static str, rank: usize, data: Cow<'a, [f32]>) -> BufId {
        let len = data.len();
        self.add(label, Some(rank), BufKind::Stored, len, Some(data))
    }

    fn ids(&mut self, label: &'static str, rank: usize, data: &'a [f32]) -> BufId {
        self.add(
            label,
            Some(rank),
            BufKind::Index,
            data.len(),
            Some(Cow::Borrowed(data)),
        )
    }

    fn work(&mut self, label: &'static str, rank: usize, len: usize) -> BufId {
        self.add(label, Some(rank), BufKind::F32, len, None)
    }

    /// A collective over `inputs` into fresh f32 buffers; returns the outputs.
    fn collective(
        &mut self,
        collective: Collective,
        label: &'static str,
        inputs: Vec<BufId>,
    ) -> Vec<BufId> {
        let len = collective.result_len(inputs.len());
        let outputs: Vec<BufId> = (0..inputs.len())
            .map(|r| self.work(label, r, len))
            .collect();
        self.steps.push(Step::Collective {
            collective,
            inputs,
            outputs: outputs.clone(),
        });
        outputs
    }

    /// Round an f32 buffer into a new output buffer of the storage dtype.
    fn finish(&mut self, src: BufId, bias: Option<BufId>, cols: usize) -> BufId {
        let len = self.buffers[src].len;
        let dst = self.add("output", None, BufKind::Stored, len, None);
        self.steps.push(Step::Finish {
            src,
            bias,
            dst,
            len,
            cols: cols.max(1),
        });
        dst
    }
}

/// Columns `range` of a row-major [rows, cols] matrix.
pub fn columns(data: &[f32], rows: usize, cols: usize, range: Range<usize>) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * range.len());
    for i in 0..rows {
        out.extend_from_slice(&data[i * cols + range.start..i * cols + range.end]);
    }
    out
}

/// The program for a validated request (see the module comment for the algorithms).
pub fn program<'a>(op: &TpOp, req: &'a OpRequest) -> Program<'a> {
    let k = op.ranks();
    let mut b = Builder {
        buffers: Vec::new(),
        steps: Vec::new(),
    };
    let empty: &'a [f32] = &[];
    let mut outputs = Vec::new();
    let main_shape = op.output_shape(req);
    match op {
        TpOp::Linear | TpOp::ColumnParallelLinear { .. } => {
            let gather = !matches!(op, TpOp::ColumnParallelLinear { gather: false, .. });
            let (rows, inner, out) = linear_dims(req);
            let w = req.input("w").map_or(empty, |t| t.data.as_slice());
            let bias = req.input("b").map(|t| t.data.as_slice());
            let chunk = out / k;
            let mut ys = Vec::new();
            let mut biases = Vec::new();
            for (r, range) in shards(out, k).into_iter().enumerate() {
                let x = b.input("x (replicated)", r, Cow::Borrowed(&req.x.data));
                let w_r = b.input(
                    "w rows",
                    r,
                    Cow::Borrowed(&w[range.start * inner..range.end * inner]),
                );
                let b_r =
                    bias.map(|bias| b.input("b rows", r, Cow::Borrowed(&bias[range.clone()])));
                let y = b.work("output columns", r, rows * chunk);
                b.steps.push(Step::Linear {
                    rank: r,
                    x,
                    w: w_r,
                    b: b_r,
                    y,
                    rows,
                    inner,
                    out: chunk,
                });
                ys.push(y);
                biases.push(b_r);
            }
            let from = if k == 1 {
                Gather::One(b.finish(ys[0], None, chunk))
            } else if gather {
                let full =
                    b.collective(Collective::AllGather { rows, chunk }, "gathered output", ys);
                Gather::One(b.finish(full[0], None, out))
            } else {
                let shards = ys.iter().map(|&y| b.finish(y, None, chunk)).collect();
                Gather::Columns {
                    shards,
                    rows,
                    chunk,
                }
            };
            outputs.push(ProgramOutput {
                name: "y",
                shape: main_shape,
                from,
            });
        }
        TpOp::RowParallelLinear { .. } => {
            let (rows, inner, out) = linear_dims(req);
            let w = req.input("w").map_or(empty, |t| t.data.as_slice());
            let mut partials = Vec::new();
            for (r, range) in shards(inner, k).into_iter().enumerate() {
                let (x_r, w_r) = if k == 1 {
                    (Cow::Borrowed(req.x.data.as_slice()), Cow::Borrowed(w))
                } else {
                    (
                        Cow::Owned(columns(&req.x.data, rows, inner, range.clone())),
                        Cow::Owned(columns(w, out, inner, range.clone())),
                    )
                };
                let x = b.input("x columns", r, x_r);
                let w_r = b.input("w columns", r, w_r);
                let p = b.work("partial sum", r, rows * out);
                b.steps.push(Step::Linear {
                    rank: r,
                    x,
                    w: w_r,
                    b: None,
                    y: p,
                    rows,
                    inner: range.len(),
                    out,
                });
                partials.push(p);
            }
            let reduced = if k == 1 {
                partials[0]
            } else {
                b.collective(
                    Collective::AllReduce {
                        op: ReduceOp::Sum,
                        len: rows * out,
                    },
                    "all-reduced sum",
                    partials.clone(),
                )[0]
            };
            // The bias once, after the all-reduce (rank 0's copy: every rank holds the same).
            let bias = req
                .input("b")
                .map(|t| b.input("b", 0, Cow::Borrowed(t.data.as_slice())));
            let y = b.finish(reduced, bias, out);
            let stacked = partials.iter().map(|&p| b.finish(p, None, out)).collect();
            outputs.push(ProgramOutput {
                name: "y",
                shape: main_shape,
                from: Gather::One(y),
            });
            outputs.push(ProgramOutput {
                name: "partials",
                shape: vec![k, rows, out],
                from: Gather::Stack(stacked),
            });
        }
        TpOp::VocabParallelEmbedding { .. } => {
            let (n, v, h) = embedding_dims(req);
            let table = req.input("table").map_or(empty, |t| t.data.as_slice());
            let mut masked = Vec::new();
            for (r, range) in shards(v, k).into_iter().enumerate() {
                let ids = b.ids("ids (replicated)", r, &req.x.data);
                let t = b.input(
                    "table rows",
                    r,
                    Cow::Borrowed(&table[range.start * h..range.end * h]),
                );
                let y = b.work("masked lookup", r, n * h);
                b.steps.push(Step::EmbedMasked {
                    rank: r,
                    ids,
                    table: t,
                    y,
                    n,
                    h,
                    start: range.start,
                    count: range.len(),
                });
                masked.push(y);
            }
            let reduced = if k == 1 {
                masked[0]
            } else {
                b.collective(
                    Collective::AllReduce {
                        op: ReduceOp::Sum,
                        len: n * h,
                    },
                    "all-reduced rows",
                    masked.clone(),
                )[0]
            };
            let y = b.finish(reduced, None, h);
            let stacked = masked.iter().map(|&m| b.finish(m, None, h)).collect();
            outputs.push(ProgramOutput {
                name: "y",
                shape: main_shape,
                from: Gather::One(y),
            });
            outputs.push(ProgramOutput {
                name: "masked",
                shape: vec![k, n, h],
                from: Gather::Stack(stacked),
            });
        }
        TpOp::VocabParallelCrossEntropy { .. } => {
            let (rows, v) = ce_dims(req);
            let targets = req.input("targets").map_or(empty, |t| t.data.as_slice());
            let ranges = shards(v, k);
            let mut xs = Vec::new();
            let mut ts = Vec::new();
            let mut local_max = Vec::new();
            for (r, range) in ranges.iter().enumerate() {
                let x_r = if k == 1 {
                    Cow::Borrowed(req.x.data.as_slice())
                } else {
                    Cow::Owned(columns(&req.x.data, rows, v, range.clone()))
                };
                let x = b.input("logit columns", r, x_r);
                let t = b.ids("targets (replicated)", r, targets);
                let m = b.work("local max", r, rows);
                b.steps.push(Step::LocalMax {
                    rank: r,
                    x,
                    out: m,
                    rows,
                    cols: range.len(),
                });
                xs.push(x);
                ts.push(t);
                local_max.push(m);
            }
            let all_reduce =
                |b: &mut Builder<'a>, op: ReduceOp, label: &'static str, inputs: Vec<BufId>| {
                    if inputs.len() == 1 {
                        inputs
                    } else {
                        b.collective(Collective::AllReduce { op, len: rows }, label, inputs)
                    }
                };
            let max = all_reduce(&mut b, ReduceOp::Max, "global max", local_max.clone());
            let mut predicted = Vec::new();
            for (r, range) in ranges.iter().enumerate() {
                let p = b.work("predicted logit", r, rows);
                b.steps.push(Step::Predicted {
                    rank: r,
                    x: xs[r],
                    targets: ts[r],
                    max: max[r],
                    out: p,
                    rows,
                    cols: range.len(),
                    start: range.start,
                });
                predicted.push(p);
            }
            let predicted = all_reduce(&mut b, ReduceOp::Sum, "predicted logit", predicted);
            let mut sums = Vec::new();
            for (r, range) in ranges.iter().enumerate() {
                let s = b.work("local sum-exp", r, rows);
                b.steps.push(Step::SumExp {
                    rank: r,
                    x: xs[r],
                    max: max[r],
                    out: s,
                    rows,
                    cols: range.len(),
                });
                sums.push(s);
            }
            let sum_exp = all_reduce(&mut b, ReduceOp::Sum, "global sum-exp", sums.clone());
            let loss = b.work("loss", 0, rows);
            b.steps.push(Step::Loss {
                rank: 0,
                sum_exp: sum_exp[0],
                predicted: predicted[0],
                out: loss,
                rows,
            });
            let y = b.finish(loss, None, 1);
            let lm = local_max.iter().map(|&m| b.finish(m, None, 1)).collect();
            let ls = sums.iter().map(|&s| b.finish(s, None, 1)).collect();
            let gm = b.finish(max[0], None, 1);
            let gp = b.finish(predicted[0], None, 1);
            let gs = b.finish(sum_exp[0], None, 1);
            let n = main_shape.clone();
            outputs.push(ProgramOutput {
                name: "y",
                shape: main_shape,
                from: Gather::One(y),
            });
            outputs.push(ProgramOutput {
                name: "local_max",
                shape: vec![k, rows],
                from: Gather::Stack(lm),
            });
            outputs.push(ProgramOutput {
                name: "local_sum_exp",
                shape: vec![k, rows],
                from: Gather::Stack(ls),
            });
            for (name, id) in [("max", gm), ("predicted", gp), ("sum_exp", gs)] {
                outputs.push(ProgramOutput {
                    name,
                    shape: n.clone(),
                    from: Gather::One(id),
                });
            }
        }
    }
    Program {
        ranks: k,
        buffers: b.buffers,
        steps: b.steps,
        outputs,
    }
}

/// An engine's results as the op returns them: the main output and the auxiliary ones by name.
/// See [`assemble`].
pub type Assembled = (Vec<f32>, Vec<(String, Vec<usize>, Vec<f32>)>);

/// What every engine does with a tensor-parallel request: run the op's rank program with `run`
/// (the engine's executor: outputs in program order, plus its timing `T`), run the one-rank
/// program too for split ops (the `unsplit` aux output, the same engine's k = 1 result; at k = 1
/// the main output itself), and [`assemble`] the outputs. The timing is the main program's.
pub fn run_and_assemble<'a, T, E>(
    op: &TpOp,
    req: &'a OpRequest,
    mut run: impl FnMut(Program<'a>) -> Result<(Vec<Vec<f32>>, T), E>,
) -> Result<(Assembled, T), E> {
    let program = program(op, req);
    let shapes = program.outputs.clone();
    let (outputs, timing) = run(program)?;
    let unsplit = match op.unsplit() {
        None => None,
        Some(_) if op.ranks() == 1 => outputs.first().cloned(),
        Some(one) => run(self::program(&one, req))?.0.into_iter().next(),
    };
    Ok((assemble(op, &shapes, outputs, unsplit), timing))
}

/// `shapes` are the program's outputs and `outputs` their values in order (decoded to f32);
/// `unsplit` is the same engine's main output for the op on one rank (`None` for `linear`).
pub fn assemble(
    op: &TpOp,
    shapes: &[ProgramOutput],
    mut outputs: Vec<Vec<f32>>,
    unsplit: Option<Vec<f32>>,
) -> Assembled {
    let main = if outputs.is_empty() {
        Vec::new()
    } else {
        outputs.remove(0)
    };
    let mut aux: Vec<(String, Vec<usize>, Vec<f32>)> = shapes[1..]
        .iter()
        .zip(outputs)
        .map(|(o, values)| (o.name.to_string(), o.shape.clone(), values))
        .collect();
    if op.unsplit().is_some() {
        let shape = shapes[0].shape.clone();
        aux.push(("unsplit".into(), shape, unsplit.unwrap_or_default()));
    }
    (main, aux)
}

/// The sum of `len` values in the GPU kernels' order: lane l (of [`LANES`]) adds values l,
/// l + 256, l + 512, ... in order starting from 0.0; then the lanes are combined by a tree,
/// lane l += lane l + s for s = 128, 64, ..., 1. The CPU engine uses this so that it sums in
/// exactly the order the CUDA and WGSL reductions do.
pub fn lane_tree_sum(len: usize, value: impl Fn(usize) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    for (l, lane) in lanes.iter_mut().enumerate() {
        let mut acc = 0.0f32;
        let mut j = l;
        while j < len {
            acc += value(j);
            j += LANES;
        }
        *lane = acc;
    }
    let mut stride = LANES / 2;
    while stride > 0 {
        for l in 0..stride {
            lanes[l] += lanes[l + stride];
        }
        stride /= 2;
    }
    lanes[0]
}

// ------------------------------------------------------------------------------------------------
// The f64 reference.
// ------------------------------------------------------------------------------------------------

/// Σ_j x[i, j] w[o, j] over j in `cols` (of `inner`), in f64, for every (i, o): [rows, out].
/// Rows are split over threads for large products.
fn matmul_ref(
    x: &[f32],
    rows: usize,
    inner: usize,
    w: &[f32],
    out: usize,
    cols: Range<usize>,
) -> Vec<f64> {
    let mut y = vec![0.0f64; rows * out];
    if out == 0 || rows == 0 {
        return y;
    }
    let work = |first: usize, chunk: &mut [f64]| {
        for (di, yrow) in chunk.chunks_mut(out).enumerate() {
            let i = first + di;
            let xr = &x[i * inner..(i + 1) * inner];
            for (o, yo) in yrow.iter_mut().enumerate() {
                let wr = &w[o * inner..(o + 1) * inner];
                let mut acc = 0.0f64;
                for j in cols.clone() {
                    acc += xr[j] as f64 * wr[j] as f64;
                }
                *yo = acc;
            }
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if rows * out * cols.len() < (1 << 22) || threads == 1 {
        work(0, &mut y);
    } else {
        let per = rows.div_ceil(threads);
        std::thread::scope(|s| {
            for (c, chunk) in y.chunks_mut(per * out).enumerate() {
                let work = &work;
                s.spawn(move || work(c * per, chunk));
            }
        });
    }
    y
}

fn ce_rows_ref(x: &[f32], rows: usize, v: usize, targets: &[f32], k: usize) -> CeRef {
    let mut r = CeRef {
        loss: vec![0.0; rows],
        max: vec![0.0; rows],
        predicted: vec![0.0; rows],
        sum_exp: vec![0.0; rows],
        local_max: vec![0.0; k * rows],
        local_sum_exp: vec![0.0; k * rows],
    };
    let ranges = shards(v, k);
    for i in 0..rows {
        let row = &x[i * v..(i + 1) * v];
        for (rk, range) in ranges.iter().enumerate() {
            r.local_max[rk * rows + i] = row[range.clone()]
                .iter()
                .fold(f64::NEG_INFINITY, |m, &a| m.max(a as f64));
        }
        let m = row.iter().fold(f64::NEG_INFINITY, |m, &a| m.max(a as f64));
        for (rk, range) in ranges.iter().enumerate() {
            r.local_sum_exp[rk * rows + i] = row[range.clone()]
                .iter()
                .map(|&a| (a as f64 - m).exp())
                .sum();
        }
        let s: f64 = row.iter().map(|&a| (a as f64 - m).exp()).sum();
        let t = targets[i] as usize;
        let p = row[t] as f64 - m;
        r.max[i] = m;
        r.predicted[i] = p;
        r.sum_exp[i] = s;
        r.loss[i] = s.ln() - p;
    }
    r
}

struct CeRef {
    loss: Vec<f64>,
    max: Vec<f64>,
    predicted: Vec<f64>,
    sum_exp: Vec<f64>,
    local_max: Vec<f64>,
    local_sum_exp: Vec<f64>,
}

fn aux(name: &str, shape: Vec<usize>, values: Vec<f64>) -> AuxReference {
    AuxReference {
        name: name.into(),
        shape,
        values,
    }
}

/// The f64 reference of the unsplit math, with the auxiliary outputs in the engines' order.
pub fn reference(op: &TpOp, req: &OpRequest) -> Reference {
    let k = op.ranks();
    let shape = op.output_shape(req);
    let mut out = Reference::default();
    match op {
        TpOp::Linear | TpOp::ColumnParallelLinear { .. } | TpOp::RowParallelLinear { .. } => {
            let (rows, inner, n_out) = linear_dims(req);
            let w = req.input("w").map_or(&[][..], |t| &t.data[..]);
            let mut y = matmul_ref(&req.x.data, rows, inner, w, n_out, 0..inner);
            if let Some(b) = req.input("b") {
                for row in y.chunks_mut(n_out.max(1)) {
                    for (v, &bo) in row.iter_mut().zip(&b.data) {
                        *v += bo as f64;
                    }
                }
            }
            if let TpOp::RowParallelLinear { .. } = op {
                let mut partials = Vec::with_capacity(k * rows * n_out);
                for range in shards(inner, k) {
                    partials.extend(matmul_ref(&req.x.data, rows, inner, w, n_out, range));
                }
                out.aux
                    .push(aux("partials", vec![k, rows, n_out], partials));
            }
            if op.unsplit().is_some() {
                out.aux.push(aux("unsplit", shape, y.clone()));
            }
            out.values = y;
        }
        TpOp::VocabParallelEmbedding { .. } => {
            let (n, v, h) = embedding_dims(req);
            let table = req.input("table").map_or(&[][..], |t| &t.data[..]);
            let mut y = Vec::with_capacity(n * h);
            let mut masked = vec![0.0f64; k * n * h];
            for (i, &id) in req.x.data.iter().enumerate() {
                let id = id as usize;
                let row = &table[id * h..(id + 1) * h];
                y.extend(row.iter().map(|&a| a as f64));
                let r = owner(id, v, k);
                for (c, &a) in row.iter().enumerate() {
                    masked[(r * n + i) * h + c] = a as f64;
                }
            }
            out.aux.push(aux("masked", vec![k, n, h], masked));
            out.aux.push(aux("unsplit", shape, y.clone()));
            out.values = y;
        }
        TpOp::VocabParallelCrossEntropy { .. } => {
            let (rows, v) = ce_dims(req);
            let targets = req.input("targets").map_or(&[][..], |t| &t.data[..]);
            let r = ce_rows_ref(&req.x.data, rows, v, targets, k);
            out.aux.push(aux("local_max", vec![k, rows], r.local_max));
            out.aux
                .push(aux("local_sum_exp", vec![k, rows], r.local_sum_exp));
            out.aux.push(aux("max", shape.clone(), r.max));
            out.aux.push(aux("predicted", shape.clone(), r.predicted));
            out.aux.push(aux("sum_exp", shape.clone(), r.sum_exp));
            out.aux.push(aux("unsplit", shape, r.loss.clone()));
            out.values = r.loss;
        }
    }
    out
}

/// Per element of a linear-family output: Σ_j |x_j w_j| + |b|, the scale of the f32 error bound
/// γ_n·(Σ|x_j w_j| + |b|) (Higham §3.1). Used by the tests' per-element check.
pub fn linear_error_scale(req: &OpRequest) -> Vec<f64> {
    let (rows, inner, out) = linear_dims(req);
    let w = req.input("w").map_or(&[][..], |t| &t.data[..]);
    let x_abs: Vec<f32> = req.x.data.iter().map(|v| v.abs()).collect();
    let w_abs: Vec<f32> = w.iter().map(|v| v.abs()).collect();
    let mut s = matmul_ref(&x_abs, rows, inner, &w_abs, out, 0..inner);
    if let Some(b) = req.input("b") {
        for row in s.chunks_mut(out.max(1)) {
            for (v, &bo) in row.iter_mut().zip(&b.data) {
                *v += (bo as f64).abs();
            }
        }
    }
    s
}

// ------------------------------------------------------------------------------------------------
// Seeding.
// ------------------------------------------------------------------------------------------------

/// `len` draws from N(0, INIT_STD²) with a generator seeded by `seed`.
pub fn normal_init(seed: u64, len: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal =
        Normal::new(0.0f32, INIT_STD).unwrap_or_else(|_| Normal::new(0.0, 1.0).expect("valid"));
    (0..len).map(|_| normal.sample(&mut rng)).collect()
}

/// How a sharded weight [rows, cols] is split: by rows (column-parallel, vocab-parallel) or by
/// columns (row-parallel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitAxis {
    Rows,
    Columns,
}

/// Megatron's CPU initialisation: the full [rows, cols] weight from one generator seeded with
/// `seed`, then each rank takes its slice. Rank r's shard is the same for every k.
pub fn init_cpu_then_split(
    seed: u64,
    rows: usize,
    cols: usize,
    ranks: usize,
    axis: SplitAxis,
) -> Vec<Vec<f32>> {
    let full = normal_init(seed, rows * cols);
    split(&full, rows, cols, ranks, axis)
}

/// Per-rank initialisation: rank r draws its own shard from a generator seeded with
/// seed + 2718 + r (Megatron's tensor-model-parallel seed). The assembled weight depends on k.
pub fn init_per_rank(
    seed: u64,
    rows: usize,
    cols: usize,
    ranks: usize,
    axis: SplitAxis,
) -> Vec<Vec<f32>> {
    let k = ranks.max(1);
    let len = rows * cols / k;
    // The shard's shape follows `axis` ([rows/k, cols] or [rows, cols/k]); either way rank r
    // fills its rows*cols/k values in order from its own generator.
    let _ = axis;
    (0..k)
        .map(|r| normal_init(seed + RANK_SEED_OFFSET + r as u64, len))
        .collect()
}

/// Split a [rows, cols] matrix into k shards along `axis`.
pub fn split(
    full: &[f32],
    rows: usize,
    cols: usize,
    ranks: usize,
    axis: SplitAxis,
) -> Vec<Vec<f32>> {
    match axis {
        SplitAxis::Rows => shards(rows, ranks)
            .into_iter()
            .map(|r| full[r.start * cols..r.end * cols].to_vec())
            .collect(),
        SplitAxis::Columns => shards(cols, ranks)
            .into_iter()
            .map(|r| columns(full, rows, cols, r))
            .collect(),
    }
}

/// Put shards back together into the full [rows, cols] matrix.
pub fn assemble_shards(
    shards_: &[Vec<f32>],
    rows: usize,
    cols: usize,
    axis: SplitAxis,
) -> Vec<f32> {
    match axis {
        SplitAxis::Rows => shards_.concat(),
        SplitAxis::Columns => {
            let k = shards_.len().max(1);
            let chunk = cols / k;
            let mut out = Vec::with_capacity(rows * cols);
            for i in 0..rows {
                for s in shards_ {
                    out.extend_from_slice(&s[i * chunk..(i + 1) * chunk]);
                }
            }
            out
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The check suite.
// ------------------------------------------------------------------------------------------------

fn normal(rows: usize, cols: usize, scale: f32, seed: u64) -> Tensor {
    Input::Normal {
        rows,
        cols,
        scale,
        seed,
    }
    .tensor()
}

fn vector(data: Vec<f32>) -> Tensor {
    Tensor {
        shape: vec![data.len()],
        data,
    }
}

/// Ids for n lookups into V rows: every shard boundary (r·V/8 - 1, r·V/8), 0 and V - 1, then
/// seeded ones.
pub fn boundary_ids(n: usize, v: usize, seed: u64) -> Vec<f32> {
    let mut ids: Vec<f32> = Vec::new();
    for r in 0..=8 {
        let edge = r * v / 8;
        for id in [edge.wrapping_sub(1), edge] {
            if id < v && !ids.contains(&(id as f32)) {
                ids.push(id as f32);
            }
        }
    }
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while ids.len() < n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ids.push((s % v as u64) as f32);
    }
    ids.truncate(n);
    ids
}

fn linear_case(
    name: String,
    op: TpOp,
    dtype: DType,
    dims: (usize, usize, usize),
    bias: bool,
    seed: u64,
) -> Case {
    let (n, inner, out) = dims;
    let mut c = Case::new(
        name,
        Op::new(op),
        dtype,
        Input::Normal {
            rows: n,
            cols: inner,
            scale: 1.0,
            seed,
        },
        Expect::Match,
    );
    c.extra.push((
        "w".into(),
        normal(out, inner, 1.0 / (inner as f32).sqrt(), seed + 1),
    ));
    if bias {
        let b = normal(1, out, 0.5, seed + 2);
        c.extra.push(("b".into(), vector(b.data)));
    }
    c
}

fn embedding_case(
    name: String,
    ranks: usize,
    dtype: DType,
    n: usize,
    v: usize,
    h: usize,
    seed: u64,
) -> Case {
    let ids = boundary_ids(n, v, seed);
    let mut c = Case::new(
        name,
        Op::new(TpOp::VocabParallelEmbedding { ranks }),
        dtype,
        Input::Rows(vec![ids]),
        Expect::Match,
    );
    c.shape = Some(vec![n]);
    c.extra.push(("table".into(), normal(v, h, 1.0, seed + 1)));
    c
}

fn ce_case(name: String, ranks: usize, dtype: DType, rows: usize, v: usize, seed: u64) -> Case {
    let mut c = Case::new(
        name,
        Op::new(TpOp::VocabParallelCrossEntropy { ranks }),
        dtype,
        Input::Normal {
            rows,
            cols: v,
            scale: 3.0,
            seed,
        },
        Expect::Match,
    );
    let targets = boundary_ids(rows, v, seed + 1);
    c.extra.push(("targets".into(), vector(targets)));
    c
}

/// Megatron-Core's test_vocab_parallel_cross_entropy setup (TP = 4): 16 rows, each rank's local
/// logits [0, 1, ..., 7] repeated 4 times (local vocab 32, V = 128), targets 0, 2, ..., 30 (all
/// on rank 0). Expected loss 10.2309 - (t mod 8): [10.2309, 8.2309, 6.2309, 4.2309] x 4.
pub fn megatron_ce_fixture() -> (Tensor, Tensor) {
    let rows = 16;
    let local: Vec<f32> = (0..32).map(|j| (j % 8) as f32).collect();
    let mut x = Vec::with_capacity(rows * 128);
    for _ in 0..rows {
        for _ in 0..4 {
            x.extend_from_slice(&local);
        }
    }
    let targets: Vec<f32> = (0..rows).map(|i| (2 * i) as f32).collect();
    (
        Tensor {
            shape: vec![rows, 128],
            data: x,
        },
        vector(targets),
    )
}

/// This topic's cases for `kernelbook check`: all five ops at every rank count (f32), f16 and
/// bf16 at k = 2, the shard boundaries of the embedding, Megatron's cross-entropy fixture. Small
/// enough for a software adapter. `large` (real GPUs) adds LLM-sized layers and the cross-entropy
/// over GPT-2's padded vocabulary (V = 50304).
pub fn suite_cases(large: bool) -> Vec<Case> {
    let mut out = Vec::new();
    let mut seed = 6000u64;
    let mut next = || {
        seed += 10;
        seed
    };
    for dtype in DType::ALL {
        let ks: &[usize] = if dtype == DType::F32 {
            &RANK_CHOICES
        } else {
            &[2]
        };
        out.push(linear_case(
            format!("linear x[33,64] w[48,64] b {dtype}"),
            TpOp::Linear,
            dtype,
            (33, 64, 48),
            true,
            next(),
        ));
        if dtype == DType::F32 {
            out.push(linear_case(
                "linear no bias x[5,300] w[17,300]".into(),
                TpOp::Linear,
                dtype,
                (5, 300, 17),
                false,
                next(),
            ));
        }
        for &k in ks {
            for gather in [true, false] {
                out.push(linear_case(
                    format!("column k={k} gather={gather} x[17,96] w[64,96]"),
                    TpOp::ColumnParallelLinear { ranks: k, gather },
                    dtype,
                    (17, 96, 64),
                    true,
                    next(),
                ));
            }
            out.push(linear_case(
                format!("row k={k} x[17,256] w[40,256]"),
                TpOp::RowParallelLinear { ranks: k },
                dtype,
                (17, 256, 40),
                true,
                next(),
            ));
            out.push(embedding_case(
                format!("embedding k={k} ids[40] table[64,12] (shard edges)"),
                k,
                dtype,
                40,
                64,
                12,
                next(),
            ));
            out.push(ce_case(
                format!("cross-entropy k={k} x[9,1024]"),
                k,
                dtype,
                9,
                1024,
                next(),
            ));
        }
    }
    // Megatron-Core's fixture: [10.2309, 8.2309, 6.2309, 4.2309] x 4 at TP = 4.
    let (x, targets) = megatron_ce_fixture();
    let mut fixture = Case::new(
        "cross-entropy Megatron fixture k=4 x[16,128]".into(),
        Op::new(TpOp::VocabParallelCrossEntropy { ranks: 4 }),
        DType::F32,
        Input::Rows(x.data.chunks(128).map(|r| r.to_vec()).collect()),
        Expect::Match,
    );
    fixture.extra.push(("targets".into(), targets));
    out.push(fixture);
    if large {
        let big = |mut c: Case| {
            c.large = true;
            c
        };
        out.push(big(linear_case(
            "linear x[1024,2048] w[2048,2048]".into(),
            TpOp::Linear,
            DType::F32,
            (1024, 2048, 2048),
            true,
            next(),
        )));
        out.push(big(linear_case(
            "column k=8 x[1024,2048] w[2048,2048]".into(),
            TpOp::ColumnParallelLinear {
                ranks: 8,
                gather: true,
            },
            DType::F32,
            (1024, 2048, 2048),
            true,
            next(),
        )));
        out.push(big(linear_case(
            "row k=8 x[1024,4096] w[1024,4096]".into(),
            TpOp::RowParallelLinear { ranks: 8 },
            DType::F32,
            (1024, 4096, 1024),
            true,
            next(),
        )));
        out.push(big(embedding_case(
            "embedding k=8 ids[8192] table[50304,256]".into(),
            8,
            DType::F32,
            8192,
            50304,
            256,
            next(),
        )));
        for k in [1, 8] {
            out.push(big(ce_case(
                format!("cross-entropy k={k} x[4096,50304]"),
                k,
                DType::F32,
                4096,
                50304,
                next(),
            )));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Op;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn linear_req(op: TpOp, x: Tensor, w: Tensor, b: Option<Tensor>) -> Result<OpRequest, OpError> {
        let mut extra = vec![("w".to_string(), w)];
        if let Some(b) = b {
            extra.push(("b".into(), b));
        }
        OpRequest::with_inputs(Op::new(op), DType::F32, x, extra)
    }

    #[test]
    fn parses_params_and_rejects_bad_ones() {
        let (op, dt) = Op::parse(
            "column_parallel_linear",
            &kv(&[("ranks", "4"), ("gather", "false"), ("dtype", "bf16")]),
        )
        .unwrap();
        assert_eq!(
            op,
            Op::new(TpOp::ColumnParallelLinear {
                ranks: 4,
                gather: false
            })
        );
        assert_eq!(dt, DType::Bf16);
        let (op, _) = Op::parse("row_parallel_linear", &[]).unwrap();
        assert_eq!(op, Op::new(TpOp::RowParallelLinear { ranks: 2 }));
        let e = Op::parse("row_parallel_linear", &kv(&[("ranks", "3")])).unwrap_err();
        assert!(e.to_string().contains("1, 2, 4, 8"), "{e}");
        let e = Op::parse("linear", &kv(&[("ranks", "2")])).unwrap_err();
        assert!(e.to_string().contains("no parameter 'ranks'"), "{e}");
        let bad = TpOp::RowParallelLinear { ranks: 3 };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("choose 1, 2, 4 or 8")
        );
    }

    #[test]
    fn shapes_and_divisibility_errors_are_clear() {
        let x = Tensor::matrix(2, 6, vec![0.5; 12]).unwrap();
        let w = Tensor::matrix(4, 6, vec![0.25; 24]).unwrap();
        // Column: out = 4 is not divisible by 8.
        let e = linear_req(
            TpOp::ColumnParallelLinear {
                ranks: 8,
                gather: true,
            },
            x.clone(),
            w.clone(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("out = 4") && e.contains("ranks = 8"), "{e}");
        // Row: in = 6 is not divisible by 4.
        let e = linear_req(
            TpOp::RowParallelLinear { ranks: 4 },
            x.clone(),
            w.clone(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("in = 6") && e.contains("ranks = 4"), "{e}");
        // Mismatched inner dimension.
        let w5 = Tensor::matrix(4, 5, vec![0.0; 20]).unwrap();
        let e = linear_req(TpOp::Linear, x.clone(), w5, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("x has 6 columns"), "{e}");
        // Bias of the wrong length.
        let e = linear_req(
            TpOp::Linear,
            x.clone(),
            w.clone(),
            Some(vector(vec![0.0; 3])),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("input b:") && e.contains("[out] = [4]"),
            "{e}"
        );
        // A [1, out] bias (a lesson's one-row input) is accepted.
        assert!(linear_req(TpOp::Linear, x, w, Some(Tensor::row(vec![0.0; 4]))).is_ok());
    }

    #[test]
    fn embedding_and_cross_entropy_errors_are_clear() {
        let table = Tensor::matrix(10, 2, vec![1.0; 20]).unwrap();
        let req = |k, ids: Vec<f32>| {
            OpRequest::with_inputs(
                Op::new(TpOp::VocabParallelEmbedding { ranks: k }),
                DType::F32,
                vector(ids),
                vec![("table".into(), table.clone())],
            )
        };
        let e = req(4, vec![0.0]).unwrap_err().to_string();
        assert!(e.contains("V = 10") && e.contains("ranks = 4"), "{e}");
        let e = req(2, vec![3.0, 10.0]).unwrap_err().to_string();
        assert!(
            e.contains("element 1 is 10") && e.contains("Megatron"),
            "{e}"
        );
        let e = req(2, vec![-1.0]).unwrap_err().to_string();
        assert!(e.contains("element 0 is -1"), "{e}");
        let e = req(2, vec![0.5]).unwrap_err().to_string();
        assert!(e.contains("integers"), "{e}");
        assert!(req(2, vec![0.0, 4.0, 5.0, 9.0]).is_ok());

        let ce = |k, x: Tensor, t: Vec<f32>| {
            OpRequest::with_inputs(
                Op::new(TpOp::VocabParallelCrossEntropy { ranks: k }),
                DType::F32,
                x,
                vec![("targets".into(), vector(t))],
            )
        };
        let x = Tensor::matrix(2, 8, vec![0.0; 16]).unwrap();
        let e = ce(2, x.clone(), vec![0.0]).unwrap_err().to_string();
        assert!(e.contains("holds 1 ids but x has 2 rows"), "{e}");
        let e = ce(2, x.clone(), vec![0.0, 8.0]).unwrap_err().to_string();
        assert!(e.contains("element 1 is 8"), "{e}");
        let x6 = Tensor::matrix(2, 6, vec![0.0; 12]).unwrap();
        let e = ce(4, x6, vec![0.0, 1.0]).unwrap_err().to_string();
        assert!(e.contains("V = 6") && e.contains("ranks = 4"), "{e}");
        assert!(ce(8, x, vec![0.0, 7.0]).is_ok());
    }

    #[test]
    fn megatron_cross_entropy_fixture() {
        let (x, t) = megatron_ce_fixture();
        let req = OpRequest::with_inputs(
            Op::new(TpOp::VocabParallelCrossEntropy { ranks: 4 }),
            DType::F32,
            x,
            vec![("targets".into(), t)],
        )
        .unwrap();
        let r = req.reference_full();
        let want = [10.2309, 8.2309, 6.2309, 4.2309];
        for (i, &l) in r.values.iter().enumerate() {
            assert!((l - want[i % 4]).abs() < 1e-4, "row {i}: {l}");
        }
        // Only rank 0 owns the targets; every rank sees the same local max 7.
        let local = &r.aux[0];
        assert_eq!(local.name, "local_max");
        assert!(local.values.iter().all(|&m| m == 7.0));
    }

    #[test]
    fn shards_and_owners() {
        assert_eq!(shards(8, 4), vec![0..2, 2..4, 4..6, 6..8]);
        assert_eq!(owner(0, 8, 4), 0);
        assert_eq!(owner(5, 8, 4), 2);
        assert_eq!(owner(7, 8, 4), 3);
        assert_eq!(shards(5, 1), vec![0..5]);
    }

    #[test]
    fn collective_bytes() {
        let ar = Collective::AllReduce {
            op: ReduceOp::Sum,
            len: 1000,
        };
        // Ring: 2 (k-1)/k of 4000 bytes per rank; naive: (k-1) x 4000.
        let t = ar.traffic(4, 4);
        assert_eq!((t.ring_per_rank, t.ring_total), (6000, 24000));
        assert_eq!((t.naive_per_rank, t.naive_total), (12000, 48000));
        assert_eq!(ar.traffic(1, 4), Traffic::default());
        let ag = Collective::AllGather { rows: 10, chunk: 5 };
        let t = ag.traffic(8, 4);
        assert_eq!(t.ring_per_rank, 7 * 200);
        assert_eq!(t.ring_per_rank, t.naive_per_rank);
        assert_eq!(ag.result_len(8), 400);
        // Vocab-parallel cross-entropy at GPT-2 scale: three [8192] all-reduces against gathering
        // [8192, 50304] logits.
        let small: u64 = cross_entropy_collectives(8192)
            .iter()
            .map(|c| c.traffic(8, 4).ring_per_rank)
            .sum();
        let gather = gather_logits_collective(8192, 50304, 8)
            .traffic(8, 4)
            .ring_per_rank;
        assert_eq!(small, 3 * 2 * 7 * 8192 * 4 / 8);
        assert_eq!(gather, 7 * 8192 * (50304 / 8) * 4);
        // The ratio is V/6 whatever k and n are: (k-1)·n·(V/k) against 3·2(k-1)/k·n.
        assert_eq!(gather / small, 50304 / 6);
        assert_eq!(format_bytes(1_441_792_000), "1.44 GB");
        assert_eq!(format_bytes(999), "999 B");
    }

    #[test]
    fn lane_tree_sum_is_exact_on_integers_and_ordered() {
        assert_eq!(lane_tree_sum(1000, |j| j as f32), 499_500.0);
        assert_eq!(lane_tree_sum(0, |_| 1.0), 0.0);
        assert_eq!(lane_tree_sum(3, |_| 1.0), 3.0);
    }

    #[test]
    fn cpu_init_shards_are_slices_of_the_unsplit_weight() {
        let (rows, cols) = (16, 24);
        for axis in [SplitAxis::Rows, SplitAxis::Columns] {
            let full = init_cpu_then_split(7, rows, cols, 1, axis).remove(0);
            for k in RANK_CHOICES {
                let s = init_cpu_then_split(7, rows, cols, k, axis);
                assert_eq!(s, split(&full, rows, cols, k, axis), "{axis:?} k={k}");
                assert_eq!(assemble_shards(&s, rows, cols, axis), full);
                // Per-rank init gives another model for every k > 1.
                let p = assemble_shards(&init_per_rank(7, rows, cols, k, axis), rows, cols, axis);
                let p1 = assemble_shards(&init_per_rank(7, rows, cols, 1, axis), rows, cols, axis);
                assert_eq!(p == p1, k == 1, "{axis:?} k={k}");
            }
        }
        let w = normal_init(1, 10_000);
        let std = (w.iter().map(|v| (v * v) as f64).sum::<f64>() / 1e4).sqrt();
        assert!((std - 0.02).abs() < 0.001, "{std}");
    }

    #[test]
    fn programs_name_their_collectives() {
        let x = Tensor::matrix(3, 8, (0..24).map(|v| v as f32).collect()).unwrap();
        let w = Tensor::matrix(4, 8, vec![1.0; 32]).unwrap();
        let req = linear_req(
            TpOp::RowParallelLinear { ranks: 4 },
            x.clone(),
            w.clone(),
            None,
        )
        .unwrap();
        let op = req.op.get::<TpOp>().unwrap();
        let p = program(op, &req);
        assert_eq!(
            p.collectives(),
            vec![Collective::AllReduce {
                op: ReduceOp::Sum,
                len: 12
            }]
        );
        assert_eq!(p.outputs.len(), 2);
        let cp = TpOp::ColumnParallelLinear {
            ranks: 4,
            gather: false,
        };
        let req = linear_req(cp.clone(), x, w, None).unwrap();
        assert!(program(&cp, &req).collectives().is_empty());
        let ce = TpOp::VocabParallelCrossEntropy { ranks: 2 };
        let (x, t) = megatron_ce_fixture();
        let req = OpRequest::with_inputs(
            Op::new(ce.clone()),
            DType::F32,
            x,
            vec![("targets".into(), t)],
        )
        .unwrap();
        assert_eq!(
            program(&ce, &req).collectives(),
            cross_entropy_collectives(16).to_vec()
        );
    }

    #[test]
    fn boundary_ids_cover_every_shard_edge() {
        let ids = boundary_ids(40, 64, 3);
        assert_eq!(ids.len(), 40);
        for e in [0.0, 7.0, 8.0, 15.0, 16.0, 31.0, 32.0, 63.0] {
            assert!(ids.contains(&e), "{e}");
        }
        assert!(ids.iter().all(|&i| (0.0..64.0).contains(&i)));
    }

    #[test]
    fn suite_cases_are_valid_requests() {
        let cases = suite_cases(false);
        for kind in [
            LINEAR,
            COLUMN_PARALLEL_LINEAR,
            ROW_PARALLEL_LINEAR,
            VOCAB_PARALLEL_EMBEDDING,
            VOCAB_PARALLEL_CROSS_ENTROPY,
        ] {
            assert!(cases.iter().any(|c| c.op.kind() == kind), "{kind}");
        }
        for c in &cases {
            c.request().unwrap_or_else(|e| panic!("{}: {e}", c.name));
        }
        assert!(suite_cases(true).iter().any(|c| c.large));
    }
}
