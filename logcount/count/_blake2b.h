/*
 * BLAKE2b (RFC 7693), keyed, 8-byte digest: the core of classify.visitor_number, shared
 * by logcount/count/_sum_numbers.c (VisitorNumbers) and logcount/count/_scan_take.c (a
 * batch's visitors numbered as take() hands them over). Static functions: each module that
 * includes it has its own copy, no symbol is exported.
 */
#ifndef LOGCOUNT_BLAKE2B_H
#define LOGCOUNT_BLAKE2B_H
#include <stdint.h>
#include <string.h>

/* Every file of _scan includes this (through _scan.h) for b2_state; two of them call the
   functions: the others compile none of them, and must not warn. */
#if defined(__GNUC__)
#define B2_UNUSED_OK __attribute__((unused))
#else
#define B2_UNUSED_OK
#endif

static const uint64_t B2_IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
    0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
    0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

static const uint8_t B2_SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

#define B2_ROTR(x, n) (((x) >> (n)) | ((x) << (64 - (n))))

typedef struct {
    uint64_t h[8];
    uint64_t t;     /* bytes hashed so far (a visitor is far below 2^64 of them) */
    uint8_t buf[128];
    size_t n;       /* bytes in buf */
} b2_state;

static uint64_t b2_load64(const uint8_t *p) {
    uint64_t x = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* one load: GCC -O2 kept the loop below, 5 instructions a byte, a fifth of a block */
    memcpy(&x, p, 8);
#else
    for (int i = 7; i >= 0; i--) /* little-endian on any host */
        x = (x << 8) | p[i];
#endif
    return x;
}

static void b2_compress(uint64_t h[8], const uint8_t block[128], uint64_t t, int last) {
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++)
        m[i] = b2_load64(block + 8 * i);
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = B2_IV[i];
    }
    v[12] ^= t; /* the counter's high word stays 0 */
    if (last)
        v[14] = ~v[14];
#define B2_G(a, b, c, d, x, y)                                                                 \
    do {                                                                                       \
        v[a] = v[a] + v[b] + (x);                                                              \
        v[d] = B2_ROTR(v[d] ^ v[a], 32);                                                       \
        v[c] = v[c] + v[d];                                                                    \
        v[b] = B2_ROTR(v[b] ^ v[c], 24);                                                       \
        v[a] = v[a] + v[b] + (y);                                                              \
        v[d] = B2_ROTR(v[d] ^ v[a], 16);                                                       \
        v[c] = v[c] + v[d];                                                                    \
        v[b] = B2_ROTR(v[b] ^ v[c], 63);                                                       \
    } while (0)
    /* unrolled, so that the message words each round picks are constants */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 12
#endif
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = B2_SIGMA[r];
        B2_G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        B2_G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        B2_G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        B2_G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        B2_G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        B2_G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        B2_G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        B2_G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
#undef B2_G
    for (int i = 0; i < 8; i++)
        h[i] ^= v[i] ^ v[i + 8];
}

/* Adds bytes; a full block is compressed only once more bytes follow it (the last block
   is compressed by b2_number, flagged as the last). */
static void b2_feed(b2_state *s, const uint8_t *p, size_t len) {
    while (len) {
        if (s->n == 128) {
            s->t += 128;
            b2_compress(s->h, s->buf, s->t, 0);
            s->n = 0;
        }
        size_t take = 128 - s->n < len ? 128 - s->n : len;
        memcpy(s->buf + s->n, p, take);
        s->n += take;
        p += take;
        len -= take;
    }
}

/* The 8-byte digest as a number read big-endian. */
static uint64_t b2_number(b2_state *s) {
    s->t += s->n;
    memset(s->buf + s->n, 0, 128 - s->n);
    b2_compress(s->h, s->buf, s->t, 1);
    uint64_t x = 0, h0 = s->h[0];
    for (int i = 0; i < 8; i++) { /* the digest's bytes are h[0] little-endian */
        x = (x << 8) | (h0 & 0xff);
        h0 >>= 8;
    }
    return x;
}

/* The state after a key's block (1 to 64 bytes): every visitor's bytes follow it. The
   key's block is never the last one (a visitor's bytes hold at least the "\0" between
   client and agent), so it is compressed once, here. */
static B2_UNUSED_OK void b2_keyed(b2_state *s, const uint8_t *key, size_t len) {
    for (int i = 0; i < 8; i++)
        s->h[i] = B2_IV[i];
    s->h[0] ^= 0x01010000ULL ^ ((uint64_t)len << 8) ^ 8; /* fanout, depth, key, digest */
    memset(s->buf, 0, 128);
    memcpy(s->buf, key, len);
    s->t = 128;
    b2_compress(s->h, s->buf, s->t, 0);
    s->n = 0;
}

/* classify.visitor_number(key)(client, agent) from the keyed state. */
static B2_UNUSED_OK uint64_t b2_visitor(const b2_state *keyed, const char *client, size_t nc,
                                        const char *agent, size_t na) {
    b2_state s = *keyed;
    b2_feed(&s, (const uint8_t *)client, nc);
    b2_feed(&s, (const uint8_t *)"", 1);
    b2_feed(&s, (const uint8_t *)agent, na);
    return b2_number(&s);
}

#endif
