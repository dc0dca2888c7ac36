//! The engine seam: one interface that every engine (CUDA, wgpu, CPU) implements for every op, and the
//! registry that probes them once at start-up.
//!
//! An engine either runs a request and returns an [`OpOutput`], or says why it cannot with an
//! [`EngineError`] the UI and CLI show verbatim. Nothing here panics on a missing device. The f64
//! reference is not an engine: it is `OpRequest::reference` in `src/ops`, the truth the engines are
//! checked against.

pub mod cpu;
pub mod cuda;
pub mod wgpu;

use crate::dtype::DType;
use crate::ops::{OpError, OpRequest, TopicOp};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use thiserror::Error;

/// The engines, in the order the UI shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Cuda,
    Wgpu,
    Cpu,
}

impl EngineKind {
    pub const ALL: [EngineKind; 3] = [EngineKind::Cuda, EngineKind::Wgpu, EngineKind::Cpu];

    /// Whether this engine has a simple and a fast kernel for `op`, so that the two differ (and a
    /// check, a benchmark or a roofline should run both). Each engine module says which ops it has
    /// a fast kernel for; the CPU engine has one implementation of everything.
    pub fn has_kernel_variants(self, op: &crate::ops::Op) -> bool {
        match self {
            EngineKind::Cuda => cuda::has_fast_kernel(op),
            EngineKind::Wgpu => wgpu::has_fast_kernel(op),
            EngineKind::Cpu => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Cuda => "cuda",
            EngineKind::Wgpu => "wgpu",
            EngineKind::Cpu => "cpu",
        }
    }

    /// The name people read in the UI: "CUDA", "wgpu", "CPU".
    pub fn display_name(self) -> &'static str {
        match self {
            EngineKind::Cuda => "CUDA",
            EngineKind::Wgpu => "wgpu",
            EngineKind::Cpu => "CPU",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EngineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cuda" => Ok(EngineKind::Cuda),
            "wgpu" => Ok(EngineKind::Wgpu),
            "cpu" => Ok(EngineKind::Cpu),
            other => Err(format!(
                "unknown engine '{other}' (expected cuda, wgpu or cpu)"
            )),
        }
    }
}

/// Why an engine did not produce a result. The message is for people: it names the cause.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EngineError {
    /// The engine cannot run at all on this machine (no driver, no adapter, no library).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The engine runs, but not this request (a dtype, a size beyond the device's limits).
    #[error("not supported here: {0}")]
    Unsupported(String),
    /// The request itself is invalid (the same for every engine).
    #[error("{0}")]
    BadRequest(#[from] OpError),
    /// Something went wrong while running: compile error, launch failure, device lost.
    #[error("failed: {0}")]
    Failed(String),
}

/// How `OpOutput::kernel_time` was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimingSource {
    /// CUDA events around the launches.
    CudaEvents,
    /// wgpu timestamp queries around the compute pass.
    GpuTimestamps,
    /// Host clock around submit and wait (includes dispatch overhead).
    WallClock,
}

/// What an engine returns: the values (f32, each exactly representable in `dtype`), and timings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpOutput {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub values: Vec<f32>,
    /// Auxiliary outputs, named as in the op's `Reference::aux` (e.g. the soft sample next to
    /// gumbel_softmax's hard one-hot). Empty for most ops.
    pub aux: Vec<AuxOutput>,
    /// Time the computation itself took on the device (kernels only, no transfers).
    #[serde(with = "duration_us")]
    pub kernel_time: Duration,
    pub timing: TimingSource,
    /// Wall time of the whole call: uploads, compile-cache lookups, kernels, downloads.
    #[serde(with = "duration_us")]
    pub total_time: Duration,
}

/// One auxiliary output of an engine.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuxOutput {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl OpOutput {
    /// The same output with named auxiliary outputs `(name, shape, values)`, in order.
    pub fn with_aux(mut self, aux: Vec<(String, Vec<usize>, Vec<f32>)>) -> Self {
        self.aux = aux
            .into_iter()
            .map(|(name, shape, values)| AuxOutput {
                name,
                shape,
                values,
            })
            .collect();
        self
    }

    /// An output with no auxiliary values.
    pub fn new(
        shape: Vec<usize>,
        dtype: DType,
        values: Vec<f32>,
        kernel_time: Duration,
        timing: TimingSource,
        total_time: Duration,
    ) -> Self {
        OpOutput {
            shape,
            dtype,
            values,
            aux: Vec::new(),
            kernel_time,
            timing,
            total_time,
        }
    }

    /// An auxiliary output by name.
    pub fn aux(&self, name: &str) -> Option<&AuxOutput> {
        self.aux.iter().find(|a| a.name == name)
    }
}

mod duration_us {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1e6)
    }
}

/// One engine. Implementations must be cheap to call repeatedly (compile once, cache pipelines) and
/// must never panic on a request: unsupported cases are `EngineError::Unsupported` with a reason.
pub trait Engine: Send + Sync {
    fn kind(&self) -> EngineKind;

    /// Human-readable device name, e.g. "NVIDIA H200 (sm_90)", "llvmpipe (software, Vulkan)".
    fn device(&self) -> String;

    /// Whether the device is a software rasteriser/CPU emulation rather than real GPU hardware.
    fn is_software(&self) -> bool;

