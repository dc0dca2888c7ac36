//! The Gumbel-softmax lesson's figures, built from a cell's [`Comparison`]:
//! - `histogram`: how often each class won (the argmax of every draw of logits row 1) on each
//!   engine, next to softmax(l), with Pearson's chi-square against chi²_{K−1}(0.999) and whether the
//!   engines chose the same class draw for draw;
//! - `soft_mean`: the mean soft sample next to softmax(l) and the argmax frequencies (they differ:
//!   E[y_soft] is pulled towards uniform; the argmax frequencies are softmax(l) at every τ);
//! - `soft_samples`: the first soft samples as a heatmap (one-hot-like at small τ, flat at large
//!   τ), with the mean of max_j y_soft;
//! - `straight_through`: one hard sample, its soft sample, the forward value
//!   y_hard − y_soft + y_soft (equal to y_hard) and the Jacobian ∂y_soft/∂l the backward pass uses;
//! - `noise_histogram`: gumbel_noise values binned against the Gumbel density e^−(g + e^−g), with
//!   the mean (Euler–Mascheroni γ) and variance (π²/6).
//!
//! Everything is computed from the request and the engines' outputs; nothing runs an engine.

use super::{Figure, ViewDef};
use crate::chart::{Chart, LineSeries, Series, SeriesRole, format_value};
use crate::compare::Comparison;
use crate::engine::{EngineKind, OpOutput};
use crate::ops::gumbel::{self as gm, GumbelOp};

pub(super) const VIEWS: &[ViewDef] = &[
    ViewDef {
        name: "histogram",
        ops: &[crate::ops::gumbel::GUMBEL_SOFTMAX],
        help: "how often each class won over the draws of logits row 1, per engine, next to softmax(l), with a chi-square test at the 0.999 level",
        build: histogram,
    },
    ViewDef {
        name: "soft_mean",
        ops: &[crate::ops::gumbel::GUMBEL_SOFTMAX],
        help: "the mean soft sample next to softmax(l) and the argmax frequencies (logits row 1)",
        build: soft_mean,
    },
    ViewDef {
        name: "soft_samples",
        ops: &[crate::ops::gumbel::GUMBEL_SOFTMAX],
        help: "the first soft samples of logits row 1 as a heatmap, and the mean of their largest entry",
        build: soft_samples,
    },
    ViewDef {
        name: "straight_through",
        ops: &[crate::ops::gumbel::GUMBEL_SOFTMAX],
        help: "hard mode: the first sample's one-hot, its soft sample, the forward value y_hard - y_soft + y_soft and the Jacobian of y_soft",
        build: straight_through,
    },
    ViewDef {
        name: "noise_histogram",
        ops: &[crate::ops::gumbel::GUMBEL_NOISE],
        help: "gumbel_noise values binned per engine against the Gumbel density, with mean and variance",
        build: noise_histogram,
    },
];

/// Most classes a bar view draws (more would be unreadable).
const MAX_CLASSES: usize = 64;

/// Most samples the heatmap shows.
const MAX_SAMPLES_SHOWN: usize = 40;

/// Euler–Mascheroni γ: the mean of the standard Gumbel distribution.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

fn gumbel_op(result: &Comparison) -> Result<&GumbelOp, String> {
    let op = &result.request.op;
    op.get::<GumbelOp>().ok_or_else(|| format!("this view draws Gumbel ops, not {}", op.kind()))
}

/// The engines that produced a result, in the UI's order.
fn outputs(result: &Comparison) -> Vec<(EngineKind, &OpOutput)> {
    result
        .runs
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|(out, _)| (r.kind, out)))
        .collect()
}

/// "CUDA, wgpu and CPU".
fn engine_list(kinds: &[EngineKind]) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.display_name()).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// What the views of gumbel_softmax need: K, the draws of logits row 1, softmax(l) of that row.
struct Samples {
    k: usize,
    draws: usize,
    rows: usize,
    tau: f64,
    hard: bool,
    probs: Vec<f64>,
}

