//! What pressing Measure measures for a cell's current parameters: one plan per engine present
//! (the kernels, the size: the lesson's full size on a hardware GPU, a smaller one elsewhere).

use super::measure::{MeasureInputs, MeasureJob, MeasureKey, Measurement, Measurements};
use crate::bench;
use crate::dtype::DType;
use crate::engine::{BackendInfo, EngineKind};
use crate::lesson::RooflineSpec;
use crate::ops::KernelVariant;
use crate::ui::cell_state::CellState;
use std::sync::Arc;

/// Whether an engine is real GPU hardware (measured at the lesson's full size), rather than the
/// CPU engine or a software adapter (a CPU running Vulkan).
fn hardware_gpu(b: &BackendInfo) -> bool {
    b.engine != EngineKind::Cpu && !b.software
}

/// What one engine measures.
#[derive(Clone, Debug)]
pub struct EnginePlan {
    pub engine: EngineKind,
    pub device: String,
    pub hardware: bool,
    pub shape: Vec<usize>,
    /// Whether this engine has a simple and a fast kernel for the op
    /// ([`EngineKind::has_kernel_variants`]).
    pub variants: bool,
    /// One job per kernel (one where the engine has one implementation of the op).
    pub jobs: Vec<MeasureJob>,
}

/// What pressing Measure measures for a cell's current parameters.
#[derive(Clone, Debug)]
pub struct Plan {
    /// `Op::describe` and the dtype, e.g. "softmax T=1 stable · f32".
    pub what: String,
    pub dtype: DType,
    pub engines: Vec<EnginePlan>,
    /// Whether any engine has a simple and a fast kernel for this op.
    pub variants: bool,
}

impl Plan {
    pub fn jobs(&self) -> impl Iterator<Item = &MeasureJob> {
        self.engines.iter().flat_map(|e| &e.jobs)
    }

    /// A rough guess of the time the whole plan takes, in seconds: 3 warm-up and 20 timed runs
    /// of each kernel (each run uploads its input and downloads its output) and 21 copies, with
    /// the inputs built once per size. Rates seen in this project's runs: a hardware GPU's runs are
    /// bound by host transfers (~8 GB/s, copies on the device ~1 TB/s); the CPU engine in a debug
    /// build moves ~0.3 GB/s per run (copies ~3 GB/s); lavapipe ~0.08 GB/s (copies ~0.4 GB/s).
    pub fn estimate_seconds(&self) -> f64 {
        let runs = (bench::WARMUP + bench::RUNS) as f64;
        let copies = (bench::RUNS + 1) as f64;
        let mut total = 0.0;
        let mut built: Vec<&[usize]> = Vec::new();
        for e in &self.engines {
            let n: usize = e.shape.iter().product();
            let bytes = (n * self.dtype.size_bytes() * 2) as f64;
            let (run_rate, copy_rate) = match (e.engine, e.hardware) {
                (EngineKind::Cpu, _) => (0.3e9, 3e9),
                (_, true) => (8e9, 1e12),
                (_, false) => (0.08e9, 0.4e9),
            };
            if !built.contains(&e.shape.as_slice()) {
                built.push(&e.shape);
                total += n as f64 * 30e-9; // random inputs, rounded to the dtype
            }
            let per_kernel = runs * (bytes / run_rate + 1e-3) + copies * (bytes / copy_rate + 1e-4);
            total += e.jobs.len() as f64 * per_kernel;
        }
        total
    }
}

/// The plan for `state`'s current parameters on the engines present, or why there is none.
pub fn plan(state: &CellState, backends: &[BackendInfo]) -> Result<Plan, String> {
    let spec = state
        .spec
        .roofline
        .as_ref()
        .ok_or("this cell has no roofline view")?;
    let req = state.request()?;
    let own = Arc::new(req.clone());
    let mut engines = Vec::new();
    for b in backends.iter().filter(|b| b.available) {
        let hardware = hardware_gpu(b);
        let (shape, inputs) = match &spec.size {
            Some(size) => {
                let shape = if hardware {
                    size.clone()
                } else {
                    RooflineSpec::small_shape(size)
                };
                let inputs = MeasureInputs::Generated {
                    op: req.op.clone(),
                    dtype: req.dtype,
                    shape: shape.clone(),
                };
                (shape, inputs)
            }
            None => (req.x.shape.clone(), MeasureInputs::Cell(own.clone())),
        };
        // The CPU engine has one implementation, and so do the GPU engines for some ops: one
        // measurement each.
        let kernels = if !b.engine.has_kernel_variants(&req.op) {
            vec![KernelVariant::default()]
        } else {
            spec.kernels.clone()
        };
        let jobs = kernels
            .into_iter()
            .map(|kernel| MeasureJob {
                key: MeasureKey {
                    engine: b.engine,
                    kernel,
                    op: format!("{:?}", req.op),
                    dtype: req.dtype,
                    shape: shape.clone(),
                    generated: spec.size.is_some(),
                },
                inputs: inputs.clone(),
            })
            .collect();
        engines.push(EnginePlan {
            engine: b.engine,
            device: b.device.clone().unwrap_or_default(),
            hardware,
            shape,
            variants: b.engine.has_kernel_variants(&req.op),
            jobs,
        });
    }
    if engines.is_empty() {
        return Err("no engine is available to measure".into());
    }
    Ok(Plan {
        what: format!("{} · {}", req.op.describe(), req.dtype),
        dtype: req.dtype,
        variants: engines.iter().any(|e| e.variants),
        engines,
    })
}

/// Whether any job of the plan is still being measured.
pub fn is_measuring(plan: &Plan, measurements: &Measurements) -> bool {
    plan.jobs()
        .any(|j| matches!(measurements.get(&j.key), Some(Measurement::Pending)))
}
