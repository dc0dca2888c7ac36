//! Cells: parameters and their widgets inside the op's bounds, views, kernels, rooflines, sweeps
//! and shapes.

use super::*;

#[test]
fn every_control_kind_and_defaults() {
    // Unmentioned: fixed at the op default.
    let c = cell("softmax", "input = [1.0]");
    assert_eq!(
        c.params,
        vec![
            ParamControl {
                name: "temperature",
                default: ParamValue::Float(1.0),
                control: Control::Fixed
            },
            ParamControl {
                name: "stable",
                default: ParamValue::Bool(true),
                control: Control::Fixed
            },
            ParamControl {
                name: "dtype",
                default: ParamValue::Choice("f32".into()),
                control: Control::Fixed
            },
        ]
    );
    assert_eq!(c.title, None);
    // Plain values fix a parameter.
    let c = cell(
        "softmax",
        "input = [1.0]\ntemperature = 0.5\nstable = false\ndtype = \"bf16\"",
    );
    assert_eq!(
        c.param("temperature").unwrap().default,
        ParamValue::Float(0.5)
    );
    assert_eq!(c.param("stable").unwrap().default, ParamValue::Bool(false));
    assert_eq!(
        c.param("dtype").unwrap().default,
        ParamValue::Choice("bf16".into())
    );
    assert!(c.params.iter().all(|p| p.control == Control::Fixed));
    // Slider log follows the op's hint unless given; default falls back to the op's.
    let c = cell(
        "log_softmax",
        "input = [1.0]\ntemperature = { min = 0.5, max = 2 }",
    );
    assert_eq!(
        c.param("temperature").unwrap().control,
        Control::Slider {
            min: 0.5,
            max: 2.0,
            log: true
        }
    );
    assert_eq!(
        c.param("temperature").unwrap().default,
        ParamValue::Float(1.0)
    );
    let c = cell(
        "softmax",
        "input = [1.0]\ntemperature = { min = 0.5, max = 2, default = 1.5, log = false }",
    );
    assert_eq!(
        c.param("temperature").unwrap().control,
        Control::Slider {
            min: 0.5,
            max: 2.0,
            log: false
        }
    );
    let c = cell(
        "logit",
        "input = [0.5]\neps = { min = 0, max = 0.1, default = 0.01 }",
    );
    assert_eq!(
        c.param("eps").unwrap(),
        &ParamControl {
            name: "eps",
            default: ParamValue::Float(0.01),
            control: Control::Slider {
                min: 0.0,
                max: 0.1,
                log: false
            },
        }
    );
    let c = cell("logit", "input = [0.5]\neps = 1e-6");
    assert_eq!(c.param("eps").unwrap().default, ParamValue::Float(1e-6));
    // A toggle without a default starts at the op's; a choice too when the op's is offered.
    let c = cell(
        "softmax",
        "input = [1.0]\nstable = {}\ndtype = { choices = [\"f32\", \"bf16\"] }",
    );
    assert_eq!(c.param("stable").unwrap().default, ParamValue::Bool(true));
    assert_eq!(c.param("stable").unwrap().control, Control::Toggle);
    assert_eq!(
        c.param("dtype").unwrap().default,
        ParamValue::Choice("f32".into())
    );
    // Dotted keys are TOML too.
    let c = cell(
        "softmax",
        "input = [1.0]\ntemperature.min = 0.5\ntemperature.max = 4.0",
    );
    assert_eq!(
        c.param("temperature").unwrap().control,
        Control::Slider {
            min: 0.5,
            max: 4.0,
            log: true
        }
    );
}

