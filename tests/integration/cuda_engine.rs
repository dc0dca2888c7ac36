//! The CUDA engine against the f64 reference.
//!
//! Two layers, so the suite is useful on every machine:
//! - NVRTC only (no GPU): every embedded `.cu` file compiles, to PTX and to a CUBIN, and a broken
//!   source comes back as an error carrying NVRTC's log. Skipped when NVRTC is missing, unless
//!   `KERNELBOOK_REQUIRE_NVRTC=1`.
//! - Execution (needs a GPU and a driver): every op in f32/f16/bf16 against `OpRequest::reference`,
//!   edge values, the naive f16 softmax overflowing for real, large shapes. Skipped when
//!   `CudaEngine::probe()` fails, unless `KERNELBOOK_REQUIRE_CUDA=1`.
//!
//! Skips print `skipped: <reason>` (visible with `--nocapture`).

use kernelbook::check::check;
use kernelbook::dtype::DType;
use kernelbook::engine::cuda::{self, CudaEngine, ImageFormat};
use kernelbook::engine::{Engine, EngineKind, TimingSource};
use kernelbook::ops::{Op, OpRequest, Tensor};

/// NVRTC present, or skip (or fail when it is required).
fn require_nvrtc() -> bool {
    crate::common::require_nvrtc()
}

/// The engine, probed once; `None` (skip) when there is no usable GPU.
fn engine() -> Option<&'static CudaEngine> {
    crate::common::cuda()
}

// ------------------------------------------------------------------------------------------------
// NVRTC only.
// ------------------------------------------------------------------------------------------------

#[test]
fn nvrtc_compiles_every_kernel() {
    if !require_nvrtc() {
        return;
    }
    let (major, minor) = cuda::nvrtc_version().expect("NVRTC version");
    let archs = cuda::supported_archs().expect("NVRTC architectures");
    println!("NVRTC {major}.{minor}, architectures {archs:?}");
    assert!(!archs.is_empty());

    // PTX for a virtual architecture every NVRTC of this era supports, and a CUBIN for a real one.
    let real = if archs.contains(&90) {
        90
    } else {
        *archs.last().unwrap()
    };
    for arch in ["compute_80".to_string(), format!("sm_{real}")] {
        let kernels = cuda::compile_all(&arch).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kernels.len(), kernelbook::sources::cuda_files().count());
        for (k, (topic, file, _)) in kernels.iter().zip(kernelbook::sources::cuda_files()) {
            println!(
                "{file} -> {arch}: {} bytes of {} in {:.1} ms{}",
                k.size(),
                k.format,
                k.compile_time.as_secs_f64() * 1e3,
                if k.log.is_empty() {
                    String::new()
                } else {
                    format!("\n  log: {}", k.log)
                }
            );
            assert_eq!(k.file, file);
            assert!(k.size() > 0);
            match k.format {
                ImageFormat::Ptx => {
                    assert!(arch.starts_with("compute_"));
                    let ptx = String::from_utf8(k.image.clone()).expect("PTX is text");
                    for dtype in ["f32", "f16", "bf16"] {
                        let entry = format!(".entry {topic}_{dtype}");
                        assert!(ptx.contains(&entry), "{file}: PTX has no `{entry}`");
                    }
                    // No flush-to-zero arithmetic of our own (the accurate libdevice exp may still
                    // use approximate instructions internally, on a range-reduced argument).
                    assert!(
                        !ptx.contains("div.approx"),
                        "{file}: approximate division in PTX"
                    );
                }
                ImageFormat::Cubin => {
                    assert!(arch.starts_with("sm_"));
                    assert_eq!(&k.image[..4], b"\x7fELF", "{file}: a CUBIN is an ELF image");
                }
            }
        }
    }
}

