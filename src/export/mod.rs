//! Screenshots and figures that can be handed out and reproduced.
//!
//! - [`Provenance`]: what a picture shows (lesson, step, every cell's op, parameters, seed, input
//!   shape, engines with their devices and check results, app version), written into every PNG as
//!   text chunks by [`write_png`] and read back by [`read_text_chunks`]: a figure in a report says
//!   how to make it again.
//! - [`export`]: `kernelbook export`, every step of every (or one) lesson rendered headless with
//!   egui_kittest's wgpu renderer (a software Vulkan adapter is enough) to PNG, and with
//!   `--figures` each plot cell's charts as SVG and print PNG ([`figures`]).
//! - [`default_screenshot_dir`]: where the app's screenshot key saves by default.
//!
//! Every file is written atomically ([`crate::files`]); an export stops between two files when
//! asked to ([`ExportOptions::stop`], set by Ctrl+C or SIGTERM), so it leaves only complete files.
//! Lesson text no bundled font has (Chinese, emoji) is drawn with an installed font found through
//! the system's font fallback, or as a visible replacement box when there is none: never a panic.

pub mod figures;
pub mod render;

use crate::chart::Chart;
use crate::compare::Comparison;
use crate::lesson::{LessonError, View};
pub use crate::provenance::{
    CellProvenance, EngineProvenance, Provenance, SaveError, app_version, default_screenshot_dir,
    prepare_folder, read_text_chunks, write_png,
};
use crate::ui::{AppOptions, KernelbookApp, Remembered};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use thiserror::Error;

/// Why an export or a screenshot could not be written. Each names the path or the cause.
#[derive(Debug, Error)]
pub enum ExportError {
    #[error("{path}: cannot create the folder: {reason}")]
    Folder { path: PathBuf, reason: String },
    #[error("{path}: cannot write: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("no adapter to render with: {0}")]
    NoAdapter(String),
    #[error("{0}")]
    Bad(String),
    #[error("rendering failed: {0}")]
    Render(String),
    /// Lessons that could not be loaded, or a lesson that does not exist; the errors carry
    /// file:line:column.
    #[error("{message}")]
    Lessons {
        message: String,
        errors: Vec<LessonError>,
    },
    /// A signal (its number) asked the export to stop; `written` complete files were left.
    #[error(
        "stopped by signal {signal} after {written} complete file(s); nothing half-written was left"
    )]
    Interrupted { signal: i32, written: usize },
}

impl From<SaveError> for ExportError {
    fn from(e: SaveError) -> Self {
        match e {
            SaveError::Folder { path, reason } => ExportError::Folder { path, reason },
            SaveError::Write { path, reason } => ExportError::Write { path, reason },
        }
    }
}

impl From<crate::files::WriteError> for ExportError {
    fn from(e: crate::files::WriteError) -> Self {
        ExportError::Write {
            path: e.path,
            reason: e.cause,
        }
    }
}

/// The charts a cell draws, by name, from the same chart descriptions the app draws: each
/// engine's bars or heatmap, the comparison lines, a topic view's charts. Tables and checks have
/// no chart.
pub fn cell_charts(show: &[View], result: &Comparison) -> Vec<(String, Chart)> {
    let mut out: Vec<(String, Chart)> = Vec::new();
    for view in show {
        match view {
            View::Bars | View::Heatmap => {
                for run in &result.runs {
                    if let Ok((o, _)) = &run.result {
                        let chart = if *view == View::Bars {
                            Chart::engine_bars(run.kind, &o.values, result)
                        } else {
                            Chart::engine_heatmap(&o.values, result)
                        };
                        out.push((format!("{}-{}", view.name(), run.kind.name()), chart));
                    }
                }
            }
            View::Line => out.push(("line".into(), Chart::comparison_lines(result))),
            View::Topic(name) => {
                if let Ok(figure) = crate::views::figure(name, result) {
                    for (i, chart) in figure.charts.into_iter().enumerate() {
                        out.push((format!("{name}-{}", i + 1), chart));
                    }
                }
            }
            // Measured on demand in the app; an export does not time kernels.
            View::Table | View::Check | View::Roofline => {}
        }
    }
    // A figure file stands alone: say what it shows when the on-screen chart left it to its column.
    for (name, chart) in &mut out {
        if chart.title.is_empty() {
            chart.title = format!("{} · {name}", result.request.op.describe());
        } else if name.contains('-') && (name.starts_with("bars") || name.starts_with("heatmap")) {
            chart.title = format!(
                "{} · {name} · {}",
                result.request.op.describe(),
                chart.title
            );
        }
    }
    out
}

/// `kernelbook export` options.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub out: PathBuf,
    /// One lesson (id or title); all built-in (and `lessons_dir`) lessons when `None`.
    pub lesson: Option<String>,
    pub lessons_dir: Option<PathBuf>,
    /// Image size in pixels.
    pub size: (u32, u32),
    pub theme: String,
    /// Pixels per point: 2.0 draws the same layout at twice the resolution.
    pub scale: f32,
    /// Also write every plot cell's charts as SVG and print PNG.
    pub figures: bool,
    /// Set (to a signal's number) to stop between two files; `None`: never asked to stop.
    pub stop: Option<Arc<AtomicUsize>>,
}

