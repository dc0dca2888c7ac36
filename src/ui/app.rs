//! The notebook window: the lesson list, the current step as a notebook of blocks (prose, op cells,
//! kernel source, predict-then-reveal questions), step-through navigation with a progress
//! indicator, and the state remembered across restarts (last lesson and step, theme).

use super::cell::{CellOptions, CellState, cell_ui};
use super::kernel_view::kernel_ui;
use super::theme::Theme;
use super::worker::{CellKey, Worker, WorkerMsg};
use crate::engine::{BackendInfo, EngineKind};
use crate::lesson::{Block, Lesson, LoadedLesson, PredictSpec};
use egui::{Key, RichText, Ui};
use egui_commonmark::{CommonMarkCache, CommonMarkViewer};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

/// What is remembered across restarts (eframe storage), separate from everything computed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Remembered {
    pub lesson_id: Option<String>,
    pub step: usize,
    pub theme: Option<String>,
}

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
        }
    }
}

const STORAGE_KEY: &str = "kernelbook";

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
}

impl KernelbookApp {
    /// Build the app; `remembered` comes from eframe storage (or tests).
    pub fn new(ctx: &egui::Context, options: AppOptions, remembered: Remembered) -> Self {
        let lessons = crate::lesson::load_all(options.lessons_dir.as_deref());
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
        let mut app = KernelbookApp {
            lessons,
            current: 0,
            step: 0,
            theme,
            cells: HashMap::new(),
            answers: HashMap::new(),
            worker,
            backends: None,
            markdown: CommonMarkCache::default(),
            options,
            fonts_installed: false,
            frames: 0,
            screenshot: None,
            quit: None,
            frame_times: Vec::new(),
            last_frame: None,
            frame_report: None,
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
        app
    }

    /// Create from eframe's creation context, restoring remembered state.
    pub fn from_creation_context(cc: &eframe::CreationContext<'_>, options: AppOptions) -> Self {
        let remembered: Remembered = cc
            .storage
            .and_then(|s| eframe::get_value(s, STORAGE_KEY))
            .unwrap_or_default();
        Self::new(&cc.egui_ctx, options, remembered)
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
            self.step = step.min(self.step_count().saturating_sub(1));
        }
    }

    pub fn next_step(&mut self) {
        if self.step + 1 < self.step_count() {
            self.step += 1;
        }
    }

    pub fn prev_step(&mut self) {
        self.step = self.step.saturating_sub(1);
    }

    pub fn remembered(&self) -> Remembered {
        Remembered {
            lesson_id: self.lesson().map(|l| l.id.clone()),
            step: self.step,
            theme: Some(self.theme.name.to_string()),
        }
    }

    pub fn set_theme(&mut self, name: &str) {
        if let Some(t) = Theme::by_name(name) {
            self.theme = t;
        }
    }

    /// Whether any cell of the current step still waits for results.
    pub fn is_computing(&self) -> bool {
        self.cells.values().any(|c| c.pending)
    }

    fn receive(&mut self) {
        for msg in self.worker.poll() {
            match msg {
                WorkerMsg::Ready(b) => self.backends = Some(b),
                WorkerMsg::Done {
                    key,
                    generation,
                    result,
                } => {
                    if let Some(cell) = self.cells.get_mut(&key)
                        && cell.generation == generation
                    {
                        cell.result = Some(result);
                        cell.pending = false;
                    }
                }
            }
        }
    }

    /// Send a cell's current request (or record why it cannot run).
    fn submit(worker: &mut Worker, key: &CellKey, cell: &mut CellState) {
        cell.generation += 1;
        match cell.request() {
            Ok(req) => {
                cell.request_error = None;
                cell.pending = true;
                worker.submit(key.clone(), cell.generation, req);
            }
            Err(e) => {
                cell.request_error = Some(e);
                cell.pending = false;
                cell.result = None;
            }
        }
    }

