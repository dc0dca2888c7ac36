//! The tensor-parallel lesson's figures, built from a cell's [`Comparison`]:
//! - `matrices`: x, w and y of a linear layer as heatmaps, shapes in the titles;
//! - `shards`: who owns what: the split matrix as a map of ranks, and the data each rank holds,
//!   one colour per rank;
//! - `stages`: scatter -> local compute -> collective -> result, from the engine's auxiliary
//!   outputs (per-rank partial sums, masked lookups, local maxima and sums), with the bytes each
//!   collective moves;
//! - `split_vs_unsplit`: each engine's k-rank result against the same engine's k = 1 result
//!   (the `unsplit` auxiliary output): how many values differ, and by how much;
//! - `bytes`: bytes per collective for this cell and at real sizes (GPT-2's padded vocabulary, a
//!   Llama-2-7B MLP), ring and naive;
//! - `seeding`: initialise on the CPU then split, against per-rank seeds seed + 2718 + r: the
//!   weights and the model's output for k = 1, 2, 4, 8.
//!
//! Everything here is computed from the request, the reference and the engines' outputs (the
//! seeding view draws its own weights with `ops::tensor_parallel`'s generators); nothing runs an
//! engine.

use super::{Figure, ViewDef};
use crate::chart::{Chart, LineSeries, Series, SeriesRole, format_value};
use crate::compare::Comparison;
use crate::engine::{EngineKind, OpOutput};
use crate::ops::tensor_parallel::{
    self as tp, COLLECTIVE_ELEM_BYTES, Collective, RANK_CHOICES, ReduceOp, SplitAxis, TpOp,
    format_bytes,
};
use crate::ops::OpKind;

const SPLIT_OPS: &[OpKind] = &[
    crate::ops::tensor_parallel::COLUMN_PARALLEL_LINEAR,
    crate::ops::tensor_parallel::ROW_PARALLEL_LINEAR,
    crate::ops::tensor_parallel::VOCAB_PARALLEL_EMBEDDING,
    crate::ops::tensor_parallel::VOCAB_PARALLEL_CROSS_ENTROPY,
];

pub(super) const VIEWS: &[ViewDef] = &[
    ViewDef {
        name: "matrices",
        ops: &[
            crate::ops::tensor_parallel::LINEAR,
            crate::ops::tensor_parallel::COLUMN_PARALLEL_LINEAR,
            crate::ops::tensor_parallel::ROW_PARALLEL_LINEAR,
        ],
        help: "x [n, in], w [out, in] and y = x wᵀ + b [n, out] as heatmaps, with their shapes",
        build: matrices,
    },
    ViewDef {
        name: "shards",
        ops: SPLIT_OPS,
        help: "who owns what: the split matrix coloured by rank, and the values each rank holds",
        build: shards,
    },
    ViewDef {
        name: "stages",
        ops: SPLIT_OPS,
        help: "scatter -> local compute -> collective -> result, per rank, with the bytes each collective moves",
        build: stages,
    },
    ViewDef {
        name: "split_vs_unsplit",
        ops: SPLIT_OPS,
        help: "each engine's k-rank result minus its own k = 1 result: how many values differ and by how much",
        build: split_vs_unsplit,
    },
    ViewDef {
        name: "bytes",
        ops: SPLIT_OPS,
        help: "bytes each collective sends, ring and naive, for this cell and at real sizes",
        build: bytes,
    },
    ViewDef {
        name: "seeding",
        ops: &[crate::ops::tensor_parallel::COLUMN_PARALLEL_LINEAR, crate::ops::tensor_parallel::ROW_PARALLEL_LINEAR],
        help: "init on the CPU then split vs per-rank seeds (seed + 2718 + r): the weight and the model's output for k = 1, 2, 4, 8",
        build: seeding,
    },
];

/// The seed the seeding view draws weights with.
pub const SEEDING_SEED: u64 = 1234;

/// Real sizes for the byte counts: tokens per batch, GPT-2's vocabulary padded to a multiple of
/// 128 (Megatron's `--make-vocab-size-divisible-by`), Llama-2-7B's hidden and MLP sizes
/// (`hidden_size` 4096, `intermediate_size` 11008), and 8 ranks.
pub const REAL_TOKENS: usize = 8192;
pub const REAL_VOCAB: usize = 50304;
pub const REAL_HIDDEN: usize = 4096;
pub const REAL_FFN: usize = 11008;
pub const REAL_RANKS: usize = 8;

/// Charts are drawn from at most this many rows or columns of a matrix.
const MAX_DRAWN: usize = 64;

fn tp_op(result: &Comparison) -> Result<&TpOp, String> {
    let op = &result.request.op;
    op.get::<TpOp>().ok_or_else(|| format!(
            "this view draws the tensor-parallel ops, not {}",
            op.kind()
        ))
}

/// The engines that produced a result, in the UI's order.
fn outputs(result: &Comparison) -> Vec<(EngineKind, &OpOutput)> {
    result
        .runs
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|(out, _)| (r.kind, out)))
        .collect()
}

fn first_output(result: &Comparison) -> Result<(EngineKind, &OpOutput), String> {
    outputs(result)
        .into_iter()
        .next()
        .ok_or_else(|| "no engine produced a result to draw".to_string())
}

fn aux<'a>(out: &'a OpOutput, name: &str) -> Result<&'a [f32], String> {
    out.aux(name)
        .map(|a| a.values.as_slice())
        .ok_or_else(|| format!("the engine returned no '{name}' output"))
}

fn rank_role(r: usize) -> SeriesRole {
    SeriesRole::Other(r)
}

