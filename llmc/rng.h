// rng.h: a tiny, seedable, serialisable random number generator (xorshift64*), so that
// initialisation and data order are reproducible and a checkpoint can store the exact state.
#pragma once
#include <cmath>
#include <cstdint>

struct Rng {
    uint64_t state;
    explicit Rng(uint64_t seed = 1337) { seed_with(seed); }
    void seed_with(uint64_t seed) {
        // splitmix64 scramble so that nearby seeds give unrelated streams, never 0
        uint64_t z = seed + 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        state = (z ^ (z >> 31)) | 1ull;
    }
    uint64_t next_u64() {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        return state * 0x2545F4914F6CDD1Dull;
    }
    float uniform() { return (next_u64() >> 40) * (1.0f / 16777216.0f); }  // [0, 1)
    uint64_t below(uint64_t n) { return next_u64() % n; }
    float normal() {  // Box-Muller, no cached second value so the state alone is the whole state
        float u1 = uniform(), u2 = uniform();
        if (u1 < 1e-7f) u1 = 1e-7f;
        return sqrtf(-2.0f * logf(u1)) * cosf(6.283185307f * u2);
    }
};
