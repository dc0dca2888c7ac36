//! The notebook's frame around a step: the top bar (title, theme, classroom, screenshot, engines),
//! the lesson list and the step navigation.

use super::*;

impl KernelbookApp {
    /// The notebook's top bar: the app and lesson names on the left, the engines and buttons on
    /// the right. The right side is laid out first so that on a narrow window (or with projector
    /// fonts) the lesson title is shortened with "…" instead of being drawn under the engines.
    pub(super) fn top_bar_ui(&mut self, ui: &mut Ui) {
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
                let width = |text: &RichText| crate::ui::layout::text_width(ui, text.clone());
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

    pub(super) fn engines_summary_ui(&self, ui: &mut Ui) {
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

    pub(super) fn nav_ui(&mut self, ui: &mut Ui) {
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

    pub(super) fn lesson_list_ui(&mut self, ui: &mut Ui) {
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
}
