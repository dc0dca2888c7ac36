//! The rank program: a tensor-parallel request as plain data (buffers owned by ranks, local compute
//! steps, collectives) that every engine executes, and how its outputs are assembled.

use super::*;

/// Index of a buffer in a [`Program`].
pub type BufId = usize;

/// What a buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BufKind {
    /// Values in the request's storage dtype: inputs, and outputs after [`Step::Finish`].
    Stored,
    /// f32 working values: partial results and collective buffers.
    F32,
    /// Non-negative integer ids (u32 on the GPUs).
    Index,
}

/// One buffer: its owner, kind, length and initial contents.
#[derive(Clone, Debug)]
pub struct BufferSpec<'a> {
    /// For people: "w shard", "partial sum".
    pub label: &'static str,
    /// The rank that owns it; `None` for the finished outputs (the host's).
    pub rank: Option<usize>,
    pub kind: BufKind,
    pub len: usize,
    /// Initial values (dtype-rounded for `Stored`, exact integers for `Index`); `None`: zeros.
    pub init: Option<Cow<'a, [f32]>>,
}

/// One step of a program. Compute steps read and write only their rank's buffers.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// y[i,o] = (Σ_j x[i,j] w[o,j]) + b[o], j in order, f32. x [rows, inner] and w [out, inner]
    /// and b [out] are `Stored`; y [rows, out] is `F32`.
    Linear {
        rank: usize,
        x: BufId,
        w: BufId,
        b: Option<BufId>,
        y: BufId,
        rows: usize,
        inner: usize,
        out: usize,
    },
    /// y[i,:] = table[ids[i] - start, :] if start <= ids[i] < start + count, else -0.0.
    /// table [count, h] `Stored`, ids `Index`, y [n, h] `F32`.
    EmbedMasked {
        rank: usize,
        ids: BufId,
        table: BufId,
        y: BufId,
        n: usize,
        h: usize,
        start: usize,
        count: usize,
    },
    /// out[i] = max_j x[i,j] over the rank's columns, NaN ignored (-inf for a row of NaN).
    LocalMax {
        rank: usize,
        x: BufId,
        out: BufId,
        rows: usize,
        cols: usize,
    },
    /// out[i] = x[i, t_i - start] - max[i] if the rank owns t_i (start <= t_i < start + cols),
    /// else 0.
    Predicted {
        rank: usize,
        x: BufId,
        targets: BufId,
        max: BufId,
        out: BufId,
        rows: usize,
        cols: usize,
        start: usize,
    },
    /// out[i] = Σ_j e^(x[i,j] - max[i]) over the rank's columns, in [`lane_tree_sum`] order.
    SumExp {
        rank: usize,
        x: BufId,
        max: BufId,
        out: BufId,
        rows: usize,
        cols: usize,
    },
    /// out[i] = ln(sum_exp[i]) - predicted[i].
    Loss {
        rank: usize,
        sum_exp: BufId,
        predicted: BufId,
        out: BufId,
        rows: usize,
    },
    /// A collective: `inputs[r]` is rank r's buffer, `outputs[r]` receives rank r's result
    /// (out of place, so the inputs stay readable). All `F32`.
    Collective {
        collective: Collective,
        inputs: Vec<BufId>,
        outputs: Vec<BufId>,
    },
    /// dst[i] = round_to_dtype(src[i] + b[i % cols]) (no bias: + nothing). src `F32`, b and dst
    /// `Stored`.
    Finish {
        src: BufId,
        bias: Option<BufId>,
        dst: BufId,
        len: usize,
        cols: usize,
    },
}

impl Step {
    /// The rank whose buffers a compute step uses; `None` for collectives and finishing.
    pub fn rank(&self) -> Option<usize> {
        match *self {
            Step::Linear { rank, .. }
            | Step::EmbedMasked { rank, .. }
            | Step::LocalMax { rank, .. }
            | Step::Predicted { rank, .. }
            | Step::SumExp { rank, .. }
            | Step::Loss { rank, .. } => Some(rank),
            Step::Collective { .. } | Step::Finish { .. } => None,
        }
    }
}

