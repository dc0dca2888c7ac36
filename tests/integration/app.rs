//! The notebook app, headless (egui_kittest with the wgpu renderer on the software Vulkan adapter):
//! every step of every built-in lesson is rendered and compared with its snapshot; a slider changes
//! the results and the check readout; a malformed lesson shows an error card while the others work;
//! the keyboard steps through a lesson.
//!
//! Snapshots live in tests/snapshots/; regenerate with `UPDATE_SNAPSHOTS=1 scripts/test.sh` and review
//! the images.

use egui::Key;
use egui_kittest::Harness;
use egui_kittest::kittest::{By, NodeT, Queryable};
use kernelbook::engine::EngineKind;
use kernelbook::ui::{AppOptions, KernelbookApp, Remembered};
use std::path::PathBuf;

fn fixtures(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn options(lessons_dir: Option<PathBuf>) -> AppOptions {
    AppOptions {
        lessons_dir,
        engines: EngineKind::ALL.to_vec(),
        inline_compute: true,
        hide_timings: true,
        ..Default::default()
    }
}

fn harness(size: (f32, f32), opts: AppOptions) -> Harness<'static, KernelbookApp> {
    Harness::builder()
        .with_size(egui::vec2(size.0, size.1))
        .wgpu()
        .build_eframe(move |cc| KernelbookApp::new(&cc.egui_ctx, opts, Remembered::default()))
}

/// Texts of the widgets whose name (buttons, sliders) or text (labels) contains `text`.
fn labels_containing(h: &Harness<'_, KernelbookApp>, text: &str) -> Vec<String> {
    let owned = text.to_string();
    let by = By::new()
        .include_labels()
        .predicate(move |n| node_text(n).is_some_and(|t| t.contains(&owned)));
    h.query_all(by)
        .filter_map(|n| node_text(&n.accesskit_node()))
        .collect()
}

/// A label's text is its accessible value; other widgets carry a name.
fn node_text(n: &egui_kittest::kittest::AccessKitNode<'_>) -> Option<String> {
    n.label().filter(|l| !l.is_empty()).or_else(|| n.value())
}

fn builtin_lessons(h: &Harness<'_, KernelbookApp>) -> Vec<(usize, String, usize)> {
    let lessons: Vec<_> = h
        .state()
        .lessons()
        .iter()
        .enumerate()
        .map(|(i, l)| match l {
            Ok(l) => (i, l.id.clone(), l.steps.len()),
            Err(e) => panic!("built-in lesson failed to load: {e}"),
        })
        .collect();
    assert!(lessons.len() >= 2, "lessons 1 and 2 are built in");
    lessons
}

/// Show one step and check that every cell on it has its results.
fn show_step(h: &mut Harness<'_, KernelbookApp>, index: usize, id: &str, step: usize) {
    h.state_mut().go_to(index, step);
    h.run();
    assert_eq!(h.state().position(), (index, step));
    assert!(!h.state().is_computing(), "{id} step {step}");
    assert!(
        labels_containing(h, "computing on every engine").is_empty(),
        "{id} step {step}"
    );
}

/// One test walks every step of every built-in lesson and compares it with its snapshot, so a new
/// lesson is covered the day it lands.
#[test]
fn every_step_of_every_lesson_matches_its_snapshot() {
    let mut h = harness((1280.0, 800.0), options(None));
    for (index, id, steps) in builtin_lessons(&h) {
        for step in 0..steps {
            show_step(&mut h, index, &id, step);
            h.snapshot(format!("{id}-step{:02}", step + 1));
        }
    }
}

/// The same walk on a 1920x1080 screen: every step renders a real picture (not stored: the
/// 1280x800 snapshots above are the reviewed ones).
#[test]
fn every_step_renders_at_1920x1080() {
    let mut h = harness((1920.0, 1080.0), options(None));
    for (index, id, steps) in builtin_lessons(&h) {
        for step in 0..steps {
            show_step(&mut h, index, &id, step);
            let image = h
                .render()
                .unwrap_or_else(|e| panic!("{id} step {step}: {e}"));
            assert_eq!((image.width(), image.height()), (1920, 1080));
            let first = image.get_pixel(0, 0);
            let differing = image.pixels().filter(|p| *p != first).count();
            assert!(
                differing > 100_000,
                "{id} step {step}: only {differing} non-background pixels"
            );
        }
    }
}

