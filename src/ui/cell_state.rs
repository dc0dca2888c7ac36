//! The live state of one op cell, apart from its UI (`cell.rs`): the parameter values the learner
//! set, the kernel, the input as edited, and the latest result and measurements, plus the parsing
//! and formatting of the input text field. The roofline view and the cell's UI both read it.

use crate::compare::Comparison;
use crate::lesson::{CellSpec, Control, InputSpec, MAX_CELL_ELEMENTS, ParamValue};
use crate::ops::{KernelVariant, Op, OpRequest, Tensor};
use crate::provenance::{CellProvenance, engines_of};
use std::sync::Arc;

/// Inputs with more values than this are summarised instead of shown in the text field.
pub const EDITABLE_VALUES: usize = 64;

/// The live state of one op cell.
pub struct CellState {
    pub spec: CellSpec,
    /// Current value per parameter, parallel to `spec.params`.
    pub values: Vec<ParamValue>,
    /// The kernel the GPU engines run (the cell's `kernel`, or the default).
    pub kernel: KernelVariant,
    pub input: Tensor,
    pub input_text: String,
    pub input_error: Option<String>,
    pub seed: u64,
    pub npy_path: String,
    /// Bumped on every change; results for older generations are ignored.
    pub generation: u64,
    /// Why the current parameters or input cannot run (shown in place; nothing is sent).
    pub request_error: Option<String>,
    pub result: Option<Arc<Comparison>>,
    pub pending: bool,
}

impl CellState {
    pub fn new(spec: &CellSpec) -> Self {
        let input = spec.input.tensor();
        let seed = match spec.input {
            InputSpec::Normal { seed, .. } | InputSpec::Uniform { seed, .. } => seed,
            _ => 1,
        };
        CellState {
            values: spec.params.iter().map(|p| p.default.clone()).collect(),
            kernel: spec.kernel.as_ref().map(|k| k.default).unwrap_or_default(),
            input_text: format_input(&input),
            input,
            input_error: None,
            seed,
            npy_path: String::new(),
            generation: 0,
            request_error: None,
            result: None,
            pending: false,
            spec: spec.clone(),
        }
    }

    /// The request for the current values, or why there is none.
    pub fn request(&self) -> Result<OpRequest, String> {
        let pairs: Vec<(String, String)> = self
            .spec
            .params
            .iter()
            .zip(&self.values)
            .filter_map(|(p, v)| v.to_param_string().map(|s| (p.name.to_string(), s)))
            .collect();
        let (op, dtype) = Op::parse(self.spec.op.name(), &pairs).map_err(|e| e.to_string())?;
        let x = self.spec.shaped_input(&self.input)?;
        OpRequest::with_inputs(op, dtype, x, self.spec.extra_tensors())
            .map(|req| req.with_kernel(self.kernel))
            .map_err(|e| e.to_string())
    }

    /// Move the first slider to fraction `t` of its range (log-spaced on a log slider), as a
    /// drag would. Returns whether a value changed.
    pub fn set_slider_fraction(&mut self, t: f64) -> bool {
        let t = t.clamp(0.0, 1.0);
        for (p, v) in self.spec.params.iter().zip(self.values.iter_mut()) {
            if let (Control::Slider { min, max, log }, ParamValue::Float(x)) = (&p.control, v) {
                let mut new = if *log {
                    (min.ln() + t * (max.ln() - min.ln())).exp()
                } else {
                    min + t * (max - min)
                };
                if p.is_integer(self.spec.op) {
                    new = new.round().clamp(*min, *max);
                }
                let changed = *x != new;
                *x = new;
                return changed;
            }
        }
        false
    }

    /// Apply a new input text; on error keep the last good input and say why.
    pub fn set_input_text(&mut self, text: &str) -> bool {
        match parse_values(text) {
            Ok(rows) => {
                let t = crate::suite::Input::Rows(rows).tensor();
                self.input = t;
                self.input_error = None;
                true
            }
            Err(e) => {
                self.input_error = Some(e);
                false
            }
        }
    }