/// Indices 0..n, thinned to at most MAX_DRAWN evenly spaced ones.
fn drawn(n: usize) -> Vec<usize> {
    if n <= MAX_DRAWN {
        (0..n).collect()
    } else {
        (0..MAX_DRAWN).map(|i| i * n / MAX_DRAWN).collect()
    }
}

fn thinned_note(n: usize, what: &str) -> Option<String> {
    (n > MAX_DRAWN).then(|| format!("({MAX_DRAWN} of the {n} {what} drawn, evenly spaced)"))
}

/// A line per rank through (x, y) points, split at the rank boundaries of an axis of length `len`.
fn per_rank_lines(
    k: usize,
    len: usize,
    points: impl Fn(usize) -> Option<(f64, f64)>,
) -> Vec<LineSeries> {
    let keep = drawn(len);
    tp::shards(len, k)
        .into_iter()
        .enumerate()
        .map(|(r, range)| {
            let pts: Vec<(f64, f64)> = range
                .filter(|i| keep.binary_search(i).is_ok())
                .filter_map(&points)
                .collect();
            LineSeries::line(format!("rank {r}"), pts, rank_role(r))
        })
        .collect()
}

/// A matrix drawn as one dot per element (at most MAX_DRAWN x MAX_DRAWN of them), coloured by the
/// rank that holds it: `x_len` elements along x, `y_len` along y, `owner(x, y)` the rank.
fn owner_dots(
    title: &str,
    (x_len, y_len): (usize, usize),
    k: usize,
    owner: impl Fn(usize, usize) -> usize,
    (x_label, y_label): (&str, &str),
) -> Chart {
    let (xs, ys) = (drawn(x_len), drawn(y_len));
    let mut points: Vec<Vec<(f64, f64)>> = vec![Vec::new(); k];
    for &x in &xs {
        for &y in &ys {
            let r = owner(x, y).min(k.saturating_sub(1));
            points[r].push((x as f64, y as f64));
        }
    }
    let series = points
        .into_iter()
        .enumerate()
        .map(|(r, pts)| LineSeries::scatter(format!("rank {r}"), pts, rank_role(r)))
        .collect();
    Chart::lines(title, series).with_labels(x_label, y_label)
}

fn traffic_line(label: &str, c: &Collective, k: usize) -> String {
    let t = c.traffic(k, COLLECTIVE_ELEM_BYTES);
    format!(
        "{label}: {} on {k} ranks: ring {} sent per rank ({} in all); naive {} per rank ({} in all)",
        c.describe(),
        format_bytes(t.ring_per_rank),
        format_bytes(t.ring_total),
        format_bytes(t.naive_per_rank),
        format_bytes(t.naive_total),
    )
}

/// (rows, in, out) of a linear request.
fn linear_dims(result: &Comparison) -> (usize, usize, usize) {
    let req = &result.request;
    let out = req
        .input("w")
        .map_or(0, |w| w.shape.first().copied().unwrap_or(0));
    (req.x.rows(), req.x.cols(), out)
}

// ------------------------------------------------------------------------------------------------
// matrices
// ------------------------------------------------------------------------------------------------

/// A heatmap of (at most MAX_DRAWN x MAX_DRAWN of) a row-major [rows, cols] matrix.
fn matrix_heatmap(
    title: String,
    data: &[f64],
    rows: usize,
    cols: usize,
    labels: (&str, &str),
    value: &str,
) -> Chart {
    let (rs, cs) = (drawn(rows), drawn(cols));
    let mut values = Vec::with_capacity(rs.len() * cs.len());
    for &r in &rs {
        for &c in &cs {
            values.push(data.get(r * cols + c).copied().unwrap_or(f64::NAN));
        }
    }
    Chart::heatmap(title, rs.len(), cs.len(), values, value).with_labels(labels.0, labels.1)
}

fn matrices(result: &Comparison) -> Result<Figure, String> {
    tp_op(result)?;
    let req = &result.request;
    let (rows, inner, out) = linear_dims(result);
    let w = req.input("w").ok_or("the request has no w")?;
    let (kind, o) = first_output(result)?;
    let widen = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
    let mut fig = Figure::default();
    fig.charts.push(matrix_heatmap(
        format!("x [{rows}, {inner}]"),
        &widen(&req.x.data),
        rows,
        inner,
        ("input j", "row i"),
        "x",
    ));
    fig.charts.push(matrix_heatmap(
        format!("w [{out}, {inner}]"),
        &widen(&w.data),
        out,
        inner,
        ("input j", "output o"),
        "w",
    ));
    fig.charts.push(matrix_heatmap(
        format!("y = x wᵀ + b [{rows}, {out}] ({})", kind.display_name()),
        &widen(&o.values),
        rows,
        out,
        ("output o", "row i"),
        "y",
    ));
    fig.readouts.push(format!(
        "y[i, o] = Σ_j x[i, j]·w[o, j] + b[o]: {rows}·{out} dot products of length {inner}, {} multiply-adds.",
        rows * out * inner
    ));
    fig.readouts
        .extend(thinned_note(rows.max(inner).max(out), "rows/columns"));
    Ok(fig)
}

// ------------------------------------------------------------------------------------------------
// shards
// ------------------------------------------------------------------------------------------------