#[test]
fn temperature_slider_changes_results_and_check() {
    let mut opts = options(Some(fixtures("lessons")));
    opts.lesson = Some("fixture-break-it".into());
    let mut h = harness((1280.0, 800.0), opts);
    h.run();
    // At T = 4 the naive f16 softmax of [12, 0, -1] is fine on every engine that runs.
    let before = labels_containing(&h, "y = [");
    assert!(!before.is_empty(), "engine values are listed");
    assert!(
        !labels_containing(&h, "PASS").is_empty(),
        "check passes at T = 4"
    );
    assert!(labels_containing(&h, "FAIL").is_empty());

    // Lower T with the keyboard until 12 / T passes 11.09: e^z overflows f16 and the row is NaN.
    h.get_by_role_and_label(egui::accesskit::Role::Slider, "temperature")
        .focus();
    h.run();
    for _ in 0..60 {
        h.key_press(Key::ArrowLeft);
        h.run();
    }
    let after = labels_containing(&h, "y = [");
    assert_ne!(before, after, "the displayed result changed");
    let fails = labels_containing(&h, "FAIL");
    assert!(
        !fails.is_empty(),
        "the check reports the overflow: {after:?}"
    );
    assert!(
        fails.iter().any(|f| f.contains("NaN")),
        "and counts the NaNs: {fails:?}"
    );
    assert!(after.iter().any(|v| v.contains("NaN")), "{after:?}");
}

#[test]
fn slider_defaults_are_used_as_written() {
    // Lesson 1's eps slider starts at 1e-6: logit(1) must clamp to 13.8023, not become +inf.
    let mut h = harness((1280.0, 800.0), options(None));
    let (index, _, steps) = builtin_lessons(&h)
        .into_iter()
        .find(|(_, id, _)| id == "logits")
        .expect("lesson 1");
    let step = (0..steps)
        .find(|&s| {
            h.state_mut().go_to(index, s);
            h.run();
            h.query_by_role_and_label(egui::accesskit::Role::Slider, "eps")
                .is_some()
        })
        .expect("lesson 1 has an eps slider");
    h.state_mut().go_to(index, step);
    h.run();
    let values = labels_containing(&h, "y = [");
    assert!(values.iter().any(|v| v.contains("13.8")), "{values:?}");
    assert!(!values.iter().any(|v| v.contains("inf")), "{values:?}");
}

#[test]
fn malformed_lesson_shows_an_error_card_and_the_rest_works() {
    let mut h = harness((1280.0, 800.0), options(Some(fixtures("broken"))));
    h.run();
    let cards = labels_containing(&h, "bad.md");
    assert!(!cards.is_empty(), "an error card names the file");
    assert!(
        cards.iter().any(|c| c.contains("temprature")),
        "and the problem: {cards:?}"
    );
    // The good lesson in the same folder and the built-in ones still load and run.
    h.get_by_label_contains("Fixture: break it").click();
    h.run();
    assert!(!labels_containing(&h, "PASS").is_empty());
    h.get_by_label_contains("Softmax").click();
    h.run();
    assert!(!h.state().is_computing());
}

#[test]
fn keyboard_steps_through_a_lesson() {
    let mut h = harness((1280.0, 800.0), options(None));
    h.run();
    let (lesson, step) = h.state().position();
    assert_eq!(step, 0);
    let n = h.state().step_count();
    h.key_press(Key::ArrowRight);
    h.run();
    assert_eq!(h.state().position(), (lesson, 1));
    h.key_press(Key::PageDown);
    h.run();
    assert_eq!(h.state().position(), (lesson, 2));
    h.key_press(Key::ArrowLeft);
    h.run();
    assert_eq!(h.state().position(), (lesson, 1));
    h.key_press(Key::End);
    h.run();
    assert_eq!(h.state().position(), (lesson, n - 1));
    h.key_press(Key::ArrowRight);
    h.run();
    assert_eq!(
        h.state().position(),
        (lesson, n - 1),
        "stays on the last step"
    );
    h.key_press(Key::Home);
    h.run();
    assert_eq!(h.state().position(), (lesson, 0));
    assert!(
        !labels_containing(&h, "step 1 of").is_empty(),
        "progress indicator"
    );
}

#[test]
fn remembered_state_restores_lesson_step_and_theme() {
    let mut h = harness((1280.0, 800.0), options(None));
    h.run();
    h.state_mut().go_to(1, 2);
    h.state_mut().set_theme("dark");
    let saved = h.state().remembered();
    let ctx = egui::Context::default();
    let app = KernelbookApp::new(&ctx, options(None), saved.clone());
    assert_eq!(app.position(), (1, 2));
    assert_eq!(app.remembered(), saved);
    assert_eq!(saved.theme.as_deref(), Some("dark"));
}

/// A lesson with one tiny roofline cell (its own 4 x 256 input on every engine), written to a
/// temporary folder.
fn roofline_lesson() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("roofline.md"),
        r#"+++
id = "fixture-roofline"
order = 95
title = "Fixture: roofline"
summary = "A tiny roofline cell"
+++

## How close to a copy?

```cell softmax
title = "tiny"
input = { normal = 3.0, rows = 4, cols = 256, seed = 1 }
kernel = { choices = ["simple", "fast"], default = "simple" }
show = ["roofline", "check"]
roofline = { kernels = ["simple", "fast"] }
```
"#,
    )
    .unwrap();
    dir
}

