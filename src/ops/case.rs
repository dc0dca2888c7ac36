//! Check cases and bench specs as data: what a topic hands `kernelbook check` ([`Case`]: an op, a
//! dtype, an input and what to expect of an engine) and `kernelbook bench` ([`BenchSpec`]). Inputs
//! are generated on demand from a seed ([`Input`]), so a large case costs memory only while it
//! runs.

use super::{Op, OpRequest, Tensor};
use crate::dtype::DType;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};
use serde::Serialize;

/// PyTorch's softmax test sizes (docs/numerics.md), all run on every engine by the row-wise topics.
pub const SIZES: [(usize, usize); 5] = [(0, 10), (10, 0), (31, 20), (33, 2049), (16, 30576)];
/// The size real GPUs are also checked at (too slow for a software adapter).
pub const LARGE: (usize, usize) = (4096, 32000);

/// What a case expects of an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Within tolerance of the f64 reference.
    Match,
    /// Must *not* match: the naive softmax overflowing (inf/NaN, or a sum that overflowed to inf).
    Breaks,
}

/// How a case's input is made.
#[derive(Clone, Debug)]
pub enum Input {
    /// Seeded random values: `Normal(0, scale)` or `Uniform(lo, hi)`.
    Normal {
        rows: usize,
        cols: usize,
        scale: f32,
        seed: u64,
    },
    Uniform {
        rows: usize,
        cols: usize,
        lo: f32,
        hi: f32,
        seed: u64,
    },
    /// Given values, one row per inner vector.
    Rows(Vec<Vec<f32>>),
}

impl Input {
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Input::Normal { rows, cols, .. } | Input::Uniform { rows, cols, .. } => (*rows, *cols),
            Input::Rows(r) => (r.len(), r.first().map_or(0, |v| v.len())),
        }
    }

    pub fn tensor(&self) -> Tensor {
        let (rows, cols) = self.shape();
        let data: Vec<f32> = match self {
            Input::Normal { scale, seed, .. } => {
                let mut rng = StdRng::seed_from_u64(*seed);
                let normal = Normal::new(0.0f32, *scale)
                    .unwrap_or_else(|_| Normal::new(0.0, 1.0).expect("valid"));
                (0..rows * cols).map(|_| normal.sample(&mut rng)).collect()
            }
            Input::Uniform { lo, hi, seed, .. } => {
                let mut rng = StdRng::seed_from_u64(*seed);
                let uniform = Uniform::new(*lo, *hi)
                    .unwrap_or_else(|_| Uniform::new(0.0, 1.0).expect("valid"));
                (0..rows * cols).map(|_| uniform.sample(&mut rng)).collect()
            }
            Input::Rows(r) => r.iter().flatten().copied().collect(),
        };
        Tensor {
            shape: vec![rows, cols],
            data,
        }
    }
}

/// One check: an op, a dtype, an input and what to expect.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub op: Op,
    pub dtype: DType,
    pub input: Input,
    pub expect: Expect,
    /// Only for engines on real GPU hardware (the 4096 x 32000 size).
    pub large: bool,
    /// The primary input's shape when it is not `[rows, cols]` (e.g. rope's 4-D
    /// `[batch, seq, heads, head_dim]`); must hold the same number of values.
    pub shape: Option<Vec<usize>>,
    /// The op's other inputs, by name (weights, ids, positions).
    pub extra: Vec<(String, Tensor)>,
}

impl Case {
    /// A case with one `[rows, cols]` input.
    pub fn new(name: String, op: Op, dtype: DType, input: Input, expect: Expect) -> Case {
        Case {
            name,
            op,
            dtype,
            input,
            expect,
            large: false,
            shape: None,
            extra: Vec::new(),
        }
    }

    pub fn request(&self) -> Result<OpRequest, String> {
        let mut x = self.input.tensor();
        if let Some(shape) = &self.shape {
            x = Tensor::new(shape.clone(), x.data).map_err(|e| e.to_string())?;
        }
        OpRequest::with_inputs(self.op.clone(), self.dtype, x, self.extra.clone())
            .map_err(|e| e.to_string())
    }
}

/// How seeded random values for an op's primary input are drawn when nobody gave any (the bench,
/// the roofline, a lesson cell's "new random input").
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Draw {
    /// N(0, scale²).
    Normal { scale: f32 },
    /// U(lo, hi).
    Uniform { lo: f32, hi: f32 },
}

impl Draw {
    /// The default: N(0, 3²), logits of a typical spread.
    pub const LOGITS: Draw = Draw::Normal { scale: 3.0 };

    /// `rows` x `cols` values drawn with `seed`.
    pub fn input(self, rows: usize, cols: usize, seed: u64) -> Input {
        match self {
            Draw::Normal { scale } => Input::Normal {
                rows,
                cols,
                scale,
                seed,
            },
            Draw::Uniform { lo, hi } => Input::Uniform {
                rows,
                cols,
                lo,
                hi,
                seed,
            },
        }
    }
}

/// One thing `kernelbook bench` measures: an op with its parameters, on seeded inputs of `shape`
/// ([`Op::sized_request`]). `both_kernels`: measure the simple and the fast GPU kernel (for ops where
/// an engine has both); otherwise the engines run their default kernel.
#[derive(Clone, Debug)]
pub struct BenchSpec {
    pub op: Op,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub both_kernels: bool,
    pub seed: u64,
}

impl BenchSpec {
    /// The op named `name` with `key=value` parameters; `None` if they do not parse (a topic's own
    /// spec: a test checks every topic's specs parse).
    pub fn parsed(
        name: &str,
        params: &[(&str, &str)],
        shape: Vec<usize>,
        both_kernels: bool,
        seed: u64,
    ) -> Option<BenchSpec> {
        let kv: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (op, dtype) = Op::parse(name, &kv).ok()?;
        Some(BenchSpec {
            op,
            dtype,
            shape,
            both_kernels,
            seed,
        })
    }
}