#[test]
fn nvrtc_errors_carry_the_log() {
    if !require_nvrtc() {
        return;
    }
    let broken = "extern \"C\" __global__ void broken(float* y) { y[0] = this_name_is_undefined; }";
    let err = cuda::compile("kernels/broken.cu", broken, "compute_80")
        .expect_err("a broken kernel must not compile");
    assert!(
        err.contains("kernels/broken.cu"),
        "error names the file: {err}"
    );
    assert!(
        err.contains("this_name_is_undefined"),
        "error carries NVRTC's log: {err}"
    );

    let err = cuda::compile(
        "kernels/logits.cu",
        &kernelbook::sources::cuda_program("logits").unwrap(),
        "gfx90a",
    )
    .unwrap_err();
    assert!(err.contains("unknown architecture"), "{err}");

    // An error in a topic file names its line in that file, not in the program NVRTC saw
    // (kernels/dtype.cuh in front of it).
    let topic = "// line 1\n// line 2\nextern \"C\" __global__ void k(float* y) { y[0] = undefined_here; }\n";
    let program = format!("{}\n{topic}", kernelbook::sources::CUDA_PRELUDE);
    let err = cuda::compile("kernels/broken.cu", &program, "compute_80").unwrap_err();
    assert!(
        err.contains("kernels/broken.cu(3)"),
        "line 3 of the topic file: {err}"
    );
}

#[test]
fn kernel_sources_mark_their_steps() {
    // The app highlights these lines while explaining the kernel.
    let softmax = kernelbook::sources::cuda("softmax").expect("softmax.cu is embedded");
    for step in [
        "// step 1: max-reduce",
        "// step 2: sum-reduce",
        "// step 3: normalise",
    ] {
        assert_eq!(
            softmax.matches(step).count(),
            1,
            "softmax.cu should mark `{step}` once"
        );
    }
    for (_, file, source) in kernelbook::sources::cuda_files() {
        assert!(
            source.starts_with("// "),
            "{file} starts with a module comment"
        );
        assert!(
            !source.contains("#include"),
            "{file}: NVRTC has no standard headers"
        );
        assert!(
            !source.contains("INFINITY"),
            "{file}: INFINITY is undefined under NVRTC"
        );
    }
}

#[test]
fn probe_without_a_driver_is_a_clean_error() {
    match cuda::driver_available() {
        Err(reason) => {
            // This machine has no NVIDIA driver: the probe must say so, not panic.
            let err = CudaEngine::probe().err().expect("no driver, so no engine");
            assert_eq!(err, reason);
            assert!(err.contains("libcuda"), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        Ok(()) => match CudaEngine::probe() {
            // A driver is present: whatever the outcome, it is a value, not a panic.
            Ok(e) => println!("CUDA engine: {}", e.device()),
            Err(reason) => println!("CUDA engine absent: {reason}"),
        },
    }
}

// ------------------------------------------------------------------------------------------------
// Execution (GPU).
// ------------------------------------------------------------------------------------------------

/// Deterministic inputs without a dependency: xorshift64*, uniform in [lo, hi).
fn uniform(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let u = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32;
            lo + (hi - lo) * u
        })
        .collect()
}

fn request(op: Op, dtype: DType, rows: usize, cols: usize, data: Vec<f32>) -> OpRequest {
    OpRequest::new(op, dtype, Tensor::matrix(rows, cols, data).unwrap()).unwrap()
}

/// Compare `got` with the reference using the project's check (`kernelbook::check`): the same
/// tolerances the app and `kernelbook check` apply.
fn compare(req: &OpRequest, got: &[f32]) -> Result<(), String> {
    let reference = req.reference();
    let report = check(req, &reference, got);
    if report.passed {
        return Ok(());
    }
    let worst = match report.worst {
        Some((i, g, r)) => format!("; worst [{i}] x={} got {g:e} want {r:e}", req.x.data[i]),
        None => String::new(),
    };
    Err(format!(
        "{} {} {:?}: {report}{worst}",
        req.op.describe(),
        req.dtype,
        req.x.shape
    ))
}

