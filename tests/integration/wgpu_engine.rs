//! The wgpu engine against the f64 reference: every WGSL source validates with naga; with an adapter
//! (lavapipe in CI), every op in f32/f16/bf16 at PyTorch's sizes and three temperatures meets the
//! check's tolerance, the edge values come out as in torch, the naive f16 softmax really overflows
//! while the stable one does not, and the 16-bit conversions written in WGSL round exactly like
//! `DType::round`.
//!
//! The fast softmax kernel (online max and sum, vec4 loads, a row loop) is checked on its own: every
//! dtype at row lengths around its vec4 and workgroup boundaries, special-value rows, more rows than
//! one dispatch line holds, and against the simple kernel.
//!
//! Without an adapter the device tests print "skipped: <reason>" and pass, unless
//! `KERNELBOOK_REQUIRE_WGPU=1`, where they fail with the probe's reason.

use kernelbook::check::{self, CheckReport};
use kernelbook::dtype::DType;
use kernelbook::engine::cpu::CpuEngine;
use kernelbook::engine::wgpu::WgpuEngine;
use kernelbook::engine::{Engine, EngineError, TimingSource};
use kernelbook::ops::{KernelVariant, Op, OpRequest, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};
use std::collections::BTreeMap;

/// The engine, probed once for all tests (they run on parallel threads).
fn engine() -> Option<&'static WgpuEngine> {
    crate::common::wgpu()
}

fn request(op: Op, dtype: DType, rows: usize, cols: usize, data: Vec<f32>) -> OpRequest {
    OpRequest::new(op, dtype, Tensor::matrix(rows, cols, data).expect("shape"))
        .expect("valid request")
}

fn run(engine: &WgpuEngine, req: &OpRequest) -> Vec<f32> {
    run_on(engine, req)
}

fn run_on(engine: &dyn Engine, req: &OpRequest) -> Vec<f32> {
    match engine.run(req) {
        Ok(out) => out.values,
        Err(e) => panic!(
            "{} {} {} {:?}: {e}",
            engine.kind(),
            req.op.describe(),
            req.dtype,
            req.x.shape
        ),
    }
}

fn checked(engine: &WgpuEngine, req: &OpRequest) -> (Vec<f32>, CheckReport) {
    let got = run(engine, req);
    let report = check::check(req, &req.reference(), &got);
    (got, report)
}

// ---------------------------------------------------------------------------------------------
// Without a device.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_wgsl_source_parses_and_validates_with_naga() {
    use wgpu::naga;
    for (topic, file, own) in kernelbook::sources::wgsl_files() {
        // What the engine compiles: the shared prelude (shaders/dtype.wgsl), then the file.
        let program = kernelbook::sources::wgsl_program(topic).expect("embedded");
        let source = program.as_str();
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{file} does not parse:\n{}", e.emit_to_string(source)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{file} does not validate:\n{}", e.emit_to_string(source)));
        let entry = format!("{topic}_main");
        assert!(
            module
                .entry_points
                .iter()
                .any(|ep| ep.name == entry && ep.workgroup_size == [256, 1, 1]),
            "{file} has no @workgroup_size(256) entry point {entry}"
        );
        assert!(
            own.starts_with("// "),
            "{file} starts with a comment saying what it is for"
        );
    }
}

/// The shaders cannot include each other: the special values and f16/bf16 conversions live once, in
/// shaders/dtype.wgsl, compiled in front of every shader; no shader defines them again.
#[test]
fn shared_wgsl_helpers_are_written_once() {
    let prelude = kernelbook::sources::WGSL_PRELUDE;
    for name in [
        "fn f16_to_f32(",
        "fn f32_to_f16(",
        "fn f32_to_bf16(",
        "fn is_nan(",
        "const POS_INF_BITS",
    ] {
        assert!(prelude.contains(name), "dtype.wgsl defines {name}");
        for (_, file, source) in kernelbook::sources::wgsl_files() {
            assert!(!source.contains(name), "{file} defines {name} again");
        }
    }
}

/// The steps the app highlights are marked in the shader text.
#[test]
fn softmax_steps_are_marked() {
    let source = kernelbook::sources::wgsl("softmax").expect("embedded");
    for step in [
        "// step 1: max-reduce",
        "// step 2: sum-reduce",
        "// step 3: normalise and write",
    ] {
        assert!(source.contains(step), "softmax.wgsl lacks '{step}'");
    }
}

/// The fast kernel's two passes are marked for the lesson, apart from the simple kernel's steps.
#[test]
fn softmax_fast_passes_are_marked() {
    let source = kernelbook::sources::wgsl("softmax").expect("embedded");
    for pass in [
        "// fast pass 1: online max and sum",
        "// fast pass 2: normalise",
    ] {
        assert!(source.contains(pass), "softmax.wgsl lacks '{pass}'");
    }
    assert!(
        source.contains("fn softmax_fast("),
        "softmax.wgsl lacks the fast entry point"
    );
}

// ---------------------------------------------------------------------------------------------
// On the device.
// ---------------------------------------------------------------------------------------------

#[test]
fn probe_describes_the_device() {
    let Some(engine) = engine() else { return };
    let device = engine.device();
    assert!(device.contains(" · "), "{device}");
    assert_eq!(
        engine.is_software(),
        device.ends_with(" · software"),
        "{device}"
    );
    eprintln!(
        "wgpu device: {device}; kernel timing: {:?}",
        engine.timing_source()
    );
}

