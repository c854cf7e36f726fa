/* Fused encoder kernels: one pass over the data where NumPy needs many.
 *
 * Every kernel is elementwise and exactly defined (IEEE single-precision operations in a
 * fixed order, integer bit work, counter-based random bits), so it gives the same bits as
 * the NumPy reference in hpcopt/encoders/reference.py, which tests check. Reductions whose
 * result depends on the summation order (norms, scales) stay in NumPy and come in as
 * arguments. Built optionally; without it hpcopt uses the NumPy reference.
 * Compile with -ffp-contract=off: a fused multiply-add would round differently.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif

#if defined(__GNUC__) && defined(__x86_64__)
#define HAVE_AVX2_PATH 1
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2")))
static int use_avx2;
#else
#define HAVE_AVX2_PATH 0
#endif

/* ---- counter-based random bits (hpcopt/encoders/rng.py) ---- */

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Stream number j of key: SplitMix64's output for counter j + 1. */
static inline uint64_t stream_word(uint64_t key, uint64_t j)
{
    return mix64(key + (j + 1) * 0x9E3779B97F4A7C15ULL);
}

/* The 16-bit chunk g of the stream. */
static inline uint32_t chunk16(uint64_t key, uint64_t g)
{
    return (uint32_t)(stream_word(key, g >> 2) >> (16 * (g & 3))) & 0xFFFFu;
}

/* ---- bit planes: 8 values per byte, element 0 in the most significant bit ---- */

/* Byte -> 8 byte lanes, lane i holding bit (7 - i) of the byte. */
static uint64_t SPREAD[256];

static void init_spread(void)
{
    for (int b = 0; b < 256; b++) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v |= (uint64_t)((b >> (7 - i)) & 1) << (8 * i);
        SPREAD[b] = v;
    }
}

/* Bit `bit` of each of the 8 byte lanes of `lanes`, gathered into one byte (lane 0 at
 * the most significant bit): the multiply moves lane i's bit to bit 63 - i. */
static inline uint8_t gather_bits(uint64_t lanes, int bit)
{
    uint64_t m = (lanes >> bit) & 0x0101010101010101ULL;
    return (uint8_t)((m * 0x8040201008040201ULL) >> 56);
}

/* ---- sign planes ---- */

HOT static void sign_pack(const float *x, Py_ssize_t n, uint8_t *bits)
{
    Py_ssize_t full = n / 8, i;
    for (i = 0; i < full; i++) {
        const float *v = x + 8 * i;
        uint8_t b = 0;
        for (int j = 0; j < 8; j++)
            b |= (uint8_t)((v[j] < 0.0f) << (7 - j));
        bits[i] = b;
    }
    if (n % 8) {
        uint8_t b = 0;
        for (Py_ssize_t j = 0; j < n % 8; j++)
            b |= (uint8_t)((x[8 * full + j] < 0.0f) << (7 - j));
        bits[full] = b;
    }
}

/* out (+)= bit ? neg : pos, eight values per byte from a 256-entry table. */
HOT static void two_values(const uint8_t *bits, float pos, float neg, float *out, Py_ssize_t n,
                           int add)
{
    float table[256][8];
    for (int b = 0; b < 256; b++)
        for (int i = 0; i < 8; i++)
            table[b][i] = (b >> (7 - i)) & 1 ? neg : pos;
    Py_ssize_t full = n / 8;
    for (Py_ssize_t i = 0; i < full; i++) {
        const float *t = table[bits[i]];
        float *o = out + 8 * i;
        if (add)
            for (int j = 0; j < 8; j++)
                o[j] += t[j];
        else
            for (int j = 0; j < 8; j++)
                o[j] = t[j];
    }
    for (Py_ssize_t j = 8 * full; j < n; j++) {
        float v = (bits[j / 8] >> (7 - j % 8)) & 1 ? neg : pos;
        out[j] = add ? out[j] + v : v;
    }
}

#if HAVE_AVX2_PATH
/* Bit order of a movemask (lane i at bit i) reversed into a plane byte (lane i at 7 - i). */
static uint8_t REVERSE[256];

static void init_reverse(void)
{
    for (int b = 0; b < 256; b++) {
        int r = 0;
        for (int i = 0; i < 8; i++)
            r |= ((b >> i) & 1) << (7 - i);
        REVERSE[b] = (uint8_t)r;
    }
}

/* quantize_group for 8 elements, with the same operations in 8 lanes. */
AVX2 static void quantize_group8(const float *v, const float *sc, float top, int mag_bits,
                                 uint64_t key, uint64_t g, uint8_t *planes, Py_ssize_t stride)
{
    __m256 x = _mm256_loadu_ps(v);
    __m256 a = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
    __m128i words = _mm_set_epi64x((long long)stream_word(key, (g >> 2) + 1),
                                   (long long)stream_word(key, g >> 2));
    __m256 u = _mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(words));
    __m256 r = _mm256_add_ps(_mm256_mul_ps(a, _mm256_loadu_ps(sc)),
                             _mm256_mul_ps(u, _mm256_set1_ps(0x1p-16f)));
    __m256i lev = _mm256_cvttps_epi32(_mm256_min_ps(r, _mm256_set1_ps(top)));
    Py_ssize_t byte = (Py_ssize_t)(g / 8);
    __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    planes[byte] = REVERSE[_mm256_movemask_ps(neg)];
    for (int b = 0; b < mag_bits; b++) {
        __m256i bit = _mm256_slli_epi32(lev, 31 - b);
        planes[(1 + b) * stride + byte] = REVERSE[_mm256_movemask_ps(_mm256_castsi256_ps(bit))];
    }
}

