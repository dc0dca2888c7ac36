//! Storage precisions (f32, f16, bf16): rounding, bit encodings shared by the GPU engines, and the
//! distance in units in the last place (ULP) that the check reports.
//!
//! Every engine keeps values as `f32` on the host. A value "in f16" is an `f32` that is exactly
//! representable in f16; [`DType::round`] is how a value gets there (round to nearest, ties to even,
//! overflow to infinity), which is exactly what the kernels' conversions do.

use half::{bf16, f16};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The precision a tensor is stored in. Arithmetic inside kernels is always f32 (accumulation
/// included) unless an op says otherwise; the result is rounded to this type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    #[default]
    F32,
    F16,
    Bf16,
}

impl DType {
    pub const ALL: [DType; 3] = [DType::F32, DType::F16, DType::Bf16];

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
        }
    }

    /// Round an f32 to the nearest value of this type (ties to even, overflow to +-inf, NaN stays NaN).
    pub fn round(self, x: f32) -> f32 {
        match self {
            DType::F32 => x,
            DType::F16 => f16::from_f32(x).to_f32(),
            DType::Bf16 => bf16::from_f32(x).to_f32(),
        }
    }

    /// Round an f64 to the nearest value of this type, through f64 -> type directly (no double rounding).
    pub fn round_f64(self, x: f64) -> f64 {
        match self {
            DType::F32 => x as f32 as f64,
            DType::F16 => f16::from_f64(x).to_f64(),
            DType::Bf16 => bf16::from_f64(x).to_f64(),
        }
    }

    /// Largest finite value.
    pub fn max_finite(self) -> f64 {
        match self {
            DType::F32 => f32::MAX as f64,
            DType::F16 => f16::MAX.to_f64(),
            DType::Bf16 => bf16::MAX.to_f64(),
        }
    }

    /// Smallest positive normal value.
    pub fn min_positive_normal(self) -> f64 {
        match self {
            DType::F32 => f32::MIN_POSITIVE as f64,
            DType::F16 => f16::MIN_POSITIVE.to_f64(),
            DType::Bf16 => bf16::MIN_POSITIVE.to_f64(),
        }
    }

    /// Unit roundoff u = 2^-(mantissa bits + 1): the largest relative error of one rounding.
    pub fn unit_roundoff(self) -> f64 {
        match self {
            DType::F32 => 2f64.powi(-24),
            DType::F16 => 2f64.powi(-11),
            DType::Bf16 => 2f64.powi(-8),
        }
    }

    /// Bytes per element in the type's own storage (what a real kernel would move).
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::Bf16 => 2,
        }
    }

    /// Encode values (already representable in this type) as 16-bit patterns, for f16/bf16 device
    /// buffers. Panics never: for F32 it returns the upper half-words of the bf16 rounding, which no
    /// engine asks for.
    pub fn encode_u16(self, values: &[f32]) -> Vec<u16> {
        match self {
            DType::F16 => values.iter().map(|&v| f16::from_f32(v).to_bits()).collect(),
            DType::Bf16 | DType::F32 => values
                .iter()
                .map(|&v| bf16::from_f32(v).to_bits())
                .collect(),
        }
    }

    /// Decode 16-bit patterns of this type to f32 (exact).
    pub fn decode_u16(self, bits: &[u16]) -> Vec<f32> {
        match self {
            DType::F16 => bits.iter().map(|&b| f16::from_bits(b).to_f32()).collect(),
            DType::Bf16 | DType::F32 => bits.iter().map(|&b| bf16::from_bits(b).to_f32()).collect(),
        }
    }

    /// Distance in ULPs of this type between two finite values: how many representable values lie
    /// between them (0 when equal). Values are rounded to the type first. Infinite or NaN inputs
    /// give `None`.
    pub fn ulp_distance(self, a: f64, b: f64) -> Option<u64> {
        if !a.is_finite() || !b.is_finite() {
            return None;
        }
        let (ka, kb) = match self {
            DType::F32 => (
                ordered_i64((a as f32).to_bits() as u64, 32),
                ordered_i64((b as f32).to_bits() as u64, 32),
            ),
            DType::F16 => (
                ordered_i64(f16::from_f64(a).to_bits() as u64, 16),
                ordered_i64(f16::from_f64(b).to_bits() as u64, 16),
            ),
            DType::Bf16 => (
                ordered_i64(bf16::from_f64(a).to_bits() as u64, 16),
                ordered_i64(bf16::from_f64(b).to_bits() as u64, 16),
            ),
        };
        Some(ka.abs_diff(kb))
    }
}