#[test]
fn sweeps_shapes_and_extra_inputs() {
    let c = cell(
        "softmax",
        "input = [1.0, 2.0, 3.0, 4.0]\nshape = [2, 2]\ntemperature = { min = 0.05, max = 10.0 }\nsweep = { param = \"temperature\", from = 10.0, to = 0.05, seconds = 8.0 }",
    );
    let sweep = c.sweep.clone().expect("a sweep");
    assert_eq!(
        (sweep.param, sweep.from, sweep.to, sweep.seconds),
        ("temperature", 10.0, 0.05, 8.0)
    );
    assert!(
        (sweep.value_at(0.5, true) - (10.0f64 * 0.05).sqrt()).abs() < 1e-12,
        "log-spaced"
    );
    assert_eq!(sweep.value_at(0.5, false), 5.025);
    assert_eq!(c.shape, Some(vec![2, 2]));
    assert_block_err(
        "cell softmax",
        "input = [1.0]\nsweep = { param = \"temperature\", from = 10.0, to = 0.05, seconds = 8.0 }",
        2,
        9,
        "sweep: temperature is not a slider in this cell",
    );
    assert_block_err(
        "cell softmax",
        "input = [1.0]\ntemperature = { min = 0.5, max = 2.0 }\nsweep = { param = \"temperature\", from = 10.0, to = 0.5, seconds = 8.0 }",
        3,
        9,
        "sweep: from = 10 is outside the temperature slider's range [0.5, 2]",
    );
    assert_block_err(
        "cell softmax",
        "input = [1.0]\ntemperature = { min = 0.5, max = 2.0 }\nsweep = { param = \"temperature\", from = 1.0, to = 0.5, seconds = 0.0 }",
        3,
        66,
        "seconds = 0 must be in (0, 600]",
    );
    assert_block_err(
        "cell softmax",
        "input = [1.0]\nsweep = { param = \"heat\", from = 1.0, to = 0.5, seconds = 1.0 }",
        2,
        19,
        "sweep: softmax has no parameter 'heat'",
    );
    assert_block_err(
        "cell softmax",
        "input = [1.0, 2.0, 3.0]\nshape = [2, 2]",
        2,
        9,
        "shape: [2, 2] holds 4 values but the input has 3",
    );
    assert_block_err(
        "cell softmax",
        "input = [1.0]\nshape = [0]",
        2,
        10,
        "shape: sizes are whole numbers >= 1",
    );
    assert_block_err(
        "cell softmax",
        "input = [1.0]\ninputs = { w = [1.0] }",
        2,
        1,
        "'inputs' is not a parameter of softmax",
    );
}

#[test]
fn cell_key_errors() {
    assert_block_err(
        "cell softmax",
        "input = [1.0]\ntemprature = 1.0",
        2,
        1,
        "cell 'softmax': 'temprature' is not a parameter of softmax (expected one of: title, input, show, shape, sweep, kernel, roofline, temperature, stable, dtype)",
    );
    assert_block_err(
        "cell sigmoid",
        "input = [1.0]\n  [x]",
        2,
        4,
        "'x' is not a parameter of sigmoid (expected one of: title, input, show, shape, sweep, kernel, roofline, dtype)",
    );
    assert_err(
        &block("cell softmax", "title = \"x\""),
        9,
        1,
        "cell 'softmax': missing 'input'",
    );
    assert_err(
        &lesson("  ```cell softmax\n  ```\n"),
        9,
        3,
        "missing 'input'",
    );
    assert_block_err(
        "cell softmax",
        "input = [1.0]\ntitle = 3",
        2,
        9,
        "title: expected a string, found integer",
    );
    assert_block_err(
        "cell softmax",
        "input = [1.0]\ntitle = \"\"",
        2,
        9,
        "title: must not be empty",
    );
    // TOML syntax errors point into the body.
    let e = parse(&block("cell softmax", "input = [1.0]\ntemperature = = 2")).unwrap_err();
    assert_eq!(e.line, 11, "{e}");
    assert!(
        e.column >= 14 && e.message.starts_with("cell 'softmax': invalid TOML:"),
        "{e}"
    );
    let e = parse(&block("cell softmax", "input = [1.0]\ninput = [2.0]")).unwrap_err();
    assert_eq!((e.line, e.column), (11, 1), "{e}");
}

#[test]
fn show_errors() {
    let c = |s: &str| format!("input = [1.0]\nshow = {s}");
    assert_block_err(
        "cell softmax",
        &c("\"bars\""),
        2,
        8,
        "show: expected a list of views",
    );
    assert_block_err("cell softmax", &c("[]"), 2, 8, "show: the list is empty");
    assert_block_err(
        "cell softmax",
        &c("[\"bars\", \"bar\"]"),
        2,
        17,
        "show: unknown view 'bar' (expected one of: bars, line, heatmap, table, check, roofline)",
    );
    assert_block_err(
        "cell softmax",
        &c("[\"line\", \"line\"]"),
        2,
        17,
        "show: 'line' is listed twice",
    );
    assert_block_err(
        "cell softmax",
        &c("[1]"),
        2,
        9,
        "show: expected a string, found integer",
    );
}

