//! The vectorised, multi-threaded CPU engine against the f64 reference: every logits and softmax op
//! in every dtype at sizes that split over threads and blocks (odd row lengths, one long row, many
//! short ones), with the error it reaches stated next to its tolerance; special values; and
//! results that do not depend on how the rows were split (a row alone gives the same bits as the
//! same row inside a large input).

use kernelbook::check::check_output;
use kernelbook::dtype::DType;
use kernelbook::engine::Engine;
use kernelbook::engine::cpu::CpuEngine;
use kernelbook::ops::{Op, OpRequest, Tensor};
use kernelbook::suite::Input;

fn ops() -> Vec<Op> {
    vec![
        Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
            temperature: 1.0,
            stable: true,
        }),
        Op::new(kernelbook::ops::softmax::SoftmaxOp::Softmax {
            temperature: 0.7,
            stable: true,
        }),
        Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 1.0 }),
        Op::new(kernelbook::ops::softmax::SoftmaxOp::LogSoftmax { temperature: 2.5 }),
        Op::new(kernelbook::ops::logits::LogitsOp::Sigmoid),
        Op::new(kernelbook::ops::logits::LogitsOp::LogSigmoid),
        Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: None }),
        Op::new(kernelbook::ops::logits::LogitsOp::Logit { eps: Some(1e-6) }),
    ]
}

/// An input for `op`: probabilities for logit, normal(0, 4) logits elsewhere.
fn input(op: &Op, rows: usize, cols: usize, seed: u64) -> Tensor {
    match op.get::<kernelbook::ops::logits::LogitsOp>() {
        Some(kernelbook::ops::logits::LogitsOp::Logit { .. }) => Input::Uniform {
            rows,
            cols,
            lo: 0.0,
            hi: 1.0,
            seed,
        },
        _ => Input::Normal {
            rows,
            cols,
            scale: 4.0,
            seed,
        },
    }
    .tensor()
}

#[test]
fn every_op_and_dtype_passes_with_margin_at_threaded_sizes() {
    let engine = CpuEngine::new();
    // (rows, cols): many rows over threads; row lengths off the 16-value chunks and 128-value
    // tiles; a row longer than a block; one row of 70001 values.
    let shapes = [(64, 4096), (37, 1000), (300, 129), (3, 8191), (1, 70001)];
    for op in ops() {
        for dtype in DType::ALL {
            let mut worst = 0.0f64;
            for (k, &(rows, cols)) in shapes.iter().enumerate() {
                let req = OpRequest::new(op.clone(), dtype, input(&op, rows, cols, k as u64 + 1))
                    .unwrap();
                let out = engine.run(&req).unwrap();
                let report = check_output(&req, &req.reference_full(), &out);
                assert!(
                    report.passed,
                    "{} {dtype} {rows}x{cols}: {report}",
                    op.describe()
                );
                // Margin. The f32 error budget of softmax, where the relative error is reported
                // (y >= 2^-30 / 1e-6, so z - m > -8): z - m rounded (<= 2.4e-7), exp (1 ULP,
                // <= 1.2e-7), the sum (~1e-7), 1 / s and the product (6e-8 each): about 6e-7.
                // Measured it stays below 0.6 rtol; the other ops are further inside. (The f16
                // and bf16 results are the f32 ones rounded once more: their error is that
                // rounding.)
                if dtype == DType::F32 {
                    assert!(
                        report.max_rel <= 0.6 * report.tolerance.rtol,
                        "{} {rows}x{cols}: max rel {:e} is over 0.6 rtol = {:e}",
                        op.describe(),
                        report.max_rel,
                        0.6 * report.tolerance.rtol
                    );
                }
                worst = worst.max(report.max_rel);
            }
            println!("{} {dtype}: max rel error {worst:.2e}", op.describe());
        }
    }
}

#[test]
fn special_values_follow_the_reference() {
    let engine = CpuEngine::new();
    let inf = f32::INFINITY;
    let rows = vec![
        vec![0.0, -inf, 1.0, -inf, 2.0],
        vec![-inf; 5],
        vec![0.0, inf, 1.0, 2.0, 3.0],
        vec![0.0, f32::NAN, 1.0, 2.0, 3.0],
        vec![-1e4, 1e4, 0.0, 88.0, -104.0],
        vec![88.8, 89.0, -87.5, -103.0, -150.0],
    ];
    for op in ops() {
        for dtype in DType::ALL {
            let req =
                OpRequest::new(op.clone(), dtype, Input::Rows(rows.clone()).tensor()).unwrap();
            let out = engine.run(&req).unwrap();
            let report = check_output(&req, &req.reference_full(), &out);
            assert!(report.passed, "{} {dtype}: {report}", op.describe());
        }
    }
}

#[test]
fn a_row_gives_the_same_bits_alone_and_inside_a_large_input() {
    let engine = CpuEngine::new();
    let (rows, cols) = (96, 3000);
    for op in ops() {
        for dtype in DType::ALL {
            let x = input(&op, rows, cols, 9);
            let whole = engine
                .run(&OpRequest::new(op.clone(), dtype, x.clone()).unwrap())
                .unwrap()
                .values;
            for r in [0, 31, 47, 95] {
                let row = x.data[r * cols..(r + 1) * cols].to_vec();
                let alone = engine
                    .run(&OpRequest::new(op.clone(), dtype, Tensor::row(row)).unwrap())
                    .unwrap()
                    .values;
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert!(
                    bits(&alone) == bits(&whole[r * cols..(r + 1) * cols]),
                    "{} {dtype}: row {r} differs alone",
                    op.describe()
                );
            }
        }
    }
}