/// Map an IEEE bit pattern of `width` bits to an integer that is monotonic in the value, with +0 and
/// -0 both at 0, so that the difference of two mapped values counts the representable numbers between.
fn ordered_i64(bits: u64, width: u32) -> i64 {
    let sign = 1u64 << (width - 1);
    let magnitude = (bits & (sign - 1)) as i64;
    if bits & sign != 0 {
        -magnitude
    } else {
        magnitude
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Ok(DType::F32),
            "f16" | "float16" | "fp16" | "half" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            other => Err(format!(
                "unknown dtype '{other}' (expected f32, f16 or bf16)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_overflows_above_65504() {
        assert_eq!(DType::F16.round(65504.0), 65504.0);
        // Halfway between 65504 and the next binade step (65536) rounds to even: infinity.
        assert_eq!(DType::F16.round(65520.0), f32::INFINITY);
        assert_eq!(DType::F16.round(65519.0), 65504.0);
        // The largest f16 is 65504 = e^11.0899 (ln(65504) = 11.09; docs/numerics.md); with round to
        // nearest, exp(z) reaches infinity once it rounds past 65520, at z = ln(65520) = 11.0901.
        assert!(DType::F16.round(11.0902f32.exp()).is_infinite());
        assert_eq!(DType::F16.round(11.0899f32.exp()), 65504.0);
    }

    #[test]
    fn f16_flushes_below_minus_17_33() {
        // Smallest f16 subnormal is 2^-24; half of it (e^-17.33) rounds to zero.
        assert_eq!(DType::F16.round((-17.4f32).exp()), 0.0);
        assert!(DType::F16.round((-17.2f32).exp()) > 0.0);
    }

    #[test]
    fn bf16_has_f32_range() {
        assert!(DType::Bf16.round(88.0f32.exp()).is_finite());
        assert!(DType::Bf16.round(f32::MAX).is_infinite()); // rounds up past bf16's max
        assert_eq!(DType::Bf16.round(1.0 + 1.0 / 512.0), 1.0); // 8 significant bits
    }

    #[test]
    fn ulp_distance_counts_representable_values() {
        assert_eq!(DType::F32.ulp_distance(1.0, 1.0), Some(0));
        assert_eq!(
            DType::F32.ulp_distance(1.0, 1.0 + f32::EPSILON as f64),
            Some(1)
        );
        assert_eq!(DType::F16.ulp_distance(1.0, 1.0 + 2f64.powi(-10)), Some(1));
        assert_eq!(DType::F32.ulp_distance(-0.0, 0.0), Some(0));
        // Across zero: the smallest subnormals either side are 2 apart.
        let tiny = f32::from_bits(1) as f64;
        assert_eq!(DType::F32.ulp_distance(-tiny, tiny), Some(2));
        assert_eq!(DType::F32.ulp_distance(f64::NAN, 1.0), None);
    }

    #[test]
    fn u16_encoding_round_trips() {
        for dt in [DType::F16, DType::Bf16] {
            let v: Vec<f32> = [0.0f32, -0.0, 1.5, -3.25, 65504.0, f32::INFINITY, 1e-7]
                .iter()
                .map(|&x| dt.round(x))
                .collect();
            let back = dt.decode_u16(&dt.encode_u16(&v));
            for (a, b) in v.iter().zip(&back) {
                assert_eq!(a.to_bits(), b.to_bits(), "{dt}: {a} -> {b}");
            }
        }
    }

    #[test]
    fn parses_names() {
        assert_eq!("bf16".parse::<DType>(), Ok(DType::Bf16));
        assert!("f8".parse::<DType>().is_err());
    }
}
