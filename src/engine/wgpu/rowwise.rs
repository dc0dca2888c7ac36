//! What the logits and softmax shaders share: one input and one output buffer of one word per
//! element, and the same 48-byte `Params` uniform ([`RowParams`]). Element-wise shaders run one
//! invocation per element, row-wise ones one workgroup per row (or a fixed number looping over
//! rows); [`WgpuEngine::row_plan`] sizes the grid against the device's limits and
//! [`WgpuEngine::run_rows`] runs one dispatch and reads the output back.

use super::{BufferInit, Dispatch, WORKGROUP_SIZE, WgpuEngine, decode_values, encode_values};
use crate::dtype::DType;
use crate::engine::{EngineError, OpOutput};
use crate::ops::OpRequest;
use std::time::Instant;

/// The shaders' `Params` uniform, field for field (48 bytes, all 4-byte scalars).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct RowParams {
    /// 0 = f32, 1 = f16, 2 = bf16.
    pub dtype: u32,
    /// logits.wgsl: 0 logit, 1 sigmoid, 2 logsigmoid. softmax.wgsl: 0 softmax, 1 log_softmax.
    pub op: u32,
    pub rows: u32,
    pub cols: u32,
    pub n: u32,
    pub temperature: f32,
    /// logit: 1 = clamp p to [lo, hi].
    pub clamp: u32,
    pub lo: f32,
    pub hi: f32,
    /// softmax: 1 = stable (max-subtracted), 0 = naive.
    pub stable: u32,
    pub pad0: u32,
    pub pad1: u32,
}

impl RowParams {
    /// The fields every op sets: the dtype and the sizes of the plan; the op's own fields start
    /// at their defaults (temperature 1).
    pub fn new(dtype: DType, plan: &RowPlan) -> RowParams {
        let dtype = match dtype {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Bf16 => 2,
        };
        RowParams {
            dtype,
            rows: plan.rows,
            cols: plan.cols,
            n: plan.n,
            temperature: 1.0,
            ..RowParams::default()
        }
    }

    /// As the uniform's words.
    pub fn words(&self) -> Vec<u32> {
        bytemuck::cast_slice(&[*self]).to_vec()
    }
}

/// What one run needs from the device.
pub(super) struct RowPlan {
    pub rows: u32,
    pub cols: u32,
    pub n: u32,
    /// Workgroups to dispatch, (x, y).
    pub grid: (u32, u32),
}

impl WgpuEngine {
    /// Buffer bytes and workgroup grid a request needs (one invocation per element when
    /// `elementwise`, else one workgroup per row), or why the device cannot give them.
    pub(super) fn row_plan(
        &self,
        req: &OpRequest,
        elementwise: bool,
    ) -> Result<RowPlan, EngineError> {
        let n = req.x.len();
        let too_many = |what: &str, v: usize| {
            EngineError::Unsupported(format!("{v} {what} do not fit the shaders' 32-bit indices"))
        };
        let n32 = u32::try_from(n).map_err(|_| too_many("elements", n))?;
        let rows = u32::try_from(req.x.rows()).map_err(|_| too_many("rows", req.x.rows()))?;
        let cols = u32::try_from(req.x.cols()).map_err(|_| too_many("columns", req.x.cols()))?;
        let bytes = n as u64 * 4; // one u32 word per element, for every dtype
        let limits = &self.limits;
        if bytes > limits.max_storage_buffer_binding_size {
            return Err(EngineError::Unsupported(format!(
                "{n} elements need a {bytes}-byte storage buffer (one 32-bit word per element); this adapter \
                 binds at most {} bytes (max_storage_buffer_binding_size)",
                limits.max_storage_buffer_binding_size
            )));
        }
        if bytes > limits.max_buffer_size {
            return Err(EngineError::Unsupported(format!(
                "{n} elements need a {bytes}-byte buffer; this adapter allows at most {} bytes (max_buffer_size)",
                limits.max_buffer_size
            )));
        }
        // Element-wise: one invocation per element; row-wise: one workgroup per row.
        let (workgroups, unit) = if elementwise {
            (n32.div_ceil(WORKGROUP_SIZE), "elements / 256")
        } else {
            (rows, "rows")
        };
        let max_dim = limits.max_compute_workgroups_per_dimension.max(1);
        let grid = if workgroups <= max_dim {
            (workgroups, 1)
        } else {
            let lines = workgroups.div_ceil(max_dim);
            if lines > max_dim {
                return Err(EngineError::Unsupported(format!(
                    "{workgroups} workgroups ({unit}) exceed this adapter's {max_dim} x {max_dim} grid \
                     (max_compute_workgroups_per_dimension)"
                )));
            }
            (max_dim, lines)
        };
        Ok(RowPlan {
            rows,
            cols,
            n: n32,
            grid,
        })
    }

    /// Run `entry` of `shaders/<topic>.wgsl` over the request's input (binding 0, `words` words,
    /// the input zero-padded) into an output of `words` zero words (binding 1), with `params` as
    /// the uniform, on a `grid` of workgroups; read back the output, one value per input value.
    pub(super) fn run_rows(
        &self,
        topic: &str,
        entry: &'static str,
        req: &OpRequest,
        words: u32,
        params: &RowParams,
        grid: (u32, u32),
    ) -> Result<OpOutput, EngineError> {
        let start = Instant::now();
        let mut input = encode_values(req.dtype, &req.x.data);
        input.resize(words as usize, 0);
        let run = self.run_dispatches(
            topic,
            &[BufferInit::Words(input), BufferInit::Zeroed(words as usize)],
            &[Dispatch {
                entry,
                buffers: vec![0, 1],
                params: params.words(),
                workgroups: (grid.0, grid.1, 1),
            }],
            &[1],
        )?;
        let (kernel_time, timing) = (run.kernel_time, run.timing);
        let mut out = run.outputs.into_iter().next().unwrap_or_default();
        out.truncate(req.x.len());
        if out.len() != req.x.len() {
            return Err(EngineError::Failed(format!(
                "read back {} values for {} elements",
                out.len(),
                req.x.len()
            )));
        }
        Ok(OpOutput::new(
            req.x.shape.clone(),
            req.dtype,
            decode_values(req.dtype, &out),
            kernel_time,
            timing,
            start.elapsed(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Tensor;

    #[test]
    fn params_are_the_shaders_48_bytes() {
        assert_eq!(size_of::<RowParams>(), 48);
        let plan = RowPlan {
            rows: 2,
            cols: 3,
            n: 6,
            grid: (2, 1),
        };
        let p = RowParams::new(DType::Bf16, &plan);
        assert_eq!(
            (p.dtype, p.rows, p.cols, p.n, p.temperature),
            (2, 2, 3, 6, 1.0)
        );
        assert_eq!(p.words().len(), 12);
    }

    #[test]
    fn words_round_trip_every_dtype() {
        for dtype in DType::ALL {
            let x = Tensor::row(vec![1.5, -0.0, f32::INFINITY, 1e-6]);
            let x: Vec<f32> = x.data.iter().map(|&v| dtype.round(v)).collect();
            let back = decode_values(dtype, &encode_values(dtype, &x));
            for (a, b) in x.iter().zip(&back) {
                assert_eq!(a.to_bits(), b.to_bits(), "{dtype}");
            }
        }
    }
}
