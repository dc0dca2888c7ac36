//! linear and the tensor-parallel ops on the CUDA engine: the rank program of
//! `src/ops/tensor_parallel.rs` planned as launches of `kernels/tensor_parallel.cu`.
//!
//! Every program buffer becomes one buffer of the plan (inputs in the storage dtype; ids as u32;
//! intermediates f32), and a one-element stand-in takes the place of a missing bias. A rank's
//! compute steps run on its own stream ([`Stream::Rank`]), so ranks overlap as they would on
//! separate GPUs; collectives and the output stage run on the main stream, which the executor makes
//! wait for every rank with work in flight (and a rank waits for the main stream again before its
//! next step). The kernel time covers the program; the one-rank program whose main output is shown
//! beside a split op's (`unsplit`) runs after it.
//!
//! vocab_parallel_cross_entropy on one rank with the fast kernel is one `ce_fused_*` launch.

use super::CudaTopic;
use super::plan::{Arg, BufId, Downloads, Elem, HostData, Limits, Plan, Planned, Stream};
use crate::dtype::DType;
use crate::engine::{EngineError, OpOutput, TimingSource, topic_op};
use crate::ops::tensor_parallel::{
    self as tp, BufKind, Collective, Program, ProgramOutput, ReduceOp, Step, TpOp,
};
use crate::ops::{KernelVariant, Op, OpRequest};
use std::time::Duration;

const FILE: &str = "tensor_parallel";

/// `THREADS` and `TILE` in the kernel file.
const THREADS: u32 = 256;
const TILE: u32 = 16;

/// Threads per block of `ce_fused_*` (`CE_THREADS` in the kernel file).
const CE_THREADS: u32 = 512;

/// Largest grid y dimension on every CUDA device (the GEMM puts row tiles there).
const MAX_GRID_Y: usize = 65_535;

/// This engine's registration of the topic.
pub(crate) static TOPIC: CudaTopic = CudaTopic {
    topic: FILE,
    source: include_str!("../../../kernels/tensor_parallel.cu"),
    entry_points: &[],
    has_fast_kernel,
    smoke: super::no_smoke,
    host: plan,
};

/// The cross-entropy on one rank has the fused one-read kernel (`ce_fused_*`).
fn has_fast_kernel(op: &Op) -> bool {
    matches!(
        op.get::<TpOp>(),
        Some(TpOp::VocabParallelCrossEntropy { ranks: 1 })
    )
}

fn u32_of(v: usize, what: &str) -> Result<u32, EngineError> {
    u32::try_from(v).map_err(|_| {
        EngineError::Unsupported(format!("{v} {what} do not fit the kernels' 32-bit sizes"))
    })
}

/// The op's rank program (and, for a split op, the one-rank program of its `unsplit` output), as
/// `tp::run_and_assemble` runs them on the other engines.
fn plan(req: &OpRequest, limits: &Limits) -> Result<Planned, EngineError> {
    let op = topic_op::<TpOp>(req)?;
    if let TpOp::VocabParallelCrossEntropy { ranks: 1 } = op
        && req.kernel == KernelVariant::Fast
    {
        return plan_fused_cross_entropy(req, limits);
    }
    let dtype = req.dtype;
    let mut p = Plan::new(FILE);
    let program = tp::program(op, req);
    let split = add_program(&mut p, &program, dtype, limits)?;
    p.end_timing();
    let unsplit = match op.unsplit() {
        Some(one) if op.ranks() != 1 => Some(add_program(
            &mut p,
            &tp::program(&one, req),
            dtype,
            limits,
        )?),
        _ => None,
    };
    let (op, shapes, shape) = (op.clone(), program.outputs, req.output_shape());
    Ok(Planned {
        plan: p,
        decode: Box::new(move |d| {
            let outputs = split.read(d, dtype)?;
            let unsplit = match (op.unsplit(), unsplit) {
                (None, _) => None,
                (Some(_), None) => outputs.first().cloned(),
                (Some(_), Some(one)) => one.read(d, dtype)?.into_iter().next(),
            };
            let (values, aux) = tp::assemble(&op, &shapes, outputs, unsplit);
            Ok(OpOutput::new(
                shape,
                dtype,
                values,
                Duration::ZERO,
                TimingSource::CudaEvents,
                Duration::ZERO,
            )
            .with_aux(aux))
        }),
    })
}

/// How a rank program's outputs are read back from the plan's buffers.
struct ProgramOutputs {
    outputs: Vec<ProgramOutput>,
    /// For each program buffer: its plan buffer, kind and length.
    buffers: Vec<(BufId, BufKind, usize)>,
}

