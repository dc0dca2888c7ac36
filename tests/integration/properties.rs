//! Property tests of the softmax family: shift invariance, rows summing to 1, and
//! log_softmax = log(softmax) where finite, for the f64 reference and the CPU engine; and no panic on
//! any input, NaN and infinities included.

use kernelbook::dtype::DType;
use kernelbook::engine::Engine;
use kernelbook::engine::cpu::CpuEngine;
use kernelbook::ops::{Op, OpRequest, Tensor};
use proptest::prelude::*;

fn reference(op: Op, row: &[f32]) -> Vec<f64> {
    OpRequest::new(op, DType::F32, Tensor::row(row.to_vec()))
        .unwrap()
        .reference()
}

fn cpu(op: Op, dtype: DType, row: &[f32]) -> Vec<f32> {
    let req = OpRequest::new(op, dtype, Tensor::row(row.to_vec())).unwrap();
    CpuEngine::new().run(&req).unwrap().values
}

fn softmax(t: f64) -> Op {
    Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
        temperature: t,
        stable: true,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn reference_rows_sum_to_one(row in prop::collection::vec(-50.0f32..50.0, 1..200), t in 0.05f64..10.0) {
        let s: f64 = reference(softmax(t), &row).iter().sum();
        prop_assert!((s - 1.0).abs() < 1e-12, "sum {s}");
    }

    #[test]
    fn cpu_rows_sum_to_one(row in prop::collection::vec(-50.0f32..50.0, 1..2000), t in 0.05f64..10.0) {
        let y = cpu(softmax(t), DType::F32, &row);
        let s: f64 = y.iter().map(|&v| v as f64).sum();
        // Each output carries a few roundings of 2^-24; their sum drifts by at most ~n * 2^-24.
        prop_assert!((s - 1.0).abs() < 4e-7 * (row.len() as f64).sqrt().max(1.0), "sum {s} over {}", row.len());
    }

    #[test]
    fn reference_is_shift_invariant(eighths in prop::collection::vec(-240i32..240, 1..100), c in -100_000i32..100_000) {
        // The reference forms z = x / T in f32 (as the engines do), so shift by amounts that keep
        // x + c exact in f32: multiples of 1/8 below 2^21.
        let x: Vec<f32> = eighths.iter().map(|&k| k as f32 / 8.0).collect();
        let shifted: Vec<f32> = eighths.iter().map(|&k| k as f32 / 8.0 + c as f32).collect();
        for op in [softmax(1.0), Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 1.0 })] {
            let a = reference(op.clone(), &x);
            let b = reference(op, &shifted);
            for (u, v) in a.iter().zip(&b) {
                prop_assert!((u - v).abs() < 1e-12 * (1.0 + u.abs()), "{u} vs {v}");
            }
        }
    }

    #[test]
    fn cpu_is_bitwise_shift_invariant_for_integer_logits(
        ints in prop::collection::vec(-100i32..100, 1..64),
        c in -1_000_000i32..1_000_000,
    ) {
        // PyTorch's test_log_softmax_big idea: integer logits plus an integer shift stay exact in f32
        // (below 2^24), so subtracting the max gives back exactly the same z - m.
        let x: Vec<f32> = ints.iter().map(|&i| i as f32).collect();
        let shifted: Vec<f32> = ints.iter().map(|&i| (i + c) as f32).collect();
        for op in [softmax(1.0), Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 1.0 })] {
            let a = cpu(op.clone(), DType::F32, &x);
            let b = cpu(op, DType::F32, &shifted);
            prop_assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn log_softmax_is_log_of_softmax_where_finite(row in prop::collection::vec(-40.0f32..40.0, 1..300), t in 0.1f64..10.0) {
        let p = reference(softmax(t), &row);
        let lp = reference(Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: t }), &row);
        for (a, b) in p.iter().zip(&lp) {
            if *a > 1e-300 {
                prop_assert!((a.ln() - b).abs() < 1e-12 * (1.0 + b.abs()), "ln {a} vs {b}");
            }
        }
        let p = cpu(softmax(t), DType::F32, &row);
        let lp = cpu(Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: t }), DType::F32, &row);
        for (a, b) in p.iter().zip(&lp) {
            if *a >= f32::MIN_POSITIVE {
                let (a, b) = (*a as f64, *b as f64);
                prop_assert!((a.ln() - b).abs() < 4e-6 * (1.0 + b.abs()), "ln {a} vs {b}");
            }
        }
    }

    #[test]
    fn engines_never_panic_on_any_values(
        row in prop::collection::vec(prop::num::f32::ANY, 0..40),
        dtype in prop::sample::select(vec![DType::F32, DType::F16, DType::Bf16]),
        stable in any::<bool>(),
    ) {
        for op in [
            Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: None }),
            Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: Some(1e-3) }),
            Op::new(kernelbook::ops::logits::LogitsOp::Sigmoid),
            Op::new(kernelbook::ops::logits::LogitsOp::LogSigmoid),
            Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax { temperature: 0.5, stable }),
            Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 2.0 }),
        ] {
            let req = OpRequest::new(op, dtype, Tensor::row(row.clone())).unwrap();
            let out = CpuEngine::new().run(&req).unwrap();
            prop_assert_eq!(out.values.len(), row.len());
            let report = kernelbook::check::check(&req, &req.reference(), &out.values);
            prop_assert_eq!(report.elements, row.len());
        }
    }
}
