//! The check suite (what `kernelbook check` runs) on every engine present: the CPU engine always,
//! wgpu on the software Vulkan adapter in CI (required when KERNELBOOK_REQUIRE_WGPU=1), CUDA where a
//! GPU is present. Every case must meet its expectation, including the naive softmax overflowing.

use kernelbook::engine::{EngineKind, Registry, Slot};
use kernelbook::suite::{self, Outcome};

fn run_suite_on(kind: EngineKind, require: bool) {
    let registry = Registry::probe_only(&[kind]);
    let engine = match registry.slots().iter().find(|s| s.kind() == kind) {
        Some(Slot::Ready(e)) => e.as_ref(),
        Some(Slot::Absent { reason, .. }) => {
            assert!(!require, "{kind} engine required but absent: {reason}");
            eprintln!("skipped: {kind} engine absent: {reason}");
            return;
        }
        None => unreachable!("probe_only lists every engine"),
    };
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in suite::cases(false) {
        let req = case.request().expect("suite cases are valid");
        let reference = req.reference_full();
        // On a GPU engine, every kernel variant of the op (simple and fast) is checked.
        for req in suite::kernel_variants(engine, &req) {
            let r = suite::run_case(engine, &case, &req, &reference);
            let name = match r.kernel {
                Some(k) => format!("{} {} [{k}]", case.dtype, case.name),
                None => format!("{} {}", case.dtype, case.name),
            };
            match &r.outcome {
                Outcome::Pass { .. } => ran += 1,
                Outcome::Fail { report } => failures.push(format!("{name}: {report}")),
                Outcome::Error { message } => failures.push(format!("{name}: {message}")),
                Outcome::Skipped { reason } => failures.push(format!("{name}: skipped ({reason})")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{kind} on {}:\n{}",
        engine.device(),
        failures.join("\n")
    );
    eprintln!("{kind} on {}: {ran} cases passed", engine.device());
}

#[test]
fn suite_passes_on_cpu() {
    run_suite_on(EngineKind::Cpu, true);
}

#[test]
fn suite_passes_on_wgpu() {
    run_suite_on(
        EngineKind::Wgpu,
        std::env::var("KERNELBOOK_REQUIRE_WGPU").is_ok_and(|v| v == "1"),
    );
}

#[test]
fn suite_passes_on_cuda() {
    run_suite_on(
        EngineKind::Cuda,
        std::env::var("KERNELBOOK_REQUIRE_CUDA").is_ok_and(|v| v == "1"),
    );
}