/// How an output is read back from its (`Stored`) buffers.
#[derive(Clone, Debug, PartialEq)]
pub enum Gather {
    /// One buffer.
    One(BufId),
    /// One buffer per rank, stacked along a new first axis.
    Stack(Vec<BufId>),
    /// One [rows, chunk] buffer per rank, side by side along the last axis (no collective: the
    /// host assembles them).
    Columns {
        shards: Vec<BufId>,
        rows: usize,
        chunk: usize,
    },
}

impl Gather {
    /// The buffers it reads.
    pub fn buffers(&self) -> Vec<BufId> {
        match self {
            Gather::One(b) => vec![*b],
            Gather::Stack(v) | Gather::Columns { shards: v, .. } => v.clone(),
        }
    }

    /// Assemble the output from the buffers' values.
    pub fn collect<'v>(&self, read: impl Fn(BufId) -> &'v [f32]) -> Vec<f32> {
        match self {
            Gather::One(b) => read(*b).to_vec(),
            Gather::Stack(v) => v.iter().flat_map(|&b| read(b).iter().copied()).collect(),
            Gather::Columns {
                shards,
                rows,
                chunk,
            } => {
                let mut out = Vec::with_capacity(rows * chunk * shards.len());
                for i in 0..*rows {
                    for &s in shards {
                        out.extend_from_slice(&read(s)[i * chunk..(i + 1) * chunk]);
                    }
                }
                out
            }
        }
    }
}

/// One output of a program: the main output first, then the auxiliary ones.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramOutput {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub from: Gather,
}

/// A request as work for k ranks: buffers, steps in order, and the outputs to read back.
#[derive(Clone, Debug)]
pub struct Program<'a> {
    pub ranks: usize,
    pub buffers: Vec<BufferSpec<'a>>,
    pub steps: Vec<Step>,
    pub outputs: Vec<ProgramOutput>,
}

impl Program<'_> {
    /// The collectives in order.
    pub fn collectives(&self) -> Vec<Collective> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Collective { collective, .. } => Some(*collective),
                _ => None,
            })
            .collect()
    }
}

struct Builder<'a> {
    buffers: Vec<BufferSpec<'a>>,
    steps: Vec<Step>,
}

impl<'a> Builder<'a> {
    fn add(
        &mut self,
        label: &'static str,
        rank: Option<usize>,
        kind: BufKind,
        len: usize,
        init: Option<Cow<'a, [f32]>>,
    ) -> BufId {
        self.buffers.push(BufferSpec {
            label,
            rank,
            kind,
            len,
            init,
        });
        self.buffers.len() - 1
    }

    fn input(&mut self, label: &'static str, rank: usize, data: Cow<'a, [f32]>) -> BufId {
        let len = data.len();
        self.add(label, Some(rank), BufKind::Stored, len, Some(data))
    }

    fn ids(&mut self, label: &'static str, rank: usize, data: &'a [f32]) -> BufId {
        self.add(
            label,
            Some(rank),
            BufKind::Index,
            data.len(),
            Some(Cow::Borrowed(data)),
        )
    }

    fn work(&mut self, label: &'static str, rank: usize, len: usize) -> BufId {
        self.add(label, Some(rank), BufKind::F32, len, None)
    }

    /// A collective over `inputs` into fresh f32 buffers; returns the outputs.
    fn collective(
        &mut self,
        collective: Collective,
        label: &'static str,
        inputs: Vec<BufId>,
    ) -> Vec<BufId> {
        let len = collective.result_len(inputs.len());
        let outputs: Vec<BufId> = (0..inputs.len())
            .map(|r| self.work(label, r, len))
            .collect();
        self.steps.push(Step::Collective {
            collective,
            inputs,
            outputs: outputs.clone(),
        });
        outputs
    }

    /// Round an f32 buffer into a new output buffer of the storage dtype.
    fn finish(&mut self, src: BufId, bias: Option<BufId>, cols: usize) -> BufId {
        let len = self.buffers[src].len;
        let dst = self.add("output", None, BufKind::Stored, len, None);
        self.steps.push(Step::Finish {
            src,
            bias,
            dst,
            len,
            cols: cols.max(1),
        });
        dst
    }
}