fn roofline_harness(dir: &tempfile::TempDir) -> Harness<'static, KernelbookApp> {
    let mut opts = options(Some(dir.path().to_path_buf()));
    opts.lesson = Some("fixture-roofline".into());
    harness((1280.0, 900.0), opts)
}

#[test]
fn roofline_says_what_it_will_measure_then_draws_the_bars() {
    let dir = roofline_lesson();
    let mut h = roofline_harness(&dir);
    h.run();
    // Before measuring: nothing is timed, the view says what Measure will do and how long.
    assert!(
        h.state().measurements().is_empty(),
        "nothing measured on its own"
    );
    assert!(!labels_containing(&h, "Measure times softmax").is_empty());
    assert!(!labels_containing(&h, "warm-up and 20 timed runs per kernel").is_empty());
    let notes = labels_containing(&h, "measure this computer's processor");
    assert!(!notes.is_empty(), "the CPU is named as a CPU");
    // The cell's GPU engines say which kernel ran.
    let headers = labels_containing(&h, "simple kernel");
    assert!(
        headers.iter().any(|t| t.starts_with("wgpu")),
        "wgpu's column names its kernel: {headers:?}"
    );
    assert!(labels_containing(&h, "% of copy").is_empty());

    h.get_by_label("▶ Measure (M)").click();
    h.run();
    h.run();
    assert!(!h.state().is_measuring());
    // wgpu measures both kernels, the CPU its one implementation.
    assert_eq!(
        h.state().measurements().len(),
        3,
        "wgpu simple, wgpu fast, CPU"
    );
    let bars = labels_containing(&h, "% of copy");
    for label in ["simple: ", "fast: ", "CPU code: "] {
        assert!(
            bars.iter().any(|b| b.starts_with(label)),
            "a bar for {label}: {bars:?}"
        );
    }
    assert!(
        bars.iter()
            .all(|b| b.contains("GB/s") && (b.contains("µs") || b.contains(" ms")))
    );
    assert!(!labels_containing(&h, "100% = copy: ").is_empty());
    assert!(!labels_containing(&h, "measured in").is_empty());
    assert!(
        !labels_containing(&h, "software adapter, a CPU running Vulkan").is_empty(),
        "lavapipe is named as a CPU"
    );
    h.get_by_label("▶ Measure again (M)");
}

#[test]
fn the_kernel_choice_and_the_m_key() {
    let dir = roofline_lesson();
    let mut h = roofline_harness(&dir);
    h.run();
    // The kernel choice: a button per kernel.
    h.get_by_role_and_label(egui::accesskit::Role::Button, "fast")
        .click();
    h.run();
    assert!(
        labels_containing(&h, "fast kernel")
            .iter()
            .any(|t| t.starts_with("wgpu")),
        "the header follows the choice"
    );
    let cells = h.state().current_cells();
    assert_eq!(
        cells[0].request().unwrap().kernel,
        kernelbook::ops::KernelVariant::Fast
    );
    // M measures the step's roofline, in classroom mode too.
    let ctx = h.ctx.clone();
    h.state_mut().enter_classroom(&ctx);
    h.run();
    h.key_press(Key::M);
    h.run();
    assert_eq!(h.state().measurements().len(), 3);
    // A step without a roofline says so.
    let logits = h
        .state()
        .lessons()
        .iter()
        .position(|l| l.as_ref().is_ok_and(|l| l.id == "logits"))
        .unwrap();
    h.state_mut().go_to(logits, 0);
    h.run();
    assert!(!h.state_mut().measure_roofline());
    let toast = h.state().classroom.toast.clone().map(|t| t.text);
    assert_eq!(
        toast.as_deref(),
        Some("This step has no roofline to measure.")
    );
}

/// A lesson whose one step's prose is `prose`, written to a temporary folder.
fn prose_lesson(id: &str, prose: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(format!("{id}.md")),
        format!(
            "+++\nid = \"{id}\"\norder = 90\ntitle = \"{id}\"\nsummary = \"a lesson for a test\"\n+++\n\n## One step\n\n{prose}\n"
        ),
    )
    .unwrap();
    dir
}

/// A Markdown table of `rows` x `cols` cells.
fn markdown_table(rows: usize, cols: usize) -> String {
    let mut t = String::new();
    let row = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    t.push_str(&row((0..cols).map(|c| format!("col {c}")).collect()));
    t.push_str(&row((0..cols).map(|_| "---".to_string()).collect()));
    for r in 0..rows {
        t.push_str(&row((0..cols)
            .map(|c| format!("{}", (r + c) % 10))
            .collect()));
    }
    t
}

