//! linear and the tensor-parallel ops on the CUDA engine: the rank program of
//! `src/ops/tensor_parallel.rs` as launches of `kernels/tensor_parallel.cu`.
//!
//! Every program buffer becomes one device allocation (inputs uploaded in the storage dtype; ids as
//! u32; intermediates f32). Each rank gets its own CUDA stream, forked from the engine's stream
//! after the uploads: a rank's compute steps run on its stream, so ranks overlap as they would on
//! separate GPUs. Before a collective (or finishing) the engine's stream waits for every rank
//! stream that has work in flight (an event recorded on the rank's stream, waited on by the main
//! one), runs the collective's kernels, and a rank stream waits for the main stream again before
//! its next step. The CUDA events around the whole program (`CudaEngine::timed`) give the kernel
//! time. Without a GPU this code is compiled but not run; NVRTC compiles the kernels in the tests.

use super::{CudaEngine, failed};
use crate::dtype::DType;
use crate::engine::{EngineError, OpOutput, TimingSource};
use crate::ops::tensor_parallel::{
    self as tp, BufId, BufKind, BufferSpec, Collective, Program, ReduceOp, Step, TpOp,
};
use crate::ops::{KernelVariant, OpRequest};
use cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, LaunchArgs, LaunchConfig, PushKernelArg,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FILE: &str = "tensor_parallel";

/// `THREADS` and `TILE` in the kernel file.
const THREADS: u32 = 256;
const TILE: u32 = 16;

/// Largest grid y dimension on every CUDA device (the GEMM puts row tiles there).
const MAX_GRID_Y: usize = 65_535;

/// This engine's registration of the topic.
pub(crate) static TOPIC: super::CudaTopic = super::CudaTopic {
    topic: "tensor_parallel",
    source: include_str!("../../../kernels/tensor_parallel.cu"),
    entry_points: &[],
    has_fast_kernel,
    smoke: super::no_smoke,
    host: super::HostCode::Direct(run_request),
};

/// The cross-entropy on one rank has the fused one-read kernel (`ce_fused_*`).
fn has_fast_kernel(op: &crate::ops::Op) -> bool {
    matches!(
        op.get::<TpOp>(),
        Some(TpOp::VocabParallelCrossEntropy { ranks: 1 })
    )
}

fn run_request(engine: &CudaEngine, req: &OpRequest) -> Result<OpOutput, EngineError> {
    execute(engine, req, crate::engine::topic_op::<TpOp>(req)?)
}

fn execute(
    engine: &CudaEngine,
    req: &OpRequest,
    op: &TpOp,
) -> Result<OpOutput, EngineError> {
    let started = Instant::now();
    if let TpOp::VocabParallelCrossEntropy { ranks: 1 } = op
        && req.kernel == KernelVariant::Fast
    {
        return fused_cross_entropy(engine, req, started);
    }
    let ((values, aux), kernel_time) =
        tp::run_and_assemble(op, req, |program| run(engine, &program, req.dtype))?;
    let out = OpOutput::new(
        req.output_shape(),
        req.dtype,
        values,
        kernel_time,
        TimingSource::CudaEvents,
        started.elapsed(),
    )
    .with_aux(aux);
    Ok(out)
}

/// A device buffer of one of the three element types.
enum DevBuf {
    F32(CudaSlice<f32>),
    U16(CudaSlice<u16>),
    U32(CudaSlice<u32>),
}

/// Push a buffer the kernel reads.
fn arg_in<'a, 'b: 'a>(launch: &mut LaunchArgs<'a>, buf: &'b DevBuf) {
    match buf {
        DevBuf::F32(s) => launch.arg(s),
        DevBuf::U16(s) => launch.arg(s),
        DevBuf::U32(s) => launch.arg(s),
    };
}

/// Push a buffer the kernel writes.
fn arg_out<'a, 'b: 'a>(launch: &mut LaunchArgs<'a>, buf: &'b mut DevBuf) {
    match buf {
        DevBuf::F32(s) => launch.arg(s),
        DevBuf::U16(s) => launch.arg(s),
        DevBuf::U32(s) => launch.arg(s),
    };
}

