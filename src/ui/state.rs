//! What the app remembers across restarts ([`Remembered`]: the last lesson and step, theme,
//! screenshot folder, zoom and window size), in its own file, `$XDG_DATA_HOME/kernelbook/app.ron`
//! (else `~/.local/share/kernelbook/app.ron`).
//!
//! The file is the user's to break: [`load`] never fails. A value out of range (a zoom of 0 or
//! 1000, a window larger than any screen, NaN) or a file that does not parse falls back to the
//! default for that value, with one warning line; the app then starts as if the value had never
//! been saved. [`save`] writes atomically ([`crate::files`]), so a crash or a full disk never
//! leaves half a file. A file in the format eframe used before (a map holding the app's entry under
//! `"kernelbook"`) is still read, ignoring eframe's own entries.

use crate::files::WriteError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

/// What is remembered across restarts, separate from everything computed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Remembered {
    pub lesson_id: Option<String>,
    pub step: usize,
    pub theme: Option<String>,
    /// Where the screenshot key saves, when the user chose a folder.
    pub screenshot_dir: Option<PathBuf>,
    /// egui's zoom (Ctrl +/-), 1 = 100 %.
    pub zoom_factor: f32,
    /// The window's inner size in points, when it was neither full screen nor maximized.
    pub window_size: Option<[f32; 2]>,
}

impl Default for Remembered {
    fn default() -> Self {
        Remembered {
            lesson_id: None,
            step: 0,
            theme: None,
            screenshot_dir: None,
            zoom_factor: 1.0,
            window_size: None,
        }
    }
}

/// The zooms egui's own Ctrl +/- reaches.
pub const ZOOM_RANGE: RangeInclusive<f32> = 0.2..=5.0;

/// The smallest window the app lays out (also the window's minimum size).
pub const MIN_WINDOW: [f32; 2] = [800.0, 500.0];

/// Larger than any screen (in points): a saved size beyond it is a damaged file.
pub const MAX_WINDOW_SIDE: f32 = 16384.0;

impl Remembered {
    /// Values out of range replaced by their defaults, and what was replaced (empty when nothing).
    pub fn validated(mut self) -> (Remembered, Vec<String>) {
        let mut fixed = Vec::new();
        if !(self.zoom_factor.is_finite() && ZOOM_RANGE.contains(&self.zoom_factor)) {
            fixed.push(format!(
                "zoom_factor {} is outside {} to {}",
                self.zoom_factor,
                ZOOM_RANGE.start(),
                ZOOM_RANGE.end()
            ));
            self.zoom_factor = 1.0;
        }
        if let Some([w, h]) = self.window_size {
            let fits = |v: f32, min: f32| v.is_finite() && (min..=MAX_WINDOW_SIDE).contains(&v);
            if !(fits(w, MIN_WINDOW[0]) && fits(h, MIN_WINDOW[1])) {
                fixed.push(format!(
                    "window_size {w} x {h} is not between {} x {} and {MAX_WINDOW_SIDE} x {MAX_WINDOW_SIDE}",
                    MIN_WINDOW[0], MIN_WINDOW[1]
                ));
                self.window_size = None;
            }
        }
        (self, fixed)
    }
}

/// Where the state file lives, or `None` when there is no home folder to put it in.
pub fn state_path() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::home_dir().map(|h| h.join(".local").join("share")))?;
    Some(data.join("kernelbook").join("app.ron"))
}

/// Parse a state file: this module's format, or the map eframe wrote before.
pub fn parse(text: &str) -> Result<Remembered, String> {
    match ron::from_str::<Remembered>(text) {
        Ok(r) => Ok(r),
        Err(own) => {
            let Ok(map) = ron::from_str::<HashMap<String, String>>(text) else {
                return Err(own.to_string());
            };
            match map.get("kernelbook") {
                Some(entry) => ron::from_str::<Remembered>(entry).map_err(|e| e.to_string()),
                None => Ok(Remembered::default()),
            }
        }
    }
}

/// Read the state at `path`: the defaults when there is none, with at most one warning line when
/// the file is damaged or holds values out of range.
pub fn load(path: &Path) -> (Remembered, Option<String>) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Remembered::default(), None),
        Err(e) => {
            return (
                Remembered::default(),
                Some(format!(
                    "warning: {}: cannot read the remembered state ({e}); starting with the defaults",
                    path.display()
                )),
            );
        }
    };
    match parse(&text) {
        Ok(r) => {
            let (r, fixed) = r.validated();
            let warning = (!fixed.is_empty()).then(|| {
                format!(
                    "warning: {}: {}; using the default instead",
                    path.display(),
                    fixed.join(", ")
                )
            });
            (r, warning)
        }
        Err(e) => (
            Remembered::default(),
            Some(format!(
                "warning: {}: not a state file kernelbook can read ({}); starting with the defaults",
                path.display(),
                crate::npy::printable(&e)
            )),
        ),
    }
}

