//! The ops kernelbook teaches: their parameters (with bounds), the request an engine receives, input
//! validation, and the f64 CPU reference that every engine is checked against.
//!
//! One topic per file: `logits.rs` (logit, sigmoid, logsigmoid) and `softmax.rs` (softmax,
//! log_softmax). Each file holds the precise algorithm every engine implements (so CUDA, WGSL and the
//! CPU compute the same thing) and its f64 reference. Nothing here touches a GPU or the UI.

pub mod logits;
pub mod softmax;

use crate::dtype::DType;
use serde::Serialize;
use std::fmt;
use thiserror::Error;

/// Largest number of elements one request may hold (2^28 = 268M; 1 GiB in f32). Larger inputs are
/// refused before any engine allocates.
pub const MAX_ELEMENTS: usize = 1 << 28;

/// Bad input: a parameter out of range, an unknown op or param, a malformed shape. The CLI prints
/// it on one line and exits with code 2; the UI shows it next to the widget.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum OpError {
    #[error("unknown op '{0}' (known: {known})", known = OpKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "))]
    UnknownOp(String),
    #[error("op {op} has no parameter '{name}' (it takes: {known})")]
    UnknownParam {
        op: &'static str,
        name: String,
        known: String,
    },
    #[error("parameter {name}: {reason}")]
    BadParam { name: String, reason: String },
    #[error("input {name}: {reason}")]
    BadInput { name: String, reason: String },
}

/// A dense row-major tensor of f32 values. Row-wise ops treat the last axis as the row
/// (`cols`) and all leading axes as rows.
#[derive(Clone, Debug, PartialEq, Default, Serialize)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, OpError> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        match n {
            Some(n) if n == data.len() => Ok(Tensor { shape, data }),
            Some(n) => Err(OpError::BadInput {
                name: "x".into(),
                reason: format!(
                    "shape {shape:?} holds {n} values but {} were given",
                    data.len()
                ),
            }),
            None => Err(OpError::BadInput {
                name: "x".into(),
                reason: format!("shape {shape:?} overflows"),
            }),
        }
    }

    /// A `[rows, cols]` matrix.
    pub fn matrix(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self, OpError> {
        Tensor::new(vec![rows, cols], data)
    }

    /// One row.
    pub fn row(data: Vec<f32>) -> Self {
        Tensor {
            shape: vec![1, data.len()],
            data,
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Length of the last axis (1 for a scalar).
    pub fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }

    /// Product of all axes but the last.
    pub fn rows(&self) -> usize {
        match self.shape.split_last() {
            Some((_, lead)) => lead.iter().product(),
            None => 1,
        }
    }
}

/// The op families. `name()` is what the CLI, lesson files and JSON use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum OpKind {
    Logit,
    Sigmoid,
    LogSigmoid,
    Softmax,
    LogSoftmax,
}

