//! linear and the tensor-parallel ops on the wgpu engine: the rank program of
//! `src/ops/tensor_parallel.rs` as dispatches of `shaders/tensor_parallel.wgsl`.
//!
//! Every program buffer becomes one storage buffer (inputs uploaded in the storage dtype, one word
//! per element; ids as u32; intermediates f32), every step one dispatch or a few, all in one compute
//! pass in program order, so each dispatch sees the writes of the ones before it: a rank's compute
//! step binds only that rank's buffers, and the collectives are the only dispatches that bind
//! buffers of several ranks (an all-reduce is a copy, k-1 accumulations in rank order and k-1
//! broadcast copies; an all-gather is k x k column copies). The finished outputs are read back.

use super::{BufferInit, Dispatch, WgpuEngine, decode_values, encode_values};
use crate::dtype::DType;
use crate::engine::{EngineError, OpOutput, TimingSource};
use crate::ops::OpRequest;
use crate::ops::tensor_parallel::{
    self as tp, BufId, BufKind, Collective, LANES, Program, ReduceOp, Step, TpOp,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const FILE: &str = "tensor_parallel";

/// The GEMM's tile edge (`TILE` in the shader).
const TILE: usize = 16;

/// This engine's registration of the topic: one shader per op.
pub(crate) static TOPIC: super::WgpuTopic = super::WgpuTopic {
    topic: "tensor_parallel",
    source: include_str!("../../../shaders/tensor_parallel.wgsl"),
    probe_entries: &[],
    has_fast_kernel: super::one_kernel,
    supports: super::supported_when_run,
    execute: run_request,
};

fn run_request(engine: &WgpuEngine, req: &OpRequest) -> Result<OpOutput, EngineError> {
    execute(engine, req, crate::engine::topic_op::<TpOp>(req)?)
}

fn execute(
    engine: &WgpuEngine,
    req: &OpRequest,
    op: &TpOp,
) -> Result<OpOutput, EngineError> {
    let started = Instant::now();
    let ((values, aux), (kernel_time, timing)) = tp::run_and_assemble(op, req, |program| {
        run(engine, &program, req.dtype).map(|(outputs, time, timing)| (outputs, (time, timing)))
    })?;
    let out = OpOutput::new(
        req.output_shape(),
        req.dtype,
        values,
        kernel_time,
        timing,
        started.elapsed(),
    )
    .with_aux(aux);
    Ok(out)
}

fn dtype_code(dtype: DType) -> u32 {
    match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::Bf16 => 2,
    }
}

/// A count as a shader's u32, or why it does not fit.
fn u32_of(v: usize, what: &str) -> Result<u32, EngineError> {
    u32::try_from(v).map_err(|_| {
        EngineError::Unsupported(format!("{v} {what} do not fit the shader's 32-bit indices"))
    })
}

/// `groups` workgroups laid out within the adapter's per-dimension limit (a 2D grid beyond it;
/// the shader flattens it back).
fn grid(groups: usize, max_dim: u32) -> Result<(u32, u32, u32), EngineError> {
    let groups = u32_of(groups.max(1), "workgroups")?;
    if groups <= max_dim {
        return Ok((groups, 1, 1));
    }
    let lines = groups.div_ceil(max_dim);
    if lines > max_dim {
        return Err(EngineError::Unsupported(format!(
            "{groups} workgroups exceed this adapter's {max_dim} x {max_dim} grid"
        )));
    }
    Ok((max_dim, lines, 1))
}

