//! Cell inputs: given values, generated inputs, size limits, and values a learner types.

use super::*;
use crate::lesson::body::TomlBody;
use crate::lesson::cell::parse_cell;

#[test]
fn every_input_form() {
    assert_eq!(
        input("input = [1, -2.5, 1_000.5]"),
        InputSpec::Values(vec![vec![1.0, -2.5, 1000.5]])
    );
    assert_eq!(
        input("input = [[1.0, 2.0], [3.0, 4.0]]"),
        InputSpec::Values(vec![vec![1.0, 2.0], vec![3.0, 4.0]])
    );
    let InputSpec::Values(v) = input(r#"input = ["nan", "inf", "-inf", "+inf", 0.0]"#) else {
        panic!()
    };
    assert!(v[0][0].is_nan());
    assert_eq!(
        &v[0][1..],
        &[f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY, 0.0]
    );
    assert_eq!(
        input("input = { normal = 3.0, rows = 4, cols = 16, seed = 7 }"),
        InputSpec::Normal {
            scale: 3.0,
            rows: 4,
            cols: 16,
            seed: 7
        }
    );
    assert_eq!(
        input("input = { uniform = [0, 1.0], cols = 12 }"),
        InputSpec::Uniform {
            lo: 0.0,
            hi: 1.0,
            rows: 1,
            cols: 12,
            seed: 0
        }
    );
    assert_eq!(
        input("input = { linspace = [-10.0, 10.0], count = 201 }"),
        InputSpec::Linspace {
            from: -10.0,
            to: 10.0,
            count: 201
        }
    );
    assert_eq!(
        input("[input]\nlinspace = [1, 1]\ncount = 1"),
        InputSpec::Linspace {
            from: 1.0,
            to: 1.0,
            count: 1
        }
    );
}

#[test]
fn value_input_errors() {
    let c = |s: &str| format!("input = {s}");
    assert_block_err("cell sigmoid", "", 0, 1, "missing 'input'");
    assert_block_err(
        "cell sigmoid",
        &c("\"1, 2\""),
        1,
        9,
        "input: expected values [1.0, 2.0], rows [[1.0, 2.0], [3.0, 4.0]] or a table",
    );
    assert_block_err("cell sigmoid", &c("[]"), 1, 9, "input: the list is empty");
    assert_block_err(
        "cell sigmoid",
        &c("[[1.0], 2.0]"),
        1,
        17,
        "input: mixes values and rows",
    );
    assert_block_err(
        "cell sigmoid",
        &c("[[1.0], []]"),
        1,
        17,
        "input: row 2 is empty",
    );
    assert_block_err(
        "cell sigmoid",
        &c("[[1.0, 2.0],\n  [3.0]]"),
        2,
        3,
        "input: row 2 has 1 values but row 1 has 2 (rows must be of equal length)",
    );
    assert_block_err(
        "cell sigmoid",
        &c("[1.0, \"big\"]"),
        1,
        15,
        "input: 'big' is not a number (write NaN and infinities as the strings \"nan\", \"inf\", \"-inf\")",
    );
    assert_block_err(
        "cell sigmoid",
        &c("[1.0, inf]"),
        1,
        15,
        "input: found inf; write NaN and infinities as the strings",
    );
    assert_block_err(
        "cell sigmoid",
        &c("[nan]"),
        1,
        10,
        "input: found NaN; write NaN",
    );
    assert_block_err(
        "cell sigmoid",
        &c("[1e39]"),
        1,
        10,
        "input: 1e39 is too large for f32",
    );
    assert_block_err(
        "cell sigmoid",
        &c("[[[1.0]]]"),
        1,
        11,
        "input: expected a number, found array",
    );
    assert_block_err(
        "cell sigmoid",
        &c("[true]"),
        1,
        10,
        "input: expected a number, found boolean",
    );
}

#[test]
fn too_many_values() {
    // A 1 MiB file cannot hold more than MAX_CELL_ELEMENTS values, so call the cell parser
    // directly with a larger body.
    let n = MAX_CELL_ELEMENTS + 1;
    let half = vec!["0"; n / 2 + 1].join(",");
    for text in [
        format!("input = [{}]", vec!["0"; n].join(",")),
        format!("input = [[{half}], [{half}]]"),
    ] {
        let body = TomlBody::new(&[text.as_str()], 10);
        let table = body.parse("cell", (9, 1)).unwrap();
        let e = parse_cell(crate::ops::logits::SIGMOID, (9, 1), &body, &table).unwrap_err();
        assert_eq!((e.line, e.column), (10, 9));
        assert!(
            e.message.contains("more than 1048576 values"),
            "{}",
            e.message
        );
    }
}

