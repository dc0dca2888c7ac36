// gumbel_noise, gumbel_softmax: PLACEHOLDER written by the lead so the crate compiles; the topic's helper replaces it.
extern "C" __global__ void gumbel_placeholder(float* y) { y[0] = 0.0f; }
