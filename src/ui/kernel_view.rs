//! The kernel source view: the CUDA kernel and the WGSL shader of a topic, side by side in two tabs,
//! with line numbers, syntax highlighting and the lines the current step is about marked.
//!
//! Marks are plain text: a line containing any mark starts a marked region, which runs down to the
//! line before the next blank line (a kernel's "step" comment and the code under it). Marked lines get
//! the theme's marked background *and* a "▶" in the gutter, and the header lists them ("▶ lines
//! 112–121"), so the marking never relies on colour alone. The view scrolls to the first marked line
//! when it first shows a set of marks.
//!
//! The highlighter is a small tokenizer of our own (comments, strings, numbers, keywords, types,
//! `#directives` / `@attributes`) with a keyword list for CUDA C and one for WGSL. egui_extras'
//! fallback highlighter knows C++ but not WGSL, and its colour customisation disappears when its
//! `syntect` feature is on; one tokenizer for both tabs keeps them alike and in the theme's colours.

use crate::ui::layout::{text_width, wrap_unless_fits};
use crate::ui::theme::Theme;
use egui::text::{LayoutJob, TextFormat};
use egui::{Color32, FontId, Id, Label, Rect, Response, RichText, ScrollArea, Sense, Ui, vec2};
use serde::{Deserialize, Serialize};
use std::hash::{DefaultHasher, Hash, Hasher};

/// Which source the view shows. Persisted per view (egui memory, keyed by the view's id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KernelTab {
    #[default]
    Cuda,
    Wgsl,
}

impl KernelTab {
    pub const ALL: [KernelTab; 2] = [KernelTab::Cuda, KernelTab::Wgsl];

    /// The tab's label, also its AccessKit name: "CUDA" or "WGSL".
    pub fn label(self) -> &'static str {
        match self {
            KernelTab::Cuda => "CUDA",
            KernelTab::Wgsl => "WGSL",
        }
    }

    fn language(self) -> Language {
        match self {
            KernelTab::Cuda => Language::CudaC,
            KernelTab::Wgsl => Language::Wgsl,
        }
    }
}

/// The view's persisted state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct KernelViewState {
    tab: KernelTab,
}

/// The 0-based numbers of the marked lines of `src`: each line containing one of `marks` (empty
/// marks are ignored), and every line after it down to the line before the next blank line.
/// Sorted, without duplicates.
pub fn marked_lines(src: &str, marks: &[String]) -> Vec<usize> {
    let marks: Vec<&str> = marks
        .iter()
        .map(String::as_str)
        .filter(|m| !m.is_empty())
        .collect();
    let mut marked = Vec::new();
    let mut in_region = false;
    for (i, line) in src.lines().enumerate() {
        if marks.iter().any(|m| line.contains(m)) {
            in_region = true;
        } else if line.trim().is_empty() {
            in_region = false;
        }
        if in_region {
            marked.push(i);
        }
    }
    marked
}