/// The dispatches of one step.
fn dispatches(
    step: &Step,
    dtype: DType,
    dummy: BufId,
    max_dim: u32,
    out: &mut Vec<Dispatch>,
) -> Result<(), EngineError> {
    let d = dtype_code(dtype);
    let elementwise = |len: usize| grid(len.div_ceil(LANES), max_dim);
    match *step {
        Step::Linear {
            x,
            w,
            b,
            y,
            rows,
            inner,
            out: cols,
            ..
        } => {
            let (gx, gy) = (cols.div_ceil(TILE).max(1), rows.div_ceil(TILE).max(1));
            if gx > max_dim as usize || gy > max_dim as usize {
                return Err(EngineError::Unsupported(format!(
                    "a [{rows}, {cols}] output needs {gx} x {gy} tiles of 16 x 16; this adapter dispatches at most {max_dim} per dimension"
                )));
            }
            out.push(Dispatch {
                entry: "linear_tiled",
                buffers: vec![x, w, b.unwrap_or(dummy), y],
                params: vec![
                    d,
                    u32_of(rows, "rows")?,
                    u32_of(inner, "columns")?,
                    u32_of(cols, "outputs")?,
                    u32::from(b.is_some()),
                ],
                workgroups: (gx as u32, gy as u32, 1),
            });
        }
        Step::EmbedMasked {
            ids,
            table,
            y,
            n,
            h,
            start,
            count,
            ..
        } => out.push(Dispatch {
            entry: "embed_masked",
            buffers: vec![ids, table, y],
            params: vec![
                d,
                u32_of(n, "ids")?,
                u32_of(h, "columns")?,
                u32_of(start, "ids")?,
                u32_of(count, "rows")?,
            ],
            workgroups: elementwise(n * h)?,
        }),
        Step::LocalMax {
            x,
            out: o,
            rows,
            cols,
            ..
        } => out.push(Dispatch {
            entry: "ce_local_max",
            buffers: vec![x, o],
            params: vec![d, u32_of(rows, "rows")?, u32_of(cols, "columns")?, 0],
            workgroups: grid(rows, max_dim)?,
        }),
        Step::Predicted {
            x,
            targets,
            max,
            out: o,
            rows,
            cols,
            start,
            ..
        } => out.push(Dispatch {
            entry: "ce_predicted",
            buffers: vec![x, targets, max, o],
            params: vec![
                d,
                u32_of(rows, "rows")?,
                u32_of(cols, "columns")?,
                u32_of(start, "columns")?,
            ],
            workgroups: elementwise(rows)?,
        }),
        Step::SumExp {
            x,
            max,
            out: o,
            rows,
            cols,
            ..
        } => out.push(Dispatch {
            entry: "ce_sum_exp",
            buffers: vec![x, max, o],
            params: vec![d, u32_of(rows, "rows")?, u32_of(cols, "columns")?, 0],
            workgroups: grid(rows, max_dim)?,
        }),
        Step::Loss {
            sum_exp,
            predicted,
            out: o,
            rows,
            ..
        } => out.push(Dispatch {
            entry: "ce_loss",
            buffers: vec![sum_exp, predicted, o],
            params: vec![d, u32_of(rows, "rows")?, 0, 0],
            workgroups: elementwise(rows)?,
        }),
        Step::Collective {
            collective,
            ref inputs,
            ref outputs,
        } => match collective {
            Collective::AllReduce { op, len } => {
                let n = u32_of(len, "values")?;
                let g = elementwise(len)?;
                let copy = |src: BufId, dst: BufId| Dispatch {
                    entry: "reduce_copy",
                    buffers: vec![src, dst],
                    params: vec![n],
                    workgroups: g,
                };
                out.push(copy(inputs[0], outputs[0]));
                let code = match op {
                    ReduceOp::Sum => 0,
                    ReduceOp::Max => 1,
                };
                for &src in &inputs[1..] {
                    out.push(Dispatch {
                        entry: "reduce_accumulate",
                        buffers: vec![src, outputs[0]],
                        params: vec![n, code],
                        workgroups: g,
                    });
                }
                for &dst in &outputs[1..] {
                    out.push(copy(outputs[0], dst));
                }
            }
            Collective::AllGather { rows, chunk } => {
                let k = inputs.len();
                let g = elementwise(rows * chunk)?;
                for &dst in outputs {
                    for (s, &src) in inputs.iter().enumerate() {
                        out.push(Dispatch {
                            entry: "gather_columns",
                            buffers: vec![src, dst],
                            params: vec![
                                u32_of(rows, "rows")?,
                                u32_of(chunk, "columns")?,
                                k as u32,
                                s as u32,
                            ],
                            workgroups: g,
                        });
                    }
                }
            }
        },
        Step::Finish {
            src,
            bias,
            dst,
            len,
            cols,
        } => out.push(Dispatch {
            entry: "tensor_parallel_main",
            buffers: vec![src, bias.unwrap_or(dummy), dst],
            params: vec![
                d,
                u32_of(len, "values")?,
                u32_of(cols, "columns")?,
                u32::from(bias.is_some()),
            ],
            workgroups: elementwise(len)?,
        }),
    }
    Ok(())
}

