//! An op cell: its live state (parameter values, the kernel, the input the learner edited, the
//! latest result) and its UI: input editor, parameter widgets, one column per engine with the
//! result and its check against the f64 reference, and the roofline view when the cell shows it.
//! The cell never computes: it sends requests to the worker and draws the `Comparison` (and the
//! measurements) that come back.

use super::cell_state::EDITABLE_VALUES;
pub use super::cell_state::{CellState, format_input, parse_values};
use super::layout::{text_width, wrap_unless_fits};
use super::plots::chart_ui;
use super::roofline::{Measurements, roofline_ui};
use super::theme::Theme;
use crate::chart::{Chart, format_significant, format_value};
use crate::compare::{Comparison, EngineRun};
use crate::engine::{BackendInfo, EngineError};
use crate::lesson::{Control, ParamValue, View};
use egui::{RichText, Ui};

/// Values listed per engine under its column.
const LISTED_VALUES: usize = 8;
/// Rows of the table view.
const TABLE_ROWS: usize = 32;

/// What the app must do after drawing a cell.
#[derive(Default)]
pub struct CellEvents {
    /// Parameters or input changed: send a new request.
    pub changed: bool,
    /// The sweep button was pressed: start or stop this cell's sweep.
    pub toggle_sweep: bool,
    /// The roofline view's Measure button was pressed.
    pub measure: bool,
}

/// What the roofline view needs from the app: the engines found and every measurement so far.
#[derive(Clone, Copy)]
pub struct RooflineData<'a> {
    pub backends: Option<&'a [BackendInfo]>,
    pub measurements: &'a Measurements,
}

/// Options that affect how cells draw.
#[derive(Clone, Copy, Default)]
pub struct CellOptions {
    /// Hide run times (snapshot tests need identical pixels on every run).
    pub hide_timings: bool,
    /// This cell's sweep is running.
    pub sweeping: bool,
    /// Classroom mode: no op summary, no seed or .npy controls (the room needs the slider and the
    /// results, not the file picker).
    pub compact: bool,
}

/// Draw an op cell. Returns whether the learner changed something.
pub fn cell_ui(
    ui: &mut Ui,
    id: egui::Id,
    state: &mut CellState,
    theme: &Theme,
    options: CellOptions,
    roofline: RooflineData<'_>,
) -> CellEvents {
    let mut events = CellEvents::default();
    let frame = egui::Frame::group(ui.style())
        .fill(theme.panel)
        .inner_margin(theme.cell_padding);
    frame.show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal_wrapped(|ui| {
            let title = state
                .spec
                .title
                .clone()
                .unwrap_or_else(|| state.spec.op.name().to_string());
            ui.label(RichText::new(title).strong().size(theme.text_subheading));
            if !options.compact {
                ui.label(
                    RichText::new(state.spec.op.summary())
                        .color(theme.text_weak)
                        .size(theme.text_small),
                );
            }
        });
        ui.add_space(theme.block_gap * 0.5);
        input_ui(ui, id, state, theme, &mut events, options.compact);
        extra_inputs_ui(ui, state, theme, options.compact);
        params_ui(ui, state, theme, &mut events, options.compact);
        if let Some(sweep) = &state.spec.sweep {
            let text = if options.sweeping {
                format!("■ Stop the {} sweep (S)", sweep.param)
            } else {
                format!(
                    "▶ Sweep {} from {} to {} over {} s (S)",
                    sweep.param,
                    format_value(sweep.from),
                    format_value(sweep.to),
                    format_value(sweep.seconds)
                )
            };
            if ui
                .button(text)
                .on_hover_text("The results and checks update live while the slider moves")
                .clicked()
            {
                events.toggle_sweep = true;
            }
        }
        if let Some(err) = &state.request_error {
            ui.label(RichText::new(format!("✘ {err}")).color(theme.fail));
        }
        let result = state.result.clone();
        match result {
            Some(result) => {
                for note in &result.notes {
                    ui.label(RichText::new(format!("⚠ {note}")).color(theme.warning));
                }
                results_ui(ui, id, state, &result, theme, options);
            }
            None if state.request_error.is_none() => {
                ui.label(RichText::new("computing on every engine…").color(theme.text_weak));
            }
            None => {}
        }
        if state.spec.show.contains(&View::Roofline) {
            let r = roofline_ui(ui, state, roofline.backends, roofline.measurements, theme);
            events.measure |= r.measure;
        }
    });
    events
}