    /// Draw new random values with the same shape: as the lesson's input was drawn (uniform, or
    /// normal with its scale) unless the op draws its input otherwise (logit: probabilities), else
    /// as the op draws it.
    pub fn randomise(&mut self) {
        use crate::ops::case::Draw;
        let (rows, cols) = (self.input.rows(), self.input.cols());
        let draw = match (&self.spec.input, self.spec.op.draw()) {
            (InputSpec::Uniform { lo, hi, .. }, _) => Draw::Uniform { lo: *lo, hi: *hi },
            (InputSpec::Normal { scale, .. }, Draw::Normal { .. }) => {
                Draw::Normal { scale: *scale }
            }
            (_, draw) => draw,
        };
        let input = draw.input(rows, cols, self.seed);
        let mut t = input.tensor();
        if self.spec.op.inputs()[0].int {
            // Integer inputs (positions, ids) get whole numbers in the range the old ones spanned.
            let hi = self
                .input
                .data
                .iter()
                .fold(1.0f32, |m, v| m.max(v.abs()))
                .max(1.0);
            let lo = self.input.data.iter().fold(0.0f32, |m, &v| m.min(v));
            let uniform = crate::suite::Input::Uniform {
                rows,
                cols,
                lo: 0.0,
                hi: 1.0,
                seed: self.seed,
            };
            t = uniform.tensor();
            for v in &mut t.data {
                *v = (lo + *v * (hi - lo + 1.0)).floor().min(hi);
            }
        }
        self.input = t;
        self.input_text = format_input(&self.input);
        self.input_error = None;
    }

    /// Load a .npy file as the input.
    pub fn load_npy(&mut self) {
        let path = self.npy_path.trim();
        if path.is_empty() {
            self.input_error = Some("type the path of a .npy file first".into());
            return;
        }
        let loaded = crate::npy::read(std::path::Path::new(path)).and_then(|a| {
            if a.shape.is_empty() {
                return Err(format!("{path}: a 0-d array has no rows"));
            }
            if a.shape.iter().product::<usize>() > MAX_CELL_ELEMENTS {
                return Err(format!(
                    "{path}: more than {MAX_CELL_ELEMENTS} values is too large for a cell"
                ));
            }
            Tensor::new(a.shape.clone(), a.to_f32()).map_err(|e| e.to_string())
        });
        match loaded {
            Ok(t) => {
                self.input = t;
                self.input_text = format_input(&self.input);
                self.input_error = None;
            }
            Err(e) => self.input_error = Some(e),
        }
    }
}

/// Parse a vector `[1, 2.5, -3]` or matrix `[[1, 2], [3, 4]]` typed by the learner, by the same
/// rules as a lesson's input. `nan`, `inf` and `-inf` are accepted.
pub fn parse_values(text: &str) -> Result<Vec<Vec<f32>>, String> {
    if !text.trim().starts_with('[') {
        return Err("expected a list like [2.0, 1.0, 0.1] or rows like [[1, 2], [3, 4]]".into());
    }
    crate::lesson::parse_typed_values(text.trim())
}

/// The input as the text field shows it (or a summary when too large to edit by hand).
pub fn format_input(t: &Tensor) -> String {
    if t.len() > EDITABLE_VALUES {
        return String::new();
    }
    let row = |r: &[f32]| {
        format!(
            "[{}]",
            r.iter()
                .map(|v| fmt_input_value(*v))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if t.rows() == 1 {
        row(&t.data)
    } else {
        format!(
            "[{}]",
            t.data
                .chunks(t.cols().max(1))
                .map(row)
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn fmt_input_value(v: f32) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else if v == v.trunc() && v.abs() < 1e7 {
        format!("{v:.1}")
    } else if v != 0.0 && !(1e-4..1e7).contains(&v.abs()) {
        // Shortest exact form in scientific notation: 1e-30, not 0.000…0001.
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

impl CellState {
    /// What the cell shows and how it was computed, for a picture's provenance.
    pub fn provenance(&self) -> CellProvenance {
        let cell = self;
        let params = cell
            .spec
            .params
            .iter()
            .zip(&cell.values)
            .filter_map(|(p, v)| v.to_param_string().map(|s| format!("{}={s}", p.name)))
            .collect();
        let kernel = cell.spec.kernel.as_ref().map(|_| {
            let ran = cell
                .result
                .as_ref()
                .map_or(cell.kernel, |r| r.request.kernel);
            ran.name().to_string()
        });
        let (op, dtype, engines) = match &cell.result {
            Some(r) => (
                r.request.op.describe(),
                r.request.dtype.to_string(),
                engines_of(r),
            ),
            None => (cell.spec.op.name().to_string(), String::new(), Vec::new()),
        };
        CellProvenance {
            op,
            dtype,
            params,
            kernel,
            seed: cell.seed,
            input_shape: cell
                .spec
                .shape
                .clone()
                .unwrap_or_else(|| cell.input.shape.clone()),
            engines,
        }
    }
}
