/* nnspec's CPU reductions in one read of a float32 tensor (nnspec/numerics/native.py
 * compiles this once per machine and calls it through ctypes).
 *
 * torch reduces a tensor for a stats vector in five passes (sum, aminmax, two dots and
 * a sign pass); here one loop does it, vectorised: float32 partial sums per block of
 * BLOCK values (what a BLAS dot accumulates in, and exact for the zero count), carried
 * in double across blocks; min and max as ordered integer keys of the float bits,
 * because integer min/max vectorise where float min/max (NaN rules) do not.
 * Callers pass only all-finite data to nnspec_moments_f32 (they check the sum).
 */
#include <stdint.h>
#include <string.h>
#include <math.h>

#define BLOCK 4096

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

static inline int32_t order_key(float v) {
    int32_t b;
    memcpy(&b, &v, sizeof b);
    return b ^ ((b >> 31) & 0x7fffffff); /* negative floats: reverse their order */
}

static inline float from_key(int32_t k) {
    int32_t b = k ^ ((k >> 31) & 0x7fffffff);
    float v;
    memcpy(&v, &b, sizeof v);
    return v;
}

static inline void put_moments(double *out, int64_t n, double s, double ss, double ab, double z, int32_t mn,
                               int32_t mx) {
    out[0] = s;
    out[1] = ss;
    out[2] = ab;
    out[3] = z;
    out[4] = n ? from_key(mn) : 0.0;
    out[5] = n ? from_key(mx) : 0.0;
}

/* out: sum and sum of squares of x - shift, sum of |x|, zeros, min, max (all double).
 * The shift (a value of x) keeps the variance from cancelling when |mean| >> std. */
CLONES void nnspec_moments_f32(const float *x, int64_t n, float shift, double *out) {
    double s = 0, ss = 0, ab = 0, z = 0;
    int32_t mn = INT32_MAX, mx = INT32_MIN;
    for (int64_t lo = 0; lo < n; lo += BLOCK) {
        int64_t hi = lo + BLOCK < n ? lo + BLOCK : n;
        float bs = 0, bss = 0, bab = 0, bz = 0;
        int32_t bmn = INT32_MAX, bmx = INT32_MIN;
#pragma omp simd reduction(+ : bs, bss, bab, bz) reduction(min : bmn) reduction(max : bmx)
        for (int64_t i = lo; i < hi; i++) {
            float v = x[i], d = v - shift;
            bs += d;
            bss += d * d;
            bab += fabsf(v);
            bz += v == 0.0f ? 1.0f : 0.0f;
            int32_t k = order_key(v);
            bmn = k < bmn ? k : bmn;
            bmx = k > bmx ? k : bmx;
        }
        s += bs;
        ss += bss;
        ab += bab;
        z += bz;
        mn = bmn < mn ? bmn : mn;
        mx = bmx > mx ? bmx : mx;
    }
    put_moments(out, n, s, ss, ab, z, mn, mx);
}

/* nnspec_moments_f32 with every sum carried in double: for small tensors, where a call's
 * cost is its overhead, so that their stats are float64-exact as NumPy's would be. */
CLONES void nnspec_moments_f32_exact(const float *x, int64_t n, float shift, double *out) {
    double s = 0, ss = 0, ab = 0, z = 0, sh = shift;
    int32_t mn = INT32_MAX, mx = INT32_MIN;
#pragma omp simd reduction(+ : s, ss, ab, z) reduction(min : mn) reduction(max : mx)
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        double d = (double)v - sh;
        s += d;
        ss += d * d;
        ab += fabs((double)v);
        z += v == 0.0f ? 1.0 : 0.0;
        int32_t k = order_key(v);
        mn = k < mn ? k : mn;
        mx = k > mx ? k : mx;
    }
    put_moments(out, n, s, ss, ab, z, mn, mx);
}

/* min and max of all-finite data, one read */
CLONES void nnspec_minmax_f32(const float *x, int64_t n, double *out) {
    int32_t mn = INT32_MAX, mx = INT32_MIN;
#pragma omp simd reduction(min : mn) reduction(max : mx)
    for (int64_t i = 0; i < n; i++) {
        int32_t k = order_key(x[i]);
        mn = k < mn ? k : mn;
        mx = k > mx ? k : mx;
    }
    out[0] = n ? from_key(mn) : 0.0;
    out[1] = n ? from_key(mx) : 0.0;
}

/* Bin counts of all-finite data: pos = (x - lo) * scale in float32, two roundings
 * as torch's sub and mul make them (this file is compiled without FMA contraction),
 * clamped to [0, bins] (data inside the range need no clamp), truncated. Per chunk
 * the bin indexes are computed first (a loop that vectorises), then counted into
 * four count arrays in turn, so that runs of one value do not stall on one counter.
 * counts: 4 * (bins + 1) zeros from the caller, each array with a slot ``bins`` for
 * values at hi, which the caller folds into the last bin. outside: how many values
 * lie below lo and above hi (with a range). */
#define CHUNK 1024
CLONES void nnspec_bins_f32(const float *x, int64_t n, float lo, float scale, int64_t bins, int clamp, float hi,
                            int64_t *counts, int64_t *outside) {
    int64_t below = 0, above = 0, width = bins + 1;
    int64_t *c0 = counts, *c1 = counts + width, *c2 = counts + 2 * width, *c3 = counts + 3 * width;
    int32_t idx[CHUNK];
    float top = (float)bins;
    for (int64_t start = 0; start < n; start += CHUNK) {
        int64_t m = n - start < CHUNK ? n - start : CHUNK;
        const float *xs = x + start;
        int64_t b = 0, a = 0;
#pragma omp simd reduction(+ : b, a)
        for (int64_t i = 0; i < m; i++) {
            float v = xs[i];
            float pos = (v - lo) * scale;
            pos = pos < 0.0f ? 0.0f : (pos > top ? top : pos); /* a no-op without a range */
            idx[i] = (int32_t)pos;
            b += v < lo;
            a += v > hi;
        }
        if (clamp) {
            below += b;
            above += a;
        }
        int64_t i = 0;
        for (; i + 4 <= m; i += 4) {
            c0[idx[i]]++;
            c1[idx[i + 1]]++;
            c2[idx[i + 2]]++;
            c3[idx[i + 3]]++;
        }
        for (; i < m; i++) c0[idx[i]]++;
    }
    outside[0] = below;
    outside[1] = above;
}
