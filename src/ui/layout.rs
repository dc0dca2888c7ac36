//! Small layout helpers shared by the views: the width of a text on one line, and starting a new
//! row of a wrapping layout before something that would not fit in what is left of the current
//! one (egui wraps single widgets, so a label and its slider, or a "name = value" label, would
//! otherwise run past a narrow column such as classroom mode's).

use egui::{Ui, WidgetText};

/// The width of `text` laid out on one line, in points.
pub fn text_width(ui: &Ui, text: impl Into<WidgetText>) -> f32 {
    text.into()
        .into_galley(
            ui,
            Some(egui::TextWrapMode::Extend),
            f32::INFINITY,
            egui::TextStyle::Body,
        )
        .size()
        .x
}

/// In a wrapping row: start a new row unless `width` fits in what is left of this one (or the row
/// is still empty). Returns whether it started one.
pub fn wrap_unless_fits(ui: &mut Ui, width: f32) -> bool {
    let wrap =
        width > ui.available_size_before_wrap().x && ui.cursor().min.x > ui.max_rect().left();
    if wrap {
        ui.end_row();
    }
    wrap
}
