//! Loading an author's folder: only regular files are read, never more than the size limit, and
//! nothing there can hang the loader (a named pipe, a link to /dev/zero).

use super::*;
use std::path::Path;
use std::time::Duration;

/// `load_dir(dir)` on another thread; fails instead of hanging when it does not return in time.
fn load_dir_within(dir: &Path, seconds: u64) -> Vec<LoadedLesson> {
    let (tx, rx) = std::sync::mpsc::channel();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(load_dir(&dir));
    });
    rx.recv_timeout(Duration::from_secs(seconds))
        .unwrap_or_else(|_| panic!("load_dir did not return within {seconds} s"))
}

const GOOD: &str =
    "+++\nid = \"x\"\norder = 1\ntitle = \"T\"\nsummary = \"S\"\n+++\n\n## Step\nText.\n";

#[cfg(unix)]
#[test]
fn a_named_pipe_is_skipped_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a-good.md"), GOOD).unwrap();
    let fifo = dir.path().join("b-pipe.md");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("the mkfifo command runs");
    assert!(status.success(), "mkfifo failed");
    let loaded = load_dir_within(dir.path(), 10);
    assert_eq!(loaded.len(), 2, "{loaded:?}");
    assert!(loaded[0].is_ok(), "{:?}", loaded[0]);
    let err = loaded[1].as_ref().unwrap_err();
    assert_eq!(err.line, 0);
    assert_eq!(err.file, fifo.display().to_string());
    assert!(err.message.contains("named pipe"), "{err}");
    assert!(!err.message.contains('\n'), "one line: {err}");
}

#[cfg(unix)]
#[test]
fn a_link_to_dev_zero_is_skipped_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("a.md");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let loaded = load_dir_within(dir.path(), 10);
    assert_eq!(loaded.len(), 1);
    let err = loaded[0].as_ref().unwrap_err();
    assert!(err.message.contains("a device"), "{err}");
    // A link to a lesson file is read like the file.
    std::fs::remove_file(&link).unwrap();
    let target = dir.path().join("lesson.txt");
    std::fs::write(&target, GOOD).unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let loaded = load_dir_within(dir.path(), 10);
    assert_eq!(loaded[0].as_ref().map(|l| l.id.as_str()), Ok("x"));
}

#[test]
fn the_size_limit_holds_while_reading() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.md");
    // Exactly the limit is fine to read (the parser then says what it makes of the text) ...
    let mut text = GOOD.to_string();
    text.push_str(&"x".repeat(MAX_LESSON_BYTES - text.len()));
    std::fs::write(&big, &text).unwrap();
    assert_eq!(
        read_lesson_file(&big).map(|t| t.len()),
        Ok(MAX_LESSON_BYTES)
    );
    // ... one byte more is refused.
    text.push('x');
    std::fs::write(&big, &text).unwrap();
    let err = read_lesson_file(&big).unwrap_err();
    assert!(err.contains("at most 1 MiB"), "{err}");
}

#[test]
fn folders_and_bad_bytes_are_errors_in_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("a-folder.md")).unwrap();
    std::fs::write(dir.path().join("b-latin1.md"), b"+++\nid = \"caf\xe9\"\n").unwrap();
    let loaded = load_dir_within(dir.path(), 10);
    assert_eq!(loaded.len(), 2);
    let folder = loaded[0].as_ref().unwrap_err();
    assert!(folder.message.contains("a folder"), "{folder}");
    let latin1 = loaded[1].as_ref().unwrap_err();
    assert!(
        latin1.message.contains("not UTF-8") && latin1.message.contains("line 2"),
        "{latin1}"
    );
}
