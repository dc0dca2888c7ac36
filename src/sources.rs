//! Kernel and shader sources, as the app shows them and the tests compile them. Each engine's topic
//! file embeds its own (`kernels/<topic>.cu`, `shaders/<topic>.wgsl`), so the binary is
//! self-contained and what the app shows is what ran; this module only looks them up.

use crate::engine::{cuda, wgpu};

/// The storage types every CUDA kernel is written for (`kernels/dtype.cuh`).
pub const CUDA_PRELUDE: &str = cuda::PRELUDE;

/// Special values and the f16/bf16 conversions every shader uses (`shaders/dtype.wgsl`).
pub const WGSL_PRELUDE: &str = wgpu::PRELUDE;

/// A topic's own kernel file (without the prelude).
pub fn cuda(topic: &str) -> Option<&'static str> {
    cuda::source(topic)
}

/// A topic's own shader (without the prelude); `copy` is the bench's copy shader.
pub fn wgsl(topic: &str) -> Option<&'static str> {
    wgpu::source(topic)
}

/// What NVRTC compiles for a topic: the prelude, then `kernels/<topic>.cu`.
pub fn cuda_program(topic: &str) -> Option<String> {
    cuda::program(topic)
}

/// What the wgpu engine compiles for a topic: the prelude, then `shaders/<topic>.wgsl`.
pub fn wgsl_program(topic: &str) -> Option<String> {
    wgpu::program(topic)
}

/// Every kernel file: (topic, file name, source).
pub fn cuda_files() -> impl Iterator<Item = (&'static str, String, &'static str)> {
    cuda::sources()
}

/// Every shader, the copy shader first: (topic, file name, source).
pub fn wgsl_files() -> impl Iterator<Item = (&'static str, String, &'static str)> {
    wgpu::sources()
}
