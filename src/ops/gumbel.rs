//! gumbel_noise, gumbel_softmax: PLACEHOLDER written by the lead so the crate compiles; the topic's helper replaces
//! this file with the ops' parameters, the algorithm every engine implements and the f64 reference.

use super::{
    DTYPE_PARAM, InputDecl, OpError, OpKind, OpRequest, ParamSpec, ParamValues, Reference, TopicOp,
};
use crate::check::Tolerance;
use crate::dtype::DType;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GumbelOp {
    GumbelNoise,
    GumbelSoftmax,
}

pub fn summary(_kind: OpKind) -> &'static str {
    "not implemented yet"
}

pub fn params(_kind: OpKind) -> &'static [ParamSpec] {
    &[DTYPE_PARAM]
}

pub fn inputs(_kind: OpKind) -> &'static [InputDecl] {
    &[InputDecl {
        name: "x",
        int: false,
        optional: false,
        help: "input",
    }]
}

pub fn parse(kind: OpKind, _values: &ParamValues) -> Result<GumbelOp, OpError> {
    match kind {
        OpKind::GumbelNoise => Ok(GumbelOp::GumbelNoise),
        OpKind::GumbelSoftmax => Ok(GumbelOp::GumbelSoftmax),
        _ => Err(OpError::UnknownOp(kind.name().into())),
    }
}

impl TopicOp for GumbelOp {
    fn kind(&self) -> OpKind {
        match self {
            GumbelOp::GumbelNoise => OpKind::GumbelNoise,
            GumbelOp::GumbelSoftmax => OpKind::GumbelSoftmax,
        }
    }
    fn validate(&self) -> Result<(), OpError> {
        Ok(())
    }
    fn describe(&self) -> String {
        self.kind().name().into()
    }
    fn check_inputs(&self, _req: &OpRequest) -> Result<(), OpError> {
        Ok(())
    }
    fn output_shape(&self, req: &OpRequest) -> Vec<usize> {
        req.x.shape.clone()
    }
    fn reference(&self, req: &OpRequest) -> Reference {
        Reference {
            values: vec![f64::NAN; req.x.len()],
            aux: Vec::new(),
        }
    }
    fn tolerance(&self, dtype: DType) -> Tolerance {
        Tolerance::for_dtype(dtype)
    }
}

/// This topic's cases for `kernelbook check` (`large`: real GPUs also get the big sizes).
pub fn suite_cases(_large: bool) -> Vec<crate::suite::Case> {
    Vec::new()
}
