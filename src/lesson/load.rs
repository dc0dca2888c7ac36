//! Where lessons come from: the built-in ones embedded in the binary and an author's folder
//! (`--lessons DIR`). Only regular files are read (a named pipe or a device called `a.md` is
//! skipped with a message instead of hanging the program), and no more than
//! [`MAX_LESSON_BYTES`] + 1 bytes are ever read from one, whatever its metadata says.

use super::{Lesson, LessonError, LessonSource, MAX_LESSON_BYTES, parse_lesson};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The built-in lessons, embedded in the binary: (file name, text).
pub const BUILTIN: &[(&str, &str)] = &[
    ("01-logits.md", include_str!("../../lessons/01-logits.md")),
    ("02-softmax.md", include_str!("../../lessons/02-softmax.md")),
    (
        "03-gumbel-softmax.md",
        include_str!("../../lessons/03-gumbel-softmax.md"),
    ),
    ("04-rope.md", include_str!("../../lessons/04-rope.md")),
    (
        "05-tensor-parallel.md",
        include_str!("../../lessons/05-tensor-parallel.md"),
    ),
];

/// A lesson, or the error that kept it from loading (shown as an error card in its place).
pub type LoadedLesson = Result<Lesson, LessonError>;

/// Parse the built-in lessons.
pub fn builtin() -> Vec<LoadedLesson> {
    BUILTIN
        .iter()
        .map(|(name, text)| parse_lesson(text, LessonSource::Builtin(name)))
        .collect()
}

/// What kind of file a non-regular file is, in words.
fn kind_of(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return "a device";
        }
        if file_type.is_socket() {
            return "a socket";
        }
    }
    if file_type.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// The text of the lesson file at `path`: a regular file (after following symlinks) of at most
/// [`MAX_LESSON_BYTES`] bytes of UTF-8. The cap is enforced while reading.
pub fn read_lesson_file(path: &Path) -> Result<String, String> {
    // Opening a named pipe blocks until someone writes to it, so look before opening.
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "skipped: {} is {}, not a lesson file",
            path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            ),
            kind_of(meta.file_type())
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    // The file may have been replaced between the look and the open.
    match file.metadata() {
        Ok(m) if m.is_file() => {}
        Ok(m) => return Err(format!("skipped: it is {}", kind_of(m.file_type()))),
        Err(e) => return Err(format!("cannot read: {e}")),
    }
    let mut bytes = Vec::new();
    file.take(MAX_LESSON_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > MAX_LESSON_BYTES {
        return Err(format!(
            "the file is larger than a lesson may be (at most 1 MiB, {MAX_LESSON_BYTES} bytes)"
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = e
            .as_bytes()
            .get(..e.utf8_error().valid_up_to())
            .unwrap_or(&[]);
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        format!("the file is not UTF-8 text (first bad byte on line {line})")
    })
}

/// Parse every `*.md` file in `dir` (sorted by name). A folder that cannot be read is one error;
/// a file that cannot be read, or is not a regular file, is an error in its place.
pub fn load_dir(dir: &Path) -> Vec<LoadedLesson> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            return vec![Err(LessonError::new(
                &LessonSource::File(dir.to_path_buf()),
                0,
                0,
                format!("cannot read the lesson folder: {e}"),
            ))];
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let source = LessonSource::File(p.clone());
            match read_lesson_file(&p) {
                Ok(text) => parse_lesson(&text, source),
                Err(why) => Err(LessonError::new(&source, 0, 0, why)),
            }
        })
        .collect()
}

/// The built-in lessons plus an author's folder, ordered by `order` (errors last), with duplicate
/// ids reported as errors on the later file.
pub fn load_all(extra_dir: Option<&Path>) -> Vec<LoadedLesson> {
    let mut all = builtin();
    if let Some(dir) = extra_dir {
        all.extend(load_dir(dir));
    }
    let mut seen: Vec<String> = Vec::new();
    for item in all.iter_mut() {
        if let Ok(lesson) = item {
            if seen.contains(&lesson.id) {
                let err = LessonError::new(
                    &lesson.source,
                    0,
                    0,
                    format!(
                        "lesson id '{}' is already used by another lesson",
                        lesson.id
                    ),
                );
                *item = Err(err);
            } else {
                seen.push(lesson.id.clone());
            }
        }
    }
    all.sort_by_key(|l| match l {
        Ok(lesson) => (0, lesson.order),
        Err(_) => (1, 0),
    });
    all
}

/// The index of the lesson whose id or title (case-insensitive) is `wanted`.
pub fn find(lessons: &[LoadedLesson], wanted: &str) -> Option<usize> {
    let w = wanted.trim().to_lowercase();
    lessons.iter().position(|l| {
        l.as_ref()
            .is_ok_and(|l| l.id == w || l.title.to_lowercase() == w)
    })
}