#[test]
fn kernel_and_roofline_keys() {
    use crate::ops::KernelVariant::{Fast, Simple};
    // No kernel key: none set, no roofline.
    let c = cell("softmax", "input = [1.0]");
    assert_eq!((c.kernel.clone(), c.roofline.clone()), (None, None));
    // A fixed kernel.
    let c = cell("softmax", "input = [1.0]\nkernel = \"simple\"");
    assert_eq!(
        c.kernel,
        Some(KernelSetting {
            default: Simple,
            choices: vec![]
        })
    );
    // A choice; the default is the one written, else fast.
    let c = cell(
        "softmax",
        "input = [1.0]\nkernel = { choices = [\"simple\", \"fast\"], default = \"simple\" }",
    );
    let k = c.kernel.clone().unwrap();
    assert_eq!((k.default, k.choices), (Simple, vec![Simple, Fast]));
    let c = cell(
        "softmax",
        "input = [1.0]\nkernel = { choices = [\"simple\", \"fast\"] }",
    );
    assert_eq!(c.kernel.unwrap().default, Fast);
    // The roofline view without a roofline key measures the cell's kernels at its own input.
    let c = cell(
        "softmax",
        "input = [1.0]\nkernel = { choices = [\"simple\", \"fast\"] }\nshow = [\"roofline\", \"check\"]",
    );
    assert_eq!(c.show, vec![View::Roofline, View::Check]);
    assert_eq!(
        c.roofline,
        Some(RooflineSpec {
            size: None,
            kernels: vec![Simple, Fast]
        })
    );
    let c = cell(
        "softmax",
        "input = [1.0]\nkernel = \"simple\"\nshow = [\"roofline\"]",
    );
    assert_eq!(c.roofline.unwrap().kernels, vec![Simple]);
    let c = cell("sigmoid", "input = [1.0]\nshow = [\"roofline\"]");
    assert_eq!(c.roofline.unwrap().kernels, vec![Fast]);
    // Both keys given.
    let c = cell(
        "softmax",
        "input = [1.0]\nshow = [\"roofline\"]\nroofline = { size = [4096, 32000], kernels = [\"fast\", \"simple\"] }",
    );
    assert_eq!(
        c.roofline,
        Some(RooflineSpec {
            size: Some(vec![4096, 32000]),
            kernels: vec![Fast, Simple]
        })
    );
    // Cross-entropy's targets are made up at the size measured.
    let c = cell(
        "vocab_parallel_cross_entropy",
        "input = [[1.0, 2.0]]\ninputs = { targets = [1] }\nshow = [\"roofline\"]\nroofline = { size = [4096, 50304] }",
    );
    assert_eq!(c.roofline.unwrap().size, Some(vec![4096, 50304]));
}

#[test]
fn small_roofline_shapes_keep_the_row() {
    let small = RooflineSpec::small_shape;
    assert_eq!(small(&[4096, 32000]), vec![32, 32000]);
    assert_eq!(small(&[16, 4096, 32, 128]), vec![1, 256, 32, 128]);
    assert_eq!(small(&[8192, 50304]), vec![16, 50304]);
    assert_eq!(small(&[8, 600]), vec![8, 600], "small shapes stay");
    assert_eq!(small(&[1 << 22]), vec![1 << 22], "a lone row is kept");
    assert_eq!(small(&[3, 1 << 22]), vec![1, 1 << 22]);
    for shape in [
        vec![4096, 32000],
        vec![16, 4096, 32, 128],
        vec![100, 100, 100],
    ] {
        let n: usize = small(&shape).iter().product();
        assert!(n <= RooflineSpec::SMALL_ELEMENTS, "{shape:?}");
    }
}

