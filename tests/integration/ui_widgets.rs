//! The reusable UI pieces rendered headless with egui_kittest's wgpu renderer (a software Vulkan
//! adapter such as lavapipe is enough): charts with NaN/inf values, a heatmap, a line chart and
//! the kernel view, in the light, dark and projector themes, compared with the PNGs under
//! `tests/snapshots/` (regenerate with `UPDATE_SNAPSHOTS=1 cargo test --test integration ui_widgets::`, then look
//! at them). AccessKit queries check that the tabs and charts are reachable by name.

use egui::Vec2;
use egui::accesskit::Toggled;
use egui_kittest::kittest::{NodeT as _, Queryable};
use egui_kittest::{Harness, SnapshotResults};
use kernelbook::chart::{Chart, LineSeries, Series, SeriesRole};
use kernelbook::engine::EngineKind;
use kernelbook::ui::kernel_view::{kernel_ui, marked_lines};
use kernelbook::ui::plots::{chart_ui, summary};
use kernelbook::ui::theme::{Theme, install_fonts};

/// The glyphs lesson prose uses; every one must render (the harness panics on a missing glyph).
const MATH_GLYPHS: &str = "σ Σ ∑ ≤ ≥ → ∞ ≈ · ⁻ ˣ ᵢ ⱼ √ ∈ θ τ ✔ ✘ ▶ ⚠ – ×";

fn themes() -> [Theme; 3] {
    [Theme::light(), Theme::dark(), Theme::projector()]
}

/// A laptop-sized harness, or a wider one for the projector theme (its type is twice as large).
fn size_for(theme: &Theme, laptop: Vec2) -> Vec2 {
    if theme.name == "projector" {
        laptop * 1.8
    } else {
        laptop
    }
}

fn harness<'a>(theme: &Theme, size: Vec2, app: impl FnMut(&mut egui::Ui) + 'a) -> Harness<'a> {
    let setup_theme = theme.clone();
    Harness::builder()
        .with_size(size)
        .with_theme(if theme.dark {
            egui::Theme::Dark
        } else {
            egui::Theme::Light
        })
        .with_context_setup(move |ctx| {
            install_fonts(ctx);
            setup_theme.apply(ctx);
        })
        .build_ui(app)
}

/// Softmax of 4 logits on three engines and the reference, where wgpu's naive f16 run gave a NaN
/// and the CPU's gave +inf: both must be visible.
fn softmax_bars() -> Chart {
    let reference = vec![0.6439, 0.2369, 0.0871, 0.0321];
    let series = |name: &str, role, values: Vec<f64>| Series {
        name: name.into(),
        values,
        role,
    };
    Chart::bars(
        "softmax(x / T), T = 1, f16",
        ["x₀ = 2.0", "x₁ = 1.0", "x₂ = 0.1", "x₃ = -1.0"]
            .map(String::from)
            .to_vec(),
        vec![
            series(
                "CUDA",
                SeriesRole::Engine(EngineKind::Cuda),
                vec![0.6440, 0.2368, 0.0871, 0.0321],
            ),
            series(
                "wgpu",
                SeriesRole::Engine(EngineKind::Wgpu),
                vec![f64::NAN, 0.2368, 0.0871, 0.0321],
            ),
            series(
                "CPU",
                SeriesRole::Engine(EngineKind::Cpu),
                vec![0.6440, 0.2368, f64::INFINITY, 0.0321],
            ),
            series("reference (f64)", SeriesRole::Reference, reference),
        ],
    )
    .with_labels("logit x_j", "probability y_j")
}

/// <R_m q, R_n k> for a rotary embedding: depends only on m - n. A few NaN cells show the grey.
fn rope_heatmap() -> Chart {
    let n = 64;
    let mut values = Vec::with_capacity(n * n);
    for m in 0..n {
        for k in 0..n {
            let d = (m as f64 - k as f64) * 0.35;
            values.push(d.cos() + 0.5 * (0.27 * d).cos());
        }
    }
    values[5 * n + 40] = f64::NAN;
    values[6 * n + 40] = f64::NAN;
    Chart::heatmap(
        "⟨R_m q, R_n k⟩ depends only on m − n",
        n,
        n,
        values,
        "dot product",
    )
    .with_labels("key position n", "query position m")
}

