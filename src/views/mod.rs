//! Lesson views: figures a topic draws from one cell's [`Comparison`] beyond the generic bars, lines,
//! heatmaps and tables (a histogram of Gumbel draws against softmax(l), RoPE's unit circles, each
//! rank's shard). A view is plain data like [`Chart`]: charts plus one-line readouts (a chi-square
//! statistic, a measured spread), so the app draws it and an export can draw it the same way.
//!
//! Each topic lists its views in its own file here, registered once in the table below; a lesson
//! names one in a cell's `show = [...]`, and the lesson parser checks that the view exists
//! and applies to the cell's op.

crate::topic_registry! {
    mod {
        gumbel,
        rope,
        tensor_parallel,
    }
    /// Every topic's views, one line per topic that has any.
    static TOPIC_VIEWS: [&'static [ViewDef]] = VIEWS;
}

use crate::chart::Chart;
use crate::compare::Comparison;
use crate::ops::OpKind;
use serde::Serialize;

/// What a view draws: charts (side by side when there is room) and readouts under them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figure {
    pub charts: Vec<Chart>,
    /// One line each, e.g. "chi-square 3.1 (K-1 = 4 dof; 0.999 critical value 18.47): consistent".
    pub readouts: Vec<String>,
}

/// A view a lesson cell can show.
pub struct ViewDef {
    /// What lessons write in `show`, e.g. "histogram".
    pub name: &'static str,
    /// The ops whose results it can draw.
    pub ops: &'static [OpKind],
    /// One line for the lesson-format docs and error messages.
    pub help: &'static str,
    /// Build the figure from a cell's result; `Err` says why it cannot (shown in the cell).
    pub build: fn(&Comparison) -> Result<Figure, String>,
}

/// Every topic view.
pub fn all() -> impl Iterator<Item = &'static ViewDef> {
    TOPIC_VIEWS.iter().flat_map(|views| views.iter())
}

/// A view by name.
pub fn find(name: &str) -> Option<&'static ViewDef> {
    all().find(|v| v.name == name)
}

/// Build the named view for a result; an unknown name is an error message, not a panic.
pub fn figure(name: &str, result: &Comparison) -> Result<Figure, String> {
    match find(name) {
        Some(view) => (view.build)(result),
        None => Err(format!("unknown view '{name}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_names_are_unique_and_not_generic() {
        let names: Vec<&str> = all().map(|v| v.name).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[..i].contains(n), "view {n} listed twice");
            assert!(
                !["bars", "line", "heatmap", "table", "check"].contains(n),
                "view {n} shadows a generic view"
            );
            assert!(find(n).is_some_and(|v| !v.ops.is_empty() && !v.help.is_empty()));
        }
    }
}
