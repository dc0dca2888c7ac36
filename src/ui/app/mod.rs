//! The notebook window: the lesson list, the current step as a notebook of blocks (prose, op cells,
//! kernel source, predict-then-reveal questions), step-through navigation with a progress
//! indicator, and the state remembered across restarts (last lesson and step, theme, screenshot
//! folder, zoom, window size; stored by `state.rs`). Classroom mode, the presenter view, sweeps, autoplay and screenshots are in
//! `classroom.rs`; this file wires them into the frame.

mod compute;
mod instrument;
mod keys;
mod notebook;
mod presenting;
mod step;

use super::cell::{CellOptions, CellState, RooflineData, cell_ui};
use super::classroom::{self, Classroom, Keys, PresenterInfo, RunningSweep};
use super::kernel_view::kernel_ui;
use super::roofline::{self, Measurement, Measurements};
pub use super::state::Remembered;
use super::theme::Theme;
use super::worker::{CellKey, Worker, WorkerMsg};
use crate::engine::{BackendInfo, EngineKind};
use crate::lesson::{Answer, Block, Control, Lesson, LoadedLesson, ParamValue, PredictSpec};
use egui::{Key, RichText, Ui};
use egui_commonmark::{CommonMarkCache, CommonMarkViewer};
use std::collections::HashMap;
use std::path::PathBuf;

/// How the app is started.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// An author's lesson folder, added to the built-in lessons.
    pub lessons_dir: Option<PathBuf>,
    /// Open this lesson (id or title, case-insensitive) instead of the remembered one.
    pub lesson: Option<String>,
    /// Engines to probe.
    pub engines: Vec<EngineKind>,
    /// Compute on the UI thread (tests): results are ready in the same frame.
    pub inline_compute: bool,
    /// Hide run times (snapshot tests need identical pixels on every run).
    pub hide_timings: bool,
    /// Theme to start with when nothing is remembered.
    pub theme: Option<String>,
    /// Save a screenshot of the window here once the first step has its results, then quit
    /// (the start-up smoke test).
    pub screenshot: Option<PathBuf>,
    /// Frame-time measurement: sweep the first slider of the first step that has one, one notch
    /// per frame for this many frames, then report frame times and quit.
    pub frame_stats: Option<usize>,
    /// Start in classroom mode (full screen, projector theme).
    pub classroom: bool,
    /// Start autoplay: the next step every this many seconds.
    pub autoplay: Option<f64>,
    /// Save screenshots here (overrides the remembered folder).
    pub screenshot_dir: Option<PathBuf>,
    /// Start-up measurement: when the process started; the app reports the time to its first
    /// frame and to the first step's results, then quits.
    pub startup_from: Option<std::time::Instant>,
    /// Where to save the remembered state (on exit and every half minute when it changed);
    /// `None` (tests, export): never saved.
    pub state_file: Option<PathBuf>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            lessons_dir: None,
            lesson: None,
            engines: EngineKind::ALL.to_vec(),
            inline_compute: false,
            hide_timings: false,
            theme: None,
            screenshot: None,
            frame_stats: None,
            classroom: false,
            autoplay: None,
            screenshot_dir: None,
            startup_from: None,
            state_file: None,
        }
    }
}

/// How often the remembered state is saved while it changes (it is also saved on exit).
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

pub struct KernelbookApp {
    lessons: Vec<LoadedLesson>,
    /// Index into `lessons` (always an `Ok` lesson when any loaded).
    current: usize,
    step: usize,
    theme: Theme,
    cells: HashMap<CellKey, CellState>,
    /// Chosen answers of predict blocks: (lesson id, step, block index) -> choice.
    answers: HashMap<(String, usize, usize), usize>,
    worker: Worker,
    backends: Option<Vec<BackendInfo>>,
    /// Roofline measurements, per (engine, kernel, parameters, size), shared by every cell.
    measurements: Measurements,
    markdown: CommonMarkCache,
    options: AppOptions,
    fonts_installed: bool,
    frames: u64,
    screenshot: Option<std::sync::mpsc::Receiver<std::sync::Arc<egui::ColorImage>>>,
    /// Set when the app should close (after the start-up screenshot).
    pub quit: Option<Result<(), String>>,
    /// Frame intervals recorded for `frame_stats`, and the report once done.
    frame_times: Vec<std::time::Duration>,
    last_frame: Option<std::time::Instant>,
    pub frame_report: Option<String>,
    /// Start-up measurement: time to the first frame, once drawn.
    first_frame: Option<std::time::Duration>,
    /// Classroom mode, presenter view, sweeps, autoplay, screenshots.
    pub classroom: Classroom,
    /// The screenshot folder as typed in the top bar's menu.
    screenshot_dir_text: String,
    /// The zoom and the window size now (remembered across restarts).
    zoom_factor: f32,
    window_size: Option<[f32; 2]>,
    /// Whether a remembered window size was checked against the screen the window opened on.
    window_checked: bool,
    /// What was last saved, and when.
    saved: Option<(Remembered, std::time::Instant)>,
}