impl OpKind {
    pub const ALL: [OpKind; 5] = [
        OpKind::Logit,
        OpKind::Sigmoid,
        OpKind::LogSigmoid,
        OpKind::Softmax,
        OpKind::LogSoftmax,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Logit => "logit",
            OpKind::Sigmoid => "sigmoid",
            OpKind::LogSigmoid => "logsigmoid",
            OpKind::Softmax => "softmax",
            OpKind::LogSoftmax => "log_softmax",
        }
    }

    pub fn from_name(name: &str) -> Result<Self, OpError> {
        OpKind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| OpError::UnknownOp(name.to_string()))
    }

    /// The topic file this op belongs to (`kernels/<topic>.cu`, `shaders/<topic>.wgsl`).
    pub fn topic(self) -> &'static str {
        match self {
            OpKind::Logit | OpKind::Sigmoid | OpKind::LogSigmoid => "logits",
            OpKind::Softmax | OpKind::LogSoftmax => "softmax",
        }
    }

    /// One line on what the op computes and the shape it returns (CLI help, lesson tooltips).
    pub fn summary(self) -> &'static str {
        match self {
            OpKind::Logit => {
                "log-odds ln(p/(1-p)) element-wise; optional eps clamps p to [eps, 1-eps]; output shape = x"
            }
            OpKind::Sigmoid => {
                "1/(1+e^-x) element-wise, evaluated without overflow; output shape = x"
            }
            OpKind::LogSigmoid => {
                "ln(sigmoid(x)) = min(x,0) - ln(1+e^-|x|) element-wise; output shape = x"
            }
            OpKind::Softmax => {
                "row-wise e^(x/T) / sum e^(x/T) over the last axis, stable (max-subtracted) or naive; output shape = x"
            }
            OpKind::LogSoftmax => {
                "row-wise x/T - max - ln(sum e^(x/T - max)) over the last axis; output shape = x"
            }
        }
    }

    /// Parameters this op accepts, with bounds and defaults. `dtype` is accepted by every op.
    pub fn params(self) -> &'static [ParamSpec] {
        const DTYPE: ParamSpec = ParamSpec {
            name: "dtype",
            kind: ParamKind::Choice {
                choices: &["f32", "f16", "bf16"],
                default: "f32",
            },
            help: "storage precision of input and output; arithmetic is f32",
        };
        const TEMPERATURE: ParamSpec = ParamSpec {
            name: "temperature",
            kind: ParamKind::Float {
                min: 1e-3,
                max: 1e3,
                default: 1.0,
                log_scale: true,
            },
            help: "divides the logits before softmax; must be > 0 (T -> 0 approaches argmax, T -> inf uniform)",
        };
        match self {
            OpKind::Logit => &[
                ParamSpec {
                    name: "eps",
                    kind: ParamKind::Float {
                        min: 0.0,
                        max: 0.49,
                        default: f64::NAN,
                        log_scale: false,
                    },
                    help: "optional: clamp p to [eps, 1-eps] (bounds rounded to f32, as torch.logit does); absent = no clamp",
                },
                DTYPE,
            ],
            OpKind::Sigmoid | OpKind::LogSigmoid => &[DTYPE],
            OpKind::Softmax => &[
                TEMPERATURE,
                ParamSpec {
                    name: "stable",
                    kind: ParamKind::Bool { default: true },
                    help: "subtract the row max before exp (true) or exponentiate directly (false: overflows)",
                },
                DTYPE,
            ],
            OpKind::LogSoftmax => &[TEMPERATURE, DTYPE],
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a parameter is bounded: lesson widgets and the CLI parser both read this.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamKind {
    /// A float in [min, max]; `default` NaN means "absent unless given". `log_scale` hints a
    /// logarithmic slider.
    Float {
        min: f64,
        max: f64,
        default: f64,
        log_scale: bool,
    },
    Bool {
        default: bool,
    },
    Choice {
        choices: &'static [&'static str],
        default: &'static str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    pub help: &'static str,
}

/// An op with its parameters resolved and validated.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `eps`: clamp p to [lo, hi] with lo = f32(eps), hi = f32(1 - lo), before the log-odds.
    Logit {
        eps: Option<f64>,
    },
    Sigmoid,
    #[serde(rename = "logsigmoid")]
    LogSigmoid,
    Softmax {
        temperature: f64,
        stable: bool,
    },
    LogSoftmax {
        temperature: f64,
    },
}

