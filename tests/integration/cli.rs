//! The `kernelbook` binary end to end: backends, check, run with .npy files, and the one-line errors
//! (exit code 2) for bad input.

use kernelbook::dtype::DType;
use std::path::Path;
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

fn write_npy(path: &Path, shape: &[usize], values: &[f32]) {
    kernelbook::npy::write(path, shape, values, DType::F32).unwrap();
}

#[test]
fn backends_lists_every_engine_and_explains_absence() {
    let o = kernelbook(&["backends"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    for name in ["cuda", "wgpu", "cpu"] {
        assert!(
            t.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{t}"
        );
    }
    let o = kernelbook(&["backends", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 3);
    for b in list {
        // Every engine is either available with a device or absent with a reason.
        let available = b["available"].as_bool().unwrap();
        assert!(
            if available {
                b["device"].is_string()
            } else {
                b["reason"].as_str().is_some_and(|r| !r.is_empty())
            },
            "{b}"
        );
    }
}

#[test]
fn check_on_cpu_passes_and_reports_json() {
    let o = kernelbook(&["check", "--engine", "cpu", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["failures"], 0);
    let results = v["results"].as_array().unwrap();
    assert!(results.len() > 100, "{} results", results.len());
    assert!(
        results
            .iter()
            .all(|r| r["engine"] == "cpu" && r["status"] == "pass")
    );
    // The naive softmax cases are expected to break, and do.
    assert!(
        results
            .iter()
            .any(|r| r["expect"] == "breaks" && r["report"]["nan_got"].as_u64() > Some(0))
    );
}

#[test]
fn check_reports_absent_engines_as_skipped() {
    let o = kernelbook(&["check", "--engine", "cuda"]);
    let t = text(&o);
    if t.contains("skipped:") {
        assert!(
            o.status.success(),
            "an absent engine is skipped, not failed:\n{t}"
        );
        assert!(t.contains("0 passed, 0 failed"), "{t}");
    }
}

#[test]
fn run_softmax_round_trips_npy() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    write_npy(&x, &[2, 3], &[1.0, 2.0, 3.0, 0.0, 0.0, 0.0]);
    let o = kernelbook(&[
        "run",
        "softmax",
        "--input",
        &format!("x={}", x.display()),
        "--param",
        "temperature=1",
        "--engine",
        "cpu",
        "--output",
        y.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("PASS"), "{}", text(&o));
    let out = kernelbook::npy::read(&y).unwrap();
    assert_eq!(out.shape, vec![2, 3]);
    let v = out.to_f32();
    let want = [
        0.09003057f32,
        0.24472847,
        0.66524096,
        1.0 / 3.0,
        1.0 / 3.0,
        1.0 / 3.0,
    ];
    for (a, b) in v.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{v:?}");
    }
    // f16 results are written as float16; the reference as float64.
    let o = kernelbook(&[
        "run",
        "softmax",
        "-i",
        x.to_str().unwrap(),
        "-p",
        "dtype=f16",
        "-o",
        y.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(kernelbook::npy::read(&y).unwrap().descr, "<f2");
    let o = kernelbook(&[
        "run",
        "logit",
        "-i",
        x.to_str().unwrap(),
        "--engine",
        "reference",
        "-o",
        y.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(kernelbook::npy::read(&y).unwrap().descr, "<f8");
}

#[test]
fn bad_input_gets_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    write_npy(&x, &[1, 2], &[1.0, 2.0]);
    let junk = dir.path().join("junk.npy");
    std::fs::write(&junk, b"definitely not numpy").unwrap();
    let xs = x.to_str().unwrap();
    let ys = y.to_str().unwrap();
    let w_input = format!("w={xs}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "softmax", "-i", xs, "-p", "temperature=0", "-o", ys],
            "must be > 0",
        ),
        (
            vec!["run", "softmax", "-i", xs, "-p", "temperature=-2", "-o", ys],
            "must be > 0",
        ),
        (
            vec![
                "run",
                "softmax",
                "-i",
                xs,
                "-p",
                "temperature=nan",
                "-o",
                ys,
            ],
            "finite",
        ),
        (
            vec!["run", "softmax", "-i", xs, "-p", "colour=red", "-o", ys],
            "no parameter 'colour'",
        ),
        (
            vec!["run", "softmax", "-i", xs, "-p", "temperature", "-o", ys],
            "not NAME=VALUE",
        ),
        (
            vec!["run", "softmaxx", "-i", xs, "-o", ys],
            "unknown op 'softmaxx'",
        ),
        (
            vec!["run", "softmax", "-i", junk.to_str().unwrap(), "-o", ys],
            "not a valid .npy",
        ),
        (
            vec!["run", "softmax", "-i", "/nonexistent/x.npy", "-o", ys],
            "cannot open",
        ),
        (
            vec!["run", "softmax", "-i", xs, "--engine", "tpu", "-o", ys],
            "unknown engine 'tpu'",
        ),
        (
            vec!["run", "softmax", "-i", &w_input, "-o", ys],
            "no input 'w'",
        ),
        (vec!["check", "--engine", "tpu"], "unknown engine 'tpu'"),
    ];
    for (args, want) in cases {
        let o = kernelbook(&args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains(want), "{args:?}: expected '{want}' in:\n{t}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr).trim().lines().count(),
            1,
            "{args:?}: one line:\n{t}"
        );
        assert!(!t.contains("panicked"), "{t}");
    }
}

#[test]
fn nan_inputs_propagate_without_crashing() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    write_npy(
        &x,
        &[2, 2],
        &[f32::NAN, 1.0, f32::NEG_INFINITY, f32::NEG_INFINITY],
    );
    let o = kernelbook(&[
        "run",
        "softmax",
        "-i",
        x.to_str().unwrap(),
        "-o",
        y.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("all -inf") && t.contains("NaN input"), "{t}");
    assert!(
        kernelbook::npy::read(&y)
            .unwrap()
            .to_f32()
            .iter()
            .all(|v| v.is_nan())
    );
}
