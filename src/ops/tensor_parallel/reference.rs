//! The f64 reference of the tensor-parallel ops: the unsplit math, with the split's own aux outputs.

use super::*;

/// Σ_j x[i, j] w[o, j] over j in `cols` (of `inner`), in f64, for every (i, o): [rows, out].
/// Rows are split over threads for large products.
fn matmul_ref(
    x: &[f32],
    rows: usize,
    inner: usize,
    w: &[f32],
    out: usize,
    cols: Range<usize>,
) -> Vec<f64> {
    let mut y = vec![0.0f64; rows * out];
    if out == 0 || rows == 0 {
        return y;
    }
    let work = |first: usize, chunk: &mut [f64]| {
        for (di, yrow) in chunk.chunks_mut(out).enumerate() {
            let i = first + di;
            let xr = &x[i * inner..(i + 1) * inner];
            for (o, yo) in yrow.iter_mut().enumerate() {
                let wr = &w[o * inner..(o + 1) * inner];
                let mut acc = 0.0f64;
                for j in cols.clone() {
                    acc += xr[j] as f64 * wr[j] as f64;
                }
                *yo = acc;
            }
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if rows * out * cols.len() < (1 << 22) || threads == 1 {
        work(0, &mut y);
    } else {
        let per = rows.div_ceil(threads);
        std::thread::scope(|s| {
            for (c, chunk) in y.chunks_mut(per * out).enumerate() {
                let work = &work;
                s.spawn(move || work(c * per, chunk));
            }
        });
    }
    y
}

fn ce_rows_ref(x: &[f32], rows: usize, v: usize, targets: &[f32], k: usize) -> CeRef {
    let mut r = CeRef {
        loss: vec![0.0; rows],
        max: vec![0.0; rows],
        predicted: vec![0.0; rows],
        sum_exp: vec![0.0; rows],
        local_max: vec![0.0; k * rows],
        local_sum_exp: vec![0.0; k * rows],
    };
    let ranges = shards(v, k);
    for i in 0..rows {
        let row = &x[i * v..(i + 1) * v];
        for (rk, range) in ranges.iter().enumerate() {
            r.local_max[rk * rows + i] = row[range.clone()]
                .iter()
                .fold(f64::NEG_INFINITY, |m, &a| m.max(a as f64));
        }
        let m = row.iter().fold(f64::NEG_INFINITY, |m, &a| m.max(a as f64));
        for (rk, range) in ranges.iter().enumerate() {
            r.local_sum_exp[rk * rows + i] = row[range.clone()]
                .iter()
                .map(|&a| (a as f64 - m).exp())
                .sum();
        }
        let s: f64 = row.iter().map(|&a| (a as f64 - m).exp()).sum();
        let t = targets[i] as usize;
        let p = row[t] as f64 - m;
        r.max[i] = m;
        r.predicted[i] = p;
        r.sum_exp[i] = s;
        r.loss[i] = s.ln() - p;
    }
    r
}

struct CeRef {
    loss: Vec<f64>,
    max: Vec<f64>,
    predicted: Vec<f64>,
    sum_exp: Vec<f64>,
    local_max: Vec<f64>,
    local_sum_exp: Vec<f64>,
}

fn aux(name: &str, shape: Vec<usize>, values: Vec<f64>) -> AuxReference {
    AuxReference {
        name: name.into(),
        shape,
        values,
    }
}

/// The f64 reference of the unsplit math, with the auxiliary outputs in the engines' order.
pub fn reference(op: &TpOp, req: &OpRequest) -> Reference {
    let k = op.ranks();
    let shape = op.output_shape(req);
    let mut out = Reference::default();
    match op {
        TpOp::Linear | TpOp::ColumnParallelLinear { .. } | TpOp::RowParallelLinear { .. } => {
            let (rows, inner, n_out) = linear_dims(req);
            let w = req.input("w").map_or(&[][..], |t| &t.data[..]);
            let mut y = matmul_ref(&req.x.data, rows, inner, w, n_out, 0..inner);
            if let Some(b) = req.input("b") {
                for row in y.chunks_mut(n_out.max(1)) {
                    for (v, &bo) in row.iter_mut().zip(&b.data) {
                        *v += bo as f64;
                    }
                }
            }
            if let TpOp::RowParallelLinear { .. } = op {
                let mut partials = Vec::with_capacity(k * rows * n_out);
                for range in shards(inner, k) {
                    partials.extend(matmul_ref(&req.x.data, rows, inner, w, n_out, range));
                }
                out.aux
                    .push(aux("partials", vec![k, rows, n_out], partials));
            }
            if op.unsplit().is_some() {
                out.aux.push(aux("unsplit", shape, y.clone()));
            }
            out.values = y;
        }
        TpOp::VocabParallelEmbedding { .. } => {
            let (n, v, h) = embedding_dims(req);
            let table = req.input("table").map_or(&[][..], |t| &t.data[..]);
            let mut y = Vec::with_capacity(n * h);
            let mut masked = vec![0.0f64; k * n * h];
            for (i, &id) in req.x.data.iter().enumerate() {
                let id = id as usize;
                let row = &table[id * h..(id + 1) * h];
                y.extend(row.iter().map(|&a| a as f64));
                let r = owner(id, v, k);
                for (c, &a) in row.iter().enumerate() {
                    masked[(r * n + i) * h + c] = a as f64;
                }
            }
            out.aux.push(aux("masked", vec![k, n, h], masked));
            out.aux.push(aux("unsplit", shape, y.clone()));
            out.values = y;
        }
        TpOp::VocabParallelCrossEntropy { .. } => {
            let (rows, v) = ce_dims(req);
            let targets = req.input("targets").map_or(&[][..], |t| &t.data[..]);
            let r = ce_rows_ref(&req.x.data, rows, v, targets, k);
            out.aux.push(aux("local_max", vec![k, rows], r.local_max));
            out.aux
                .push(aux("local_sum_exp", vec![k, rows], r.local_sum_exp));
            out.aux.push(aux("max", shape.clone(), r.max));
            out.aux.push(aux("predicted", shape.clone(), r.predicted));
            out.aux.push(aux("sum_exp", shape.clone(), r.sum_exp));
            out.aux.push(aux("unsplit", shape, r.loss.clone()));
            out.values = r.loss;
        }
    }
    out
}

/// Per element of a linear-family output: Σ_j |x_j w_j| + |b|, the scale of the f32 error bound
/// γ_n·(Σ|x_j w_j| + |b|) (Higham §3.1). Used by the tests' per-element check.
pub fn linear_error_scale(req: &OpRequest) -> Vec<f64> {
    let (rows, inner, out) = linear_dims(req);
    let w = req.input("w").map_or(&[][..], |t| &t.data[..]);
    let x_abs: Vec<f32> = req.x.data.iter().map(|v| v.abs()).collect();
    let w_abs: Vec<f32> = w.iter().map(|v| v.abs()).collect();
    let mut s = matmul_ref(&x_abs, rows, inner, &w_abs, out, 0..inner);
    if let Some(b) = req.input("b") {
        for row in s.chunks_mut(out.max(1)) {
            for (v, &bo) in row.iter_mut().zip(&b.data) {
                *v += (bo as f64).abs();
            }
        }
    }
    s
}

