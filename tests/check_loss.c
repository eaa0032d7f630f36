/* check_loss.c — the SCALE loss (loss.c sections 2-5): Q -> Z by hand,
 * SupCon anchors without positives, the gradient dTotal/dQ against central
 * finite differences, the two reductions, the autograd node, and that the
 * number of threads changes no bit. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "golden_util.h"

/* ---- Q -> Z and the max aggregation, the book's 3x4 example ---- */

/* Three images, four texts carrying combinations (2, 0, 1, 0), so k(0) = 1,
 * k(1) = 2, k(2) = 0 (the first column of each). Combinations 0 and 1 are
 * class 0, combination 2 class 1; concept 0 = {0}, concept 1 = {1, 2}. */
static const float example_Q[3 * 4] = {
    0.9f, 0.1f, 0.3f, 0.2f,
    0.2f, 0.8f, 0.1f, 0.7f,
    0.4f, 0.3f, 0.6f, 0.1f,
};
static const int example_T[4] = {2, 0, 1, 0};
static const int example_class[3] = {0, 0, 1};
static const int example_concept[3] = {0, 1, 1};

START_TEST(test_q_to_z_by_hand)
{
    float G[3 * 3] = {0}, GT[4 * 3] = {0};
    sc_loss_problem p = {3, 4, 3, 2, 2, example_T, G, GT, example_class, example_concept};
    double Z[9], zl[6], zc[6];
    sc_scale_scores(Z, zl, zc, example_Q, &p, 10.0);
    /* Z[i, :] = 10 (Q[i,1], Q[i,2], Q[i,0]) */
    const double want_Z[9] = {1, 3, 9, 8, 1, 2, 3, 6, 4};
    /* concept 0 = Z[:,0]; concept 1 = max(Z[:,1], Z[:,2]) */
    const double want_zl[6] = {1, 9, 8, 2, 3, 6};
    /* class 0 = max(Z[:,0], Z[:,1]); class 1 = Z[:,2] */
    const double want_zc[6] = {3, 9, 8, 2, 6, 4};
    sc_check_close_d("Z", Z, want_Z, 9, 1e-6, 0);
    sc_check_close_d("z_concept", zl, want_zl, 6, 1e-6, 0);
    sc_check_close_d("z_class", zc, want_zc, 6, 1e-6, 0);
}
END_TEST

/* The same example through `scale loss --show-z`, as book/05-loss.md runs
 * it (tests/examples/q-to-z holds these Q and T; image i carries
 * combination 2, 0, 1). Each image's combination CE is
 * -log softmax(Z[i])[label], e.g. log(1 + e^-8 + e^-6) for image 0. */
