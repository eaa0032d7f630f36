/* nn.c — layers and models.
 *
 * Contents
 *   1. Dimension letters and conventions
 *   2. Attention and the transformer blocks (pre-LN CLIP, post-LN BERT)
 *   3. CLIP vision transformer (ViT)
 *   4. CLIP text transformer
 *   5. Swin transformer
 *   6. BERT
 *   7. Models: CLIP, MedCLIP, loading from files
 *   8. Adapters (Eq. 1)
 *   9. CoOp prompt learner
 *
 * Dimension letters (as in scale.h): B batch, T text tokens, N image tokens,
 * C channels, H heads, D head dim, V vocab, P patch, M window, L layers,
 * R adapter bottleneck.
 */
#define _POSIX_C_SOURCE 200809L
#include "scale.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* 1. Dimension letters and conventions                                      */
/* ======================================================================== */

/* ======================================================================== */
/* 2. Attention and the transformer blocks                                   */
/* ======================================================================== */

/* ======================================================================== */
/* 3. CLIP vision transformer                                                */
/* ======================================================================== */

/* ======================================================================== */
/* 4. CLIP text transformer                                                  */
/* ======================================================================== */

/* ======================================================================== */
/* 5. Swin transformer                                                       */
/* ======================================================================== */

/* ======================================================================== */
/* 6. BERT                                                                   */
/* ======================================================================== */

/* ======================================================================== */
/* 7. Models: CLIP, MedCLIP, loading from files                              */
/* ======================================================================== */

/* ======================================================================== */
/* 8. Adapters (Eq. 1)                                                       */

/* CLIP-Adapter (Gao et al.) keeps the backbone frozen and learns a small
 * bottleneck MLP on top of its output feature f (C):
 *     A(f) = ReLU(ReLU(f W1ᵀ) W2ᵀ)        W1 (R, C), W2 (C, R), no biases
 *     f'   = α A(f) + (1 − α) f
 * The official code has the second ReLU; Eq. 1 of the paper prints one
 * (cfg.relu_after_up chooses). The paper makes α learnable; how it stays
 * a blend weight is cfg.alpha_mode (book/04 measures the choices). Rows of
 * f are independent, so a batch is two GEMMs and elementwise work. */

sc_adapter_config sc_adapter_defaults(void)
{
    sc_adapter_config c;
    c.reduction = 4;
    c.relu_after_up = 1;
    c.alpha_mode = SC_ALPHA_SIGMOID;
    c.alpha_init = 0.2f;
    return c;
}

static void fill_uniform(sc_tensor *t, sc_rng *rng, float bound)
{
    int64_t n = sc_numel(t);
    for (int64_t i = 0; i < n; i++) t->data[i] = bound * (2.0f * sc_rng_uniform(rng) - 1.0f);
}

void sc_adapter_init(sc_adapter *ad, sc_arena *weights, int64_t C, sc_adapter_config cfg, sc_rng *rng,
                     const char *prefix)
{
    SC_ASSERT(cfg.reduction > 0 && C % cfg.reduction == 0, "width %lld is not a multiple of reduction %d",
              (long long)C, cfg.reduction);
    SC_ASSERT(cfg.alpha_init > 0.0f && cfg.alpha_init < 1.0f, "alpha_init %g must lie in (0, 1)",
              (double)cfg.alpha_init);
    char name[SC_NAME_MAX];
    ad->cfg = cfg;
    ad->C = C;
    ad->R = C / cfg.reduction;
    snprintf(name, sizeof name, "%s.w1", prefix);
    ad->w1 = sc_param_new(weights, 2, (int64_t[]){ad->R, C}, name);
    snprintf(name, sizeof name, "%s.w2", prefix);
    ad->w2 = sc_param_new(weights, 2, (int64_t[]){C, ad->R}, name);
    snprintf(name, sizeof name, "%s.alpha", prefix);
    ad->alpha = sc_param_new(weights, 1, (int64_t[]){1}, name);
    /* nn.Linear's default init, kaiming_uniform(a = √5), is U(±1/√fan_in). */
    fill_uniform(ad->w1, rng, 1.0f / sqrtf((float)C));
    fill_uniform(ad->w2, rng, 1.0f / sqrtf((float)ad->R));
    double a0 = cfg.alpha_init;
    ad->alpha->data[0] = cfg.alpha_mode == SC_ALPHA_SIGMOID ? (float)log(a0 / (1.0 - a0)) : cfg.alpha_init;
}

float sc_adapter_alpha(const sc_adapter *ad)
{
    float a = ad->alpha->data[0];
    return ad->cfg.alpha_mode == SC_ALPHA_SIGMOID ? (float)(1.0 / (1.0 + exp(-(double)a))) : a;
}

void sc_adapter_project(sc_adapter *ad)
{
    float *a = &ad->alpha->data[0];
    if (ad->cfg.alpha_mode == SC_ALPHA_CLAMP) *a = *a < 0.0f ? 0.0f : *a > 1.0f ? 1.0f : *a;
}

/* @book begin adapter-forward */
void sc_adapter_forward(float *out, float *hidden, float *up, const float *f, const float *w1,
                        const float *w2, float alpha, int relu_after_up, int64_t B, int64_t C, int64_t R)
{
    /* hidden (B, R) = ReLU(f W1ᵀ) */
    sc_gemm(0, 1, B, R, C, f, C, w1, C, hidden, R, 0);
    for (int64_t i = 0; i < B * R; i++) hidden[i] = hidden[i] > 0.0f ? hidden[i] : 0.0f;
    /* up (B, C) = hidden W2ᵀ, with the official code's second ReLU */
    sc_gemm(0, 1, B, C, R, hidden, R, w2, R, up, C, 0);
    if (relu_after_up)
        for (int64_t i = 0; i < B * C; i++) up[i] = up[i] > 0.0f ? up[i] : 0.0f;
    /* the residual blend f' = α A(f) + (1 − α) f */
    for (int64_t i = 0; i < B * C; i++) out[i] = alpha * up[i] + (1.0f - alpha) * f[i];
}
/* @book end adapter-forward */

