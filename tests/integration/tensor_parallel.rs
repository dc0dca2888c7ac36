//! The tensor-parallel ops on every engine present (CPU always; wgpu on lavapipe in CI; CUDA when a
//! GPU is there, otherwise skipped with the reason):
//! - Megatron-Core's vocab-parallel cross-entropy fixture (TP = 4): [10.2309, 8.2309, 6.2309,
//!   4.2309] x 4 to 1e-4;
//! - for k in {1, 2, 4, 8}: column- and row-parallel results within the per-element f32 bound
//!   γ_m·(Σ|x w| + |b|) of the unsplit f64 reference and within the check's tolerance; the column
//!   split bitwise equal to `linear` on the same engine; the embedding bit-identical to a plain
//!   lookup, ids at every shard boundary included; the cross-entropy within 5e-6 of the unsplit
//!   loss (f64, and the same engine's k = 1 result);
//! - shards under CPU initialisation equal to slices of the k = 1 weight;
//! - clear errors for V or out not divisible by k, bad ids, mismatched shapes;
//! - every cell of the lesson at every setting, with its views; the suite's cases;
//! - the shader validates with naga, the kernels compile with NVRTC, the lesson's marks exist in
//!   both sources, the WGSL helper copies match logits.wgsl;
//! - `kernelbook run` for the embedding and the cross-entropy with int64 .npy ids.

use crate::common::env_flag;
use kernelbook::check::{self, CheckReport};
use kernelbook::dtype::DType;
use kernelbook::engine::cuda;
use kernelbook::engine::wgpu::WgpuEngine;
use kernelbook::engine::{Engine, OpOutput};
use kernelbook::lesson::{self, Block, Control, ParamValue};
use kernelbook::ops::tensor_parallel::{
    self as tp, RANK_CHOICES, SplitAxis, TpOp, init_cpu_then_split, init_per_rank,
};
use kernelbook::ops::{Op, OpRequest, Tensor};
use kernelbook::suite::Input;
use std::collections::BTreeMap;
use std::path::Path;

fn wgpu_engine() -> Option<&'static WgpuEngine> {
    crate::common::wgpu()
}

/// Every engine available here: the CPU always, wgpu and CUDA when present.
fn engines() -> Vec<&'static dyn Engine> {
    crate::common::engines()
}

fn run(engine: &dyn Engine, req: &OpRequest) -> OpOutput {
    engine
        .run(req)
        .unwrap_or_else(|e| panic!("{} {} {}: {e}", engine.kind(), req.op.describe(), req.dtype))
}

fn checked(engine: &dyn Engine, req: &OpRequest) -> (OpOutput, CheckReport) {
    let out = run(engine, req);
    let report = check::check_output(req, &req.reference_full(), &out);
    assert!(
        report.passed,
        "{} {} {}: {report}",
        engine.kind(),
        req.op.describe(),
        req.dtype
    );
    (out, report)
}

fn vector(data: Vec<f32>) -> Tensor {
    Tensor {
        shape: vec![data.len()],
        data,
    }
}

fn normal(rows: usize, cols: usize, scale: f32, seed: u64) -> Tensor {
    Input::Normal {
        rows,
        cols,
        scale,
        seed,
    }
    .tensor()
}