/// Columns `range` of a row-major [rows, cols] matrix.
pub fn columns(data: &[f32], rows: usize, cols: usize, range: Range<usize>) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * range.len());
    for i in 0..rows {
        out.extend_from_slice(&data[i * cols + range.start..i * cols + range.end]);
    }
    out
}

/// The program for a validated request (see the module comment for the algorithms).
pub fn program<'a>(op: &TpOp, req: &'a OpRequest) -> Program<'a> {
    let k = op.ranks();
    let mut b = Builder {
        buffers: Vec::new(),
        steps: Vec::new(),
    };
    let empty: &'a [f32] = &[];
    let mut outputs = Vec::new();
    let main_shape = op.output_shape(req);
    match op {
        TpOp::Linear | TpOp::ColumnParallelLinear { .. } => {
            let gather = !matches!(op, TpOp::ColumnParallelLinear { gather: false, .. });
            let (rows, inner, out) = linear_dims(req);
            let w = req.input("w").map_or(empty, |t| t.data.as_slice());
            let bias = req.input("b").map(|t| t.data.as_slice());
            let chunk = out / k;
            let mut ys = Vec::new();
            let mut biases = Vec::new();
            for (r, range) in shards(out, k).into_iter().enumerate() {
                let x = b.input("x (replicated)", r, Cow::Borrowed(&req.x.data));
                let w_r = b.input(
                    "w rows",
                    r,
                    Cow::Borrowed(&w[range.start * inner..range.end * inner]),
                );
                let b_r =
                    bias.map(|bias| b.input("b rows", r, Cow::Borrowed(&bias[range.clone()])));
                let y = b.work("output columns", r, rows * chunk);
                b.steps.push(Step::Linear {
                    rank: r,
                    x,
                    w: w_r,
                    b: b_r,
                    y,
                    rows,
                    inner,
                    out: chunk,
                });
                ys.push(y);
                biases.push(b_r);
            }
            let from = if k == 1 {
                Gather::One(b.finish(ys[0], None, chunk))
            } else if gather {
                let full =
                    b.collective(Collective::AllGather { rows, chunk }, "gathered output", ys);
                Gather::One(b.finish(full[0], None, out))
            } else {
                let shards = ys.iter().map(|&y| b.finish(y, None, chunk)).collect();
                Gather::Columns {
                    shards,
                    rows,
                    chunk,
                }
            };
            outputs.push(ProgramOutput {
                name: "y",
                shape: main_shape,
                from,
            });
        }
        TpOp::RowParallelLinear { .. } => {
            let (rows, inner, out) = linear_dims(req);
            let w = req.input("w").map_or(empty, |t| t.data.as_slice());
            let mut partials = Vec::new();
            for (r, range) in shards(inner, k).into_iter().enumerate() {
                let (x_r, w_r) = if k == 1 {
                    (Cow::Borrowed(req.x.data.as_slice()), Cow::Borrowed(w))
                } else {
                    (
                        Cow::Owned(columns(&req.x.data, rows, inner, range.clone())),
                        Cow::Owned(columns(w, out, inner, range.clone())),
                    )
                };
                let x = b.input("x columns", r, x_r);
                let w_r = b.input("w columns", r, w_r);
                let p = b.work("partial sum", r, rows * out);
                b.steps.push(Step::Linear {
                    rank: r,
                    x,
                    w: w_r,
                    b: None,
                    y: p,
                    rows,
                    inner: range.len(),
                    out,
                });
                partials.push(p);
            }
            let reduced = if k == 1 {
                partials[0]
            } else {
                b.collective(
                    Collective::AllReduce {
                        op: ReduceOp::Sum,
                        len: rows * out,
                    },
                    "all-reduced sum",
                    partials.clone(),
                )[0]
            };
            // The bias once, after the all-reduce (rank 0's copy: every rank holds the same).
            let bias = req
                .input("b")
                .map(|t| b.input("b", 0, Cow::Borrowed(t.data.as_slice())));
            let y = b.finish(reduced, bias, out);
            let stacked = partials.iter().map(|&p| b.finish(p, None, out)).collect();
            outputs.push(ProgramOutput {
                name: "y",
                shape: main_shape,
                from: Gather::One(y),
            });
            outputs.push(ProgramOutput {
                name: "partials",
                shape: vec![k, rows, out],
                from: Gather::Stack(stacked),
            });
        }
        TpOp::VocabParallelEmbedding { .. } => {
            let (n, v, h) = embedding_dims(req);
            let table = req.input("table").map_or(empty, |t| t.data.as_slice());
            let mut masked = Vec::new();
            for (r, range) in shards(v, k).into_iter().enumerate() {
                let ids = b.ids("ids (replicated)", r, &req.x.data);
                let t = b.input(
                    "table rows",
                    r,
                    Cow::Borrowed(&table[range.start * h..range.end * h]),
                );
                let y = b.work("masked lookup", r, n * h);
                b.steps.push(Step::EmbedMasked {
                    rank: r,
                    ids,
                    table: t,
                    y,
                    n,
                    h,
                    start: range.start,
                    count: range.len(),
                });
                masked.push(y);
            }
            let reduced = if k == 1 {
                masked[0]
            } else {
                b.collective(
                    Collective::AllReduce {
                        op: ReduceOp::Sum,
                        len: n * h,
                    },
                    "all-reduced rows",
                    masked.clone(),
                )[0]
            };
            let y = b.finish(reduced, None, h);
            let stacked = masked.iter().map(|&m| b.finish(m, None, h)).collect();
            outputs.push(ProgramOutput {
                name: "y",
                shape: main_shape,
                from: Gather::One(y),
            });
            outputs.push(ProgramOutput {
                name: "masked",
                shape: vec![k, n, h],
                from: Gather::Stack(stacked),
            });
        }
        TpOp::VocabParallelCrossEntropy { .. } => {
            let (rows, v) = ce_dims(req);
            let targets = req.input("targets").map_or(empty, |t| t.data.as_slice());
            let ranges = shards(v, k);
            let mut xs = Vec::new();
            let mut ts = Vec::new();
            let mut local_max = Vec::new();
            for (r, range) in ranges.iter().enumerate() {
                let x_r = if k == 1 {
                    Cow::Borrowed(req.x.data.as_slice())
                } else {
                    Cow::Owned(columns(&req.x.data, rows, v, range.clone()))
                };
                let x = b.input("logit columns", r, x_r);
                let t = b.ids("targets (replicated)", r, targets);
                let m = b.work("local max", r, rows);
                b.steps.push(Step::LocalMax {
                    rank: r,
                    x,
                    out: m,
                    rows,
                    cols: range.len(),
                });
                xs.push(x);
                ts.push(t);
                local_max.push(m);
            }
            let all_reduce =
                |b: &mut Builder<'a>, op: ReduceOp, label: &'static str, inputs: Vec<BufId>| {
                    if inputs.len() == 1 {
                        inputs
                    } else {
                        b.collective(Collective::AllReduce { op, len: rows }, label, inputs)
                    }
                };
            let max = all_reduce(&mut b, ReduceOp::Max, "global max", local_max.clone());
            let mut predicted = Vec::new();
            for (r, range) in ranges.iter().enumerate() {
                let p = b.work("predicted logit", r, rows);
                b.steps.push(Step::Predicted {
                    rank: r,
                    x: xs[r],
                    targets: ts[r],
                    max: max[r],
                    out: p,
                    rows,
                    cols: range.len(),
                    start: range.start,
                });
                predicted.push(p);
            }
            let predicted = all_reduce(&mut b, ReduceOp::Sum, "predicted logit", predicted);
            let mut sums = Vec::new();
            for (r, range) in ranges.iter().enumerate() {
                let s = b.work("local sum-exp", r, rows);
                b.steps.push(Step::SumExp {
                    rank: r,
                    x: xs[r],
                    max: max[r],
                    out: s,
                    rows,
                    cols: range.len(),
                });
                sums.push(s);
            }
            let sum_exp = all_reduce(&mut b, ReduceOp::Sum, "global sum-exp", sums.clone());
            let loss = b.work("loss", 0, rows);
            b.steps.push(Step::Loss {
                rank: 0,
                sum_exp: sum_exp[0],
                predicted: predicted[0],
                out: loss,
                rows,
            });
            let y = b.finish(loss, None, 1);
            let lm = local_max.iter().map(|&m| b.finish(m, None, 1)).collect();
            let ls = sums.iter().map(|&s| b.finish(s, None, 1)).collect();
            let gm = b.finish(max[0], None, 1);
            let gp = b.finish(predicted[0], None, 1);
            let gs = b.finish(sum_exp[0], None, 1);
            let n = main_shape.clone();
            outputs.push(ProgramOutput {
                name: "y",
                shape: main_shape,
                from: Gather::One(y),
            });
            outputs.push(ProgramOutput {
                name: "local_max",
                shape: vec![k, rows],
                from: Gather::Stack(lm),
            });
            outputs.push(ProgramOutput {
                name: "local_sum_exp",
                shape: vec![k, rows],
                from: Gather::Stack(ls),
            });
            for (name, id) in [("max", gm), ("predicted", gp), ("sum_exp", gs)] {
                outputs.push(ProgramOutput {
                    name,
                    shape: n.clone(),
                    from: Gather::One(id),
                });
            }
        }
    }
    Program {
        ranks: k,
        buffers: b.buffers,
        steps: b.steps,
        outputs,
    }
}

