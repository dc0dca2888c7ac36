//! The predict block: questions with choices, numeric answers, `answer_from` selectors read
//! from a cell's results, tolerances and scoring, and the reveal.

use super::*;

#[test]
fn predict_errors() {
    let p = |q: &str, c: &str, a: &str, e: &str| {
        format!("question = {q}\nchoices = {c}\nanswer = {a}\nexplain = {e}")
    };
    let good = p("\"Q?\"", "[\"a\", \"b\"]", "2", "\"E\"");
    let Block::Predict(spec) = &parse(&block("predict", &good)).unwrap().steps[0].blocks[0] else {
        panic!()
    };
    assert_eq!(spec.line, 9);
    assert_eq!(
        spec.answer,
        Answer::Choice {
            choices: vec!["a".into(), "b".into()],
            right: 1
        }
    );
    assert_block_err(
        "predict",
        &format!("{good}\nhint = \"h\""),
        5,
        1,
        "predict: unknown key 'hint' (expected one of: question, choices, answer, answer_from, tolerance, unit, explain)",
    );
    assert_block_err(
        "predict",
        "choices = [\"a\", \"b\"]\nanswer = 1\nexplain = \"E\"",
        0,
        1,
        "predict: missing 'question'",
    );
    assert_block_err(
        "predict",
        "question = \"Q\"\nanswer = 1\nexplain = \"E\"",
        0,
        1,
        "predict: missing 'choices'",
    );
    assert_block_err(
        "predict",
        "question = \"Q\"\nchoices = [\"a\", \"b\"]\nexplain = \"E\"",
        0,
        1,
        "predict: missing 'answer'",
    );
    assert_block_err(
        "predict",
        "question = \"Q\"\nchoices = [\"a\", \"b\"]\nanswer = 1",
        0,
        1,
        "predict: missing 'explain'",
    );
    assert_block_err(
        "predict",
        &p("\"\"", "[\"a\", \"b\"]", "1", "\"E\""),
        1,
        12,
        "predict: question: must not be empty",
    );
    assert_block_err(
        "predict",
        &p("\"Q\"", "[\"a\"]", "1", "\"E\""),
        2,
        11,
        "predict: expected 2 to 6 choices, found 1",
    );
    assert_block_err(
        "predict",
        &p(
            "\"Q\"",
            "[\"1\", \"2\", \"3\", \"4\", \"5\", \"6\", \"7\"]",
            "1",
            "\"E\"",
        ),
        2,
        11,
        "predict: expected 2 to 6 choices, found 7",
    );
    assert_block_err(
        "predict",
        &p("\"Q\"", "\"a, b\"", "1", "\"E\""),
        2,
        11,
        "predict: choices: expected a list of 2 to 6 strings, found string",
    );
    assert_block_err(
        "predict",
        &p("\"Q\"", "[\"a\", \"a\"]", "1", "\"E\""),
        2,
        17,
        "predict: choice 'a' is listed twice",
    );
    assert_block_err(
        "predict",
        &p("\"Q\"", "[\"a\", 2]", "1", "\"E\""),
        2,
        17,
        "predict: choices: expected a string, found integer",
    );
    assert_block_err(
        "predict",
        &p("\"Q\"", "[\"a\", \"b\"]", "3", "\"E\""),
        3,
        10,
        "predict: answer 3 is out of range (expected 1 to 2, the number of the right choice)",
    );
    assert_block_err(
        "predict",
        &p("\"Q\"", "[\"a\", \"b\"]", "0", "\"E\""),
        3,
        10,
        "predict: answer: must be at least 1 (got 0)",
    );
    assert_block_err(
        "predict",
        &p("\"Q\"", "[\"a\", \"b\"]", "\"1\"", "\"E\""),
        3,
        10,
        "predict: answer: expected a whole number, found string",
    );
    assert_block_err(
        "predict",
        &p("\"Q\"", "[\"a\", \"b\"]", "1", "false"),
        4,
        11,
        "predict: explain: expected a string, found boolean",
    );
}

// ---- numeric answers -------------------------------------------------------------------------

/// The predict block of `text`'s first step.
#[track_caller]
fn predict_of(text: &str) -> PredictSpec {
    match parse(text) {
        Ok(l) => l.steps[0].predict().expect("a predict block").clone(),
        Err(e) => panic!("{e}\n{text}"),
    }
}

