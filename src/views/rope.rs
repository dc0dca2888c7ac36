//! The rotary-embedding lesson's figures, built from a cell's [`Comparison`]:
//! - `unit_circles`: where each position turned a few pairs, on the unit circle (the rotation an
//!   engine applied, scaled by |y|/|x|: a rotation keeps the radius at 1);
//! - `spectrum`: inv_freq per pair (a geometric series) and the turns each pair makes by the
//!   largest position;
//! - `relative_position`: <R_m q, R_n k> over m, n, the same values against p_m − p_n, and the
//!   measured spread along each diagonal per engine;
//! - `pairing`: which dims form a pair in each layout, and the permutation that turns the
//!   interleaved layout into the half-split one;
//! - `angle_error`: the angle each engine's result encodes against p · inv_freq in f64, over the
//!   positions.
//!
//! Everything here is computed from the request, the reference and the engines' outputs; nothing
//! runs an engine.

use super::{Figure, ViewDef};
use crate::chart::{Chart, LineSeries, SeriesRole, format_value};
use crate::compare::Comparison;
use crate::engine::{EngineKind, OpOutput};
use crate::ops::rope::{self, Freq, Geometry, Layout, RopeOp, Slot};
use std::f64::consts::TAU;

pub(super) const VIEWS: &[ViewDef] = &[
    ViewDef {
        name: "unit_circles",
        ops: &[crate::ops::rope::ROPE],
        help: "rope: a few pairs of head 0 on the unit circle, one point per position (the rotation applied, radius |y|/|x|)",
        build: unit_circles,
    },
    ViewDef {
        name: "spectrum",
        ops: &[crate::ops::rope::ROPE_FREQS, crate::ops::rope::ROPE],
        help: "inv_freq per pair on a log scale, and the turns each pair makes by the largest position",
        build: spectrum,
    },
    ViewDef {
        name: "relative_position",
        ops: &[crate::ops::rope::ROPE],
        help: "rope: <R_m q, R_n k> over m, n (q = head 0, k = the last head) and against p_m - p_n, with each engine's spread along the diagonals",
        build: relative_position,
    },
    ViewDef {
        name: "pairing",
        ops: &[crate::ops::rope::ROPE],
        help: "rope: which dims pair up in each layout, and the permutation from interleaved to half-split",
        build: pairing,
    },
    ViewDef {
        name: "angle_error",
        ops: &[crate::ops::rope::ROPE_FREQS, crate::ops::rope::ROPE],
        help: "the angle each engine's result encodes against p · inv_freq in f64, by position (log scale)",
        build: angle_error,
    },
];

fn rope_op(result: &Comparison) -> Result<&RopeOp, String> {
    let op = &result.request.op;
    op.get::<RopeOp>().ok_or_else(|| format!("this view draws rope ops, not {}", op.kind()))
}

fn geometry(result: &Comparison) -> Result<(Geometry, Vec<Freq>), String> {
    let op = rope_op(result)?;
    let g = rope::geometry(op, &result.request).map_err(|e| e.to_string())?;
    if g.out_len() == 0 {
        return Err("the output is empty: nothing to draw".into());
    }
    Ok((g, rope::freq_table(op.theta(), g.rot)))
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
        .ok_or_else(|| "no engine produced a result".to_string())
}

fn position(g: &Geometry, result: &Comparison, b: usize, s: usize) -> i32 {
    rope::position_of(g.positions, result.request.input("positions"), g.seq, b, s)
}

/// The element offsets of the pair with frequency `freq`, turned by the position (`block` false)
/// or by chatglm2d's block position (`block` true).
fn pair_dims(g: &Geometry, freq: usize, block: bool) -> Option<(usize, usize)> {
    (0..g.head_dim / 2).find_map(|j| match rope::slot(g.layout, g.head_dim, g.rot, j) {
        Slot::Rotate {
            a,
            b,
            freq: f,
            block: bl,
        } if f == freq && bl == block => Some((a, b)),
        _ => None,
    })
}

/// The block position of token (b, s) (chatglm2d).
fn block_position(g: &Geometry, result: &Comparison, b: usize, s: usize) -> i32 {
    rope::position_of(
        g.block,
        result.request.input("block_positions"),
        g.seq,
        b,
        s,
    )
}

