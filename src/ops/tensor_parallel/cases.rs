//! The tensor-parallel topic's cases for `kernelbook check`, and the Megatron fixture.

use super::*;

fn normal(rows: usize, cols: usize, scale: f32, seed: u64) -> Tensor {
    Input::Normal {
        rows,
        cols,
        scale,
        seed,
    }
    .tensor()
}

pub(super) fn vector(data: Vec<f32>) -> Tensor {
    Tensor {
        shape: vec![data.len()],
        data,
    }
}

/// Ids for n lookups into V rows: every shard boundary (r·V/8 - 1, r·V/8), 0 and V - 1, then
/// seeded ones.
pub fn boundary_ids(n: usize, v: usize, seed: u64) -> Vec<f32> {
    let mut ids: Vec<f32> = Vec::new();
    for r in 0..=8 {
        let edge = r * v / 8;
        for id in [edge.wrapping_sub(1), edge] {
            if id < v && !ids.contains(&(id as f32)) {
                ids.push(id as f32);
            }
        }
    }
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while ids.len() < n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ids.push((s % v as u64) as f32);
    }
    ids.truncate(n);
    ids
}

fn linear_case(
    name: String,
    op: TpOp,
    dtype: DType,
    dims: (usize, usize, usize),
    bias: bool,
    seed: u64,
) -> Case {
    let (n, inner, out) = dims;
    let mut c = Case::new(
        name,
        Op::new(op),
        dtype,
        Input::Normal {
            rows: n,
            cols: inner,
            scale: 1.0,
            seed,
        },
        Expect::Match,
    );
    c.extra.push((
        "w".into(),
        normal(out, inner, 1.0 / (inner as f32).sqrt(), seed + 1),
    ));
    if bias {
        let b = normal(1, out, 0.5, seed + 2);
        c.extra.push(("b".into(), vector(b.data)));
    }
    c
}

fn embedding_case(
    name: String,
    ranks: usize,
    dtype: DType,
    n: usize,
    v: usize,
    h: usize,
    seed: u64,
) -> Case {
    let ids = boundary_ids(n, v, seed);
    let mut c = Case::new(
        name,
        Op::new(TpOp::VocabParallelEmbedding { ranks }),
        dtype,
        Input::Rows(vec![ids]),
        Expect::Match,
    );
    c.shape = Some(vec![n]);
    c.extra.push(("table".into(), normal(v, h, 1.0, seed + 1)));
    c
}

fn ce_case(name: String, ranks: usize, dtype: DType, rows: usize, v: usize, seed: u64) -> Case {
    let mut c = Case::new(
        name,
        Op::new(TpOp::VocabParallelCrossEntropy { ranks }),
        dtype,
        Input::Normal {
            rows,
            cols: v,
            scale: 3.0,
            seed,
        },
        Expect::Match,
    );
    let targets = boundary_ids(rows, v, seed + 1);
    c.extra.push(("targets".into(), vector(targets)));
    c
}

/// Megatron-Core's test_vocab_parallel_cross_entropy setup (TP = 4): 16 rows, each rank's local
/// logits [0, 1, ..., 7] repeated 4 times (local vocab 32, V = 128), targets 0, 2, ..., 30 (all
/// on rank 0). Expected loss 10.2309 - (t mod 8): [10.2309, 8.2309, 6.2309, 4.2309] x 4.
pub fn megatron_ce_fixture() -> (Tensor, Tensor) {
    let rows = 16;
    let local: Vec<f32> = (0..32).map(|j| (j % 8) as f32).collect();
    let mut x = Vec::with_capacity(rows * 128);
    for _ in 0..rows {
        for _ in 0..4 {
            x.extend_from_slice(&local);
        }
    }
    let targets: Vec<f32> = (0..rows).map(|i| (2 * i) as f32).collect();
    (
        Tensor {
            shape: vec![rows, 128],
            data: x,
        },
        vector(targets),
    )
}