/// A numeric predict block (lines 10-) followed by a cell, so that `answer_from` has one.
fn numeric(keys: &str) -> String {
    lesson(&format!(
        "```predict\nquestion = \"Q?\"\n{keys}\nexplain = \"E\"\n```\n```cell softmax\ninput = [1.0, 2.0, 3.0]\n```\n"
    ))
}

#[track_caller]
fn number_of(keys: &str) -> NumberAnswer {
    match predict_of(&numeric(keys)).answer {
        Answer::Number(n) => n,
        other => panic!("{other:?}"),
    }
}

#[test]
fn numeric_answers() {
    let n = number_of("answer = 7.39\ntolerance = { relative = 0.02 }\nunit = \" times \"");
    assert_eq!(n.truth, Truth::Fixed(7.39));
    assert_eq!(
        n.tolerance,
        NumberTolerance::Within {
            relative: 0.02,
            absolute: 0.0
        }
    );
    assert_eq!(n.unit.as_deref(), Some("times"));
    assert_eq!(n.fixed(), Some(7.39));
    let n = number_of("answer = 3\ntolerance = { absolute = 0.5, relative = 0.1 }");
    assert_eq!(n.truth, Truth::Fixed(3.0));
    assert_eq!(
        n.tolerance,
        NumberTolerance::Within {
            relative: 0.1,
            absolute: 0.5
        }
    );
    assert_eq!(n.unit, None);
    let n = number_of("answer_from = \"reference[1, 3]\"\ntolerance = { factor = 10 }");
    assert_eq!(
        n.truth,
        Truth::Cell(CellValue::At {
            output: CellOutput {
                source: OutputSource::Reference,
                aux: None
            },
            index: vec![0, 2]
        })
    );
    assert_eq!(n.tolerance, NumberTolerance::Factor(10.0));
    assert_eq!(n.fixed(), None);
}

#[test]
fn selectors_parse_and_print_as_written() {
    use crate::engine::EngineKind;
    let read = |s: &str| match number_of(&format!(
        "answer_from = \"{s}\"\ntolerance = {{ relative = 0.1 }}"
    ))
    .truth
    {
        Truth::Cell(v) => v,
        other => panic!("{other:?}"),
    };
    let cases = [
        ("reference[2, 3]", "reference[2, 3]"),
        ("  cpu [ 1 ,4 ] ", "cpu[1, 4]"),
        ("reference.soft[1, 2]", "reference.soft[1, 2]"),
        ("wgpu.partials[1, 1, 2]", "wgpu.partials[1, 1, 2]"),
        ("nonfinite(wgpu)", "nonfinite(wgpu)"),
        ("nonfinite(reference)", "nonfinite(reference)"),
        ("max(reference.cos)", "max(reference.cos)"),
        ("min(cuda)", "min(cuda)"),
        ("sum(reference)", "sum(reference)"),
        ("max_abs_error(cpu)", "max_abs_error(cpu)"),
        ("max_rel_error(wgpu)", "max_rel_error(wgpu)"),
        ("max_ulp(cuda)", "max_ulp(cuda)"),
        ("failures(cpu)", "failures(cpu)"),
    ];
    for (written, shown) in cases {
        assert_eq!(read(written).to_string(), shown, "{written}");
    }
    assert_eq!(
        read("nonfinite(wgpu)"),
        CellValue::Stat {
            stat: Stat::NonFinite,
            output: CellOutput {
                source: OutputSource::Engine(EngineKind::Wgpu),
                aux: None
            }
        }
    );
    assert_eq!(
        read("cpu.soft[2]"),
        CellValue::At {
            output: CellOutput {
                source: OutputSource::Engine(EngineKind::Cpu),
                aux: Some("soft".into())
            },
            index: vec![1]
        }
    );
}

