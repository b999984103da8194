//! The CLI's one way to print. Whatever it writes on stdout or stderr — results, lists,
//! errors, prompts — passes [`printable`] first, so text others stored (a task, a model's
//! answer, a reason a server gave) reaches a person's terminal as words, never as the escape
//! sequences, carriage returns or bidirectional overrides it may hold.
//!
//! [`outln!`], [`out!`], [`errln!`] and [`err!`] stand for `println!`, `print!`, `eprintln!`
//! and `eprint!`, which clippy refuses in the `cli` module (`print_stdout`, `print_stderr`),
//! so a new line of output cannot go around them. Two writers are not macros: indicatif's
//! bar draws its own colours (stored text reaches it only through `printable`, in
//! `progress`), and `--json` documents are printed here after [`json_escaped`], which keeps
//! every character of the data as an escape a script reads back.
//!
//! [`printable`]: orchestrator_server::control_chars::printable
//! [`json_escaped`]: orchestrator_server::control_chars::json_escaped

use std::fmt;

use orchestrator_server::control_chars::printable;

/// Writes `text` on stdout, without the control characters a terminal would act on.
#[allow(clippy::print_stdout, reason = "the one place the CLI writes stdout, after printable()")]
pub(crate) fn stdout(text: fmt::Arguments<'_>) {
    print!("{}", printable(&text.to_string()));
}

/// Writes `text` on stderr, without the control characters a terminal would act on.
#[allow(clippy::print_stderr, reason = "the one place the CLI writes stderr, after printable()")]
pub(crate) fn stderr(text: fmt::Arguments<'_>) {
    eprint!("{}", printable(&text.to_string()));
}

/// `println!` for the CLI: see the module docs.
macro_rules! outln {
    () => {
        $crate::cli::terminal_text::stdout(::std::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::terminal_text::stdout(::std::format_args!("{}\n", ::std::format_args!($($arg)*)))
    };
}

/// `print!` for the CLI: see the module docs.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::terminal_text::stdout(::std::format_args!($($arg)*))
    };
}

/// `eprintln!` for the CLI: see the module docs.
macro_rules! errln {
    () => {
        $crate::cli::terminal_text::stderr(::std::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::terminal_text::stderr(::std::format_args!("{}\n", ::std::format_args!($($arg)*)))
    };
}

/// `eprint!` for the CLI: see the module docs.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::cli::terminal_text::stderr(::std::format_args!($($arg)*))
    };
}

pub(crate) use {err, errln, out, outln};
