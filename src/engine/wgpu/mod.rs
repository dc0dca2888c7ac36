//! The wgpu engine: the ops as WGSL compute shaders (`shaders/logits.wgsl`, `shaders/softmax.wgsl`)
//! on whatever adapter wgpu finds: Vulkan, Metal, DX12 or GL, a real GPU or a software one (lavapipe).
//!
//! [`WgpuEngine::probe`] picks the best adapter (discrete > integrated > virtual/other > CPU), opens a
//! device with the adapter's own limits (so large buffers work) and timestamp queries where the
//! adapter has them, and compiles both shaders once; a compile error makes the engine absent with the
//! shader's file name and the compiler's message. The shader text is the one embedded in
//! [`crate::sources::WGSL`], so what the app shows is what ran.
//!
//! Storage: every buffer is an `array<u32>`, one element per word. An f32 travels as its bits; an f16
//! or bf16 travels in the low 16 bits of its word. That wastes half the bandwidth for 16-bit types
//! but keeps every write a whole word (no packing, no races); packing pairs is a later optimisation.
//!
//! Softmax has two kernels in `shaders/softmax.wgsl`, chosen by [`OpRequest::kernel`]: the simple
//! one (`softmax_main`: one workgroup per row, three passes over it; naive softmax always runs it)
//! and the fast one (`softmax_fast`: online max and sum, two passes, vec4 loads, a limited number of
//! workgroups looping over rows; its buffers are padded to a multiple of 4 words).
//!
//! Errors: wgpu's default handler for uncaptured errors panics. Here every device operation runs
//! inside error scopes, a handler records anything that escapes them, and a lost device is
//! remembered: all of these become [`EngineError::Failed`] with the message, never a panic. One run
//! at a time holds the engine's lock, so `execute(&self)` is safe from any thread.
//!
//! Later topics (`gumbel.rs`, `rope.rs`, `tensor_parallel.rs` here) describe their work as buffers and
//! a list of dispatches and call [`WgpuEngine::run_dispatches`]: the shader for a topic is compiled
//! on first use (pipeline layouts derived from the shader), and the same error handling, timing and
//! read-back apply.

mod gumbel;
mod rope;
mod tensor_parallel;

use super::{Engine, EngineError, EngineKind, OpOutput, TimingSource};
use crate::dtype::DType;
use crate::ops::{KernelVariant, Op, OpRequest};
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Invocations per workgroup in both shaders (`@workgroup_size(256)`).
const WORKGROUP_SIZE: u32 = 256;

/// How long to wait for the device to finish one submission before giving up.
const WAIT_TIMEOUT: Duration = Duration::from_secs(300);

/// Entry points, as named in the shaders.
const LOGITS_ENTRY: &str = "logits_main";
/// The simple softmax kernel: one workgroup per row, three passes over it (and naive softmax).
const SOFTMAX_ENTRY: &str = "softmax_main";
/// The fast softmax kernel: online max and sum, vec4 loads, a row loop (stable softmax and
/// log_softmax).
const SOFTMAX_FAST_ENTRY: &str = "softmax_fast";

/// The fast softmax keeps at most about this many bytes of rows in flight (workgroups x row
/// bytes), so that its second read of each row comes from the GPU's L2 cache (about 50 MB on an
/// H100 or H200) rather than from memory. One workgroup per row keeps far more in flight on a large GPU:
/// an H200 holds 8 workgroups of 256 on each of its 132 SMs, 1056 rows of 128 KB ([4096, 32000]
/// f32) = 135 MB, and every re-read misses. A guess from that arithmetic, to be measured on the GPU
/// (`KERNELBOOK_WGPU_SOFTMAX_WORKGROUPS` overrides the result).
const FAST_SOFTMAX_BYTES_IN_FLIGHT: u64 = 32 << 20;

/// The fast softmax never launches fewer workgroups than this (unless there are fewer rows): with
/// very long rows, the cache budget above would leave most of the GPU idle.
const FAST_SOFTMAX_MIN_WORKGROUPS: u32 = 256;

/// Environment variable that sets the fast softmax's workgroup count for tuning runs on a GPU
/// (0: one per row, up to the dispatch limit); unset, [`fast_softmax_workgroups`] chooses.
pub const FAST_SOFTMAX_WORKGROUPS_ENV: &str = "KERNELBOOK_WGPU_SOFTMAX_WORKGROUPS";

/// The shaders' `Params` uniform, field for field (48 bytes, all 4-byte scalars).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    /// 0 = f32, 1 = f16, 2 = bf16.
    dtype: u32,
    /// logits.wgsl: 0 logit, 1 sigmoid, 2 logsigmoid. softmax.wgsl: 0 softmax, 1 log_softmax.
    op: u32,
    rows: u32,
    cols: u32,
    n: u32,
    temperature: f32,
    /// logit: 1 = clamp p to [lo, hi].
    clamp: u32,
    lo: f32,
    hi: f32,
    /// softmax: 1 = stable (max-subtracted), 0 = naive.
    stable: u32,
    pad0: u32,
    pad1: u32,
}

