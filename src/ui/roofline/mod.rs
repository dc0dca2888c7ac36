//! The roofline view of a cell (`show = ["roofline"]`): on demand (the Measure button, or M), each
//! kernel the cell lists is timed on every engine present with `bench::measure`, and drawn as one
//! horizontal bar per engine and kernel: its throughput as a share of the same engine's
//! device-to-device copy of as many bytes (the 100% line). An op that reads each input once and
//! writes its output once cannot beat that copy, so the bar says "this kernel reached 78% of what
//! this device can move".
//!
//! `plan.rs` says what is measured where (the lesson's size on a hardware GPU, a smaller one with
//! the same rows on the CPU and software adapters), `measure.rs` holds the job the compute worker
//! runs (never the UI thread) and the cache of results per (engine, kernel, parameters, size); this
//! file draws. Nothing here panics on a failed measurement: errors are shown as text.

mod measure;
mod plan;

pub use measure::*;
pub use plan::*;

use super::cell_state::CellState;
use super::theme::Theme;
use crate::bench::{self, BenchResult};
use crate::engine::{BackendInfo, EngineKind, TimingSource};
use crate::ops::KernelVariant;
use egui::accesskit::Role;
use egui::{Align2, RichText, Sense, Stroke, StrokeKind, Ui, WidgetInfo, pos2, vec2};

/// What the roofline view asks of the app this frame.
#[derive(Default)]
pub struct RooflineEvents {
    /// Measure (again): send the plan's jobs.
    pub measure: bool,
}

fn fmt_gb(gb_per_s: f64) -> String {
    if gb_per_s >= 100.0 {
        format!("{gb_per_s:.0} GB/s")
    } else if gb_per_s >= 10.0 {
        format!("{gb_per_s:.1} GB/s")
    } else {
        format!("{gb_per_s:.2} GB/s")
    }
}

fn fmt_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

fn fmt_bytes(bytes: f64) -> String {
    if bytes >= 1e9 {
        format!("{:.2} GB", bytes / 1e9)
    } else if bytes >= 1e6 {
        format!("{:.1} MB", bytes / 1e6)
    } else {
        format!("{:.0} kB", bytes / 1e3)
    }
}

/// The name a bar carries: the kernel on a GPU engine ("kernel" for ops with one), "CPU code" on
/// the CPU.
fn kernel_label(engine: EngineKind, kernel: KernelVariant, variants: bool) -> String {
    match (engine, variants) {
        (EngineKind::Cpu, _) => "CPU code".into(),
        (_, true) => kernel.name().into(),
        (_, false) => "kernel".into(),
    }
}

/// A finished measurement in words: "simple: 38% of copy · 1273 GB/s · 824 µs".
pub fn result_text(label: &str, r: &BenchResult) -> String {
    match r.percent_of_copy {
        Some(p) => format!(
            "{label}: {p:.0}% of copy · {} · {}",
            fmt_gb(r.gb_per_s),
            fmt_us(r.median_us)
        ),
        None => format!(
            "{label}: {} · {} (this engine cannot time a copy)",
            fmt_gb(r.gb_per_s),
            fmt_us(r.median_us)
        ),
    }
}

/// Why an engine's numbers are not a GPU's, when they are not.
fn honesty_note(e: &EnginePlan) -> Option<String> {
    match (e.engine, e.hardware) {
        (EngineKind::Cpu, _) => Some(
            "CPU: these numbers measure this computer's processor against its own memory copy, not a GPU."
                .into(),
        ),
        (engine, false) => Some(format!(
            "{} runs on a software adapter, a CPU running Vulkan: these numbers measure a CPU, not a GPU.",
            engine.display_name()
        )),
        _ => None,
    }
}