fn samples(result: &Comparison) -> Result<Samples, String> {
    let op = gumbel_op(result)?;
    let GumbelOp::GumbelSoftmax {
        tau, hard, draws, ..
    } = *op
    else {
        return Err("this view draws gumbel_softmax".into());
    };
    let k = result.request.x.cols();
    if k == 0 || result.request.x.is_empty() {
        return Err("no classes to draw".into());
    }
    if k > MAX_CLASSES {
        return Err(format!(
            "{k} classes are too many to draw as bars (at most {MAX_CLASSES})"
        ));
    }
    let row: Vec<f64> = result.request.x.data[..k]
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    Ok(Samples {
        k,
        draws,
        rows: result.request.x.rows(),
        tau,
        hard,
        probs: gm::softmax_f64(&row),
    })
}

impl Samples {
    /// The values of the draws of logits row 1 (the first `draws` output rows).
    fn first_row<'a>(&self, values: &'a [f32]) -> &'a [f32] {
        &values[..(self.draws * self.k).min(values.len())]
    }

    /// The class of each draw: the argmax of the main output (the hot class of a one-hot, the
    /// largest entry of a soft sample; the first on ties).
    fn classes(&self, out: &OpOutput) -> Vec<usize> {
        self.first_row(&out.values)
            .chunks(self.k)
            .map(|row| {
                let mut best = 0;
                for (j, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = j;
                    }
                }
                best
            })
            .collect()
    }

    /// The soft samples: the aux output in hard mode, the main output otherwise.
    fn soft<'a>(&self, out: &'a OpOutput) -> Option<&'a [f32]> {
        if self.hard {
            out.aux(gm::SOFT_AUX).map(|a| self.first_row(&a.values))
        } else {
            Some(self.first_row(&out.values))
        }
    }

    fn categories(&self) -> Vec<String> {
        (0..self.k).map(|j| j.to_string()).collect()
    }

    fn row_note(&self) -> String {
        if self.rows > 1 {
            format!(" (logits row 1 of {})", self.rows)
        } else {
            String::new()
        }
    }
}

fn counts(classes: &[usize], k: usize) -> Vec<u64> {
    let mut c = vec![0u64; k];
    for &j in classes {
        c[j] += 1;
    }
    c
}

fn histogram(result: &Comparison) -> Result<Figure, String> {
    let s = samples(result)?;
    let runs = outputs(result);
    if runs.is_empty() {
        return Err("no engine produced a result".into());
    }
    let mut series = vec![Series {
        name: "softmax(l)".into(),
        values: s.probs.clone(),
        role: SeriesRole::Reference,
    }];
    let mut readouts = Vec::new();
    let critical = gm::chi_square_critical_999(s.k - 1);
    let mut all_classes = Vec::new();
    for (kind, out) in &runs {
        let classes = s.classes(out);
        let n = classes.len().max(1) as f64;
        let c = counts(&classes, s.k);
        let chi2 = gm::chi_square(&c, &s.probs);
        series.push(Series {
            name: format!("{} argmax frequency", kind.display_name()),
            values: c.iter().map(|&v| v as f64 / n).collect(),
            role: SeriesRole::Engine(*kind),
        });
        let verdict = if chi2 <= critical {
            "consistent with softmax(l)"
        } else {
            "beyond the critical value: not softmax(l) at the 0.999 level"
        };
        readouts.push(format!(
            "{}: χ² = {chi2:.2} over {} draws ({} dof; 0.999 critical value {critical:.2}): {verdict}",
            kind.display_name(),
            classes.len(),
            s.k - 1
        ));
        all_classes.push((*kind, classes));
    }
    if s.probs.iter().any(|&p| p * s.draws as f64 <= 5.0) {
        readouts.push(
            "some classes expect 5 draws or fewer: the chi-square approximation is rough there; add draws"
                .into(),
        );
    }
    if all_classes.len() > 1 {
        let (_, first) = &all_classes[0];
        let same = (0..first.len())
            .filter(|&i| all_classes.iter().all(|(_, c)| c.get(i) == first.get(i)))
            .count();
        let kinds: Vec<EngineKind> = all_classes.iter().map(|(k, _)| *k).collect();
        readouts.push(format!(
            "same seed, same sample: {} chose the same class in {same} of {} draws",
            engine_list(&kinds),
            first.len()
        ));
    }
    let chart = Chart::bars(
        format!("which class won, {} draws{}", s.draws, s.row_note()),
        s.categories(),
        series,
    )
    .with_labels("class j", "frequency");
    Ok(Figure {
        charts: vec![chart],
        readouts,
    })
}