impl Params {
    fn for_request(req: &OpRequest, rows: u32, cols: u32, n: u32) -> Params {
        let dtype = match req.dtype {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Bf16 => 2,
        };
        let mut p = Params {
            dtype,
            rows,
            cols,
            n,
            temperature: 1.0,
            ..Params::default()
        };
        match req.op {
            Op::Logit { .. } => {
                p.op = 0;
                if let Some((lo, hi)) = req.op.logit_bounds() {
                    (p.clamp, p.lo, p.hi) = (1, lo, hi);
                }
            }
            Op::Sigmoid => p.op = 1,
            Op::LogSigmoid => p.op = 2,
            Op::Softmax {
                temperature,
                stable,
            } => {
                (p.op, p.temperature, p.stable) = (0, temperature as f32, stable as u32);
            }
            Op::LogSoftmax { temperature } => {
                (p.op, p.temperature, p.stable) = (1, temperature as f32, 1);
            }
            // Topic ops run through `run_dispatches` with their own uniforms.
            Op::Gumbel(_) | Op::Rope(_) | Op::TensorParallel(_) => {}
        }
        p
    }
}

/// Errors that escaped every error scope (recorded by the device's handler) and the reason the
/// device was lost, if it was.
#[derive(Default)]
struct DeviceErrors {
    uncaptured: Vec<String>,
    lost: Option<String>,
}

pub struct WgpuEngine {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    software: bool,
    limits: wgpu::Limits,
    pipeline_layout: wgpu::PipelineLayout,
    /// Nanoseconds per timestamp tick; `None` when the device has no timestamp queries.
    timestamp_period_ns: Option<f64>,
    errors: Arc<Mutex<DeviceErrors>>,
    /// Held for the whole of a run: one submission (and one set of error scopes) at a time.
    run_lock: Mutex<()>,
    /// Topic pipelines compiled on first use, by (topic, entry point); a compile error is kept
    /// too, so it is reported on every request without recompiling.
    pipelines: Mutex<HashMap<(String, String), Result<wgpu::ComputePipeline, String>>>,
}

/// How a storage buffer of [`WgpuEngine::run_dispatches`] starts.
pub(crate) enum BufferInit {
    /// Uploaded words.
    Words(Vec<u32>),
    /// This many zero words.
    Zeroed(usize),
}

impl BufferInit {
    fn words(&self) -> usize {
        match self {
            BufferInit::Words(w) => w.len(),
            BufferInit::Zeroed(n) => *n,
        }
    }
}

/// One compute dispatch of [`WgpuEngine::run_dispatches`].
pub(crate) struct Dispatch {
    /// The entry point in the topic's shader.
    pub entry: &'static str,
    /// Indices into the run's buffers: `buffers[i]` is bound at `@binding(i)` of group 0. The shader
    /// entry point must use every one of them (the layout is derived from the shader).
    pub buffers: Vec<usize>,
    /// The uniform at `@binding(buffers.len())`, as 32-bit words; empty for none.
    pub params: Vec<u32>,
    /// Workgroups (x, y, z).
    pub workgroups: (u32, u32, u32),
}

/// What [`WgpuEngine::run_dispatches`] returns: the words of each buffer asked for, and the time
/// of all dispatches together.
pub(crate) struct DispatchRun {
    pub outputs: Vec<Vec<u32>>,
    pub kernel_time: Duration,
    pub timing: TimingSource,
}

impl WgpuEngine {
    /// Find an adapter, open a device and compile the shaders. `Err` is the one-line reason the
    /// engine is absent on this machine.
    pub fn probe() -> Result<WgpuEngine, String> {
        let adapter = find_adapter()?;
        let info = adapter.get_info();
        let software = info.device_type == wgpu::DeviceType::Cpu || looks_like_software(&info.name);

        let mut features = wgpu::Features::empty();
        if adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("kernelbook"),
            required_features: features,
            // The adapter's own limits, not WebGPU's defaults: large rows need large buffers.
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| {
            format!(
                "{} ({}): could not open a device: {e}",
                info.name,
                backend_name(info.backend)
            )
        })?;