/// The roofline view: what Measure will do, the button, and the bars measured so far.
pub fn roofline_ui(
    ui: &mut Ui,
    state: &CellState,
    backends: Option<&[BackendInfo]>,
    measurements: &Measurements,
    theme: &Theme,
) -> RooflineEvents {
    let mut events = RooflineEvents::default();
    ui.add_space(theme.block_gap * 0.5);
    ui.label(
        RichText::new("Roofline: each kernel against a copy of the same bytes")
            .strong()
            .size(theme.text_body),
    );
    let Some(backends) = backends else {
        ui.label(RichText::new("probing engines…").color(theme.text_weak));
        return events;
    };
    let plan = match plan(state, backends) {
        Ok(p) => p,
        Err(e) => {
            ui.label(RichText::new(format!("✘ cannot measure: {e}")).color(theme.fail));
            return events;
        }
    };
    let measuring = is_measuring(&plan, measurements);
    let any_done = plan
        .jobs()
        .any(|j| matches!(measurements.get(&j.key), Some(Measurement::Done(_))));
    ui.horizontal_wrapped(|ui| {
        let text = if any_done {
            "▶ Measure again (M)"
        } else {
            "▶ Measure (M)"
        };
        let button = ui.add_enabled(!measuring, egui::Button::new(text));
        if button
            .on_hover_text("Times each kernel on every engine, off the UI thread")
            .clicked()
        {
            events.measure = true;
        }
        if measuring {
            ui.add(egui::Spinner::new().size(theme.text_body));
            let done = plan
                .jobs()
                .filter(|j| matches!(measurements.get(&j.key), Some(Measurement::Done(_))))
                .count();
            let total = plan.jobs().count();
            ui.label(
                RichText::new(format!("measuring: {done} of {total} done…")).color(theme.text_weak),
            );
        }
    });
    if !any_done && !measuring {
        before_ui(ui, &plan, theme);
        return events;
    }
    for e in &plan.engines {
        engine_bars_ui(ui, e, e.variants, measurements, theme);
    }
    let seconds: f64 = plan
        .jobs()
        .filter_map(|j| match measurements.get(&j.key) {
            Some(Measurement::Done(m)) => Some(m.seconds),
            _ => None,
        })
        .sum();
    if !measuring {
        ui.label(
            RichText::new(format!(
                "Median of {} runs after {} warm-up runs, then {} copies of as many bytes; measured in {seconds:.1} s.",
                bench::RUNS,
                bench::WARMUP,
                bench::RUNS
            ))
            .size(theme.text_small)
            .color(theme.text_weak),
        );
    }
    events
}

/// Before anything is measured: what Measure will measure, where, and about how long it takes.
fn before_ui(ui: &mut Ui, plan: &Plan, theme: &Theme) {
    ui.label(
        RichText::new(
            "An op that reads each input once and writes its output once cannot move bytes faster \
             than a copy of the same bytes on the same device: that copy is 100%.",
        )
        .color(theme.text_weak),
    );
    let mut lines = Vec::new();
    for e in &plan.engines {
        let kernels = if e.engine == EngineKind::Cpu {
            "its one implementation".to_string()
        } else if !e.variants {
            "its kernel".to_string()
        } else {
            e.jobs
                .iter()
                .map(|j| format!("the {} kernel", j.key.kernel))
                .collect::<Vec<_>>()
                .join(" and ")
        };
        lines.push(format!(
            "{} ({}): {} at {}",
            e.engine.display_name(),
            e.device,
            kernels,
            shape_text(&e.shape)
        ));
    }
    ui.label(RichText::new(format!("Measure times {} on:", plan.what)).size(theme.text_body));
    for line in lines {
        ui.label(RichText::new(format!("· {line}")).size(theme.text_small));
    }
    let estimate = plan.estimate_seconds().ceil().max(1.0);
    ui.label(
        RichText::new(format!(
            "{} warm-up and {} timed runs per kernel, then {} copies: about {estimate:.0} s; the cells keep working meanwhile.",
            bench::WARMUP,
            bench::RUNS,
            bench::RUNS
        ))
        .size(theme.text_small)
        .color(theme.text_weak),
    );
    for e in &plan.engines {
        if let Some(note) = honesty_note(e) {
            ui.label(
                RichText::new(format!("⚠ {note}"))
                    .size(theme.text_small)
                    .color(theme.warning),
            );
        }
    }
}

