//! The CUDA kernels EXECUTED, on the CPU: every `kernels/*.cu` entry point run by the emulator in
//! `tests/cuda_emu` (g++, one fiber per CUDA thread, sanitizers on), with the launches the CUDA
//! engine's host code plans, checked against the f64 reference with kernelbook's own check.
//!
//! [`EmuCuda`] is an [`Engine`] that asks `kernelbook::engine::cuda::plan` for each request's
//! launch plan (the host code that runs on a GPU: entry points, grid and block sizes, argument
//! order and types, buffer sizes including the one-element stand-ins, kernel variant choice) and
//! executes it: the plan's launches in order, which is one valid schedule of its streams, and
//! every buffer argument checked against the kernel's parameter (type, and read-only or written,
//! which cudarc's stream ordering relies on). Its grid limit is a parameter, so the grid-stride
//! loops run with more rows than blocks. Besides the suite cases on both kernel variants: special
//! values (NaN, +-inf rows), bit-identity where the design promises it (Philox against
//! Random123's vectors and the word -> Gumbel map, through the engine's own plans of those test
//! entry points; noise and hard samples against the CPU engine; the fast rope against the simple
//! one), race checks (the same bits under three thread orders), and the emulator's own checks (it
//! fails loudly on divergent barriers, bad launches and out-of-bounds accesses).
//! `every_entry_point_is_emulated` fails when a kernel file gains an entry point that no plan of
//! the requests run here launches.
//!
//! Requests run in batches ([`EmuCuda::run_batch`]: several plans in one emulator process per
//! kernel file) so the file stays fast; a failing kernel names its launch.
//!
//! Without g++ the tests print "skipped: <reason>" and pass, unless `KERNELBOOK_REQUIRE_EMU=1`.

mod cuda_emu;

use cuda_emu::{Arg, Elem, Outputs, Program, Schedule};
use kernelbook::check::{check_output, compare};
use kernelbook::dtype::DType;
use kernelbook::engine::cpu::CpuEngine;
use kernelbook::engine::cuda::plan::{self as cplan, Downloads, HostData, Limits, Planned};
use kernelbook::engine::cuda::{self, THREADS, rope_fast_fits};
use kernelbook::engine::{Engine, EngineError, EngineKind, OpOutput};
use kernelbook::ops::gumbel::{self as gm, GumbelOp};
use kernelbook::ops::rope::{self, Layout, RopeOp};
use kernelbook::ops::tensor_parallel::TpOp;
use kernelbook::ops::{KernelVariant, Op, OpRequest, Tensor};
use kernelbook::suite::{self, Case, Expect};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------------------------
// The emulated CUDA engine: the CUDA engine's plans, executed.
// ------------------------------------------------------------------------------------------------

/// The CUDA engine's plans on the emulator. `max_blocks` stands for the device's grid limit
/// (65535 in `CudaEngine`); a small one makes every grid-stride loop take several turns.
struct EmuCuda {
    max_blocks: u32,
    schedule: Schedule,
}

/// Reads a plan's result back from the emulator's buffers.
type Reader<T> = Box<dyn FnOnce(&Outputs) -> Result<T, EngineError>>;

/// The requests (by index) of a batch planned into one program.
type Batch = Vec<(usize, Reader<OpOutput>)>;

impl EmuCuda {
    fn new() -> Self {
        EmuCuda {
            max_blocks: 65_535,
            schedule: Schedule::Forward,
        }
    }

    fn with_max_blocks(max_blocks: u32) -> Self {
        EmuCuda {
            max_blocks,
            schedule: Schedule::Forward,
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_blocks: self.max_blocks,
        }
    }