/// A few frequencies worth showing: the fastest, the next, a middle one and the slowest.
fn picked_freqs(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = [0, 1, n / 2, n.saturating_sub(1)]
        .into_iter()
        .filter(|&i| i < n)
        .collect();
    v.dedup();
    v
}

fn circle() -> LineSeries {
    LineSeries::line(
        "unit circle",
        (0..=96)
            .map(|k| {
                let a = TAU * k as f64 / 96.0;
                (a.cos(), a.sin())
            })
            .collect(),
        SeriesRole::Reference,
    )
}

// ------------------------------------------------------------------------------------------------
// unit_circles
// ------------------------------------------------------------------------------------------------

fn unit_circles(result: &Comparison) -> Result<Figure, String> {
    let (g, freqs) = geometry(result)?;
    let (kind, out) = first_output(result)?;
    let x = &result.request.x.data;
    let y = &out.values;
    let mut charts = Vec::new();
    let last = g.seq.saturating_sub(1);
    // chatglm2d: the two fastest pairs of each half, turned by positions and block positions.
    let picks: Vec<(usize, bool)> = if g.layout == Layout::Chatglm2d {
        [(0, false), (1, false), (0, true), (1, true)]
            .into_iter()
            .filter(|&(i, _)| i < freqs.len())
            .collect()
    } else {
        picked_freqs(freqs.len())
            .into_iter()
            .map(|i| (i, false))
            .collect()
    };
    for (i, block) in picks {
        let Some((a, b)) = pair_dims(&g, i, block) else {
            continue;
        };
        let pos = |s: usize| {
            if block {
                block_position(&g, result, 0, s)
            } else {
                position(&g, result, 0, s)
            }
        };
        let point = |s: usize| -> Option<(f64, f64)> {
            let xo = g.x_offset(0, s, 0);
            let yo = g.y_offset(0, s, 0);
            let (xa, xb) = (x[xo + a] as f64, x[xo + b] as f64);
            let (ya, yb) = (y[yo + a] as f64, y[yo + b] as f64);
            let r = xa.hypot(xb);
            if r == 0.0 || !r.is_finite() {
                return None;
            }
            // The rotation applied: angle(y) − angle(x), at radius |y| / |x|.
            let turn = yb.atan2(ya) - xb.atan2(xa);
            let scale = ya.hypot(yb) / r;
            Some((scale * turn.cos(), scale * turn.sin()))
        };
        let points: Vec<(f64, f64)> = (0..g.seq).filter_map(point).collect();
        let mut series = vec![
            circle(),
            LineSeries::scatter(kind.display_name(), points, SeriesRole::Engine(kind)),
        ];
        if let Some(p0) = point(0) {
            series.push(LineSeries::scatter(
                format!("p={}", pos(0)),
                vec![p0],
                SeriesRole::Input,
            ));
        }
        if last > 0
            && let Some(pl) = point(last)
        {
            series.push(LineSeries::scatter(
                format!("p={}", pos(last)),
                vec![pl],
                SeriesRole::Other(1),
            ));
        }
        let title = if g.layout != Layout::Chatglm2d {
            format!(
                "pair {i} · {} rad/position",
                format_value(freqs[i].inv_freq)
            )
        } else if block {
            format!("dims ({a}, {b}) · block position")
        } else {
            format!("dims ({a}, {b}) · position")
        };
        let mut chart = Chart::lines(title, series).with_labels("cos", "sin");
        chart.equal_aspect = true;
        charts.push(chart);
    }
    if charts.is_empty() {
        return Err("no rotated pair to draw".into());
    }
    let mut readouts = vec![format!(
        "Pair i turns by inv_freq_i radians per position: pair 0 a full turn every {} positions, pair {} every {} positions.",
        format_value(TAU / freqs[0].inv_freq),
        freqs.len() - 1,
        format_value(TAU / freqs[freqs.len() - 1].inv_freq)
    )];
    // Norms: every head of every token, per engine.
    let mut norms = Vec::new();
    for (kind, out) in outputs(result) {
        let mut worst = 0.0f64;
        for b in 0..g.batch {
            for s in 0..g.seq {
                for h in 0..g.heads {
                    let xo = g.x_offset(b, s, h);
                    let yo = g.y_offset(b, s, h);
                    let n = |v: &[f32]| v.iter().map(|&t| (t as f64).powi(2)).sum::<f64>().sqrt();
                    let nx = n(&x[xo..xo + g.head_dim]);
                    let ny = n(&out.values[yo..yo + g.head_dim]);
                    if nx > 0.0 && nx.is_finite() {
                        worst = worst.max((ny / nx - 1.0).abs());
                    }
                }
            }
        }
        norms.push(format!("{} {}", kind.display_name(), format_value(worst)));
    }
    readouts.push(format!(
        "A rotation keeps the length: the largest | |y|/|x| − 1 | over every head is {} (the storage type's rounding).",
        norms.join(", ")
    ));
    Ok(Figure { charts, readouts })
}