/// Max relative error vs temperature, log10: the naive f16 run breaks below T ≈ 0.2.
fn error_lines() -> Chart {
    let temps: Vec<f64> = (1..=20).map(|i| i as f64 * 0.1).collect();
    let line = |name: &str, role, f: &dyn Fn(f64) -> f64| LineSeries {
        name: name.into(),
        points: temps.iter().map(|&t| (t, f(t))).collect(),
        role,
        points_only: false,
    };
    Chart::lines(
        "max relative error vs T",
        vec![
            line("CUDA", SeriesRole::Engine(EngineKind::Cuda), &|t| {
                -3.2 - 0.2 * t
            }),
            line("wgpu", SeriesRole::Engine(EngineKind::Wgpu), &|t| {
                if t < 0.15 {
                    f64::NAN
                } else if t < 0.25 {
                    f64::INFINITY
                } else {
                    -3.0 - 0.25 * t
                }
            }),
            line("CPU", SeriesRole::Engine(EngineKind::Cpu), &|t| {
                -3.5 - 0.1 * t
            }),
            line("tolerance", SeriesRole::Reference, &|_| -2.5),
        ],
    )
    .with_labels("temperature T", "log10 max rel error")
}

#[test]
fn bar_chart_shows_nan_and_inf() {
    let chart = softmax_bars();
    let mut results = SnapshotResults::new();
    for theme in themes() {
        let size = size_for(&theme, Vec2::new(720.0, 400.0));
        let mut harness = harness(&theme, size, |ui| {
            chart_ui(ui, "bars", &chart, &theme);
        });
        harness.run();
        // The chart is reachable by its summary, which names the non-finite values in words.
        let label = summary(&chart);
        assert!(label.contains("not finite: 1 NaN, 1 +inf"), "{label}");
        harness.get_by_label(&label);
        harness.get_by_label_contains("Not finite: 1 NaN, 1 +inf");
        harness.snapshot(format!("bars_nan_inf_{}", theme.name));
        results.extend_harness(&mut harness);
    }
    results.unwrap();
}

/// One engine column of a cell is narrow (three side by side on a laptop): the chart must still fit.
#[test]
fn bar_chart_fits_a_narrow_column() {
    let chart = softmax_bars();
    let theme = Theme::light();
    let mut harness = harness(&theme, Vec2::new(330.0, 400.0), |ui| {
        chart_ui(ui, "narrow", &chart, &theme);
    });
    harness.run();
    harness.snapshot("bars_narrow_light");
}

#[test]
fn heatmap_64x64() {
    let chart = rope_heatmap();
    let mut results = SnapshotResults::new();
    for theme in themes() {
        let size = size_for(&theme, Vec2::new(640.0, 420.0));
        let mut harness = harness(&theme, size, |ui| {
            chart_ui(ui, "rope", &chart, &theme);
        });
        harness.run();
        harness.get_by_label_contains("heatmap, 64 rows x 64 columns");
        harness.snapshot(format!("heatmap_64_{}", theme.name));
        results.extend_harness(&mut harness);
    }
    results.unwrap();
}

#[test]
fn line_chart_marks_nan_and_inf_points() {
    let chart = error_lines();
    let mut results = SnapshotResults::new();
    for theme in themes() {
        let size = size_for(&theme, Vec2::new(720.0, 380.0));
        let mut harness = harness(&theme, size, |ui| {
            chart_ui(ui, "lines", &chart, &theme);
        });
        harness.run();
        harness.get_by_label_contains("line chart, series: CUDA, wgpu, CPU, tolerance");
        harness.snapshot(format!("lines_{}", theme.name));
        results.extend_harness(&mut harness);
    }
    results.unwrap();
}

fn softmax_marks() -> Vec<String> {
    vec!["step 3: normalise".to_owned()]
}

#[test]
fn kernel_view_marks_and_tabs() {
    let cuda = kernelbook::sources::cuda("softmax").expect("softmax.cu is embedded");
    let wgsl = kernelbook::sources::wgsl("softmax").expect("softmax.wgsl is embedded");
    let marks = softmax_marks();
    assert!(!marked_lines(cuda, &marks).is_empty());
    assert!(!marked_lines(wgsl, &marks).is_empty());
    let mut results = SnapshotResults::new();
    for theme in themes() {
        let size = size_for(&theme, Vec2::new(760.0, 420.0));
        let mut harness = harness(&theme, size, |ui| {
            kernel_ui(
                ui,
                "softmax-kernel",
                "Kernel source",
                cuda,
                wgsl,
                &marks,
                &theme,
            );
        });
        harness.run();
        let cuda_tab = harness.get_by_label("CUDA");
        assert_eq!(cuda_tab.accesskit_node().toggled(), Some(Toggled::True));
        harness.get_by_label_contains("extern \"C\" __global__");
        harness.snapshot(format!("kernel_cuda_{}", theme.name));

        harness.get_by_label("WGSL").click();
        harness.run();
        harness.remove_cursor();
        harness.run();
        assert_eq!(
            harness.get_by_label("WGSL").accesskit_node().toggled(),
            Some(Toggled::True)
        );
        assert_eq!(
            harness.get_by_label("CUDA").accesskit_node().toggled(),
            Some(Toggled::False)
        );
        harness.get_by_label_contains("@compute @workgroup_size(256)");
        assert!(
            harness
                .query_by_label_contains("extern \"C\" __global__")
                .is_none()
        );
        harness.snapshot(format!("kernel_wgsl_{}", theme.name));
        results.extend_harness(&mut harness);
    }
    results.unwrap();
}