fn input_ui(
    ui: &mut Ui,
    id: egui::Id,
    state: &mut CellState,
    theme: &Theme,
    events: &mut CellEvents,
    compact: bool,
) {
    let primary = state.spec.op.inputs()[0].name;
    ui.horizontal_wrapped(|ui| {
        let label = ui.label(format!("input {primary}"));
        if state.input.len() <= EDITABLE_VALUES {
            let edit = egui::TextEdit::singleline(&mut state.input_text)
                .id(id.with("input"))
                .font(egui::TextStyle::Monospace)
                .desired_width((ui.available_width() * 0.5).max(theme.field_width * 1.5));
            let response = ui
                .add(edit)
                .labelled_by(label.id)
                .on_hover_text("Type numbers like [2.0, 1.0, 0.1]; nan, inf and -inf are allowed");
            if response.changed() {
                let text = state.input_text.clone();
                if state.set_input_text(&text) {
                    events.changed = true;
                }
            }
        } else {
            let shape = match &state.spec.shape {
                Some(s) => format!("{s:?}"),
                None => format!("{} x {}", state.input.rows(), state.input.cols()),
            };
            ui.label(
                RichText::new(format!("{shape} values"))
                    .monospace()
                    .color(theme.text_weak),
            );
        }
        if compact {
            return;
        }
        if ui
            .button("new random")
            .on_hover_text("Draw new values of the same shape from the seed")
            .clicked()
        {
            state.randomise();
            events.changed = true;
        }
        let seed_label = ui.label("seed");
        let seed = ui
            .add(egui::DragValue::new(&mut state.seed).range(0..=u32::MAX as u64))
            .labelled_by(seed_label.id);
        if seed.changed() {
            state.randomise();
            events.changed = true;
        }
        let npy_label = ui.label(".npy");
        ui.add(
            egui::TextEdit::singleline(&mut state.npy_path)
                .id(id.with("npy"))
                .hint_text("path/to/x.npy")
                .desired_width(theme.field_width),
        )
        .labelled_by(npy_label.id);
        if ui.button("load").clicked() {
            state.load_npy();
            if state.input_error.is_none() {
                events.changed = true;
            }
        }
    });
    if let Some(err) = &state.input_error {
        ui.label(RichText::new(format!("✘ input: {err}")).color(theme.fail));
    }
}

/// The cell's other inputs (positions, weights, ids): name, shape and the first values (in
/// classroom mode name and shape only: a room cannot read eight weights).
fn extra_inputs_ui(ui: &mut Ui, state: &CellState, theme: &Theme, compact: bool) {
    if state.spec.extra.is_empty() {
        return;
    }
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = theme.column_gap;
        for (name, t) in state.spec.extra_tensors() {
            if compact {
                ui.label(
                    RichText::new(format!("{name} {:?}", t.shape))
                        .monospace()
                        .size(theme.text_small)
                        .color(theme.text_weak),
                );
                continue;
            }
            let shown: Vec<String> = t
                .data
                .iter()
                .take(LISTED_VALUES)
                .map(|&v| format_value(v as f64))
                .collect();
            let more = if t.len() > LISTED_VALUES { ", …" } else { "" };
            ui.label(
                RichText::new(format!(
                    "{name} {:?} = [{}{more}]",
                    t.shape,
                    shown.join(", ")
                ))
                .monospace()
                .size(theme.text_small)
                .color(theme.text_weak),
            );
        }
    });
}

