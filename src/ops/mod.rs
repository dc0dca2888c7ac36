//! The ops kernelbook teaches: their parameters (with bounds), the request an engine receives, input
//! validation, and the f64 CPU reference that every engine is checked against.
//!
//! One topic per file: `logits.rs` (logit, sigmoid, logsigmoid), `softmax.rs` (softmax,
//! log_softmax), `gumbel.rs` (gumbel_noise, gumbel_softmax), `rope.rs` (rope_freqs, rope) and
//! `tensor_parallel.rs` (linear, column/row-parallel linear, vocab-parallel embedding and
//! cross-entropy). Each file holds the precise algorithm every engine implements (so CUDA, WGSL and
//! the CPU compute the same thing) and its f64 reference. Nothing here touches a GPU or the UI.
//!
//! The first two topics are variants of [`Op`] directly. Later topics own their op enum and
//! implement [`TopicOp`]; [`Op`] wraps it (`Op::Gumbel`, `Op::Rope`, `Op::TensorParallel`), and the
//! topic file also provides `summary`, `params`, `inputs` and `parse` for its [`OpKind`]s.
//!
//! Inputs: every op has a primary input (`OpRequest::x`, the first of [`OpKind::inputs`]) and may
//! declare more by name (`OpRequest::extra`: positions, weights, ids...). Integer inputs (ids,
//! positions, targets) travel as f32 holding exact integers (|v| <= 2^24), checked on entry.

pub mod gumbel;
pub mod logits;
pub mod rope;
pub mod softmax;
pub mod tensor_parallel;

use crate::dtype::DType;
use serde::Serialize;
use std::fmt;
use thiserror::Error;

/// Largest number of elements one request may hold (2^29 = 537M; 2 GiB in f32: room for issue #8's
/// cross-entropy benchmark, [8192, 50304] = 412M logits). Larger inputs are refused before any
/// engine allocates.
pub const MAX_ELEMENTS: usize = 1 << 29;

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
    GumbelNoise,
    GumbelSoftmax,
    RopeFreqs,
    Rope,
    Linear,
    ColumnParallelLinear,
    RowParallelLinear,
    VocabParallelEmbedding,
    VocabParallelCrossEntropy,
}

impl OpKind {
    pub const ALL: [OpKind; 14] = [
        OpKind::Logit,
        OpKind::Sigmoid,
        OpKind::LogSigmoid,
        OpKind::Softmax,
        OpKind::LogSoftmax,
        OpKind::GumbelNoise,
        OpKind::GumbelSoftmax,
        OpKind::RopeFreqs,
        OpKind::Rope,
        OpKind::Linear,
        OpKind::ColumnParallelLinear,
        OpKind::RowParallelLinear,
        OpKind::VocabParallelEmbedding,
        OpKind::VocabParallelCrossEntropy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Logit => "logit",
            OpKind::Sigmoid => "sigmoid",
            OpKind::LogSigmoid => "logsigmoid",
            OpKind::Softmax => "softmax",
            OpKind::LogSoftmax => "log_softmax",
            OpKind::GumbelNoise => "gumbel_noise",
            OpKind::GumbelSoftmax => "gumbel_softmax",
            OpKind::RopeFreqs => "rope_freqs",
            OpKind::Rope => "rope",
            OpKind::Linear => "linear",
            OpKind::ColumnParallelLinear => "column_parallel_linear",
            OpKind::RowParallelLinear => "row_parallel_linear",
            OpKind::VocabParallelEmbedding => "vocab_parallel_embedding",
            OpKind::VocabParallelCrossEntropy => "vocab_parallel_cross_entropy",
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
            OpKind::GumbelNoise | OpKind::GumbelSoftmax => "gumbel",
            OpKind::RopeFreqs | OpKind::Rope => "rope",
            OpKind::Linear
            | OpKind::ColumnParallelLinear
            | OpKind::RowParallelLinear
            | OpKind::VocabParallelEmbedding
            | OpKind::VocabParallelCrossEntropy => "tensor_parallel",
        }
    }

    /// The inputs this op takes, by name. The first is the primary input (`OpRequest::x`); the
    /// others travel in `OpRequest::extra`.
    pub fn inputs(self) -> &'static [InputDecl] {
        const X: &[InputDecl] = &[InputDecl {
            name: "x",
            int: false,
            optional: false,
            help: "the input tensor; row-wise ops work along the last axis",
        }];
        match self {
            OpKind::Logit
            | OpKind::Sigmoid
            | OpKind::LogSigmoid
            | OpKind::Softmax
            | OpKind::LogSoftmax => X,
            OpKind::GumbelNoise | OpKind::GumbelSoftmax => gumbel::inputs(self),
            OpKind::RopeFreqs | OpKind::Rope => rope::inputs(self),
            _ => tensor_parallel::inputs(self),
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
            OpKind::GumbelNoise | OpKind::GumbelSoftmax => gumbel::summary(self),
            OpKind::RopeFreqs | OpKind::Rope => rope::summary(self),
            _ => tensor_parallel::summary(self),
        }
    }

    /// Parameters this op accepts, with bounds and defaults. `dtype` is accepted by every op.
    pub fn params(self) -> &'static [ParamSpec] {
        const DTYPE: ParamSpec = DTYPE_PARAM;
        const TEMPERATURE: ParamSpec = ParamSpec {
            name: "temperature",
            kind: ParamKind::Float {
                min: 1e-3,
                max: 1e3,
                default: 1.0,
                log_scale: true,
                integer: false,
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
                        integer: false,
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
            OpKind::GumbelNoise | OpKind::GumbelSoftmax => gumbel::params(self),
            OpKind::RopeFreqs | OpKind::Rope => rope::params(self),
            _ => tensor_parallel::params(self),
        }
    }
}