impl ProgramOutputs {
    /// The outputs in program order, decoded to f32.
    fn read(&self, d: &Downloads, dtype: DType) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut values: Vec<Option<Vec<f32>>> = vec![None; self.buffers.len()];
        for o in &self.outputs {
            for id in o.from.buffers() {
                let &(buf, kind, len) = self.buffers.get(id).ok_or_else(|| {
                    EngineError::Failed(format!("the program has no buffer {id}"))
                })?;
                values[id] = Some(match kind {
                    BufKind::F32 => d.f32(buf, len)?,
                    BufKind::Stored => d.stored(buf, dtype, len)?,
                    BufKind::Index => {
                        return Err(EngineError::Failed("an output buffer holds ids".into()));
                    }
                });
            }
        }
        Ok(self
            .outputs
            .iter()
            .map(|o| {
                o.from
                    .collect(|id| values.get(id).and_then(Option::as_deref).unwrap_or(&[]))
            })
            .collect())
    }
}

/// Add a rank program to `p`: its buffers, a stand-in for a missing bias, every step's launches
/// (a rank's steps on its stream, collectives and the output stage on the main one), and the
/// reads of its outputs.
fn add_program(
    p: &mut Plan,
    program: &Program<'_>,
    dtype: DType,
    limits: &Limits,
) -> Result<ProgramOutputs, EngineError> {
    p.ranks = p.ranks.max(program.ranks);
    let buffers: Vec<(BufId, BufKind, usize)> = program
        .buffers
        .iter()
        .map(|b| {
            // An empty input is allocated like an empty output: one zero element, never read.
            let init = b.init.as_ref().filter(|values| !values.is_empty());
            let id = match (b.kind, init) {
                (BufKind::Stored, Some(v)) => p.upload(b.label, HostData::stored(dtype, v)),
                (BufKind::Stored, None) => p.zeros(b.label, Elem::stored(dtype), b.len),
                (BufKind::Index, Some(v)) => p.upload(
                    b.label,
                    HostData::U32(v.iter().map(|&x| x as u32).collect()),
                ),
                (BufKind::Index, None) => p.zeros(b.label, Elem::U32, b.len),
                (BufKind::F32, Some(v)) => p.upload(b.label, HostData::F32(v.to_vec())),
                (BufKind::F32, None) => p.zeros(b.label, Elem::F32, b.len),
            };
            (id, b.kind, b.len)
        })
        .collect();
    let dummy = p.zeros("the bias stand-in", Elem::stored(dtype), 1);
    let ids: Vec<BufId> = buffers.iter().map(|b| b.0).collect();
    for step in &program.steps {
        let stream = step.rank().map_or(Stream::Main, Stream::Rank);
        plan_step(p, stream, step, &ids, dummy, dtype, limits)?;
    }
    for o in &program.outputs {
        for id in o.from.buffers() {
            p.read(ids[id]);
        }
    }
    Ok(ProgramOutputs {
        outputs: program.outputs.clone(),
        buffers,
    })
}

