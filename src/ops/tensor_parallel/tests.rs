//! Unit tests of the tensor-parallel topic: parsing, the rank program, collectives, reference, seeding.

use super::*;
use crate::ops::Op;
use super::cases::vector;

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn linear_req(op: TpOp, x: Tensor, w: Tensor, b: Option<Tensor>) -> Result<OpRequest, OpError> {
    let mut extra = vec![("w".to_string(), w)];
    if let Some(b) = b {
        extra.push(("b".into(), b));
    }
    OpRequest::with_inputs(Op::new(op), DType::F32, x, extra)
}

#[test]
fn parses_params_and_rejects_bad_ones() {
    let (op, dt) = Op::parse(
        "column_parallel_linear",
        &kv(&[("ranks", "4"), ("gather", "false"), ("dtype", "bf16")]),
    )
    .unwrap();
    assert_eq!(
        op,
        Op::new(TpOp::ColumnParallelLinear {
            ranks: 4,
            gather: false
        })
    );
    assert_eq!(dt, DType::Bf16);
    let (op, _) = Op::parse("row_parallel_linear", &[]).unwrap();
    assert_eq!(op, Op::new(TpOp::RowParallelLinear { ranks: 2 }));
    let e = Op::parse("row_parallel_linear", &kv(&[("ranks", "3")])).unwrap_err();
    assert!(e.to_string().contains("1, 2, 4, 8"), "{e}");
    let e = Op::parse("linear", &kv(&[("ranks", "2")])).unwrap_err();
    assert!(e.to_string().contains("no parameter 'ranks'"), "{e}");
    let bad = TpOp::RowParallelLinear { ranks: 3 };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("choose 1, 2, 4 or 8")
    );
}

