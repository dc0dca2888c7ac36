//! The CUDA engine: the `.cu` files under `kernels/` compiled at start-up by NVRTC and run through the
//! CUDA driver API (cudarc, loaded dynamically so the binary runs on machines without CUDA).
//!
//! - [`CudaEngine::probe`] checks for the driver (`libcuda`) and NVRTC before any other CUDA call
//!   (cudarc panics when a library is missing), opens device 0, compiles every kernel file once for
//!   the device's architecture and loads the entry points. Any failure is a one-line reason, never a
//!   panic.
//! - [`compile`], [`compile_all`] and [`nvrtc_available`] need NVRTC only, not a GPU: the tests use
//!   them to prove every kernel compiles on a machine without a driver.
//! - [`CudaEngine::execute`] asks the request's topic for its [`plan::Plan`] (buffers, launches,
//!   streams, reads: plain data, which the tests' CUDA emulator runs too), runs it between two CUDA
//!   events (the kernel time) and decodes the downloads.
//!
//! Kernels are built with NVRTC's accurate defaults spelled out: no fast math, no flush-to-zero,
//! IEEE division and square root, and no fused multiply-add contraction, so the CUDA results follow
//! the f32 algorithm in `src/ops` operation for operation. When NVRTC knows the device's real
//! architecture the kernels are compiled straight to a CUBIN (machine code: no driver JIT, and no
//! "PTX too new for this driver" when NVRTC is newer than the driver); otherwise to PTX for the
//! newest virtual architecture NVRTC and the device share, which the driver JIT-compiles.
//!
//! Each topic's file here (`logits.rs`, `softmax.rs`, `gumbel.rs`, `rope.rs`,
//! `tensor_parallel.rs`) registers the topic and turns its requests into plans; none of them calls
//! cudarc. `CudaEngine::run_planned` executes a plan: it holds the engine's lock, records the
//! CUDA events and turns a cudarc panic into an error.

pub mod plan;

// Whether a rope request can take the fast kernel (the CUDA emulator's tests pick geometries by it).
pub use rope::fast_fits as rope_fast_fits;
// The plans of the kernel files' test entry points (`philox_kat`, `gumbel_words`).
pub use gumbel::{plan_gumbel_words, plan_philox};

use super::{Engine, EngineError, EngineKind, OpOutput, TimingSource};
use crate::dtype::DType;
use crate::ops::{KernelVariant, Op, OpRequest, Tensor};
use cudarc::driver::sys as dsys;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError, LaunchArgs, LaunchConfig,
    PushKernelArg,
};
use cudarc::nvrtc::sys as nsys;
use cudarc::nvrtc::{Ptx, result as nvrtc_result};
use plan::{Arg, Downloads, Elem, HostData, Init, Limits, Plan, Planned, Stream};
use std::any::Any;
use std::ffi::{CStr, CString, c_char, c_int};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Threads per block for every launch (`THREADS` in `kernels/softmax.cu`).
pub const THREADS: u32 = 256;

/// Most blocks one launch uses; the kernels' grid-stride loops cover the rest. 65535 is a valid
/// grid size on every CUDA device.
const MAX_BLOCKS: u32 = 65_535;

/// Largest element count the kernels index with 32-bit unsigned integers (with room for the
/// grid-stride step). `ops::MAX_ELEMENTS` (2^29) is well inside it.
pub(crate) const MAX_KERNEL_ELEMENTS: usize = (u32::MAX / 2) as usize;

/// A topic the CUDA engine runs: its kernel file, the entry points loaded when the engine starts
/// (a missing one makes the engine absent), which ops have a second (fast) kernel, requests the
/// start-up smoke test runs, and the host code that turns a request into launches.
pub(crate) struct CudaTopic {
    pub topic: &'static str,
    /// `kernels/<topic>.cu`, embedded.
    pub source: &'static str,
    /// Entry points [`CudaEngine::probe`] loads (the others are looked up when they run).
    pub entry_points: &'static [&'static str],
    /// Whether the topic has a simple and a fast kernel for this op.
    pub has_fast_kernel: fn(&Op) -> bool,
    /// Requests whose answer on the input [0, 0] is exactly [0.5, 0.5], run once at start-up on
    /// every dtype so that a device that cannot run the kernels is reported then, with the reason.
    pub smoke: fn() -> Vec<(Op, KernelVariant)>,
    /// The host code: a request as a [`Plan`] of launches (which the engine, and the tests'
    /// emulator, executes) on a device with these [`Limits`], and how to read its result.
    pub host: fn(&OpRequest, &Limits) -> Result<Planned, EngineError>,
}

crate::topic_registry! {
    mod {
        logits,
        softmax,
        gumbel,
        rope,
        tensor_parallel,
    }
    /// Every topic this engine runs, one line each.
    static TOPICS: [&'static CudaTopic] = TOPIC;
}

/// The registration of `topic`, if this engine runs it.
fn topic(topic: &str) -> Option<&'static CudaTopic> {
    TOPICS.iter().copied().find(|t| t.topic == topic)
}

/// The storage types F32, F16 and BF16 every kernel is written for (`kernels/dtype.cuh`): NVRTC
/// has no standard headers, so [`program`] compiles it in front of each file.
pub const PRELUDE: &str = include_str!("../../../kernels/dtype.cuh");

/// A topic's own kernel file, as the app shows it (without the prelude).
pub fn source(topic: &str) -> Option<&'static str> {
    self::topic(topic).map(|t| t.source)
}

/// Every embedded kernel file: (topic, file name, source).
pub fn sources() -> impl Iterator<Item = (&'static str, String, &'static str)> {
    TOPICS
        .iter()
        .map(|t| (t.topic, format!("kernels/{}.cu", t.topic), t.source))
}

/// What NVRTC compiles for a topic: [`PRELUDE`], then `kernels/<topic>.cu`.
pub fn program(topic: &str) -> Option<String> {
    source(topic).map(|s| format!("{PRELUDE}\n{s}"))
}

