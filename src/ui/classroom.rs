//! Classroom mode, the presenter view, sweeps, autoplay and in-app screenshots.
//!
//! - Classroom mode (`--classroom`, F5 or the top bar's button): full screen, the projector theme,
//!   no lesson list; keys as presentation software has them (Right, Space, PageDown: next; Left,
//!   PageUp: back; Home/End; B or `.`: blank screen, any of those keys brings it back; F: full
//!   screen; Esc: leave). A clicker sends PageUp/PageDown, so it just works.
//! - The presenter view (P): a second window with the step's presenter notes, the next step,
//!   the time since the class started and a clock; the main window shows only the audience view.
//! - Sweeps (S): a cell's `sweep = { param, from, to, seconds }` moves its slider over time while
//!   the results and checks update live. Autoplay (A, or `--autoplay SECONDS`) steps through the
//!   lessons on a timer and starts each step's sweep (an open day, a kiosk).
//! - Measure (M): times the step's roofline view (the first cell that shows one) on every engine,
//!   as its Measure button does.
//! - Screenshots (F12 or the top bar's button) are saved as PNG with provenance text chunks to the
//!   folder the user chose, with a toast naming the file.
//!
//! The state here is plain data; `app.rs` owns it and calls in each frame.

use super::theme::Theme;
use super::worker::CellKey;
use egui::{Key, RichText, Ui};
use egui_commonmark::{CommonMarkCache, CommonMarkViewer};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// How long a step is shown in autoplay unless `--autoplay` says otherwise.
pub const DEFAULT_AUTOPLAY: Duration = Duration::from_secs(20);
/// How long a toast stays on screen.
const TOAST_FOR: Duration = Duration::from_secs(6);

/// What the keyboard asked for this frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Keys {
    pub next: bool,
    pub prev: bool,
    pub home: bool,
    pub end: bool,
    pub blank: bool,
    pub fullscreen: bool,
    pub escape: bool,
    pub classroom: bool,
    pub presenter: bool,
    pub sweep: bool,
    /// Measure the step's roofline (M).
    pub measure: bool,
    pub autoplay: bool,
    pub screenshot: bool,
}

impl Keys {
    /// Read the keys pressed this frame. Keys that a focused widget uses (arrows in a slider,
    /// letters in a text field) are left to it. A shortcut is a key pressed on its own: Ctrl+A
    /// (select all), Alt+F, Cmd+S and the like belong to someone else and never fire one. The
    /// modifiers are those of the key's own event, not of the end of the frame (a quick Ctrl+A
    /// presses and releases Ctrl within one frame).
    pub fn read(ctx: &egui::Context) -> Keys {
        let focused = ctx.memory(|m| m.focused().is_some()) || ctx.egui_wants_keyboard_input();
        ctx.input(|i| {
            let alone = |k: Key| {
                i.events.iter().any(|e| {
                    matches!(
                        e,
                        egui::Event::Key { key, pressed: true, modifiers, .. }
                            if *key == k && !modifiers.any()
                    )
                })
            };
            let mut keys = Keys {
                screenshot: alone(Key::F12),
                classroom: alone(Key::F5),
                ..Keys::default()
            };
            if focused {
                return keys;
            }
            keys.next = alone(Key::ArrowRight) || alone(Key::PageDown) || alone(Key::Space);
            keys.prev = alone(Key::ArrowLeft) || alone(Key::PageUp);
            keys.home = alone(Key::Home);
            keys.end = alone(Key::End);
            keys.blank = alone(Key::B) || alone(Key::Period);
            keys.fullscreen = alone(Key::F);
            keys.escape = i.key_pressed(Key::Escape);
            keys.presenter = alone(Key::P);
            keys.sweep = alone(Key::S);
            keys.measure = alone(Key::M);
            keys.autoplay = alone(Key::A);
            keys
        })
    }
}

/// A sweep in progress.
#[derive(Clone, Debug, PartialEq)]
pub struct RunningSweep {
    pub cell: CellKey,
    pub started: Instant,
}

