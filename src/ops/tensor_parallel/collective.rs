//! Shards and collectives of the tensor-parallel ops: which rank owns which part of an axis, the
//! all-reduce (sum, max) and all-gather steps, and the bytes each moves (ring and naive).

use super::*;

/// Rank r's part of an axis of length `len` split over k ranks: [r·len/k, (r+1)·len/k).
/// `len` must be divisible by k (checked on the request).
pub fn shard(len: usize, ranks: usize, rank: usize) -> Range<usize> {
    let per = len / ranks.max(1);
    rank * per..(rank + 1) * per
}

/// Every rank's part of an axis.
pub fn shards(len: usize, ranks: usize) -> Vec<Range<usize>> {
    (0..ranks).map(|r| shard(len, ranks, r)).collect()
}

/// The rank that owns index `i` of an axis of length `len` split over k ranks.
pub fn owner(i: usize, len: usize, ranks: usize) -> usize {
    let per = (len / ranks.max(1)).max(1);
    (i / per).min(ranks.saturating_sub(1))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReduceOp {
    Sum,
    /// Max, ignoring NaN (IEEE maxNum, CUDA's fmaxf).
    Max,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "SUM",
            ReduceOp::Max => "MAX",
        }
    }

    /// The reduction of two f32 values, as every engine does it.
    pub fn apply(self, acc: f32, v: f32) -> f32 {
        match self {
            ReduceOp::Sum => acc + v,
            ReduceOp::Max => acc.max(v),
        }
    }
}

/// A collective over k ranks' buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Collective {
    /// Every rank holds `len` values; afterwards every rank holds their elementwise reduction.
    AllReduce { op: ReduceOp, len: usize },
    /// Every rank holds a [rows, chunk] shard; afterwards every rank holds all shards side by side,
    /// [rows, k·chunk] (gathered along the last axis).
    AllGather { rows: usize, chunk: usize },
}

/// Bytes a collective sends over the links between ranks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Ring algorithm (NCCL's for large messages): all-reduce = reduce-scatter + all-gather, each
    /// rank sends 2(k-1)/k of the buffer; all-gather: each rank forwards k-1 shards.
    pub ring_per_rank: u64,
    pub ring_total: u64,
    /// Naive: every rank sends its whole buffer (all-reduce) or its shard (all-gather) directly to
    /// each of the k-1 others.
    pub naive_per_rank: u64,
    pub naive_total: u64,
}

impl Collective {
    /// Values in one rank's result buffer.
    pub fn result_len(&self, ranks: usize) -> usize {
        match *self {
            Collective::AllReduce { len, .. } => len,
            Collective::AllGather { rows, chunk } => rows * chunk * ranks,
        }
    }

    /// "all-reduce SUM of 64 values", "all-gather of [4, 8] shards".
    pub fn describe(&self) -> String {
        match *self {
            Collective::AllReduce { op, len } => {
                format!("all-reduce {} of {len} values", op.name())
            }
            Collective::AllGather { rows, chunk } => {
                format!("all-gather of [{rows}, {chunk}] shards")
            }
        }
    }

    /// Bytes sent for `ranks` ranks and `elem_bytes` per value (0 on one rank).
    pub fn traffic(&self, ranks: usize, elem_bytes: u64) -> Traffic {
        let k = ranks as u64;
        if k <= 1 {
            return Traffic::default();
        }
        match *self {
            Collective::AllReduce { len, .. } => {
                let n = len as u64 * elem_bytes;
                // Reduce-scatter and all-gather: k-1 steps each, a chunk of n/k per step.
                let ring_per_rank = 2 * (k - 1) * n / k;
                let naive_per_rank = (k - 1) * n;
                Traffic {
                    ring_per_rank,
                    ring_total: ring_per_rank * k,
                    naive_per_rank,
                    naive_total: naive_per_rank * k,
                }
            }
            Collective::AllGather { rows, chunk } => {
                let shard = (rows * chunk) as u64 * elem_bytes;
                let per_rank = (k - 1) * shard;
                Traffic {
                    ring_per_rank: per_rank,
                    ring_total: per_rank * k,
                    naive_per_rank: per_rank,
                    naive_total: per_rank * k,
                }
            }
        }
    }
}

/// "1.23 MB" style, powers of 1000 (link bandwidths are quoted in GB/s).
pub fn format_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes < 1000 {
        format!("{bytes} B")
    } else if b < 1e6 {
        format!("{:.1} kB", b / 1e3)
    } else if b < 1e9 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.2} GB", b / 1e9)
    }
}

/// The collectives vocab-parallel cross-entropy runs for n rows (three all-reduces of [n]).
pub fn cross_entropy_collectives(rows: usize) -> [Collective; 3] {
    [
        Collective::AllReduce {
            op: ReduceOp::Max,
            len: rows,
        },
        Collective::AllReduce {
            op: ReduceOp::Sum,
            len: rows,
        },
        Collective::AllReduce {
            op: ReduceOp::Sum,
            len: rows,
        },
    ]
}

/// What gathering full logits instead would move: an all-gather of every rank's [n, V/k] logits.
pub fn gather_logits_collective(rows: usize, vocab: usize, ranks: usize) -> Collective {
    Collective::AllGather {
        rows,
        chunk: vocab / ranks.max(1),
    }
}

