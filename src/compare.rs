//! One request run on every engine of the registry and checked against the f64 reference: what an
//! op cell shows side by side. Plain data, computed off the UI thread (see `ui::worker`).

use crate::check::{self, CheckReport};
use crate::engine::{EngineError, EngineKind, OpOutput, Registry, Slot};
use crate::ops::{AuxReference, OpRequest};
use std::time::{Duration, Instant};

/// An engine's answer to one request.
#[derive(Clone, Debug)]
pub struct EngineRun {
    pub kind: EngineKind,
    /// The device name when the engine is present.
    pub device: Option<String>,
    pub software: bool,
    pub result: Result<(OpOutput, CheckReport), EngineError>,
}

/// A request, its reference and every engine's result, in `EngineKind::ALL` order.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub request: OpRequest,
    /// The f64 reference of the main output.
    pub reference: Vec<f64>,
    /// The f64 reference of each auxiliary output (`Reference::aux`), usually none.
    pub reference_aux: Vec<AuxReference>,
    pub runs: Vec<EngineRun>,
    /// Things worth knowing about the input (`OpRequest::notes`).
    pub notes: Vec<String>,
    /// Time to compute the f64 reference on the CPU.
    pub reference_time: Duration,
}

impl Comparison {
    pub fn run(&self, kind: EngineKind) -> Option<&EngineRun> {
        self.runs.iter().find(|r| r.kind == kind)
    }
}

/// Run `request` on every engine in the registry (absent ones report why) and check each result.
pub fn compare_all(registry: &Registry, request: OpRequest) -> Comparison {
    let start = Instant::now();
    let full = request.reference_full();
    let reference_time = start.elapsed();
    let runs = registry
        .slots()
        .iter()
        .map(|slot| match slot {
            Slot::Ready(engine) => EngineRun {
                kind: engine.kind(),
                device: Some(engine.device()),
                software: engine.is_software(),
                result: engine.run(&request).map(|out| {
                    let report = check::check_output(&request, &full, &out);
                    (out, report)
                }),
            },
            Slot::Absent { kind, reason } => EngineRun {
                kind: *kind,
                device: None,
                software: false,
                result: Err(EngineError::Unavailable(reason.clone())),
            },
        })
        .collect();
    let notes = request.notes();
    Comparison {
        request,
        reference: full.values,
        reference_aux: full.aux,
        runs,
        notes,
        reference_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::ops::{Op, Tensor};

    #[test]
    fn every_engine_is_reported_present_or_not() {
        let registry = Registry::probe_only(&[EngineKind::Cpu]);
        let req = OpRequest::new(
            Op::new(crate::ops::softmax::SoftmaxOp::Softmax {
                temperature: 1.0,
                stable: true,
            }),
            DType::F32,
            Tensor::row(vec![1.0, 2.0]),
        )
        .unwrap();
        let c = compare_all(&registry, req);
        assert_eq!(c.runs.len(), 3);
        let cpu = c.run(EngineKind::Cpu).unwrap();
        assert!(cpu.result.as_ref().is_ok_and(|(_, r)| r.passed));
        let cuda = c.run(EngineKind::Cuda).unwrap();
        assert!(matches!(&cuda.result, Err(EngineError::Unavailable(r)) if r == "not requested"));
    }
}
