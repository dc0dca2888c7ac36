//! The keyboard: what each key does in the notebook and in classroom mode (the keys themselves are
//! read in `classroom.rs`).

use super::*;

impl KernelbookApp {
    pub(super) fn handle_keys(&mut self, ctx: &egui::Context) {
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
}