impl KernelbookApp {
    /// Build the app; `remembered` comes from eframe storage (or tests).
    pub fn new(ctx: &egui::Context, options: AppOptions, remembered: Remembered) -> Self {
        // Long tables and long text cut once here, so that no step costs a frame more than it
        // should.
        let lessons =
            super::prose::cap_lessons(crate::lesson::load_all(options.lessons_dir.as_deref()));
        let theme_name = remembered
            .theme
            .clone()
            .or_else(|| options.theme.clone())
            .unwrap_or_else(|| "light".into());
        let theme = Theme::by_name(&theme_name).unwrap_or_else(Theme::light);
        let worker = if options.inline_compute {
            Worker::inline(&options.engines)
        } else {
            let repaint_ctx = ctx.clone();
            Worker::spawn(options.engines.clone(), move || {
                repaint_ctx.request_repaint()
            })
        };
        let screenshot_dir = options
            .screenshot_dir
            .clone()
            .or(remembered.screenshot_dir.clone())
            .unwrap_or_else(crate::provenance::default_screenshot_dir);
        let autoplay = options
            .autoplay
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(std::time::Duration::from_secs_f64);
        // As read: if validating replaced a value, the state differs and is saved again.
        let as_read = remembered.clone();
        let (remembered, _) = remembered.validated();
        if remembered.zoom_factor != ctx.zoom_factor() {
            ctx.set_zoom_factor(remembered.zoom_factor);
        }
        let mut app = KernelbookApp {
            zoom_factor: remembered.zoom_factor,
            window_size: remembered.window_size,
            window_checked: false,
            saved: Some((as_read, std::time::Instant::now())),
            screenshot_dir_text: screenshot_dir.display().to_string(),
            classroom: Classroom::new(screenshot_dir, autoplay),
            lessons,
            current: 0,
            step: 0,
            theme,
            cells: HashMap::new(),
            answers: HashMap::new(),
            worker,
            backends: None,
            measurements: Measurements::new(),
            markdown: CommonMarkCache::default(),
            options,
            fonts_installed: false,
            frames: 0,
            screenshot: None,
            quit: None,
            frame_times: Vec::new(),
            last_frame: None,
            frame_report: None,
            first_frame: None,
        };
        let wanted = app.options.lesson.clone().or(remembered.lesson_id.clone());
        let found = wanted
            .as_deref()
            .and_then(|w| crate::lesson::find(&app.lessons, w));
        match found {
            Some(i) => {
                app.current = i;
                if app.options.lesson.is_none() {
                    app.step = remembered.step;
                }
            }
            None => app.current = app.lessons.iter().position(|l| l.is_ok()).unwrap_or(0),
        }
        app.step = app.step.min(app.step_count().saturating_sub(1));
        if app.options.classroom {
            app.enter_classroom(ctx);
        }
        app
    }

    /// Create from eframe's creation context with the state remembered from the last run (see
    /// `state.rs`, which reads and validates it).
    pub fn from_creation_context(
        cc: &eframe::CreationContext<'_>,
        options: AppOptions,
        remembered: Remembered,
    ) -> Self {
        Self::new(&cc.egui_ctx, options, remembered)
    }

