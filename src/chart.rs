//! Chart descriptions: plain data, no UI.
//!
//! A [`Chart`] says *what* to draw (grouped bars, lines or a heatmap, with a title, axis labels and
//! named series); a renderer decides *how*. The app draws charts with egui_plot
//! (`src/ui/plots.rs`); a later export feature can draw the same description with another backend
//! (e.g. plotters), which is why nothing here depends on egui.
//!
//! Values are kept exactly as the engines produced them, NaN and ±inf included: the softmax lesson's
//! "break it" step shows naive f16 softmax overflowing, and a renderer must show those values, not
//! drop them. [`Special`] classifies a value, [`format_value`] writes it for a label, and
//! [`Chart::finite_range`] gives the range of the finite values (what an axis can show).

use crate::compare::Comparison;
use crate::engine::EngineKind;
pub use crate::format::{Special, format_significant, format_value};
use serde::Serialize;
use thiserror::Error;

/// A chart: a title, axis labels and what to draw.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Chart {
    /// Shown above the chart. May be empty.
    pub title: String,
    /// The x axis label, with its unit, e.g. "class j". For a heatmap: what the columns are.
    pub x_label: String,
    /// The y axis label, with its unit, e.g. "probability y_j". For a heatmap: what the rows are.
    pub y_label: String,
    pub kind: ChartKind,
    /// One unit on x is as long as one unit on y (circles stay round: RoPE's rotating pairs).
    pub equal_aspect: bool,
}

/// What a chart draws.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum ChartKind {
    /// Grouped bars: one group per category, one bar per series in each group.
    /// Every series has one value per category.
    Bars {
        categories: Vec<String>,
        series: Vec<Series>,
    },
    /// Lines through (x, y) points, one line per series.
    Lines { series: Vec<LineSeries> },
    /// A `rows` x `cols` grid of values, row-major (`values[r * cols + c]`), row 0 at the top.
    Heatmap {
        rows: usize,
        cols: usize,
        values: Vec<f64>,
        /// What the colour means, with its unit, e.g. "<R_m q, R_n k>". Shown on the colour scale.
        value_label: String,
    },
}

/// One bar series: a value per category.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Series {
    /// Shown in the legend, e.g. "CUDA f16".
    pub name: String,
    pub values: Vec<f64>,
    pub role: SeriesRole,
}

/// One line series: (x, y) points, drawn in order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LineSeries {
    /// Shown in the legend.
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub role: SeriesRole,
    /// Draw the points unconnected (a scatter), not as a line.
    pub points_only: bool,
}

impl LineSeries {
    /// A line through `points`.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>, role: SeriesRole) -> Self {
        LineSeries {
            name: name.into(),
            points,
            role,
            points_only: false,
        }
    }

    /// Unconnected points (always drawn with markers).
    pub fn scatter(name: impl Into<String>, points: Vec<(f64, f64)>, role: SeriesRole) -> Self {
        LineSeries {
            name: name.into(),
            points,
            role,
            points_only: true,
        }
    }
}

/// What a series is, so that a renderer can take its colour (and line style) from the theme:
/// the same engine has the same colour in every chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum SeriesRole {
    /// A result computed by an engine.
    Engine(EngineKind),
    /// The f64 CPU reference.
    Reference,
    /// The op's input (e.g. the logits).
    Input,
    /// Anything else; the number picks a colour from the theme's extra palette.
    Other(usize),
}

/// How many values of a chart are not finite.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NonFiniteCounts {
    pub nan: usize,
    pub pos_inf: usize,
    pub neg_inf: usize,
}

impl NonFiniteCounts {
    pub fn count(values: impl IntoIterator<Item = f64>) -> Self {
        let mut counts = Self::default();
        for v in values {
            match Special::of(v) {
                Some(Special::Nan) => counts.nan += 1,
                Some(Special::PosInf) => counts.pos_inf += 1,
                Some(Special::NegInf) => counts.neg_inf += 1,
                None => {}
            }
        }
        counts
    }

