//! rope_freqs and rope on the CUDA engine: `kernels/rope.cu`, one launch each.
//!
//! The host computes the frequency table once (`ops::rope::table_words`: 3 words per frequency)
//! and uploads it with the input and the positions (as i32); the kernels use a grid-stride loop
//! over the pairs (rope) or the (position, frequency) entries (rope_freqs). f16 and bf16 travel
//! as 16-bit patterns, as in the logits and softmax kernels.

use super::{CudaEngine, THREADS, failed, mib};
use crate::dtype::DType;
use crate::engine::{AuxOutput, EngineError, OpOutput, TimingSource};
use crate::ops::rope::{self, Geometry, Layout, RopeOp};
use crate::ops::{KernelVariant, OpRequest, Tensor};
use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits};
use std::time::Instant;

/// This engine's registration of the topic.
pub(crate) static TOPIC: super::CudaTopic = super::CudaTopic {
    topic: "rope",
    source: include_str!("../../../kernels/rope.cu"),
    entry_points: &[],
    has_fast_kernel,
    smoke: super::no_smoke,
    host: super::HostCode::Direct(run_request),
};

/// rope has the fast kernel (`rope_fast_*`, for the geometries it fits); rope_freqs has one.
fn has_fast_kernel(op: &crate::ops::Op) -> bool {
    matches!(op.get::<RopeOp>(), Some(RopeOp::Rope { .. }))
}

fn run_request(engine: &CudaEngine, req: &OpRequest) -> Result<OpOutput, EngineError> {
    execute(engine, req, crate::engine::topic_op::<RopeOp>(req)?)
}

fn execute(
    engine: &CudaEngine,
    req: &OpRequest,
    op: &RopeOp,
) -> Result<OpOutput, EngineError> {
    let started = Instant::now();
    let dtype = req.dtype;
    let suffix = match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::Bf16 => "bf16",
    };
    let precise = i32::from(op.precise_angles());
    match *op {
        RopeOp::RopeFreqs {
            dim,
            theta,
            rotary_fraction,
            ..
        } => {
            let freqs = rope::freq_table(theta, rope::rotated_dims(rotary_fraction, dim));
            let n_freq = freqs.len();
            let n_pos = req.x.len();
            let items = n_pos * n_freq;
            check_memory(
                engine,
                (n_freq + 2 * items) * dtype.size_bytes() + 4 * n_pos,
            )?;
            let func = engine.function("rope", &format!("rope_freqs_{suffix}"))?;
            let table = rope::table_words(&freqs);
            let positions = int_values(&req.x);
            let ((inv, cos, sin), kernel_time) = match dtype {
                DType::F32 => {
                    let (a, b, c, t) = freqs_on_device::<f32>(
                        engine, &func, &positions, &table, n_pos, n_freq, precise,
                    )?;
                    ((a, b, c), t)
                }
                DType::F16 | DType::Bf16 => {
                    let (a, b, c, t) = freqs_on_device::<u16>(
                        engine, &func, &positions, &table, n_pos, n_freq, precise,
                    )?;
                    (
                        (
                            dtype.decode_u16(&a),
                            dtype.decode_u16(&b),
                            dtype.decode_u16(&c),
                        ),
                        t,
                    )
                }
            };
            let mut shape = req.x.shape.clone();
            shape.push(n_freq);
            let mut out = OpOutput::new(
                vec![n_freq],
                dtype,
                inv,
                kernel_time,
                TimingSource::CudaEvents,
                started.elapsed(),
            );
            out.aux = vec![
                AuxOutput {
                    name: "cos".into(),
                    shape: shape.clone(),
                    values: cos,
                },
                AuxOutput {
                    name: "sin".into(),
                    shape,
                    values: sin,
                },
            ];
            Ok(out)
        }
        RopeOp::Rope { theta, .. } => {
            let g = rope::geometry(op, req)?;
            let freqs = rope::freq_table(theta, g.rot);
            check_memory(
                engine,
                (req.x.len() + g.out_len()) * dtype.size_bytes() + 4 * 2 * g.batch * g.seq,
            )?;
            let fast = req.kernel == KernelVariant::Fast && fast_fits(&g, dtype);
            let entry = if fast { "rope_fast" } else { "rope" };
            let func = engine.function("rope", &format!("{entry}_{suffix}"))?;
            let table = rope::table_words(&freqs);
            let positions = req
                .input("positions")
                .map(int_values)
                .unwrap_or_else(|| vec![0]);
            let block = req
                .input("block_positions")
                .map(int_values)
                .unwrap_or_else(|| vec![0]);
            let inputs = RopeInputs {
                g: &g,
                positions: &positions,
                block: &block,
                table: &table,
                precise,
                fast,
            };
            let (values, kernel_time) = match dtype {
                DType::F32 => rope_on_device::<f32>(engine, &func, &req.x.data, &inputs)?,
                DType::F16 | DType::Bf16 => {
                    let bits = dtype.encode_u16(&req.x.data);
                    let (out, t) = rope_on_device::<u16>(engine, &func, &bits, &inputs)?;
                    (dtype.decode_u16(&out), t)
                }
            };
            Ok(OpOutput::new(
                g.out_shape(),
                dtype,
                values,
                kernel_time,
                TimingSource::CudaEvents,
                started.elapsed(),
            ))
        }
    }
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