#[test]
fn selector_errors_point_into_the_string() {
    // `answer_from = "` is 15 characters: the selector's first character is column 16 of line 11.
    let at = |s: &str, column: usize, phrase: &str| {
        assert_err(
            &numeric(&format!(
                "answer_from = \"{s}\"\ntolerance = {{ relative = 0.1 }}"
            )),
            11,
            column,
            phrase,
        );
    };
    at(
        "referense[1]",
        16,
        "predict: answer_from: 'referense' is not an output (expected reference[ROW, COL]",
    );
    at(
        "reference[0]",
        26,
        "expected an index counted from 1 (1, 2, ...), found '0'",
    );
    at("reference[1, -2]", 29, "unexpected '-'");
    at("reference[1", 27, "expected ']' at the end");
    at("reference[1; 2]", 27, "unexpected ';'");
    at("reference", 25, "expected '[' at the end");
    at("reference[]", 26, "expected an index counted from 1");
    at("reference[1] x", 29, "unexpected 'x' after the selector");
    at(
        "reference.[1]",
        26,
        "expected the name of an auxiliary output after '.'",
    );
    at(
        "max_abs_error(reference)",
        30,
        "max_abs_error() compares an engine with the reference: give an engine",
    );
    at(
        "failures(cpu.soft)",
        25,
        "failures() reads the engine's whole check: give just the engine",
    );
    at("nonfinite(cpu", 29, "expected ')' at the end");
    at("", 16, "predict: answer_from: empty (expected");
    at(
        "reference[1, 1, 1, 1, 1, 1, 1, 1, 1]",
        50,
        "at most 8 indices",
    );
    at(
        &format!("reference[{}]", "1, ".repeat(30)),
        16,
        "longer than 80 characters",
    );
    // A string with escapes: the error points at the string.
    assert_err(
        &numeric("answer_from = \"refer\\u0065nse[1]\"\ntolerance = { relative = 0.1 }"),
        11,
        15,
        "'referense' is not an output",
    );
}

#[test]
fn tolerance_errors() {
    let tol = |t: &str| format!("answer = 2.0\ntolerance = {t}");
    // `tolerance = ` is 12 characters: the table starts at column 13 of line 12.
    let at =
        |t: &str, column: usize, phrase: &str| assert_err(&numeric(&tol(t)), 12, column, phrase);
    at(
        "0.05",
        13,
        "predict: tolerance: expected a table such as { relative = 0.05 }, { absolute = 0.5 } or { factor = 10 }, found float",
    );
    at(
        "{}",
        13,
        "predict: tolerance: needs relative, absolute (or both), or factor",
    );
    at(
        "{ rel = 0.1 }",
        15,
        "predict: tolerance: unknown key 'rel' (expected one of: relative, absolute, factor)",
    );
    at(
        "{ relative = 0 }",
        15,
        "predict: tolerance: relative = 0 must be > 0 and at most 1 (100 %)",
    );
    at(
        "{ relative = 1.5 }",
        15,
        "relative = 1.5 must be > 0 and at most 1",
    );
    at(
        "{ absolute = -1 }",
        15,
        "predict: tolerance: absolute = -1 must be > 0",
    );
    at(
        "{ relative = nan }",
        26,
        "predict: tolerance: relative: expected a finite number, found NaN",
    );
    at(
        "{ factor = 1 }",
        15,
        "predict: tolerance: factor = 1 must be > 1 and at most 1000",
    );
    at("{ factor = 1e4 }", 15, "factor = 10000 must be > 1");
    at(
        "{ relative = 0.1, factor = 10 }",
        31,
        "predict: tolerance: a factor stands alone",
    );
    at(
        "{ factor = \"10\" }",
        24,
        "predict: tolerance: factor: expected a number, found string",
    );
}