impl Op {
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Logit { .. } => OpKind::Logit,
            Op::Sigmoid => OpKind::Sigmoid,
            Op::LogSigmoid => OpKind::LogSigmoid,
            Op::Softmax { .. } => OpKind::Softmax,
            Op::LogSoftmax { .. } => OpKind::LogSoftmax,
        }
    }

    /// Element-wise ops map each value on its own; the others reduce along rows.
    pub fn is_elementwise(&self) -> bool {
        matches!(
            self.kind(),
            OpKind::Logit | OpKind::Sigmoid | OpKind::LogSigmoid
        )
    }

    /// Resolve `name` and `key=value` parameters (CLI, lesson files) into an op and a dtype.
    /// Every value is checked against its [`ParamSpec`]; unknown names are errors.
    pub fn parse(name: &str, params: &[(String, String)]) -> Result<(Op, DType), OpError> {
        let kind = OpKind::from_name(name)?;
        let specs = kind.params();
        let mut values = ParamValues::default();
        for (key, raw) in params {
            let spec =
                specs
                    .iter()
                    .find(|s| s.name == key)
                    .ok_or_else(|| OpError::UnknownParam {
                        op: kind.name(),
                        name: key.clone(),
                        known: specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
                    })?;
            values.set(spec, raw)?;
        }
        let dtype = match values.get_choice("dtype") {
            Some(s) => s.parse().map_err(|reason| OpError::BadParam {
                name: "dtype".into(),
                reason,
            })?,
            None => DType::F32,
        };
        let op = match kind {
            OpKind::Logit => Op::Logit {
                eps: values.get_float("eps"),
            },
            OpKind::Sigmoid => Op::Sigmoid,
            OpKind::LogSigmoid => Op::LogSigmoid,
            OpKind::Softmax => Op::Softmax {
                temperature: values.get_float("temperature").unwrap_or(1.0),
                stable: values.get_bool("stable").unwrap_or(true),
            },
            OpKind::LogSoftmax => Op::LogSoftmax {
                temperature: values.get_float("temperature").unwrap_or(1.0),
            },
        };
        op.validate()?;
        Ok((op, dtype))
    }

    /// Check parameter values (bounds, finiteness). Constructing an `Op` by hand skips the parser,
    /// so every engine entry point calls this too.
    pub fn validate(&self) -> Result<(), OpError> {
        match *self {
            Op::Logit { eps: Some(eps) } => check_float("eps", eps, self.kind()),
            Op::Softmax { temperature, .. } | Op::LogSoftmax { temperature } => {
                if temperature.is_finite() && temperature <= 0.0 {
                    return Err(OpError::BadParam {
                        name: "temperature".into(),
                        reason: format!(
                            "must be > 0 (got {temperature}): dividing by T = 0 is undefined; as T -> 0 softmax approaches a one-hot argmax"
                        ),
                    });
                }
                check_float("temperature", temperature, self.kind())
            }
            _ => Ok(()),
        }
    }

    /// Parameters as `name=value` pairs (provenance, tables).
    pub fn describe(&self) -> String {
        match self {
            Op::Logit { eps: Some(e) } => format!("logit eps={e}"),
            Op::Logit { eps: None } => "logit".into(),
            Op::Sigmoid => "sigmoid".into(),
            Op::LogSigmoid => "logsigmoid".into(),
            Op::Softmax {
                temperature,
                stable,
            } => {
                format!(
                    "softmax T={temperature} {}",
                    if *stable { "stable" } else { "naive" }
                )
            }
            Op::LogSoftmax { temperature } => format!("log_softmax T={temperature}"),
        }
    }

    /// For `logit` with eps: the clamp bounds every engine uses, computed in f32 as torch.logit
    /// does (lo = f32(eps), hi = 1 - lo in f32). With eps=1e-6 they give logits in
    /// [-13.8155, 13.8023].
    pub fn logit_bounds(&self) -> Option<(f32, f32)> {
        match *self {
            Op::Logit { eps: Some(eps) } => {
                let lo = eps as f32;
                Some((lo, 1.0f32 - lo))
            }
            _ => None,
        }
    }
}

fn check_float(name: &str, v: f64, kind: OpKind) -> Result<(), OpError> {
    let Some(ParamKind::Float { min, max, .. }) = kind
        .params()
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.kind)
    else {
        return Ok(());
    };
    if !v.is_finite() {
        return Err(OpError::BadParam {
            name: name.into(),
            reason: format!("must be a finite number (got {v})"),
        });
    }
    if v < min || v > max {
        return Err(OpError::BadParam {
            name: name.into(),
            reason: format!("{v} is outside [{min}, {max}]"),
        });
    }
    Ok(())
}