fn shards(result: &Comparison) -> Result<Figure, String> {
    let op = tp_op(result)?;
    let k = op.ranks();
    let req = &result.request;
    let mut fig = Figure::default();
    match op {
        TpOp::Linear => return Err("linear runs on one rank: nothing is split".into()),
        TpOp::ColumnParallelLinear { .. } => {
            let (rows, _, out) = linear_dims(result);
            let inner = req.x.cols();
            fig.charts.push(owner_dots(
                "w: one dot per weight, coloured by its rank (rows of w)",
                (out, inner),
                k,
                |o, _| tp::owner(o, out, k),
                ("output o (row of w)", "input j"),
            ));
            if let Some(b) = req.input("b") {
                let lines =
                    per_rank_lines(k, out, |o| b.data.get(o).map(|&v| (o as f64, v as f64)));
                fig.charts.push(
                    Chart::lines("b: each rank holds the entries of its outputs", lines)
                        .with_labels("output o", "b[o]"),
                );
            }
            fig.readouts.push(format!(
                "{k} rank(s): rank r holds w rows and b entries [r·{}, (r+1)·{}) and a copy of x [{rows}, {inner}]; it computes output columns [r·{}, (r+1)·{}).",
                out / k,
                out / k,
                out / k,
                out / k
            ));
            fig.readouts
                .extend(thinned_note(out.max(inner), "rows/columns"));
        }
        TpOp::RowParallelLinear { .. } => {
            let (_, inner, out) = linear_dims(result);
            fig.charts.push(owner_dots(
                "w: one dot per weight, coloured by its rank (columns of w)",
                (out, inner),
                k,
                |_, j| tp::owner(j, inner, k),
                ("output o (row of w)", "input j (column of w)"),
            ));
            let lines = per_rank_lines(k, inner, |j| {
                req.x.data.get(j).map(|&v| (j as f64, v as f64))
            });
            fig.charts.push(
                Chart::lines("x[0, :]: each rank holds its columns of x too", lines)
                    .with_labels("input column j", "x[0, j]"),
            );
            fig.readouts.push(format!(
                "{k} rank(s): rank r holds columns [r·{0}, (r+1)·{0}) of w and of x: the contraction over j is split, so each rank's product is a partial sum over {0} of the {inner} terms.",
                inner / k
            ));
            fig.readouts
                .extend(thinned_note(out.max(inner), "rows/columns"));
        }
        TpOp::VocabParallelEmbedding { .. } => {
            let (v, h) = req.input("table").map_or((0, 0), |t| (t.rows(), t.cols()));
            fig.charts.push(owner_dots(
                "table: one dot per value, coloured by its rank (rows = ids)",
                (v, h),
                k,
                |id, _| tp::owner(id, v, k),
                ("id (row of the table)", "feature"),
            ));
            let ids = &req.x.data;
            let series: Vec<LineSeries> = (0..k)
                .map(|r| {
                    let pts = ids
                        .iter()
                        .enumerate()
                        .filter(|(_, id)| tp::owner(**id as usize, v, k) == r)
                        .map(|(i, &id)| (i as f64, id as f64))
                        .collect();
                    LineSeries::scatter(format!("rank {r}"), pts, rank_role(r))
                })
                .collect();
            fig.charts.push(
                Chart::lines(
                    "ids by position, coloured by the rank that owns them",
                    series,
                )
                .with_labels("position i", "id"),
            );
            let bounds: Vec<String> = tp::shards(v, k)
                .iter()
                .map(|s| format!("[{}, {})", s.start, s.end))
                .collect();
            fig.readouts.push(format!(
                "V = {v} split over {k} rank(s): {}.{}",
                bounds.join(", "),
                if k > 1 {
                    format!(
                        " An id on a boundary ({}) belongs to the rank that starts there.",
                        v / k
                    )
                } else {
                    String::new()
                }
            ));
        }
        TpOp::VocabParallelCrossEntropy { .. } => {
            let (rows, v) = (req.x.rows(), req.x.cols());
            fig.charts.push(owner_dots(
                "logits: one dot per value, coloured by its rank (columns = classes)",
                (v, rows),
                k,
                |c, _| tp::owner(c, v, k),
                ("class c (column)", "row i"),
            ));
            let mut lines =
                per_rank_lines(k, v, |c| req.x.data.get(c).map(|&x| (c as f64, x as f64)));
            if let Some(t) = req.input("targets").and_then(|t| t.data.first()) {
                let t = *t as usize;
                if let Some(&x) = req.x.data.get(t) {
                    lines.push(LineSeries::scatter(
                        format!("target {t} (rank {})", tp::owner(t, v, k)),
                        vec![(t as f64, x as f64)],
                        SeriesRole::Reference,
                    ));
                }
            }
            fig.charts.push(
                Chart::lines("row 0 of the logits, by owner", lines)
                    .with_labels("class c", "x[0, c]"),
            );
            fig.readouts.push(format!(
                "V = {v} classes over {k} rank(s), {} each: no rank ever holds a whole row of logits.",
                v / k
            ));
            fig.readouts.extend(thinned_note(v, "columns"));
        }
    }
    Ok(fig)
}

// ------------------------------------------------------------------------------------------------
// stages
// ------------------------------------------------------------------------------------------------

