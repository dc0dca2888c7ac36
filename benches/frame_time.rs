//! Frame time while a learner drags a slider (target: p95 <= 16 ms on a 2-core machine with no GPU;
//! measurements in docs/performance.md).
//!
//! Opens lesson 2 on its temperature step in a headless 1280x800 window (egui_kittest, wgpu renderer
//! on whatever adapter wgpu finds: lavapipe here), moves the temperature slider one notch per frame
//! for 300 frames with the real background compute worker, and reports the UI pass alone and the UI
//! pass plus rendering and reading the frame back (an upper bound of what a window pays).
//! Run: `cargo bench --bench frame_time`.

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kernelbook::ui::{AppOptions, KernelbookApp, Remembered};
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<28} median {:6.2} ms   p95 {:6.2} ms   max {:6.2} ms   ({} frames)",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.95)),
        ms(*times.last().unwrap_or(&Duration::ZERO)),
        times.len()
    );
}

fn main() {
    let options = AppOptions {
        lesson: Some("softmax".into()),
        ..Default::default()
    };
    let remembered = Remembered::default();
    let mut h: Harness<'_, KernelbookApp> = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .wgpu()
        .build_eframe(move |cc| KernelbookApp::new(&cc.egui_ctx, options, remembered));
    // The temperature step of lesson 2 (the first step with a temperature slider).
    let lesson = h.state().position().0;
    let step = (0..h.state().step_count())
        .find(|&s| {
            h.state_mut().go_to(lesson, s);
            h.run_steps(2);
            h.query_by_role_and_label(egui::accesskit::Role::Slider, "temperature")
                .is_some()
        })
        .expect("lesson 2 has a temperature slider");
    println!("lesson 2, step {} at 1280x800", step + 1);
    let wait_for_results = |h: &mut Harness<'_, KernelbookApp>| {
        let start = Instant::now();
        while h.state().is_computing() && start.elapsed() < Duration::from_secs(20) {
            h.step();
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for_results(&mut h);
    h.get_by_role_and_label(egui::accesskit::Role::Slider, "temperature")
        .focus();
    h.step();
    let mut ui_only = Vec::new();
    let mut ui_and_render = Vec::new();
    for i in 0..300 {
        h.key_press(if (i / 40) % 2 == 0 {
            egui::Key::ArrowLeft
        } else {
            egui::Key::ArrowRight
        });
        let start = Instant::now();
        h.step();
        let ui = start.elapsed();
        if h.render().is_err() {
            eprintln!("no renderer: reporting the UI pass only");
        }
        ui_only.push(ui);
        ui_and_render.push(start.elapsed());
    }
    report("UI pass", ui_only);
    report("UI pass + render + readback", ui_and_render);
}
