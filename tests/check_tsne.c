/* check_tsne.c — tests for loss.c section 10: exact t-SNE and the
 * neighbourhood-preservation scores.
 *
 * References: rows of P checked against the definition of perplexity and a
 * row solved by hand; the gradient against central finite differences of
 * the KL divergence; trustworthiness and k-NN accuracy against small cases
 * worked out by hand (below); the whole method against what it is for —
 * separating well-separated clusters — with a random map as the control
 * that must score badly. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "golden_util.h"

/* exp(H) of a probability row, skipping entry `skip`. */
static double row_perplexity(const double *p, int64_t n, int64_t skip)
{
    double H = 0;
    for (int64_t j = 0; j < n; j++)
        if (j != skip && p[j] > 0) H -= p[j] * log(p[j]);
    return exp(H);
}

static void squared_distances(double *D2, const float *X, int64_t n, int64_t d)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t k = 0; k < d; k++) {
                double diff = (double)X[i * d + k] - (double)X[j * d + k];
                s += diff * diff;
            }
            D2[i * n + j] = s;
        }
}

START_TEST(test_tsne_perplexity_rows)
{
    enum { N = 40, D = 5 };
    float X[N * D];
    sc_fill_normal(X, N * D, 7, 1.0f);
    double P[N * N], D2[N * N];
    squared_distances(D2, X, N, D);
    memcpy(P, D2, sizeof P);
    sc_tsne_conditional_p(P, N, 10.0);
    for (int i = 0; i < N; i++) {
        double sum = 0;
        for (int j = 0; j < N; j++) sum += P[i * N + j];
        ck_assert_double_eq_tol(sum, 1.0, 1e-12);
        ck_assert_double_eq(P[i * N + i], 0.0);
        /* exp(H) = perplexity to the search's tolerance (1e-5 nats). */
        ck_assert_double_eq_tol(row_perplexity(P + i * N, N, i), 10.0, 10.0 * 1.1e-5);
        /* A nearer point never gets less probability. */
        for (int j = 0; j < N; j++)
            for (int k = 0; k < N; k++)
                if (j != i && k != i && D2[i * N + j] < D2[i * N + k]) ck_assert(P[i * N + j] >= P[i * N + k]);
    }

    /* By hand: neighbours at squared distances 0 and 1 with β = ln 3 give
     * p = (3/4, 1/4), whose entropy is H = −(¾ ln ¾ + ¼ ln ¼). Asking for
     * perplexity exp(H) must find that row again. */
    double H = -(0.75 * log(0.75) + 0.25 * log(0.25));
    double row3[9] = {0, 0, 1, 0, 0, 1, 1, 1, 0}; /* points 0 and 1 coincide, 2 is at distance 1 */
    sc_tsne_conditional_p(row3, 3, exp(H));
    ck_assert_double_eq_tol(row3[0 * 3 + 1], 0.75, 1e-5);
    ck_assert_double_eq_tol(row3[0 * 3 + 2], 0.25, 1e-5);
    /* Three equidistant points: each row is ½, ½ whatever is asked. */
    double tri[9] = {0, 4, 4, 4, 0, 4, 4, 4, 0};
    sc_tsne_conditional_p(tri, 3, 1.3);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) ck_assert_double_eq_tol(tri[i * 3 + j], i == j ? 0.0 : 0.5, 1e-15);
}
END_TEST

START_TEST(test_tsne_joint_p)
{
    enum { N = 30, D = 8 };
    float X[N * D];
    sc_fill_normal(X, N * D, 3, 2.0f);
    double P[N * N], C[N * N];
    sc_tsne_joint_p(P, X, N, D, 5.0);
    squared_distances(C, X, N, D);
    sc_tsne_conditional_p(C, N, 5.0);
    double total = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            total += P[i * N + j];
            ck_assert_double_eq(P[i * N + j], P[j * N + i]);
            ck_assert_double_eq_tol(P[i * N + j], (C[i * N + j] + C[j * N + i]) / (2.0 * N), 1e-15);
        }
    ck_assert_double_eq_tol(total, 1.0, 1e-12);
}
END_TEST