#[test]
fn shapes_and_divisibility_errors_are_clear() {
    let x = Tensor::matrix(2, 6, vec![0.5; 12]).unwrap();
    let w = Tensor::matrix(4, 6, vec![0.25; 24]).unwrap();
    // Column: out = 4 is not divisible by 8.
    let e = linear_req(
        TpOp::ColumnParallelLinear {
            ranks: 8,
            gather: true,
        },
        x.clone(),
        w.clone(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("out = 4") && e.contains("ranks = 8"), "{e}");
    // Row: in = 6 is not divisible by 4.
    let e = linear_req(
        TpOp::RowParallelLinear { ranks: 4 },
        x.clone(),
        w.clone(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("in = 6") && e.contains("ranks = 4"), "{e}");
    // Mismatched inner dimension.
    let w5 = Tensor::matrix(4, 5, vec![0.0; 20]).unwrap();
    let e = linear_req(TpOp::Linear, x.clone(), w5, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("x has 6 columns"), "{e}");
    // Bias of the wrong length.
    let e = linear_req(
        TpOp::Linear,
        x.clone(),
        w.clone(),
        Some(vector(vec![0.0; 3])),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("input b:") && e.contains("[out] = [4]"),
        "{e}"
    );
    // A [1, out] bias (a lesson's one-row input) is accepted.
    assert!(linear_req(TpOp::Linear, x, w, Some(Tensor::row(vec![0.0; 4]))).is_ok());
}

#[test]
fn embedding_and_cross_entropy_errors_are_clear() {
    let table = Tensor::matrix(10, 2, vec![1.0; 20]).unwrap();
    let req = |k, ids: Vec<f32>| {
        OpRequest::with_inputs(
            Op::new(TpOp::VocabParallelEmbedding { ranks: k }),
            DType::F32,
            vector(ids),
            vec![("table".into(), table.clone())],
        )
    };
    let e = req(4, vec![0.0]).unwrap_err().to_string();
    assert!(e.contains("V = 10") && e.contains("ranks = 4"), "{e}");
    let e = req(2, vec![3.0, 10.0]).unwrap_err().to_string();
    assert!(
        e.contains("element 1 is 10") && e.contains("Megatron"),
        "{e}"
    );
    let e = req(2, vec![-1.0]).unwrap_err().to_string();
    assert!(e.contains("element 0 is -1"), "{e}");
    let e = req(2, vec![0.5]).unwrap_err().to_string();
    assert!(e.contains("integers"), "{e}");
    assert!(req(2, vec![0.0, 4.0, 5.0, 9.0]).is_ok());

    let ce = |k, x: Tensor, t: Vec<f32>| {
        OpRequest::with_inputs(
            Op::new(TpOp::VocabParallelCrossEntropy { ranks: k }),
            DType::F32,
            x,
            vec![("targets".into(), vector(t))],
        )
    };
    let x = Tensor::matrix(2, 8, vec![0.0; 16]).unwrap();
    let e = ce(2, x.clone(), vec![0.0]).unwrap_err().to_string();
    assert!(e.contains("holds 1 ids but x has 2 rows"), "{e}");
    let e = ce(2, x.clone(), vec![0.0, 8.0]).unwrap_err().to_string();
    assert!(e.contains("element 1 is 8"), "{e}");
    let x6 = Tensor::matrix(2, 6, vec![0.0; 12]).unwrap();
    let e = ce(4, x6, vec![0.0, 1.0]).unwrap_err().to_string();
    assert!(e.contains("V = 6") && e.contains("ranks = 4"), "{e}");
    assert!(ce(8, x, vec![0.0, 7.0]).is_ok());
}

#[test]
fn megatron_cross_entropy_fixture() {
    let (x, t) = megatron_ce_fixture();
    let req = OpRequest::with_inputs(
        Op::new(TpOp::VocabParallelCrossEntropy { ranks: 4 }),
        DType::F32,
        x,
        vec![("targets".into(), t)],
    )
    .unwrap();
    let r = req.reference_full();
    let want = [10.2309, 8.2309, 6.2309, 4.2309];
    for (i, &l) in r.values.iter().enumerate() {
        assert!((l - want[i % 4]).abs() < 1e-4, "row {i}: {l}");
    }
    // Only rank 0 owns the targets; every rank sees the same local max 7.
    let local = &r.aux[0];
    assert_eq!(local.name, "local_max");
    assert!(local.values.iter().all(|&m| m == 7.0));
}

#[test]
fn shards_and_owners() {
    assert_eq!(shards(8, 4), vec![0..2, 2..4, 4..6, 6..8]);
    assert_eq!(owner(0, 8, 4), 0);
    assert_eq!(owner(5, 8, 4), 2);
    assert_eq!(owner(7, 8, 4), 3);
    assert_eq!(shards(5, 1), vec![0..5]);
}

#[test]
fn collective_bytes() {
    let ar = Collective::AllReduce {
        op: ReduceOp::Sum,
        len: 1000,
    };
    // Ring: 2 (k-1)/k of 4000 bytes per rank; naive: (k-1) x 4000.
    let t = ar.traffic(4, 4);
    assert_eq!((t.ring_per_rank, t.ring_total), (6000, 24000));
    assert_eq!((t.naive_per_rank, t.naive_total), (12000, 48000));
    assert_eq!(ar.traffic(1, 4), Traffic::default());
    let ag = Collective::AllGather { rows: 10, chunk: 5 };
    let t = ag.traffic(8, 4);
    assert_eq!(t.ring_per_rank, 7 * 200);
    assert_eq!(t.ring_per_rank, t.naive_per_rank);
    assert_eq!(ag.result_len(8), 400);
    // Vocab-parallel cross-entropy at GPT-2 scale: three [8192] all-reduces against gathering
    // [8192, 50304] logits.
    let small: u64 = cross_entropy_collectives(8192)
        .iter()
        .map(|c| c.traffic(8, 4).ring_per_rank)
        .sum();
    let gather = gather_logits_collective(8192, 50304, 8)
        .traffic(8, 4)
        .ring_per_rank;
    assert_eq!(small, 3 * 2 * 7 * 8192 * 4 / 8);
    assert_eq!(gather, 7 * 8192 * (50304 / 8) * 4);
    // The ratio is V/6 whatever k and n are: (k-1)·n·(V/k) against 3·2(k-1)/k·n.
    assert_eq!(gather / small, 50304 / 6);
    assert_eq!(format_bytes(1_441_792_000), "1.44 GB");
    assert_eq!(format_bytes(999), "999 B");
}

#[test]
fn lane_tree_sum_is_exact_on_integers_and_ordered() {
    assert_eq!(lane_tree_sum(1000, |j| j as f32), 499_500.0);
    assert_eq!(lane_tree_sum(0, |_| 1.0), 0.0);
    assert_eq!(lane_tree_sum(3, |_| 1.0), 3.0);
}

#[test]
fn cpu_init_shards_are_slices_of_the_unsplit_weight() {
    let (rows, cols) = (16, 24);
    for axis in [SplitAxis::Rows, SplitAxis::Columns] {
        let full = init_cpu_then_split(7, rows, cols, 1, axis).remove(0);
        for k in RANK_CHOICES {
            let s = init_cpu_then_split(7, rows, cols, k, axis);
            assert_eq!(s, split(&full, rows, cols, k, axis), "{axis:?} k={k}");
            assert_eq!(assemble_shards(&s, rows, cols, axis), full);
            // Per-rank init gives another model for every k > 1.
            let p = assemble_shards(&init_per_rank(7, rows, cols, k, axis), rows, cols, axis);
            let p1 = assemble_shards(&init_per_rank(7, rows, cols, 1, axis), rows, cols, axis);
            assert_eq!(p == p1, k == 1, "{axis:?} k={k}");
        }
    }
    let w = normal_init(1, 10_000);
    let std = (w.iter().map(|v| (v * v) as f64).sum::<f64>() / 1e4).sqrt();
    assert!((std - 0.02).abs() < 0.001, "{std}");
}

#[test]
fn programs_name_their_collectives() {
    let x = Tensor::matrix(3, 8, (0..24).map(|v| v as f32).collect()).unwrap();
    let w = Tensor::matrix(4, 8, vec![1.0; 32]).unwrap();
    let req = linear_req(
        TpOp::RowParallelLinear { ranks: 4 },
        x.clone(),
        w.clone(),
        None,
    )
    .unwrap();
    let op = req.op.get::<TpOp>().unwrap();
    let p = program(op, &req);
    assert_eq!(
        p.collectives(),
        vec![Collective::AllReduce {
            op: ReduceOp::Sum,
            len: 12
        }]
    );
    assert_eq!(p.outputs.len(), 2);
    let cp = TpOp::ColumnParallelLinear {
        ranks: 4,
        gather: false,
    };
    let req = linear_req(cp.clone(), x, w, None).unwrap();
    assert!(program(&cp, &req).collectives().is_empty());
    let ce = TpOp::VocabParallelCrossEntropy { ranks: 2 };
    let (x, t) = megatron_ce_fixture();
    let req = OpRequest::with_inputs(
        Op::new(ce.clone()),
        DType::F32,
        x,
        vec![("targets".into(), t)],
    )
    .unwrap();
    assert_eq!(
        program(&ce, &req).collectives(),
        cross_entropy_collectives(16).to_vec()
    );
}

#[test]
fn boundary_ids_cover_every_shard_edge() {
    let ids = boundary_ids(40, 64, 3);
    assert_eq!(ids.len(), 40);
    for e in [0.0, 7.0, 8.0, 15.0, 16.0, 31.0, 32.0, 63.0] {
        assert!(ids.contains(&e), "{e}");
    }
    assert!(ids.iter().all(|&i| (0.0..64.0).contains(&i)));
}

#[test]
fn suite_cases_are_valid_requests() {
    let cases = suite_cases(false);
    for kind in [
        LINEAR,
        COLUMN_PARALLEL_LINEAR,
        ROW_PARALLEL_LINEAR,
        VOCAB_PARALLEL_EMBEDDING,
        VOCAB_PARALLEL_CROSS_ENTROPY,
    ] {
        assert!(cases.iter().any(|c| c.op.kind() == kind), "{kind}");
    }
    for c in &cases {
        c.request().unwrap_or_else(|e| panic!("{}: {e}", c.name));
    }
    assert!(suite_cases(true).iter().any(|c| c.large));
}
