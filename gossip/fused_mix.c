/* One pass over a block of the gossip mix (see gossip/fused_mix.py for why and how it is loaded).
 *
 *   diff   = own - (1/k) * sum_j theirs[j]          (the neighbour-mean difference)
 *   out    = own + alpha * diff                     (alpha = -k*w: the mix with equal weights w)
 *   norm_sq[j] += ||theirs[j]||^2                   (screening: non-finite values, norm jumps)
 *   dist_sq   += ||diff||^2                          (the distance to the neighbourhood's mean)
 *
 * Tiles of TILE elements keep diff in L1. Sums of squares run in LANES independent float partial
 * sums (plain loops the compiler vectorises, with no dependency chain through one accumulator and
 * no need for -ffast-math), as float32 arithmetic like torch.dot: a NaN/Inf, or a square that
 * overflows float32, stays non-finite. Each tile's sum is added in double.
 */
#include <stdint.h>

#define TILE 1024
#define LANES 16

static float lane_sum(const float *s)
{
    float total = 0.0f;
    for (int u = 0; u < LANES; u++)
        total += s[u];
    return total;
}

/* diff = base - scale * x over m elements (base may be diff itself); returns ||x||^2. */
static float subtract_scaled(float *diff, const float *base, const float *restrict x, int64_t m, float scale)
{
    float s[LANES] = {0.0f};
    float tail = 0.0f;
    int64_t t = 0;
    for (; t + LANES <= m; t += LANES)
        for (int u = 0; u < LANES; u++) {
            const float v = x[t + u];
            s[u] += v * v;
            diff[t + u] = base[t + u] - scale * v;
        }
    for (; t < m; t++) {
        tail += x[t] * x[t];
        diff[t] = base[t] - scale * x[t];
    }
    return lane_sum(s) + tail;
}

/* out = own + alpha * diff over m elements; returns ||diff||^2. */
static float mix_from_difference(float *restrict out, const float *restrict own, const float *restrict diff,
                                 int64_t m, float alpha)
{
    float s[LANES] = {0.0f};
    float tail = 0.0f;
    int64_t t = 0;
    for (; t + LANES <= m; t += LANES)
        for (int u = 0; u < LANES; u++) {
            const float d = diff[t + u];
            out[t + u] = own[t + u] + alpha * d;
            s[u] += d * d;
        }
    for (; t < m; t++) {
        out[t] = own[t] + alpha * diff[t];
        tail += diff[t] * diff[t];
    }
    return lane_sum(s) + tail;
}

void dssl_mix_block(const float *own, const float *const *theirs, int32_t k, int64_t n, float alpha,
                    float *out, double *norm_sq, double *dist_sq)
{
    float diff[TILE];
    const float scale = 1.0f / (float)k;
    for (int64_t lo = 0; lo < n; lo += TILE) {
        const int64_t m = (n - lo < TILE) ? n - lo : TILE;
        for (int32_t j = 0; j < k; j++)
            norm_sq[j] += (double)subtract_scaled(diff, j == 0 ? own + lo : diff, theirs[j] + lo, m, scale);
        *dist_sq += (double)mix_from_difference(out + lo, own + lo, diff, m, alpha);
    }
}