#[test]
fn a_shader_compile_error_is_an_err_not_a_panic() {
    let Some(engine) = engine() else { return };
    let broken = "@compute @workgroup_size(256) fn main() { let a: f32 = undefined_name; }";
    let err = engine
        .try_compile("broken.wgsl", broken, "main")
        .expect_err("must not compile");
    assert!(err.contains("broken.wgsl"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    eprintln!("compile error as reported: {err}");
    // The engine still works afterwards.
    let req = request(
        Op::new(kernelbook::ops::logits::LogitsOp::Sigmoid),
        DType::F32,
        1,
        1,
        vec![0.0],
    );
    assert_eq!(run(engine, &req), vec![0.5]);
}

/// The random-input matrix: every op (with and without eps, stable and naive, three temperatures)
/// x dtype x PyTorch's sizes, each within the check's tolerance. Prints the largest relative error
/// per op and dtype.
#[test]
fn random_inputs_match_the_reference() {
    let Some(engine) = engine() else { return };
    let shapes = [(31, 20), (33, 2049), (16, 30576), (1, 1)];
    let mut ops: Vec<(Op, &str)> = vec![
        (
            Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: None }),
            "uniform(0,1)",
        ),
        (
            Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: Some(1e-6) }),
            "uniform(0,1)",
        ),
        (
            Op::new(kernelbook::ops::logits::LogitsOp::Sigmoid),
            "normal(0,4)",
        ),
        (
            Op::new(kernelbook::ops::logits::LogitsOp::LogSigmoid),
            "normal(0,8)",
        ),
        // Naive where it is safe: small logits, sums far below f16's 65504.
        (
            Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                temperature: 1.0,
                stable: false,
            }),
            "normal(0,0.5)",
        ),
    ];
    for t in [0.05, 1.0, 10.0] {
        ops.push((
            Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                temperature: t,
                stable: true,
            }),
            "normal(0,3)",
        ));
        ops.push((
            Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: t }),
            "normal(0,3)",
        ));
    }
    let mut seed = 100u64;
    let mut failures = Vec::new();
    // (op, dtype) -> [wgpu, cpu] x (max rel, max ULP)
    let mut worst: BTreeMap<(String, &str), [(f64, u64); 2]> = BTreeMap::new();
    let cpu = CpuEngine::new();
    let mut timing = None;
    for dtype in DType::ALL {
        for (op, dist) in &ops {
            for &(rows, cols) in &shapes {
                seed += 1;
                let mut rng = StdRng::seed_from_u64(seed);
                let n = rows * cols;
                let data: Vec<f32> = match *dist {
                    "uniform(0,1)" => {
                        let u = Uniform::new(0.0f32, 1.0).expect("valid");
                        (0..n).map(|_| u.sample(&mut rng)).collect()
                    }
                    _ => {
                        let scale: f32 = dist["normal(0,".len()..dist.len() - 1]
                            .parse()
                            .expect("scale");
                        let normal = Normal::new(0.0f32, scale).expect("valid");
                        (0..n).map(|_| normal.sample(&mut rng)).collect()
                    }
                };
                let req = request(op.clone(), dtype, rows, cols, data);
                let out = engine
                    .run(&req)
                    .unwrap_or_else(|e| panic!("{} {dtype}: {e}", op.describe()));
                timing.get_or_insert(out.timing);
                let reference = req.reference();
                let report = check::check(&req, &reference, &out.values);
                let on_cpu = check::check(&req, &reference, &run_on(&cpu, &req));
                let entry = worst.entry((op.describe(), dtype.name())).or_default();
                for (slot, r) in entry.iter_mut().zip([&report, &on_cpu]) {
                    *slot = (slot.0.max(r.max_rel), slot.1.max(r.max_ulp));
                }
                if !report.passed {
                    failures.push(format!(
                        "{} {dist} {dtype} {rows}x{cols}: {report}",
                        op.describe()
                    ));
                }
            }
        }
    }
    eprintln!(
        "wgpu on {} ({timing:?}) and the CPU engine: largest error per op and dtype",
        engine.device()
    );
    eprintln!(
        "  {:<24} {:<5} {:>9} {:>9} {:>9} {:>9}",
        "op", "dtype", "wgpu rel", "wgpu ULP", "cpu rel", "cpu ULP"
    );
    for ((op, dtype), [(rel, ulp), (cpu_rel, cpu_ulp)]) in &worst {
        eprintln!(
            "  {op:<24} {dtype:<5} {:>9} {ulp:>9} {:>9} {cpu_ulp:>9}",
            check::fmt_sci(*rel),
            check::fmt_sci(*cpu_rel)
        );
    }
    assert!(
        failures.is_empty(),
        "{} of the random cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn edge_values_match_torch() {
    let Some(engine) = engine() else { return };
    let nan = f32::NAN;
    for dtype in DType::ALL {
        // torch.logit([0, 1, 1.5, -0.1, 0.5]) = [-inf, inf, nan, nan, 0]
        let req = request(
            Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: None }),
            dtype,
            1,
            6,
            vec![0.0, 1.0, 1.5, -0.1, 0.5, nan],
        );
        let (y, report) = checked(engine, &req);
        assert!(report.passed, "logit {dtype}: {report}");
        assert_eq!(
            (y[0], y[1], y[4]),
            (f32::NEG_INFINITY, f32::INFINITY, 0.0),
            "logit {dtype}: {y:?}"
        );
        assert!(
            y[2].is_nan() && y[3].is_nan() && y[5].is_nan(),
            "logit {dtype}: {y:?}"
        );

        // eps = 1e-6 clamps to [-13.8155, 13.8023] (in f32; f16/bf16 round those).
        let req = request(
            Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: Some(1e-6) }),
            dtype,
            1,
            6,
            vec![0.0, 1.0, 1.5, -0.1, 0.5, nan],
        );
        let (y, report) = checked(engine, &req);
        assert!(report.passed, "logit eps {dtype}: {report}");
        let (lo, hi) = (dtype.round(-13.815511), dtype.round(13.802311));
        for (i, want) in [(0, lo), (1, hi), (2, hi), (3, lo)] {
            assert!(
                (y[i] - want).abs() <= 2e-5 * want.abs(),
                "logit eps {dtype}[{i}]: {y:?}"
            );
        }
        assert!(y[5].is_nan(), "the clamp must not hide a NaN: {y:?}");

        // sigmoid(-100) = 3.7e-44 (0 in f32 torch), sigmoid(-20) = 0 in f16.
        let req = request(
            Op::new(kernelbook::ops::logits::LogitsOp::Sigmoid),
            dtype,
            1,
            7,
            vec![-100.0, -20.0, 0.0, 20.0, 100.0, nan, f32::NEG_INFINITY],
        );
        let (y, report) = checked(engine, &req);
        assert!(report.passed, "sigmoid {dtype}: {report}");
        assert_eq!(
            (y[2], y[4], y[6]),
            (0.5, 1.0, 0.0),
            "sigmoid {dtype}: {y:?}"
        );
        assert!(
            y[0] >= 0.0 && y[0] < 1e-40 && y[5].is_nan(),
            "sigmoid {dtype}: {y:?}"
        );
        if dtype == DType::F16 {
            assert_eq!(
                y[1], 0.0,
                "f16 sigmoid(-20) is below half the smallest subnormal"
            );
        }

        // logsigmoid(-200) = -200 exactly, where log(sigmoid(-200)) = -inf.
        let req = request(
            Op::new(kernelbook::ops::logits::LogitsOp::LogSigmoid),
            dtype,
            1,
            6,
            vec![-200.0, -20.0, 0.0, 30.0, 200.0, f32::INFINITY],
        );
        let (y, report) = checked(engine, &req);
        assert!(report.passed, "logsigmoid {dtype}: {report}");
        assert_eq!(y[0], -200.0, "logsigmoid {dtype}: {y:?}");
        assert_eq!(y[5], 0.0, "logsigmoid(+inf) {dtype}: {y:?}");
        if dtype != DType::F16 {
            // -9.36e-14 survives in f32 and bf16 (f16 flushes it to -0).
            assert!(
                y[3] < 0.0 && (y[3] as f64 + 9.357622968840175e-14).abs() < 1e-15,
                "logsigmoid(30) {dtype}: {y:?}"
            );
        }

        // Undefined softmax rows are NaN as in torch; -inf logits get probability 0.
        let ninf = f32::NEG_INFINITY;
        let rows = vec![
            ninf,
            ninf,
            ninf,
            f32::INFINITY,
            1.0,
            0.0,
            nan,
            1.0,
            0.0,
            ninf,
            0.0,
            1.0,
        ];
        for op in [
            Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                temperature: 1.0,
                stable: true,
            }),
            Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 1.0 }),
        ] {
            let req = request(op.clone(), dtype, 4, 3, rows.clone());
            let (y, report) = checked(engine, &req);
            assert!(report.passed, "{} {dtype}: {report}", op.describe());
            assert!(
                y[..9].iter().all(|v| v.is_nan()),
                "{} {dtype}: {y:?}",
                op.describe()
            );
        }
    }
}

