//! Classroom mode, the presenter view, sweeps, autoplay and the screenshot key, driven headless
//! (egui_kittest with the wgpu renderer on the software Vulkan adapter) as a teacher would: keys
//! from a keyboard or a clicker (PageUp/PageDown).

use egui::Key;
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{By, NodeT, Queryable};
use kernelbook::engine::EngineKind;
use kernelbook::lesson::ParamValue;
use kernelbook::ui::{AppOptions, KernelbookApp, Remembered};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn harness(opts: AppOptions) -> Harness<'static, KernelbookApp> {
    Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .wgpu()
        .build_eframe(move |cc| KernelbookApp::new(&cc.egui_ctx, opts, Remembered::default()))
}

fn options(lesson: &str) -> AppOptions {
    AppOptions {
        lesson: Some(lesson.into()),
        engines: vec![EngineKind::Cpu],
        inline_compute: true,
        hide_timings: true,
        ..Default::default()
    }
}

fn texts_containing(h: &Harness<'_, KernelbookApp>, text: &str) -> Vec<String> {
    let owned = text.to_string();
    let by = By::new().include_labels().predicate(move |n| {
        n.label()
            .filter(|l| !l.is_empty())
            .or_else(|| n.value())
            .is_some_and(|t| t.contains(&owned))
    });
    h.query_all(by)
        .filter_map(|n| {
            let n = n.accesskit_node();
            n.label().filter(|l| !l.is_empty()).or_else(|| n.value())
        })
        .collect()
}

fn press(h: &mut Harness<'_, KernelbookApp>, key: Key) {
    h.key_press(key);
    h.run();
}

#[test]
fn presentation_keys_step_blank_and_leave() {
    let mut h = harness(options("softmax"));
    h.run();
    assert_eq!(h.state().theme_name(), "light");
    press(&mut h, Key::F5);
    assert!(h.state().classroom.active, "F5 starts classroom mode");
    assert_eq!(h.state().theme_name(), "projector");
    assert!(
        texts_containing(&h, "Lessons").is_empty(),
        "no lesson list in front of the class"
    );
    let step = |h: &Harness<'_, KernelbookApp>| h.state().position().1;
    assert_eq!(step(&h), 0);
    for (key, want) in [
        (Key::ArrowRight, 1),
        (Key::Space, 2),
        (Key::PageDown, 3), // a clicker's "next"
        (Key::PageUp, 2),   // a clicker's "back"
        (Key::ArrowLeft, 1),
        (Key::End, 8),
        (Key::Home, 0),
    ] {
        press(&mut h, key);
        assert_eq!(step(&h), want, "after {key:?}");
    }
    // B blanks the screen: the picture is black and nothing can be read.
    press(&mut h, Key::B);
    assert!(h.state().is_blank());
    let image = h.render().expect("renders");
    let black = image.pixels().filter(|p| p.0[..3] == [0, 0, 0]).count();
    assert!(
        black as f64 > 0.99 * (image.width() * image.height()) as f64,
        "blank screen is black ({black} black pixels)"
    );
    assert!(texts_containing(&h, "Softmax").is_empty());
    // Next does not advance while blank: it brings the picture back, as presentation software does.
    press(&mut h, Key::PageDown);
    assert!(!h.state().is_blank());
    assert_eq!(step(&h), 0);
    press(&mut h, Key::Period);
    assert!(h.state().is_blank(), ". blanks too");
    press(&mut h, Key::B);
    assert!(!h.state().is_blank(), "B again restores");
    press(&mut h, Key::Escape);
    assert!(!h.state().classroom.active, "Esc leaves");
    assert_eq!(h.state().theme_name(), "light", "the earlier theme is back");
    assert!(!texts_containing(&h, "Lessons").is_empty());
}

#[test]
fn presenter_view_shows_the_notes_and_the_next_step() {
    let mut opts = options("softmax");
    opts.classroom = true;
    let mut h = harness(opts);
    h.run();
    press(&mut h, Key::P);
    assert!(h.state().classroom.presenter);
    let info = h.state().presenter_info();
    assert_eq!((info.step, info.steps), (1, 9));
    assert!(!info.notes.is_empty(), "step 1 of softmax has notes");
    let next = info.next.clone().expect("a next step");
    // The notes and the next step's title are on screen (the presenter window), the notes block
    // of the audience view is not.
    let first_note_words: String = info.notes[0]
        .split_whitespace()
        .take(4)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        !texts_containing(&h, &first_note_words).is_empty(),
        "presenter view shows '{first_note_words}'"
    );
    assert!(!texts_containing(&h, &format!("Next: {}", next.0)).is_empty());
    assert!(texts_containing(&h, "Notes for the teacher").is_empty());
    assert!(info.clock.contains(':'));
    press(&mut h, Key::P);
    assert!(!h.state().classroom.presenter);
}

