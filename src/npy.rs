//! NumPy `.npy` interop for `kernelbook run`: read float (f16/f32/f64) and integer (int32/int64)
//! arrays, write results as f32, f16 or f64. bf16 has no NumPy dtype, so bf16 results are written
//! as f32 (each value exactly representable in bf16). Parsing is `npyz`'s; this file only maps
//! dtypes and turns every problem into a one-line message (printable: a damaged header's raw bytes
//! are escaped, never echoed). Shapes numpy itself could not allocate (an axis, or the product of
//! the non-zero axes, beyond [`crate::ops::MAX_ELEMENTS`]) are refused before any data is read.
//! Files are written atomically ([`crate::files`]): complete under their final name, or not at all.

use crate::dtype::DType;
use half::f16;
use npyz::{TypeChar, WriterBuilder};
use std::io::{Read, Write};
use std::path::Path;

/// The values of an array read from disk, kept in their family (floats or integers).
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

/// An array read from a `.npy` file.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
    /// The dtype as NumPy wrote it, e.g. `<f4`.
    pub descr: String,
}

impl NpyArray {
    /// The values as f32 (integers converted; exact below 2^24).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            NpyData::Float(v) => v.clone(),
            NpyData::Int(v) => v.iter().map(|&i| i as f32).collect(),
        }
    }
}

/// Read a `.npy` file. Errors name the file and the problem.
pub fn read(path: &Path) -> Result<NpyArray, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
    read_from(file).map_err(|e| format!("{}: {e}", path.display()))
}

/// Longest message taken over from the .npy parser (a damaged header can be long).
const MAX_MESSAGE_CHARS: usize = 160;

/// `text` as one printable line: control characters and other non-printables escaped (`\n`,
/// `\u{1b}`), runs of spaces collapsed, cut at [`MAX_MESSAGE_CHARS`].
pub fn printable(text: &str) -> String {
    let mut out = String::new();
    let mut chars = 0;
    let mut last_space = false;
    for c in text.chars() {
        if chars >= MAX_MESSAGE_CHARS {
            out.push('…');
            break;
        }
        if c == ' ' {
            if last_space {
                continue;
            }
            last_space = true;
            out.push(' ');
        } else if c.is_control() || c == '\u{fffd}' {
            last_space = false;
            out.extend(c.escape_default());
        } else {
            last_space = false;
            out.push(c);
        }
        chars += 1;
    }
    out.trim().to_string()
}

/// The axes a .npy header declares (`'shape': (a, b, ...)`), read without trusting the rest of
/// it; `None` when it has no readable shape (the parser then says what is wrong).
fn declared_shape(bytes: &[u8]) -> Option<Vec<u64>> {
    // The header is at most 2^32 bytes in theory; numpy writes a few hundred.
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1 << 16)]);
    let key = head.find("'shape'").or_else(|| head.find("\"shape\""))?;
    let rest = &head[key + 7..];
    let open = rest.find(['(', '['])?;
    let close = open + rest[open..].find([')', ']'])?;
    rest[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches(['L', 'l']).parse::<u64>().ok())
        .collect()
}

/// Refuse shapes no engine (and numpy itself, for the output) could hold: an axis, or the product
/// of the non-zero axes, beyond [`crate::ops::MAX_ELEMENTS`] (a header-only file may declare
/// `(0, 2**62)`: no data, but numpy cannot load an array of that shape back).
pub fn check_shape(shape: &[u64]) -> Result<(), String> {
    let max = crate::ops::MAX_ELEMENTS as u64;
    let shown = || {
        let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
        format!("({})", dims.join(", "))
    };
    if let Some(d) = shape.iter().find(|&&d| d > max) {
        return Err(format!(
            "shape {}: an axis of {d} is longer than kernelbook handles (at most 2^29 = {max})",
            shown()
        ));
    }
    let product = shape
        .iter()
        .filter(|&&d| d > 0)
        .try_fold(1u64, |acc, &d| acc.checked_mul(d).filter(|&p| p <= max));
    if product.is_none() {
        return Err(format!(
            "shape {}: more than 2^29 = {max} values, more than kernelbook handles",
            shown()
        ));
    }
    Ok(())
}

/// The .npy magic string.
const MAGIC: &[u8] = b"\x93NUMPY";