/* @book begin adapter-backward */
void sc_adapter_backward(float *df, float *dw1, float *dw2, double *dalpha, float *d_up, float *d_hidden,
                         const float *dout, const float *hidden, const float *up, const float *f,
                         const float *w1, const float *w2, float alpha, int relu_after_up, int64_t B,
                         int64_t C, int64_t R)
{
    /* dα = Σ dout ⊙ (A(f) − f); d_up = α dout, through the ReLU if any */
    double da = 0;
    for (int64_t i = 0; i < B * C; i++) {
        da += (double)dout[i] * ((double)up[i] - (double)f[i]);
        d_up[i] = relu_after_up && up[i] <= 0.0f ? 0.0f : alpha * dout[i];
    }
    *dalpha += da;
    /* dW2 (C, R) += d_upᵀ hidden;  d_hidden (B, R) = d_up W2, through the ReLU */
    sc_gemm(1, 0, C, R, B, d_up, C, hidden, R, dw2, R, 1);
    sc_gemm(0, 0, B, R, C, d_up, C, w2, R, d_hidden, R, 0);
    for (int64_t i = 0; i < B * R; i++)
        if (hidden[i] <= 0.0f) d_hidden[i] = 0.0f;
    /* dW1 (R, C) += d_hiddenᵀ f */
    sc_gemm(1, 0, R, C, B, d_hidden, R, f, C, dw1, C, 1);
    /* df (B, C) += (1 − α) dout + d_hidden W1 (only when f needs it) */
    if (df) {
        for (int64_t i = 0; i < B * C; i++) df[i] += (1.0f - alpha) * dout[i];
        sc_gemm(0, 0, B, C, R, d_hidden, R, w1, C, df, C, 1);
    }
}
/* @book end adapter-backward */

/* The op keeps hidden and up; the adapter is found again through the node's
 * inputs (f, W1, W2, α) and its mode through iparam. */
static void adapter_node_backward(sc_ctx *ctx, sc_node *n)
{
    sc_tensor *f = n->in[0], *w1 = n->in[1], *w2 = n->in[2], *alpha_param = n->in[3];
    int64_t B = f->shape[0], C = f->shape[1], R = w1->shape[0];
    float *hidden = n->saved, *up = hidden + B * R;
    float alpha = n->fparam[0];
    float *d_up = sc__act_alloc(ctx, sizeof(float) * (size_t)(B * C));
    float *d_hidden = sc__act_alloc(ctx, sizeof(float) * (size_t)(B * R));
    /* Parameters hold their own grad buffers; the op accumulates into them
     * only when they are trainable. */
    float *dw1 = sc__grad(ctx, w1), *dw2 = sc__grad(ctx, w2), *dpar = sc__grad(ctx, alpha_param);
    float *scratch_w = NULL;
    if (!dw1 || !dw2) {
        scratch_w = sc__act_alloc(ctx, sizeof(float) * (size_t)(2 * C * R));
        memset(scratch_w, 0, sizeof(float) * (size_t)(2 * C * R));
    }
    double dalpha = 0;
    sc_adapter_backward(sc__grad(ctx, f), dw1 ? dw1 : scratch_w, dw2 ? dw2 : scratch_w + C * R, &dalpha,
                        d_up, d_hidden, n->out->grad, hidden, up, f->data, w1->data, w2->data, alpha,
                        (int)n->iparam[0], B, C, R);
    /* From dα to the parameter: dα/da = α(1 − α) when α = sigmoid(a). */
    if (dpar) dpar[0] += (float)(n->iparam[1] == SC_ALPHA_SIGMOID ? dalpha * alpha * (1.0f - alpha) : dalpha);
}

sc_tensor *sc_adapter_apply(sc_ctx *ctx, const sc_adapter *ad, sc_tensor *f)
{
    SC_ASSERT(f->ndim == 2 && f->shape[1] == ad->C && sc_is_contiguous(f), "adapter of width %lld on a (%lld, %lld) input",
              (long long)ad->C, (long long)f->shape[0], (long long)(f->ndim == 2 ? f->shape[1] : -1));
    int64_t B = f->shape[0], C = ad->C, R = ad->R;
    float *hidden = sc__act_alloc(ctx, sizeof(float) * (size_t)(B * R + B * C));
    float *up = hidden + B * R;
    sc_tensor *out = sc_tensor_new(&ctx->act, 2, (int64_t[]){B, C}, "adapter");
    float alpha = sc_adapter_alpha(ad);
    sc_adapter_forward(out->data, hidden, up, f->data, ad->w1->data, ad->w2->data, alpha, ad->cfg.relu_after_up,
                       B, C, R);
    sc_tensor *in[4] = {f, ad->w1, ad->w2, ad->alpha};
    sc_node *n = sc__node_record(ctx, "adapter", adapter_node_backward, out, in, 4);
    if (n) {
        n->saved = hidden;
        n->fparam[0] = alpha;
        n->iparam[0] = ad->cfg.relu_after_up;
        n->iparam[1] = ad->cfg.alpha_mode;
    }
    return out;
}
/* ======================================================================== */

/* ======================================================================== */
/* 9. CoOp prompt learner                                                    */
/* ======================================================================== */
