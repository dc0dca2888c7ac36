//! The `kernelbook` command line: the app (optionally in classroom mode), `backends`, `check`,
//! `ops`, `run` (numpy interop) and `export` (headless screenshots and figures).
//!
//! Exit codes ([`EXIT_CODES`], shown by `--help`): 0 success; 1 a check failed (or an engine failed
//! while running); 2 bad input (parameters, files, folders, unknown names, broken lessons), with one
//! line saying what; 3 the chosen engine cannot run this here (absent, no adapter, too large for
//! the device), with the reason; 128 + N when signal N (Ctrl+C, SIGTERM) stopped an export, which
//! leaves only complete files. All output goes through [`console`]: a closed pipe ends quietly.

mod console;

use anyhow::{Result, anyhow, bail};
use clap::{Parser, Subcommand};
use console::{errln, outln};
use kernelbook::check::{self, fmt_sci};
use kernelbook::dtype::DType;
use kernelbook::engine::{EngineError, EngineKind, Registry, Slot};
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
    after_help = EXIT_CODES
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
        /// Image size in pixels, WIDTHxHEIGHT, from 320x240 to 8192x8192 (drawn in tiles, so a
        /// software adapter manages the largest too).
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

/// What the exit codes mean (`--help` and the README).
const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    a check failed (a result outside its tolerance, also in `run`), or an engine failed
       while running
  2    bad input: parameters, unreadable or malformed files, folders that cannot be read or
       written, unknown ops, engines or lessons, lessons that fail to load
  3    the chosen engine cannot run this here: absent (no driver, no adapter) or the input is
       too large for the device
  130  stopped by Ctrl+C (143: SIGTERM); only complete files are left";

/// A check failed.
const EXIT_CHECK_FAILED: u8 = 1;
/// Bad input.
const EXIT_BAD_INPUT: u8 = 2;
/// The chosen engine cannot run this here.
const EXIT_CANNOT_RUN: u8 = 3;

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

/// The chosen engine (or the export's renderer) cannot run this here: exit code 3.
#[derive(Debug)]
struct CannotRunHere(String);

impl std::fmt::Display for CannotRunHere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CannotRunHere {}

fn cannot_run(msg: impl Into<String>) -> anyhow::Error {
    anyhow!(CannotRunHere(msg.into()))
}

/// A signal stopped the work cleanly: exit code 128 + the signal's number.
#[derive(Debug)]
struct Interrupted {
    signal: i32,
    message: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Interrupted {}

/// An engine's error as an exit code: absent or refusing (3), a bad request (2), a failure (1).
fn engine_error(e: EngineError, context: String) -> anyhow::Error {
    match e {
        EngineError::Unavailable(_) | EngineError::Unsupported(_) => {
            cannot_run(format!("{context}: {e}"))
        }
        EngineError::BadRequest(_) => usage(format!("{context}: {e}")),
        EngineError::Failed(_) => anyhow!("{context}: {e}"),
    }
}

/// Mesa's Vulkan driver prints "XDG_RUNTIME_DIR is invalid or not set" on every start without one
/// (a container, a cron job, `su`). Give the process a private one (mode 0700, owned by this user)
/// under the temporary folder when it has none; leave a valid one alone.
fn ensure_runtime_dir() {
    let has_valid = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .is_some_and(|d| d.is_absolute() && d.is_dir());
    if has_valid {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    // This process's user: the owner of a file it has just created.
    let Some(uid) = tempfile::tempfile()
        .and_then(|f| f.metadata())
        .ok()
        .map(|m| m.uid())
    else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("kernelbook-runtime-{uid}"));
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        // Only a real folder of ours that no one else can enter (not a link someone planted).
        let ours = std::fs::symlink_metadata(&dir)
            .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.permissions().mode() & 0o077 == 0);
        if !ours {
            return;
        }
    }
    // SAFETY: called first thing in `main`, before any thread exists (nothing reads the
    // environment concurrently).
    unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
}

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    ensure_runtime_dir();
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
                stop: None,
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
        Err(e) => exit_code_of(&e),
    }
}