/// One engine: its name and device, the note when it is not a GPU, a bar per kernel, and the
/// 100% line labelled with the copy's GB/s.
fn engine_bars_ui(
    ui: &mut Ui,
    e: &EnginePlan,
    variants: bool,
    measurements: &Measurements,
    theme: &Theme,
) {
    ui.add_space(theme.block_gap * 0.5);
    let done: Vec<&BenchResult> = e
        .jobs
        .iter()
        .filter_map(|j| match measurements.get(&j.key) {
            Some(Measurement::Done(Measured { result: Ok(r), .. })) => Some(r),
            _ => None,
        })
        .collect();
    let mut header = format!(
        "{} · {} · {}",
        e.engine.display_name(),
        e.device,
        shape_text(&e.shape)
    );
    if let Some(r) = done.first() {
        header.push_str(&format!(" · {} per run", fmt_bytes(r.bytes as f64)));
    }
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = (theme.text_body * 0.3).round();
        ui.label(RichText::new("■").color(theme.engine_color(e.engine)));
        ui.label(RichText::new(header).strong());
    });
    if let Some(note) = honesty_note(e) {
        ui.label(
            RichText::new(format!("⚠ {note}"))
                .size(theme.text_small)
                .color(theme.warning),
        );
    }
    // The bars share one scale: 0 to 100% of copy, or further when a kernel beat the copy
    // (caches can do that at small sizes).
    let top = done
        .iter()
        .filter_map(|r| r.percent_of_copy)
        .fold(100.0f64, f64::max);
    let mut copies: Vec<f64> = done.iter().filter_map(|r| r.copy_gb_per_s).collect();
    copies.sort_by(f64::total_cmp);
    for job in &e.jobs {
        let label = kernel_label(e.engine, job.key.kernel, variants);
        match measurements.get(&job.key) {
            None => {
                ui.label(
                    RichText::new(format!("{label}: not measured yet")).color(theme.text_weak),
                );
            }
            Some(Measurement::Pending) => {
                ui.label(RichText::new(format!("{label}: measuring…")).color(theme.text_weak));
            }
            Some(Measurement::Done(Measured {
                result: Err(err), ..
            })) => {
                ui.label(RichText::new(format!("{label}: ✘ {err}")).color(theme.fail));
            }
            Some(Measurement::Done(Measured { result: Ok(r), .. })) => {
                let text = result_text(&label, r);
                let timing = match r.timing {
                    TimingSource::CudaEvents => "CUDA events",
                    TimingSource::GpuTimestamps => "GPU timestamps",
                    TimingSource::WallClock => "the host clock (includes launch overhead)",
                };
                ui.label(RichText::new(&text).size(theme.text_body))
                    .on_hover_text(format!(
                        "{} bytes moved per run (each input read once, the output written once); timed with {timing}",
                        r.bytes
                    ));
                if let Some(p) = r.percent_of_copy {
                    bar_ui(ui, &text, p, top, job.key.kernel, e.engine, theme);
                }
            }
        }
    }
    if let (Some(lo), Some(hi)) = (copies.first(), copies.last()) {
        let copy = if hi / lo > 1.05 {
            format!("100% = copy: {}–{}", fmt_gb(*lo), fmt_gb(*hi))
        } else {
            format!("100% = copy: {}", fmt_gb((lo + hi) / 2.0))
        };
        copy_label_ui(ui, &copy, top, theme);
    }
}

/// One bar: a track for 0 to `top` percent, filled to `percent`, with the 100% line.
fn bar_ui(
    ui: &mut Ui,
    text: &str,
    percent: f64,
    top: f64,
    kernel: KernelVariant,
    engine: EngineKind,
    theme: &Theme,
) {
    let width = ui.available_width().max(40.0);
    let height = (theme.text_body * 1.1).round();
    let (rect, response) = ui.allocate_exact_size(vec2(width, height), Sense::hover());
    response.widget_info(|| WidgetInfo::labeled(Role::Meter, true, format!("bar: {text}")));
    let painter = ui.painter_at(rect.expand(theme.line_width));
    painter.rect(
        rect,
        2.0,
        theme.plot_background,
        Stroke::new((theme.line_width * 0.5).max(1.0), theme.grid),
        StrokeKind::Inside,
    );
    let frac = (percent.max(0.0) / top) as f32;
    let mut fill = rect;
    fill.set_width(rect.width() * frac.clamp(0.0, 1.0));
    // The simple kernel's bar is lighter: the label says which is which, the shade helps.
    let color = match kernel {
        KernelVariant::Simple if engine != EngineKind::Cpu => {
            theme.engine_color(engine).gamma_multiply(0.55)
        }
        _ => theme.engine_color(engine),
    };
    painter.rect_filled(fill, 2.0, color);
    let x = rect.left() + rect.width() * (100.0 / top) as f32;
    painter.line_segment(
        [pos2(x, rect.top() - 3.0), pos2(x, rect.bottom() + 3.0)],
        Stroke::new(theme.line_width, theme.text),
    );
}

/// "100% = copy: 4194 GB/s" under the bars, ending at the 100% line.
fn copy_label_ui(ui: &mut Ui, text: &str, top: f64, theme: &Theme) {
    let width = ui.available_width().max(40.0);
    let font = theme.small_font();
    let galley = ui
        .painter()
        .layout_no_wrap(text.to_string(), font.clone(), theme.text);
    let (rect, response) =
        ui.allocate_exact_size(vec2(width, galley.size().y + 2.0), Sense::hover());
    response.widget_info(|| WidgetInfo::labeled(Role::Label, true, text));
    let x = rect.left() + rect.width() * (100.0 / top) as f32;
    // Right-aligned at the line when it fits, else from the left edge.
    let (anchor, at) = if x - galley.size().x >= rect.left() {
        (Align2::RIGHT_TOP, pos2(x, rect.top()))
    } else {
        (Align2::LEFT_TOP, pos2(rect.left(), rect.top()))
    };
    ui.painter().text(at, anchor, text, font, theme.text);
}
