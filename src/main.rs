//! The `kernelbook` command line: the app (optionally in classroom mode), `backends`, `check`,
//! `ops`, `run` (numpy interop) and `export` (headless screenshots and figures). Errors a user can
//! cause (bad parameters, malformed .npy, unknown ops) print one line and exit with code 2; a check
//! mismatch exits with code 1.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use kernelbook::check::{self, fmt_sci};
use kernelbook::dtype::DType;
use kernelbook::engine::{EngineKind, Registry, Slot};
use kernelbook::npy;
use kernelbook::ops::{Op, OpRequest, Tensor};
use kernelbook::suite::{self, CaseResult, Outcome};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kernelbook",
    version,
    about = "The numerics inside LLMs, run live on CUDA, wgpu and the CPU and checked against an f64 reference.",
    after_help = "Exit codes: 0 success, 1 a check failed, 2 bad input (parameters, files, unknown op or engine)."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Add the lessons in this folder (*.md) to the built-in ones.
    #[arg(long, value_name = "DIR", global = true)]
    lessons: Option<PathBuf>,
    /// Open this lesson (id or title) instead of the last one.
    #[arg(long, value_name = "NAME")]
    lesson: Option<String>,
    /// Start with this theme: light, dark or projector.
    #[arg(long, value_name = "THEME")]
    theme: Option<String>,
    /// Start-up smoke test: save a screenshot of the first step once its results are in, then quit.
    #[arg(long, value_name = "PNG", hide = true)]
    screenshot: Option<PathBuf>,
    /// How the window is drawn: wgpu, glow (OpenGL), or auto (wgpu on a hardware GPU, OpenGL when
    /// the only adapter is a software rasteriser, where it draws frames about 4x faster).
    #[arg(long, value_name = "RENDERER", default_value = "auto")]
    renderer: String,
    /// Frame-time measurement: drag the first slider of the lesson for N frames, print frame times, quit.
    #[arg(long, value_name = "FRAMES", hide = true)]
    frame_stats: Option<usize>,
    /// Start in classroom mode: full screen, projector theme, presentation keys (→ Space PageDown
    /// next, ← PageUp back, B blank, F full screen, P presenter view, S sweep, Esc leave).
    #[arg(long)]
    classroom: bool,
    /// Step through the lessons on a timer, this many seconds per step (an open day, a kiosk).
    #[arg(long, value_name = "SECONDS")]
    autoplay: Option<f64>,
    /// Start-up measurement: print the time to the first frame and to the first results, quit.
    #[arg(long, hide = true)]
    startup_time: bool,
    /// Save screenshots (F12) to this folder (default: ~/Pictures/kernelbook).
    #[arg(long, value_name = "DIR")]
    screenshots: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// List the engines: device or adapter name, or why an engine is unavailable.
    Backends {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run every op x engine x dtype over the check suite against the f64 reference.
    ///
    /// Sizes include PyTorch's (0,10), (10,0), (31,20), (33,2049), (16,30576), plus 4096x32000 on a
    /// real GPU, the documented edge values, and the naive-softmax overflows (which must
    /// break). Absent engines are reported as skipped, not failed. Exits 1 on any mismatch.
    Check {
        /// cuda, wgpu, cpu or all.
        #[arg(long, default_value = "all")]
        engine: String,
        /// Print JSON (one object per case and engine) instead of a table.
        #[arg(long)]
        json: bool,
        /// Print every case, not only the summary per op and dtype.
        #[arg(long, short)]
        verbose: bool,
        /// Skip the 4096x32000 cases even on a real GPU.
        #[arg(long)]
        no_large: bool,
    },
    /// List the ops: what each computes, its inputs and its parameters with their bounds.
    Ops,
    /// Measure each op on each engine: median time of at least 20 runs after warm-up, bytes
    /// moved, GB/s, and the percentage of the same engine's copy bandwidth (measured in the same
    /// run), a roofline for ops that read their input once and write their output once.
    Bench {
        /// cuda, wgpu, cpu (comma-separated) or all.
        #[arg(long, default_value = "all")]
        engine: String,
        /// Only these ops (comma-separated names; see `kernelbook ops`).
        #[arg(long)]
        op: Option<String>,
        /// ROWSxCOLS (default: 4096x32000 on a hardware GPU, 256x8192 on the CPU and on
        /// software adapters).
        #[arg(long)]
        size: Option<String>,
        /// Timed runs per case (at least 20).
        #[arg(long, default_value_t = kernelbook::bench::RUNS)]
        runs: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run one op on .npy input and write the result as .npy.
    ///
    /// `kernelbook ops` lists every op with its inputs and parameters. Inputs are given by name
    /// (--input x=F.npy, --input positions=P.npy; a bare FILE.npy is the first input); integer
    /// inputs (ids, positions, targets) take int32 or int64 arrays. Output files: f32 -> float32,
    /// f16 -> float16, bf16 -> float32 (values exactly representable in bf16), engine reference ->
    /// float64. Auxiliary outputs (e.g. gumbel_softmax's soft sample) go next to the output as
    /// <stem>.<name>.npy.
    Run {
        /// The op name (see above).
        op: String,
        /// Inputs as NAME=FILE.npy (or just FILE.npy for x). float16/32/64 or int32/64.
        #[arg(long = "input", short = 'i', required = true)]
        inputs: Vec<String>,
        /// Parameters as NAME=VALUE, e.g. temperature=0.5, stable=false, dtype=f16.
        #[arg(long = "param", short = 'p')]
        params: Vec<String>,
        /// cuda, wgpu, cpu, or reference (f64).
        #[arg(long, default_value = "cpu")]
        engine: String,
        /// Where to write the result.
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// Render every step of every (or one) lesson to PNG without a display, with provenance text
    /// chunks (lesson, step, parameters, seeds, engines, checks, version) in every file.
    ///
    /// Needs a wgpu adapter to draw with; a software one (Mesa's lavapipe) is enough.
    Export {
        /// The folder to write to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Only this lesson (id or title).
        #[arg(long, value_name = "NAME")]
        lesson: Option<String>,
        /// Image size in pixels, WIDTHxHEIGHT.
        #[arg(long, default_value = "1280x800")]
        size: String,
        /// light, dark or projector.
        #[arg(long, default_value = "light")]
        theme: String,
        /// Pixels per point: 2 draws the same layout at twice the resolution.
        #[arg(long, default_value_t = 1.0)]
        scale: f32,
        /// Also write every plot cell's charts as SVG and as PNG at print resolution.
        #[arg(long)]
        figures: bool,
    },
}

/// An error the user caused: printed on one line, exit code 2.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow!(UsageError(msg.into()))
}

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let cli = Cli::parse();
    let result = match cli.command {
        None => gui(GuiArgs {
            lessons: cli.lessons,
            lesson: cli.lesson,
            theme: cli.theme,
            screenshot: cli.screenshot,
            frame_stats: cli.frame_stats,
            renderer: cli.renderer,
            classroom: cli.classroom,
            autoplay: cli.autoplay,
            screenshots: cli.screenshots,
            startup: cli.startup_time.then_some(started),
        }),
        Some(Command::Ops) => ops_cmd(),
        Some(Command::Bench {
            engine,
            op,
            size,
            runs,
            json,
        }) => bench_cmd(&engine, op.as_deref(), size.as_deref(), runs, json),
        Some(Command::Export {
            out,
            lesson,
            size,
            theme,
            scale,
            figures,
        }) => export_cmd(
            kernelbook::export::ExportOptions {
                out,
                lesson,
                lessons_dir: cli.lessons,
                size: (0, 0),
                theme,
                scale,
                figures,
            },
            &size,
        ),
        Some(Command::Backends { json }) => backends(json),
        Some(Command::Check {
            engine,
            json,
            verbose,
            no_large,
        }) => check_cmd(&engine, json, verbose, no_large),
        Some(Command::Run {
            op,
            inputs,
            params,
            engine,
            output,
        }) => run_cmd(&op, &inputs, &params, &engine, &output),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if e.downcast_ref::<UsageError>().is_some() {
                eprintln!("error: {e}");
                ExitCode::from(2)
            } else {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        }
    }
}

