//! gumbel_noise and gumbel_softmax on the wgpu engine: `shaders/gumbel.wgsl`, one dispatch each.
//!
//! Every entry point that draws noise reads the logarithm table of the noise
//! ([`gm::ln_table_words`], uploaded from the Rust constants) at binding 0.
//!
//! - gumbel_noise: `gumbel_main`, one invocation per Philox call (4 columns of a row);
//!   buffers: 0 the table, 1 the noise (out), uniform `NoiseParams`.
//! - gumbel_softmax: rows of K <= [`SHORT_K`] classes run `gumbel_softmax_short` (one invocation
//!   per sample row, so 20 000 draws of 5 classes are 79 workgroups, not 20 000); longer rows run
//!   `gumbel_softmax_rows` (one workgroup of 256 per sample row, tree reductions; the perturbed
//!   logits wait in the output buffer between its passes). Buffers: 0 the table, 1 the logits,
//!   2 the output, 3 the soft sample (hard mode with `return_soft`; one unused word otherwise),
//!   uniform `SampleParams`. A hard sample without the soft one skips the exponentials. There is
//!   one WGSL kernel: [`crate::ops::KernelVariant`] makes no difference here.
//!
//! [`WgpuEngine::philox4x32`] and [`WgpuEngine::gumbel_words`] run the shader's test entry points,
//! so tests can compare the WGSL generator with Random123's vectors and with the Rust map, bit for
//! bit.

use super::{BufferInit, Dispatch, WgpuEngine, decode_values, encode_values};
use crate::dtype::DType;
use crate::engine::{AuxOutput, EngineError, OpOutput};
use crate::ops::OpRequest;
use crate::ops::gumbel::{self as gm, GumbelOp};
use std::time::Instant;

/// Invocations per workgroup in the shader's entry points.
const WORKGROUP_SIZE: usize = 256;

/// Rows of at most this many classes take the one-invocation-per-row path (`SHORT_K` in the
/// shader, which keeps a row in an array of this size).
pub const SHORT_K: usize = 64;

fn dtype_code(dtype: DType) -> u32 {
    match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::Bf16 => 2,
    }
}

/// A count as a shader word, or why it does not fit.
fn word(v: usize, what: &str) -> Result<u32, EngineError> {
    u32::try_from(v).map_err(|_| {
        EngineError::Unsupported(format!("{v} {what} do not fit the shader's 32-bit indices"))
    })
}

/// A grid of `groups` workgroups: one line up to the adapter's per-dimension limit, then 2D (the
/// shader flattens it back).
fn grid(engine: &WgpuEngine, groups: usize) -> Result<(u32, u32, u32), EngineError> {
    let max = engine.max_workgroups() as usize;
    let groups = groups.max(1);
    if groups <= max {
        return Ok((groups as u32, 1, 1));
    }
    let lines = groups.div_ceil(max);
    if lines > max {
        return Err(EngineError::Unsupported(format!(
            "{groups} workgroups exceed this adapter's {max} x {max} grid"
        )));
    }
    Ok((max as u32, lines as u32, 1))
}

/// This engine's registration of the topic: one shader per op.
pub(crate) static TOPIC: super::WgpuTopic = super::WgpuTopic {
    topic: "gumbel",
    source: include_str!("../../../shaders/gumbel.wgsl"),
    probe_entries: &[],
    has_fast_kernel: super::one_kernel,
    supports: super::supported_when_run,
    execute: run_request,
};

fn run_request(engine: &WgpuEngine, req: &OpRequest) -> Result<OpOutput, EngineError> {
    execute(engine, req, crate::engine::topic_op::<GumbelOp>(req)?)
}

