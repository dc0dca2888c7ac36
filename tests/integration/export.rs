//! `kernelbook export`: every step of every built-in lesson rendered headless to PNG at the
//! requested size, each a real picture carrying its provenance; figures as SVG; clear errors for
//! folders that cannot be made or written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kernelbook(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kernelbook"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn exports_one_png_per_step_of_every_lesson_with_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("new/folder"); // missing: created
    // An author's folder with one good and one broken lesson: the good one is exported with the
    // built-in ones, the broken one is reported with file:line:column and the exit code is 2.
    let broken = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken");
    let o = kernelbook(&[
        "export",
        "--out",
        out.to_str().unwrap(),
        "--size",
        "800x500",
        "--lessons",
        broken.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a broken lesson is not skipped silently: {t}"
    );
    assert!(
        t.contains("bad.md:12:1: cell 'softmax': 'temprature'"),
        "{t}"
    );
    assert!(t.contains("1 lesson file(s) failed to load"), "{t}");
    let mut lessons: Vec<_> = kernelbook::lesson::builtin()
        .into_iter()
        .map(|l| l.expect("built-in lessons load"))
        .collect();
    lessons.extend(
        kernelbook::lesson::load_dir(&broken)
            .into_iter()
            .filter_map(Result::ok),
    );
    assert!(lessons.iter().any(|l| l.id == "fixture-good"));
    let expected: usize = lessons.iter().map(|l| l.steps.len()).sum();
    let pngs = files(&out, "png");
    assert_eq!(pngs.len(), expected, "{}", text(&o));
    for lesson in &lessons {
        for step in 1..=lesson.steps.len() {
            let path = out.join(format!("{}-step{step:02}.png", lesson.id));
            let image = image::open(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .to_rgba8();
            assert_eq!(image.dimensions(), (800, 500), "{}", path.display());
            let first = *image.get_pixel(0, 0);
            let differing = image.pixels().filter(|p| **p != first).count();
            assert!(
                differing > 20_000,
                "{}: only {differing} drawn pixels",
                path.display()
            );
            let chunks = kernelbook::export::read_text_chunks(&path).unwrap();
            let get = |k: &str| {
                chunks
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, t)| t.clone())
                    .unwrap_or_else(|| panic!("{}: no {k} chunk", path.display()))
            };
            assert_eq!(get("kernelbook:lesson"), lesson.id);
            assert_eq!(get("kernelbook:step"), step.to_string());
            assert!(get("kernelbook:version").starts_with("kernelbook "));
            for key in [
                "kernelbook:parameters",
                "kernelbook:seed",
                "kernelbook:engines",
                "kernelbook:checks",
            ] {
                get(key);
            }
            let cells = lesson.steps[step - 1].cells().count();
            let json: serde_json::Value =
                serde_json::from_str(&get("kernelbook:provenance")).unwrap();
            assert_eq!(
                json["cells"].as_array().unwrap().len(),
                cells,
                "{}",
                path.display()
            );
            if cells > 0 {
                // "break it" cells fail on purpose: the chunk records the verdict either way.
                let checks = get("kernelbook:checks");
                assert!(
                    checks.contains("cpu: PASS") || checks.contains("cpu: FAIL"),
                    "{}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn figures_are_svg_for_every_plot_cell() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let o = kernelbook(&[
        "export",
        "--out",
        out.to_str().unwrap(),
        "--lesson",
        "softmax",
        "--size",
        "640x400",
        "--theme",
        "projector",
        "--figures",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let svgs = files(out, "svg");
    let lesson = kernelbook::lesson::builtin()
        .into_iter()
        .map(|l| l.unwrap())
        .find(|l| l.id == "softmax")
        .unwrap();
    for (i, step) in lesson.steps.iter().enumerate() {
        let plots = step
            .cells()
            .filter(|c| {
                c.show.iter().any(|v| {
                    !matches!(
                        v,
                        kernelbook::lesson::View::Table
                            | kernelbook::lesson::View::Check
                            | kernelbook::lesson::View::Roofline
                    )
                })
            })
            .count();
        let prefix = format!("softmax-step{:02}-cell", i + 1);
        let found = svgs
            .iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&prefix)
            })
            .count();
        assert!(
            found >= plots,
            "step {}: {found} SVGs for {plots} plot cells",
            i + 1
        );
    }
    for svg in &svgs {
        let s = std::fs::read_to_string(svg).unwrap();
        assert!(
            s.starts_with("<svg") && s.contains("</svg>"),
            "{}",
            svg.display()
        );
        let png = svg.with_extension("png");
        let image = image::open(&png).unwrap();
        assert_eq!(
            (image.width(), image.height()),
            kernelbook::export::figures::PRINT_SIZE
        );
    }
}