/// Print an error (one line, or one per lesson error) and pick its exit code.
fn exit_code_of(e: &anyhow::Error) -> ExitCode {
    if let Some(out) = e.downcast_ref::<console::OutputError>() {
        return match out {
            console::OutputError::Closed => console::exit_on_closed_pipe(),
            console::OutputError::Failed(_) => {
                errln!("error: {out}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
        };
    }
    if e.downcast_ref::<UsageError>().is_some() {
        errln!("error: {e}");
        ExitCode::from(EXIT_BAD_INPUT)
    } else if e.downcast_ref::<CannotRunHere>().is_some() {
        errln!("error: {e}");
        ExitCode::from(EXIT_CANNOT_RUN)
    } else if let Some(i) = e.downcast_ref::<Interrupted>() {
        errln!("{i}");
        ExitCode::from(u8::try_from(128 + i.signal).unwrap_or(u8::MAX))
    } else {
        errln!("error: {e:#}");
        ExitCode::from(EXIT_CHECK_FAILED)
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
    // The state remembered from the last run, checked: a damaged file or a value out of range
    // (a zoom of 0) gives the defaults and one warning line, never a crash.
    let state_file = kernelbook::ui::state::state_path();
    let remembered = match &state_file {
        Some(path) => {
            let (remembered, warning) = kernelbook::ui::state::load(path);
            if let Some(w) = warning {
                errln!("{w}");
            }
            remembered
        }
        None => kernelbook::ui::Remembered::default(),
    };
    let window_size = remembered.window_size.unwrap_or([1280.0, 800.0]);
    let options = kernelbook::ui::AppOptions {
        state_file,
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
            .with_inner_size(window_size)
            .with_min_inner_size(kernelbook::ui::state::MIN_WINDOW),
        renderer,
        ..Default::default()
    };
    let outcome = std::rc::Rc::new(std::cell::RefCell::new(None::<Result<(), String>>));
    let outcome_in_app = outcome.clone();
    eframe::run_native(
        "kernelbook",
        native,
        Box::new(move |cc| {
            let app = kernelbook::ui::KernelbookApp::from_creation_context(cc, options, remembered);
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
            // Inside eframe's loop there is no caller to hand a closed pipe to: best effort.
            let _ = console::write_line(format_args!("{report}"));
        }
    }

    fn on_exit(&mut self, gl: Option<&eframe::glow::Context>) {
        eframe::App::on_exit(&mut self.app, gl);
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
        outln!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!("{:<6} {:<11} device / reason", "engine", "status");
    for b in &info {
        match (&b.device, &b.reason) {
            (Some(d), _) => {
                let status = if b.software {
                    "available*"
                } else {
                    "available"
                };
                outln!("{:<6} {:<11} {d}", b.engine.name(), status);
            }
            (None, reason) => outln!(
                "{:<6} {:<11} {}",
                b.engine.name(),
                "absent",
                reason.as_deref().unwrap_or("")
            ),
        }
    }
    if info.iter().any(|b| b.software) {
        outln!("* software adapter: correct results, CPU speed");
    }
    outln!("reference: f64 on the CPU (always available)");
    Ok(ExitCode::SUCCESS)
}

fn check_cmd(engine: &str, json: bool, verbose: bool, no_large: bool) -> Result<ExitCode> {
    let kinds = parse_engines(engine)?;
    let explicit = !engine.trim().eq_ignore_ascii_case("all");
    let registry = Registry::probe_only(&kinds);
    let ready: Vec<_> = registry
        .slots()
        .iter()
        .filter_map(|s| match s {
            Slot::Ready(e) => Some(e.as_ref()),
            Slot::Absent { .. } => None,
        })
        .collect();
    if ready.is_empty() {
        // Nothing to check: say why instead of "0 passed, 0 failed".
        let reasons: Vec<String> = registry
            .slots()
            .iter()
            .filter_map(|s| match s {
                Slot::Absent { kind, reason } if kinds.contains(kind) => {
                    Some(format!("engine {} cannot run here: {reason}", kind.name()))
                }
                _ => None,
            })
            .collect();
        return Err(cannot_run(reasons.join("; ")));
    }
    let large_engines: Vec<EngineKind> = ready
        .iter()
        .filter(|e| !no_large && !e.is_software() && e.kind() != EngineKind::Cpu)
        .map(|e| e.kind())
        .collect();
    let cases = suite::cases(!large_engines.is_empty());
    if !json {
        for slot in registry.slots() {
            match slot {
                Slot::Ready(e) => errln!("{:<5} {}", e.kind().name(), e.device()),
                Slot::Absent { kind, reason } if kinds.contains(kind) => {
                    errln!("{:<5} skipped: {reason}", kind.name())
                }
                Slot::Absent { .. } => {}
            }
        }
        errln!("running {} cases ...", cases.len());
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
    let skipped_engines: Vec<(EngineKind, &str)> = registry
        .slots()
        .iter()
        .filter_map(|s| match s {
            Slot::Absent { kind, reason } if kinds.contains(kind) => Some((*kind, reason.as_str())),
            _ => None,
        })
        .collect();
    if json {
        let skipped: Vec<_> = skipped_engines
            .iter()
            .map(|(kind, reason)| {
                serde_json::json!({"engine": kind, "status": "skipped", "reason": reason})
            })
            .collect();
        let doc = serde_json::json!({"results": results, "skipped_engines": skipped, "failures": failures});
        outln!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_check_table(&results, verbose)?;
        for (kind, reason) in &skipped_engines {
            outln!("{:<5} skipped: {reason}", kind.name());
        }
        let passed = results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Pass { .. }))
            .count();
        let skipped = results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Skipped { .. }))
            .count();
        let engines = if skipped_engines.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = skipped_engines.iter().map(|(k, _)| k.name()).collect();
            format!(
                "; {} engine{} skipped ({})",
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                names.join(", ")
            )
        };
        outln!("{passed} passed, {failures} failed, {skipped} skipped{engines}");
    }
    if failures > 0 {
        return Ok(ExitCode::from(EXIT_CHECK_FAILED));
    }
    // An engine named on the command line that cannot run here is exit code 3; with `all`, absent
    // engines are only reported as skipped.
    if explicit && let Some((kind, reason)) = skipped_engines.first() {
        return Err(cannot_run(format!(
            "engine {} cannot run here: {reason}",
            kind.name()
        )));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_check_table(results: &[CaseResult], verbose: bool) -> Result<()> {
    #[derive(Default)]
    struct Row {
        pass: usize,
        total: usize,
        max_rel: f64,
        max_ulp: u64,
        time_us: f64,
    }
    let mut rows: BTreeMap<(EngineKind, String, &'static str), Row> = BTreeMap::new();
    outln!(
        "{:<5} {:<20} {:<5} {:>7} {:>10} {:>8} {:>12}",
        "engine",
        "op [kernel]",
        "dtype",
        "cases",
        "max rel",
        "max ULP",
        "kernel time"
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
        outln!(
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
        outln!(
            "  {:<5} {:<5} {:<48} {detail}",
            r.engine.name(),
            r.dtype.name(),
            format!("{}{kernel}", r.case)
        );
    }
    Ok(())
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
    // As with inputs: a parameter given twice is a mistake, not "the last one wins".
    for (i, (name, _)) in kv.iter().enumerate() {
        if kv[..i].iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(usage(format!("--param {name} is given twice")));
        }
    }
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
        errln!("note: {note}");
    }
    let reference = req.reference_full();
    if engine.trim().eq_ignore_ascii_case("reference") {
        let mut files = vec![(
            output.to_path_buf(),
            npy::encode_f64(&req.output_shape(), &reference.values).map_err(usage)?,
        )];
        for aux in &reference.aux {
            files.push((
                aux_path(output, &aux.name),
                npy::encode_f64(&aux.shape, &aux.values).map_err(usage)?,
            ));
        }
        write_outputs(&files)?;
        errln!("reference (f64) -> {}", output.display());
        for (aux, (path, _)) in reference.aux.iter().zip(&files[1..]) {
            errln!("reference {} (f64) -> {}", aux.name, path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let kind: EngineKind = engine
        .parse()
        .map_err(|e: String| usage(format!("{e}, or reference")))?;
    let registry = Registry::probe_only(&[kind]);
    let eng = registry
        .get(kind)
        .map_err(|e| engine_error(e, format!("engine {kind}")))?;
    let out = eng
        .run(&req)
        .map_err(|e| engine_error(e, format!("engine {kind} on {}", eng.device())))?;
    // The result and its auxiliary outputs: all written, or none.
    let mut files = vec![(
        output.to_path_buf(),
        npy::encode(&out.shape, &out.values, out.dtype).map_err(usage)?,
    )];
    for aux in &out.aux {
        files.push((
            aux_path(output, &aux.name),
            npy::encode(&aux.shape, &aux.values, out.dtype).map_err(usage)?,
        ));
    }
    write_outputs(&files)?;
    for (aux, (path, _)) in out.aux.iter().zip(&files[1..]) {
        errln!("wrote {} {:?} -> {}", aux.name, aux.shape, path.display());
    }
    let report = check::check_output(&req, &reference, &out);
    errln!(
        "{} on {} · {} {} · kernel {:.1} us · {report}",
        kind,
        eng.device(),
        req.op.describe(),
        req.dtype,
        out.kernel_time.as_secs_f64() * 1e6
    );
    errln!(
        "wrote {:?} {} -> {}",
        out.shape,
        out.dtype,
        output.display()
    );
    // The result is written either way (it is what the engine computed), but a FAIL is a failed
    // check.
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_CHECK_FAILED)
    })
}

/// Write `run`'s outputs all or none; an error names the path and the OS's cause (exit code 2).
fn write_outputs(files: &[(PathBuf, Vec<u8>)]) -> Result<()> {
    for (i, (path, _)) in files.iter().enumerate() {
        if files[..i].iter().any(|(p, _)| p == path) {
            return Err(usage(format!(
                "{}: two outputs would go to the same file; choose another --output name",
                path.display()
            )));
        }
    }
    kernelbook::files::write_all_or_none(files).map_err(|e| usage(e.to_string()))
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
        outln!("{kind}");
        outln!("    {}", kind.summary());
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
        outln!("    inputs: {}", inputs.join(", "));
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
            outln!("    --param {}=  {range}: {}", p.name, p.help);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn export_cmd(mut options: kernelbook::export::ExportOptions, size: &str) -> Result<ExitCode> {
    use kernelbook::export::ExportError;
    let parsed = size
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)));
    options.size = parsed.ok_or_else(|| {
        usage(format!(
            "--size '{size}': expected WIDTHxHEIGHT in pixels, e.g. 1280x800"
        ))
    })?;
    options.stop = Some(stop_on_signals()?);
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
            errln!(
                "wrote {} screenshot(s){} to {}",
                report.screenshots.len(),
                if options.figures {
                    format!(" and {} figure file(s)", report.figures.len())
                } else {
                    String::new()
                },
                options.out.display()
            );
            if report.broken.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            // The other lessons were exported; the broken ones are bad input, said with their
            // file:line:column.
            for e in &report.broken {
                errln!("error: {e}");
            }
            Err(usage(format!(
                "{} lesson file(s) failed to load and were not exported",
                report.broken.len()
            )))
        }
        Err(ExportError::Lessons { message, errors }) => {
            for e in &errors {
                errln!("error: {e}");
            }
            Err(usage(message))
        }
        Err(e @ ExportError::Interrupted { signal, .. }) => Err(anyhow!(Interrupted {
            signal,
            message: format!("kernelbook export: {e}"),
        })),
        Err(e @ (ExportError::Render(_) | ExportError::NoAdapter(_))) => {
            Err(cannot_run(e.to_string()))
        }
        Err(e) => Err(usage(e.to_string())),
    }
}

