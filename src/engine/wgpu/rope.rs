//! rope_freqs and rope on the wgpu engine: `shaders/rope.wgsl`, one dispatch each.
//!
//! Buffers (the shader's bindings, shared by both entry points): 0 the parameters (u32 words, in
//! the order of the shader's `P_*` indices), 1 the input (x, or rope_freqs' positions), 2 the
//! output, 3 the frequency table (3 words per frequency, `ops::rope::table_words`), and for
//! rope 4 the positions and 5 the block positions (i32 bits; one unused word when absent).
//! rope_freqs's output buffer holds inv_freq, then the cos table, then the sin table.

use super::{BufferInit, Dispatch, WgpuEngine, decode_values, encode_values};
use crate::dtype::DType;
use crate::engine::{AuxOutput, EngineError, OpOutput};
use crate::ops::rope::{self, RopeOp};
use crate::ops::{OpRequest, Tensor};
use std::time::Instant;

/// Invocations per workgroup (`@workgroup_size(256)` in the shader).
const WORKGROUP_SIZE: usize = 256;

/// This engine's registration of the topic: one shader per op.
pub(crate) static TOPIC: super::WgpuTopic = super::WgpuTopic {
    topic: "rope",
    source: include_str!("../../../shaders/rope.wgsl"),
    probe_entries: &[],
    has_fast_kernel: super::one_kernel,
    supports: super::supported_when_run,
    execute: run_request,
};

fn run_request(engine: &WgpuEngine, req: &OpRequest) -> Result<OpOutput, EngineError> {
    execute(engine, req, crate::engine::topic_op::<RopeOp>(req)?)
}

fn execute(
    engine: &WgpuEngine,
    req: &OpRequest,
    op: &RopeOp,
) -> Result<OpOutput, EngineError> {
    let start = Instant::now();
    let dtype = req.dtype;
    let dtype_code = match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::Bf16 => 2,
    };
    let precise = u32::from(op.precise_angles());
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
            let mut params = vec![0u32; 14];
            params[0] = dtype_code;
            params[1] = precise;
            params[2] = word(items, "table entries")?;
            params[12] = word(n_freq, "frequencies")?;
            params[13] = word(n_pos, "positions")?;
            let buffers = [
                BufferInit::Words(params),
                BufferInit::Words(int_words(&req.x)),
                BufferInit::Zeroed(n_freq + 2 * items),
                BufferInit::Words(rope::table_words(&freqs)),
            ];
            let dispatch = Dispatch {
                entry: "rope_freqs_main",
                buffers: vec![0, 1, 2, 3],
                params: Vec::new(),
                workgroups: grid(engine, items)?,
            };
            let run = engine.run_dispatches("rope", &buffers, &[dispatch], &[2])?;
            let words = run.outputs.into_iter().next().unwrap_or_default();
            if words.len() != n_freq + 2 * items {
                return Err(EngineError::Failed(format!(
                    "read back {} words for {} table entries",
                    words.len(),
                    n_freq + 2 * items
                )));
            }
            let values = decode_values(dtype, &words);
            let mut shape = req.x.shape.clone();
            shape.push(n_freq);
            let mut out = OpOutput::new(
                vec![n_freq],
                dtype,
                values[..n_freq].to_vec(),
                run.kernel_time,
                run.timing,
                start.elapsed(),
            );
            out.aux = vec![
                AuxOutput {
                    name: "cos".into(),
                    shape: shape.clone(),
                    values: values[n_freq..n_freq + items].to_vec(),
                },
                AuxOutput {
                    name: "sin".into(),
                    shape,
                    values: values[n_freq + items..].to_vec(),
                },
            ];
            Ok(out)
        }
        RopeOp::Rope { theta, .. } => {
            let g = rope::geometry(op, req)?;
            let freqs = rope::freq_table(theta, g.rot);
            let items = g.batch * g.seq * g.heads * (g.head_dim / 2);
            let params = vec![
                dtype_code,
                precise,
                word(items, "pairs")?,
                word(g.batch, "batch")?,
                word(g.seq, "seq")?,
                word(g.heads, "heads")?,
                word(g.head_dim, "head_dim")?,
                word(g.x_seq, "seq")?,
                word(g.rot, "rotated dims")?,
                g.layout.code(),
                g.rows_code(g.positions),
                g.rows_code(g.block),
                word(g.n_freq(), "frequencies")?,
                0,
            ];
            let positions = |name: &str| match req.input(name) {
                Some(t) => BufferInit::Words(int_words(t)),
                None => BufferInit::Words(vec![0]), // unused: the shader reads it only when given
            };
            let buffers = [
                BufferInit::Words(params),
                BufferInit::Words(encode_values(dtype, &req.x.data)),
                BufferInit::Zeroed(g.out_len()),
                BufferInit::Words(rope::table_words(&freqs)),
                positions("positions"),
                positions("block_positions"),
            ];
            let dispatch = Dispatch {
                entry: "rope_main",
                buffers: vec![0, 1, 2, 3, 4, 5],
                params: Vec::new(),
                workgroups: grid(engine, items)?,
            };
            let run = engine.run_dispatches("rope", &buffers, &[dispatch], &[2])?;
            let words = run.outputs.into_iter().next().unwrap_or_default();
            if words.len() != g.out_len() {
                return Err(EngineError::Failed(format!(
                    "read back {} values for an output of {}",
                    words.len(),
                    g.out_len()
                )));
            }
            Ok(OpOutput::new(
                g.out_shape(),
                dtype,
                decode_values(dtype, &words),
                run.kernel_time,
                run.timing,
                start.elapsed(),
            ))
        }
    }
}

/// A count as a shader word, or why it does not fit.
fn word(n: usize, what: &str) -> Result<u32, EngineError> {
    u32::try_from(n).map_err(|_| {
        EngineError::Unsupported(format!("{n} {what} do not fit the shader's 32-bit indices"))
    })
}

/// Integer inputs (exact integers held as f32, |p| <= 2^24) as i32 bits.
fn int_words(t: &Tensor) -> Vec<u32> {
    t.data.iter().map(|&p| (p as i32) as u32).collect()
}

/// Workgroups for `items` invocations: one line, or a 2D grid past the per-dimension limit.
fn grid(engine: &WgpuEngine, items: usize) -> Result<(u32, u32, u32), EngineError> {
    let groups = word(items.div_ceil(WORKGROUP_SIZE).max(1), "workgroups")?;
    let max = engine.max_workgroups();
    if groups <= max {
        return Ok((groups, 1, 1));
    }
    let lines = groups.div_ceil(max);
    if lines > max {
        return Err(EngineError::Unsupported(format!(
            "{groups} workgroups exceed this adapter's {max} x {max} grid"
        )));
    }
    Ok((max, lines, 1))
}
