//! Draws a [`Chart`] (plain data from `src/chart.rs`) with egui_plot, in the theme's colours and sizes.
//!
//! * Grouped bars: one group per category (labels on the x axis), one bar per series, coloured by
//!   role (the same engine has the same colour everywhere).
//! * Lines: one line per series; the reference is dashed and each engine has its own marker
//!   shape, so colour is not the only way to tell them apart.
//! * Heatmaps: one texture (cached by a hash of the data, never one shape per cell), a viridis colour
//!   scale with its min and max, NaN cells in a grey outside the colormap.
//!
//! Non-finite values are shown, never dropped: a NaN bar is a hollow marker at the baseline with a
//! "NaN" label, a +inf bar runs to the top of the plot, hatched and labelled "+inf" (-inf likewise,
//! downwards), and a line marks its NaN/inf points at the plot's edge with labels. Every chart says
//! below it how many values were not finite, in words.
//!
//! Pan and zoom are off (they fight the page's scrolling); a double-click resets the view.
//! The legend sits above the plot, outside the data, so it never hides a bar.

pub use super::colormap::{heatmap_color, viridis};
use crate::chart::{
    Chart, ChartKind, LineSeries, NonFiniteCounts, Series, SeriesRole, Special, format_value,
};
use crate::engine::EngineKind;
use crate::ui::layout::{text_width, wrap_unless_fits};
use crate::ui::theme::Theme;
use egui::{
    Align2, Color32, ColorImage, Id, Pos2, Rangef, Rect, Response, RichText, Role, Sense, Shape,
    Stroke, StrokeKind, TextureHandle, TextureOptions, Ui, Vec2, WidgetInfo, pos2, vec2,
};
use egui_plot::{
    Axis, AxisHints, Bar, BarChart, GridInput, GridMark, HoverPosition, Line, LineStyle,
    MarkerShape, Plot, PlotImage, PlotPoint, PlotPoints, PlotTransform, Points,
};
use std::hash::{DefaultHasher, Hash, Hasher};

/// Draws `chart` at the full available width. `id` must be unique among the charts on screen and
/// stable across frames (e.g. `("softmax-cell", 3)`).
///
/// The returned response is the plot's; its AccessKit label is a one-line summary of the chart.
pub fn chart_ui(ui: &mut Ui, id: impl Hash, chart: &Chart, theme: &Theme) -> Response {
    let id = persistent_id(ui, id);
    ui.vertical(|ui| {
        if !chart.title.is_empty() {
            ui.label(
                RichText::new(&chart.title)
                    .size(theme.text_body)
                    .strong()
                    .color(theme.text),
            );
        }
        if let Err(err) = chart.validate() {
            return ui.label(
                RichText::new(format!(
                    "{} cannot draw this chart: {err}",
                    Theme::WARNING_GLYPH
                ))
                .color(theme.warning),
            );
        }
        let response = match &chart.kind {
            ChartKind::Bars { categories, series } => {
                bars_ui(ui, id, chart, categories, series, theme)
            }
            ChartKind::Lines { series } => lines_ui(ui, id, chart, series, theme),
            ChartKind::Heatmap {
                rows,
                cols,
                values,
                value_label,
            } => heatmap_ui(ui, id, chart, (*rows, *cols), values, value_label, theme),
        };
        let summary = summary(chart);
        response.widget_info(|| WidgetInfo::labeled(Role::Image, true, &summary));
        non_finite_note_ui(ui, chart.non_finite(), theme);
        response
    })
    .inner
}