fn run_and_check(engine: &CudaEngine, req: &OpRequest) {
    let out = engine
        .run(req)
        .unwrap_or_else(|e| panic!("{} {}: {e}", req.op.describe(), req.dtype));
    assert_eq!(out.shape, req.x.shape);
    assert_eq!(out.dtype, req.dtype);
    assert_eq!(out.timing, TimingSource::CudaEvents);
    assert!(
        out.kernel_time <= out.total_time,
        "kernel time is inside the call"
    );
    for &v in &out.values {
        assert!(
            v.is_nan() || req.dtype.round(v).to_bits() == v.to_bits(),
            "{v} is not a {} value",
            req.dtype
        );
    }
    if let Err(e) = compare(req, &out.values) {
        panic!("{e}");
    }
}

fn ops() -> Vec<Op> {
    vec![
        Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: None }),
        Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: Some(1e-6) }),
        Op::new(kernelbook::ops::logits::LogitsOp::Sigmoid),
        Op::new(kernelbook::ops::logits::LogitsOp::LogSigmoid),
        Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
            temperature: 1.0,
            stable: true,
        }),
        Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
            temperature: 0.5,
            stable: true,
        }),
        Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 1.0 }),
        Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 2.0 }),
    ]
}

fn input_for(op: &Op, n: usize, seed: u64) -> Vec<f32> {
    use kernelbook::ops::logits::LogitsOp;
    match op.get::<LogitsOp>() {
        Some(LogitsOp::Logit { .. }) => uniform(n, 0.0, 1.0, seed),
        Some(LogitsOp::Sigmoid | LogitsOp::LogSigmoid) => uniform(n, -30.0, 30.0, seed),
        None => uniform(n, -6.0, 6.0, seed),
    }
}

#[test]
fn every_op_and_dtype_matches_the_reference() {
    let Some(engine) = engine() else { return };
    assert_eq!(engine.kind(), EngineKind::Cuda);
    assert!(!engine.is_software());
    println!("{}", engine.device());
    for b in engine.builds() {
        println!(
            "{}: {} for {} in {:.1} ms",
            b.file,
            b.format,
            b.arch,
            b.compile_time.as_secs_f64() * 1e3
        );
    }
    for (shape_i, &(rows, cols)) in [(31usize, 20usize), (33, 2049), (16, 30576)]
        .iter()
        .enumerate()
    {
        for (op_i, op) in ops().into_iter().enumerate() {
            for dtype in DType::ALL {
                let seed = (shape_i * 100 + op_i) as u64;
                let req = request(
                    op.clone(),
                    dtype,
                    rows,
                    cols,
                    input_for(&op, rows * cols, seed),
                );
                run_and_check(engine, &req);
            }
        }
    }
}

#[test]
fn naive_softmax_matches_when_nothing_overflows() {
    let Some(engine) = engine() else { return };
    for dtype in DType::ALL {
        // |z| <= 4 over 20 columns: e^z <= 55, the sum stays far below f16's 65504.
        let req = request(
            Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                temperature: 1.0,
                stable: false,
            }),
            dtype,
            31,
            20,
            uniform(620, -4.0, 4.0, 7),
        );
        run_and_check(engine, &req);
    }
}

#[test]
fn naive_f16_softmax_really_overflows() {
    let Some(engine) = engine() else { return };
    let naive = Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
        temperature: 1.0,
        stable: false,
    });
    let stable = Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
        temperature: 1.0,
        stable: true,
    });
    // 12 > ln(65504) = 11.09: e^12 = 162755 is inf in f16, so that entry is inf/inf = NaN.
    let row = vec![12.0, 0.0, 1.0, -1.0, 2.5, 11.0, -3.0, 0.5];
    let out = engine
        .run(&request(naive.clone(), DType::F16, 1, 8, row.clone()))
        .unwrap();
    assert!(
        out.values[0].is_nan(),
        "e^12 overflows f16: {:?}",
        out.values
    );
    assert!(out.values.iter().any(|v| v.is_nan()), "{:?}", out.values);
    let err = compare(
        &request(naive.clone(), DType::F16, 1, 8, row.clone()),
        &out.values,
    );
    assert!(err.is_err(), "the naive f16 result must fail the check");

    // Every e^z fits (e^11 = 59874) but their sum does not: s = inf and every probability is 0.
    let out = engine
        .run(&request(naive.clone(), DType::F16, 1, 4, vec![11.0; 4]))
        .unwrap();
    assert!(
        out.values.iter().all(|&v| v == 0.0),
        "sum overflow gives zeros: {:?}",
        out.values
    );

    // The same rows are fine in f32 (naive and stable) and in f16 when stable.
    run_and_check(engine, &request(naive, DType::F32, 1, 8, row.clone()));
    run_and_check(
        engine,
        &request(stable.clone(), DType::F16, 1, 8, row.clone()),
    );
    run_and_check(engine, &request(stable, DType::F16, 1, 4, vec![11.0; 4]));
}