#[derive(Default)]
struct ParamValues {
    floats: Vec<(&'static str, f64)>,
    bools: Vec<(&'static str, bool)>,
    choices: Vec<(&'static str, String)>,
}

impl ParamValues {
    fn set(&mut self, spec: &ParamSpec, raw: &str) -> Result<(), OpError> {
        let bad = |reason: String| OpError::BadParam {
            name: spec.name.into(),
            reason,
        };
        match spec.kind {
            ParamKind::Float { .. } => {
                let v: f64 = raw
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("'{raw}' is not a number")))?;
                self.floats.push((spec.name, v));
            }
            ParamKind::Bool { .. } => {
                let v = match raw.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => true,
                    "false" | "0" | "no" | "off" => false,
                    _ => return Err(bad(format!("'{raw}' is not true or false"))),
                };
                self.bools.push((spec.name, v));
            }
            ParamKind::Choice { choices, .. } => {
                let v = raw.trim().to_ascii_lowercase();
                if !choices.contains(&v.as_str()) {
                    return Err(bad(format!("'{raw}' is not one of {}", choices.join(", "))));
                }
                self.choices.push((spec.name, v));
            }
        }
        Ok(())
    }
    fn get_float(&self, name: &str) -> Option<f64> {
        self.floats
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
    fn get_bool(&self, name: &str) -> Option<bool> {
        self.bools
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
    fn get_choice(&self, name: &str) -> Option<&str> {
        self.choices
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Everything an engine needs to run one op: the op, the storage dtype and the input `x`.
/// `x` holds f32 values; [`OpRequest::new`] rounds them to `dtype`, so every engine (and the
/// reference) starts from the same representable inputs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpRequest {
    pub op: Op,
    pub dtype: DType,
    pub x: Tensor,
}

impl OpRequest {
    /// Validate the op and the input and round the input to `dtype`.
    pub fn new(op: Op, dtype: DType, mut x: Tensor) -> Result<Self, OpError> {
        op.validate()?;
        if x.shape.is_empty() {
            return Err(OpError::BadInput {
                name: "x".into(),
                reason: "a scalar has no rows; give at least one axis".into(),
            });
        }
        if x.len() > MAX_ELEMENTS {
            return Err(OpError::BadInput {
                name: "x".into(),
                reason: format!(
                    "{} elements is more than the limit of {MAX_ELEMENTS} (2^28)",
                    x.len()
                ),
            });
        }
        if dtype != DType::F32 {
            for v in &mut x.data {
                *v = dtype.round(*v);
            }
        }
        Ok(OpRequest { op, dtype, x })
    }

    /// Things a learner should know about this input that are not errors: rows where the result is
    /// undefined (all -inf), non-finite inputs. The op still runs and the outputs there are NaN, as
    /// in PyTorch.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let nan = self.x.data.iter().filter(|v| v.is_nan()).count();
        let inf = self.x.data.iter().filter(|v| v.is_infinite()).count();
        if nan > 0 {
            notes.push(format!(
                "{nan} NaN input value(s): NaN propagates to the outputs that depend on them"
            ));
        }
        if inf > 0 && !self.op.is_elementwise() {
            notes.push(format!(
                "{inf} infinite input value(s): a +inf logit makes its row NaN (inf - inf); -inf logits get probability 0"
            ));
        }
        if !self.op.is_elementwise() && self.x.cols() > 0 {
            let all_neg_inf = self
                .x
                .data
                .chunks(self.x.cols())
                .filter(|row| row.iter().all(|&v| v == f32::NEG_INFINITY))
                .count();
            if all_neg_inf > 0 {
                notes.push(format!(
                    "{all_neg_inf} row(s) are all -inf: softmax is 0/0 there, so those rows are NaN (as in torch)"
                ));
            }
        }
        notes
    }

    /// The f64 reference result (the source of truth), computed from the dtype-rounded input.
    pub fn reference(&self) -> Vec<f64> {
        let x: Vec<f64> = self.x.data.iter().map(|&v| v as f64).collect();
        match self.op {
            Op::Logit { .. } => {
                let bounds = self
                    .op
                    .logit_bounds()
                    .map(|(lo, hi)| (lo as f64, hi as f64));
                x.iter().map(|&p| logits::logit_ref(p, bounds)).collect()
            }
            Op::Sigmoid => x.iter().map(|&v| logits::sigmoid_ref(v)).collect(),
            Op::LogSigmoid => x.iter().map(|&v| logits::logsigmoid_ref(v)).collect(),
            Op::Softmax { temperature, .. } => softmax::rows_ref(&x, self.x.cols(), |row, out| {
                softmax::softmax_row_ref(row, temperature, out)
            }),
            Op::LogSoftmax { temperature } => softmax::rows_ref(&x, self.x.cols(), |row, out| {
                softmax::log_softmax_row_ref(row, temperature, out)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_softmax_params() {
        let (op, dt) = Op::parse(
            "softmax",
            &kv(&[
                ("temperature", "0.5"),
                ("stable", "false"),
                ("dtype", "f16"),
            ]),
        )
        .unwrap();
        assert_eq!(
            op,
            Op::Softmax {
                temperature: 0.5,
                stable: false
            }
        );
        assert_eq!(dt, DType::F16);
    }

    #[test]
    fn rejects_bad_params_with_reasons() {
        let e = Op::parse("softmax", &kv(&[("temperature", "0")])).unwrap_err();
        assert!(e.to_string().contains("must be > 0"), "{e}");
        let e = Op::parse("softmax", &kv(&[("temperature", "-1")])).unwrap_err();
        assert!(e.to_string().contains("must be > 0"), "{e}");
        let e = Op::parse("softmax", &kv(&[("temperature", "nan")])).unwrap_err();
        assert!(e.to_string().contains("finite"), "{e}");
        let e = Op::parse("softmax", &kv(&[("temp", "1")])).unwrap_err();
        assert!(e.to_string().contains("no parameter 'temp'"), "{e}");
        let e = Op::parse("softmax", &kv(&[("stable", "maybe")])).unwrap_err();
        assert!(e.to_string().contains("not true or false"), "{e}");
        let e = Op::parse("softmax", &kv(&[("dtype", "f64")])).unwrap_err();
        assert!(e.to_string().contains("f32, f16, bf16"), "{e}");
        let e = Op::parse("logit", &kv(&[("eps", "0.7")])).unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
        let e = Op::parse("softmaxx", &[]).unwrap_err();
        assert!(e.to_string().contains("unknown op 'softmaxx'"), "{e}");
    }

    #[test]
    fn request_rounds_input_to_dtype_and_checks_shape() {
        let x = Tensor::row(vec![1.0 + 1.0 / 4096.0]);
        let r = OpRequest::new(Op::Sigmoid, DType::F16, x).unwrap();
        assert_eq!(r.x.data[0], 1.0);
        assert!(Tensor::matrix(2, 3, vec![0.0; 5]).is_err());
        assert!(
            OpRequest::new(
                Op::Sigmoid,
                DType::F32,
                Tensor {
                    shape: vec![],
                    data: vec![1.0]
                }
            )
            .is_err()
        );
    }

    #[test]
    fn notes_name_undefined_rows() {
        let x = Tensor::matrix(
            2,
            2,
            vec![f32::NEG_INFINITY, f32::NEG_INFINITY, 1.0, f32::NAN],
        )
        .unwrap();
        let r = OpRequest::new(
            Op::Softmax {
                temperature: 1.0,
                stable: true,
            },
            DType::F32,
            x,
        )
        .unwrap();
        let notes = r.notes().join("\n");
        assert!(notes.contains("1 row(s) are all -inf"), "{notes}");
        assert!(notes.contains("1 NaN input"), "{notes}");
    }

    #[test]
    fn logit_bounds_match_torch_f32() {
        let (lo, hi) = Op::Logit { eps: Some(1e-6) }.logit_bounds().unwrap();
        let l = |p: f32| ((p as f64) / (1.0 - p as f64)).ln();
        assert!((l(lo) - -13.8155).abs() < 1e-4, "{}", l(lo));
        assert!((l(hi) - 13.8023).abs() < 1e-4, "{}", l(hi));
    }
}
