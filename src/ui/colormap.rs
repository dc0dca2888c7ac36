//! The one colour map every heatmap uses, on screen (`plots.rs`) and in print figures
//! (`export/figures.rs`): matplotlib's viridis, and how a value (NaN and ±inf included) picks its
//! colour. A leaf: it imports nothing of the app but the value classes.

use crate::format::Special;
use egui::Color32;

/// Matplotlib's viridis sampled at 10 evenly spaced points: perceptually uniform, readable in grey
/// and with the common colour-vision deficiencies.
const VIRIDIS: [[u8; 3]; 10] = [
    [0x44, 0x01, 0x54],
    [0x48, 0x28, 0x78],
    [0x3e, 0x4a, 0x89],
    [0x31, 0x68, 0x8e],
    [0x26, 0x82, 0x8e],
    [0x1f, 0x9e, 0x89],
    [0x35, 0xb7, 0x79],
    [0x6d, 0xcd, 0x59],
    [0xb4, 0xde, 0x2c],
    [0xfd, 0xe7, 0x25],
];

/// The viridis colour at `t` in 0..=1 (clamped; NaN gives the low end), linearly interpolated
/// between the table's entries.
pub fn viridis(t: f64) -> Color32 {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let [a, b] = [VIRIDIS[i], VIRIDIS[i + 1]];
    let mix = |k: usize| (a[k] as f64 + (b[k] as f64 - a[k] as f64) * f).round() as u8;
    Color32::from_rgb(mix(0), mix(1), mix(2))
}

/// The colour of a heatmap cell holding `v`, for a colour scale from `lo` to `hi`: NaN is `nan`,
/// +inf the top colour, -inf the bottom colour.
pub fn heatmap_color(v: f64, lo: f64, hi: f64, nan: Color32) -> Color32 {
    match Special::of(v) {
        Some(Special::Nan) => nan,
        Some(Special::PosInf) => viridis(1.0),
        Some(Special::NegInf) => viridis(0.0),
        None if hi > lo => viridis((v - lo) / (hi - lo)),
        None => viridis(0.5),
    }
}