/* A random symmetric P summing to 1 with zero diagonal. */
static void random_joint_p(double *P, int n, uint64_t seed)
{
    sc_rng r;
    sc_rng_seed(&r, seed);
    double sum = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++) {
            double v = i == j ? 0 : 0.05 + (double)sc_rng_uniform(&r);
            P[i * n + j] = P[j * n + i] = v;
            sum += i == j ? 0 : 2 * v;
        }
    for (int k = 0; k < n * n; k++) P[k] /= sum;
}

START_TEST(test_tsne_gradient_finite_differences)
{
    enum { N = 7 };
    double P[N * N], Y[2 * N], grad[2 * N];
    random_joint_p(P, N, 11);
    sc_rng r;
    sc_rng_seed(&r, 5);
    for (int k = 0; k < 2 * N; k++) Y[k] = 2.0 * (double)sc_rng_normal(&r);
    sc_tsne_gradient(grad, Y, P, N, 1.0);
    double fd[2 * N];
    const double h = 1e-5;
    for (int k = 0; k < 2 * N; k++) {
        double keep = Y[k];
        Y[k] = keep + h;
        double up = sc_tsne_kl(Y, P, N);
        Y[k] = keep - h;
        double down = sc_tsne_kl(Y, P, N);
        Y[k] = keep;
        fd[k] = (up - down) / (2 * h);
    }
    sc_check_close_d("dKL/dY", grad, fd, 2 * N, 1e-8, 1e-6);

    /* Worked by hand (book chapter 14): y = (0,0), (2,0), (0,1) with
     * p_01 = 0.4, p_02 = p_12 = 0.05. Then w = 1/5, 1/2, 1/6, Z = 26/15,
     * and ∂C/∂y_0 = 4[(0.4 − 3/26)/5 (−2, 0) + (0.05 − 15/52)/2 (0, −1)]
     * = (−0.455385, 0.476923); KL = 0.753908. */
    double P3[9] = {0, 0.4, 0.05, 0.4, 0, 0.05, 0.05, 0.05, 0}, Y3[6] = {0, 0, 2, 0, 0, 1}, g3h[6];
    const double want3[6] = {-0.4553846153846154, 0.4769230769230769, 0.39384615384615385,
                             0.03076923076923076, 0.06153846153846152, -0.5076923076923077};
    sc_tsne_gradient(g3h, Y3, P3, 3, 1.0);
    sc_check_close_d("gradient, 3 points by hand", g3h, want3, 6, 1e-14, 1e-12);
    ck_assert_double_eq_tol(sc_tsne_kl(Y3, P3, 3), 0.75390829163523, 1e-12);

    /* Exaggeration scales only the attraction: the gradient is affine in
     * α, so g(3) − g(1) = 2 (g(2) − g(1)). */
    double g2[2 * N], g3[2 * N], want[2 * N];
    sc_tsne_gradient(g2, Y, P, N, 2.0);
    sc_tsne_gradient(g3, Y, P, N, 3.0);
    for (int k = 0; k < 2 * N; k++) want[k] = grad[k] + 2 * (g2[k] - grad[k]);
    sc_check_close_d("g(alpha = 3)", g3, want, 2 * N, 1e-12, 1e-9);
}
END_TEST

/* Four Gaussian clusters in 64-D, 50 points each; centres ~ N(0, 4²)
 * per coordinate, so centres lie about 45 apart against a spread of
 * about 11 within a cluster. */
enum { CL_K = 4, CL_PER = 50, CL_N = CL_K * CL_PER, CL_D = 64 };

static void make_clusters(float *X, int *label)
{
    float centre[CL_K * CL_D];
    sc_fill_normal(centre, CL_K * CL_D, 42, 4.0f);
    sc_fill_normal(X, CL_N * CL_D, 43, 1.0f);
    for (int i = 0; i < CL_N; i++) {
        label[i] = i % CL_K;
        for (int k = 0; k < CL_D; k++) X[i * CL_D + k] += centre[label[i] * CL_D + k];
    }
}