fn params_ui(
    ui: &mut Ui,
    state: &mut CellState,
    theme: &Theme,
    events: &mut CellEvents,
    compact: bool,
) {
    let kernel_choices = state
        .spec
        .kernel
        .as_ref()
        .map(|k| k.choices.clone())
        .unwrap_or_default();
    let adjustable = !kernel_choices.is_empty()
        || state
            .spec
            .params
            .iter()
            .any(|p| p.control != Control::Fixed);
    if !adjustable {
        return;
    }
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = theme.column_gap;
        for (i, p) in state.spec.params.iter().enumerate() {
            let value = &mut state.values[i];
            match (&p.control, value) {
                (Control::Slider { min, max, log }, ParamValue::Float(v)) => {
                    // A label and its slider (rail and a value box of about four characters)
                    // wrap together: egui wraps single widgets, and a slider that starts near the
                    // end of a row would run past a narrow column.
                    let needed = text_width(ui, RichText::new(p.name).size(theme.text_body))
                        + ui.spacing().slider_width
                        + theme.text_body * 4.0
                        + 2.0 * ui.spacing().item_spacing.x;
                    wrap_unless_fits(ui, needed);
                    let label = ui.label(p.name);
                    let integer = p.is_integer(state.spec.op);
                    // Three significant digits, not three decimals: a decimals limit would also
                    // round the value itself (eps = 1e-6 would become 0).
                    let mut slider = egui::Slider::new(v, *min..=*max)
                        .logarithmic(*log)
                        .custom_formatter(|v, _| format_value(v));
                    if integer {
                        slider = slider.integer();
                    }
                    let r = ui.add(slider).labelled_by(label.id);
                    if r.changed() {
                        events.changed = true;
                    }
                }
                (Control::Slider { min, max, log }, value @ ParamValue::Absent) => {
                    // An optional parameter (logit's eps) starts absent; a checkbox turns it on.
                    let mut on = false;
                    if ui.checkbox(&mut on, p.name).changed() && on {
                        let start = if *log { (min * max).sqrt() } else { *min };
                        *value = ParamValue::Float(start);
                        events.changed = true;
                    }
                }
                (Control::Toggle, ParamValue::Bool(b)) => {
                    events.changed |= ui.checkbox(b, p.name).changed();
                }
                (Control::Choice { choices }, ParamValue::Choice(c)) => {
                    // The name and its choices wrap together, as one control.
                    let pad = 2.0 * ui.spacing().button_padding.x + ui.spacing().item_spacing.x;
                    let needed = text_width(ui, RichText::new(p.name).size(theme.text_body))
                        + choices
                            .iter()
                            .map(|c| text_width(ui, RichText::new(c).size(theme.text_body)) + pad)
                            .sum::<f32>();
                    wrap_unless_fits(ui, needed);
                    let label = ui.label(p.name);
                    for choice in choices {
                        let r = ui
                            .selectable_label(c == choice, choice)
                            .labelled_by(label.id);
                        if r.clicked() && c != choice {
                            *c = choice.clone();
                            events.changed = true;
                        }
                    }
                }
                (Control::Fixed, v) => {
                    if let Some(s) = v.to_param_string() {
                        let mut text =
                            RichText::new(format!("{} = {s}", p.name)).color(theme.text_weak);
                        if compact {
                            // Context, not controls: smaller, so the sliders stand out.
                            text = text.size(theme.text_small);
                        }
                        // "name = value" is one unit: start a new row rather than split it.
                        wrap_unless_fits(ui, text_width(ui, text.clone()));
                        ui.label(text);
                    }
                }
                _ => {}
            }
        }
        if !kernel_choices.is_empty() {
            ui.label("kernel")
                .on_hover_text("Which kernel the GPU engines run; the CPU engine has one");
            for k in kernel_choices {
                // Named by its own text ("fast"), so a screen reader says which kernel it is.
                let r = ui
                    .selectable_label(state.kernel == k, k.name())
                    .on_hover_text(format!("Run the {k} kernel on the GPU engines"));
                if r.clicked() && state.kernel != k {
                    state.kernel = k;
                    events.changed = true;
                }
            }
        }
    });
}