    /// Run several requests in one emulator process per kernel file (their plans one after
    /// another): the same launches as one `run` each, without a process start per request. Empty
    /// requests take `Engine::run`'s path (no launch).
    fn run_batch(&self, reqs: &[OpRequest]) -> Vec<Result<OpOutput, EngineError>> {
        let mut results: Vec<Option<Result<OpOutput, EngineError>>> =
            reqs.iter().map(|_| None).collect();
        // One program per kernel file, with the readers of the requests planned into it.
        let mut programs: Vec<(&'static str, Program, Batch)> = Vec::new();
        for (i, req) in reqs.iter().enumerate() {
            if let Err(e) = req.op.validate() {
                results[i] = Some(Err(e.into()));
                continue;
            }
            if req.is_empty() {
                results[i] = Some(self.run(req));
                continue;
            }
            let planned = match cuda::plan(req, &self.limits()) {
                Ok(planned) => planned,
                Err(e) => {
                    results[i] = Some(Err(e));
                    continue;
                }
            };
            let topic = planned.plan.topic;
            let at = match programs.iter().position(|(t, _, _)| *t == topic) {
                Some(at) => at,
                None => {
                    let mut p = Program::topic(topic);
                    p.schedule(self.schedule);
                    programs.push((topic, p, Vec::new()));
                    programs.len() - 1
                }
            };
            let (_, p, readers) = &mut programs[at];
            match add_planned(p, planned) {
                Ok(read) => readers.push((i, read)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        for (_, p, readers) in programs {
            match p.run() {
                Ok(out) => {
                    for (i, read) in readers {
                        let expected = reqs[i].output_len();
                        results[i] = Some(read(&out).and_then(|o| {
                            if o.values.len() == expected {
                                Ok(o)
                            } else {
                                Err(EngineError::Failed(format!(
                                    "{} values for an output of {expected}",
                                    o.values.len()
                                )))
                            }
                        }));
                    }
                }
                Err(e) => {
                    for (i, _) in readers {
                        results[i] = Some(Err(failed(e.clone())));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every request has a result"))
            .collect()
    }
}

/// Add a plan's buffers and launches to `p` (a program of the plan's kernel file) after checking
/// it as the CUDA engine does; the reader downloads the plan's reads (each its allocated length,
/// as the engine does) and decodes them.
fn add_planned<T: 'static>(p: &mut Program, planned: Planned<T>) -> Result<Reader<T>, EngineError> {
    let Planned { plan, decode } = planned;
    plan.validate()?;
    let elem = |e: cplan::Elem| match e {
        cplan::Elem::F32 => Elem::F32,
        cplan::Elem::U16 => Elem::U16,
        cplan::Elem::U32 => Elem::U32,
        cplan::Elem::I32 => Elem::I32,
        cplan::Elem::U8 => Elem::U8,
    };
    let bufs: Vec<cuda_emu::Buf> = plan
        .buffers
        .iter()
        .map(|b| match &b.init {
            // An empty upload is allocated like an empty output: one zero element, never read.
            cplan::Init::Upload(data) if !data.is_empty() => {
                p.input_bytes(elem(data.elem()), data.to_bytes())
            }
            _ => p.zeros(elem(b.elem()), b.allocated_len()),
        })
        .collect();
    for l in &plan.launches {
        let args: Vec<Arg> = l
            .args
            .iter()
            .map(|a| match *a {
                cplan::Arg::In(id) => Arg::Read(bufs[id]),
                cplan::Arg::Out(id) => Arg::Write(bufs[id]),
                cplan::Arg::U32(v) => Arg::U32(v),
                cplan::Arg::I32(v) => Arg::I32(v),
                cplan::Arg::F32(v) => Arg::F32(v),
                cplan::Arg::U64(v) => Arg::U64(v),
                cplan::Arg::I64(v) => Arg::I64(v),
            })
            .collect();
        p.launch_shared(&l.entry, l.grid, l.block, l.shared_bytes as usize, &args);
    }
    Ok(Box::new(move |out: &Outputs| {
        let downloads = Downloads {
            buffers: plan
                .read
                .iter()
                .map(|&id| {
                    let b = &plan.buffers[id];
                    let bytes = &out.bytes(bufs[id])[..b.content_len() * b.elem().size()];
                    (id, HostData::from_bytes(b.elem(), bytes))
                })
                .collect(),
        };
        decode(&downloads)
    }))
}

/// Run one plan on the emulator.
fn run_planned<T: 'static>(planned: Planned<T>, schedule: Schedule) -> Result<T, EngineError> {
    let mut p = Program::topic(planned.plan.topic);
    p.schedule(schedule);
    let read = add_planned(&mut p, planned)?;
    read(&p.run().map_err(failed)?)
}

fn failed(e: cuda_emu::EmuError) -> EngineError {
    EngineError::Failed(e.to_string())
}

impl Engine for EmuCuda {
    fn kind(&self) -> EngineKind {
        EngineKind::Cuda
    }

    fn device(&self) -> String {
        "CUDA emulator (g++, fibers)".into()
    }

    fn is_software(&self) -> bool {
        true
    }

    fn supports(&self, _req: &OpRequest) -> Result<(), EngineError> {
        Ok(())
    }

    fn execute(&self, req: &OpRequest) -> Result<OpOutput, EngineError> {
        run_planned(cuda::plan(req, &self.limits())?, self.schedule)
    }
}

// ------------------------------------------------------------------------------------------------
// Helpers.
// ------------------------------------------------------------------------------------------------

/// Requests per emulator process in the batched tests.
const BATCH: usize = 16;

/// Run every case on `engine` (batched) and assert each meets its expectation, as
/// `suite::run_case` judges it; returns the time taken.
fn run_cases(engine: &EmuCuda, cases: &[Case], kernel: KernelVariant, what: &str) -> Duration {
    let started = Instant::now();
    let reqs: Vec<OpRequest> = cases
        .iter()
        .map(|c| match c.request() {
            Ok(r) => r.with_kernel(kernel),
            Err(e) => panic!("{}: invalid case: {e}", c.name),
        })
        .collect();
    let mut failures = Vec::new();
    for (cases, reqs) in cases.chunks(BATCH).zip(reqs.chunks(BATCH)) {
        for ((case, req), result) in cases.iter().zip(reqs).zip(engine.run_batch(reqs)) {
            let verdict = match result {
                Ok(out) => {
                    let report = check_output(req, &req.reference_full(), &out);
                    let met = match case.expect {
                        Expect::Match => report.passed,
                        Expect::Breaks => !report.passed,
                    };
                    (!met).then(|| format!("expected {:?}: {report}", case.expect))
                }
                Err(e) => Some(e.to_string()),
            };
            if let Some(v) = verdict {
                failures.push(format!(
                    "{} {} ({kernel} kernel): {v}",
                    case.name, case.dtype
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: {} of {} cases failed on the emulator:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let elapsed = started.elapsed();
    println!(
        "{what} ({kernel} kernel): {} cases in {:.2} s",
        cases.len(),
        elapsed.as_secs_f64()
    );
    elapsed
}

/// Run requests in batches on the emulator; panics naming the request when one does not run.
fn run_all(engine: &EmuCuda, reqs: &[OpRequest]) -> Vec<OpOutput> {
    let mut outs = Vec::with_capacity(reqs.len());
    for chunk in reqs.chunks(BATCH) {
        for (req, r) in chunk.iter().zip(engine.run_batch(chunk)) {
            outs.push(r.unwrap_or_else(|e| {
                panic!(
                    "{} {} {:?} ({} kernel): {e}",
                    req.op.describe(),
                    req.dtype,
                    req.x.shape,
                    req.kernel
                )
            }));
        }
    }
    outs
}

fn topic_cases(topics: &[&str]) -> Vec<Case> {
    suite::cases(false)
        .into_iter()
        .filter(|c| topics.contains(&c.op.kind().topic()))
        .collect()
}

fn run_ok(engine: &dyn Engine, req: &OpRequest) -> OpOutput {
    engine.run(req).unwrap_or_else(|e| {
        panic!(
            "{} {} {} {:?}: {e}",
            engine.device(),
            req.op.describe(),
            req.dtype,
            req.x.shape
        )
    })
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

// ------------------------------------------------------------------------------------------------
// logits and softmax.
// ------------------------------------------------------------------------------------------------

/// A topic's suite test: every suite case with each of `kernels`, then every `stride`-th case again
/// on a grid of `blocks` blocks (each block takes several rows) with each of `few_kernels`.
struct TopicSuite {
    topic: &'static str,
    kernels: &'static [KernelVariant],
    small_grid: (u32, usize),
    few_kernels: &'static [KernelVariant],
}

const SIMPLE: &[KernelVariant] = &[KernelVariant::Simple];
const FAST: &[KernelVariant] = &[KernelVariant::Fast];
const BOTH: &[KernelVariant] = &KernelVariant::ALL;

const LOGITS_SUITE: TopicSuite = TopicSuite {
    topic: "logits",
    kernels: SIMPLE,
    small_grid: (3, 1),
    few_kernels: SIMPLE,
};
const SOFTMAX_SUITE: TopicSuite = TopicSuite {
    topic: "softmax",
    kernels: BOTH,
    small_grid: (3, 3),
    few_kernels: BOTH,
};
const ROPE_SUITE: TopicSuite = TopicSuite {
    topic: "rope",
    kernels: BOTH,
    small_grid: (2, 1),
    few_kernels: FAST,
};
const TENSOR_PARALLEL_SUITE: TopicSuite = TopicSuite {
    topic: "tensor_parallel",
    kernels: BOTH,
    small_grid: (2, 1),
    few_kernels: SIMPLE,
};

impl TopicSuite {
    fn run(&self) {
        if !cuda_emu::ready() {
            return;
        }
        let cases = topic_cases(&[self.topic]);
        for &kernel in self.kernels {
            run_cases(&EmuCuda::new(), &cases, kernel, self.topic);
        }
        let (blocks, stride) = self.small_grid;
        let some: Vec<Case> = cases.iter().step_by(stride).cloned().collect();
        for &kernel in self.few_kernels {
            let what = format!("{}, {blocks} blocks", self.topic);
            run_cases(&EmuCuda::with_max_blocks(blocks), &some, kernel, &what);
        }
    }

    /// Every request [`TopicSuite::run`] runs (the small grid's are among them).
    fn requests(&self) -> Vec<OpRequest> {
        let cases = topic_cases(&[self.topic]);
        self.kernels
            .iter()
            .flat_map(|&k| {
                cases
                    .iter()
                    .filter_map(move |c| Some(c.request().ok()?.with_kernel(k)))
            })
            .collect()
    }
}

#[test]
fn logits_suite_cases_run_on_the_emulator() {
    LOGITS_SUITE.run();
}

#[test]
fn softmax_suite_cases_run_on_both_kernels() {
    SOFTMAX_SUITE.run();
}

/// Row length of the special rows of [`softmax_special_requests`], and of its long rows.
const SPECIAL_COLS: usize = 300;
const LONG_COLS: usize = 9001;

/// Every softmax mode, dtype and kernel on rows with special values (a NaN, a +inf, an all -inf
/// row, e^60 in row 5), rows longer than a block's 256 threads and the fast kernel's 8192 values
/// in registers, and values near the f32 limits.
fn softmax_special_requests() -> Vec<OpRequest> {
    let cols = SPECIAL_COLS;
    let mut rows: Vec<Vec<f32>> = (0..7)
        .map(|r| {
            (0..cols)
                .map(|j| ((r * 31 + j * 17) % 23) as f32 * 0.37 - 4.0)
                .collect()
        })
        .collect();
    rows[1][5] = f32::NAN;
    rows[2][299] = f32::INFINITY;
    rows[3] = vec![f32::NEG_INFINITY; cols];
    rows[4][0] = f32::NEG_INFINITY;
    rows[5][100] = 60.0; // e^60 overflows f16 in the naive mode
    let special = Tensor::matrix(rows.len(), cols, rows.concat()).unwrap();
    let long = Tensor::matrix(
        2,
        LONG_COLS,
        (0..2 * LONG_COLS)
            .map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0)
            .collect(),
    )
    .unwrap();
    // Near the f32 limits: z = x / T overflows for T < 1 (a NaN row in the reference too), and
    // subnormals.
    let extreme = Tensor::matrix(
        3,
        3,
        vec![3e38, 0.0, -3e38, 3e38, 3e38, 1.0, 1e-40, 0.0, -1e-45],
    )
    .unwrap();
    let mut reqs = Vec::new();
    for dtype in DType::ALL {
        for op in [
            Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                temperature: 1.0,
                stable: true,
            }),
            Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                temperature: 0.7,
                stable: false,
            }),
            Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 2.5 }),
        ] {
            for kernel in KernelVariant::ALL {
                for input in [&special, &long, &extreme] {
                    reqs.push(
                        OpRequest::new(op.clone(), dtype, input.clone())
                            .unwrap()
                            .with_kernel(kernel),
                    );
                }
            }
        }
    }
    reqs
}

/// [`softmax_special_requests`] against the reference (the naive mode's special rows against the
/// CPU engine's naive softmax), on the full grid and with more rows than blocks (grid limit 3:
/// each block takes several rows).
#[test]
fn softmax_special_rows_and_small_grids() {
    if !cuda_emu::ready() {
        return;
    }
    let cpu = CpuEngine::new();
    let reqs = softmax_special_requests();
    for engine in [EmuCuda::new(), EmuCuda::with_max_blocks(3)] {
        for (req, out) in reqs.iter().zip(run_all(&engine, &reqs)) {
            let what = format!(
                "{} {} {} kernel, {:?}, max_blocks {}",
                req.op.describe(),
                req.dtype,
                req.kernel,
                req.x.shape,
                engine.max_blocks
            );
            let naive = req
                .op
                .get::<kernelbook::ops::softmax::SoftmaxOp>()
                .is_some_and(|op| op.is_naive());
            if naive && req.x.cols() != LONG_COLS {
                // The naive algorithm's special values are its own (e^inf / inf is 0 for the
                // finite entries, e^60 is inf in f16): the same as the CPU engine's naive
                // softmax, not the reference's.
                let on_cpu = run_ok(&cpu, req);
                let want: Vec<f64> = on_cpu.values.iter().map(|&v| v as f64).collect();
                let tolerance = req.op.tolerance(req.dtype);
                let report = compare(tolerance, req.dtype, &want, &out.values);
                assert!(report.passed, "{what} against the CPU engine: {report}");
                if req.dtype == DType::F16 && req.x.cols() == SPECIAL_COLS {
                    let row5 = &out.values[5 * SPECIAL_COLS..6 * SPECIAL_COLS];
                    assert!(row5.iter().any(|v| !v.is_finite()), "{what}: no overflow");
                }
            } else {
                let report = check_output(req, &req.reference_full(), &out);
                assert!(report.passed, "{what}: {report}");
            }
        }
    }
}

/// The fast softmax past 32768 values per row (online softmax), and at the register-count
/// boundaries.
fn fast_softmax_online_requests() -> Vec<OpRequest> {
    let mut reqs = Vec::new();
    for (rows, cols) in [
        (1, 8192),
        (1, 8193),
        (1, 16385),
        (1, 32768),
        (3, 32769),
        (1, 40000),
    ] {
        let data: Vec<f32> = (0..rows * cols)
            .map(|i| ((i as u64 * 2654435761) % 10007) as f32 / 1000.0 - 5.0)
            .collect();
        for dtype in DType::ALL {
            for op in [
                Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                    temperature: 1.0,
                    stable: true,
                }),
                Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 0.5 }),
            ] {
                let x = Tensor::matrix(rows, cols, data.clone()).unwrap();
                reqs.push(
                    OpRequest::new(op, dtype, x)
                        .unwrap()
                        .with_kernel(KernelVariant::Fast),
                );
            }
        }
    }
    reqs
}

/// [`fast_softmax_online_requests`] against the reference.
#[test]
fn fast_softmax_online_rows() {
    if !cuda_emu::ready() {
        return;
    }
    let reqs = fast_softmax_online_requests();
    for (req, out) in reqs
        .iter()
        .zip(run_all(&EmuCuda::with_max_blocks(2), &reqs))
    {
        let report = check_output(req, &req.reference_full(), &out);
        assert!(
            report.passed,
            "{} {} {:?}: {report}",
            req.op.describe(),
            req.dtype,
            req.x.shape
        );
    }
}

// ------------------------------------------------------------------------------------------------
// gumbel.
// ------------------------------------------------------------------------------------------------

/// Random123's known-answer inputs: (counter, key).
fn philox_blocks() -> Vec<([u32; 4], [u32; 2])> {
    gm::PHILOX_KAT.iter().map(|&(c, k, _)| (c, k)).collect()
}

/// `CudaEngine::philox4x32`'s plan on the emulator: Random123's known answers.
#[test]
fn philox_known_answers() {
    if !cuda_emu::ready() {
        return;
    }
    let planned = cuda::plan_philox(&philox_blocks()).unwrap();
    let got = run_planned(planned, Schedule::Forward).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.len(), gm::PHILOX_KAT.len());
    for ((c, k, want), got) in gm::PHILOX_KAT.iter().zip(&got) {
        assert_eq!(got, want, "Philox, ctr {c:08x?} key {k:08x?}");
    }
}