START_TEST(test_tsne_separates_clusters)
{
    static float X[CL_N * CL_D];
    static double Y[CL_N * 2], R[CL_N * 2];
    int label[CL_N];
    make_clusters(X, label);
    sc_tsne_config cfg = sc_tsne_defaults();
    cfg.seed = 1;
    double kl, trust, trust_random;
    sc_err err;
    ck_assert_int_eq(sc_tsne(Y, X, CL_N, CL_D, &cfg, &kl, &err), SC_OK);
    double acc = sc_knn_accuracy(Y, 2, label, CL_N, 5);
    ck_assert_int_eq(sc_trustworthiness(X, CL_D, Y, 2, CL_N, 5, &trust, &err), SC_OK);
    ck_assert_msg(acc >= 0.95, "5-NN accuracy in the map %.3f < 0.95", acc);
    ck_assert_msg(trust >= 0.90, "trustworthiness %.4f < 0.90", trust);
    ck_assert_msg(isfinite(kl) && kl > 0 && kl < 2.0, "KL %g", kl);

    /* The control: a random map scores near chance on both. */
    sc_rng r;
    sc_rng_seed(&r, 9);
    for (int k = 0; k < 2 * CL_N; k++) R[k] = (double)sc_rng_normal(&r);
    double acc_random = sc_knn_accuracy(R, 2, label, CL_N, 5);
    ck_assert_int_eq(sc_trustworthiness(X, CL_D, R, 2, CL_N, 5, &trust_random, &err), SC_OK);
    ck_assert_msg(acc_random < 0.5, "random map 5-NN accuracy %.3f", acc_random);
    ck_assert_msg(trust_random < 0.7, "random map trustworthiness %.4f", trust_random);
    /* And any 2-D points score perfectly against themselves. */
    float X2[CL_N * 2];
    double X2d[CL_N * 2], self;
    for (int i = 0; i < CL_N; i++)
        for (int c = 0; c < 2; c++) {
            X2[2 * i + c] = X[i * CL_D + c];
            X2d[2 * i + c] = X2[2 * i + c];
        }
    ck_assert_int_eq(sc_trustworthiness(X2, 2, X2d, 2, CL_N, 5, &self, &err), SC_OK);
    ck_assert_double_eq_tol(self, 1.0, 1e-12);
}
END_TEST

START_TEST(test_tsne_deterministic)
{
    static float X[CL_N * CL_D];
    static double A[CL_N * 2], B[CL_N * 2], C[CL_N * 2];
    int label[CL_N];
    make_clusters(X, label);
    sc_tsne_config cfg = sc_tsne_defaults();
    cfg.iters = 300;
    cfg.seed = 123;
    sc_err err;
    ck_assert_int_eq(sc_tsne(A, X, 80, CL_D, &cfg, NULL, &err), SC_OK);
    ck_assert_int_eq(sc_tsne(B, X, 80, CL_D, &cfg, NULL, &err), SC_OK);
    ck_assert_int_eq(memcmp(A, B, 80 * 2 * sizeof(double)), 0);
    /* Rows are summed in a fixed order whatever the number of threads. */
    sc_set_threads(1);
    ck_assert_int_eq(sc_tsne(C, X, 80, CL_D, &cfg, NULL, &err), SC_OK);
    sc_set_threads(3);
    ck_assert_int_eq(sc_tsne(B, X, 80, CL_D, &cfg, NULL, &err), SC_OK);
    sc_set_threads(0);
    ck_assert_int_eq(memcmp(A, C, 80 * 2 * sizeof(double)), 0);
    ck_assert_int_eq(memcmp(A, B, 80 * 2 * sizeof(double)), 0);
    cfg.seed = 124;
    ck_assert_int_eq(sc_tsne(C, X, 80, CL_D, &cfg, NULL, &err), SC_OK);
    ck_assert_int_ne(memcmp(A, C, 80 * 2 * sizeof(double)), 0);
}
END_TEST