fn stages(result: &Comparison) -> Result<Figure, String> {
    let op = tp_op(result)?;
    let k = op.ranks();
    let req = &result.request;
    let (kind, out) = first_output(result)?;
    let engine = kind.display_name();
    let program = tp::program(op, req);
    let collectives = program.collectives();
    let mut fig = Figure::default();
    let reference_line = |name: &str, len: usize, values: &[f64]| {
        LineSeries::line(
            name.to_string(),
            (0..len)
                .filter_map(|i| values.get(i).map(|&v| (i as f64, v)))
                .collect(),
            SeriesRole::Reference,
        )
    };
    let engine_line = |name: String, len: usize, values: &[f32]| {
        LineSeries::line(
            name,
            (0..len)
                .filter_map(|i| values.get(i).map(|&v| (i as f64, v as f64)))
                .collect(),
            SeriesRole::Engine(kind),
        )
    };
    match op {
        TpOp::Linear => return Err("linear runs on one rank: there are no stages".into()),
        TpOp::ColumnParallelLinear { gather, .. } => {
            let (rows, inner, n_out) = linear_dims(result);
            let chunk = n_out / k;
            let lines = per_rank_lines(k, n_out, |c| {
                out.values.get(c).map(|&v| (c as f64, v as f64))
            });
            fig.charts.push(
                Chart::lines("2 · local compute: yᵣ = x·wᵣᵀ + bᵣ (row 0)", lines)
                    .with_labels("output column o", "yᵣ[0, o]"),
            );
            let title = if *gather && k > 1 {
                "3 · all-gather → y (row 0)"
            } else {
                "3 · no collective: the shards side by side (row 0)"
            };
            fig.charts.push(
                Chart::lines(
                    title,
                    vec![
                        reference_line("f64 reference", n_out, &result.reference),
                        engine_line(engine.to_string(), n_out, &out.values),
                    ],
                )
                .with_labels("output column o", "y[0, o]"),
            );
            fig.readouts.push(format!(
                "1 · scatter: w's rows and b are split when the layer is built, x [{rows}, {inner}] is replicated (copy_to: identity forward). No bytes move."
            ));
            fig.readouts.push(format!(
                "2 · local compute on {k} rank(s) (values from {engine}): x [{rows}, {inner}] · wᵣᵀ [{inner}, {chunk}] → [{rows}, {chunk}] each."
            ));
            match collectives.first() {
                Some(c) => fig.readouts.push(traffic_line("3 · all-gather", c, k)),
                None if k > 1 => fig.readouts.push(
                    "3 · gather = false: no collective, 0 bytes. Each rank keeps its columns, exactly what a row-parallel layer wants as input."
                        .into(),
                ),
                None => fig.readouts.push("3 · one rank: nothing to gather.".into()),
            }
        }
        TpOp::RowParallelLinear { .. } => {
            let (rows, inner, n_out) = linear_dims(result);
            let partials = aux(out, "partials")?;
            let per = rows * n_out;
            let lines: Vec<LineSeries> = (0..k)
                .map(|r| {
                    LineSeries::line(
                        format!("rank {r}"),
                        drawn(n_out)
                            .into_iter()
                            .filter_map(|o| {
                                partials.get(r * per + o).map(|&v| (o as f64, v as f64))
                            })
                            .collect(),
                        rank_role(r),
                    )
                })
                .collect();
            fig.charts.push(
                Chart::lines("2 · local compute: partial sums Pᵣ = xᵣ·wᵣᵀ (row 0)", lines)
                    .with_labels("output column o", "Pᵣ[0, o]"),
            );
            fig.charts.push(
                Chart::lines(
                    "3 · all-reduce SUM, then + b once (row 0)",
                    vec![
                        reference_line("f64 reference", n_out, &result.reference),
                        engine_line(engine.to_string(), n_out, &out.values),
                    ],
                )
                .with_labels("output column o", "y[0, o]"),
            );
            fig.readouts.push(format!(
                "1 · scatter: rank r keeps columns [r·{0}, (r+1)·{0}) of x and of w (a slice: no bytes move).",
                inner / k
            ));
            fig.readouts.push(format!(
                "2 · local compute (values from {engine}): each rank sums {} of the {inner} products of every output; no bias yet.",
                inner / k
            ));
            match collectives.first() {
                Some(c) => fig.readouts.push(traffic_line("3 · all-reduce", c, k)),
                None => fig
                    .readouts
                    .push("3 · one rank: its partial sum is the result.".into()),
            }
            fig.readouts.push(
                "4 · the bias is added once, after the all-reduce: added on every rank before it, it would count k times."
                    .into(),
            );
        }
        TpOp::VocabParallelEmbedding { .. } => {
            let n = req.x.len();
            let h = req.input("table").map_or(0, |t| t.cols());
            let masked = aux(out, "masked")?;
            let series: Vec<LineSeries> = (0..k)
                .map(|r| {
                    LineSeries::scatter(
                        format!("rank {r}"),
                        drawn(n)
                            .into_iter()
                            .filter_map(|i| {
                                masked.get((r * n + i) * h).map(|&v| (i as f64, v as f64))
                            })
                            .collect(),
                        rank_role(r),
                    )
                })
                .collect();
            fig.charts.push(
                Chart::lines(
                    "2 · masked lookups: feature 0 of each rank's row (0 where masked)",
                    series,
                )
                .with_labels("position i", "row[i, 0]"),
            );
            let feature0 = |values: &[f32]| -> Vec<(f64, f64)> {
                drawn(n)
                    .into_iter()
                    .filter_map(|i| values.get(i * h).map(|&v| (i as f64, v as f64)))
                    .collect()
            };
            fig.charts.push(
                Chart::lines(
                    "3 · all-reduce SUM → y (feature 0)",
                    vec![
                        LineSeries::scatter(
                            "f64 reference",
                            drawn(n)
                                .into_iter()
                                .filter_map(|i| result.reference.get(i * h).map(|&v| (i as f64, v)))
                                .collect(),
                            SeriesRole::Reference,
                        ),
                        LineSeries::scatter(
                            engine,
                            feature0(&out.values),
                            SeriesRole::Engine(kind),
                        ),
                    ],
                )
                .with_labels("position i", "y[i, 0]"),
            );
            fig.readouts.push(
                "1 · scatter: rank r holds table rows [r·V/k, (r+1)·V/k); the ids are replicated."
                    .into(),
            );
            fig.readouts.push(format!(
                "2 · local lookup (values from {engine}): each rank copies the rows of the ids it owns and writes -0.0 for the others (the exact identity of addition)."
            ));
            match collectives.first() {
                Some(c) => fig.readouts.push(traffic_line("3 · all-reduce", c, k)),
                None => fig
                    .readouts
                    .push("3 · one rank: the lookup is the result.".into()),
            }
        }
        TpOp::VocabParallelCrossEntropy { .. } => {
            let rows = req.x.rows();
            let local_max = aux(out, "local_max")?;
            let local_sum = aux(out, "local_sum_exp")?;
            let global_max = aux(out, "max")?;
            let per_rank = |values: &[f32], mark: bool| -> Vec<LineSeries> {
                (0..k)
                    .map(|r| {
                        let pts = drawn(rows)
                            .into_iter()
                            .filter_map(|i| values.get(r * rows + i).map(|&v| (i as f64, v as f64)))
                            .collect();
                        if mark {
                            LineSeries::scatter(format!("rank {r}"), pts, rank_role(r))
                        } else {
                            LineSeries::line(format!("rank {r}"), pts, rank_role(r))
                        }
                    })
                    .collect()
            };
            let mut max_lines = per_rank(local_max, true);
            max_lines.push(LineSeries::line(
                "all-reduce MAX",
                drawn(rows)
                    .into_iter()
                    .filter_map(|i| global_max.get(i).map(|&v| (i as f64, v as f64)))
                    .collect(),
                SeriesRole::Engine(kind),
            ));
            fig.charts.push(
                Chart::lines("1 · local max per rank → all-reduce MAX", max_lines)
                    .with_labels("row i", "max"),
            );
            fig.charts.push(
                Chart::lines(
                    "3 · local Σ e^(x - max) per rank (summed by all-reduce)",
                    per_rank(local_sum, true),
                )
                .with_labels("row i", "sum-exp"),
            );
            fig.charts.push(
                Chart::lines(
                    "4 · loss = ln(sum-exp) - predicted",
                    vec![
                        reference_line("f64 reference", rows, &result.reference),
                        engine_line(engine.to_string(), rows, &out.values),
                    ],
                )
                .with_labels("row i", "loss"),
            );
            let labels = [
                "1 · the row max",
                "2 · the predicted logit (only the target's owner holds it; the others add 0)",
                "3 · the sum-exp",
            ];
            if collectives.is_empty() {
                fig.readouts
                    .push("One rank: no collective; the three values are local.".into());
            }
            for (c, label) in collectives.iter().zip(labels) {
                fig.readouts.push(traffic_line(label, c, k));
            }
            fig.readouts.push(format!("Values from {engine}."));
        }
    }
    Ok(fig)
}