    pub fn total(&self) -> usize {
        self.nan + self.pos_inf + self.neg_inf
    }

    /// E.g. "1 NaN, 2 +inf"; empty when every value is finite.
    pub fn summary(&self) -> String {
        [
            (self.nan, Special::Nan),
            (self.pos_inf, Special::PosInf),
            (self.neg_inf, Special::NegInf),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, s)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// Why a chart description cannot be drawn as it is.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ChartError {
    #[error("series \"{series}\" has {got} values for {expected} categories")]
    SeriesLength {
        series: String,
        got: usize,
        expected: usize,
    },
    #[error("heatmap of {rows} x {cols} needs {} values, got {got}", rows * cols)]
    HeatmapSize {
        rows: usize,
        cols: usize,
        got: usize,
    },
}

impl Chart {
    /// Grouped bars, with empty axis labels (set them with [`Chart::with_labels`]).
    pub fn bars(title: impl Into<String>, categories: Vec<String>, series: Vec<Series>) -> Self {
        Self {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            kind: ChartKind::Bars { categories, series },
            equal_aspect: false,
        }
    }

    /// Lines, with empty axis labels (set them with [`Chart::with_labels`]).
    pub fn lines(title: impl Into<String>, series: Vec<LineSeries>) -> Self {
        Self {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            kind: ChartKind::Lines { series },
            equal_aspect: false,
        }
    }

    /// A heatmap of `rows` x `cols` row-major values; `x_label` names the columns and `y_label` the
    /// rows (set them with [`Chart::with_labels`]).
    pub fn heatmap(
        title: impl Into<String>,
        rows: usize,
        cols: usize,
        values: Vec<f64>,
        value_label: impl Into<String>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            kind: ChartKind::Heatmap {
                rows,
                cols,
                values,
                value_label: value_label.into(),
            },
            equal_aspect: false,
        }
    }

    /// Sets the axis labels (give units: "temperature T", "max rel error (log10)").
    pub fn with_labels(mut self, x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        self.x_label = x_label.into();
        self.y_label = y_label.into();
        self
    }

    /// Checks that the shapes agree (a value per category, rows * cols heatmap values).
    pub fn validate(&self) -> Result<(), ChartError> {
        match &self.kind {
            ChartKind::Bars { categories, series } => {
                for s in series {
                    if s.values.len() != categories.len() {
                        return Err(ChartError::SeriesLength {
                            series: s.name.clone(),
                            got: s.values.len(),
                            expected: categories.len(),
                        });
                    }
                }
                Ok(())
            }
            ChartKind::Lines { .. } => Ok(()),
            ChartKind::Heatmap {
                rows, cols, values, ..
            } => {
                if rows.checked_mul(*cols) == Some(values.len()) {
                    Ok(())
                } else {
                    Err(ChartError::HeatmapSize {
                        rows: *rows,
                        cols: *cols,
                        got: values.len(),
                    })
                }
            }
        }
    }

    /// Every value on the value axis: bar heights, line y values, heatmap cells.
    pub fn values(&self) -> Box<dyn Iterator<Item = f64> + '_> {
        match &self.kind {
            ChartKind::Bars { series, .. } => {
                Box::new(series.iter().flat_map(|s| s.values.iter().copied()))
            }
            ChartKind::Lines { series } => {
                Box::new(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)))
            }
            ChartKind::Heatmap { values, .. } => Box::new(values.iter().copied()),
        }
    }

    /// The smallest and largest finite value (see [`Chart::values`]), or `None` if there is none.
    /// NaN and ±inf are skipped: they have no place on an axis, and a renderer marks them instead.
    pub fn finite_range(&self) -> Option<(f64, f64)> {
        finite_range(self.values())
    }

    /// How many values (see [`Chart::values`]) are NaN, +inf or -inf.
    pub fn non_finite(&self) -> NonFiniteCounts {
        NonFiniteCounts::count(self.values())
    }
}