/// Write the state to `path` (its folder created), atomically.
pub fn save(path: &Path, state: &Remembered) -> Result<(), WriteError> {
    let text =
        ron::ser::to_string_pretty(state, ron::ser::PrettyConfig::default()).map_err(|e| {
            WriteError {
                path: path.to_path_buf(),
                cause: e.to_string(),
            }
        })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| WriteError {
            path: dir.to_path_buf(),
            cause: e.to_string(),
        })?;
    }
    crate::files::write_atomically(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> (Remembered, Option<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.ron");
        std::fs::write(&path, text).unwrap();
        load(&path)
    }

    #[test]
    fn zoom_out_of_range_falls_back_with_one_warning() {
        for zoom in ["0.0", "1000.0", "-1.0", "NaN", "inf"] {
            let (r, warning) = load_text(&format!(
                "(lesson_id: Some(\"softmax\"), zoom_factor: {zoom})"
            ));
            assert_eq!(r.zoom_factor, 1.0, "{zoom}");
            assert_eq!(r.lesson_id.as_deref(), Some("softmax"), "the rest is kept");
            let w = warning.unwrap_or_else(|| panic!("no warning for {zoom}"));
            assert_eq!(w.lines().count(), 1, "{w}");
            assert!(
                w.contains("zoom_factor") && w.starts_with("warning: "),
                "{w}"
            );
        }
        let (r, warning) = load_text("(zoom_factor: 1.5)");
        assert_eq!(r.zoom_factor, 1.5);
        assert_eq!(warning, None);
    }

    #[test]
    fn window_sizes_no_screen_has_are_dropped() {
        for size in [
            "(1e9, 800.0)",
            "(0.0, 0.0)",
            "(-5.0, 600.0)",
            "(NaN, 600.0)",
        ] {
            let (r, warning) = load_text(&format!("(window_size: Some({size}))"));
            assert_eq!(r.window_size, None, "{size}");
            assert!(warning.is_some_and(|w| w.contains("window_size")), "{size}");
        }
        let (r, _) = load_text("(window_size: Some((1400.0, 900.0)))");
        assert_eq!(r.window_size, Some([1400.0, 900.0]));
    }

    #[test]
    fn a_damaged_file_gives_the_defaults_and_a_warning() {
        for text in ["", "(((", "\u{1b}[2J garbage\n\n", "(step: \"two\")"] {
            let (r, warning) = load_text(text);
            assert_eq!(r, Remembered::default(), "{text:?}");
            let w = warning.unwrap_or_else(|| panic!("no warning for {text:?}"));
            assert_eq!(w.lines().count(), 1, "{w}");
            assert!(!w.chars().any(char::is_control), "{w:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            load(&dir.path().join("absent.ron")),
            (Remembered::default(), None)
        );
    }

    #[test]
    fn eframes_old_file_is_read_without_its_zoom() {
        // What eframe wrote: its own entries (egui memory with the zoom, the window) and ours.
        let old = r#"{
            "egui": "(options:(zoom_factor:0.0))",
            "window": "(normal_geometry:(inner_size_points:(x:1e9,y:1e9)))",
            "kernelbook": "(lesson_id:Some(\"rope\"),step:3,theme:Some(\"dark\"),screenshot_dir:None)",
        }"#;
        let (r, warning) = load_text(old);
        assert_eq!(warning, None);
        assert_eq!(r.lesson_id.as_deref(), Some("rope"));
        assert_eq!(r.step, 3);
        assert_eq!(r.zoom_factor, 1.0);
    }

    #[test]
    fn saved_state_reads_back_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/kernelbook/app.ron");
        let state = Remembered {
            lesson_id: Some("gumbel-softmax".into()),
            step: 4,
            theme: Some("projector".into()),
            screenshot_dir: Some("/tmp/shots".into()),
            zoom_factor: 1.25,
            window_size: Some([1500.0, 950.0]),
        };
        save(&path, &state).unwrap();
        assert_eq!(load(&path), (state, None));
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("app.ron")]);
    }
}
