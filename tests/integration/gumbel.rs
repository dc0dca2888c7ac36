//! The Gumbel topic on every engine: Philox4x32-10 against Random123's known-answer vectors (Rust,
//! WGSL on the wgpu adapter, CUDA when a GPU is present), the word -> Gumbel map bit-identical to
//! the Rust one on the devices, hard samples that are one-hot bit for bit and the same classes on
//! every engine for the same seed, soft samples within softmax's tolerance, chi-square tests of
//! 100 000 draws against softmax(l) at the 0.999 level for τ in {0.1, 1, 10}, and clear errors for
//! bad parameters and logits.
//!
//! Without a wgpu adapter the device tests print "skipped: <reason>" and pass, unless
//! `KERNELBOOK_REQUIRE_WGPU=1`; without a CUDA device likewise unless `KERNELBOOK_REQUIRE_CUDA=1`.
//! The NVRTC compile of `kernels/gumbel.cu` needs no GPU and runs wherever NVRTC loads (unless
//! `KERNELBOOK_REQUIRE_NVRTC=1`, a missing NVRTC is a skip). The CUDA kernels also RUN on the CPU,
//! through the emulator: `tests/cuda_emulator.rs`.

use crate::common::env_flag;
use kernelbook::check::check_output;
use kernelbook::dtype::DType;
use kernelbook::engine::cpu::CpuEngine;
use kernelbook::engine::cuda::{self, CudaEngine};
use kernelbook::engine::wgpu::WgpuEngine;
use kernelbook::engine::{Engine, OpOutput};
use kernelbook::ops::gumbel::{self as gm, GumbelOp};
use kernelbook::ops::{KernelVariant, Op, OpRequest, Tensor};
use std::time::Instant;

fn wgpu() -> Option<&'static WgpuEngine> {
    crate::common::wgpu()
}

fn cuda() -> Option<&'static CudaEngine> {
    crate::common::cuda()
}

fn kat_blocks() -> Vec<([u32; 4], [u32; 2])> {
    gm::PHILOX_KAT.iter().map(|&(c, k, _)| (c, k)).collect()
}

#[test]
fn philox_known_answers_on_wgpu() {
    let Some(engine) = wgpu() else { return };
    let got = engine.philox4x32(&kat_blocks()).unwrap();
    for ((c, k, want), got) in gm::PHILOX_KAT.iter().zip(&got) {
        assert_eq!(got, want, "WGSL Philox, ctr {c:08x?} key {k:08x?}");
    }
}

#[test]
fn gumbel_words_are_bit_identical_on_wgpu() {
    let Some(engine) = wgpu() else { return };
    // Every 31st uniform of the 2^24, plus both ends and the branch points of the algorithm.
    let mut words: Vec<u32> = (0..(1u32 << 24)).step_by(31).map(|k| k << 8).collect();
    words.extend([
        0,
        0xff,
        u32::MAX,
        0x7fff_ffff,
        0x8000_0000,
        0xbfff_ff00,
        0xc000_0000,
    ]);
    let t = Instant::now();
    let got = engine.gumbel_words(&words).unwrap();
    println!(
        "{} words on {} in {:?}",
        words.len(),
        engine.device(),
        t.elapsed()
    );
    let mut mismatches = 0;
    for (&w, &g) in words.iter().zip(&got) {
        let want = gm::gumbel_from_word(w);
        if g.to_bits() != want.to_bits() {
            if mismatches < 10 {
                println!("w = {w:#010x}: WGSL {g:e}, Rust {want:e}");
            }
            mismatches += 1;
        }
    }
    assert_eq!(mismatches, 0, "of {} words", words.len());
}

// ------------------------------------------------------------------------------------------------
// CUDA: NVRTC always, the device when there is one.
// ------------------------------------------------------------------------------------------------