    /// Whether this engine can run the request; `Err` says why not. Called before `execute`.
    fn supports(&self, req: &OpRequest) -> Result<(), EngineError>;

    /// Run a validated, non-empty request. Use [`Engine::run`], which validates and handles empty
    /// inputs, instead of calling this directly.
    fn execute(&self, req: &OpRequest) -> Result<OpOutput, EngineError>;

    /// Time one device-to-device copy of `bytes` bytes (the roofline `kernelbook bench` compares
    /// each op with: an op that reads its input once and writes its output once cannot beat it).
    fn copy_time(&self, bytes: usize) -> Result<Duration, EngineError> {
        let _ = bytes;
        Err(EngineError::Unsupported(
            "this engine cannot measure a copy".into(),
        ))
    }

    /// Validate the request, answer empty inputs without touching the device, and run.
    fn run(&self, req: &OpRequest) -> Result<OpOutput, EngineError> {
        req.op.validate()?;
        self.supports(req)?;
        let shape = req.output_shape();
        if req.is_empty() {
            let reference = req.reference_full();
            let mut out = OpOutput::new(
                shape,
                req.dtype,
                Vec::new(),
                Duration::ZERO,
                TimingSource::WallClock,
                Duration::ZERO,
            );
            out.aux = reference
                .aux
                .into_iter()
                .map(|a| AuxOutput {
                    name: a.name,
                    shape: a.shape,
                    values: a.values.iter().map(|&v| v as f32).collect(),
                })
                .collect();
            return Ok(out);
        }
        let out = self.execute(req)?;
        let expected: usize = shape.iter().product();
        if out.values.len() != expected {
            return Err(EngineError::Failed(format!(
                "{} returned {} values for an output of {expected} ({shape:?})",
                self.kind(),
                out.values.len(),
            )));
        }
        Ok(out)
    }
}

/// The request's op as its topic's own type `T`: what an engine's topic file runs. A request of
/// another topic (an engine's table pointing at the wrong file) is an error, not a panic.
pub(crate) fn topic_op<T: TopicOp>(req: &OpRequest) -> Result<&T, EngineError> {
    req.op.get::<T>().ok_or_else(|| {
        EngineError::Failed(format!(
            "{} is not an op of the file that was asked to run it ({})",
            req.op.kind(),
            std::any::type_name::<T>()
        ))
    })
}

/// An engine slot in the registry: ready, or absent with the reason.
pub enum Slot {
    Ready(Box<dyn Engine>),
    Absent { kind: EngineKind, reason: String },
}

impl Slot {
    pub fn kind(&self) -> EngineKind {
        match self {
            Slot::Ready(e) => e.kind(),
            Slot::Absent { kind, .. } => *kind,
        }
    }
}

/// The engines found on this machine, probed once.
pub struct Registry {
    slots: Vec<Slot>,
}

/// What `kernelbook backends` prints for one engine.
#[derive(Clone, Debug, Serialize)]
pub struct BackendInfo {
    pub engine: EngineKind,
    pub available: bool,
    pub device: Option<String>,
    pub software: bool,
    pub reason: Option<String>,
}

impl Registry {
    /// Probe every engine. Never panics: a missing driver or adapter becomes an `Absent` slot.
    pub fn probe() -> Self {
        Self::probe_only(&EngineKind::ALL)
    }

    /// Probe only the listed engines (the others are absent with "not requested").
    pub fn probe_only(kinds: &[EngineKind]) -> Self {
        let slots = EngineKind::ALL
            .into_iter()
            .map(|kind| {
                if !kinds.contains(&kind) {
                    return Slot::Absent {
                        kind,
                        reason: "not requested".into(),
                    };
                }
                let probed: Result<Box<dyn Engine>, String> = match kind {
                    EngineKind::Cuda => {
                        cuda::CudaEngine::probe().map(|e| Box::new(e) as Box<dyn Engine>)
                    }
                    EngineKind::Wgpu => {
                        wgpu::WgpuEngine::probe().map(|e| Box::new(e) as Box<dyn Engine>)
                    }
                    EngineKind::Cpu => Ok(Box::new(cpu::CpuEngine::new())),
                };
                match probed {
                    Ok(engine) => Slot::Ready(engine),
                    Err(reason) => Slot::Absent { kind, reason },
                }
            })
            .collect();
        Registry { slots }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub fn get(&self, kind: EngineKind) -> Result<&dyn Engine, EngineError> {
        match self.slots.iter().find(|s| s.kind() == kind) {
            Some(Slot::Ready(e)) => Ok(e.as_ref()),
            Some(Slot::Absent { reason, .. }) => Err(EngineError::Unavailable(reason.clone())),
            None => Err(EngineError::Unavailable("not probed".into())),
        }
    }

    pub fn backends(&self) -> Vec<BackendInfo> {
        self.slots
            .iter()
            .map(|s| match s {
                Slot::Ready(e) => BackendInfo {
                    engine: e.kind(),
                    available: true,
                    device: Some(e.device()),
                    software: e.is_software(),
                    reason: None,
                },
                Slot::Absent { kind, reason } => BackendInfo {
                    engine: *kind,
                    available: false,
                    device: None,
                    software: false,
                    reason: Some(reason.clone()),
                },
            })
            .collect()
    }
}
