//! The app's measurement and smoke modes: the start-up time (`--startup-time`), the frame-time
//! report while a slider is dragged (`--frame-stats`), and the start-up screenshot (`--screenshot`).
//! Each runs from `frame_ui` once per frame when its option is set, and closes the window when done.

use super::*;

impl KernelbookApp {
    /// Start-up measurement: the first frame's time, then the time until every cell of the first
    /// step has results on every engine; reported in `frame_report`, then the app quits.
    pub(super) fn startup_step(&mut self, ctx: &egui::Context, t0: std::time::Instant) {
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
    pub(super) fn frame_stats_step(&mut self, ctx: &egui::Context, frames: usize) {
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
    pub(super) fn screenshot_step(&mut self, ctx: &egui::Context) {
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
}