impl ExportOptions {
    /// The signal that asked the export to stop, if one did.
    fn stop_requested(&self) -> Option<i32> {
        let signal = self.stop.as_ref()?.load(Ordering::SeqCst);
        (signal != 0).then_some(signal as i32)
    }
}

/// What an export wrote.
#[derive(Clone, Debug, Default)]
pub struct ExportReport {
    pub screenshots: Vec<PathBuf>,
    pub figures: Vec<PathBuf>,
    /// Lessons that could not be loaded (a full export goes on with the others and reports them).
    pub broken: Vec<LessonError>,
}

/// The largest image an export renders, per side, in pixels.
pub const MAX_EXPORT_SIDE: u32 = 8192;

/// Render the steps to PNG (and figures). `progress(done, total, what)` is called before each
/// step. Nothing panics: a missing adapter, a folder that cannot be written, a renderer failure
/// all come back as [`ExportError`].
pub fn export(
    options: &ExportOptions,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<ExportReport, ExportError> {
    let (w, h) = options.size;
    if w < 320 || h < 240 || w > MAX_EXPORT_SIDE || h > MAX_EXPORT_SIDE {
        return Err(ExportError::Bad(format!(
            "size {w}x{h}: give between 320x240 and {MAX_EXPORT_SIDE}x{MAX_EXPORT_SIDE} pixels"
        )));
    }
    if !(options.scale.is_finite() && (0.5..=4.0).contains(&options.scale)) {
        return Err(ExportError::Bad(format!(
            "scale {}: give a number from 0.5 to 4",
            options.scale
        )));
    }
    if crate::ui::theme::Theme::by_name(&options.theme).is_none() {
        return Err(ExportError::Bad(format!(
            "unknown theme '{}' (expected light, dark or projector)",
            options.theme
        )));
    }
    if let Some(dir) = &options.lessons_dir
        && !dir.is_dir()
    {
        return Err(ExportError::Bad(format!(
            "--lessons {}: not a folder",
            dir.display()
        )));
    }
    let lessons = crate::lesson::load_all(options.lessons_dir.as_deref());
    let broken: Vec<LessonError> = lessons
        .iter()
        .filter_map(|l| l.as_ref().err().cloned())
        .collect();
    let chosen: Vec<usize> = match &options.lesson {
        Some(name) => match crate::lesson::find(&lessons, name) {
            Some(i) => vec![i],
            None => return Err(missing_lesson(name, &lessons, broken)),
        },
        None => (0..lessons.len()).filter(|&i| lessons[i].is_ok()).collect(),
    };
    prepare_folder(&options.out)?;
    let adapter = crate::engine::wgpu::render_adapter().map_err(ExportError::NoAdapter)?;
    let _ = adapter;

    let app_options = AppOptions {
        lessons_dir: options.lessons_dir.clone(),
        inline_compute: true,
        theme: Some(options.theme.clone()),
        ..AppOptions::default()
    };
    let scale = options.scale;
    let logical = egui::vec2(w as f32 / scale, h as f32 / scale);
    let renderer = render::TiledRenderer::new().map_err(ExportError::NoAdapter)?;
    // The harness is dropped if building it panics; nothing of it is used after.
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let app = KernelbookApp::new(
            &egui::Context::default(),
            app_options,
            Remembered::default(),
        );
        egui_kittest::Harness::builder()
            .with_size(logical)
            .with_pixels_per_point(scale)
            // Text no bundled font has: an installed font, else a visible box, never a panic.
            .with_context_setup(crate::ui::theme::add_system_font_fallback)
            .allow_missing_glyphs()
            .renderer(renderer)
            .build_ui_state(|ui, app: &mut KernelbookApp| app.frame_ui(ui), app)
    }));
    let mut harness = built.map_err(|p| ExportError::Render(panic_text(p.as_ref())))?;
    let total: usize = chosen
        .iter()
        .map(|&i| lessons[i].as_ref().map_or(0, |l| l.steps.len()))
        .sum();
    let mut report = ExportReport {
        broken,
        ..ExportReport::default()
    };
    let mut done = 0;
    let interrupted = |signal: i32, report: &ExportReport| ExportError::Interrupted {
        signal,
        written: report.screenshots.len() + report.figures.len(),
    };
    for &index in &chosen {
        let Ok(lesson) = &lessons[index] else {
            continue;
        };
        for step in 0..lesson.steps.len() {
            if let Some(signal) = options.stop_requested() {
                return Err(interrupted(signal, &report));
            }
            let stem = format!("{}-step{:02}", lesson.id, step + 1);
            progress(done, total, &stem);
            harness.state_mut().go_to(index, step);
            let shot = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                harness.run();
                harness.render()
            }));
            let image = match shot {
                Ok(Ok(image)) => image,
                Ok(Err(e)) => return Err(ExportError::Render(format!("{stem}: {e}"))),
                Err(p) => {
                    return Err(ExportError::Render(format!(
                        "{stem}: {}",
                        panic_text(p.as_ref())
                    )));
                }
            };
            let app = harness.state();
            let provenance = app.provenance((image.width(), image.height()));
            let path = options.out.join(format!("{stem}.png"));
            write_png(&path, &image, &provenance)?;
            report.screenshots.push(path);
            if options.figures {
                for (cell_index, cell) in app.current_cells().into_iter().enumerate() {
                    let Some(result) = &cell.result else { continue };
                    for (name, chart) in cell_charts(&cell.spec.show, result) {
                        if let Some(signal) = options.stop_requested() {
                            return Err(interrupted(signal, &report));
                        }
                        let fig_stem = format!("{stem}-cell{}-{name}", cell_index + 1);
                        let written = figures::write_figure(&chart, &options.out, &fig_stem)
                            .map_err(|reason| ExportError::Write {
                                path: options.out.join(&fig_stem),
                                reason,
                            })?;
                        report.figures.extend(written);
                    }
                }
            }
            done += 1;
        }
    }
    progress(done, total, "done");
    Ok(report)
}