/// The launches of one step on `stream`; `ids` maps the program's buffers to the plan's.
fn plan_step(
    p: &mut Plan,
    stream: Stream,
    step: &Step,
    ids: &[BufId],
    dummy: BufId,
    dtype: DType,
    limits: &Limits,
) -> Result<(), EngineError> {
    let b = |id: usize| {
        ids.get(id)
            .copied()
            .ok_or_else(|| EngineError::Failed(format!("the program has no buffer {id}")))
    };
    let sfx = dtype.name();
    // A one-dimensional launch of `n` threads (grid-stride loops cover what the grid does not).
    let flat = |n: usize| (limits.grid(n.div_ceil(THREADS as usize)), 1, 1);
    // One block per row (grid-stride over rows beyond the grid).
    let per_row = |rows: usize| (limits.grid(rows), 1, 1);
    let line = (THREADS, 1, 1);
    match *step {
        // `linear_tiled_*(const T* x, const T* w, const T* b, float* y, unsigned rows, unsigned
        // inner, unsigned out, int has_bias)`; x holds rows*inner, w out*inner, b out (or the
        // stand-in, unread), y rows*out elements.
        Step::Linear {
            x,
            w,
            b: bias,
            y,
            rows,
            inner,
            out,
            ..
        } => {
            let (rows32, inner32, out32) = (
                u32_of(rows, "rows")?,
                u32_of(inner, "columns")?,
                u32_of(out, "outputs")?,
            );
            let row_tiles = rows.div_ceil(TILE as usize).max(1);
            if row_tiles > MAX_GRID_Y {
                return Err(EngineError::Unsupported(format!(
                    "{rows} rows need {row_tiles} tiles of 16 in the grid's y dimension; CUDA allows {MAX_GRID_Y}"
                )));
            }
            let bias_buf = match bias {
                Some(id) => b(id)?,
                None => dummy,
            };
            p.launch_on(
                stream,
                format!("linear_tiled_{sfx}"),
                (out32.div_ceil(TILE).max(1), row_tiles as u32, 1),
                (TILE, TILE, 1),
                vec![
                    Arg::In(b(x)?),
                    Arg::In(b(w)?),
                    Arg::In(bias_buf),
                    Arg::Out(b(y)?),
                    Arg::U32(rows32),
                    Arg::U32(inner32),
                    Arg::U32(out32),
                    Arg::I32(i32::from(bias.is_some())),
                ],
            );
        }
        // `embed_masked_*(const unsigned* ids, const T* table, float* y, unsigned n, unsigned h,
        // unsigned start, unsigned count)`; ids holds n, table count*h, y n*h elements.
        Step::EmbedMasked {
            ids: tokens,
            table,
            y,
            n,
            h,
            start,
            count,
            ..
        } => {
            let args = vec![
                Arg::In(b(tokens)?),
                Arg::In(b(table)?),
                Arg::Out(b(y)?),
                Arg::U32(u32_of(n, "ids")?),
                Arg::U32(u32_of(h, "columns")?),
                Arg::U32(u32_of(start, "ids")?),
                Arg::U32(u32_of(count, "rows")?),
            ];
            p.launch_on(stream, format!("embed_masked_{sfx}"), flat(n * h), line, args);
        }
        // `ce_local_max_*(const T* x, float* out, unsigned rows, unsigned cols)`; x holds
        // rows*cols, out rows elements.
        Step::LocalMax {
            x, out, rows, cols, ..
        } => {
            let args = vec![
                Arg::In(b(x)?),
                Arg::Out(b(out)?),
                Arg::U32(u32_of(rows, "rows")?),
                Arg::U32(u32_of(cols, "columns")?),
            ];
            p.launch_on(stream, format!("ce_local_max_{sfx}"), per_row(rows), line, args);
        }
        // `ce_predicted_*(const T* x, const unsigned* targets, const float* max, float* out,
        // unsigned rows, unsigned cols, unsigned start)`; x holds rows*cols, the others rows
        // elements.
        Step::Predicted {
            x,
            targets,
            max,
            out,
            rows,
            cols,
            start,
            ..
        } => {
            let args = vec![
                Arg::In(b(x)?),
                Arg::In(b(targets)?),
                Arg::In(b(max)?),
                Arg::Out(b(out)?),
                Arg::U32(u32_of(rows, "rows")?),
                Arg::U32(u32_of(cols, "columns")?),
                Arg::U32(u32_of(start, "columns")?),
            ];
            p.launch_on(stream, format!("ce_predicted_{sfx}"), flat(rows), line, args);
        }
        // `ce_sum_exp_*(const T* x, const float* max, float* out, unsigned rows, unsigned cols)`;
        // x holds rows*cols, max and out rows elements.
        Step::SumExp {
            x,
            max,
            out,
            rows,
            cols,
            ..
        } => {
            let args = vec![
                Arg::In(b(x)?),
                Arg::In(b(max)?),
                Arg::Out(b(out)?),
                Arg::U32(u32_of(rows, "rows")?),
                Arg::U32(u32_of(cols, "columns")?),
            ];
            p.launch_on(stream, format!("ce_sum_exp_{sfx}"), per_row(rows), line, args);
        }
        // `ce_loss(const float* sum_exp, const float* predicted, float* out, unsigned rows)`;
        // every buffer holds rows f32 values.
        Step::Loss {
            sum_exp,
            predicted,
            out,
            rows,
            ..
        } => {
            let args = vec![
                Arg::In(b(sum_exp)?),
                Arg::In(b(predicted)?),
                Arg::Out(b(out)?),
                Arg::U32(u32_of(rows, "rows")?),
            ];
            p.launch_on(stream, "ce_loss", flat(rows), line, args);
        }
        // An all-reduce: `reduce_copy(const float* src, float* dst, unsigned n)` of the first
        // input into the first output, `reduce_accumulate(const float* src, float* acc, unsigned
        // n, int op)` of every other input into it, and `reduce_copy` of it into every other
        // output; every buffer holds n f32 values.
        Step::Collective {
            collective: Collective::AllReduce { op, len },
            ref inputs,
            ref outputs,
        } => {
            let n = Arg::U32(u32_of(len, "values")?);
            let code: i32 = match op {
                ReduceOp::Sum => 0,
                ReduceOp::Max => 1,
            };
            let (Some(&first_in), Some(&first_out)) = (inputs.first(), outputs.first()) else {
                return Err(EngineError::Failed("an all-reduce without buffers".into()));
            };
            let acc = b(first_out)?;
            let args = vec![Arg::In(b(first_in)?), Arg::Out(acc), n];
            p.launch_on(stream, "reduce_copy", flat(len), line, args);
            for &src in &inputs[1..] {
                let args = vec![Arg::In(b(src)?), Arg::Out(acc), n, Arg::I32(code)];
                p.launch_on(stream, "reduce_accumulate", flat(len), line, args);
            }
            for &dst in &outputs[1..] {
                let args = vec![Arg::In(acc), Arg::Out(b(dst)?), n];
                p.launch_on(stream, "reduce_copy", flat(len), line, args);
            }
        }
        // An all-gather: `gather_columns(const float* src, float* dst, unsigned rows, unsigned
        // chunk, unsigned ranks, unsigned rank)` of every input into every output; src holds
        // rows*chunk, dst rows*ranks*chunk f32 values.
        Step::Collective {
            collective: Collective::AllGather { rows, chunk },
            ref inputs,
            ref outputs,
        } => {
            let (r32, c32) = (u32_of(rows, "rows")?, u32_of(chunk, "columns")?);
            let k32 = u32_of(inputs.len(), "ranks")?;
            for &dst in outputs {
                for (s, &src) in inputs.iter().enumerate() {
                    let args = vec![
                        Arg::In(b(src)?),
                        Arg::Out(b(dst)?),
                        Arg::U32(r32),
                        Arg::U32(c32),
                        Arg::U32(k32),
                        Arg::U32(s as u32),
                    ];
                    p.launch_on(stream, "gather_columns", flat(rows * chunk), line, args);
                }
            }
        }
        // The output stage: `tensor_parallel_*(const float* src, const T* bias, T* dst, unsigned
        // n, unsigned cols, int has_bias)`; src and dst hold n elements, bias cols (or the
        // stand-in, unread).
        Step::Finish {
            src,
            bias,
            dst,
            len,
            cols,
        } => {
            let bias_buf = match bias {
                Some(id) => b(id)?,
                None => dummy,
            };
            let args = vec![
                Arg::In(b(src)?),
                Arg::In(bias_buf),
                Arg::Out(b(dst)?),
                Arg::U32(u32_of(len, "values")?),
                Arg::U32(u32_of(cols, "columns")?),
                Arg::I32(i32::from(bias.is_some())),
            ];
            p.launch_on(stream, format!("tensor_parallel_{sfx}"), flat(len), line, args);
        }
    }
    Ok(())
}

