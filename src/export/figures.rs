//! Vector and print figures: a [`Chart`] drawn with plotters, as SVG (for reports and slides) and as
//! PNG at print resolution. The chart description is the one the app draws with egui_plot
//! (`src/chart.rs`); only the drawing differs, and colours come from the same theme tokens and the
//! same viridis scale, so a figure matches the screen.
//!
//! Both files are written atomically ([`crate::files`]). Text DejaVu Sans lacks (a lesson in
//! Chinese, emoji) is drawn as the font's replacement box in the PNG and kept as text in the SVG
//! (the viewer's fonts draw it); it never fails a figure.
//!
//! Non-finite values are drawn, not dropped, as on screen: a NaN or ±inf bar or point gets a marker
//! and its label ("NaN", "+inf", "-inf") at the edge of the plot; heatmap NaN cells are grey.

use crate::chart::LineSeries as ChartLines;
use crate::chart::{Chart, ChartKind, Series, SeriesRole, Special, format_value};
use crate::ui::theme::Theme;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::Once;

/// Size of an SVG figure, in user units (pixels at 96 dpi): 16:10, readable on a slide.
pub const SVG_SIZE: (u32, u32) = (960, 600);
/// Size of a print PNG: the SVG size at 2.5x (a 6.4 x 4 inch figure at 375 dpi).
pub const PRINT_SIZE: (u32, u32) = (2400, 1500);

/// Draw `chart` as an SVG document.
pub fn svg(chart: &Chart) -> Result<String, String> {
    let mut out = String::new();
    {
        let backend = SVGBackend::with_string(&mut out, SVG_SIZE);
        draw(backend.into_drawing_area(), chart, 1.0)?;
    }
    Ok(out)
}

/// Draw `chart` into an RGB image of `size` pixels (fonts and strokes scale with the width).
pub fn raster(chart: &Chart, size: (u32, u32)) -> Result<image::RgbImage, String> {
    let mut buf = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let backend = BitMapBackend::with_buffer(&mut buf, size);
        draw(
            backend.into_drawing_area(),
            chart,
            size.0 as f64 / SVG_SIZE.0 as f64,
        )?;
    }
    image::RgbImage::from_raw(size.0, size.1, buf)
        .ok_or_else(|| "the figure buffer has the wrong size".to_string())
}

/// Write `chart` as `<stem>.svg` and `<stem>.png` (print resolution) under `dir`; returns the
/// paths written.
pub fn write_figure(
    chart: &Chart,
    dir: &Path,
    stem: &str,
) -> Result<Vec<std::path::PathBuf>, String> {
    let svg_path = dir.join(format!("{stem}.svg"));
    crate::files::write_atomically(&svg_path, svg(chart)?.as_bytes()).map_err(|e| e.to_string())?;
    let png_path = dir.join(format!("{stem}.png"));
    let mut png = std::io::Cursor::new(Vec::new());
    raster(chart, PRINT_SIZE)?
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| format!("{}: cannot encode: {e}", png_path.display()))?;
    crate::files::write_atomically(&png_path, png.get_ref()).map_err(|e| e.to_string())?;
    Ok(vec![svg_path, png_path])
}

/// plotters draws (and, for SVG, measures) text with ab_glyph: the bundled font is registered once.
fn register_fonts() -> Result<(), String> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        for (style, bytes) in [
            (FontStyle::Normal, crate::ui::theme::DEJAVU_SANS),
            (FontStyle::Bold, crate::ui::theme::DEJAVU_SANS_BOLD),
        ] {
            if plotters::style::register_font("sans-serif", style, bytes).is_err() {
                result = Err("the bundled DejaVu Sans font could not be loaded".to_string());
            }
        }
    });
    result
}

fn rgb(c: egui::Color32) -> RGBColor {
    RGBColor(c.r(), c.g(), c.b())
}

type Area<DB> = DrawingArea<DB, Shift>;