        let errors = Arc::new(Mutex::new(DeviceErrors::default()));
        let sink = Arc::clone(&errors);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            lock(&sink).uncaptured.push(one_line(&error.to_string()));
        }));
        let sink = Arc::clone(&errors);
        device.set_device_lost_callback(move |reason, message| {
            lock(&sink).lost = Some(format!("{reason:?}: {}", one_line(&message)));
        });

        let limits = device.limits();
        // The layout of the logits and softmax shaders (x, y, params), for `try_compile`.
        let pipeline_layout = scoped(&device, || {
            let bind_group_layout =
                device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some("kernelbook x, y, params"),
                    entries: &[
                        storage_entry(0, true),  // x: array<u32>, read
                        storage_entry(1, false), // y: array<u32>, read_write
                        wgpu::BindGroupLayoutEntry {
                            binding: 2,
                            visibility: wgpu::ShaderStages::COMPUTE,
                            ty: wgpu::BindingType::Buffer {
                                ty: wgpu::BufferBindingType::Uniform,
                                has_dynamic_offset: false,
                                min_binding_size: wgpu::BufferSize::new(size_of::<Params>() as u64),
                            },
                            count: None,
                        },
                    ],
                });
            device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("kernelbook"),
                bind_group_layouts: &[Some(&bind_group_layout)],
                immediate_size: 0,
            })
        })
        .map_err(|e| {
            format!(
                "{} ({}): could not create the bind group layout: {e}",
                info.name,
                backend_name(info.backend)
            )
        })?;
        let timestamp_period_ns = device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| queue.get_timestamp_period() as f64)
            .filter(|&period| period > 0.0);
        let engine = WgpuEngine {
            device,
            queue,
            info,
            software,
            limits,
            pipeline_layout,
            timestamp_period_ns,
            errors,
            run_lock: Mutex::new(()),
            pipelines: Mutex::new(HashMap::new()),
        };
        // The first two topics' shaders are compiled now: if they do not compile, the engine is
        // absent with the compiler's message (later topics report theirs on first use).
        for (topic, entry) in [
            ("logits", LOGITS_ENTRY),
            ("softmax", SOFTMAX_ENTRY),
            ("softmax", SOFTMAX_FAST_ENTRY),
        ] {
            engine
                .topic_pipeline(topic, entry)
                .map_err(|e| e.to_string().trim_start_matches("failed: ").to_string())?;
        }
        Ok(engine)
    }

    /// The adapter the engine runs on (name, backend, driver, device type).
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The device's limits (the adapter's own, requested in full).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// How `kernel_time` is measured on this device: GPU timestamps where the adapter has them.
    pub fn timing_source(&self) -> TimingSource {
        if self.timestamp_period_ns.is_some() {
            TimingSource::GpuTimestamps
        } else {
            TimingSource::WallClock
        }
    }

    /// Compile a WGSL source against the engine's bind group layout (x, y, params), the way the
    /// built-in shaders are compiled: an error comes back as `Err` with the compiler's message,
    /// never as a panic.
    pub fn try_compile(&self, file: &str, source: &str, entry_point: &str) -> Result<(), String> {
        let _run = lock(&self.run_lock);
        compile(
            &self.device,
            &self.pipeline_layout,
            file,
            source,
            entry_point,
        )
        .map(drop)
    }

    /// Buffer bytes and workgroup grid a request needs, or why the device cannot give them.
    fn plan(&self, req: &OpRequest) -> Result<Plan, EngineError> {
        let n = req.x.len();
        let too_many = |what: &str, v: usize| {
            EngineError::Unsupported(format!("{v} {what} do not fit the shaders' 32-bit indices"))
        };
        let n32 = u32::try_from(n).map_err(|_| too_many("elements", n))?;
        let rows = u32::try_from(req.x.rows()).map_err(|_| too_many("rows", req.x.rows()))?;
        let cols = u32::try_from(req.x.cols()).map_err(|_| too_many("columns", req.x.cols()))?;
        let bytes = n as u64 * 4; // one u32 word per element, for every dtype
        let limits = &self.limits;
        if bytes > limits.max_storage_buffer_binding_size {
            return Err(EngineError::Unsupported(format!(
                "{n} elements need a {bytes}-byte storage buffer (one 32-bit word per element); this adapter \
                 binds at most {} bytes (max_storage_buffer_binding_size)",
                limits.max_storage_buffer_binding_size
            )));
        }
        if bytes > limits.max_buffer_size {
            return Err(EngineError::Unsupported(format!(
                "{n} elements need a {bytes}-byte buffer; this adapter allows at most {} bytes (max_buffer_size)",
                limits.max_buffer_size
            )));
        }
        // Element-wise: one invocation per element; row-wise: one workgroup per row.
        let (workgroups, unit) = if req.op.is_elementwise() {
            (n32.div_ceil(WORKGROUP_SIZE), "elements / 256")
        } else {
            (rows, "rows")
        };
        let max_dim = limits.max_compute_workgroups_per_dimension.max(1);
        let grid = if workgroups <= max_dim {
            (workgroups, 1)
        } else {
            let lines = workgroups.div_ceil(max_dim);
            if lines > max_dim {
                return Err(EngineError::Unsupported(format!(
                    "{workgroups} workgroups ({unit}) exceed this adapter's {max_dim} x {max_dim} grid \
                     (max_compute_workgroups_per_dimension)"
                )));
            }
            (max_dim, lines)
        };
        Ok(Plan {
            rows,
            cols,
            n: n32,
            grid,
        })
    }

    /// Block until the submission (or everything submitted) has finished on the device.
    fn wait(&self, index: Option<wgpu::SubmissionIndex>) -> Result<(), String> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: index,
                timeout: Some(WAIT_TIMEOUT),
            })
            .map(drop)
            .map_err(|e| format!("waiting for the device: {e}"))
    }

    /// Map finished MAP_READ buffers and copy their words out, one vector per buffer.
    fn read(&self, buffers: &[&wgpu::Buffer]) -> Result<Vec<Vec<u32>>, String> {
        let receivers = scoped(&self.device, || {
            buffers
                .iter()
                .map(|buffer| {
                    let (sender, receiver) = mpsc::channel();
                    buffer.map_async(wgpu::MapMode::Read, .., move |result| {
                        let _ = sender.send(result);
                    });
                    receiver
                })
                .collect::<Vec<_>>()
        })?;
        // The map callbacks run inside poll.
        self.wait(None)?;
        let mut out = Vec::with_capacity(buffers.len());
        for (buffer, receiver) in buffers.iter().zip(receivers) {
            let mapped = match receiver.try_recv() {
                Ok(result) => result,
                Err(_) => {
                    self.wait(None)?; // one more full wait before giving up
                    receiver.try_recv().map_err(|_| {
                        "reading back the result: the buffer was never mapped".to_string()
                    })?
                }
            };
            mapped.map_err(|e| format!("reading back the result: {e}"))?;
            let words = {
                let view = buffer
                    .get_mapped_range(..)
                    .map_err(|e| format!("reading back the result: {e}"))?;
                view.chunks_exact(4)
                    .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                    .collect()
            };
            buffer.unmap();
            out.push(words);
        }
        Ok(out)
    }
}