/// A one-line description of a chart, for screen readers (the AccessKit label of the plot).
pub fn summary(chart: &Chart) -> String {
    let what = match &chart.kind {
        ChartKind::Bars { categories, series } => format!(
            "bar chart, {} categories, series: {}",
            categories.len(),
            series
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ChartKind::Lines { series } => format!(
            "line chart, series: {}",
            series
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ChartKind::Heatmap {
            rows,
            cols,
            value_label,
            ..
        } => format!("heatmap, {rows} rows x {cols} columns of {value_label}"),
    };
    let range = match chart.finite_range() {
        Some((lo, hi)) => format!("values from {} to {}", format_value(lo), format_value(hi)),
        None => "no finite values".to_owned(),
    };
    let non_finite = chart.non_finite();
    let mut text = format!("{}: {what}; {range}", chart.title);
    if non_finite.total() > 0 {
        text.push_str(&format!("; not finite: {}", non_finite.summary()));
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Bars
// ---------------------------------------------------------------------------------------------

/// A non-finite value to mark on top of the plot, after egui_plot has drawn it.
struct SpecialMark {
    /// Centre of the bar (bars) or the point's x (lines), in plot coordinates.
    x: f64,
    /// Half the bar width in plot coordinates (0 for lines).
    half_width: f64,
    special: Special,
    color: Color32,
}

fn bars_ui(
    ui: &mut Ui,
    id: Id,
    chart: &Chart,
    categories: &[String],
    series: &[Series],
    theme: &Theme,
) -> Response {
    // One engine's bars sit under the column header that names that engine: a key with one
    // swatch would only repeat it.
    let header_names_it = matches!(series, [one] if matches!(one.role, SeriesRole::Engine(_)));
    if !header_names_it {
        legend_ui(
            ui,
            series.iter().map(|s| (s.name.as_str(), s.role)),
            LegendKind::Swatch,
            theme,
        );
    }

    // y range: the finite values and the baseline; room above (below) for +inf (-inf) bars.
    let (lo, hi) = chart.finite_range().unwrap_or((0.0, 1.0));
    let (lo, mut hi) = (lo.min(0.0), hi.max(0.0));
    if hi <= lo {
        hi = lo + 1.0;
    }
    let counts = chart.non_finite();
    let span = hi - lo;
    let top = if counts.pos_inf > 0 {
        hi + 0.15 * span
    } else {
        hi
    };
    let bottom = if counts.neg_inf > 0 {
        lo - 0.15 * span
    } else {
        lo
    };

    let n = series.len().max(1) as f64;
    let slot = 0.8 / n;
    let bar_width = slot * 0.85;
    let bar_x = |category: usize, s: usize| category as f64 - 0.4 + slot * (s as f64 + 0.5);

    let mut marks = Vec::new();
    let mut charts = Vec::new();
    for (s, ser) in series.iter().enumerate() {
        let color = theme.series_color(ser.role);
        let mut bars = Vec::new();
        for (c, (&v, category)) in ser.values.iter().zip(categories).enumerate() {
            let x = bar_x(c, s);
            let name = format!("{} · {category}: {}", ser.name, format_value(v));
            let bar = match Special::of(v) {
                None => Bar::new(x, v).fill(color),
                Some(special) => {
                    marks.push(SpecialMark {
                        x,
                        half_width: bar_width / 2.0,
                        special,
                        color,
                    });
                    match special {
                        Special::Nan => continue,
                        Special::PosInf => Bar::new(x, top).fill(color.gamma_multiply(0.25)),
                        Special::NegInf => Bar::new(x, bottom).fill(color.gamma_multiply(0.25)),
                    }
                }
            };
            bars.push(
                bar.width(bar_width)
                    .stroke(Stroke::new(theme.line_width * 0.5, color))
                    .name(name),
            );
        }
        charts.push(
            BarChart::new(ser.name.clone(), bars)
                .color(color)
                .id(("bars", s))
                .element_formatter(Box::new(|bar, _| bar.name.clone())),
        );
    }

    let y_on_axis = y_title_ui(ui, chart, theme, theme.plot_height);
    let response = base_plot(id, chart, theme, theme.plot_height, y_on_axis)
        .include_x(-0.5)
        .include_x(categories.len() as f64 - 0.5)
        .include_y(bottom)
        .include_y(top)
        .show_grid([false, true])
        .x_grid_spacer(|input: GridInput| {
            let first = input.bounds.0.ceil() as i64;
            let last = input.bounds.1.floor() as i64;
            (first..=last)
                .map(|i| GridMark {
                    value: i as f64,
                    step_size: 1.0,
                })
                .collect()
        })
        .custom_x_axes(vec![
            axis_hints(Axis::X, &chart.x_label, theme)
                .label_spacing(Rangef::new(0.0, 1.0))
                .formatter(move |mark, _| category_label(categories, mark.value)),
        ])
        .show(ui, |plot_ui| {
            for bar_chart in charts {
                plot_ui.bar_chart(bar_chart);
            }
        });

    let painter = ui.painter_at(*response.transform.frame());
    for mark in &marks {
        paint_bar_mark(&painter, &response.transform, mark, (bottom, top), theme);
    }
    response.response
}

/// The category name for an integer x, nothing between categories.
fn category_label(categories: &[String], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    categories.get(i as usize).cloned().unwrap_or_default()
}

/// A NaN bar: a hollow diamond at the baseline under a "NaN" label. An infinite bar: hatching over
/// the full-height bar and a label at its end.
fn paint_bar_mark(
    painter: &egui::Painter,
    transform: &PlotTransform,
    mark: &SpecialMark,
    (bottom, top): (f64, f64),
    theme: &Theme,
) {
    let stroke = Stroke::new(theme.line_width, mark.color);
    match mark.special {
        Special::Nan => {
            let base = transform.position_from_point(&PlotPoint::new(mark.x, 0.0));
            let r = theme.marker_radius * 1.6;
            let diamond = vec![
                base + vec2(0.0, -2.0 * r),
                base + vec2(r, -r),
                base,
                base + vec2(-r, -r),
            ];
            painter.add(Shape::convex_polygon(
                diamond,
                theme.plot_background,
                stroke,
            ));
            label_pill(
                painter,
                base + vec2(0.0, -2.0 * r - 2.0),
                Align2::CENTER_BOTTOM,
                Special::Nan.label(),
                mark.color,
                theme,
            );
        }
        Special::PosInf | Special::NegInf => {
            let end = if mark.special == Special::PosInf {
                top
            } else {
                bottom
            };
            let rect = transform.rect_from_values(
                &PlotPoint::new(mark.x - mark.half_width, 0.0),
                &PlotPoint::new(mark.x + mark.half_width, end),
            );
            hatch(
                painter,
                rect,
                Stroke::new(theme.line_width * 0.75, mark.color),
            );
            let (pos, anchor) = if mark.special == Special::PosInf {
                (rect.center_top() + vec2(0.0, 2.0), Align2::CENTER_TOP)
            } else {
                (rect.center_bottom() - vec2(0.0, 2.0), Align2::CENTER_BOTTOM)
            };
            label_pill(
                painter,
                pos,
                anchor,
                mark.special.label(),
                mark.color,
                theme,
            );
        }
    }
}

/// Diagonal lines across `rect`, clipped to it.
fn hatch(painter: &egui::Painter, rect: Rect, stroke: Stroke) {
    let painter = painter.with_clip_rect(rect.intersect(painter.clip_rect()));
    let step = (stroke.width * 4.0).max(6.0);
    let mut x = rect.left() - rect.height();
    while x < rect.right() {
        painter.line_segment(
            [pos2(x, rect.bottom()), pos2(x + rect.height(), rect.top())],
            stroke,
        );
        x += step;
    }
}

/// Small text on the plot background with a border in the series colour, readable over anything.
fn label_pill(
    painter: &egui::Painter,
    pos: Pos2,
    anchor: Align2,
    text: &str,
    border: Color32,
    theme: &Theme,
) {
    let galley = painter.layout_no_wrap(text.to_owned(), theme.small_font(), theme.text);
    let pad = vec2(theme.text_small * 0.25, 0.0);
    let rect = anchor.anchor_size(pos, galley.size() + 2.0 * pad);
    painter.rect(
        rect,
        2.0,
        theme.plot_background,
        Stroke::new((theme.line_width * 0.5).max(1.0), border),
        StrokeKind::Inside,
    );
    painter.galley(rect.min + pad, galley, theme.text);
}

// ---------------------------------------------------------------------------------------------
// Lines
// ---------------------------------------------------------------------------------------------

/// Markers are drawn on lines with at most this many points (beyond, they are clutter).
const MAX_POINTS_WITH_MARKERS: usize = 48;

fn marker_shape(role: SeriesRole) -> Option<MarkerShape> {
    match role {
        SeriesRole::Engine(EngineKind::Cuda) => Some(MarkerShape::Circle),
        SeriesRole::Engine(EngineKind::Wgpu) => Some(MarkerShape::Square),
        SeriesRole::Engine(EngineKind::Cpu) => Some(MarkerShape::Diamond),
        SeriesRole::Reference => None,
        SeriesRole::Input => Some(MarkerShape::Plus),
        SeriesRole::Other(_) => Some(MarkerShape::Up),
    }
}

fn line_style(role: SeriesRole) -> LineStyle {
    match role {
        SeriesRole::Reference => LineStyle::Dashed { length: 10.0 },
        _ => LineStyle::Solid,
    }
}

fn lines_ui(ui: &mut Ui, id: Id, chart: &Chart, series: &[LineSeries], theme: &Theme) -> Response {
    legend_ui(
        ui,
        series.iter().map(|s| (s.name.as_str(), s.role)),
        LegendKind::Line,
        theme,
    );
    let mut marks = Vec::new();
    let mut lines = Vec::new();
    let mut points = Vec::new();
    for (s, ser) in series.iter().enumerate() {
        let color = theme.series_color(ser.role);
        // Split at non-finite values: a line cannot pass through NaN or inf.
        let mut segment: Vec<[f64; 2]> = Vec::new();
        let mut segments = Vec::new();
        for &(x, y) in &ser.points {
            match Special::of(y) {
                None if x.is_finite() => segment.push([x, y]),
                None => {}
                Some(special) => {
                    if x.is_finite() {
                        marks.push(SpecialMark {
                            x,
                            half_width: 0.0,
                            special,
                            color,
                        });
                    }
                    segments.push(std::mem::take(&mut segment));
                }
            }
        }
        segments.push(segment);
        let finite: Vec<[f64; 2]> = segments.iter().flatten().copied().collect();
        for (k, seg) in segments.into_iter().enumerate() {
            if seg.is_empty() || ser.points_only {
                continue;
            }
            lines.push(
                Line::new(ser.name.clone(), PlotPoints::from(seg))
                    .id(("line", s, k))
                    .color(color)
                    .width(theme.line_width)
                    .style(line_style(ser.role)),
            );
        }
        let shape = marker_shape(ser.role).or(ser.points_only.then_some(MarkerShape::Circle));
        if let Some(shape) = shape
            && (ser.points_only || finite.len() <= MAX_POINTS_WITH_MARKERS)
        {
            points.push(
                Points::new(ser.name.clone(), PlotPoints::from(finite))
                    .id(("points", s))
                    .shape(shape)
                    .color(color)
                    .filled(true)
                    .radius(theme.marker_radius),
            );
        }
    }
    // Room at the edges for the NaN/inf markers, so they do not sit on the data.
    let (lo, hi) = chart.finite_range().unwrap_or((0.0, 1.0));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let has = |special: Special| marks.iter().any(|m| m.special == special);
    let top = if has(Special::PosInf) {
        hi + 0.2 * span
    } else {
        hi
    };
    let bottom = if has(Special::Nan) || has(Special::NegInf) {
        lo - 0.2 * span
    } else {
        lo
    };

    let y_on_axis = y_title_ui(ui, chart, theme, theme.plot_height);
    let response = base_plot(id, chart, theme, theme.plot_height, y_on_axis)
        .include_y(bottom)
        .include_y(top)
        .custom_x_axes(vec![axis_hints(Axis::X, &chart.x_label, theme)])
        .show(ui, |plot_ui| {
            for line in lines {
                plot_ui.line(line);
            }
            for p in points {
                plot_ui.points(p);
            }
        });

    let frame = *response.transform.frame();
    let painter = ui.painter_at(frame);
    for mark in &marks {
        let x = response.transform.position_from_point_x(mark.x);
        let r = theme.marker_radius * 1.4;
        let stroke = Stroke::new(theme.line_width * 0.75, mark.color);
        // +inf at the top edge (a triangle pointing up), NaN and -inf at the bottom edge.
        let (tip, base_y, anchor, label_y) = if mark.special == Special::PosInf {
            let y = frame.top() + 2.0;
            (
                pos2(x, y),
                y + 2.0 * r,
                Align2::CENTER_TOP,
                y + 2.0 * r + 2.0,
            )
        } else {
            let y = frame.bottom() - 2.0;
            (
                pos2(x, y),
                y - 2.0 * r,
                Align2::CENTER_BOTTOM,
                y - 2.0 * r - 2.0,
            )
        };
        painter.add(Shape::convex_polygon(
            vec![tip, pos2(x + r, base_y), pos2(x - r, base_y)],
            theme.plot_background,
            stroke,
        ));
        label_pill(
            &painter,
            pos2(x, label_y),
            anchor,
            mark.special.label(),
            mark.color,
            theme,
        );
    }
    response.response
}

// ---------------------------------------------------------------------------------------------
// Heatmap
// ---------------------------------------------------------------------------------------------

/// Heatmaps larger than this (per side) are sampled down to it for the texture.
/// Texture side limit: about the pixel size of a heatmap in an engine column.
const MAX_HEATMAP_SIDE: usize = 256;

fn heatmap_ui(
    ui: &mut Ui,
    id: Id,
    chart: &Chart,
    (rows, cols): (usize, usize),
    values: &[f64],
    value_label: &str,
    theme: &Theme,
) -> Response {
    let (lo, hi) = chart.finite_range().unwrap_or((0.0, 1.0));
    let texture = heatmap_texture(ui.ctx(), id, (rows, cols), values, (lo, hi), theme);
    let scale_width = (theme.text_small * 10.0).round();

    let y_on_axis = y_title_ui(ui, chart, theme, theme.heatmap_height);
    // The colour scale goes beside the heatmap where the heatmap keeps a useful width, else under
    // it (an engine column in classroom mode), so the pair never runs past the column.
    let scale_beside =
        ui.available_width() - scale_width - ui.spacing().item_spacing.x >= theme.text_body * 8.0;
    let layout = if scale_beside {
        egui::Layout::left_to_right(egui::Align::Min)
    } else {
        egui::Layout::top_down(egui::Align::Min)
    };
    ui.with_layout(layout, |ui| {
        let plot_width = if scale_beside {
            ui.available_width() - scale_width - ui.spacing().item_spacing.x
        } else {
            ui.available_width()
        };
        let response = base_plot(id, chart, theme, theme.heatmap_height, y_on_axis)
            .width(plot_width)
            .invert_y(true)
            .show_grid(false)
            .include_x(0.0)
            .include_x(cols as f64)
            .include_y(0.0)
            .include_y(rows as f64)
            .set_margin_fraction(Vec2::ZERO)
            .x_grid_spacer(cell_grid_spacer(tick_gap(Axis::X, theme)))
            .y_grid_spacer(cell_grid_spacer(tick_gap(Axis::Y, theme)))
            .custom_x_axes(vec![
                axis_hints(Axis::X, &chart.x_label, theme)
                    .formatter(|mark, _| format!("{}", mark.value.floor())),
            ])
            .custom_y_axes(vec![
                axis_hints(Axis::Y, if y_on_axis { &chart.y_label } else { "" }, theme)
                    .formatter(|mark, _| format!("{}", mark.value.floor())),
            ])
            .label_formatter(move |hover| {
                let point = match hover {
                    HoverPosition::NearDataPoint { position, .. }
                    | HoverPosition::Elsewhere { position } => position,
                };
                let (c, r) = (point.x.floor(), point.y.floor());
                if c < 0.0 || r < 0.0 || c as usize >= cols || r as usize >= rows {
                    return None;
                }
                let v = values[r as usize * cols + c as usize];
                Some(format!("row {r}, column {c}\n{}", format_value(v)))
            })
            .show(ui, |plot_ui| {
                plot_ui.image(
                    PlotImage::new(
                        "heatmap",
                        texture.id(),
                        PlotPoint::new(cols as f64 / 2.0, rows as f64 / 2.0),
                        vec2(cols as f32, rows as f32),
                    )
                    .allow_hover(false),
                );
            });
        if scale_beside {
            color_scale_ui(
                ui,
                *response.transform.frame(),
                scale_width,
                (lo, hi),
                value_label,
                chart.non_finite(),
                theme,
            );
        } else {
            color_scale_below_ui(ui, (lo, hi), value_label, chart.non_finite(), theme);
        }
        response.response
    })
    .inner
}

/// Grid marks at cell centres (c + 0.5, labelled c), every 1, 2, 5, 10, 20, ... cells: the
/// smallest step that leaves `min_spacing` points between labels.
fn cell_grid_spacer(min_spacing: f32) -> impl Fn(GridInput) -> Vec<GridMark> {
    move |input: GridInput| {
        let step = nice_step(min_step(&input, min_spacing)).max(1.0);
        let first = (input.bounds.0 / step).floor() as i64;
        let last = (input.bounds.1 / step).ceil() as i64;
        (first..=last)
            .map(|k| k as f64 * step + 0.5)
            .filter(|v| *v >= input.bounds.0 && *v <= input.bounds.1)
            .map(|value| GridMark {
                value,
                step_size: step,
            })
            .collect()
    }
}

/// Grid marks at multiples of a 1-2-5 step that leaves `min_spacing` points between labels (the
/// labelled, major marks), with unlabelled minor marks between them.
fn value_grid_spacer(min_spacing: f32) -> impl Fn(GridInput) -> Vec<GridMark> {
    move |input: GridInput| {
        let major = nice_step(min_step(&input, min_spacing));
        let mantissa = major / 10f64.powf(major.log10().floor());
        let minor = major
            / if (mantissa - 2.0).abs() < 0.5 {
                4.0
            } else {
                5.0
            };
        let (lo, hi) = input.bounds;
        if !(lo.is_finite() && hi.is_finite() && minor > 0.0) || (hi - lo) / minor > 10_000.0 {
            return Vec::new();
        }
        ((lo / minor).ceil() as i64..=(hi / minor).floor() as i64)
            .map(|k| {
                let value = k as f64 * minor;
                let on_major = ((value / major).round() * major - value).abs() < minor * 1e-3;
                GridMark {
                    value: if value.abs() < minor * 1e-6 {
                        0.0
                    } else {
                        value
                    },
                    step_size: if on_major { major } else { minor },
                }
            })
            .collect()
    }
}

/// The plot-unit step that is `min_spacing` points long. egui_plot's `base_step_size` is its
/// minimal grid spacing (8 points) in plot units.
fn min_step(input: &GridInput, min_spacing: f32) -> f64 {
    input.base_step_size * (min_spacing as f64 / 8.0)
}

/// The smallest of ..., 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, ... that is at least `min_step`
/// (1 for a step that is not a positive number).
fn nice_step(min_step: f64) -> f64 {
    if !(min_step.is_finite() && min_step > 0.0) {
        return 1.0;
    }
    let decade = 10f64.powf(min_step.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|step| *step >= min_step * (1.0 - 1e-9))
        .unwrap_or(10.0 * decade)
}

/// The heatmap as one texture, rebuilt only when the data (or the NaN colour) changes.
fn heatmap_texture(
    ctx: &egui::Context,
    id: Id,
    (rows, cols): (usize, usize),
    values: &[f64],
    (lo, hi): (f64, f64),
    theme: &Theme,
) -> TextureHandle {
    let mut hasher = DefaultHasher::new();
    (rows, cols, lo.to_bits(), hi.to_bits(), theme.heatmap_nan).hash(&mut hasher);
    for v in values {
        v.to_bits().hash(&mut hasher);
    }
    cached_texture(ctx, id.with("heatmap-texture"), hasher.finish(), || {
        // Larger matrices are reduced by averaging blocks of cells (a block holding a NaN stays
        // NaN, so an overflow never disappears): sampling one cell per pixel instead would show or
        // hide single bright columns depending on the plot's exact width.
        let (h, w) = (
            rows.clamp(1, MAX_HEATMAP_SIDE),
            cols.clamp(1, MAX_HEATMAP_SIDE),
        );
        let mut pixels = Vec::with_capacity(w * h);
        for y in 0..h {
            let (r0, r1) = (y * rows / h, ((y + 1) * rows / h).max(y * rows / h + 1));
            for x in 0..w {
                let (c0, c1) = (x * cols / w, ((x + 1) * cols / w).max(x * cols / w + 1));
                let (mut sum, mut n, mut nan) = (0.0, 0usize, false);
                for r in r0..r1.min(rows) {
                    for c in c0..c1.min(cols) {
                        match values.get(r * cols + c) {
                            Some(v) if v.is_nan() => nan = true,
                            Some(v) => {
                                sum += v;
                                n += 1;
                            }
                            None => nan = true,
                        }
                    }
                }
                let v = if nan || n == 0 {
                    f64::NAN
                } else {
                    sum / n as f64
                };
                pixels.push(heatmap_color(v, lo, hi, theme.heatmap_nan));
            }
        }
        ColorImage::new([w, h], pixels)
    })
}

/// The colour scale, top = max: 256 samples of the colormap as one texture.
fn color_scale_texture(ctx: &egui::Context) -> TextureHandle {
    cached_texture(ctx, Id::unique("kernelbook-viridis-scale"), 1, || {
        let pixels = (0..256).rev().map(|i| viridis(i as f64 / 255.0)).collect();
        ColorImage::new([1, 256], pixels)
    })
}

/// Cells stay crisp when enlarged; when shrunk, neighbouring texels are blended rather than
/// skipped, so a single bright column cannot vanish depending on the plot's width.
const DATA_TEXTURE: TextureOptions = TextureOptions {
    magnification: egui::TextureFilter::Nearest,
    minification: egui::TextureFilter::Linear,
    ..TextureOptions::NEAREST
};

/// A texture kept in egui's memory under `id`, re-uploaded only when `key` changes.
fn cached_texture(
    ctx: &egui::Context,
    id: Id,
    key: u64,
    make: impl FnOnce() -> ColorImage,
) -> TextureHandle {
    let cached: Option<(u64, TextureHandle)> = ctx.data(|d| d.get_temp(id));
    let handle = match cached {
        Some((k, handle)) if k == key => return handle,
        Some((_, mut handle)) => {
            handle.set(make(), DATA_TEXTURE);
            handle
        }
        None => ctx.load_texture(format!("{id:?}"), make(), DATA_TEXTURE),
    };
    ctx.data_mut(|d| d.insert_temp(id, (key, handle.clone())));
    handle
}

/// The colour bar next to a heatmap, aligned with its plot frame: the value label, max at the top,
/// the middle value, min at the bottom, then what NaN and inf cells look like.
fn color_scale_ui(
    ui: &mut Ui,
    frame: Rect,
    width: f32,
    (lo, hi): (f64, f64),
    value_label: &str,
    counts: NonFiniteCounts,
    theme: &Theme,
) {
    let (rect, _) = ui.allocate_exact_size(vec2(width, theme.heatmap_height), Sense::hover());
    let painter = ui.painter_at(rect);
    let font = theme.small_font();
    let line_height = ui.ctx().fonts_mut(|f| f.row_height(&font));
    let bar = Rect::from_min_max(
        pos2(rect.left(), frame.top() + line_height * 1.5),
        pos2(
            rect.left() + theme.text_small * 1.2,
            frame.bottom() - line_height * (1.0 + nonfinite_lines(counts) as f32) - 4.0,
        ),
    );
    let text = |pos: Pos2, anchor: Align2, s: &str, color: Color32| {
        painter.text(pos, anchor, s, font.clone(), color)
    };
    text(
        pos2(rect.left(), frame.top()),
        Align2::LEFT_TOP,
        value_label,
        theme.text,
    );
    if bar.height() > line_height * 2.0 {
        painter.image(
            color_scale_texture(ui.ctx()).id(),
            bar,
            Rect::from_min_max(Pos2::ZERO, pos2(1.0, 1.0)),
            Color32::WHITE,
        );
        painter.rect_stroke(bar, 0.0, Stroke::new(1.0, theme.grid), StrokeKind::Outside);
        let label_x = bar.right() + theme.text_small * 0.4;
        text(
            pos2(label_x, bar.top()),
            Align2::LEFT_TOP,
            &format!("max {}", format_value(hi)),
            theme.text,
        );
        text(
            pos2(label_x, bar.center().y),
            Align2::LEFT_CENTER,
            &format_value((lo + hi) / 2.0),
            theme.text_weak,
        );
        text(
            pos2(label_x, bar.bottom()),
            Align2::LEFT_BOTTOM,
            &format!("min {}", format_value(lo)),
            theme.text,
        );
    }
    nonfinite_legend(
        &painter,
        pos2(bar.left(), bar.bottom() + 4.0),
        counts,
        theme,
    );
}

/// The colour scale as a horizontal bar under a heatmap in a narrow column: the value label, the
/// bar (min at the left, max at the right), "min …" and "max …" under its ends, then what NaN and
/// inf cells look like.
fn color_scale_below_ui(
    ui: &mut Ui,
    (lo, hi): (f64, f64),
    value_label: &str,
    counts: NonFiniteCounts,
    theme: &Theme,
) {
    let font = theme.small_font();
    let line_height = ui.ctx().fonts_mut(|f| f.row_height(&font));
    let bar_height = theme.text_small;
    let (min_text, max_text) = (
        format!("min {}", format_value(lo)),
        format!("max {}", format_value(hi)),
    );
    // "min …" under the left end and "max …" under the right end, or one under the other where
    // the column is too narrow for both on one line.
    let width_of = |s: &str| text_width(ui, RichText::new(s).size(theme.text_small));
    let one_line =
        width_of(&min_text) + width_of(&max_text) + theme.column_gap <= ui.available_width();
    let lines = if one_line { 2 } else { 3 } + nonfinite_lines(counts);
    let (rect, _) = ui.allocate_exact_size(
        vec2(
            ui.available_width(),
            line_height * lines as f32 + bar_height + 8.0,
        ),
        Sense::hover(),
    );
    let painter = ui.painter_at(rect);
    let text = |pos: Pos2, anchor: Align2, s: &str, color: Color32| {
        painter.text(pos, anchor, s, font.clone(), color)
    };
    text(rect.left_top(), Align2::LEFT_TOP, value_label, theme.text);
    let bar = Rect::from_min_size(
        pos2(rect.left(), rect.top() + line_height + 2.0),
        vec2(rect.width(), bar_height),
    );
    // The scale texture runs max (v = 0) to min (v = 1): map its v onto x, min on the left.
    let mut mesh = egui::Mesh::with_texture(color_scale_texture(ui.ctx()).id());
    for (pos, v) in [
        (bar.left_top(), 1.0),
        (bar.right_top(), 0.0),
        (bar.right_bottom(), 0.0),
        (bar.left_bottom(), 1.0),
    ] {
        mesh.vertices.push(egui::epaint::Vertex {
            pos,
            uv: pos2(0.5, v),
            color: Color32::WHITE,
        });
    }
    mesh.add_triangle(0, 1, 2);
    mesh.add_triangle(0, 2, 3);
    painter.add(Shape::mesh(mesh));
    painter.rect_stroke(bar, 0.0, Stroke::new(1.0, theme.grid), StrokeKind::Outside);
    let under = bar.bottom() + 3.0;
    text(
        pos2(bar.left(), under),
        Align2::LEFT_TOP,
        &min_text,
        theme.text,
    );
    let mut y = under + line_height;
    if one_line {
        text(
            pos2(bar.right(), under),
            Align2::RIGHT_TOP,
            &max_text,
            theme.text,
        );
    } else {
        text(pos2(bar.left(), y), Align2::LEFT_TOP, &max_text, theme.text);
        y += line_height;
    }
    nonfinite_legend(&painter, pos2(bar.left(), y), counts, theme);
}

/// Non-finite cells, in words, one line each from `top_left` down: a swatch for NaN, the colour
/// used for each infinity, and how many cells there are.
fn nonfinite_legend(
    painter: &egui::Painter,
    top_left: Pos2,
    counts: NonFiniteCounts,
    theme: &Theme,
) {
    let font = theme.small_font();
    let line_height = painter.ctx().fonts_mut(|f| f.row_height(&font));
    let mut y = top_left.y;
    for (n, special, color) in [
        (counts.nan, Special::Nan, theme.heatmap_nan),
        (counts.pos_inf, Special::PosInf, viridis(1.0)),
        (counts.neg_inf, Special::NegInf, viridis(0.0)),
    ] {
        if n == 0 {
            continue;
        }
        let swatch = Rect::from_min_size(
            pos2(top_left.x, y + line_height * 0.15),
            Vec2::splat(line_height * 0.7),
        );
        painter.rect_filled(swatch, 0.0, color);
        painter.rect_stroke(
            swatch,
            0.0,
            Stroke::new(1.0, theme.text_weak),
            StrokeKind::Outside,
        );
        painter.text(
            pos2(swatch.right() + theme.text_small * 0.3, y),
            Align2::LEFT_TOP,
            format!("{special} ×{n}"),
            font.clone(),
            theme.text,
        );
        y += line_height;
    }
}

fn nonfinite_lines(counts: NonFiniteCounts) -> usize {
    [counts.nan, counts.pos_inf, counts.neg_inf]
        .iter()
        .filter(|n| **n > 0)
        .count()
}

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// A stable id from any hashable value, scoped to the parent ui.
fn persistent_id(ui: &Ui, id: impl Hash) -> Id {
    let mut hasher = DefaultHasher::new();
    id.hash(&mut hasher);
    ui.make_persistent_id(hasher.finish())
}

/// Whether the chart's y title fits along a y axis `height` points tall (axes included). When it
/// does not (a long title, projector fonts, a short chart on a small screen), it is written here,
/// small, above the plot, instead of being clipped at both ends of the axis; returns false then.
fn y_title_ui(ui: &mut Ui, chart: &Chart, theme: &Theme, height: f32) -> bool {
    if chart.y_label.is_empty() {
        return true;
    }
    let length = text_width(ui, RichText::new(&chart.y_label).size(theme.text_body));
    // The x axis's tick labels and title take the bottom of the plot's height.
    let axis_length = height - (theme.text_small + theme.text_body) * 1.6;
    if length <= axis_length * 0.95 {
        return true;
    }
    ui.label(
        RichText::new(format!("↑ {}", chart.y_label))
            .size(theme.text_small)
            .color(theme.text_weak),
    );
    false
}

/// A plot with no pan or zoom (a double-click resets), theme colours, and the y axis label when
/// `y_on_axis` (see [`y_title_ui`]).
fn base_plot<'a>(
    id: Id,
    chart: &'a Chart,
    theme: &Theme,
    height: f32,
    y_on_axis: bool,
) -> Plot<'a> {
    let plot = Plot::new(id);
    let plot = if chart.equal_aspect {
        plot.data_aspect(1.0)
    } else {
        plot
    };
    plot.id(id)
        .height(height)
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_axis_zoom_drag(false)
        .allow_double_click_reset(true)
        .show_crosshair(false)
        .grid_color(theme.grid)
        .x_grid_spacer(value_grid_spacer(tick_gap(Axis::X, theme)))
        .y_grid_spacer(value_grid_spacer(tick_gap(Axis::Y, theme)))
        .custom_y_axes(vec![axis_hints(
            Axis::Y,
            if y_on_axis { &chart.y_label } else { "" },
            theme,
        )])
}

/// Points between labelled ticks: numbers on the x axis are wide, on the y axis only tall.
fn tick_gap(axis: Axis, theme: &Theme) -> f32 {
    match axis {
        Axis::X => theme.text_small * 4.0,
        Axis::Y => theme.text_small * 2.0,
    }
}

fn axis_hints<'a>(axis: Axis, label: &str, theme: &Theme) -> AxisHints<'a> {
    let gap = tick_gap(axis, theme);
    AxisHints::new(axis)
        .tick_label_font(theme.small_font())
        .tick_label_color(theme.text)
        .label_spacing(Rangef::new(gap * 0.75, gap))
        .formatter(|mark, _| tick_label(mark.value, mark.step_size))
        .label(RichText::new(label).size(theme.text_body).color(theme.text))
}

/// A tick value with as many decimals as its step needs (0.5 steps: "2.5"), in scientific
/// notation for very small steps or very large values.
fn tick_label(value: f64, step: f64) -> String {
    if !(value.is_finite() && step.is_finite() && step > 0.0) {
        return String::new();
    }
    let value = (value / step).round() * step;
    if step < 1e-4 || value.abs() >= 1e6 {
        if value == 0.0 {
            return "0".to_owned();
        }
        let digits = (value.abs().log10().floor() - step.log10().floor()).max(0.0) as usize;
        return format!("{value:.digits$e}");
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let decimals = if (step * 10f64.powi(decimals as i32)).fract().abs() > 1e-6 {
        decimals + 1 // e.g. a step of 2.5
    } else {
        decimals
    };
    let text = format!("{value:.decimals$}");
    if text.starts_with('-') && text.trim_start_matches(['-', '0', '.']).is_empty() {
        text[1..].to_owned() // "-0.0" -> "0.0"
    } else {
        text
    }
}

/// How a legend entry shows its series.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LegendKind {
    /// A filled square (bars).
    Swatch,
    /// A short line in the series' style, with its marker (lines).
    Line,
}

/// The legend: one entry per series, above the plot, wrapping if the row is full.
fn legend_ui<'s>(
    ui: &mut Ui,
    entries: impl Iterator<Item = (&'s str, SeriesRole)>,
    kind: LegendKind,
    theme: &Theme,
) {
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = (theme.text_small * 0.4).round();
        for (name, role) in entries {
            let color = theme.series_color(role);
            let h = theme.text_body;
            let w = if kind == LegendKind::Line { h * 2.0 } else { h };
            // An entry (symbol and name) wraps as a whole, never between its symbol and its name.
            let text = RichText::new(name).size(theme.text_body).color(theme.text);
            let entry_width = w + ui.spacing().item_spacing.x + text_width(ui, text.clone());
            wrap_unless_fits(ui, entry_width);
            let (rect, _) = ui.allocate_exact_size(vec2(w, h), Sense::hover());
            let painter = ui.painter();
            match kind {
                LegendKind::Swatch => {
                    painter.rect_filled(rect.shrink(h * 0.12), 2.0, color);
                }
                LegendKind::Line => {
                    let y = rect.center().y;
                    let stroke = Stroke::new(theme.line_width, color);
                    if role == SeriesRole::Reference {
                        painter.extend(Shape::dashed_line(
                            &[pos2(rect.left(), y), pos2(rect.right(), y)],
                            stroke,
                            h * 0.35,
                            h * 0.2,
                        ));
                    } else {
                        painter.line_segment([pos2(rect.left(), y), pos2(rect.right(), y)], stroke);
                    }
                    if let Some(shape) = marker_shape(role) {
                        paint_marker(painter, rect.center(), theme.marker_radius, shape, color);
                    }
                }
            }
            ui.add(egui::Label::new(text).wrap_mode(egui::TextWrapMode::Extend));
            ui.add_space((theme.column_gap * 0.75).round());
        }
    });
}