#[test]
fn numeric_predict_errors() {
    // Keys for numeric answers on a question with choices.
    assert_err(
        &numeric("choices = [\"a\", \"b\"]\nanswer = 1\ntolerance = { relative = 0.1 }"),
        13,
        1,
        "predict: 'tolerance' is for numeric answers; a question with choices takes answer = the number of the right choice",
    );
    assert_err(
        &numeric("choices = [\"a\", \"b\"]\nanswer = 1\nunit = \"ms\""),
        13,
        1,
        "predict: 'unit' is for numeric answers",
    );
    assert_err(
        &numeric("answer = 2\nanswer_from = \"sum(reference)\"\ntolerance = { relative = 0.1 }"),
        12,
        1,
        "predict: give answer = NUMBER or answer_from = \"..\", not both",
    );
    assert_err(
        &numeric("tolerance = { relative = 0.1 }"),
        9,
        1,
        "predict: missing 'answer' (expected choices = [..] with answer = the number of the right one, or a numeric answer = NUMBER or answer_from",
    );
    assert_err(
        &numeric("answer_from = \"sum(reference)\""),
        9,
        1,
        "predict: missing 'tolerance' (expected tolerance = { relative = 0.05 }",
    );
    assert_err(
        &numeric("answer = 2.5\nunit = \"ms\""),
        9,
        1,
        "predict: missing 'tolerance'",
    );
    assert_err(
        &numeric("answer = \"2\"\ntolerance = { relative = 0.1 }"),
        11,
        10,
        "predict: answer: expected a number, found string",
    );
    assert_err(
        &numeric("answer = -inf\ntolerance = { relative = 0.1 }"),
        11,
        10,
        "predict: answer: expected a finite number, found -inf",
    );
    assert_err(
        &numeric("answer = 1\ntolerance = { relative = 0.1 }\nunit = \"\""),
        13,
        8,
        "predict: unit: must not be empty",
    );
    assert_err(
        &numeric(
            "answer = 1\ntolerance = { relative = 0.1 }\nunit = \"bytes moved by one all-gather\"",
        ),
        13,
        8,
        "predict: unit: at most 24 characters on one line",
    );
    assert_err(
        &numeric("answer_from = 3\ntolerance = { relative = 0.1 }"),
        11,
        15,
        "predict: answer_from: expected a string, found integer",
    );
    // answer_from reads the step's cell, so the step needs one.
    assert_err(
        &block(
            "predict",
            "question = \"Q\"\nanswer_from = \"sum(reference)\"\ntolerance = { relative = 0.1 }\nexplain = \"E\"",
        ),
        9,
        1,
        "predict: answer_from reads the step's cell, but this step has no cell",
    );
    // When the cell's fence is left open, that is the error, not a missing cell.
    assert_err(
        &lesson(
            "```predict\nquestion = \"Q\"\nanswer_from = \"sum(reference)\"\ntolerance = { relative = 0.1 }\nexplain = \"E\"\n```\n```cell softmax\ninput = [1.0]\n",
        ),
        15,
        1,
        "unclosed ``` fence opened here",
    );
    // A fixed answer needs no cell.
    let l = parse(&block(
        "predict",
        "question = \"Q\"\nanswer = 1e-3\ntolerance = { factor = 2 }\nexplain = \"E\"",
    ))
    .unwrap();
    assert!(matches!(
        &l.steps[0].predict().unwrap().answer,
        Answer::Number(n) if n.fixed() == Some(1e-3)
    ));
}

#[test]
fn one_question_per_step() {
    let q = "```predict\nquestion = \"Q\"\nchoices = [\"a\", \"b\"]\nanswer = 1\nexplain = \"E\"\n```\n";
    // The second block opens on line 15.
    assert_err(
        &lesson(&format!("{q}{q}")),
        15,
        1,
        "predict: a step asks one question, and this one already has one on line 9",
    );
    // One question in each of two steps is fine.
    assert!(parse(&lesson(&format!("{q}## Two\n{q}"))).is_ok());
}

// ---- scoring -----------------------------------------------------------------------------------

fn answer(tolerance: NumberTolerance) -> NumberAnswer {
    NumberAnswer {
        truth: Truth::Fixed(0.0),
        tolerance,
        unit: None,
    }
}

#[test]
fn scoring_within_a_tolerance() {
    let rel = answer(NumberTolerance::Within {
        relative: 0.05,
        absolute: 0.0,
    });
    assert!(rel.score(7.39, 7.389).accepted);
    assert!(rel.score(7.1, 7.389).accepted, "3.9 % off");
    assert!(!rel.score(7.0, 7.389).accepted, "5.3 % off");
    assert!(!rel.score(6.9, 7.389).accepted);
    assert!(!rel.score(f64::NAN, 7.389).accepted);
    assert!(
        !rel.score(0.1, 0.0).accepted,
        "relative alone: only 0 matches 0"
    );
    let abs = answer(NumberTolerance::Within {
        relative: 0.0,
        absolute: 0.5,
    });
    assert!(abs.score(2.5, 2.0).accepted);
    assert!(!abs.score(2.51, 2.0).accepted);
    assert!(abs.score(0.3, 0.0).accepted);
    let both = answer(NumberTolerance::Within {
        relative: 0.1,
        absolute: 1.0,
    });
    assert!(both.score(12.0, 10.0).accepted, "1 + 0.1 * 10 = 2");
    assert!(!both.score(12.1, 10.0).accepted);
    let factor = answer(NumberTolerance::Factor(10.0));
    assert!(factor.score(65504.0, 163_000.0).accepted);
    assert!(factor.score(1e-3, 1e-2).accepted);
    assert!(!factor.score(1e-4, 1e-2).accepted);
    assert!(!factor.score(-5.0, 5.0).accepted, "the sign must match");
    assert!(!factor.score(0.0, 5.0).accepted);
    assert!(!factor.score(f64::INFINITY, 5.0).accepted);
}