/* quantize when every group lies in one bucket, 8 lanes at a time (whole groups only);
 * returns the elements done. */
AVX2 static Py_ssize_t quantize8(const float *x, Py_ssize_t n, const float *scales,
                                 Py_ssize_t bucket, uint32_t levels, int mag_bits, uint64_t key,
                                 Py_ssize_t start, uint8_t *planes, Py_ssize_t stride)
{
    Py_ssize_t b = start / bucket, next = (b + 1) * bucket, g = 0;
    float sc[8];
    for (int i = 0; i < 8; i++)
        sc[i] = scales[b];
    for (; g + 8 <= n; g += 8) {
        if (start + g >= next) {
            while (start + g >= next) {
                b++;
                next += bucket;
            }
            for (int i = 0; i < 8; i++)
                sc[i] = scales[b];
        }
        quantize_group8(x + g, sc, (float)levels, mag_bits, key, (uint64_t)(start + g), planes,
                        stride);
    }
    return g;
}

/* dequantize for 8 elements from plane byte `byte`: v = ±(weight * (lev * q)). */
AVX2 static void dequantize_group8(const uint8_t *planes, Py_ssize_t stride, int mag_bits,
                                   Py_ssize_t byte, __m256 q, float weight, float *o, int add)
{
    __m256i lev;
    if (mag_bits <= 8) { /* 8 levels as byte lanes of one word, widened to 8 int32 lanes */
        uint64_t lanes = 0;
        for (int b = 0; b < mag_bits; b++)
            lanes |= SPREAD[planes[(1 + b) * stride + byte]] << b;
        lev = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)lanes));
    } else {
        const __m256i lanebit = _mm256_setr_epi32(128, 64, 32, 16, 8, 4, 2, 1);
        lev = _mm256_setzero_si256();
        for (int b = 0; b < mag_bits; b++) {
            __m256i pb = _mm256_and_si256(_mm256_set1_epi32(planes[(1 + b) * stride + byte]),
                                          lanebit);
            __m256i set = _mm256_cmpeq_epi32(pb, lanebit);
            lev = _mm256_or_si256(lev, _mm256_and_si256(set, _mm256_set1_epi32(1 << b)));
        }
    }
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(lev), q);
    f = _mm256_mul_ps(_mm256_set1_ps(weight), f);
    __m256i sign = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)SPREAD[planes[byte]]));
    f = _mm256_xor_ps(f, _mm256_castsi256_ps(_mm256_slli_epi32(sign, 31)));
    if (add)
        f = _mm256_add_ps(_mm256_loadu_ps(o), f);
    _mm256_storeu_ps(o, f);
}
#endif

/* ---- stochastic quantization to levels 0..levels (QSGD, TernGrad) ----
 * lev = floor(min(|x| * scale[bucket] + u * 2^-16, levels)), u the element's 16 random bits.
 * Planes (stride bytes apart): 0 = sign (x < 0), 1 + b = bit b of lev. */

/* The 8 random 16-bit chunks of elements g .. g+7 (g a multiple of 8). */
static inline void chunks8(uint64_t key, uint64_t g, uint32_t u[8])
{
    uint64_t w0 = stream_word(key, g >> 2), w1 = stream_word(key, (g >> 2) + 1);
    for (int i = 0; i < 4; i++) {
        u[i] = (uint32_t)(w0 >> (16 * i)) & 0xFFFFu;
        u[4 + i] = (uint32_t)(w1 >> (16 * i)) & 0xFFFFu;
    }
}

/* Whether every group of 8 elements lies in one bucket (buckets of a multiple of 8
 * elements, or a single bucket). */
static inline int groups_in_buckets(Py_ssize_t bucket, Py_ssize_t start, Py_ssize_t n)
{
    return bucket % 8 == 0 || start + n <= bucket;
}