/// What one run needs from the device.
struct Plan {
    rows: u32,
    cols: u32,
    n: u32,
    /// Workgroups to dispatch, (x, y).
    grid: (u32, u32),
}

impl Engine for WgpuEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Wgpu
    }

    fn device(&self) -> String {
        let mut s = format!(
            "{} · {}",
            self.info.name.trim(),
            backend_name(self.info.backend)
        );
        if self.software {
            s.push_str(" · software");
        }
        s
    }

    fn is_software(&self) -> bool {
        self.software
    }

    /// The copy shader (`shaders/copy.wgsl`) over `bytes / 4` words: the same storage, dispatch
    /// and timing path as every op.
    fn copy_time(&self, bytes: usize) -> Result<Duration, EngineError> {
        let n = bytes.div_ceil(4).max(1);
        let n32 = u32::try_from(n)
            .map_err(|_| EngineError::Unsupported(format!("{n} words exceed 32-bit indexing")))?;
        let groups = n32.div_ceil(WORKGROUP_SIZE);
        let max = self.max_workgroups();
        let (x, y) = if groups <= max {
            (groups, 1)
        } else {
            (max, groups.div_ceil(max))
        };
        let run = self.run_dispatches(
            "copy",
            &[BufferInit::Zeroed(n), BufferInit::Zeroed(n)],
            &[Dispatch {
                entry: "copy_main",
                buffers: vec![0, 1],
                params: vec![n32, x * WORKGROUP_SIZE, 0, 0],
                workgroups: (x, y, 1),
            }],
            &[],
        )?;
        Ok(run.kernel_time)
    }

    fn supports(&self, req: &OpRequest) -> Result<(), EngineError> {
        if req.op.topic_op().is_some() {
            // Topic files check their buffers against the limits in `run_dispatches`.
            return Ok(());
        }
        if req.x.is_empty() {
            return Ok(());
        }
        self.plan(req).map(drop)
    }

    fn execute(&self, req: &OpRequest) -> Result<OpOutput, EngineError> {
        match &req.op {
            Op::Gumbel(op) => return gumbel::execute(self, req, op),
            Op::Rope(op) => return rope::execute(self, req, op),
            Op::TensorParallel(op) => return tensor_parallel::execute(self, req, op),
            _ => {}
        }
        let start = Instant::now();
        // `Engine::run` answers empty inputs before calling this.
        let plan = self.plan(req)?;
        let params = Params::for_request(req, plan.rows, plan.cols, plan.n);
        let params = bytemuck::cast_slice(&[params]).to_vec();
        let run = if req.op.is_elementwise() {
            self.one_dispatch("logits", LOGITS_ENTRY, req, plan.n, params, plan.grid)?
        } else if uses_fast_softmax(req) {
            // The fast kernel reads and writes through vec4 views: both buffers are padded to a
            // multiple of 4 words (the padding is never read as data nor returned).
            let workgroups = match fast_softmax_workgroups_override()? {
                Some(0) => plan.rows.min(self.max_workgroups()),
                Some(w) => w.min(plan.rows).min(self.max_workgroups()),
                None => fast_softmax_workgroups(plan.rows, plan.cols, self.max_workgroups()),
            };
            let padded = plan.n.next_multiple_of(4);
            self.one_dispatch(
                "softmax",
                SOFTMAX_FAST_ENTRY,
                req,
                padded,
                params,
                (workgroups.max(1), 1),
            )?
        } else {
            self.one_dispatch("softmax", SOFTMAX_ENTRY, req, plan.n, params, plan.grid)?
        };
        let (kernel_time, timing) = (run.kernel_time, run.timing);
        let mut words = run.outputs.into_iter().next().unwrap_or_default();
        words.truncate(req.x.len());
        if words.len() != req.x.len() {
            return Err(EngineError::Failed(format!(
                "read back {} values for {} elements",
                words.len(),
                req.x.len()
            )));
        }
        Ok(OpOutput::new(
            req.x.shape.clone(),
            req.dtype,
            decode(req.dtype, &words),
            kernel_time,
            timing,
            start.elapsed(),
        ))
    }
}

impl WgpuEngine {
    /// Run `entry` of `shaders/<topic>.wgsl` over the request's input (binding 0, `words` words, the
    /// input zero-padded) into an output of `words` zero words (binding 1), with `params` as the
    /// uniform, on a `grid` of workgroups; reads back the output.
    fn one_dispatch(
        &self,
        topic: &str,
        entry: &'static str,
        req: &OpRequest,
        words: u32,
        params: Vec<u32>,
        grid: (u32, u32),
    ) -> Result<DispatchRun, EngineError> {
        let mut input = encode(req);
        input.resize(words as usize, 0);
        self.run_dispatches(
            topic,
            &[BufferInit::Words(input), BufferInit::Zeroed(words as usize)],
            &[Dispatch {
                entry,
                buffers: vec![0, 1],
                params,
                workgroups: (grid.0, grid.1, 1),
            }],
            &[1],
        )
    }

