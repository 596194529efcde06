/* The fast path's CPU kernels (model/fast/kernel.py builds this file with the system C compiler, caches the library
   by the hash of these bytes and the compile flags, and binds the three entry points with ctypes):

   rvm_upsample_compose  low-res coefficients A, b + float source → fgr, pha (the refiner's full-resolution step);
   rvm_render_u8         low-res coefficients A, b + 8-bit source → one 8-bit output image (video conversion);
   rvm_downsample_u8     8-bit frames → the network's low-resolution float input.

   Each follows PyTorch's CPU arithmetic step by step (bilinear tables, rounding order), so results equal the
   PyTorch definitions in model/fast/compose.py to float rounding; documentation/architecture.md shows where they
   sit in a conversion. */
#include <stdint.h>
#include <stdlib.h>

/* Source index pairs and weights of a bilinear resize along one axis (align_corners = false), following
   PyTorch's CPU rules: src = max(scale·(dst + 0.5) − 0.5, 0), with scale = in / out when the output size is given
   and 1 / scale_factor when a scale factor is (pass scale ≤ 0 for the former). */
static void axis_weights(int64_t in, int64_t out, float given_scale, int64_t *i0, int64_t *i1, float *l0, float *l1) {
    const float scale = given_scale > 0.0f ? given_scale : (float)in / (float)out;
    for (int64_t o = 0; o < out; ++o) {
        if (in == out) { i0[o] = o; i1[o] = o; l0[o] = 1.0f; l1[o] = 0.0f; continue; }
        float s = (float)((double)scale * ((double)o + 0.5) - 0.5); /* in double, as PyTorch (its 0.5 is a double) */
        if (s < 0.0f) s = 0.0f;
        int64_t i = (int64_t)s;
        if (i > in - 1) i = in - 1;
        float lambda = s - (float)i;
        if (lambda > 1.0f) lambda = 1.0f;
        i0[o] = i;
        i1[o] = i + (i < in - 1 ? 1 : 0);
        l0[o] = 1.0f - lambda;
        l1[o] = lambda;
    }
}

/* Branch-free after vectorisation; NaN stays NaN like torch.clamp (fminf/fmaxf would block vectorisation). */
static inline float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

/* Horizontal pass of one low-res row: out[p][x] = u0[x]·in[p][x0[x]] + u1[x]·in[p][x1[x]] for every plane p. */
static void widen_row(const float *restrict in, int64_t plane_stride, int planes, int64_t w, int64_t W,
                      const int64_t *restrict x0, const int64_t *restrict x1, const float *restrict u0,
                      const float *restrict u1, float *restrict out) {
    for (int p = 0; p < planes; ++p) {
        const float *restrict row = in + p * plane_stride;
        float *restrict o = out + p * W;
        for (int64_t x = 0; x < W; ++x) o[x] = u0[x] * row[x0[x]] + u1[x] * row[x1[x]];
    }
    (void)w;
}

/* One output row from the two widened coefficient rows (top, bottom) and their weights; has_a is a constant at
   each call site, so the compiler emits two branch-free loops. */
static inline __attribute__((always_inline)) void compose_row(const float *restrict top, const float *restrict bottom, float wt, float wb,
                               const float *restrict s, int64_t HW, float *restrict f, float *restrict q,
                               int64_t W, const int has_a) {
    const int b_off = has_a ? 4 : 0;
    const float *restrict sr = s, *restrict sg = s + HW, *restrict sb = s + 2 * HW;
    for (int64_t x = 0; x < W; ++x) {
        const float r = sr[x], g = sg[x], bl = sb[x];
        const float luma = (r + g + bl) / 3.0f;
#define COEF(p) (wt * top[(p) * W + x] + wb * bottom[(p) * W + x])
        const float a0 = has_a ? COEF(0) : 0.0f, a1 = has_a ? COEF(1) : 0.0f;
        const float a2 = has_a ? COEF(2) : 0.0f, a3 = has_a ? COEF(3) : 0.0f;
        f[x] = clamp01(a0 * r + COEF(b_off + 0) + r);
        f[HW + x] = clamp01(a1 * g + COEF(b_off + 1) + g);
        f[2 * HW + x] = clamp01(a2 * bl + COEF(b_off + 2) + bl);
        q[x] = clamp01(a3 * luma + COEF(b_off + 3));
#undef COEF
    }
}

/* Per-thread cache of the two widened low-res coefficient rows [planes, W] that an output row blends; a thread
   walks consecutive output rows, which mostly reuse them. */
typedef struct {
    float *slot[2];
    int64_t key[2];
} RowCache;

static int row_cache_open(RowCache *c, int planes, int64_t W) {
    c->slot[0] = (float *)malloc(sizeof(float) * planes * W);
    c->slot[1] = (float *)malloc(sizeof(float) * planes * W);
    c->key[0] = c->key[1] = -1;
    return c->slot[0] != NULL && c->slot[1] != NULL;
}

