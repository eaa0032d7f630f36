/* lora_adapter.c — checks the exercise lora-adapter (book/exercises.md).
 *
 * The student adds to nn.c (section 8, beside the CLIP-Adapter) and
 * declares in scale.h:
 *
 *     sc_tensor *sc_lora_apply(sc_ctx *ctx, sc_tensor *f, sc_tensor *a, sc_tensor *b, float scale);
 *
 * a low-rank residual adapter on a frozen embedding, recorded on the tape:
 *     f' = f + scale · (f Aᵀ) Bᵀ      f (B, C), A (R, C), B (C, R)
 * (the update B A of LoRA applied to the identity map; B starts at zero,
 * so training starts from the frozen embedding). */
#include <math.h>
#include <string.h>

#include "../check_util.h"
#include "exercise.h"

sc_tensor *sc_lora_apply(sc_ctx *ctx, sc_tensor *f, sc_tensor *a, sc_tensor *b, float scale);
#pragma weak sc_lora_apply

const char exercise_name[] = "lora-adapter";

const char *exercise_missing(void)
{
    return sc_lora_apply ? NULL : "sc_lora_apply is not defined (write it in nn.c, declare it in scale.h)";
}

/* f = ((1, -2, 3, 0.5), (0, 1, 0, 2)), A = (0.5, 0.25, 0.25, 1) (R = 1),
 * B = (1, -1, 2, 0)ᵀ, scale 0.5. f Aᵀ = (1.25, 2.25), so
 *     f'_0 = f_0 + 0.5 · 1.25 · (1, -1, 2, 0) = (1.625, -2.625, 4.25, 0.5)
 *     f'_1 = f_1 + 0.5 · 2.25 · (1, -1, 2, 0) = (1.125, -0.125, 2.25, 2)   */
static const float f_data[8] = {1, -2, 3, 0.5f, 0, 1, 0, 2};
static const float a_data[4] = {0.5f, 0.25f, 0.25f, 1};
static const float b_data[4] = {1, -1, 2, 0};

typedef struct {
    sc_ctx ctx;
    sc_arena weights;
    sc_tensor *f, *a, *b;
} fixture;

static void fixture_init(fixture *x, int f_requires_grad)
{
    sc_ctx_init(&x->ctx);
    sc_arena_init(&x->weights, "weights", 1 << 16, 0);
    x->a = sc_param_new(&x->weights, 2, (int64_t[]){1, 4}, "a");
    x->b = sc_param_new(&x->weights, 2, (int64_t[]){4, 1}, "b");
    x->f = f_requires_grad ? sc_param_new(&x->weights, 2, (int64_t[]){2, 4}, "f")
                           : sc_tensor_new(&x->weights, 2, (int64_t[]){2, 4}, "f");
    memcpy(x->a->data, a_data, sizeof a_data);
    memcpy(x->b->data, b_data, sizeof b_data);
    memcpy(x->f->data, f_data, sizeof f_data);
}

static void fixture_free(fixture *x)
{
    sc_ctx_free(&x->ctx);
    sc_arena_free(&x->weights);
}

START_TEST(test_forward_by_hand)
{
    fixture x;
    fixture_init(&x, 0);
    sc_tensor *y = sc_lora_apply(&x.ctx, x.f, x.a, x.b, 0.5f);
    ck_assert_int_eq(y->ndim, 2);
    ck_assert(y->shape[0] == 2 && y->shape[1] == 4);
    const float want[8] = {1.625f, -2.625f, 4.25f, 0.5f, 1.125f, -0.125f, 2.25f, 2};
    sc_check_close("f'", y->data, want, 8, 1e-6, 0);
    fixture_free(&x);
}
END_TEST

/* With B = 0 (LoRA's initialisation) the adapter is the identity. */
START_TEST(test_zero_b_is_identity)
{
    fixture x;
    fixture_init(&x, 0);
    memset(x.b->data, 0, sizeof b_data);
    sc_tensor *y = sc_lora_apply(&x.ctx, x.f, x.a, x.b, 4.0f);
    sc_check_close("f' with B = 0", y->data, f_data, 8, 0, 0);
    fixture_free(&x);
}
END_TEST

/* L = Σ w ⊙ f' with fixed weights w. L is linear in each of A, B and f
 * alone, so a central difference with a large step is exact up to
 * rounding: the tape's gradients must match it. */
static const float w_data[8] = {0.3f, -1, 2, 0.5f, 1, 0.25f, -0.5f, 1.5f};

static double loss_value(fixture *x)
{
    sc_ctx_set_grad(&x->ctx, 0);
    sc_tensor *w = sc_tensor_new(&x->ctx.act, 2, (int64_t[]){2, 4}, "w");
    memcpy(w->data, w_data, sizeof w_data);
    sc_tensor *y = sc_lora_apply(&x->ctx, x->f, x->a, x->b, 0.5f);
    double L = sc_sum_all(&x->ctx, sc_mul(&x->ctx, y, w))->data[0];
    sc_ctx_set_grad(&x->ctx, 1);
    sc_ctx_reset(&x->ctx);
    return L;
}

START_TEST(test_gradients_match_differences)
{
    fixture x;
    fixture_init(&x, 1);
    sc_tensor *w = sc_tensor_new(&x.ctx.act, 2, (int64_t[]){2, 4}, "w");
    memcpy(w->data, w_data, sizeof w_data);
    sc_tensor *y = sc_lora_apply(&x.ctx, x.f, x.a, x.b, 0.5f);
    sc_backward(&x.ctx, sc_sum_all(&x.ctx, sc_mul(&x.ctx, y, w)));
    sc_tensor *params[3] = {x.a, x.b, x.f};
    const char *names[3] = {"dL/dA", "dL/dB", "dL/df"};
    for (int p = 0; p < 3; p++) {
        sc_tensor *t = params[p];
        ck_assert_msg(t->grad != NULL, "%s: no gradient reached the tensor (is the op on the tape?)", names[p]);
        int64_t n = sc_numel(t);
        float got[8], want[8];
        memcpy(got, t->grad, sizeof(float) * (size_t)n);
        sc_ctx_reset(&x.ctx);
        for (int64_t i = 0; i < n; i++) {
            float keep = t->data[i];
            t->data[i] = keep + 0.5f;
            double up = loss_value(&x);
            t->data[i] = keep - 0.5f;
            double down = loss_value(&x);
            t->data[i] = keep;
            want[i] = (float)((up - down) / 1.0);
        }
        sc_check_close(names[p], got, want, n, 1e-4, 1e-4);
    }
    fixture_free(&x);
}
END_TEST

Suite *exercise_suite(void)
{
    Suite *s = suite_create("lora-adapter");
    TCase *tc = tcase_create("lora");
    tcase_add_test(tc, test_forward_by_hand);
    tcase_add_test(tc, test_zero_b_is_identity);
    tcase_add_test(tc, test_gradients_match_differences);
    suite_add_tcase(s, tc);
    return s;
}