/// A spread of the 2^24 uniforms, U close to 1 (V < 2^-8: the series branch) densely, and the edge
/// words.
fn gumbel_test_words() -> Vec<u32> {
    let mut words: Vec<u32> = (0..(1u32 << 24)).step_by(97).map(|k| k << 8).collect();
    words.extend(
        (0..(1u32 << 24))
            .step_by(4099)
            .map(|k| (k << 8) | (k & 0xff)),
    );
    words.extend((0..(1u32 << 18)).step_by(7).map(|k| u32::MAX - (k << 8)));
    words.extend([
        0,
        0xff,
        0x100,
        u32::MAX,
        0xffff_ff00,
        0x7fff_ffff,
        0x8000_0000,
        0xbfff_ff00,
        0xc000_0000,
        0xc000_0100,
        0x0180_0000,
        0x017f_ffff,
    ]);
    words
}

/// `CudaEngine::gumbel_words`'s plan on the emulator: the word -> Gumbel map bit for bit equal to
/// `gumbel_from_word` on [`gumbel_test_words`]. A grid of 64 blocks makes the grid-stride loop
/// turn.
#[test]
fn gumbel_words_are_bit_identical() {
    if !cuda_emu::ready() {
        return;
    }
    let words = gumbel_test_words();
    let planned = cuda::plan_gumbel_words(&words, &Limits { max_blocks: 64 }).unwrap();
    assert_eq!(planned.plan.launches[0].grid.0, 64, "a grid-stride loop");
    let got = run_planned(planned, Schedule::Forward).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.len(), words.len());
    let mut bad = Vec::new();
    for (&w, &g) in words.iter().zip(&got) {
        let want = gm::gumbel_from_word(w);
        if g.to_bits() != want.to_bits() {
            bad.push(format!("w = {w:#010x}: kernel {g:e}, Rust {want:e}"));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} words differ:\n{}",
        bad.len(),
        words.len(),
        bad[..bad.len().min(10)].join("\n")
    );
}

