//! The command line's output (part of the `kernelbook` binary, not of the library): every line the
//! CLI prints goes through [`outln!`] (standard output) or [`errln!`] (standard error), never
//! `println!`, which panics when the reader went away (`kernelbook ops | head -1`) or the device is
//! full (`kernelbook backends > /dev/full`).
//!
//! A failed write to standard output comes back as an [`OutputError`]: `main` ends quietly on a
//! closed pipe, the way `ls | head` does (killed by SIGPIPE, no message), and prints the cause of
//! any other failure. Standard error is best effort: if it cannot be written there is nowhere left
//! to say so.

use std::fmt;
use std::io::{self, Write};

/// Standard output could not be written.
#[derive(Debug)]
pub enum OutputError {
    /// The reader closed the pipe (`| head`): not an error worth a message.
    Closed,
    /// Any other failure (a full device, an I/O error), with the OS's cause.
    Failed(io::Error),
}

impl fmt::Display for OutputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputError::Closed => f.write_str("standard output was closed"),
            OutputError::Failed(e) => write!(f, "cannot write to standard output: {e}"),
        }
    }
}

impl std::error::Error for OutputError {}

impl From<io::Error> for OutputError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            OutputError::Closed
        } else {
            OutputError::Failed(e)
        }
    }
}

/// Write `args` and a newline to standard output, flushed (so a failure shows up here, not at exit).
pub fn write_line(args: fmt::Arguments<'_>) -> Result<(), OutputError> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// Write `args` and a newline to standard error; failures are ignored (nowhere left to report them).
pub fn write_error_line(args: fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(args);
    let _ = err.write_all(b"\n");
}

/// End the process as a program killed by a closed pipe does (`ls | head`): no message, SIGPIPE's
/// default action.
pub fn exit_on_closed_pipe() -> ! {
    // Restores SIGPIPE's default action (Rust's runtime ignores it) and raises it: the process
    // ends as a closed pipe ends `ls`.
    let _ = signal_hook::low_level::emulate_default_handler(signal_hook::consts::SIGPIPE);
    // Only reached if the signal could not be delivered: the shell's code for SIGPIPE.
    std::process::exit(128 + signal_hook::consts::SIGPIPE)
}

/// `println!` for the CLI: writes to standard output and returns an [`OutputError`] (with `?`)
/// from the enclosing function when it cannot.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::console::write_line(format_args!($($arg)*))?
    };
}

/// `eprintln!` for the CLI: writes to standard error, best effort, never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::console::write_error_line(format_args!($($arg)*))
    };
}

pub(crate) use errln;
pub(crate) use outln;