/// A message shown for a few seconds at the bottom of the window.
#[derive(Clone, Debug)]
pub struct Toast {
    pub text: String,
    pub error: bool,
    pub shown: Instant,
}

/// Classroom, presenter, sweep, autoplay and screenshot state.
pub struct Classroom {
    pub active: bool,
    pub blank: bool,
    pub fullscreen: bool,
    pub presenter: bool,
    /// When classroom mode started (the presenter view's timer).
    pub started: Instant,
    /// Autoplay interval, when autoplay is on.
    pub autoplay: Option<Duration>,
    /// The interval autoplay uses when switched on with A.
    pub autoplay_interval: Duration,
    /// When the current step appeared (autoplay counts from here).
    pub step_shown: Instant,
    pub sweep: Option<RunningSweep>,
    pub toast: Option<Toast>,
    pub screenshot_dir: PathBuf,
    pub pending_screenshot: Option<Receiver<Arc<egui::ColorImage>>>,
    /// The theme to go back to when classroom mode ends.
    pub theme_before: Option<&'static str>,
}

impl Classroom {
    pub fn new(screenshot_dir: PathBuf, autoplay: Option<Duration>) -> Self {
        let now = Instant::now();
        Classroom {
            active: false,
            blank: false,
            fullscreen: false,
            presenter: false,
            started: now,
            autoplay,
            autoplay_interval: autoplay.unwrap_or(DEFAULT_AUTOPLAY),
            step_shown: now,
            sweep: None,
            toast: None,
            screenshot_dir,
            pending_screenshot: None,
            theme_before: None,
        }
    }

    pub fn toast(&mut self, text: impl Into<String>, error: bool) {
        self.toast = Some(Toast {
            text: text.into(),
            error,
            shown: Instant::now(),
        });
    }

    /// Whether autoplay should move on now.
    pub fn autoplay_due(&self, now: Instant) -> bool {
        match self.autoplay {
            Some(interval) => {
                self.sweep.is_none() && now.duration_since(self.step_shown) >= interval
            }
            None => false,
        }
    }
}

/// Everything the presenter view shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PresenterInfo {
    pub lesson_title: String,
    /// 1-based.
    pub step: usize,
    pub steps: usize,
    pub step_title: String,
    /// The step's presenter notes (Markdown), in order.
    pub notes: Vec<String>,
    /// The next step's title and its first paragraph, if there is a next step.
    pub next: Option<(String, String)>,
    pub elapsed: Duration,
    /// "14:05" local time.
    pub clock: String,
    pub blank: bool,
    pub autoplay: Option<Duration>,
}

/// The presenter view: where we are, the notes, what comes next, time.
pub fn presenter_ui(ui: &mut Ui, info: &PresenterInfo, theme: &Theme, cache: &mut CommonMarkCache) {
    ui.horizontal(|ui| {
        ui.label(
            RichText::new(format!(
                "{} · step {} of {}",
                info.lesson_title, info.step, info.steps
            ))
            .size(theme.text_subheading)
            .strong(),
        );
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            ui.label(
                RichText::new(format!("{} · {}", fmt_elapsed(info.elapsed), info.clock))
                    .size(theme.text_heading)
                    .monospace(),
            )
            .on_hover_text("time since classroom mode started · clock");
        });
    });
    if info.blank {
        ui.label(
            RichText::new("The audience screen is blank (B to bring it back).")
                .color(theme.warning),
        );
    }
    if let Some(interval) = info.autoplay {
        ui.label(
            RichText::new(format!(
                "Autoplay: next step every {} s (A to stop).",
                interval.as_secs()
            ))
            .color(theme.text_weak),
        );
    }
    ui.separator();
    ui.label(
        RichText::new(format!("Now: {}", info.step_title))
            .size(theme.text_heading)
            .strong(),
    );
    ui.add_space(theme.block_gap * 0.5);
    egui::ScrollArea::vertical()
        .max_height(ui.available_height() * 0.7)
        .auto_shrink([false, true])
        .show(ui, |ui| {
            if info.notes.is_empty() {
                ui.label(RichText::new("No notes for this step.").color(theme.text_weak));
            }
            for notes in &info.notes {
                CommonMarkViewer::new().show(ui, cache, notes);
            }
        });
    ui.separator();
    match &info.next {
        Some((title, first)) => {
            ui.label(
                RichText::new(format!("Next: {title}"))
                    .strong()
                    .size(theme.text_subheading),
            );
            if !first.is_empty() {
                ui.label(RichText::new(first).color(theme.text_weak));
            }
        }
        None => {
            ui.label(RichText::new("This is the last step of the lesson.").color(theme.text_weak));
        }
    }
    ui.add_space(theme.block_gap * 0.5);
    ui.label(
        RichText::new("→ Space PageDown: next · ← PageUp: back · B: blank · S: sweep · M: measure · F: full screen · Esc: leave")
            .size(theme.text_small)
            .color(theme.text_weak),
    );
}