/// Every gumbel suite case within tolerance, with the noise and the hard one-hots bit-identical
/// to the CPU engine (the same Philox words and the same fixed-point map on both), in all three
/// modes (noise; rows of at most 64 classes on one thread; longer rows on one block).
#[test]
fn gumbel_suite_cases_match_the_reference_and_the_cpu() {
    if !cuda_emu::ready() {
        return;
    }
    let cpu = CpuEngine::new();
    let started = Instant::now();
    let cases = gm::suite_cases(false);
    for (engine, stride) in [(EmuCuda::new(), 1), (EmuCuda::with_max_blocks(2), 3)] {
        let cases: Vec<&Case> = cases.iter().step_by(stride).collect();
        let reqs: Vec<OpRequest> = cases.iter().map(|c| c.request().unwrap()).collect();
        for ((case, req), out) in cases.iter().zip(&reqs).zip(run_all(&engine, &reqs)) {
            let what = format!(
                "{} {} (max_blocks {})",
                case.name, case.dtype, engine.max_blocks
            );
            let report = check_output(req, &req.reference_full(), &out);
            assert_eq!(
                report.passed,
                case.expect == Expect::Match,
                "{what}: {report}"
            );
            let op = req.op.get::<GumbelOp>().expect("a gumbel case");
            if matches!(op, GumbelOp::GumbelNoise { .. }) || op.hard() {
                let on_cpu = run_ok(&cpu, req);
                assert_eq!(
                    bits(&out.values),
                    bits(&on_cpu.values),
                    "{what}: differs from the CPU"
                );
            }
            if op.hard() && req.x.cols() > 0 {
                for row in out.values.chunks(req.x.cols()) {
                    assert_eq!(
                        row.iter().filter(|v| v.to_bits() == 1f32.to_bits()).count(),
                        1
                    );
                    assert_eq!(
                        row.iter().filter(|v| v.to_bits() == 0).count(),
                        row.len() - 1
                    );
                }
            }
        }
    }
    println!(
        "gumbel: {} cases x 2 grids in {:.2} s",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
}

/// gumbel_softmax around the kernels' boundaries (64 classes: one thread per sample row; 65 and
/// up: a block per sample row, or the fast kernel; past 32768 a soft sample leaves the fast
/// kernel, a hard one alone streams), soft, hard, hard without the soft sample, several draws per
/// row, every dtype, both kernel variants (in pairs: simple, fast).
fn gumbel_boundary_requests() -> Vec<OpRequest> {
    let mut shapes: Vec<(usize, usize, Vec<DType>)> = [3usize, 64, 65, 300, 1001, 4100]
        .into_iter()
        .map(|k| (2, k, DType::ALL.to_vec()))
        .collect();
    shapes.push((1, 33000, vec![DType::F32, DType::Bf16]));
    let mut reqs = Vec::new();
    for (rows, k, dtypes) in shapes {
        let logits: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 37) % 11) as f32 * 0.4 - 2.0)
            .collect();
        for dtype in dtypes {
            for (hard, return_soft) in [(false, true), (true, true), (true, false)] {
                let req = OpRequest::new(
                    Op::new(GumbelOp::GumbelSoftmax {
                        tau: 0.7,
                        hard,
                        return_soft,
                        seed: 1234,
                        offset: 5,
                        draws: if k > 5000 { 1 } else { 3 },
                    }),
                    dtype,
                    Tensor::matrix(rows, k, logits.clone()).unwrap(),
                )
                .unwrap();
                for kernel in KernelVariant::ALL {
                    reqs.push(req.clone().with_kernel(kernel));
                }
            }
        }
    }
    reqs
}

/// [`gumbel_boundary_requests`] within tolerance, and the same hot classes as the CPU engine (so
/// the same from both kernels).
#[test]
fn gumbel_softmax_across_kernel_boundaries() {
    if !cuda_emu::ready() {
        return;
    }
    let cpu = CpuEngine::new();
    let engine = EmuCuda::with_max_blocks(4);
    let reqs = gumbel_boundary_requests();
    let outs = run_all(&engine, &reqs);
    for (req, out) in reqs.iter().zip(&outs) {
        let what = format!(
            "{} {} {:?} {} kernel",
            req.op.describe(),
            req.dtype,
            req.x.shape,
            req.kernel
        );
        let report = check_output(req, &req.reference_full(), out);
        assert!(report.passed, "{what}: {report}");
        let op = req.op.get::<GumbelOp>().expect("a gumbel case");
        if op.hard() {
            let on_cpu = run_ok(&cpu, req);
            assert_eq!(
                bits(&out.values),
                bits(&on_cpu.values),
                "{what}: hot classes"
            );
        }
    }
}

// ------------------------------------------------------------------------------------------------
// rope.
// ------------------------------------------------------------------------------------------------

#[test]
fn rope_suite_cases_run_on_both_kernels() {
    ROPE_SUITE.run();
}

/// Geometries the fast rope kernel takes, each as (what, whether the result must match the
/// reference, the request): every layout it takes, with partial rotary, broadcast x, given
/// positions (one row and one per batch), both angle modes and every dtype.
fn fast_rope_requests() -> Vec<(String, bool, OpRequest)> {
    let mut out = Vec::new();
    for dtype in DType::ALL {
        for layout in [Layout::HalfSplit, Layout::Interleaved] {
            for (head_dim, fraction) in [(16usize, 1.0), (32, 0.5), (64, 0.25), (48, 1.0)] {
                for precise in [true, false] {
                    for positions in [None, Some(1usize), Some(2)] {
                        let (batch, seq, heads) = (2usize, 5usize, 3usize);
                        let op = Op::new(RopeOp::Rope {
                            layout,
                            theta: 10000.0,
                            rotary_fraction: fraction,
                            precise_angles: precise,
                        });
                        let n = batch * seq * heads * head_dim;
                        let x = Tensor::new(
                            vec![batch, seq, heads, head_dim],
                            (0..n)
                                .map(|i| ((i * 131) % 97) as f32 / 24.0 - 2.0)
                                .collect(),
                        )
                        .unwrap();
                        let extra = match positions {
                            None => Vec::new(),
                            Some(rows) => vec![(
                                "positions".to_string(),
                                Tensor::new(
                                    vec![rows, seq],
                                    (0..rows * seq).map(|i| (i * 977 % 5000) as f32).collect(),
                                )
                                .unwrap(),
                            )],
                        };
                        let Ok(req) = OpRequest::with_inputs(op, dtype, x, extra) else {
                            continue;
                        };
                        let rop = req.op.get::<RopeOp>().expect("a rope request");
                        let g = rope::geometry(rop, &req).unwrap();
                        if !rope_fast_fits(&g, dtype) {
                            continue;
                        }
                        let what = format!(
                            "{dtype} {layout:?} head_dim {head_dim} fraction {fraction} precise {precise} positions {positions:?}"
                        );
                        // Naive angles at positions in the thousands are off by design (the
                        // lesson's point); precise ones must match the reference.
                        out.push((what, precise || positions.is_none(), req));
                    }
                }
            }
        }
    }
    out
}