/// The median time of one frame's UI pass (layout and painting into shapes; no rendering).
fn median_frame(h: &mut Harness<'_, KernelbookApp>) -> std::time::Duration {
    let mut times: Vec<_> = (0..9)
        .map(|_| {
            let t = std::time::Instant::now();
            h.step();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

#[test]
fn a_huge_markdown_table_keeps_a_frame_under_16_ms() {
    let dir = prose_lesson(
        "big-table",
        &format!(
            "Before the table.\n\n{}\nAfter the table.",
            markdown_table(3000, 50)
        ),
    );
    let mut opts = options(Some(dir.path().to_path_buf()));
    opts.lesson = Some("big-table".into());
    opts.engines = vec![EngineKind::Cpu];
    let mut h = harness((1280.0, 800.0), opts);
    h.run();
    assert!(
        !labels_containing(&h, "Before the table.").is_empty(),
        "the lesson loaded: {:?}",
        h.state()
            .lessons()
            .iter()
            .filter_map(|l| l.as_ref().err())
            .collect::<Vec<_>>()
    );
    let frame = median_frame(&mut h);
    // For scale: the same step without the table.
    let plain = prose_lesson("plain", "Before the table.\n\nAfter the table.");
    let mut opts = options(Some(plain.path().to_path_buf()));
    opts.lesson = Some("plain".into());
    opts.engines = vec![EngineKind::Cpu];
    let mut p = harness((1280.0, 800.0), opts);
    p.run();
    eprintln!(
        "one frame's UI pass: {:.2} ms with a 3000 x 50 table, {:.2} ms without",
        frame.as_secs_f64() * 1e3,
        median_frame(&mut p).as_secs_f64() * 1e3
    );
    assert!(
        frame < std::time::Duration::from_millis(16),
        "one frame's UI pass took {frame:?}"
    );
    // The reader is told the table was cut, and the prose after it is still there.
    assert!(
        !labels_containing(&h, "3000 rows").is_empty(),
        "no note about the cut table"
    );
    assert!(!labels_containing(&h, "After the table.").is_empty());
}

/// A key pressed with `modifiers` and everything released within one frame, as a quick Ctrl+A
/// reaches egui from a real keyboard: the frame ends with no modifier held.
fn press_within_one_frame(
    h: &mut Harness<'_, KernelbookApp>,
    modifiers: egui::Modifiers,
    key: Key,
) {
    let key_event = |pressed| egui::Event::Key {
        key,
        pressed,
        modifiers,
        repeat: false,
        physical_key: None,
    };
    h.input_mut().events.extend([
        egui::Event::ModifiersChanged(modifiers),
        key_event(true),
        key_event(false),
        egui::Event::ModifiersChanged(egui::Modifiers::NONE),
    ]);
    h.step();
    h.run();
}

#[test]
fn shortcuts_ignore_modified_keys_and_text_fields() {
    use egui::Modifiers;
    let mut opts = options(Some(fixtures("lessons")));
    opts.lesson = Some("fixture-break-it".into());
    opts.engines = vec![EngineKind::Cpu];
    let mut h = harness((1280.0, 800.0), opts);
    h.run();
    let autoplay = |h: &Harness<'_, KernelbookApp>| h.state().classroom.autoplay.is_some();
    // Ctrl+A (select all), Alt+A, Cmd+A: none of them is the autoplay key.
    for modifiers in [
        Modifiers::CTRL,
        Modifiers::ALT,
        Modifiers::COMMAND,
        Modifiers::MAC_CMD,
    ] {
        h.key_press_modifiers(modifiers, Key::A);
        h.run();
        assert!(!autoplay(&h), "{modifiers:?}+A turned autoplay on");
        press_within_one_frame(&mut h, modifiers, Key::A);
        assert!(!autoplay(&h), "a quick {modifiers:?}+A turned autoplay on");
    }
    let position = h.state().position();
    press_within_one_frame(&mut h, Modifiers::CTRL, Key::ArrowRight);
    assert_eq!(
        h.state().position(),
        position,
        "Ctrl+Right is not 'next step'"
    );
    // A alone still is.
    h.key_press(Key::A);
    h.run();
    assert!(autoplay(&h), "A alone starts autoplay");
    h.key_press(Key::A);
    h.run();
    assert!(!autoplay(&h));
    // Typing in a text field (the .npy path of a cell) never fires a shortcut.
    h.query_all(
        By::new()
            .role(egui::accesskit::Role::TextInput)
            .label(".npy"),
    )
    .next()
    .expect("a cell has a .npy path field")
    .focus();
    h.run();
    for key in [
        Key::A,
        Key::S,
        Key::B,
        Key::F,
        Key::P,
        Key::Space,
        Key::ArrowRight,
    ] {
        h.key_press(key);
        h.run();
    }
    assert!(!autoplay(&h), "typing 'a' in a text field started autoplay");
    assert_eq!(h.state().position(), position, "typing moved the step");
}