#[test]
fn how_far_off_in_words() {
    let s = |given: f64, truth: f64| {
        answer(NumberTolerance::Factor(2.0))
            .score(given, truth)
            .how_far()
    };
    assert_eq!(s(7.39, 7.39), "exact");
    assert_eq!(s(7.5, 7.39), "0.11 too high (1.5 %)");
    assert_eq!(s(3.0, 7.39), "2.5 times too low");
    assert_eq!(s(1e6, 10.0), "100000 times too high");
    assert_eq!(s(1e9, 1e-3), "1.0e12 times too high");
    assert_eq!(s(-1.0, 2.0), "3.0 too low");
    assert_eq!(s(f64::NAN, 2.0), "not a number");
    assert_eq!(
        NumberTolerance::Within {
            relative: 0.05,
            absolute: 0.5
        }
        .to_string(),
        "within 5 % + 0.5"
    );
    assert_eq!(
        NumberTolerance::Factor(10.0).to_string(),
        "within a factor of 10"
    );
}

// ---- reading a cell's results ------------------------------------------------------------------

/// Softmax of `x` run on the CPU engine (the others absent) with `params`.
fn comparison(x: Vec<f32>, params: &[(&str, &str)]) -> crate::compare::Comparison {
    use crate::engine::{EngineKind, Registry};
    use crate::ops::{Op, OpRequest, Tensor};
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (op, dtype) = Op::parse("softmax", &params).unwrap();
    let request = OpRequest::new(op, dtype, Tensor::row(x)).unwrap();
    crate::compare::compare_all(&Registry::probe_only(&[EngineKind::Cpu]), request)
}

#[track_caller]
fn selector(s: &str) -> CellValue {
    match number_of(&format!(
        "answer_from = \"{s}\"\ntolerance = {{ relative = 0.1 }}"
    ))
    .truth
    {
        Truth::Cell(v) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn selectors_read_a_cells_results() {
    let c = comparison(vec![1.0, 2.0, 3.0], &[]);
    let read = |s: &str| selector(s).read(&c);
    let p3 = read("reference[1, 3]").unwrap();
    let p1 = read("reference[1, 1]").unwrap();
    assert!((p3 / p1 - 2f64.exp()).abs() < 1e-9, "{p3} / {p1}");
    assert!((read("cpu[1, 3]").unwrap() - p3).abs() < 1e-6);
    assert!((read("sum(reference)").unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(read("max(reference)").unwrap(), p3);
    assert!((read("min(cpu)").unwrap() - p1).abs() < 1e-6);
    assert_eq!(read("nonfinite(cpu)"), Ok(0.0));
    assert_eq!(read("failures(cpu)"), Ok(0.0));
    assert!(read("max_abs_error(cpu)").unwrap() < 1e-6);
    assert!(read("max_rel_error(cpu)").unwrap() < 1e-5);
    assert!(read("max_ulp(cpu)").unwrap() <= 4.0);
    // What cannot be read, and why.
    let e = read("wgpu[1, 1]").unwrap_err();
    assert!(e.starts_with("the wgpu engine has no result here"), "{e}");
    let e = read("reference[1, 4]").unwrap_err();
    assert!(
        e.contains("outside reference, whose shape is [1, 3]"),
        "{e}"
    );
    let e = read("reference[3]").unwrap_err();
    assert!(
        e.contains("gives 1 indices but reference has 2 axes"),
        "{e}"
    );
    let e = read("reference.soft[1]").unwrap_err();
    assert!(
        e.contains("no auxiliary output 'soft' (it has none)"),
        "{e}"
    );
    // Naive softmax in f16 overflows: NaN values are counted, and cannot be scored themselves.
    let c = comparison(vec![12.0, 0.0], &[("stable", "false"), ("dtype", "f16")]);
    let nonfinite = selector("nonfinite(cpu)").read(&c).unwrap();
    assert!(nonfinite >= 1.0, "{nonfinite}");
    let e = selector("cpu[1, 1]").read(&c).unwrap_err();
    assert!(e.contains("which cannot be scored"), "{e}");
}