/// Run a program in one submission; returns its outputs in order and the kernel time.
fn run(
    engine: &WgpuEngine,
    program: &Program<'_>,
    dtype: DType,
) -> Result<(Vec<Vec<f32>>, Duration, TimingSource), EngineError> {
    let mut buffers: Vec<BufferInit> = program
        .buffers
        .iter()
        .map(|b| match (&b.init, b.kind) {
            (Some(values), BufKind::Stored) => BufferInit::Words(encode_values(dtype, values)),
            (Some(values), BufKind::Index) => {
                BufferInit::Words(values.iter().map(|&v| v as u32).collect())
            }
            (Some(values), BufKind::F32) => {
                BufferInit::Words(values.iter().map(|v| v.to_bits()).collect())
            }
            (None, _) => BufferInit::Zeroed(b.len),
        })
        .collect();
    // Bound where a step has no bias (the shader reads it only when told there is one).
    let dummy = buffers.len();
    buffers.push(BufferInit::Zeroed(1));
    let max_dim = engine.max_workgroups();
    let mut list = Vec::new();
    for step in &program.steps {
        dispatches(step, dtype, dummy, max_dim, &mut list)?;
    }
    let mut read: Vec<BufId> = Vec::new();
    for o in &program.outputs {
        for id in o.from.buffers() {
            if !read.contains(&id) {
                read.push(id);
            }
        }
    }
    let ran = engine.run_dispatches(FILE, &buffers, &list, &read)?;
    let values: HashMap<BufId, Vec<f32>> = read
        .iter()
        .zip(ran.outputs)
        .map(|(&id, words)| (id, decode_values(dtype, &words)))
        .collect();
    let empty: Vec<f32> = Vec::new();
    let outputs = program
        .outputs
        .iter()
        .map(|o| {
            o.from
                .collect(|id| values.get(&id).unwrap_or(&empty).as_slice())
        })
        .collect();
    Ok((outputs, ran.kernel_time, ran.timing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_stay_within_the_limit() {
        assert_eq!(grid(0, 65535).unwrap(), (1, 1, 1));
        assert_eq!(grid(70_000, 65535).unwrap(), (65535, 2, 1));
        assert!(grid(65535 * 65535 + 1, 65535).is_err());
    }

    #[test]
    fn an_all_reduce_is_copy_accumulate_broadcast() {
        let step = Step::Collective {
            collective: Collective::AllReduce {
                op: ReduceOp::Max,
                len: 300,
            },
            inputs: vec![0, 1, 2],
            outputs: vec![3, 4, 5],
        };
        let mut list = Vec::new();
        dispatches(&step, DType::F32, 9, 65535, &mut list).unwrap();
        let entries: Vec<(&str, Vec<usize>)> =
            list.iter().map(|d| (d.entry, d.buffers.clone())).collect();
        assert_eq!(
            entries,
            vec![
                ("reduce_copy", vec![0, 3]),
                ("reduce_accumulate", vec![1, 3]),
                ("reduce_accumulate", vec![2, 3]),
                ("reduce_copy", vec![3, 4]),
                ("reduce_copy", vec![3, 5]),
            ]
        );
        assert_eq!(list[1].params, vec![300, 1]);
        assert_eq!(list[0].workgroups, (2, 1, 1));
    }
}
