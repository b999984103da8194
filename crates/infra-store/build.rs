//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds the files at compile
//! time but cannot tell Cargo to watch them on stable Rust.
#![allow(clippy::print_stdout, reason = "build scripts talk to Cargo on stdout")]

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