#[test]
fn kernel_and_roofline_errors() {
    let c = |s: &str| format!("input = [1.0]\n{s}");
    assert_block_err(
        "cell softmax",
        &c("kernel = \"turbo\""),
        2,
        10,
        "kernel: 'turbo' is not a kernel (expected one of: simple, fast)",
    );
    assert_block_err(
        "cell softmax",
        &c("kernel = 1"),
        2,
        10,
        "kernel: expected \"simple\", \"fast\" or a choice",
    );
    assert_block_err(
        "cell softmax",
        &c("kernel = { choices = [\"simple\"] }"),
        2,
        22,
        "kernel: choices: expected at least 2 of: simple, fast",
    );
    assert_block_err(
        "cell softmax",
        &c("kernel = { choices = [\"simple\", \"simple\"] }"),
        2,
        33,
        "kernel: choices: 'simple' is listed twice",
    );
    assert_block_err(
        "cell softmax",
        &c("kernel = { choices = [\"simple\", \"fastest\"] }"),
        2,
        33,
        "kernel: choices: 'fastest' is not a kernel",
    );
    assert_block_err(
        "cell softmax",
        &c("kernel = { default = \"simple\" }"),
        2,
        10,
        "kernel: a choice needs choices",
    );
    assert_block_err(
        "cell softmax",
        &c("kernel = { choices = [\"simple\", \"fast\"], options = 1 }"),
        2,
        42,
        "kernel: choice: unknown key 'options' (expected one of: choices, default)",
    );
    // A roofline key on a cell that does not show the view.
    assert_block_err(
        "cell softmax",
        &c("roofline = { size = [4, 8] }"),
        2,
        1,
        "roofline: this cell does not show the roofline view (add \"roofline\" to show)",
    );
    let r = |s: &str| format!("input = [1.0]\nshow = [\"roofline\"]\n{s}");
    assert_block_err(
        "cell softmax",
        &r("roofline = [4, 8]"),
        3,
        12,
        "roofline: expected { size = [4096, 32000], kernels = [\"simple\", \"fast\"] }, found array",
    );
    assert_block_err(
        "cell softmax",
        &r("roofline = { sizes = [4, 8] }"),
        3,
        14,
        "roofline: unknown key 'sizes' (expected one of: size, kernels)",
    );
    assert_block_err(
        "cell softmax",
        &r("roofline = { size = [4, 0] }"),
        3,
        25,
        "roofline: size: sizes are whole numbers >= 1",
    );
    assert_block_err(
        "cell softmax",
        &r("roofline = { size = [65536, 65536] }"),
        3,
        21,
        "roofline: size [65536, 65536] holds more than the limit of 536870912 values (2^29)",
    );
    assert_block_err(
        "cell softmax",
        &r("roofline = { kernels = [] }"),
        3,
        24,
        "roofline: kernels: expected at least 1 of: simple, fast",
    );
    assert_block_err(
        "cell softmax",
        &r("roofline = { kernels = [\"fast\", \"slow\"] }"),
        3,
        33,
        "roofline: kernels: 'slow' is not a kernel (expected one of: simple, fast)",
    );
    // Ops whose other inputs cannot be made up at another size.
    assert_block_err(
        "cell linear",
        "input = [[1.0, 2.0]]\ninputs = { w = [[1.0, 2.0]] }\nshow = [\"roofline\"]\nroofline = { size = [4096, 4096] }",
        4,
        14,
        "roofline: size: linear needs its input 'w' at the size measured",
    );
    assert_block_err(
        "cell rope_freqs",
        "input = [1.0]\nshow = [\"roofline\"]\nroofline = { size = [4096] }",
        3,
        14,
        "input 'positions' holds integers",
    );
}

#[test]
fn float_param_errors() {
    let c = |s: &str| format!("input = [1.0]\ntemperature = {s}");
    assert_block_err(
        "cell softmax",
        &c("\"hot\""),
        2,
        15,
        "temperature: expected a number or a slider { min, max, default, log }, found string",
    );
    assert_block_err(
        "cell softmax",
        &c("0"),
        2,
        15,
        "temperature: 0 is outside the range softmax accepts [0.001, 1000]",
    );
    assert_block_err(
        "cell softmax",
        &c("nan"),
        2,
        15,
        "temperature: expected a finite number, found NaN",
    );
    assert_block_err(
        "cell softmax",
        &c("{ min = 0.1, max = 2, step = 1 }"),
        2,
        37,
        "temperature: slider: unknown key 'step' (expected one of: min, max, default, log)",
    );
    assert_block_err(
        "cell softmax",
        &c("{ max = 2 }"),
        2,
        15,
        "temperature: a slider needs min",
    );
    assert_block_err(
        "cell softmax",
        &c("{ min = 0.1 }"),
        2,
        15,
        "temperature: a slider needs max",
    );
    assert_block_err(
        "cell softmax",
        &c("{ min = 2, max = 2 }"),
        2,
        17,
        "temperature: min 2 must be < max 2",
    );
    assert_block_err(
        "cell softmax",
        &c("{ min = 0, max = 2, log = true }"),
        2,
        17,
        "temperature: min 0 must be > 0 for a log slider",
    );
    assert_block_err(
        "cell softmax",
        &c("{ min = 0, max = 2 }"),
        2,
        17,
        "min 0 must be > 0 for a log slider (the temperature slider is logarithmic unless log = false)",
    );
    assert_block_err(
        "cell softmax",
        &c("{ min = 0, max = 2, log = false }"),
        2,
        17,
        "temperature: min 0 is below the smallest value softmax accepts (0.001)",
    );
    assert_block_err(
        "cell softmax",
        &c("{ min = 1, max = 2000 }"),
        2,
        26,
        "temperature: max 2000 is above the largest value softmax accepts (1000)",
    );
    assert_block_err(
        "cell softmax",
        &c("{ min = 1, max = 2, default = 3 }"),
        2,
        35,
        "temperature: default 3 must lie between min 1 and max 2",
    );
    assert_block_err(
        "cell softmax",
        &c("{ min = 2, max = 3 }"),
        2,
        15,
        "temperature: the slider needs a default (expected default = a value between 2 and 3)",
    );
    assert_block_err(
        "cell logit",
        "input = [1.0]\neps = { min = 0, max = 0.1 }",
        2,
        7,
        "eps: the slider needs a default",
    );
    assert_block_err(
        "cell softmax",
        &c("{ min = \"a\", max = 3 }"),
        2,
        23,
        "temperature: min: expected a number, found string",
    );
    assert_block_err(
        "cell softmax",
        &c("{ min = 1, max = inf }"),
        2,
        32,
        "temperature: max: expected a finite number, found inf",
    );
    assert_block_err(
        "cell softmax",
        &c("{ min = 1, max = 3, log = 1 }"),
        2,
        41,
        "temperature: log: expected true or false, found integer",
    );
    assert_block_err(
        "cell logit",
        "input = [1.0]\neps = 0.5",
        2,
        7,
        "eps: 0.5 is outside the range logit accepts [0, 0.49]",
    );
}