    fn handle_keys(&mut self, ctx: &egui::Context) {
        // Arrow keys belong to a focused widget (slider, text field) when there is one.
        if ctx.memory(|m| m.focused().is_some()) {
            return;
        }
        let (next, prev, home, end) = ctx.input(|i| {
            (
                i.key_pressed(Key::ArrowRight) || i.key_pressed(Key::PageDown),
                i.key_pressed(Key::ArrowLeft) || i.key_pressed(Key::PageUp),
                i.key_pressed(Key::Home),
                i.key_pressed(Key::End),
            )
        });
        if next {
            self.next_step();
        }
        if prev {
            self.prev_step();
        }
        if home {
            self.step = 0;
        }
        if end {
            self.step = self.step_count().saturating_sub(1);
        }
    }

    /// Draw one frame into `ui` (the whole window).
    pub fn frame_ui(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        if !self.fonts_installed {
            super::theme::install_fonts(&ctx);
            self.fonts_installed = true;
        }
        self.theme.apply(&ctx);
        self.receive();
        self.handle_keys(&ctx);

        egui::Panel::top("top").show(ui, |ui| self.top_bar_ui(ui));
        egui::Panel::bottom("nav").show(ui, |ui| self.nav_ui(ui));
        egui::Panel::left("lessons")
            .resizable(true)
            .default_size(self.theme.side_panel_width)
            .size_range(self.theme.side_panel_width * 0.8..=self.theme.side_panel_width * 2.1)
            .show(ui, |ui| self.lesson_list_ui(ui));
        egui::CentralPanel::default().show(ui, |ui| self.step_ui(ui));
        self.receive();
        self.frames += 1;
        if self.options.screenshot.is_some() {
            self.screenshot_step(&ctx);
        }
        if let Some(frames) = self.options.frame_stats {
            self.frame_stats_step(&ctx, frames);
        }
    }

