//! `kernelbook bench`: how fast each op runs on each engine, against what that engine can move.
//!
//! For each case: 3 warm-up runs, then the median of at least 20 timed runs (CUDA events on CUDA;
//! timestamp queries on wgpu where the adapter has them, else the host clock around submit and
//! wait; the wall clock on the CPU), the bytes the op must move (each input read once, each
//! output written once, in its storage dtype; integer inputs as int32), the achieved GB/s, and the
//! percentage of the copy bandwidth the same engine reaches in the same run: a device-to-device
//! copy that moves as many bytes (half read, half written). No op that reads its input once and
//! writes its output once can beat that copy, so the percentage is a roofline: "this kernel reached
//! 78% of what this device can move".

use crate::dtype::DType;
use crate::engine::{Engine, EngineError, EngineKind, TimingSource};
use crate::ops::case::BenchSpec;
use crate::ops::{KernelVariant, Op, OpKind, OpRequest};
use serde::Serialize;
use std::time::Duration;

/// Timed runs per case (after the warm-up).
pub const RUNS: usize = 20;
/// Untimed runs first (compile caches, allocator, clocks).
pub const WARMUP: usize = 3;
/// The size real GPUs are measured at (the torch anchors of docs/gpu.md use it).
pub const GPU_SIZE: (usize, usize) = (4096, 32000);
/// The size for the CPU and software adapters (a few ms per run there).
pub const SMALL_SIZE: (usize, usize) = (256, 8192);

/// One thing to measure: a name and how to build its request (built when measured, so a large
/// input lives only while it runs).
pub struct BenchCase {
    pub name: String,
    pub op: OpKind,
    /// The op with its parameters (what decides whether an engine has two kernels for it).
    pub definition: Op,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// The GPU kernel the request asks for, for ops that have a simple and a fast one; `None`
    /// for ops with one kernel. The CPU engine has one implementation: it runs the `Fast` cases
    /// only (see [`BenchCase::runs_on`]).
    pub kernel: Option<KernelVariant>,
    pub build: Box<dyn Fn() -> Result<OpRequest, String> + Send + Sync>,
}

impl BenchCase {
    /// Whether `engine` should measure this case: an engine with one implementation of the op
    /// (the CPU engine always) ignores the kernel variant, so measuring its `Simple` case would
    /// only repeat the `Fast` one.
    pub fn runs_on(&self, engine: EngineKind) -> bool {
        self.kernel != Some(KernelVariant::Simple) || engine.has_kernel_variants(&self.definition)
    }

    /// The cases of one topic's [`BenchSpec`]: one per kernel variant, simple first, when the spec
    /// asks for both, else one.
    fn from_spec(spec: BenchSpec) -> Vec<BenchCase> {
        let kernels: Vec<Option<KernelVariant>> = if spec.both_kernels {
            KernelVariant::ALL.into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        kernels
            .into_iter()
            .map(|kernel| {
                let spec = spec.clone();
                BenchCase {
                    name: label(&spec.op.describe(), spec.dtype, &spec.shape, kernel),
                    op: spec.op.kind(),
                    definition: spec.op.clone(),
                    dtype: spec.dtype,
                    shape: spec.shape.clone(),
                    kernel,
                    build: Box::new(move || {
                        spec.op
                            .sized_request(spec.dtype, &spec.shape, spec.seed)
                            .map(|r| r.with_kernel(kernel.unwrap_or_default()))
                            .map_err(|e| e.to_string())
                    }),
                }
            })
            .collect()
    }
}

/// The label of a case: the op, its dtype and shape, and the kernel variant if it has several.
fn label(op: &str, dtype: DType, shape: &[usize], kernel: Option<KernelVariant>) -> String {
    let dims = shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x");
    match kernel {
        Some(k) => format!("{op} {dtype} {dims} [{k}]"),
        None => format!("{op} {dtype} {dims}"),
    }
}

/// The ops `kernelbook bench` knows how to feed: those some topic has bench cases for.
pub fn ops() -> Vec<OpKind> {
    let mut out: Vec<OpKind> = Vec::new();
    for spec in crate::ops::TOPICS
        .iter()
        .flat_map(|t| t.bench(SMALL_SIZE, false))
    {
        if !out.contains(&spec.op.kind()) {
            out.push(spec.op.kind());
        }
    }
    out
}

/// The cases for `ops` (every topic's when empty). Row-wise ops run at `size` (rows x cols); the
/// others at the sizes their topic names, larger on a hardware GPU (`gpu`).
pub fn cases(ops: &[OpKind], size: (usize, usize), gpu: bool) -> Vec<BenchCase> {
    crate::ops::TOPICS
        .iter()
        .flat_map(|t| t.bench(size, gpu))
        .filter(|spec| ops.is_empty() || ops.contains(&spec.op.kind()))
        .flat_map(BenchCase::from_spec)
        .collect()
}

/// Bytes an op must move: every input read once and the main output written once, in their
/// storage types (float inputs and outputs in the dtype, integer inputs as int32).
pub fn bytes_moved(req: &OpRequest) -> usize {
    let size = req.dtype.size_bytes();
    let decls = req.op.kind().inputs();
    let input_bytes = |name: &str, len: usize| {
        let int = decls.iter().any(|d| d.name == name && d.int);
        len * if int { 4 } else { size }
    };
    let mut bytes = input_bytes(decls[0].name, req.x.len()) + req.output_len() * size;
    for (name, t) in &req.extra {
        bytes += input_bytes(name, t.len());
    }
    bytes
}

/// One case measured on one engine.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub engine: EngineKind,
    pub device: String,
    pub case: String,
    /// The op's name, as `kernelbook ops` lists it.
    pub op: &'static str,
    pub dtype: DType,
    pub shape: Vec<usize>,
    /// The kernel variant asked for (`None`: the op has one kernel).
    pub kernel: Option<KernelVariant>,
    pub runs: usize,
    pub timing: TimingSource,
    pub median_us: f64,
    pub min_us: f64,
    pub bytes: usize,
    pub gb_per_s: f64,
    /// The same engine's copy of as many bytes, in the same run.
    pub copy_gb_per_s: Option<f64>,
    /// `gb_per_s / copy_gb_per_s`, in percent.
    pub percent_of_copy: Option<f64>,
}