#[test]
fn the_sweep_key_moves_the_slider_and_results_follow() {
    let mut h = harness(options("softmax"));
    h.run();
    let lesson = h.state().position().0;
    h.state_mut().go_to(lesson, 2); // "Temperature", which declares a sweep
    h.run();
    let temperature = |h: &Harness<'_, KernelbookApp>| match h.state().current_cells()[0].values[0]
    {
        ParamValue::Float(t) => t,
        ref v => panic!("temperature is {v:?}"),
    };
    assert_eq!(temperature(&h), 1.0);
    press(&mut h, Key::S);
    assert!(h.state().is_sweeping());
    std::thread::sleep(Duration::from_millis(200));
    h.step();
    h.step();
    let t = temperature(&h);
    assert!(
        t > 5.0 && t <= 10.0,
        "the sweep starts at 10 and falls: {t}"
    );
    let result = h.state().current_cells()[0]
        .result
        .clone()
        .expect("a result");
    assert!(result.request.op.describe().contains(&format!("T={t}")));
    press(&mut h, Key::S);
    assert!(!h.state().is_sweeping(), "S stops it");
    // A step without a sweep says so instead of doing nothing.
    h.state_mut().go_to(lesson, 0);
    h.run();
    press(&mut h, Key::S);
    assert!(!h.state().is_sweeping());
    assert!(!texts_containing(&h, "no sweep").is_empty());
}

#[test]
fn autoplay_moves_on_when_its_time_is_up() {
    let mut opts = options("softmax");
    opts.autoplay = Some(30.0);
    let mut h = harness(opts);
    h.run();
    assert_eq!(h.state().position().1, 0);
    h.state_mut().classroom.step_shown = Instant::now() - Duration::from_secs(31);
    h.step();
    assert_eq!(h.state().position().1, 1, "30 s later the next step shows");
    press(&mut h, Key::A);
    assert!(h.state().classroom.autoplay.is_none(), "A stops autoplay");
}

#[test]
fn the_screenshot_key_saves_a_png_with_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let folder: PathBuf = dir.path().join("shots");
    let mut opts = options("softmax");
    opts.screenshot_dir = Some(folder.clone());
    let mut h = harness(opts);
    h.run();
    press(&mut h, Key::F12);
    h.run();
    let files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .expect("the folder was created")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let png = &files[0];
    assert!(png.extension().is_some_and(|e| e == "png"));
    let image = image::open(png).unwrap().to_rgba8();
    assert_eq!(image.dimensions(), (1280, 800));
    let chunks = kernelbook::export::read_text_chunks(png).unwrap();
    let get = |k: &str| {
        chunks
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, t)| t.clone())
    };
    assert_eq!(get("kernelbook:lesson").as_deref(), Some("softmax"));
    assert_eq!(get("kernelbook:step").as_deref(), Some("1"));
    assert!(get("kernelbook:checks").is_some_and(|c| c.contains("cpu: PASS")));
    assert!(
        !texts_containing(&h, "Screenshot saved").is_empty(),
        "a toast names the file"
    );
}

#[test]
fn an_unwritable_screenshot_folder_is_a_toast_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let mut opts = options("softmax");
    opts.screenshot_dir = Some(file.join("shots"));
    let mut h = harness(opts);
    h.run();
    press(&mut h, Key::F12);
    h.run();
    let toast = texts_containing(&h, "Screenshot not saved");
    assert!(
        toast.iter().any(|t| t.contains("cannot create")),
        "{toast:?}"
    );
}