fn draw<DB: DrawingBackend>(area: Area<DB>, chart: &Chart, scale: f64) -> Result<(), String> {
    chart.validate().map_err(|e| e.to_string())?;
    // Both backends lay text out with the registered font (the SVG one to measure it).
    register_fonts()?;
    let theme = Theme::light();
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("drawing the figure: {e:?}");
    area.fill(&rgb(theme.background)).map_err(err)?;
    let px = |v: f64| (v * scale).round().max(1.0) as u32;
    let font = |size: f64| ("sans-serif", px(size)).into_font();
    let text = rgb(theme.text);
    let area = if chart.title.is_empty() {
        area
    } else {
        area.titled(&chart.title, font(22.0).color(&text))
            .map_err(err)?
    };
    let legend: Vec<(String, SeriesRole)> = match &chart.kind {
        ChartKind::Bars { series, .. } => series.iter().map(|s| (s.name.clone(), s.role)).collect(),
        ChartKind::Lines { series } => series.iter().map(|s| (s.name.clone(), s.role)).collect(),
        ChartKind::Heatmap { .. } => Vec::new(),
    };
    let (lo, hi) = chart.finite_range().unwrap_or((0.0, 1.0));
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    };
    let pad = (hi - lo) * 0.08;
    let nonfinite = chart.non_finite().total() > 0;
    // Room above and below for NaN/inf markers, as on screen.
    let y_range = (lo - pad - if nonfinite { (hi - lo) * 0.15 } else { 0.0 })
        ..(hi + pad + if nonfinite { (hi - lo) * 0.15 } else { 0.0 });
    let specials_y = (hi + pad + (hi - lo) * 0.08, lo - pad - (hi - lo) * 0.08);
    match &chart.kind {
        ChartKind::Bars { categories, series } => {
            let y_range = if y_range.start > 0.0 {
                0.0..y_range.end
            } else {
                y_range
            };
            bars(
                &area, chart, categories, series, y_range, specials_y, &theme, scale,
            )?
        }
        ChartKind::Lines { series } => {
            lines(&area, chart, series, y_range, specials_y, &theme, scale)?
        }
        ChartKind::Heatmap {
            rows,
            cols,
            values,
            value_label,
        } => heatmap(
            &area,
            chart,
            (*rows, *cols),
            values,
            value_label,
            (lo, hi),
            &theme,
            scale,
        )?,
    }
    let _ = legend;
    area.present().map_err(err)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn bars<DB: DrawingBackend>(
    area: &Area<DB>,
    chart: &Chart,
    categories: &[String],
    series: &[Series],
    y_range: std::ops::Range<f64>,
    specials_y: (f64, f64),
    theme: &Theme,
    scale: f64,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("drawing bars: {e:?}");
    let px = |v: f64| (v * scale).round().max(1.0) as u32;
    let n = categories.len().max(1);
    let mut ctx = ChartBuilder::on(area)
        .margin(px(16.0))
        .x_label_area_size(px(48.0))
        .y_label_area_size(px(72.0))
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y_range)
        .map_err(err)?;
    let label_every = n.div_ceil(16).max(1);
    ctx.configure_mesh()
        .disable_x_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .x_labels(n.min(16))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6
                && i >= 0.0
                && (i as usize) < n
                && (i as usize).is_multiple_of(label_every)
            {
                categories[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format_value(*y))
        .label_style(("sans-serif", px(14.0)).into_font())
        .axis_desc_style(("sans-serif", px(16.0)).into_font())
        .light_line_style(TRANSPARENT)
        .bold_line_style(rgb(theme.grid))
        .draw()
        .map_err(err)?;
    let groups = series.len().max(1) as f64;
    let width = 0.8 / groups;
    for (k, s) in series.iter().enumerate() {
        let color = rgb(theme.series_color(s.role));
        let offset = -0.4 + width * k as f64;
        let bars = s
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, &v)| {
                let x0 = i as f64 + offset;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.9, v)], color.filled())
            });
        ctx.draw_series(bars)
            .map_err(err)?
            .label(s.name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
        special_marks(
            &mut ctx,
            s.values
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as f64 + offset + width * 0.45, v)),
            color,
            specials_y,
            scale,
        )?;
    }
    if series.len() > 1 {
        legend(&mut ctx, theme, scale)?;
    }
    Ok(())
}