fn soft_mean(result: &Comparison) -> Result<Figure, String> {
    let s = samples(result)?;
    let runs = outputs(result);
    let Some((kind, out)) = runs.first() else {
        return Err("no engine produced a result".into());
    };
    let soft = s
        .soft(out)
        .ok_or_else(|| "the engine returned no soft sample: turn return_soft on".to_string())?;
    let n = soft.len() / s.k;
    let mut mean = vec![0.0f64; s.k];
    for row in soft.chunks(s.k) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    for m in &mut mean {
        *m /= n.max(1) as f64;
    }
    let c = counts(&s.classes(out), s.k);
    let freq: Vec<f64> = c.iter().map(|&v| v as f64 / n.max(1) as f64).collect();
    let top = (0..s.k)
        .max_by(|&a, &b| s.probs[a].total_cmp(&s.probs[b]))
        .unwrap_or(0);
    let gap: f64 = mean.iter().zip(&s.probs).map(|(a, b)| (a - b).abs()).sum();
    let readouts = vec![
        format!(
            "class {top}: softmax(l) = {} · argmax frequency = {} · mean soft sample = {} (τ = {}, {n} draws, {})",
            format_value(s.probs[top]),
            format_value(freq[top]),
            format_value(mean[top]),
            format_value(s.tau),
            kind.display_name()
        ),
        format!(
            "Σ_j |E[y_soft]_j − softmax(l)_j| = {}: the mean soft sample is pulled towards uniform (1/K = {}); the argmax frequencies are not",
            format_value(gap),
            format_value(1.0 / s.k as f64)
        ),
    ];
    let chart = Chart::bars(
        format!(
            "{n} draws ({}){}, τ = {}",
            kind.display_name(),
            s.row_note(),
            format_value(s.tau)
        ),
        s.categories(),
        vec![
            Series {
                name: "softmax(l)".into(),
                values: s.probs.clone(),
                role: SeriesRole::Reference,
            },
            Series {
                name: "argmax frequency".into(),
                values: freq,
                role: SeriesRole::Other(0),
            },
            Series {
                name: "mean soft sample E[y_soft]".into(),
                values: mean,
                role: SeriesRole::Other(1),
            },
        ],
    )
    .with_labels("class j", "probability");
    Ok(Figure {
        charts: vec![chart],
        readouts,
    })
}

fn soft_samples(result: &Comparison) -> Result<Figure, String> {
    let s = samples(result)?;
    let runs = outputs(result);
    let Some((kind, out)) = runs.first() else {
        return Err("no engine produced a result".into());
    };
    let soft = s
        .soft(out)
        .ok_or_else(|| "the engine returned no soft sample: turn return_soft on".to_string())?;
    let n = soft.len() / s.k;
    let shown = n.min(MAX_SAMPLES_SHOWN);
    let values: Vec<f64> = soft[..shown * s.k].iter().map(|&v| f64::from(v)).collect();
    let mean_max = soft
        .chunks(s.k)
        .map(|row| row.iter().fold(0.0f32, |a, &b| a.max(b)) as f64)
        .sum::<f64>()
        / n.max(1) as f64;
    let chart = Chart::heatmap(
        format!(
            "the first {shown} soft samples ({}), τ = {}",
            kind.display_name(),
            format_value(s.tau)
        ),
        shown,
        s.k,
        values,
        "y_soft",
    )
    .with_labels("class j", "draw");
    Ok(Figure {
        charts: vec![chart],
        readouts: vec![format!(
            "mean of max_j y_soft over {n} draws: {} (1 = one-hot; 1/K = {} = uniform)",
            format_value(mean_max),
            format_value(1.0 / s.k as f64)
        )],
    })
}