/// Charts of an op cell's results: what the app draws and an export will draw the same way.
impl Chart {
    /// Bars of an engine's first output row.
    pub fn engine_bars(kind: EngineKind, values: &[f32], result: &Comparison) -> Chart {
        let name = kind.display_name();
        let (rows, cols) = output_grid(result);
        let cols = cols.max(1);
        let row: Vec<f64> = values
            .iter()
            .take(cols.min(256))
            .map(|&v| v as f64)
            .collect();
        // The column header already names the engine; a title only says which row is drawn.
        let title = if rows > 1 {
            format!("row 1 of {rows}")
        } else {
            String::new()
        };
        Chart {
            title,
            x_label: "index i".into(),
            y_label: format!("{} (y_i)", result.request.op.kind().name()),
            kind: ChartKind::Bars {
                categories: (0..row.len()).map(|i| i.to_string()).collect(),
                series: vec![Series {
                    name: name.to_string(),
                    values: row,
                    role: SeriesRole::Engine(kind),
                }],
            },
            equal_aspect: false,
        }
    }

    pub fn engine_heatmap(values: &[f32], result: &Comparison) -> Chart {
        let (rows, cols) = output_grid(result);
        Chart {
            title: String::new(),
            x_label: "column".into(),
            y_label: "row".into(),
            kind: ChartKind::Heatmap {
                rows,
                cols,
                values: values.iter().map(|&v| v as f64).collect(),
                value_label: result.request.op.kind().name().to_string(),
            },
            equal_aspect: false,
        }
    }

    /// The op's output against its input (first row), reference and every engine that ran.
    pub fn comparison_lines(result: &Comparison) -> Chart {
        let cols = result.request.x.cols();
        let xs: Vec<f64> = result
            .request
            .x
            .data
            .iter()
            .take(cols)
            .map(|&v| v as f64)
            .collect();
        let mut series = vec![LineSeries {
            name: "f64 reference".into(),
            points: xs
                .iter()
                .zip(&result.reference)
                .map(|(&x, &y)| (x, y))
                .collect(),
            role: SeriesRole::Reference,
            points_only: false,
        }];
        for run in &result.runs {
            if let Ok((out, _)) = &run.result {
                series.push(LineSeries {
                    name: run.kind.display_name().into(),
                    points: xs
                        .iter()
                        .zip(&out.values)
                        .map(|(&x, &y)| (x, y as f64))
                        .collect(),
                    role: SeriesRole::Engine(run.kind),
                    points_only: false,
                });
            }
        }
        Chart {
            title: format!("{} over the input", result.request.op.kind().name()),
            x_label: "input x".into(),
            y_label: format!("{}(x)", result.request.op.kind().name()),
            kind: ChartKind::Lines { series },
            equal_aspect: false,
        }
    }
}

/// The main output as rows x cols (the last axis is the row), for bars and heatmaps.
fn output_grid(result: &Comparison) -> (usize, usize) {
    let shape = result.request.output_shape();
    let cols = shape.last().copied().unwrap_or(1);
    let rows = shape.iter().rev().skip(1).product();
    (rows, cols)
}