/// The `dtype` parameter every op accepts (topic files list it in their `params`).
pub const DTYPE_PARAM: ParamSpec = ParamSpec {
    name: "dtype",
    kind: ParamKind::Choice {
        choices: &["f32", "f16", "bf16"],
        default: "f32",
    },
    help: "storage precision of input and output; arithmetic is f32",
};

/// One named input of an op.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputDecl {
    pub name: &'static str,
    /// Integer-valued (ids, positions, targets): must hold exact integers with |v| <= 2^24.
    /// Float inputs are rounded to the request's dtype; integer inputs are not.
    pub int: bool,
    /// May be left out (the op then uses a default, e.g. positions 0..seq).
    pub optional: bool,
    pub help: &'static str,
}

/// Largest magnitude an integer input may have: every integer up to 2^24 is exact in f32.
pub const MAX_INT_INPUT: f32 = 16_777_216.0;

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
        /// Only whole numbers (seeds, sizes, rank counts); sliders step by 1.
        integer: bool,
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
    /// gumbel_noise, gumbel_softmax (`ops/gumbel.rs`).
    #[serde(rename = "gumbel")]
    Gumbel(gumbel::GumbelOp),
    /// rope_freqs, rope (`ops/rope.rs`).
    #[serde(rename = "rope")]
    Rope(rope::RopeOp),
    /// linear and the tensor-parallel ops (`ops/tensor_parallel.rs`).
    #[serde(rename = "tensor_parallel")]
    TensorParallel(tensor_parallel::TpOp),
}

/// What a topic file provides for each of its ops. The topic's op enum implements it; [`Op`]
/// forwards to it, so engines, the check and the UI treat every topic alike.
pub trait TopicOp {
    fn kind(&self) -> OpKind;
    /// Parameter values in range (the parser checks bounds too; a hand-built op is checked here).
    fn validate(&self) -> Result<(), OpError>;
    /// Parameters as text, e.g. "gumbel_softmax tau=0.5 hard seed=1".
    fn describe(&self) -> String;
    /// Shapes of `x` and the extra inputs agree with each other and with the parameters.
    fn check_inputs(&self, req: &OpRequest) -> Result<(), OpError>;
    /// Shape of the main output.
    fn output_shape(&self, req: &OpRequest) -> Vec<usize>;
    /// The f64 reference: the main output and any auxiliary outputs, in the order the engines
    /// return them.
    fn reference(&self, req: &OpRequest) -> Reference;
    /// How close an engine must come to the reference.
    fn tolerance(&self, dtype: DType) -> crate::check::Tolerance;
    /// Things worth knowing about this input that are not errors.
    fn notes(&self, _req: &OpRequest) -> Vec<String> {
        Vec::new()
    }
}

