//! The wgpu engine: the ops as WGSL compute shaders (`shaders/<topic>.wgsl`, one file per topic) on
//! whatever adapter wgpu finds: Vulkan, Metal, DX12 or GL, a real GPU or a software one (lavapipe).
//!
//! [`WgpuEngine::probe`] picks the best adapter (discrete > integrated > virtual/other > CPU), opens a
//! device with the adapter's own limits (so large buffers work) and timestamp queries where the
//! adapter has them, and compiles the entry points the topics ask for ([`WgpuTopic::probe_entries`]);
//! a compile error makes the engine absent with the shader's file name and the compiler's message.
//! The shader text is the one each topic's file embeds ([`source`]), so what the app shows is what
//! ran.
//!
//! Storage: every buffer is an `array<u32>`, one element per word. An f32 travels as its bits; an f16
//! or bf16 travels in the low 16 bits of its word. That wastes half the bandwidth for 16-bit types
//! but keeps every write a whole word (no packing, no races); packing pairs is a later optimisation.
//!
//! Each topic has its own file here, registered once in [`TOPICS`]; logits and softmax share one
//! buffer layout and uniform (`rowwise.rs`). Softmax has a simple and a fast kernel (`softmax.rs`).
//!
//! Errors: wgpu's default handler for uncaptured errors panics. Here every device operation runs
//! inside error scopes, a handler records anything that escapes them, and a lost device is
//! remembered: all of these become [`EngineError::Failed`] with the message, never a panic. One run
//! at a time holds the engine's lock, so `execute(&self)` is safe from any thread.
//!
//! Topics describe their work as buffers and a list of dispatches and call
//! [`WgpuEngine::run_dispatches`]: a shader's pipelines are compiled on first use (layouts derived
//! from the shader), and the same error handling, timing and read-back apply to all.

mod rowwise;

use super::{Engine, EngineError, EngineKind, OpOutput, TimingSource};
use crate::dtype::DType;
use crate::ops::{Op, OpRequest};
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A topic the wgpu engine runs: its shader, the entry points compiled when the engine starts,
/// which ops have a second (fast) kernel, and the functions that check and run a request.
pub(crate) struct WgpuTopic {
    pub topic: &'static str,
    /// `shaders/<topic>.wgsl`, embedded.
    pub source: &'static str,
    /// Entry points compiled by [`WgpuEngine::probe`]: if one does not compile, the engine is
    /// absent with the compiler's message (the others are compiled on first use).
    pub probe_entries: &'static [&'static str],
    /// Whether the topic has a simple and a fast shader for this op.
    pub has_fast_kernel: fn(&Op) -> bool,
    /// Whether this device can run the request, before anything is allocated.
    pub supports: fn(&WgpuEngine, &OpRequest) -> Result<(), EngineError>,
    pub execute: fn(&WgpuEngine, &OpRequest) -> Result<OpOutput, EngineError>,
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
    static TOPICS: [&'static WgpuTopic] = TOPIC;
}

/// The registration of `topic`, if this engine runs it.
fn topic(topic: &str) -> Option<&'static WgpuTopic> {
    TOPICS.iter().copied().find(|t| t.topic == topic)
}

/// Special values and the f16/bf16 conversions every shader uses (`shaders/dtype.wgsl`): WGSL has
/// no includes, so [`program`] compiles it in front of each topic's shader.
pub const PRELUDE: &str = include_str!("../../../shaders/dtype.wgsl");

/// The device-to-device copy `kernelbook bench` measures each op against (`shaders/copy.wgsl`; not a
/// lesson topic).
pub const COPY_SOURCE: &str = include_str!("../../../shaders/copy.wgsl");

/// A topic's own shader (`shaders/<topic>.wgsl`, as the app shows it, without the prelude); `copy`
/// is the bench's copy shader.
pub fn source(topic: &str) -> Option<&'static str> {
    match topic {
        "copy" => Some(COPY_SOURCE),
        _ => self::topic(topic).map(|t| t.source),
    }
}

/// Every embedded shader: (topic, file name, source), the copy shader first.
pub fn sources() -> impl Iterator<Item = (&'static str, String, &'static str)> {
    std::iter::once("copy")
        .chain(TOPICS.iter().map(|t| t.topic))
        .filter_map(|t| source(t).map(|s| (t, format!("shaders/{t}.wgsl"), s)))
}

/// What the engine compiles for a topic: [`PRELUDE`], then `shaders/<topic>.wgsl`.
pub fn program(topic: &str) -> Option<String> {
    source(topic).map(|s| format!("{PRELUDE}\n{s}"))
}

/// Whether this engine has a simple and a fast shader for `op` (each topic says).
pub fn has_fast_kernel(op: &Op) -> bool {
    topic(op.kind().topic()).is_some_and(|t| (t.has_fast_kernel)(op))
}

/// For topics with one shader per op.
pub(crate) fn one_kernel(_: &Op) -> bool {
    false
}

/// For topics whose shaders check their buffers against the device's limits when they run
/// ([`WgpuEngine::run_dispatches`]).
pub(crate) fn supported_when_run(_: &WgpuEngine, _: &OpRequest) -> Result<(), EngineError> {
    Ok(())
}

/// Invocations per workgroup in both shaders (`@workgroup_size(256)`).
const WORKGROUP_SIZE: u32 = 256;

/// How long to wait for the device to finish one submission before giving up.
const WAIT_TIMEOUT: Duration = Duration::from_secs(300);

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
                                min_binding_size: wgpu::BufferSize::new(
                                    size_of::<rowwise::RowParams>() as u64,
                                ),
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
        // The entry points the topics ask for are compiled now: if they do not compile, the
        // engine is absent with the compiler's message (the others report theirs on first use).
        for topic in TOPICS {
            for entry in topic.probe_entries {
                engine
                    .topic_pipeline(topic.topic, entry)
                    .map_err(|e| e.to_string().trim_start_matches("failed: ").to_string())?;
            }
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
        (self.topic(req)?.supports)(self, req)
    }

    fn execute(&self, req: &OpRequest) -> Result<OpOutput, EngineError> {
        (self.topic(req)?.execute)(self, req)
    }
}

impl WgpuEngine {
    /// This engine's registration of the request's topic.
    fn topic(&self, req: &OpRequest) -> Result<&'static WgpuTopic, EngineError> {
        topic(req.op.kind().topic()).ok_or_else(|| {
            EngineError::Unsupported(format!(
                "the wgpu engine has no shader for {}",
                req.op.kind()
            ))
        })
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
            let source =
                program(topic).ok_or_else(|| format!("{file} is not embedded in this build"))?;
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
                let prelude = PRELUDE.lines().count() + 1;
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

/// Words written by a shader back to f32 values of `dtype` (see [`encode_values`]): exact, every
/// f16 and bf16 is an f32.
pub(crate) fn decode_values(dtype: DType, words: &[u32]) -> Vec<f32> {
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

    #[test]
    fn errors_collapse_to_one_line() {
        assert_eq!(one_line("a\n  b\n\n c "), "a | b | c");
    }

    #[test]
    fn every_topic_has_a_shader_and_the_copy_shader_is_embedded() {
        for topic in crate::ops::TOPICS {
            assert!(source(topic.name()).is_some(), "{}", topic.name());
        }
        assert!(source("copy").is_some_and(|s| s.contains("copy_main")));
        assert!(program("softmax").is_some_and(|p| p.starts_with(PRELUDE)));
    }
}