/// The legend's copy of egui_plot's markers (only the shapes [`marker_shape`] uses).
fn paint_marker(painter: &egui::Painter, c: Pos2, r: f32, shape: MarkerShape, color: Color32) {
    let stroke = Stroke::new(r * 0.5, color);
    match shape {
        MarkerShape::Circle => {
            painter.circle_filled(c, r, color);
        }
        MarkerShape::Square => {
            painter.rect_filled(Rect::from_center_size(c, Vec2::splat(2.0 * r)), 0.0, color);
        }
        MarkerShape::Diamond => {
            let pts = vec![
                c + vec2(0.0, -r),
                c + vec2(r, 0.0),
                c + vec2(0.0, r),
                c + vec2(-r, 0.0),
            ];
            painter.add(Shape::convex_polygon(pts, color, Stroke::NONE));
        }
        MarkerShape::Up => {
            let pts = vec![c + vec2(0.0, -r), c + vec2(r, r), c + vec2(-r, r)];
            painter.add(Shape::convex_polygon(pts, color, Stroke::NONE));
        }
        _ => {
            painter.line_segment([c - vec2(r, 0.0), c + vec2(r, 0.0)], stroke);
            painter.line_segment([c - vec2(0.0, r), c + vec2(0.0, r)], stroke);
        }
    }
}

