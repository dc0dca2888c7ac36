// The copy kernel `kernelbook bench` measures as the roofline for every shader on this adapter:
// each invocation reads one u32 and writes one u32, the least any one-read-one-write op can move.
// Storage is one u32 word per element (see src/engine/wgpu/mod.rs), as in every other shader.

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;

struct Params {
    n: u32,
    // Invocations per row of the dispatch grid (x workgroups * 256), for grids wider than 65535.
    row: u32,
    pad0: u32,
    pad1: u32,
}
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(256)
fn copy_main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * params.row + gid.x;
    if (i < params.n) {
        dst[i] = src[i];
    }
}
