//! Design tokens: every colour and size the UI draws with, in one place.
//!
//! A [`Theme`] is plain data: named text sizes, colours, series colours, spacing and widget heights.
//! UI code reads tokens (`theme.text_body`, `theme.pass`, `theme.series_color(role)`), never
//! literals, so switching to the projector theme is one line: `Theme::projector().apply(ctx)`.
//!
//! Three themes: [`Theme::light`] and [`Theme::dark`] for a laptop, [`Theme::projector`] for the
//! back of a classroom (large type, black on white, thick strokes). Series colours come from the
//! Okabe–Ito palette, which stays distinguishable with the common colour-vision deficiencies; pass
//! and fail also always carry a glyph and a word ([`Theme::PASS_GLYPH`], [`Theme::FAIL_GLYPH`]), so
//! colour is never the only signal.
//!
//! [`install_fonts`] bundles DejaVu Sans (with Bold) and DejaVu Sans Mono, which cover the math
//! glyphs lesson prose uses (σ Σ ∑ ≤ ≥ → ∞ ≈ · ⁻ ˣ ᵢ ⱼ √ ∈ θ τ ✔ ✘ ▶); other scripts and emoji come
//! from the system's fonts ([`add_system_font_fallback`]).

use crate::chart::SeriesRole;
use crate::engine::EngineKind;
use egui::{Color32, FontData, FontDefinitions, FontFamily, FontId, Stroke, TextStyle, Vec2};
use std::sync::Arc;

/// All design tokens. Build one with [`Theme::light`], [`Theme::dark`], [`Theme::projector`] or
/// [`Theme::by_name`]; install it with [`Theme::apply`].
#[derive(Clone, Debug, PartialEq)]
pub struct Theme {
    /// "light", "dark" or "projector".
    pub name: &'static str,
    /// Dark background, light text.
    pub dark: bool,

    // ---- text sizes (points) ----
    /// Prose, labels, buttons.
    pub text_body: f32,
    /// Lesson and section titles.
    pub text_heading: f32,
    /// Cell titles, the lesson list's header.
    pub text_subheading: f32,
    /// Tick labels, captions, secondary details.
    pub text_small: f32,
    /// Kernel source and numbers in tables.
    pub text_mono: f32,

    // ---- colours ----
    /// The window background.
    pub background: Color32,
    /// Panels and cell frames.
    pub panel: Color32,
    /// Body text.
    pub text: Color32,
    /// Secondary text (line numbers, captions). Still readable: contrast >= 4.5:1 on `panel`.
    pub text_weak: Color32,
    /// Selection, links, the current tab, focus.
    pub accent: Color32,
    /// A check that passed (always shown with [`Theme::PASS_GLYPH`] and a word, never colour alone).
    pub pass: Color32,
    /// A check that failed (always shown with [`Theme::FAIL_GLYPH`] and a word).
    pub fail: Color32,
    /// Warnings, e.g. NaN/inf in a result (shown with [`Theme::WARNING_GLYPH`]).
    pub warning: Color32,
    /// Behind code.
    pub code_background: Color32,
    /// Behind the marked lines of a kernel ("the lines this step is about"), with a gutter glyph.
    pub marked_line_background: Color32,
    /// Plot grid lines and frames.
    pub grid: Color32,
    /// Plot backgrounds.
    pub plot_background: Color32,
    /// Heatmap cells holding NaN (a grey outside the colormap).
    pub heatmap_nan: Color32,

    // ---- series colours (Okabe–Ito) ----
    pub series_cuda: Color32,
    pub series_wgpu: Color32,
    pub series_cpu: Color32,
    pub series_reference: Color32,
    pub series_input: Color32,
    /// For [`SeriesRole::Other`], cycled.
    pub series_other: [Color32; 8],

    // ---- syntax highlighting ----
    pub code_keyword: Color32,
    pub code_type: Color32,
    pub code_number: Color32,
    pub code_string: Color32,
    pub code_comment: Color32,
    /// `#define` lines in CUDA, `@attributes` in WGSL.
    pub code_directive: Color32,