/// The most bytes read from one file: the largest array kernelbook takes, as float64, and its header.
const MAX_FILE_BYTES: u64 = crate::ops::MAX_ELEMENTS as u64 * 8 + (1 << 20);

/// Read `.npy` bytes from any reader.
pub fn read_from(reader: impl Read) -> Result<NpyArray, String> {
    let io = |e: std::io::Error| format!("cannot read ({})", printable(&e.to_string()));
    let mut reader = reader.take(MAX_FILE_BYTES + 1);
    // The header first: a file that is not .npy (or declares a shape no one can hold) is refused
    // before its data is read.
    let mut bytes = Vec::new();
    (&mut reader)
        .take(1 << 16)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if !bytes.starts_with(MAGIC) {
        return Err("not a valid .npy file (it does not start with \\x93NUMPY)".into());
    }
    // Checked before the parser sees the header: it multiplies the axes without overflow checks.
    if let Some(shape) = declared_shape(&bytes) {
        check_shape(&shape)?;
    }
    reader.read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "larger than the largest array kernelbook takes ({MAX_FILE_BYTES} bytes)"
        ));
    }
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| format!("not a valid .npy file ({})", printable(&e.to_string())))?;
    if npy.order() == npyz::Order::Fortran {
        return Err("Fortran-ordered array: save it with np.ascontiguousarray(a) first".into());
    }
    check_shape(npy.shape())?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let npyz::DType::Plain(ts) = npy.dtype() else {
        return Err(
            "structured (record) arrays are not supported: give a plain numeric array".into(),
        );
    };
    let descr = ts.to_string();
    let size = ts.num_bytes().unwrap_or(0);
    let io = |e: std::io::Error| {
        format!(
            "truncated or unreadable data ({})",
            printable(&e.to_string())
        )
    };
    let data = match (ts.type_char(), size) {
        (TypeChar::Float, 2) => NpyData::Float(
            npy.into_vec::<f16>()
                .map_err(io)?
                .into_iter()
                .map(f16::to_f32)
                .collect(),
        ),
        (TypeChar::Float, 4) => NpyData::Float(npy.into_vec::<f32>().map_err(io)?),
        (TypeChar::Float, 8) => NpyData::Float(
            npy.into_vec::<f64>()
                .map_err(io)?
                .into_iter()
                .map(|v| v as f32)
                .collect(),
        ),
        (TypeChar::Int, 4) => NpyData::Int(
            npy.into_vec::<i32>()
                .map_err(io)?
                .into_iter()
                .map(i64::from)
                .collect(),
        ),
        (TypeChar::Int, 8) => NpyData::Int(npy.into_vec::<i64>().map_err(io)?),
        _ => {
            return Err(format!(
                "unsupported dtype {}: use float16, float32, float64, int32 or int64",
                printable(&descr)
            ));
        }
    };
    let expected: usize = shape.iter().product();
    let len = match &data {
        NpyData::Float(v) => v.len(),
        NpyData::Int(v) => v.len(),
    };
    if len != expected {
        return Err(format!(
            "shape {shape:?} needs {expected} values but the file holds {len}"
        ));
    }
    Ok(NpyArray { shape, data, descr })
}

/// Write values of `dtype` with `shape`: f32 -> `<f4`, f16 -> `<f2`, bf16 -> `<f4` (exact).
/// Atomic: the file is complete under its final name, or not written.
pub fn write(path: &Path, shape: &[usize], values: &[f32], dtype: DType) -> Result<(), String> {
    let bytes = encode(shape, values, dtype)?;
    crate::files::write_atomically(path, &bytes).map_err(|e| e.to_string())
}

/// Write f64 values (the reference) as `<f8`, atomically.
pub fn write_f64(path: &Path, shape: &[usize], values: &[f64]) -> Result<(), String> {
    let bytes = encode_f64(shape, values)?;
    crate::files::write_atomically(path, &bytes).map_err(|e| e.to_string())
}

/// The bytes of a `.npy` file (see [`write`]).
pub fn encode(shape: &[usize], values: &[f32], dtype: DType) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    write_to(&mut bytes, shape, values, dtype)?;
    Ok(bytes)
}