static void row_cache_close(RowCache *c) { free(c->slot[0]); free(c->slot[1]); }

/* The widened coefficient rows above (rows[0]) and below (rows[1]) output row y of image img. */
static void coefficient_rows(RowCache *c, const float *coef, int planes, int64_t img, int64_t y, int64_t h,
                             int64_t w, int64_t H, int64_t W, const int64_t *yi, const int64_t *xi, const float *xl,
                             const float *rows[2]) {
    const int64_t want[2] = {img * h + yi[y], img * h + yi[H + y]};
    for (int k = 0; k < 2; ++k) {
        int found = c->key[0] == want[k] ? 0 : (c->key[1] == want[k] ? 1 : -1);
        if (found < 0) {
            found = (k == 1 && c->key[0] == want[0]) ? 1 : (k == 1 && c->key[1] == want[0] ? 0 : k);
            widen_row(coef + img * planes * h * w + (want[k] - img * h) * w, h * w, planes, w, W, xi, xi + W, xl,
                      xl + W, c->slot[found]);
            c->key[found] = want[k];
        }
        rows[k] = c->slot[found];
    }
}

/* Bilinear index/weight tables of the coefficient upsampling h × w → H × W; NULL when out of memory. */
typedef struct {
    int64_t *yi, *xi;
    float *yl, *xl;
} Tables;

static int tables_open(Tables *t, int64_t h, int64_t w, int64_t H, int64_t W, float scale) {
    t->yi = (int64_t *)malloc(sizeof(int64_t) * 2 * H);
    t->xi = (int64_t *)malloc(sizeof(int64_t) * 2 * W);
    t->yl = (float *)malloc(sizeof(float) * 2 * H);
    t->xl = (float *)malloc(sizeof(float) * 2 * W);
    if (!t->yi || !t->xi || !t->yl || !t->xl) return 0;
    axis_weights(h, H, scale, t->yi, t->yi + H, t->yl, t->yl + H);
    axis_weights(w, W, scale, t->xi, t->xi + W, t->xl, t->xl + W);
    return 1;
}

static void tables_close(Tables *t) { free(t->yi); free(t->xi); free(t->yl); free(t->xl); }

/* coef [n, planes, h, w] with planes = 8 (A then b) when has_a, else 4 (b only, A = 0).
   src [n, 3, H, W]; fgr [n, 3, H, W]; pha [n, 1, H, W]; all float32, contiguous. Returns 0 on success. */
int rvm_upsample_compose(const float *coef, int has_a, const float *src, float *fgr, float *pha,
                         int64_t n, int64_t h, int64_t w, int64_t H, int64_t W, int threads) {
    const int planes = has_a ? 8 : 4;
    Tables t;
    if (!tables_open(&t, h, w, H, W, 0.0f)) { tables_close(&t); return 1; }
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        RowCache cache;
        const int ok = row_cache_open(&cache, planes, W);
        if (!ok) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < n * H; ++i) {
            if (!ok) continue;
            const int64_t img = i / H, y = i % H;
            const float *rows[2];
            coefficient_rows(&cache, coef, planes, img, y, h, w, H, W, t.yi, t.xi, t.xl, rows);
            const float *s = src + img * 3 * H * W + y * W;
            float *f = fgr + img * 3 * H * W + y * W;
            float *q = pha + img * H * W + y * W;
            if (has_a)
                compose_row(rows[0], rows[1], t.yl[y], t.yl[H + y], s, H * W, f, q, W, 1);
            else
                compose_row(rows[0], rows[1], t.yl[y], t.yl[H + y], s, H * W, f, q, W, 0);
        }
        row_cache_close(&cache);
    }
    tables_close(&t);
    return failed;
}

/* ---- 8-bit outputs, straight from the coefficients and the 8-bit source ---------------------------------------
   The same values as the float path followed by (uint8)(x·255 + 0.5): the source is read as s / 255, fgr and pha
   as in compose_row, the composition is torch.lerp(background, fgr, pha), and the transparent output is
   [fgr · (pha > 0), pha]. */
enum { FOREGROUND = 0, ALPHA = 1, COMPOSITION_COLOUR = 2, COMPOSITION_IMAGE = 3, TRANSPARENT = 4 };

/* x·255 + 0.5, truncated to a byte later; two roundings as in PyTorch (no contraction, see the flags). */
static inline float byte_value(float v) { return v * 255.0f + 0.5f; }

/* torch.lerp's formula: exact at both ends. */
static inline float lerp(float start, float end, float weight) {
    const float diff = end - start;
    const float from_start = start + weight * diff, from_end = end - diff * (1.0f - weight);
    return __builtin_fabsf(weight) < 0.5f ? from_start : from_end; /* both computed: a select, no branch */
}