/// The lesson: in f16, e^z overflows once z > 11.09; the naive softmax turns inf / inf into NaN
/// while the stable one, which only exponentiates z - max <= 0, stays finite.
#[test]
fn naive_f16_softmax_really_overflows() {
    let Some(engine) = engine() else { return };
    let naive = |t: f64| {
        Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
            temperature: t,
            stable: false,
        })
    };
    let stable = |t: f64| {
        Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
            temperature: t,
            stable: true,
        })
    };
    let cases: [(f64, Vec<f32>); 3] = [
        (1.0, vec![12.09, 0.0, -1.0, 2.0]),
        (0.5, vec![6.0, 0.0, 1.0]),    // max(x)/T = 12
        (10.0, vec![112.0, 3.0, 0.0]), // max(x)/T = 11.2
    ];
    for (t, x) in cases {
        let req = request(naive(t), DType::F16, 1, x.len(), x.clone());
        let (y, report) = checked(engine, &req);
        assert!(
            y.iter().any(|v| v.is_nan() || v.is_infinite()),
            "naive f16 T={t} {x:?} -> {y:?}"
        );
        assert!(y[0].is_nan(), "inf / inf at the max: {y:?}");
        assert!(y[1..].iter().all(|&v| v == 0.0), "finite / inf = 0: {y:?}");
        assert!(!report.passed, "the check must flag the overflow: {report}");

        let req = request(stable(t), DType::F16, 1, x.len(), x.clone());
        let (y, report) = checked(engine, &req);
        assert!(
            y.iter().all(|v| v.is_finite()),
            "stable f16 T={t} {x:?} -> {y:?}"
        );
        assert!(report.passed, "stable f16 T={t}: {report}");
    }
    // Just below the limit the naive one is fine (e^11 = 59874 < 65504).
    let req = request(naive(1.0), DType::F16, 1, 2, vec![11.0, 0.0]);
    let (y, report) = checked(engine, &req);
    assert!(
        y.iter().all(|v| v.is_finite()) && report.passed,
        "{y:?}: {report}"
    );
    // Each e^10.5 = 36316 fits f16, their sum does not: s = inf, every y = 0.
    let req = request(naive(1.0), DType::F16, 1, 2, vec![10.5, 10.5]);
    assert_eq!(run(engine, &req), vec![0.0, 0.0]);
    // f32 and bf16 overflow past 88.72.
    for dtype in [DType::F32, DType::Bf16] {
        let req = request(naive(1.0), dtype, 1, 3, vec![90.0, 0.0, 1.0]);
        let y = run(engine, &req);
        assert!(
            y[0].is_nan() && y[1] == 0.0 && y[2] == 0.0,
            "naive {dtype}: {y:?}"
        );
        let req = request(naive(1.0), dtype, 1, 3, vec![80.0, 0.0, 1.0]);
        let (y, report) = checked(engine, &req);
        assert!(
            report.passed,
            "naive {dtype} below the limit: {y:?} {report}"
        );
    }
}