    // ---- sizes and spacing (points) ----
    /// Inside a cell frame.
    pub cell_padding: f32,
    /// Between engine columns.
    pub column_gap: f32,
    /// egui's spacing between widgets.
    pub item_spacing: Vec2,
    /// egui's padding inside buttons.
    pub button_padding: Vec2,
    /// Height of a bar or line chart's plot area (axes included).
    pub plot_height: f32,
    /// Height of a heatmap's plot area (axes included).
    pub heatmap_height: f32,
    /// Height of the kernel source view before it scrolls.
    pub code_height: f32,
    /// Width of plot lines and bar outlines.
    pub line_width: f32,
    /// Radius of plot markers.
    pub marker_radius: f32,
    /// Vertical space between the blocks of a step (prose, cells, questions); half of it inside one.
    pub block_gap: f32,
    /// Prose and cells stop widening past this: long lines are hard to read.
    pub content_max_width: f32,
    /// Starting width of the lesson list.
    pub side_panel_width: f32,
    /// Width of short text fields (a file path).
    pub field_width: f32,
    /// Outline of an error card.
    pub outline_width: f32,
}

impl Theme {
    /// The names [`Theme::by_name`] knows, in the order a theme picker shows them.
    pub const NAMES: [&'static str; 3] = ["light", "dark", "projector"];

    /// Shown with every passing check.
    pub const PASS_GLYPH: &'static str = "✔";
    /// Shown with every failing check.
    pub const FAIL_GLYPH: &'static str = "✘";
    /// Shown with warnings (NaN/inf in a result, an engine that cannot run).
    pub const WARNING_GLYPH: &'static str = "⚠";
    /// In the kernel view's gutter, on marked lines.
    pub const MARK_GLYPH: &'static str = "▶";

    /// `"light"`, `"dark"` or `"projector"` (case-insensitive); `None` for anything else.
    pub fn by_name(name: &str) -> Option<Theme> {
        match name.trim().to_ascii_lowercase().as_str() {
            "light" => Some(Theme::light()),
            "dark" => Some(Theme::dark()),
            "projector" => Some(Theme::projector()),
            _ => None,
        }
    }

    /// For a laptop in a lit room: dark text on an off-white background.
    pub fn light() -> Theme {
        Theme {
            name: "light",
            dark: false,
            text_body: 15.0,
            text_heading: 21.0,
            text_subheading: 17.0,
            text_small: 12.5,
            text_mono: 14.0,
            background: rgb(0xF7F7F5),
            panel: rgb(0xFFFFFF),
            text: rgb(0x1A1A1A),
            text_weak: rgb(0x5E5E5E),
            accent: rgb(0x0072B2),
            pass: rgb(0x00775A),
            fail: rgb(0xB34700),
            warning: rgb(0x8A6500),
            code_background: rgb(0xF4F4F1),
            marked_line_background: rgb(0xFFEDB3),
            grid: rgb(0xD0D0CC),
            plot_background: rgb(0xFFFFFF),
            heatmap_nan: rgb(0xA0A0A0),
            series_cuda: rgb(0x009E73),
            series_wgpu: rgb(0x0072B2),
            series_cpu: rgb(0xE69F00),
            series_reference: rgb(0x000000),
            series_input: rgb(0x8C8C8C),
            series_other: [
                rgb(0xCC79A7),
                rgb(0xD55E00),
                rgb(0x56B4E9),
                rgb(0x009E73),
                rgb(0x0072B2),
                rgb(0xE69F00),
                rgb(0x555555),
                rgb(0x882255),
            ],
            code_keyword: rgb(0x0A4F8F),
            code_type: rgb(0x00664D),
            code_number: rgb(0xA23B00),
            code_string: rgb(0x8A2F72),
            code_comment: rgb(0x5E5E5E),
            code_directive: rgb(0x7A5200),
            cell_padding: 10.0,
            column_gap: 12.0,
            item_spacing: Vec2::new(8.0, 5.0),
            button_padding: Vec2::new(6.0, 3.0),
            plot_height: 260.0,
            heatmap_height: 320.0,
            code_height: 300.0,
            line_width: 2.0,
            marker_radius: 3.5,
            block_gap: 8.0,
            content_max_width: 1500.0,
            side_panel_width: 200.0,
            field_width: 140.0,
            outline_width: 1.5,
        }
    }

    /// For a laptop in a dim room: light text on a near-black background.
    pub fn dark() -> Theme {
        Theme {
            name: "dark",
            dark: true,
            background: rgb(0x161616),
            panel: rgb(0x1F1F1F),
            text: rgb(0xE8E8E8),
            text_weak: rgb(0xA8A8A8),
            accent: rgb(0x56B4E9),
            pass: rgb(0x2EC79A),
            fail: rgb(0xF08A4B),
            warning: rgb(0xF0E442),
            code_background: rgb(0x141414),
            marked_line_background: rgb(0x3A321C),
            grid: rgb(0x3A3A3A),
            plot_background: rgb(0x181818),
            heatmap_nan: rgb(0xBDBDBD),
            series_cuda: rgb(0x009E73),
            series_wgpu: rgb(0x56B4E9),
            series_cpu: rgb(0xE69F00),
            series_reference: rgb(0xF2F2F2),
            series_input: rgb(0x9A9A9A),
            series_other: [
                rgb(0xCC79A7),
                rgb(0xD55E00),
                rgb(0xF0E442),
                rgb(0x009E73),
                rgb(0x56B4E9),
                rgb(0xE69F00),
                rgb(0xDDDDDD),
                rgb(0xAA4499),
            ],
            code_keyword: rgb(0x7CB9F0),
            code_type: rgb(0x4FD1A5),
            code_number: rgb(0xF2A65A),
            code_string: rgb(0xE3A1D0),
            code_comment: rgb(0xA6A6A6),
            code_directive: rgb(0xE0C75A),
            ..Theme::light()
        }
    }

    /// For a projector: readable from the back of a room at 1920x1080 (body text 28 px), black on
    /// white (a projector washes out dark backgrounds), thick lines, roomy spacing.
    pub fn projector() -> Theme {
        Theme {
            name: "projector",
            dark: false,
            text_body: 28.0,
            text_heading: 40.0,
            text_subheading: 32.0,
            text_small: 24.0,
            text_mono: 24.0,
            background: rgb(0xFFFFFF),
            panel: rgb(0xFFFFFF),
            text: rgb(0x000000),
            text_weak: rgb(0x3A3A3A),
            accent: rgb(0x005A8C),
            pass: rgb(0x005C45),
            fail: rgb(0x9E3D00),
            warning: rgb(0x6B4E00),
            code_background: rgb(0xF2F2F2),
            marked_line_background: rgb(0xFFE08A),
            grid: rgb(0xB0B0B0),
            plot_background: rgb(0xFFFFFF),
            heatmap_nan: rgb(0x9A9A9A),
            series_cuda: rgb(0x009E73),
            series_wgpu: rgb(0x0072B2),
            series_cpu: rgb(0xE69F00),
            series_reference: rgb(0x000000),
            series_input: rgb(0x7A7A7A),
            series_other: [
                rgb(0xCC79A7),
                rgb(0xD55E00),
                rgb(0x56B4E9),
                rgb(0x009E73),
                rgb(0x0072B2),
                rgb(0xE69F00),
                rgb(0x555555),
                rgb(0x882255),
            ],
            code_keyword: rgb(0x00407A),
            code_type: rgb(0x00573F),
            code_number: rgb(0x8A3200),
            code_string: rgb(0x72265E),
            code_comment: rgb(0x454545),
            code_directive: rgb(0x5C3F00),
            cell_padding: 18.0,
            column_gap: 24.0,
            item_spacing: Vec2::new(14.0, 9.0),
            button_padding: Vec2::new(12.0, 5.0),
            plot_height: 420.0,
            heatmap_height: 520.0,
            code_height: 520.0,
            line_width: 4.0,
            marker_radius: 7.0,
            block_gap: 16.0,
            content_max_width: 2400.0,
            side_panel_width: 320.0,
            field_width: 240.0,
            outline_width: 3.0,
        }
    }

    /// The colour of a series: the same engine has the same colour in every chart.
    pub fn series_color(&self, role: SeriesRole) -> Color32 {
        match role {
            SeriesRole::Engine(engine) => self.engine_color(engine),
            SeriesRole::Reference => self.series_reference,
            SeriesRole::Input => self.series_input,
            SeriesRole::Other(i) => self.series_other[i % self.series_other.len()],
        }
    }

    /// The colour of an engine's series and column header.
    pub fn engine_color(&self, engine: EngineKind) -> Color32 {
        match engine {
            EngineKind::Cuda => self.series_cuda,
            EngineKind::Wgpu => self.series_wgpu,
            EngineKind::Cpu => self.series_cpu,
        }
    }

    pub fn body_font(&self) -> FontId {
        FontId::proportional(self.text_body)
    }

    pub fn heading_font(&self) -> FontId {
        FontId::proportional(self.text_heading)
    }

    pub fn small_font(&self) -> FontId {
        FontId::proportional(self.text_small)
    }

    pub fn mono_font(&self) -> FontId {
        FontId::monospace(self.text_mono)
    }

    /// DejaVu Sans Bold at `size`. Needs [`install_fonts`] (egui panics on an unknown family).
    pub fn bold_font(&self, size: f32) -> FontId {
        FontId::new(size, FontFamily::Name(BOLD_FAMILY.into()))
    }

    /// The egui style for this theme: text styles, visuals and spacing.
    pub fn style(&self) -> egui::Style {
        let mut style = egui::Style {
            text_styles: [
                (TextStyle::Small, self.small_font()),
                (TextStyle::Body, self.body_font()),
                (TextStyle::Button, self.body_font()),
                (TextStyle::Heading, self.heading_font()),
                (TextStyle::Monospace, self.mono_font()),
            ]
            .into(),
            visuals: self.visuals(),
            ..Default::default()
        };
        style.spacing.item_spacing = self.item_spacing;
        style.spacing.button_padding = self.button_padding;
        style.spacing.interact_size.y = self.text_body + 2.0 * self.button_padding.y;
        style.spacing.icon_width = (self.text_body * 0.9).round();
        style.spacing.icon_width_inner = (self.text_body * 0.5).round();
        style.spacing.scroll.bar_width = (self.text_body * 0.5).round().max(8.0);
        style
    }

    /// egui visuals with this theme's colours.
    pub fn visuals(&self) -> egui::Visuals {
        let mut v = if self.dark {
            egui::Visuals::dark()
        } else {
            egui::Visuals::light()
        };
        let stroke_width = (self.line_width * 0.5).max(1.0);
        v.panel_fill = self.background;
        v.window_fill = self.panel;
        v.faint_bg_color = self.code_background;
        v.extreme_bg_color = self.plot_background;
        v.code_bg_color = self.code_background;
        v.hyperlink_color = self.accent;
        v.warn_fg_color = self.warning;
        v.error_fg_color = self.fail;
        v.weak_text_color = Some(self.text_weak);
        v.window_stroke = Stroke::new(stroke_width, self.grid);
        v.selection.bg_fill = self.accent.gamma_multiply(0.35);
        v.selection.stroke = Stroke::new(stroke_width, self.text);
        v.widgets.noninteractive.fg_stroke = Stroke::new(stroke_width, self.text);
        v.widgets.noninteractive.bg_stroke = Stroke::new(stroke_width, self.grid);
        v.widgets.noninteractive.bg_fill = self.panel;
        for w in [
            &mut v.widgets.inactive,
            &mut v.widgets.hovered,
            &mut v.widgets.active,
            &mut v.widgets.open,
        ] {
            w.fg_stroke.color = self.text;
            w.fg_stroke.width = w.fg_stroke.width.max(stroke_width);
        }
        v.widgets.hovered.bg_stroke = Stroke::new(stroke_width, self.accent);
        v.widgets.active.bg_stroke = Stroke::new(stroke_width * 1.5, self.accent);
        v
    }

    /// Caps the chart, heatmap and code heights at a share of a screen `height` points tall, so that
    /// a chart fits beside its controls on a small projector (1280x800 draws the projector theme's
    /// 420-point charts below the fold); taller screens keep the theme's own sizes.
    pub fn fit_to_screen(&mut self, height: f32) {
        let Some(base) = Theme::by_name(self.name) else {
            return;
        };
        let height = height.max(1.0);
        self.plot_height = base.plot_height.min((height * 0.34).max(160.0));
        self.heatmap_height = base.heatmap_height.min((height * 0.42).max(200.0));
        self.code_height = base.code_height.min((height * 0.55).max(200.0));
    }

    /// Installs this theme: text styles, visuals and spacing, for both of egui's dark and light
    /// slots (so egui's own dark/light switch cannot undo it). Call [`install_fonts`] once too.
    pub fn apply(&self, ctx: &egui::Context) {
        let style = Arc::new(self.style());
        ctx.set_style_of(egui::Theme::Dark, style.clone());
        ctx.set_style_of(egui::Theme::Light, style);
        ctx.set_theme(if self.dark {
            egui::Theme::Dark
        } else {
            egui::Theme::Light
        });
    }
}

fn rgb(hex: u32) -> Color32 {
    let [_, r, g, b] = hex.to_be_bytes();
    Color32::from_rgb(r, g, b)
}

/// The font family name of DejaVu Sans Bold, once [`install_fonts`] has run.
pub const BOLD_FAMILY: &str = "bold";

pub(crate) const DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
pub(crate) const DEJAVU_SANS_BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");
const DEJAVU_SANS_MONO: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

/// The bundled fonts (DejaVu, see `assets/fonts/DejaVu-LICENSE.txt`) ahead of egui's defaults:
/// DejaVu Sans first for proportional text, DejaVu Sans Mono first for monospace, egui's own fonts
/// kept as fallbacks, and DejaVu Sans Bold as the family [`BOLD_FAMILY`].
pub fn font_definitions() -> FontDefinitions {
    let mut fonts = FontDefinitions::default();
    for (name, bytes) in [
        ("DejaVuSans", DEJAVU_SANS),
        ("DejaVuSans-Bold", DEJAVU_SANS_BOLD),
        ("DejaVuSansMono", DEJAVU_SANS_MONO),
    ] {
        fonts
            .font_data
            .insert(name.to_owned(), Arc::new(FontData::from_static(bytes)));
    }
    let defaults = |fonts: &FontDefinitions, family: &FontFamily| {
        fonts.families.get(family).cloned().unwrap_or_default()
    };
    let proportional = defaults(&fonts, &FontFamily::Proportional);
    let monospace = defaults(&fonts, &FontFamily::Monospace);

    let mut with_first = |family: FontFamily, first: &str, rest: &[String]| {
        let mut list = vec![first.to_owned(), "DejaVuSans".to_owned()];
        list.extend(rest.iter().cloned());
        list.dedup();
        fonts.families.insert(family, list);
    };
    with_first(FontFamily::Proportional, "DejaVuSans", &proportional);
    // Mono: DejaVu Sans Mono, then DejaVu Sans for any glyph the mono face lacks.
    with_first(FontFamily::Monospace, "DejaVuSansMono", &monospace);
    with_first(
        FontFamily::Name(BOLD_FAMILY.into()),
        "DejaVuSans-Bold",
        &proportional,
    );
    fonts
}

/// Installs [`font_definitions`]. Call once at start-up (fonts are per context, not per theme).
pub fn install_fonts(ctx: &egui::Context) {
    ctx.set_fonts(font_definitions());
}

/// Lets `ctx` draw text the bundled fonts lack (Chinese, Japanese, Korean, emoji, ...) with a font
/// installed on the system, found through its own font fallback (fontconfig on Linux). eframe does
/// this for the window; `kernelbook export` has no eframe and calls this. Characters no installed
/// font has are drawn as a visible box (egui's default policy; set it where a test harness chose to
/// panic instead).
pub fn add_system_font_fallback(ctx: &egui::Context) {
    ctx.add_font_provider(Arc::new(
        egui_system_font_provider::SystemFontProvider::new(),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn themes_by_name() {
        for name in Theme::NAMES {
            assert_eq!(Theme::by_name(name).map(|t| t.name), Some(name));
        }
        assert_eq!(
            Theme::by_name(" Projector ").map(|t| t.name),
            Some("projector")
        );
        assert!(Theme::by_name("neon").is_none());
    }

    #[test]
    fn projector_is_large() {
        let p = Theme::projector();
        assert!(p.text_body >= 24.0);
        assert!(p.text_small >= 20.0);
        assert!(p.text_body > Theme::light().text_body);
    }

    #[test]
    fn engines_have_distinct_colours() {
        for theme in Theme::NAMES.iter().filter_map(|n| Theme::by_name(n)) {
            let colours = [
                theme.series_cuda,
                theme.series_wgpu,
                theme.series_cpu,
                theme.series_reference,
            ];
            for (i, a) in colours.iter().enumerate() {
                for b in &colours[i + 1..] {
                    assert_ne!(a, b, "{}", theme.name);
                }
            }
        }
    }

    /// WCAG contrast ratio of two colours (1 to 21).
    fn contrast(a: Color32, b: Color32) -> f32 {
        let luminance = |c: Color32| {
            let lin = |v: u8| {
                let v = v as f32 / 255.0;
                if v <= 0.04045 {
                    v / 12.92
                } else {
                    ((v + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * lin(c.r()) + 0.7152 * lin(c.g()) + 0.0722 * lin(c.b())
        };
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    #[test]
    fn text_tokens_are_readable() {
        for theme in Theme::NAMES.iter().filter_map(|n| Theme::by_name(n)) {
            let text = [
                ("text", theme.text),
                ("text_weak", theme.text_weak),
                ("pass", theme.pass),
                ("fail", theme.fail),
                ("warning", theme.warning),
            ];
            for (name, color) in text {
                for (bg_name, bg) in [("panel", theme.panel), ("background", theme.background)] {
                    let c = contrast(color, bg);
                    assert!(c >= 4.5, "{}: {name} on {bg_name}: {c:.2}", theme.name);
                }
            }
            let code = [
                ("text", theme.text),
                ("keyword", theme.code_keyword),
                ("type", theme.code_type),
                ("number", theme.code_number),
                ("string", theme.code_string),
                ("comment", theme.code_comment),
                ("directive", theme.code_directive),
            ];
            for (name, color) in code {
                for (bg_name, bg) in [
                    ("code_background", theme.code_background),
                    ("marked_line_background", theme.marked_line_background),
                ] {
                    let c = contrast(color, bg);
                    assert!(c >= 4.5, "{}: code {name} on {bg_name}: {c:.2}", theme.name);
                }
            }
            let min = if theme.name == "projector" { 7.0 } else { 4.5 };
            assert!(contrast(theme.text, theme.panel) >= min);
        }
    }

    #[test]
    fn fonts_put_dejavu_first() {
        let fonts = font_definitions();
        assert_eq!(fonts.families[&FontFamily::Proportional][0], "DejaVuSans");
        assert_eq!(fonts.families[&FontFamily::Monospace][0], "DejaVuSansMono");
        assert!(
            fonts.families[&FontFamily::Proportional].len() > 1,
            "egui's fonts kept as fallbacks"
        );
        assert!(
            fonts
                .families
                .contains_key(&FontFamily::Name(BOLD_FAMILY.into()))
        );
    }
}