/* Per-thread scratch rows for render_row. */
typedef struct {
    float *coef;  /* [8, W] blended coefficients of the row */
    float *rgb;   /* [3, W] source (and [3, W] background) as floats */
    float *value; /* [4, W] output channels as x·255 + 0.5 */
} Scratch;

static int scratch_open(Scratch *t, int64_t W) {
    t->coef = (float *)malloc(sizeof(float) * 8 * W);
    t->rgb = (float *)malloc(sizeof(float) * 6 * W);
    t->value = (float *)malloc(sizeof(float) * 4 * W);
    return t->coef && t->rgb && t->value;
}

static void scratch_close(Scratch *t) { free(t->coef); free(t->rgb); free(t->value); }

/* One output row in four passes (blend coefficient rows; bytes → floats; planar maths; floats → interleaved bytes),
   each a simple loop the compiler vectorises. kind and has_a are constants at each call site. src [W, 3] uint8;
   background [W, 3] uint8 (COMPOSITION_IMAGE) or colour[3] in [0, 1] (COMPOSITION_COLOUR); out [W, channels]. */
static inline __attribute__((always_inline)) void render_row(const float *restrict top, const float *restrict bottom, float wt, float wb,
                              const uint8_t *restrict s, const uint8_t *restrict background,
                              const float *restrict colour, uint8_t *restrict out, int64_t W, Scratch *t,
                              const int has_a, const int kind) {
    const int planes = has_a ? 8 : 4, b_off = has_a ? 4 : 0;
    float *restrict c = t->coef, *restrict rgb = t->rgb, *restrict v = t->value;
    for (int64_t i = 0; i < planes * W; ++i) c[i] = wt * top[i] + wb * bottom[i];
    for (int64_t x = 0; x < W; ++x) {
        rgb[x] = (float)s[3 * x] / 255.0f;
        rgb[W + x] = (float)s[3 * x + 1] / 255.0f;
        rgb[2 * W + x] = (float)s[3 * x + 2] / 255.0f;
    }
    if (kind == COMPOSITION_IMAGE)
        for (int64_t x = 0; x < W; ++x) {
            rgb[3 * W + x] = (float)background[3 * x] / 255.0f;
            rgb[4 * W + x] = (float)background[3 * x + 1] / 255.0f;
            rgb[5 * W + x] = (float)background[3 * x + 2] / 255.0f;
        }
    float *restrict pha = v + 3 * W;
    if (kind != FOREGROUND)
        for (int64_t x = 0; x < W; ++x) {
            const float luma = (rgb[x] + rgb[W + x] + rgb[2 * W + x]) / 3.0f;
            pha[x] = clamp01((has_a ? c[3 * W + x] : 0.0f) * luma + c[(b_off + 3) * W + x]);
        }
    if (kind != ALPHA)
        for (int ch = 0; ch < 3; ++ch) {
            const float *restrict a = c + ch * W, *restrict b = c + (b_off + ch) * W, *restrict src = rgb + ch * W;
            float *restrict f = v + ch * W;
            for (int64_t x = 0; x < W; ++x) f[x] = clamp01((has_a ? a[x] : 0.0f) * src[x] + b[x] + src[x]);
        }
    /* v becomes x·255 + 0.5 of each output channel */
    if (kind == COMPOSITION_COLOUR || kind == COMPOSITION_IMAGE)
        for (int ch = 0; ch < 3; ++ch) {
            float *restrict f = v + ch * W;
            const float *restrict bg = rgb + (3 + ch) * W;
            if (kind == COMPOSITION_COLOUR)
                for (int64_t x = 0; x < W; ++x) f[x] = byte_value(lerp(colour[ch], f[x], pha[x]));
            else
                for (int64_t x = 0; x < W; ++x) f[x] = byte_value(lerp(bg[x], f[x], pha[x]));
        }
    else if (kind == TRANSPARENT)
        for (int ch = 0; ch < 3; ++ch) {
            float *restrict f = v + ch * W;
            for (int64_t x = 0; x < W; ++x) f[x] = byte_value(f[x] * (pha[x] > 0.0f ? 1.0f : 0.0f));
        }
    else if (kind == FOREGROUND)
        for (int64_t i = 0; i < 3 * W; ++i) v[i] = byte_value(v[i]);
    if (kind == ALPHA || kind == TRANSPARENT)
        for (int64_t x = 0; x < W; ++x) pha[x] = byte_value(pha[x]);
    if (kind == ALPHA) {
        for (int64_t x = 0; x < W; ++x) out[x] = (uint8_t)pha[x];
    } else if (kind == TRANSPARENT) {
        for (int64_t x = 0; x < W; ++x) {
            out[4 * x] = (uint8_t)v[x]; out[4 * x + 1] = (uint8_t)v[W + x];
            out[4 * x + 2] = (uint8_t)v[2 * W + x]; out[4 * x + 3] = (uint8_t)v[3 * W + x];
        }
    } else {
        for (int64_t x = 0; x < W; ++x) {
            out[3 * x] = (uint8_t)v[x]; out[3 * x + 1] = (uint8_t)v[W + x]; out[3 * x + 2] = (uint8_t)v[2 * W + x];
        }
    }
}

