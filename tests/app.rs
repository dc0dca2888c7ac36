//! The notebook app, headless (egui_kittest with the wgpu renderer on the software Vulkan adapter):
//! every step of every built-in lesson is rendered and compared with its snapshot; a slider changes
//! the results and the check readout; a malformed lesson shows an error card while the others work;
//! the keyboard steps through a lesson.
//!
//! Snapshots live in tests/snapshots/; regenerate with `UPDATE_SNAPSHOTS=1 scripts/test.sh` and review
//! the images.

use egui::Key;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use kernelbook::engine::EngineKind;
use kernelbook::ui::{AppOptions, KernelbookApp, Remembered};
use std::path::PathBuf;

fn fixtures(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
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

fn labels_containing(h: &Harness<'_, KernelbookApp>, text: &str) -> Vec<String> {
    h.query_all_by_label_contains(text).filter_map(|n| n.accesskit_node().label()).collect()
}

/// One test walks every step of every built-in lesson, so a new lesson is covered the day it lands.
#[test]
fn every_step_of_every_lesson_renders() {
    for (w, h) in [(1280.0, 800.0), (1920.0, 1080.0)] {
        let mut harness = harness((w, h), options(None));
        let lessons: Vec<(usize, String, usize)> = harness
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
        for (index, id, steps) in lessons {
            for step in 0..steps {
                harness.state_mut().go_to(index, step);
                harness.run();
                assert_eq!(harness.state().position(), (index, step));
                // Every cell on the step has its results (no engine left "computing").
                assert!(!harness.state().is_computing(), "{id} step {step}");
                assert!(labels_containing(&harness, "computing on every engine").is_empty(), "{id} step {step}");
                harness.snapshot(format!("{id}-step{:02}-{}x{}", step + 1, w as u32, h as u32));
            }
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
    assert!(!labels_containing(&h, "PASS").is_empty(), "check passes at T = 4");
    assert!(labels_containing(&h, "FAIL").is_empty());

    // Lower T with the keyboard until 12 / T passes 11.09: e^z overflows f16 and the row is NaN.
    h.get_by_label("temperature").focus();
    h.run();
    for _ in 0..60 {
        h.key_press(Key::ArrowLeft);
        h.run();
    }
    let after = labels_containing(&h, "y = [");
    assert_ne!(before, after, "the displayed result changed");
    let fails = labels_containing(&h, "FAIL");
    assert!(!fails.is_empty(), "the check reports the overflow: {after:?}");
    assert!(fails.iter().any(|f| f.contains("NaN")), "and counts the NaNs: {fails:?}");
    assert!(after.iter().any(|v| v.contains("NaN")), "{after:?}");
}

#[test]
fn malformed_lesson_shows_an_error_card_and_the_rest_works() {
    let mut h = harness((1280.0, 800.0), options(Some(fixtures("broken"))));
    h.run();
    let cards = labels_containing(&h, "bad.md");
    assert!(!cards.is_empty(), "an error card names the file");
    assert!(cards.iter().any(|c| c.contains("temprature")), "and the problem: {cards:?}");
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
    assert_eq!(h.state().position(), (lesson, n - 1), "stays on the last step");
    h.key_press(Key::Home);
    h.run();
    assert_eq!(h.state().position(), (lesson, 0));
    assert!(!labels_containing(&h, "step 1 of").is_empty(), "progress indicator");
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