/* Levels, sign byte and plane bytes of one group of m <= 8 elements at global index g. */
static inline void quantize_group(const float *v, int m, const float *sc, uint32_t levels,
                                  int mag_bits, uint64_t key, uint64_t g, uint8_t *planes,
                                  Py_ssize_t stride)
{
    uint32_t u[8], lev[8] = {0};
    uint8_t sbyte = 0;
    float top = (float)levels; /* exact: levels < 2^24 */
    chunks8(key, g, u);
    for (int i = 0; i < m; i++) {
        float r = fabsf(v[i]) * sc[i] + (float)(int32_t)u[i] * 0x1p-16f;
        lev[i] = (uint32_t)(int32_t)(r < top ? r : top); /* min(floor(r), levels), int-safe */
        sbyte |= (uint8_t)((v[i] < 0.0f) << (7 - i));
    }
    Py_ssize_t byte = (Py_ssize_t)(g / 8);
    planes[byte] = sbyte;
    if (mag_bits <= 8) {
        uint64_t lanes = 0;
        for (int i = 0; i < 8; i++)
            lanes |= (uint64_t)lev[i] << (8 * i);
        for (int b = 0; b < mag_bits; b++)
            planes[(1 + b) * stride + byte] = gather_bits(lanes, b);
    } else {
        for (int b = 0; b < mag_bits; b++) {
            uint8_t pb = 0;
            for (int i = 0; i < 8; i++)
                pb |= (uint8_t)(((lev[i] >> b) & 1) << (7 - i));
            planes[(1 + b) * stride + byte] = pb;
        }
    }
}

/* ---- stochastic quantization to levels 0..levels (QSGD, TernGrad) ----
 * lev = min(floor(|x| * scale[bucket] + u * 2^-16), levels), u the element's 16 random bits.
 * Planes (stride bytes apart): 0 = sign (x < 0), 1 + b = bit b of lev. */

HOT static void quantize(const float *x, Py_ssize_t n, const float *scales, Py_ssize_t bucket,
                         uint32_t levels, uint64_t key, Py_ssize_t start, uint8_t *planes,
                         Py_ssize_t stride)
{
    int mag_bits = 0;
    while ((levels >> mag_bits) && mag_bits < 32)
        mag_bits++;
    int same = groups_in_buckets(bucket, start, n);
    Py_ssize_t b = start / bucket, next = (b + 1) * bucket; /* the next bucket's first index */
    Py_ssize_t first = 0;
#if HAVE_AVX2_PATH
    if (use_avx2 && same && levels < (1u << 24)) {
        first = quantize8(x, n, scales, bucket, levels, mag_bits, key, start, planes, stride);
        b = (start + first) / bucket;
        next = (b + 1) * bucket;
    }
#endif
    for (Py_ssize_t g = first; g < n; g += 8) {
        int m = n - g < 8 ? (int)(n - g) : 8;
        float sc[8];
        if (same) {
            while (start + g >= next) {
                b++;
                next += bucket;
            }
            for (int i = 0; i < 8; i++)
                sc[i] = scales[b];
        } else {
            for (int i = 0; i < m; i++)
                sc[i] = scales[(start + g + i) / bucket];
        }
#if HAVE_AVX2_PATH
        if (use_avx2 && m == 8 && levels < (1u << 24)) {
            quantize_group8(x + g, sc, (float)levels, mag_bits, key, (uint64_t)(start + g),
                            planes, stride);
            continue;
        }
#endif
        quantize_group(x + g, m, sc, levels, mag_bits, key, (uint64_t)(start + g), planes,
                       stride);
    }
}

/* Levels of the group at plane byte `byte`. */
static inline void group_levels(const uint8_t *planes, Py_ssize_t stride, int mag_bits,
                                Py_ssize_t byte, uint32_t lev[8])
{
    if (mag_bits <= 8) {
        uint64_t lanes = 0;
        for (int b = 0; b < mag_bits; b++)
            lanes |= SPREAD[planes[(1 + b) * stride + byte]] << b;
        for (int i = 0; i < 8; i++)
            lev[i] = (uint32_t)(lanes >> (8 * i)) & 0xFFu;
    } else {
        for (int i = 0; i < 8; i++) {
            uint32_t l = 0;
            for (int b = 0; b < mag_bits; b++)
                l |= (uint32_t)((planes[(1 + b) * stride + byte] >> (7 - i)) & 1) << b;
            lev[i] = l;
        }
    }
}

/* out (+)= weight * (±(float(lev) * q)), q = norms[bucket] / divisor; levels, signs from planes. */
#if HAVE_AVX2_PATH
/* dequantize when every group lies in one bucket, 8 lanes at a time (whole groups only). */
AVX2 static Py_ssize_t dequantize8(const uint8_t *planes, Py_ssize_t stride, int mag_bits,
                                   const float *norms, float divisor, Py_ssize_t bucket,
                                   Py_ssize_t start, float *out, Py_ssize_t n, float weight,
                                   int add)
{
    Py_ssize_t b = start / bucket, next = (b + 1) * bucket, g = 0;
    __m256 q = _mm256_set1_ps(norms[b] / divisor);
    for (; g + 8 <= n; g += 8) {
        if (start + g >= next) {
            while (start + g >= next) {
                b++;
                next += bucket;
            }
            q = _mm256_set1_ps(norms[b] / divisor);
        }
        dequantize_group8(planes, stride, mag_bits, (start + g) / 8, q, weight, out + g, add);
    }
    return g;
}
#endif