#define RENDER_CASE(K) \
    if (has_a) render_row(rows[0], rows[1], wt, wb, s, bg, colour, o, W, &scratch, 1, K); \
    else render_row(rows[0], rows[1], wt, wb, s, bg, colour, o, W, &scratch, 0, K); \
    break;

/* coef as in rvm_upsample_compose; src [n, H, W, 3] uint8; background [bg_frames, H, W, 3] uint8 (bg_frames 1 or
   n) for COMPOSITION_IMAGE; colour[3] for COMPOSITION_COLOUR; out [n, H, W, channels] with channels 3 (FOREGROUND,
   COMPOSITION_*), 1 (ALPHA) or 4 (TRANSPARENT). Returns 0 on success. */
int rvm_render_u8(const float *coef, int has_a, const uint8_t *src, const uint8_t *background, int64_t bg_frames,
                  const float *colour, int kind, uint8_t *out, int64_t n, int64_t h, int64_t w, int64_t H, int64_t W,
                  int threads) {
    const int planes = has_a ? 8 : 4;
    const int channels = kind == ALPHA ? 1 : (kind == TRANSPARENT ? 4 : 3);
    Tables t;
    if (!tables_open(&t, h, w, H, W, 0.0f)) { tables_close(&t); return 1; }
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        RowCache cache;
        Scratch scratch;
        const int ok = row_cache_open(&cache, planes, W) & scratch_open(&scratch, W);
        if (!ok) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t i = 0; i < n * H; ++i) {
            if (!ok) continue;
            const int64_t img = i / H, y = i % H;
            const float *rows[2];
            coefficient_rows(&cache, coef, planes, img, y, h, w, H, W, t.yi, t.xi, t.xl, rows);
            const float wt = t.yl[y], wb = t.yl[H + y];
            const uint8_t *s = src + (img * H + y) * W * 3;
            const uint8_t *bg = background ? background + ((bg_frames > 1 ? img : 0) * H + y) * W * 3 : NULL;
            uint8_t *o = out + (img * H + y) * W * channels;
            switch (kind) {
                case FOREGROUND: RENDER_CASE(FOREGROUND)
                case ALPHA: RENDER_CASE(ALPHA)
                case COMPOSITION_COLOUR: RENDER_CASE(COMPOSITION_COLOUR)
                case COMPOSITION_IMAGE: RENDER_CASE(COMPOSITION_IMAGE)
                default: RENDER_CASE(TRANSPARENT)
            }
        }
        row_cache_close(&cache);
        scratch_close(&scratch);
    }
    tables_close(&t);
    return failed;
}

/* ---- the model's input from 8-bit frames ------------------------------------------------------------------------
   src [n, H, W, 3] uint8 → dst [n, 3, h, w] float32 = F.interpolate(src / 255 as [n, 3, H, W],
   scale_factor = ratio, mode = 'bilinear', align_corners = False, recompute_scale_factor = False). */
int rvm_downsample_u8(const uint8_t *src, float *dst, int64_t n, int64_t H, int64_t W, int64_t h, int64_t w,
                      double ratio, int threads) {
    Tables t;
    if (!tables_open(&t, H, W, h, w, (float)(1.0 / ratio))) { tables_close(&t); return 1; }
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n * h; ++i) {
        const int64_t img = i / h, y = i % h;
        const uint8_t *top = src + (img * H + t.yi[y]) * W * 3, *bottom = src + (img * H + t.yi[h + y]) * W * 3;
        const float wt = t.yl[y], wb = t.yl[h + y];
        for (int c = 0; c < 3; ++c) {
            float *o = dst + ((img * 3 + c) * h + y) * w;
            for (int64_t x = 0; x < w; ++x) {
                const int64_t x0 = 3 * t.xi[x] + c, x1 = 3 * t.xi[w + x] + c;
                const float u0 = t.xl[x], u1 = t.xl[w + x];
                const float above = (float)top[x0] / 255.0f * u0 + (float)top[x1] / 255.0f * u1;
                const float below = (float)bottom[x0] / 255.0f * u0 + (float)bottom[x1] / 255.0f * u1;
                o[x] = above * wt + below * wb;
            }
        }
    }
    tables_close(&t);
    return 0;
}
