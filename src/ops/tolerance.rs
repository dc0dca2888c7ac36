//! How close an engine must come to the f64 reference: [`Tolerance`], the bounds `crate::check`
//! applies element by element. Each topic picks its ops' tolerances from the storage dtype's bounds
//! ([`Tolerance::for_dtype`]) and an absolute floor its f32 arithmetic cannot beat.

use crate::dtype::DType;
use serde::Serialize;

/// Bounds an element must meet: `|d| <= atol + rtol |ref|` or within `max_ulp` ULPs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
    pub max_ulp: u64,
}

impl Tolerance {
    /// The storage-dtype bounds (docs/numerics.md, "Tolerances"): f32 rtol 1e-6 (2 ULP); f16
    /// 2^-11 |ref| + 2^-24; bf16 2^-8 |ref| (1 ULP).
    pub fn for_dtype(dtype: DType) -> Tolerance {
        let (rtol, atol, max_ulp) = match dtype {
            DType::F32 => (1e-6, 0.0, 2),
            DType::F16 => (2f64.powi(-11), 2f64.powi(-24), 1),
            DType::Bf16 => (2f64.powi(-8), 2f64.powi(-133), 1),
        };
        Tolerance {
            rtol,
            atol,
            max_ulp,
        }
    }

    /// The same bounds with an absolute floor of at least `atol`.
    pub fn with_floor(self, atol: f64) -> Tolerance {
        Tolerance {
            atol: self.atol.max(atol),
            ..self
        }
    }
}