// ------------------------------------------------------------------------------------------------
// split_vs_unsplit
// ------------------------------------------------------------------------------------------------

/// How a split result differs from the same engine's unsplit one.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitDiff {
    pub differing: usize,
    pub total: usize,
    pub max_abs: f64,
    /// max |Δ| / max |y|: the difference relative to the output's scale.
    pub normwise: f64,
    /// max |Δ| / |y| over the elements with |y| >= 1e-3 · max |y|.
    pub max_rel: f64,
}

/// Compare a split result with an unsplit one, bit for bit and in size.
pub fn split_diff(split: &[f32], unsplit: &[f32]) -> SplitDiff {
    let scale = unsplit
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    let mut d = SplitDiff {
        differing: 0,
        total: split.len().min(unsplit.len()),
        max_abs: 0.0,
        normwise: 0.0,
        max_rel: 0.0,
    };
    for (&a, &b) in split.iter().zip(unsplit) {
        if a.to_bits() != b.to_bits() {
            d.differing += 1;
        }
        if a.is_finite() && b.is_finite() {
            let delta = (a as f64 - b as f64).abs();
            d.max_abs = d.max_abs.max(delta);
            if (b as f64).abs() >= 1e-3 * scale && b != 0.0 {
                d.max_rel = d.max_rel.max(delta / (b as f64).abs());
            }
        }
    }
    if scale > 0.0 {
        d.normwise = d.max_abs / scale;
    }
    d
}

fn split_vs_unsplit(result: &Comparison) -> Result<Figure, String> {
    let op = tp_op(result)?;
    let k = op.ranks();
    let runs = outputs(result);
    if runs.is_empty() {
        return Err("no engine produced a result to compare".into());
    }
    let mut fig = Figure::default();
    let mut series = Vec::new();
    for (kind, out) in &runs {
        let unsplit = aux(out, "unsplit")?;
        let d = split_diff(&out.values, unsplit);
        let pts: Vec<(f64, f64)> = out
            .values
            .iter()
            .zip(unsplit)
            .enumerate()
            .take(4096)
            .map(|(i, (&a, &b))| (i as f64, a as f64 - b as f64))
            .collect();
        series.push(LineSeries::scatter(
            kind.display_name(),
            pts,
            SeriesRole::Engine(*kind),
        ));
        let name = kind.display_name();
        fig.readouts.push(if k == 1 {
            format!("{name}: k = 1 is the unsplit computation itself.")
        } else if d.differing == 0 {
            format!(
                "{name}: bitwise equal to its k = 1 result in all {} values.",
                d.total
            )
        } else {
            format!(
                "{name}: {} of {} values differ from its k = 1 result; max |Δ| {}, max |Δ|/max|y| {}, max |Δ|/|y| {} (over |y| ≥ 10⁻³·max|y|).",
                d.differing,
                d.total,
                format_value(d.max_abs),
                format_value(d.normwise),
                format_value(d.max_rel)
            )
        });
    }
    fig.charts.push(
        Chart::lines(format!("y(k = {k}) − y(k = 1), same engine"), series)
            .with_labels("output element", "difference"),
    );
    fig.readouts.push(match op {
        TpOp::ColumnParallelLinear { .. } => "Column split: every output is the same dot product, summed in the same order, on whichever rank computes it, so it can be bitwise equal.".into(),
        TpOp::RowParallelLinear { .. } => "Row split: each output's sum over j is cut into k pieces and the pieces are added by the all-reduce: another order of additions, another rounding.".into(),
        TpOp::VocabParallelEmbedding { .. } => "Embedding: copies and additions of -0.0 are exact: bitwise equal for every k.".into(),
        TpOp::VocabParallelCrossEntropy { .. } => "Cross-entropy: the max is exact in any order; the sum of e^(x - max) is cut into k pieces: the loss moves in its last bits.".into(),
        TpOp::Linear => String::new(),
    });
    Ok(fig)
}