fn results_ui(
    ui: &mut Ui,
    id: egui::Id,
    state: &CellState,
    result: &Comparison,
    theme: &Theme,
    options: CellOptions,
) {
    let views = &state.spec.show;
    let per_engine: Vec<View> = views
        .iter()
        .copied()
        .filter(|v| matches!(v, View::Bars | View::Heatmap | View::Check))
        .collect();
    // In classroom mode an absent engine is one line under the columns, not a column.
    let absent =
        |r: &&EngineRun| options.compact && matches!(r.result, Err(EngineError::Unavailable(_)));
    let runs: Vec<&EngineRun> = result.runs.iter().filter(|r| !absent(r)).collect();
    let missing: Vec<&EngineRun> = result.runs.iter().filter(absent).collect();
    ui.add_space(theme.block_gap * 0.5);
    // Engines that ran share the width; one that is absent gets a narrow column for its reason.
    let weights: Vec<f32> = runs
        .iter()
        .map(|r| match &r.result {
            Err(EngineError::Unavailable(_)) => 0.5,
            _ => 1.0,
        })
        .collect();
    // In classroom mode a cell with a chart or a table does not also list the values: it shows them.
    let list_values = !(options.compact
        && views.iter().any(|v| {
            matches!(
                v,
                View::Bars | View::Heatmap | View::Line | View::Table | View::Topic(_)
            )
        }));
    let total: f32 = weights.iter().sum::<f32>().max(1.0);
    let gap = theme.column_gap;
    let usable = (ui.available_width() - gap * (runs.len().saturating_sub(1)) as f32).max(0.0);
    ui.horizontal_top(|ui| {
        ui.spacing_mut().item_spacing.x = gap;
        for (&run, w) in runs.iter().zip(&weights) {
            let width = usable * w / total;
            ui.allocate_ui_with_layout(
                egui::vec2(width, 0.0),
                egui::Layout::top_down(egui::Align::Min),
                |col| {
                    col.set_width(width);
                    engine_column_ui(
                        col,
                        id.with(run.kind),
                        run,
                        result,
                        &per_engine,
                        theme,
                        options,
                        state.spec.kernel.is_some(),
                        list_values,
                    );
                },
            );
        }
    });
    for run in missing {
        if let Err(EngineError::Unavailable(reason)) = &run.result {
            ui.label(
                RichText::new(format!("{} absent", run.kind.display_name()))
                    .size(theme.text_small)
                    .color(theme.text_weak),
            )
            .on_hover_text(reason.as_str());
        }
    }
    for view in views {
        match view {
            View::Line => {
                chart_ui(ui, id.with("line"), &Chart::comparison_lines(result), theme);
            }
            View::Table => table_ui(ui, id.with("table"), result, theme, options.compact),
            View::Topic(name) => topic_view_ui(ui, id.with(name), name, result, theme),
            _ => {}
        }
    }
}