    /// Save the remembered state to `AppOptions::state_file` (atomically) if it changed since the
    /// last save. An error names the file and the cause.
    pub fn save_state(&mut self) -> Result<(), String> {
        let Some(path) = self.options.state_file.clone() else {
            return Ok(());
        };
        let now = self.remembered();
        if self.saved.as_ref().is_some_and(|(s, _)| *s == now) {
            return Ok(());
        }
        super::state::save(&path, &now).map_err(|e| e.to_string())?;
        self.saved = Some((now, std::time::Instant::now()));
        Ok(())
    }

    /// Track the zoom and the window size; shrink a remembered window that is larger than the
    /// screen it opened on; save the state now and then.
    fn remember_window(&mut self, ctx: &egui::Context) {
        self.zoom_factor = ctx.zoom_factor();
        let (inner, monitor, fullscreen, maximized) = ctx.input(|i| {
            let v = i.viewport();
            (
                v.inner_rect,
                v.monitor_size,
                v.fullscreen.unwrap_or(false),
                v.maximized.unwrap_or(false),
            )
        });
        if let (Some(monitor), false) = (monitor, self.window_checked) {
            self.window_checked = true;
            if let Some([w, h]) = self.window_size
                && (w > monitor.x || h > monitor.y)
            {
                let fit = egui::vec2(
                    w.min(monitor.x * 0.9).max(super::state::MIN_WINDOW[0]),
                    h.min(monitor.y * 0.9).max(super::state::MIN_WINDOW[1]),
                );
                ctx.send_viewport_cmd(egui::ViewportCommand::InnerSize(fit));
            }
        }
        if let Some(rect) = inner
            && !fullscreen
            && !maximized
            && !self.classroom.active
        {
            self.window_size = Some([rect.width(), rect.height()]);
        }
        let due = self
            .saved
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= SAVE_EVERY);
        if due && self.options.state_file.is_some() {
            if let Err(e) = self.save_state() {
                self.classroom.toast(format!("State not saved: {e}"), true);
            }
            // Try again in half a minute, whether or not this worked.
            if let Some((_, at)) = &mut self.saved {
                *at = std::time::Instant::now();
            }
        }
    }

    fn lesson(&self) -> Option<&Lesson> {
        self.lessons.get(self.current).and_then(|l| l.as_ref().ok())
    }

    pub fn lessons(&self) -> &[LoadedLesson] {
        &self.lessons
    }

    pub fn step_count(&self) -> usize {
        self.lesson().map_or(0, |l| l.steps.len())
    }

    /// (lesson index, step index) now shown.
    pub fn position(&self) -> (usize, usize) {
        (self.current, self.step)
    }

    /// Show lesson `index` at `step` (clamped).
    pub fn go_to(&mut self, index: usize, step: usize) {
        if self.lessons.get(index).is_some_and(|l| l.is_ok()) {
            self.current = index;
            self.set_step(step.min(self.step_count().saturating_sub(1)));
        }
    }

    pub fn next_step(&mut self) {
        if self.step + 1 < self.step_count() {
            self.set_step(self.step + 1);
        }
    }

    pub fn prev_step(&mut self) {
        self.set_step(self.step.saturating_sub(1));
    }

    /// Show another step of the current lesson: a running sweep stops, the autoplay clock restarts.
    fn set_step(&mut self, step: usize) {
        if step != self.step {
            self.classroom.sweep = None;
        }
        self.step = step;
        self.classroom.step_shown = std::time::Instant::now();
    }

    pub fn remembered(&self) -> Remembered {
        // Classroom mode's projector theme is for the room; remember the one it replaced.
        let theme = self.classroom.theme_before.unwrap_or(self.theme.name);
        Remembered {
            lesson_id: self.lesson().map(|l| l.id.clone()),
            step: self.step,
            theme: Some(theme.to_string()),
            screenshot_dir: Some(self.classroom.screenshot_dir.clone()),
            zoom_factor: self.zoom_factor,
            window_size: self.window_size,
        }
    }

    /// The theme now in use ("light", "dark" or "projector").
    pub fn theme_name(&self) -> &'static str {
        self.theme.name
    }

    pub fn set_theme(&mut self, name: &str) {
        if let Some(t) = Theme::by_name(name) {
            self.theme = t;
        }
    }

    /// Draw one frame into `ui` (the whole window).
    pub fn frame_ui(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        if !self.fonts_installed {
            super::theme::install_fonts(&ctx);
            self.fonts_installed = true;
        }
        self.theme.fit_to_screen(ctx.content_rect().height());
        self.theme.apply(&ctx);
        self.receive();
        self.remember_window(&ctx);
        self.handle_keys(&ctx);
        self.advance_sweep(&ctx);
        self.advance_autoplay(&ctx);
        self.receive_screenshot();

        if self.classroom.active && self.classroom.blank {
            // A blank screen, as presentation software's B: nothing but black.
            egui::CentralPanel::default()
                .frame(egui::Frame::NONE.fill(egui::Color32::BLACK))
                .show(ui, |ui| {
                    ui.allocate_space(ui.available_size());
                });
        } else if self.classroom.active {
            egui::Panel::top("top").show(ui, |ui| self.classroom_bar_ui(ui));
            egui::Panel::bottom("nav").show(ui, |ui| self.classroom_progress_ui(ui));
            egui::CentralPanel::default().show(ui, |ui| self.step_ui(ui));
        } else {
            egui::Panel::top("top").show(ui, |ui| self.top_bar_ui(ui));
            egui::Panel::bottom("nav").show(ui, |ui| self.nav_ui(ui));
            egui::Panel::left("lessons")
                .resizable(true)
                .default_size(self.theme.side_panel_width)
                .size_range(self.theme.side_panel_width * 0.8..=self.theme.side_panel_width * 2.1)
                .show(ui, |ui| self.lesson_list_ui(ui));
            egui::CentralPanel::default().show(ui, |ui| self.step_ui(ui));
        }
        if self.classroom.presenter {
            self.presenter_viewport(&ctx);
        }
        classroom::toast_ui(&ctx, &mut self.classroom, &self.theme);
        self.receive();
        self.frames += 1;
        if let Some(t0) = self.options.startup_from {
            self.startup_step(&ctx, t0);
        }
        if self.options.screenshot.is_some() {
            self.screenshot_step(&ctx);
        }
        if let Some(frames) = self.options.frame_stats {
            self.frame_stats_step(&ctx, frames);
        }
    }
}