/// M measures the roofline of lesson 2's fast-kernel step in front of the class: the CPU engine
/// times its one implementation at the CPU's size, and the bar says it measured a CPU.
#[test]
fn the_m_key_measures_the_roofline() {
    let mut h = harness(options("softmax"));
    h.run();
    press(&mut h, Key::F5);
    let lesson = h.state().position().0;
    let step = h
        .state()
        .lessons()
        .get(lesson)
        .and_then(|l| l.as_ref().ok())
        .and_then(|l| {
            l.steps
                .iter()
                .position(|s| s.title.starts_with("The fast kernel"))
        })
        .expect("lesson 2 has the fast-kernel step");
    h.state_mut().go_to(lesson, step);
    h.run();
    assert!(h.state().measurements().is_empty());
    assert!(!texts_containing(&h, "Measure times softmax").is_empty());
    press(&mut h, Key::M);
    h.run();
    assert!(!h.state().is_measuring());
    let measured: Vec<_> = h.state().measurements().iter().collect();
    assert_eq!(measured.len(), 1, "the CPU's one implementation");
    let (key, m) = measured[0];
    assert_eq!(key.shape, vec![32, 32000], "the CPU gets the small size");
    match m {
        kernelbook::ui::roofline::Measurement::Done(d) => {
            let r = d.result.as_ref().expect("the CPU measures");
            assert!(r.median_us > 0.0 && r.gb_per_s > 0.0, "{r:?}");
            assert!(r.percent_of_copy.is_some(), "{r:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!texts_containing(&h, "CPU code: ").is_empty());
    assert!(!texts_containing(&h, "not a GPU").is_empty());
}

/// Small screens: in classroom mode on a projector's common 1280x800, and in the notebook on an old
/// 1024x768 one, nothing on any step runs off the right edge (a slider placed at the end of a row,
/// a table with a column per engine, a heatmap and its colour scale, a long y-axis title). The
/// kernel source is the one exception: it scrolls sideways inside its own view, so its text (one
/// multi-line label) may be wider than the screen.
#[test]
fn no_step_runs_off_the_right_edge_of_a_small_projector() {
    let mut overflowing = Vec::new();
    for (classroom, width, height) in [(true, 1280.0, 800.0), (false, 1024.0, 768.0)] {
        let mut opts = options("logits");
        opts.engines = EngineKind::ALL.to_vec();
        opts.classroom = classroom;
        let mut h = Harness::builder()
            .with_size(egui::vec2(width, height))
            .wgpu()
            .build_eframe(move |cc| KernelbookApp::new(&cc.egui_ctx, opts, Remembered::default()));
        h.run();
        let mode = if classroom { "classroom" } else { "notebook" };
        let lessons: Vec<(usize, String, usize)> = h
            .state()
            .lessons()
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.as_ref().ok().map(|l| (i, l.id.clone(), l.steps.len())))
            .collect();
        assert!(lessons.len() >= 5);
        for (index, id, steps) in lessons {
            for step in 0..steps {
                h.state_mut().go_to(index, step);
                h.run();
                let by = By::new().include_labels().predicate(|_| true);
                for node in h.query_all(by) {
                    // Physical pixels; the harness draws at 1 pixel per point. The root has no box.
                    let Some(rect) = node.accesskit_node().bounding_box() else {
                        continue;
                    };
                    let text = {
                        let n = node.accesskit_node();
                        n.label()
                            .filter(|l| !l.is_empty())
                            .or_else(|| n.value())
                            .unwrap_or_default()
                    };
                    let kernel_source = text.contains('\n');
                    // A text field's text runs scroll inside the field; its box is what must fit.
                    let inside_a_field = node.accesskit_node().role() == Role::TextRun;
                    let edge = width as f64;
                    if rect.x1 > edge + 0.5 && rect.x0 < edge && !kernel_source && !inside_a_field {
                        overflowing.push(format!(
                            "{mode} {width}x{height}, {id} step {}: {:?} '{}' ends at x = {:.0}",
                            step + 1,
                            node.accesskit_node().role(),
                            text.chars().take(40).collect::<String>(),
                            rect.x1
                        ));
                    }
                }
            }
        }
    }
    assert!(overflowing.is_empty(), "{}", overflowing.join("\n"));
}

/// What the room sees on a 1280x800 projector: the words on the left, the cell on the right with
/// its controls, one short check line per engine and the chart (reviewed snapshot).
#[test]
fn classroom_step_matches_its_snapshot() {
    let mut opts = options("gumbel-softmax");
    opts.engines = EngineKind::ALL.to_vec();
    opts.classroom = true;
    let mut h = harness(opts);
    h.run();
    let index = h.state().position().0;
    h.state_mut().go_to(index, 6);
    h.run();
    assert_eq!(h.state().position().1, 6);
    h.snapshot("classroom-gumbel-softmax-step07");
}