fn execute(
    engine: &WgpuEngine,
    req: &OpRequest,
    op: &GumbelOp,
) -> Result<OpOutput, EngineError> {
    let start = Instant::now();
    let dtype = req.dtype;
    let shape = req.output_shape();
    let n: usize = shape.iter().product();
    let cols = req.x.cols();
    let groups = cols.div_ceil(4);
    let key = gm::key_of(op.seed());
    let offset = op.offset();
    let (off0, off1) = (offset as u32, (offset >> 32) as u32);
    match *op {
        GumbelOp::GumbelNoise { .. } => {
            let rows = req.x.rows();
            let calls = rows * groups;
            let params = vec![
                word(rows, "rows")?,
                word(cols, "columns")?,
                word(groups, "Philox calls per row")?,
                dtype_code(dtype),
                key[0],
                key[1],
                off0,
                off1,
            ];
            let dispatch = Dispatch {
                entry: "gumbel_main",
                buffers: vec![0, 1],
                params,
                workgroups: grid(engine, calls.div_ceil(WORKGROUP_SIZE))?,
            };
            let buffers = [
                BufferInit::Words(gm::ln_table_words()),
                BufferInit::Zeroed(n),
            ];
            let run = engine.run_dispatches("gumbel", &buffers, &[dispatch], &[1])?;
            let words = run.outputs.into_iter().next().unwrap_or_default();
            Ok(OpOutput::new(
                shape,
                dtype,
                decode_values(dtype, &words),
                run.kernel_time,
                run.timing,
                start.elapsed(),
            ))
        }
        GumbelOp::GumbelSoftmax {
            tau, hard, draws, ..
        } => {
            let want_soft = op.soft_aux();
            let samples = req.x.rows() * draws;
            let short = cols <= SHORT_K;
            let params = vec![
                word(req.x.rows(), "rows")?,
                word(cols, "classes")?,
                word(draws, "draws")?,
                word(samples, "samples")?,
                word(groups, "Philox calls per row")?,
                dtype_code(dtype),
                u32::from(hard),
                gm::inv_tau_f32(tau).to_bits(),
                key[0],
                key[1],
                off0,
                off1,
                u32::from(want_soft),
            ];
            let workgroups = if short {
                grid(engine, samples.div_ceil(WORKGROUP_SIZE))?
            } else {
                grid(engine, samples)?
            };
            let buffers = [
                BufferInit::Words(gm::ln_table_words()),
                BufferInit::Words(encode_values(dtype, &req.x.data)),
                BufferInit::Zeroed(n),
                BufferInit::Zeroed(if want_soft { n } else { 1 }),
            ];
            let dispatch = Dispatch {
                entry: if short {
                    "gumbel_softmax_short"
                } else {
                    "gumbel_softmax_rows"
                },
                buffers: vec![0, 1, 2, 3],
                params,
                workgroups,
            };
            let read: &[usize] = if want_soft { &[2, 3] } else { &[2] };
            let run = engine.run_dispatches("gumbel", &buffers, &[dispatch], read)?;
            let mut outputs = run.outputs.into_iter();
            let y = outputs.next().unwrap_or_default();
            let mut out = OpOutput::new(
                shape.clone(),
                dtype,
                decode_values(dtype, &y),
                run.kernel_time,
                run.timing,
                start.elapsed(),
            );
            if want_soft {
                let soft = outputs.next().unwrap_or_default();
                out.aux.push(AuxOutput {
                    name: gm::SOFT_AUX.into(),
                    shape,
                    values: decode_values(dtype, &soft),
                });
            }
            Ok(out)
        }
    }
}

impl WgpuEngine {
    /// Philox4x32-10 on the device (the shader's `philox_kat` entry point): one output block per
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
        let n = word(blocks.len(), "blocks")?;
        let dispatch = Dispatch {
            entry: "philox_kat",
            buffers: vec![0, 1],
            params: vec![n, 0, 0, 0],
            workgroups: (n.div_ceil(64), 1, 1),
        };
        let run = self.run_dispatches(
            "gumbel",
            &[
                BufferInit::Words(input),
                BufferInit::Zeroed(4 * blocks.len()),
            ],
            &[dispatch],
            &[1],
        )?;
        let words = run.outputs.into_iter().next().unwrap_or_default();
        Ok(words
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect())
    }

    /// The shader's word -> Gumbel map (`gumbel_words`) for each word, as f32.
    pub fn gumbel_words(&self, words: &[u32]) -> Result<Vec<f32>, EngineError> {
        if words.is_empty() {
            return Ok(Vec::new());
        }
        let n = word(words.len(), "words")?;
        let dispatch = Dispatch {
            entry: "gumbel_words",
            buffers: vec![0, 1, 2],
            params: vec![n, 0, 0, 0],
            workgroups: grid(self, words.len().div_ceil(WORKGROUP_SIZE))?,
        };
        let run = self.run_dispatches(
            "gumbel",
            &[
                BufferInit::Words(gm::ln_table_words()),
                BufferInit::Words(words.to_vec()),
                BufferInit::Zeroed(words.len()),
            ],
            &[dispatch],
            &[2],
        )?;
        let out = run.outputs.into_iter().next().unwrap_or_default();
        Ok(out.into_iter().map(f32::from_bits).collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::gumbel as gm;


    /// The shader's noise constants are the Rust ones (the table itself comes from the host).
    #[test]
    fn noise_constants_match_the_rust_ones() {
        let wgsl = super::TOPIC.source;
        let minus_32_ln2 = 0u64.wrapping_sub(32 * gm::LN2_Q40);
        for (name, value) in [
            ("LN2_LO", gm::LN2_Q40 as u32),
            ("LN2_HI", (gm::LN2_Q40 >> 32) as u32),
            ("THIRD_Q16", gm::THIRD_Q16),
            ("FIVE_24THS_Q32", gm::FIVE_24THS_Q32),
            ("SERIES_BELOW", gm::SERIES_BELOW),
            ("MINUS_32_LN2_LO", minus_32_ln2 as u32),
            ("MINUS_32_LN2_HI", (minus_32_ln2 >> 32) as u32),
        ] {
            let line = wgsl
                .lines()
                .find(|l| l.starts_with(&format!("const {name}: u32 = ")))
                .unwrap_or_else(|| panic!("gumbel.wgsl: no const {name}"));
            let literal = line
                .split('=')
                .nth(1)
                .and_then(|v| v.split(';').next())
                .map(|v| v.trim().trim_end_matches('u'))
                .unwrap_or_default();
            let parsed = match literal.strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16),
                None => literal.parse(),
            };
            assert_eq!(parsed, Ok(value), "gumbel.wgsl: {line}");
        }
    }
}