/// The marked lines as 1-based ranges for people: "112–121, 246–258".
pub fn describe_lines(lines: &[usize]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &l in lines {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == l => *end = l,
            _ => ranges.push((l, l)),
        }
    }
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                format!("{}", a + 1)
            } else {
                format!("{}–{}", a + 1, b + 1)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kernel view: a header with `title` and the "CUDA" | "WGSL" tabs (keyboard reachable), then
/// the chosen source with line numbers and the lines matching `marks` marked (see
/// [`marked_lines`]), in a scroll area `theme.code_height` high.
///
/// `id` must be unique among the kernel views on screen and stable (e.g. the cell's id): the chosen
/// tab is remembered under it.
pub fn kernel_ui(
    ui: &mut Ui,
    id: impl Hash,
    title: &str,
    cuda_src: &str,
    wgsl_src: &str,
    marks: &[String],
    theme: &Theme,
) -> Response {
    let id = {
        let mut hasher = DefaultHasher::new();
        id.hash(&mut hasher);
        ui.make_persistent_id(("kernel_view", hasher.finish()))
    };
    let mut state: KernelViewState = ui.data_mut(|d| d.get_persisted(id)).unwrap_or_default();

    let frame = egui::Frame::new()
        .fill(theme.code_background)
        .stroke(egui::Stroke::new(1.0, theme.grid))
        .corner_radius(4.0)
        .inner_margin(theme.cell_padding);
    let response = frame
        .show(ui, |ui| {
            let src = match state.tab {
                KernelTab::Cuda => cuda_src,
                KernelTab::Wgsl => wgsl_src,
            };
            let marked = marked_lines(src, marks);
            ui.horizontal_wrapped(|ui| {
                if !title.is_empty() {
                    ui.label(
                        RichText::new(title)
                            .size(theme.text_body)
                            .strong()
                            .color(theme.text),
                    );
                    ui.add_space(theme.column_gap);
                }
                // The tabs, and the marked lines, each start a new row where the rest of this one
                // is too short for them (a wrapped label would run past a narrow column).
                let tabs: Vec<RichText> = KernelTab::ALL
                    .iter()
                    .map(|t| RichText::new(t.label()).size(theme.text_body))
                    .collect();
                let tabs_width: f32 = tabs
                    .iter()
                    .map(|t| text_width(ui, t.clone()) + 2.0 * ui.spacing().button_padding.x)
                    .sum::<f32>()
                    + ui.spacing().item_spacing.x * tabs.len() as f32;
                wrap_unless_fits(ui, tabs_width);
                for (tab, text) in KernelTab::ALL.into_iter().zip(tabs) {
                    if ui.selectable_label(state.tab == tab, text).clicked() {
                        state.tab = tab;
                    }
                }
                if !marked.is_empty() {
                    let lines = RichText::new(format!(
                        "{} lines {}",
                        Theme::MARK_GLYPH,
                        describe_lines(&marked)
                    ))
                    .size(theme.text_small)
                    .color(theme.text_weak);
                    let width = text_width(ui, lines.clone());
                    if !wrap_unless_fits(ui, theme.column_gap + width) {
                        ui.add_space(theme.column_gap);
                    }
                    ui.label(lines);
                }
            });
            ui.add_space(theme.item_spacing.y);
            // The tab may have changed this frame: recompute for the one now chosen.
            let src = match state.tab {
                KernelTab::Cuda => cuda_src,
                KernelTab::Wgsl => wgsl_src,
            };
            let marked = marked_lines(src, marks);
            source_ui(
                ui,
                id.with(state.tab),
                src,
                state.tab.language(),
                &marked,
                marks,
                theme,
            );
        })
        .response;
    ui.data_mut(|d| d.insert_persisted(id, state));
    response
}

/// The source with a gutter (line numbers, "▶" on marked lines) and marked-line backgrounds, in a
/// scroll area that starts at the first marked line whenever the marks change.
fn source_ui(
    ui: &mut Ui,
    id: Id,
    src: &str,
    language: Language,
    marked: &[usize],
    marks: &[String],
    theme: &Theme,
) {
    let colors = CodeColors::from_theme(theme);
    let job = ui.memory_mut(|m| {
        m.caches
            .cache::<HighlightCache>()
            .get((src, language, &colors))
            .clone()
    });
    let code = ui.painter().layout_job(job);
    let line_count = src.lines().count().max(1);
    let gutter = ui
        .painter()
        .layout_job(gutter_job(line_count, marked, &colors));
    let gap = theme.text_mono;
    let row_height = code
        .rows
        .first()
        .map_or(theme.text_mono * 1.2, |r| r.rect().height());

    // Scroll to the first marked line once per set of marks (per tab).
    let marks_key = {
        let mut hasher = DefaultHasher::new();
        (marks, src.len()).hash(&mut hasher);
        hasher.finish()
    };
    let scrolled_id = id.with("scrolled-to-marks");
    let needs_scroll = ui.data(|d| d.get_temp::<u64>(scrolled_id)) != Some(marks_key);
    let mut scroll = ScrollArea::both()
        .id_salt(id)
        .max_height(theme.code_height)
        .auto_shrink([false, true]);
    if needs_scroll {
        let first = marked.first().copied().unwrap_or(0);
        let offset = code
            .rows
            .get(first)
            .map_or(0.0, |r| (r.rect().top() - 2.0 * row_height).max(0.0));
        scroll = scroll.vertical_scroll_offset(offset);
        ui.data_mut(|d| d.insert_temp(scrolled_id, marks_key));
    }

    scroll.show(ui, |ui| {
        let size = vec2(gutter.size().x + gap + code.size().x, code.size().y);
        let (rect, _) = ui.allocate_exact_size(size, Sense::hover());
        let code_rect =
            Rect::from_min_size(rect.min + vec2(gutter.size().x + gap, 0.0), code.size());
        let painter = ui.painter();
        let right = rect.right().max(ui.clip_rect().right());
        for &line in marked {
            if let Some(row) = code.rows.get(line) {
                let r = row.rect().translate(code_rect.min.to_vec2());
                let band = Rect::from_x_y_ranges(rect.left()..=right, r.top()..=r.bottom());
                painter.rect_filled(band, 0.0, theme.marked_line_background);
            }
        }
        painter.galley(rect.min, gutter.clone(), theme.text_weak);
        ui.put(code_rect, Label::new(code.clone()).selectable(true));
    });
}

/// "▶  12" on marked lines, "   13" elsewhere, in the mono font.
fn gutter_job(line_count: usize, marked: &[usize], colors: &CodeColors) -> LayoutJob {
    let width = line_count.to_string().len();
    let mut job = LayoutJob::default();
    let mut marked = marked.iter().peekable();
    for i in 0..line_count {
        let is_marked = marked.next_if_eq(&&i).is_some();
        let (glyph, glyph_color, number_color) = if is_marked {
            (Theme::MARK_GLYPH, colors.mark, colors.text)
        } else {
            (" ", colors.comment, colors.line_number)
        };
        job.append(
            glyph,
            0.0,
            TextFormat::simple(colors.font.clone(), glyph_color),
        );
        let newline = if i + 1 < line_count { "\n" } else { "" };
        job.append(
            &format!(" {:>width$}{newline}", i + 1),
            0.0,
            TextFormat::simple(colors.font.clone(), number_color),
        );
    }
    job
}

// ---------------------------------------------------------------------------------------------
// Highlighting
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Language {
    CudaC,
    Wgsl,
}

const CUDA_KEYWORDS: &[&str] = &[
    "if",
    "else",
    "for",
    "while",
    "do",
    "return",
    "break",
    "continue",
    "switch",
    "case",
    "default",
    "struct",
    "typedef",
    "template",
    "typename",
    "class",
    "static",
    "const",
    "constexpr",
    "inline",
    "extern",
    "sizeof",
    "asm",
    "true",
    "false",
    "__global__",
    "__device__",
    "__host__",
    "__shared__",
    "__constant__",
    "__forceinline__",
    "__launch_bounds__",
    "__restrict__",
];
const CUDA_TYPES: &[&str] = &[
    "void",
    "bool",
    "char",
    "short",
    "int",
    "long",
    "unsigned",
    "signed",
    "float",
    "double",
    "half",
    "size_t",
    "int8_t",
    "int16_t",
    "int32_t",
    "int64_t",
    "uint8_t",
    "uint16_t",
    "uint32_t",
    "uint64_t",
    "float2",
    "float4",
    "dim3",
    "__half",
    "__nv_bfloat16",
];
const WGSL_KEYWORDS: &[&str] = &[
    "fn",
    "let",
    "var",
    "const",
    "override",
    "struct",
    "alias",
    "if",
    "else",
    "for",
    "while",
    "loop",
    "continuing",
    "break",
    "continue",
    "return",
    "switch",
    "case",
    "default",
    "discard",
    "true",
    "false",
    "enable",
    "requires",
    "diagnostic",
];
const WGSL_TYPES: &[&str] = &[
    "bool",
    "f16",
    "f32",
    "i32",
    "u32",
    "vec2",
    "vec3",
    "vec4",
    "vec2f",
    "vec3f",
    "vec4f",
    "vec2u",
    "vec3u",
    "vec4u",
    "vec2i",
    "vec3i",
    "vec4i",
    "mat2x2",
    "mat3x3",
    "mat4x4",
    "array",
    "atomic",
    "ptr",
    "sampler",
    "texture_2d",
    "storage",
    "uniform",
    "workgroup",
    "private",
    "function",
    "read",
    "write",
    "read_write",
];

impl Language {
    fn keywords(self) -> &'static [&'static str] {
        match self {
            Language::CudaC => CUDA_KEYWORDS,
            Language::Wgsl => WGSL_KEYWORDS,
        }
    }

    fn types(self) -> &'static [&'static str] {
        match self {
            Language::CudaC => CUDA_TYPES,
            Language::Wgsl => WGSL_TYPES,
        }
    }
}