/// The plan of `req`: what the engine would launch on a device with `limits`, and how it reads the
/// result. The tests' CUDA emulator runs it.
pub fn plan(req: &OpRequest, limits: &Limits) -> Result<Planned, EngineError> {
    let topic = topic(req.op.kind().topic()).ok_or_else(|| {
        EngineError::Unsupported(format!(
            "the CUDA engine has no kernel for {}",
            req.op.kind()
        ))
    })?;
    (topic.host)(req, limits)
}

/// For topics without a smoke test.
pub(crate) fn no_smoke() -> Vec<(Op, KernelVariant)> {
    Vec::new()
}

/// For topics with one kernel per op.
pub(crate) fn one_kernel(_: &Op) -> bool {
    false
}

/// The NVRTC options every kernel is compiled with (plus `--gpu-architecture`).
pub const COMPILE_OPTIONS: &[&str] = &[
    "--fmad=false",
    "--ftz=false",
    "--prec-div=true",
    "--prec-sqrt=true",
];

// ------------------------------------------------------------------------------------------------
// NVRTC: usable without a GPU.
// ------------------------------------------------------------------------------------------------

const NO_DRIVER: &str = "libcuda.so.1 not found: no NVIDIA driver on this machine";
const NO_NVRTC: &str = "libnvrtc not found: install the CUDA toolkit or `pip install nvidia-cuda-nvrtc` and add its lib folder to LD_LIBRARY_PATH";

/// Whether this engine has a simple and a fast kernel for `op` (selected by
/// [`KernelVariant::Fast`]); each topic says.
pub fn has_fast_kernel(op: &Op) -> bool {
    topic(op.kind().topic()).is_some_and(|t| (t.has_fast_kernel)(op))
}

/// Whether the CUDA driver library can be loaded. Checked before any other driver call.
pub fn driver_available() -> Result<(), String> {
    // SAFETY: only tries to dlopen the library by its candidate names and closes it again.
    if unsafe { dsys::is_culib_present() } {
        Ok(())
    } else {
        Err(NO_DRIVER.to_string())
    }
}

/// Whether NVRTC (the run-time CUDA C++ compiler) can be loaded. Checked before any NVRTC call.
pub fn nvrtc_available() -> Result<(), String> {
    // SAFETY: only tries to dlopen the library by its candidate names and closes it again.
    if unsafe { nsys::is_culib_present() } {
        Ok(())
    } else {
        Err(NO_NVRTC.to_string())
    }
}

/// NVRTC's version, e.g. (13, 0).
pub fn nvrtc_version() -> Result<(i32, i32), String> {
    nvrtc_available()?;
    guard("nvrtcVersion", || {
        let (mut major, mut minor): (c_int, c_int) = (0, 0);
        // SAFETY: two valid out-pointers.
        unsafe { nsys::nvrtcVersion(&mut major, &mut minor) }
            .result()
            .map_err(|e| format!("nvrtcVersion failed: {}", nvrtc_error(e)))?;
        Ok((major, minor))
    })
}

/// The architectures this NVRTC can compile for, as numbers (75 = sm_75 / compute_75), ascending.
pub fn supported_archs() -> Result<Vec<i32>, String> {
    nvrtc_available()?;
    guard("nvrtcGetSupportedArchs", || {
        let mut count: c_int = 0;
        // SAFETY: a valid out-pointer.
        unsafe { nsys::nvrtcGetNumSupportedArchs(&mut count) }
            .result()
            .map_err(|e| format!("nvrtcGetNumSupportedArchs failed: {}", nvrtc_error(e)))?;
        let mut archs: Vec<c_int> = vec![0; count.max(0) as usize];
        if !archs.is_empty() {
            // SAFETY: `archs` has room for the `count` values NVRTC writes.
            unsafe { nsys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }
                .result()
                .map_err(|e| format!("nvrtcGetSupportedArchs failed: {}", nvrtc_error(e)))?;
        }
        archs.sort_unstable();
        Ok(archs)
    })
}

/// What NVRTC produced: PTX text (for a virtual `compute_XX` architecture, JIT-compiled by the
/// driver at load) or a CUBIN (for a real `sm_XX`, machine code loaded as is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Ptx,
    Cubin,
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageFormat::Ptx => "PTX",
            ImageFormat::Cubin => "CUBIN",
        })
    }
}

/// One kernel file compiled by NVRTC.
#[derive(Clone, Debug)]
pub struct CompiledKernel {
    /// File name shown to people, e.g. `kernels/softmax.cu`.
    pub file: String,
    /// The `--gpu-architecture` it was compiled for, e.g. `sm_90` or `compute_80`.
    pub arch: String,
    pub format: ImageFormat,
    /// The PTX text (without a trailing NUL) or the CUBIN bytes.
    pub image: Vec<u8>,
    /// Wall time of NVRTC's compile call.
    pub compile_time: Duration,
    /// NVRTC's log (warnings); empty when clean.
    pub log: String,
}

impl CompiledKernel {
    pub fn size(&self) -> usize {
        self.image.len()
    }

    /// The image as a module cudarc can load.
    fn to_module_image(&self) -> Result<Ptx, String> {
        match self.format {
            ImageFormat::Cubin => Ok(Ptx::from_binary(self.image.clone())),
            ImageFormat::Ptx => String::from_utf8(self.image.clone())
                .map(Ptx::from_src)
                .map_err(|_| format!("{}: NVRTC returned PTX that is not UTF-8", self.file)),
        }
    }
}

/// Destroys an NVRTC program when dropped, so every exit path frees it.
struct Program(nsys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: created by `create_program` and destroyed only here. A failure to free is ignored:
        // there is nothing useful to do about it.
        let _ = unsafe { nvrtc_result::destroy_program(self.0) };
    }
}