/// The same f32 computation stored as f32 and as f16/bf16: the 16-bit result must be exactly
/// `DType::round` of the f32 one (round to nearest even, subnormals, overflow), bit for bit. The
/// inputs are representable in the 16-bit type, so both runs compute from the same values, and
/// the f16 inputs include subnormals, which exercises the shader's decoding too.
#[test]
fn f16_and_bf16_conversions_round_exactly() {
    let Some(engine) = engine() else { return };
    let mut rng = StdRng::seed_from_u64(7);
    let normal = Normal::new(0.0f32, 6.0).expect("valid");
    let unit = Uniform::new(0.0f32, 1.0).expect("valid");
    for dtype in [DType::F16, DType::Bf16] {
        // Probabilities for logit: uniform, tiny (f16 subnormals: below 6.1e-5), and near 1.
        let mut probabilities: Vec<f32> = (0..3000).map(|_| unit.sample(&mut rng)).collect();
        probabilities.extend((1..=1023).map(|k| k as f32 * 2f32.powi(-24)));
        probabilities.extend((0..500).map(|k| 1.0 - k as f32 * 2f32.powi(-11)));
        let wide: Vec<f32> = (0..8192).map(|_| normal.sample(&mut rng)).collect();
        let cases = [
            (
                Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: None }),
                probabilities.clone(),
            ),
            (
                Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: Some(1e-3) }),
                probabilities,
            ),
            (
                Op::new(kernelbook::ops::logits::LogitsOp::Sigmoid),
                wide.clone(),
            ),
            (
                Op::new(kernelbook::ops::logits::LogitsOp::LogSigmoid),
                wide.clone(),
            ),
            (
                Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                    temperature: 1.0,
                    stable: true,
                }),
                wide.clone(),
            ),
            (
                Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 2.0 }),
                wide,
            ),
        ];
        for (op, x) in cases {
            let x: Vec<f32> = x.iter().map(|&v| dtype.round(v)).collect();
            let elementwise = op.kind().topic() == "logits";
            let cols = if elementwise { x.len() } else { 64 };
            let rows = x.len() / cols;
            let x = x[..rows * cols].to_vec();
            let wide = run(
                engine,
                &request(op.clone(), DType::F32, rows, cols, x.clone()),
            );
            let narrow = run(engine, &request(op.clone(), dtype, rows, cols, x.clone()));
            let mut mismatches = 0;
            for (i, (&w, &n)) in wide.iter().zip(&narrow).enumerate() {
                let want = dtype.round(w);
                let same = want.to_bits() == n.to_bits() || (want.is_nan() && n.is_nan());
                if !same {
                    mismatches += 1;
                    if mismatches <= 5 {
                        eprintln!(
                            "{} {dtype} x={}: f32 {w:e} rounds to {want:e}, got {n:e}",
                            op.describe(),
                            x[i]
                        );
                    }
                }
            }
            assert_eq!(
                mismatches,
                0,
                "{} {dtype}: {mismatches} values rounded differently",
                op.describe()
            );
        }
    }
}