#[test]
fn nvrtc_compiles_the_gumbel_kernels() {
    if let Err(reason) = cuda::nvrtc_available() {
        assert!(
            !env_flag("KERNELBOOK_REQUIRE_NVRTC"),
            "KERNELBOOK_REQUIRE_NVRTC=1 but {reason}"
        );
        println!("skipped: {reason}");
        return;
    }
    let program = kernelbook::sources::cuda_program("gumbel").expect("embedded");
    let source = program.as_str();
    let archs = cuda::supported_archs().expect("NVRTC architectures");
    let real = if archs.contains(&90) {
        90
    } else {
        *archs.last().expect("an architecture")
    };
    for arch in ["compute_80".to_string(), format!("sm_{real}")] {
        let k = cuda::compile("kernels/gumbel.cu", source, &arch).unwrap_or_else(|e| panic!("{e}"));
        println!(
            "kernels/gumbel.cu -> {arch}: {} bytes of {} in {:.0} ms",
            k.size(),
            k.format,
            k.compile_time.as_secs_f64() * 1e3
        );
        assert!(k.log.is_empty(), "NVRTC warnings: {}", k.log);
        if arch.starts_with("compute_") {
            let ptx = String::from_utf8(k.image).expect("PTX is text");
            for entry in [
                "gumbel_f32",
                "gumbel_f16",
                "gumbel_bf16",
                "gumbel_fast_f32",
                "gumbel_fast_f16",
                "gumbel_fast_bf16",
                "philox_kat",
                "gumbel_words",
            ] {
                assert!(
                    ptx.contains(&format!(".entry {entry}(")),
                    "no entry {entry}"
                );
            }
            assert!(!ptx.contains("div.approx"), "approximate division");
        }
    }
}

#[test]
fn cuda_draws_the_same_bits() {
    let Some(engine) = cuda() else { return };
    let got = engine.philox4x32(&kat_blocks()).unwrap();
    for ((c, k, want), got) in gm::PHILOX_KAT.iter().zip(&got) {
        assert_eq!(got, want, "CUDA Philox, ctr {c:08x?} key {k:08x?}");
    }
    // Every one of the 2^24 uniforms (and both ends of the word range).
    let mut words: Vec<u32> = (0..(1u32 << 24)).map(|k| k << 8).collect();
    words.extend([0xff, u32::MAX]);
    let got = engine.gumbel_words(&words).unwrap();
    let bad = words
        .iter()
        .zip(&got)
        .filter(|(w, g)| g.to_bits() != gm::gumbel_from_word(**w).to_bits())
        .count();
    assert_eq!(bad, 0, "CUDA words differing from Rust, of {}", words.len());
    // The ops: every suite case within tolerance, and the same bits as the CPU engine, with the
    // fast kernel (the default) and with the simple one.
    compare_engines(engine, &CpuEngine::new());
    compare_kernels(engine);
}

