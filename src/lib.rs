//! kernelbook: the numerics inside large language models, run live on CUDA, wgpu and the CPU and
//! checked against an f64 reference. This library holds everything the `kernelbook` binary and the
//! tests share: dtypes, ops and their references, the engines, the check, the check suite and .npy I/O.

/// Declares one module per topic and a table of their registrations (each module's `$item`), one
/// line per topic: the topic table in `ops` and each engine's own table use it, so adding a topic
/// is one line in each.
macro_rules! topic_registry {
    (
        $modvis:vis mod { $($topic:ident),+ $(,)? }
        $(#[$meta:meta])*
        $vis:vis static $table:ident: [$ty:ty] = $item:ident;
    ) => {
        $($modvis mod $topic;)+
        $(#[$meta])*
        $vis static $table: &[$ty] = &[$(&$topic::$item),+];
    };
}
pub(crate) use topic_registry;

pub mod bench;
pub mod chart;
pub mod check;
pub mod compare;
pub mod dtype;
pub mod engine;
pub mod export;
pub mod files;
pub mod format;
pub mod lesson;
pub mod npy;
pub mod ops;
pub mod provenance;
pub mod suite;
pub mod ui;
pub mod views;

pub mod sources;