#[test]
fn shapes_beyond_one_workgroup_grid_line_and_odd_shapes() {
    let Some(engine) = engine() else { return };
    // More than 65535 rows: the softmax grid goes 2D. 70000 rows of 3.
    let rows = 70_000;
    let mut rng = StdRng::seed_from_u64(11);
    let normal = Normal::new(0.0f32, 3.0).expect("valid");
    let x: Vec<f32> = (0..rows * 3).map(|_| normal.sample(&mut rng)).collect();
    let req = request(
        Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
            temperature: 1.0,
            stable: true,
        }),
        DType::F32,
        rows,
        3,
        x,
    );
    let (_, report) = checked(engine, &req);
    assert!(report.passed, "70000 x 3 softmax: {report}");
    // More than 65535 * 256 elements: the element-wise grid goes 2D.
    let n = 65_535 * 256 + 1000;
    let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 / 1000.0).collect();
    let req = request(
        Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: None }),
        DType::F16,
        1,
        n,
        x,
    );
    let (_, report) = checked(engine, &req);
    assert!(report.passed, "{n} element logit: {report}");
    // A 3-d input: rows are all leading axes.
    let req = OpRequest::new(
        Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 1.0 }),
        DType::F32,
        Tensor::new(vec![2, 3, 5], (0..30).map(|i| i as f32 * 0.1).collect()).expect("shape"),
    )
    .expect("valid");
    let (_, report) = checked(engine, &req);
    assert!(report.passed, "2x3x5 log_softmax: {report}");
    // Empty inputs never touch the device.
    let req = request(
        Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
            temperature: 1.0,
            stable: true,
        }),
        DType::F32,
        0,
        10,
        vec![],
    );
    assert!(run(engine, &req).is_empty());
}

#[test]
fn outputs_carry_shape_dtype_and_timings() {
    let Some(engine) = engine() else { return };
    let req = request(
        Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 1.0 }),
        DType::Bf16,
        4,
        300,
        vec![0.25; 1200],
    );
    let out = engine.run(&req).expect("runs");
    assert_eq!(
        (out.shape.as_slice(), out.dtype, out.values.len()),
        (&[4, 300][..], DType::Bf16, 1200)
    );
    assert_eq!(out.timing, engine.timing_source());
    assert!(matches!(
        out.timing,
        TimingSource::GpuTimestamps | TimingSource::WallClock
    ));
    assert!(out.total_time >= out.kernel_time || out.timing == TimingSource::GpuTimestamps);
    assert!(out.total_time.as_nanos() > 0);
    // A larger run, for the record: the kernel time is part of the whole call.
    let req = request(
        Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
            temperature: 1.0,
            stable: true,
        }),
        DType::F32,
        16,
        30576,
        (0..16 * 30576).map(|i| (i % 97) as f32 * 0.1).collect(),
    );
    let out = engine.run(&req).expect("runs");
    assert!(
        out.kernel_time > std::time::Duration::ZERO,
        "{:?}",
        out.kernel_time
    );
    assert!(
        out.kernel_time <= out.total_time,
        "{:?} > {:?}",
        out.kernel_time,
        out.total_time
    );
    eprintln!(
        "softmax 16x30576 f32 on {}: kernel {:?} ({:?}), whole call {:?}",
        engine.device(),
        out.kernel_time,
        out.timing,
        out.total_time
    );
}

#[test]
fn requests_beyond_the_device_limits_are_unsupported() {
    let Some(engine) = engine() else { return };
    let limits = engine.limits();
    let max = (limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
        / 4) as usize;
    // Build the request by hand: OpRequest::new would refuse more than 2^28 elements first, and
    // the engine must refuse on its own. (vec![0.0; n] is zeroed memory the OS hands out lazily,
    // and supports() never reads it.)
    let Some(n) = max.checked_add(1) else { return };
    if n > (1 << 30) {
        eprintln!("skipped: the adapter binds {max} elements, more than this test allocates");
        return;
    }
    let req = OpRequest {
        op: Op::new(kernelbook::ops::logits::LogitsOp::Sigmoid),
        dtype: DType::F32,
        x: Tensor {
            shape: vec![1, n],
            data: vec![0.0; n],
        },
        extra: Vec::new(),
        kernel: Default::default(),
    };
    eprintln!("the adapter binds at most {max} elements; asking for {n}");
    match engine.supports(&req) {
        Err(EngineError::Unsupported(reason)) => assert!(
            reason.contains("max_storage_buffer_binding_size")
                || reason.contains("max_buffer_size"),
            "{reason}"
        ),
        other => panic!("{n} elements: {other:?}"),
    }
}

#[test]
fn concurrent_runs_from_many_threads() {
    let Some(engine) = engine() else { return };
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for k in 0..5 {
                    let x: Vec<f32> = (0..500)
                        .map(|i| ((i * (t + 1) + k) % 17) as f32 * 0.5)
                        .collect();
                    let req = request(
                        Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                            temperature: 1.0,
                            stable: true,
                        }),
                        DType::F16,
                        5,
                        100,
                        x,
                    );
                    let (_, report) = checked(engine, &req);
                    assert!(report.passed, "thread {t} run {k}: {report}");
                }
            });
        }
    });
}