/// Every gumbel_softmax suite case with the simple and the fast kernel: both within tolerance,
/// the same one-hots bit for bit, the same outputs (soft values within the tolerance: only the
/// order of the additions in the sum differs).
fn compare_kernels(engine: &dyn Engine) {
    for case in gm::suite_cases(false) {
        let req = case.request().unwrap();
        if !matches!(gumbel_op(&req), GumbelOp::GumbelSoftmax { .. }) {
            continue;
        }
        let reference = req.reference_full();
        let [simple, fast] = [KernelVariant::Simple, KernelVariant::Fast].map(|k| {
            let r = req.clone().with_kernel(k);
            let out = run(engine, &r);
            let report = check_output(&r, &reference, &out);
            assert!(report.passed, "{k} {} {}: {report}", case.dtype, case.name);
            out
        });
        assert_eq!(simple.aux.len(), fast.aux.len(), "{}", case.name);
        if gumbel_op(&req).hard() {
            assert_eq!(simple.values, fast.values, "{} {}", case.dtype, case.name);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The ops on the engines.
// ------------------------------------------------------------------------------------------------

fn run(engine: &dyn Engine, req: &OpRequest) -> OpOutput {
    engine.run(req).unwrap_or_else(|e| {
        panic!(
            "{} {} {} {:?}: {e}",
            engine.kind(),
            req.op.describe(),
            req.dtype,
            req.x.shape
        )
    })
}

fn gumbel_op(req: &OpRequest) -> &GumbelOp {
    req.op
        .get::<GumbelOp>()
        .unwrap_or_else(|| panic!("not a gumbel op: {:?}", req.op))
}

/// Every gumbel suite case on `a` and `b`: each within tolerance of the reference, the noise and
/// the hard one-hots the same bits on both, every hard row exactly one 1 among 0s.
fn compare_engines(a: &dyn Engine, b: &dyn Engine) {
    let mut worst: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for case in gm::suite_cases(false) {
        let req = case.request().unwrap();
        let reference = req.reference_full();
        let outs: Vec<OpOutput> = [a, b]
            .iter()
            .map(|e| {
                let t = Instant::now();
                let out = run(*e, &req);
                let report = check_output(&req, &reference, &out);
                assert!(
                    report.passed,
                    "{} {} {}: {report}",
                    e.kind(),
                    case.dtype,
                    case.name
                );
                let key = format!("{} {} {}", e.kind(), req.op.kind(), case.dtype);
                let w = worst.entry(key).or_default();
                w.0 = w.0.max(report.max_abs);
                w.1 = w.1.max(report.max_rel);
                if t.elapsed().as_secs_f64() > 0.5 {
                    println!("{} {}: {:?}", e.kind(), case.name, t.elapsed());
                }
                out
            })
            .collect();
        let op = gumbel_op(&req);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        if matches!(op, GumbelOp::GumbelNoise { .. }) || op.hard() {
            assert_eq!(
                bits(&outs[0].values),
                bits(&outs[1].values),
                "{} and {} differ: {} {}",
                a.kind(),
                b.kind(),
                case.dtype,
                case.name
            );
        }
        if op.hard() {
            let k = req.x.cols();
            for out in outs.iter().filter(|_| k > 0) {
                for row in out.values.chunks(k) {
                    assert_eq!(
                        row.iter().filter(|v| v.to_bits() == 1f32.to_bits()).count(),
                        1
                    );
                    assert_eq!(row.iter().filter(|v| v.to_bits() == 0).count(), k - 1);
                }
            }
        }
    }
    for (key, (abs, rel)) in worst {
        println!("{key}: max abs {abs:.2e}, max rel {rel:.2e}");
    }
}

#[test]
fn suite_cases_agree_on_cpu_and_wgpu() {
    let Some(gpu) = wgpu() else { return };
    compare_engines(&CpuEngine::new(), gpu);
}

fn hard_request(logits: &[f32], tau: f64, seed: u64, offset: u64, draws: usize) -> OpRequest {
    OpRequest::new(
        Op::new(GumbelOp::GumbelSoftmax {
            tau,
            hard: true,
            return_soft: true,
            seed,
            offset,
            draws,
        }),
        DType::F32,
        Tensor::row(logits.to_vec()),
    )
    .unwrap()
}

/// The class of each one-hot row.
fn classes(out: &OpOutput, k: usize) -> Vec<usize> {
    out.values
        .chunks(k)
        .map(|row| row.iter().position(|&v| v == 1.0).expect("a hot class"))
        .collect()
}

fn counts(classes: &[usize], k: usize) -> Vec<u64> {
    let mut c = vec![0u64; k];
    for &j in classes {
        c[j] += 1;
    }
    c
}

/// softmax(l) = [0.6, 0.2, 0.1, 0.05, 0.05]: l = (ln 12, ln 4, ln 2, 0, 0), as in the lesson.
const LOGITS: [f32; 5] = [2.484_906_6, 1.386_294_4, std::f32::consts::LN_2, 0.0, 0.0];

fn softmax_of(l: &[f32]) -> Vec<f64> {
    gm::softmax_f64(&l.iter().map(|&v| f64::from(v)).collect::<Vec<_>>())
}

/// 100 000 hard draws per τ on the CPU engine (and on wgpu: its short-row path draws 100 000
/// samples of 5 classes in well under a second on lavapipe), against softmax(l) at the 0.999 level.
#[test]
fn argmax_frequencies_pass_chi_square_for_every_tau() {
    let n = 100_000;
    let k = LOGITS.len();
    let p = softmax_of(&LOGITS);
    let critical = gm::chi_square_critical_999(k - 1);
    let cpu = CpuEngine::new();
    let mut engines: Vec<&dyn Engine> = vec![&cpu];
    if let Some(g) = wgpu() {
        engines.push(g);
    }
    for (i, tau) in [0.1, 1.0, 10.0].into_iter().enumerate() {
        let req = hard_request(&LOGITS, tau, 1000 + i as u64, 0, n);
        let mut chosen = Vec::new();
        for e in &engines {
            let t = Instant::now();
            let out = run(*e, &req);
            let c = counts(&classes(&out, k), k);
            let chi2 = gm::chi_square(&c, &p);
            println!(
                "{} tau={tau}: counts {c:?}, chi2 = {chi2:.2} (critical {critical:.2}) in {:?}",
                e.kind(),
                t.elapsed()
            );
            assert!(chi2 < critical, "{} tau={tau}: chi2 {chi2}", e.kind());
            chosen.push(classes(&out, k));
        }
        // Sample for sample, the same classes on every engine.
        for other in &chosen[1..] {
            assert_eq!(other, &chosen[0], "tau={tau}");
        }
        // The misconception, tested: had τ sharpened the choices, the counts would follow
        // softmax(l/τ). They do not (for τ far from 1 the statistic is huge).
        if tau != 1.0 {
            let tempered = softmax_of(&LOGITS.map(|v| (f64::from(v) / tau) as f32));
            let chi2 = gm::chi_square(&counts(&chosen[0], k), &tempered);
            assert!(
                chi2 > 100.0 * critical,
                "tau={tau}: chi2 against softmax(l/tau) = {chi2}"
            );
        }
    }
}

#[test]
fn hard_samples_do_not_depend_on_tau_and_seeds_and_offsets_matter() {
    let k = LOGITS.len();
    let cpu = CpuEngine::new();
    let at = |tau, seed, offset| {
        classes(
            &run(&cpu, &hard_request(&LOGITS, tau, seed, offset, 5000)),
            k,
        )
    };
    let base = at(1.0, 5, 0);
    assert_eq!(at(0.05, 5, 0), base);
    assert_eq!(at(10.0, 5, 0), base);
    let differ = |a: &[usize], b: &[usize]| a.iter().zip(b).filter(|(x, y)| x != y).count();
    // Independent draws agree with probability sum p^2 = 0.415: about 2900 of 5000 differ.
    assert!(differ(&at(1.0, 6, 0), &base) > 2000);
    assert!(differ(&at(1.0, 5, 1), &base) > 2000);
    if let Some(g) = wgpu() {
        assert_eq!(
            classes(&run(g, &hard_request(&LOGITS, 0.3, 5, 0, 5000)), k),
            base
        );
    }
}

/// `return_soft=false`: hard mode returns the one-hot alone (no aux output on any engine or in the
/// reference), with the same classes, bit for bit, as with the soft sample; soft mode ignores it.
#[test]
fn return_soft_false_drops_the_aux_output_only() {
    let parse = |kv: &[(&str, &str)]| {
        let kv: Vec<(String, String)> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Op::parse("gumbel_softmax", &kv).unwrap().0
    };
    let with = parse(&[("hard", "true"), ("tau", "0.5"), ("seed", "3")]);
    let without = parse(&[
        ("hard", "true"),
        ("tau", "0.5"),
        ("seed", "3"),
        ("return_soft", "false"),
    ]);
    assert!(without.describe().contains("return_soft=false"));
    let soft_with = parse(&[("seed", "3")]);
    let soft_without = parse(&[("seed", "3"), ("return_soft", "false")]);
    let cpu = CpuEngine::new();
    let mut engines: Vec<&dyn Engine> = vec![&cpu];
    if let Some(g) = wgpu() {
        engines.push(g);
    }
    // K = 5 (one invocation per row on wgpu) and K = 300 (one workgroup per row).
    for k in [5usize, 300] {
        let x = Tensor::matrix(
            3,
            k,
            (0..3 * k)
                .map(|i| ((i * 7) % 11) as f32 * 0.4 - 2.0)
                .collect(),
        )
        .unwrap();
        let req = |op: &Op| OpRequest::new(op.clone(), DType::F32, x.clone()).unwrap();
        let (with, without) = (req(&with), req(&without));
        assert_eq!(with.reference_full().aux.len(), 1);
        let reference = without.reference_full();
        assert!(reference.aux.is_empty());
        assert_eq!(reference.values, with.reference_full().values);
        for e in &engines {
            let a = run(*e, &with);
            let b = run(*e, &without);
            assert_eq!(a.aux.len(), 1, "{}", e.kind());
            assert!(b.aux.is_empty(), "{} K={k}: {:?}", e.kind(), b.aux.len());
            assert_eq!(a.values, b.values, "{} K={k}", e.kind());
            assert!(
                check_output(&without, &reference, &b).passed,
                "{} K={k}",
                e.kind()
            );
            // Soft mode: the soft sample is the main output either way.
            let (s1, s2) = (run(*e, &req(&soft_with)), run(*e, &req(&soft_without)));
            assert_eq!(s1.values, s2.values, "{} K={k}", e.kind());
            assert!(s1.aux.is_empty() && s2.aux.is_empty());
        }
    }
}

/// Long rows (one workgroup per sample on wgpu) draw the same classes as the CPU, sample for
/// sample, and their soft values agree within softmax's tolerance.
#[test]
fn long_rows_agree_sample_for_sample() {
    let Some(g) = wgpu() else { return };
    let k = 3000;
    let logits: Vec<f32> = (0..k)
        .map(|j| ((j * 37 % 101) as f32) * 0.05 - 2.5)
        .collect();
    for hard in [true, false] {
        let req = OpRequest::new(
            Op::new(GumbelOp::GumbelSoftmax {
                tau: 0.2,
                hard,
                return_soft: true,
                seed: 11,
                offset: 2,
                draws: 6,
            }),
            DType::F32,
            Tensor::row(logits.clone()),
        )
        .unwrap();
        let reference = req.reference_full();
        let cpu = run(&CpuEngine::new(), &req);
        let gpu = run(g, &req);
        for out in [&cpu, &gpu] {
            let report = check_output(&req, &reference, out);
            assert!(report.passed, "hard={hard}: {report}");
        }
        if hard {
            assert_eq!(classes(&cpu, k), classes(&gpu, k));
        }
    }
}

/// The mean soft sample is not softmax(l): at τ = 1 the top class averages about 0.48, not 0.60
/// (docs/numerics.md: 0.476 for a distribution with top probability 0.600); as τ -> 0 it approaches
/// softmax(l), while the argmax frequencies are softmax(l) at every τ.
#[test]
fn mean_soft_sample_differs_from_softmax() {
    let k = LOGITS.len();
    let req = OpRequest::new(
        Op::new(GumbelOp::GumbelSoftmax {
            tau: 1.0,
            hard: false,
            return_soft: true,
            seed: 0,
            offset: 0,
            draws: 100_000,
        }),
        DType::F32,
        Tensor::row(LOGITS.to_vec()),
    )
    .unwrap();
    let out = run(&CpuEngine::new(), &req);
    let mut mean = vec![0.0f64; k];
    for row in out.values.chunks(k) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v) / 100_000.0;
        }
    }
    println!("mean soft sample at tau = 1: {mean:?}");
    assert!((mean[0] - 0.4777).abs() < 0.005, "{mean:?}");
    assert!(mean[3] > 0.075, "the small classes gain: {mean:?}");
}

