//! Caps on what one block of lesson Markdown makes the UI lay out in every frame.
//!
//! egui_commonmark lays out the whole text each frame: a lesson whose prose held a 3000 x 50 table
//! took 0.86 s a frame (7.6 s in a debug build). [`capped`] keeps the first rows of a long table
//! (at most [`MAX_TABLE_CELLS`] cells, at most [`MAX_TABLE_COLUMNS`] columns) and at most
//! [`MAX_PROSE_BYTES`] of text, and says in the text itself what it left out, so that a frame stays
//! well under 16 ms. The app applies it once, when the lessons are loaded.

use crate::lesson::{Block, LoadedLesson};
use std::borrow::Cow;

/// Most table cells one table shows (header included).
pub const MAX_TABLE_CELLS: usize = 200;
/// Most columns one table shows.
pub const MAX_TABLE_COLUMNS: usize = 16;
/// Most bytes of Markdown one block shows.
pub const MAX_PROSE_BYTES: usize = 32 * 1024;

/// The cells of a table row: split at `|` not escaped with `\` (GFM's rule, code spans included),
/// without the empty edges of a row that starts or ends with `|`.
fn cells(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '|' if !escaped => {
                out.push(&line[start..i]);
                start = i + 1;
            }
            _ => escaped = false,
        }
    }
    out.push(&line[start..]);
    let trimmed = line.trim();
    if trimmed.starts_with('|') && out.first().is_some_and(|c| c.trim().is_empty()) {
        out.remove(0);
    }
    if trimmed.ends_with('|')
        && !trimmed.ends_with("\\|")
        && out.last().is_some_and(|c| c.trim().is_empty())
    {
        out.pop();
    }
    out
}

/// A table's delimiter row: `| --- | :-: | --: |`.
fn is_delimiter_row(line: &str) -> bool {
    let cells = cells(line);
    line.contains('-')
        && !cells.is_empty()
        && cells.iter().all(|c| {
            let c = c.trim();
            let inner = c.trim_start_matches(':').trim_end_matches(':');
            !inner.is_empty() && inner.chars().all(|ch| ch == '-')
        })
}

/// A row with its cells after the first `columns` dropped.
fn first_columns(line: &str, columns: usize) -> String {
    let kept: Vec<&str> = cells(line).into_iter().take(columns).collect();
    format!("|{}|", kept.join("|"))
}

/// `md` with long tables and long text cut, each cut said in an italic line; borrowed when
/// nothing was cut.
pub fn capped(md: &str) -> Cow<'_, str> {
    let lines: Vec<&str> = md.lines().collect();
    let mut out = String::with_capacity(md.len().min(MAX_PROSE_BYTES + 256));
    let mut changed = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let starts_table =
            line.contains('|') && lines.get(i + 1).is_some_and(|next| is_delimiter_row(next));
        if !starts_table {
            out.push_str(line);
            out.push('\n');
            i += 1;
            continue;
        }
        let columns = cells(lines[i + 1]).len();
        let mut end = i + 2;
        while end < lines.len() && !lines[end].trim().is_empty() && lines[end].contains('|') {
            end += 1;
        }
        let rows = end - (i + 2);
        let shown_columns = columns.min(MAX_TABLE_COLUMNS);
        // The header counts as a row of cells.
        let shown_rows = (MAX_TABLE_CELLS / shown_columns.max(1))
            .saturating_sub(1)
            .max(1)
            .min(rows);
        if shown_rows == rows && shown_columns == columns {
            for l in &lines[i..end] {
                out.push_str(l);
                out.push('\n');
            }
        } else {
            changed = true;
            for l in &lines[i..i + 2 + shown_rows] {
                if shown_columns < columns {
                    out.push_str(&first_columns(l, shown_columns));
                } else {
                    out.push_str(l);
                }
                out.push('\n');
            }
            let mut what = Vec::new();
            if shown_rows < rows {
                what.push(format!("the first {shown_rows} of its {rows} rows"));
            }
            if shown_columns < columns {
                what.push(format!(
                    "the first {shown_columns} of its {columns} columns"
                ));
            }
            out.push_str(&format!(
                "\n*This table is cut to {}: a step shows at most {MAX_TABLE_CELLS} cells of a table.*\n",
                what.join(" and ")
            ));
        }
        i = end;
    }
    if out.len() > MAX_PROSE_BYTES {
        changed = true;
        let mut cut = MAX_PROSE_BYTES;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        // At the end of a line, so that no Markdown construct is cut in half.
        let cut = out[..cut].rfind('\n').unwrap_or(cut);
        out.truncate(cut);
        out.push_str(&format!(
            "\n\n*The rest of this text is cut: a step shows at most {} KB of prose.*\n",
            MAX_PROSE_BYTES / 1024
        ));
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(md)
    }
}