/// The f64 reference for a request: the main output and named auxiliary outputs (e.g.
/// gumbel_softmax's soft sample next to the hard one-hot).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Reference {
    pub values: Vec<f64>,
    pub aux: Vec<AuxReference>,
}

/// One auxiliary output of the reference.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuxReference {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

impl Op {
    /// The topic op, for ops defined in a topic file.
    pub fn topic_op(&self) -> Option<&dyn TopicOp> {
        match self {
            Op::Gumbel(t) => Some(t),
            Op::Rope(t) => Some(t),
            Op::TensorParallel(t) => Some(t),
            _ => None,
        }
    }

    pub fn kind(&self) -> OpKind {
        match self {
            Op::Logit { .. } => OpKind::Logit,
            Op::Sigmoid => OpKind::Sigmoid,
            Op::LogSigmoid => OpKind::LogSigmoid,
            Op::Softmax { .. } => OpKind::Softmax,
            Op::LogSoftmax { .. } => OpKind::LogSoftmax,
            Op::Gumbel(t) => t.kind(),
            Op::Rope(t) => t.kind(),
            Op::TensorParallel(t) => t.kind(),
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
            OpKind::GumbelNoise | OpKind::GumbelSoftmax => {
                Op::Gumbel(gumbel::parse(kind, &values)?)
            }
            OpKind::RopeFreqs | OpKind::Rope => Op::Rope(rope::parse(kind, &values)?),
            _ => Op::TensorParallel(tensor_parallel::parse(kind, &values)?),
        };
        op.validate()?;
        Ok((op, dtype))
    }