/* out (+)= weight * (±(float(lev) * q)), q = norms[bucket] / divisor; levels, signs from planes. */
HOT static void dequantize(const uint8_t *planes, Py_ssize_t stride, int mag_bits,
                           const float *norms, float divisor, Py_ssize_t bucket, Py_ssize_t start,
                           float *out, Py_ssize_t n, float weight, int add)
{
    int same = groups_in_buckets(bucket, start, n);
    Py_ssize_t first = 0;
#if HAVE_AVX2_PATH
    if (use_avx2 && same && mag_bits <= 24)
        first = dequantize8(planes, stride, mag_bits, norms, divisor, bucket, start, out, n,
                            weight, add);
#endif
    for (Py_ssize_t g = first; g < n; g += 8) {
        Py_ssize_t byte = (start + g) / 8;
        uint32_t lev[8];
        float v[8];
        int m = n - g < 8 ? (int)(n - g) : 8;
        group_levels(planes, stride, mag_bits, byte, lev);
        uint64_t sgn = SPREAD[planes[byte]];
        for (int i = 0; i < m; i++) {
            float q = norms[(start + g + i) / bucket] / divisor;
            float a = weight * ((float)(int32_t)lev[i] * q);
            v[i] = (sgn >> (8 * i)) & 1 ? -a : a;
        }
        float *o = out + g;
        for (int i = 0; i < m; i++)
            o[i] = add ? o[i] + v[i] : v[i];
    }
}

/* ---- natural compression: sign plane + exponent byte per element ---- */

HOT static uint32_t natural_encode(const float *x, Py_ssize_t n, uint64_t key, Py_ssize_t start,
                                   uint8_t *signs, uint8_t *exps)
{
    uint32_t top = 0;
    for (Py_ssize_t g = 0; g < n; g += 8) {
        uint32_t u[8], bits[8], t[8];
        int m = n - g < 8 ? (int)(n - g) : 8;
        chunks8(key, (uint64_t)(start + g), u);
        memcpy(bits, x + g, 4 * (size_t)m);
        for (int i = 0; i < m; i++) {
            t[i] = ((bits[i] & 0x7FFFFFFFu) + (u[i] << 7)) >> 23;
            exps[start + g + i] = (uint8_t)t[i];
            top = t[i] > top ? t[i] : top;
        }
    }
    sign_pack(x, n, signs + start / 8);
    return top;
}

HOT static void natural_decode(const uint8_t *signs, const uint8_t *exps, Py_ssize_t start,
                               float *out, Py_ssize_t n, float weight, int add)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t g = start + i;
        uint32_t bits = ((uint32_t)((signs[g / 8] >> (7 - g % 8)) & 1) << 31) |
                        ((uint32_t)exps[g] << 23);
        float v;
        memcpy(&v, &bits, 4);
        v = weight * v;
        out[i] = add ? out[i] + v : v;
    }
}

/* ---- sparse payloads ---- */

/* Indices with |x| >= thr (increasing; the first `cap` are written); total count returned,
 * *finite set to 0 when x holds NaN or Inf. */
#if HAVE_AVX2_PATH
/* select_above, 8 lanes at a time: a mask of the lanes at or above thr, then their indices. */
AVX2 static Py_ssize_t select_above8(const float *x, Py_ssize_t n, float thr, int64_t *idx,
                                     Py_ssize_t cap, int *finite, Py_ssize_t *done)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256 t = _mm256_set1_ps(thr), big = _mm256_set1_ps(3.4028234663852886e38f);
    __m256 ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    Py_ssize_t count = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), absmask);
        ok = _mm256_and_ps(ok, _mm256_cmp_ps(a, big, _CMP_LE_OQ));
        int m = _mm256_movemask_ps(_mm256_cmp_ps(a, t, _CMP_GE_OQ));
        while (m) {
            int j = __builtin_ctz((unsigned)m);
            if (count < cap)
                idx[count] = i + j;
            count++;
            m &= m - 1;
        }
    }
    *finite = _mm256_movemask_ps(ok) == 0xFF;
    *done = i;
    return count;
}
#endif

HOT static Py_ssize_t select_above(const float *x, Py_ssize_t n, float thr, int64_t *idx,
                                   Py_ssize_t cap, int *finite)
{
    Py_ssize_t count = 0, start = 0;
    int ok = 1;
#if HAVE_AVX2_PATH
    if (use_avx2) {
        count = select_above8(x, n, thr, idx, cap, &ok, &start);
    }
#endif
    for (Py_ssize_t i = start; i < n; i++) {
        float a = fabsf(x[i]);
        ok &= a <= 3.4028234663852886e38f;
        if (a >= thr) {
            if (count < cap)
                idx[count] = i;
            count++;
        }
    }
    *finite = ok;
    return count;
}

/* From candidates (increasing) with magnitudes mags, the k largest given v, the k-th
 * largest: every one above v, then the first ones equal to v. Written in increasing order. */