fn tp_request(op: TpOp, dtype: DType, x: Tensor, extra: Vec<(&str, Tensor)>) -> OpRequest {
    OpRequest::with_inputs(
        Op::new(op),
        dtype,
        x,
        extra.into_iter().map(|(n, t)| (n.to_string(), t)).collect(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

// ------------------------------------------------------------------------------------------------
// Sources.
// ------------------------------------------------------------------------------------------------

#[test]
fn shader_validates_and_has_its_entry_points() {
    use wgpu::naga;
    assert!(
        kernelbook::sources::wgsl("tensor_parallel")
            .expect("embedded")
            .starts_with("// ")
    );
    let program = kernelbook::sources::wgsl_program("tensor_parallel").expect("embedded");
    let source = program.as_str();
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("does not parse:\n{}", e.emit_to_string(source)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("does not validate:\n{}", e.emit_to_string(source)));
    let sizes: BTreeMap<&str, [u32; 3]> = module
        .entry_points
        .iter()
        .map(|ep| (ep.name.as_str(), ep.workgroup_size))
        .collect();
    assert_eq!(sizes.get("linear_tiled"), Some(&[16, 16, 1]));
    for entry in [
        "embed_masked",
        "ce_local_max",
        "ce_predicted",
        "ce_sum_exp",
        "ce_loss",
        "reduce_copy",
        "reduce_accumulate",
        "gather_columns",
        "tensor_parallel_main",
    ] {
        assert_eq!(sizes.get(entry), Some(&[256, 1, 1]), "{entry}");
    }
}

#[test]
fn nvrtc_compiles_the_kernels() {
    if let Err(reason) = cuda::nvrtc_available() {
        assert!(
            !env_flag("KERNELBOOK_REQUIRE_NVRTC"),
            "KERNELBOOK_REQUIRE_NVRTC=1 but {reason}"
        );
        println!("skipped: {reason}");
        return;
    }
    let program = kernelbook::sources::cuda_program("tensor_parallel").expect("embedded");
    let source = program.as_str();
    assert!(!source.contains("#include") && !source.contains("INFINITY"));
    let archs = cuda::supported_archs().unwrap();
    let real = if archs.contains(&90) {
        90
    } else {
        *archs.last().unwrap()
    };
    for arch in ["compute_80".to_string(), format!("sm_{real}")] {
        let k = cuda::compile("kernels/tensor_parallel.cu", source, &arch)
            .unwrap_or_else(|e| panic!("{e}"));
        println!(
            "kernels/tensor_parallel.cu -> {arch}: {} bytes in {:.1} ms",
            k.size(),
            k.compile_time.as_secs_f64() * 1e3
        );
        if arch.starts_with("compute_") {
            let ptx = String::from_utf8(k.image.clone()).unwrap();
            for dtype in ["f32", "f16", "bf16"] {
                for base in [
                    "linear_tiled",
                    "embed_masked",
                    "ce_local_max",
                    "ce_predicted",
                    "ce_sum_exp",
                    "tensor_parallel",
                ] {
                    let entry = format!(".entry {base}_{dtype}(");
                    assert!(ptx.contains(&entry), "PTX lacks {entry}");
                }
            }
            for name in [
                "ce_loss",
                "reduce_copy",
                "reduce_accumulate",
                "gather_columns",
            ] {
                assert!(ptx.contains(&format!(".entry {name}(")), "PTX lacks {name}");
            }
            assert!(!ptx.contains("div.approx"));
        }
    }
}

#[test]
fn lesson_kernel_marks_are_in_both_sources() {
    let cuda = kernelbook::sources::cuda("tensor_parallel").unwrap();
    let wgsl = kernelbook::sources::wgsl("tensor_parallel").unwrap();
    let lesson = lesson::builtin()
        .into_iter()
        .filter_map(Result::ok)
        .find(|l| l.id == "tensor-parallel")
        .expect("the lesson is built in");
    let mut marks = 0;
    for step in &lesson.steps {
        for block in &step.blocks {
            if let Block::Kernel(k) = block {
                assert_eq!(k.topic, "tensor_parallel");
                for m in &k.marks {
                    assert!(cuda.contains(m.as_str()), "CUDA lacks '{m}'");
                    assert!(wgsl.contains(m.as_str()), "WGSL lacks '{m}'");
                    marks += 1;
                }
            }
        }
    }
    assert!(marks >= 8, "{marks} marks");
}

// ------------------------------------------------------------------------------------------------
// Numbers.
// ------------------------------------------------------------------------------------------------

#[test]
fn megatron_cross_entropy_fixture_on_every_engine() {
    let (x, targets) = tp::megatron_ce_fixture();
    let req = tp_request(
        TpOp::VocabParallelCrossEntropy { ranks: 4 },
        DType::F32,
        x,
        vec![("targets", targets)],
    );
    let want = [10.2309, 8.2309, 6.2309, 4.2309];
    for engine in engines() {
        let (out, report) = checked(engine, &req);
        assert_eq!(out.values.len(), 16);
        for (i, &l) in out.values.iter().enumerate() {
            assert!(
                (l as f64 - want[i % 4]).abs() < 1e-4,
                "{} row {i}: {l}",
                engine.kind()
            );
        }
        // Every target is on rank 0; the predicted logit is t mod 8 - 7 on every rank after the
        // all-reduce.
        let predicted = &out.aux("predicted").unwrap().values;
        for (i, &p) in predicted.iter().enumerate() {
            assert_eq!(p, ((2 * i) % 8) as f32 - 7.0, "{}", engine.kind());
        }
        println!("{} Megatron fixture: {report}", engine.kind());
    }
}

/// Per element: |got - ref| <= γ_m (Σ_j |x_j w_j| + |b|), m = in + k + 2 (the products' sums,
/// the all-reduce's additions, the bias, the final rounding), u = 2^-24.
fn assert_within_dot_bound(engine: &dyn Engine, req: &OpRequest, got: &[f32], ranks: usize) -> f64 {
    let reference = req.reference();
    let scale = tp::linear_error_scale(req);
    let m = (req.x.cols() + ranks + 2) as f64;
    let u = 2f64.powi(-24);
    let gamma = m * u / (1.0 - m * u);
    let mut worst: f64 = 0.0;
    for (i, ((&g, &r), &s)) in got.iter().zip(&reference).zip(&scale).enumerate() {
        let d = (g as f64 - r).abs();
        assert!(
            d <= gamma * s,
            "{} {} element {i}: |{g} - {r}| = {d:e} > γ·Σ|xw| = {:e}",
            engine.kind(),
            req.op.describe(),
            gamma * s
        );
        if s > 0.0 {
            worst = worst.max(d / (u * s));
        }
    }
    worst
}

#[test]
fn column_and_row_parallel_are_within_the_bound_for_every_k() {
    let (n, inner, out) = (13, 128, 40);
    let x = normal(n, inner, 1.0, 101);
    let w = normal(out, inner, 1.0 / (inner as f32).sqrt(), 102);
    let b = vector(normal(1, out, 0.5, 103).data);
    let extra = || vec![("w", w.clone()), ("b", b.clone())];
    for engine in engines() {
        let linear = run(
            engine,
            &tp_request(TpOp::Linear, DType::F32, x.clone(), extra()),
        );
        for k in RANK_CHOICES {
            for gather in [true, false] {
                let req = tp_request(
                    TpOp::ColumnParallelLinear { ranks: k, gather },
                    DType::F32,
                    x.clone(),
                    extra(),
                );
                let (got, _) = checked(engine, &req);
                assert_within_dot_bound(engine, &req, &got.values, k);
                // Each output is the same dot product in the same order: bitwise equal.
                assert_eq!(
                    bits(&got.values),
                    bits(&linear.values),
                    "{} column k={k} gather={gather}",
                    engine.kind()
                );
            }
            let req = tp_request(
                TpOp::RowParallelLinear { ranks: k },
                DType::F32,
                x.clone(),
                extra(),
            );
            let (got, report) = checked(engine, &req);
            let worst = assert_within_dot_bound(engine, &req, &got.values, k);
            // The partial sums add up to the result (before the bias) within the bound too.
            let partials = got.aux("partials").unwrap();
            assert_eq!(partials.shape, vec![k, n, out]);
            let unsplit = &got.aux("unsplit").unwrap().values;
            if k == 1 {
                assert_eq!(
                    bits(&got.values),
                    bits(&linear.values),
                    "{} row k=1",
                    engine.kind()
                );
            }
            assert_eq!(
                bits(unsplit),
                bits(&linear.values),
                "{} row unsplit",
                engine.kind()
            );
            println!(
                "{} row k={k}: {report}; worst |d| = {worst:.2} u·Σ|xw|",
                engine.kind()
            );
        }
    }
}

#[test]
fn embedding_is_bit_identical_to_a_plain_lookup_for_every_k() {
    let (v, h) = (64, 6);
    let mut table = normal(v, h, 1.0, 201);
    // Signed zeros and infinities must survive the masking and the all-reduce bit for bit.
    table.data[8 * h] = -0.0;
    table.data[8 * h + 1] = 0.0;
    table.data[63 * h + 2] = f32::INFINITY;
    table.data[16 * h + 3] = -0.0;
    let ids = tp::boundary_ids(48, v, 7);
    for &edge in &[0.0, 7.0, 8.0, 15.0, 16.0, 31.0, 32.0, 63.0] {
        assert!(ids.contains(&edge));
    }
    let plain: Vec<f32> = ids
        .iter()
        .flat_map(|&id| table.data[id as usize * h..(id as usize + 1) * h].to_vec())
        .collect();
    for dtype in DType::ALL {
        let table_d = Tensor {
            shape: table.shape.clone(),
            data: table.data.iter().map(|&a| dtype.round(a)).collect(),
        };
        let plain_d: Vec<f32> = plain.iter().map(|&a| dtype.round(a)).collect();
        for engine in engines() {
            for k in RANK_CHOICES {
                let req = tp_request(
                    TpOp::VocabParallelEmbedding { ranks: k },
                    dtype,
                    vector(ids.clone()),
                    vec![("table", table_d.clone())],
                );
                let out = run(engine, &req);
                assert_eq!(out.shape, vec![ids.len(), h]);
                assert_eq!(
                    bits(&out.values),
                    bits(&plain_d),
                    "{} {dtype} k={k}",
                    engine.kind()
                );
                let report = check::check_output(&req, &req.reference_full(), &out);
                assert!(report.passed, "{} {dtype} k={k}: {report}", engine.kind());
                // Each id's row comes from exactly one rank; the others hold zeros.
                let masked = &out.aux("masked").unwrap().values;
                for (i, &id) in ids.iter().enumerate() {
                    let owner = tp::owner(id as usize, v, k);
                    for r in 0..k {
                        let row = &masked[(r * ids.len() + i) * h..(r * ids.len() + i + 1) * h];
                        if r != owner {
                            assert!(row.iter().all(|&a| a == 0.0), "rank {r} id {id}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn cross_entropy_is_within_5e6_of_the_unsplit_loss_for_every_k() {
    let (rows, v) = (16, 1024);
    let x = normal(rows, v, 3.0, 301);
    let targets = vector(tp::boundary_ids(rows, v, 9));
    for engine in engines() {
        let mut k1: Option<Vec<f32>> = None;
        for k in RANK_CHOICES {
            let req = tp_request(
                TpOp::VocabParallelCrossEntropy { ranks: k },
                DType::F32,
                x.clone(),
                vec![("targets", targets.clone())],
            );
            let (out, report) = checked(engine, &req);
            let reference = req.reference();
            let worst = out
                .values
                .iter()
                .zip(&reference)
                .map(|(&a, &b)| (a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(worst <= 5e-6, "{} k={k}: {worst:e}", engine.kind());
            let first = k1.get_or_insert_with(|| out.values.clone());
            let split = out
                .values
                .iter()
                .zip(first.iter())
                .map(|(&a, &b)| (a as f64 - b as f64).abs())
                .fold(0.0, f64::max);
            assert!(split <= 5e-6, "{} k={k} vs k=1: {split:e}", engine.kind());
            assert_eq!(
                bits(&out.aux("unsplit").unwrap().values),
                bits(first),
                "{} k={k}: the unsplit output is the k = 1 result",
                engine.kind()
            );
            println!(
                "{} cross-entropy k={k}: {report}; loss vs f64 {worst:.2e}, vs k=1 {split:.2e}",
                engine.kind()
            );
        }
    }
}

#[test]
fn non_finite_logits_give_what_torch_gives() {
    // Row 0: a +inf logit (NaN loss); row 1: the target's logit is -inf (loss +inf); row 2: a NaN
    // logit (NaN); row 3: ordinary.
    let ninf = f32::NEG_INFINITY;
    let x = Tensor::matrix(
        4,
        8,
        vec![
            0.0,
            1.0,
            f32::INFINITY,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0, //
            ninf,
            1.0,
            2.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0, //
            0.0,
            1.0,
            2.0,
            0.0,
            f32::NAN,
            0.0,
            0.0,
            0.0, //
            0.0,
            1.0,
            2.0,
            3.0,
            4.0,
            5.0,
            6.0,
            7.0,
        ],
    )
    .unwrap();
    let targets = vector(vec![1.0, 0.0, 3.0, 7.0]);
    for engine in engines() {
        for k in [1, 4] {
            let req = tp_request(
                TpOp::VocabParallelCrossEntropy { ranks: k },
                DType::F32,
                x.clone(),
                vec![("targets", targets.clone())],
            );
            let (out, _) = checked(engine, &req);
            assert!(
                out.values[0].is_nan(),
                "{} k={k}: {:?}",
                engine.kind(),
                out.values
            );
            assert_eq!(out.values[1], f32::INFINITY, "{} k={k}", engine.kind());
            assert!(out.values[2].is_nan(), "{} k={k}", engine.kind());
            assert!((out.values[3] as f64 - 0.45833962647900517).abs() < 1e-6);
        }
    }
}

#[test]
fn sixteen_bit_storage_passes_on_every_engine() {
    let x = normal(9, 64, 1.0, 401);
    let w = normal(16, 64, 0.125, 402);
    let b = vector(normal(1, 16, 0.5, 403).data);
    let logits = normal(5, 128, 3.0, 404);
    let targets = vector(vec![0.0, 31.0, 32.0, 64.0, 127.0]);
    for dtype in [DType::F16, DType::Bf16] {
        for engine in engines() {
            for k in [1, 4] {
                for op in [
                    TpOp::ColumnParallelLinear {
                        ranks: k,
                        gather: true,
                    },
                    TpOp::RowParallelLinear { ranks: k },
                ] {
                    checked(
                        engine,
                        &tp_request(
                            op,
                            dtype,
                            x.clone(),
                            vec![("w", w.clone()), ("b", b.clone())],
                        ),
                    );
                }
                checked(
                    engine,
                    &tp_request(
                        TpOp::VocabParallelCrossEntropy { ranks: k },
                        dtype,
                        logits.clone(),
                        vec![("targets", targets.clone())],
                    ),
                );
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Seeding.
// ------------------------------------------------------------------------------------------------

#[test]
fn shards_under_cpu_init_equal_slices_of_the_k1_weight() {
    let (out, inner) = (32, 48);
    for axis in [SplitAxis::Rows, SplitAxis::Columns] {
        let full = init_cpu_then_split(42, out, inner, 1, axis).remove(0);
        assert_eq!(full.len(), out * inner);
        for k in RANK_CHOICES {
            let shards = init_cpu_then_split(42, out, inner, k, axis);
            for (r, shard) in shards.iter().enumerate() {
                let want: Vec<f32> = match axis {
                    SplitAxis::Rows => {
                        let rows = tp::shard(out, k, r);
                        full[rows.start * inner..rows.end * inner].to_vec()
                    }
                    SplitAxis::Columns => tp::columns(&full, out, inner, tp::shard(inner, k, r)),
                };
                assert_eq!(shard, &want, "{axis:?} k={k} rank {r}");
            }
            let per_rank = init_per_rank(42, out, inner, k, axis);
            let assembled = tp::assemble_shards(&per_rank, out, inner, axis);
            let per_rank_1 = init_per_rank(42, out, inner, 1, axis).remove(0);
            assert_eq!(
                assembled == per_rank_1,
                k == 1,
                "per-rank init gives another model for every k > 1 ({axis:?} k={k})"
            );
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Errors.
// ------------------------------------------------------------------------------------------------

fn error(op: TpOp, x: Tensor, extra: Vec<(&str, Tensor)>) -> String {
    OpRequest::with_inputs(
        Op::new(op),
        DType::F32,
        x,
        extra.into_iter().map(|(n, t)| (n.to_string(), t)).collect(),
    )
    .expect_err("must be refused")
    .to_string()
}

#[test]
fn bad_shapes_ids_and_divisibility_are_clear_errors() {
    let x = normal(3, 12, 1.0, 1);
    let w = normal(6, 12, 1.0, 2);
    let e = error(
        TpOp::ColumnParallelLinear {
            ranks: 4,
            gather: true,
        },
        x.clone(),
        vec![("w", w.clone())],
    );
    assert!(
        e.contains("out = 6 rows, not divisible by ranks = 4"),
        "{e}"
    );
    let e = error(
        TpOp::RowParallelLinear { ranks: 8 },
        x.clone(),
        vec![("w", w.clone())],
    );
    assert!(
        e.contains("in = 12 columns, not divisible by ranks = 8"),
        "{e}"
    );
    let e = error(TpOp::Linear, x.clone(), vec![("w", normal(6, 11, 1.0, 3))]);
    assert!(e.contains("x has 12 columns"), "{e}");
    let e = error(TpOp::Linear, x.clone(), vec![("w", vector(vec![0.0; 12]))]);
    assert!(e.contains("expected a matrix [out, in]"), "{e}");
    let e = error(TpOp::Linear, x.clone(), vec![]);
    assert!(e.contains("needs input 'w'"), "{e}");
    let e = error(TpOp::Linear, x, vec![("w", w), ("b", vector(vec![0.0; 5]))]);
    assert!(e.contains("[out] = [6]"), "{e}");

    let table = normal(10, 4, 1.0, 4);
    let e = error(
        TpOp::VocabParallelEmbedding { ranks: 4 },
        vector(vec![1.0]),
        vec![("table", table.clone())],
    );
    assert!(e.contains("V = 10 rows, not divisible by ranks = 4"), "{e}");
    for bad in [10.0, -1.0, 1e6] {
        let e = error(
            TpOp::VocabParallelEmbedding { ranks: 2 },
            vector(vec![0.0, bad]),
            vec![("table", table.clone())],
        );
        assert!(
            e.contains(&format!("element 1 is {bad}")) && e.contains("outside [0, V = 10)"),
            "{e}"
        );
    }
    let e = error(
        TpOp::VocabParallelEmbedding { ranks: 2 },
        vector(vec![2.5]),
        vec![("table", table)],
    );
    assert!(e.contains("integers"), "{e}");

    let logits = normal(4, 12, 1.0, 5);
    let e = error(
        TpOp::VocabParallelCrossEntropy { ranks: 8 },
        logits.clone(),
        vec![("targets", vector(vec![0.0; 4]))],
    );
    assert!(
        e.contains("V = 12 columns, not divisible by ranks = 8"),
        "{e}"
    );
    let e = error(
        TpOp::VocabParallelCrossEntropy { ranks: 2 },
        logits.clone(),
        vec![("targets", vector(vec![0.0; 3]))],
    );
    assert!(e.contains("holds 3 ids but x has 4 rows"), "{e}");
    let e = error(
        TpOp::VocabParallelCrossEntropy { ranks: 2 },
        logits,
        vec![("targets", vector(vec![0.0, 1.0, 12.0, 2.0]))],
    );
    assert!(e.contains("element 2 is 12, outside [0, V = 12)"), "{e}");
    let e = Op::parse("vocab_parallel_embedding", &[("ranks".into(), "3".into())])
        .unwrap_err()
        .to_string();
    assert!(e.contains("'3' is not one of 1, 2, 4, 8"), "{e}");
}

// ------------------------------------------------------------------------------------------------
// The lesson and the suite.
// ------------------------------------------------------------------------------------------------

#[test]
fn every_lesson_cell_runs_and_passes_at_every_setting() {
    let lesson = lesson::builtin()
        .into_iter()
        .filter_map(Result::ok)
        .find(|l| l.id == "tensor-parallel")
        .expect("the lesson is built in");
    let mut runs = 0;
    for step in &lesson.steps {
        for cell in step.cells() {
            // Every combination of the cell's choices and toggles (no sliders here).
            let mut settings: Vec<Vec<(&str, ParamValue)>> = vec![Vec::new()];
            for p in &cell.params {
                let values: Vec<ParamValue> = match &p.control {
                    Control::Choice { choices } => choices
                        .iter()
                        .map(|c| ParamValue::Choice(c.clone()))
                        .collect(),
                    Control::Toggle => vec![ParamValue::Bool(true), ParamValue::Bool(false)],
                    Control::Slider { .. } => panic!("{}: unexpected slider", step.title),
                    Control::Fixed => vec![p.default.clone()],
                };
                settings = settings
                    .into_iter()
                    .flat_map(|s| {
                        values.iter().map(move |v| {
                            let mut s = s.clone();
                            s.push((p.name, v.clone()));
                            s
                        })
                    })
                    .collect();
            }
            for setting in settings {
                let params: Vec<(String, String)> = setting
                    .iter()
                    .filter_map(|(n, v)| v.to_param_string().map(|s| (n.to_string(), s)))
                    .collect();
                let (op, dtype) = Op::parse(cell.op.name(), &params).unwrap();
                let x = cell.shaped_input(&cell.input.tensor()).unwrap();
                let req = OpRequest::with_inputs(op, dtype, x, cell.extra_tensors())
                    .unwrap_or_else(|e| panic!("{} {params:?}: {e}", step.title));
                let registry_runs: Vec<_> = engines()
                    .into_iter()
                    .map(|e| {
                        let (out, report) = checked(e, &req);
                        (e.kind(), out, report)
                    })
                    .collect();
                runs += registry_runs.len();
                // The views the cell shows build from these results.
                let comparison = kernelbook::compare::Comparison {
                    reference: req.reference(),
                    reference_aux: req.reference_full().aux,
                    notes: req.notes(),
                    runs: registry_runs
                        .into_iter()
                        .map(|(kind, out, report)| kernelbook::compare::EngineRun {
                            kind,
                            device: None,
                            software: false,
                            result: Ok((out, report)),
                        })
                        .collect(),
                    request: req,
                    reference_time: std::time::Duration::ZERO,
                };
                for view in &cell.show {
                    if let lesson::View::Topic(name) = view {
                        let fig = kernelbook::views::figure(name, &comparison)
                            .unwrap_or_else(|e| panic!("{} {name} {params:?}: {e}", step.title));
                        for chart in &fig.charts {
                            chart.validate().unwrap();
                        }
                    }
                }
            }
        }
    }
    println!("{runs} engine runs");
}

#[test]
fn suite_cases_pass_on_every_engine() {
    let mut worst: BTreeMap<(String, &'static str, &'static str), (f64, f64)> = BTreeMap::new();
    for case in tp::suite_cases(false) {
        let req = case.request().unwrap();
        let reference = req.reference_full();
        for engine in engines() {
            let out = run(engine, &req);
            let r = check::check_output(&req, &reference, &out);
            assert!(r.passed, "{} {}: {r}", engine.kind(), case.name);
            let e = worst
                .entry((
                    engine.kind().name().to_string(),
                    case.op.kind().name(),
                    case.dtype.name(),
                ))
                .or_default();
            e.0 = e.0.max(r.max_abs);
            e.1 = e.1.max(r.max_rel);
        }
    }
    for ((engine, op, dtype), (abs, rel)) in worst {
        println!("{engine:5} {op:30} {dtype:5} max abs {abs:.2e} max rel {rel:.2e}");
    }
}

// ------------------------------------------------------------------------------------------------
// The binary.
// ------------------------------------------------------------------------------------------------

/// A 1-D int64 .npy file.
fn write_i64_npy(path: &Path, values: &[i64]) {
    let mut header = format!(
        "{{'descr': '<i8', 'fortran_order': False, 'shape': ({},), }}",
        values.len()
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

fn kernelbook(args: &[&str]) -> (bool, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kernelbook"))
        .args(args)
        .output()
        .expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

#[test]
fn kernelbook_run_embedding_and_cross_entropy_with_int_ids() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    // Embedding: int64 ids, a [16, 3] table, 4 ranks.
    write_i64_npy(Path::new(&p("ids.npy")), &[0, 3, 4, 15, 8]);
    let table: Vec<f32> = (0..48).map(|v| v as f32 * 0.5).collect();
    kernelbook::npy::write(Path::new(&p("table.npy")), &[16, 3], &table, DType::F32).unwrap();
    let (ok, text) = kernelbook(&[
        "run",
        "vocab_parallel_embedding",
        "--input",
        &format!("ids={}", p("ids.npy")),
        "--input",
        &format!("table={}", p("table.npy")),
        "--param",
        "ranks=4",
        "--engine",
        "cpu",
        "-o",
        &p("y.npy"),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("PASS"), "{text}");
    let y = kernelbook::npy::read(Path::new(&p("y.npy"))).unwrap();
    assert_eq!(y.shape, vec![5, 3]);
    assert_eq!(y.to_f32()[3..6], [4.5, 5.0, 5.5]); // id 3: table row 3
    let masked = kernelbook::npy::read(Path::new(&p("y.masked.npy"))).unwrap();
    assert_eq!(masked.shape, vec![4, 5, 3]);
    // An id outside the table: one line, exit code 2.
    write_i64_npy(Path::new(&p("bad.npy")), &[0, 16]);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kernelbook"))
        .args([
            "run",
            "vocab_parallel_embedding",
            "--input",
            &format!("ids={}", p("bad.npy")),
            "--input",
            &format!("table={}", p("table.npy")),
            "-o",
            &p("z.npy"),
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("element 1 is 16, outside [0, V = 16)"),
        "{err}"
    );

    // Cross-entropy: Megatron's fixture through the binary, every engine here, and the reference.
    let (x, targets) = tp::megatron_ce_fixture();
    kernelbook::npy::write(Path::new(&p("x.npy")), &x.shape, &x.data, DType::F32).unwrap();
    let t: Vec<i64> = targets.data.iter().map(|&v| v as i64).collect();
    write_i64_npy(Path::new(&p("t.npy")), &t);
    let mut engine_names = vec!["cpu", "reference"];
    if wgpu_engine().is_some() {
        engine_names.push("wgpu");
    }
    for engine in engine_names {
        let out = p(&format!("loss-{engine}.npy"));
        let (ok, text) = kernelbook(&[
            "run",
            "vocab_parallel_cross_entropy",
            "--input",
            &format!("x={}", p("x.npy")),
            "--input",
            &format!("targets={}", p("t.npy")),
            "--param",
            "ranks=4",
            "--engine",
            engine,
            "-o",
            &out,
        ]);
        assert!(ok, "{engine}: {text}");
        let loss = kernelbook::npy::read(Path::new(&out)).unwrap();
        assert_eq!(loss.shape, vec![16]);
        let want = [10.2309, 8.2309, 6.2309, 4.2309];
        for (i, v) in loss.to_f32().iter().enumerate() {
            assert!((*v as f64 - want[i % 4]).abs() < 1e-4, "{engine} {i}: {v}");
        }
    }
}
