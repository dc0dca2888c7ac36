//! The kernel and predict blocks.

use super::*;

#[test]
fn kernel_errors() {
    assert_block_err(
        "kernel",
        "topic = \"softmax\"\nmark = []",
        2,
        1,
        "kernel: unknown key 'mark' (expected one of: topic, marks, cuda_marks, wgsl_marks)",
    );
    assert_block_err(
        "kernel",
        "marks = []",
        0,
        1,
        "kernel: missing 'topic' (expected topic = one of: logits, softmax, gumbel, rope, tensor_parallel)",
    );
    assert_block_err(
        "kernel",
        "topic = \"sofmax\"",
        1,
        9,
        "kernel: unknown topic 'sofmax' (expected one of: logits, softmax, gumbel, rope, tensor_parallel)",
    );
    assert_block_err(
        "kernel",
        "topic = 1",
        1,
        9,
        "kernel: topic: expected a string, found integer",
    );
    assert_block_err(
        "kernel",
        "topic = \"softmax\"\nmarks = \"max\"",
        2,
        9,
        "kernel: marks: expected a list of strings",
    );
    assert_block_err(
        "kernel",
        "topic = \"softmax\"\nmarks = [1]",
        2,
        10,
        "kernel: marks: expected a string, found integer",
    );
    assert_block_err(
        "kernel",
        "topic = \"softmax\"\nmarks = [\" \"]",
        2,
        10,
        "kernel: a mark must not be empty",
    );
    assert_block_err(
        "kernel",
        "topic = \"softmax\"\nmarks = [\"no such text 42\"]",
        2,
        10,
        "kernel: mark 'no such text 42' is not found on any line of kernels/softmax.cu or shaders/softmax.wgsl",
    );
    assert_block_err(
        "kernel",
        "topic = \"softmax\"\nmarks = [\"__global__\"]",
        2,
        10,
        "is not found on any line of shaders/softmax.wgsl (it is in kernels/softmax.cu; a mark must be in both, or in cuda_marks)",
    );
    assert_block_err(
        "kernel",
        "topic = \"softmax\"\nmarks = [\"@compute\"]",
        2,
        10,
        "is not found on any line of kernels/softmax.cu (it is in shaders/softmax.wgsl",
    );
    // The order of keys does not matter.
    let l = parse(&block(
        "kernel",
        "marks = [\"log_softmax\"]\ntopic = \"softmax\"",
    ))
    .unwrap();
    assert_eq!(l.steps[0].blocks.len(), 1);
    // Marks for one language are looked for in that language's source only.
    let l = parse(&block(
        "kernel",
        "topic = \"softmax\"\ncuda_marks = [\"__global__\"]\nwgsl_marks = [\"@compute\"]",
    ))
    .unwrap();
    let Block::Kernel(k) = &l.steps[0].blocks[0] else {
        panic!("{:?}", l.steps[0].blocks)
    };
    assert_eq!(
        (k.marks.len(), k.cuda_marks.clone(), k.wgsl_marks.clone()),
        (
            0,
            vec!["__global__".to_string()],
            vec!["@compute".to_string()]
        )
    );
    assert_eq!(k.all_marks(), vec!["__global__", "@compute"]);
    assert_block_err(
        "kernel",
        "topic = \"softmax\"\ncuda_marks = [\"@compute\"]",
        2,
        15,
        "kernel: mark '@compute' is not found on any line of kernels/softmax.cu",
    );
    assert_block_err(
        "kernel",
        "topic = \"softmax\"\nwgsl_marks = [\"__global__\"]",
        2,
        15,
        "kernel: mark '__global__' is not found on any line of shaders/softmax.wgsl",
    );
    assert_block_err(
        "kernel",
        "topic = \"softmax\"\nwgsl_marks = \"x\"",
        2,
        14,
        "kernel: wgsl_marks: expected a list of strings",
    );
}

#[test]
fn predict_errors() {
    let p = |q: &str, c: &str, a: &str, e: &str| {
        format!("question = {q}\nchoices = {c}\nanswer = {a}\nexplain = {e}")
    };
    let good = p("\"Q?\"", "[\"a\", \"b\"]", "2", "\"E\"");
    let Block::Predict(spec) = &parse(&block("predict", &good)).unwrap().steps[0].blocks[0] else {
        panic!()
    };
    assert_eq!((spec.line, spec.answer), (9, 1));
    assert_block_err(
        "predict",
        &format!("{good}\nhint = \"h\""),
        5,
        1,
        "predict: unknown key 'hint' (expected one of: question, choices, answer, explain)",
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