/// Compile one CUDA C++ source with NVRTC for `arch` (`compute_XX` gives PTX, `sm_XX` a CUBIN).
/// `file` names the source in error messages. Errors carry NVRTC's log; nothing here panics.
pub fn compile(file: &str, source: &str, arch: &str) -> Result<CompiledKernel, String> {
    nvrtc_available()?;
    let format = if arch.starts_with("sm_") {
        ImageFormat::Cubin
    } else if arch.starts_with("compute_") {
        ImageFormat::Ptx
    } else {
        return Err(format!(
            "{file}: unknown architecture '{arch}' (expected compute_XX or sm_XX)"
        ));
    };
    let src = CString::new(source).map_err(|_| format!("{file}: source contains a NUL byte"))?;
    let name = CString::new(file).map_err(|_| format!("file name {file:?} contains a NUL byte"))?;
    let mut options: Vec<String> = vec![format!("--gpu-architecture={arch}")];
    options.extend(COMPILE_OPTIONS.iter().map(|o| o.to_string()));

    guard("NVRTC", || {
        let prog = Program(
            nvrtc_result::create_program(&src, Some(&name))
                .map_err(|e| format!("{file}: nvrtcCreateProgram failed: {}", nvrtc_error(e)))?,
        );
        let started = Instant::now();
        // SAFETY: `prog` is a live program; the options are plain ASCII strings.
        let compiled = unsafe { nvrtc_result::compile_program(prog.0, &options) };
        let compile_time = started.elapsed();
        let log = relocate_log(&program_log(&prog), file, source);
        if let Err(e) = compiled {
            let log = if log.is_empty() {
                "(NVRTC gave no log)".to_string()
            } else {
                log
            };
            return Err(format!(
                "{file}: NVRTC could not compile it for {arch} ({}):\n{log}",
                nvrtc_error(e)
            ));
        }
        let image = match format {
            ImageFormat::Ptx => {
                // SAFETY: `prog` compiled successfully.
                let raw = unsafe { nvrtc_result::get_ptx(prog.0) }
                    .map_err(|e| format!("{file}: nvrtcGetPTX failed: {}", nvrtc_error(e)))?;
                let mut bytes: Vec<u8> = raw.into_iter().map(|c| c as u8).collect();
                while bytes.last() == Some(&0) {
                    bytes.pop();
                }
                bytes
            }
            ImageFormat::Cubin => get_cubin(&prog).map_err(|e| format!("{file}: {e}"))?,
        };
        Ok(CompiledKernel {
            file: file.to_string(),
            arch: arch.to_string(),
            format,
            image,
            compile_time,
            log,
        })
    })
}

/// Compile every embedded kernel file ([`sources`]) for `arch`, e.g. `compute_80` or `sm_90`.
/// Where compiled kernels are kept between runs: `$KERNELBOOK_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/kernelbook/cuda`, else `~/.cache/kernelbook/cuda`; `None` when none is known.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = var("KERNELBOOK_CACHE_DIR") {
        return Some(dir.into());
    }
    let base = var("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| var("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
    Some(base.join("kernelbook").join("cuda"))
}

/// FNV-1a, 64 bits: a stable hash (the same on every run and build) for cache keys.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff; // separates the parts: ("ab", "c") differs from ("a", "bc")
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// [`compile`], through the on-disk cache: the key is the source, the compile options, the
/// architecture, the NVRTC version and the driver's CUDA version, so any change recompiles. A
/// cache that cannot be read or written only costs the compile; it is never an error. Returns the
/// kernel and whether it came from the cache (its `compile_time` is then the time to read it).
pub fn compile_cached(
    file: &str,
    source: &str,
    arch: &str,
) -> Result<(CompiledKernel, bool), String> {
    match cache_dir() {
        Some(dir) => compile_cached_in(&dir, file, source, arch),
        None => compile(file, source, arch).map(|k| (k, false)),
    }
}

