//! The `kernelbook` binary end to end: backends, check, run with .npy files, and the one-line errors
//! (exit code 2) for bad input.

use kernelbook::dtype::DType;
use kernelbook::engine::EngineKind;
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
fn an_engine_that_cannot_run_here_is_exit_code_3_with_the_reason() {
    // With CUDA absent (as on a machine without an NVIDIA driver), asking for it explicitly is
    // exit code 3 with the reason, never "0 passed, 0 failed" and success.
    let registry = kernelbook::engine::Registry::probe_only(&[EngineKind::Cuda]);
    let Err(reason) = registry.get(EngineKind::Cuda) else {
        eprintln!("skipped: CUDA is available here");
        return;
    };
    let reason = reason.to_string();
    let o = kernelbook(&["check", "--engine", "cuda"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(t.contains("cannot run here"), "{t}");
    assert!(!t.contains("0 passed, 0 failed"), "{t}");
    assert!(
        reason.contains(t.lines().last().unwrap().rsplit(": ").next().unwrap()),
        "the reason: {t}"
    );
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    write_npy(&x, &[1, 3], &[1.0, 2.0, 3.0]);
    let o = kernelbook(&[
        "run",
        "softmax",
        "-i",
        x.to_str().unwrap(),
        "--engine",
        "cuda",
        "-o",
        y.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(!y.exists(), "nothing written");
    let o = kernelbook(&["bench", "--engine", "cuda", "--op", "softmax"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}

#[test]
fn check_with_all_engines_names_each_skipped_engine_in_its_summary() {
    let registry = kernelbook::engine::Registry::probe_only(&[EngineKind::Cuda]);
    if registry.get(EngineKind::Cuda).is_ok() {
        eprintln!("skipped: CUDA is available here");
        return;
    }
    // cpu and the absent cuda: the cpu cases run, cuda is skipped and named; asked for by name,
    // cuda's absence is exit code 3.
    let o = kernelbook(&["check", "--engine", "cpu,cuda"]);
    let t = text(&o);
    let summary = t
        .lines()
        .find(|l| l.contains(" passed, "))
        .unwrap_or_else(|| panic!("no summary:\n{t}"));
    assert!(summary.contains("1 engine skipped (cuda)"), "{summary}");
    assert!(!summary.starts_with("0 passed"), "{summary}");
    assert_eq!(o.status.code(), Some(3), "{t}");
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

/// Run the binary with its standard output going to `stdout`; standard error captured.
fn kernelbook_to(args: &[&str], stdout: std::process::Stdio) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kernelbook"))
        .args(args)
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("the binary runs")
}

#[test]
fn a_closed_pipe_ends_quietly_as_ls_does() {
    use std::os::unix::process::ExitStatusExt;
    for args in [
        vec!["ops"],
        vec!["backends"],
        vec!["backends", "--json"],
        vec!["check", "--engine", "cpu", "--json"],
    ] {
        // The reader is gone before the first byte is written (`kernelbook ops | head -0`).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = kernelbook_to(&args, writer.into());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("error"),
            "{args:?}: {err}"
        );
        assert_eq!(
            o.status.signal(),
            Some(signal_hook::consts::SIGPIPE),
            "{args:?}: ended by SIGPIPE, as `ls | head` is: {:?} {err}",
            o.status
        );
    }
    // Through a shell, as a user types it: the first line, nothing on standard error.
    let script = format!("'{}' ops | head -1", env!("CARGO_BIN_EXE_kernelbook"));
    let o = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
}

#[test]
fn a_full_device_is_an_error_naming_the_cause() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipped: no /dev/full");
        return;
    }
    for args in [vec!["backends"], vec!["ops"], vec!["backends", "--json"]] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = kernelbook_to(&args, full.into());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("cannot write to standard output: No space left on device"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn wgpu_runs_print_no_runtime_dir_warning() {
    let o = Command::new(env!("CARGO_BIN_EXE_kernelbook"))
        .arg("backends")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
}

#[test]
fn run_exits_1_when_its_own_check_fails() {
    // The naive f16 softmax of 24 overflows e^x: NaN, a FAIL against the reference.
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    write_npy(&x, &[1, 3], &[12.0, 0.0, -1.0]);
    let o = kernelbook(&[
        "run",
        "softmax",
        "-i",
        x.to_str().unwrap(),
        "-p",
        "stable=false",
        "-p",
        "dtype=f16",
        "-p",
        "temperature=0.5",
        "-o",
        y.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert!(t.contains("FAIL"), "{t}");
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(y.exists(), "the result is written either way");
}

#[test]
fn run_writes_every_output_or_none_and_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    write_npy(&x, &[2, 4], &[1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 1.0]);
    // A folder where the auxiliary output (the soft sample) should go.
    let aux = dir.path().join("y.soft.npy");
    std::fs::create_dir(&aux).unwrap();
    let args = [
        "run",
        "gumbel_softmax",
        "-i",
        x.to_str().unwrap(),
        "-p",
        "hard=true",
        "-o",
        y.to_str().unwrap(),
    ];
    let o = kernelbook(&args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("y.soft.npy") && t.contains("a folder has this name"),
        "{t}"
    );
    assert!(!y.exists(), "the main output is not left behind: {t}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // With the way clear, both are written.
    std::fs::remove_dir(&aux).unwrap();
    let o = kernelbook(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(y.exists() && aux.is_file());
    // A folder that cannot be written: the path and the OS's cause.
    let o = kernelbook(&[
        "run",
        "softmax",
        "-i",
        x.to_str().unwrap(),
        "-o",
        "/nonexistent-folder/y.npy",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("/nonexistent-folder/y.npy: cannot write: No such file or directory"),
        "{t}"
    );
}

#[test]
fn parameters_given_twice_and_huge_numbers_are_one_short_line() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    write_npy(&x, &[1, 2], &[1.0, 2.0]);
    let (xs, ys) = (x.to_str().unwrap(), y.to_str().unwrap());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "run",
                "softmax",
                "-i",
                xs,
                "-p",
                "temperature=0.5",
                "-p",
                "temperature=2",
                "-o",
                ys,
            ],
            "--param temperature is given twice",
        ),
        (
            vec![
                "run",
                "softmax",
                "-i",
                xs,
                "-p",
                "temperature=1e300",
                "-o",
                ys,
            ],
            "1e300 is outside",
        ),
        (
            vec![
                "run",
                "softmax",
                "-i",
                xs,
                "-p",
                "temperature=-1e300",
                "-o",
                ys,
            ],
            "got -1e300",
        ),
    ];
    for (args, want) in cases {
        let o = kernelbook(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected '{want}' in {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.len() < 300, "a short line: {err}");
    }
    assert!(!y.exists());
}

#[test]
fn npy_files_numpy_could_not_load_back_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let y = dir.path().join("y.npy");
    // Header-only: shape (0, 2**62) holds no data, but numpy cannot load an array of that shape.
    let header_only = |shape: &str| {
        let mut header =
            format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}").into_bytes();
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header);
        out
    };
    let huge = dir.path().join("huge.npy");
    std::fs::write(&huge, header_only("(0, 4611686018427387904)")).unwrap();
    // A damaged header with raw control bytes in it.
    let damaged = dir.path().join("damaged.npy");
    let mut bytes = header_only("(2, 3)");
    bytes.splice(12..12, b"\x1b[2J\n\xff\n".iter().copied());
    std::fs::write(&damaged, bytes).unwrap();
    for (file, want) in [
        (&huge, "kernelbook handles"),
        (&damaged, "not a valid .npy"),
    ] {
        let o = kernelbook(&[
            "run",
            "softmax",
            "-i",
            file.to_str().unwrap(),
            "-o",
            y.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
        assert!(!err.trim_end().chars().any(char::is_control), "{err:?}");
    }
    assert!(!y.exists());
}
