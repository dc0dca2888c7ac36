//! The semantics of a `cell OP` block: which keys an op's cell takes, each parameter as a fixed
//! value or a widget (slider, toggle, choice) held inside the op's own bounds (`OpKind::params`),
//! the views it shows, its kernel, roofline and sweep settings, shapes and the op's other inputs.
//! The input values themselves are read by `input.rs`.

use super::body::{
    TomlBody, array, entries, finite_number, get, key_span, nonempty_string, string,
};
use super::de::{Finite, Flag, Present};
use super::error::{Res, fail, num};
use super::input::{parse_input, parse_shape};
use super::{
    CellSpec, Control, ExtraInput, InputSpec, KernelSetting, ParamControl, ParamValue,
    RooflineSpec, SweepSpec, View,
};
use crate::ops::{KernelVariant, OpKind, ParamKind, ParamSpec};
use serde::Deserialize;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The views a cell shows when its `show` key is absent.
const DEFAULT_SHOW: [View; 2] = [View::Bars, View::Check];

pub(crate) fn parse_cell(
    op: OpKind,
    (line, col): (usize, usize),
    body: &TomlBody,
    table: &DeTable<'_>,
) -> Res<CellSpec> {
    let specs = op.params();
    let decls = op.inputs();
    let mut allowed = vec![
        "title", "input", "show", "shape", "sweep", "kernel", "roofline",
    ];
    if decls.len() > 1 {
        allowed.extend(["inputs", "shapes"]);
    }
    allowed.extend(specs.iter().map(|s| s.name));
    let mut title = None;
    let mut input = None;
    let mut show = None;
    let mut shape: Option<(Vec<usize>, Range<usize>)> = None;
    let mut sweep: Option<(SweepSpec, Range<usize>)> = None;
    let mut kernel: Option<KernelSetting> = None;
    let mut roofline: Option<(&Spanned<DeValue<'_>>, Range<usize>)> = None;
    let mut extra: Vec<(String, InputSpec, Range<usize>)> = Vec::new();
    let mut shapes: Vec<(String, Vec<usize>, Range<usize>)> = Vec::new();
    let mut given: Vec<Option<ParamControl>> = vec![None; specs.len()];
    for (key, span, value) in entries(table) {
        match key {
            "title" => title = Some(nonempty_string(body, "title", value)?),
            "input" => input = Some(parse_input(body, value)?),
            "show" => show = Some(parse_show(op, body, value)?),
            "shape" => shape = Some((parse_shape(body, "shape", value)?, value.span())),
            "sweep" => sweep = Some((parse_sweep(op, body, value)?, value.span())),
            "kernel" => kernel = Some(parse_kernel_setting(body, value)?),
            "roofline" => roofline = Some((value, span)),
            "inputs" | "shapes" if decls.len() > 1 => {
                let DeValue::Table(t) = value.get_ref() else {
                    return body.fail(
                        &value.span(),
                        format!(
                            "{key}: expected a table by input name, e.g. {key} = {{ {} = ... }}",
                            decls[1].name
                        ),
                    );
                };
                for (name, name_span, item) in entries(t) {
                    if !decls[1..].iter().any(|d| d.name == name) {
                        return body.fail(
                            &name_span,
                            format!(
                                "{key}: '{name}' is not an input of {op} (its other inputs: {})",
                                decls[1..]
                                    .iter()
                                    .map(|d| d.name)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                    }
                    if key == "inputs" {
                        extra.push((name.to_string(), parse_input(body, item)?, name_span));
                    } else {
                        let dims = parse_shape(body, &format!("shapes.{name}"), item)?;
                        shapes.push((name.to_string(), dims, item.span()));
                    }
                }
            }
            _ => {
                let slot = specs
                    .iter()
                    .zip(given.iter_mut())
                    .find(|(s, _)| s.name == key);
                let Some((spec, slot)) = slot else {
                    return body.fail(
                        &span,
                        format!(
                            "cell '{op}': '{key}' is not a parameter of {op} (expected one of: {})",
                            allowed.join(", ")
                        ),
                    );
                };
                *slot = Some(parse_param(op, spec, body, value)?);
            }
        }
    }
    let Some(input) = input else {
        return fail(
            line,
            col,
            format!(
                "cell '{op}': missing 'input' (expected input = [values] for one row, [[..], [..]] for several, or a table with normal, uniform or linspace)"
            ),
        );
    };
    let params: Vec<ParamControl> = specs
        .iter()
        .zip(given)
        .map(|(spec, g)| {
            g.unwrap_or_else(|| ParamControl {
                name: spec.name,
                default: op_default(spec),
                control: Control::Fixed,
            })
        })
        .collect();
    if let Some((dims, span)) = &shape {
        check_shape_holds(body, "shape", dims, input.len(), span)?;
    }
    if let Some((sw, span)) = &sweep {
        check_sweep_range(body, sw, span, &params)?;
    }
    for (name, dims, span) in &shapes {
        let Some((_, spec, _)) = extra.iter().find(|(n, _, _)| n == name) else {
            return body.fail(
                span,
                format!("shapes.{name}: there is no inputs.{name} to reshape"),
            );
        };
        check_shape_holds(body, &format!("shapes.{name}"), dims, spec.len(), span)?;
    }
    for decl in &decls[1..] {
        if !decl.optional && !extra.iter().any(|(n, _, _)| n == decl.name) {
            return fail(
                line,
                col,
                format!("cell '{op}': missing inputs.{} ({})", decl.name, decl.help),
            );
        }
    }
    let extra = extra
        .into_iter()
        .map(|(name, spec, _)| {
            let dims = shapes
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, d, _)| d.clone());
            ExtraInput {
                name,
                input: spec,
                shape: dims,
            }
        })
        .collect();
    let show = show.unwrap_or_else(|| DEFAULT_SHOW.to_vec());
    let roofline = match roofline {
        Some((_, key_span)) if !show.contains(&View::Roofline) => {
            return body.fail(
                &key_span,
                "roofline: this cell does not show the roofline view (add \"roofline\" to show)",
            );
        }
        Some((value, _)) => Some(parse_roofline(op, kernel.as_ref(), body, value)?),
        None if show.contains(&View::Roofline) => Some(RooflineSpec {
            size: None,
            kernels: default_roofline_kernels(kernel.as_ref()),
        }),
        None => None,
    };
    Ok(CellSpec {
        line,
        op,
        title,
        input,
        shape: shape.map(|(d, _)| d),
        sweep: sweep.map(|(s, _)| s),
        extra,
        params,
        show,
        kernel,
        roofline,
    })
}

fn check_shape_holds(
    body: &TomlBody,
    what: &str,
    dims: &[usize],
    count: usize,
    span: &Range<usize>,
) -> Res<()> {
    let holds = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if holds != Some(count) {
        return body.fail(
            span,
            format!(
                "{what}: {dims:?} holds {} values but the input has {count}",
                holds.map_or("too many".to_string(), |h| h.to_string())
            ),
        );
    }
    Ok(())
}

/// The op's own default for a parameter (an absent optional float is `Absent`).
fn op_default(spec: &ParamSpec) -> ParamValue {
    match spec.kind {
        ParamKind::Float { default, .. } if default.is_nan() => ParamValue::Absent,
        ParamKind::Float { default, .. } => ParamValue::Float(default),
        ParamKind::Bool { default } => ParamValue::Bool(default),
        ParamKind::Choice { default, .. } => ParamValue::Choice(default.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Views, kernels and the roofline.
// ---------------------------------------------------------------------------------------------

fn parse_show(op: OpKind, body: &TomlBody, v: &Spanned<DeValue<'_>>) -> Res<Vec<View>> {
    let names = View::GENERIC
        .into_iter()
        .map(View::name)
        .chain(
            crate::views::all()
                .filter(|t| t.ops.contains(&op))
                .map(|t| t.name),
        )
        .collect::<Vec<_>>()
        .join(", ");
    let a = array(
        body,
        "show",
        &format!("a list of views such as [\"bars\", \"check\"] (views: {names})"),
        v,
    )?;
    if a.is_empty() {
        return body.fail(
            &v.span(),
            format!("show: the list is empty (expected at least one of: {names})"),
        );
    }
    let mut views = Vec::new();
    for item in a.iter() {
        let s = string(body, "show", item)?;
        let Some(view) = View::from_name(s) else {
            return body.fail(
                &item.span(),
                format!("show: unknown view '{s}' (expected one of: {names})"),
            );
        };
        if views.contains(&view) {
            return body.fail(&item.span(), format!("show: '{s}' is listed twice"));
        }
        if let View::Topic(name) = view
            && crate::views::find(name).is_some_and(|t| !t.ops.contains(&op))
        {
            return body.fail(
                &item.span(),
                format!("show: view '{s}' does not apply to {op} (views for {op}: {names})"),
            );
        }
        views.push(view);
    }
    Ok(views)
}

const KERNEL_NAMES: &str = "simple, fast";

/// "simple" or "fast", or an error at the value naming both.
fn kernel_variant(body: &TomlBody, what: &str, v: &Spanned<DeValue<'_>>) -> Res<KernelVariant> {
    let s = string(body, what, v)?;
    KernelVariant::from_name(s).or_else(|_| {
        body.fail(
            &v.span(),
            format!("{what}: '{s}' is not a kernel (expected one of: {KERNEL_NAMES})"),
        )
    })
}

/// A list of distinct kernels: `what = ["simple", "fast"]`, at least `min` of them.
fn kernel_list(
    body: &TomlBody,
    what: &str,
    min: usize,
    v: &Spanned<DeValue<'_>>,
) -> Res<Vec<KernelVariant>> {
    let a = array(
        body,
        what,
        "a list of kernels such as [\"simple\", \"fast\"]",
        v,
    )?;
    let mut list = Vec::new();
    for item in a.iter() {
        let k = kernel_variant(body, what, item)?;
        if list.contains(&k) {
            return body.fail(&item.span(), format!("{what}: '{k}' is listed twice"));
        }
        list.push(k);
    }
    if list.len() < min {
        return body.fail(
            &v.span(),
            format!("{what}: expected at least {min} of: {KERNEL_NAMES}"),
        );
    }
    Ok(list)
}

/// The keys of a kernel choice.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "choice")]
struct KernelChoiceBody {
    choices: Option<Present>,
    default: Option<Present>,
}

/// `kernel = "simple"` (fixed) or `kernel = { choices = ["simple", "fast"], default = "simple" }`.
fn parse_kernel_setting(body: &TomlBody, v: &Spanned<DeValue<'_>>) -> Res<KernelSetting> {
    match v.get_ref() {
        DeValue::String(_) => Ok(KernelSetting {
            default: kernel_variant(body, "kernel", v)?,
            choices: Vec::new(),
        }),
        DeValue::Table(t) => {
            let keys: KernelChoiceBody = body.read_value(v, "kernel")?;
            let choices = match (keys.choices, get(t, "choices")) {
                (Some(Present), Some(item)) => kernel_list(body, "kernel: choices", 2, item)?,
                _ => {
                    return body.fail(
                        &v.span(),
                        "kernel: a choice needs choices (expected { choices = [\"simple\", \"fast\"], default = \"simple\" })",
                    );
                }
            };
            let default = match (keys.default, get(t, "default")) {
                (Some(Present), Some(item)) => {
                    let d = kernel_variant(body, "kernel: default", item)?;
                    if !choices.contains(&d) {
                        return body.fail(
                            &item.span(),
                            format!("kernel: default '{d}' is not one of the choices"),
                        );
                    }
                    d
                }
                _ if choices.contains(&KernelVariant::default()) => KernelVariant::default(),
                _ => choices[0],
            };
            Ok(KernelSetting { default, choices })
        }
        other => body.fail(
            &v.span(),
            format!(
                "kernel: expected \"simple\", \"fast\" or a choice {{ choices = [..], default = .. }}, found {}",
                other.type_str()
            ),
        ),
    }
}

/// The kernels a roofline measures when the lesson does not list them: the cell's choices, its
/// fixed kernel, or the default one.
fn default_roofline_kernels(kernel: Option<&KernelSetting>) -> Vec<KernelVariant> {
    match kernel {
        Some(k) if !k.choices.is_empty() => k.choices.clone(),
        Some(k) => vec![k.default],
        None => vec![KernelVariant::default()],
    }
}

/// The keys of a roofline table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "")]
struct RooflineBody {
    size: Option<Present>,
    kernels: Option<Present>,
}

/// `roofline = { size = [4096, 32000], kernels = ["simple", "fast"] }`, both keys optional.
fn parse_roofline(
    op: OpKind,
    kernel: Option<&KernelSetting>,
    body: &TomlBody,
    v: &Spanned<DeValue<'_>>,
) -> Res<RooflineSpec> {
    let DeValue::Table(t) = v.get_ref() else {
        return body.fail(
            &v.span(),
            format!(
                "roofline: expected {{ size = [4096, 32000], kernels = [\"simple\", \"fast\"] }}, found {}",
                v.get_ref().type_str()
            ),
        );
    };
    let keys: RooflineBody = body.read_value(v, "roofline")?;
    let mut spec = RooflineSpec {
        size: None,
        kernels: default_roofline_kernels(kernel),
    };
    if let (Some(Present), Some(item)) = (keys.size, get(t, "size")) {
        let dims = parse_shape(body, "roofline: size", item)?;
        let total = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if total.is_none_or(|n| n > crate::ops::MAX_ELEMENTS) {
            return body.fail(
                &item.span(),
                format!(
                    "roofline: size {dims:?} holds more than the limit of {} values (2^29)",
                    crate::ops::MAX_ELEMENTS
                ),
            );
        }
        if let Err(why) = RooflineSpec::check_size(op) {
            return body.fail(
                &key_span(t, "size", v.span()),
                format!("roofline: size: {why}"),
            );
        }
        spec.size = Some(dims);
    }
    if let (Some(Present), Some(item)) = (keys.kernels, get(t, "kernels")) {
        spec.kernels = kernel_list(body, "roofline: kernels", 1, item)?;
    }
    Ok(spec)
}

// ---------------------------------------------------------------------------------------------
// Sweeps.
// ---------------------------------------------------------------------------------------------

/// The keys of a sweep, all required.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "")]
struct SweepBody {
    param: Option<Spanned<String>>,
    from: Option<Finite>,
    to: Option<Finite>,
    seconds: Option<Spanned<Finite>>,
}

/// `sweep = { param = "temperature", from = 10.0, to = 0.05, seconds = 8.0 }`.
fn parse_sweep(op: OpKind, body: &TomlBody, v: &Spanned<DeValue<'_>>) -> Res<SweepSpec> {
    if !v.get_ref().is_table() {
        return body.fail(
            &v.span(),
            "sweep: expected { param = \"temperature\", from = 10.0, to = 0.05, seconds = 8.0 }",
        );
    }
    let keys: SweepBody = body.read_value(v, "sweep")?;
    let (Some(param), Some(from), Some(to), Some(seconds)) =
        (keys.param, keys.from, keys.to, keys.seconds)
    else {
        return body.fail(&v.span(), "sweep: needs all of param, from, to, seconds");
    };
    let name = param.get_ref();
    let Some(spec) = op.params().iter().find(|s| s.name == name) else {
        return body.fail(
            &param.span(),
            format!("sweep: {op} has no parameter '{name}'"),
        );
    };
    let s = seconds.get_ref().0;
    if !(s > 0.0 && s <= 600.0) {
        return body.fail(
            &seconds.span(),
            format!("sweep: seconds = {} must be in (0, 600]", num(s)),
        );
    }
    Ok(SweepSpec {
        param: spec.name,
        from: from.0,
        to: to.0,
        seconds: s,
    })
}

/// A sweep moves one of the cell's sliders, inside its range.
fn check_sweep_range(
    body: &TomlBody,
    sw: &SweepSpec,
    span: &Range<usize>,
    params: &[ParamControl],
) -> Res<()> {
    let control = params
        .iter()
        .find(|p| p.name == sw.param)
        .map(|p| p.control.clone());
    let Some(Control::Slider { min, max, .. }) = control else {
        return body.fail(
            span,
            format!(
                "sweep: {} is not a slider in this cell (give it {{ min, max, default }} first)",
                sw.param
            ),
        );
    };
    for (what, v) in [("from", sw.from), ("to", sw.to)] {
        if v < min || v > max {
            return body.fail(
                span,
                format!(
                    "sweep: {what} = {} is outside the {} slider's range [{}, {}]",
                    num(v),
                    sw.param,
                    num(min),
                    num(max)
                ),
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Parameters: a fixed value, or a slider, toggle or choice.
// ---------------------------------------------------------------------------------------------

fn parse_param(
    op: OpKind,
    spec: &ParamSpec,
    body: &TomlBody,
    v: &Spanned<DeValue<'_>>,
) -> Res<ParamControl> {
    let name = spec.name;
    let fixed = |default| {
        Ok(ParamControl {
            name,
            default,
            control: Control::Fixed,
        })
    };
    match (spec.kind, v.get_ref()) {
        (
            ParamKind::Float {
                min, max, integer, ..
            },
            DeValue::Integer(_) | DeValue::Float(_),
        ) => {
            let x = finite_number(body, name, v)?;
            if integer && x.fract() != 0.0 {
                return body.fail(
                    &v.span(),
                    format!("{name}: {} is not a whole number", num(x)),
                );
            }
            if x < min || x > max {
                return body.fail(
                    &v.span(),
                    format!(
                        "{name}: {} is outside the range {op} accepts [{}, {}]",
                        num(x),
                        num(min),
                        num(max)
                    ),
                );
            }
            fixed(ParamValue::Float(x))
        }
        (
            ParamKind::Float {
                min,
                max,
                default,
                log_scale,
                ..
            },
            DeValue::Table(t),
        ) => parse_slider(op, name, (min, max, default, log_scale), body, v, t),
        (ParamKind::Float { .. }, other) => body.fail(
            &v.span(),
            format!(
                "{name}: expected a number or a slider {{ min, max, default, log }}, found {}",
                other.type_str()
            ),
        ),
        (ParamKind::Bool { .. }, DeValue::Boolean(b)) => fixed(ParamValue::Bool(*b)),
        (ParamKind::Bool { default }, DeValue::Table(_)) => {
            let toggle: ToggleBody = body.read_value(v, name)?;
            Ok(ParamControl {
                name,
                default: ParamValue::Bool(toggle.default.map_or(default, |f| f.0)),
                control: Control::Toggle,
            })
        }
        (ParamKind::Bool { .. }, other) => body.fail(
            &v.span(),
            format!(
                "{name}: expected true, false or a toggle {{ default = true }}, found {}",
                other.type_str()
            ),
        ),
        (ParamKind::Choice { choices, .. }, DeValue::String(s)) => {
            if !choices.contains(&&**s) {
                return body.fail(
                    &v.span(),
                    format!(
                        "{name}: '{s}' is not a choice of {op} (expected one of: {})",
                        choices.join(", ")
                    ),
                );
            }
            fixed(ParamValue::Choice(s.to_string()))
        }
        (ParamKind::Choice { choices, default }, DeValue::Table(t)) => {
            parse_choice(op, name, choices, default, body, v, t)
        }
        (ParamKind::Choice { .. }, other) => body.fail(
            &v.span(),
            format!(
                "{name}: expected a string or a choice {{ choices = [..], default = .. }}, found {}",
                other.type_str()
            ),
        ),
    }
}

/// The keys of a toggle.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "toggle")]
struct ToggleBody {
    default: Option<Flag>,
}

/// The keys of a slider.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "slider")]
struct SliderBody {
    min: Option<Finite>,
    max: Option<Finite>,
    default: Option<Finite>,
    log: Option<Flag>,
}

/// A slider `{ min, max, default, log }` inside the op's bounds `(min, max, default, log_scale)`.
fn parse_slider(
    op: OpKind,
    name: &'static str,
    (op_min, op_max, op_default, log_hint): (f64, f64, f64, bool),
    body: &TomlBody,
    v: &Spanned<DeValue<'_>>,
    t: &DeTable<'_>,
) -> Res<ParamControl> {
    let keys: SliderBody = body.read_value(v, name)?;
    // Range errors point at the key that is out of place.
    let at = |key: &str| key_span(t, key, v.span());
    let Some(Finite(lo)) = keys.min else {
        return body.fail(
            &v.span(),
            format!("{name}: a slider needs min (expected {{ min, max, default, log }})"),
        );
    };
    let Some(Finite(hi)) = keys.max else {
        return body.fail(
            &v.span(),
            format!("{name}: a slider needs max (expected {{ min, max, default, log }})"),
        );
    };
    if lo >= hi {
        return body.fail(
            &at("min"),
            format!("{name}: min {} must be < max {}", num(lo), num(hi)),
        );
    }
    let log_on = keys.log.map_or(log_hint, |f| f.0);
    if log_on && lo <= 0.0 {
        let hint = if keys.log.is_none() {
            format!(" (the {name} slider is logarithmic unless log = false)")
        } else {
            String::new()
        };
        return body.fail(
            &at("min"),
            format!("{name}: min {} must be > 0 for a log slider{hint}", num(lo)),
        );
    }
    if lo < op_min {
        return body.fail(
            &at("min"),
            format!(
                "{name}: min {} is below the smallest value {op} accepts ({})",
                num(lo),
                num(op_min)
            ),
        );
    }
    if hi > op_max {
        return body.fail(
            &at("max"),
            format!(
                "{name}: max {} is above the largest value {op} accepts ({})",
                num(hi),
                num(op_max)
            ),
        );
    }
    let value = match keys.default {
        Some(Finite(d)) => {
            if d < lo || d > hi {
                return body.fail(
                    &at("default"),
                    format!(
                        "{name}: default {} must lie between min {} and max {}",
                        num(d),
                        num(lo),
                        num(hi)
                    ),
                );
            }
            d
        }
        None if op_default.is_finite() && lo <= op_default && op_default <= hi => op_default,
        None => {
            return body.fail(
                &v.span(),
                format!(
                    "{name}: the slider needs a default (expected default = a value between {} and {})",
                    num(lo),
                    num(hi)
                ),
            );
        }
    };
    Ok(ParamControl {
        name,
        default: ParamValue::Float(value),
        control: Control::Slider {
            min: lo,
            max: hi,
            log: log_on,
        },
    })
}

/// The keys of a choice.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "choice")]
struct ChoiceBody {
    choices: Option<Present>,
    default: Option<String>,
}

/// A choice `{ choices = [..], default = .. }` among the op's choices.
fn parse_choice(
    op: OpKind,
    name: &'static str,
    op_choices: &[&str],
    op_default: &str,
    body: &TomlBody,
    v: &Spanned<DeValue<'_>>,
    t: &DeTable<'_>,
) -> Res<ParamControl> {
    let keys: ChoiceBody = body.read_value(v, name)?;
    let (Some(Present), Some(item)) = (keys.choices, get(t, "choices")) else {
        return body.fail(
            &v.span(),
            format!("{name}: a choice needs choices (expected {{ choices = [..], default = .. }})"),
        );
    };
    let what = format!("{name}: choices");
    let a = array(body, &what, "a list of strings", item)?;
    let mut choices: Vec<String> = Vec::new();
    for c in a.iter() {
        let s = string(body, &what, c)?;
        if !op_choices.contains(&s) {
            return body.fail(
                &c.span(),
                format!(
                    "{name}: '{s}' is not a choice of {op} (expected a subset of: {})",
                    op_choices.join(", ")
                ),
            );
        }
        if choices.iter().any(|l| l == s) {
            return body.fail(&c.span(), format!("{name}: '{s}' is listed twice"));
        }
        choices.push(s.to_string());
    }
    if choices.len() < 2 {
        let fix = match choices.first() {
            Some(only) => format!("; to fix it, write {name} = \"{only}\""),
            None => String::new(),
        };
        return body.fail(
            &item.span(),
            format!("{name}: a choice needs at least 2 options{fix}"),
        );
    }
    let value = match keys.default {
        Some(d) => {
            if !choices.contains(&d) {
                return body.fail(
                    &key_span(t, "default", v.span()),
                    format!(
                        "{name}: default '{d}' is not one of the choices (expected one of: {})",
                        choices.join(", ")
                    ),
                );
            }
            d
        }
        None if choices.iter().any(|c| c == op_default) => op_default.to_string(),
        None => {
            return body.fail(
                &v.span(),
                format!(
                    "{name}: the choice needs a default (expected default = one of: {})",
                    choices.join(", ")
                ),
            );
        }
    };
    Ok(ParamControl {
        name,
        default: ParamValue::Choice(value),
        control: Control::Choice { choices },
    })
}
