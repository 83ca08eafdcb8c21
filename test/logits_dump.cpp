// logits_dump.cpp: the logits kvgpt's CPU forward gives a checkpoint on one token sequence, for
// the Hugging Face parity tests (test/test_hf.py, scripts/hf_parity_gpu.sh), which compare them
// with an independent PyTorch forward and with transformers' own.
//   ./test/logits_dump CKPT IDS OUT     IDS: int32 token ids (T of them); OUT: float32 (T, vocab)
//   ./test/logits_dump --layout CKPT    the parameter layout: "name offset floats" per tensor (what
//                                       scripts/ckpt.py's layout() must reproduce for every variant)
// The real model code is included (llm.c's test style), the parameters read as eval_gpt reads them.
#include "../llmc/checkpoint.h"

int main(int argc, char** argv) {
    if (argc == 3 && !strcmp(argv[1], "--layout")) {
        CheckpointHeader h = checkpoint_read_header(argv[2]);
        GPT layout(h.config, false);
        for (const ParamSpec& s : layout.ps.specs) printf("%s %zu %zu\n", s.name.c_str(), s.offset, s.n);
        printf("total %zu\n", layout.ps.total);
        return 0;
    }
    if (argc != 4) fail_hint("./test/logits_dump CKPT IDS.i32 OUT.f32", "expected 3 arguments, got %d", argc - 1);
    CheckpointHeader h = checkpoint_read_header(argv[1]);
    GPT model(h.config);
    int64_t step = 0;
    if (!checkpoint_read_params(argv[1], model, model.params, &step)) fail("cannot read the parameters of '%s'", argv[1]);
    FILE* f = fopenCheck(argv[2], "rb");
    fseeko(f, 0, SEEK_END);
    long T = ftello(f) / 4;
    fseeko(f, 0, SEEK_SET);
    std::vector<int> ids(T);
    if (T < 1 || fread(ids.data(), 4, T, f) != (size_t)T) fail("cannot read token ids from '%s'", argv[2]);
    fclose(f);
    for (int id : ids)
        if (id < 0 || id >= h.config.vocab_size) fail("token id %d is outside the vocabulary (%d)", id, h.config.vocab_size);
    model.forward(ids.data(), nullptr, 1, (int)T);
    const int V = h.config.vocab_size, Vp = h.config.padded_vocab_size;
    FILE* o = fopenCheck(argv[3], "wb");
    for (long t = 0; t < T; t++)
        if (fwrite(model.logits + t * Vp, sizeof(float), V, o) != (size_t)V) fail("cannot write '%s'", argv[3]);
    if (fclose(o) != 0) fail("cannot write '%s'", argv[3]);
    printf("%s: %ld tokens -> %s (%ld x %d logits)\n", argv[1], T, argv[3], T, V);
    return 0;
}