/// A "predict, then reveal" question: choices as buttons; once chosen, the answer and why.
/// Returns the learner's new choice, if they made one this frame.
fn predict_ui(ui: &mut Ui, p: &PredictSpec, chosen: Option<usize>, theme: &Theme) -> Option<usize> {
    let mut new_choice = None;
    egui::Frame::group(ui.style())
        .fill(theme.panel)
        .inner_margin(theme.cell_padding)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.label(RichText::new(format!("Predict: {}", p.question)).strong());
            ui.add_space(theme.block_gap * 0.5);
            let Answer::Choice { choices, right } = &p.answer else {
                // A typed numeric answer: this panel only offers choices so far.
                ui.label(
                    RichText::new(
                        "(A numeric question: typed answers are not supported here yet.)",
                    )
                    .color(theme.text_weak),
                );
                return;
            };
            for (i, choice) in choices.iter().enumerate() {
                let mark = match chosen {
                    Some(_) if i == *right => "✔ ",
                    Some(c) if c == i => "✘ ",
                    _ => "",
                };
                let r =
                    ui.selectable_label(chosen == Some(i), format!("{mark}{}. {choice}", i + 1));
                if r.clicked() {
                    new_choice = Some(i);
                }
            }
            if let Some(c) = chosen {
                let (verdict, color) = if c == *right {
                    ("Right.", theme.pass)
                } else {
                    ("Not quite.", theme.fail)
                };
                ui.add_space(theme.block_gap * 0.5);
                ui.label(RichText::new(format!("{verdict} {}", p.explain)).color(color));
            } else {
                ui.label(
                    RichText::new("Choose an answer to reveal the explanation.")
                        .color(theme.text_weak),
                );
            }
        });
    new_choice
}

impl eframe::App for KernelbookApp {
    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        self.frame_ui(ui);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        if let Err(e) = self.save_state() {
            use std::io::Write;
            // Best effort: standard error may be gone too.
            let _ = writeln!(
                std::io::stderr(),
                "warning: the remembered state was not saved: {e}"
            );
        }
    }
}