/// This topic's cases for `kernelbook check`: all five ops at every rank count (f32), f16 and
/// bf16 at k = 2, the shard boundaries of the embedding, Megatron's cross-entropy fixture. Small
/// enough for a software adapter. `large` (real GPUs) adds LLM-sized layers and the cross-entropy
/// over GPT-2's padded vocabulary (V = 50304).
pub fn suite_cases(large: bool) -> Vec<Case> {
    let mut out = Vec::new();
    let mut seed = 6000u64;
    let mut next = || {
        seed += 10;
        seed
    };
    for dtype in DType::ALL {
        let ks: &[usize] = if dtype == DType::F32 {
            &RANK_CHOICES
        } else {
            &[2]
        };
        out.push(linear_case(
            format!("linear x[33,64] w[48,64] b {dtype}"),
            TpOp::Linear,
            dtype,
            (33, 64, 48),
            true,
            next(),
        ));
        if dtype == DType::F32 {
            out.push(linear_case(
                "linear no bias x[5,300] w[17,300]".into(),
                TpOp::Linear,
                dtype,
                (5, 300, 17),
                false,
                next(),
            ));
        }
        for &k in ks {
            for gather in [true, false] {
                out.push(linear_case(
                    format!("column k={k} gather={gather} x[17,96] w[64,96]"),
                    TpOp::ColumnParallelLinear { ranks: k, gather },
                    dtype,
                    (17, 96, 64),
                    true,
                    next(),
                ));
            }
            out.push(linear_case(
                format!("row k={k} x[17,256] w[40,256]"),
                TpOp::RowParallelLinear { ranks: k },
                dtype,
                (17, 256, 40),
                true,
                next(),
            ));
            out.push(embedding_case(
                format!("embedding k={k} ids[40] table[64,12] (shard edges)"),
                k,
                dtype,
                40,
                64,
                12,
                next(),
            ));
            out.push(ce_case(
                format!("cross-entropy k={k} x[9,1024]"),
                k,
                dtype,
                9,
                1024,
                next(),
            ));
        }
    }
    // Megatron-Core's fixture: [10.2309, 8.2309, 6.2309, 4.2309] x 4 at TP = 4.
    let (x, targets) = megatron_ce_fixture();
    let mut fixture = Case::new(
        "cross-entropy Megatron fixture k=4 x[16,128]".into(),
        Op::new(TpOp::VocabParallelCrossEntropy { ranks: 4 }),
        DType::F32,
        Input::Rows(x.data.chunks(128).map(|r| r.to_vec()).collect()),
        Expect::Match,
    );
    fixture.extra.push(("targets".into(), targets));
    out.push(fixture);
    if large {
        let big = |mut c: Case| {
            c.large = true;
            c
        };
        out.push(big(linear_case(
            "linear x[1024,2048] w[2048,2048]".into(),
            TpOp::Linear,
            DType::F32,
            (1024, 2048, 2048),
            true,
            next(),
        )));
        out.push(big(linear_case(
            "column k=8 x[1024,2048] w[2048,2048]".into(),
            TpOp::ColumnParallelLinear {
                ranks: 8,
                gather: true,
            },
            DType::F32,
            (1024, 2048, 2048),
            true,
            next(),
        )));
        out.push(big(linear_case(
            "row k=8 x[1024,4096] w[1024,4096]".into(),
            TpOp::RowParallelLinear { ranks: 8 },
            DType::F32,
            (1024, 4096, 1024),
            true,
            next(),
        )));
        out.push(big(embedding_case(
            "embedding k=8 ids[8192] table[50304,256]".into(),
            8,
            DType::F32,
            8192,
            50304,
            256,
            next(),
        )));
        for k in [1, 8] {
            out.push(big(ce_case(
                format!("cross-entropy k={k} x[4096,50304]"),
                k,
                DType::F32,
                4096,
                50304,
                next(),
            )));
        }
    }
    out
}