static Py_ssize_t pick_top(const float *mags, const int64_t *cand, Py_ssize_t count, float v,
                           Py_ssize_t k, int64_t *out)
{
    Py_ssize_t above = 0, written = 0;
    for (Py_ssize_t i = 0; i < count; i++)
        above += mags[i] > v;
    Py_ssize_t ties = k - above;
    for (Py_ssize_t i = 0; i < count && written < k; i++) {
        float a = mags[i];
        if (a > v || (a == v && ties-- > 0))
            out[written++] = cand[i];
    }
    return written;
}

static inline uint64_t index_at(const uint8_t *idx, int width, Py_ssize_t i)
{
    switch (width) {
    case 1: return idx[i];
    case 2: { uint16_t v; memcpy(&v, idx + 2 * i, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, idx + 4 * i, 4); return v; }
    default: { uint64_t v; memcpy(&v, idx + 8 * i, 8); return v; }
    }
}

/* out[idx[i]] += weight * values[i] (indices are gaps to add up when delta). Returns -1 when
 * an index falls outside out. */
static int scatter_add(const uint8_t *idx, int width, int delta, const float *values,
                       Py_ssize_t k, float *out, Py_ssize_t n, float weight)
{
    uint64_t at = 0;
    for (Py_ssize_t i = 0; i < k; i++) {
        uint64_t j = index_at(idx, width, i);
        at = delta ? at + j : j;
        if (at >= (uint64_t)n)
            return -1;
        out[at] += weight * values[i];
    }
    return 0;
}

/* ---- QSGD with Elias-gamma coding (hpcopt/encoders/elias.py has the stream layout) ---- */

static inline void put_bit(uint8_t *buf, uint64_t pos) { buf[pos >> 3] |= (uint8_t)(0x80u >> (pos & 7)); }

static inline int get_bit(const uint8_t *buf, uint64_t pos) { return (buf[pos >> 3] >> (7 - (pos & 7))) & 1; }

/* The low w bits of v, most significant first, from bit pos. */
static inline void put_bits(uint8_t *buf, uint64_t pos, uint64_t v, int w)
{
    for (int j = w - 1; j >= 0; j--, pos++)
        if ((v >> j) & 1)
            put_bit(buf, pos);
}

static inline uint64_t get_bits(const uint8_t *buf, uint64_t pos, int w)
{
    uint64_t v = 0;
    for (int j = 0; j < w; j++)
        v = (v << 1) | (uint64_t)get_bit(buf, pos + (uint64_t)j);
    return v;
}

static inline int bitlen64(uint64_t v) { return 64 - __builtin_clzll(v); }

/* floor(|x| * c + u * 2^-16) in double precision, u the element's 16 random bits (from
 * *word, the stream word of elements i & ~3, refreshed at every fourth element). */
static inline int64_t elias_level(float x, double c, uint64_t key, uint64_t i, uint64_t *word)
{
    if ((i & 3) == 0)
        *word = stream_word(key, i >> 2);
    uint32_t u = (uint32_t)(*word >> (16 * (i & 3))) & 0xFFFFu;
    return (int64_t)((double)fabsf(x) * c + (double)u * 0x1p-16);
}

/* Encode into out (cap bytes, zeroed here); returns the byte count, or -(bytes needed). */
static int64_t elias_encode(const float *x, Py_ssize_t n, double c, uint64_t key, uint8_t *out,
                            int64_t cap)
{
    uint64_t nnz = 0, tg = 0, tl = 0, word = 0;
    int64_t prev = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t lev = elias_level(x[i], c, key, (uint64_t)i, &word);
        if (lev) {
            tg += (uint64_t)bitlen64((uint64_t)(i - prev)) - 1;
            tl += (uint64_t)bitlen64((uint64_t)lev) - 1;
            nnz++;
            prev = i;
        }
    }
    int head = 2 * bitlen64(nnz + 1) - 1;
    uint64_t unary = tg + tl + 2 * nnz, total = (uint64_t)head + unary + nnz + tg + tl;
    int64_t bytes = (int64_t)((total + 7) / 8);
    if (bytes > cap)
        return -bytes;
    memset(out, 0, (size_t)bytes);
    put_bits(out, 0, nnz + 1, head);
    uint64_t ug = (uint64_t)head, ul = ug + tg + nnz, sg = ug + unary, gt = sg + nnz, lt = gt + tg;
    prev = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t lev = elias_level(x[i], c, key, (uint64_t)i, &word);
        if (!lev)
            continue;
        uint64_t gap = (uint64_t)(i - prev);
        int t = bitlen64(gap) - 1, s = bitlen64((uint64_t)lev) - 1;
        ug += (uint64_t)t;
        put_bit(out, ug++);
        put_bits(out, gt, gap, t);
        gt += (uint64_t)t;
        ul += (uint64_t)s;
        put_bit(out, ul++);
        put_bits(out, lt, (uint64_t)lev, s);
        lt += (uint64_t)s;
        if (x[i] < 0.0f)
            put_bit(out, sg);
        sg++;
        prev = i;
    }
    return bytes;
}