/// Every prose and notes block of `lessons` passed through [`capped`].
pub fn cap_lessons(mut lessons: Vec<LoadedLesson>) -> Vec<LoadedLesson> {
    for lesson in lessons.iter_mut().filter_map(|l| l.as_mut().ok()) {
        for step in &mut lesson.steps {
            for block in &mut step.blocks {
                if let Block::Prose(md) | Block::Notes(md) = block
                    && let Cow::Owned(cut) = capped(md)
                {
                    *md = cut;
                }
            }
        }
    }
    lessons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: usize, cols: usize) -> String {
        let row = |f: &dyn Fn(usize) -> String| {
            format!("| {} |\n", (0..cols).map(f).collect::<Vec<_>>().join(" | "))
        };
        let mut t = row(&|c| format!("h{c}"));
        t.push_str(&row(&|_| ":---:".into()));
        for r in 0..rows {
            t.push_str(&row(&|c| format!("r{r}c{c}")));
        }
        t
    }

    #[test]
    fn small_text_and_tables_are_untouched() {
        let md = format!("Some *prose* | with a pipe.\n\n{}\nAfter.\n", table(5, 4));
        assert!(matches!(capped(&md), Cow::Borrowed(_)));
        assert!(matches!(
            capped("a | b\nnot a delimiter\n"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_long_table_keeps_its_first_rows_and_says_so() {
        let md = format!("Before.\n\n{}\nAfter.\n", table(3000, 50));
        let c = capped(&md);
        assert!(
            c.contains("r0c0") && c.contains("r0c15"),
            "first rows and columns kept"
        );
        assert!(!c.contains("r0c16"), "columns beyond the cap dropped");
        assert!(!c.contains("r2999c0"), "rows beyond the cap dropped");
        assert!(
            c.contains("the first 11 of its 3000 rows and the first 16 of its 50 columns"),
            "{c}"
        );
        assert!(
            c.trim_end().ends_with("After."),
            "the text after the table stays"
        );
        let rows = c.lines().filter(|l| l.starts_with('|')).count();
        assert_eq!(rows, 2 + 11);
        assert!((rows - 1) * 16 <= MAX_TABLE_CELLS);
    }

    #[test]
    fn escaped_pipes_stay_inside_their_cell() {
        assert_eq!(cells(r"| a \| b | `c` |"), vec![r" a \| b ", " `c` "]);
        assert_eq!(cells("a|b"), vec!["a", "b"]);
        assert!(is_delimiter_row("|---|:--:|--:|"));
        assert!(!is_delimiter_row("| a | - |"));
    }

    #[test]
    fn long_text_is_cut_at_a_line_end() {
        let md = "A line of prose that goes on.\n".repeat(5000);
        let c = capped(&md);
        assert!(c.len() < MAX_PROSE_BYTES + 200);
        assert!(c.contains("The rest of this text is cut"));
        let body = c.split("\n\n*The rest").next().unwrap();
        assert!(body.lines().all(|l| l == "A line of prose that goes on."));
    }
}
