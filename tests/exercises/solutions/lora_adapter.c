/* A reference answer to the exercise lora-adapter: three ops on the tape,
 * so the backward pass comes from the ops' own rules (book/02). */
#include "scale.h"

sc_tensor *sc_lora_apply(sc_ctx *ctx, sc_tensor *f, sc_tensor *a, sc_tensor *b, float scale);

sc_tensor *sc_lora_apply(sc_ctx *ctx, sc_tensor *f, sc_tensor *a, sc_tensor *b, float scale)
{
    sc_tensor *down = sc_linear(ctx, f, a, NULL);   /* (B, R) = f Aᵀ */
    sc_tensor *up = sc_linear(ctx, down, b, NULL);  /* (B, C) = (f Aᵀ) Bᵀ */
    return sc_add(ctx, f, sc_scale(ctx, up, scale));
}
