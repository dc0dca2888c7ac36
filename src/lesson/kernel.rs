//! The `kernel` block: which kernel sources to show and which lines to mark, each mark checked
//! against the embedded sources.

use super::KernelSpec;
use super::body::{TomlBody, array, entries, string};
use super::de::Present;
use super::error::{Res, fail};
use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

/// Topics with both a CUDA and a WGSL source.
fn kernel_topics() -> Vec<&'static str> {
    crate::sources::cuda_files()
        .map(|(t, _, _)| t)
        .filter(|t| crate::sources::wgsl(t).is_some())
        .collect()
}

/// The keys of a `kernel` block. The mark lists are read below in the order written; their
/// fields here only declare the keys.
#[derive(Deserialize)]
#[allow(dead_code)]
#[serde(deny_unknown_fields, rename = "")]
struct KernelBody {
    topic: Option<Spanned<String>>,
    marks: Option<Present>,
    cuda_marks: Option<Present>,
    wgsl_marks: Option<Present>,
}

pub(crate) fn parse_kernel(
    (line, col): (usize, usize),
    body: &TomlBody,
    table: &DeTable<'_>,
) -> Res<KernelSpec> {
    let keys: KernelBody = body.read(table, "kernel", (line, col))?;
    let Some(topic) = keys.topic else {
        return fail(
            line,
            col,
            format!(
                "kernel: missing 'topic' (expected topic = one of: {})",
                kernel_topics().join(", ")
            ),
        );
    };
    if !kernel_topics().contains(&topic.get_ref().as_str()) {
        return body.fail(
            &topic.span(),
            format!(
                "kernel: unknown topic '{}' (expected one of: {})",
                topic.get_ref(),
                kernel_topics().join(", ")
            ),
        );
    }
    let mut spec = KernelSpec {
        line,
        topic: topic.into_inner(),
        marks: Vec::new(),
        cuda_marks: Vec::new(),
        wgsl_marks: Vec::new(),
    };
    // The mark lists in the order written.
    let mark_values: Vec<_> = entries(table)
        .into_iter()
        .filter(|(key, _, _)| ["marks", "cuda_marks", "wgsl_marks"].contains(key))
        .map(|(key, _, value)| (key, value))
        .collect();
    if mark_values.is_empty() {
        return Ok(spec);
    }
    let topic_files = |t: &str| {
        let cu = crate::sources::cuda(t).map(|s| (format!("kernels/{t}.cu"), s));
        let wgsl = crate::sources::wgsl(t).map(|s| (format!("shaders/{t}.wgsl"), s));
        (cu, wgsl)
    };
    let (Some((cu_file, cu)), Some((wgsl_file, wgsl))) = topic_files(&spec.topic) else {
        return fail(
            line,
            col,
            format!("kernel: no sources for topic '{}'", spec.topic),
        );
    };
    for (key, value) in mark_values {
        let what = format!("kernel: {key}");
        let a = array(
            body,
            &what,
            "a list of strings found in the kernel sources",
            value,
        )?;
        let mut marks = Vec::new();
        for item in a.iter() {
            let mark = string(body, &what, item)?;
            if mark.trim().is_empty() {
                return body.fail(&item.span(), "kernel: a mark must not be empty");
            }
            let in_cu = cu.lines().any(|l| l.contains(mark));
            let in_wgsl = wgsl.lines().any(|l| l.contains(mark));
            let missing = match (key, in_cu, in_wgsl) {
                ("cuda_marks", false, _) => Some(cu_file.to_string()),
                ("wgsl_marks", _, false) => Some(wgsl_file.to_string()),
                ("marks", false, false) => Some(format!("{cu_file} or {wgsl_file}")),
                ("marks", false, true) => Some(format!(
                    "{cu_file} (it is in {wgsl_file}; a mark must be in both, or in wgsl_marks)"
                )),
                ("marks", true, false) => Some(format!(
                    "{wgsl_file} (it is in {cu_file}; a mark must be in both, or in cuda_marks)"
                )),
                _ => None,
            };
            if let Some(where_) = missing {
                return body.fail(
                    &item.span(),
                    format!("kernel: mark '{mark}' is not found on any line of {where_}"),
                );
            }
            marks.push(mark.to_string());
        }
        match key {
            "cuda_marks" => spec.cuda_marks = marks,
            "wgsl_marks" => spec.wgsl_marks = marks,
            _ => spec.marks = marks,
        }
    }
    Ok(spec)
}