    /// The pipeline for `entry` in `shaders/<topic>.wgsl`, compiled on first use with a layout
    /// derived from the shader.
    fn topic_pipeline(
        &self,
        topic: &str,
        entry: &str,
    ) -> Result<wgpu::ComputePipeline, EngineError> {
        let key = (topic.to_string(), entry.to_string());
        let mut cache = lock(&self.pipelines);
        let result = cache.entry(key).or_insert_with(|| {
            let file = format!("shaders/{topic}.wgsl");
            let source = crate::sources::wgsl_program(topic)
                .ok_or_else(|| format!("{file} is not embedded in this build"))?;
            scoped(&self.device, || {
                let module = self
                    .device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(&file),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    });
                self.device
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry),
                        layout: None,
                        module: &module,
                        entry_point: Some(entry),
                        compilation_options: Default::default(),
                        cache: None,
                    })
            })
            .map_err(|e| {
                let prelude = crate::sources::WGSL_PRELUDE.lines().count() + 1;
                format!(
                    "{file} ({entry}) does not compile (line numbers count the {prelude} lines of \
                     shaders/dtype.wgsl first): {e}"
                )
            })
        });
        result.clone().map_err(EngineError::Failed)
    }

    /// Largest storage buffer, in 32-bit words, that this device can bind.
    pub(crate) fn max_buffer_words(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
            / 4
    }

    /// Largest workgroup count per grid dimension.
    pub(crate) fn max_workgroups(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension.max(1)
    }

    /// Upload `buffers`, run `dispatches` in order in one compute pass (each dispatch sees the
    /// writes of the ones before it), and read back the buffers listed in `read`. Shaders come from
    /// `shaders/<topic>.wgsl`. Every failure is an [`EngineError`], never a panic; a buffer larger
    /// than the device can bind is `Unsupported` with the limit.
    pub(crate) fn run_dispatches(
        &self,
        topic: &str,
        buffers: &[BufferInit],
        dispatches: &[Dispatch],
        read: &[usize],
    ) -> Result<DispatchRun, EngineError> {
        let max_words = self.max_buffer_words();
        for b in buffers {
            if b.words() as u64 > max_words {
                return Err(EngineError::Unsupported(format!(
                    "a {}-byte storage buffer is larger than this adapter binds ({} bytes)",
                    b.words() as u64 * 4,
                    max_words * 4
                )));
            }
        }
        let max_dim = self.max_workgroups();
        for d in dispatches {
            let (x, y, z) = d.workgroups;
            if x > max_dim || y > max_dim || z > max_dim {
                return Err(EngineError::Unsupported(format!(
                    "{x} x {y} x {z} workgroups exceed this adapter's {max_dim} per dimension"
                )));
            }
        }
        let pipelines = dispatches
            .iter()
            .map(|d| self.topic_pipeline(topic, d.entry))
            .collect::<Result<Vec<_>, _>>()?;
        let _run = lock(&self.run_lock);
        {
            let mut errors = lock(&self.errors);
            if let Some(reason) = &errors.lost {
                return Err(EngineError::Failed(format!(
                    "the wgpu device was lost: {reason}"
                )));
            }
            errors.uncaptured.clear(); // left over from earlier work, not this run's
        }
        let result = self.dispatch_on_device(topic, buffers, dispatches, &pipelines, read);
        {
            let errors = lock(&self.errors);
            if let Some(reason) = &errors.lost {
                return Err(EngineError::Failed(format!(
                    "the wgpu device was lost: {reason}"
                )));
            }
            if !errors.uncaptured.is_empty() {
                return Err(EngineError::Failed(errors.uncaptured.join("; ")));
            }
        }
        result.map_err(EngineError::Failed)
    }

    fn dispatch_on_device(
        &self,
        topic: &str,
        buffers: &[BufferInit],
        dispatches: &[Dispatch],
        pipelines: &[wgpu::ComputePipeline],
        read: &[usize],
    ) -> Result<DispatchRun, String> {
        let timestamps = self.timestamp_period_ns.is_some();
        let device = &self.device;
        use wgpu::BufferUsages as U;
        let make = |label: &str, size: u64, usage: wgpu::BufferUsages| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                // wgpu refuses zero-sized bindings: an empty buffer still gets one word.
                size: size.max(4),
                usage,
                mapped_at_creation: false,
            })
        };
        let recorded = scoped(device, || {
            let storage: Vec<wgpu::Buffer> = buffers
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let buffer = make(
                        &format!("{topic} buffer {i}"),
                        b.words() as u64 * 4,
                        U::STORAGE | U::COPY_DST | U::COPY_SRC,
                    );
                    if let BufferInit::Words(words) = b
                        && !words.is_empty()
                    {
                        self.queue
                            .write_buffer(&buffer, 0, bytemuck::cast_slice(words));
                    }
                    buffer
                })
                .collect();
            let bind_groups: Vec<wgpu::BindGroup> = dispatches
                .iter()
                .zip(pipelines)
                .map(|(d, pipeline)| {
                    let uniform = (!d.params.is_empty()).then(|| {
                        let u = make(
                            "params",
                            (d.params.len() as u64 * 4).next_multiple_of(16),
                            U::UNIFORM | U::COPY_DST,
                        );
                        self.queue
                            .write_buffer(&u, 0, bytemuck::cast_slice(&d.params));
                        u
                    });
                    let mut entries: Vec<wgpu::BindGroupEntry> = d
                        .buffers
                        .iter()
                        .enumerate()
                        .map(|(binding, &i)| wgpu::BindGroupEntry {
                            binding: binding as u32,
                            resource: storage[i].as_entire_binding(),
                        })
                        .collect();
                    if let Some(u) = &uniform {
                        entries.push(wgpu::BindGroupEntry {
                            binding: d.buffers.len() as u32,
                            resource: u.as_entire_binding(),
                        });
                    }
                    device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some(d.entry),
                        layout: &pipeline.get_bind_group_layout(0),
                        entries: &entries,
                    })
                })
                .collect();
            let queries = timestamps.then(|| {
                let set = device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("kernel start, end"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                });
                let bytes = 2 * wgpu::QUERY_SIZE as u64;
                let resolved = make("timestamps", bytes, U::QUERY_RESOLVE | U::COPY_SRC);
                let readback = make("timestamps readback", bytes, U::MAP_READ | U::COPY_DST);
                (set, resolved, readback)
            });
            let mut encoder = device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(topic) });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(topic),
                    timestamp_writes: queries.as_ref().map(|(set, _, _)| {
                        wgpu::ComputePassTimestampWrites {
                            query_set: set,
                            beginning_of_pass_write_index: Some(0),
                            end_of_pass_write_index: Some(1),
                        }
                    }),
                });
                for ((d, pipeline), group) in dispatches.iter().zip(pipelines).zip(&bind_groups) {
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, group, &[]);
                    let (x, y, z) = d.workgroups;
                    pass.dispatch_workgroups(x, y, z);
                }
            }
            let readbacks: Vec<wgpu::Buffer> = read
                .iter()
                .map(|&i| {
                    let bytes = buffers[i].words() as u64 * 4;
                    let rb = make("readback", bytes, U::MAP_READ | U::COPY_DST);
                    if bytes > 0 {
                        encoder.copy_buffer_to_buffer(&storage[i], 0, &rb, 0, bytes);
                    }
                    rb
                })
                .collect();
            if let Some((set, resolved, readback)) = &queries {
                encoder.resolve_query_set(set, 0..2, resolved, 0);
                encoder.copy_buffer_to_buffer(resolved, 0, readback, 0, resolved.size());
            }
            (
                readbacks,
                queries.map(|(_, _, readback)| readback),
                encoder.finish(),
            )
        })?;
        let (readbacks, timestamp_readback, commands) = recorded;
        self.wait(None)?; // uploads finish before the clock starts
        let submitted = Instant::now();
        let index = scoped(device, || self.queue.submit([commands]))?;
        self.wait(Some(index))?;
        let wall = submitted.elapsed();
        let mut all: Vec<&wgpu::Buffer> = readbacks.iter().collect();
        all.extend(timestamp_readback.as_ref());
        let mut words = self.read(&all)?;
        let ticks = timestamp_readback.is_some().then(|| words.pop()).flatten();
        let outputs: Vec<Vec<u32>> = words
            .into_iter()
            .zip(read)
            .map(|(mut w, &i)| {
                w.truncate(buffers[i].words());
                w
            })
            .collect();
        let (kernel_time, timing) = match (ticks, self.timestamp_period_ns) {
            (Some(t), Some(period_ns)) if t.len() == 4 => {
                let start = u64::from(t[0]) | u64::from(t[1]) << 32;
                let end = u64::from(t[2]) | u64::from(t[3]) << 32;
                let ns = end.saturating_sub(start) as f64 * period_ns;
                (
                    Duration::from_nanos(ns.round() as u64),
                    TimingSource::GpuTimestamps,
                )
            }
            _ => (wall, TimingSource::WallClock),
        };
        Ok(DispatchRun {
            outputs,
            kernel_time,
            timing,
        })
    }
}

