//! The notebook window: the lesson list, the current step as a notebook of blocks (prose, op cells,
//! kernel source, predict-then-reveal questions), step-through navigation with a progress
//! indicator, and the state remembered across restarts (last lesson and step, theme, screenshot
//! folder, zoom, window size; stored by `state.rs`). Classroom mode, the presenter view, sweeps, autoplay and screenshots are in
//! `classroom.rs`; this file wires them into the frame.

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
            .unwrap_or_else(crate::export::default_screenshot_dir);
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

    /// Classroom mode: projector theme, full screen, no lesson list.
    pub fn enter_classroom(&mut self, ctx: &egui::Context) {
        if self.classroom.active {
            return;
        }
        self.classroom.active = true;
        self.classroom.blank = false;
        self.classroom.started = std::time::Instant::now();
        self.classroom.theme_before = Some(self.theme.name);
        self.theme = Theme::projector();
        self.classroom.fullscreen = true;
        ctx.send_viewport_cmd(egui::ViewportCommand::Fullscreen(true));
    }

    /// Back to the notebook: the previous theme, windowed, no presenter view.
    pub fn leave_classroom(&mut self, ctx: &egui::Context) {
        if !self.classroom.active {
            return;
        }
        self.classroom.active = false;
        self.classroom.blank = false;
        self.classroom.presenter = false;
        if let Some(name) = self.classroom.theme_before.take() {
            self.set_theme(name);
        }
        if self.classroom.fullscreen {
            self.classroom.fullscreen = false;
            ctx.send_viewport_cmd(egui::ViewportCommand::Fullscreen(false));
        }
    }

    /// Whether the audience screen is blanked (B).
    pub fn is_blank(&self) -> bool {
        self.classroom.blank
    }

    /// The op cells of the current step, in order, once they exist (after the step was drawn).
    pub fn current_cells(&self) -> Vec<&CellState> {
        let Some(lesson) = self.lesson() else {
            return Vec::new();
        };
        (0..)
            .map_while(|cell| {
                self.cells.get(&CellKey {
                    lesson: lesson.id.clone(),
                    step: self.step,
                    cell,
                })
            })
            .collect()
    }

    /// What the current view shows and how it was computed (written into screenshots).
    pub fn provenance(&self, size: (u32, u32)) -> crate::export::Provenance {
        let (lesson_id, lesson_title, step_title) = match self.lesson() {
            Some(l) => (
                l.id.clone(),
                l.title.clone(),
                l.steps
                    .get(self.step)
                    .map(|s| s.title.clone())
                    .unwrap_or_default(),
            ),
            None => Default::default(),
        };
        crate::export::Provenance {
            app: crate::export::app_version(),
            lesson_id,
            lesson_title,
            step: self.step + 1,
            step_title,
            theme: self.theme.name.to_string(),
            size,
            cells: self
                .current_cells()
                .into_iter()
                .map(crate::export::CellProvenance::of)
                .collect(),
        }
    }

    /// What the presenter view shows now.
    pub fn presenter_info(&self) -> PresenterInfo {
        let Some(lesson) = self.lesson() else {
            return PresenterInfo::default();
        };
        let step = lesson.steps.get(self.step);
        let notes = step
            .map(|s| {
                s.blocks
                    .iter()
                    .filter_map(|b| match b {
                        Block::Notes(n) => Some(n.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let next = lesson.steps.get(self.step + 1).map(|s| {
            let first = s
                .blocks
                .iter()
                .find_map(|b| match b {
                    Block::Prose(p) => p.split("\n\n").map(str::trim).find(|t| !t.is_empty()),
                    _ => None,
                })
                .unwrap_or("")
                .to_string();
            (s.title.clone(), first)
        });
        PresenterInfo {
            lesson_title: lesson.title.clone(),
            step: self.step + 1,
            steps: lesson.steps.len(),
            step_title: step.map(|s| s.title.clone()).unwrap_or_default(),
            notes,
            next,
            elapsed: self.classroom.started.elapsed(),
            clock: classroom::local_clock(),
            blank: self.classroom.blank,
            autoplay: self.classroom.autoplay,
        }
    }

    /// Start the sweep of the current step's first cell that has one, or stop the running one.
    /// Returns whether a sweep runs now.
    pub fn toggle_sweep(&mut self) -> bool {
        if self.classroom.sweep.take().is_some() {
            return false;
        }
        let Some(lesson) = self.lesson() else {
            return false;
        };
        let mut cell_index = 0;
        let Some(step) = lesson.steps.get(self.step) else {
            return false;
        };
        for block in &step.blocks {
            if let Block::Cell(spec) = block {
                if spec.sweep.is_some() {
                    self.classroom.sweep = Some(RunningSweep {
                        cell: CellKey {
                            lesson: lesson.id.clone(),
                            step: self.step,
                            cell: cell_index,
                        },
                        started: std::time::Instant::now(),
                    });
                    return true;
                }
                cell_index += 1;
            }
        }
        self.classroom.toast("This step has no sweep.", false);
        false
    }

    /// Whether a sweep is running.
    pub fn is_sweeping(&self) -> bool {
        self.classroom.sweep.is_some()
    }

    /// Move the running sweep's slider to where the clock says and resubmit the cell.
    fn advance_sweep(&mut self, ctx: &egui::Context) {
        let Some(sweep) = self.classroom.sweep.clone() else {
            return;
        };
        let Some(cell) = self.cells.get_mut(&sweep.cell) else {
            return; // drawn this frame; next frame it exists
        };
        let Some(spec) = cell.spec.sweep.clone() else {
            self.classroom.sweep = None;
            return;
        };
        let t = sweep.started.elapsed().as_secs_f64() / spec.seconds;
        if let Some(i) = cell.spec.params.iter().position(|p| p.name == spec.param) {
            let log = matches!(
                cell.spec.params[i].control,
                Control::Slider { log: true, .. }
            );
            let mut v = spec.value_at(t, log);
            if cell.spec.params[i].is_integer(cell.spec.op) {
                v = v.round();
            }
            if cell.values[i] != ParamValue::Float(v) {
                cell.values[i] = ParamValue::Float(v);
                Self::submit(&mut self.worker, &sweep.cell, cell);
            }
        }
        if t >= 1.0 {
            self.classroom.sweep = None;
        } else {
            // About 60 updates a second; the worker drops requests it cannot keep up with.
            ctx.request_repaint_after(std::time::Duration::from_millis(16));
        }
    }

    /// Autoplay: the next step (the next lesson after the last step, the first after the last).
    fn advance_autoplay(&mut self, ctx: &egui::Context) {
        let Some(interval) = self.classroom.autoplay else {
            return;
        };
        let now = std::time::Instant::now();
        if self.classroom.autoplay_due(now) {
            if self.step + 1 < self.step_count() {
                self.next_step();
            } else {
                let n = self.lessons.len();
                let next = (1..=n)
                    .map(|k| (self.current + k) % n)
                    .find(|&i| self.lessons[i].is_ok());
                if let Some(i) = next {
                    self.current = i;
                    self.set_step(0);
                }
            }
            let has_sweep = self
                .lesson()
                .and_then(|l| l.steps.get(self.step))
                .is_some_and(|s| s.cells().any(|c| c.sweep.is_some()));
            if has_sweep {
                self.toggle_sweep();
            }
        }
        let left = interval.saturating_sub(now.duration_since(self.classroom.step_shown));
        ctx.request_repaint_after(left.max(std::time::Duration::from_millis(50)));
    }

    /// Ask for a screenshot of the window; it is saved when it arrives (`receive_screenshot`).
    pub fn request_screenshot(&mut self, ctx: &egui::Context) {
        if self.classroom.pending_screenshot.is_some() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let repaint = ctx.clone();
        ctx.request_screenshot(move |image| {
            let _ = tx.send(image);
            repaint.request_repaint();
        });
        self.classroom.pending_screenshot = Some(rx);
    }

    /// Save a screenshot that arrived, with provenance, and say where (or why not) in a toast.
    fn receive_screenshot(&mut self) {
        let Some(rx) = &self.classroom.pending_screenshot else {
            return;
        };
        let Ok(image) = rx.try_recv() else {
            return;
        };
        self.classroom.pending_screenshot = None;
        match self.save_screenshot(&image) {
            Ok(path) => self
                .classroom
                .toast(format!("Screenshot saved: {}", path.display()), false),
            Err(e) => self
                .classroom
                .toast(format!("Screenshot not saved: {e}"), true),
        }
    }

    /// Write `image` to the screenshot folder as `kernelbook-<lesson>-stepNN-<time>.png`.
    pub fn save_screenshot(&self, image: &egui::ColorImage) -> Result<PathBuf, String> {
        let [w, h] = image.size;
        let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
        let rgba = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
            .ok_or("the screenshot has the wrong size")?;
        let dir = &self.classroom.screenshot_dir;
        crate::export::prepare_folder(dir).map_err(|e| e.to_string())?;
        let lesson = self.lesson().map_or("kernelbook", |l| l.id.as_str());
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let path = dir.join(format!(
            "kernelbook-{lesson}-step{:02}-{stamp}.png",
            self.step + 1
        ));
        crate::export::write_png(&path, &rgba, &self.provenance((w as u32, h as u32)))
            .map_err(|e| e.to_string())?;
        Ok(path)
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

    /// Whether a roofline measurement is queued or running.
    pub fn is_measuring(&self) -> bool {
        self.measurements
            .values()
            .any(|m| matches!(m, Measurement::Pending))
    }

    /// Measure the roofline of the current step's first cell that shows one, for its current
    /// parameters (again, if it was measured). Returns whether measurements were sent; a toast
    /// says why not.
    pub fn measure_roofline(&mut self) -> bool {
        let Some(lesson) = self.lesson() else {
            return false;
        };
        let id = lesson.id.clone();
        let step = self.step;
        let cell = self
            .current_cells()
            .into_iter()
            .position(|c| c.spec.show.contains(&crate::lesson::View::Roofline));
        let Some(cell) = cell else {
            self.classroom
                .toast("This step has no roofline to measure.", false);
            return false;
        };
        self.start_measure(&CellKey {
            lesson: id,
            step,
            cell,
        })
    }

    /// Send the roofline jobs of cell `key` to the worker (unless they are running already).
    fn start_measure(&mut self, key: &CellKey) -> bool {
        let (Some(cell), Some(backends)) = (self.cells.get(key), self.backends.as_deref()) else {
            return false;
        };
        let plan = match roofline::plan(cell, backends) {
            Ok(p) => p,
            Err(e) => {
                self.classroom.toast(format!("Cannot measure: {e}"), true);
                return false;
            }
        };
        if roofline::is_measuring(&plan, &self.measurements) {
            return false;
        }
        for job in plan.jobs() {
            self.measurements
                .insert(job.key.clone(), Measurement::Pending);
        }
        for job in plan.jobs() {
            self.worker.measure(job.clone());
        }
        true
    }

    /// The roofline measurements made so far.
    pub fn measurements(&self) -> &Measurements {
        &self.measurements
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
                WorkerMsg::Measured { key, measured } => {
                    self.measurements.insert(key, Measurement::Done(measured));
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
        let keys = Keys::read(ctx);
        self.apply_keys(ctx, keys);
    }

    /// What each key does (see `classroom.rs` for the list). Public so that tests can drive it.
    pub fn apply_keys(&mut self, ctx: &egui::Context, keys: Keys) {
        if keys.screenshot {
            self.request_screenshot(ctx);
        }
        if keys.classroom {
            if self.classroom.active {
                self.leave_classroom(ctx);
            } else {
                self.enter_classroom(ctx);
            }
        }
        if keys.presenter {
            self.classroom.presenter = !self.classroom.presenter;
        }
        if keys.sweep {
            self.toggle_sweep();
        }
        if keys.measure {
            self.measure_roofline();
        }
        if keys.autoplay {
            self.classroom.autoplay = match self.classroom.autoplay {
                Some(_) => None,
                None => {
                    self.classroom.step_shown = std::time::Instant::now();
                    Some(self.classroom.autoplay_interval)
                }
            };
        }
        if self.classroom.active {
            if self.classroom.blank {
                // Like presentation software: B (or any step key) brings the picture back.
                if keys.blank || keys.next || keys.prev || keys.escape {
                    self.classroom.blank = false;
                }
                return;
            }
            if keys.blank {
                self.classroom.blank = true;
                return;
            }
            if keys.fullscreen {
                self.classroom.fullscreen = !self.classroom.fullscreen;
                ctx.send_viewport_cmd(egui::ViewportCommand::Fullscreen(self.classroom.fullscreen));
            }
            if keys.escape {
                self.leave_classroom(ctx);
                return;
            }
        }
        if keys.next {
            self.next_step();
        }
        if keys.prev {
            self.prev_step();
        }
        if keys.home {
            self.set_step(0);
        }
        if keys.end {
            self.set_step(self.step_count().saturating_sub(1));
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

    /// Start-up measurement: the first frame's time, then the time until every cell of the first
    /// step has results on every engine; reported in `frame_report`, then the app quits.
    fn startup_step(&mut self, ctx: &egui::Context, t0: std::time::Instant) {
        let first = *self.first_frame.get_or_insert_with(|| t0.elapsed());
        let ready =
            self.backends.is_some() && !self.is_computing() && !self.current_cells().is_empty();
        if ready && self.options.startup_from.take().is_some() {
            self.frame_report = Some(format!(
                "start-up: first frame {:.0} ms after the process started; first step's results on every engine {:.0} ms",
                first.as_secs_f64() * 1e3,
                t0.elapsed().as_secs_f64() * 1e3
            ));
            self.quit = Some(Ok(()));
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        ctx.request_repaint();
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
            // Reported once: the window takes another frame or two to close.
            self.options.frame_stats = None;
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
                    let mut png = std::io::Cursor::new(Vec::new());
                    img.write_to(&mut png, image::ImageFormat::Png)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    crate::files::write_atomically(&path, png.get_ref()).map_err(|e| e.to_string())
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

    /// The presenter view in its own window (a second viewport; embedded as a window where the
    /// platform has only one).
    fn presenter_viewport(&mut self, ctx: &egui::Context) {
        let info = self.presenter_info();
        // The teacher's screen keeps the theme the app had before classroom mode.
        let theme = self
            .classroom
            .theme_before
            .and_then(Theme::by_name)
            .unwrap_or_else(Theme::light);
        let markdown = &mut self.markdown;
        let closed = ctx.show_viewport_immediate(
            egui::ViewportId::from_hash_of("kernelbook presenter"),
            egui::ViewportBuilder::default()
                .with_title("kernelbook · presenter view")
                .with_inner_size([900.0, 640.0]),
            |ui, class| {
                let show = |ui: &mut Ui, markdown: &mut CommonMarkCache| {
                    egui::Frame::NONE
                        .fill(theme.background)
                        .inner_margin(theme.cell_padding)
                        .show(ui, |ui| {
                            classroom::presenter_ui(ui, &info, &theme, markdown)
                        });
                };
                ui.set_style(theme.style());
                if class == egui::ViewportClass::EmbeddedWindow {
                    // egui already put the viewport in a window of its own.
                    show(ui, markdown);
                } else {
                    egui::CentralPanel::default()
                        .frame(egui::Frame::central_panel(ui.style()).fill(theme.background))
                        .show(ui, |ui| show(ui, markdown));
                }
                ui.ctx()
                    .request_repaint_after(std::time::Duration::from_secs(1));
                ui.ctx().input(|i| i.viewport().close_requested())
            },
        );
        if closed {
            self.classroom.presenter = false;
        }
    }

    /// Classroom mode's top bar: the lesson and step, large, and how to leave.
    fn classroom_bar_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            if let Some(lesson) = self.lesson() {
                ui.label(
                    RichText::new(format!("{} · {}", lesson.order, lesson.title))
                        .size(self.theme.text_subheading)
                        .strong(),
                );
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui
                    .button("Leave")
                    .on_hover_text("Leave classroom mode (Esc)")
                    .clicked()
                {
                    let ctx = ui.ctx().clone();
                    self.leave_classroom(&ctx);
                }
                if self.classroom.sweep.is_some() {
                    ui.label(RichText::new("sweeping (S stops)").color(self.theme.accent));
                }
                if self.classroom.autoplay.is_some() {
                    ui.label(RichText::new("autoplay (A stops)").color(self.theme.accent));
                }
            });
        });
    }

    /// Classroom mode's bottom bar: a thin progress bar with the step count.
    fn classroom_progress_ui(&mut self, ui: &mut Ui) {
        let n = self.step_count().max(1);
        ui.add(
            egui::ProgressBar::new((self.step + 1) as f32 / n as f32)
                .text(format!("step {} of {n}", self.step + 1))
                .desired_height(self.theme.text_small * 1.6),
        );
    }

    /// The notebook's top bar: the app and lesson names on the left, the engines and buttons on
    /// the right. The right side is laid out first so that on a narrow window (or with projector
    /// fonts) the lesson title is shortened with "…" instead of being drawn under the engines.
    fn top_bar_ui(&mut self, ui: &mut Ui) {
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui
                .button("Classroom")
                .on_hover_text(
                    "Full screen for a projector (F5). Keys: → Space PageDown next, ← PageUp back, \
                     B blank, F full screen, P presenter view, S sweep, M measure, A autoplay, Esc leave",
                )
                .clicked()
            {
                let ctx = ui.ctx().clone();
                self.enter_classroom(&ctx);
            }
            let shot = ui
                .button("Screenshot")
                .on_hover_text("Save this view as PNG (F12); right-click to choose the folder");
            if shot.clicked() {
                let ctx = ui.ctx().clone();
                self.request_screenshot(&ctx);
            }
            shot.context_menu(|ui| self.screenshot_folder_ui(ui));
            let next_theme = if self.theme.dark { "light" } else { "dark" };
            if ui
                .button(format!("{next_theme} theme"))
                .on_hover_text("Switch between the light and dark themes")
                .clicked()
            {
                self.set_theme(next_theme);
            }
            self.engines_summary_ui(ui);
            ui.add_space(self.theme.column_gap);
            ui.with_layout(egui::Layout::left_to_right(egui::Align::Center), |ui| {
                let app_name = RichText::new("kernelbook")
                    .strong()
                    .size(self.theme.text_heading);
                let Some(lesson) = self.lesson() else {
                    ui.add(egui::Label::new(app_name).truncate());
                    return;
                };
                let title = format!("{} · {}", lesson.order, lesson.title);
                let title_text = RichText::new(title.clone()).size(self.theme.text_subheading);
                let width = |text: &RichText| super::layout::text_width(ui, text.clone());
                // The lesson's name says more than the app's: when both do not fit, the app's
                // name goes first.
                let both = width(&app_name)
                    + width(&title_text)
                    + 2.0 * ui.spacing().item_spacing.x
                    + ui.spacing().item_spacing.x;
                if both <= ui.available_width() {
                    ui.label(app_name);
                    ui.separator();
                }
                ui.add(egui::Label::new(title_text).truncate())
                    .on_hover_text(title);
            });
        });
    }

    /// The screenshot folder: a text field, applied when it can be created and written.
    fn screenshot_folder_ui(&mut self, ui: &mut Ui) {
        ui.label("Save screenshots to:");
        let field = ui.add(
            egui::TextEdit::singleline(&mut self.screenshot_dir_text)
                .desired_width(self.theme.field_width * 2.5),
        );
        let apply = ui.button("Use this folder").clicked()
            || (field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)));
        if apply {
            let dir = PathBuf::from(self.screenshot_dir_text.trim());
            match crate::export::prepare_folder(&dir) {
                Ok(()) => {
                    self.classroom.screenshot_dir = dir;
                    self.classroom.toast("Screenshot folder set.", false);
                    ui.close();
                }
                Err(e) => self.classroom.toast(e.to_string(), true),
            }
        }
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
        // Cells are numbered in the order they appear, whatever column they land in.
        let mut next_cell = 0;
        let cell_numbers: Vec<Option<usize>> = step
            .blocks
            .iter()
            .map(|b| {
                matches!(b, Block::Cell(_)).then(|| {
                    next_cell += 1;
                    next_cell - 1
                })
            })
            .collect();
        let mut sweep_toggled = false;
        let title = RichText::new(format!("{} · {}", step_index + 1, step.title))
            .strong()
            .size(self.theme.text_heading);
        let is_live = |b: &Block| matches!(b, Block::Cell(_) | Block::Kernel(_));
        let two_columns = self.classroom.active
            && step.blocks.iter().any(is_live)
            && step
                .blocks
                .iter()
                .any(|b| !is_live(b) && !matches!(b, Block::Notes(_)));
        if two_columns {
            // Classroom: the words on the left, the live cells on the right, so that the picture
            // a room looks at fits one screen.
            ui.label(title);
            ui.add_space(self.theme.block_gap * 0.5);
            let gap = self.theme.column_gap * 2.0;
            let left_width = ((ui.available_width() - gap) * 0.42).max(0.0);
            let height = ui.available_height();
            ui.horizontal_top(|ui| {
                ui.spacing_mut().item_spacing.x = gap;
                for (side, width) in [
                    (0, left_width),
                    (1, ui.available_width() - left_width - gap),
                ] {
                    ui.allocate_ui_with_layout(
                        egui::vec2(width.max(0.0), height),
                        egui::Layout::top_down(egui::Align::Min),
                        |ui| {
                            ui.set_width(width.max(0.0));
                            egui::ScrollArea::vertical()
                                .id_salt(("step", &lesson.id, step_index, side))
                                .auto_shrink([false, false])
                                .show(ui, |ui| {
                                    for (b, block) in step.blocks.iter().enumerate() {
                                        if is_live(block) == (side == 1) {
                                            self.block_ui(
                                                ui,
                                                &lesson.id,
                                                step_index,
                                                b,
                                                block,
                                                cell_numbers[b],
                                                &mut sweep_toggled,
                                            );
                                        }
                                    }
                                });
                        },
                    );
                }
            });
        } else {
            egui::ScrollArea::vertical()
                .id_salt(("step", &lesson.id, step_index))
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    ui.set_max_width(self.theme.content_max_width.min(ui.available_width()));
                    ui.label(title);
                    ui.add_space(self.theme.block_gap);
                    for (b, block) in step.blocks.iter().enumerate() {
                        self.block_ui(
                            ui,
                            &lesson.id,
                            step_index,
                            b,
                            block,
                            cell_numbers[b],
                            &mut sweep_toggled,
                        );
                    }
                });
        }
        if sweep_toggled {
            self.toggle_sweep();
        }
    }

    /// One block of a step: prose, an op cell (number `cell`), kernel source, a predict question,
    /// or the teacher's notes (never in classroom mode: the presenter view has them).
    #[allow(clippy::too_many_arguments)]
    fn block_ui(
        &mut self,
        ui: &mut Ui,
        lesson_id: &str,
        step_index: usize,
        b: usize,
        block: &Block,
        cell: Option<usize>,
        sweep_toggled: &mut bool,
    ) {
        match block {
            Block::Prose(md) => {
                CommonMarkViewer::new().show(ui, &mut self.markdown, md);
            }
            Block::Cell(spec) => {
                let key = CellKey {
                    lesson: lesson_id.to_string(),
                    step: step_index,
                    cell: cell.unwrap_or(0),
                };
                let worker = &mut self.worker;
                let state = self.cells.entry(key.clone()).or_insert_with(|| {
                    let mut c = CellState::new(spec);
                    Self::submit(worker, &key, &mut c);
                    c
                });
                let id = egui::Id::unique(("cell", &key.lesson, key.step, key.cell));
                let events = cell_ui(
                    ui,
                    id,
                    state,
                    &self.theme,
                    CellOptions {
                        hide_timings: self.options.hide_timings,
                        sweeping: self.classroom.sweep.as_ref().is_some_and(|s| s.cell == key),
                        compact: self.classroom.active,
                    },
                    RooflineData {
                        backends: self.backends.as_deref(),
                        measurements: &self.measurements,
                    },
                );
                if events.changed {
                    Self::submit(&mut self.worker, &key, state);
                }
                if events.toggle_sweep {
                    *sweep_toggled = true;
                }
                if events.measure {
                    self.start_measure(&key);
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
                    ("kernel", lesson_id, step_index, b),
                    &title,
                    cuda,
                    wgsl,
                    &k.all_marks(),
                    &self.theme,
                );
            }
            Block::Predict(p) => {
                let key = (lesson_id.to_string(), step_index, b);
                let chosen = self.answers.get(&key).copied();
                if let Some(choice) = predict_ui(ui, p, chosen, &self.theme) {
                    self.answers.insert(key, choice);
                }
            }
            Block::Notes(_) if self.classroom.active => return,
            Block::Notes(notes) => {
                egui::CollapsingHeader::new(
                    RichText::new("Notes for the teacher").color(self.theme.text_weak),
                )
                .id_salt(("notes", lesson_id, step_index, b))
                .default_open(false)
                .show(ui, |ui| {
                    CommonMarkViewer::new().show(ui, &mut self.markdown, notes);
                });
            }
        }
        ui.add_space(self.theme.block_gap);
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