#[test]
fn folders_that_cannot_be_written_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let under_file = file.join("out");
    let o = kernelbook(&[
        "export",
        "--out",
        under_file.to_str().unwrap(),
        "--lesson",
        "logits",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("cannot create the folder") && t.contains("a-file/out"),
        "{t}"
    );
    assert!(!t.contains("panicked"), "{t}");

    let readonly = dir.path().join("readonly");
    std::fs::create_dir(&readonly).unwrap();
    let mut perms = std::fs::metadata(&readonly).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o555);
    std::fs::set_permissions(&readonly, perms).unwrap();
    if std::fs::write(readonly.join("probe"), b"").is_ok() {
        eprintln!(
            "skipped the read-only folder case: this user (root?) can write to a 0555 folder"
        );
    } else {
        let o = kernelbook(&[
            "export",
            "--out",
            readonly.to_str().unwrap(),
            "--lesson",
            "logits",
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("cannot write"), "{}", text(&o));
    }

    for (args, want) in [
        (vec!["--size", "100x10"], "between 320x240"),
        (vec!["--size", "wide"], "WIDTHxHEIGHT"),
        (vec!["--theme", "neon"], "unknown theme"),
        (vec!["--lesson", "nope"], "no lesson 'nope'"),
        (
            vec!["--lessons", "/nonexistent-lessons"],
            "--lessons /nonexistent-lessons: not a folder",
        ),
        (vec!["--scale", "0"], "scale"),
    ] {
        let out = dir.path().join("x");
        let mut all = vec!["export", "--out", out.to_str().unwrap()];
        all.extend(args);
        let o = kernelbook(&all);
        assert_eq!(o.status.code(), Some(2), "{all:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{all:?}: {}", text(&o));
    }
}

/// A lesson folder holding `text` as `NAME.md`.
fn lesson_folder(name: &str, text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("{name}.md")), text).unwrap();
    dir
}

#[test]
fn a_requested_broken_lesson_is_exit_2_with_file_line_column() {
    let broken = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = kernelbook(&[
        "export",
        "--out",
        out.to_str().unwrap(),
        "--lessons",
        broken.to_str().unwrap(),
        "--lesson",
        "bad",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("bad.md:12:1: "), "{t}");
    assert!(t.contains("lesson 'bad' failed to load"), "{t}");
    assert!(!out.exists() || files(&out, "png").is_empty());
}

const CHINESE_LESSON: &str = r#"+++
id = "zh-softmax"
order = 90
title = "第一课 Softmax 😀"
summary = "中文课程 🚀"
+++

## 第一步：温度 🌡️

把 logits 变成概率。日本語も。한국어도. Emoji: 😀🎉

```cell softmax
title = "温度 τ 🔥"
input = [2.0, 1.0, 0.1, -1.0]
temperature = { min = 0.05, max = 10.0, default = 1.0, log = true }
show = ["bars", "check"]
```
"#;

#[test]
fn lessons_in_chinese_with_emoji_export_without_a_panic() {
    let lessons = lesson_folder("zh", CHINESE_LESSON);
    let dir = tempfile::tempdir().unwrap();
    let o = kernelbook(&[
        "export",
        "--out",
        dir.path().to_str().unwrap(),
        "--lessons",
        lessons.path().to_str().unwrap(),
        "--lesson",
        "zh-softmax",
        "--size",
        "640x400",
        "--figures",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(!t.contains("panicked") && !t.contains("No glyph"), "{t}");
    let png = dir.path().join("zh-softmax-step01.png");
    let image = image::open(&png).unwrap().to_rgba8();
    assert_eq!(image.dimensions(), (640, 400));
    let chunks = kernelbook::export::read_text_chunks(&png).unwrap();
    assert!(
        chunks
            .iter()
            .any(|(k, v)| k == "Title" && v.contains("第一课")),
        "{chunks:?}"
    );
    assert!(!files(dir.path(), "svg").is_empty(), "figures written too");
}

/// Every file under `dir` is complete under its final name: PNGs decode, SVGs are closed, and no
/// temporary file is left.
fn assert_only_complete_files(dir: &Path, log: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".tmp"),
            "temporary file left: {name}\n{log}"
        );
        assert!(
            path.metadata().unwrap().len() > 0,
            "empty file {name}\n{log}"
        );
        match path.extension().and_then(|e| e.to_str()) {
            Some("png") => {
                image::open(&path)
                    .unwrap_or_else(|e| panic!("{name} is not a whole PNG: {e}\n{log}"));
            }
            Some("svg") => {
                let s = std::fs::read_to_string(&path).unwrap();
                assert!(s.trim_end().ends_with("</svg>"), "{name} is cut\n{log}");
            }
            _ => panic!("unexpected file {name}\n{log}"),
        }
    }
}

