//! CUDA launches as plain data. A topic's CUDA host code does not call cudarc: it turns a request
//! into a [`Plan`] (buffers with their contents, kernel launches with grid, block, shared memory
//! and typed arguments, which stream each runs on, and the buffers to read back) and a decoder that
//! turns the downloaded buffers into an [`OpOutput`] ([`Planned`]). The CUDA engine executes a plan
//! with cudarc (`CudaEngine::run_planned`); the test suite's CUDA emulator executes the
//! same plan on the CPU, so the host code that will run on a GPU is the code the tests run.
//!
//! Streams: a launch runs on the main stream or on rank r's stream (the tensor-parallel ops give
//! every virtual rank its own). The executor joins them with events: a rank's stream waits for the
//! main stream's work before its next launch, and the main stream waits for every rank with work
//! in flight before its own next launch, before the kernel time's end event and before the results
//! are read. Executing the launches one after another in plan order (the emulator) is therefore one
//! valid schedule of the same program.
//!
//! Arguments say whether a kernel only reads a buffer ([`Arg::In`], a `const T*` parameter) or
//! writes it ([`Arg::Out`]); cudarc orders work on different streams by these (a reader waits for
//! the last writer, a writer for the readers), and the emulator checks them against the kernel's
//! parameter types.
//!
//! Timing: the CUDA events around the launches measure all of them, or the first
//! [`Plan::timed_launches`] when the plan sets it (the rest, e.g. a one-rank reference run whose
//! output is shown beside the result, run after the end event).

use crate::dtype::DType;
use crate::engine::{EngineError, OpOutput};
use std::fmt;

/// A buffer of a plan, by position in [`Plan::buffers`].
pub type BufId = usize;

/// Element type of a device buffer (f16 and bf16 travel as their 16-bit patterns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    U16,
    U32,
    I32,
    U8,
}

impl Elem {
    pub fn size(self) -> usize {
        match self {
            Elem::F32 | Elem::U32 | Elem::I32 => 4,
            Elem::U16 => 2,
            Elem::U8 => 1,
        }
    }

    /// The element type values of `dtype` are stored as.
    pub fn stored(dtype: DType) -> Elem {
        match dtype {
            DType::F32 => Elem::F32,
            DType::F16 | DType::Bf16 => Elem::U16,
        }
    }
}

/// Host values of one buffer, uploaded before the launches or downloaded after them.
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    U8(Vec<u8>),
}

impl HostData {
    /// `values` in `dtype`'s storage: f32 as they are, f16/bf16 as 16-bit patterns.
    pub fn stored(dtype: DType, values: &[f32]) -> HostData {
        match dtype {
            DType::F32 => HostData::F32(values.to_vec()),
            DType::F16 | DType::Bf16 => HostData::U16(dtype.encode_u16(values)),
        }
    }

