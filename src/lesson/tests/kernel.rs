//! The kernel block: topics and marks checked against the embedded sources.

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