fn lines<DB: DrawingBackend>(
    area: &Area<DB>,
    chart: &Chart,
    series: &[ChartLines],
    y_range: std::ops::Range<f64>,
    specials_y: (f64, f64),
    theme: &Theme,
    scale: f64,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("drawing lines: {e:?}");
    let px = |v: f64| (v * scale).round().max(1.0) as u32;
    let xs = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|x| x.is_finite());
    let (mut x0, mut x1) = crate::chart::finite_range(xs).unwrap_or((0.0, 1.0));
    if x1 <= x0 {
        (x0, x1) = (x0 - 0.5, x1 + 0.5);
    }
    let (mut y_range, mut x_range) = (y_range, x0..x1);
    if chart.equal_aspect {
        // Square data ranges around the centre keep circles round in a square plot area.
        let half = ((x1 - x0).max(y_range.end - y_range.start)) / 2.0;
        let (cx, cy) = ((x0 + x1) / 2.0, (y_range.start + y_range.end) / 2.0);
        x_range = cx - half..cx + half;
        y_range = cy - half..cy + half;
    }
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(px(16.0))
        .x_label_area_size(px(48.0))
        .y_label_area_size(px(72.0));
    let mut ctx = builder.build_cartesian_2d(x_range, y_range).map_err(err)?;
    ctx.configure_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .x_label_formatter(&|x| format_value(*x))
        .y_label_formatter(&|y| format_value(*y))
        .label_style(("sans-serif", px(14.0)).into_font())
        .axis_desc_style(("sans-serif", px(16.0)).into_font())
        .light_line_style(TRANSPARENT)
        .bold_line_style(rgb(theme.grid))
        .draw()
        .map_err(err)?;
    for s in series {
        let color = rgb(theme.series_color(s.role));
        let stroke = color.stroke_width(px(2.5));
        let finite: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        if s.points_only {
            ctx.draw_series(
                finite
                    .iter()
                    .map(|&p| Circle::new(p, px(4.0), color.filled())),
            )
            .map_err(err)?
            .label(s.name.clone())
            .legend(move |(x, y)| Circle::new((x + 7, y), 4, color.filled()));
        } else {
            // Split at non-finite values: a line cannot pass through NaN or inf.
            let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for &(x, y) in &s.points {
                if x.is_finite() && y.is_finite() {
                    if let Some(seg) = segments.last_mut() {
                        seg.push((x, y));
                    }
                } else {
                    segments.push(Vec::new());
                }
            }
            let dashed = s.role == SeriesRole::Reference;
            let mut first = true;
            for seg in segments.into_iter().filter(|s| !s.is_empty()) {
                let drawn = if dashed {
                    ctx.draw_series(DashedLineSeries::new(seg, px(10.0), px(6.0), stroke))
                        .map_err(err)?
                } else {
                    ctx.draw_series(LineSeries::new(seg, stroke)).map_err(err)?
                };
                if first {
                    drawn.label(s.name.clone()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(3))
                    });
                    first = false;
                }
            }
        }
        special_marks(&mut ctx, s.points.iter().copied(), color, specials_y, scale)?;
    }
    if !series.is_empty() {
        legend(&mut ctx, theme, scale)?;
    }
    Ok(())
}

type Cartesian =
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>;