// ------------------------------------------------------------------------------------------------
// spectrum
// ------------------------------------------------------------------------------------------------

fn spectrum(result: &Comparison) -> Result<Figure, String> {
    let op = rope_op(result)?;
    let req = &result.request;
    let (freqs, max_pos, d) = match *op {
        RopeOp::RopeFreqs {
            dim,
            theta,
            rotary_fraction,
            ..
        } => {
            let d = rope::rotated_dims(rotary_fraction, dim);
            let max_pos = req
                .x
                .data
                .iter()
                .fold(0f64, |m, &p| m.max((p as f64).abs()));
            (rope::freq_table(theta, d), max_pos, d)
        }
        RopeOp::Rope { .. } => {
            let (g, freqs) = geometry(result)?;
            let mut max_pos = 0f64;
            for b in 0..g.batch {
                for s in 0..g.seq {
                    max_pos = max_pos.max((position(&g, result, b, s) as f64).abs());
                }
            }
            (freqs, max_pos, g.rot)
        }
    };
    if freqs.is_empty() {
        return Err("no rotated pair".into());
    }
    let mut series = vec![LineSeries::line(
        "f64 reference",
        freqs
            .iter()
            .enumerate()
            .map(|(i, f)| (i as f64, f.inv_freq.log10()))
            .collect(),
        SeriesRole::Reference,
    )];
    if matches!(op, RopeOp::RopeFreqs { .. }) {
        for (kind, out) in outputs(result) {
            series.push(LineSeries::scatter(
                kind.display_name(),
                out.values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| **v > 0.0)
                    .map(|(i, &v)| (i as f64, (v as f64).log10()))
                    .collect(),
                SeriesRole::Engine(kind),
            ));
        }
    }
    let spectrum = Chart::lines(format!("inv_freq_i = θ^(-2i/{d})"), series)
        .with_labels("pair i", "log10 inv_freq (rad/position)");
    let turns: Vec<(f64, f64)> = freqs
        .iter()
        .enumerate()
        .filter(|_| max_pos > 0.0)
        .map(|(i, f)| (i as f64, (max_pos * f.inv_freq / TAU).log10()))
        .collect();
    let one_turn = LineSeries::line(
        "one turn",
        vec![(0.0, 0.0), ((freqs.len() - 1) as f64, 0.0)],
        SeriesRole::Reference,
    );
    let turns_chart = Chart::lines(
        format!("turns by position {}", format_value(max_pos)),
        vec![
            one_turn,
            LineSeries::scatter("p·inv_freq/2π", turns, SeriesRole::Other(0)),
        ],
    )
    .with_labels("pair i", "log10 turns");
    let last = freqs[freqs.len() - 1].inv_freq;
    let ratio = if freqs.len() > 1 {
        freqs[1].inv_freq / freqs[0].inv_freq
    } else {
        1.0
    };
    let fast = freqs.iter().filter(|f| max_pos * f.inv_freq >= TAU).count();
    let mut readouts = vec![
        format!(
            "{} pairs: inv_freq from 1 (pair 0) down to {} (pair {}), each pair {} times as fast as the one before (θ^(-2/d)): a geometric series.",
            freqs.len(),
            format_value(last),
            freqs.len() - 1,
            format_value(ratio)
        ),
        format!(
            "Wavelengths 2π/inv_freq run from {} to {} positions.",
            format_value(TAU),
            format_value(TAU / last)
        ),
    ];
    if max_pos > 0.0 {
        readouts.push(format!(
            "By position {}, {fast} of {} pairs have turned at least once (their angle wraps around); the slower ones still tell far positions apart.",
            format_value(max_pos),
            freqs.len()
        ));
    }
    let charts = if max_pos > 0.0 {
        vec![spectrum, turns_chart]
    } else {
        vec![spectrum]
    };
    Ok(Figure { charts, readouts })
}

