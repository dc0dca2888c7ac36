//! linear and the tensor-parallel ops: PLACEHOLDER written by the lead so the crate compiles; the topic's helper replaces
//! this file with the ops' parameters, the algorithm every engine implements and the f64 reference.

use super::{
    DTYPE_PARAM, InputDecl, OpError, OpKind, OpRequest, ParamSpec, ParamValues, Reference, TopicOp,
};
use crate::check::Tolerance;
use crate::dtype::DType;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TpOp {
    Linear,
    ColumnParallelLinear,
    RowParallelLinear,
    VocabParallelEmbedding,
    VocabParallelCrossEntropy,
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

pub fn parse(kind: OpKind, _values: &ParamValues) -> Result<TpOp, OpError> {
    match kind {
        OpKind::Linear => Ok(TpOp::Linear),
        OpKind::ColumnParallelLinear => Ok(TpOp::ColumnParallelLinear),
        OpKind::RowParallelLinear => Ok(TpOp::RowParallelLinear),
        OpKind::VocabParallelEmbedding => Ok(TpOp::VocabParallelEmbedding),
        OpKind::VocabParallelCrossEntropy => Ok(TpOp::VocabParallelCrossEntropy),
        _ => Err(OpError::UnknownOp(kind.name().into())),
    }
}

impl TopicOp for TpOp {
    fn kind(&self) -> OpKind {
        match self {
            TpOp::Linear => OpKind::Linear,
            TpOp::ColumnParallelLinear => OpKind::ColumnParallelLinear,
            TpOp::RowParallelLinear => OpKind::RowParallelLinear,
            TpOp::VocabParallelEmbedding => OpKind::VocabParallelEmbedding,
            TpOp::VocabParallelCrossEntropy => OpKind::VocabParallelCrossEntropy,
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