#[test]
fn edge_values_match_torch() {
    let Some(engine) = engine() else { return };
    let ninf = f32::NEG_INFINITY;
    let inf = f32::INFINITY;
    for dtype in DType::ALL {
        // logit([0, 1, 1.5, -0.1, nan, 0.5]) = [-inf, inf, nan, nan, nan, 0]
        let p = vec![0.0, 1.0, 1.5, -0.1, f32::NAN, 0.5];
        let out = engine
            .run(&request(
                Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: None }),
                dtype,
                1,
                6,
                p.clone(),
            ))
            .unwrap();
        assert_eq!(out.values[0], ninf, "{dtype}");
        assert_eq!(out.values[1], inf, "{dtype}");
        assert!(
            out.values[2].is_nan() && out.values[3].is_nan() && out.values[4].is_nan(),
            "{dtype}: {:?}",
            out.values
        );
        assert_eq!(out.values[5], 0.0, "{dtype}");
        // With eps the ends clamp to finite values; NaN stays NaN.
        run_and_check(
            engine,
            &request(
                Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: Some(1e-6) }),
                dtype,
                1,
                6,
                p,
            ),
        );

        let x = vec![
            -200.0,
            -100.0,
            -20.0,
            -0.0,
            0.0,
            20.0,
            100.0,
            inf,
            ninf,
            f32::NAN,
        ];
        for op in [
            Op::new(kernelbook::ops::logits::LogitsOp::Sigmoid),
            Op::new(kernelbook::ops::logits::LogitsOp::LogSigmoid),
        ] {
            run_and_check(engine, &request(op, dtype, 1, 10, x.clone()));
        }

        // Softmax rows: a +inf logit, all -inf, a NaN, -inf next to finite values.
        let rows = vec![
            inf,
            1.0,
            2.0,
            ninf,
            ninf,
            ninf,
            f32::NAN,
            1.0,
            0.0,
            ninf,
            0.0,
            ninf,
        ];
        for op in [
            Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                temperature: 1.0,
                stable: true,
            }),
            Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 1.0 }),
        ] {
            let req = request(op, dtype, 4, 3, rows.clone());
            run_and_check(engine, &req);
        }
    }
    // logsigmoid(-200) = -200 exactly in f32 (log(sigmoid(-200)) would be -inf).
    let out = engine
        .run(&request(
            Op::new(kernelbook::ops::logits::LogitsOp::LogSigmoid),
            DType::F32,
            1,
            1,
            vec![-200.0],
        ))
        .unwrap();
    assert_eq!(out.values[0], -200.0);
}

#[test]
fn odd_shapes_and_single_columns() {
    let Some(engine) = engine() else { return };
    // More rows than one launch has blocks (the kernels' row loop), and one-column rows.
    for &(rows, cols) in &[
        (70_000usize, 3usize),
        (1, 1),
        (257, 1),
        (3, 255),
        (3, 257),
        (1, 100_000),
    ] {
        for op in [
            Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                temperature: 1.0,
                stable: true,
            }),
            Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 1.0 }),
            Op::new(kernelbook::ops::logits::LogitsOp::Sigmoid),
        ] {
            for dtype in DType::ALL {
                let req = request(
                    op.clone(),
                    dtype,
                    rows,
                    cols,
                    uniform(rows * cols, -6.0, 6.0, (rows + cols) as u64),
                );
                run_and_check(engine, &req);
            }
        }
    }
    // Three axes: the last one is the row.
    let req = OpRequest::new(
        Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
            temperature: 1.0,
            stable: true,
        }),
        DType::F32,
        Tensor::new(vec![2, 3, 50], uniform(300, -6.0, 6.0, 3)).unwrap(),
    )
    .unwrap();
    run_and_check(engine, &req);
    // Empty inputs never reach the device.
    let empty = OpRequest::new(
        Op::new(kernelbook::ops::logits::LogitsOp::Sigmoid),
        DType::F16,
        Tensor::new(vec![0, 5], vec![]).unwrap(),
    )
    .unwrap();
    assert!(engine.run(&empty).unwrap().values.is_empty());
}

