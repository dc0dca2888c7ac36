//! The topic registry's types: what a topic file provides ([`Topic`] for the topic, [`TopicOp`] for
//! each of its ops with parameters resolved), the op handle [`OpKind`] and the type-erased [`Op`]
//! that engines, the check and the UI pass around.
//!
//! A topic (logits, softmax, gumbel, ...) lives in one file of this folder. It declares its ops as
//! [`OpKind`] constants (name, summary, inputs, parameters with bounds), parses parameter values into
//! its own op type, and that type implements [`TopicOp`]: validation, input checks, output shape, the
//! f64 reference, the tolerance, notes. The table in `ops/mod.rs` lists every topic once; each engine
//! has its own table with one line per topic it runs. Nothing outside a topic's own files names its
//! ops: the CLI, the lesson parser, the check suite, the bench and the UI reach them through the
//! tables.

use super::case::{BenchSpec, Case, Draw};
use super::tolerance::Tolerance;
use super::{InputDecl, OpError, OpRequest, ParamSpec, ParamValues, Reference, Tensor};
use crate::dtype::DType;
use serde::Serialize;
use std::any::Any;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// What an op is: its name (what the CLI, lesson files and JSON use), the topic file it belongs to,
/// a one-line summary, its inputs (the first is the primary one, `OpRequest::x`) and its parameters.
#[derive(Debug)]
pub struct OpDef {
    pub name: &'static str,
    /// The topic file (`src/ops/<topic>.rs`, `kernels/<topic>.cu`, `shaders/<topic>.wgsl`).
    pub topic: &'static str,
    /// One line on what the op computes and the shape it returns (CLI help, lesson tooltips).
    pub summary: &'static str,
    pub inputs: &'static [InputDecl],
    /// Parameters with bounds and defaults; `dtype` ([`super::DTYPE_PARAM`]) among them.
    pub params: &'static [ParamSpec],
    /// How random values for the primary input are drawn when nobody gave any.
    pub draw: Draw,
}

/// A handle to one op's [`OpDef`]. Topic files declare them as constants; two handles are equal
/// when they name the same op.
#[derive(Clone, Copy)]
pub struct OpKind(pub &'static OpDef);

impl OpKind {
    pub const fn new(def: &'static OpDef) -> OpKind {
        OpKind(def)
    }

    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The topic file this op belongs to.
    pub fn topic(self) -> &'static str {
        self.0.topic
    }

    pub fn summary(self) -> &'static str {
        self.0.summary
    }

    /// The inputs this op takes, by name. The first is the primary input (`OpRequest::x`); the
    /// others travel in `OpRequest::extra`.
    pub fn inputs(self) -> &'static [InputDecl] {
        self.0.inputs
    }

    /// Parameters this op accepts, with bounds and defaults.
    pub fn params(self) -> &'static [ParamSpec] {
        self.0.params
    }

    /// How random values for the primary input are drawn when nobody gave any.
    pub fn draw(self) -> Draw {
        self.0.draw
    }

    /// Every op of every topic, in the order of the topic table.
    pub fn all() -> impl Iterator<Item = OpKind> {
        super::TOPICS.iter().flat_map(|t| t.ops().iter().copied())
    }

    pub fn from_name(name: &str) -> Result<Self, OpError> {
        OpKind::all()
            .find(|k| k.name() == name)
            .ok_or_else(|| OpError::UnknownOp(name.to_string()))
    }

    /// The topic that defines this op.
    pub fn topic_def(self) -> Result<&'static dyn Topic, OpError> {
        super::topic(self.topic()).ok_or_else(|| OpError::UnknownOp(self.name().to_string()))
    }
}

impl PartialEq for OpKind {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for OpKind {}

impl Hash for OpKind {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl fmt::Debug for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for OpKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One topic: its ops, how parameter values become an op, and its cases for `kernelbook check` and
/// `kernelbook bench`. Implemented by a unit struct in the topic's file and listed once in
/// [`super::TOPICS`].
pub trait Topic: Sync {
    /// The topic's file stem: `src/ops/<name>.rs`, `kernels/<name>.cu`, `shaders/<name>.wgsl`.
    fn name(&self) -> &'static str;

    /// The ops this topic provides.
    fn ops(&self) -> &'static [OpKind];

    /// Build the op `kind` (one of [`Topic::ops`]) from parameter values already checked against
    /// their specs (bounds, choices).
    fn parse(&self, kind: OpKind, values: &ParamValues) -> Result<Op, OpError>;

    /// The topic's cases for `kernelbook check` and the engine tests. `large` adds the sizes only
    /// real GPUs are checked at.
    fn cases(&self, large: bool) -> Vec<Case>;

