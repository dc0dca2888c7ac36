//! Runs the CUDA kernels under `kernels/` on the CPU, for the tests (`mod cuda_emu;`).
//!
//! A kernel file is compiled as C++20 by g++ together with `emu.h` (CUDA's built-ins on fibers: see
//! its header comment for the execution model), the storage types of `kernels/dtype.cuh` (with
//! `dtype_emu.h`'s F16 in place of the inline-PTX one) and a generated driver that knows every
//! `extern "C" __global__` entry point of the file. A [`Program`] describes buffers and launches
//! (grid, block, arguments, exactly what the host code passes to cudarc); [`Program::run`] writes
//! them to a script, runs the compiled driver and reads every buffer back. The driver checks each
//! launch against the kernel's signature (argument count, scalar types, a pointer's element type
//! against the buffer's) and its `__launch_bounds__`.
//!
//! Builds use AddressSanitizer and UBSan when the toolchain has them (out-of-bounds accesses,
//! misaligned vector loads, shifts past the word size, float-to-int overflow are errors naming the
//! kernel, block and thread); `KERNELBOOK_EMU_SANITIZE=0` turns them off. Compiled drivers are
//! cached under the test target directory by a hash of everything compiled, so a rerun costs no
//! compile. Without g++, [`available`] says why and the tests skip, unless
//! `KERNELBOOK_REQUIRE_EMU=1`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const EMU_H: &str = include_str!("emu.h");
const DTYPE_EMU_H: &str = include_str!("dtype_emu.h");

/// Why a program did not run.
#[derive(Debug, Clone, PartialEq)]
pub enum EmuError {
    /// No C++ compiler here: the tests skip.
    Unavailable(String),
    /// The kernel file did not compile, the launch was invalid, or the kernel failed (an
    /// out-of-bounds access, a divergent barrier, ...): the message says which.
    Failed(String),
}

impl fmt::Display for EmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmuError::Unavailable(s) => write!(f, "CUDA emulator unavailable: {s}"),
            EmuError::Failed(s) => write!(f, "{s}"),
        }
    }
}

fn env_flag(name: &str) -> Option<bool> {
    std::env::var(name).ok().map(|v| v.trim() == "1")
}

/// The C++ compiler: `$KERNELBOOK_EMU_CXX`, else `g++`.
fn compiler() -> String {
    std::env::var("KERNELBOOK_EMU_CXX")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "g++".to_string())
}

/// The compiler's version line, or why there is none.
fn compiler_version() -> &'static Result<String, String> {
    static VERSION: OnceLock<Result<String, String>> = OnceLock::new();
    VERSION.get_or_init(|| {
        let cxx = compiler();
        match Command::new(&cxx).arg("--version").output() {
            Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()),
            Ok(out) => Err(format!(
                "{cxx} --version failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!("no C++ compiler ({cxx}: {e})")),
        }
    })
}

/// Whether kernels can be emulated here: `Err` says why not.
pub fn available() -> Result<(), String> {
    compiler_version()
        .as_ref()
        .map(|_| ())
        .map_err(Clone::clone)
}