/// A topic's figure (`crate::views`): its charts side by side, then its readouts.
fn topic_view_ui(ui: &mut Ui, id: egui::Id, name: &str, result: &Comparison, theme: &Theme) {
    ui.add_space(theme.block_gap * 0.5);
    match crate::views::figure(name, result) {
        Ok(figure) => {
            // Side by side while each chart keeps room for its legend and axes, else wrapped into
            // rows (four charts in a classroom's narrow column become two rows of two).
            let gap = theme.column_gap;
            let min_width = theme.text_body * 20.0;
            let fit = ((ui.available_width() + gap) / (min_width + gap))
                .floor()
                .max(1.0) as usize;
            let n = figure.charts.len().max(1);
            let rows = n.div_ceil(fit);
            let per_row = n.div_ceil(rows); // balanced: 4 charts that fit 3 a row are 2 + 2

            let width =
                ((ui.available_width() - gap * (per_row - 1) as f32) / per_row as f32).max(0.0);
            for (r, row) in figure.charts.chunks(per_row).enumerate() {
                ui.horizontal_top(|ui| {
                    ui.spacing_mut().item_spacing.x = gap;
                    for (i, chart) in row.iter().enumerate() {
                        ui.allocate_ui_with_layout(
                            egui::vec2(width, 0.0),
                            egui::Layout::top_down(egui::Align::Min),
                            |col| {
                                col.set_width(width);
                                chart_ui(col, id.with((r, i)), chart, theme);
                            },
                        );
                    }
                });
            }
            for line in &figure.readouts {
                ui.label(RichText::new(line).size(theme.text_body));
            }
        }
        Err(reason) => {
            ui.label(RichText::new(format!("{name}: {reason}")).color(theme.text_weak));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn engine_column_ui(
    ui: &mut Ui,
    id: egui::Id,
    run: &EngineRun,
    result: &Comparison,
    views: &[View],
    theme: &Theme,
    options: CellOptions,
    show_kernel: bool,
    list_values: bool,
) {
    let name = run.kind.display_name();
    match &run.result {
        Ok((out, report)) => {
            let mut header = name.to_string();
            if show_kernel && run.kind.has_kernel_variants(&result.request.op) {
                header.push_str(&format!(" · {} kernel", result.request.kernel));
            }
            if !options.hide_timings {
                header.push_str(&format!(" · {}", fmt_time(out.kernel_time.as_secs_f64())));
            }
            ui.label(RichText::new(header).strong())
                .on_hover_text(format!(
                    "{} · kernel time measured with {:?}",
                    run.device.as_deref().unwrap_or(""),
                    out.timing
                ));
            if !options.compact {
                ui.label(
                    RichText::new(run.device.as_deref().unwrap_or(""))
                        .size(theme.text_small)
                        .color(theme.text_weak),
                );
            }
            for view in views {
                match view {
                    View::Bars => {
                        chart_ui(
                            ui,
                            id.with("bars"),
                            &Chart::engine_bars(run.kind, &out.values, result),
                            theme,
                        );
                    }
                    View::Heatmap => {
                        chart_ui(
                            ui,
                            id.with("heat"),
                            &Chart::engine_heatmap(&out.values, result),
                            theme,
                        );
                    }
                    View::Check => {
                        let (mark, color) = if report.passed {
                            ("✔", theme.pass)
                        } else {
                            ("✘", theme.fail)
                        };
                        // Classroom columns are narrow and read from afar: the verdict and the
                        // ULP distance, the full report on hover.
                        let text = if options.compact {
                            format!("{mark} {}", report.short())
                        } else {
                            format!("{mark} {report}")
                        };
                        ui.label(RichText::new(text).color(color))
                            .on_hover_text(format!(
                                "{report}\nTolerance: |got - ref| ≤ {:e} + {:e}·|ref|, or within {} ULP",
                                report.tolerance.atol,
                                report.tolerance.rtol,
                                report.tolerance.max_ulp
                            ));
                    }
                    _ => {}
                }
            }
            if !list_values {
                return;
            }
            let shown: Vec<String> = out
                .values
                .iter()
                .take(LISTED_VALUES)
                .map(|&v| format_value(v as f64))
                .collect();
            let more = if out.values.len() > LISTED_VALUES {
                ", …"
            } else {
                ""
            };
            ui.label(
                RichText::new(format!("y = [{}{more}]", shown.join(", ")))
                    .monospace()
                    .size(theme.text_small),
            );
        }
        Err(EngineError::Unavailable(reason)) | Err(EngineError::Unsupported(reason)) => {
            ui.label(RichText::new(name).strong().color(theme.text_weak));
            ui.label(RichText::new(format!("not available: {reason}")).color(theme.text_weak));
        }
        Err(e) => {
            ui.label(RichText::new(name).strong());
            ui.label(RichText::new(format!("✘ {e}")).color(theme.fail));
        }
    }
}

fn fmt_time(secs: f64) -> String {
    if secs < 1e-3 {
        format!("{:.0} µs", secs * 1e6)
    } else {
        format!("{:.1} ms", secs * 1e3)
    }
}

/// Tables show 7 significant digits (what f32 holds), so neighbours such as -13.8155 and 13.8023
/// are told apart.
fn table_value(v: f64) -> String {
    format_significant(v, 7)
}

/// The values next to the f64 reference, one column per engine (in classroom mode only the
/// engines that ran: an absent one is already named under the engine columns).
fn table_ui(ui: &mut Ui, id: egui::Id, result: &Comparison, theme: &Theme, compact: bool) {
    let runs: Vec<&EngineRun> = result
        .runs
        .iter()
        .filter(|r| !(compact && matches!(r.result, Err(EngineError::Unavailable(_)))))
        .collect();
    let outputs = result.reference.len();
    let n = outputs.min(TABLE_ROWS);
    // A table wider than its column (many engines, a narrow window) scrolls sideways inside the
    // column instead of widening it.
    egui::ScrollArea::horizontal()
        .id_salt(id.with("scroll"))
        .show(ui, |ui| {
            table_grid_ui(ui, id, result, &runs, theme, compact, n)
        });
    if outputs > n {
        ui.label(RichText::new(format!("first {n} of {outputs} values")).color(theme.text_weak));
    }
}

/// The table's grid: x (or the output index), the reference and one column per engine in `runs`,
/// `n` rows.
fn table_grid_ui(
    ui: &mut Ui,
    id: egui::Id,
    result: &Comparison,
    runs: &[&EngineRun],
    theme: &Theme,
    compact: bool,
    n: usize,
) {
    let x = &result.request.x.data;
    // Ops whose output is not shaped like x (a loss per row, a lookup) list outputs by index.
    let same_shape = result.request.output_shape() == result.request.x.shape;
    egui::Grid::new(id)
        .striped(true)
        .spacing([
            if compact {
                theme.column_gap * 0.5
            } else {
                theme.column_gap
            },
            theme.item_spacing.y,
        ])
        .show(ui, |ui| {
            ui.label(RichText::new(if same_shape { "x" } else { "i" }).strong());
            // The narrow classroom column keeps the values whole and shortens the header.
            ui.label(
                RichText::new(if compact {
                    "reference"
                } else {
                    "f64 reference"
                })
                .strong(),
            );
            for run in runs {
                ui.label(RichText::new(run.kind.display_name()).strong());
            }
            ui.end_row();
            for i in 0..n {
                let first = match (same_shape, x.get(i)) {
                    (true, Some(&xi)) => table_value(xi as f64),
                    _ => i.to_string(),
                };
                ui.label(RichText::new(first).monospace());
                ui.label(RichText::new(table_value(result.reference[i])).monospace());
                for run in runs {
                    match &run.result {
                        Ok((out, _)) if i < out.values.len() => {
                            ui.label(RichText::new(table_value(out.values[i] as f64)).monospace())
                        }
                        _ => ui.label(RichText::new("—").color(theme.text_weak)),
                    };
                }
                ui.end_row();
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Tensor;

    #[test]
    fn parses_vectors_and_matrices() {
        assert_eq!(
            parse_values("[2.0, 1, -0.5]").unwrap(),
            vec![vec![2.0, 1.0, -0.5]]
        );
        assert_eq!(
            parse_values("[[1, 2], [3, 4]]").unwrap(),
            vec![vec![1.0, 2.0], vec![3.0, 4.0]]
        );
        let v = parse_values("[nan, inf, -inf]").unwrap();
        assert!(v[0][0].is_nan() && v[0][1] == f32::INFINITY && v[0][2] == f32::NEG_INFINITY);
    }

    #[test]
    fn rejects_bad_input_with_reasons() {
        assert!(
            parse_values("2, 3")
                .unwrap_err()
                .contains("expected a list")
        );
        assert!(
            parse_values("[1, two]")
                .unwrap_err()
                .contains("not a list of numbers")
        );
        assert!(
            parse_values("[[1, 2], [3]]")
                .unwrap_err()
                .contains("row 2 has 1")
        );
        assert!(parse_values("[]").unwrap_err().contains("empty"));
        assert!(
            parse_values("[\"a\"]")
                .unwrap_err()
                .contains("is not a number")
        );
    }

    #[test]
    fn formats_round_trip() {
        let t = Tensor::matrix(2, 2, vec![1.0, 0.5, f32::NAN, f32::NEG_INFINITY]).unwrap();
        let text = format_input(&t);
        let back = parse_values(&text).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0], vec![1.0, 0.5]);
        assert!(back[1][0].is_nan() && back[1][1] == f32::NEG_INFINITY);
        assert_eq!(table_value(-13.815510557964274), "-13.81551");
        assert_eq!(table_value(13.802309906), "13.80231");
        assert_eq!(table_value(3.72e-44), "3.720000e-44");
        assert_eq!(table_value(0.5), "0.5");
        assert_eq!(
            format_input(&Tensor::row(vec![1e-30, 0.25, 3e8])),
            "[1e-30, 0.25, 3e8]"
        );
        assert_eq!(
            parse_values("[1e-30, 3e8]").unwrap(),
            vec![vec![1e-30f32, 3e8]]
        );
    }
}