/// Ctrl+C and SIGTERM set the returned flag to the signal's number, so that a long task stops
/// between two files; a second one ends the process at once (128 + its number). Files are written
/// atomically, so even then none is left half-written under its final name.
fn stop_on_signals() -> Result<std::sync::Arc<std::sync::atomic::AtomicUsize>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    let which = Arc::new(AtomicUsize::new(0));
    let stopping = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        let installed = signal_hook::flag::register_conditional_shutdown(
            signal,
            128 + signal,
            stopping.clone(),
        )
        .and_then(|_| signal_hook::flag::register(signal, stopping.clone()))
        .and_then(|_| signal_hook::flag::register_usize(signal, which.clone(), signal as usize));
        installed.map_err(|e| anyhow!("cannot handle signal {signal}: {e}"))?;
    }
    Ok(which)
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
    let explicit = !engine.trim().eq_ignore_ascii_case("all");
    let mut absent: Vec<String> = Vec::new();
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
                errln!("{:<5} skipped: {reason}", kind.name());
                absent.push(format!("engine {} cannot run here: {reason}", kind.name()));
            }
            Slot::Absent { .. } => {}
        }
    }
    if plan.is_empty() && explicit && !absent.is_empty() {
        return Err(cannot_run(absent.join("; ")));
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
        outln!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        outln!(
            "{:<6} {:<44} {:>11} {:>10} {:>10} {:>9}  timing",
            "engine",
            "case",
            "median",
            "GB/s",
            "copy GB/s",
            "% of copy"
        );
        for r in &results {
            outln!(
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
            outln!("{d}");
        }
        for f in &failures {
            outln!("FAIL {f}");
        }
    }
    if !failures.is_empty() {
        return Ok(ExitCode::from(EXIT_CHECK_FAILED));
    }
    if explicit && !absent.is_empty() {
        return Err(cannot_run(absent.join("; ")));
    }
    Ok(ExitCode::SUCCESS)
}