/// Diagnostic, not a pass/fail test (`cargo test --test wgpu_engine -- --ignored --nocapture`): how
/// accurate this adapter's `exp` and `log` are. WGSL only promises exp within 3 + 2|x| ULP, and log
/// within 3 ULP outside [0.5, 2] but only 2^-21 absolute inside it; CPU libms are within 1 ULP.
#[test]
#[ignore]
fn measure_exp_and_log_accuracy() {
    let Some(engine) = engine() else { return };
    let f32_ulps = |got: f32, want: f64| {
        DType::F32
            .ulp_distance(got as f64, want)
            .unwrap_or(u64::MAX)
    };

    // exp: for x < -17, sigmoid(x) = e^x / (1 + e^x) and 1 + e^x rounds to 1, so the result is the
    // device's exp(x) itself. Bins of |x|.
    let xs: Vec<f32> = (0..200_000)
        .map(|i| -17.0 - 70.0 * i as f32 / 200_000.0)
        .collect();
    let got = run(
        engine,
        &request(
            Op::new(kernelbook::ops::logits::LogitsOp::Sigmoid),
            DType::F32,
            1,
            xs.len(),
            xs.clone(),
        ),
    );
    let mut bins: BTreeMap<u32, (u64, f32)> = BTreeMap::new();
    for (&x, &g) in xs.iter().zip(&got) {
        let ulps = f32_ulps(g, (x as f64).exp());
        let bin = bins.entry((-x / 10.0) as u32 * 10).or_default();
        if ulps > bin.0 {
            *bin = (ulps, x);
        }
    }
    eprintln!(
        "exp on {}: largest error in f32 ULPs by |x| (WGSL allows 3 + 2|x|)",
        engine.device()
    );
    for (lo, (ulps, x)) in &bins {
        eprintln!("  |x| in [{lo}, {}): {ulps} ULP (at x = {x})", lo + 10);
    }

    // log away from 1: for p < 2^-25, logit(p) = log(p / (1 - p)) with 1 - p rounding to 1.
    let ps: Vec<f32> = (0..100_000)
        .map(|i| 2f32.powf(-126.0 + 100.0 * i as f32 / 100_000.0))
        .collect();
    let got = run(
        engine,
        &request(
            Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: None }),
            DType::F32,
            1,
            ps.len(),
            ps.clone(),
        ),
    );
    let worst = ps
        .iter()
        .zip(&got)
        .map(|(&p, &g)| (f32_ulps(g, (p as f64).ln()), p))
        .max_by_key(|w| w.0);
    eprintln!("log of p in [2^-126, 2^-26]: largest error {worst:?} (ULP, p)");

    // log near 1: logit(p) for p in [1/3, 1/2] takes the log of q = p / (1 - p) in [0.5, 1].
    let ps: Vec<f32> = (0..100_000)
        .map(|i| 1.0 / 3.0 + (1.0 / 6.0) * i as f32 / 100_000.0)
        .collect();
    let got = run(
        engine,
        &request(
            Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: None }),
            DType::F32,
            1,
            ps.len(),
            ps.clone(),
        ),
    );
    let worst = ps
        .iter()
        .zip(&got)
        .map(|(&p, &g)| {
            let q = p / (1.0 - p); // the device's division is IEEE on lavapipe; elsewhere 2.5 ULP
            ((g as f64 - (q as f64).ln()).abs(), p)
        })
        .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
    eprintln!(
        "log of q in [0.5, 1]: largest absolute error {:e} at p = {} (WGSL allows 2^-21 = 4.8e-7)",
        worst.0, worst.1
    );
}

// ---------------------------------------------------------------------------------------------
// The fast softmax kernel against the reference and against the simple kernel.
// ---------------------------------------------------------------------------------------------

/// The stable ops the fast kernel runs: softmax and log_softmax at three temperatures.
fn fast_ops() -> Vec<Op> {
    let mut ops = Vec::new();
    for temperature in [0.05, 1.0, 10.0] {
        ops.push(Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
            temperature,
            stable: true,
        }));
        ops.push(Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax {
            temperature,
        }));
    }
    ops
}

/// Run `req` with both kernels; each must pass the check against the f64 reference, and the fast
/// result must be within the op's tolerance of the simple one (NaN where it is NaN). Returns the
/// (fast, simple) outputs, or the failures as text.
fn fast_and_simple(engine: &WgpuEngine, req: &OpRequest) -> Result<(Vec<f32>, Vec<f32>), String> {
    let what = format!("{} {} {:?}", req.op.describe(), req.dtype, req.x.shape);
    let reference = req.reference();
    let fast = run(engine, &req.clone().with_kernel(KernelVariant::Fast));
    let simple = run(engine, &req.clone().with_kernel(KernelVariant::Simple));
    let mut failures = Vec::new();
    for (name, got) in [("fast", &fast), ("simple", &simple)] {
        let report = check::check(req, &reference, got);
        if !report.passed {
            failures.push(format!("{what}: {name} against the reference: {report}"));
        }
    }
    let simple_as_reference: Vec<f64> = simple.iter().map(|&v| v as f64).collect();
    let report = check::check(req, &simple_as_reference, &fast);
    if !report.passed {
        failures.push(format!("{what}: fast against simple: {report}"));
    }
    if failures.is_empty() {
        Ok((fast, simple))
    } else {
        Err(failures.join("\n"))
    }
}