    pub fn elem(&self) -> Elem {
        match self {
            HostData::F32(_) => Elem::F32,
            HostData::U16(_) => Elem::U16,
            HostData::U32(_) => Elem::U32,
            HostData::I32(_) => Elem::I32,
            HostData::U8(_) => Elem::U8,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            HostData::F32(v) => v.len(),
            HostData::U16(v) => v.len(),
            HostData::U32(v) => v.len(),
            HostData::I32(v) => v.len(),
            HostData::U8(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Little-endian bytes, as the device holds them.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            HostData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            HostData::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            HostData::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            HostData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            HostData::U8(v) => v.clone(),
        }
    }

    /// Values of type `elem` from little-endian bytes (a trailing partial element is dropped).
    pub fn from_bytes(elem: Elem, bytes: &[u8]) -> HostData {
        let words = |n: usize| bytes.chunks_exact(n);
        match elem {
            Elem::F32 => HostData::F32(
                words(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Elem::U16 => {
                HostData::U16(words(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect())
            }
            Elem::U32 => HostData::U32(
                words(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Elem::I32 => HostData::I32(
                words(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Elem::U8 => HostData::U8(bytes.to_vec()),
        }
    }
}

/// How a buffer starts.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    Upload(HostData),
    /// `len` zero elements (`alloc_zeros`).
    Zeros(Elem, usize),
}

/// One device buffer: what it is (for error messages) and how it starts. An empty buffer is
/// allocated with one element (no zero-sized allocations), never read.
#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    pub what: String,
    pub init: Init,
}

impl Buffer {
    pub fn elem(&self) -> Elem {
        match &self.init {
            Init::Upload(data) => data.elem(),
            Init::Zeros(elem, _) => *elem,
        }
    }

    /// Elements the host gave or asked for: what a download of the buffer returns.
    pub fn content_len(&self) -> usize {
        match &self.init {
            Init::Upload(data) => data.len(),
            Init::Zeros(_, len) => *len,
        }
    }

    /// Elements allocated: at least one.
    pub fn allocated_len(&self) -> usize {
        self.content_len().max(1)
    }

    pub fn bytes(&self) -> usize {
        self.allocated_len() * self.elem().size()
    }
}

/// One kernel argument, in the order of the kernel's parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg {
    /// A buffer the kernel only reads (`const T*`).
    In(BufId),
    /// A buffer the kernel writes (and may read).
    Out(BufId),
    U32(u32),
    I32(i32),
    F32(f32),
    U64(u64),
    I64(i64),
}

/// Which stream a launch runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Main,
    /// Virtual rank r's own stream (r < [`Plan::ranks`]).
    Rank(usize),
}

/// One kernel launch.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    /// The entry point in `kernels/<topic>.cu`.
    pub entry: String,
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    /// Dynamic shared memory, in bytes.
    pub shared_bytes: u32,
    pub args: Vec<Arg>,
    pub stream: Stream,
}

/// Everything one request does on the device, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The kernel file: `kernels/<topic>.cu`.
    pub topic: &'static str,
    pub buffers: Vec<Buffer>,
    pub launches: Vec<Launch>,
    /// Streams besides the main one ([`Stream::Rank`]).
    pub ranks: usize,
    /// The buffers downloaded after the launches, in this order.
    pub read: Vec<BufId>,
    /// How many of the first launches the kernel time measures (`None`: all of them).
    pub timed_launches: Option<usize>,
}

impl Plan {
    pub fn new(topic: &'static str) -> Plan {
        Plan {
            topic,
            buffers: Vec::new(),
            launches: Vec::new(),
            ranks: 0,
            read: Vec::new(),
            timed_launches: None,
        }
    }

    /// The launches so far are the ones the kernel time measures; later ones run after its end
    /// event.
    pub fn end_timing(&mut self) {
        self.timed_launches = Some(self.launches.len());
    }

    /// How many of the first launches the kernel time measures.
    pub fn timed(&self) -> usize {
        self.timed_launches
            .unwrap_or(self.launches.len())
            .min(self.launches.len())
    }

    /// A buffer filled with `data`.
    pub fn upload(&mut self, what: impl Into<String>, data: HostData) -> BufId {
        self.buffers.push(Buffer {
            what: what.into(),
            init: Init::Upload(data),
        });
        self.buffers.len() - 1
    }

    /// A buffer of `len` zero elements.
    pub fn zeros(&mut self, what: impl Into<String>, elem: Elem, len: usize) -> BufId {
        self.buffers.push(Buffer {
            what: what.into(),
            init: Init::Zeros(elem, len),
        });
        self.buffers.len() - 1
    }

    /// Launch `entry` on the main stream.
    pub fn launch(
        &mut self,
        entry: impl Into<String>,
        grid: u32,
        block: u32,
        args: Vec<Arg>,
    ) -> &mut Launch {
        self.launch_on(Stream::Main, entry, (grid, 1, 1), (block, 1, 1), args)
    }

    /// Launch `entry` on `stream` with a 3-D grid and block.
    pub fn launch_on(
        &mut self,
        stream: Stream,
        entry: impl Into<String>,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: Vec<Arg>,
    ) -> &mut Launch {
        self.launches.push(Launch {
            entry: entry.into(),
            grid,
            block,
            shared_bytes: 0,
            args,
            stream,
        });
        let last = self.launches.len() - 1;
        &mut self.launches[last]
    }

    /// Download `id` after the launches; returns its position in [`Downloads`].
    pub fn read(&mut self, id: BufId) -> usize {
        match self.read.iter().position(|&r| r == id) {
            Some(i) => i,
            None => {
                self.read.push(id);
                self.read.len() - 1
            }
        }
    }

    /// Device memory the buffers take.
    pub fn device_bytes(&self) -> usize {
        self.buffers.iter().map(Buffer::bytes).sum()
    }

    /// Every buffer argument in range and every rank stream declared: a plan that fails this is a
    /// bug in the host code, reported as an error before anything runs.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |what: String| EngineError::Failed(format!("kernels/{}.cu: {what}", self.topic));
        for l in &self.launches {
            for a in &l.args {
                if let Arg::In(id) | Arg::Out(id) = a
                    && *id >= self.buffers.len()
                {
                    return Err(bad(format!(
                        "{} names buffer {id} of {}",
                        l.entry,
                        self.buffers.len()
                    )));
                }
            }
            if let Stream::Rank(r) = l.stream
                && r >= self.ranks
            {
                return Err(bad(format!(
                    "{} runs on rank {r} of {}",
                    l.entry, self.ranks
                )));
            }
            let zero = |d: (u32, u32, u32)| d.0 == 0 || d.1 == 0 || d.2 == 0;
            if zero(l.grid) || zero(l.block) {
                return Err(bad(format!("{} has an empty grid or block", l.entry)));
            }
        }
        if let Some(id) = self.read.iter().find(|&&id| id >= self.buffers.len()) {
            return Err(bad(format!("reads buffer {id} of {}", self.buffers.len())));
        }
        Ok(())
    }
}

impl fmt::Display for Launch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (g, b) = (self.grid, self.block);
        write!(
            f,
            "{}<<<({}, {}, {}), ({}, {}, {})>>>",
            self.entry, g.0, g.1, g.2, b.0, b.1, b.2
        )
    }
}