START_TEST(test_tsne_small_and_bad_input)
{
    sc_tsne_config cfg = sc_tsne_defaults();
    sc_err err;
    float X[5 * 3] = {0, 0, 0, 1, 0, 0, 0, 1, 0, 5, 5, 5, 5, 6, 5};
    double Y[10];
    double kl;
    /* One point maps to the origin; five points with perplexity 30 asked
     * for (clipped to 4/3) still give a finite map. */
    ck_assert_int_eq(sc_tsne(Y, X, 1, 3, &cfg, &kl, &err), SC_OK);
    ck_assert_double_eq(Y[0], 0.0);
    ck_assert_int_eq(sc_tsne(Y, X, 5, 3, &cfg, &kl, &err), SC_OK);
    for (int k = 0; k < 10; k++) ck_assert(isfinite(Y[k]));
    ck_assert(isfinite(kl));
    cfg.learning_rate = 0; /* "auto": max(5 / 12 / 4, 50) = 50 */
    ck_assert_int_eq(sc_tsne(Y, X, 5, 3, &cfg, &kl, &err), SC_OK);

    X[7] = (float)NAN;
    ck_assert_int_eq(sc_tsne(Y, X, 5, 3, &cfg, &kl, &err), SC_ERANGE);
    ck_assert_msg(strstr(err.msg, "point 2, dimension 1 is not a finite number") != NULL, "%s", err.msg);
    X[7] = 1;
    cfg.perplexity = 0;
    ck_assert_int_eq(sc_tsne(Y, X, 5, 3, &cfg, &kl, &err), SC_EARG);
    cfg = sc_tsne_defaults();
    ck_assert_int_eq(sc_tsne(Y, X, SC_TSNE_MAX_POINTS + 1, 3, &cfg, &kl, &err), SC_ENOMEM);
}
END_TEST

/* Six points on a line, X = 0 1 3 7 12 20, mapped with the two end points
 * swapped (Y = 20 1 3 7 12 0). Worked by hand, k = 1: the map neighbours
 * of points 0, 1 and 5 are intruders of input ranks 4, 5 and 4, so the
 * penalty is 3 + 4 + 3 = 10 and T = 1 − 2/(6·1·8)·10 = 14/24. k = 2:
 * penalties 3, 3, 3, 0, 3, 3 = 15 and T = 1 − 2/(6·2·5)·15 = 1/2. */
START_TEST(test_trustworthiness_by_hand)
{
    const float X[6] = {0, 1, 3, 7, 12, 20};
    const double Y[6] = {20, 1, 3, 7, 12, 0}, same[6] = {0, 1, 3, 7, 12, 20};
    double t;
    sc_err err;
    ck_assert_int_eq(sc_trustworthiness(X, 1, Y, 1, 6, 1, &t, &err), SC_OK);
    ck_assert_double_eq_tol(t, 14.0 / 24.0, 1e-15);
    ck_assert_int_eq(sc_trustworthiness(X, 1, Y, 1, 6, 2, &t, &err), SC_OK);
    ck_assert_double_eq_tol(t, 0.5, 1e-15);
    ck_assert_int_eq(sc_trustworthiness(X, 1, same, 1, 6, 2, &t, &err), SC_OK);
    ck_assert_double_eq(t, 1.0);
    ck_assert_int_eq(sc_trustworthiness(X, 1, Y, 1, 6, 3, &t, &err), SC_EARG); /* k < n / 2 */
}
END_TEST

/* Y = 0 1 2 10 11 12 with labels 0 0 1 1 1 1. k = 1: only point 2 (whose
 * nearest is point 1) is wrong: 5/6. k = 3: points 0, 1, 2 are outvoted:
 * 1/2. k = 2: point 0 sees labels 0 and 1, a tie won by the nearer (0):
 * only point 2 is wrong again: 5/6. */