/// Integer inputs (exact integers held as f32, |p| <= 2^24) as i32.
fn int_values(t: &Tensor) -> Vec<i32> {
    t.data.iter().map(|&p| p as i32).collect()
}

/// Most values the kernels index with 32-bit unsigned integers (ops::MAX_ELEMENTS is 2^29).
fn count(n: usize, what: &str) -> Result<u32, EngineError> {
    u32::try_from(n).map_err(|_| {
        EngineError::Unsupported(format!("{n} {what} do not fit the kernels' 32-bit indices"))
    })
}

/// A grid-stride launch over `items` threads' worth of work.
fn config(engine: &CudaEngine, items: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (items.div_ceil(THREADS).clamp(1, engine.max_blocks()), 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The rope_freqs launch: (inv_freq, cos, sin) in the storage type, and the kernel time.
#[allow(clippy::type_complexity)]
fn freqs_on_device<T>(
    engine: &CudaEngine,
    func: &cudarc::driver::CudaFunction,
    positions: &[i32],
    table: &[u32],
    n_pos: usize,
    n_freq: usize,
    precise: i32,
) -> Result<(Vec<T>, Vec<T>, Vec<T>, std::time::Duration), EngineError>
where
    T: DeviceRepr + ValidAsZeroBits + Clone + Default + Unpin,
{
    let items = count(n_pos * n_freq, "table entries")?;
    let n_pos32 = count(n_pos, "positions")?;
    let n_freq32 = count(n_freq, "frequencies")?;
    let cfg = config(engine, items);
    type State<T> = (
        CudaSlice<i32>,
        CudaSlice<u32>,
        CudaSlice<T>,
        CudaSlice<T>,
        CudaSlice<T>,
    );
    let ((inv, cos, sin), time) = engine.timed(
        |stream| -> Result<State<T>, EngineError> {
            Ok((
                stream
                    .clone_htod(positions)
                    .map_err(failed("upload the positions"))?,
                stream
                    .clone_htod(table)
                    .map_err(failed("upload the frequency table"))?,
                stream
                    .alloc_zeros::<T>(n_freq)
                    .map_err(failed("allocate inv_freq"))?,
                stream
                    .alloc_zeros::<T>(n_pos * n_freq)
                    .map_err(failed("allocate the cos table"))?,
                stream
                    .alloc_zeros::<T>(n_pos * n_freq)
                    .map_err(failed("allocate the sin table"))?,
            ))
        },
        |stream, state| {
            let (pos, tab, inv, cos, sin) = state;
            let mut launch = stream.launch_builder(func);
            launch
                .arg(&*pos)
                .arg(&*tab)
                .arg(inv)
                .arg(cos)
                .arg(sin)
                .arg(&n_pos32)
                .arg(&n_freq32)
                .arg(&precise);
            // SAFETY: the arguments match `rope_freqs_*(const int* positions, const unsigned*
            // table, T* inv_freq, T* cos_out, T* sin_out, unsigned n_pos, unsigned n_freq, int
            // precise)`; positions holds n_pos values, table 3 * n_freq words, inv_freq n_freq and
            // the tables n_pos * n_freq elements of the kernel's storage type.
            unsafe { launch.launch(cfg) }.map_err(failed("launch the rope_freqs kernel"))?;
            Ok(())
        },
        |stream, (_, _, inv, cos, sin)| {
            Ok((
                stream
                    .clone_dtoh(&inv)
                    .map_err(failed("download inv_freq"))?,
                stream
                    .clone_dtoh(&cos)
                    .map_err(failed("download the cos table"))?,
                stream
                    .clone_dtoh(&sin)
                    .map_err(failed("download the sin table"))?,
            ))
        },
    )?;
    Ok((inv, cos, sin, time))
}

/// What the rope launch needs besides x.
struct RopeInputs<'a> {
    g: &'a Geometry,
    positions: &'a [i32],
    block: &'a [i32],
    table: &'a [u32],
    precise: i32,
    /// Run `rope_fast_*` (one block per token, angles once per token, 16-byte chunks).
    fast: bool,
}

/// Threads per block of `rope_fast_*` (`FAST_THREADS` in the kernel file) and the most
/// frequencies its shared table holds (`FAST_MAX_PAIRS`).
pub const FAST_THREADS: u32 = 256;
pub const FAST_MAX_PAIRS: usize = 512;

/// Whether the fast kernel can take this geometry: half_split or interleaved, and every 16-byte
/// chunk inside one half (half_split), whole pairs (interleaved) or the pass-through dims.
pub fn fast_fits(g: &Geometry, dtype: DType) -> bool {
    let per = 16 / dtype.size_bytes();
    let chunked = match g.layout {
        Layout::HalfSplit => (g.rot / 2).is_multiple_of(per),
        Layout::Interleaved => g.rot.is_multiple_of(per),
        Layout::Chatglm2d => false,
    };
    chunked
        && g.head_dim.is_multiple_of(per)
        && (g.head_dim - g.rot).is_multiple_of(per)
        && g.rot / 2 <= FAST_MAX_PAIRS
}

/// The rope launch: y in the storage type, and the kernel time.
fn rope_on_device<T>(
    engine: &CudaEngine,
    func: &cudarc::driver::CudaFunction,
    host_x: &[T],
    inputs: &RopeInputs<'_>,
) -> Result<(Vec<T>, std::time::Duration), EngineError>
where
    T: DeviceRepr + ValidAsZeroBits + Clone + Default + Unpin,
{
    let g = inputs.g;
    let items = count(g.batch * g.seq * g.heads * (g.head_dim / 2), "pairs")?;
    count(g.out_len().max(host_x.len()), "elements")?;
    let seq = count(g.seq, "positions per sequence")?;
    let heads = count(g.heads, "heads")?;
    let head_dim = count(g.head_dim, "head dims")?;
    let x_seq = count(g.x_seq, "positions per sequence")?;
    let rot = count(g.rot, "rotated dims")?;
    let layout = g.layout.code() as i32;
    let pos_rows = g.rows_code(g.positions);
    let block_rows = g.rows_code(g.block);
    let precise = inputs.precise;
    let out_len = g.out_len();
    let tokens = count(g.batch * g.seq, "tokens")?;
    let cfg = if inputs.fast {
        LaunchConfig {
            grid_dim: (tokens.clamp(1, engine.max_blocks()), 1, 1),
            block_dim: (FAST_THREADS, 1, 1),
            shared_mem_bytes: 0,
        }
    } else {
        config(engine, items)
    };
    let fast = inputs.fast;
    type State<T> = (
        CudaSlice<T>,
        CudaSlice<T>,
        CudaSlice<i32>,
        CudaSlice<i32>,
        CudaSlice<u32>,
    );
    engine.timed(
        |stream| -> Result<State<T>, EngineError> {
            Ok((
                stream.clone_htod(host_x).map_err(failed("upload x"))?,
                stream
                    .alloc_zeros::<T>(out_len)
                    .map_err(failed("allocate y"))?,
                stream
                    .clone_htod(inputs.positions)
                    .map_err(failed("upload the positions"))?,
                stream
                    .clone_htod(inputs.block)
                    .map_err(failed("upload the block positions"))?,
                stream
                    .clone_htod(inputs.table)
                    .map_err(failed("upload the frequency table"))?,
            ))
        },
        |stream, state| {
            let (x, y, pos, block, tab) = state;
            let mut launch = stream.launch_builder(func);
            if fast {
                launch
                    .arg(&*x)
                    .arg(y)
                    .arg(&*pos)
                    .arg(&*tab)
                    .arg(&tokens)
                    .arg(&seq)
                    .arg(&heads)
                    .arg(&head_dim)
                    .arg(&x_seq)
                    .arg(&rot)
                    .arg(&layout)
                    .arg(&pos_rows)
                    .arg(&precise);
                // SAFETY: the arguments match `rope_fast_*(const T* x, T* y, const int*
                // positions, const unsigned* table, unsigned tokens, unsigned seq, unsigned heads,
                // unsigned head_dim, unsigned x_seq, unsigned rot, int layout, unsigned pos_rows,
                // int precise)`; the buffers are the simple kernel's (below), and `fast_fits`
                // checked that every 16-byte chunk the kernel moves lies inside one head.
                unsafe { launch.launch(cfg) }.map_err(failed("launch the fast rope kernel"))?;
                return Ok(());
            }
            launch
                .arg(&*x)
                .arg(y)
                .arg(&*pos)
                .arg(&*block)
                .arg(&*tab)
                .arg(&items)
                .arg(&seq)
                .arg(&heads)
                .arg(&head_dim)
                .arg(&x_seq)
                .arg(&rot)
                .arg(&layout)
                .arg(&pos_rows)
                .arg(&block_rows)
                .arg(&precise);
            // SAFETY: the arguments match `rope_*(const T* x, T* y, const int* positions, const
            // int* block_positions, const unsigned* table, unsigned items, unsigned seq, unsigned
            // heads, unsigned head_dim, unsigned x_seq, unsigned rot, int layout, unsigned
            // pos_rows, unsigned block_rows, int precise)`; x holds batch * x_seq * heads *
            // head_dim elements and y batch * seq * heads * head_dim, the positions batch * seq
            // (or seq, or one unused value when rows is 0), the table 3 words per frequency.
            unsafe { launch.launch(cfg) }.map_err(failed("launch the rope kernel"))?;
            Ok(())
        },
        |stream, (_, y, _, _, _)| stream.clone_dtoh(&y).map_err(failed("download y")),
    )
}
