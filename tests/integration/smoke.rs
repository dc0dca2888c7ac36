//! The real binary starts under Xvfb and renders a non-blank first frame: it opens lesson 1, waits for
//! the engines' results, saves a screenshot of the window (`--screenshot`, a hidden flag for this
//! test) and quits. A damaged remembered state (a zoom of 0 or 1000, eframe's old file) still
//! starts, with one warning line; `--frame-stats` reports once. Needs `xvfb-run` (scripts/test.sh
//! installs it and sets KERNELBOOK_REQUIRE_DISPLAY=1 so a missing Xvfb fails instead of skipping).

use std::process::Command;
use std::sync::Mutex;

/// `xvfb-run -a` picks a free display number, but two started at once can pick the same one: the
/// tests here take turns.
static XVFB: Mutex<()> = Mutex::new(());

#[test]
fn binary_renders_a_first_frame_under_xvfb() {
    let required = std::env::var("KERNELBOOK_REQUIRE_DISPLAY").is_ok_and(|v| v == "1");
    let has_xvfb = Command::new("sh")
        .args(["-c", "command -v xvfb-run"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_xvfb {
        assert!(
            !required,
            "xvfb-run is required (KERNELBOOK_REQUIRE_DISPLAY=1) but not installed"
        );
        eprintln!("skipped: xvfb-run not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("first-frame.png");
    let _turn = XVFB.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1280x800x24"])
        .arg(env!("CARGO_BIN_EXE_kernelbook"))
        .arg("--screenshot")
        .arg(&shot)
        .args(["--lesson", "logits"])
        // Keep the remembered state of this run out of the user's data folder.
        .env("XDG_DATA_HOME", dir.path())
        .env("HOME", dir.path())
        .output()
        .expect("xvfb-run starts");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the app exited with {:?}:\n{log}",
        out.status
    );
    assert!(!log.contains("panicked"), "{log}");
    let img = image::open(&shot)
        .unwrap_or_else(|e| panic!("no screenshot ({e}):\n{log}"))
        .to_rgba8();
    assert!(
        img.width() >= 800 && img.height() >= 500,
        "{}x{}",
        img.width(),
        img.height()
    );
    let first = *img.get_pixel(0, 0);
    let differing = img.pixels().filter(|p| **p != first).count();
    let share = differing as f64 / (img.width() * img.height()) as f64;
    assert!(
        share > 0.05,
        "the first frame is nearly blank: {:.1}% of pixels differ from the corner",
        share * 100.0
    );
}

/// Whether `xvfb-run` is here (a failure when KERNELBOOK_REQUIRE_DISPLAY=1 and it is not).
fn have_xvfb() -> bool {
    let required = std::env::var("KERNELBOOK_REQUIRE_DISPLAY").is_ok_and(|v| v == "1");
    let has_xvfb = Command::new("sh")
        .args(["-c", "command -v xvfb-run"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_xvfb || !required,
        "xvfb-run is required (KERNELBOOK_REQUIRE_DISPLAY=1) but not installed"
    );
    if !has_xvfb {
        eprintln!("skipped: xvfb-run not installed");
    }
    has_xvfb
}

/// The app under Xvfb with its data folder in `home`.
fn app_under_xvfb(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    let _turn = XVFB.lock().unwrap_or_else(|e| e.into_inner());
    Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1280x800x24"])
        .arg(env!("CARGO_BIN_EXE_kernelbook"))
        .args(args)
        .env("XDG_DATA_HOME", home)
        .env("HOME", home)
        .output()
        .expect("xvfb-run starts")
}

#[test]
fn a_damaged_remembered_state_starts_with_defaults_and_one_warning() {
    if !have_xvfb() {
        return;
    }
    // Ours with a zoom no screen can use, and eframe's old file (its egui memory with zoom 0
    // crashed every start with exit code 101 until the file was deleted).
    let states = [
        "(lesson_id: Some(\"softmax\"), zoom_factor: 0.0)",
        "(zoom_factor: 1000.0, window_size: Some((1e9, -3.0)))",
        "{\n  \"egui\": \"(options:(zoom_factor:0.0))\",\n  \"kernelbook\": \"(lesson_id:Some(\\\"rope\\\"),step:1)\",\n}",
        "\u{1b}[2J not a state file at all",
    ];
    for state in states {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kernelbook/app.ron");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, state).unwrap();
        let shot = dir.path().join("shot.png");
        let out = app_under_xvfb(dir.path(), &["--screenshot", shot.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{state}: exit {:?}\n{err}",
            out.status
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(shot.is_file(), "{state}: no screenshot\n{err}");
        let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
        assert!(
            warnings.len() <= 1,
            "{state}: one line at most: {warnings:?}"
        );
        if !state.contains("\"egui\"") {
            assert_eq!(
                warnings.len(),
                1,
                "{state}: a warning says what was reset\n{err}"
            );
        }
        // What is saved on exit is valid again.
        let text = std::fs::read_to_string(&file).unwrap();
        let (saved, warning) = kernelbook::ui::state::load(&file);
        assert_eq!(warning, None, "{text}");
        assert_eq!(saved.zoom_factor, 1.0, "{text}");
    }
}

#[test]
fn frame_stats_reports_once() {
    if !have_xvfb() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = app_under_xvfb(dir.path(), &["--frame-stats", "12", "--lesson", "softmax"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = stdout
        .lines()
        .filter(|l| l.starts_with("frame time over"))
        .count();
    assert_eq!(reports, 1, "{stdout}");
}