/// The smallest and largest finite value, or `None` if there is none.
pub fn finite_range(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(None, |range, v| match range {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(values: Vec<f64>) -> Chart {
        let categories = (0..values.len()).map(|i| i.to_string()).collect();
        Chart::bars(
            "t",
            categories,
            vec![Series {
                name: "cpu".into(),
                values,
                role: SeriesRole::Engine(EngineKind::Cpu),
            }],
        )
    }

    #[test]
    fn finite_range_skips_nan_and_inf() {
        let chart = bars(vec![
            0.5,
            f64::NAN,
            f64::INFINITY,
            -2.0,
            f64::NEG_INFINITY,
            3.0,
        ]);
        assert_eq!(chart.finite_range(), Some((-2.0, 3.0)));
        assert_eq!(
            chart.non_finite(),
            NonFiniteCounts {
                nan: 1,
                pos_inf: 1,
                neg_inf: 1
            }
        );
        assert_eq!(chart.non_finite().summary(), "1 NaN, 1 +inf, 1 -inf");
    }

    #[test]
    fn finite_range_of_nothing_finite_is_none() {
        assert_eq!(bars(vec![f64::NAN, f64::INFINITY]).finite_range(), None);
        assert_eq!(bars(vec![]).finite_range(), None);
        assert_eq!(bars(vec![1.0]).finite_range(), Some((1.0, 1.0)));
    }

    #[test]
    fn finite_range_of_lines_and_heatmaps() {
        let lines = Chart::lines(
            "l",
            vec![LineSeries {
                name: "a".into(),
                points: vec![(0.0, 1.0), (1.0, f64::NAN), (2.0, -1.0)],
                role: SeriesRole::Reference,
                points_only: false,
            }],
        );
        assert_eq!(lines.finite_range(), Some((-1.0, 1.0)));
        let heat = Chart::heatmap("h", 2, 2, vec![1.0, f64::NAN, 4.0, f64::NEG_INFINITY], "v");
        assert_eq!(heat.finite_range(), Some((1.0, 4.0)));
        assert_eq!(heat.non_finite().summary(), "1 NaN, 1 -inf");
    }

    #[test]
    fn validate_catches_shape_mismatches() {
        let mut chart = bars(vec![1.0, 2.0]);
        assert_eq!(chart.validate(), Ok(()));
        if let ChartKind::Bars { categories, .. } = &mut chart.kind {
            categories.push("extra".into());
        }
        assert!(matches!(
            chart.validate(),
            Err(ChartError::SeriesLength {
                got: 2,
                expected: 3,
                ..
            })
        ));
        let heat = Chart::heatmap("h", 2, 3, vec![0.0; 5], "v");
        assert_eq!(
            heat.validate(),
            Err(ChartError::HeatmapSize {
                rows: 2,
                cols: 3,
                got: 5
            })
        );
    }

    #[test]
    fn values_are_formatted_for_labels() {
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(0.123456), "0.1235");
        assert_eq!(format_value(1234.0), "1234");
        assert_eq!(format_value(65504.0), "65504");
        assert_eq!(format_value(1.5e5), "1.500e5");
        assert_eq!(format_value(3e-7), "3.000e-7");
        assert_eq!(format_value(-2.0), "-2");
    }

    #[test]
    fn cell_charts_come_from_a_comparison() {
        use crate::compare::compare_all;
        use crate::engine::Registry;
        use crate::ops::{Op, OpRequest, Tensor};
        let registry = Registry::probe_only(&[EngineKind::Cpu]);
        let x = Tensor::matrix(2, 3, vec![1.0, 2.0, 3.0, 0.0, 0.0, f32::INFINITY]).unwrap();
        let req = OpRequest::new(
            Op::new(crate::ops::softmax::SoftmaxOp::Softmax {
                temperature: 1.0,
                stable: true,
            }),
            crate::dtype::DType::F32,
            x,
        )
        .unwrap();
        let c = compare_all(&registry, req);
        let (out, _) = c.run(EngineKind::Cpu).unwrap().result.as_ref().unwrap();
        let bars = Chart::engine_bars(EngineKind::Cpu, &out.values, &c);
        assert_eq!(
            bars.title, "row 1 of 2",
            "only the first row is drawn as bars"
        );
        let ChartKind::Bars { categories, series } = &bars.kind else {
            panic!("bars")
        };
        assert_eq!(
            (categories.len(), series[0].role),
            (3, SeriesRole::Engine(EngineKind::Cpu))
        );
        let heat = Chart::engine_heatmap(&out.values, &c);
        assert_eq!(
            heat.non_finite().nan,
            3,
            "the +inf row is NaN and stays visible"
        );
        let ChartKind::Lines { series } = &Chart::comparison_lines(&c).kind else {
            panic!("lines")
        };
        // The reference and the one engine that ran; absent engines draw nothing.
        assert_eq!(series.len(), 2);
    }
}