/// vocab_parallel_cross_entropy on one rank with the fast kernel: `ce_fused_*` reads every logit
/// once (online max and sum-exp) and writes the row's loss, max, predicted logit and sum-exp. The
/// outputs are the four-step program's (`local_*` equal the global values at k = 1, and `unsplit`
/// is the loss itself), each rounded once to the dtype as the program's finish step does.
///
/// `ce_fused_*(const T* x, const unsigned* targets, T* loss, float* max_out, float*
/// predicted_out, float* sum_out, unsigned rows, unsigned cols)`: x holds rows * cols logits of
/// the storage type, targets rows ids below cols (checked by the op), loss rows values of the
/// storage type, the others rows f32; one block per row.
fn plan_fused_cross_entropy(req: &OpRequest, limits: &Limits) -> Result<Planned, EngineError> {
    let dtype = req.dtype;
    let (rows, cols) = (req.x.rows(), req.x.cols());
    let rows32 = u32_of(rows, "rows")?;
    let cols32 = u32_of(cols, "columns")?;
    u32_of(req.x.len(), "logits")?;
    let targets: Vec<u32> = req
        .input("targets")
        .map(|t| t.data.iter().map(|&v| v as u32).collect())
        .ok_or_else(|| EngineError::Failed("cross-entropy without targets".into()))?;
    let mut p = Plan::new(FILE);
    let x = p.upload("logits", HostData::stored(dtype, &req.x.data));
    let loss = p.zeros("the loss", Elem::stored(dtype), rows);
    let t = p.upload("the targets", HostData::U32(targets));
    let max = p.zeros("the row maxima", Elem::F32, rows);
    let predicted = p.zeros("the predicted logits", Elem::F32, rows);
    let sum = p.zeros("the sums of exponentials", Elem::F32, rows);
    p.launch(
        format!("ce_fused_{}", dtype.name()),
        limits.grid(rows),
        CE_THREADS,
        vec![
            Arg::In(x),
            Arg::In(t),
            Arg::Out(loss),
            Arg::Out(max),
            Arg::Out(predicted),
            Arg::Out(sum),
            Arg::U32(rows32),
            Arg::U32(cols32),
        ],
    );
    for b in [loss, max, predicted, sum] {
        p.read(b);
    }
    let shape = req.output_shape();
    Ok(Planned {
        plan: p,
        decode: Box::new(move |d| {
            let round = |id: BufId| -> Result<Vec<f32>, EngineError> {
                Ok(d.f32(id, rows)?.into_iter().map(|x| dtype.round(x)).collect())
            };
            let loss = d.stored(loss, dtype, rows)?;
            let (max, predicted, sum) = (round(max)?, round(predicted)?, round(sum)?);
            let n = vec![rows];
            let aux = [
                ("local_max", vec![1, rows], max.clone()),
                ("local_sum_exp", vec![1, rows], sum.clone()),
                ("max", n.clone(), max),
                ("predicted", n.clone(), predicted),
                ("sum_exp", n, sum),
                ("unsplit", shape.clone(), loss.clone()),
            ];
            Ok(OpOutput::new(
                shape,
                dtype,
                loss,
                Duration::ZERO,
                TimingSource::CudaEvents,
                Duration::ZERO,
            )
            .with_aux(
                aux.into_iter()
                    .map(|(name, shape, values)| (name.to_string(), shape, values))
                    .collect(),
            ))
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Tensor;

    #[test]
    fn constants_match_the_kernel_defines() {
        for (name, value) in [
            ("THREADS", THREADS),
            ("TILE", TILE),
            ("CE_THREADS", CE_THREADS),
        ] {
            assert!(
                TOPIC.source.lines().any(|l| l
                    .split_whitespace()
                    .take(3)
                    .eq(["#define", name, &value.to_string()])),
                "tensor_parallel.cu: #define {name} {value}"
            );
        }
    }

    /// A column-parallel linear on 2 ranks: the ranks' GEMMs on their own streams, the all-gather
    /// and output stage on the main one, and the one-rank `unsplit` program after the timed
    /// launches, on the plan's buffers of its own.
    #[test]
    fn rank_steps_run_on_rank_streams_and_the_unsplit_run_is_untimed() {
        let (rows, inner, out) = (3, 4, 6);
        let req = OpRequest::with_inputs(
            Op::new(TpOp::ColumnParallelLinear {
                ranks: 2,
                gather: true,
            }),
            DType::F32,
            Tensor::matrix(rows, inner, vec![0.5; rows * inner]).unwrap(),
            vec![(
                "w".into(),
                Tensor::matrix(out, inner, vec![0.25; out * inner]).unwrap(),
            )],
        )
        .unwrap();
        let planned = plan(&req, &Limits::default()).unwrap();
        let p = &planned.plan;
        assert!(p.validate().is_ok());
        assert_eq!(p.ranks, 2);
        let timed = p.timed();
        assert!(0 < timed && timed < p.launches.len(), "{timed}");
        let (split, unsplit) = p.launches.split_at(timed);
        let gemms: Vec<Stream> = split
            .iter()
            .filter(|l| l.entry == "linear_tiled_f32")
            .map(|l| l.stream)
            .collect();
        assert_eq!(gemms, [Stream::Rank(0), Stream::Rank(1)]);
        assert!(
            split
                .iter()
                .filter(|l| l.entry == "gather_columns" || l.entry == "tensor_parallel_f32")
                .all(|l| l.stream == Stream::Main)
        );
        // The one-rank program: one GEMM (no collective), the output stage.
        let entries: Vec<&str> = unsplit.iter().map(|l| l.entry.as_str()).collect();
        assert_eq!(entries, ["linear_tiled_f32", "tensor_parallel_f32"]);
        assert!(unsplit.iter().all(|l| l.stream != Stream::Rank(1)));
        let buffers = |ls: &[crate::engine::cuda::plan::Launch]| -> Vec<BufId> {
            ls.iter()
                .flat_map(|l| l.args.iter())
                .filter_map(|a| match a {
                    Arg::In(b) | Arg::Out(b) => Some(*b),
                    _ => None,
                })
                .collect()
        };
        let first_unsplit = buffers(unsplit).into_iter().min().unwrap();
        assert!(buffers(split).iter().all(|&b| b < first_unsplit));
    }
}