    /// What `kernelbook bench` measures: row-wise ops at `size` (rows x cols), the others at their
    /// own sizes, larger on a hardware GPU (`gpu`).
    fn bench(&self, size: (usize, usize), gpu: bool) -> Vec<BenchSpec> {
        let _ = (size, gpu);
        Vec::new()
    }
}

/// Equality, cloning into an [`Op`], JSON and downcasting for every topic op type; implemented for
/// any `Clone + PartialEq + Debug + Serialize` type, so topic files only derive those.
pub trait OpValue: Any + Send + Sync + fmt::Debug {
    fn as_any(&self) -> &dyn Any;
    fn eq_value(&self, other: &dyn OpValue) -> bool;
    fn to_json(&self) -> serde_json::Value;
}

impl<T> OpValue for T
where
    T: Any + Send + Sync + fmt::Debug + PartialEq + Serialize,
{
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn eq_value(&self, other: &dyn OpValue) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// What a topic file provides for each of its ops, parameters resolved. [`Op`] wraps it, so
/// engines, the check and the UI treat every topic alike.
pub trait TopicOp: OpValue {
    fn kind(&self) -> OpKind;
    /// Parameter values in range (the parser checks bounds too; a hand-built op is checked here).
    fn validate(&self) -> Result<(), OpError>;
    /// Parameters as text, e.g. "gumbel_softmax tau=0.5 hard seed=1".
    fn describe(&self) -> String;
    /// Shapes of `x` and the extra inputs agree with each other and with the parameters.
    fn check_inputs(&self, req: &OpRequest) -> Result<(), OpError> {
        let _ = req;
        Ok(())
    }
    /// Shape of the main output (default: the primary input's).
    fn output_shape(&self, req: &OpRequest) -> Vec<usize> {
        req.x.shape.clone()
    }
    /// The f64 reference: the main output and any auxiliary outputs, in the order the engines
    /// return them.
    fn reference(&self, req: &OpRequest) -> Reference;
    /// How close an engine must come to the reference.
    fn tolerance(&self, dtype: DType) -> Tolerance;
    /// Things worth knowing about this input that are not errors.
    fn notes(&self, req: &OpRequest) -> Vec<String> {
        let _ = req;
        Vec::new()
    }
    /// Seeded inputs of `shape` (what the bench and the roofline measure): the primary input
    /// drawn as its [`OpDef::draw`] says, and the other inputs this op can make up at any size
    /// (those marked [`InputDecl::generated`]; an op with such inputs overrides this). The
    /// optional inputs are left out.
    fn sized_inputs(
        &self,
        shape: &[usize],
        seed: u64,
    ) -> Result<(Tensor, Vec<(String, Tensor)>), OpError> {
        let n: usize = shape.iter().product();
        let x = self.kind().draw().input(1, n, seed).tensor();
        Ok((Tensor::new(shape.to_vec(), x.data)?, Vec::new()))
    }
}

/// An op with its parameters resolved and validated: a shared, immutable [`TopicOp`]. Engines get
/// their topic's own type back with [`Op::get`].
#[derive(Clone)]
pub struct Op(Arc<dyn TopicOp>);

impl Op {
    pub fn new(op: impl TopicOp) -> Op {
        Op(Arc::new(op))
    }

    /// The topic op behind this op.
    pub fn topic_op(&self) -> &dyn TopicOp {
        self.0.as_ref()
    }

    /// The topic's own op type, if this op is one of its.
    pub fn get<T: TopicOp>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref::<T>()
    }

    pub fn kind(&self) -> OpKind {
        self.0.kind()
    }

    /// Resolve `name` and `key=value` parameters (CLI, lesson files) into an op and a dtype.
    /// Every value is checked against its [`ParamSpec`]; unknown names are errors.
    pub fn parse(name: &str, params: &[(String, String)]) -> Result<(Op, DType), OpError> {
        let kind = OpKind::from_name(name)?;
        let values = ParamValues::parse(kind, params)?;
        let dtype = match values.get_choice("dtype") {
            Some(s) => s.parse().map_err(|reason| OpError::BadParam {
                name: "dtype".into(),
                reason,
            })?,
            None => DType::F32,
        };
        let op = kind.topic_def()?.parse(kind, &values)?;
        op.validate()?;
        Ok((op, dtype))
    }

    /// Check parameter values (bounds, finiteness). Constructing an op by hand skips the parser,
    /// so every engine entry point calls this too.
    pub fn validate(&self) -> Result<(), OpError> {
        self.0.validate()
    }

    /// Parameters as text (provenance, tables).
    pub fn describe(&self) -> String {
        self.0.describe()
    }

    /// How close an engine must come to the reference in `dtype`.
    pub fn tolerance(&self, dtype: DType) -> Tolerance {
        self.0.tolerance(dtype)
    }

    /// This op on seeded inputs of `shape` (see [`TopicOp::sized_inputs`]).
    pub fn sized_request(
        &self,
        dtype: DType,
        shape: &[usize],
        seed: u64,
    ) -> Result<OpRequest, OpError> {
        let (x, extra) = self.0.sized_inputs(shape, seed)?;
        OpRequest::with_inputs(self.clone(), dtype, x, extra)
    }
}

impl PartialEq for Op {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_value(other.0.as_ref())
    }
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Op {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.to_json().serialize(s)
    }
}

impl<T: TopicOp> From<T> for Op {
    fn from(op: T) -> Op {
        Op::new(op)
    }
}
