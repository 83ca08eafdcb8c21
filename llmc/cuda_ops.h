// cuda_ops.h: what the nvcc-built object (llmc/cuda_ops.cu) offers the host code: the device
// probe, device memory helpers and the kernels' launchers, all on plain pointers.
#pragma once
#include <string>

int kvgpt_cuda_probe(std::string* why, std::string* name);  // devices found; *why explains a 0
float* kvgpt_cuda_upload(const float* host, long n);         // cudaMalloc (+ copy when host)
void kvgpt_cuda_download(float* host, const float* dev, long n);
void kvgpt_cuda_free(float* dev);
void residual_forward_cuda(float* out, const float* a, const float* b, const float* c, long N);
void gelu_forward_cuda(float* out, const float* inp, long N, bool exact);
