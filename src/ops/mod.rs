//! The ops kernelbook teaches: the topic registry, parameters (with bounds), the request an engine
//! receives, input validation, and the f64 CPU reference that every engine is checked against.
//!
//! One topic per file, listed once in [`TOPICS`] (the `topic_registry!` table below): `logits.rs` (logit,
//! sigmoid, logsigmoid), `softmax.rs` (softmax, log_softmax), `gumbel.rs` (gumbel_noise,
//! gumbel_softmax), `rope.rs` (rope_freqs, rope) and `tensor_parallel.rs` (linear, column/row-parallel
//! linear, vocab-parallel embedding and cross-entropy). Each file holds the precise algorithm every
//! engine implements (so CUDA, WGSL and the CPU compute the same thing), its f64 reference, its
//! tolerances and its check cases, behind the [`Topic`] and [`TopicOp`] traits (`topic.rs`). Nothing
//! here touches a GPU or the UI, and nothing here imports a module above it: the check cases
//! (`case.rs`), tolerances (`tolerance.rs`) and number formatting (`crate::format`) live at or below
//! this layer.
//!
//! Inputs: every op has a primary input (`OpRequest::x`, the first of [`OpKind::inputs`]) and may
//! declare more by name (`OpRequest::extra`: positions, weights, ids...). Integer inputs (ids,
//! positions, targets) travel as f32 holding exact integers (|v| <= 2^24), checked on entry.

pub mod case;
pub mod tolerance;
mod topic;

pub use topic::{Op, OpDef, OpKind, OpValue, Topic, TopicOp};

use crate::dtype::DType;
pub use crate::format::fmt_number;
use serde::Serialize;
use std::fmt;
use thiserror::Error;

crate::topic_registry! {
    pub mod {
        logits,
        softmax,
        gumbel,
        rope,
        tensor_parallel,
    }
    /// Every topic, in lesson order. Adding a topic is one line here (and one per engine).
    pub static TOPICS: [&'static dyn Topic] = TOPIC;
}

/// The topic named `name` (a topic file stem).
pub fn topic(name: &str) -> Option<&'static dyn Topic> {
    TOPICS.iter().copied().find(|t| t.name() == name)
}

/// Largest number of elements one request may hold (2^29 = 537M; 2 GiB in f32: room for the
/// cross-entropy benchmark at [8192, 50304] = 412M logits). Larger inputs are refused before any
/// engine allocates.
pub const MAX_ELEMENTS: usize = 1 << 29;

/// Bad input: a parameter out of range, an unknown op or param, a malformed shape. The CLI prints
/// it on one line and exits with code 2; the UI shows it next to the widget.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum OpError {
    #[error("unknown op '{0}' (known: {known})", known = OpKind::all().map(|k| k.name()).collect::<Vec<_>>().join(", "))]
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
    /// The op makes this input up when it runs on generated inputs of any size
    /// ([`TopicOp::sized_inputs`]: the bench and the roofline), e.g. cross-entropy targets.
    pub generated: bool,
    pub help: &'static str,
}

impl InputDecl {
    /// A required float input.
    pub const fn float(name: &'static str, help: &'static str) -> InputDecl {
        InputDecl {
            name,
            int: false,
            optional: false,
            generated: false,
            help,
        }
    }
}

/// Largest magnitude an integer input may have: every integer up to 2^24 is exact in f32.
pub const MAX_INT_INPUT: f32 = 16_777_216.0;

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
/// files' `parse`. A name given twice is an error.
#[derive(Default)]
pub struct ParamValues {
    floats: Vec<(&'static str, f64)>,
    bools: Vec<(&'static str, bool)>,
    choices: Vec<(&'static str, String)>,
}

impl ParamValues {
    /// Check `key=value` pairs against `kind`'s parameter specs: unknown names, values out of
    /// their specs and names given twice are errors.
    pub fn parse(kind: OpKind, params: &[(String, String)]) -> Result<ParamValues, OpError> {
        let specs = kind.params();
        let mut values = ParamValues::default();
        for (i, (key, raw)) in params.iter().enumerate() {
            let spec =
                specs
                    .iter()
                    .find(|s| s.name == key)
                    .ok_or_else(|| OpError::UnknownParam {
                        op: kind.name(),
                        name: key.clone(),
                        known: specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
                    })?;
            if params[..i].iter().any(|(k, _)| k == key) {
                return Err(OpError::BadParam {
                    name: key.clone(),
                    reason: "given twice".into(),
                });
            }
            values.set(spec, raw)?;
        }
        Ok(values)
    }

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
/// readable first version next to `Fast` (the bandwidth-bound kernels of docs/performance.md); the CPU engine has
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
        req.op.topic_op().check_inputs(&req)?;
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
        self.op.topic_op().output_shape(self)
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
        self.op.topic_op().reference(self)
    }

    /// Things a learner should know about this input that are not errors: rows where the result is
    /// undefined (all -inf), non-finite inputs. The op still runs and the outputs there are NaN, as
    /// in PyTorch.
    pub fn notes(&self) -> Vec<String> {
        self.op.topic_op().notes(self)
    }

    /// The f64 reference result (the source of truth), computed from the dtype-rounded input.
    /// Only the main output; [`OpRequest::reference_full`] adds the auxiliary ones.
    pub fn reference(&self) -> Vec<f64> {
        self.reference_full().values
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

    #[test]
    fn op_names_are_unique_and_every_topic_is_found() {
        let names: Vec<&str> = OpKind::all().map(|k| k.name()).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[..i].contains(n), "op {n} listed twice");
            let kind = OpKind::from_name(n).unwrap();
            assert_eq!(kind.topic_def().unwrap().name(), kind.topic());
            assert!(kind.params().iter().any(|p| p.name == "dtype"), "{n}");
        }
        let e = Op::parse("softmaxx", &[]).unwrap_err();
        assert!(e.to_string().contains("unknown op 'softmaxx'"), "{e}");
    }

    #[test]
    fn every_topic_parses_its_default_ops() {
        for kind in OpKind::all() {
            let (op, dtype) = Op::parse(kind.name(), &[]).unwrap();
            assert_eq!(op.kind(), kind);
            assert_eq!(dtype, DType::F32);
            assert_eq!(op, op.clone());
        }
    }

    #[test]
    fn a_parameter_given_twice_is_refused() {
        let kv = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let e = Op::parse("softmax", &kv(&[("dtype", "f16"), ("dtype", "f32")])).unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
    }
}
