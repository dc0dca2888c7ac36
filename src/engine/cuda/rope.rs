//! rope_freqs, rope on the cuda engine: PLACEHOLDER written by the lead so the crate compiles; the
//! topic's helper replaces it.

use super::CudaEngine;
use crate::engine::{EngineError, OpOutput};
use crate::ops::OpRequest;
use crate::ops::rope::RopeOp;

pub(super) fn execute(
    _engine: &CudaEngine,
    _req: &OpRequest,
    op: &RopeOp,
) -> Result<OpOutput, EngineError> {
    Err(EngineError::Unsupported(format!(
        "{} is not implemented on this engine yet",
        crate::ops::TopicOp::kind(op)
    )))
}