/// [`compile_cached`] with the cache in `dir`.
pub fn compile_cached_in(
    dir: &std::path::Path,
    file: &str,
    source: &str,
    arch: &str,
) -> Result<(CompiledKernel, bool), String> {
    let nvrtc = nvrtc_version()
        .map(|(a, b)| format!("{a}.{b}"))
        .unwrap_or_default();
    let driver = if driver_available().is_ok() {
        driver_version()
    } else {
        "none".into()
    };
    let options = COMPILE_OPTIONS.join(" ");
    let key = fnv1a(&[
        source.as_bytes(),
        options.as_bytes(),
        arch.as_bytes(),
        nvrtc.as_bytes(),
        driver.as_bytes(),
    ]);
    let stem = std::path::Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "kernel".into());
    let format = if arch.starts_with("sm_") {
        ImageFormat::Cubin
    } else {
        ImageFormat::Ptx
    };
    let ext = match format {
        ImageFormat::Cubin => "cubin",
        ImageFormat::Ptx => "ptx",
    };
    let path = dir.join(format!("{stem}-{arch}-{key:016x}.{ext}"));
    let started = Instant::now();
    if let Ok(image) = std::fs::read(&path)
        && !image.is_empty()
    {
        return Ok((
            CompiledKernel {
                file: file.to_string(),
                arch: arch.to_string(),
                format,
                image,
                compile_time: started.elapsed(),
                log: String::new(),
            },
            true,
        ));
    }
    let kernel = compile(file, source, arch)?;
    // Write to a temporary name and rename: a reader never sees half a file.
    if std::fs::create_dir_all(dir).is_ok() {
        let tmp = path.with_extension(format!("{ext}.{}.tmp", std::process::id()));
        if std::fs::write(&tmp, &kernel.image).is_ok() && std::fs::rename(&tmp, &path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok((kernel, false))
}

pub fn compile_all(arch: &str) -> Result<Vec<CompiledKernel>, String> {
    TOPICS
        .iter()
        .map(|t| {
            compile(
                &format!("kernels/{}.cu", t.topic),
                &program(t.topic).unwrap_or_default(),
                arch,
            )
        })
        .collect()
}

/// NVRTC numbers the lines of the whole program it was given. A topic's program is
/// `kernels/dtype.cuh` then a newline then `kernels/<topic>.cu` ([`program`]), so
/// `file(N)` in the log is turned back into the line of the file a person would open:
/// `kernels/dtype.cuh(N)` inside the prelude, `file(N - prelude lines)` after it. Logs of other
/// sources are returned as they are.
fn relocate_log(log: &str, file: &str, source: &str) -> String {
    if !source.starts_with(PRELUDE) {
        return log.to_string();
    }
    let prelude_lines = PRELUDE.matches('\n').count() + 1;
    let marker = format!("{file}(");
    let mut out = String::with_capacity(log.len());
    let mut rest = log;
    while let Some(at) = rest.find(&marker) {
        out.push_str(&rest[..at]);
        let after = &rest[at + marker.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[..digits].parse::<usize>() {
            Ok(line) if after[digits..].starts_with(')') => {
                if line > prelude_lines {
                    out.push_str(&format!("{file}({})", line - prelude_lines));
                } else {
                    out.push_str(&format!("kernels/dtype.cuh({line})"));
                }
                rest = &after[digits + 1..];
            }
            _ => {
                out.push_str(&marker);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn get_cubin(prog: &Program) -> Result<Vec<u8>, String> {
    let mut size: usize = 0;
    // SAFETY: `prog` compiled successfully; a valid out-pointer.
    unsafe { nsys::nvrtcGetCUBINSize(prog.0, &mut size) }
        .result()
        .map_err(|e| format!("nvrtcGetCUBINSize failed: {}", nvrtc_error(e)))?;
    if size == 0 {
        return Err("NVRTC produced an empty CUBIN".into());
    }
    let mut bytes = vec![0u8; size];
    // SAFETY: `bytes` holds the `size` bytes NVRTC writes.
    unsafe { nsys::nvrtcGetCUBIN(prog.0, bytes.as_mut_ptr() as *mut c_char) }
        .result()
        .map_err(|e| format!("nvrtcGetCUBIN failed: {}", nvrtc_error(e)))?;
    Ok(bytes)
}

fn program_log(prog: &Program) -> String {
    // SAFETY: `prog` is a live program.
    match unsafe { nvrtc_result::get_program_log(prog.0) } {
        Ok(raw) => {
            let bytes: Vec<u8> = raw
                .into_iter()
                .take_while(|&c| c != 0)
                .map(|c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).trim().to_string()
        }
        Err(e) => format!("(could not read the NVRTC log: {})", nvrtc_error(e)),
    }
}

fn nvrtc_error(e: nvrtc_result::NvrtcError) -> String {
    // SAFETY: nvrtcGetErrorString returns a static C string (or null).
    let ptr = unsafe { nsys::nvrtcGetErrorString(e.0) };
    if ptr.is_null() {
        format!("{:?}", e.0)
    } else {
        // SAFETY: non-null, NUL-terminated, static.
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }
}

/// Run `f`, turning a panic inside cudarc (a missing symbol, an internal unwrap) into an error.
fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(format!(
            "{what} panicked: {}",
            panic_message(payload.as_ref())
        )),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

// ------------------------------------------------------------------------------------------------
// The engine.
// ------------------------------------------------------------------------------------------------

/// How one kernel file was built on this device (for the UI's "compiled for sm_90 in 42 ms").
#[derive(Clone, Debug)]
pub struct BuildInfo {
    pub file: String,
    pub arch: String,
    pub format: ImageFormat,
    pub bytes: usize,
    pub compile_time: Duration,
    /// NVRTC warnings, if any.
    pub log: String,
}

/// The CUDA engine on device 0. Probe once with [`CudaEngine::probe`]; share freely (`Send + Sync`).
pub struct CudaEngine {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// Every kernel file's module, by topic.
    modules: Vec<(&'static str, Arc<cudarc::driver::CudaModule>)>,
    device: String,
    compute_capability: (i32, i32),
    max_blocks: u32,
    builds: Vec<BuildInfo>,
    /// Serialises device work: one request at a time on the stream, so the events around a launch
    /// time that launch alone.
    lock: Mutex<()>,
}

impl CudaEngine {
    /// Open device 0 and compile every kernel. `Err` is a one-line reason the engine is absent.
    pub fn probe() -> Result<Self, String> {
        guard("CUDA probe", Self::probe_inner)
    }

    fn probe_inner() -> Result<Self, String> {
        driver_available()?;
        nvrtc_available()?;
        let ctx = CudaContext::new(0).map_err(|e| match e.0 {
            dsys::CUresult::CUDA_ERROR_NO_DEVICE => {
                "no CUDA device: the NVIDIA driver is installed but sees no GPU".to_string()
            }
            _ => format!(
                "could not open CUDA device 0 (driver supports CUDA {}): {}",
                driver_version(),
                driver_error(&e)
            ),
        })?;
        let name = ctx
            .name()
            .map_err(|e| format!("could not read the device name: {}", driver_error(&e)))?;
        let (major, minor) = ctx.compute_capability().map_err(|e| {
            format!(
                "could not read the compute capability: {}",
                driver_error(&e)
            )
        })?;
        let max_grid_x = ctx
            .attribute(dsys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X)
            .map_err(|e| format!("could not read the maximum grid size: {}", driver_error(&e)))?;
        let max_blocks = (max_grid_x.max(1) as u32).min(MAX_BLOCKS);
        let targets = compile_targets(major, minor)?;
        let stream = ctx.default_stream();

        let mut builds = Vec::new();
        let mut modules = Vec::new();
        for t in TOPICS {
            let file = format!("kernels/{}.cu", t.topic);
            let source = program(t.topic).unwrap_or_default();
            let (kernel, module) = load_file(&ctx, &file, &source, &targets)?;
            builds.push(BuildInfo {
                file: kernel.file.clone(),
                arch: kernel.arch.clone(),
                format: kernel.format,
                bytes: kernel.size(),
                compile_time: kernel.compile_time,
                log: kernel.log.clone(),
            });
            for name in t.entry_points {
                module.load_function(name).map_err(|e| {
                    format!("{file}: entry point {name} not found: {}", driver_error(&e))
                })?;
            }
            modules.push((t.topic, module));
        }
        let engine = CudaEngine {
            device: format!("{} · sm_{major}{minor}", name.trim()),
            ctx,
            stream,
            modules,
            compute_capability: (major, minor),
            max_blocks,
            builds,
            lock: Mutex::new(()),
        };
        engine.smoke_test()?;
        Ok(engine)
    }

    /// Run every entry point once on an input whose answer is exact (sigmoid(0) = 0.5,
    /// softmax([0, 0]) = [0.5, 0.5], with the simple and the fast softmax kernel), so a device that
    /// cannot run the kernels is reported at probe time with the reason, not at the first request.
    fn smoke_test(&self) -> Result<(), String> {
        for (op, kernel) in TOPICS.iter().flat_map(|t| (t.smoke)()) {
            for dtype in DType::ALL {
                let what = format!("{} ({kernel} kernel) {dtype}", op.kind());
                let req = OpRequest::new(op.clone(), dtype, Tensor::row(vec![0.0, 0.0]))
                    .map_err(|e| format!("smoke test {what}: {e}"))?
                    .with_kernel(kernel);
                let out = self
                    .execute(&req)
                    .map_err(|e| format!("smoke test {what} on {}: {e}", self.device))?;
                if out.values != [0.5, 0.5] {
                    return Err(format!(
                        "smoke test {what} on {}: expected [0.5, 0.5], got {:?}",
                        self.device, out.values
                    ));
                }
            }
        }
        Ok(())
    }

    /// Compute capability (major, minor), e.g. (9, 0).
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// How each kernel file was compiled at probe time.
    pub fn builds(&self) -> &[BuildInfo] {
        &self.builds
    }

    /// The kernel `name` from `kernels/<topic>.cu`.
    fn function(&self, topic: &str, name: &str) -> Result<CudaFunction, EngineError> {
        let module = self
            .modules
            .iter()
            .find(|(t, _)| *t == topic)
            .map(|(_, m)| m)
            .ok_or_else(|| EngineError::Failed(format!("kernels/{topic}.cu is not loaded")))?;
        module.load_function(name).map_err(|e| {
            EngineError::Failed(format!(
                "kernels/{topic}.cu: entry point {name} not found: {}",
                driver_error(&e)
            ))
        })
    }

    /// Run `launch` (which enqueues work on the engine's stream, and makes it wait for any other
    /// stream it used) between two CUDA events, holding the engine's lock; returns the result of
    /// `finish` and the time between the events. Uploads belong in `setup`; `finish` runs after
    /// the end event has completed (untimed work, downloads). A cudarc panic becomes
    /// `EngineError::Failed`.
    fn timed<S, R>(
        &self,
        setup: impl FnOnce(&Arc<CudaStream>) -> Result<S, EngineError>,
        launch: impl FnOnce(&Arc<CudaStream>, &mut S) -> Result<(), EngineError>,
        finish: impl FnOnce(&Arc<CudaStream>, S) -> Result<R, EngineError>,
    ) -> Result<(R, Duration), EngineError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let ran = catch_unwind(AssertUnwindSafe(|| {
            let stream = &self.stream;
            let mut state = setup(stream)?;
            let timing = Some(dsys::CUevent_flags::CU_EVENT_DEFAULT);
            let start = stream
                .record_event(timing)
                .map_err(failed("record the start event"))?;
            launch(stream, &mut state)?;
            let end = stream
                .record_event(timing)
                .map_err(failed("record the end event"))?;
            let ms = start.elapsed_ms(&end).map_err(failed("run the kernel"))?;
            let out = finish(stream, state)?;
            stream
                .synchronize()
                .map_err(failed("synchronise after the download"))?;
            Ok((out, Duration::from_secs_f64(f64::from(ms.max(0.0)) / 1e3)))
        }));
        match ran {
            Ok(r) => r,
            Err(payload) => Err(EngineError::Failed(format!(
                "cudarc panicked: {}",
                panic_message(payload.as_ref())
            ))),
        }
    }

    /// (free, total) device memory in bytes.
    pub fn memory(&self) -> Result<(usize, usize), EngineError> {
        self.ctx
            .mem_get_info()
            .map_err(failed("query device memory"))
    }

    /// What the topics' host code may assume of this device.
    pub fn limits(&self) -> Limits {
        Limits {
            max_blocks: self.max_blocks,
        }
    }

    /// Run a plan: check it, check it fits the free memory, run it ([`CudaEngine::run_plan`]) and
    /// decode the downloads. Returns the result and the kernel time.
    fn run_planned<T>(&self, planned: Planned<T>) -> Result<(T, Duration), EngineError> {
        let Planned { plan, decode } = planned;
        plan.validate()?;
        let needed = plan.device_bytes();
        let (free, total) = self.memory()?;
        if needed > free {
            return Err(EngineError::Unsupported(format!(
                "this request needs {} of device memory, but only {} of {} is free",
                mib(needed),
                mib(free),
                mib(total)
            )));
        }
        let (downloads, kernel_time) = self.run_plan(&plan)?;
        Ok((decode(&downloads)?, kernel_time))
    }

    /// Upload the plan's buffers, run its launches (rank streams joined with events as [`plan`]
    /// describes), the timed ones between two CUDA events, and download the buffers it reads.
    /// Returns the downloads and the time between the events.
    fn run_plan(&self, plan: &Plan) -> Result<(Downloads, Duration), EngineError> {
        let mut functions: Vec<(&str, CudaFunction)> = Vec::new();
        for l in &plan.launches {
            if !functions.iter().any(|(n, _)| *n == l.entry) {
                functions.push((&l.entry, self.function(plan.topic, &l.entry)?));
            }
        }
        let function = |name: &str| {
            functions
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| f)
                .ok_or_else(|| EngineError::Failed(format!("kernel {name} is not loaded")))
        };
        let (timed, after) = plan.launches.split_at(plan.timed());
        let (downloads, time) = self.timed(
            |stream| {
                let bufs = plan
                    .buffers
                    .iter()
                    .map(|b| DevBuf::new(stream, b).map(Some))
                    .collect::<Result<Vec<_>, _>>()?;
                let ranks = (0..plan.ranks)
                    .map(|_| {
                        self.ctx
                            .new_stream()
                            .map_err(failed("create a rank's stream"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((bufs, Streams::new(ranks)))
            },
            |main, (bufs, streams)| {
                for l in timed {
                    let stream = streams.for_launch(main, l)?;
                    launch(stream, function(&l.entry)?, l, bufs)?;
                }
                // The end event waits for every rank, and untimed work after it on a rank waits
                // for the end event.
                streams.join_all(main)?;
                streams.behind.fill(true);
                Ok(())
            },
            |main, (mut bufs, mut streams)| {
                for l in after {
                    let stream = streams.for_launch(main, l)?;
                    launch(stream, function(&l.entry)?, l, &mut bufs)?;
                }
                streams.join_all(main)?;
                let mut downloads = Downloads::default();
                for &id in &plan.read {
                    let buf = bufs.get(id).and_then(Option::as_ref).ok_or_else(|| {
                        EngineError::Failed(format!("buffer {id} is not available"))
                    })?;
                    let mut data = buf.download(main)?;
                    truncate(&mut data, plan.buffers[id].content_len());
                    downloads.buffers.push((id, data));
                }
                Ok(downloads)
            },
        )?;
        Ok((downloads, time))
    }
}

/// The rank streams of a plan's run and how far each is joined with the main stream.
struct Streams {
    ranks: Vec<Arc<CudaStream>>,
    /// Rank streams with work the main stream has not waited for.
    pending: Vec<bool>,
    /// Rank streams that have not yet waited for the main stream's latest work (the uploads, a
    /// collective).
    behind: Vec<bool>,
}

impl Streams {
    fn new(ranks: Vec<Arc<CudaStream>>) -> Streams {
        let k = ranks.len();
        Streams {
            ranks,
            pending: vec![false; k],
            behind: vec![true; k],
        }
    }

    /// The stream `l` runs on, after the waits it needs: a rank stream first waits for the main
    /// stream's work (once after each main-stream launch), the main stream for every rank with
    /// work in flight.
    fn for_launch<'s>(
        &'s mut self,
        main: &'s Arc<CudaStream>,
        l: &plan::Launch,
    ) -> Result<&'s Arc<CudaStream>, EngineError> {
        match l.stream {
            Stream::Rank(r) => {
                let stream = self
                    .ranks
                    .get(r)
                    .ok_or_else(|| EngineError::Failed(format!("{l}: no stream for rank {r}")))?;
                if self.behind[r] {
                    stream
                        .join(main)
                        .map_err(failed("make a rank wait for the main stream"))?;
                    self.behind[r] = false;
                }
                self.pending[r] = true;
                Ok(stream)
            }
            Stream::Main => {
                self.join_all(main)?;
                self.behind.fill(true);
                Ok(main)
            }
        }
    }

    /// The main stream waits for every rank with work in flight.
    fn join_all(&mut self, main: &Arc<CudaStream>) -> Result<(), EngineError> {
        for (r, p) in self.pending.iter_mut().enumerate() {
            if *p {
                main.join(&self.ranks[r])
                    .map_err(failed("join a rank's stream"))?;
                *p = false;
            }
        }
        Ok(())
    }
}

/// A device buffer of one of the plan's element types.
enum DevBuf {
    F32(CudaSlice<f32>),
    U16(CudaSlice<u16>),
    U32(CudaSlice<u32>),
    I32(CudaSlice<i32>),
    U8(CudaSlice<u8>),
}

impl DevBuf {
    /// Allocate (and fill) a plan's buffer on `stream`; an empty one gets one element.
    fn new(stream: &Arc<CudaStream>, b: &plan::Buffer) -> Result<DevBuf, EngineError> {
        let what = &b.what;
        let up = |e: DriverError| {
            EngineError::Failed(format!("could not upload {what}: {}", driver_error(&e)))
        };
        let alloc = |e: DriverError| {
            EngineError::Failed(format!("could not allocate {what}: {}", driver_error(&e)))
        };
        let zeros = |elem: Elem, len: usize| -> Result<DevBuf, EngineError> {
            let len = len.max(1);
            Ok(match elem {
                Elem::F32 => DevBuf::F32(stream.alloc_zeros(len).map_err(alloc)?),
                Elem::U16 => DevBuf::U16(stream.alloc_zeros(len).map_err(alloc)?),
                Elem::U32 => DevBuf::U32(stream.alloc_zeros(len).map_err(alloc)?),
                Elem::I32 => DevBuf::I32(stream.alloc_zeros(len).map_err(alloc)?),
                Elem::U8 => DevBuf::U8(stream.alloc_zeros(len).map_err(alloc)?),
            })
        };
        match &b.init {
            Init::Zeros(elem, len) => zeros(*elem, *len),
            Init::Upload(data) if data.is_empty() => zeros(data.elem(), 1),
            Init::Upload(HostData::F32(v)) => Ok(DevBuf::F32(stream.clone_htod(v).map_err(up)?)),
            Init::Upload(HostData::U16(v)) => Ok(DevBuf::U16(stream.clone_htod(v).map_err(up)?)),
            Init::Upload(HostData::U32(v)) => Ok(DevBuf::U32(stream.clone_htod(v).map_err(up)?)),
            Init::Upload(HostData::I32(v)) => Ok(DevBuf::I32(stream.clone_htod(v).map_err(up)?)),
            Init::Upload(HostData::U8(v)) => Ok(DevBuf::U8(stream.clone_htod(v).map_err(up)?)),
        }
    }

    fn download(&self, stream: &Arc<CudaStream>) -> Result<HostData, EngineError> {
        let down = failed("download an output");
        Ok(match self {
            DevBuf::F32(s) => HostData::F32(stream.clone_dtoh(s).map_err(down)?),
            DevBuf::U16(s) => HostData::U16(stream.clone_dtoh(s).map_err(down)?),
            DevBuf::U32(s) => HostData::U32(stream.clone_dtoh(s).map_err(down)?),
            DevBuf::I32(s) => HostData::I32(stream.clone_dtoh(s).map_err(down)?),
            DevBuf::U8(s) => HostData::U8(stream.clone_dtoh(s).map_err(down)?),
        })
    }
}

/// Keep the first `len` values (an empty buffer was allocated with one element).
fn truncate(data: &mut HostData, len: usize) {
    match data {
        HostData::F32(v) => v.truncate(len),
        HostData::U16(v) => v.truncate(len),
        HostData::U32(v) => v.truncate(len),
        HostData::I32(v) => v.truncate(len),
        HostData::U8(v) => v.truncate(len),
    }
}

/// Push a buffer the kernel reads.
fn arg_in<'a, 'b: 'a>(launch: &mut LaunchArgs<'a>, buf: &'b DevBuf) {
    match buf {
        DevBuf::F32(s) => launch.arg(s),
        DevBuf::U16(s) => launch.arg(s),
        DevBuf::U32(s) => launch.arg(s),
        DevBuf::I32(s) => launch.arg(s),
        DevBuf::U8(s) => launch.arg(s),
    };
}

/// Push a buffer the kernel writes.
fn arg_out<'a, 'b: 'a>(launch: &mut LaunchArgs<'a>, buf: &'b mut DevBuf) {
    match buf {
        DevBuf::F32(s) => launch.arg(s),
        DevBuf::U16(s) => launch.arg(s),
        DevBuf::U32(s) => launch.arg(s),
        DevBuf::I32(s) => launch.arg(s),
        DevBuf::U8(s) => launch.arg(s),
    };
}

/// Launch `l` of a plan on `stream` with the run's buffers. The buffers the kernel writes are
/// taken out while it is pushed (cudarc records their writes), then put back.
fn launch(
    stream: &Arc<CudaStream>,
    function: &CudaFunction,
    l: &plan::Launch,
    bufs: &mut [Option<DevBuf>],
) -> Result<(), EngineError> {
    let missing = |id: usize| EngineError::Failed(format!("{l}: buffer {id} is not available"));
    let mut outs: Vec<(usize, DevBuf)> = Vec::new();
    for a in &l.args {
        if let Arg::Out(id) = *a {
            let buf = bufs.get_mut(id).and_then(Option::take).ok_or(missing(id))?;
            outs.push((id, buf));
        }
    }
    let result = (|| {
        let mut out_refs = outs.iter_mut();
        let mut builder = stream.launch_builder(function);
        for a in &l.args {
            match a {
                Arg::In(id) => arg_in(
                    &mut builder,
                    bufs.get(*id).and_then(Option::as_ref).ok_or(missing(*id))?,
                ),
                Arg::Out(id) => {
                    let (_, buf) = out_refs.next().ok_or(missing(*id))?;
                    arg_out(&mut builder, buf);
                }
                Arg::U32(v) => {
                    builder.arg(v);
                }
                Arg::I32(v) => {
                    builder.arg(v);
                }
                Arg::F32(v) => {
                    builder.arg(v);
                }
                Arg::U64(v) => {
                    builder.arg(v);
                }
                Arg::I64(v) => {
                    builder.arg(v);
                }
            }
        }
        let cfg = LaunchConfig {
            grid_dim: l.grid,
            block_dim: l.block,
            shared_mem_bytes: l.shared_bytes,
        };
        // SAFETY: the plan's host code matched the arguments to the kernel's parameters (types,
        // order, buffer sizes; the CUDA emulator's tests check every launch of every plan against
        // the kernel's signature and run it with bounds checking); `Plan::validate` checked every
        // buffer exists.
        unsafe { builder.launch(cfg) }
            .map(drop)
            .map_err(|e| EngineError::Failed(format!("could not launch {l}: {}", driver_error(&e))))
    })();
    for (id, buf) in outs {
        bufs[id] = Some(buf);
    }
    result
}

impl Engine for CudaEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Cuda
    }

    fn device(&self) -> String {
        self.device.clone()
    }

    fn is_software(&self) -> bool {
        false
    }

    /// `cuMemcpyDtoDAsync` of `bytes` between two device buffers, between CUDA events.
    fn copy_time(&self, bytes: usize) -> Result<Duration, EngineError> {
        let n = bytes.max(1);
        let ((), time) = self.timed(
            |stream| {
                let src = stream
                    .alloc_zeros::<u8>(n)
                    .map_err(failed("allocate the copy source"))?;
                let dst = stream
                    .alloc_zeros::<u8>(n)
                    .map_err(failed("allocate the copy destination"))?;
                Ok((src, dst))
            },
            |stream, (src, dst)| {
                stream
                    .memcpy_dtod(src, dst)
                    .map_err(failed("copy device to device"))
            },
            |_, _| Ok(()),
        )?;
        Ok(time)
    }

    /// Sizes are checked when the request is planned, and memory before the plan runs.
    fn supports(&self, _req: &OpRequest) -> Result<(), EngineError> {
        Ok(())
    }

    fn execute(&self, req: &OpRequest) -> Result<OpOutput, EngineError> {
        let started = Instant::now();
        let topic = topic(req.op.kind().topic()).ok_or_else(|| {
            EngineError::Unsupported(format!(
                "the CUDA engine has no kernel for {}",
                req.op.kind()
            ))
        })?;
        let planned = guard_engine("plan the launches", || (topic.host)(req, &self.limits()))?;
        let (mut out, kernel_time) = self.run_planned(planned)?;
        out.kernel_time = kernel_time;
        out.timing = TimingSource::CudaEvents;
        out.total_time = started.elapsed();
        Ok(out)
    }
}

/// Run host code that might panic (a bug) as an error instead.
fn guard_engine<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(EngineError::Failed(format!(
            "{what} panicked: {}",
            panic_message(payload.as_ref())
        ))),
    }
}

/// The `--gpu-architecture` values to try for a device, best first: the real architecture (a
/// CUBIN) and its virtual one (PTX) when NVRTC knows it, else PTX for the newest virtual
/// architecture not newer than the device (the driver JIT-compiles it forward).
fn compile_targets(major: i32, minor: i32) -> Result<Vec<String>, String> {
    let cc = major * 10 + minor;
    let archs = supported_archs()?;
    if archs.contains(&cc) {
        return Ok(vec![format!("sm_{cc}"), format!("compute_{cc}")]);
    }
    match archs.iter().copied().filter(|&a| a <= cc).max() {
        Some(best) => Ok(vec![format!("compute_{best}")]),
        None => {
            let (maj, min) = nvrtc_version().unwrap_or((0, 0));
            Err(format!(
                "NVRTC {maj}.{min} cannot compile for this GPU (sm_{cc}); it supports {}",
                archs
                    .iter()
                    .map(|a| format!("sm_{a}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
}

/// Compile one kernel file for the first target that compiles and loads; the error lists every try.
fn load_file(
    ctx: &Arc<CudaContext>,
    file: &str,
    source: &str,
    targets: &[String],
) -> Result<(CompiledKernel, Arc<cudarc::driver::CudaModule>), String> {
    let mut tries = Vec::new();
    for arch in targets {
        // The probe's reason is one line: keep NVRTC's error lines, drop the source excerpts.
        let (kernel, _cached) = compile_cached(file, source, arch).map_err(|e| one_line(&e))?;
        let image = kernel.to_module_image()?;
        match ctx.load_module(image) {
            Ok(module) => return Ok((kernel, module)),
            Err(e) => {
                let hint = match e.0 {
                    dsys::CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION => format!(
                        " (NVRTC {} is newer than the driver, which supports CUDA {})",
                        nvrtc_version()
                            .map(|(a, b)| format!("{a}.{b}"))
                            .unwrap_or_else(|_| "?".into()),
                        driver_version()
                    ),
                    _ => String::new(),
                };
                tries.push(format!(
                    "{} for {arch}: {}{hint}",
                    kernel.format,
                    driver_error(&e)
                ));
            }
        }
    }
    Err(format!(
        "{file}: the driver could not load the compiled kernels: {}",
        tries.join("; ")
    ))
}

/// A multi-line compile error as one line: the first line, then NVRTC's `error` lines.
fn one_line(message: &str) -> String {
    let mut lines = message.lines();
    let mut parts: Vec<&str> = lines.next().into_iter().collect();
    parts.extend(lines.map(str::trim).filter(|l| l.contains("error")));
    parts.join(" ")
}

/// The CUDA version the driver supports, e.g. "13.0".
fn driver_version() -> String {
    let mut v: c_int = 0;
    // SAFETY: a valid out-pointer; only called once the driver library is known to be present.
    match unsafe { dsys::cuDriverGetVersion(&mut v) }.result() {
        Ok(()) => format!("{}.{}", v / 1000, (v % 1000) / 10),
        Err(_) => "?".to_string(),
    }
}

/// "CUDA_ERROR_OUT_OF_MEMORY: out of memory".
fn driver_error(e: &DriverError) -> String {
    let name = e
        .error_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
    match e.error_string() {
        Ok(s) => format!("{name}: {}", s.to_string_lossy()),
        Err(_) => name,
    }
}

/// Map a driver error to `EngineError::Failed`, saying what was being done.
fn failed(what: &'static str) -> impl Fn(DriverError) -> EngineError {
    move |e| EngineError::Failed(format!("CUDA could not {what}: {}", driver_error(&e)))
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_point_into_the_file_a_person_opens() {
        let program = program("softmax").unwrap();
        let prelude = PRELUDE.matches('\n').count() + 1;
        // Program line prelude + 3 is line 3 of softmax.cu; line 5 is in dtype.cuh.
        let log = format!(
            "kernels/softmax.cu({}): error: x is undefined\nkernels/softmax.cu(5): warning: w\nkernels/softmax.cu(oops)",
            prelude + 3
        );
        assert_eq!(
            relocate_log(&log, "kernels/softmax.cu", &program),
            "kernels/softmax.cu(3): error: x is undefined\nkernels/dtype.cuh(5): warning: w\nkernels/softmax.cu(oops)"
        );
        // The error is really on that line of the file.
        let lines: Vec<&str> = program.lines().collect();
        let own: Vec<&str> = source("softmax").unwrap().lines().collect();
        assert_eq!(lines[prelude + 3 - 1], own[3 - 1]);
        // A source without the prelude is left alone.
        assert_eq!(relocate_log(&log, "kernels/softmax.cu", "int x;"), log);
    }

    #[test]
    fn compile_errors_fold_to_one_line() {
        let message = "kernels/x.cu: NVRTC could not compile it for sm_90 (NVRTC_ERROR_COMPILATION):\n\
                       kernels/x.cu(3): error: identifier \"y\" is undefined\n  y = 1;\n  ^\n\n\
                       1 error detected in the compilation of \"kernels/x.cu\".";
        let line = one_line(message);
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("kernels/x.cu: NVRTC could not compile"),
            "{line}"
        );
        assert!(line.contains("identifier \"y\" is undefined"), "{line}");
        assert!(!line.contains("^"), "{line}");
    }

    #[test]
    fn every_topic_has_a_kernel_file_defining_its_entry_points() {
        for topic in crate::ops::TOPICS {
            let t = super::topic(topic.name()).expect("every topic has a CUDA registration");
            for name in t.entry_points {
                assert!(
                    t.source.contains(&format!("{name}(")),
                    "kernels/{}.cu defines {name}",
                    t.topic
                );
            }
        }
        assert_eq!(sources().count(), TOPICS.len());
    }
}