struct GuiArgs {
    lessons: Option<PathBuf>,
    lesson: Option<String>,
    theme: Option<String>,
    screenshot: Option<PathBuf>,
    frame_stats: Option<usize>,
    renderer: String,
    classroom: bool,
    autoplay: Option<f64>,
    screenshots: Option<PathBuf>,
    startup: Option<std::time::Instant>,
}

fn gui(args: GuiArgs) -> Result<ExitCode> {
    let GuiArgs {
        lessons,
        lesson,
        theme,
        screenshot,
        frame_stats,
        renderer,
        classroom,
        autoplay,
        screenshots,
        startup,
    } = args;
    if let Some(s) = autoplay
        && !(s.is_finite() && (1.0..=3600.0).contains(&s))
    {
        return Err(usage(format!(
            "--autoplay {s}: give the seconds per step, from 1 to 3600"
        )));
    }
    if let Some(t) = &theme
        && kernelbook::ui::theme::Theme::by_name(t).is_none()
    {
        return Err(usage(format!(
            "unknown theme '{t}' (expected light, dark or projector)"
        )));
    }
    if let Some(dir) = &lessons
        && !dir.is_dir()
    {
        return Err(usage(format!("--lessons {}: not a folder", dir.display())));
    }
    if let Some(name) = &lesson {
        let all = kernelbook::lesson::load_all(lessons.as_deref());
        if kernelbook::lesson::find(&all, name).is_none() {
            let ids: Vec<&str> = all
                .iter()
                .filter_map(|l| l.as_ref().ok())
                .map(|l| l.id.as_str())
                .collect();
            return Err(usage(format!(
                "--lesson {name}: no such lesson (available: {})",
                ids.join(", ")
            )));
        }
    }
    let renderer = match renderer.trim().to_ascii_lowercase().as_str() {
        "wgpu" => eframe::Renderer::Wgpu,
        "glow" | "gl" | "opengl" => eframe::Renderer::Glow,
        "auto" if kernelbook::engine::wgpu::hardware_adapter_available() => eframe::Renderer::Wgpu,
        "auto" => eframe::Renderer::Glow,
        other => {
            return Err(usage(format!(
                "unknown renderer '{other}' (expected auto, wgpu or glow)"
            )));
        }
    };
    let options = kernelbook::ui::AppOptions {
        lessons_dir: lessons,
        lesson,
        theme,
        screenshot,
        frame_stats,
        classroom,
        autoplay,
        screenshot_dir: screenshots,
        startup_from: startup,
        ..Default::default()
    };
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("kernelbook")
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([800.0, 500.0]),
        renderer,
        ..Default::default()
    };
    let outcome = std::rc::Rc::new(std::cell::RefCell::new(None::<Result<(), String>>));
    let outcome_in_app = outcome.clone();
    eframe::run_native(
        "kernelbook",
        native,
        Box::new(move |cc| {
            let app = kernelbook::ui::KernelbookApp::from_creation_context(cc, options);
            Ok(Box::new(QuitReporter {
                app,
                outcome: outcome_in_app,
            }))
        }),
    )
    .map_err(|e| anyhow!("the window could not start: {e}"))?;
    match outcome.borrow_mut().take() {
        Some(Err(e)) => Err(anyhow!("{e}")),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Passes the app's exit status (the smoke-test screenshot) out of eframe's run loop.
struct QuitReporter {
    app: kernelbook::ui::KernelbookApp,
    outcome: std::rc::Rc<std::cell::RefCell<Option<Result<(), String>>>>,
}

impl eframe::App for QuitReporter {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        eframe::App::ui(&mut self.app, ui, frame);
        if let Some(q) = self.app.quit.take() {
            *self.outcome.borrow_mut() = Some(q);
        }
        if let Some(report) = self.app.frame_report.take() {
            println!("{report}");
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::App::save(&mut self.app, storage);
    }
}

fn parse_engines(s: &str) -> Result<Vec<EngineKind>> {
    if s.trim().eq_ignore_ascii_case("all") {
        return Ok(EngineKind::ALL.to_vec());
    }
    s.split(',')
        .map(|p| p.parse::<EngineKind>().map_err(usage))
        .collect()
}

fn backends(json: bool) -> Result<ExitCode> {
    let registry = Registry::probe();
    let info = registry.backends();
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<6} {:<11} device / reason", "engine", "status");
    for b in &info {
        match (&b.device, &b.reason) {
            (Some(d), _) => {
                let status = if b.software {
                    "available*"
                } else {
                    "available"
                };
                println!("{:<6} {:<11} {d}", b.engine.name(), status);
            }
            (None, reason) => println!(
                "{:<6} {:<11} {}",
                b.engine.name(),
                "absent",
                reason.as_deref().unwrap_or("")
            ),
        }
    }
    if info.iter().any(|b| b.software) {
        println!("* software adapter: correct results, CPU speed");
    }
    println!("reference: f64 on the CPU (always available)");
    Ok(ExitCode::SUCCESS)
}