#[test]
fn kernel_tab_is_remembered_and_keyboard_reachable() {
    let cuda = kernelbook::sources::cuda("softmax").unwrap_or_default();
    let wgsl = kernelbook::sources::wgsl("softmax").unwrap_or_default();
    let marks = softmax_marks();
    let theme = Theme::light();
    let mut harness = harness(&theme, Vec2::new(760.0, 420.0), |ui| {
        kernel_ui(ui, "remembered", "", cuda, wgsl, &marks, &theme);
    });
    harness.run();
    // Tab to the first tab, then to the second, and press it with the keyboard.
    harness.key_press(egui::Key::Tab);
    harness.run();
    assert!(harness.get_by_label("CUDA").is_focused());
    harness.key_press(egui::Key::Tab);
    harness.run();
    assert!(harness.get_by_label("WGSL").is_focused());
    harness.key_press(egui::Key::Enter);
    harness.run();
    assert_eq!(
        harness.get_by_label("WGSL").accesskit_node().toggled(),
        Some(Toggled::True)
    );
    // The choice lives in egui memory: still WGSL many frames later.
    harness.run_steps(3);
    assert_eq!(
        harness.get_by_label("WGSL").accesskit_node().toggled(),
        Some(Toggled::True)
    );
}

#[test]
fn invalid_chart_says_why() {
    let theme = Theme::light();
    let mut chart = softmax_bars();
    if let kernelbook::chart::ChartKind::Bars { categories, .. } = &mut chart.kind {
        categories.pop();
    }
    let mut harness = harness(&theme, Vec2::new(600.0, 200.0), |ui| {
        chart_ui(ui, "bad", &chart, &theme);
    });
    harness.run();
    harness.get_by_label_contains("cannot draw this chart");
}

#[test]
fn math_glyphs_render_in_every_font() {
    let mut results = SnapshotResults::new();
    for theme in themes() {
        let size = size_for(&theme, Vec2::new(560.0, 150.0));
        let mut harness = harness(&theme, size, |ui| {
            ui.label(egui::RichText::new(MATH_GLYPHS).size(theme.text_body));
            ui.label(egui::RichText::new(MATH_GLYPHS).font(theme.mono_font()));
            ui.label(egui::RichText::new(MATH_GLYPHS).font(theme.bold_font(theme.text_body)));
            ui.label(
                egui::RichText::new(format!(
                    "{} pass   {} fail   {} warning",
                    Theme::PASS_GLYPH,
                    Theme::FAIL_GLYPH,
                    Theme::WARNING_GLYPH
                ))
                .size(theme.text_body),
            );
        });
        harness.run();
        harness.snapshot(format!("glyphs_{}", theme.name));
        results.extend_harness(&mut harness);
    }
    results.unwrap();
}

/// A softmax cell that shows the roofline, and the engines of a machine with an H200, lavapipe
/// and a CPU.
fn roofline_cell_and_engines() -> (
    kernelbook::ui::cell::CellState,
    Vec<kernelbook::engine::BackendInfo>,
) {
    let text = r#"+++
id = "r"
order = 1
title = "R"
summary = "S"
+++

## Step
```cell softmax
input = { normal = 3.0, rows = 8, cols = 600, seed = 7 }
show = ["roofline"]
roofline = { size = [4096, 32000], kernels = ["simple", "fast"] }
```
"#;
    let lesson =
        kernelbook::lesson::parse_lesson(text, kernelbook::lesson::LessonSource::Builtin("r.md"))
            .expect("the lesson parses");
    let spec = lesson.steps[0].cells().next().unwrap().clone();
    let backend = |engine, device: &str, software| kernelbook::engine::BackendInfo {
        engine,
        available: true,
        device: Some(device.into()),
        software,
        reason: None,
    };
    let engines = vec![
        backend(EngineKind::Cuda, "NVIDIA H200 (sm_90)", false),
        backend(
            EngineKind::Wgpu,
            "llvmpipe (LLVM 19.1.7, 256 bits) · Vulkan · software",
            true,
        ),
        backend(
            EngineKind::Cpu,
            "x86_64 · 2 thread(s) · f32 arithmetic",
            false,
        ),
    ];
    (kernelbook::ui::cell::CellState::new(&spec), engines)
}

