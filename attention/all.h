// all.h: includes every attention variant and maps the -a name to its implementation.
#pragma once
#include "attention.h"
#include "gqa.h"
#include "mka.h"
#include "mla.h"
#include "press.h"

static std::unique_ptr<Attention> make_attention(const GPTConfig& cfg) {
    switch (cfg.attn) {
        case ATTN_MHA:
        case ATTN_MQA:
        case ATTN_GQA: return std::unique_ptr<Attention>(new GQAAttention(cfg));
        case ATTN_MLA:
        case ATTN_KVSPLICE: return std::unique_ptr<Attention>(new MLAAttention(cfg));
        case ATTN_MKA:
        case ATTN_FMKA: return std::unique_ptr<Attention>(new MKAAttention(cfg));
        default: fail("internal: attention kind %d out of range", cfg.attn);
    }
}