/// NaN and ±inf values: a marker and its label at the top (+inf, NaN) or bottom (-inf) edge.
fn special_marks<'a, DB: DrawingBackend + 'a>(
    ctx: &mut ChartContext<'a, DB, Cartesian>,
    points: impl Iterator<Item = (f64, f64)>,
    color: RGBColor,
    (top, bottom): (f64, f64),
    scale: f64,
) -> Result<(), String> {
    let px = |v: f64| (v * scale).round().max(1.0) as u32;
    let marks: Vec<(f64, f64, &'static str)> = points
        .filter(|(x, _)| x.is_finite())
        .filter_map(|(x, y)| {
            Special::of(y).map(|s| match s {
                Special::NegInf => (x, bottom, s.label()),
                _ => (x, top, s.label()),
            })
        })
        .collect();
    if marks.is_empty() {
        return Ok(());
    }
    let font = ("sans-serif", px(13.0)).into_font().color(&color);
    ctx.draw_series(marks.iter().map(|&(x, y, label)| {
        EmptyElement::at((x, y))
            + TriangleMarker::new((0, 0), px(5.0), color.filled())
            + Text::new(label, (px(6.0) as i32, -(px(6.0) as i32)), font.clone())
    }))
    .map_err(|e| format!("drawing NaN/inf markers: {e:?}"))?;
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a>(
    ctx: &mut ChartContext<'a, DB, Cartesian>,
    theme: &Theme,
    scale: f64,
) -> Result<(), String> {
    let px = |v: f64| (v * scale).round().max(1.0) as u32;
    ctx.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(rgb(theme.panel).mix(0.9))
        .border_style(rgb(theme.grid))
        .label_font(("sans-serif", px(14.0)).into_font())
        .draw()
        .map_err(|e| format!("drawing the legend: {e:?}"))
}

#[allow(clippy::too_many_arguments)]
fn heatmap<DB: DrawingBackend>(
    area: &Area<DB>,
    chart: &Chart,
    (rows, cols): (usize, usize),
    values: &[f64],
    value_label: &str,
    (lo, hi): (f64, f64),
    theme: &Theme,
    scale: f64,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("drawing the heatmap: {e:?}");
    let px = |v: f64| (v * scale).round().max(1.0) as u32;
    let (w, _) = area.dim_in_pixel();
    let (plot, scale_area) = area.split_horizontally(w.saturating_sub(px(120.0)));
    let mut ctx = ChartBuilder::on(&plot)
        .margin(px(16.0))
        .x_label_area_size(px(48.0))
        .y_label_area_size(px(72.0))
        .build_cartesian_2d(0f64..cols.max(1) as f64, rows.max(1) as f64..0f64)
        .map_err(err)?;
    ctx.configure_mesh()
        .disable_mesh()
        .x_desc(&chart.x_label)
        .y_desc(&chart.y_label)
        .x_label_formatter(&|x| format!("{}", x.floor()))
        .y_label_formatter(&|y| format!("{}", y.floor()))
        .label_style(("sans-serif", px(14.0)).into_font())
        .axis_desc_style(("sans-serif", px(16.0)).into_font())
        .draw()
        .map_err(err)?;
    let nan = rgb(theme.text_weak);
    ctx.draw_series((0..rows).flat_map(|r| {
        (0..cols).map(move |c| {
            let v = values[r * cols + c];
            let color = rgb(crate::ui::colormap::heatmap_color(
                v,
                lo,
                hi,
                egui::Color32::GRAY,
            ));
            let color = if v.is_nan() { nan } else { color };
            Rectangle::new(
                [(c as f64, r as f64), (c as f64 + 1.0, r as f64 + 1.0)],
                color.filled(),
            )
        })
    }))
    .map_err(err)?;
    // The colour scale: a vertical bar from lo (bottom) to hi (top) with both ends labelled.
    let mut bar = ChartBuilder::on(&scale_area)
        .margin(px(16.0))
        .margin_left(px(8.0))
        .x_label_area_size(px(48.0))
        .y_label_area_size(px(0.0))
        .right_y_label_area_size(px(64.0))
        .build_cartesian_2d(0f64..1f64, lo..hi.max(lo + f64::EPSILON))
        .map_err(err)?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc(value_label)
        .y_labels(5)
        .y_label_formatter(&|y| format_value(*y))
        .label_style(("sans-serif", px(13.0)).into_font())
        .axis_desc_style(("sans-serif", px(14.0)).into_font())
        .draw()
        .map_err(err)?;
    let steps = 64;
    bar.draw_series((0..steps).map(|i| {
        let t0 = i as f64 / steps as f64;
        let t1 = (i + 1) as f64 / steps as f64;
        let color = rgb(crate::ui::colormap::viridis((t0 + t1) / 2.0));
        Rectangle::new(
            [(0.0, lo + t0 * (hi - lo)), (1.0, lo + t1 * (hi - lo))],
            color.filled(),
        )
    }))
    .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::Series;
    use crate::engine::EngineKind;

    fn sample_bars() -> Chart {
        Chart::bars(
            "softmax at T = 1",
            vec!["0".into(), "1".into(), "2".into()],
            vec![
                Series {
                    name: "CPU".into(),
                    values: vec![0.66, 0.24, f64::NAN],
                    role: SeriesRole::Engine(EngineKind::Cpu),
                },
                Series {
                    name: "f64 reference".into(),
                    values: vec![0.66, 0.24, 0.1],
                    role: SeriesRole::Reference,
                },
            ],
        )
        .with_labels("class j", "probability y_j")
    }

    #[test]
    fn text_no_bundled_font_has_is_drawn_not_fatal() {
        let mut chart = sample_bars();
        chart.title = "第一课 softmax 😀 🎉".into();
        chart.x_label = "类别 j".into();
        let s = svg(&chart).unwrap();
        assert!(s.contains("第一课 softmax 😀 🎉"), "the SVG keeps the text");
        let img = raster(&chart, (960, 600)).unwrap();
        // The title row is drawn (replacement boxes are ink too), not left blank.
        let inked = (0..40)
            .flat_map(|y| (0..960).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 128)
            .count();
        assert!(inked > 50, "{inked} dark pixels in the title row");
        let dir = tempfile::tempdir().unwrap();
        let written = write_figure(&chart, dir.path(), "zh").unwrap();
        assert_eq!(written.len(), 2);
        assert!(written.iter().all(|p| p.metadata().unwrap().len() > 100));
    }

    #[test]
    fn svg_holds_the_title_labels_and_nan_marker() {
        let s = svg(&sample_bars()).unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..40.min(s.len())]);
        for text in [
            "softmax at T = 1",
            "class j",
            "probability y_j",
            "NaN",
            "CPU",
        ] {
            assert!(s.contains(text), "the SVG names {text}");
        }
    }

    #[test]
    fn print_png_is_drawn_at_print_size() {
        let img = raster(&sample_bars(), (1200, 750)).unwrap();
        assert_eq!(img.dimensions(), (1200, 750));
        let first = *img.get_pixel(0, 0);
        let differing = img.pixels().filter(|p| **p != first).count();
        assert!(differing > 20_000, "only {differing} drawn pixels");
    }

    #[test]
    fn every_chart_kind_draws() {
        let lines = Chart::lines(
            "circle",
            vec![
                ChartLines::line(
                    "ref",
                    (0..=32)
                        .map(|i| {
                            let a = i as f64 / 32.0 * std::f64::consts::TAU;
                            (a.cos(), a.sin())
                        })
                        .collect(),
                    SeriesRole::Reference,
                ),
                ChartLines::scatter(
                    "points",
                    vec![(1.0, 0.0), (0.0, f64::INFINITY)],
                    SeriesRole::Engine(EngineKind::Wgpu),
                ),
            ],
        );
        let mut round = lines.clone();
        round.equal_aspect = true;
        let heat = Chart::heatmap("h", 2, 3, vec![0.0, 1.0, 2.0, 3.0, f64::NAN, 5.0], "v")
            .with_labels("n", "m");
        for chart in [lines, round, heat] {
            assert!(svg(&chart).unwrap().contains("<svg"));
            raster(&chart, (480, 300)).unwrap();
        }
        let bad = Chart::heatmap("bad", 2, 2, vec![1.0], "v");
        assert!(svg(&bad).unwrap_err().contains("needs 4 values"));
    }
}