START_TEST(test_knn_accuracy_by_hand)
{
    const double Y[6] = {0, 1, 2, 10, 11, 12};
    const int label[6] = {0, 0, 1, 1, 1, 1};
    ck_assert_double_eq_tol(sc_knn_accuracy(Y, 1, label, 6, 1), 5.0 / 6.0, 1e-15);
    ck_assert_double_eq_tol(sc_knn_accuracy(Y, 1, label, 6, 3), 0.5, 1e-15);
    ck_assert_double_eq_tol(sc_knn_accuracy(Y, 1, label, 6, 2), 5.0 / 6.0, 1e-15);
}
END_TEST

/* ---- the `scale tsne` command ---- */

/* The two worked examples of book/14 through the command, on the inputs of
 * tests/examples/tsne-by-hand: the six points with their ends swapped
 * (T(1) = 14/24 and T(2) = 1/2, as in test_trustworthiness_by_hand), and
 * the three-point cost and gradient of test_tsne_gradient_finite_differences,
 * here with P as float32 stores 0.4 and 0.05. */
START_TEST(test_tsne_command_by_hand)
{
    const char *dir = "tests/examples/tsne-by-hand";
    char out[4096];
    scale_run(dir, "tsne line.npy --map ends-swapped.npy --k 1", out, sizeof out);
    ck_assert_double_eq_tol(golden_output_value(out, "trustworthiness"), 14.0 / 24.0, 1e-15);
    scale_run(dir, "tsne line.npy --map ends-swapped.npy --k 2", out, sizeof out);
    ck_assert_double_eq_tol(golden_output_value(out, "trustworthiness"), 0.5, 1e-15);

    scale_run(dir, "tsne --map three-map.npy --affinities three-p.npy", out, sizeof out);
    const double p01 = 0.4f, p02 = 0.05f, Z = 26.0 / 15.0; /* w = 1/5, 1/2, 1/6 */
    const double kl = 2 * (p01 * log(p01 * 5 * Z) + p02 * log(p02 * 2 * Z) + p02 * log(p02 * 6 * Z));
    ck_assert_double_eq_tol(golden_output_value(out, "kl"), kl, 1e-12);
    const double want[6] = {-0.4553846153846154, 0.4769230769230769, 0.39384615384615385,
                            0.03076923076923076, 0.06153846153846152, -0.5076923076923077};
    for (int i = 0; i < 3; i++) {
        char name[32];
        double g[2];
        snprintf(name, sizeof name, "grad[%d] =", i);
        const char *line = strstr(out, name);
        ck_assert_msg(line && sscanf(line + strlen(name), "%lf %lf", &g[0], &g[1]) == 2, "no %s in:\n%s", name, out);
        sc_check_close_d(name, g, want + 2 * i, 2, 2e-6, 0); /* printed to six digits */
    }
}
END_TEST

/* A map computed by the command: the held-out images of
 * tests/examples/train-synthetic (five well-separated combinations) must
 * come out as clusters, and the printed kl must be KL(P || Q) of the map
 * the command wrote, with P rebuilt here from the points. */
START_TEST(test_tsne_command_map)
{
    const char *tmp = sc_test_tmpdir();
    char out[4096], args[1024], map[512];
    snprintf(map, sizeof map, "%s/map.npy", tmp);
    snprintf(args, sizeof args, "tsne test_img.npy --labels test_lab.npy --out '%s'", map);
    scale_run("tests/examples/train-synthetic", args, out, sizeof out);
    ck_assert_msg(golden_output_value(out, "knn_accuracy") >= 0.95, "%s", out);
    ck_assert_msg(golden_output_value(out, "trustworthiness") >= 0.9, "%s", out);
    int64_t nx, ny;
    float *X = golden_floats(sc_test_path("tests/examples/train-synthetic/test_img.npy"), &nx);
    float *Yf = golden_floats(map, &ny);
    ck_assert_int_eq(nx, 200 * 32);
    ck_assert_int_eq(ny, 200 * 2);
    double *P = malloc(sizeof(double) * 200 * 200), Y[400];
    for (int k = 0; k < 400; k++) Y[k] = Yf[k];
    sc_tsne_joint_p(P, X, 200, 32, 30);
    double kl = sc_tsne_kl(Y, P, 200);
    ck_assert_msg(fabs(golden_output_value(out, "kl") - kl) < 1e-4 * kl, "printed %s, the written map has kl=%.9g", out, kl);
    free(P), free(X), free(Yf);
}
END_TEST