START_TEST(test_q_to_z_book_command)
{
    char out[4096];
    scale_run("tests/examples/q-to-z",
              "loss --sim Q.npy --text-combos T.npy --labels G.npy --text-labels GT.npy --combo-class CC.npy "
              "--combo-concept CL.npy --logit-scale 10 --tau 0.5 --show-z",
              out, sizeof out);
    ck_assert_msg(strstr(out, "Z[0] = 1 3 9\nZ[1] = 8 1 2\nZ[2] = 3 6 4\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "z_concept[0] = 1 9\nz_concept[1] = 8 2\nz_concept[2] = 3 6\n") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "z_class[0] = 3 9\nz_class[1] = 8 2\nz_class[2] = 6 4\n") != NULL, "%s", out);
    double ce = (log(1 + exp(-8.0) + exp(-6.0)) + log(1 + exp(-7.0) + exp(-6.0)) + log(1 + exp(-3.0) + exp(-2.0))) / 3;
    ck_assert_double_eq_tol(golden_output_value(out, "ce_combo"), ce, 1e-6);
    /* SupCon, default cross reading: image i against the four texts with
     * logits Q[i, :] / 0.5; its positives are the texts of its combination
     * (image 0: text 0; image 1: texts 1 and 3; image 2: text 2). */
    const double l[3][4] = {{1.8, 0.2, 0.6, 0.4}, {0.4, 1.6, 0.2, 1.4}, {0.8, 0.6, 1.2, 0.2}};
    double lse[3];
    for (int i = 0; i < 3; i++) lse[i] = log(exp(l[i][0]) + exp(l[i][1]) + exp(l[i][2]) + exp(l[i][3]));
    double supcon = (-(l[0][0] - lse[0]) - ((l[1][1] - lse[1]) + (l[1][3] - lse[1])) / 2 - (l[2][2] - lse[2])) / 3;
    ck_assert_double_eq_tol(golden_output_value(out, "supcon_img"), supcon, 1e-6);
}
END_TEST

/* ---- SupCon with anchors that have no positive ---- */

/* Rows reading, single label. Image rows q0 = (1, 0), q1 = (0.75, 0.5),
 * q2 = (0, 1) (exact in float); images 0 and 1 share a label, image 2 is
 * alone. With τ = 0.5 the logits are l01 = 1.5, l02 = 0, l12 = 1. Anchor 2
 * has no positive and is skipped, so the mean runs over two anchors:
 *   L0 = -(1.5 - log(e^1.5 + e^0)),  L1 = -(1.5 - log(e^1.5 + e^1)).
 * The two texts carry different labels, so no text anchor counts. */
START_TEST(test_supcon_skips_anchors_without_positives)
{
    const float Q[3 * 2] = {1.0f, 0.0f, 0.75f, 0.5f, 0.0f, 1.0f};
    const float G[3 * 2] = {1, 0, 1, 0, 0, 1};
    const float GT[2 * 2] = {1, 0, 0, 1};
    const int T[2] = {0, 1}, cls[2] = {0, 1}, con[2] = {0, 1};
    sc_loss_problem p = {3, 2, 2, 2, 2, T, G, GT, cls, con};
    sc_loss_config cfg = sc_loss_defaults();
    cfg.tau = 0.5;
    cfg.supcon = SC_SUPCON_ROWS;
    cfg.reduction = SC_REDUCE_MEAN;
    sc_arena scratch;
    sc_arena_init(&scratch, "scratch", 1 << 16, 0);
    sc_loss_terms t;
    sc_scale_loss(&t, NULL, Q, &p, &cfg, &scratch);
    double L0 = -(1.5 - log(exp(1.5) + exp(0.0))), L1 = -(1.5 - log(exp(1.5) + exp(1.0)));
    ck_assert_int_eq(t.img_anchors, 2);
    ck_assert_int_eq(t.txt_anchors, 0);
    ck_assert_double_eq_tol(t.supcon_img, (L0 + L1) / 2, 1e-12);
    ck_assert_double_eq(t.supcon_txt, 0.0);
    /* Sum reduction: the same two anchors, added. */
    cfg.reduction = SC_REDUCE_SUM;
    sc_scale_loss(&t, NULL, Q, &p, &cfg, &scratch);
    ck_assert_double_eq_tol(t.supcon_img, L0 + L1, 1e-12);

    /* Multi-label: image 2 now also carries label 0, so the anchor
     * (image 2, label 0) has positives {0, 1} while (image 2, label 1) has
     * none; anchors (0, 0) and (1, 0) gain image 2 as a positive. */
    const float G2[3 * 2] = {1, 0, 1, 0, 1, 1};
    p.labels = G2;
    cfg.multilabel = 1;
    cfg.reduction = SC_REDUCE_MEAN;
    sc_scale_loss(&t, NULL, Q, &p, &cfg, &scratch);
    double lse0 = log(exp(1.5) + exp(0.0)), lse1 = log(exp(1.5) + exp(1.0)), lse2 = log(exp(0.0) + exp(1.0));
    double a00 = -((1.5 - lse0) + (0.0 - lse0)) / 2;
    double a10 = -((1.5 - lse1) + (1.0 - lse1)) / 2;
    double a20 = -((0.0 - lse2) + (1.0 - lse2)) / 2;
    ck_assert_int_eq(t.img_anchors, 3);
    ck_assert_double_eq_tol(t.supcon_img, (a00 + a10 + a20) / 3, 1e-12);
    sc_arena_free(&scratch);
}
END_TEST

/* ---- dTotal/dQ against central finite differences ---- */

typedef struct {
    int64_t N, M;
    int H, n_classes, n_concepts;
    float Q[8 * 12];
    float G[8 * 5], GT[12 * 5];
    int T[12], cls[5], con[5];
} random_problem;

/* A batch shaped like training: M = N paired texts + H canonical ones. */
static void make_problem(random_problem *r, sc_loss_problem *p, int multilabel, uint64_t seed)
{
    sc_rng rng;
    sc_rng_seed(&rng, seed);
    r->N = 7;
    r->H = 5;
    r->M = r->N + r->H;
    r->n_classes = 2;
    r->n_concepts = 3;
    const int cls[5] = {0, 0, 0, 1, 1}, con[5] = {0, 1, 2, 1, 2};
    memcpy(r->cls, cls, sizeof cls);
    memcpy(r->con, con, sizeof con);
    sc_fill_normal(r->Q, r->N * r->M, seed + 1, 0.4f);
    memset(r->G, 0, sizeof r->G);
    memset(r->GT, 0, sizeof r->GT);
    for (int64_t i = 0; i < r->N; i++) {
        int h = (int)sc_rng_below(&rng, (uint32_t)r->H);
        r->G[i * r->H + h] = 1;
        if (multilabel && sc_rng_below(&rng, 2)) r->G[i * r->H + (h + 2) % r->H] = 1;
        r->T[i] = h; /* the paired text describes one of the image's combinations */
    }
    for (int h = 0; h < r->H; h++) r->T[r->N + h] = h;
    for (int64_t j = 0; j < r->M; j++) r->GT[j * r->H + r->T[j]] = 1;
    sc_loss_problem q = {r->N, r->M, r->H, r->n_classes, r->n_concepts, r->T, r->G, r->GT, r->cls, r->con};
    *p = q;
}

/* Moderate scales keep the loss smooth enough at the step used; the
 * golden cases cover the paper's scales. */
static void check_gradient(int multilabel, sc_supcon_reading reading, sc_reduction reduction)
{
    random_problem r;
    sc_loss_problem p;
    make_problem(&r, &p, multilabel, 11 + (uint64_t)(multilabel * 4 + reading * 2 + reduction));
    sc_err err;
    ck_assert_msg(sc_loss_problem_check(&p, "random", &err) == SC_OK, "%s", err.msg);
    sc_loss_config cfg = sc_loss_defaults();
    cfg.logit_scale = 5;
    cfg.tau = 0.5;
    cfg.lambda[0] = 0.7;
    cfg.lambda[1] = 0.4;
    cfg.lambda[2] = 1.3;
    cfg.lambda[3] = 0.6;
    cfg.supcon = reading;
    cfg.reduction = reduction;
    cfg.multilabel = multilabel;
    sc_arena scratch;
    sc_arena_init(&scratch, "scratch", 1 << 16, 0);
    int64_t n = r.N * r.M;
    double dQ[8 * 12], fd[8 * 12];
    sc_loss_terms t;
    sc_scale_loss(&t, dQ, r.Q, &p, &cfg, &scratch);
    const float step = 1.0f / 4096;
    for (int64_t i = 0; i < n; i++) {
        float q = r.Q[i];
        sc_loss_terms up, down;
        r.Q[i] = q + step;
        double q_up = r.Q[i];
        sc_scale_loss(&up, NULL, r.Q, &p, &cfg, &scratch);
        r.Q[i] = q - step;
        double q_down = r.Q[i];
        sc_scale_loss(&down, NULL, r.Q, &p, &cfg, &scratch);
        r.Q[i] = q;
        fd[i] = (up.total - down.total) / (q_up - q_down);
    }
    char name[64];
    snprintf(name, sizeof name, "dQ %s %s %s", multilabel ? "multi" : "single",
             reading == SC_SUPCON_ROWS ? "rows" : "cross", reduction == SC_REDUCE_MEAN ? "mean" : "sum");
    sc_check_close_d(name, dQ, fd, n, 1e-5, 1e-4);
    sc_arena_free(&scratch);
}

START_TEST(test_gradient_matches_finite_differences)
{
    /* _i runs over the 8 combinations of label mode, reading, reduction */
    check_gradient(_i & 1, (_i >> 1) & 1 ? SC_SUPCON_CROSS : SC_SUPCON_ROWS,
                   (_i >> 2) & 1 ? SC_REDUCE_SUM : SC_REDUCE_MEAN);
}
END_TEST

/* Sum and mean differ by the counts: N for the CE terms, the anchors for
 * SupCon. */
START_TEST(test_reductions_relate_by_counts)
{
    random_problem r;
    sc_loss_problem p;
    make_problem(&r, &p, 1, 5);
    sc_loss_config cfg = sc_loss_defaults();
    cfg.multilabel = 1;
    cfg.supcon = SC_SUPCON_CROSS;
    sc_arena scratch;
    sc_arena_init(&scratch, "scratch", 1 << 16, 0);
    sc_loss_terms mean, sum;
    cfg.reduction = SC_REDUCE_MEAN;
    sc_scale_loss(&mean, NULL, r.Q, &p, &cfg, &scratch);
    cfg.reduction = SC_REDUCE_SUM;
    sc_scale_loss(&sum, NULL, r.Q, &p, &cfg, &scratch);
    ck_assert_double_eq_tol(sum.ce_combo, mean.ce_combo * (double)r.N, 1e-9);
    ck_assert_double_eq_tol(sum.ce_class, mean.ce_class * (double)r.N, 1e-9);
    ck_assert_int_eq(sum.img_anchors, mean.img_anchors);
    ck_assert_double_eq_tol(sum.supcon_img, mean.supcon_img * (double)mean.img_anchors, 1e-9);
    ck_assert_double_eq_tol(sum.supcon_txt, mean.supcon_txt * (double)mean.txt_anchors, 1e-9);
    sc_arena_free(&scratch);
}
END_TEST

/* SupCon's anchors run in blocks on the thread pool; the terms and dQ must
 * not depend on how many threads there are. A training-sized batch (64
 * images, 64 paired texts and 5 prompts: 9 blocks of image anchors), in
 * all four combinations of label mode and reading. */
START_TEST(test_threads_do_not_change_the_loss)
{
    enum { N = 64, H = 5, M = N + H };
    static const int cls[H] = {0, 0, 0, 1, 1}, con[H] = {0, 1, 2, 1, 2};
    float *Q = malloc(sizeof(float) * N * M), *G = calloc(N * H, sizeof(float)), *GT = calloc(M * H, sizeof(float));
    int T[M];
    sc_fill_normal(Q, N * M, 41, 0.4f);
    sc_rng rng;
    sc_rng_seed(&rng, 42);
    for (int j = 0; j < M; j++) {
        T[j] = j < N ? (int)sc_rng_below(&rng, H) : j - N;
        GT[j * H + T[j]] = 1;
        if (j < N) G[j * H + T[j]] = 1, G[j * H + (T[j] + 2) % H] = (_i & 1) && (j % 3 == 0);
    }
    sc_loss_problem p = {N, M, H, 2, 3, T, G, GT, cls, con};
    sc_loss_config cfg = sc_loss_defaults();
    cfg.multilabel = _i & 1;
    cfg.supcon = _i & 2 ? SC_SUPCON_ROWS : SC_SUPCON_CROSS;
    sc_arena scratch;
    sc_arena_init(&scratch, "scratch", 1 << 20, 0);
    sc_loss_terms t[2];
    double *dQ[2] = {malloc(sizeof(double) * N * M), malloc(sizeof(double) * N * M)};
    for (int run = 0; run < 2; run++) {
        sc_set_threads(run + 1);
        sc_scale_loss(&t[run], dQ[run], Q, &p, &cfg, &scratch);
    }
    sc_set_threads(0);
    ck_assert(t[0].img_anchors > 8 && t[0].txt_anchors > 8);
    ck_assert_msg(t[0].supcon_img == t[1].supcon_img && t[0].supcon_txt == t[1].supcon_txt,
                  "SupCon %.17g %.17g on one thread, %.17g %.17g on two", t[0].supcon_img, t[0].supcon_txt,
                  t[1].supcon_img, t[1].supcon_txt);
    ck_assert_int_eq(t[0].img_anchors, t[1].img_anchors);
    ck_assert_int_eq(t[0].txt_anchors, t[1].txt_anchors);
    ck_assert(!memcmp(dQ[0], dQ[1], sizeof(double) * N * M));
    sc_arena_free(&scratch);
    free(Q), free(G), free(GT), free(dQ[0]), free(dQ[1]);
}
END_TEST

/* ---- the problem check names what is wrong ---- */
START_TEST(test_problem_check_errors)
{
    random_problem r;
    sc_loss_problem p;
    make_problem(&r, &p, 0, 3);
    sc_err err;
    int T_bad[12];
    memcpy(T_bad, r.T, sizeof T_bad);
    /* drop combination 4's canonical prompt and its only paired texts */
    for (int64_t j = 0; j < r.M; j++)
        if (T_bad[j] == 4) T_bad[j] = 0;
    p.text_combo = T_bad;
    ck_assert_int_eq(sc_loss_problem_check(&p, "batch", &err), SC_ERANGE);
    ck_assert_str_eq(err.msg, "batch: no text carries combination 4, so Z has no column for it");
    p.text_combo = r.T;
    r.G[3] = 0.5f;
    ck_assert_int_eq(sc_loss_problem_check(&p, "batch", &err), SC_ERANGE);
    ck_assert_str_eq(err.msg, "batch: image label 3 is 0.5, not 0 or 1");
}
END_TEST

/* The command names the --text-combos file once, after its own prefix:
 * the book's q-to-z example with T = (2, 0, 2, 0) leaves combination 1
 * without a text. */
START_TEST(test_problem_check_command_message)
{
    const char *dir = sc_test_tmpdir();
    char path[600], args[4096], out[1024], want[1024];
    snprintf(path, sizeof path, "%s/T.npy", dir);
    sc_array T = {SC_DT_I32, 1, {4}, (int32_t[]){2, 0, 2, 0}, 4 * sizeof(int32_t)};
    sc_err err;
    ck_assert_msg(sc_npy_write(path, &T, &err) == SC_OK, "%s", err.msg);
    const char *ex = sc_test_path("tests/examples/q-to-z");
    snprintf(args, sizeof args,
             "loss --sim %s/Q.npy --text-combos %s --labels %s/G.npy --text-labels %s/GT.npy --combo-class %s/CC.npy "
             "--combo-concept %s/CL.npy",
             ex, path, ex, ex, ex, ex);
    ck_assert_int_eq(scale_status(dir, args, out, sizeof out), 1);
    snprintf(want, sizeof want, "scale loss: %s: no text carries combination 1, so Z has no column for it\n", path);
    ck_assert_str_eq(out, want);
}
END_TEST

/* ---- the autograd node: backward = upstream x dQ ---- */

static void upstream_three(sc_ctx *ctx, sc_node *n)
{
    float *g = sc__grad(ctx, n->in[0]);
    g[0] += 3.0f * n->out->grad[0];
}

START_TEST(test_loss_node_backward)
{
    random_problem r;
    sc_loss_problem p;
    make_problem(&r, &p, 0, 9);
    sc_loss_config cfg = sc_loss_defaults();
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_arena weights;
    sc_arena_init(&weights, "weights", 1 << 16, 0);
    sc_tensor *Q = sc_param_new(&weights, 2, (int64_t[]){r.N, r.M}, "Q");
    memcpy(Q->data, r.Q, sizeof(float) * (size_t)(r.N * r.M));
    sc_loss_terms t;
    sc_tensor *loss = sc_scale_loss_op(&ctx, Q, &p, &cfg, &t);
    ck_assert_double_eq_tol(loss->data[0], t.total, 1e-5 * fabs(t.total));
    /* Put a node y = 3 loss on top and run its backward by hand, then the
     * loss node's: Q's gradient must be 3 dQ. */
    sc_tensor *y = sc_tensor_new(&ctx.act, 1, (int64_t[]){1}, "y");
    sc_node *top = sc__node_record(&ctx, "times3", upstream_three, y, &loss, 1);
    ck_assert_ptr_nonnull(top);
    sc__grad(&ctx, y)[0] = 1.0f;
    top->backward(&ctx, top);
    loss->node->backward(&ctx, loss->node);
    double dQ[8 * 12];
    sc_arena scratch;
    sc_arena_init(&scratch, "scratch", 1 << 16, 0);
    sc_scale_loss(&t, dQ, r.Q, &p, &cfg, &scratch);
    for (int64_t i = 0; i < r.N * r.M; i++)
        ck_assert_msg(fabs(Q->grad[i] - 3 * dQ[i]) <= 1e-5 * (1 + fabs(3 * dQ[i])), "grad[%lld] %g vs %g",
                      (long long)i, (double)Q->grad[i], 3 * dQ[i]);
    sc_arena_free(&scratch);
    sc_arena_free(&weights);
    sc_ctx_free(&ctx);
}
END_TEST

/* ---- the golden cases (tests/golden/loss/) ---- */

/* A PyTorch float64 transcription of Eq. 2-3 produced these; the issue
 * asks for 1e-5 relative on every term and on dQ. Our double arithmetic
 * agrees far more closely, but dQ is stored as float32 in the fixture. */
#define LOSS_RTOL 1e-5
#define DQ_ATOL 1e-9

static const char *const golden_loss_cases[] = {"single-rows", "multi-cross"};
static const char *const term_names[6] = {"ce_combo", "ce_concept", "ce_class", "supcon_img", "supcon_txt", "total"};

static int *indices_of(const char *path, int64_t *n)
{
    sc_array a;
    sc_err err;
    int64_t *wide;
    ck_assert_msg(sc_npy_read(path, &a, &err) == SC_OK, "%s", err.msg);
    ck_assert_msg(sc_array_to_i64(&a, &wide, &err) == SC_OK, "%s", err.msg);
    *n = sc_array_numel(&a);
    int *out = malloc(sizeof(int) * (size_t)*n);
    for (int64_t i = 0; i < *n; i++) out[i] = (int)wide[i];
    free(wide);
    sc_array_free(&a);
    return out;
}

/* Through the library: load the arrays, compute, compare. */
START_TEST(test_golden_loss_library)
{
    char dir[128], path[256];
    snprintf(dir, sizeof dir, "tests/golden/loss/%s", golden_loss_cases[_i]);
    char *text = golden_case_text(dir);
#define GOLDEN(name) (snprintf(path, sizeof path, "%s/%s", sc_test_path(dir), name), path)
    int64_t nQ, M, H, nG, nGT, n_dQ, nCL;
    float *Q = golden_floats(GOLDEN("Q.npy"), &nQ);
    float *G = golden_floats(GOLDEN("G.npy"), &nG);
    float *GT = golden_floats(GOLDEN("GT.npy"), &nGT);
    float *dQ_ref = golden_floats(GOLDEN("dQ.npy"), &n_dQ);
    int *T = indices_of(GOLDEN("T.npy"), &M);
    int *CC = indices_of(GOLDEN("CC.npy"), &H);
    int *CL = indices_of(GOLDEN("CL.npy"), &nCL);
#undef GOLDEN
    int64_t N = nQ / M;
    int n_classes = 0, n_concepts = 0;
    for (int64_t h = 0; h < H; h++) {
        if (CC[h] >= n_classes) n_classes = CC[h] + 1;
        if (CL[h] >= n_concepts) n_concepts = CL[h] + 1;
    }
    sc_loss_problem p = {N, M, (int)H, n_classes, n_concepts, T, G, GT, CC, CL};
    sc_err err;
    ck_assert_msg(sc_loss_problem_check(&p, dir, &err) == SC_OK, "%s", err.msg);
    sc_loss_config cfg = sc_loss_defaults();
    cfg.logit_scale = golden_number(text, "logit_scale");
    cfg.tau = golden_number(text, "tau");
    char *lam = strstr(text, "\"lambda\": [");
    ck_assert_ptr_nonnull(lam);
    lam += strlen("\"lambda\": [");
    for (int k = 0; k < 4; k++) {
        cfg.lambda[k] = strtod(lam, &lam);
        lam++; /* the ',' or ']' after the number */
    }
    cfg.supcon = strstr(text, "\"supcon\": \"cross\"") ? SC_SUPCON_CROSS : SC_SUPCON_ROWS;
    cfg.multilabel = strstr(text, "\"multilabel\": true") != NULL;
    cfg.reduction = strstr(text, "\"reduction\": \"sum\"") ? SC_REDUCE_SUM : SC_REDUCE_MEAN;

    sc_arena scratch;
    sc_arena_init(&scratch, "scratch", 1 << 20, 0);
    sc_loss_terms t;
    double *dQ = malloc(sizeof(double) * (size_t)nQ), *ref = malloc(sizeof(double) * (size_t)nQ);
    sc_scale_loss(&t, dQ, Q, &p, &cfg, &scratch);
    const double got[6] = {t.ce_combo, t.ce_concept, t.ce_class, t.supcon_img, t.supcon_txt, t.total};
    for (int k = 0; k < 6; k++) {
        double want = golden_number(text, term_names[k]);
        ck_assert_msg(fabs(got[k] - want) <= LOSS_RTOL * fabs(want), "%s %s: %.17g vs PyTorch %.17g", dir,
                      term_names[k], got[k], want);
    }
    for (int64_t i = 0; i < nQ; i++) ref[i] = dQ_ref[i];
    sc_check_close_d("dQ", dQ, ref, nQ, DQ_ATOL, LOSS_RTOL);
    sc_arena_free(&scratch);
    free(dQ);
    free(ref);
    free(Q);
    free(G);
    free(GT);
    free(dQ_ref);
    free(T);
    free(CC);
    free(CL);
    free(text);
}
END_TEST

/* Through the binary: the case's own command line. */
START_TEST(test_golden_loss_command)
{
    char dir[128];
    snprintf(dir, sizeof dir, "tests/golden/loss/%s", golden_loss_cases[_i]);
    static const char *const inputs[] = {"Q.npy", "T.npy", "G.npy", "GT.npy", "CC.npy", "CL.npy"};
    char out[4096];
    const char *run_dir = golden_run(dir, inputs, 6, out, sizeof out);
    char *text = golden_case_text(dir);
    for (int k = 0; k < 6; k++) {
        double want = golden_number(text, term_names[k]), got = golden_output_value(out, term_names[k]);
        ck_assert_msg(fabs(got - want) <= LOSS_RTOL * fabs(want), "%s %s: %.17g vs PyTorch %.17g", dir,
                      term_names[k], got, want);
    }
    char path[1024];
    int64_t n_got, n_ref;
    snprintf(path, sizeof path, "%s/dQ.npy", run_dir);
    float *got = golden_floats(path, &n_got);
    snprintf(path, sizeof path, "%s/dQ.npy", sc_test_path(dir));
    float *ref = golden_floats(path, &n_ref);
    ck_assert_int_eq(n_got, n_ref);
    sc_check_close("dQ from scale loss", got, ref, n_got, DQ_ATOL, LOSS_RTOL);
    free(got);
    free(ref);
    free(text);
}
END_TEST

Suite *suite_loss(void)
{
    Suite *s = suite_create("loss");
    TCase *z = tcase_create("q_to_z");
    tcase_add_test(z, test_q_to_z_by_hand);
    tcase_add_test(z, test_q_to_z_book_command);
    suite_add_tcase(s, z);
    TCase *sup = tcase_create("supcon_no_positive");
    tcase_add_test(sup, test_supcon_skips_anchors_without_positives);
    suite_add_tcase(s, sup);
    TCase *threads = tcase_create("loss_threads");
    tcase_add_loop_test(threads, test_threads_do_not_change_the_loss, 0, 4);
    suite_add_tcase(s, threads);
    TCase *grad = tcase_create("loss_gradient");
    tcase_add_loop_test(grad, test_gradient_matches_finite_differences, 0, 8);
    tcase_add_test(grad, test_reductions_relate_by_counts);
    tcase_add_test(grad, test_loss_node_backward);
    suite_add_tcase(s, grad);
    TCase *golden = tcase_create("loss_golden");
    tcase_add_loop_test(golden, test_golden_loss_library, 0, 2);
    tcase_add_loop_test(golden, test_golden_loss_command, 0, 2);
    suite_add_tcase(s, golden);
    TCase *chk = tcase_create("loss_check");
    tcase_add_test(chk, test_problem_check_errors);
    tcase_add_test(chk, test_problem_check_command_message);
    suite_add_tcase(s, chk);
    return s;
}
