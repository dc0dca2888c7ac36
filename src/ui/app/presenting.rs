//! Presenting: entering and leaving classroom mode, its top and bottom bars, the presenter view's
//! window, sweeps, autoplay, and screenshots with their provenance.

use super::*;

impl KernelbookApp {
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

    /// What the current view shows and how it was computed (written into screenshots).
    pub fn provenance(&self, size: (u32, u32)) -> crate::provenance::Provenance {
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
        crate::provenance::Provenance {
            app: crate::provenance::app_version(),
            lesson_id,
            lesson_title,
            step: self.step + 1,
            step_title,
            theme: self.theme.name.to_string(),
            size,
            cells: self
                .current_cells()
                .into_iter()
                .map(|c| c.provenance())
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
    pub(super) fn advance_sweep(&mut self, ctx: &egui::Context) {
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
    pub(super) fn advance_autoplay(&mut self, ctx: &egui::Context) {
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
    pub(super) fn receive_screenshot(&mut self) {
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
        crate::provenance::prepare_folder(dir).map_err(|e| e.to_string())?;
        let lesson = self.lesson().map_or("kernelbook", |l| l.id.as_str());
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let path = dir.join(format!(
            "kernelbook-{lesson}-step{:02}-{stamp}.png",
            self.step + 1
        ));
        crate::provenance::write_png(&path, &rgba, &self.provenance((w as u32, h as u32)))
            .map_err(|e| e.to_string())?;
        Ok(path)
    }

    /// The presenter view in its own window (a second viewport; embedded as a window where the
    /// platform has only one).
    pub(super) fn presenter_viewport(&mut self, ctx: &egui::Context) {
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
    pub(super) fn classroom_bar_ui(&mut self, ui: &mut Ui) {
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
    pub(super) fn classroom_progress_ui(&mut self, ui: &mut Ui) {
        let n = self.step_count().max(1);
        ui.add(
            egui::ProgressBar::new((self.step + 1) as f32 / n as f32)
                .text(format!("step {} of {n}", self.step + 1))
                .desired_height(self.theme.text_small * 1.6),
        );
    }

    /// The screenshot folder: a text field, applied when it can be created and written.
    pub(super) fn screenshot_folder_ui(&mut self, ui: &mut Ui) {
        ui.label("Save screenshots to:");
        let field = ui.add(
            egui::TextEdit::singleline(&mut self.screenshot_dir_text)
                .desired_width(self.theme.field_width * 2.5),
        );
        let apply = ui.button("Use this folder").clicked()
            || (field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)));
        if apply {
            let dir = PathBuf::from(self.screenshot_dir_text.trim());
            match crate::provenance::prepare_folder(&dir) {
                Ok(()) => {
                    self.classroom.screenshot_dir = dir;
                    self.classroom.toast("Screenshot folder set.", false);
                    ui.close();
                }
                Err(e) => self.classroom.toast(e.to_string(), true),
            }
        }
    }
}