/* Zeros from bit *pos up to the next 1 (which is skipped); -1 past the end. */
static inline int64_t unary_at(const uint8_t *buf, uint64_t nbits, uint64_t *pos)
{
    int64_t z = 0;
    while (*pos < nbits && !get_bit(buf, *pos)) {
        (*pos)++;
        z++;
    }
    if (*pos >= nbits || z > 62)
        return -1;
    (*pos)++;
    return z;
}

/* out (+)= weight * value of every coded element (out zeroed first unless add); -1 when
 * the stream is malformed. */
static int elias_decode(const uint8_t *buf, int64_t nbytes, Py_ssize_t n, double scale,
                        float *out, float weight, int add)
{
    uint64_t nbits = (uint64_t)nbytes * 8, pos = 0;
    if (!add)
        memset(out, 0, (size_t)n * 4);
    if (nbits == 0)
        return 0;
    int64_t z = unary_at(buf, nbits, &pos);
    if (z < 0 || pos + (uint64_t)z > nbits)
        return -1;
    uint64_t nnz = ((1ULL << z) | get_bits(buf, pos, (int)z)) - 1;
    pos += (uint64_t)z;
    uint64_t ug = pos, p = pos, tg = 0, tl = 0;
    for (uint64_t k = 0; k < 2 * nnz; k++) {
        int64_t t = unary_at(buf, nbits, &p);
        if (t < 0)
            return -1;
        *(k < nnz ? &tg : &tl) += (uint64_t)t;
        if (k + 1 == nnz)
            pos = p;
    }
    uint64_t ul = pos, sg = p, gt = sg + nnz, lt = gt + tg;
    if (lt + tl > nbits)
        return -1;
    int64_t at = -1;
    for (uint64_t k = 0; k < nnz; k++) {
        int t = (int)unary_at(buf, nbits, &ug), s = (int)unary_at(buf, nbits, &ul);
        uint64_t gap = (1ULL << t) | get_bits(buf, gt, t), lev = (1ULL << s) | get_bits(buf, lt, s);
        gt += (uint64_t)t;
        lt += (uint64_t)s;
        at += (int64_t)gap;
        if (at >= n)
            return -1;
        float v = (float)((double)lev * scale);
        v = get_bit(buf, sg++) ? -v : v;
        v = weight * v;
        out[at] = add ? out[at] + v : v;
    }
    return 0;
}

/* ---- Python bindings ---- */

static int check_len(Py_buffer *b, Py_ssize_t need, const char *what)
{
    if (b->len < need) {
        PyErr_Format(PyExc_ValueError, "%s: buffer of %zd bytes, need %zd", what, b->len, need);
        return -1;
    }
    return 0;
}

#define RELEASE2(a, b) (PyBuffer_Release(a), PyBuffer_Release(b))

static PyObject *py_u16(PyObject *self, PyObject *args)
{
    unsigned long long key;
    Py_ssize_t start;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "Knw*", &key, &start, &out))
        return NULL;
    uint16_t *o = out.buf;
    for (Py_ssize_t i = 0; i < out.len / 2; i++)
        o[i] = (uint16_t)chunk16(key, (uint64_t)(start + i));
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyObject *py_sign_pack(PyObject *self, PyObject *args)
{
    Py_buffer x, bits;
    if (!PyArg_ParseTuple(args, "y*w*", &x, &bits))
        return NULL;
    Py_ssize_t n = x.len / 4;
    if (check_len(&bits, (n + 7) / 8, "sign_pack") < 0)
        return RELEASE2(&x, &bits), NULL;
    Py_BEGIN_ALLOW_THREADS
    sign_pack(x.buf, n, bits.buf);
    Py_END_ALLOW_THREADS
    RELEASE2(&x, &bits);
    Py_RETURN_NONE;
}

static PyObject *py_two_values(PyObject *self, PyObject *args)
{
    Py_buffer bits, out;
    float pos, neg;
    int add;
    if (!PyArg_ParseTuple(args, "y*ffw*p", &bits, &pos, &neg, &out, &add))
        return NULL;
    Py_ssize_t n = out.len / 4;
    if (check_len(&bits, (n + 7) / 8, "two_values") < 0)
        return RELEASE2(&bits, &out), NULL;
    Py_BEGIN_ALLOW_THREADS
    two_values(bits.buf, pos, neg, out.buf, n, add);
    Py_END_ALLOW_THREADS
    RELEASE2(&bits, &out);
    Py_RETURN_NONE;
}

static int check_range(Py_ssize_t start, Py_ssize_t n, Py_ssize_t bucket, Py_buffer *scales,
                       Py_buffer *planes, Py_ssize_t stride, int nplanes)
{
    if (start % 8 || bucket < 1 || start < 0) {
        PyErr_SetString(PyExc_ValueError, "start must be a multiple of 8, bucket >= 1");
        return -1;
    }
    if (n == 0)
        return 0;
    if (check_len(scales, 4 * ((start + n - 1) / bucket + 1), "scales") < 0)
        return -1;
    if (stride < (start + n + 7) / 8) {
        PyErr_SetString(PyExc_ValueError, "plane stride too small for the range");
        return -1;
    }
    return check_len(planes, (Py_ssize_t)nplanes * stride, "planes");
}