fn check_cmd(engine: &str, json: bool, verbose: bool, no_large: bool) -> Result<ExitCode> {
    let kinds = parse_engines(engine)?;
    let registry = Registry::probe_only(&kinds);
    let ready: Vec<_> = registry
        .slots()
        .iter()
        .filter_map(|s| match s {
            Slot::Ready(e) => Some(e.as_ref()),
            Slot::Absent { .. } => None,
        })
        .collect();
    let large_engines: Vec<EngineKind> = ready
        .iter()
        .filter(|e| !no_large && !e.is_software() && e.kind() != EngineKind::Cpu)
        .map(|e| e.kind())
        .collect();
    let cases = suite::cases(!large_engines.is_empty());
    if !json {
        for slot in registry.slots() {
            match slot {
                Slot::Ready(e) => eprintln!("{:<5} {}", e.kind().name(), e.device()),
                Slot::Absent { kind, reason } if kinds.contains(kind) => {
                    eprintln!("{:<5} skipped: {reason}", kind.name())
                }
                Slot::Absent { .. } => {}
            }
        }
        eprintln!("running {} cases ...", cases.len());
    }
    let mut results: Vec<CaseResult> = Vec::new();
    for case in &cases {
        let req = match case.request() {
            Ok(r) => r,
            Err(e) => bail!("suite case '{}' is invalid: {e}", case.name),
        };
        let reference = req.reference_full();
        for engine in &ready {
            if case.large && !large_engines.contains(&engine.kind()) {
                continue;
            }
            for req in suite::kernel_variants(*engine, &req) {
                results.push(suite::run_case(*engine, case, &req, &reference));
            }
        }
    }
    let failures = results.iter().filter(|r| r.is_failure()).count();
    if json {
        let skipped: Vec<_> = registry
            .slots()
            .iter()
            .filter_map(|s| match s {
                Slot::Absent { kind, reason } if kinds.contains(kind) => {
                    Some(serde_json::json!({"engine": kind, "status": "skipped", "reason": reason}))
                }
                _ => None,
            })
            .collect();
        let doc = serde_json::json!({"results": results, "skipped_engines": skipped, "failures": failures});
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_check_table(&results, verbose);
        for slot in registry.slots() {
            if let Slot::Absent { kind, reason } = slot
                && kinds.contains(kind)
            {
                println!("{:<5} skipped: {reason}", kind.name());
            }
        }
        let passed = results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Pass { .. }))
            .count();
        let skipped = results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Skipped { .. }))
            .count();
        println!("{passed} passed, {failures} failed, {skipped} skipped");
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_check_table(results: &[CaseResult], verbose: bool) {
    #[derive(Default)]
    struct Row {
        pass: usize,
        total: usize,
        max_rel: f64,
        max_ulp: u64,
        time_us: f64,
    }
    let mut rows: BTreeMap<(EngineKind, String, &'static str), Row> = BTreeMap::new();
    println!(
        "{:<5} {:<20} {:<5} {:>7} {:>10} {:>8} {:>12}",
        "engine", "op [kernel]", "dtype", "cases", "max rel", "max ULP", "kernel time"
    );
    for r in results {
        let op = match r.kernel {
            Some(k) => format!("{} [{k}]", r.op.name()),
            None => r.op.name().to_string(),
        };
        let row = rows.entry((r.engine, op, r.dtype.name())).or_default();
        row.total += 1;
        row.time_us += r.kernel_time.as_secs_f64() * 1e6;
        match &r.outcome {
            Outcome::Pass { report } => {
                row.pass += 1;
                if r.expect == suite::Expect::Match {
                    row.max_rel = row.max_rel.max(report.max_rel);
                    row.max_ulp = row.max_ulp.max(report.max_ulp);
                }
            }
            Outcome::Skipped { .. } => row.pass += 1,
            _ => {}
        }
    }
    for ((engine, op, dtype), row) in &rows {
        let mark = if row.pass == row.total { "ok" } else { "FAIL" };
        println!(
            "{:<6} {:<20} {:<5} {:>3}/{:<3} {:>10} {:>8} {:>9.0} us  {mark}",
            engine.name(),
            op,
            dtype,
            row.pass,
            row.total,
            fmt_sci(row.max_rel),
            row.max_ulp,
            row.time_us
        );
    }
    for r in results {
        let show = verbose || r.is_failure();
        if !show {
            continue;
        }
        let detail = match &r.outcome {
            Outcome::Pass { report } => format!("ok   {report}"),
            Outcome::Fail { report } if r.expect == suite::Expect::Breaks => {
                format!("FAIL expected the naive softmax to overflow, but it matched: {report}")
            }
            Outcome::Fail { report } => format!("FAIL {report}"),
            Outcome::Skipped { reason } => format!("skip {reason}"),
            Outcome::Error { message } => format!("FAIL {message}"),
        };
        let kernel = r.kernel.map_or(String::new(), |k| format!(" [{k}]"));
        println!(
            "  {:<5} {:<5} {:<48} {detail}",
            r.engine.name(),
            r.dtype.name(),
            format!("{}{kernel}", r.case)
        );
    }
}

fn run_cmd(
    op_name: &str,
    inputs: &[String],
    params: &[String],
    engine: &str,
    output: &Path,
) -> Result<ExitCode> {
    let kv: Vec<(String, String)> = params
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| usage(format!("--param '{p}' is not NAME=VALUE")))
        })
        .collect::<Result<_>>()?;
    let (op, dtype): (Op, DType) = Op::parse(op_name, &kv).map_err(|e| usage(e.to_string()))?;
    let decls = op.kind().inputs();
    let names = || decls.iter().map(|d| d.name).collect::<Vec<_>>().join(", ");
    let mut given: Vec<(String, Tensor)> = Vec::new();
    for spec in inputs {
        let (name, path) = match spec.split_once('=') {
            Some((n, p)) => (n.trim(), p.trim()),
            None => (decls[0].name, spec.trim()),
        };
        let name = if name == "x" { decls[0].name } else { name };
        let Some(decl) = decls.iter().find(|d| d.name == name) else {
            return Err(usage(format!(
                "op {} has no input '{name}' (it takes: {})",
                op.kind(),
                names()
            )));
        };
        if given.iter().any(|(n, _)| n == name) {
            return Err(usage(format!("input {name} is given twice")));
        }
        let arr = npy::read(Path::new(path)).map_err(usage)?;
        if arr.shape.is_empty() {
            return Err(usage(format!(
                "{path}: a 0-d array has no axes; give at least one"
            )));
        }
        match &arr.data {
            npy::NpyData::Float(_) if decl.int => {
                return Err(usage(format!(
                    "{path}: input {name} holds integers; give an int32 or int64 array (got {})",
                    arr.descr
                )));
            }
            npy::NpyData::Int(v) => {
                if let Some(i) = v.iter().find(|i| i.unsigned_abs() > 1 << 24) {
                    return Err(usage(format!(
                        "{path}: {i} is beyond the integers kernelbook carries exactly (|i| <= 2^24)"
                    )));
                }
            }
            _ => {}
        }
        let t = Tensor::new(arr.shape.clone(), arr.to_f32()).map_err(|e| usage(e.to_string()))?;
        given.push((name.to_string(), t));
    }
    let x = match given.iter().position(|(n, _)| n == decls[0].name) {
        Some(i) => given.remove(i).1,
        None => {
            return Err(usage(format!(
                "op {} needs input {} (--input {}=FILE.npy); it takes: {}",
                op.kind(),
                decls[0].name,
                decls[0].name,
                names()
            )));
        }
    };
    let req = OpRequest::with_inputs(op, dtype, x, given).map_err(|e| usage(e.to_string()))?;
    for note in req.notes() {
        eprintln!("note: {note}");
    }
    let reference = req.reference_full();
    if engine.trim().eq_ignore_ascii_case("reference") {
        npy::write_f64(output, &req.output_shape(), &reference.values).map_err(usage)?;
        eprintln!("reference (f64) -> {}", output.display());
        for aux in &reference.aux {
            let path = aux_path(output, &aux.name);
            npy::write_f64(&path, &aux.shape, &aux.values).map_err(usage)?;
            eprintln!("reference {} (f64) -> {}", aux.name, path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let kind: EngineKind = engine
        .parse()
        .map_err(|e: String| usage(format!("{e}, or reference")))?;
    let registry = Registry::probe_only(&[kind]);
    let eng = registry
        .get(kind)
        .map_err(|e| anyhow!("engine {kind}: {e}"))?;
    let out = eng
        .run(&req)
        .map_err(|e| anyhow!("engine {kind} on {}: {e}", eng.device()))?;
    npy::write(output, &out.shape, &out.values, out.dtype)
        .map_err(usage)
        .context("writing the result")?;
    for aux in &out.aux {
        let path = aux_path(output, &aux.name);
        npy::write(&path, &aux.shape, &aux.values, out.dtype)
            .map_err(usage)
            .context("writing an auxiliary output")?;
        eprintln!("wrote {} {:?} -> {}", aux.name, aux.shape, path.display());
    }
    let report = check::check_output(&req, &reference, &out);
    eprintln!(
        "{} on {} · {} {} · kernel {:.1} us · {report}",
        kind,
        eng.device(),
        req.op.describe(),
        req.dtype,
        out.kernel_time.as_secs_f64() * 1e6
    );
    eprintln!(
        "wrote {:?} {} -> {}",
        out.shape,
        out.dtype,
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Where an auxiliary output goes: next to the main output, named `<stem>.<name>.npy`.
fn aux_path(output: &Path, name: &str) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    output.with_file_name(format!("{stem}.{safe}.npy"))
}

fn ops_cmd() -> Result<ExitCode> {
    use kernelbook::ops::{OpKind, ParamKind};
    for kind in OpKind::all() {
        println!("{kind}");
        println!("    {}", kind.summary());
        let inputs: Vec<String> = kind
            .inputs()
            .iter()
            .map(|i| {
                let mut s = i.name.to_string();
                if i.int {
                    s.push_str(" (int)");
                }
                if i.optional {
                    s.push_str(" (optional)");
                }
                s
            })
            .collect();
        println!("    inputs: {}", inputs.join(", "));
        for p in kind.params() {
            let range = match p.kind {
                ParamKind::Float {
                    min,
                    max,
                    default,
                    integer,
                    ..
                } => {
                    let d = if default.is_nan() {
                        "absent".to_string()
                    } else {
                        default.to_string()
                    };
                    let what = if integer { "integer" } else { "number" };
                    format!("{what} in [{min}, {max}], default {d}")
                }
                ParamKind::Bool { default } => format!("true|false, default {default}"),
                ParamKind::Choice { choices, default } => {
                    format!("{}, default {default}", choices.join("|"))
                }
            };
            println!("    --param {}=  {range}: {}", p.name, p.help);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn export_cmd(mut options: kernelbook::export::ExportOptions, size: &str) -> Result<ExitCode> {
    let parsed = size
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)));
    options.size = parsed.ok_or_else(|| {
        usage(format!(
            "--size '{size}': expected WIDTHxHEIGHT in pixels, e.g. 1280x800"
        ))
    })?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:32} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = kernelbook::export::export(&options, &mut |done, total, what| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(what.to_string());
    });
    bar.finish_and_clear();
    match report {
        Ok(report) => {
            eprintln!(
                "wrote {} screenshot(s){} to {}",
                report.screenshots.len(),
                if options.figures {
                    format!(" and {} figure file(s)", report.figures.len())
                } else {
                    String::new()
                },
                options.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ kernelbook::export::ExportError::Render(_)) => Err(anyhow!("{e}")),
        Err(e) => Err(usage(e.to_string())),
    }
}

fn parse_size(s: &str, flag: &str) -> Result<(usize, usize)> {
    s.split_once(['x', 'X'])
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .filter(|&(a, b): &(usize, usize)| a > 0 && b > 0)
        .ok_or_else(|| usage(format!("{flag} '{s}': expected ROWSxCOLS, e.g. 4096x32000")))
}

fn bench_cmd(
    engine: &str,
    ops: Option<&str>,
    size: Option<&str>,
    runs: usize,
    json: bool,
) -> Result<ExitCode> {
    use kernelbook::bench;
    use kernelbook::ops::OpKind;
    let kinds = parse_engines(engine)?;
    let ops: Vec<OpKind> = match ops {
        Some(list) => list
            .split(',')
            .map(|n| OpKind::from_name(n.trim()).map_err(|e| usage(e.to_string())))
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let measured = bench::ops();
    if let Some(k) = ops.iter().find(|k| !measured.contains(k)) {
        return Err(usage(format!(
            "bench has no input recipe for {k} yet (it measures: {})",
            measured
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let size = size.map(|s| parse_size(s, "--size")).transpose()?;
    if let Some((r, c)) = size
        && r.saturating_mul(c) > kernelbook::ops::MAX_ELEMENTS
    {
        return Err(usage(format!(
            "--size {r}x{c}: more than {} elements",
            kernelbook::ops::MAX_ELEMENTS
        )));
    }
    let registry = Registry::probe_only(&kinds);
    let mut plan = Vec::new();
    for slot in registry.slots() {
        match slot {
            Slot::Ready(e) => {
                let hardware_gpu = !e.is_software() && e.kind() != EngineKind::Cpu;
                let default = if hardware_gpu {
                    bench::GPU_SIZE
                } else {
                    bench::SMALL_SIZE
                };
                for case in bench::cases(&ops, size.unwrap_or(default), hardware_gpu) {
                    if case.runs_on(e.kind()) {
                        plan.push((e.as_ref(), case));
                    }
                }
            }
            Slot::Absent { kind, reason } if kinds.contains(kind) => {
                eprintln!("{:<5} skipped: {reason}", kind.name());
            }
            Slot::Absent { .. } => {}
        }
    }
    let bar = indicatif::ProgressBar::new(plan.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:32} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for (engine, case) in &plan {
        bar.set_message(format!("{} {}", engine.kind(), case.name));
        let outcome = (case.build)()
            .map_err(|e| e.to_string())
            .and_then(|req| bench::measure(*engine, case, &req, runs).map_err(|e| e.to_string()));
        match outcome {
            Ok(r) => results.push(r),
            Err(e) => failures.push(format!("{} {}: {e}", engine.kind(), case.name)),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if json {
        let doc = serde_json::json!({"results": results, "failures": failures});
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "{:<6} {:<44} {:>11} {:>10} {:>10} {:>9}  timing",
            "engine", "case", "median", "GB/s", "copy GB/s", "% of copy"
        );
        for r in &results {
            println!(
                "{:<6} {:<44} {:>8.1} us {:>10.1} {:>10} {:>9}  {:?}",
                r.engine.name(),
                r.case,
                r.median_us,
                r.gb_per_s,
                r.copy_gb_per_s.map_or("-".into(), |c| format!("{c:.1}")),
                r.percent_of_copy.map_or("-".into(), |p| format!("{p:.0}%")),
                r.timing
            );
        }
        let mut devices: Vec<String> = results
            .iter()
            .map(|r| format!("{:<5} {}", r.engine.name(), r.device))
            .collect();
        devices.dedup();
        for d in devices {
            println!("{d}");
        }
        for f in &failures {
            println!("FAIL {f}");
        }
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