/// Median of durations, in microseconds.
pub fn median_us(times: &mut [Duration]) -> f64 {
    if times.is_empty() {
        return f64::NAN;
    }
    times.sort();
    let n = times.len();
    let mid = if n % 2 == 1 {
        times[n / 2].as_secs_f64()
    } else {
        (times[n / 2 - 1].as_secs_f64() + times[n / 2].as_secs_f64()) / 2.0
    };
    mid * 1e6
}

/// Measure `req` on `engine`: `WARMUP` untimed runs, then `runs` (at least [`RUNS`]) timed ones,
/// then the engine's copy of the same number of bytes, `runs` times.
pub fn measure(
    engine: &dyn Engine,
    case: &BenchCase,
    req: &OpRequest,
    runs: usize,
) -> Result<BenchResult, EngineError> {
    let runs = runs.max(RUNS);
    let mut timing = TimingSource::WallClock;
    for _ in 0..WARMUP {
        timing = engine.run(req)?.timing;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        times.push(engine.run(req)?.kernel_time);
    }
    let min_us = times
        .iter()
        .min()
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
    let median = median_us(&mut times);
    let bytes = bytes_moved(req);
    let gb_per_s = bytes as f64 / (median * 1e-6) / 1e9;
    // The copy moves the same bytes: bytes / 2 read and bytes / 2 written.
    let copy = (|| -> Result<f64, EngineError> {
        let half = bytes.div_ceil(2);
        engine.copy_time(half)?;
        let mut copies = Vec::with_capacity(runs);
        for _ in 0..runs {
            copies.push(engine.copy_time(half)?);
        }
        Ok(median_us(&mut copies))
    })();
    let copy_gb_per_s = copy
        .ok()
        .filter(|us| *us > 0.0)
        .map(|us| bytes as f64 / (us * 1e-6) / 1e9);
    // An engine with one implementation of the op ran it whatever the variant asked for: the
    // result names no kernel.
    let kernel = case
        .kernel
        .filter(|_| engine.kind().has_kernel_variants(&case.definition));
    let name = match (case.kernel, kernel) {
        (Some(k), None) => case
            .name
            .strip_suffix(&format!(" [{k}]"))
            .unwrap_or(&case.name)
            .to_string(),
        _ => case.name.clone(),
    };
    Ok(BenchResult {
        engine: engine.kind(),
        device: engine.device(),
        case: name,
        op: case.op.name(),
        dtype: case.dtype,
        shape: case.shape.clone(),
        kernel,
        runs,
        timing,
        median_us: median,
        min_us,
        bytes,
        gb_per_s,
        copy_gb_per_s,
        percent_of_copy: copy_gb_per_s.map(|c| 100.0 * gb_per_s / c),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Registry;

    #[test]
    fn bytes_count_each_input_and_output_once_in_their_dtype() {
        let all = cases(&[crate::ops::softmax::SOFTMAX], (4, 8), false);
        let case = all.iter().find(|c| c.dtype == DType::F16).unwrap();
        let req = (case.build)().unwrap();
        assert_eq!(req.dtype, DType::F16);
        assert_eq!(bytes_moved(&req), 4 * 8 * 2 * 2);
    }

    #[test]
    fn every_bench_op_has_a_valid_case() {
        let all = cases(&[], (4, 64), false);
        for op in ops() {
            let case = all
                .iter()
                .find(|c| c.op == op)
                .unwrap_or_else(|| panic!("no bench case for {op}"));
            let req = (case.build)().unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert!(bytes_moved(&req) > 0, "{}", case.name);
        }
    }

    #[test]
    fn kernel_variants_reach_the_request_and_the_cpu_measures_each_case_once() {
        let all = cases(&[], (4, 64), false);
        for kind in [
            crate::ops::softmax::SOFTMAX,
            crate::ops::softmax::LOG_SOFTMAX,
            crate::ops::gumbel::GUMBEL_SOFTMAX,
            crate::ops::rope::ROPE,
            crate::ops::tensor_parallel::VOCAB_PARALLEL_CROSS_ENTROPY,
        ] {
            for kernel in KernelVariant::ALL {
                let case = all
                    .iter()
                    .find(|c| c.op == kind && c.kernel == Some(kernel))
                    .unwrap_or_else(|| panic!("no {kernel} case for {kind}"));
                assert!(case.name.ends_with(&format!("[{kernel}]")), "{}", case.name);
                assert_eq!((case.build)().unwrap().kernel, kernel, "{}", case.name);
            }
        }
        let sigmoid = all
            .iter()
            .find(|c| c.op == crate::ops::logits::SIGMOID)
            .unwrap();
        assert_eq!(sigmoid.kernel, None);
        // The CPU engine has one implementation: no case is measured twice there.
        let on_cpu: Vec<_> = all
            .iter()
            .filter(|c| c.runs_on(EngineKind::Cpu))
            .map(|c| (c.op, c.dtype))
            .collect();
        for (i, a) in on_cpu.iter().enumerate() {
            assert!(!on_cpu[i + 1..].contains(a), "{a:?} twice on the CPU");
        }
        assert!(all.iter().all(|c| c.runs_on(EngineKind::Cuda)));
        // wgpu has a fast kernel for softmax only: rope's simple case is not measured twice.
        let rope_simple = all
            .iter()
            .find(|c| c.op == crate::ops::rope::ROPE && c.kernel == Some(KernelVariant::Simple))
            .unwrap();
        assert!(!rope_simple.runs_on(EngineKind::Wgpu));
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        let d = |us: u64| Duration::from_micros(us);
        assert_eq!(median_us(&mut [d(3), d(1), d(2)]), 2.0);
        assert_eq!(median_us(&mut [d(4), d(1), d(2), d(3)]), 2.5);
        assert!(median_us(&mut []).is_nan());
    }

    #[test]
    fn the_cpu_bench_reports_throughput_against_its_own_copy() {
        let registry = Registry::probe_only(&[EngineKind::Cpu]);
        let cpu = registry.get(EngineKind::Cpu).unwrap();
        let case = &cases(&[crate::ops::logits::SIGMOID], (64, 1024), false)[0];
        let req = (case.build)().unwrap();
        let r = measure(cpu, case, &req, RUNS).unwrap();
        assert_eq!(r.runs, RUNS);
        // A softmax case asks for the fast kernel; the CPU has one implementation, and says so.
        let softmax = cases(&[crate::ops::softmax::SOFTMAX], (4, 64), false)
            .into_iter()
            .find(|c| c.kernel == Some(KernelVariant::Fast))
            .unwrap();
        let s = measure(cpu, &softmax, &(softmax.build)().unwrap(), RUNS).unwrap();
        assert_eq!(s.kernel, None);
        assert!(!s.case.contains('['), "{}", s.case);
        assert_eq!(r.bytes, 64 * 1024 * 4 * 2);
        assert!(r.median_us > 0.0 && r.gb_per_s > 0.0, "{r:?}");
        assert!(r.copy_gb_per_s.is_some_and(|c| c > 0.0), "{r:?}");
        assert!(r.percent_of_copy.is_some());
    }
}
