//! Seeding (Megatron-Core `tensor_parallel/random.py`, `layers.py`): initialising a weight on the
//! CPU and splitting it, against each rank drawing its own shard from seed + 2718 + rank.

use super::*;

/// `len` draws from N(0, INIT_STD²) with a generator seeded by `seed`.
pub fn normal_init(seed: u64, len: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal =
        Normal::new(0.0f32, INIT_STD).unwrap_or_else(|_| Normal::new(0.0, 1.0).expect("valid"));
    (0..len).map(|_| normal.sample(&mut rng)).collect()
}

/// How a sharded weight [rows, cols] is split: by rows (column-parallel, vocab-parallel) or by
/// columns (row-parallel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitAxis {
    Rows,
    Columns,
}

/// Megatron's CPU initialisation: the full [rows, cols] weight from one generator seeded with
/// `seed`, then each rank takes its slice. Rank r's shard is the same for every k.
pub fn init_cpu_then_split(
    seed: u64,
    rows: usize,
    cols: usize,
    ranks: usize,
    axis: SplitAxis,
) -> Vec<Vec<f32>> {
    let full = normal_init(seed, rows * cols);
    split(&full, rows, cols, ranks, axis)
}

/// Per-rank initialisation: rank r draws its own shard from a generator seeded with
/// seed + 2718 + r (Megatron's tensor-model-parallel seed). The assembled weight depends on k.
pub fn init_per_rank(
    seed: u64,
    rows: usize,
    cols: usize,
    ranks: usize,
    axis: SplitAxis,
) -> Vec<Vec<f32>> {
    let k = ranks.max(1);
    let len = rows * cols / k;
    // The shard's shape follows `axis` ([rows/k, cols] or [rows, cols/k]); either way rank r
    // fills its rows*cols/k values in order from its own generator.
    let _ = axis;
    (0..k)
        .map(|r| normal_init(seed + RANK_SEED_OFFSET + r as u64, len))
        .collect()
}

/// Split a [rows, cols] matrix into k shards along `axis`.
pub fn split(
    full: &[f32],
    rows: usize,
    cols: usize,
    ranks: usize,
    axis: SplitAxis,
) -> Vec<Vec<f32>> {
    match axis {
        SplitAxis::Rows => shards(rows, ranks)
            .into_iter()
            .map(|r| full[r.start * cols..r.end * cols].to_vec())
            .collect(),
        SplitAxis::Columns => shards(cols, ranks)
            .into_iter()
            .map(|r| columns(full, rows, cols, r))
            .collect(),
    }
}

/// Put shards back together into the full [rows, cols] matrix.
pub fn assemble_shards(
    shards_: &[Vec<f32>],
    rows: usize,
    cols: usize,
    axis: SplitAxis,
) -> Vec<f32> {
    match axis {
        SplitAxis::Rows => shards_.concat(),
        SplitAxis::Columns => {
            let k = shards_.len().max(1);
            let chunk = cols / k;
            let mut out = Vec::with_capacity(rows * cols);
            for i in 0..rows {
                for s in shards_ {
                    out.extend_from_slice(&s[i * chunk..(i + 1) * chunk]);
                }
            }
            out
        }
    }
}