#[test]
fn bool_and_choice_param_errors() {
    let c = |k: &str, s: &str| format!("input = [1.0]\n{k} = {s}");
    assert_block_err(
        "cell softmax",
        &c("stable", "1"),
        2,
        10,
        "stable: expected true, false or a toggle { default = true }, found integer",
    );
    assert_block_err(
        "cell softmax",
        &c("stable", "{ on = true }"),
        2,
        12,
        "stable: toggle: unknown key 'on' (expected one of: default)",
    );
    assert_block_err(
        "cell softmax",
        &c("stable", "{ default = \"yes\" }"),
        2,
        22,
        "stable: default: expected true or false, found string",
    );
    assert_block_err(
        "cell softmax",
        &c("dtype", "\"f64\""),
        2,
        9,
        "dtype: 'f64' is not a choice of softmax (expected one of: f32, f16, bf16)",
    );
    assert_block_err(
        "cell softmax",
        &c("dtype", "16"),
        2,
        9,
        "dtype: expected a string or a choice { choices = [..], default = .. }, found integer",
    );
    assert_block_err(
        "cell softmax",
        &c("dtype", "{ options = [] }"),
        2,
        11,
        "dtype: choice: unknown key 'options' (expected one of: choices, default)",
    );
    assert_block_err(
        "cell softmax",
        &c("dtype", "{ default = \"f16\" }"),
        2,
        9,
        "dtype: a choice needs choices",
    );
    assert_block_err(
        "cell softmax",
        &c("dtype", "{ choices = \"f16\" }"),
        2,
        21,
        "dtype: choices: expected a list of strings, found string",
    );
    assert_block_err(
        "cell softmax",
        &c("dtype", "{ choices = [\"f16\", 1] }"),
        2,
        29,
        "dtype: choices: expected a string, found integer",
    );
    assert_block_err(
        "cell softmax",
        &c("dtype", "{ choices = [\"f16\", \"fp8\"] }"),
        2,
        29,
        "dtype: 'fp8' is not a choice of softmax (expected a subset of: f32, f16, bf16)",
    );
    assert_block_err(
        "cell softmax",
        &c("dtype", "{ choices = [\"f16\", \"f16\"] }"),
        2,
        29,
        "dtype: 'f16' is listed twice",
    );
    assert_block_err(
        "cell softmax",
        &c("dtype", "{ choices = [\"f16\"] }"),
        2,
        21,
        "dtype: a choice needs at least 2 options; to fix it, write dtype = \"f16\"",
    );
    assert_block_err(
        "cell softmax",
        &c(
            "dtype",
            "{ choices = [\"f16\", \"f32\"], default = \"bf16\" }",
        ),
        2,
        37,
        "dtype: default 'bf16' is not one of the choices (expected one of: f16, f32)",
    );
    assert_block_err(
        "cell softmax",
        &c("dtype", "{ choices = [\"f16\", \"bf16\"] }"),
        2,
        9,
        "dtype: the choice needs a default (expected default = one of: f16, bf16)",
    );
    assert_block_err(
        "cell softmax",
        &c("dtype", "{ choices = [\"f16\", \"f32\"], default = 1 }"),
        2,
        47,
        "dtype: default: expected a string, found integer",
    );
}