static PyObject *py_quantize(PyObject *self, PyObject *args)
{
    Py_buffer x, scales, planes;
    Py_ssize_t bucket, start, stride;
    unsigned int levels;
    unsigned long long key;
    if (!PyArg_ParseTuple(args, "y*y*nIKnw*n", &x, &scales, &bucket, &levels, &key, &start,
                          &planes, &stride))
        return NULL;
    Py_ssize_t n = x.len / 4;
    int mag_bits = 0;
    while ((levels >> mag_bits) && mag_bits < 32)
        mag_bits++;
    PyObject *result = NULL;
    if (levels >= 1 && check_range(start, n, bucket, &scales, &planes, stride, 1 + mag_bits) == 0) {
        if (n) {
            Py_BEGIN_ALLOW_THREADS
            quantize(x.buf, n, scales.buf, bucket, levels, key, start, planes.buf, stride);
            Py_END_ALLOW_THREADS
        }
        result = Py_None;
        Py_INCREF(result);
    } else if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "levels must be >= 1");
    }
    PyBuffer_Release(&x);
    RELEASE2(&scales, &planes);
    return result;
}

static PyObject *py_dequantize(PyObject *self, PyObject *args)
{
    Py_buffer planes, qs, out;
    Py_ssize_t stride, bucket, start;
    int mag_bits, add;
    float divisor, weight;
    if (!PyArg_ParseTuple(args, "y*niy*fnnw*fp", &planes, &stride, &mag_bits, &qs, &divisor,
                          &bucket, &start, &out, &weight, &add))
        return NULL;
    Py_ssize_t n = out.len / 4;
    PyObject *result = NULL;
    if (mag_bits >= 1 && mag_bits <= 32 &&
        check_range(start, n, bucket, &qs, &planes, stride, 1 + mag_bits) == 0) {
        if (n) {
            Py_BEGIN_ALLOW_THREADS
            dequantize(planes.buf, stride, mag_bits, qs.buf, divisor, bucket, start, out.buf, n,
                       weight, add);
            Py_END_ALLOW_THREADS
        }
        result = Py_None;
        Py_INCREF(result);
    } else if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "mag_bits must be in 1..32");
    }
    PyBuffer_Release(&planes);
    RELEASE2(&qs, &out);
    return result;
}

static PyObject *py_natural_encode(PyObject *self, PyObject *args)
{
    Py_buffer x, signs, exps;
    unsigned long long key;
    Py_ssize_t start;
    uint32_t top = 0;
    if (!PyArg_ParseTuple(args, "y*Knw*w*", &x, &key, &start, &signs, &exps))
        return NULL;
    Py_ssize_t n = x.len / 4;
    PyObject *result = NULL;
    if (start % 8 || start < 0)
        PyErr_SetString(PyExc_ValueError, "start must be a multiple of 8");
    else if (check_len(&signs, (start + n + 7) / 8, "signs") == 0 &&
             check_len(&exps, start + n, "exponents") == 0) {
        Py_BEGIN_ALLOW_THREADS
        top = natural_encode(x.buf, n, key, start, signs.buf, exps.buf);
        Py_END_ALLOW_THREADS
        result = PyLong_FromUnsignedLong(top);
    }
    PyBuffer_Release(&x);
    RELEASE2(&signs, &exps);
    return result;
}

static PyObject *py_natural_decode(PyObject *self, PyObject *args)
{
    Py_buffer signs, exps, out;
    Py_ssize_t start;
    float weight;
    int add;
    if (!PyArg_ParseTuple(args, "y*y*nw*fp", &signs, &exps, &start, &out, &weight, &add))
        return NULL;
    Py_ssize_t n = out.len / 4;
    PyObject *result = NULL;
    if (start < 0)
        PyErr_SetString(PyExc_ValueError, "start must be >= 0");
    else if (check_len(&signs, (start + n + 7) / 8, "signs") == 0 &&
             check_len(&exps, start + n, "exponents") == 0) {
        Py_BEGIN_ALLOW_THREADS
        natural_decode(signs.buf, exps.buf, start, out.buf, n, weight, add);
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&signs);
    RELEASE2(&exps, &out);
    return result;
}

static PyObject *py_select_above(PyObject *self, PyObject *args)
{
    Py_buffer x, idx;
    float thr;
    Py_ssize_t count;
    int finite = 1;
    if (!PyArg_ParseTuple(args, "y*fw*", &x, &thr, &idx))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    count = select_above(x.buf, x.len / 4, thr, idx.buf, idx.len / 8, &finite);
    Py_END_ALLOW_THREADS
    RELEASE2(&x, &idx);
    return Py_BuildValue("(nO)", count, finite ? Py_True : Py_False);
}