/// The kernels this run needs, by entry name.
struct Kernels(HashMap<&'static str, CudaFunction>);

impl Kernels {
    fn load(engine: &CudaEngine, dtype: DType) -> Result<Self, EngineError> {
        let suffix = match dtype {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
        };
        let mut map = HashMap::new();
        for base in [
            "linear_tiled",
            "embed_masked",
            "ce_local_max",
            "ce_predicted",
            "ce_sum_exp",
            // The output stage, named after the file.
            "tensor_parallel",
        ] {
            map.insert(base, engine.function(FILE, &format!("{base}_{suffix}"))?);
        }
        for name in [
            "ce_loss",
            "reduce_copy",
            "reduce_accumulate",
            "gather_columns",
        ] {
            map.insert(name, engine.function(FILE, name)?);
        }
        Ok(Kernels(map))
    }

    fn get(&self, name: &str) -> Result<&CudaFunction, EngineError> {
        self.0
            .get(name)
            .ok_or_else(|| EngineError::Failed(format!("kernel {name} is not loaded")))
    }
}

fn u32_of(v: usize, what: &str) -> Result<u32, EngineError> {
    u32::try_from(v).map_err(|_| {
        EngineError::Unsupported(format!("{v} {what} do not fit the kernels' 32-bit sizes"))
    })
}

/// A one-dimensional launch of `n` threads (grid-stride loops cover what the grid does not).
fn flat(n: usize, max_blocks: u32) -> LaunchConfig {
    let blocks = (n.div_ceil(THREADS as usize)).clamp(1, max_blocks as usize) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row (grid-stride over rows beyond the grid).
fn per_row(rows: usize, max_blocks: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.clamp(1, max_blocks as usize) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn bytes_of(b: &BufferSpec<'_>, dtype: DType) -> usize {
    let per = match b.kind {
        BufKind::Stored => dtype.size_bytes(),
        BufKind::F32 | BufKind::Index => 4,
    };
    b.len.max(1) * per
}

/// Allocate (and fill) one buffer on `stream`.
fn upload(
    stream: &Arc<CudaStream>,
    b: &BufferSpec<'_>,
    dtype: DType,
) -> Result<DevBuf, EngineError> {
    let len = b.len.max(1); // no zero-sized allocations
    let up = failed("upload an input");
    let alloc = failed("allocate a buffer");
    // An empty input is allocated like an empty output: one zero element, never read.
    let init = b.init.as_ref().filter(|values| !values.is_empty());
    Ok(match (b.kind, init) {
        (BufKind::Stored, Some(values)) if dtype == DType::F32 => {
            DevBuf::F32(stream.clone_htod(values.as_ref()).map_err(up)?)
        }
        (BufKind::Stored, Some(values)) => {
            DevBuf::U16(stream.clone_htod(&dtype.encode_u16(values)).map_err(up)?)
        }
        (BufKind::Stored, None) if dtype == DType::F32 => {
            DevBuf::F32(stream.alloc_zeros::<f32>(len).map_err(alloc)?)
        }
        (BufKind::Stored, None) => DevBuf::U16(stream.alloc_zeros::<u16>(len).map_err(alloc)?),
        (BufKind::Index, Some(values)) => {
            let ids: Vec<u32> = values.iter().map(|&v| v as u32).collect();
            DevBuf::U32(stream.clone_htod(&ids).map_err(up)?)
        }
        (BufKind::Index, None) => DevBuf::U32(stream.alloc_zeros::<u32>(len).map_err(alloc)?),
        (BufKind::F32, Some(values)) => {
            DevBuf::F32(stream.clone_htod(values.as_ref()).map_err(up)?)
        }
        (BufKind::F32, None) => DevBuf::F32(stream.alloc_zeros::<f32>(len).map_err(alloc)?),
    })
}

/// Device state of one run: the buffers (taken out while a kernel writes one), a dummy bias,
/// and one stream per rank.
struct State {
    bufs: Vec<Option<DevBuf>>,
    dummy: DevBuf,
    ranks: Vec<Arc<CudaStream>>,
}

impl State {
    fn buf(&self, id: BufId) -> Result<&DevBuf, EngineError> {
        self.bufs
            .get(id)
            .and_then(Option::as_ref)
            .ok_or_else(|| EngineError::Failed(format!("buffer {id} is not available")))
    }

    fn take(&mut self, id: BufId) -> Result<DevBuf, EngineError> {
        self.bufs
            .get_mut(id)
            .and_then(Option::take)
            .ok_or_else(|| EngineError::Failed(format!("buffer {id} is not available")))
    }
}

/// Run a program: uploads, every step (ranks on their streams, collectives on the engine's
/// stream), downloads. Returns the outputs in order and the time between the CUDA events.
fn run(
    engine: &CudaEngine,
    program: &Program<'_>,
    dtype: DType,
) -> Result<(Vec<Vec<f32>>, Duration), EngineError> {
    let needed: usize = program.buffers.iter().map(|b| bytes_of(b, dtype)).sum();
    let (free, total) = engine.memory()?;
    if needed > free {
        return Err(EngineError::Unsupported(format!(
            "the {} ranks' buffers need {:.1} MiB of device memory, but only {:.1} of {:.1} MiB is free",
            program.ranks,
            needed as f64 / 1048576.0,
            free as f64 / 1048576.0,
            total as f64 / 1048576.0
        )));
    }
    let kernels = Kernels::load(engine, dtype)?;
    let max_blocks = engine.max_blocks();
    let mut read: Vec<BufId> = Vec::new();
    for o in &program.outputs {
        for id in o.from.buffers() {
            if !read.contains(&id) {
                read.push(id);
            }
        }
    }
    let (values, time) = engine.timed(
        |stream| {
            let bufs = program
                .buffers
                .iter()
                .map(|b| upload(stream, b, dtype).map(Some))
                .collect::<Result<Vec<_>, _>>()?;
            let dummy = if dtype == DType::F32 {
                DevBuf::F32(
                    stream
                        .alloc_zeros::<f32>(1)
                        .map_err(failed("allocate a buffer"))?,
                )
            } else {
                DevBuf::U16(
                    stream
                        .alloc_zeros::<u16>(1)
                        .map_err(failed("allocate a buffer"))?,
                )
            };
            // One stream per rank, from the engine's context (as one per device would be).
            let ranks = (0..program.ranks)
                .map(|_| {
                    engine
                        .context()
                        .new_stream()
                        .map_err(failed("create a rank's stream"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(State { bufs, dummy, ranks })
        },
        |main, state| {
            // Which rank streams have work the main stream has not waited for, and which have not
            // yet waited for the main stream's latest work (the start event, a collective).
            let k = state.ranks.len();
            let mut pending = vec![false; k];
            let mut behind = vec![true; k];
            for step in &program.steps {
                match step.rank() {
                    Some(r) => {
                        let stream = Arc::clone(&state.ranks[r]);
                        if behind[r] {
                            stream
                                .join(main)
                                .map_err(failed("make a rank wait for the collective"))?;
                            behind[r] = false;
                        }
                        launch_step(&kernels, &stream, step, state, max_blocks)?;
                        pending[r] = true;
                    }
                    None => {
                        for (r, p) in pending.iter_mut().enumerate() {
                            if *p {
                                main.join(&state.ranks[r])
                                    .map_err(failed("join a rank's stream"))?;
                                *p = false;
                            }
                        }
                        launch_step(&kernels, main, step, state, max_blocks)?;
                        behind.fill(true);
                    }
                }
            }
            for (r, p) in pending.iter().enumerate() {
                if *p {
                    main.join(&state.ranks[r])
                        .map_err(failed("join a rank's stream"))?;
                }
            }
            Ok(())
        },
        |main, state| {
            let mut values: HashMap<BufId, Vec<f32>> = HashMap::new();
            for &id in &read {
                let len = program.buffers[id].len;
                let mut v = match state.buf(id)? {
                    DevBuf::F32(s) => main.clone_dtoh(s).map_err(failed("download an output"))?,
                    DevBuf::U16(s) => {
                        dtype.decode_u16(&main.clone_dtoh(s).map_err(failed("download an output"))?)
                    }
                    DevBuf::U32(_) => {
                        return Err(EngineError::Failed("an output buffer holds ids".into()));
                    }
                };
                v.truncate(len);
                values.insert(id, v);
            }
            Ok(values)
        },
    )?;
    let empty: Vec<f32> = Vec::new();
    let outputs = program
        .outputs
        .iter()
        .map(|o| {
            o.from
                .collect(|id| values.get(&id).unwrap_or(&empty).as_slice())
        })
        .collect();
    Ok((outputs, time))
}

/// Launch the kernels of one step on `stream`.
fn launch_step(
    kernels: &Kernels,
    stream: &Arc<CudaStream>,
    step: &Step,
    state: &mut State,
    max_blocks: u32,
) -> Result<(), EngineError> {
    match *step {
        Step::Linear {
            x,
            w,
            b,
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
            let cfg = LaunchConfig {
                grid_dim: (out32.div_ceil(TILE).max(1), row_tiles as u32, 1),
                block_dim: (TILE, TILE, 1),
                shared_mem_bytes: 0,
            };
            let has_bias = i32::from(b.is_some());
            let mut yb = state.take(y)?;
            let f = kernels.get("linear_tiled")?;
            {
                let mut launch = stream.launch_builder(f);
                arg_in(&mut launch, state.buf(x)?);
                arg_in(&mut launch, state.buf(w)?);
                arg_in(
                    &mut launch,
                    match b {
                        Some(b) => state.buf(b)?,
                        None => &state.dummy,
                    },
                );
                arg_out(&mut launch, &mut yb);
                launch.arg(&rows32).arg(&inner32).arg(&out32).arg(&has_bias);
                // SAFETY: the arguments match `linear_tiled_*(const T* x, const T* w, const T* b,
                // float* y, unsigned rows, unsigned inner, unsigned out, int has_bias)`; x holds
                // rows*inner, w out*inner, b out (or a dummy, unread), y rows*out elements.
                unsafe { launch.launch(cfg) }.map_err(failed("launch linear_tiled"))?;
            }
            state.bufs[y] = Some(yb);
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
        } => {
            let (n32, h32, s32, c32) = (
                u32_of(n, "ids")?,
                u32_of(h, "columns")?,
                u32_of(start, "ids")?,
                u32_of(count, "rows")?,
            );
            let mut yb = state.take(y)?;
            {
                let mut launch = stream.launch_builder(kernels.get("embed_masked")?);
                arg_in(&mut launch, state.buf(ids)?);
                arg_in(&mut launch, state.buf(table)?);
                arg_out(&mut launch, &mut yb);
                launch.arg(&n32).arg(&h32).arg(&s32).arg(&c32);
                // SAFETY: matches `embed_masked_*(const unsigned* ids, const T* table, float* y,
                // unsigned n, unsigned h, unsigned start, unsigned count)`; ids holds n, table
                // count*h, y n*h elements.
                unsafe { launch.launch(flat(n * h, max_blocks)) }
                    .map_err(failed("launch embed_masked"))?;
            }
            state.bufs[y] = Some(yb);
        }
        Step::LocalMax {
            x, out, rows, cols, ..
        } => {
            let (r32, c32) = (u32_of(rows, "rows")?, u32_of(cols, "columns")?);
            let mut ob = state.take(out)?;
            {
                let mut launch = stream.launch_builder(kernels.get("ce_local_max")?);
                arg_in(&mut launch, state.buf(x)?);
                arg_out(&mut launch, &mut ob);
                launch.arg(&r32).arg(&c32);
                // SAFETY: matches `ce_local_max_*(const T* x, float* out, unsigned rows, unsigned
                // cols)`; x holds rows*cols, out rows elements.
                unsafe { launch.launch(per_row(rows, max_blocks)) }
                    .map_err(failed("launch ce_local_max"))?;
            }
            state.bufs[out] = Some(ob);
        }
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
            let (r32, c32, s32) = (
                u32_of(rows, "rows")?,
                u32_of(cols, "columns")?,
                u32_of(start, "columns")?,
            );
            let mut ob = state.take(out)?;
            {
                let mut launch = stream.launch_builder(kernels.get("ce_predicted")?);
                arg_in(&mut launch, state.buf(x)?);
                arg_in(&mut launch, state.buf(targets)?);
                arg_in(&mut launch, state.buf(max)?);
                arg_out(&mut launch, &mut ob);
                launch.arg(&r32).arg(&c32).arg(&s32);
                // SAFETY: matches `ce_predicted_*(const T* x, const unsigned* targets, const float*
                // max, float* out, unsigned rows, unsigned cols, unsigned start)`; x holds
                // rows*cols, the others rows elements.
                unsafe { launch.launch(flat(rows, max_blocks)) }
                    .map_err(failed("launch ce_predicted"))?;
            }
            state.bufs[out] = Some(ob);
        }
        Step::SumExp {
            x,
            max,
            out,
            rows,
            cols,
            ..
        } => {
            let (r32, c32) = (u32_of(rows, "rows")?, u32_of(cols, "columns")?);
            let mut ob = state.take(out)?;
            {
                let mut launch = stream.launch_builder(kernels.get("ce_sum_exp")?);
                arg_in(&mut launch, state.buf(x)?);
                arg_in(&mut launch, state.buf(max)?);
                arg_out(&mut launch, &mut ob);
                launch.arg(&r32).arg(&c32);
                // SAFETY: matches `ce_sum_exp_*(const T* x, const float* max, float* out, unsigned
                // rows, unsigned cols)`; x holds rows*cols, max and out rows elements.
                unsafe { launch.launch(per_row(rows, max_blocks)) }
                    .map_err(failed("launch ce_sum_exp"))?;
            }
            state.bufs[out] = Some(ob);
        }
        Step::Loss {
            sum_exp,
            predicted,
            out,
            rows,
            ..
        } => {
            let r32 = u32_of(rows, "rows")?;
            let mut ob = state.take(out)?;
            {
                let mut launch = stream.launch_builder(kernels.get("ce_loss")?);
                arg_in(&mut launch, state.buf(sum_exp)?);
                arg_in(&mut launch, state.buf(predicted)?);
                arg_out(&mut launch, &mut ob);
                launch.arg(&r32);
                // SAFETY: matches `ce_loss(const float* sum_exp, const float* predicted, float* out,
                // unsigned rows)`; every buffer holds rows f32 values.
                unsafe { launch.launch(flat(rows, max_blocks)) }
                    .map_err(failed("launch ce_loss"))?;
            }
            state.bufs[out] = Some(ob);
        }
        Step::Collective {
            collective,
            ref inputs,
            ref outputs,
        } => match collective {
            Collective::AllReduce { op, len } => {
                let n32 = u32_of(len, "values")?;
                let cfg = flat(len, max_blocks);
                let code: i32 = match op {
                    ReduceOp::Sum => 0,
                    ReduceOp::Max => 1,
                };
                let mut acc = state.take(outputs[0])?;
                copy(kernels, stream, state.buf(inputs[0])?, &mut acc, n32, cfg)?;
                for &src in &inputs[1..] {
                    let mut launch = stream.launch_builder(kernels.get("reduce_accumulate")?);
                    arg_in(&mut launch, state.buf(src)?);
                    arg_out(&mut launch, &mut acc);
                    launch.arg(&n32).arg(&code);
                    // SAFETY: matches `reduce_accumulate(const float* src, float* acc, unsigned n,
                    // int op)`; both buffers hold n f32 values.
                    unsafe { launch.launch(cfg) }.map_err(failed("launch reduce_accumulate"))?;
                }
                for &dst in &outputs[1..] {
                    let mut d = state.take(dst)?;
                    copy(kernels, stream, &acc, &mut d, n32, cfg)?;
                    state.bufs[dst] = Some(d);
                }
                state.bufs[outputs[0]] = Some(acc);
            }
            Collective::AllGather { rows, chunk } => {
                let (r32, c32) = (u32_of(rows, "rows")?, u32_of(chunk, "columns")?);
                let k32 = u32_of(inputs.len(), "ranks")?;
                let cfg = flat(rows * chunk, max_blocks);
                for &dst in outputs {
                    let mut d = state.take(dst)?;
                    for (s, &src) in inputs.iter().enumerate() {
                        let s32 = s as u32;
                        let mut launch = stream.launch_builder(kernels.get("gather_columns")?);
                        arg_in(&mut launch, state.buf(src)?);
                        arg_out(&mut launch, &mut d);
                        launch.arg(&r32).arg(&c32).arg(&k32).arg(&s32);
                        // SAFETY: matches `gather_columns(const float* src, float* dst, unsigned
                        // rows, unsigned chunk, unsigned ranks, unsigned rank)`; src holds
                        // rows*chunk, dst rows*ranks*chunk f32 values.
                        unsafe { launch.launch(cfg) }.map_err(failed("launch gather_columns"))?;
                    }
                    state.bufs[dst] = Some(d);
                }
            }
        },
        Step::Finish {
            src,
            bias,
            dst,
            len,
            cols,
        } => {
            let (n32, c32) = (u32_of(len, "values")?, u32_of(cols, "columns")?);
            let has_bias = i32::from(bias.is_some());
            let mut d = state.take(dst)?;
            {
                let mut launch = stream.launch_builder(kernels.get("tensor_parallel")?);
                arg_in(&mut launch, state.buf(src)?);
                arg_in(
                    &mut launch,
                    match bias {
                        Some(b) => state.buf(b)?,
                        None => &state.dummy,
                    },
                );
                arg_out(&mut launch, &mut d);
                launch.arg(&n32).arg(&c32).arg(&has_bias);
                // SAFETY: matches `tensor_parallel_*(const float* src, const T* bias, T* dst, unsigned n,
                // unsigned cols, int has_bias)`; src and dst hold n elements, bias cols (or a
                // dummy, unread).
                unsafe { launch.launch(flat(len, max_blocks)) }
                    .map_err(failed("launch the output stage"))?;
            }
            state.bufs[dst] = Some(d);
        }
    }
    Ok(())
}

/// dst = src (n f32 values), one step of an all-reduce.
fn copy(
    kernels: &Kernels,
    stream: &Arc<CudaStream>,
    src: &DevBuf,
    dst: &mut DevBuf,
    n: u32,
    cfg: LaunchConfig,
) -> Result<(), EngineError> {
    let mut launch = stream.launch_builder(kernels.get("reduce_copy")?);
    arg_in(&mut launch, src);
    arg_out(&mut launch, dst);
    launch.arg(&n);
    // SAFETY: matches `reduce_copy(const float* src, float* dst, unsigned n)`; both hold n f32
    // values.
    unsafe { launch.launch(cfg) }.map_err(failed("launch reduce_copy"))?;
    Ok(())
}

/// Threads per block of `ce_fused_*` (`CE_THREADS` in the kernel file).
const CE_THREADS: u32 = 512;

/// vocab_parallel_cross_entropy on one rank with the fast kernel: `ce_fused_*` reads every logit
/// once (online max and sum-exp) and writes the row's loss, max, predicted logit and sum-exp. The
/// outputs are the four-step program's (`local_*` equal the global values at k = 1, and `unsplit`
/// is the loss itself), each rounded once to the dtype as the program's finish step does.
fn fused_cross_entropy(
    engine: &CudaEngine,
    req: &OpRequest,
    started: Instant,
) -> Result<OpOutput, EngineError> {
    let dtype = req.dtype;
    let (rows, cols) = (req.x.rows(), req.x.cols());
    let rows32 = u32_of(rows, "rows")?;
    let cols32 = u32_of(cols, "columns")?;
    u32_of(req.x.len(), "logits")?;
    let needed = req.x.len() * dtype.size_bytes() + rows * (4 + dtype.size_bytes() + 3 * 4);
    let (free, total) = engine.memory()?;
    if needed > free {
        return Err(EngineError::Unsupported(format!(
            "the logits need {:.1} MiB of device memory, but only {:.1} of {:.1} MiB is free",
            needed as f64 / 1048576.0,
            free as f64 / 1048576.0,
            total as f64 / 1048576.0
        )));
    }
    let suffix = match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::Bf16 => "bf16",
    };
    let func = engine.function(FILE, &format!("ce_fused_{suffix}"))?;
    let targets: Vec<u32> = req
        .input("targets")
        .map(|t| t.data.iter().map(|&v| v as u32).collect())
        .ok_or_else(|| EngineError::Failed("cross-entropy without targets".into()))?;
    let cfg = LaunchConfig {
        grid_dim: (rows32.clamp(1, engine.max_blocks()), 1, 1),
        block_dim: (CE_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let ((loss, max, predicted, sum), kernel_time) = engine.timed(
        |stream| {
            let x = upload(
                stream,
                &BufferSpec {
                    label: "logits",
                    rank: Some(0),
                    kind: BufKind::Stored,
                    len: req.x.len(),
                    init: Some(std::borrow::Cow::Borrowed(req.x.data.as_slice())),
                },
                dtype,
            )?;
            let zeros = |n: usize| {
                stream
                    .alloc_zeros::<f32>(n.max(1))
                    .map_err(failed("allocate a buffer"))
            };
            let loss = if dtype == DType::F32 {
                DevBuf::F32(zeros(rows)?)
            } else {
                DevBuf::U16(
                    stream
                        .alloc_zeros::<u16>(rows.max(1))
                        .map_err(failed("allocate the loss"))?,
                )
            };
            let t = stream
                .clone_htod(&targets)
                .map_err(failed("upload the targets"))?;
            Ok((x, t, loss, zeros(rows)?, zeros(rows)?, zeros(rows)?))
        },
        |stream, (x, t, loss, max, predicted, sum)| {
            let mut launch = stream.launch_builder(&func);
            arg_in(&mut launch, x);
            launch.arg(&*t);
            arg_out(&mut launch, loss);
            launch
                .arg(max)
                .arg(predicted)
                .arg(sum)
                .arg(&rows32)
                .arg(&cols32);
            // SAFETY: the arguments match `ce_fused_*(const T* x, const unsigned* targets, T*
            // loss, float* max_out, float* predicted_out, float* sum_out, unsigned rows, unsigned
            // cols)`: x holds rows * cols logits of the storage type, targets rows ids below cols
            // (checked by the op), loss rows values of the storage type, the others rows f32.
            unsafe { launch.launch(cfg) }.map_err(failed("launch the fused cross-entropy"))?;
            Ok(())
        },
        |stream, (_, _, loss, max, predicted, sum)| {
            let down = |b: &CudaSlice<f32>| -> Result<Vec<f32>, EngineError> {
                let mut v = stream.clone_dtoh(b).map_err(failed("download a result"))?;
                v.truncate(rows);
                Ok(v)
            };
            let mut loss = match &loss {
                DevBuf::F32(b) => down(b)?,
                DevBuf::U16(b) => {
                    dtype.decode_u16(&stream.clone_dtoh(b).map_err(failed("download the loss"))?)
                }
                DevBuf::U32(_) => Vec::new(),
            };
            loss.truncate(rows);
            Ok((loss, down(&max)?, down(&predicted)?, down(&sum)?))
        },
    )?;
    let round = |v: Vec<f32>| -> Vec<f32> { v.into_iter().map(|x| dtype.round(x)).collect() };
    let (max, predicted, sum) = (round(max), round(predicted), round(sum));
    let n = vec![rows];
    let aux = [
        ("local_max", vec![1, rows], max.clone()),
        ("local_sum_exp", vec![1, rows], sum.clone()),
        ("max", n.clone(), max),
        ("predicted", n.clone(), predicted),
        ("sum_exp", n.clone(), sum),
        ("unsplit", req.output_shape(), loss.clone()),
    ];
    Ok(OpOutput::new(
        req.output_shape(),
        dtype,
        loss,
        kernel_time,
        TimingSource::CudaEvents,
        started.elapsed(),
    )
    .with_aux(
        aux.into_iter()
            .map(|(name, shape, values)| (name.to_string(), shape, values))
            .collect(),
    ))
}