/// Row lengths on both sides of the vec4 width (1, 3), of one workgroup's columns (255, 256, 257),
/// of one round of four vec4 loads per invocation (4096 = 256 x 4 x 4, plus one), a typical length
/// and a vocabulary (32000: whole rounds, then a remainder). With an odd length the rows start at
/// every offset modulo 4, so the edge elements before and after the whole vec4s are exercised on
/// every dtype.
#[test]
fn fast_softmax_matches_the_reference_at_every_row_length() {
    let Some(engine) = engine() else { return };
    let lengths = [
        (1, 9),
        (3, 7),
        (255, 5),
        (256, 5),
        (257, 5),
        (1000, 4),
        (4097, 3),
        (32000, 2),
    ];
    let mut seed = 500u64;
    let mut failures = Vec::new();
    // dtype -> largest relative error of (fast, simple)
    let mut worst: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for dtype in DType::ALL {
        for &(cols, rows) in &lengths {
            seed += 1;
            let mut rng = StdRng::seed_from_u64(seed);
            let normal = Normal::new(0.0f32, 3.0).expect("valid");
            let x: Vec<f32> = (0..rows * cols).map(|_| normal.sample(&mut rng)).collect();
            for op in fast_ops() {
                let req = request(op, dtype, rows, cols, x.clone());
                match fast_and_simple(engine, &req) {
                    Ok((fast, simple)) => {
                        let reference = req.reference();
                        let w = worst.entry(dtype.name()).or_default();
                        w.0 = w.0.max(check::check(&req, &reference, &fast).max_rel);
                        w.1 = w.1.max(check::check(&req, &reference, &simple).max_rel);
                    }
                    Err(e) => failures.push(e),
                }
            }
        }
    }
    eprintln!("largest relative error per dtype, (fast, simple): {worst:?}");
    assert!(
        failures.is_empty(),
        "{} cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Rows with NaN, +inf and -inf, placed in the whole vec4s and in the edge elements: a row with a
/// NaN or +inf is all NaN, an all -inf row is NaN, a -inf among finite values gives 0 (log: -inf).
/// Also the extremes: z - m overflowing f32 (-3e38 next to 3e38) and x / T overflowing to +inf.
#[test]
fn fast_softmax_special_rows_match_the_reference_and_the_simple_kernel() {
    let Some(engine) = engine() else { return };
    let (nan, inf, ninf) = (f32::NAN, f32::INFINITY, f32::NEG_INFINITY);
    // 11 columns: with rows starting at 0, 11, 22, ... every row has a different head and tail.
    let cols = 11;
    let base: Vec<f32> = (0..cols).map(|j| (j as f32 * 0.7).sin() * 4.0).collect();
    let with = |at: &[(usize, f32)]| {
        let mut row = base.clone();
        for &(j, v) in at {
            row[j] = v;
        }
        row
    };
    let rows: Vec<(&str, Vec<f32>)> = vec![
        ("finite", base.clone()),
        ("NaN first", with(&[(0, nan)])),
        ("NaN in the middle", with(&[(5, nan)])),
        ("+inf last", with(&[(10, inf)])),
        ("+inf in the middle", with(&[(6, inf)])),
        ("-inf at both ends", with(&[(0, ninf), (10, ninf)])),
        ("-inf in the middle", with(&[(4, ninf), (5, ninf)])),
        ("all -inf", vec![ninf; cols]),
        ("-inf and +inf", with(&[(2, ninf), (3, inf)])),
        ("one finite", {
            let mut row = vec![ninf; cols];
            row[7] = 2.5;
            row
        }),
        ("extremes", with(&[(1, -3.0e38), (8, 3.0e38)])),
        ("lowest only", vec![f32::MIN; cols]),
    ];
    let x: Vec<f32> = rows.iter().flat_map(|(_, r)| r.iter().copied()).collect();
    let mut failures = Vec::new();
    for dtype in DType::ALL {
        for op in fast_ops() {
            let req = request(op.clone(), dtype, rows.len(), cols, x.clone());
            let (fast, simple) = match fast_and_simple(engine, &req) {
                Ok(outputs) => outputs,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            // NaN exactly where the simple kernel has NaN, row by row.
            for (r, (name, _)) in rows.iter().enumerate() {
                let span = r * cols..(r + 1) * cols;
                let fast_nan: Vec<bool> = fast[span.clone()].iter().map(|v| v.is_nan()).collect();
                let simple_nan: Vec<bool> = simple[span].iter().map(|v| v.is_nan()).collect();
                if fast_nan != simple_nan {
                    failures.push(format!(
                        "{} {dtype} row '{name}': NaN at {fast_nan:?}, simple at {simple_nan:?}",
                        op.describe()
                    ));
                }
            }
        }
        // What torch says, spelled out for softmax at T = 1.
        let req = request(
            Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                temperature: 1.0,
                stable: true,
            }),
            dtype,
            rows.len(),
            cols,
            x.clone(),
        );
        let y = run(engine, &req);
        let row = |name: &str| {
            let r = rows.iter().position(|(n, _)| *n == name).expect("row");
            &y[r * cols..(r + 1) * cols]
        };
        for name in [
            "NaN first",
            "NaN in the middle",
            "+inf last",
            "+inf in the middle",
            "all -inf",
            "-inf and +inf",
        ] {
            assert!(
                row(name).iter().all(|v| v.is_nan()),
                "{dtype} '{name}': {:?}",
                row(name)
            );
        }
        let ends = row("-inf at both ends");
        assert!(ends[0] == 0.0 && ends[10] == 0.0, "{dtype}: {ends:?}");
        let one = row("one finite");
        assert!(
            one.iter()
                .enumerate()
                .all(|(j, &v)| v == if j == 7 { 1.0 } else { 0.0 }),
            "{dtype}: {one:?}"
        );
        // The lowest f32 is -inf in f16 and bf16 (beyond their range): an all -inf row there.
        let lowest = row("lowest only");
        if dtype == DType::F32 {
            assert!(
                lowest
                    .iter()
                    .all(|&v| v == lowest[0] && (v - 1.0 / 11.0).abs() < 1e-7),
                "{lowest:?}"
            );
        } else {
            assert!(lowest.iter().all(|v| v.is_nan()), "{dtype}: {lowest:?}");
        }
    }
    // x / T overflows f32 for x = 3e38 and T = 0.05: z = +inf, so the row is NaN, as in the
    // reference (which forms z = x / T in f32 too).
    let req = request(
        Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
            temperature: 0.05,
            stable: true,
        }),
        DType::F32,
        1,
        5,
        vec![3.0e38, 0.0, 1.0, 2.0, 3.0],
    );
    match fast_and_simple(engine, &req) {
        Ok((fast, _)) => assert!(fast.iter().all(|v| v.is_nan()), "{fast:?}"),
        Err(e) => failures.push(e),
    }
    assert!(
        failures.is_empty(),
        "{} cases fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// More rows than one dispatch line holds (65535 workgroups): the fast kernel launches at most that
/// many and each workgroup loops over its rows; the simple one goes to a 2D grid. Odd columns, so
/// rows start at every offset modulo 4.
#[test]
fn fast_softmax_loops_over_more_rows_than_one_dispatch_holds() {
    let Some(engine) = engine() else { return };
    let max = engine.limits().max_compute_workgroups_per_dimension as usize;
    let (rows, cols) = (max + 4465, 5);
    let mut rng = StdRng::seed_from_u64(21);
    let normal = Normal::new(0.0f32, 3.0).expect("valid");
    let x: Vec<f32> = (0..rows * cols).map(|_| normal.sample(&mut rng)).collect();
    // (Softmax at this shape runs in `shapes_beyond_one_workgroup_grid_line_and_odd_shapes`.)
    let req = request(
        Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 0.5 }),
        DType::Bf16,
        rows,
        cols,
        x,
    );
    if let Err(e) = fast_and_simple(engine, &req) {
        panic!("{e}");
    }
}