START_TEST(test_tsne_command_errors)
{
    const char *dir = "tests/examples/tsne-by-hand";
    char out[4096], args[1024];
    ck_assert_int_eq(scale_status(dir, "tsne --k 1", out, sizeof out), 2);          /* no X */
    ck_assert_int_eq(scale_status(dir, "tsne line.npy --k 0", out, sizeof out), 2);
    ck_assert_int_eq(scale_status(dir, "tsne line.npy --map ends-swapped.npy --out y.npy", out, sizeof out), 2);
    ck_assert_int_eq(scale_status(dir, "tsne line.npy --affinities three-p.npy", out, sizeof out), 2);
    /* k = 5 is too many neighbours for six points */
    ck_assert_int_eq(scale_status(dir, "tsne line.npy --map ends-swapped.npy", out, sizeof out), 1);
    ck_assert_msg(strstr(out, "line.npy: trustworthiness: k = 5") != NULL, "%s", out);
    ck_assert_int_eq(scale_status(dir, "tsne line.npy --map three-map.npy", out, sizeof out), 1);
    ck_assert_msg(strstr(out, "three-map.npy: shape (3, 2) but (6, *) expected") != NULL, "%s", out);

    const char *tmp = sc_test_tmpdir();
    char path[512];
    sc_err err;
    const float lopsided[9] = {0, 0.5f, 0, 0.4f, 0, 0.05f, 0, 0.05f, 0};
    snprintf(path, sizeof path, "%s/lopsided.npy", tmp);
    ck_assert_int_eq(sc_npy_write_f32(path, lopsided, 2, (int64_t[]){3, 3}, &err), SC_OK);
    snprintf(args, sizeof args, "tsne --map three-map.npy --affinities '%s'", path);
    ck_assert_int_eq(scale_status(dir, args, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "lopsided.npy: not symmetric at [0, 1]") != NULL, "%s", out);
    const float half[9] = {0, 0.2f, 0.05f, 0.2f, 0, 0.05f, 0.05f, 0.05f, 0};
    ck_assert_int_eq(sc_npy_write_f32(path, half, 2, (int64_t[]){3, 3}, &err), SC_OK);
    ck_assert_int_eq(scale_status(dir, args, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "sum to 0.6") != NULL, "%s", out);

    /* a failed run leaves no map behind */
    snprintf(args, sizeof args, "tsne missing.npy --out '%s/map.npy'", tmp);
    ck_assert_int_eq(scale_status(dir, args, out, sizeof out), 1);
    ck_assert_msg(strstr(out, "missing.npy") != NULL, "%s", out);
    snprintf(path, sizeof path, "%s/map.npy", tmp);
    ck_assert_msg(fopen(path, "rb") == NULL, "a failed run wrote %s", path);
}
END_TEST

Suite *suite_tsne(void)
{
    Suite *s = suite_create("tsne");
    TCase *tc = tcase_create("tsne");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_tsne_perplexity_rows);
    tcase_add_test(tc, test_tsne_joint_p);
    tcase_add_test(tc, test_tsne_gradient_finite_differences);
    tcase_add_test(tc, test_tsne_separates_clusters);
    tcase_add_test(tc, test_tsne_deterministic);
    tcase_add_test(tc, test_tsne_small_and_bad_input);
    tcase_add_test(tc, test_trustworthiness_by_hand);
    tcase_add_test(tc, test_knn_accuracy_by_hand);
    tcase_add_test(tc, test_tsne_command_by_hand);
    tcase_add_test(tc, test_tsne_command_map);
    tcase_add_test(tc, test_tsne_command_errors);
    suite_add_tcase(s, tc);
    return s;
}