static PyObject *py_pick_top(PyObject *self, PyObject *args)
{
    Py_buffer x, cand, out;
    float v;
    Py_ssize_t k, written = 0;
    if (!PyArg_ParseTuple(args, "y*y*fnw*", &x, &cand, &v, &k, &out))
        return NULL;
    Py_ssize_t count = cand.len / 8;
    int bad = out.len / 8 < k || x.len / 4 < count;
    if (bad)
        PyErr_SetString(PyExc_ValueError, "pick_top: fewer magnitudes than candidates, or output too small");
    else
        written = pick_top(x.buf, cand.buf, count, v, k, out.buf);
    PyBuffer_Release(&x);
    RELEASE2(&cand, &out);
    return bad ? NULL : PyLong_FromSsize_t(written);
}

static PyObject *py_scatter_add(PyObject *self, PyObject *args)
{
    Py_buffer idx, values, out;
    int width, delta, failed = 0;
    float weight;
    if (!PyArg_ParseTuple(args, "y*ipy*w*f", &idx, &width, &delta, &values, &out, &weight))
        return NULL;
    Py_ssize_t k = values.len / 4;
    PyObject *result = NULL;
    if ((width != 1 && width != 2 && width != 4 && width != 8) || idx.len < k * width)
        PyErr_SetString(PyExc_ValueError, "scatter_add: bad index width or too few indices");
    else {
        Py_BEGIN_ALLOW_THREADS
        failed = scatter_add(idx.buf, width, delta, values.buf, k, out.buf, out.len / 4, weight);
        Py_END_ALLOW_THREADS
        if (failed)
            PyErr_SetString(PyExc_ValueError, "scatter_add: index beyond the output");
        else {
            result = Py_None;
            Py_INCREF(result);
        }
    }
    PyBuffer_Release(&idx);
    RELEASE2(&values, &out);
    return result;
}

static PyObject *py_elias_encode(PyObject *self, PyObject *args)
{
    Py_buffer x, out;
    double c;
    unsigned long long key;
    int64_t got;
    if (!PyArg_ParseTuple(args, "y*dKw*", &x, &c, &key, &out))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    got = elias_encode(x.buf, x.len / 4, c, key, out.buf, (int64_t)out.len);
    Py_END_ALLOW_THREADS
    RELEASE2(&x, &out);
    return PyLong_FromLongLong(got);
}

static PyObject *py_elias_decode(PyObject *self, PyObject *args)
{
    Py_buffer stream, out;
    double scale;
    float weight;
    int add, failed;
    if (!PyArg_ParseTuple(args, "y*dw*fp", &stream, &scale, &out, &weight, &add))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    failed = elias_decode(stream.buf, stream.len, out.len / 4, scale, out.buf, weight, add);
    Py_END_ALLOW_THREADS
    RELEASE2(&stream, &out);
    if (failed) {
        PyErr_SetString(PyExc_ValueError, "qsgd-elias: malformed payload");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"elias_encode", py_elias_encode, METH_VARARGS,
     "elias_encode(x, c, key, out) -> bytes written, or -(bytes needed)."},
    {"elias_decode", py_elias_decode, METH_VARARGS,
     "elias_decode(stream, scale, out, weight, add): out (+)= weight * decoded."},
    {"u16", py_u16, METH_VARARGS, "u16(key, start, out uint16): 16-bit chunks of the stream."},
    {"sign_pack", py_sign_pack, METH_VARARGS, "sign_pack(x f32, bits u8): packbits(x < 0)."},
    {"two_values", py_two_values, METH_VARARGS,
     "two_values(bits, pos, neg, out f32, add): out (+)= bit ? neg : pos."},
    {"quantize", py_quantize, METH_VARARGS,
     "quantize(x, scales, bucket, levels, key, start, planes, stride): levels + signs."},
    {"dequantize", py_dequantize, METH_VARARGS,
     "dequantize(planes, stride, mag_bits, norms, divisor, bucket, start, out, weight, add)."},
    {"natural_encode", py_natural_encode, METH_VARARGS,
     "natural_encode(x, key, start, signs, exps) -> largest exponent."},
    {"natural_decode", py_natural_decode, METH_VARARGS,
     "natural_decode(signs, exps, start, out, weight, add)."},
    {"select_above", py_select_above, METH_VARARGS,
     "select_above(x, thr, idx int64) -> (count, finite): indices with |x| >= thr."},
    {"pick_top", py_pick_top, METH_VARARGS,
     "pick_top(mags, cand int64, v, k, out int64) -> written: the k largest given the k-th v."},
    {"scatter_add", py_scatter_add, METH_VARARGS,
     "scatter_add(idx, width, delta, values, out, weight): out[idx] += weight * values."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_codecs",
                                    "Fused encoder kernels (see hpcopt/encoders/kernels.py).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__codecs(void)
{
    init_spread();
#if HAVE_AVX2_PATH
    init_reverse();
    __builtin_cpu_init();
    use_avx2 = __builtin_cpu_supports("avx2") && getenv("HPCOPT_NO_AVX2") == NULL;
#endif
    return PyModule_Create(&module);
}