#[test]
fn llm_sized_softmax() {
    let Some(engine) = engine() else { return };
    // A batch of 4096 positions over a 32000-token vocabulary: 131M values.
    let (rows, cols) = (4096usize, 32000usize);
    let x = uniform(rows * cols, -8.0, 8.0, 42);
    for (op, dtype) in [
        (
            Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                temperature: 1.0,
                stable: true,
            }),
            DType::F32,
        ),
        (
            Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                temperature: 1.0,
                stable: true,
            }),
            DType::Bf16,
        ),
        (
            Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 1.0 }),
            DType::F16,
        ),
    ] {
        let req = request(op, dtype, rows, cols, x.clone());
        engine.supports(&req).unwrap();
        let out = engine.run(&req).unwrap();
        println!(
            "{} {dtype} {rows}x{cols}: kernel {:.3} ms, total {:.1} ms",
            req.op.describe(),
            out.kernel_time.as_secs_f64() * 1e3,
            out.total_time.as_secs_f64() * 1e3
        );
        assert!(out.kernel_time > std::time::Duration::ZERO);
        if let Err(e) = compare(&req, &out.values) {
            panic!("{e}");
        }
    }
}

#[test]
fn concurrent_requests_are_safe() {
    let Some(engine) = engine() else { return };
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            scope.spawn(move || {
                for i in 0..5u64 {
                    let op = if (t + i) % 2 == 0 {
                        Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                            temperature: 1.0,
                            stable: true,
                        })
                    } else {
                        Op::new(kernelbook::ops::logits::LogitsOp::Sigmoid)
                    };
                    let req = request(
                        op,
                        DType::ALL[(t as usize + i as usize) % 3],
                        64,
                        1000,
                        uniform(64_000, -6.0, 6.0, t * 10 + i),
                    );
                    run_and_check(engine, &req);
                }
            });
        }
    });
}

/// Compiled kernels are kept on disk: the second compile of the same source is a cache read
/// returning the same image; a change of source is a new key; a damaged cache file is only
/// skipped. NVRTC only, no GPU.
#[test]
fn compiled_kernels_are_cached_on_disk() {
    use kernelbook::engine::cuda;
    if let Err(reason) = cuda::nvrtc_available() {
        if std::env::var_os("KERNELBOOK_REQUIRE_NVRTC").is_some() {
            panic!("KERNELBOOK_REQUIRE_NVRTC is set but NVRTC is missing: {reason}");
        }
        eprintln!("skipped: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let compile_cached = |file: &str, source: &str, arch: &str| {
        cuda::compile_cached_in(dir.path(), file, source, arch)
    };
    let program = kernelbook::sources::cuda_program("softmax").unwrap();
    let (file, source) = ("kernels/softmax.cu", program.as_str());
    let (first, cached) = compile_cached(file, source, "compute_80").unwrap();
    assert!(!cached, "an empty cache compiles");
    let (second, cached) = compile_cached(file, source, "compute_80").unwrap();
    assert!(cached, "the second compile is a cache read");
    assert_eq!(first.image, second.image);
    assert!(
        second.compile_time < first.compile_time,
        "read {:?} vs compile {:?}",
        second.compile_time,
        first.compile_time
    );
    let changed = format!("{source}\n// a comment changes the key\n");
    let (_, cached) = compile_cached(file, &changed, "compute_80").unwrap();
    assert!(!cached, "a changed source is compiled again");
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 2, "one file per key");
    for f in std::fs::read_dir(dir.path()).unwrap() {
        std::fs::write(f.unwrap().path(), b"").unwrap();
    }
    let (again, cached) = compile_cached(file, source, "compute_80").unwrap();
    assert!(!cached, "an empty cache file is compiled again");
    assert_eq!(again.image, first.image);
}