/// The bytes of a `<f8` `.npy` file (see [`write_f64`]).
pub fn encode_f64(shape: &[usize], values: &[f64]) -> Result<Vec<u8>, String> {
    let shape64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut bytes = Vec::new();
    let res = (|| -> std::io::Result<()> {
        let mut npy = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape64)
            .writer(&mut bytes)
            .begin_nd()?;
        npy.extend(values.iter().copied())?;
        npy.finish()
    })();
    res.map_err(|e| format!("cannot write .npy ({e})"))?;
    Ok(bytes)
}

/// Write to any writer (see [`write`]).
pub fn write_to(
    w: impl Write,
    shape: &[usize],
    values: &[f32],
    dtype: DType,
) -> Result<(), String> {
    let shape64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let res = match dtype {
        DType::F16 => (|| -> std::io::Result<()> {
            let mut npy = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&shape64)
                .writer(w)
                .begin_nd()?;
            npy.extend(values.iter().map(|&v| f16::from_f32(v)))?;
            npy.finish()
        })(),
        DType::F32 | DType::Bf16 => (|| -> std::io::Result<()> {
            let mut npy = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&shape64)
                .writer(w)
                .begin_nd()?;
            npy.extend(values.iter().copied())?;
            npy.finish()
        })(),
    };
    res.map_err(|e| format!("cannot write .npy ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_f32_and_f16() {
        for dt in [DType::F32, DType::F16] {
            let mut buf = Vec::new();
            write_to(
                &mut buf,
                &[2, 3],
                &[1.0, -2.5, 0.0, 65504.0, 1e-3, f32::INFINITY],
                dt,
            )
            .unwrap();
            let a = read_from(&buf[..]).unwrap();
            assert_eq!(a.shape, vec![2, 3]);
            assert_eq!(a.descr, if dt == DType::F16 { "<f2" } else { "<f4" });
            let v = a.to_f32();
            assert_eq!(v[1], -2.5);
            assert_eq!(v[5], f32::INFINITY);
        }
    }

    #[test]
    fn reads_integers() {
        let mut buf = Vec::new();
        {
            let mut npy = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&[3])
                .writer(&mut buf)
                .begin_nd()
                .unwrap();
            npy.extend([7i32, -1, 2]).unwrap();
            npy.finish().unwrap();
        }
        let a = read_from(&buf[..]).unwrap();
        assert_eq!(a.data, NpyData::Int(vec![7, -1, 2]));
    }

    #[test]
    fn malformed_files_get_messages() {
        let e = read_from(&b"not numpy at all"[..]).unwrap_err();
        assert!(e.contains("not a valid .npy"), "{e}");
        let mut buf = Vec::new();
        write_to(&mut buf, &[4], &[1.0, 2.0, 3.0, 4.0], DType::F32).unwrap();
        buf.truncate(buf.len() - 6);
        let e = read_from(&buf[..]).unwrap_err();
        assert!(e.contains("truncated") || e.contains("needs"), "{e}");
    }

    /// A header-only file declaring `shape` (no data, which is right for a zero-sized shape).
    fn header_only(shape: &str) -> Vec<u8> {
        let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        let mut header = dict.into_bytes();
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut out = MAGIC.to_vec();
        out.extend([1, 0]);
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header);
        out
    }

    #[test]
    fn shapes_numpy_cannot_hold_are_refused() {
        for shape in [
            "(0, 4611686018427387904)",
            "(4294967296, 4294967296)",
            "(0, 1073741824)",
        ] {
            let e = read_from(&header_only(shape)[..]).unwrap_err();
            assert!(e.contains("kernelbook handles"), "{shape}: {e}");
        }
        // An empty array of a reasonable shape is fine.
        let a = read_from(&header_only("(0, 8)")[..]).unwrap();
        assert_eq!(a.shape, vec![0, 8]);
        assert_eq!(a.to_f32(), Vec::<f32>::new());
    }

    #[test]
    fn a_damaged_header_is_one_printable_line() {
        let mut bytes = header_only("(2, 3)");
        // Newlines, escape sequences and invalid UTF-8 inside the dict.
        let at = bytes.iter().position(|&b| b == b'{').unwrap() + 1;
        bytes.splice(at..at, b"\n\x1b[31m\xff\xfe\n\n".iter().copied());
        let e = read_from(&bytes[..]).unwrap_err();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(!e.chars().any(|c| c.is_control()), "{e:?}");
        assert!(e.chars().count() < 240, "{e}");
        // Not .npy at all (e.g. /dev/zero): refused after the first bytes.
        let e = read_from(std::io::repeat(0)).unwrap_err();
        assert!(e.contains("not a valid .npy"), "{e}");
    }

    /// Fuzzing: damaged and random .npy files never panic; every error is one printable line; every
    /// array read back has as many values as its shape says. Runs for a bounded time
    /// (`KERNELBOOK_FUZZ_SECONDS`, default 30) on proptest's generators.
    #[test]
    fn fuzzed_npy_files_never_panic() {
        use proptest::prelude::*;
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let seconds: f64 = std::env::var("KERNELBOOK_FUZZ_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30.0);
        #[derive(Debug, Clone)]
        enum Edit {
            Flip(usize, u8),
            Truncate(usize),
            Insert(usize, Vec<u8>),
            Number(usize, u64),
        }
        let valid = (
            prop::collection::vec(0usize..5, 0..4),
            0usize..4,
            any::<u64>(),
        )
            .prop_map(|(shape, dtype, seed)| {
                let n: usize = shape.iter().product();
                let values: Vec<f32> = (0..n).map(|i| (i as u64 ^ seed) as f32).collect();
                match dtype {
                    0 => encode(&shape, &values, DType::F32).unwrap(),
                    1 => encode(&shape, &values, DType::F16).unwrap(),
                    2 => encode_f64(
                        &shape,
                        &values.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                    )
                    .unwrap(),
                    _ => {
                        let mut buf = Vec::new();
                        let shape64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
                        let mut npy = npyz::WriteOptions::new()
                            .default_dtype()
                            .shape(&shape64)
                            .writer(&mut buf)
                            .begin_nd()
                            .unwrap();
                        npy.extend(values.iter().map(|&v| v as i64)).unwrap();
                        npy.finish().unwrap();
                        buf
                    }
                }
            });
        let edit = prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
            any::<usize>().prop_map(Edit::Truncate),
            (
                any::<usize>(),
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..8),
                    Just(b"(".to_vec()),
                    Just(b")".to_vec()),
                    Just(b",".to_vec()),
                    Just(b"'shape': (".to_vec()),
                    Just(b"'descr': '|O'".to_vec()),
                    Just(b"'fortran_order': True".to_vec()),
                    Just(b"\n".to_vec()),
                ]
            )
                .prop_map(|(i, b)| Edit::Insert(i, b)),
            (any::<usize>(), any::<u64>()).prop_map(|(i, v)| Edit::Number(i, v)),
        ];
        let case = (valid, prop::collection::vec(edit, 0..6), any::<bool>());
        let mut runner = TestRunner::deterministic();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds);
        let mut tried = 0u64;
        while std::time::Instant::now() < deadline {
            let (mut bytes, edits, keep_magic) = case.new_tree(&mut runner).unwrap().current();
            for e in &edits {
                let len = bytes.len().max(1);
                match e {
                    Edit::Flip(i, b) if !bytes.is_empty() => bytes[i % len] ^= b | 1,
                    Edit::Flip(..) => {}
                    Edit::Truncate(i) => bytes.truncate(i % len),
                    Edit::Insert(i, b) => {
                        let at = i % (bytes.len() + 1);
                        bytes.splice(at..at, b.iter().copied());
                    }
                    Edit::Number(i, v) => {
                        let at = i % (bytes.len() + 1);
                        bytes.splice(at..at, v.to_string().into_bytes());
                    }
                }
            }
            if keep_magic && !bytes.starts_with(MAGIC) {
                bytes.splice(0..0, MAGIC.iter().copied());
            }
            let result = std::panic::catch_unwind(|| read_from(&bytes[..]));
            match result {
                Err(_) => panic!("read_from panicked on {bytes:?} (edits {edits:?})"),
                Ok(Err(e)) => {
                    assert!(
                        e.lines().count() == 1 && !e.chars().any(char::is_control),
                        "not one printable line: {e:?} for {bytes:?}"
                    );
                }
                Ok(Ok(a)) => {
                    let n: usize = a.shape.iter().product();
                    assert_eq!(a.to_f32().len(), n, "{bytes:?}");
                }
            }
            tried += 1;
        }
        eprintln!("{tried} fuzzed .npy files in {seconds} s");
        assert!(tried > 100, "only {tried} cases in {seconds} s");
    }
}