/// Why `--lesson NAME` names nothing: a lesson file of that name that failed to load (its errors),
/// or no such lesson (the ids there are, and any lesson that failed to load).
fn missing_lesson(
    name: &str,
    lessons: &[crate::lesson::LoadedLesson],
    broken: Vec<LessonError>,
) -> ExportError {
    let wanted = name.trim().to_lowercase();
    // Lesson files are named `NN-id.md` or `id.md`.
    let names_it = |e: &LessonError| {
        let stem = Path::new(&e.file)
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let bare = stem
            .split_once('-')
            .filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
            .map_or(stem.as_str(), |(_, rest)| rest);
        stem == wanted || bare == wanted
    };
    let (named, others): (Vec<LessonError>, Vec<LessonError>) =
        broken.into_iter().partition(|e| names_it(e));
    if !named.is_empty() {
        return ExportError::Lessons {
            message: format!("lesson '{name}' failed to load"),
            errors: named,
        };
    }
    let ids: Vec<&str> = lessons
        .iter()
        .filter_map(|l| l.as_ref().ok())
        .map(|l| l.id.as_str())
        .collect();
    let mut message = format!("no lesson '{name}' (available: {})", ids.join(", "));
    if !others.is_empty() {
        message.push_str(&format!(
            "; {} lesson file(s) failed to load (above)",
            others.len()
        ));
    }
    ExportError::Lessons {
        message,
        errors: others,
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the renderer panicked".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Provenance {
        Provenance {
            app: app_version(),
            lesson_id: "softmax".into(),
            lesson_title: "Softmax".into(),
            step: 3,
            step_title: "Temperature τ".into(),
            theme: "light".into(),
            size: (64, 48),
            cells: vec![CellProvenance {
                op: "softmax T=0.5 stable".into(),
                dtype: "f32".into(),
                params: vec!["temperature=0.5".into(), "dtype=f32".into()],
                kernel: Some("simple".into()),
                seed: 7,
                input_shape: vec![1, 4],
                engines: vec![EngineProvenance {
                    engine: "cpu".into(),
                    device: Some("x86_64".into()),
                    result: "PASS max abs 0".into(),
                }],
            }],
        }
    }

    #[test]
    fn png_carries_the_provenance_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        let img = image::RgbaImage::from_pixel(64, 48, image::Rgba([10, 20, 30, 255]));
        write_png(&path, &img, &sample()).unwrap();
        let chunks = read_text_chunks(&path).unwrap();
        let get = |k: &str| {
            chunks
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, t)| t.clone())
                .unwrap_or_else(|| panic!("chunk {k} missing: {chunks:?}"))
        };
        assert_eq!(get("kernelbook:lesson"), "softmax");
        assert_eq!(get("kernelbook:step"), "3");
        assert!(get("kernelbook:parameters").contains("temperature=0.5"));
        assert!(
            get("kernelbook:parameters").ends_with("(simple kernel on the GPU engines)"),
            "{}",
            get("kernelbook:parameters")
        );
        assert_eq!(get("kernelbook:seed"), "cell 1: 7");
        assert!(get("kernelbook:engines").contains("cpu: x86_64"));
        assert!(get("kernelbook:checks").contains("PASS"));
        assert!(
            get("Title").contains("Temperature τ"),
            "UTF-8 survives (iTXt)"
        );
        assert!(get("kernelbook:version").starts_with("kernelbook "));
        let json: serde_json::Value = serde_json::from_str(&get("kernelbook:provenance")).unwrap();
        assert_eq!(json["cells"][0]["seed"], 7);
        // The image itself is intact.
        let back = image::open(&path).unwrap().to_rgba8();
        assert_eq!(back, img);
    }

    #[test]
    fn folders_that_cannot_be_made_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let e = prepare_folder(&file.join("sub")).unwrap_err().to_string();
        assert!(
            e.contains("a-file/sub") && e.contains("cannot create"),
            "{e}"
        );
        prepare_folder(&dir.path().join("new/nested")).unwrap();
        assert!(dir.path().join("new/nested").is_dir());
    }
}