    /// Check parameter values (bounds, finiteness). Constructing an `Op` by hand skips the parser,
    /// so every engine entry point calls this too.
    pub fn validate(&self) -> Result<(), OpError> {
        if let Some(t) = self.topic_op() {
            return t.validate();
        }
        match *self {
            Op::Logit { eps: Some(eps) } => check_float("eps", eps, self.kind()),
            Op::Softmax { temperature, .. } | Op::LogSoftmax { temperature } => {
                if temperature.is_finite() && temperature <= 0.0 {
                    return Err(OpError::BadParam {
                        name: "temperature".into(),
                        reason: format!(
                            "must be > 0 (got {}): dividing by T = 0 is undefined; as T -> 0 softmax approaches a one-hot argmax",
                            fmt_number(temperature)
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
            Op::Gumbel(t) => t.describe(),
            Op::Rope(t) => t.describe(),
            Op::TensorParallel(t) => t.describe(),
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

/// A number as a message shows it: the shortest form that reads back as the same value, in
/// scientific notation when very large or small (`1e300`, not 301 digits).
pub fn fmt_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() || (1e-4..1e16).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// Check a float parameter against its [`ParamSpec`] bounds (finite, in range, whole if integer).
/// Topic files call this from their `validate`.
pub fn check_float(name: &str, v: f64, kind: OpKind) -> Result<(), OpError> {
    let Some(ParamKind::Float {
        min, max, integer, ..
    }) = kind
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
            reason: format!("must be a finite number (got {})", fmt_number(v)),
        });
    }
    if v < min || v > max {
        return Err(OpError::BadParam {
            name: name.into(),
            reason: format!(
                "{} is outside [{}, {}]",
                fmt_number(v),
                fmt_number(min),
                fmt_number(max)
            ),
        });
    }
    if integer && v.fract() != 0.0 {
        return Err(OpError::BadParam {
            name: name.into(),
            reason: format!("must be a whole number (got {})", fmt_number(v)),
        });
    }
    Ok(())
}

/// Parsed `key=value` parameters, checked against their specs, for `Op::parse` and the topic
/// files' `parse`. The last value given for a name wins.
#[derive(Default)]
pub struct ParamValues {
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
    pub fn get_float(&self, name: &str) -> Option<f64> {
        self.floats
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
    pub fn get_bool(&self, name: &str) -> Option<bool> {
        self.bools
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
    pub fn get_choice(&self, name: &str) -> Option<&str> {
        self.choices
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Which of a topic's kernels a GPU engine runs. Both compute the same algorithm (same result within
/// the op's tolerance); they differ in how they move memory. Lessons run `Simple` to show the
/// readable first version next to `Fast` (issue #8's bandwidth-bound kernels); the CPU engine has
/// one implementation and ignores the choice. Ops with no fast kernel run their only one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelVariant {
    /// The first, readable kernel: one pass over memory per step of the algorithm.
    Simple,
    /// The bandwidth-bound kernel: as few passes over memory as the algorithm allows.
    #[default]
    Fast,
}

impl KernelVariant {
    pub const ALL: [KernelVariant; 2] = [KernelVariant::Simple, KernelVariant::Fast];

    pub fn name(self) -> &'static str {
        match self {
            KernelVariant::Simple => "simple",
            KernelVariant::Fast => "fast",
        }
    }

    pub fn from_name(name: &str) -> Result<Self, OpError> {
        match name {
            "simple" => Ok(KernelVariant::Simple),
            "fast" => Ok(KernelVariant::Fast),
            other => Err(OpError::BadParam {
                name: "kernel".into(),
                reason: format!("'{other}' is not a kernel variant (simple or fast)"),
            }),
        }
    }
}

impl fmt::Display for KernelVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything an engine needs to run one op: the op, the storage dtype, the primary input `x` and
/// any further named inputs. Float inputs hold f32 values that [`OpRequest::with_inputs`] rounds to
/// `dtype`, so every engine (and the reference) starts from the same representable inputs; integer
/// inputs hold exact integers as f32.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpRequest {
    pub op: Op,
    pub dtype: DType,
    pub x: Tensor,
    /// The other inputs, by name, in the order of [`OpKind::inputs`] (optional ones may be absent).
    pub extra: Vec<(String, Tensor)>,
    /// Which kernel a GPU engine runs ([`KernelVariant::Fast`] unless a lesson asks otherwise).
    pub kernel: KernelVariant,
}

impl OpRequest {
    /// Validate the op and the input and round the input to `dtype` (ops with one input).
    pub fn new(op: Op, dtype: DType, x: Tensor) -> Result<Self, OpError> {
        Self::with_inputs(op, dtype, x, Vec::new())
    }

    /// Validate the op and every input (names, integer values, sizes, shapes) and round the float
    /// inputs to `dtype`.
    pub fn with_inputs(
        op: Op,
        dtype: DType,
        mut x: Tensor,
        extra: Vec<(String, Tensor)>,
    ) -> Result<Self, OpError> {
        op.validate()?;
        let kind = op.kind();
        let decls = kind.inputs();
        let primary = decls[0];
        if x.shape.is_empty() {
            return Err(OpError::BadInput {
                name: primary.name.into(),
                reason: "a scalar has no rows; give at least one axis".into(),
            });
        }
        let mut ordered: Vec<(String, Tensor)> = Vec::new();
        for (name, _) in &extra {
            if !decls[1..].iter().any(|d| d.name == name) {
                return Err(OpError::BadInput {
                    name: name.clone(),
                    reason: format!(
                        "op {kind} has no input '{name}' (it takes: {})",
                        decls.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
                    ),
                });
            }
            if extra.iter().filter(|(n, _)| n == name).count() > 1 {
                return Err(OpError::BadInput {
                    name: name.clone(),
                    reason: "given twice".into(),
                });
            }
        }
        let mut extra = extra;
        for decl in &decls[1..] {
            match extra.iter().position(|(n, _)| n == decl.name) {
                Some(i) => ordered.push(extra.swap_remove(i)),
                None if decl.optional => {}
                None => {
                    return Err(OpError::BadInput {
                        name: decl.name.into(),
                        reason: format!("op {kind} needs input '{}': {}", decl.name, decl.help),
                    });
                }
            }
        }
        let total: usize = x.len() + ordered.iter().map(|(_, t)| t.len()).sum::<usize>();
        if total > MAX_ELEMENTS {
            return Err(OpError::BadInput {
                name: primary.name.into(),
                reason: format!(
                    "{total} elements in all is more than the limit of {MAX_ELEMENTS} (2^29)"
                ),
            });
        }
        prepare_input(&primary, dtype, &mut x)?;
        for (name, t) in &mut ordered {
            let decl = decls.iter().find(|d| d.name == name.as_str()).copied();
            if let Some(decl) = decl {
                prepare_input(&decl, dtype, t)?;
            }
        }
        let req = OpRequest {
            op,
            dtype,
            x,
            extra: ordered,
            kernel: KernelVariant::default(),
        };
        if let Some(t) = req.op.topic_op() {
            t.check_inputs(&req)?;
        }
        Ok(req)
    }

    /// The same request, run with `kernel` on the GPU engines.
    pub fn with_kernel(mut self, kernel: KernelVariant) -> Self {
        self.kernel = kernel;
        self
    }

    /// A named input: the primary one by its declared name (or "x"), or one of `extra`.
    pub fn input(&self, name: &str) -> Option<&Tensor> {
        if name == "x" || name == self.op.kind().inputs()[0].name {
            return Some(&self.x);
        }
        self.extra.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Shape of the main output (the primary input's shape for the element- and row-wise ops).
    pub fn output_shape(&self) -> Vec<usize> {
        match self.op.topic_op() {
            Some(t) => t.output_shape(self),
            None => self.x.shape.clone(),
        }
    }

    /// Number of values in the main output.
    pub fn output_len(&self) -> usize {
        self.output_shape().iter().product()
    }

    /// Whether there is nothing to compute (an empty input or output): engines answer without
    /// touching the device.
    pub fn is_empty(&self) -> bool {
        self.x.is_empty() || self.output_len() == 0
    }

    /// The f64 reference with its auxiliary outputs (see [`Reference`]).
    pub fn reference_full(&self) -> Reference {
        match self.op.topic_op() {
            Some(t) => t.reference(self),
            None => Reference {
                values: self.reference(),
                aux: Vec::new(),
            },
        }
    }

    /// Things a learner should know about this input that are not errors: rows where the result is
    /// undefined (all -inf), non-finite inputs. The op still runs and the outputs there are NaN, as
    /// in PyTorch.
    pub fn notes(&self) -> Vec<String> {
        if let Some(t) = self.op.topic_op() {
            return t.notes(self);
        }
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
    /// Only the main output; [`OpRequest::reference_full`] adds the auxiliary ones.
    pub fn reference(&self) -> Vec<f64> {
        if let Some(t) = self.op.topic_op() {
            return t.reference(self).values;
        }
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
            Op::Gumbel(_) | Op::Rope(_) | Op::TensorParallel(_) => unreachable!("handled above"),
        }
    }
}

/// Check one input against its declaration: integer inputs hold exact, finite integers within
/// ±2^24; float inputs are rounded to `dtype`.
fn prepare_input(decl: &InputDecl, dtype: DType, t: &mut Tensor) -> Result<(), OpError> {
    if t.shape.is_empty() {
        return Err(OpError::BadInput {
            name: decl.name.into(),
            reason: "a scalar has no axes; give at least one".into(),
        });
    }
    if decl.int {
        if let Some((i, v)) = t
            .data
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite() || v.fract() != 0.0 || v.abs() > MAX_INT_INPUT)
        {
            return Err(OpError::BadInput {
                name: decl.name.into(),
                reason: format!(
                    "element {i} is {v}: this input holds integers (at most 2^24 in magnitude)"
                ),
            });
        }
    } else if dtype != DType::F32 {
        for v in &mut t.data {
            *v = dtype.round(*v);
        }
    }
    Ok(())
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