#[test]
fn a_signal_during_export_leaves_only_complete_files() {
    // Stopped at different moments (right as the first file appears, and later), with SIGTERM
    // and with Ctrl+C's SIGINT: exit 128 + the signal, and only whole files.
    for (signal, delay_ms) in [
        (signal_hook::consts::SIGTERM, 0),
        (signal_hook::consts::SIGTERM, 150),
        (signal_hook::consts::SIGINT, 40),
        (signal_hook::consts::SIGTERM, 600),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kernelbook"))
            .args([
                "export",
                "--lesson",
                "softmax",
                "--size",
                "640x400",
                "--figures",
                "--out",
            ])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while std::fs::read_dir(dir.path()).unwrap().next().is_none()
            && started.elapsed() < std::time::Duration::from_secs(60)
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal} {}", child.id());
        let o = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&o.stderr).into_owned();
        if o.status.success() {
            // The export finished before the signal arrived: nothing to check but the files.
            eprintln!("export finished before signal {signal} after {delay_ms} ms");
        } else {
            assert_eq!(
                o.status.code(),
                Some(128 + signal),
                "signal {signal}: {log}"
            );
            assert!(log.contains("stopped by signal"), "{log}");
        }
        assert_only_complete_files(dir.path(), &log);
    }
}

#[test]
fn the_largest_documented_size_renders_on_a_software_adapter() {
    // 8192x8192 used to time out on lavapipe (one 10 s wait for the whole frame); it is drawn in
    // tiles now.
    let lessons = lesson_folder(
        "big",
        "+++\nid = \"big\"\norder = 90\ntitle = \"Big\"\nsummary = \"one step\"\n+++\n\n## One step\n\nSome prose.\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let size = format!("{0}x{0}", kernelbook::export::MAX_EXPORT_SIDE);
    let o = kernelbook(&[
        "export",
        "--out",
        dir.path().to_str().unwrap(),
        "--lessons",
        lessons.path().to_str().unwrap(),
        "--lesson",
        "big",
        "--size",
        &size,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let image = image::open(dir.path().join("big-step01.png"))
        .unwrap()
        .to_rgba8();
    assert_eq!(
        image.dimensions(),
        (
            kernelbook::export::MAX_EXPORT_SIDE,
            kernelbook::export::MAX_EXPORT_SIDE
        )
    );
}

#[test]
fn tiles_draw_the_same_picture_as_one_pass() {
    use kernelbook::export::render::TiledRenderer;
    use kernelbook::ui::{AppOptions, KernelbookApp, Remembered};
    let required = std::env::var("KERNELBOOK_REQUIRE_WGPU").is_ok_and(|v| v == "1");
    let draw = |tile: Option<u32>| {
        let renderer = match TiledRenderer::new() {
            Ok(r) => r,
            Err(e) => {
                assert!(!required, "no adapter to render with: {e}");
                return None;
            }
        };
        let renderer = match tile {
            Some(px) => renderer.with_tile(px),
            None => renderer,
        };
        let app = KernelbookApp::new(
            &egui::Context::default(),
            AppOptions {
                lesson: Some("softmax".into()),
                engines: vec![kernelbook::engine::EngineKind::Cpu],
                inline_compute: true,
                hide_timings: true,
                ..AppOptions::default()
            },
            Remembered::default(),
        );
        let mut h = egui_kittest::Harness::builder()
            .with_size(egui::vec2(1000.0, 700.0))
            .with_pixels_per_point(1.5)
            .renderer(renderer)
            .build_ui_state(|ui, app: &mut KernelbookApp| app.frame_ui(ui), app);
        h.run();
        Some(h.render().expect("renders"))
    };
    let Some(whole) = draw(None) else {
        eprintln!("skipped: no wgpu adapter");
        return;
    };
    // 1500x1050 pixels in tiles of 256: seams in both directions, a ragged last row and column.
    let tiled = draw(Some(256)).unwrap();
    assert_eq!(whole.dimensions(), (1500, 1050));
    assert_eq!(tiled.dimensions(), whole.dimensions());
    let differing = whole
        .pixels()
        .zip(tiled.pixels())
        .filter(|(a, b)| a.0.iter().zip(b.0).any(|(x, y)| x.abs_diff(y) > 2))
        .count();
    eprintln!("{differing} of {} pixels differ", whole.len() / 4);
    assert!(
        differing * 10_000 < (whole.len() / 4),
        "{differing} pixels differ between the tiled and the whole picture"
    );
}