/// The highlighter's colours and font, from the theme (hashable: it is part of the cache key).
#[derive(Clone, Debug, PartialEq, Hash)]
struct CodeColors {
    font: FontId,
    text: Color32,
    keyword: Color32,
    ty: Color32,
    number: Color32,
    string: Color32,
    comment: Color32,
    directive: Color32,
    line_number: Color32,
    mark: Color32,
}

impl CodeColors {
    fn from_theme(theme: &Theme) -> Self {
        Self {
            font: theme.mono_font(),
            text: theme.text,
            keyword: theme.code_keyword,
            ty: theme.code_type,
            number: theme.code_number,
            string: theme.code_string,
            comment: theme.code_comment,
            directive: theme.code_directive,
            line_number: theme.text_weak,
            mark: theme.accent,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Text,
    Keyword,
    Type,
    Number,
    Str,
    Comment,
    Directive,
}

/// Splits `src` into (token, text) pieces that concatenate back to `src`.
fn tokenize(src: &str, language: Language) -> Vec<(Token, &str)> {
    let mut out: Vec<(Token, &str)> = Vec::new();
    let bytes = src.as_bytes();
    let mut i = 0;
    let mut line_start = true; // only whitespace since the last newline
    while i < bytes.len() {
        let rest = &src[i..];
        let c = bytes[i];
        let (token, len) = if rest.starts_with("//") {
            (Token::Comment, rest.find('\n').unwrap_or(rest.len()))
        } else if let Some(body) = rest.strip_prefix("/*") {
            (
                Token::Comment,
                body.find("*/").map_or(rest.len(), |e| e + 4),
            )
        } else if c == b'#' && line_start && language == Language::CudaC {
            (Token::Directive, rest.find('\n').unwrap_or(rest.len()))
        } else if c == b'@' && language == Language::Wgsl {
            (Token::Directive, 1 + word_len(&rest[1..]))
        } else if c == b'"' {
            // To the closing quote, or (unterminated) to the end of the line.
            let end = match rest[1..].find(['"', '\n']) {
                Some(e) if rest.as_bytes()[e + 1] == b'"' => e + 2,
                Some(e) => e + 1,
                None => rest.len(),
            };
            (Token::Str, end)
        } else if c.is_ascii_digit()
            || (c == b'.' && rest[1..].starts_with(|d: char| d.is_ascii_digit()))
        {
            (Token::Number, number_len(rest))
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let len = word_len(rest);
            let word = &rest[..len];
            let token = if language.keywords().contains(&word) {
                Token::Keyword
            } else if language.types().contains(&word) {
                Token::Type
            } else {
                Token::Text
            };
            (token, len)
        } else {
            // One character (whole UTF-8 sequence) of punctuation or whitespace.
            (Token::Text, rest.chars().next().map_or(1, char::len_utf8))
        };
        let piece = &src[i..i + len];
        match c {
            b'\n' => line_start = true,
            b' ' | b'\t' | b'\r' => {}
            _ => line_start = false,
        }
        match out.last_mut() {
            Some((t, text)) if *t == token && token == Token::Text => {
                // Merge runs of plain text: fewer layout sections.
                let start = text.as_ptr() as usize - src.as_ptr() as usize;
                *text = &src[start..i + len];
            }
            _ => out.push((token, piece)),
        }
        i += len;
    }
    out
}

fn word_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len())
}