/// The ops this engine has a fast kernel for: stable softmax and log_softmax (`softmax_fast`).
/// Naive softmax always runs the simple kernel (its overflow is the lesson); the other topics have
/// one shader each.
pub fn has_fast_kernel(op: &Op) -> bool {
    matches!(op, Op::LogSoftmax { .. } | Op::Softmax { stable: true, .. })
}

/// Whether `req` runs the fast softmax kernel: an op of [`has_fast_kernel`] asked for with
/// [`KernelVariant::Fast`].
fn uses_fast_softmax(req: &OpRequest) -> bool {
    req.kernel == KernelVariant::Fast && has_fast_kernel(&req.op)
}

/// Workgroups for the fast softmax (each loops over rows): enough that the rows in flight stay
/// within [`FAST_SOFTMAX_BYTES_IN_FLIGHT`], at least [`FAST_SOFTMAX_MIN_WORKGROUPS`], at most one
/// per row and at most `max_workgroups` (the dispatch limit per dimension).
fn fast_softmax_workgroups(rows: u32, cols: u32, max_workgroups: u32) -> u32 {
    let row_bytes = u64::from(cols).max(1) * 4; // one 32-bit word per element
    let budget =
        (FAST_SOFTMAX_BYTES_IN_FLIGHT / row_bytes).max(u64::from(FAST_SOFTMAX_MIN_WORKGROUPS));
    budget
        .min(u64::from(rows))
        .min(u64::from(max_workgroups))
        .max(1) as u32
}