/// NVRTC has no headers: the storage types live once, in kernels/dtype.cuh, compiled in front of
/// every kernel file; no file defines them again.
#[test]
fn storage_types_are_written_once() {
    let prelude = kernelbook::sources::CUDA_PRELUDE;
    for name in ["struct F32 {", "struct F16 {", "struct BF16 {"] {
        assert!(prelude.contains(name), "dtype.cuh defines {name}");
        for (_, file, source) in kernelbook::sources::cuda_files() {
            assert!(!source.contains(name), "{file} defines {name} again");
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The fast kernels (docs/performance.md) against the simple ones and the reference.
// ------------------------------------------------------------------------------------------------

use kernelbook::ops::KernelVariant;

/// The fast softmax kernel on every path: rows held in registers with 16-byte vectors (cols a
/// multiple of 4 or 8), scalar (ragged cols), rows longer than the registers (online softmax),
/// temperatures, special values; each against the reference and against the simple kernel.
#[test]
fn fast_softmax_matches_the_simple_kernel_and_the_reference() {
    let Some(engine) = engine() else { return };
    let shapes = [
        (1, 1),
        (3, 7),
        (5, 256),
        (4, 1000),
        (2, 4096),
        (3, 32000),
        (2, 32768),
        (2, 32769),
        (2, 50304),
        (1, 100_003),
        (70_000, 8),
    ];
    for (rows, cols) in shapes {
        for dtype in DType::ALL {
            for (op, t) in [
                (
                    Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                        temperature: 1.0,
                        stable: true,
                    }),
                    1.0,
                ),
                (
                    Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                        temperature: 0.37,
                        stable: true,
                    }),
                    0.37,
                ),
                (
                    Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 1.0 }),
                    1.0,
                ),
                (
                    Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 3.0 }),
                    3.0,
                ),
            ] {
                let x = uniform(
                    rows * cols,
                    -20.0 * t as f32,
                    20.0 * t as f32,
                    (rows * cols) as u64,
                );
                let req = request(op, dtype, rows, cols, x);
                let fast = engine
                    .run(&req.clone().with_kernel(KernelVariant::Fast))
                    .unwrap();
                let simple = engine
                    .run(&req.clone().with_kernel(KernelVariant::Simple))
                    .unwrap();
                if let Err(e) = compare(&req, &fast.values) {
                    panic!("fast kernel, {rows}x{cols}: {e}");
                }
                // Same algorithm per element: only the order of the sum's additions differs.
                let report = check(
                    &req,
                    &simple.values.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                    &fast.values,
                );
                assert!(
                    report.passed,
                    "fast vs simple {rows}x{cols} {dtype}: {report}"
                );
            }
        }
    }
    // Special rows take the same NaN pattern on both kernels, in registers and online.
    let ninf = f32::NEG_INFINITY;
    for cols in [8usize, 40_000] {
        let mut x = vec![0.5f32; 4 * cols];
        x[1] = f32::NAN; // row 0: NaN -> all NaN
        x[cols + 2] = f32::INFINITY; // row 1: +inf -> all NaN
        for v in &mut x[2 * cols..3 * cols] {
            *v = ninf; // row 2: all -inf -> NaN
        }
        x[3 * cols + 3] = ninf; // row 3: one -inf -> probability 0
        let req = request(
            Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
                temperature: 1.0,
                stable: true,
            }),
            DType::F32,
            4,
            cols,
            x,
        );
        let fast = engine.run(&req).unwrap().values;
        let simple = engine
            .run(&req.clone().with_kernel(KernelVariant::Simple))
            .unwrap()
            .values;
        for (i, (a, b)) in fast.iter().zip(&simple).enumerate() {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-6,
                "cols {cols}, element {i}: fast {a}, simple {b}"
            );
        }
        assert!(fast[..3 * cols].iter().all(|v| v.is_nan()));
        assert_eq!(fast[3 * cols + 3], 0.0);
    }
}

