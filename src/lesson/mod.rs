//! Lessons as data: the types a lesson file parses into, and where lessons come from (built in, or
//! an author's folder given with `--lessons DIR`).
//!
//! # The lesson file format
//!
//! `docs/lesson-format.md` describes the format in full for authors: front matter, steps, every
//! block kind and key, the rules and the errors. In short: a Markdown file with TOML front matter
//! between `+++` lines (`id`, `order`, `title`, `summary`), one `## ` heading per [`Step`], prose,
//! and fenced blocks whose info string names their kind: `cell OP` (a live [`CellSpec`]),
//! `kernel` ([`KernelSpec`]), `predict` ([`PredictSpec`]: choices, or a number fixed or read from
//! the cell with a tolerance), `slide` (the step's classroom text) and `notes` (presenter notes).
//! A step's question divides it: what comes after the `predict` block is the reveal. Nothing in a
//! lesson runs code or touches files, every parameter is bounded by its op's `ParamSpec`, and an
//! unknown key is an error. Every [`LessonError`] carries file:line:column.
//!
//! # Where the parser's parts live
//!
//! - `markdown.rs`: the front matter lines and the block structure (pulldown-cmark), with positions.
//! - `document.rs`: the whole file: front matter, steps and their rules, blocks by kind.
//! - `body.rs`, `de.rs`: TOML bodies, spans back to lines and columns, serde derive with the
//!   lesson's own error wording.
//! - `cell.rs`, `input.rs`: cell semantics and inputs; `kernel.rs`, `predict.rs`, `slide.rs`: the
//!   other blocks; `error.rs`: errors; `load.rs`: built-in lessons and lesson folders.

mod body;
mod cell;
mod de;
mod document;
mod error;
mod input;
mod kernel;
mod load;
mod markdown;
mod predict;
mod slide;
#[cfg(test)]
mod tests;

pub use document::parse_lesson;
pub use error::LessonError;
pub use input::parse_typed_values;
pub use load::{BUILTIN, LoadedLesson, builtin, find, load_all, load_dir, read_lesson_file};
pub use predict::{MAX_FACTOR, MAX_RELATIVE, MAX_SELECTOR_CHARS, MAX_UNIT_CHARS, Score};
pub use slide::{SLIDE_MAX_CHARS, SLIDE_MAX_LINES};

use crate::engine::EngineKind;
use crate::ops::{KernelVariant, OpKind, Tensor};
use std::path::PathBuf;

/// Largest lesson file read from an author's folder, in bytes.
pub const MAX_LESSON_BYTES: usize = 1 << 20;

/// Most values one cell's input may hold (a learner-sized example, not a benchmark).
pub const MAX_CELL_ELEMENTS: usize = 1 << 20;