/// [`FAST_SOFTMAX_WORKGROUPS_ENV`], if set; a value that is not a count is an error, not ignored.
fn fast_softmax_workgroups_override() -> Result<Option<u32>, EngineError> {
    match std::env::var(FAST_SOFTMAX_WORKGROUPS_ENV) {
        Err(_) => Ok(None),
        Ok(v) if v.trim().is_empty() => Ok(None), // set but empty: the rule, as when unset
        Ok(v) => v.trim().parse().map(Some).map_err(|_| {
            EngineError::Failed(format!(
                "{FAST_SOFTMAX_WORKGROUPS_ENV}={v:?} is not a workgroup count (0 = one per row)"
            ))
        }),
    }
}

/// Values of `dtype` as the shaders store them: one u32 word per element (f32 bits, or f16/bf16
/// bits in the low half).
pub(crate) fn encode_values(dtype: DType, values: &[f32]) -> Vec<u32> {
    match dtype {
        DType::F32 => values.iter().map(|v| v.to_bits()).collect(),
        DType::F16 | DType::Bf16 => dtype
            .encode_u16(values)
            .into_iter()
            .map(u32::from)
            .collect(),
    }
}

/// Words written by a shader back to f32 values of `dtype` (see [`encode_values`]).
pub(crate) fn decode_values(dtype: DType, words: &[u32]) -> Vec<f32> {
    decode(dtype, words)
}

/// The input as the shaders read it: one u32 word per element (f32 bits, or f16/bf16 bits in the
/// low half).
fn encode(req: &OpRequest) -> Vec<u32> {
    encode_values(req.dtype, &req.x.data)
}

/// The output words back to f32 values (exact: every f16 and bf16 is an f32).
fn decode(dtype: DType, words: &[u32]) -> Vec<f32> {
    match dtype {
        DType::F32 => words.iter().map(|&w| f32::from_bits(w)).collect(),
        DType::F16 | DType::Bf16 => {
            let halves: Vec<u16> = words.iter().map(|&w| (w & 0xffff) as u16).collect();
            dtype.decode_u16(&halves)
        }
    }
}

/// Compile one shader into a compute pipeline; a compile or validation error is `Err` naming the
/// file.
fn compile(
    device: &wgpu::Device,
    layout: &wgpu::PipelineLayout,
    file: &str,
    source: &str,
    entry_point: &str,
) -> Result<wgpu::ComputePipeline, String> {
    scoped(device, || {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(file),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(file),
            layout: Some(layout),
            module: &module,
            entry_point: Some(entry_point),
            compilation_options: Default::default(),
            cache: None,
        })
    })
    .map_err(|e| format!("{file} does not compile: {e}"))
}

/// Run `work` inside validation, out-of-memory and internal error scopes; the first error any of
/// them caught becomes `Err` with its message.
fn scoped<T>(device: &wgpu::Device, work: impl FnOnce() -> T) -> Result<T, String> {
    let out_of_memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let value = work();
    // Innermost first.
    let errors = [validation.pop(), internal.pop(), out_of_memory.pop()].map(pollster::block_on);
    match errors.into_iter().flatten().next() {
        None => Ok(value),
        Some(wgpu::Error::OutOfMemory { .. }) => Err("out of device memory".into()),
        Some(error) => Err(one_line(&error.to_string())),
    }
}

/// Whether wgpu sees a hardware GPU that can run the shaders (not a software rasteriser). The app
/// draws its window with wgpu there and with OpenGL otherwise: measured on a 2-core machine under
/// Xvfb, llvmpipe drew a 1280x800 frame in 22 ms through OpenGL and 97 ms through lavapipe/Vulkan.
pub fn hardware_adapter_available() -> bool {
    find_adapter().is_ok_and(|a| {
        let info = a.get_info();
        info.device_type != wgpu::DeviceType::Cpu && !looks_like_software(&info.name)
    })
}

/// The adapter a headless render (`kernelbook export`) would draw with, as "name (backend)", or
/// why there is none.
pub fn render_adapter() -> Result<String, String> {
    find_adapter().map(|a| {
        let info = a.get_info();
        format!("{} ({})", info.name.trim(), backend_name(info.backend))
    })
}

/// The best adapter that can run the shaders. Vulkan, Metal and DX12 are asked first; GL only when
/// none of them has a usable adapter (probing GL wakes up EGL, which complains on headless machines).
/// `WGPU_BACKEND` (e.g. `vulkan`, `gl`) picks the backends instead.
fn find_adapter() -> Result<wgpu::Adapter, String> {
    let tiers = match wgpu::Backends::from_env() {
        Some(chosen) => vec![chosen],
        None => vec![wgpu::Backends::PRIMARY, wgpu::Backends::SECONDARY],
    };
    let mut refused = Vec::new();
    for backends in tiers {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle().with_env()
        });
        let mut usable: Vec<(u8, wgpu::Adapter)> = Vec::new();
        for adapter in pollster::block_on(instance.enumerate_adapters(backends)) {
            let info = adapter.get_info();
            match adapter_problem(&adapter) {
                None => usable.push((adapter_rank(info.device_type), adapter)),
                Some(problem) => refused.push(format!(
                    "{} ({}): {problem}",
                    info.name,
                    backend_name(info.backend)
                )),
            }
        }
        // Best rank first; among equals, wgpu's enumeration order (the sort is stable).
        usable.sort_by_key(|(rank, _)| *rank);
        if let Some((_, adapter)) = usable.into_iter().next() {
            return Ok(adapter);
        }
    }
    if refused.is_empty() {
        Err(
            "no Vulkan/Metal/DX12/GL adapter found: install mesa-vulkan-drivers for the lavapipe \
             software adapter"
                .into(),
        )
    } else {
        Err(format!(
            "no adapter can run the shaders: {}",
            refused.join("; ")
        ))
    }
}