/// The fast rope kernel promises each element bit-identical to the simple kernel's: check it on
/// every geometry of [`fast_rope_requests`] (where the engine's plan really launches the fast
/// kernel).
#[test]
fn fast_rope_is_bit_identical_to_the_simple_kernel() {
    if !cuda_emu::ready() {
        return;
    }
    let engine = EmuCuda::with_max_blocks(5);
    let cases = fast_rope_requests();
    let mut reqs = Vec::new();
    for (what, _, req) in &cases {
        for kernel in KernelVariant::ALL {
            let req = req.clone().with_kernel(kernel);
            let planned = cuda::plan(&req, &engine.limits()).unwrap();
            let entry = &planned.plan.launches[0].entry;
            assert_eq!(
                entry.starts_with("rope_fast_"),
                kernel == KernelVariant::Fast,
                "{what}, {kernel} kernel: launches {entry}"
            );
            reqs.push(req);
        }
    }
    let outs = run_all(&engine, &reqs);
    for (((what, against_reference, _), req), pair) in
        cases.iter().zip(reqs.chunks(2)).zip(outs.chunks(2))
    {
        assert_eq!(bits(&pair[1].values), bits(&pair[0].values), "{what}");
        if *against_reference {
            let report = check_output(&req[1], &req[1].reference_full(), &pair[1]);
            assert!(report.passed, "{what}: {report}");
        }
    }
    assert!(
        cases.len() >= 36,
        "only {} geometries took the fast kernel",
        cases.len()
    );
}

// ------------------------------------------------------------------------------------------------
// tensor parallel.
// ------------------------------------------------------------------------------------------------

#[test]
fn tensor_parallel_suite_cases_run_on_the_emulator() {
    TENSOR_PARALLEL_SUITE.run();
}

/// The vocab-parallel cross-entropy on every dtype (the suite runs the fused kernel in f32 only):
/// k = 1 with the fused kernel and with the four steps, k = 2 and 4, rows whose length is a
/// multiple of the 16-byte vector and rows that are not, rows with a NaN, a +inf, an all -inf
/// row, the target at both ends.
fn cross_entropy_requests() -> Vec<OpRequest> {
    let mut reqs = Vec::new();
    for v in [64usize, 1001, 1004, 4096] {
        let rows = 6;
        let mut x: Vec<f32> = (0..rows * v)
            .map(|i| ((i * 7919) % 1009) as f32 / 100.0 - 5.0)
            .collect();
        x[v + 3] = f32::NAN; // row 1
        x[2 * v + v - 1] = f32::INFINITY; // row 2
        x[3 * v..4 * v].fill(f32::NEG_INFINITY); // row 3
        x[4 * v] = f32::NEG_INFINITY; // row 4: -inf, not the target
        let targets: Vec<f32> = [0, 5, 9, 2, v - 1, v / 2]
            .iter()
            .map(|&t| t as f32)
            .collect();
        for dtype in DType::ALL {
            for (ranks, kernel) in [
                (1, KernelVariant::Fast),
                (1, KernelVariant::Simple),
                (2, KernelVariant::Fast),
                (4, KernelVariant::Simple),
            ] {
                // V = 1001 splits over one rank only.
                let Ok(req) = OpRequest::with_inputs(
                    Op::new(TpOp::VocabParallelCrossEntropy { ranks }),
                    dtype,
                    Tensor::matrix(rows, v, x.clone()).unwrap(),
                    vec![(
                        "targets".into(),
                        Tensor::new(vec![rows], targets.clone()).unwrap(),
                    )],
                ) else {
                    assert!(v % ranks != 0, "V = {v}, k = {ranks}: not a valid request");
                    continue;
                };
                reqs.push(req.with_kernel(kernel));
            }
        }
    }
    assert_eq!(reqs.len(), 3 * (4 * 3 + 2));
    reqs
}