/// Where a lesson came from.
#[derive(Clone, Debug, PartialEq)]
pub enum LessonSource {
    /// Embedded in the binary: the file name under `lessons/`.
    Builtin(&'static str),
    /// Loaded from an author's folder.
    File(PathBuf),
}

impl LessonSource {
    /// How errors name the file: `lessons/02-softmax.md` or the full path.
    pub fn display_name(&self) -> String {
        match self {
            LessonSource::Builtin(name) => format!("lessons/{name}"),
            LessonSource::File(p) => p.display().to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Lesson {
    pub id: String,
    pub order: i64,
    pub title: String,
    pub summary: String,
    pub source: LessonSource,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub title: String,
    /// 1-based line of the `## ` heading.
    pub line: usize,
    /// In file order. A step has at most one [`Block::Predict`]; what comes after it is the
    /// reveal ([`Step::revealed`]).
    pub blocks: Vec<Block>,
    /// The step's `slide` block (Markdown), if it has one; see [`Step::slide_text`].
    pub slide: Option<String>,
}

impl Step {
    /// The presenter notes of this step, joined.
    pub fn notes(&self) -> Vec<&str> {
        self.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Notes(n) => Some(n.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn cells(&self) -> impl Iterator<Item = &CellSpec> {
        self.blocks.iter().filter_map(|b| match b {
            Block::Cell(c) => Some(c),
            _ => None,
        })
    }

    /// Where the step's predict block is in `blocks`.
    pub fn predict_index(&self) -> Option<usize> {
        self.blocks
            .iter()
            .position(|b| matches!(b, Block::Predict(_)))
    }

    /// The step's question, if it asks one.
    pub fn predict(&self) -> Option<&PredictSpec> {
        self.predict_index().and_then(|i| match self.blocks.get(i) {
            Some(Block::Predict(p)) => Some(p),
            _ => None,
        })
    }

    /// The blocks before the question (all of them when the step asks none): what the learner
    /// reads before answering.
    pub fn before_predict(&self) -> &[Block] {
        let end = self.predict_index().unwrap_or(self.blocks.len());
        self.blocks.get(..end).unwrap_or(&[])
    }

    /// The blocks after the question: the reveal. Its prose and kernel source are shown once the
    /// learner has answered (or the teacher reveals); a cell there runs from the start, its
    /// results hidden until then like every cell of a step with a question.
    pub fn revealed(&self) -> &[Block] {
        match self.predict_index() {
            Some(i) => self.blocks.get(i + 1..).unwrap_or(&[]),
            None => &[],
        }
    }

    /// Whether `blocks[index]` is part of the reveal.
    pub fn is_revealed(&self, index: usize) -> bool {
        self.predict_index().is_some_and(|p| index > p)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// CommonMark prose.
    Prose(String),
    Cell(CellSpec),
    Kernel(KernelSpec),
    Predict(PredictSpec),
    /// Presenter notes (Markdown).
    Notes(String),
}

/// An op cell: the op, its input, and a widget (or fixed value) per parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct CellSpec {
    /// 1-based line of the opening fence.
    pub line: usize,
    pub op: OpKind,
    pub title: Option<String>,
    /// The primary input (`OpRequest::x`).
    pub input: InputSpec,
    /// The primary input's shape when it is not `[rows, cols]` (`shape = [1, 8, 2, 16]`).
    pub shape: Option<Vec<usize>>,
    /// The op's other inputs (`inputs = { positions = ..., w = ... }`), in the order written.
    pub extra: Vec<ExtraInput>,
    /// A sweep of one slider, started and stopped with one key (classroom mode).
    pub sweep: Option<SweepSpec>,
    /// One entry per parameter of the op, in `OpKind::params` order. Parameters the lesson does not
    /// mention are `Control::Fixed` at the op's default (an absent optional param such as logit's
    /// `eps` is `ParamValue::Absent`).
    pub params: Vec<ParamControl>,
    pub show: Vec<View>,
    /// Which kernel the GPU engines run, when the cell says (`kernel = ...`); absent: the default
    /// ([`KernelVariant::Fast`]).
    pub kernel: Option<KernelSetting>,
    /// What the roofline view measures; `Some` exactly when `show` holds [`View::Roofline`].
    pub roofline: Option<RooflineSpec>,
}

impl CellSpec {
    pub fn param(&self, name: &str) -> Option<&ParamControl> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The primary input as the op receives it (reshaped when the cell gives a `shape`), from
    /// `values` (the learner's edited input, or `input.tensor()`).
    pub fn shaped_input(&self, values: &Tensor) -> Result<Tensor, String> {
        match &self.shape {
            Some(shape) => Tensor::new(shape.clone(), values.data.clone()).map_err(|_| {
                format!(
                    "the input has {} values; this cell needs {shape:?} = {}",
                    values.len(),
                    shape.iter().product::<usize>()
                )
            }),
            None => Ok(values.clone()),
        }
    }

    /// The other inputs as tensors, by name.
    pub fn extra_tensors(&self) -> Vec<(String, Tensor)> {
        self.extra
            .iter()
            .map(|e| {
                let t = e.input.tensor();
                let t = match &e.shape {
                    Some(shape) => Tensor::new(shape.clone(), t.data.clone()).unwrap_or(t),
                    None => t,
                };
                (e.name.clone(), t)
            })
            .collect()
    }
}

/// A cell's `kernel` key: a fixed kernel, or a choice the learner makes (like a dtype choice).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSetting {
    pub default: KernelVariant,
    /// The kernels the learner can pick between (at least 2); empty when the kernel is fixed.
    pub choices: Vec<KernelVariant>,
}

/// What the roofline view measures: each of `kernels` on every engine present.
#[derive(Clone, Debug, PartialEq)]
pub struct RooflineSpec {
    /// The primary input's shape on a hardware GPU (CPU and software adapters get
    /// [`RooflineSpec::small_shape`] of it); `None`: the cell's own input on every engine.
    pub size: Option<Vec<usize>>,
    /// In the order the bars are drawn.
    pub kernels: Vec<KernelVariant>,
}

impl RooflineSpec {
    /// Most values measured on the CPU and software adapters: 2^20 (4 MiB of f32; lavapipe takes
    /// about 0.1 s per softmax run of that size).
    pub const SMALL_ELEMENTS: usize = 1 << 20;

    /// `shape` made small enough for the CPU and software adapters: the last axis (the row a
    /// kernel works on, whose length picks its code path) is kept and the leading axes shrink,
    /// first to last, to powers of two, until at most [`Self::SMALL_ELEMENTS`] values remain
    /// (or every leading axis is 1). [4096, 32000] -> [32, 32000]; [16, 4096, 32, 128] ->
    /// [1, 256, 32, 128].
    pub fn small_shape(shape: &[usize]) -> Vec<usize> {
        let mut out = shape.to_vec();
        let n = out.len();
        for i in 0..n.saturating_sub(1) {
            let rest: usize = out
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, d)| *d)
                .product::<usize>()
                .max(1);
            let fits = (Self::SMALL_ELEMENTS / rest).max(1);
            if out[i] > fits {
                // The largest power of two that fits.
                out[i] = 1usize << (usize::BITS - 1 - fits.leading_zeros());
            }
        }
        out
    }

    /// Whether the roofline view can generate `op`'s inputs at a size of its own: the primary
    /// input must be floats (seeded random values), and of the other inputs only the optional
    /// ones (left out) and those the op makes up itself (`InputDecl::generated`, e.g.
    /// cross-entropy's targets). `Err` says why not.
    pub fn check_size(op: OpKind) -> Result<(), String> {
        let decls = op.inputs();
        if decls[0].int {
            return Err(format!(
                "{op}'s input '{}' holds integers; measure the cell's own input (leave out size)",
                decls[0].name
            ));
        }
        for d in &decls[1..] {
            if !(d.optional || d.generated) {
                return Err(format!(
                    "{op} needs its input '{}' at the size measured, which the roofline view cannot make up; measure the cell's own inputs (leave out size)",
                    d.name
                ));
            }
        }
        Ok(())
    }
}

/// A parameter sweep: the slider `param` moves from `from` to `to` over `seconds` (log-spaced on a
/// log slider) while the results update live.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepSpec {
    pub param: &'static str,
    pub from: f64,
    pub to: f64,
    pub seconds: f64,
}

impl SweepSpec {
    /// The value at fraction `t` in [0, 1] of the sweep.
    pub fn value_at(&self, t: f64, log: bool) -> f64 {
        let t = t.clamp(0.0, 1.0);
        if log && self.from > 0.0 && self.to > 0.0 {
            (self.from.ln() + t * (self.to.ln() - self.from.ln())).exp()
        } else {
            self.from + t * (self.to - self.from)
        }
    }
}

/// One of a cell's other inputs: `inputs.<name> = <input>`, optionally `shapes.<name> = [...]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtraInput {
    pub name: String,
    pub input: InputSpec,
    pub shape: Option<Vec<usize>>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum InputSpec {
    /// Given values, one inner vector per row.
    Values(Vec<Vec<f32>>),
    /// Seeded N(0, scale^2).
    Normal {
        scale: f32,
        rows: usize,
        cols: usize,
        seed: u64,
    },
    /// Seeded U(lo, hi).
    Uniform {
        lo: f32,
        hi: f32,
        rows: usize,
        cols: usize,
        seed: u64,
    },
    /// One row of `count` evenly spaced values from `from` to `to` inclusive.
    Linspace { from: f32, to: f32, count: usize },
}

impl InputSpec {
    /// How many values it holds.
    pub fn len(&self) -> usize {
        match self {
            InputSpec::Values(rows) => rows.iter().map(Vec::len).sum(),
            InputSpec::Normal { rows, cols, .. } | InputSpec::Uniform { rows, cols, .. } => {
                rows * cols
            }
            InputSpec::Linspace { count, .. } => *count,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The input tensor, `[rows, cols]`.
    pub fn tensor(&self) -> Tensor {
        use crate::ops::case::Input;
        match self {
            InputSpec::Values(rows) => Input::Rows(rows.clone()).tensor(),
            InputSpec::Normal {
                scale,
                rows,
                cols,
                seed,
            } => Input::Normal {
                rows: *rows,
                cols: *cols,
                scale: *scale,
                seed: *seed,
            }
            .tensor(),
            InputSpec::Uniform {
                lo,
                hi,
                rows,
                cols,
                seed,
            } => Input::Uniform {
                rows: *rows,
                cols: *cols,
                lo: *lo,
                hi: *hi,
                seed: *seed,
            }
            .tensor(),
            InputSpec::Linspace { from, to, count } => {
                let n = (*count).max(1);
                let step = if n > 1 {
                    (to - from) / (n - 1) as f32
                } else {
                    0.0
                };
                let data = (0..n)
                    .map(|i| {
                        if i + 1 == n && n > 1 {
                            *to
                        } else {
                            from + step * i as f32
                        }
                    })
                    .collect();
                Tensor {
                    shape: vec![1, n],
                    data,
                }
            }
        }
    }
}

/// A parameter's value.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    Float(f64),
    Bool(bool),
    Choice(String),
    /// An optional parameter left out (logit's `eps`).
    Absent,
}

impl ParamValue {
    /// As the `key=value` text `Op::parse` accepts; `None` when absent.
    pub fn to_param_string(&self) -> Option<String> {
        match self {
            ParamValue::Float(v) => Some(v.to_string()),
            ParamValue::Bool(b) => Some(b.to_string()),
            ParamValue::Choice(c) => Some(c.clone()),
            ParamValue::Absent => None,
        }
    }
}

/// How the learner can change a parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    /// Not adjustable in this cell.
    Fixed,
    Slider {
        min: f64,
        max: f64,
        log: bool,
    },
    Toggle,
    Choice {
        choices: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamControl {
    /// The op's parameter name (`OpKind::params`).
    pub name: &'static str,
    pub default: ParamValue,
    pub control: Control,
}

impl ParamControl {
    /// Whether `op` takes only whole numbers for this parameter (seeds, sizes, rank counts).
    pub fn is_integer(&self, op: crate::ops::OpKind) -> bool {
        op.params().iter().any(|s| {
            s.name == self.name
                && matches!(s.kind, crate::ops::ParamKind::Float { integer: true, .. })
        })
    }
}

/// The views a cell shows, in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Bars of each engine's output row (distributions).
    Bars,
    /// The output against the input (curves: sigmoid, logit).
    Line,
    /// The output matrix as a heatmap.
    Heatmap,
    /// Input and outputs as a table, one column per engine (edge values).
    Table,
    /// The check against the f64 reference, per engine.
    Check,
    /// Measured on demand: each kernel's throughput as a share of the engine's own copy bandwidth.
    Roofline,
    /// A topic's own figure (`crate::views`), by name.
    Topic(&'static str),
}

impl View {
    /// The views every op can show.
    pub const GENERIC: [View; 6] = [
        View::Bars,
        View::Line,
        View::Heatmap,
        View::Table,
        View::Check,
        View::Roofline,
    ];

    pub fn name(self) -> &'static str {
        match self {
            View::Bars => "bars",
            View::Line => "line",
            View::Heatmap => "heatmap",
            View::Table => "table",
            View::Check => "check",
            View::Roofline => "roofline",
            View::Topic(name) => name,
        }
    }

    pub fn from_name(s: &str) -> Option<View> {
        View::GENERIC
            .into_iter()
            .find(|v| v.name() == s)
            .or_else(|| crate::views::find(s).map(|v| View::Topic(v.name)))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct KernelSpec {
    pub line: usize,
    /// `kernels/<topic>.cu` and `shaders/<topic>.wgsl` (see `crate::sources`).
    pub topic: String,
    /// Marks found in both sources.
    pub marks: Vec<String>,
    /// Marks for the CUDA tab only (`cuda_marks`: the two languages' kernels may be organised
    /// differently, e.g. a fast kernel that reads once in CUDA and twice in WGSL).
    pub cuda_marks: Vec<String>,
    /// Marks for the WGSL tab only (`wgsl_marks`).
    pub wgsl_marks: Vec<String>,
}

impl KernelSpec {
    /// Every mark: a line containing one is marked in whichever tab holds it.
    pub fn all_marks(&self) -> Vec<String> {
        let mut all = self.marks.clone();
        all.extend(self.cuda_marks.iter().cloned());
        all.extend(self.wgsl_marks.iter().cloned());
        all
    }
}

/// A "predict, then reveal" question.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictSpec {
    pub line: usize,
    pub question: String,
    pub answer: Answer,
    /// Shown once the learner has answered.
    pub explain: String,
}

/// What counts as the right answer to a [`PredictSpec`].
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// One of `choices` (2 to 6) is right: `right`, 0-based (the file says 1-based).
    Choice { choices: Vec<String>, right: usize },
    /// A number the learner types.
    Number(NumberAnswer),
}

/// A numeric answer: the right number and how close counts.
#[derive(Clone, Debug, PartialEq)]
pub struct NumberAnswer {
    pub truth: Truth,
    pub tolerance: NumberTolerance,
    /// What the number counts ("bytes", "ms"), shown next to the field; at most 24 characters.
    pub unit: Option<String>,
}

/// Where the right number comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Truth {
    /// Written in the lesson (`answer = 7.39`).
    Fixed(f64),
    /// Read from the results of the step's first cell as the learner has set it up
    /// (`answer_from = "..."`); see [`CellValue::read`].
    Cell(CellValue),
}

/// How close a typed number must be. Every bound is positive and finite.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NumberTolerance {
    /// |given - truth| <= absolute + relative * |truth| (either may be 0, not both).
    Within { relative: f64, absolute: f64 },
    /// Same sign and within this factor either way (orders of magnitude): > 1.
    Factor(f64),
}

/// A number a cell computes, named by an `answer_from` selector. Data only: it names an output
/// and a position or a statistic; nothing is evaluated but a lookup.
#[derive(Clone, Debug, PartialEq)]
pub enum CellValue {
    /// One value of an output, at 0-based indices, one per axis (the file counts from 1).
    At {
        output: CellOutput,
        index: Vec<usize>,
    },
    /// A statistic of an output (`max(reference)`) or of an engine's check (`failures(wgpu)`).
    Stat { stat: Stat, output: CellOutput },
}

/// An output of a cell: the f64 reference's or an engine's, the main one or an auxiliary one by
/// name.
#[derive(Clone, Debug, PartialEq)]
pub struct CellOutput {
    pub source: OutputSource,
    pub aux: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OutputSource {
    /// The f64 reference.
    Reference,
    Engine(EngineKind),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    Max,
    Min,
    Sum,
    /// How many values are NaN or infinite.
    NonFinite,
    /// The check's largest |engine - reference|.
    MaxAbsError,
    /// The check's largest relative error.
    MaxRelError,
    /// The check's largest distance in units in the last place.
    MaxUlp,
    /// How many values the check found outside the tolerance.
    Failures,
}
