//! What the integration tests share: the engines, probed once for the whole test binary (every
//! module's tests run on parallel threads of one process), and the environment flags that turn a
//! missing tool into a failure instead of a skip (`scripts/test.sh` sets them).

use kernelbook::engine::Engine;
use kernelbook::engine::cpu::CpuEngine;
use kernelbook::engine::cuda::{self, CudaEngine};
use kernelbook::engine::wgpu::WgpuEngine;
use std::sync::OnceLock;

/// Whether the environment variable `name` is set to 1.
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim() == "1")
}

/// The CPU engine.
pub fn cpu() -> &'static CpuEngine {
    static ENGINE: OnceLock<CpuEngine> = OnceLock::new();
    ENGINE.get_or_init(CpuEngine::new)
}

/// The wgpu engine, or `None` (skip) without an adapter; a failure when
/// `KERNELBOOK_REQUIRE_WGPU=1`.
pub fn wgpu() -> Option<&'static WgpuEngine> {
    static ENGINE: OnceLock<Result<WgpuEngine, String>> = OnceLock::new();
    match ENGINE.get_or_init(WgpuEngine::probe) {
        Ok(engine) => Some(engine),
        Err(reason) => {
            assert!(
                !env_flag("KERNELBOOK_REQUIRE_WGPU"),
                "KERNELBOOK_REQUIRE_WGPU=1 but the wgpu engine is absent: {reason}"
            );
            println!("skipped wgpu: {reason}");
            None
        }
    }
}

/// The CUDA engine, or `None` (skip) without a usable GPU; a failure when
/// `KERNELBOOK_REQUIRE_CUDA=1`.
pub fn cuda() -> Option<&'static CudaEngine> {
    static ENGINE: OnceLock<Result<CudaEngine, String>> = OnceLock::new();
    match ENGINE.get_or_init(CudaEngine::probe) {
        Ok(engine) => Some(engine),
        Err(reason) => {
            assert!(
                !env_flag("KERNELBOOK_REQUIRE_CUDA"),
                "KERNELBOOK_REQUIRE_CUDA=1 but the CUDA engine is absent: {reason}"
            );
            println!("skipped cuda: {reason}");
            None
        }
    }
}

/// NVRTC present, or `false` (skip); a failure when `KERNELBOOK_REQUIRE_NVRTC=1`.
pub fn require_nvrtc() -> bool {
    match cuda::nvrtc_available() {
        Ok(()) => true,
        Err(reason) => {
            assert!(
                !env_flag("KERNELBOOK_REQUIRE_NVRTC"),
                "KERNELBOOK_REQUIRE_NVRTC=1 but {reason}"
            );
            println!("skipped: {reason}");
            false
        }
    }
}

/// Every engine available here: the CPU always, wgpu and CUDA when present.
pub fn engines() -> Vec<&'static dyn Engine> {
    let mut v: Vec<&'static dyn Engine> = vec![cpu()];
    if let Some(e) = wgpu() {
        v.push(e);
    }
    if let Some(e) = cuda() {
        v.push(e);
    }
    v
}
