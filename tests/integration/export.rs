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
    let o = kernelbook(&[
        "export",
        "--out",
        out.to_str().unwrap(),
        "--size",
        "800x500",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let lessons: Vec<_> = kernelbook::lesson::builtin()
        .into_iter()
        .map(|l| l.expect("built-in lessons load"))
        .collect();
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