// ------------------------------------------------------------------------------------------------
// relative_position
// ------------------------------------------------------------------------------------------------

/// Largest side of the heatmap (a lesson cell's sequence).
const MAX_RELATIVE_SEQ: usize = 256;

fn relative_position(result: &Comparison) -> Result<Figure, String> {
    let (g, _) = geometry(result)?;
    if g.seq > MAX_RELATIVE_SEQ {
        return Err(format!(
            "{} positions: this view draws at most {MAX_RELATIVE_SEQ}",
            g.seq
        ));
    }
    let x = &result.request.x.data;
    let (hq, hk) = (0, g.heads - 1);
    let d = g.head_dim;
    let dot = |v: &[f64], qo: usize, ko: usize| -> f64 {
        (0..d).map(|e| v[qo + e] * v[ko + e]).sum::<f64>()
    };
    let norm = |o: usize| -> f64 {
        x[o..o + d]
            .iter()
            .map(|&v| (v as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let qk = norm(g.x_offset(0, 0, hq)) * norm(g.x_offset(0, 0, hk));
    let constant = g.x_seq == 1
        || (1..g.seq).all(|s| {
            x[g.x_offset(0, s, 0)..g.x_offset(0, s, 0) + g.heads * d]
                == x[g.x_offset(0, 0, 0)..g.x_offset(0, 0, 0) + g.heads * d]
        });
    let positions: Vec<i64> = (0..g.seq)
        .map(|s| position(&g, result, 0, s) as i64)
        .collect();
    // Dot products of one output (as f64) for every (m, n), row m = query.
    let table = |values: &[f64]| -> Vec<f64> {
        let mut t = Vec::with_capacity(g.seq * g.seq);
        for m in 0..g.seq {
            for n in 0..g.seq {
                t.push(dot(values, g.y_offset(0, m, hq), g.y_offset(0, n, hk)));
            }
        }
        t
    };
    // Largest (max − min) over pairs with the same p_m − p_n.
    let spread = |t: &[f64]| -> f64 {
        let mut groups: std::collections::HashMap<i64, (f64, f64)> = Default::default();
        for m in 0..g.seq {
            for n in 0..g.seq {
                let v = t[m * g.seq + n];
                let e = groups.entry(positions[m] - positions[n]).or_insert((v, v));
                e.0 = e.0.min(v);
                e.1 = e.1.max(v);
            }
        }
        groups.values().map(|(lo, hi)| hi - lo).fold(0.0, f64::max)
    };
    let (kind, out) = first_output(result)?;
    let shown: Vec<f64> = out.values.iter().map(|&v| v as f64).collect();
    let shown_table = table(&shown);
    let heat = Chart::heatmap(
        format!("<R_m q, R_n k> ({})", kind.display_name()),
        g.seq,
        g.seq,
        shown_table.clone(),
        "<R_m q, R_n k>",
    )
    .with_labels("key n", "query m");
    let mut collapse = vec![LineSeries::scatter(
        kind.display_name(),
        (0..g.seq * g.seq)
            .map(|k| {
                let (m, n) = (k / g.seq, k % g.seq);
                ((positions[m] - positions[n]) as f64, shown_table[k])
            })
            .collect(),
        SeriesRole::Engine(kind),
    )];
    let reference_table = table(&result.reference);
    let mut by_distance: Vec<(f64, f64)> = (0..g.seq * g.seq)
        .map(|k| {
            let (m, n) = (k / g.seq, k % g.seq);
            ((positions[m] - positions[n]) as f64, reference_table[k])
        })
        .collect();
    by_distance.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_distance.dedup_by(|a, b| a.0 == b.0);
    collapse.insert(
        0,
        LineSeries::line("f64 reference", by_distance, SeriesRole::Reference),
    );
    let collapse = Chart::lines("against the distance p_m − p_n", collapse)
        .with_labels("p_m − p_n", "<R_m q, R_n k>");
    let mut spreads: Vec<String> = outputs(result)
        .into_iter()
        .map(|(kind, out)| {
            let v: Vec<f64> = out.values.iter().map(|&v| v as f64).collect();
            format!(
                "{} {}",
                kind.display_name(),
                format_value(spread(&table(&v)) / qk)
            )
        })
        .collect();
    spreads.push(format!(
        "f64 reference {}",
        format_value(spread(&reference_table) / qk)
    ));
    let first = positions.first().copied().unwrap_or(0);
    let last = positions.last().copied().unwrap_or(0);
    let mut readouts = vec![format!(
        "q = head {hq}, k = head {hk}, at positions {first}..{last}. Largest spread of <R_m q, R_n k> among pairs with the same p_m − p_n, relative to |q||k|: {}.",
        spreads.join(", ")
    )];
    readouts.push(
        "Published bound: at most 1e-5 with careful angles up to position 8192; HF's f32 angles spread 4.9e-4 at 8000."
            .into(),
    );
    if !constant {
        readouts.push(
            "x differs between positions, so this is <R_m x_m, R_n x_n>, which need not depend on m − n only: give x one position (seq 1) to rotate the same q and k everywhere."
                .into(),
        );
    }
    Ok(Figure {
        charts: vec![heat, collapse],
        readouts,
    })
}

// ------------------------------------------------------------------------------------------------
// pairing
// ------------------------------------------------------------------------------------------------

fn pairing(result: &Comparison) -> Result<Figure, String> {
    let op = rope_op(result)?;
    let (g, _) = geometry(result)?;
    let d = g.head_dim;
    let fraction = op.rotary_fraction();
    let mut charts = Vec::new();
    for (k, layout) in Layout::ALL.into_iter().enumerate() {
        if layout == Layout::Chatglm2d && d % 4 != 0 {
            continue;
        }
        let span = if layout == Layout::Chatglm2d {
            d / 2
        } else {
            d
        };
        let rot = rope::rotated_dims(fraction, span);
        if rot < 2 {
            continue;
        }
        let mut by_position = Vec::new();
        let mut by_block = Vec::new();
        let mut passed = Vec::new();
        for j in 0..d / 2 {
            match rope::slot(layout, d, rot, j) {
                Slot::Rotate { a, b, freq, block } => {
                    let list = if block {
                        &mut by_block
                    } else {
                        &mut by_position
                    };
                    list.push((a as f64, freq as f64));
                    list.push((b as f64, freq as f64));
                }
                Slot::Pass { a } => {
                    passed.push((a as f64, -1.0));
                    passed.push(((a + 1) as f64, -1.0));
                }
            }
        }
        let mut series = vec![LineSeries::scatter(
            if layout == Layout::Chatglm2d {
                "by positions"
            } else {
                "rotated"
            },
            by_position,
            SeriesRole::Other(k),
        )];
        if !by_block.is_empty() {
            series.push(LineSeries::scatter(
                "by block_positions",
                by_block,
                SeriesRole::Reference,
            ));
        }
        if !passed.is_empty() {
            series.push(LineSeries::scatter(
                "passed through (−1)",
                passed,
                SeriesRole::Input,
            ));
        }
        let this = if layout == g.layout {
            " (this cell)"
        } else {
            ""
        };
        charts.push(
            Chart::lines(format!("{}{this}", layout.name()), series)
                .with_labels("dim", "pair i (same i: same rotation)"),
        );
    }
    // The permutation interleaved -> half-split over the rotated dims (the rest stay put).
    let rot = rope::rotated_dims(fraction, d);
    let half_of = |k: usize| -> usize {
        if k >= rot {
            k
        } else if k.is_multiple_of(2) {
            k / 2
        } else {
            rot / 2 + k / 2
        }
    };
    charts.push(
        Chart::lines(
            "interleaved → half_split",
            vec![LineSeries::scatter(
                "dim moves to",
                (0..d).map(|k| (k as f64, half_of(k) as f64)).collect(),
                SeriesRole::Other(0),
            )],
        )
        .with_labels("interleaved dim", "half_split dim"),
    );
    let order: Vec<usize> = (0..rot).step_by(2).chain((1..rot).step_by(2)).collect();
    let shown = if order.len() <= 16 {
        format!("{order:?}")
    } else {
        format!(
            "[0, 2, 4, …, {}, 1, 3, …, {}]",
            rot.saturating_sub(2),
            rot.saturating_sub(1)
        )
    };
    let mut readouts = vec![format!(
        "This cell: layout {}, head_dim {d}, {} rotated dims{}.",
        g.layout.name(),
        g.rot,
        if g.layout == Layout::Chatglm2d {
            " in each half (the first half turns by positions, the second by block_positions)"
        } else {
            ""
        }
    )];
    readouts.push(format!(
        "From interleaved to half_split: take each head's dims in the order {shown}. HF's converter for Meta's Llama checkpoints permutes the rows of W_q and W_k this way, so rotate_half pairs up the features that were trained together."
    ));
    if rot < d {
        readouts.push(format!(
            "Partial rotary: dims {rot}..{d} are passed through unchanged (y = x, bit for bit)."
        ));
    }
    Ok(Figure { charts, readouts })
}

// ------------------------------------------------------------------------------------------------
// angle_error
// ------------------------------------------------------------------------------------------------

/// rope: per token of batch 0, the largest |angle error| over its heads and pairs: the angle the
/// engine turned each pair by (angle of y minus angle of x) against p · inv_freq.
fn rope_angle_errors(result: &Comparison, out: &[f32]) -> Result<Vec<(f64, f64)>, String> {
    let (g, freqs) = geometry(result)?;
    let x = &result.request.x.data;
    let mut points = Vec::new();
    for s in 0..g.seq {
        let p = position(&g, result, 0, s) as i64;
        let mut worst = 0.0f64;
        for h in 0..g.heads {
            let (xo, yo) = (g.x_offset(0, s, h), g.y_offset(0, s, h));
            for (i, f) in freqs.iter().enumerate() {
                let Some((a, b)) = pair_dims(&g, i, false) else {
                    continue;
                };
                let (xa, xb) = (x[xo + a] as f64, x[xo + b] as f64);
                let r = xa.hypot(xb);
                if r.is_nan() || r < 1e-3 {
                    continue; // the angle of a (nearly) zero pair means nothing
                }
                let turned = (out[yo + b] as f64).atan2(out[yo + a] as f64) - xb.atan2(xa);
                let e = rope::angle_difference(turned, rope::exact_angle(p, f)).abs();
                worst = worst.max(e);
            }
        }
        points.push((p as f64, worst));
    }
    Ok(points)
}

/// rope_freqs: per position, the largest |angle error| of the cos/sin tables of one output.
fn table_angle_errors(result: &Comparison, out: &OpOutput) -> Result<Vec<(f64, f64)>, String> {
    let op = rope_op(result)?;
    let RopeOp::RopeFreqs {
        dim,
        theta,
        rotary_fraction,
        ..
    } = *op
    else {
        return rope_angle_errors(result, &out.values);
    };
    let freqs = rope::freq_table(theta, rope::rotated_dims(rotary_fraction, dim));
    let n = freqs.len();
    let (Some(cos), Some(sin)) = (out.aux("cos"), out.aux("sin")) else {
        return Err("the result has no cos and sin tables".into());
    };
    Ok(result
        .request
        .x
        .data
        .iter()
        .enumerate()
        .map(|(k, &p)| {
            let worst = freqs
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let got = (sin.values[k * n + i] as f64).atan2(cos.values[k * n + i] as f64);
                    rope::angle_difference(got, rope::exact_angle(p as i64, f)).abs()
                })
                .fold(0.0, f64::max);
            (p as f64, worst)
        })
        .collect())
}

fn angle_error(result: &Comparison) -> Result<Figure, String> {
    let op = rope_op(result)?;
    let mut series = Vec::new();
    let mut maxima = Vec::new();
    let mut largest_position = 0f64;
    for (kind, out) in outputs(result) {
        let mut points = table_angle_errors(result, out)?;
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let worst = points.iter().map(|p| p.1).fold(0.0, f64::max);
        largest_position = points
            .iter()
            .fold(largest_position, |m, p| m.max(p.0.abs()));
        maxima.push(format!(
            "{} {} rad",
            kind.display_name(),
            format_value(worst)
        ));
        series.push(LineSeries::line(
            kind.display_name(),
            points
                .into_iter()
                .filter(|p| p.1 > 0.0)
                .map(|(p, e)| (p, e.log10()))
                .collect(),
            SeriesRole::Engine(kind),
        ));
    }
    if series.is_empty() {
        return Err("no engine produced a result".into());
    }
    // The scale of the naive f32 angle's error: p · 2^-24 (f32(inv_freq) and the product).
    let guide: Vec<(f64, f64)> = (0..=64)
        .map(|k| largest_position * k as f64 / 64.0)
        .filter(|&p| p >= 1.0)
        .map(|p| (p, (p * 2f64.powi(-24)).log10()))
        .collect();
    if !guide.is_empty() {
        series.insert(
            0,
            LineSeries::line("p · 2^-24", guide, SeriesRole::Reference),
        );
    }
    let chart = Chart::lines("angle error by position", series)
        .with_labels("position p", "log10 max |angle error| (rad)");
    let mut readouts = vec![format!(
        "Largest angle error, {} angles: {}.",
        if op.precise_angles() {
            "precise"
        } else {
            "naive f32"
        },
        maxima.join(", ")
    )];
    readouts.push(if op.precise_angles() {
        "Precise angles: every engine forms the same reduced angle r (|r| ≤ π/4, within 7.5e-8 rad) with integer arithmetic; what is left is each engine's own sin and cos.".into()
    } else {
        "Naive f32 angles: f32(p · inv_freq) is off by up to about p · 2^-24 rad (the dashed line): the error in cos is 1.1e-4 at 2048, 4.8e-4 at 8192, 1.9e-3 at 32768.".into()
    });
    if matches!(op, RopeOp::RopeFreqs { .. }) {
        // How each engine's cos and sin differ from the CPU's (libm's sinf and cosf).
        let all = outputs(result);
        if let Some((_, cpu)) = all.iter().find(|(k, _)| *k == EngineKind::Cpu) {
            for (kind, out) in all.iter().filter(|(k, _)| *k != EngineKind::Cpu) {
                let (mut differ, mut total, mut max) = (0usize, 0usize, 0f32);
                for (a, b) in out.aux.iter().zip(&cpu.aux) {
                    for (u, v) in a.values.iter().zip(&b.values) {
                        total += 1;
                        if u.to_bits() != v.to_bits() {
                            differ += 1;
                            max = max.max((u - v).abs());
                        }
                    }
                }
                readouts.push(format!(
                    "{}'s cos and sin differ from the CPU's in {differ} of {total} values, by at most {}.",
                    kind.display_name(),
                    format_value(max as f64)
                ));
            }
        }
    }
    Ok(Figure {
        charts: vec![chart],
        readouts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Op;
    use crate::chart::ChartKind;
    use crate::compare::compare_all;
    use crate::dtype::DType;
    use crate::engine::Registry;
    use crate::ops::{OpRequest, Tensor};

    fn cpu_comparison(op: RopeOp, x: Tensor, extra: Vec<(&str, Tensor)>) -> Comparison {
        let registry = Registry::probe_only(&[EngineKind::Cpu]);
        let req = OpRequest::with_inputs(
            Op::new(op),
            DType::F32,
            x,
            extra.into_iter().map(|(n, t)| (n.to_string(), t)).collect(),
        )
        .unwrap();
        compare_all(&registry, req)
    }

    fn rope(layout: Layout, fraction: f64) -> RopeOp {
        RopeOp::Rope {
            layout,
            theta: rope::DEFAULT_THETA,
            rotary_fraction: fraction,
            precise_angles: true,
        }
    }

    fn qk(d: usize) -> Tensor {
        Tensor::new(
            vec![1, 1, 2, d],
            (0..2 * d)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
                .collect(),
        )
        .unwrap()
    }

    fn positions(n: usize) -> Tensor {
        Tensor::new(vec![1, n], (0..n).map(|p| p as f32).collect()).unwrap()
    }

    #[test]
    fn every_view_is_listed_and_refuses_empty_outputs() {
        for v in VIEWS {
            assert!(super::super::find(v.name).is_some());
        }
        let empty = Tensor::new(vec![1, 0, 2, 8], vec![]).unwrap();
        let c = cpu_comparison(rope(Layout::HalfSplit, 1.0), empty, vec![]);
        for v in VIEWS.iter().filter(|v| v.ops.contains(&crate::ops::rope::ROPE)) {
            if v.name != "spectrum" {
                assert!((v.build)(&c).is_err(), "{}", v.name);
            }
        }
    }

    #[test]
    fn unit_circles_stay_on_the_circle() {
        let c = cpu_comparison(
            rope(Layout::HalfSplit, 1.0),
            qk(16),
            vec![("positions", positions(12))],
        );
        let fig = unit_circles(&c).unwrap();
        assert_eq!(fig.charts.len(), 4);
        for chart in &fig.charts {
            assert!(chart.equal_aspect);
            let ChartKind::Lines { series } = &chart.kind else {
                panic!("lines")
            };
            for (x, y) in &series[1].points {
                assert!((x.hypot(*y) - 1.0).abs() < 1e-6);
            }
        }
        assert!(fig.readouts[1].contains("CPU"), "{:?}", fig.readouts);
    }

    #[test]
    fn relative_position_spread_is_tiny_in_f32() {
        let c = cpu_comparison(
            rope(Layout::Interleaved, 1.0),
            qk(32),
            vec![("positions", positions(20))],
        );
        let fig = relative_position(&c).unwrap();
        assert_eq!(fig.charts.len(), 2);
        assert!(fig.charts.iter().all(|ch| ch.validate().is_ok()));
        // "... CPU 7.1e-8, f64 reference 3e-16."
        let line = &fig.readouts[0];
        let cpu: f64 = line
            .split("CPU ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(cpu < 1e-6, "{line}");
        assert_eq!(fig.readouts.len(), 2, "x is one vector: no warning");
    }

    #[test]
    fn pairing_names_the_permutation() {
        let x = Tensor::new(vec![1, 1, 1, 8], vec![1.0; 8]).unwrap();
        let c = cpu_comparison(rope(Layout::HalfSplit, 1.0), x, vec![]);
        let fig = pairing(&c).unwrap();
        assert_eq!(fig.charts.len(), 4, "three layouts and the permutation");
        assert!(
            fig.readouts[1].contains("[0, 2, 4, 6, 1, 3, 5, 7]"),
            "{:?}",
            fig.readouts
        );
        let ChartKind::Lines { series } = &fig.charts[3].kind else {
            panic!("lines")
        };
        assert_eq!(
            series[0]
                .points
                .iter()
                .map(|p| p.1 as usize)
                .collect::<Vec<_>>(),
            vec![0, 4, 1, 5, 2, 6, 3, 7]
        );
    }

    #[test]
    fn angle_error_separates_naive_from_precise() {
        let p: Vec<f32> = (0..9).map(|k| (k * 4096) as f32).collect();
        let x = Tensor::new(vec![9], p).unwrap();
        let errors = |precise_angles| {
            let c = cpu_comparison(
                RopeOp::RopeFreqs {
                    dim: 64,
                    theta: rope::DEFAULT_THETA,
                    rotary_fraction: 1.0,
                    precise_angles,
                },
                x.clone(),
                vec![],
            );
            let (_, out) = first_output(&c).unwrap();
            table_angle_errors(&c, out)
                .unwrap()
                .iter()
                .map(|p| p.1)
                .fold(0.0, f64::max)
        };
        assert!(errors(true) < 2e-7);
        assert!(errors(false) > 1e-4);
        let c = cpu_comparison(
            rope(Layout::HalfSplit, 1.0),
            qk(16),
            vec![("positions", positions(8))],
        );
        let fig = angle_error(&c).unwrap();
        assert!(fig.readouts[0].contains("precise"), "{:?}", fig.readouts);
    }

    #[test]
    fn spectrum_of_head_128() {
        let x = Tensor::new(vec![2], vec![0.0, 4096.0]).unwrap();
        let c = cpu_comparison(
            RopeOp::RopeFreqs {
                dim: 128,
                theta: rope::DEFAULT_THETA,
                rotary_fraction: 1.0,
                precise_angles: true,
            },
            x,
            vec![],
        );
        let fig = spectrum(&c).unwrap();
        assert_eq!(fig.charts.len(), 2);
        assert!(fig.readouts[0].contains("1.155e-4"), "{:?}", fig.readouts);
        assert!(fig.readouts[1].contains("54410"), "{:?}", fig.readouts);
    }
}