/// `true` when the emulator is available; otherwise prints the reason and returns `false`, or
/// panics when `KERNELBOOK_REQUIRE_EMU=1`.
pub fn ready() -> bool {
    match available() {
        Ok(()) => true,
        Err(reason) => {
            assert!(
                env_flag("KERNELBOOK_REQUIRE_EMU") != Some(true),
                "KERNELBOOK_REQUIRE_EMU=1 but {reason}"
            );
            println!("skipped: {reason}");
            false
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Programs: buffers and launches.
// ------------------------------------------------------------------------------------------------

/// Element type of a buffer (checked against the kernel's pointer parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    /// f16 or bf16 bit patterns (`unsigned short`).
    U16,
    U32,
    I32,
    U8,
}

impl Elem {
    fn code(self) -> u32 {
        match self {
            Elem::F32 => 0,
            Elem::U16 => 1,
            Elem::U32 => 2,
            Elem::I32 => 3,
            Elem::U8 => 4,
        }
    }

    pub fn size(self) -> usize {
        match self {
            Elem::F32 | Elem::U32 | Elem::I32 => 4,
            Elem::U16 => 2,
            Elem::U8 => 1,
        }
    }
}

/// A buffer of a [`Program`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buf(usize);

/// One kernel argument, as the host pushes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arg {
    /// A buffer, access unchecked (the emulator's own test kernels).
    Buf(Buf),
    /// A buffer the launch declares read-only: the parameter must be a `const T*`.
    Read(Buf),
    /// A buffer the launch declares written: the parameter must be a `T*`.
    Write(Buf),
    U32(u32),
    I32(i32),
    F32(f32),
    U64(u64),
    I64(i64),
}

impl From<Buf> for Arg {
    fn from(b: Buf) -> Arg {
        Arg::Buf(b)
    }
}

/// Grid or block dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dim3(pub u32, pub u32, pub u32);

impl From<u32> for Dim3 {
    fn from(x: u32) -> Dim3 {
        Dim3(x, 1, 1)
    }
}

impl From<(u32, u32, u32)> for Dim3 {
    fn from((x, y, z): (u32, u32, u32)) -> Dim3 {
        Dim3(x, y, z)
    }
}

/// The order in which the scheduler runs a block's threads between barriers. A race-free kernel
/// gives the same bits under every order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    Forward,
    Reverse,
    Shuffle(u64),
}

#[derive(Clone, Debug)]
struct Launch {
    entry: String,
    grid: Dim3,
    block: Dim3,
    shared_bytes: usize,
    args: Vec<Arg>,
}

/// Where the kernels come from.
#[derive(Clone, Debug)]
enum Source {
    /// `kernels/<topic>.cu`, as embedded in the library.
    Topic(String),
    /// Test code compiled like a kernel file (after the storage types).
    Custom { name: String, code: String },
}

/// Buffers and launches, run in order on one emulated device.
#[derive(Clone, Debug)]
pub struct Program {
    source: Source,
    buffers: Vec<(Elem, Vec<u8>)>,
    launches: Vec<Launch>,
    schedule: Schedule,
}

impl Program {
    /// Launches of `kernels/<topic>.cu`.
    pub fn topic(topic: &str) -> Program {
        Program {
            source: Source::Topic(topic.to_string()),
            buffers: Vec::new(),
            launches: Vec::new(),
            schedule: Schedule::Forward,
        }
    }

    /// Launches of test kernels: `code` is compiled like a kernel file (after the storage types).
    pub fn custom(name: &str, code: &str) -> Program {
        Program {
            source: Source::Custom {
                name: name.to_string(),
                code: code.to_string(),
            },
            buffers: Vec::new(),
            launches: Vec::new(),
            schedule: Schedule::Forward,
        }
    }

    pub fn schedule(&mut self, schedule: Schedule) -> &mut Self {
        self.schedule = schedule;
        self
    }

    pub fn with_schedule(&self, schedule: Schedule) -> Program {
        let mut p = self.clone();
        p.schedule = schedule;
        p
    }

    fn push(&mut self, elem: Elem, bytes: Vec<u8>) -> Buf {
        self.buffers.push((elem, bytes));
        Buf(self.buffers.len() - 1)
    }