/// A measured result with the given time and copy bandwidth (bytes as the bench counts them).
fn bench_result(
    engine: EngineKind,
    shape: &[usize],
    median_us: f64,
    copy_gb_per_s: f64,
) -> kernelbook::bench::BenchResult {
    let bytes = shape.iter().product::<usize>() * 4 * 2;
    let gb_per_s = bytes as f64 / (median_us * 1e-6) / 1e9;
    kernelbook::bench::BenchResult {
        engine,
        device: String::new(),
        case: String::new(),
        op: "softmax",
        dtype: kernelbook::dtype::DType::F32,
        kernel: None,
        shape: shape.to_vec(),
        runs: 20,
        timing: kernelbook::engine::TimingSource::WallClock,
        median_us,
        min_us: median_us,
        bytes,
        gb_per_s,
        copy_gb_per_s: Some(copy_gb_per_s),
        percent_of_copy: Some(100.0 * gb_per_s / copy_gb_per_s),
    }
}

/// The roofline before anything is measured (what Measure will do) and with results: the
/// CUDA simple kernel at the H200 numbers of docs/gpu.md (647 µs, copy 4194 GB/s), its fast kernel
/// still measuring, and made-up CPU-side numbers for lavapipe and the CPU.
#[test]
fn roofline_view_before_and_after_measuring() {
    use kernelbook::ui::roofline::{Measured, Measurement, Measurements, plan, roofline_ui};
    let (state, engines) = roofline_cell_and_engines();
    let plan = plan(&state, &engines).expect("a plan");
    assert_eq!(
        plan.engines[0].shape,
        vec![4096, 32000],
        "the H200 gets the full size"
    );
    assert_eq!(
        plan.engines[1].shape,
        vec![32, 32000],
        "lavapipe a CPU-sized one"
    );
    assert_eq!(
        plan.engines[2].jobs.len(),
        1,
        "the CPU has one implementation"
    );
    let mut measured = Measurements::new();
    let done = |r| {
        Measurement::Done(Measured {
            result: Ok(r),
            seconds: 1.0,
        })
    };
    let jobs: Vec<_> = plan.jobs().map(|j| j.key.clone()).collect();
    measured.insert(
        jobs[0].clone(),
        done(bench_result(
            EngineKind::Cuda,
            &[4096, 32000],
            647.0,
            4194.0,
        )),
    );
    measured.insert(jobs[1].clone(), Measurement::Pending);
    measured.insert(
        jobs[2].clone(),
        done(bench_result(EngineKind::Wgpu, &[32, 32000], 9000.0, 5.0)),
    );
    measured.insert(
        jobs[3].clone(),
        Measurement::Done(Measured {
            result: Err("failed: device lost".into()),
            seconds: 0.1,
        }),
    );
    measured.insert(
        jobs[4].clone(),
        done(bench_result(EngineKind::Cpu, &[32, 32000], 1500.0, 5.0)),
    );
    let mut results = SnapshotResults::new();
    for theme in themes() {
        for (name, measurements) in [("before", Measurements::new()), ("after", measured.clone())] {
            let size = size_for(&theme, Vec2::new(760.0, 560.0));
            let mut harness = harness(&theme, size, |ui| {
                roofline_ui(ui, &state, Some(&engines), &measurements, &theme);
            });
            // A measurement in progress shows a spinner, which repaints for ever.
            harness.run_steps(4);
            if name == "before" {
                harness.get_by_label("▶ Measure (M)");
                harness.get_by_label_contains("Measure times softmax T=1 stable · f32 on:");
                harness.get_by_label_contains(
                    "CUDA (NVIDIA H200 (sm_90)): the simple kernel and the fast kernel at 4096 × 32000",
                );
                harness.get_by_label_contains("these numbers measure a CPU, not a GPU");
            } else {
                // 1.05 GB in 647 µs is 1621 GB/s, 39% of the 4194 GB/s copy.
                harness.get_by_label("simple: 39% of copy · 1621 GB/s · 647 µs");
                harness.get_by_label("fast: measuring…");
                harness.get_by_label("fast: ✘ failed: device lost");
                harness.get_by_label_contains("100% = copy: 4194 GB/s");
                // The CPU beat its own copy here (caches): its scale runs past 100%.
                harness.get_by_label("CPU code: 109% of copy · 5.46 GB/s · 1500 µs");
            }
            harness.snapshot(format!("roofline_{name}_{}", theme.name));
            results.extend_harness(&mut harness);
        }
    }
    results.unwrap();
}