fn straight_through(result: &Comparison) -> Result<Figure, String> {
    let s = samples(result)?;
    if !s.hard {
        return Err(
            "turn hard on: the straight-through estimator starts from a hard sample".into(),
        );
    }
    let runs = outputs(result);
    let Some((kind, out)) = runs.first() else {
        return Err("no engine produced a result".into());
    };
    let soft = s
        .soft(out)
        .ok_or_else(|| "the engine returned no soft sample: turn return_soft on".to_string())?;
    let hard = &out.values[..s.k];
    let soft = &soft[..s.k];
    // The forward value, in f32 as a framework computes it.
    let forward: Vec<f32> = hard.iter().zip(soft).map(|(&h, &y)| (h - y) + y).collect();
    let exact = forward
        .iter()
        .zip(hard)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    // ∂y_i/∂l_j = y_i (δ_ij − y_j) / τ.
    let y: Vec<f64> = soft.iter().map(|&v| f64::from(v)).collect();
    let mut jacobian = Vec::with_capacity(s.k * s.k);
    for i in 0..s.k {
        for j in 0..s.k {
            let delta = if i == j { 1.0 } else { 0.0 };
            jacobian.push(y[i] * (delta - y[j]) / s.tau);
        }
    }
    let largest = jacobian.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    let bars = Chart::bars(
        format!("draw 1 ({})", kind.display_name()),
        s.categories(),
        vec![
            Series {
                name: "y_hard (forward)".into(),
                values: hard.iter().map(|&v| f64::from(v)).collect(),
                role: SeriesRole::Other(0),
            },
            Series {
                name: "y_soft (backward)".into(),
                values: y.clone(),
                role: SeriesRole::Other(1),
            },
        ],
    )
    .with_labels("class j", "value");
    let heat = Chart::heatmap(
        "∂y_soft,i / ∂l_j = y_i (δ_ij − y_j) / τ",
        s.k,
        s.k,
        jacobian,
        "∂y_i/∂l_j",
    )
    .with_labels("logit j", "output i");
    let shown: Vec<String> = forward
        .iter()
        .map(|&v| format_value(f64::from(v)))
        .collect();
    Ok(Figure {
        charts: vec![bars, heat],
        readouts: vec![
            format!(
                "forward: y_hard − y_soft + y_soft = [{}]: {} y_hard, bit for bit",
                shown.join(", "),
                if exact { "equal to" } else { "NOT equal to" }
            ),
            format!(
                "backward: the gradient is the soft sample's; largest |∂y_i/∂l_j| = {} at τ = {} (it grows like 1/τ where y is not yet one-hot, and vanishes where it is)",
                format_value(largest),
                format_value(s.tau)
            ),
        ],
    })
}

