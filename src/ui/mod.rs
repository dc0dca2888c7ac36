//! The eframe app: lesson list, notebook cells, plots, kernel source. The UI talks to ops only
//! through the engine registry (via the compute worker); it never imports cudarc or wgpu compute
//! code.

pub mod app;
pub mod cell;
pub mod cell_state;
pub mod classroom;
pub mod colormap;
pub mod kernel_view;
pub mod layout;
pub mod plots;
pub mod prose;
pub mod roofline;
pub mod state;
pub mod theme;
pub mod worker;

pub use app::{AppOptions, KernelbookApp};
pub use state::Remembered;