#[test]
fn generated_input_errors() {
    let c = |s: &str| format!("input = {{ {s} }}");
    assert_block_err(
        "cell sigmoid",
        &c("rows = 1"),
        1,
        9,
        "input: a table input needs one of normal = SCALE, uniform = [LO, HI], linspace = [FROM, TO]",
    );
    assert_block_err(
        "cell sigmoid",
        &c("normal = 1.0, linspace = [0, 1], cols = 2"),
        1,
        25,
        "input: give only one of normal, uniform, linspace",
    );
    assert_block_err(
        "cell sigmoid",
        &c("normal = 1.0, count = 3"),
        1,
        25,
        "input: 'count' does not belong in a normal input (expected: normal, rows, cols, seed)",
    );
    assert_block_err(
        "cell sigmoid",
        &c("linspace = [0, 1], cols = 3"),
        1,
        30,
        "input: 'cols' does not belong in a linspace input (expected: linspace, count)",
    );
    assert_block_err(
        "cell sigmoid",
        &c("normal = 1.0, rows = 0, cols = 2"),
        1,
        32,
        "input: rows: must be at least 1 (got 0)",
    );
    assert_block_err(
        "cell sigmoid",
        &c("normal = 1.0, cols = 2.5"),
        1,
        32,
        "input: cols: expected a whole number, found float",
    );
    assert_block_err(
        "cell sigmoid",
        &c("normal = 1.0"),
        1,
        9,
        "input: a normal input needs cols",
    );
    assert_block_err(
        "cell sigmoid",
        &c("uniform = [0, 1], rows = 2"),
        1,
        9,
        "input: a uniform input needs cols",
    );
    assert_block_err(
        "cell sigmoid",
        &c("linspace = [0, 1]"),
        1,
        9,
        "input: a linspace input needs count",
    );
    assert_block_err(
        "cell sigmoid",
        &c("linspace = [0, 1], count = 0"),
        1,
        38,
        "input: count: must be at least 1 (got 0)",
    );
    assert_block_err(
        "cell sigmoid",
        &c("linspace = [0, 1], count = 1048577"),
        1,
        38,
        "input: count: 1048577 is more than the limit of 1048576 values in one cell",
    );
    assert_block_err(
        "cell sigmoid",
        &c("normal = 1.0, rows = 1024, cols = 1025"),
        1,
        9,
        "input: 1024 x 1025 values is more than the limit of 1048576",
    );
    assert_block_err(
        "cell sigmoid",
        &c("normal = 1.0, rows = 1000000, cols = 1000000"),
        1,
        9,
        "input: 1000000 x 1000000 values is more than the limit",
    );
    assert_block_err(
        "cell sigmoid",
        &c("normal = 1.0, rows = 2000000, cols = 1"),
        1,
        32,
        "input: rows: 2000000 is more than the limit of 1048576 values in one cell",
    );
    assert_block_err(
        "cell sigmoid",
        &c("normal = 1.0, cols = 2, seed = -1"),
        1,
        42,
        "input: seed: must be at least 0 (got -1)",
    );
    assert_block_err(
        "cell sigmoid",
        &c("normal = 0, cols = 2"),
        1,
        20,
        "input: normal = 0 must be > 0",
    );
    assert_block_err(
        "cell sigmoid",
        &c("normal = -2, cols = 2"),
        1,
        20,
        "must be > 0 (it is the standard deviation)",
    );
    assert_block_err(
        "cell sigmoid",
        &c("normal = \"3\", cols = 2"),
        1,
        20,
        "input: normal: expected a number, found string",
    );
    assert_block_err(
        "cell sigmoid",
        &c("normal = 1e39, cols = 2"),
        1,
        20,
        "input: normal: 1e39 is too large for f32",
    );
    assert_block_err(
        "cell sigmoid",
        &c("uniform = [1, 0], cols = 2"),
        1,
        21,
        "input: uniform = [1, 0] needs LO < HI with a finite width",
    );
    assert_block_err(
        "cell sigmoid",
        &c("uniform = [-3e38, 3e38], cols = 2"),
        1,
        21,
        "needs LO < HI with a finite width",
    );
    assert_block_err(
        "cell sigmoid",
        &c("uniform = [0, 1, 2], cols = 2"),
        1,
        21,
        "input: uniform: expected two numbers [A, B], found 3 values",
    );
    assert_block_err(
        "cell sigmoid",
        &c("uniform = 1, cols = 2"),
        1,
        21,
        "input: uniform: expected two numbers [A, B], found integer",
    );
    assert_block_err(
        "cell sigmoid",
        &c("linspace = [0, nan], count = 2"),
        1,
        26,
        "input: linspace: expected a finite number, found NaN",
    );
}

#[test]
fn typed_values_follow_the_lesson_rules() {
    assert_eq!(
        parse_typed_values("[1, 2.5]").unwrap(),
        vec![vec![1.0, 2.5]]
    );
    let v = parse_typed_values("[nan, \"inf\", -inf]").unwrap();
    assert!(v[0][0].is_nan() && v[0][1] == f32::INFINITY && v[0][2] == f32::NEG_INFINITY);
    let e = parse_typed_values("[[1, 2], [3]]").unwrap_err();
    assert!(
        e.contains("row 2 has 1 values") && e.contains("at character 10"),
        "{e}"
    );
    assert!(
        parse_typed_values("[1e39]")
            .unwrap_err()
            .contains("too large for f32")
    );
    assert!(
        parse_typed_values("[1, [2]]")
            .unwrap_err()
            .contains("mixes values and rows")
    );
    assert!(
        parse_typed_values("[1,")
            .unwrap_err()
            .starts_with("not a list of numbers")
    );
}