/// Naive softmax is a lesson about overflow: it runs the simple kernel whatever the request asks, so
/// its f16 overflow shows with either choice.
#[test]
fn naive_softmax_runs_the_simple_kernel_either_way() {
    let Some(engine) = engine() else { return };
    let req = request(
        Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
            temperature: 1.0,
            stable: false,
        }),
        DType::F16,
        1,
        4,
        vec![12.09, 0.0, -1.0, 2.0],
    );
    let fast = run(engine, &req.clone().with_kernel(KernelVariant::Fast));
    let simple = run(engine, &req.with_kernel(KernelVariant::Simple));
    assert!(
        fast[0].is_nan() && fast[1..].iter().all(|&v| v == 0.0),
        "{fast:?}"
    );
    assert_eq!(
        fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        simple.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
}

/// Measurement, not a pass/fail test (`cargo test --release --test wgpu_engine -- --ignored
/// --nocapture measure_softmax`): the simple and the fast kernel against this adapter's copy of the
/// same bytes, as `kernelbook bench` counts them (input read once, output written once).
/// `KERNELBOOK_MEASURE_SIZE=ROWSxCOLS` changes the shape (default 256x8192).
#[test]
#[ignore]
fn measure_softmax_simple_and_fast_against_copy() {
    let Some(engine) = engine() else { return };
    let (rows, cols) = std::env::var("KERNELBOOK_MEASURE_SIZE")
        .ok()
        .and_then(|s| {
            let (r, c) = s.split_once('x')?;
            Some((r.parse().ok()?, c.parse().ok()?))
        })
        .unwrap_or((256usize, 8192usize));
    let runs = 21;
    let mut rng = StdRng::seed_from_u64(3);
    let normal = Normal::new(0.0f32, 3.0).expect("valid");
    let x: Vec<f32> = (0..rows * cols).map(|_| normal.sample(&mut rng)).collect();
    eprintln!(
        "{} ({:?}), [{rows}, {cols}]",
        engine.device(),
        engine.timing_source()
    );
    for dtype in [DType::F32, DType::F16] {
        for op in [
            Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                temperature: 1.0,
                stable: true,
            }),
            Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 1.0 }),
        ] {
            let req = request(op.clone(), dtype, rows, cols, x.clone());
            let bytes = kernelbook::bench::bytes_moved(&req);
            let kernels = KernelVariant::ALL.map(|k| req.clone().with_kernel(k));
            for req in &kernels {
                engine.run(req).expect("warm-up");
            }
            // Round robin (copy, simple, fast), so that a busy machine slows all three alike.
            let mut copies = Vec::new();
            let mut times = [Vec::new(), Vec::new()];
            for _ in 0..runs {
                copies.push(engine.copy_time(bytes.div_ceil(2)).expect("copy"));
                for (t, req) in times.iter_mut().zip(&kernels) {
                    t.push(engine.run(req).expect("runs").kernel_time);
                }
            }
            let copy_us = kernelbook::bench::median_us(&mut copies);
            for (kernel, mut t) in KernelVariant::ALL.into_iter().zip(times) {
                let us = kernelbook::bench::median_us(&mut t);
                eprintln!(
                    "  {:<24} {dtype:<4} {kernel:<6} {us:>10.0} us  {:>7.2} GB/s  {:>5.1}% of copy ({copy_us:.0} us)",
                    op.describe(),
                    bytes as f64 / (us * 1e-6) / 1e9,
                    100.0 * copy_us / us
                );
            }
        }
    }
}