/// An engine's results as the op returns them: the main output and the auxiliary ones by name.
/// See [`assemble`].
pub type Assembled = (Vec<f32>, Vec<(String, Vec<usize>, Vec<f32>)>);

/// What every engine does with a tensor-parallel request: run the op's rank program with `run`
/// (the engine's executor: outputs in program order, plus its timing `T`), run the one-rank
/// program too for split ops (the `unsplit` aux output, the same engine's k = 1 result; at k = 1
/// the main output itself), and [`assemble`] the outputs. The timing is the main program's.
pub fn run_and_assemble<'a, T, E>(
    op: &TpOp,
    req: &'a OpRequest,
    mut run: impl FnMut(Program<'a>) -> Result<(Vec<Vec<f32>>, T), E>,
) -> Result<(Assembled, T), E> {
    let program = program(op, req);
    let shapes = program.outputs.clone();
    let (outputs, timing) = run(program)?;
    let unsplit = match op.unsplit() {
        None => None,
        Some(_) if op.ranks() == 1 => outputs.first().cloned(),
        Some(one) => run(self::program(&one, req))?.0.into_iter().next(),
    };
    Ok((assemble(op, &shapes, outputs, unsplit), timing))
}

/// `shapes` are the program's outputs and `outputs` their values in order (decoded to f32);
/// `unsplit` is the same engine's main output for the op on one rank (`None` for `linear`).
pub fn assemble(
    op: &TpOp,
    shapes: &[ProgramOutput],
    mut outputs: Vec<Vec<f32>>,
    unsplit: Option<Vec<f32>>,
) -> Assembled {
    let main = if outputs.is_empty() {
        Vec::new()
    } else {
        outputs.remove(0)
    };
    let mut aux: Vec<(String, Vec<usize>, Vec<f32>)> = shapes[1..]
        .iter()
        .zip(outputs)
        .map(|(o, values)| (o.name.to_string(), o.shape.clone(), values))
        .collect();
    if op.unsplit().is_some() {
        let shape = shapes[0].shape.clone();
        aux.push(("unsplit".into(), shape, unsplit.unwrap_or_default()));
    }
    (main, aux)
}

/// The sum of `len` values in the GPU kernels' order: lane l (of [`LANES`]) adds values l,
/// l + 256, l + 512, ... in order starting from 0.0; then the lanes are combined by a tree,
/// lane l += lane l + s for s = 128, 64, ..., 1. The CPU engine uses this so that it sums in
/// exactly the order the CUDA and WGSL reductions do.
pub fn lane_tree_sum(len: usize, value: impl Fn(usize) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    for (l, lane) in lanes.iter_mut().enumerate() {
        let mut acc = 0.0f32;
        let mut j = l;
        while j < len {
            acc += value(j);
            j += LANES;
        }
        *lane = acc;
    }
    let mut stride = LANES / 2;
    while stride > 0 {
        for l in 0..stride {
            lanes[l] += lanes[l + stride];
        }
        stride /= 2;
    }
    lanes[0]
}

