//! kernelbook: the numerics inside large language models, run live on CUDA, wgpu and the CPU and
//! checked against an f64 reference. This library holds everything the `kernelbook` binary and the
//! tests share: dtypes, ops and their references, the engines, the check, the check suite and .npy I/O.

pub mod bench;
pub mod chart;
pub mod check;
pub mod compare;
pub mod dtype;
pub mod engine;
pub mod export;
pub mod files;
pub mod lesson;
pub mod npy;
pub mod ops;
pub mod suite;
pub mod ui;
pub mod views;

/// Kernel and shader sources, embedded so the binary is self-contained. One file per topic.
pub mod sources {
    /// CUDA C sources compiled by NVRTC at run time: (topic, file name, source).
    pub const CUDA: &[(&str, &str, &str)] = &[
        (
            "logits",
            "kernels/logits.cu",
            include_str!("../kernels/logits.cu"),
        ),
        (
            "softmax",
            "kernels/softmax.cu",
            include_str!("../kernels/softmax.cu"),
        ),
        (
            "gumbel",
            "kernels/gumbel.cu",
            include_str!("../kernels/gumbel.cu"),
        ),
        (
            "rope",
            "kernels/rope.cu",
            include_str!("../kernels/rope.cu"),
        ),
        (
            "tensor_parallel",
            "kernels/tensor_parallel.cu",
            include_str!("../kernels/tensor_parallel.cu"),
        ),
    ];
    /// WGSL sources compiled by naga at run time: (topic, file name, source). `copy` is the
    /// roofline `kernelbook bench` measures (not a lesson topic).
    pub const WGSL: &[(&str, &str, &str)] = &[
        (
            "copy",
            "shaders/copy.wgsl",
            include_str!("../shaders/copy.wgsl"),
        ),
        (
            "logits",
            "shaders/logits.wgsl",
            include_str!("../shaders/logits.wgsl"),
        ),
        (
            "softmax",
            "shaders/softmax.wgsl",
            include_str!("../shaders/softmax.wgsl"),
        ),
        (
            "gumbel",
            "shaders/gumbel.wgsl",
            include_str!("../shaders/gumbel.wgsl"),
        ),
        (
            "rope",
            "shaders/rope.wgsl",
            include_str!("../shaders/rope.wgsl"),
        ),
        (
            "tensor_parallel",
            "shaders/tensor_parallel.wgsl",
            include_str!("../shaders/tensor_parallel.wgsl"),
        ),
    ];

    /// The storage types F32, F16 and BF16 every kernel is written for (`kernels/dtype.cuh`):
    /// NVRTC has no standard headers, so [`cuda_program`] compiles it in front of each file.
    pub const CUDA_PRELUDE: &str = include_str!("../kernels/dtype.cuh");

    /// What NVRTC compiles for a topic: [`CUDA_PRELUDE`], then `kernels/<topic>.cu`.
    pub fn cuda_program(topic: &str) -> Option<String> {
        cuda(topic).map(|source| format!("{CUDA_PRELUDE}\n{source}"))
    }

    /// A topic's own kernel file, as the app shows it (without the prelude).
    pub fn cuda(topic: &str) -> Option<&'static str> {
        CUDA.iter()
            .find(|(t, _, _)| *t == topic)
            .map(|(_, _, s)| *s)
    }

    /// Special values and the f16/bf16 conversions every shader uses (`shaders/dtype.wgsl`):
    /// WGSL has no includes, so [`wgsl_program`] compiles it in front of each topic's shader.
    pub const WGSL_PRELUDE: &str = include_str!("../shaders/dtype.wgsl");

    /// What the engine compiles for a topic: [`WGSL_PRELUDE`], then `shaders/<topic>.wgsl`.
    pub fn wgsl_program(topic: &str) -> Option<String> {
        wgsl(topic).map(|source| format!("{WGSL_PRELUDE}\n{source}"))
    }

    /// A topic's own shader, as the app shows it (without the prelude).
    pub fn wgsl(topic: &str) -> Option<&'static str> {
        WGSL.iter()
            .find(|(t, _, _)| *t == topic)
            .map(|(_, _, s)| *s)
    }
}