/// "mm:ss", or "h:mm:ss" past an hour.
pub fn fmt_elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 60, s % 60)
    }
}

/// The local time of day, "HH:MM" (with " UTC" where the local time zone cannot be determined).
/// The zone comes from `TZ` or the system's setting (`/etc/localtime` and the zoneinfo database on
/// Linux and macOS, the system's zone and a bundled database on Windows).
pub fn local_clock() -> String {
    let now = jiff::Timestamp::now();
    match jiff::tz::TimeZone::try_system() {
        Ok(zone) => {
            let t = now.to_zoned_datetime(zone);
            format!("{:02}:{:02}", t.hour(), t.minute())
        }
        Err(_) => {
            let t = now.to_zoned_datetime(jiff::tz::TimeZone::UTC);
            format!("{:02}:{:02} UTC", t.hour(), t.minute())
        }
    }
}

/// The toast, bottom centre, if one is showing. Returns whether it is still showing.
pub fn toast_ui(ctx: &egui::Context, classroom: &mut Classroom, theme: &Theme) -> bool {
    let Some(toast) = &classroom.toast else {
        return false;
    };
    if toast.shown.elapsed() > TOAST_FOR {
        classroom.toast = None;
        return false;
    }
    let color = if toast.error { theme.fail } else { theme.text };
    egui::Area::new(egui::Id::unique("kernelbook toast"))
        .anchor(
            egui::Align2::CENTER_BOTTOM,
            egui::vec2(0.0, -theme.block_gap * 4.0),
        )
        .order(egui::Order::Foreground)
        .interactable(false)
        .show(ctx, |ui| {
            egui::Frame::popup(ui.style())
                .fill(theme.panel)
                .inner_margin(theme.cell_padding)
                .show(ui, |ui| {
                    ui.label(RichText::new(&toast.text).color(color));
                });
        });
    ctx.request_repaint_after(Duration::from_millis(250));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_reads_like_a_stopwatch() {
        assert_eq!(fmt_elapsed(Duration::from_secs(0)), "00:00");
        assert_eq!(fmt_elapsed(Duration::from_secs(75)), "01:15");
        assert_eq!(fmt_elapsed(Duration::from_secs(3725)), "1:02:05");
        let clock = local_clock();
        assert!(clock.len() >= 5 && clock.as_bytes()[2] == b':', "{clock}");
    }

    #[test]
    fn autoplay_waits_for_its_interval_and_for_a_running_sweep() {
        let mut c = Classroom::new(PathBuf::from("/tmp"), Some(Duration::from_secs(10)));
        let t0 = c.step_shown;
        assert!(!c.autoplay_due(t0 + Duration::from_secs(9)));
        assert!(c.autoplay_due(t0 + Duration::from_secs(10)));
        c.sweep = Some(RunningSweep {
            cell: CellKey {
                lesson: "l".into(),
                step: 0,
                cell: 0,
            },
            started: t0,
        });
        assert!(!c.autoplay_due(t0 + Duration::from_secs(60)));
        c.autoplay = None;
        c.sweep = None;
        assert!(!c.autoplay_due(t0 + Duration::from_secs(60)));
    }
}
