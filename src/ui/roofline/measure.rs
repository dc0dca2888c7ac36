//! Roofline measurements: what one is (its key and where its inputs come from), the job the
//! compute worker runs for it, and the cache of every measurement made since the app started.

use crate::bench::{self, BenchCase, BenchResult};
use crate::dtype::DType;
use crate::engine::{EngineKind, Registry};
use crate::lesson::RooflineSpec;
use crate::ops::{KernelVariant, Op, OpRequest};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// One measurement's identity: the cache key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MeasureKey {
    pub engine: EngineKind,
    pub kernel: KernelVariant,
    /// The op with its parameters (`Op`'s Debug form: every parameter, exactly).
    pub op: String,
    pub dtype: DType,
    /// The primary input's shape.
    pub shape: Vec<usize>,
    /// Inputs made up at `shape` (a lesson's `size`), or the cell's own inputs.
    pub generated: bool,
}

/// Where a measurement's inputs come from.
#[derive(Clone, Debug)]
pub enum MeasureInputs {
    /// The cell's own request, as it ran.
    Cell(Arc<OpRequest>),
    /// Seeded random inputs of `shape`, built on the worker thread (they may be large).
    Generated {
        op: Op,
        dtype: DType,
        shape: Vec<usize>,
    },
}

impl MeasureInputs {
    /// Identifies the request this builds (kernel aside), so the worker builds it once for all
    /// kernels and engines.
    fn id(&self) -> String {
        match self {
            MeasureInputs::Cell(req) => format!("cell {:?} {} {:?}", req.op, req.dtype, req.x),
            MeasureInputs::Generated { op, dtype, shape } => {
                format!("generated {op:?} {dtype} {shape:?}")
            }
        }
    }

    /// The request, with the kernel left at its default.
    pub fn build(&self) -> Result<OpRequest, String> {
        match self {
            MeasureInputs::Cell(req) => Ok((**req).clone()),
            MeasureInputs::Generated { op, dtype, shape } => generated_request(op, *dtype, shape),
        }
    }
}

/// `op` at `shape` with seeded inputs ([`Op::sized_request`]: the primary input drawn as the op
/// draws it, the optional other inputs left out, the ones the op can make up made up). Fails for
/// ops the roofline cannot feed at another size ([`RooflineSpec::check_size`]).
pub fn generated_request(op: &Op, dtype: DType, shape: &[usize]) -> Result<OpRequest, String> {
    RooflineSpec::check_size(op.kind())?;
    let n: usize = shape.iter().product();
    if n == 0 || n > crate::ops::MAX_ELEMENTS {
        return Err(format!("cannot measure at {shape:?}"));
    }
    op.sized_request(dtype, shape, 11)
        .map_err(|e| e.to_string())
}

/// A job for the compute worker: one kernel on one engine.
#[derive(Clone, Debug)]
pub struct MeasureJob {
    pub key: MeasureKey,
    pub inputs: MeasureInputs,
}

/// A finished measurement: the result or why there is none, and how long it took in all.
#[derive(Clone, Debug)]
pub struct Measured {
    pub result: Result<BenchResult, String>,
    pub seconds: f64,
}

/// The state of one measurement in the app's cache.
#[derive(Clone, Debug)]
pub enum Measurement {
    /// Sent to the worker; not finished.
    Pending,
    Done(Measured),
}

/// Every measurement made since the app started, shared by all cells.
pub type Measurements = HashMap<MeasureKey, Measurement>;

/// The last request the worker built, reused for the next kernel or engine of the same plan.
#[derive(Default)]
pub struct BuildCache {
    last: Option<(String, Arc<OpRequest>)>,
}

/// Run one job on the worker thread: build the request (or reuse the last one), then
/// `bench::measure` it with the job's kernel. A panic in an engine becomes an error message.
pub fn run_job(registry: &Registry, job: &MeasureJob, cache: &mut BuildCache) -> Measured {
    let start = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        measure_job(registry, job, cache)
    }))
    .unwrap_or_else(|_| Err("the measurement stopped with an internal error".into()));
    Measured {
        result,
        seconds: start.elapsed().as_secs_f64(),
    }
}

fn measure_job(
    registry: &Registry,
    job: &MeasureJob,
    cache: &mut BuildCache,
) -> Result<BenchResult, String> {
    let engine = registry.get(job.key.engine).map_err(|e| e.to_string())?;
    let id = job.inputs.id();
    let built = match &cache.last {
        Some((last, req)) if *last == id => req.clone(),
        _ => {
            cache.last = None; // free the previous (maybe large) request first
            let req = Arc::new(job.inputs.build()?);
            cache.last = Some((id, req.clone()));
            req
        }
    };
    let req = (*built).clone().with_kernel(job.key.kernel);
    let shape = req.x.shape.clone();
    let template = built.clone();
    let job_kernel = job.key.kernel;
    let case = BenchCase {
        name: format!(
            "{} {} {} kernel",
            req.op.describe(),
            shape_text(&shape),
            job.key.kernel
        ),
        op: req.op.kind(),
        definition: req.op.clone(),
        dtype: req.dtype,
        shape,
        kernel: Some(job.key.kernel),
        build: Box::new(move || Ok((*template).clone().with_kernel(job_kernel))),
    };
    bench::measure(engine, &case, &req, bench::RUNS).map_err(|e| e.to_string())
}

/// "4096 × 32000".
pub fn shape_text(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(" × ")
}