/// [`cross_entropy_requests`] against the reference, on the full grid and with more rows than
/// blocks.
#[test]
fn cross_entropy_special_rows_on_every_path() {
    if !cuda_emu::ready() {
        return;
    }
    let reqs = cross_entropy_requests();
    for engine in [EmuCuda::new(), EmuCuda::with_max_blocks(2)] {
        for (req, out) in reqs.iter().zip(run_all(&engine, &reqs)) {
            let report = check_output(req, &req.reference_full(), &out);
            assert!(
                report.passed,
                "cross-entropy {:?} {} {} {} kernel, max_blocks {}: {report}",
                req.x.shape,
                req.dtype,
                req.op.describe(),
                req.kernel,
                engine.max_blocks
            );
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Races: a kernel's bits do not depend on the order its threads run between barriers.
// ------------------------------------------------------------------------------------------------

/// Softmax on both kernels, gumbel_softmax on every kernel path with a kept and a streamed row,
/// and every 4th tensor-parallel and rope suite case on both kernels.
fn thread_order_requests() -> Vec<OpRequest> {
    let mut requests: Vec<OpRequest> = Vec::new();
    let x = Tensor::matrix(
        3,
        1100,
        (0..3300)
            .map(|i| ((i * 7919) % 991) as f32 / 100.0 - 5.0)
            .collect(),
    )
    .unwrap();
    for kernel in KernelVariant::ALL {
        for dtype in [DType::F32, DType::Bf16] {
            requests.push(
                OpRequest::new(
                    Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                        temperature: 1.0,
                        stable: true,
                    }),
                    dtype,
                    x.clone(),
                )
                .unwrap()
                .with_kernel(kernel),
            );
        }
    }
    for (kernel, hard) in [
        (KernelVariant::Simple, true),
        (KernelVariant::Fast, true),
        (KernelVariant::Fast, false),
    ] {
        requests.push(
            OpRequest::new(
                Op::new(GumbelOp::GumbelSoftmax {
                    tau: 1.0,
                    hard,
                    return_soft: true,
                    seed: 9,
                    offset: 0,
                    draws: 2,
                }),
                DType::F32,
                x.clone(),
            )
            .unwrap()
            .with_kernel(kernel),
        );
    }
    for case in topic_cases(&["tensor_parallel", "rope"]).iter().step_by(4) {
        for kernel in KernelVariant::ALL {
            requests.push(case.request().unwrap().with_kernel(kernel));
        }
    }
    requests
}

/// [`thread_order_requests`] under three thread orders: the same bits, outputs and aux outputs.
#[test]
fn results_do_not_depend_on_the_thread_order() {
    if !cuda_emu::ready() {
        return;
    }
    let requests = thread_order_requests();
    let runs: Vec<Vec<OpOutput>> = [Schedule::Forward, Schedule::Reverse, Schedule::Shuffle(17)]
        .into_iter()
        .map(|schedule| {
            run_all(
                &EmuCuda {
                    max_blocks: 65_535,
                    schedule,
                },
                &requests,
            )
        })
        .collect();
    for (i, req) in requests.iter().enumerate() {
        let outs: Vec<&OpOutput> = runs.iter().map(|r| &r[i]).collect();
        for o in &outs[1..] {
            assert_eq!(
                bits(&o.values),
                bits(&outs[0].values),
                "{} {} {}: the result depends on the thread order",
                req.op.describe(),
                req.dtype,
                req.kernel
            );
            assert_eq!(o.aux.len(), outs[0].aux.len());
            for (a, b) in o.aux.iter().zip(&outs[0].aux) {
                assert_eq!(
                    bits(&a.values),
                    bits(&b.values),
                    "{}: aux {}",
                    req.op.describe(),
                    a.name
                );
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The emulator itself: conversions, warp intrinsics, and failing loudly.
// ------------------------------------------------------------------------------------------------

/// The emulator's own test kernels, compiled as one program: conversions, warp intrinsics,
/// broken kernels.
fn selftest() -> Program {
    Program::custom(
        "emulator_selftest",
        &format!("{CONVERSIONS}{WARP_KERNELS}{BROKEN_KERNELS}"),
    )
}

/// Test kernels over the storage types of the emulated prelude.
const CONVERSIONS: &str = r#"
template <class D>
__device__ void store_all(const float* x, unsigned short* y, unsigned int n) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = D::store(x[i]);
}
template <class D>
__device__ void load_all(const unsigned short* x, float* y, unsigned int n) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = D::load(x[i]);
}
extern "C" __global__ void f16_store(const float* x, unsigned short* y, unsigned int n) { store_all<F16>(x, y, n); }
extern "C" __global__ void bf16_store(const float* x, unsigned short* y, unsigned int n) { store_all<BF16>(x, y, n); }
extern "C" __global__ void f16_load(const unsigned short* x, float* y, unsigned int n) { load_all<F16>(x, y, n); }
extern "C" __global__ void bf16_load(const unsigned short* x, float* y, unsigned int n) { load_all<BF16>(x, y, n); }
"#;

/// The emulated F16 (dtype_emu.h) and the prelude's BF16 round exactly as the `half` crate does
/// (round to nearest even, overflow to inf): every 16-bit pattern widened, and f32 values at and
/// around every rounding midpoint, plus a sweep of all exponents.
#[test]
fn storage_conversions_match_the_half_crate() {
    if !cuda_emu::ready() {
        return;
    }
    let all16: Vec<u16> = (0..=u16::MAX).collect();
    for (dtype, name) in [(DType::F16, "f16"), (DType::Bf16, "bf16")] {
        let widened = dtype.decode_u16(&all16);
        // Midpoints between neighbouring values, and the floats just around them.
        let mut xs: Vec<f32> = Vec::new();
        for w in widened.windows(2) {
            if w[0].is_finite() && w[1].is_finite() && w[0].signum() == w[1].signum() {
                let mid = ((w[0] as f64 + w[1] as f64) / 2.0) as f32;
                xs.extend([
                    mid,
                    f32::from_bits(mid.to_bits() - 1),
                    f32::from_bits(mid.to_bits() + 1),
                ]);
            }
        }
        xs.extend((0..(1u32 << 20)).map(|k| f32::from_bits(k.wrapping_mul(4093))));
        xs.extend([
            65504.0,
            65519.996,
            65520.0,
            1e6,
            -65520.0,
            f32::MIN_POSITIVE,
            1e-45,
            2.9802322e-8,
            2.9802326e-8,
        ]);
        xs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -0.0, 0.0]);
        let n = xs.len() as u32;
        let mut p = selftest();
        let x = p.input_f32(&xs);
        let y = p.zeros(Elem::U16, xs.len());
        let h = p.input_u16(&all16);
        let f = p.zeros(Elem::F32, all16.len());
        p.launch(
            &format!("{name}_store"),
            256,
            256,
            &[x.into(), y.into(), Arg::U32(n)],
        );
        p.launch(
            &format!("{name}_load"),
            64,
            256,
            &[h.into(), f.into(), Arg::U32(65536)],
        );
        let out = p.run().unwrap_or_else(|e| panic!("{e}"));
        let stored = out.u16(y);
        let want = dtype.encode_u16(&xs);
        let same = |a: u16, b: u16| {
            a == b || (dtype.decode_u16(&[a])[0].is_nan() && dtype.decode_u16(&[b])[0].is_nan())
        };
        let bad: Vec<String> = xs
            .iter()
            .zip(stored.iter().zip(&want))
            .filter(|(_, (a, b))| !same(**a, **b))
            .take(10)
            .map(|(x, (a, b))| {
                format!(
                    "{x:e} ({:#010x}): kernel {a:#06x}, half {b:#06x}",
                    x.to_bits()
                )
            })
            .collect();
        assert!(bad.is_empty(), "{name} store:\n{}", bad.join("\n"));
        let loaded = out.f32(f);
        for (i, (a, b)) in loaded.iter().zip(&widened).enumerate() {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{name} load of {i:#06x}: kernel {a:e}, half {b:e}"
            );
        }
    }
}

/// Test kernels for the warp intrinsics: every lane's result of each shuffle flavour, at widths
/// 32 and 8, plus ballot, any / all and the 32-bit reduction.
const WARP_KERNELS: &str = r#"
extern "C" __global__ void warp_ops(unsigned int* out, int width) {
    unsigned int lane = threadIdx.x & 31u;
    unsigned int v = 1000u + threadIdx.x;
    unsigned int* o = out + threadIdx.x * 10u;
    o[0] = __shfl_sync(0xffffffffu, v, (int)(lane * 7u + 3u), width);
    o[1] = __shfl_up_sync(0xffffffffu, v, 3u, width);
    o[2] = __shfl_down_sync(0xffffffffu, v, 5u, width);
    o[3] = __shfl_xor_sync(0xffffffffu, v, 6, width);
    o[4] = __ballot_sync(0xffffffffu, (threadIdx.x % 3u) == 0u);
    o[5] = (unsigned int)__any_sync(0xffffffffu, threadIdx.x == 37u);
    o[6] = (unsigned int)__all_sync(0xffffffffu, threadIdx.x != 37u);
    o[7] = __reduce_add_sync(0xffffffffu, v);
    float f = __shfl_xor_sync(0xffffffffu, (float)threadIdx.x * 0.5f, 1);
    o[8] = __float_as_uint(f);
    __syncwarp();
    o[9] = __activemask();
}
"#;

/// The shuffles follow the CUDA programming guide: `__shfl_sync` reads lane srcLane % width of
/// the caller's segment; `__shfl_up_sync` keeps its own value in a segment's first `delta` lanes
/// and `__shfl_down_sync` in its last; `__shfl_xor_sync` swaps within the segment.
#[test]
fn warp_intrinsics_follow_cuda_semantics() {
    if !cuda_emu::ready() {
        return;
    }
    let threads = 64u32;
    for width in [32u32, 8] {
        let mut p = selftest();
        let out = p.zeros(Elem::U32, threads as usize * 10);
        p.launch(
            "warp_ops",
            1,
            threads,
            &[out.into(), Arg::I32(width as i32)],
        );
        let got = p.run().unwrap_or_else(|e| panic!("{e}")).u32(out);
        for t in 0..threads {
            let lane = t % 32;
            let warp_base = t - lane;
            let seg = lane - lane % width; // first lane of the segment
            let value = |l: u32| 1000 + warp_base + l;
            let o = &got[t as usize * 10..t as usize * 10 + 10];
            let src = (lane * 7 + 3) % width;
            assert_eq!(o[0], value(seg + src), "shfl t{t} width {width}");
            let up = if lane % width >= 3 { lane - 3 } else { lane };
            assert_eq!(o[1], value(up), "shfl_up t{t} width {width}");
            let down = if lane % width + 5 < width {
                lane + 5
            } else {
                lane
            };
            assert_eq!(o[2], value(down), "shfl_down t{t} width {width}");
            assert_eq!(
                o[3],
                value(seg + ((lane % width) ^ 6) % width),
                "shfl_xor t{t} width {width}"
            );
            let ballot = (0..32u32)
                .filter(|l| (warp_base + l) % 3 == 0)
                .fold(0u32, |m, l| m | 1 << l);
            assert_eq!(o[4], ballot, "ballot t{t}");
            assert_eq!(o[5], u32::from(warp_base == 32), "any t{t}");
            assert_eq!(o[6], u32::from(warp_base != 32), "all t{t}");
            let sum: u32 = (0..32).map(value).sum();
            assert_eq!(o[7], sum, "reduce_add t{t}");
            assert_eq!(
                f32::from_bits(o[8]),
                (t ^ 1) as f32 * 0.5,
                "float shfl t{t}"
            );
            assert_eq!(o[9], u32::MAX, "activemask t{t}");
        }
    }
}

/// Kernels that are wrong in ways the GPU punishes with a hang, a fault or garbage.
const BROKEN_KERNELS: &str = r#"
extern "C" __global__ void divergent(float* y) {
    float v = (float)threadIdx.x;
    if (threadIdx.x < 16) v += __shfl_xor_sync(0xffffffffu, v, 1);   // lanes 16-31 never come
    else __syncthreads();
    y[threadIdx.x] = v;
}
extern "C" __global__ void exited_lane(float* y) {
    if (threadIdx.x == 5) return;
    y[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (float)threadIdx.x, 1);
}
extern "C" __global__ void one_past_the_end(const float* x, float* y, unsigned int n) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = x[i];   // <= : one element too far
}
extern "C" __global__ void misaligned_vector(const float* x, float* y) {
    // A 16-byte load from x + 1: a misaligned-address fault on the GPU.
    uint4 v = reinterpret_cast<const uint4*>(x + 1)[0];
    y[0] = __uint_as_float(v.x);
}
extern "C" __global__ void racy_sum(const float* x, float* y) {
    __shared__ float buf[64];
    buf[threadIdx.x] = x[threadIdx.x];
    // missing __syncthreads(): thread t reads buf[t + half] before thread t + half wrote it
    for (unsigned int half = 32; half > 0; half /= 2) {
        if (threadIdx.x < half) buf[threadIdx.x] += buf[threadIdx.x + half];
    }
    __syncthreads();
    if (threadIdx.x == 0) y[0] = buf[0];
}
extern "C" __global__ void read_before_write(float* y) {
    __shared__ float buf[32];
    if (threadIdx.x < 16) buf[threadIdx.x] = 1.0f;
    __syncthreads();
    y[threadIdx.x] = buf[threadIdx.x];   // slots 16..31 were never written
}
extern "C" __global__ void shared_overflow(float* y) {
    __shared__ float buf[32];
    buf[threadIdx.x] = 1.0f;
    __syncthreads();
    y[threadIdx.x] = buf[threadIdx.x + 1];   // thread 31 reads one past the end
}
extern "C" __global__ void __launch_bounds__(128) bounded(float* y) { y[threadIdx.x] = 1.0f; }
extern "C" __global__ void dynamic_shared(float* y) {
    extern __shared__ float dyn[];
    dyn[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    y[threadIdx.x] = dyn[blockDim.x - 1 - threadIdx.x];   // reversed through shared memory
}
"#;

fn broken(
    entry: &str,
    block: u32,
    setup: impl FnOnce(&mut Program) -> Vec<Arg>,
) -> Result<Outputs, String> {
    let mut p = selftest();
    let args = setup(&mut p);
    p.launch(entry, 1, block, &args);
    p.run().map_err(|e| e.to_string())
}

#[test]
fn the_emulator_fails_loudly() {
    if !cuda_emu::ready() {
        return;
    }
    let expect_err = |r: Result<Outputs, String>, needle: &str, what: &str| {
        let err = r
            .err()
            .unwrap_or_else(|| panic!("{what}: ran without an error"));
        assert!(
            err.contains(needle),
            "{what}: expected '{needle}' in:\n{err}"
        );
    };
    expect_err(
        broken("divergent", 32, |p| vec![p.zeros(Elem::F32, 32).into()]),
        "cannot finish",
        "a warp shuffle and a barrier that never meet",
    );
    expect_err(
        broken("exited_lane", 32, |p| vec![p.zeros(Elem::F32, 32).into()]),
        "exit",
        "a shuffle naming an exited lane",
    );
    expect_err(
        broken("bounded", 256, |p| vec![p.zeros(Elem::F32, 256).into()]),
        "__launch_bounds__",
        "more threads than __launch_bounds__",
    );
    // The host's argument types are checked against the kernel's parameters: `softmax_f32` with
    // f32 or f16-bit buffers and the given rows argument.
    let softmax_f32 = |half: bool, rows: Arg| {
        let mut p = Program::topic("softmax");
        let (x, y) = if half {
            (p.input_u16(&[0; 4]), p.zeros(Elem::U16, 4))
        } else {
            (p.input_f32(&[0.0; 4]), p.zeros(Elem::F32, 4))
        };
        p.launch(
            "softmax_f32",
            1,
            THREADS,
            &[
                x.into(),
                y.into(),
                rows,
                Arg::U32(2),
                Arg::F32(1.0),
                Arg::I32(0),
            ],
        );
        p.run().map_err(|e| e.to_string())
    };
    expect_err(
        softmax_f32(false, Arg::I32(2)),
        "argument 2",
        "an int for an unsigned",
    );
    expect_err(
        softmax_f32(true, Arg::U32(2)),
        "buffer of u16",
        "f16 bits for floats",
    );
    // A plan's read and write declarations (which order the streams on a GPU) are checked against
    // the parameters' constness.
    let declared = |x_written: bool, y_written: bool| {
        let mut p = Program::topic("softmax");
        let (x, y) = (p.input_f32(&[0.0; 4]), p.zeros(Elem::F32, 4));
        let access = |b, written| if written { Arg::Write(b) } else { Arg::Read(b) };
        p.launch(
            "softmax_f32",
            1,
            THREADS,
            &[
                access(x, x_written),
                access(y, y_written),
                Arg::U32(2),
                Arg::U32(2),
                Arg::F32(1.0),
                Arg::I32(0),
            ],
        );
        p.run().map_err(|e| e.to_string())
    };
    assert!(declared(false, true).is_ok(), "x read, y written");
    expect_err(
        declared(false, false),
        "as read-only",
        "a written buffer declared read-only",
    );
    expect_err(
        declared(true, true),
        "as written",
        "a read-only buffer declared written",
    );
    let mut p = Program::topic("softmax");
    p.launch("softmax_f64", 1, THREADS, &[]);
    expect_err(
        p.run().map_err(|e| e.to_string()),
        "no extern",
        "an unknown entry point",
    );

    // Out of bounds and misaligned: the sanitizers' findings (when the toolchain has them).
    let oob = broken("one_past_the_end", 64, |p| {
        vec![
            p.input_f32(&[1.0; 63]).into(),
            p.zeros(Elem::F32, 63).into(),
            Arg::U32(63),
        ]
    });
    match oob {
        Ok(out) => assert!(!out.sanitized, "an out-of-bounds read went unnoticed"),
        Err(e) => assert!(
            e.contains("heap-buffer-overflow") && e.contains("one_past_the_end"),
            "{e}"
        ),
    }
    let shared = broken("shared_overflow", 32, |p| {
        vec![p.zeros(Elem::F32, 32).into()]
    });
    match shared {
        Ok(out) => assert!(!out.sanitized, "a shared-memory overflow went unnoticed"),
        Err(e) => assert!(
            (e.contains("global-buffer-overflow") || e.contains("out of bounds"))
                && e.contains("thread (31, 0, 0)"),
            "{e}"
        ),
    }
    let misaligned = broken("misaligned_vector", 1, |p| {
        vec![p.input_f32(&[1.0; 8]).into(), p.zeros(Elem::F32, 1).into()]
    });
    match misaligned {
        Ok(out) => assert!(!out.sanitized, "a misaligned 16-byte load went unnoticed"),
        Err(e) => assert!(e.contains("misaligned"), "{e}"),
    }

    // A missing barrier shows up as results that depend on the thread order.
    let racy = |schedule| {
        let mut p = selftest();
        let x = p.input_f32(&(0..64).map(|i| i as f32).collect::<Vec<_>>());
        let y = p.zeros(Elem::F32, 1);
        p.launch("racy_sum", 1, 64, &[x.into(), y.into()]);
        p.schedule(schedule);
        p.run().unwrap_or_else(|e| panic!("{e}")).f32(y)[0]
    };
    let (forward, reverse) = (racy(Schedule::Forward), racy(Schedule::Reverse));
    assert_ne!(forward, reverse, "the missing barrier went unnoticed");
    assert!(forward == 2016.0 || reverse == 2016.0);

    // Shared memory starts as NaN in every block: a read before any write shows.
    let mut p = selftest();
    let y = p.zeros(Elem::F32, 32);
    p.launch("read_before_write", 1, 32, &[y.into()]);
    let y = p.run().unwrap_or_else(|e| panic!("{e}")).f32(y);
    assert!(y[..16].iter().all(|&v| v == 1.0));
    assert!(y[16..].iter().all(|v| v.is_nan()), "{y:?}");
}

/// The `__shared__` rewrite for the emulator: statics registered for poisoning (several
/// declarators, arrays, attributes), dynamic shared memory as a pointer, comments left alone, line
/// count kept. And dynamic shared memory works in a launch.
#[test]
fn shared_declarations_are_rewritten() {
    let src = "// __shared__ float in_a_comment[4];\n\
               __shared__ float a[16][17], b[3];\n\
               __shared__ __align__(16) unsigned int idx[THREADS];\n\
               extern __shared__ __align__(16) float dyn[];\n";
    let out = cuda_emu::rewrite_shared(src);
    assert_eq!(out.lines().count(), src.lines().count(), "{out}");
    assert!(
        out.contains("// __shared__ float in_a_comment[4];"),
        "{out}"
    );
    assert!(
        out.contains("static float a[16][17], b[3]; KB_SHARED_REGISTER(a) KB_SHARED_REGISTER(b)"),
        "{out}"
    );
    assert!(out.contains("KB_SHARED_REGISTER(idx)"), "{out}");
    assert!(
        out.contains("float* const dyn = reinterpret_cast<float*>(kb_dynamic_shared);"),
        "{out}"
    );
    if !cuda_emu::ready() {
        return;
    }
    let mut p = selftest();
    let y = p.zeros(Elem::F32, 64);
    p.launch_shared("dynamic_shared", 1, 64, 64 * 4, &[y.into()]);
    let y = p.run().unwrap_or_else(|e| panic!("{e}")).f32(y);
    assert_eq!(y, (0..64).rev().map(|i| i as f32).collect::<Vec<_>>());
}

/// Every request a test here runs on the emulator (the suites', and each test's own).
fn every_tested_request() -> Vec<OpRequest> {
    let mut reqs = Vec::new();
    for suite in [
        LOGITS_SUITE,
        SOFTMAX_SUITE,
        ROPE_SUITE,
        TENSOR_PARALLEL_SUITE,
    ] {
        reqs.extend(suite.requests());
    }
    reqs.extend(softmax_special_requests());
    reqs.extend(fast_softmax_online_requests());
    reqs.extend(
        gm::suite_cases(false)
            .iter()
            .filter_map(|c| c.request().ok()),
    );
    reqs.extend(gumbel_boundary_requests());
    for (_, _, req) in fast_rope_requests() {
        for kernel in KernelVariant::ALL {
            reqs.push(req.clone().with_kernel(kernel));
        }
    }
    reqs.extend(cross_entropy_requests());
    reqs.extend(thread_order_requests());
    reqs
}

/// Every entry point of every kernel file is launched by a plan that a test here runs (computed
/// from the CUDA engine's plans of [`every_tested_request`] and of the test entry points): a new
/// kernel makes this fail until a request that launches it is tested here.
#[test]
fn every_entry_point_is_emulated() {
    if !cuda_emu::ready() {
        return;
    }
    let limits = Limits::default();
    let mut launched: BTreeSet<String> = BTreeSet::new();
    let mut add =
        |plan: &cplan::Plan| launched.extend(plan.launches.iter().map(|l| l.entry.clone()));
    for req in every_tested_request() {
        // Empty requests launch nothing (`Engine::run` answers them), nor do invalid ones.
        if req.is_empty() || req.op.validate().is_err() {
            continue;
        }
        if let Ok(planned) = cuda::plan(&req, &limits) {
            add(&planned.plan);
        }
    }
    add(&cuda::plan_philox(&philox_blocks()).unwrap().plan);
    add(&cuda::plan_gumbel_words(&gumbel_test_words(), &limits)
        .unwrap()
        .plan);
    let mut missing = Vec::new();
    for (topic, _, _) in kernelbook::sources::cuda_files() {
        let entries = cuda_emu::topic_entries(topic).unwrap_or_else(|e| panic!("{topic}: {e}"));
        assert!(
            !entries.is_empty(),
            "kernels/{topic}.cu: no entry points found"
        );
        let names: Vec<String> = entries
            .iter()
            .map(|e| format!("{} (bound {})", e.name, e.max_threads))
            .collect();
        println!("kernels/{topic}.cu: {}", names.join(", "));
        for e in entries {
            if !launched.contains(&e.name) {
                missing.push(format!("kernels/{topic}.cu: {}", e.name));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "entry points no tested plan launches (test a request whose plan launches them in \
         tests/cuda_emulator.rs):\n{}",
        missing.join("\n")
    );
}