/// "⚠ Not finite: 1 NaN, 1 +inf (marked on the chart)", in words, under the chart.
fn non_finite_note_ui(ui: &mut Ui, counts: NonFiniteCounts, theme: &Theme) {
    if counts.total() == 0 {
        return;
    }
    ui.label(
        RichText::new(format!(
            "{} Not finite: {} (marked on the chart)",
            Theme::WARNING_GLYPH,
            counts.summary()
        ))
        .size(theme.text_small)
        .color(theme.warning),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colormap_endpoints_are_viridis() {
        assert_eq!(viridis(0.0), Color32::from_rgb(0x44, 0x01, 0x54));
        assert_eq!(viridis(1.0), Color32::from_rgb(0xfd, 0xe7, 0x25));
        assert_eq!(viridis(-3.0), viridis(0.0));
        assert_eq!(viridis(7.0), viridis(1.0));
        assert_eq!(viridis(f64::NAN), viridis(0.0));
    }

    #[test]
    fn colormap_gets_lighter() {
        // Perceptually uniform maps rise monotonically in lightness; check luma at a few steps.
        let luma =
            |c: Color32| 0.2126 * c.r() as f64 + 0.7152 * c.g() as f64 + 0.0722 * c.b() as f64;
        let mut last = -1.0;
        for i in 0..=20 {
            let l = luma(viridis(i as f64 / 20.0));
            assert!(l > last, "lightness falls at step {i}");
            last = l;
        }
    }

    #[test]
    fn heatmap_colors_for_special_values() {
        let grey = Color32::from_gray(128);
        assert_eq!(heatmap_color(f64::NAN, 0.0, 1.0, grey), grey);
        assert_eq!(heatmap_color(f64::INFINITY, 0.0, 1.0, grey), viridis(1.0));
        assert_eq!(
            heatmap_color(f64::NEG_INFINITY, 0.0, 1.0, grey),
            viridis(0.0)
        );
        assert_eq!(heatmap_color(2.0, 2.0, 4.0, grey), viridis(0.0));
        assert_eq!(heatmap_color(4.0, 2.0, 4.0, grey), viridis(1.0));
        assert_eq!(heatmap_color(3.0, 3.0, 3.0, grey), viridis(0.5));
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(0.012), 0.02);
        assert_eq!(nice_step(1.0), 1.0);
        assert_eq!(nice_step(1.5), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(11.0), 20.0);
        assert_eq!(nice_step(f64::NAN), 1.0);
    }

    #[test]
    fn tick_labels_have_the_decimals_their_step_needs() {
        assert_eq!(tick_label(-2.5, 0.5), "-2.5");
        assert_eq!(tick_label(-2.0, 0.5), "-2.0");
        assert_eq!(tick_label(0.2, 0.2), "0.2");
        assert_eq!(tick_label(0.30000000000000004, 0.1), "0.3");
        assert_eq!(tick_label(20.0, 10.0), "20");
        assert_eq!(tick_label(-0.0, 0.1), "0.0");
        assert_eq!(tick_label(3e-7, 1e-7), "3e-7");
        assert_eq!(tick_label(1.5e-7, 5e-8), "1.5e-7");
        assert_eq!(tick_label(2e6, 1e6), "2e6");
        assert_eq!(tick_label(f64::NAN, 1.0), "");
    }

    #[test]
    fn value_grid_marks_majors_and_minors() {
        let spacer = value_grid_spacer(40.0);
        // 1 plot unit = 80 points, so labels every 0.5 (40 points), minor marks every 0.1.
        let marks = spacer(GridInput {
            bounds: (0.0, 1.0),
            base_step_size: 0.1,
        });
        let majors: Vec<f64> = marks
            .iter()
            .filter(|m| m.step_size == 0.5)
            .map(|m| m.value)
            .collect();
        assert_eq!(majors, vec![0.0, 0.5, 1.0]);
        assert_eq!(marks.len(), 11);
    }

    #[test]
    fn category_labels_only_at_integers() {
        let cats = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(category_label(&cats, 0.0), "a");
        assert_eq!(category_label(&cats, 1.0), "b");
        assert_eq!(category_label(&cats, 0.5), "");
        assert_eq!(category_label(&cats, 2.0), "");
        assert_eq!(category_label(&cats, -1.0), "");
    }
}
