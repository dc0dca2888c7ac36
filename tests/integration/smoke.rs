//! The real binary starts under Xvfb and renders a non-blank first frame: it opens lesson 1, waits for
//! the engines' results, saves a screenshot of the window (`--screenshot`, a hidden flag for this
//! test) and quits. Needs `xvfb-run` (scripts/test.sh installs it and sets
//! KERNELBOOK_REQUIRE_DISPLAY=1 so a missing Xvfb fails instead of skipping).

use std::process::Command;

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
