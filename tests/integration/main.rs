//! kernelbook's integration tests, in one test binary (one link of egui, wgpu and eframe instead of
//! one per file): each module is one area, and `common` holds what they share (the engines, probed
//! once). The CUDA emulator's tests are their own target (`tests/cuda_emulator.rs`).
//!
//! Run one area with a filter, e.g. `cargo test --test integration rope::`.

mod common;

mod app;
mod classroom;
mod cli;
mod cpu_engine;
mod cuda_engine;
mod export;
mod gumbel;
mod lessons;
mod properties;
mod rope;
mod smoke;
mod suite;
mod tensor_parallel;
mod ui_widgets;
mod wgpu_engine;