    pub fn input_f32(&mut self, values: &[f32]) -> Buf {
        self.push(
            Elem::F32,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    pub fn input_u16(&mut self, values: &[u16]) -> Buf {
        self.push(
            Elem::U16,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    pub fn input_u32(&mut self, values: &[u32]) -> Buf {
        self.push(
            Elem::U32,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    pub fn input_i32(&mut self, values: &[i32]) -> Buf {
        self.push(
            Elem::I32,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    /// A buffer holding `bytes` (little-endian elements of `elem`).
    pub fn input_bytes(&mut self, elem: Elem, bytes: Vec<u8>) -> Buf {
        self.push(elem, bytes)
    }

    /// A zero-filled buffer of `len` elements (as `alloc_zeros`).
    pub fn zeros(&mut self, elem: Elem, len: usize) -> Buf {
        self.push(elem, vec![0; len * elem.size()])
    }

    /// Launch `entry` with `grid` x `block` threads and these arguments.
    pub fn launch(
        &mut self,
        entry: &str,
        grid: impl Into<Dim3>,
        block: impl Into<Dim3>,
        args: &[Arg],
    ) -> &mut Self {
        self.launch_shared(entry, grid, block, 0, args)
    }

    /// [`Program::launch`] with `shared_bytes` of dynamic shared memory.
    pub fn launch_shared(
        &mut self,
        entry: &str,
        grid: impl Into<Dim3>,
        block: impl Into<Dim3>,
        shared_bytes: usize,
        args: &[Arg],
    ) -> &mut Self {
        self.launches.push(Launch {
            entry: entry.to_string(),
            grid: grid.into(),
            block: block.into(),
            shared_bytes,
            args: args.to_vec(),
        });
        self
    }

    /// Compile (or find in the cache), run every launch, and return every buffer's final bytes.
    pub fn run(&self) -> Result<Outputs, EmuError> {
        available().map_err(EmuError::Unavailable)?;
        let (name, code) = match &self.source {
            Source::Topic(topic) => (
                topic.clone(),
                kernelbook::sources::cuda(topic)
                    .ok_or_else(|| EmuError::Failed(format!("no kernel file for topic {topic}")))?
                    .to_string(),
            ),
            Source::Custom { name, code } => (name.clone(), code.clone()),
        };
        let (binary, sanitized) = build(&name, &code)?;
        log_launches(&name, &self.launches);
        let mut out = execute(&binary, self)?;
        out.sanitized = sanitized;
        Ok(out)
    }
}

/// With `KERNELBOOK_EMU_LOG=<file>`, append "<file> <entry> <grid> <block>" for every launch (to
/// see which kernels and configurations a test run exercised).
fn log_launches(name: &str, launches: &[Launch]) {
    let Some(path) = std::env::var_os("KERNELBOOK_EMU_LOG") else {
        return;
    };
    let lines: String = launches
        .iter()
        .map(|l| {
            format!(
                "{name} {} {}x{}x{} {}x{}x{}\n",
                l.entry, l.grid.0, l.grid.1, l.grid.2, l.block.0, l.block.1, l.block.2
            )
        })
        .collect();
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(lines.as_bytes());
    }
}

/// Every buffer of a program after its launches.
#[derive(Clone, Debug)]
pub struct Outputs {
    buffers: Vec<Vec<u8>>,
    /// What the driver printed (launch and fiber-switch counts).
    pub log: String,
    pub wall: Duration,
    /// Whether the driver was built with AddressSanitizer and UBSan.
    pub sanitized: bool,
}

impl Outputs {
    pub fn bytes(&self, b: Buf) -> &[u8] {
        &self.buffers[b.0]
    }

    pub fn f32(&self, b: Buf) -> Vec<f32> {
        self.bytes(b)
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    pub fn u16(&self, b: Buf) -> Vec<u16> {
        self.bytes(b)
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    pub fn u32(&self, b: Buf) -> Vec<u32> {
        self.bytes(b)
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    pub fn i32(&self, b: Buf) -> Vec<i32> {
        self.u32(b).into_iter().map(|v| v as i32).collect()
    }

    /// All buffers, for comparing two runs bit for bit.
    pub fn all_bytes(&self) -> &[Vec<u8>] {
        &self.buffers
    }
}

// ------------------------------------------------------------------------------------------------
// Building: source rewriting, entry points, compile cache.
// ------------------------------------------------------------------------------------------------

/// FNV-1a 64: a stable cache key.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `kernels/dtype.cuh` with its inline-PTX `struct F16 { ... };` replaced by `dtype_emu.h`'s (the
/// rest of the prelude is kept as it is).
pub fn emulated_prelude() -> Result<String, EmuError> {
    let prelude = kernelbook::sources::CUDA_PRELUDE;
    let start = prelude.find("struct F16 {").ok_or_else(|| {
        EmuError::Failed("kernels/dtype.cuh has no `struct F16 {` to replace".into())
    })?;
    let mut depth = 0usize;
    let mut end = None;
    for (i, c) in prelude[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = Some(start + i + 1);
                    break;
                }
            }
            _ => {}
        }
    }
    let end = end
        .filter(|&e| prelude[e..].starts_with(';'))
        .ok_or_else(|| EmuError::Failed("kernels/dtype.cuh: unbalanced `struct F16`".into()))?;
    if !prelude[start..=end].contains("asm") {
        // F16 without inline PTX compiles as it is.
        return Ok(prelude.to_string());
    }
    // A #line after the replacement: compiler messages point at dtype.cuh's own lines.
    let rest = &prelude[end + 1..];
    let rest = rest.strip_prefix('\n').unwrap_or(rest);
    Ok(format!(
        "{}\n#line 1 \"tests/cuda_emu/dtype_emu.h\"\n{DTYPE_EMU_H}\n#line {} \"kernels/dtype.cuh\"\n{rest}",
        &prelude[..start],
        prelude[..=end].lines().count() + 1,
    ))
}

/// Byte spans of the source that are code (not comments, string or char literals).
fn code_mask(src: &str) -> Vec<bool> {
    let b = src.as_bytes();
    let mut mask = vec![true; b.len()];
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'/' {
            while i < b.len() && b[i] != b'\n' {
                mask[i] = false;
                i += 1;
            }
        } else if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'*' {
            let start = i;
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i = (i + 2).min(b.len());
            mask[start..i].iter_mut().for_each(|m| *m = false);
        } else if b[i] == b'"' || b[i] == b'\'' {
            let quote = b[i];
            mask[i] = false;
            i += 1;
            while i < b.len() && b[i] != quote {
                if b[i] == b'\\' {
                    mask[i] = false;
                    i += 1;
                }
                if i < b.len() {
                    mask[i] = false;
                    i += 1;
                }
            }
            if i < b.len() {
                mask[i] = false;
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    mask
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Positions of `word` as a whole identifier in the code parts of `src`.
fn find_word(src: &str, mask: &[bool], word: &str) -> Vec<usize> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(off) = src[from..].find(word) {
        let at = from + off;
        let end = at + word.len();
        let before_ok = at == 0 || !is_ident(b[at - 1]);
        let after_ok = end >= b.len() || !is_ident(b[end]);
        if before_ok && after_ok && mask[at] {
            out.push(at);
        }
        from = end;
    }
    out
}

/// Split at top-level commas (outside (), [], {}).
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The identifiers of a text, in order.
fn identifiers(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if is_ident(b[i]) && !b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            out.push(&s[start..i]);
        } else if b[i].is_ascii_digit() {
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Remove `__align__(...)` from a declaration.
fn strip_align(s: &str) -> String {
    let mut out = s.to_string();
    while let Some(at) = out.find("__align__(") {
        let mut depth = 0;
        let mut end = out.len();
        for (i, c) in out[at..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = at + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..end, "");
    }
    out
}

/// The declared name of one declarator (`float buf[256]` -> buf, `*p` -> p).
fn declarator_name(decl: &str, first: bool) -> Option<String> {
    let decl = strip_align(decl);
    let head = decl.split(['[', '=']).next().unwrap_or("");
    let ids = identifiers(head);
    let name = if first { ids.last() } else { ids.first() };
    name.map(|s| s.to_string())
}

/// Rewrite the `__shared__` declarations of a kernel file for the emulator:
/// `__shared__ T a[N], b[M];` -> `static T a[N], b[M]; KB_SHARED_REGISTER(a) KB_SHARED_REGISTER(b)`
/// (poisoned at every block start) and `extern __shared__ T name[];` -> a pointer to the dynamic
/// shared memory. Lines are kept, so compiler messages point at the file's own lines.
pub fn rewrite_shared(src: &str) -> String {
    let mask = code_mask(src);
    let hits = find_word(src, &mask, "__shared__");
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 256);
    let mut copied = 0;
    for at in hits {
        if at < copied {
            continue;
        }
        // The declaration ends at the next `;` of the code.
        let Some(semi) = (at..b.len()).find(|&i| b[i] == b';' && mask[i]) else {
            continue;
        };
        let decl = &src[at + "__shared__".len()..semi];
        // `extern` right before?
        let before = src[..at].trim_end();
        let is_extern = before.ends_with("extern")
            && before
                .len()
                .checked_sub(7)
                .is_none_or(|i| !is_ident(before.as_bytes()[i]));
        if is_extern {
            let extern_at = before.len() - "extern".len();
            let d = strip_align(decl);
            let d = d.trim();
            let Some(bracket) = d.rfind('[') else {
                continue;
            };
            let head = d[..bracket].trim();
            let ids = identifiers(head);
            let Some(name) = ids.last() else { continue };
            let ty = head[..head.len() - name.len()].trim();
            out.push_str(&src[copied..extern_at]);
            out.push_str(&format!(
                "{ty}* const {name} = reinterpret_cast<{ty}*>(kb_dynamic_shared);"
            ));
            copied = semi + 1;
            continue;
        }
        if decl.contains('=') {
            continue; // an initializer: not CUDA; leave it to the `static` macro
        }
        let parts = split_top(decl);
        let names: Vec<String> = parts
            .iter()
            .enumerate()
            .filter_map(|(i, p)| declarator_name(p, i == 0))
            .collect();
        if names.len() != parts.len() {
            continue;
        }
        out.push_str(&src[copied..at]);
        out.push_str("static");
        out.push_str(decl);
        out.push(';');
        for n in names {
            out.push_str(&format!(" KB_SHARED_REGISTER({n})"));
        }
        copied = semi + 1;
    }
    out.push_str(&src[copied..]);
    out
}

/// An `extern "C" __global__` entry point: its name and its `__launch_bounds__` thread limit (a
/// C++ constant expression, "0" when none).
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub name: String,
    pub max_threads: String,
}

/// The entry points of preprocessed code: each `extern "C"`, then `__global__`, `void`,
/// `__launch_bounds__(...)` in any order, then the name and `(`.
pub fn entry_points(preprocessed: &str) -> Vec<Entry> {
    let mask = code_mask(preprocessed);
    let mut out = Vec::new();
    let b = preprocessed.as_bytes();
    for at in find_word(preprocessed, &mask, "extern") {
        let mut i = at + "extern".len();
        let skip_ws = |i: &mut usize| {
            while *i < b.len() && b[*i].is_ascii_whitespace() {
                *i += 1;
            }
        };
        skip_ws(&mut i);
        if !preprocessed[i..].starts_with("\"C\"") {
            continue;
        }
        i += 3;
        let mut global = false;
        let mut bounds = "0".to_string();
        let mut name = None;
        loop {
            skip_ws(&mut i);
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            if start == i {
                break;
            }
            let word = &preprocessed[start..i];
            skip_ws(&mut i);
            match word {
                "__global__" => global = true,
                "void" | "static" | "inline" => {}
                "__launch_bounds__" if i < b.len() && b[i] == b'(' => {
                    let open = i;
                    let mut depth = 0;
                    while i < b.len() {
                        match b[i] {
                            b'(' => depth += 1,
                            b')' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                    let args = &preprocessed[open + 1..i.min(b.len())];
                    bounds = format!("({})", split_top(args)[0].trim());
                    i += 1;
                }
                _ if i < b.len() && b[i] == b'(' => {
                    name = Some(word.to_string());
                    break;
                }
                _ => break,
            }
        }
        if let (true, Some(name)) = (global, name)
            && !out.iter().any(|e: &Entry| e.name == name)
        {
            out.push(Entry {
                name,
                max_threads: bounds,
            });
        }
    }
    out
}

fn sanitize() -> bool {
    env_flag("KERNELBOOK_EMU_SANITIZE") != Some(false)
}

const BASE_FLAGS: &[&str] = &[
    "-std=c++20",
    "-O1",
    "-g",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-fno-threadsafe-statics",
    "-fno-strict-aliasing",
    "-w",
];
const SANITIZE_FLAGS: &[&str] = &[
    "-fsanitize=address,undefined,float-cast-overflow",
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
    "-DKB_SANITIZE=1",
];

/// Where compiled drivers are kept.
fn cache_dir() -> PathBuf {
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    base.join("cuda_emu")
}

/// The whole C++ program for a kernel file: emu.h, the storage types, the file, the driver.
pub fn program_source(name: &str, code: &str) -> Result<String, EmuError> {
    let prelude = emulated_prelude()?;
    let kernel = rewrite_shared(code);
    let preprocessed = preprocess(&format!("{prelude}\n{kernel}"))?;
    let entries = entry_points(&preprocessed);
    if entries.is_empty() {
        return Err(EmuError::Failed(format!(
            "{name}: no extern \"C\" __global__ entry points found"
        )));
    }
    let table: Vec<String> = entries
        .iter()
        .map(|e| format!("    KB_ENTRY({}, {}),", e.name, e.max_threads))
        .collect();
    let file = if code_is_topic(name) {
        format!("kernels/{name}.cu")
    } else {
        format!("{name} (test kernel)")
    };
    Ok(format!(
        "{EMU_H}\n#line 1 \"kernels/dtype.cuh\"\n{prelude}\n#line 1 \"{file}\"\n{kernel}\n\n\
         // ---- driver (generated by tests/cuda_emu/mod.rs) ----\n\
         static const KbEntry kb_entries[] = {{\n{}\n}};\n\
         int main(int argc, char** argv) {{\n    \
         return kb_main(argc, argv, kb_entries, sizeof kb_entries / sizeof kb_entries[0]);\n}}\n",
        table.join("\n")
    ))
}

/// The `extern "C" __global__` entry points of `kernels/<topic>.cu`.
pub fn topic_entries(topic: &str) -> Result<Vec<Entry>, EmuError> {
    available().map_err(EmuError::Unavailable)?;
    let code = kernelbook::sources::cuda(topic)
        .ok_or_else(|| EmuError::Failed(format!("no kernel file for topic {topic}")))?;
    let prelude = emulated_prelude()?;
    Ok(entry_points(&preprocess(&format!(
        "{prelude}\n{}",
        rewrite_shared(code)
    ))?))
}

fn code_is_topic(name: &str) -> bool {
    kernelbook::sources::cuda(name).is_some()
}

/// Run the preprocessor alone on kernel code (no system headers: kernel files include nothing).
fn preprocess(code: &str) -> Result<String, EmuError> {
    let mut child = Command::new(compiler())
        .args(["-E", "-P", "-x", "c++", "-std=c++20", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| EmuError::Unavailable(format!("cannot run {}: {e}", compiler())))?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(code.as_bytes())
            .map_err(|e| EmuError::Failed(format!("preprocessor input: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| EmuError::Failed(format!("preprocessor: {e}")))?;
    if !out.status.success() {
        return Err(EmuError::Failed(format!(
            "the preprocessor failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Compiled drivers by cache key, built once per test process (concurrent tests wait for it).
type BuildSlot = Arc<Mutex<Option<Result<(PathBuf, bool), EmuError>>>>;

/// The compiled driver for a kernel file and whether it has the sanitizers.
fn build(name: &str, code: &str) -> Result<(PathBuf, bool), EmuError> {
    static BUILDS: OnceLock<Mutex<HashMap<u64, BuildSlot>>> = OnceLock::new();
    let source = program_source(name, code)?;
    let version = compiler_version()
        .as_ref()
        .map_err(|e| EmuError::Unavailable(e.clone()))?;
    let sanitize = sanitize();
    let flags = if sanitize {
        format!("{} {}", BASE_FLAGS.join(" "), SANITIZE_FLAGS.join(" "))
    } else {
        BASE_FLAGS.join(" ")
    };
    let key = fnv1a(&[source.as_bytes(), flags.as_bytes(), version.as_bytes()]);
    let slot = {
        let mut map = BUILDS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Arc::clone(map.entry(key).or_default())
    };
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(done) = slot.as_ref() {
        return done.clone();
    }
    let result = compile(name, &source, key, sanitize);
    *slot = Some(result.clone());
    result
}

fn compile(
    name: &str,
    source: &str,
    key: u64,
    sanitize: bool,
) -> Result<(PathBuf, bool), EmuError> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| EmuError::Failed(format!("cannot create {}: {e}", dir.display())))?;
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let binary = dir.join(format!("{safe}-{key:016x}"));
    // A marker next to the binary records a build that fell back to no sanitizers.
    let plain_marker = dir.join(format!("{safe}-{key:016x}.plain"));
    if binary.is_file() {
        return Ok((binary, sanitize && !plain_marker.is_file()));
    }
    let cpp = dir.join(format!("{safe}-{key:016x}.cpp"));
    std::fs::write(&cpp, source)
        .map_err(|e| EmuError::Failed(format!("cannot write {}: {e}", cpp.display())))?;
    let tmp = dir.join(format!("{safe}-{key:016x}.{}.tmp", std::process::id()));
    let run = |with_sanitizers: bool| {
        let mut cmd = Command::new(compiler());
        cmd.args(BASE_FLAGS);
        if with_sanitizers {
            cmd.args(SANITIZE_FLAGS);
        }
        cmd.arg(&cpp).arg("-o").arg(&tmp);
        cmd.output()
    };
    let started = Instant::now();
    let mut sanitized = sanitize;
    let mut out =
        run(sanitize).map_err(|e| EmuError::Unavailable(format!("{}: {e}", compiler())))?;
    if !out.status.success() && sanitize {
        let first = String::from_utf8_lossy(&out.stderr).into_owned();
        // A toolchain without the sanitizer runtimes: build without them (and say so).
        if first.contains("asan") || first.contains("ubsan") || first.contains("sanitizer") {
            eprintln!("cuda-emu: building {name} without sanitizers (not available: {first})");
            out = run(false).map_err(|e| EmuError::Unavailable(format!("{e}")))?;
            sanitized = false;
            let _ = std::fs::write(&plain_marker, "built without sanitizers\n");
        }
    }
    // Some kernels and sanitizer runtimes do not get along (e.g. an older libasan under a kernel
    // with more mmap randomisation dies at start-up): then build without the sanitizers.
    if out.status.success() && sanitized && !starts(&tmp) {
        eprintln!("cuda-emu: the sanitized {name} driver does not start here; building it without");
        out = run(false).map_err(|e| EmuError::Unavailable(format!("{e}")))?;
        sanitized = false;
        let _ = std::fs::write(&plain_marker, "the sanitized build did not start\n");
    }
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(EmuError::Failed(format!(
            "{name}: g++ could not compile the emulated kernels (source kept at {}):\n{}",
            cpp.display(),
            truncate(&String::from_utf8_lossy(&out.stderr), 6000)
        )));
    }
    std::fs::rename(&tmp, &binary)
        .map_err(|e| EmuError::Failed(format!("cannot move the driver into place: {e}")))?;
    remove_stale(&dir, &safe, key);
    eprintln!(
        "cuda-emu: compiled {name} in {:.1} s{}",
        started.elapsed().as_secs_f64(),
        if sanitized {
            " (with ASan and UBSan)"
        } else {
            ""
        }
    );
    Ok((binary, sanitized))
}

/// Whether a freshly built driver runs an empty script (within 30 s).
fn starts(binary: &Path) -> bool {
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    let script = dir.path().join("script.txt");
    if std::fs::write(&script, "schedule forward 0\n").is_err() {
        return false;
    }
    let Ok(mut child) = Command::new(binary)
        .arg(&script)
        .arg(dir.path())
        .env("ASAN_OPTIONS", ASAN_OPTIONS)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if started.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// AddressSanitizer's settings: buffers are never freed (the process ends), and LeakSanitizer
/// cannot run under ptrace.
const ASAN_OPTIONS: &str = "detect_leaks=0:detect_stack_use_after_return=0:abort_on_error=0";

/// Drivers of earlier versions of the same file, built more than a day ago: removed, so the cache
/// does not grow with every kernel edit.
fn remove_stale(dir: &Path, name: &str, key: u64) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    let current = format!("{name}-{key:016x}");
    let day = Duration::from_secs(24 * 3600);
    for entry in read.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&format!("{name}-")) else {
            continue;
        };
        // Only this file's drivers: "<name>-<16 hex digits>" and its .cpp / .plain.
        let is_ours = rest.len() >= 16 && rest[..16].chars().all(|c| c.is_ascii_hexdigit());
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > day);
        if is_ours && old && !file.starts_with(&current) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The start and the end of a long text (a sanitizer report ends with the kernel, block and
/// thread).
fn truncate_middle(s: &str, keep: usize) -> String {
    if s.len() <= 2 * keep {
        return s.to_string();
    }
    let mut head = keep;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - keep;
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n... ({} bytes) ...\n{}",
        &s[..head],
        tail - head,
        &s[tail..]
    )
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}\n... ({} more bytes)", &s[..cut], s.len() - cut)
}

// ------------------------------------------------------------------------------------------------
// Running.
// ------------------------------------------------------------------------------------------------

fn timeout() -> Duration {
    let secs = std::env::var("KERNELBOOK_EMU_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(300);
    Duration::from_secs(secs)
}

fn execute(binary: &Path, program: &Program) -> Result<Outputs, EmuError> {
    let dir = tempfile::tempdir()
        .map_err(|e| EmuError::Failed(format!("cannot create a temporary directory: {e}")))?;
    let mut script = String::new();
    let (mode, seed) = match program.schedule {
        Schedule::Forward => ("forward", 0),
        Schedule::Reverse => ("reverse", 0),
        Schedule::Shuffle(seed) => ("shuffle", seed),
    };
    script.push_str(&format!("schedule {mode} {seed}\n"));
    for (i, (elem, bytes)) in program.buffers.iter().enumerate() {
        let file = if bytes.iter().all(|&b| b == 0) {
            "-".to_string()
        } else {
            let path = dir.path().join(format!("in{i}.bin"));
            std::fs::write(&path, bytes)
                .map_err(|e| EmuError::Failed(format!("cannot write an input: {e}")))?;
            path.display().to_string()
        };
        script.push_str(&format!("buffer {} {} {file}\n", elem.code(), bytes.len()));
    }
    for l in &program.launches {
        let args: Vec<String> = l
            .args
            .iter()
            .map(|a| match *a {
                Arg::Buf(Buf(i)) => format!("b{i}"),
                Arg::Read(Buf(i)) => format!("r{i}"),
                Arg::Write(Buf(i)) => format!("w{i}"),
                Arg::U32(v) => format!("u{v}"),
                Arg::I32(v) => format!("i{v}"),
                Arg::F32(v) => format!("f{:x}", v.to_bits()),
                Arg::U64(v) => format!("U{v}"),
                Arg::I64(v) => format!("I{v}"),
            })
            .collect();
        script.push_str(&format!(
            "launch {} {} {} {} {} {} {} {} {} {}\n",
            l.entry,
            l.grid.0,
            l.grid.1,
            l.grid.2,
            l.block.0,
            l.block.1,
            l.block.2,
            l.shared_bytes,
            args.len(),
            args.join(" ")
        ));
    }
    let script_path = dir.path().join("script.txt");
    std::fs::write(&script_path, &script)
        .map_err(|e| EmuError::Failed(format!("cannot write the script: {e}")))?;
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| EmuError::Failed(format!("cannot create the output directory: {e}")))?;

    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg(&script_path)
        .arg(&out_dir)
        .env("ASAN_OPTIONS", ASAN_OPTIONS)
        .env("UBSAN_OPTIONS", "print_stacktrace=1:abort_on_error=1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| EmuError::Failed(format!("cannot run {}: {e}", binary.display())))?;
    // Drain the pipes on threads so a chatty kernel cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let limit = timeout();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(EmuError::Failed(format!(
                    "the emulated launches ran longer than {} s (KERNELBOOK_EMU_TIMEOUT); script:\n{}",
                    limit.as_secs(),
                    truncate(&script, 2000)
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(EmuError::Failed(format!("waiting for the driver: {e}"))),
        }
    };
    let wall = started.elapsed();
    let log = out_thread.join().unwrap_or_default();
    let err = err_thread.join().unwrap_or_default();
    if !status.success() {
        return Err(EmuError::Failed(format!(
            "the emulated kernel failed ({status}):\n{}\nlaunches:\n{}",
            truncate_middle(err.trim(), 3000),
            truncate(
                &script
                    .lines()
                    .filter(|l| l.starts_with("launch"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                2000
            )
        )));
    }
    let mut buffers = Vec::with_capacity(program.buffers.len());
    for (i, (_, bytes)) in program.buffers.iter().enumerate() {
        let data = std::fs::read(out_dir.join(format!("{i}.bin")))
            .map_err(|e| EmuError::Failed(format!("cannot read output buffer {i}: {e}")))?;
        if data.len() != bytes.len() {
            return Err(EmuError::Failed(format!(
                "output buffer {i}: {} bytes, expected {}",
                data.len(),
                bytes.len()
            )));
        }
        buffers.push(data);
    }
    Ok(Outputs {
        buffers,
        log: log.trim().to_string(),
        wall,
        sanitized: false,
    })
}