/// A number: digits, letters (hex digits, suffixes like `u` or `f`), dots, and a sign right after
/// a decimal exponent (`1e-3`).
fn number_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    let hex = s.starts_with("0x") || s.starts_with("0X");
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let sign_after_exponent =
            (b == b'-' || b == b'+') && !hex && i > 0 && matches!(bytes[i - 1], b'e' | b'E');
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || sign_after_exponent {
            i += 1;
        } else {
            break;
        }
    }
    i.max(1)
}

fn highlight(src: &str, language: Language, colors: &CodeColors) -> LayoutJob {
    let mut job = LayoutJob::default();
    for (token, text) in tokenize(src, language) {
        let color = match token {
            Token::Text => colors.text,
            Token::Keyword => colors.keyword,
            Token::Type => colors.ty,
            Token::Number => colors.number,
            Token::Str => colors.string,
            Token::Comment => colors.comment,
            Token::Directive => colors.directive,
        };
        let mut format = TextFormat::simple(colors.font.clone(), color);
        format.italics = token == Token::Comment;
        job.append(text, 0.0, format);
    }
    job
}

#[derive(Default)]
struct Highlighter;

impl egui::cache::ComputerMut<(&str, Language, &CodeColors), LayoutJob> for Highlighter {
    fn compute(&mut self, (src, language, colors): (&str, Language, &CodeColors)) -> LayoutJob {
        highlight(src, language, colors)
    }
}

