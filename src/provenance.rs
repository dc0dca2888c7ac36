//! Provenance: what a picture shows and how it was computed (lesson, step, every cell's op,
//! parameters, seed, input shape, engines with their devices and check results, app version),
//! written into every PNG as text chunks by [`write_png`] and read back by [`read_text_chunks`], so a
//! figure in a report says how to make it again. The app's screenshot key and `kernelbook export`
//! both write through here; this module sits below both (it knows results, not the UI).

use crate::compare::Comparison;
use serde::Serialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a picture could not be saved: the path and the cause.
#[derive(Debug, Error)]
pub enum SaveError {
    #[error("{path}: cannot create the folder: {reason}")]
    Folder { path: PathBuf, reason: String },
    #[error("{path}: cannot write: {reason}")]
    Write { path: PathBuf, reason: String },
}

impl From<crate::files::WriteError> for SaveError {
    fn from(e: crate::files::WriteError) -> Self {
        SaveError::Write {
            path: e.path,
            reason: e.cause,
        }
    }
}

/// The app's name and version, as written into every exported file.
pub fn app_version() -> String {
    format!("kernelbook {}", env!("CARGO_PKG_VERSION"))
}

/// What a picture shows and how it was computed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Provenance {
    pub app: String,
    pub lesson_id: String,
    pub lesson_title: String,
    /// 1-based.
    pub step: usize,
    pub step_title: String,
    pub theme: String,
    /// Pixels.
    pub size: (u32, u32),
    pub cells: Vec<CellProvenance>,
}

/// One op cell of the step.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CellProvenance {
    /// `Op::describe`, e.g. "softmax T=0.5 stable".
    pub op: String,
    pub dtype: String,
    /// The parameters as `name=value`, as `kernelbook run --param` takes them.
    pub params: Vec<String>,
    /// The kernel the GPU engines ran ("simple" or "fast"), when the lesson chose one.
    pub kernel: Option<String>,
    /// The seed of the cell's random input.
    pub seed: u64,
    pub input_shape: Vec<usize>,
    pub engines: Vec<EngineProvenance>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EngineProvenance {
    pub engine: String,
    pub device: Option<String>,
    /// "PASS max abs ..." or why the engine did not run.
    pub result: String,
}

/// What each engine of a result ran on and how its check came out.
pub fn engines_of(result: &Comparison) -> Vec<EngineProvenance> {
    result
        .runs
        .iter()
        .map(|run| EngineProvenance {
            engine: run.kind.name().to_string(),
            device: run.device.clone(),
            result: match &run.result {
                Ok((_, report)) => report.to_string(),
                Err(e) => e.to_string(),
            },
        })
        .collect()
}

impl Provenance {
    /// The PNG text chunks: keyword and text. `Software` and `Title` are the standard keywords;
    /// the rest are `kernelbook:*`, plus the whole record as JSON in `kernelbook:provenance`.
    pub fn text_chunks(&self) -> Vec<(String, String)> {
        let params: Vec<String> = self
            .cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let kernel = c
                    .kernel
                    .as_ref()
                    .map(|k| format!(" ({k} kernel on the GPU engines)"))
                    .unwrap_or_default();
                format!(
                    "cell {}: {} {} {}{kernel}",
                    i + 1,
                    c.op,
                    c.dtype,
                    c.params.join(" ")
                )
            })
            .collect();
        let seeds: Vec<String> = self
            .cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("cell {}: {}", i + 1, c.seed))
            .collect();
        let mut engines: Vec<String> = self
            .cells
            .iter()
            .flat_map(|c| {
                c.engines.iter().map(|e| match &e.device {
                    Some(d) => format!("{}: {d}", e.engine),
                    None => format!("{}: absent", e.engine),
                })
            })
            .collect();
        engines.dedup();
        engines.sort();
        engines.dedup();
        let checks: Vec<String> = self
            .cells
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                c.engines
                    .iter()
                    .map(move |e| format!("cell {} {}: {}", i + 1, e.engine, e.result))
            })
            .collect();
        vec![
            ("Software".into(), self.app.clone()),
            (
                "Title".into(),
                format!(
                    "{} · step {}: {}",
                    self.lesson_title, self.step, self.step_title
                ),
            ),
            ("kernelbook:version".into(), self.app.clone()),
            ("kernelbook:lesson".into(), self.lesson_id.clone()),
            ("kernelbook:step".into(), self.step.to_string()),
            ("kernelbook:parameters".into(), params.join("\n")),
            ("kernelbook:seed".into(), seeds.join("\n")),
            ("kernelbook:engines".into(), engines.join("\n")),
            ("kernelbook:checks".into(), checks.join("\n")),
            (
                "kernelbook:provenance".into(),
                serde_json::to_string(self).unwrap_or_default(),
            ),
        ]
    }
}

/// Create `dir` (and its parents) and check that a file can be written there.
pub fn prepare_folder(dir: &Path) -> Result<(), SaveError> {
    std::fs::create_dir_all(dir).map_err(|e| SaveError::Folder {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let probe = dir.join(".kernelbook-write-test");
    std::fs::write(&probe, b"").map_err(|e| SaveError::Write {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Write an RGBA image as PNG with the provenance text chunks (tEXt where the text is Latin-1,
/// iTXt otherwise).
pub fn write_png(
    path: &Path,
    image: &image::RgbaImage,
    provenance: &Provenance,
) -> Result<(), SaveError> {
    let write_err = |reason: String| SaveError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, image.width(), image.height());
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        for (key, text) in provenance.text_chunks() {
            let latin1 = text.chars().all(|c| (c as u32) < 256 && c != '\0');
            let added = if latin1 {
                encoder.add_text_chunk(key, text)
            } else {
                encoder.add_itxt_chunk(key, text)
            };
            added.map_err(|e| write_err(e.to_string()))?;
        }
        let mut writer = encoder
            .write_header()
            .map_err(|e| write_err(e.to_string()))?;
        writer
            .write_image_data(image.as_raw())
            .map_err(|e| write_err(e.to_string()))?;
        writer.finish().map_err(|e| write_err(e.to_string()))?;
    }
    crate::files::write_atomically(path, &bytes)?;
    Ok(())
}

/// The text chunks of a PNG (tEXt, zTXt and iTXt), keyword and text.
pub fn read_text_chunks(path: &Path) -> Result<Vec<(String, String)>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // Text after the image data is only seen once the image has been read.
    let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
    reader
        .next_frame(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let info = reader.info();
    let mut out: Vec<(String, String)> = info
        .uncompressed_latin1_text
        .iter()
        .map(|c| (c.keyword.clone(), c.text.clone()))
        .collect();
    for c in &info.compressed_latin1_text {
        let mut c = c.clone();
        if c.decompress_text().is_ok()
            && let Ok(t) = c.get_text()
        {
            out.push((c.keyword.clone(), t));
        }
    }
    for c in &info.utf8_text {
        let mut c = c.clone();
        if c.decompress_text().is_ok()
            && let Ok(t) = c.get_text()
        {
            out.push((c.keyword.clone(), t));
        }
    }
    Ok(out)
}

/// Where screenshots go unless the user chose a folder: `$XDG_PICTURES_DIR/kernelbook`, else
/// `~/Pictures/kernelbook`, else `./kernelbook-screenshots`.
pub fn default_screenshot_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_PICTURES_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("kernelbook");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join("Pictures").join("kernelbook"),
        None => PathBuf::from("kernelbook-screenshots"),
    }
}