fn noise_histogram(result: &Comparison) -> Result<Figure, String> {
    gumbel_op(result)?;
    let runs = outputs(result);
    if runs.is_empty() {
        return Err("no engine produced a result".into());
    }
    const LO: f64 = -3.0;
    const HI: f64 = 10.0;
    const WIDTH: f64 = 0.25;
    let bins = ((HI - LO) / WIDTH) as usize;
    let centre = |b: usize| LO + (b as f64 + 0.5) * WIDTH;
    let density: Vec<(f64, f64)> = (0..=200)
        .map(|i| {
            let g = LO + (HI - LO) * i as f64 / 200.0;
            (g, (-(g + (-g).exp())).exp())
        })
        .collect();
    let mut series = vec![LineSeries::line(
        "Gumbel density e^−(g + e^−g)",
        density,
        SeriesRole::Reference,
    )];
    let mut readouts = Vec::new();
    for (kind, out) in &runs {
        let n = out.values.len();
        if n == 0 {
            continue;
        }
        let mut hist = vec![0u64; bins];
        let mut outside = 0usize;
        let (mut sum, mut sum2) = (0.0f64, 0.0f64);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &v in &out.values {
            let g = f64::from(v);
            sum += g;
            sum2 += g * g;
            lo = lo.min(g);
            hi = hi.max(g);
            let b = ((g - LO) / WIDTH).floor();
            if b >= 0.0 && (b as usize) < bins {
                hist[b as usize] += 1;
            } else {
                outside += 1;
            }
        }
        let mean = sum / n as f64;
        let var = (sum2 / n as f64 - mean * mean).max(0.0);
        series.push(LineSeries::scatter(
            kind.display_name(),
            hist.iter()
                .enumerate()
                .map(|(b, &c)| (centre(b), c as f64 / (n as f64 * WIDTH)))
                .collect(),
            SeriesRole::Engine(*kind),
        ));
        let beyond = if outside > 0 {
            format!(", {outside} outside the plot")
        } else {
            String::new()
        };
        readouts.push(format!(
            "{}: {n} values, mean {} (γ = {}), variance {} (π²/6 = {}), from {} to {}{beyond}",
            kind.display_name(),
            format_value(mean),
            format_value(EULER_GAMMA),
            format_value(var),
            format_value(std::f64::consts::PI.powi(2) / 6.0),
            format_value(lo),
            format_value(hi)
        ));
    }
    if runs.len() > 1 {
        let first = &runs[0].1.values;
        let same = runs.iter().all(|(_, o)| {
            o.values.len() == first.len()
                && o.values
                    .iter()
                    .zip(first)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
        });
        let kinds: Vec<EngineKind> = runs.iter().map(|(k, _)| *k).collect();
        readouts.push(if same {
            format!(
                "{} drew the same {} values, bit for bit",
                engine_list(&kinds),
                first.len()
            )
        } else {
            format!("{} drew different values", engine_list(&kinds))
        });
    }
    let chart = Chart::lines("Gumbel noise: histogram against the density", series)
        .with_labels("g = −ln(−ln U)", "density");
    Ok(Figure {
        charts: vec![chart],
        readouts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Op;
    use crate::compare::compare_all;
    use crate::dtype::DType;
    use crate::engine::Registry;
    use crate::ops::{OpRequest, Tensor};

    fn cpu_comparison(op: GumbelOp, x: Tensor) -> Comparison {
        let registry = Registry::probe_only(&[EngineKind::Cpu]);
        compare_all(
            &registry,
            OpRequest::new(Op::new(op), DType::F32, x).unwrap(),
        )
    }

    fn softmax_op(hard: bool, draws: usize) -> GumbelOp {
        GumbelOp::GumbelSoftmax {
            tau: 1.0,
            hard,
            return_soft: true,
            seed: 3,
            offset: 0,
            draws,
        }
    }

    #[test]
    fn histogram_passes_chi_square_and_reads_out() {
        let x = Tensor::row(vec![
            2.484_906_6,
            1.386_294_4,
            std::f32::consts::LN_2,
            0.0,
            0.0,
        ]);
        let c = cpu_comparison(softmax_op(true, 20_000), x);
        let f = histogram(&c).unwrap();
        assert_eq!(f.charts.len(), 1);
        f.charts[0].validate().unwrap();
        assert!(
            f.readouts[0].contains("consistent with softmax(l)"),
            "{:?}",
            f.readouts
        );
        assert!(f.readouts[0].contains("18.47"), "{:?}", f.readouts);
        let m = soft_mean(&c).unwrap();
        assert!(
            m.readouts[0].contains("class 0: softmax(l) = 0.6"),
            "{:?}",
            m.readouts
        );
        let st = straight_through(&c).unwrap();
        assert!(
            st.readouts[0].contains("equal to y_hard"),
            "{:?}",
            st.readouts
        );
        for chart in &st.charts {
            chart.validate().unwrap();
        }
        soft_samples(&c).unwrap().charts[0].validate().unwrap();
    }

    #[test]
    fn views_refuse_what_they_cannot_draw() {
        let c = cpu_comparison(softmax_op(false, 5), Tensor::row(vec![0.0; 3]));
        assert!(straight_through(&c).unwrap_err().contains("hard"));
        let c = cpu_comparison(softmax_op(false, 1), Tensor::row(vec![0.0; 100]));
        assert!(histogram(&c).unwrap_err().contains("too many"));
        let noise = cpu_comparison(
            GumbelOp::GumbelNoise { seed: 1, offset: 0 },
            Tensor::row(vec![0.0; 5000]),
        );
        assert!(histogram(&noise).is_err());
        let f = noise_histogram(&noise).unwrap();
        assert!(f.readouts[0].contains("5000 values"), "{:?}", f.readouts);
    }
}