/// Why an adapter cannot run the shaders, if it cannot.
fn adapter_problem(adapter: &wgpu::Adapter) -> Option<String> {
    let caps = adapter.get_downlevel_capabilities();
    if !caps.flags.contains(wgpu::DownlevelFlags::COMPUTE_SHADERS) {
        return Some("no compute shaders".into());
    }
    let limits = adapter.limits();
    if limits.max_compute_invocations_per_workgroup < WORKGROUP_SIZE
        || limits.max_compute_workgroup_size_x < WORKGROUP_SIZE
    {
        return Some(format!(
            "workgroups of at most {} invocations; the shaders use {WORKGROUP_SIZE}",
            limits
                .max_compute_invocations_per_workgroup
                .min(limits.max_compute_workgroup_size_x)
        ));
    }
    None
}

/// Preference order: real GPUs first, software last.
fn adapter_rank(device_type: wgpu::DeviceType) -> u8 {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// Software rasterisers that do not always report themselves as `DeviceType::Cpu`.
fn looks_like_software(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "llvmpipe",
        "lavapipe",
        "softpipe",
        "swiftshader",
        "basic render driver",
    ]
    .iter()
    .any(|s| name.contains(s))
}

fn backend_name(backend: wgpu::Backend) -> &'static str {
    match backend {
        wgpu::Backend::Vulkan => "Vulkan",
        wgpu::Backend::Metal => "Metal",
        wgpu::Backend::Dx12 => "DX12",
        wgpu::Backend::Gl => "GL",
        wgpu::Backend::BrowserWebGpu => "WebGPU",
        wgpu::Backend::Noop => "no-op",
    }
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

/// Collapse a multi-line wgpu error (they carry source excerpts and causes) into one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Lock a mutex, recovering the data if a previous holder panicked (the state stays usable).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Tensor;

    #[test]
    fn params_match_the_shader_layout() {
        assert_eq!(size_of::<Params>(), 48);
        let req = OpRequest::new(
            Op::Logit { eps: Some(1e-6) },
            DType::F16,
            Tensor::row(vec![0.5]),
        )
        .unwrap();
        let p = Params::for_request(&req, 1, 1, 1);
        assert_eq!((p.dtype, p.op, p.clamp), (1, 0, 1));
        assert_eq!((p.lo, p.hi), (1e-6f32, 1.0 - 1e-6f32));
        let req = OpRequest::new(
            Op::LogSoftmax { temperature: 0.05 },
            DType::Bf16,
            Tensor::row(vec![0.5]),
        )
        .unwrap();
        let p = Params::for_request(&req, 1, 1, 1);
        assert_eq!((p.dtype, p.op, p.stable, p.temperature), (2, 1, 1, 0.05f32));
    }

    #[test]
    fn words_round_trip_every_dtype() {
        for dtype in DType::ALL {
            let req = OpRequest::new(
                Op::Sigmoid,
                dtype,
                Tensor::row(vec![1.5, -0.0, f32::INFINITY, 1e-6]),
            )
            .unwrap();
            let back = decode(dtype, &encode(&req));
            for (a, b) in req.x.data.iter().zip(&back) {
                assert_eq!(a.to_bits(), b.to_bits(), "{dtype}");
            }
        }
    }

    #[test]
    fn fast_softmax_keeps_the_rows_in_flight_within_the_cache_budget() {
        // [4096, 32000] f32: 128 000-byte rows, 32 MiB / 128 000 = 262 workgroups.
        assert_eq!(fast_softmax_workgroups(4096, 32000, 65535), 262);
        // Longer rows: never fewer than 256 workgroups (nor more than rows).
        assert_eq!(fast_softmax_workgroups(4096, 1 << 20, 65535), 256);
        assert_eq!(fast_softmax_workgroups(100, 1 << 20, 65535), 100);
        // Short rows: one workgroup per row, up to the dispatch limit.
        assert_eq!(fast_softmax_workgroups(4096, 1000, 65535), 4096);
        assert_eq!(fast_softmax_workgroups(70_000, 3, 65535), 65535);
        assert_eq!(fast_softmax_workgroups(0, 0, 65535), 1);
    }

    #[test]
    fn naive_softmax_never_runs_the_fast_kernel() {
        let x = || Tensor::row(vec![0.5, 1.0]);
        let softmax = |stable| Op::Softmax {
            temperature: 1.0,
            stable,
        };
        let cases = [
            (softmax(true), KernelVariant::Fast, true),
            (softmax(true), KernelVariant::Simple, false),
            (softmax(false), KernelVariant::Fast, false),
            (
                Op::LogSoftmax { temperature: 2.0 },
                KernelVariant::Fast,
                true,
            ),
            (
                Op::LogSoftmax { temperature: 2.0 },
                KernelVariant::Simple,
                false,
            ),
        ];
        for (op, kernel, fast) in cases {
            let req = OpRequest::new(op.clone(), DType::F32, x())
                .unwrap()
                .with_kernel(kernel);
            assert_eq!(uses_fast_softmax(&req), fast, "{} {kernel}", op.describe());
        }
    }

    #[test]
    fn errors_collapse_to_one_line() {
        assert_eq!(one_line("a\n  b\n\n c "), "a | b | c");
    }
}