// ------------------------------------------------------------------------------------------------
// bytes
// ------------------------------------------------------------------------------------------------

fn log10_bytes(b: u64) -> f64 {
    if b == 0 { 0.0 } else { (b as f64).log10() }
}

fn bytes(result: &Comparison) -> Result<Figure, String> {
    let op = tp_op(result)?;
    let k = op.ranks();
    let req = &result.request;
    let program = tp::program(op, req);
    let mut fig = Figure::default();
    let here: u64 = program
        .collectives()
        .iter()
        .map(|c| c.traffic(k, COLLECTIVE_ELEM_BYTES).ring_per_rank)
        .sum();
    fig.readouts.push(format!(
        "This cell on {k} rank(s): {} collective(s), {} sent per rank by a ring (f32 values, 4 bytes each).",
        program.collectives().len(),
        format_bytes(here)
    ));
    let (n, kk) = (REAL_TOKENS, REAL_RANKS);
    let per_rank = |cs: &[Collective], naive: bool| -> u64 {
        cs.iter()
            .map(|c| {
                let t = c.traffic(kk, COLLECTIVE_ELEM_BYTES);
                if naive {
                    t.naive_per_rank
                } else {
                    t.ring_per_rank
                }
            })
            .sum()
    };
    // (chart label, bytes per rank) and the readouts, at real sizes.
    let items: Vec<(String, u64)> = match op {
        TpOp::VocabParallelCrossEntropy { .. } => {
            let ours = tp::cross_entropy_collectives(n);
            let gather = [tp::gather_logits_collective(n, REAL_VOCAB, kk)];
            let (ring, naive, g) = (
                per_rank(&ours, false),
                per_rank(&ours, true),
                per_rank(&gather, false),
            );
            fig.readouts.push(format!(
                "Vocab-parallel cross-entropy, 3 all-reduces of [{n}]: ring {} per rank, naive {}.",
                format_bytes(ring),
                format_bytes(naive)
            ));
            fig.readouts.push(format!(
                "Gathering the [{n}, {REAL_VOCAB}] logits instead: {} per rank, {:.0}× as much.",
                format_bytes(g),
                g as f64 / ring.max(1) as f64
            ));
            vec![
                ("3 all-reduces (ring)".into(), ring),
                ("3 all-reduces (naive)".into(), naive),
                ("gather logits".into(), g),
            ]
        }
        TpOp::VocabParallelEmbedding { .. } => {
            let ours = [Collective::AllReduce {
                op: ReduceOp::Sum,
                len: n * REAL_HIDDEN,
            }];
            let (ring, naive) = (per_rank(&ours, false), per_rank(&ours, true));
            let saved = (kk as u64 - 1) * (REAL_VOCAB * REAL_HIDDEN) as u64 * COLLECTIVE_ELEM_BYTES
                / kk as u64;
            fig.readouts.push(format!(
                "Vocab-parallel embedding, 1 all-reduce of [{n}, {REAL_HIDDEN}] per step: ring {} per rank, naive {}.",
                format_bytes(ring),
                format_bytes(naive)
            ));
            fig.readouts.push(format!(
                "What it buys: each rank stores 1/{kk} of the [{REAL_VOCAB}, {REAL_HIDDEN}] table instead of all of it, {} less per rank.",
                format_bytes(saved)
            ));
            vec![
                ("all-reduce (ring)".into(), ring),
                ("all-reduce (naive)".into(), naive),
                ("table not stored".into(), saved),
            ]
        }
        TpOp::ColumnParallelLinear { .. } | TpOp::RowParallelLinear { .. } | TpOp::Linear => {
            let ours = [Collective::AllReduce {
                op: ReduceOp::Sum,
                len: n * REAL_HIDDEN,
            }];
            let columns = [
                Collective::AllGather {
                    rows: n,
                    chunk: REAL_FFN / kk,
                },
                Collective::AllGather {
                    rows: n,
                    chunk: REAL_HIDDEN / kk,
                },
            ];
            let (ring, naive, g) = (
                per_rank(&ours, false),
                per_rank(&ours, true),
                per_rank(&columns, false),
            );
            fig.readouts.push(format!(
                "An MLP as Megatron splits it, column ({REAL_HIDDEN} → {REAL_FFN}, no gather) then row ({REAL_FFN} → {REAL_HIDDEN}): 1 all-reduce of [{n}, {REAL_HIDDEN}], ring {} per rank, naive {}.",
                format_bytes(ring),
                format_bytes(naive)
            ));
            fig.readouts.push(format!(
                "Both layers column-parallel instead: all-gather [{n}, {REAL_FFN}] between them and [{n}, {REAL_HIDDEN}] after, {} per rank ({:.1}× as much).",
                format_bytes(g),
                g as f64 / ring.max(1) as f64
            ));
            vec![
                ("1 all-reduce (ring)".into(), ring),
                ("1 all-reduce (naive)".into(), naive),
                ("2 all-gathers".into(), g),
            ]
        }
    };
    fig.charts.push(
        Chart::bars(
            format!("bytes per rank, log10 (k = {kk}, n = {n} tokens)"),
            items.iter().map(|(label, _)| label.clone()).collect(),
            vec![Series {
                name: "bytes per rank".into(),
                values: items.iter().map(|(_, b)| log10_bytes(*b)).collect(),
                role: rank_role(0),
            }],
        )
        .with_labels("", "log10 bytes"),
    );
    fig.readouts.push(format!(
        "Ring all-reduce: each rank sends 2(k−1)/k of its buffer; naive: its whole buffer to each of the k−1 others. Sizes: V = {REAL_VOCAB} (GPT-2's 50257 padded to a multiple of 128), h = {REAL_HIDDEN} and MLP width {REAL_FFN} (Llama-2-7B), f32."
    ));
    Ok(fig)
}