/// The fast rope kernel computes each angle once per token and moves 16-byte chunks, with the
/// same f32 operations per element: bit-identical to the simple kernel.
#[test]
fn fast_rope_is_bit_identical_to_the_simple_kernel() {
    let Some(engine) = engine() else { return };
    for (layout, fraction) in [
        ("half_split", "1"),
        ("interleaved", "1"),
        ("half_split", "0.5"),
        ("interleaved", "0.25"),
    ] {
        for dtype in ["f32", "f16", "bf16"] {
            for precise in ["true", "false"] {
                let kv: Vec<(String, String)> = [
                    ("layout", layout),
                    ("rotary_fraction", fraction),
                    ("dtype", dtype),
                    ("precise_angles", precise),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                let (op, dt) = Op::parse("rope", &kv).unwrap();
                let shape = vec![2, 37, 3, 64];
                let n = shape.iter().product();
                let x = Tensor::new(shape, uniform(n, -2.0, 2.0, 9)).unwrap();
                let positions = Tensor::new(
                    vec![2, 37],
                    (0..74).map(|i| ((i * 977) % 40_000) as f32).collect(),
                )
                .unwrap();
                let req = OpRequest::with_inputs(op, dt, x, vec![("positions".into(), positions)])
                    .unwrap();
                let fast = engine.run(&req).unwrap();
                let simple = engine
                    .run(&req.clone().with_kernel(KernelVariant::Simple))
                    .unwrap();
                let what =
                    format!("rope {layout} rotary_fraction={fraction} {dtype} precise={precise}");
                assert_eq!(
                    fast.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    simple
                        .values
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>(),
                    "{what}"
                );
                let reference = req.reference_full();
                let report = kernelbook::check::check_output(&req, &reference, &fast);
                assert!(report.passed, "{what}: {report}");
            }
        }
    }
}

/// The fused cross-entropy (one read of the logits) returns the four-step program's outputs, each
/// within the op's tolerance, and special rows become NaN as there.
#[test]
fn fused_cross_entropy_matches_the_four_step_kernels() {
    let Some(engine) = engine() else { return };
    for (rows, v) in [(1usize, 1usize), (3, 7), (5, 1000), (4, 50304), (2, 50305)] {
        for dtype in ["f32", "f16", "bf16"] {
            let kv = vec![
                ("ranks".to_string(), "1".to_string()),
                ("dtype".to_string(), dtype.to_string()),
            ];
            let (op, dt) = Op::parse("vocab_parallel_cross_entropy", &kv).unwrap();
            let x = Tensor::new(vec![rows, v], uniform(rows * v, -9.0, 9.0, 3)).unwrap();
            let targets = Tensor::new(
                vec![rows],
                (0..rows).map(|i| ((i * 7919) % v) as f32).collect(),
            )
            .unwrap();
            let req = OpRequest::with_inputs(op, dt, x, vec![("targets".into(), targets)]).unwrap();
            let fast = engine.run(&req).unwrap();
            let steps = engine
                .run(&req.clone().with_kernel(KernelVariant::Simple))
                .unwrap();
            let reference = req.reference_full();
            let report = kernelbook::check::check_output(&req, &reference, &fast);
            assert!(report.passed, "fused {rows}x{v} {dtype}: {report}");
            let names = |o: &kernelbook::engine::OpOutput| {
                o.aux.iter().map(|a| a.name.clone()).collect::<Vec<_>>()
            };
            assert_eq!(
                names(&fast),
                names(&steps),
                "the same outputs in the same order"
            );
            for (a, b) in fast.aux.iter().zip(&steps.aux) {
                assert_eq!(a.shape, b.shape, "{}", a.name);
            }
        }
    }
}