    /// Frame-time measurement in the real window: a slider moves one notch per frame (the cell
    /// recomputes on every engine each time, as when a learner drags it) and the time between
    /// frames is recorded: UI, tessellation, rendering and presenting included.
    fn frame_stats_step(&mut self, ctx: &egui::Context, frames: usize) {
        ctx.request_repaint();
        let Some(lesson) = self.lesson().cloned() else {
            self.quit = Some(Err("no lesson to measure".into()));
            return;
        };
        let has_slider = |step: &crate::lesson::Step| {
            step.cells().any(|c| {
                c.params
                    .iter()
                    .any(|p| matches!(p.control, crate::lesson::Control::Slider { .. }))
            })
        };
        if !lesson.steps.get(self.step).is_some_and(has_slider) {
            match lesson.steps.iter().position(has_slider) {
                Some(s) => self.step = s,
                None => {
                    self.quit = Some(Err(format!("lesson {} has no slider to drag", lesson.id)))
                }
            }
            return;
        }
        if self.backends.is_none() || self.frames < 10 {
            return; // let start-up settle
        }
        let now = std::time::Instant::now();
        if let Some(last) = self.last_frame {
            self.frame_times.push(now - last);
        }
        self.last_frame = Some(now);
        let key = CellKey {
            lesson: lesson.id.clone(),
            step: self.step,
            cell: 0,
        };
        let i = self.frame_times.len();
        if let Some(cell) = self.cells.get_mut(&key) {
            // Back and forth across the slider's range in 60 notches.
            let phase = (i % 120) as f64 / 60.0;
            let t = if phase <= 1.0 { phase } else { 2.0 - phase };
            if cell.set_slider_fraction(t) {
                Self::submit(&mut self.worker, &key, cell);
            }
        }
        if self.frame_times.len() >= frames {
            let mut sorted = self.frame_times.clone();
            sorted.sort();
            let at = |p: f64| {
                sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3
            };
            let size = ctx.content_rect().size();
            self.frame_report = Some(format!(
                "frame time over {} frames while dragging a slider ({} step {}, {:.0}x{:.0}): median {:.2} ms, p95 {:.2} ms, max {:.2} ms",
                sorted.len(),
                lesson.id,
                self.step + 1,
                size.x,
                size.y,
                at(0.5),
                at(0.95),
                at(1.0)
            ));
            self.quit = Some(Ok(()));
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    /// The start-up smoke test: once the engines answered and a few frames are drawn, ask the
    /// window for a screenshot, write it as PNG and close.
    fn screenshot_step(&mut self, ctx: &egui::Context) {
        let Some(path) = self.options.screenshot.clone() else {
            return;
        };
        let taken = self.screenshot.as_ref().and_then(|rx| rx.try_recv().ok());
        if let Some(image) = taken {
            let [w, h] = image.size;
            let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
            let saved = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
                .ok_or_else(|| "screenshot has the wrong size".to_string())
                .and_then(|img| {
                    img.save(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))
                });
            self.quit = Some(saved);
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        let ready = self.backends.is_some() && !self.is_computing() && self.frames > 5;
        if ready && self.screenshot.is_none() {
            let (tx, rx) = std::sync::mpsc::channel();
            let repaint = ctx.clone();
            ctx.request_screenshot(move |image| {
                let _ = tx.send(image);
                repaint.request_repaint();
            });
            self.screenshot = Some(rx);
        }
        ctx.request_repaint();
    }

    fn top_bar_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.label(
                RichText::new("kernelbook")
                    .strong()
                    .size(self.theme.text_heading),
            );
            if let Some(lesson) = self.lesson() {
                ui.separator();
                ui.label(
                    RichText::new(format!("{} · {}", lesson.order, lesson.title))
                        .size(self.theme.text_subheading),
                );
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let next_theme = if self.theme.dark { "light" } else { "dark" };
                if ui
                    .button(format!("{next_theme} theme"))
                    .on_hover_text("Switch between the light and dark themes")
                    .clicked()
                {
                    self.set_theme(next_theme);
                }
                self.engines_summary_ui(ui);
            });
        });
    }

    fn engines_summary_ui(&self, ui: &mut Ui) {
        match &self.backends {
            None => {
                ui.label(RichText::new("probing engines…").color(self.theme.text_weak));
            }
            Some(list) => {
                for b in list.iter().rev() {
                    let name = b.engine.display_name();
                    let (text, hover) = if b.available {
                        (format!("✔ {name}"), b.device.clone().unwrap_or_default())
                    } else {
                        (format!("✘ {name}"), b.reason.clone().unwrap_or_default())
                    };
                    let color = if b.available {
                        self.theme.text
                    } else {
                        self.theme.text_weak
                    };
                    ui.label(RichText::new(text).color(color))
                        .on_hover_text(hover);
                }
            }
        }
    }

    fn nav_ui(&mut self, ui: &mut Ui) {
        let n = self.step_count();
        ui.add_space(self.theme.block_gap * 0.5);
        ui.horizontal(|ui| {
            let prev = ui.add_enabled(self.step > 0, egui::Button::new("◂ Prev"));
            if prev.clicked() {
                self.prev_step();
            }
            let progress = if n > 0 {
                (self.step + 1) as f32 / n as f32
            } else {
                0.0
            };
            let text = if n > 0 {
                format!("step {} of {n}", self.step + 1)
            } else {
                "no steps".into()
            };
            ui.add(
                egui::ProgressBar::new(progress)
                    .text(text.clone())
                    .desired_width(ui.available_width() - 120.0),
            )
            .on_hover_text("Right/Left arrows, PageDown/PageUp, Home/End");
            let next = ui.add_enabled(self.step + 1 < n, egui::Button::new("Next ▸"));
            if next.clicked() {
                self.next_step();
            }
        });
        ui.add_space(self.theme.block_gap * 0.5);
    }

    fn lesson_list_ui(&mut self, ui: &mut Ui) {
        ui.add_space(self.theme.block_gap * 0.75);
        ui.label(
            RichText::new("Lessons")
                .strong()
                .size(self.theme.text_subheading),
        );
        ui.add_space(self.theme.block_gap * 0.5);
        let mut clicked = None;
        egui::ScrollArea::vertical().show(ui, |ui| {
            for (i, l) in self.lessons.iter().enumerate() {
                match l {
                    Ok(lesson) => {
                        let selected = i == self.current;
                        let r = ui
                            .selectable_label(
                                selected,
                                format!("{}  {}", lesson.order, lesson.title),
                            )
                            .on_hover_text(&lesson.summary);
                        if r.clicked() {
                            clicked = Some(i);
                        }
                    }
                    Err(e) => {
                        egui::Frame::group(ui.style())
                            .stroke(egui::Stroke::new(self.theme.outline_width, self.theme.fail))
                            .show(ui, |ui| {
                                ui.label(
                                    RichText::new("✘ lesson failed to load")
                                        .color(self.theme.fail)
                                        .strong(),
                                );
                                ui.label(RichText::new(e.to_string()).size(self.theme.text_small));
                            });
                    }
                }
            }
        });
        if let Some(i) = clicked
            && i != self.current
        {
            self.current = i;
            self.step = 0;
        }
    }

    fn step_ui(&mut self, ui: &mut Ui) {
        let Some(lesson) = self.lesson().cloned() else {
            ui.heading("No lesson could be loaded");
            ui.label("See the error cards in the lesson list.");
            return;
        };
        let Some(step) = lesson.steps.get(self.step).cloned() else {
            return;
        };
        let step_index = self.step;
        egui::ScrollArea::vertical()
            .id_salt(("step", &lesson.id, step_index))
            .auto_shrink([false, false])
            .show(ui, |ui| {
                ui.set_max_width(self.theme.content_max_width.min(ui.available_width()));
                ui.label(
                    RichText::new(format!("{} · {}", step_index + 1, step.title))
                        .strong()
                        .size(self.theme.text_heading),
                );
                ui.add_space(self.theme.block_gap);
                let mut cell_index = 0;
                for (b, block) in step.blocks.iter().enumerate() {
                    match block {
                        Block::Prose(md) => {
                            CommonMarkViewer::new().show(ui, &mut self.markdown, md);
                        }
                        Block::Cell(spec) => {
                            let key = CellKey {
                                lesson: lesson.id.clone(),
                                step: step_index,
                                cell: cell_index,
                            };
                            cell_index += 1;
                            let worker = &mut self.worker;
                            let cell = self.cells.entry(key.clone()).or_insert_with(|| {
                                let mut c = CellState::new(spec);
                                Self::submit(worker, &key, &mut c);
                                c
                            });
                            let id = egui::Id::unique(("cell", &key.lesson, key.step, key.cell));
                            let events = cell_ui(
                                ui,
                                id,
                                cell,
                                &self.theme,
                                CellOptions {
                                    hide_timings: self.options.hide_timings,
                                },
                            );
                            if events.changed {
                                Self::submit(&mut self.worker, &key, cell);
                            }
                        }
                        Block::Kernel(k) => {
                            let cuda = crate::sources::cuda(&k.topic).unwrap_or("");
                            let wgsl = crate::sources::wgsl(&k.topic).unwrap_or("");
                            let title = format!(
                                "kernel source: kernels/{}.cu · shaders/{}.wgsl",
                                k.topic, k.topic
                            );
                            kernel_ui(
                                ui,
                                ("kernel", &lesson.id, step_index, b),
                                &title,
                                cuda,
                                wgsl,
                                &k.marks,
                                &self.theme,
                            );
                        }
                        Block::Predict(p) => {
                            let key = (lesson.id.clone(), step_index, b);
                            let chosen = self.answers.get(&key).copied();
                            if let Some(choice) = predict_ui(ui, p, chosen, &self.theme) {
                                self.answers.insert(key, choice);
                            }
                        }
                        Block::Notes(notes) => {
                            egui::CollapsingHeader::new(
                                RichText::new("Notes for the teacher").color(self.theme.text_weak),
                            )
                            .id_salt(("notes", &lesson.id, step_index, b))
                            .default_open(false)
                            .show(ui, |ui| {
                                CommonMarkViewer::new().show(ui, &mut self.markdown, notes);
                            });
                        }
                    }
                    ui.add_space(self.theme.block_gap);
                }
            });
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
            for (i, choice) in p.choices.iter().enumerate() {
                let mark = match chosen {
                    Some(_) if i == p.answer => "✔ ",
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
                let (verdict, color) = if c == p.answer {
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

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, &self.remembered());
    }
}