type HighlightCache = egui::cache::FrameCache<LayoutJob, Highlighter>;

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(m: &[&str]) -> Vec<String> {
        m.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_mark_marks_down_to_the_next_blank_line() {
        let src = "a\n// step 1: max\nx = 1;\ny = 2;\n\nz = 3;\n";
        assert_eq!(marked_lines(src, &marks(&["step 1"])), vec![1, 2, 3]);
    }

    #[test]
    fn whitespace_only_lines_end_a_region() {
        let src = "// step 1\nx\n   \ny\n";
        assert_eq!(marked_lines(src, &marks(&["step 1"])), vec![0, 1]);
    }

    #[test]
    fn no_marks_no_lines() {
        let src = "a\nb\n";
        assert!(marked_lines(src, &[]).is_empty());
        assert!(marked_lines(src, &marks(&[""])).is_empty());
        assert!(marked_lines(src, &marks(&["not there"])).is_empty());
    }

    #[test]
    fn several_marks_and_a_region_running_to_the_end() {
        let src = "// A\na\n\n// B\nb\nb2";
        assert_eq!(
            marked_lines(src, &marks(&["B", "// A"])),
            vec![0, 1, 3, 4, 5]
        );
    }

    #[test]
    fn a_mark_inside_a_region_does_not_duplicate() {
        let src = "// A\n// A again\nx\n";
        assert_eq!(marked_lines(src, &marks(&["A"])), vec![0, 1, 2]);
    }

    #[test]
    fn softmax_wgsl_marks_both_normalise_steps() {
        let src = crate::sources::wgsl("softmax").expect("softmax.wgsl is embedded");
        let lines: Vec<&str> = src.lines().collect();
        let marked = marked_lines(src, &marks(&["step 3: normalise and write"]));
        let starts: Vec<usize> = marked
            .iter()
            .copied()
            .filter(|&l| lines[l].contains("step 3: normalise and write"))
            .collect();
        assert_eq!(starts.len(), 2, "stable and naive paths");
        for &l in &marked {
            assert!(!lines[l].trim().is_empty(), "line {l} is blank");
        }
    }

    #[test]
    fn describes_line_ranges_one_based() {
        assert_eq!(describe_lines(&[0, 1, 2, 5, 7, 8]), "1–3, 6, 8–9");
        assert_eq!(describe_lines(&[]), "");
    }

    #[test]
    fn tokenize_round_trips_and_classifies() {
        for (src, lang) in [
            (
                crate::sources::cuda("softmax").unwrap_or_default(),
                Language::CudaC,
            ),
            (
                crate::sources::wgsl("softmax").unwrap_or_default(),
                Language::Wgsl,
            ),
        ] {
            let joined: String = tokenize(src, lang).iter().map(|(_, t)| *t).collect();
            assert_eq!(joined, src);
        }
        let toks = tokenize("#define N 256\nfloat x = 1e-3f; // hi", Language::CudaC);
        assert!(toks.contains(&(Token::Directive, "#define N 256")));
        assert!(toks.contains(&(Token::Type, "float")));
        assert!(toks.contains(&(Token::Number, "1e-3f")));
        assert!(toks.contains(&(Token::Comment, "// hi")));
        let toks = tokenize("@compute fn f() { let a: u32 = 0x7fu; }", Language::Wgsl);
        assert!(toks.contains(&(Token::Directive, "@compute")));
        assert!(toks.contains(&(Token::Keyword, "fn")));
        assert!(toks.contains(&(Token::Keyword, "let")));
        assert!(toks.contains(&(Token::Type, "u32")));
        assert!(toks.contains(&(Token::Number, "0x7fu")));
    }
}