/// The buffers a plan read back, in the order of [`Plan::read`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Downloads {
    pub buffers: Vec<(BufId, HostData)>,
}

impl Downloads {
    fn get(&self, id: BufId) -> Result<&HostData, EngineError> {
        self.buffers
            .iter()
            .find(|(b, _)| *b == id)
            .map(|(_, d)| d)
            .ok_or_else(|| EngineError::Failed(format!("buffer {id} was not read back")))
    }

    /// Buffer `id` as values of `dtype` (f32, or f16/bf16 patterns), its first `len` of them.
    pub fn stored(&self, id: BufId, dtype: DType, len: usize) -> Result<Vec<f32>, EngineError> {
        let mut v = match (self.get(id)?, dtype) {
            (HostData::F32(v), DType::F32) => v.clone(),
            (HostData::U16(v), DType::F16 | DType::Bf16) => dtype.decode_u16(v),
            (other, _) => {
                return Err(EngineError::Failed(format!(
                    "buffer {id} holds {:?} values, not {dtype}",
                    other.elem()
                )));
            }
        };
        v.truncate(len);
        Ok(v)
    }

    /// Buffer `id` as f32 values (its first `len`).
    pub fn f32(&self, id: BufId, len: usize) -> Result<Vec<f32>, EngineError> {
        self.stored(id, DType::F32, len)
    }

    /// Buffer `id` as u32 words.
    pub fn u32(&self, id: BufId) -> Result<Vec<u32>, EngineError> {
        match self.get(id)? {
            HostData::U32(v) => Ok(v.clone()),
            other => Err(EngineError::Failed(format!(
                "buffer {id} holds {:?} values, not u32",
                other.elem()
            ))),
        }
    }
}

/// Turns a plan's downloads into its result: for a request, the output (values and aux outputs;
/// the executor fills in the timings); for the kernel files' test entry points, their words.
pub type Decode<T = OpOutput> = Box<dyn FnOnce(&Downloads) -> Result<T, EngineError> + Send>;

/// A plan and how to read its result.
pub struct Planned<T = OpOutput> {
    pub plan: Plan,
    pub decode: Decode<T>,
}

/// What a topic's host code may assume of the device it plans for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most blocks one launch uses; grid-stride loops cover the rest (65535 on every CUDA device;
    /// the emulator's tests use small values so the loops take several turns).
    pub max_blocks: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_blocks: 65_535 }
    }
}

impl Limits {
    /// A grid of `blocks` (at least 1, at most [`Limits::max_blocks`]).
    pub fn grid(&self, blocks: usize) -> u32 {
        u32::try_from(blocks)
            .unwrap_or(u32::MAX)
            .clamp(1, self.max_blocks.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_data_round_trips_through_bytes() {
        for data in [
            HostData::F32(vec![1.5, -0.0, f32::INFINITY]),
            HostData::U16(vec![1, 0xffff]),
            HostData::U32(vec![7, u32::MAX]),
            HostData::I32(vec![-3, 9]),
            HostData::U8(vec![1, 2, 3]),
        ] {
            assert_eq!(HostData::from_bytes(data.elem(), &data.to_bytes()), data);
        }
    }

    #[test]
    fn plans_are_checked_before_they_run() {
        let mut p = Plan::new("softmax");
        let x = p.upload("x", HostData::F32(vec![1.0]));
        let y = p.zeros("y", Elem::F32, 0);
        assert_eq!(p.buffers[y].allocated_len(), 1, "no zero-sized allocations");
        p.launch("softmax_f32", 1, 256, vec![Arg::In(x), Arg::Out(y)]);
        assert_eq!(p.read(y), 0);
        assert_eq!(p.read(y), 0, "read once");
        assert!(p.validate().is_ok());
        assert_eq!(p.device_bytes(), 8);
        p.launch("softmax_f32", 1, 256, vec![Arg::Out(5)]);
        assert!(p.validate().is_err());
    }
}
