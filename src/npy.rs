//! NumPy `.npy` interop for `kernelbook run`: read float (f16/f32/f64) and integer (int32/int64)
//! arrays, write results as f32, f16 or f64. bf16 has no NumPy dtype, so bf16 results are written
//! as f32 (each value exactly representable in bf16). Parsing is `npyz`'s; this file only maps
//! dtypes and turns every problem into a one-line message.

use crate::dtype::DType;
use half::f16;
use npyz::{TypeChar, WriterBuilder};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
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
    let file = File::open(path).map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
    read_from(BufReader::new(file)).map_err(|e| format!("{}: {e}", path.display()))
}

/// Read `.npy` bytes from any reader.
pub fn read_from(reader: impl Read) -> Result<NpyArray, String> {
    let npy = npyz::NpyFile::new(reader).map_err(|e| format!("not a valid .npy file ({e})"))?;
    if npy.order() == npyz::Order::Fortran {
        return Err("Fortran-ordered array: save it with np.ascontiguousarray(a) first".into());
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let npyz::DType::Plain(ts) = npy.dtype() else {
        return Err(
            "structured (record) arrays are not supported: give a plain numeric array".into(),
        );
    };
    let descr = ts.to_string();
    let size = ts.num_bytes().unwrap_or(0);
    let io = |e: std::io::Error| format!("truncated or unreadable data ({e})");
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
                "unsupported dtype {descr}: use float16, float32, float64, int32 or int64"
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
pub fn write(path: &Path, shape: &[usize], values: &[f32], dtype: DType) -> Result<(), String> {
    let file = File::create(path).map_err(|e| format!("{}: cannot create: {e}", path.display()))?;
    let mut w = BufWriter::new(file);
    write_to(&mut w, shape, values, dtype).map_err(|e| format!("{}: {e}", path.display()))?;
    w.flush().map_err(|e| format!("{}: {e}", path.display()))
}

/// Write f64 values (the reference) as `<f8`.
pub fn write_f64(path: &Path, shape: &[usize], values: &[f64]) -> Result<(), String> {
    let file = File::create(path).map_err(|e| format!("{}: cannot create: {e}", path.display()))?;
    let mut w = BufWriter::new(file);
    let shape64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let res = (|| -> std::io::Result<()> {
        let mut npy = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape64)
            .writer(&mut w)
            .begin_nd()?;
        npy.extend(values.iter().copied())?;
        npy.finish()
    })();
    res.map_err(|e| format!("{}: {e}", path.display()))?;
    w.flush().map_err(|e| format!("{}: {e}", path.display()))
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
}