// ------------------------------------------------------------------------------------------------
// seeding
// ------------------------------------------------------------------------------------------------

fn seeding(result: &Comparison) -> Result<Figure, String> {
    let op = tp_op(result)?;
    let k = op.ranks();
    let req = &result.request;
    let (rows, inner, out) = linear_dims(result);
    let axis = match op {
        TpOp::RowParallelLinear { .. } => SplitAxis::Columns,
        _ => SplitAxis::Rows,
    };
    let split_len = match axis {
        SplitAxis::Rows => out,
        SplitAxis::Columns => inner,
    };
    let seed = SEEDING_SEED;
    let ks: Vec<usize> = RANK_CHOICES
        .into_iter()
        .filter(|&kk| split_len.is_multiple_of(kk))
        .collect();
    let cpu = |kk| {
        tp::assemble_shards(
            &tp::init_cpu_then_split(seed, out, inner, kk, axis),
            out,
            inner,
            axis,
        )
    };
    let per_rank = |kk| {
        tp::assemble_shards(
            &tp::init_per_rank(seed, out, inner, kk, axis),
            out,
            inner,
            axis,
        )
    };
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()))
    };
    let (cpu1, per1) = (cpu(1), per_rank(1));
    let mut cpu_d = Vec::new();
    let mut per_d = Vec::new();
    for &kk in &ks {
        cpu_d.push(max_diff(&cpu(kk), &cpu1));
        per_d.push(max_diff(&per_rank(kk), &per1));
    }
    let mut fig = Figure::default();
    fig.charts.push(
        Chart::bars(
            "max |W(k) − W(k = 1)|",
            ks.iter().map(|kk| format!("k = {kk}")).collect(),
            vec![
                Series {
                    name: "init on CPU, then split".into(),
                    values: cpu_d.clone(),
                    role: rank_role(0),
                },
                Series {
                    name: "per-rank seed + 2718 + r".into(),
                    values: per_d.clone(),
                    role: rank_role(1),
                },
            ],
        )
        .with_labels("tensor-parallel size", "largest weight difference"),
    );
    // The model's output on the cell's first row of x, minus the k = 1 model's output.
    if req.x.data.len() < inner || inner == 0 {
        return Err("x has no full row to run the model on".into());
    }
    let x0 = &req.x.data[..inner];
    let y0 = |w: &[f32]| -> Vec<f64> {
        (0..out)
            .map(|o| {
                (0..inner)
                    .map(|j| x0[j] as f64 * w[o * inner + j] as f64)
                    .sum()
            })
            .collect()
    };
    let minus = |a: Vec<f64>, b: &[f64]| -> Vec<(f64, f64)> {
        a.iter()
            .zip(b)
            .enumerate()
            .map(|(o, (p, q))| (o as f64, p - q))
            .collect()
    };
    let (y_cpu1, y_per1) = (y0(&cpu1), y0(&per1));
    let mut lines = Vec::new();
    let mut cpu_out = 0.0f64;
    let mut per_out = 0.0f64;
    for (i, &kk) in ks.iter().enumerate().filter(|(_, kk)| **kk > 1) {
        let c = minus(y0(&cpu(kk)), &y_cpu1);
        cpu_out = c.iter().fold(cpu_out, |m, p| m.max(p.1.abs()));
        let p = minus(y0(&per_rank(kk)), &y_per1);
        per_out = p.iter().fold(per_out, |m, q| m.max(q.1.abs()));
        lines.push(LineSeries::line(
            format!("per-rank, k = {kk}"),
            p,
            rank_role(i - 1),
        ));
        if i == 1 {
            lines.insert(
                0,
                LineSeries::line("CPU init, every k", c, SeriesRole::Reference),
            );
        }
    }
    fig.charts.push(
        Chart::lines(
            "the model's output minus the k = 1 model's (x row 0)",
            lines,
        )
        .with_labels("output o", "y_k[0, o] − y_1[0, o]"),
    );
    let shard_r = tp::init_cpu_then_split(seed, out, inner, k, axis);
    let slices = tp::split(&cpu1, out, inner, k, axis);
    fig.readouts.push(format!(
        "Init on the CPU (seed {seed}), then split: rank r's shard is the matching slice of the k = 1 weight for every k ({}); max |W(k) − W(1)| = {}.",
        if shard_r == slices { "checked for this cell's k" } else { "NOT equal: a bug" },
        cpu_d.iter().copied().fold(0.0, f64::max)
    ));
    fig.readouts.push(format!(
        "Per-rank init: rank r draws its own shard from seed + 2718 + r, so the k = 2, 4, 8 models differ from k = 1 (max |ΔW| up to {}), and so does what they compute (max |Δy| {}; CPU init: {}).",
        format_value(per_d.iter().copied().fold(0.0, f64::max)),
        format_value(per_out),
        format_value(cpu_out)
    ));
    fig.readouts.push(format!(
        "Weights: N(0, 0.02²) (Megatron's init_method_std), drawn here for w's shape [{out}, {inner}] (the cell's w values are not used); x: the cell's first row of [{rows}, {inner}]."
    ));
    Ok(fig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Op;
    use crate::compare::compare_all;
    use crate::dtype::DType;
    use crate::engine::Registry;
    use crate::ops::{OpRequest, Tensor};

    fn comparison(op: TpOp, x: Tensor, extra: Vec<(String, Tensor)>) -> Comparison {
        let registry = Registry::probe_only(&[EngineKind::Cpu]);
        let req = OpRequest::with_inputs(Op::new(op), DType::F32, x, extra).unwrap();
        compare_all(&registry, req)
    }

    fn linear_inputs() -> (Tensor, Vec<(String, Tensor)>) {
        let x = crate::suite::Input::Normal {
            rows: 4,
            cols: 64,
            scale: 1.0,
            seed: 1,
        }
        .tensor();
        let w = crate::suite::Input::Normal {
            rows: 16,
            cols: 64,
            scale: 0.125,
            seed: 2,
        }
        .tensor();
        (
            x,
            vec![("w".into(), w), ("b".into(), Tensor::row(vec![0.5; 16]))],
        )
    }

    #[test]
    fn every_view_builds_for_every_split_op() {
        let (x, extra) = linear_inputs();
        let table = crate::suite::Input::Normal {
            rows: 32,
            cols: 4,
            scale: 1.0,
            seed: 3,
        }
        .tensor();
        let logits = crate::suite::Input::Normal {
            rows: 4,
            cols: 32,
            scale: 2.0,
            seed: 4,
        }
        .tensor();
        let (lx, lextra) = linear_inputs();
        let cases = [
            comparison(TpOp::Linear, lx, lextra),
            comparison(
                TpOp::ColumnParallelLinear {
                    ranks: 4,
                    gather: true,
                },
                x.clone(),
                extra.clone(),
            ),
            comparison(
                TpOp::ColumnParallelLinear {
                    ranks: 4,
                    gather: false,
                },
                x.clone(),
                extra.clone(),
            ),
            comparison(TpOp::RowParallelLinear { ranks: 8 }, x, extra),
            comparison(
                TpOp::VocabParallelEmbedding { ranks: 4 },
                Tensor {
                    shape: vec![5],
                    data: vec![0.0, 7.0, 8.0, 31.0, 16.0],
                },
                vec![("table".into(), table)],
            ),
            comparison(
                TpOp::VocabParallelCrossEntropy { ranks: 2 },
                logits,
                vec![(
                    "targets".into(),
                    Tensor {
                        shape: vec![4],
                        data: vec![0.0, 15.0, 16.0, 31.0],
                    },
                )],
            ),
        ];
        for c in &cases {
            for view in VIEWS
                .iter()
                .filter(|v| v.ops.contains(&c.request.op.kind()))
            {
                let fig = (view.build)(c)
                    .unwrap_or_else(|e| panic!("{} {}: {e}", view.name, c.request.op.describe()));
                assert!(
                    !fig.charts.is_empty() || !fig.readouts.is_empty(),
                    "{}",
                    view.name
                );
                for chart in &fig.charts {
                    chart
                        .validate()
                        .unwrap_or_else(|e| panic!("{}: {e}", view.name));
                }
            }
        }
    }

    #[test]
    fn split_diff_counts_bits() {
        let d = split_diff(&[1.0, 2.0, -0.0], &[1.0, 2.0000002, 0.0]);
        assert_eq!((d.differing, d.total), (2, 3));
        assert!(d.max_abs > 0.0 && d.max_abs < 1e-6);
        assert_eq!(split_diff(&[1.0], &[1.0]).differing, 0);
    }

    #[test]
    fn seeding_shows_cpu_init_is_independent_of_k() {
        let (x, extra) = linear_inputs();
        let c = comparison(
            TpOp::ColumnParallelLinear {
                ranks: 4,
                gather: true,
            },
            x,
            extra,
        );
        let fig = seeding(&c).unwrap();
        let crate::chart::ChartKind::Bars { series, .. } = &fig.charts[0].kind else {
            panic!("bars")
        };
        assert!(
            series[0].values.iter().all(|&v| v == 0.0),
            "CPU init: {:?}",
            series[0].values
        );
        assert_eq!(series[1].values[0], 0.0);
        assert!(
            series[1].values[1..].iter().all(|&v| v > 0.0),
            "per-rank: {:?}",
            series[1].values
        );
        assert!(fig.readouts[0].contains("checked"), "{}", fig.readouts[0]);
    }

    #[test]
    fn cross_entropy_bytes_at_gpt2_scale() {
        let logits = crate::suite::Input::Normal {
            rows: 2,
            cols: 16,
            scale: 1.0,
            seed: 4,
        }
        .tensor();
        let c = comparison(
            TpOp::VocabParallelCrossEntropy { ranks: 8 },
            logits,
            vec![(
                "targets".into(),
                Tensor {
                    shape: vec![2],
                    data: vec![0.0, 15.0],
                },
            )],
        );
        let fig = bytes(&c).unwrap();
        let text = fig.readouts.join("\n");
        // 3 x 2·7/8 x 8192 x 4 bytes = 172 kB; 7 x 8192 x 6288 x 4 = 1.44 GB.
        assert!(text.contains("172.0 kB"), "{text}");
        assert!(text.contains("1.44 GB"), "{text}");
    }
}
