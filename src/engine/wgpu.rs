//! placeholder while the wgpu engine is written
use super::{Engine, EngineError, EngineKind, OpOutput};
use crate::ops::OpRequest;
pub struct WgpuEngine;
impl WgpuEngine {
    pub fn probe() -> Result<Self, String> {
        Err("not built yet".into())
    }
}
impl Engine for WgpuEngine {
    fn kind(&self) -> EngineKind { EngineKind::Cpu }
    fn device(&self) -> String { String::new() }
    fn is_software(&self) -> bool { false }
    fn supports(&self, _req: &OpRequest) -> Result<(), EngineError> { Ok(()) }
    fn execute(&self, _req: &OpRequest) -> Result<OpOutput, EngineError> { Err(EngineError::Unavailable("x".into())) }
}