#[test]
fn bad_parameters_and_logits_are_clear_errors() {
    let parse = |kv: &[(&str, &str)]| {
        let kv: Vec<(String, String)> = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Op::parse("gumbel_softmax", &kv)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let e = parse(&[("tau", "0")]).unwrap_err();
    assert!(e.contains("parameter tau: must be > 0"), "{e}");
    let e = parse(&[("tau", "-0.5")]).unwrap_err();
    assert!(e.contains("must be > 0"), "{e}");
    let e = parse(&[("tau", "inf")]).unwrap_err();
    assert!(e.contains("finite"), "{e}");
    let e = parse(&[("draws", "0")]).unwrap_err();
    assert!(e.contains("draws"), "{e}");
    let e = parse(&[("hard", "maybe")]).unwrap_err();
    assert!(e.contains("true or false"), "{e}");
    let op = Op::new(GumbelOp::GumbelSoftmax {
        tau: 1.0,
        hard: true,
        return_soft: true,
        seed: 1,
        offset: 0,
        draws: 2,
    });
    for (bad, what) in [
        (f32::NAN, "NaN"),
        (f32::INFINITY, "inf"),
        (f32::NEG_INFINITY, "-1e4"),
    ] {
        let e = OpRequest::new(op.clone(), DType::F32, Tensor::row(vec![0.0, bad]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("input x: logit 1 of row 0"), "{e}");
        assert!(e.contains(what), "{e}");
    }
    // A hand-built op with τ = 0 is refused by every engine before it runs.
    let zero = Op::new(GumbelOp::GumbelSoftmax {
        tau: 0.0,
        hard: false,
        return_soft: true,
        seed: 1,
        offset: 0,
        draws: 1,
    });
    let req = OpRequest {
        op: zero,
        dtype: DType::F32,
        x: Tensor::row(vec![0.0, 1.0]),
        extra: Vec::new(),
        kernel: Default::default(),
    };
    let e = CpuEngine::new().run(&req).unwrap_err().to_string();
    assert!(e.contains("must be > 0"), "{e}");
}

/// Near-ties, built on purpose: logits chosen so that l + g of two classes agree to the last bit
/// of f32. The f64 reference cannot tell which is larger within f32's resolution, takes the class
/// the engines' f32 rule picks and says so in a note; the engines still agree with each other and
/// pass. A clear gap is compared for real: a one-hot on the wrong class fails the check.
#[test]
fn near_ties_are_resolved_honestly_and_wrong_classes_fail() {
    let mut g = [0.0f32; 2];
    gm::noise_row(gm::key_of(5), 0, 0, &mut g);
    let op = Op::new(GumbelOp::GumbelSoftmax {
        tau: 0.5,
        hard: true,
        return_soft: true,
        seed: 5,
        offset: 0,
        draws: 1,
    });
    let tie = OpRequest::new(op.clone(), DType::F32, Tensor::row(vec![0.0, g[0] - g[1]])).unwrap();
    let notes = tie.notes().join(" ");
    assert!(notes.contains("1 of 1 draw is a near-tie"), "{notes}");
    let reference = tie.reference_full();
    let cpu = CpuEngine::new();
    let mut engines: Vec<&dyn Engine> = vec![&cpu];
    if let Some(w) = wgpu() {
        engines.push(w);
    }
    let mut seen = Vec::new();
    for e in &engines {
        let out = run(*e, &tie);
        assert!(check_output(&tie, &reference, &out).passed, "{}", e.kind());
        seen.push(classes(&out, 2));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]));

    // A clear winner (class 1 by 0.01): the one-hot is compared with the f64 argmax for real.
    let clear = OpRequest::new(op, DType::F32, Tensor::row(vec![0.0, g[0] - g[1] + 0.01])).unwrap();
    assert!(clear.notes().is_empty());
    let reference = clear.reference_full();
    assert_eq!(reference.values, vec![0.0, 1.0]);
    let mut out = run(&cpu, &clear);
    assert!(check_output(&clear, &reference, &out).passed);
    out.values.swap(0, 1);
    let report = check_output(&clear, &reference, &out);
    assert!(!report.passed && report.failures == 2, "{report}");
}

/// Timings behind the report (run with `--ignored --nocapture`): the lesson's sizes on wgpu and
/// the CPU, and the f64 reference.
#[test]
#[ignore]
fn print_timings() {
    let cpu = CpuEngine::new();
    let gpu = wgpu();
    for (k, draws) in [(5usize, 2000usize), (5, 20_000), (5, 100_000), (32_000, 4)] {
        let logits: Vec<f32> = (0..k).map(|j| (j % 7) as f32 * 0.3).collect();
        let req = hard_request(&logits, 1.0, 1, 0, draws);
        let mut line = format!("K = {k}, {draws} draws:");
        if let Some(g) = gpu {
            run(g, &req);
            let t = Instant::now();
            let out = run(g, &req);
            line += &format!(" wgpu {:?} (kernel {:?})", t.elapsed(), out.kernel_time);
        }
        let t = Instant::now();
        run(&cpu, &req);
        line += &format!(", cpu {:?}", t.elapsed());
        let t = Instant::now();
        req.reference_full();
        line += &format!(", reference {:?}", t.elapsed());
        println!("{line}");
    }
}
