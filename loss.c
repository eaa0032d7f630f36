/* loss.c — the SCALE losses (Eq. 2–3) and the evaluation metrics (Sec. 2.3.2).
 *
 * Contents
 *   1. The class-concept hierarchy
 *   2. From Q to Z and the max aggregation
 *   3. Cross-entropy with probability targets
 *   4. Supervised contrastive loss (Eq. 2), both readings
 *   5. The total loss (Eq. 3)
 *   6. Training SCALE on cached embeddings
 *   7. Prediction and explanation
 *   8. Metrics: accuracy, macro recall, macro F1, ROC AUC
 *   9. Embedding maps: exact t-SNE (Fig. 4)
 */
#define _POSIX_C_SOURCE 200809L
#include "scale.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* 1. The class-concept hierarchy                                            */
/* ======================================================================== */

/* ======================================================================== */
/* 2. From Q to Z and the max aggregation                                    */
/* ======================================================================== */

/* ======================================================================== */
/* 3. Cross-entropy with probability targets                                 */
/* ======================================================================== */

/* ======================================================================== */
/* 4. Supervised contrastive loss (Eq. 2)                                    */
/* ======================================================================== */

/* ======================================================================== */
/* 5. The total loss (Eq. 3)                                                 */
/* ======================================================================== */

/* ======================================================================== */
/* 6. Training SCALE on cached embeddings                                    */
/* ======================================================================== */

/* ======================================================================== */
/* 7. Prediction and explanation                                             */
/* ======================================================================== */

/* ======================================================================== */
/* 8. Metrics                                                                */
/* ======================================================================== */

/* ======================================================================== */
/* 9. Embedding maps: exact t-SNE (Fig. 4)                                   */
/* ======================================================================== */

/* Fig. 4 of the paper shows text embeddings of reports, zero-shot and after
 * SCALE, as t-SNE maps coloured by concept. t-SNE (van der Maaten and
 * Hinton, JMLR 2008) turns distances into two probability distributions,
 * P over pairs of points in the embedding space and Q over pairs in the
 * map, and moves the map points to make Q like P:
 *
 *   p_{j|i} ∝ exp(−β_i |x_i − x_j|²)   β_i set so row i has the chosen perplexity
 *   p_ij    = (p_{j|i} + p_{i|j}) / 2n
 *   q_ij    = w_ij / Σ_{k≠l} w_kl,      w_ij = (1 + |y_i − y_j|²)⁻¹
 *   C       = KL(P || Q) = Σ_{i≠j} p_ij log(p_ij / q_ij)
 *   ∂C/∂y_i = 4 Σ_j (p_ij − q_ij) w_ij (y_i − y_j)
 *
 * Every matrix here is (n, n), row-major, in double precision; maps are
 * (n, 2). The optimiser follows scikit-learn's exact method (defaults of
 * sklearn.manifold.TSNE): 1000 iterations, the first 250 with P multiplied
 * by 12 ("early exaggeration") and momentum 0.5, then momentum 0.8;
 * learning rate 200; per-coordinate gains as in van der Maaten's reference
 * tsne.py (+0.2 when the gradient keeps its direction against the step,
 * ×0.8 when it turns, at least 0.01), carried across the momentum switch.
 * The map is recentred after every step (as in tsne.py and bhtsne); that
 * moves no point relative to another, so it changes nothing else. */

sc_tsne_config sc_tsne_defaults(void)
{
    sc_tsne_config c = {
        .perplexity = 30,
        .early_exaggeration = 12,
        .exaggeration_iters = 250,
        .learning_rate = 200,
        .iters = 1000,
        .momentum_early = 0.5,
        .momentum_late = 0.8,
        .seed = 0,
    };
    return c;
}

/* Rows are handed to the thread pool in blocks; each row's sums run in a
 * fixed order, so the result does not depend on the number of threads. */
#define TSNE_ROWS_PER_TASK 16

static int64_t row_blocks(int64_t n)
{
    return (n + TSNE_ROWS_PER_TASK - 1) / TSNE_ROWS_PER_TASK;
}

static double sq_dist_f32(const float *a, const float *b, int64_t d)
{
    double s = 0;
    for (int64_t k = 0; k < d; k++) {
        double diff = (double)a[k] - (double)b[k];
        s += diff * diff;
    }
    return s;
}

static double sq_dist_f64(const double *a, const double *b, int64_t d)
{
    double s = 0;
    for (int64_t k = 0; k < d; k++) s += (a[k] - b[k]) * (a[k] - b[k]);
    return s;
}

/* @book begin tsne-perplexity */
/* Row i of P: squared distances in, p_{j|i} out. With δ_j = d²_ij − min_j
 * d²_ij (the shift cancels in the normalisation and keeps exp() from
 * underflowing for far-apart points), S = Σ_j exp(−β δ_j) and
 *   H = −Σ_j p_{j|i} log p_{j|i} = log S + β Σ_j p_{j|i} δ_j   (nats).
 * H falls as β grows, so bisection on β finds H = log(perplexity). */
static void perplexity_row(double *row, int64_t n, int64_t i, double perplexity)
{
    const double target = log(perplexity);
    double dmin = HUGE_VAL;
    for (int64_t j = 0; j < n; j++)
        if (j != i && row[j] < dmin) dmin = row[j];
    double beta = 1, beta_lo = 0, beta_hi = HUGE_VAL;
    for (int step = 0; step < 100; step++) {
        double S = 0, weighted = 0;
        for (int64_t j = 0; j < n; j++) {
            if (j == i) continue;
            double w = exp(-beta * (row[j] - dmin));
            S += w;
            weighted += w * (row[j] - dmin);
        }
        double H = log(S) + beta * weighted / S;
        if (fabs(H - target) < 1e-5) break;
        if (H > target) { /* too flat: sharpen */
            beta_lo = beta;
            beta = beta_hi == HUGE_VAL ? 2 * beta : (beta + beta_hi) / 2;
        } else {          /* too peaked: widen */
            beta_hi = beta;
            beta = (beta + beta_lo) / 2;
        }
    }
    double S = 0;
    for (int64_t j = 0; j < n; j++) {
        row[j] = j == i ? 0 : exp(-beta * (row[j] - dmin));
        S += row[j];
    }
    for (int64_t j = 0; j < n; j++) row[j] /= S;
}
/* @book end tsne-perplexity */

typedef struct {
    double *P;
    const float *X;
    int64_t n, d;
    double perplexity;
} affinity_job;

static void conditional_task(void *arg, int64_t block)
{
    const affinity_job *job = arg;
    int64_t end = (block + 1) * TSNE_ROWS_PER_TASK < job->n ? (block + 1) * TSNE_ROWS_PER_TASK : job->n;
    for (int64_t i = block * TSNE_ROWS_PER_TASK; i < end; i++)
        perplexity_row(job->P + i * job->n, job->n, i, job->perplexity);
}

static void distance_task(void *arg, int64_t block)
{
    const affinity_job *job = arg;
    int64_t end = (block + 1) * TSNE_ROWS_PER_TASK < job->n ? (block + 1) * TSNE_ROWS_PER_TASK : job->n;
    for (int64_t i = block * TSNE_ROWS_PER_TASK; i < end; i++)
        for (int64_t j = 0; j < job->n; j++)
            job->P[i * job->n + j] = sq_dist_f32(job->X + i * job->d, job->X + j * job->d, job->d);
}

void sc_tsne_conditional_p(double *P, int64_t n, double perplexity)
{
    SC_ASSERT(n >= 2 && perplexity > 0, "n = %lld, perplexity %g", (long long)n, perplexity);
    affinity_job job = {P, NULL, n, 0, perplexity};
    sc_parallel_for(row_blocks(n), conditional_task, &job);
}

void sc_tsne_joint_p(double *P, const float *X, int64_t n, int64_t d, double perplexity)
{
    affinity_job job = {P, X, n, d, perplexity};
    sc_parallel_for(row_blocks(n), distance_task, &job);
    sc_tsne_conditional_p(P, n, perplexity);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            double p = (P[i * n + j] + P[j * n + i]) / (2.0 * (double)n);
            P[i * n + j] = P[j * n + i] = p;
        }
}

/* -- the gradient -- */

typedef struct {
    double *grad;
    const double *Y, *P;
    int64_t n;
    double exaggeration;
    double inv_Z;  /* 1 / Σ_{k≠l} w_kl */
} gradient_job;

/* Pass 1: Σ_j w_ij for each row, parked in grad[2i] until pass 2. */
static void row_weight_task(void *arg, int64_t block)
{
    const gradient_job *job = arg;
    int64_t n = job->n, end = (block + 1) * TSNE_ROWS_PER_TASK < n ? (block + 1) * TSNE_ROWS_PER_TASK : n;
    for (int64_t i = block * TSNE_ROWS_PER_TASK; i < end; i++) {
        double s = 0;
        for (int64_t j = 0; j < n; j++)
            if (j != i) s += 1.0 / (1.0 + sq_dist_f64(job->Y + 2 * i, job->Y + 2 * j, 2));
        job->grad[2 * i] = s;
    }
}

/* @book begin tsne-gradient */
/* Pass 2: ∂C/∂y_i = 4 Σ_j (α p_ij − q_ij) w_ij (y_i − y_j), q_ij = w_ij / Z. */
static void gradient_task(void *arg, int64_t block)
{
    const gradient_job *job = arg;
    const double *Y = job->Y;
    int64_t n = job->n, end = (block + 1) * TSNE_ROWS_PER_TASK < n ? (block + 1) * TSNE_ROWS_PER_TASK : n;
    for (int64_t i = block * TSNE_ROWS_PER_TASK; i < end; i++) {
        double g0 = 0, g1 = 0;
        for (int64_t j = 0; j < n; j++) {
            if (j == i) continue;
            double w = 1.0 / (1.0 + sq_dist_f64(Y + 2 * i, Y + 2 * j, 2));
            double pull = (job->exaggeration * job->P[i * n + j] - w * job->inv_Z) * w;
            g0 += pull * (Y[2 * i] - Y[2 * j]);
            g1 += pull * (Y[2 * i + 1] - Y[2 * j + 1]);
        }
        job->grad[2 * i] = 4 * g0;
        job->grad[2 * i + 1] = 4 * g1;
    }
}
/* @book end tsne-gradient */

void sc_tsne_gradient(double *grad, const double *Y, const double *P, int64_t n, double exaggeration)
{
    gradient_job job = {grad, Y, P, n, exaggeration, 0};
    sc_parallel_for(row_blocks(n), row_weight_task, &job);
    double Z = 0;
    for (int64_t i = 0; i < n; i++) Z += grad[2 * i]; /* in row order: deterministic */
    job.inv_Z = 1.0 / Z;
    sc_parallel_for(row_blocks(n), gradient_task, &job);
}

double sc_tsne_kl(const double *Y, const double *P, int64_t n)
{
    double Z = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            if (j != i) Z += 1.0 / (1.0 + sq_dist_f64(Y + 2 * i, Y + 2 * j, 2));
    double kl = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double p = P[i * n + j];
            if (j == i || p <= 0) continue;
            double q = 1.0 / (1.0 + sq_dist_f64(Y + 2 * i, Y + 2 * j, 2)) / Z;
            kl += p * log(p / q);
        }
    return kl;
}

/* -- the optimiser -- */

/* @book begin tsne-step */
/* One step of gradient descent with momentum and per-coordinate gains
 * (Jacobs' delta-bar-delta rule, as in van der Maaten's tsne.py): a
 * coordinate whose gradient still opposes its last step (so the step still
 * goes downhill) speeds up by 0.2; one whose gradient turned slows to 0.8×. */
static void tsne_step(double *Y, double *update, double *gain, const double *grad, int64_t n, double momentum,
                      double learning_rate)
{
    for (int64_t k = 0; k < 2 * n; k++) {
        int turned = (grad[k] > 0) == (update[k] > 0);
        gain[k] = turned ? gain[k] * 0.8 : gain[k] + 0.2;
        if (gain[k] < 0.01) gain[k] = 0.01;
        update[k] = momentum * update[k] - learning_rate * gain[k] * grad[k];
        Y[k] += update[k];
    }
    for (int c = 0; c < 2; c++) { /* recentre */
        double mean = 0;
        for (int64_t i = 0; i < n; i++) mean += Y[2 * i + c];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) Y[2 * i + c] -= mean;
    }
}
/* @book end tsne-step */

static sc_status tsne_check(const float *X, int64_t n, int64_t d, const sc_tsne_config *cfg, sc_err *err)
{
    if (n < 0 || n > SC_TSNE_MAX_POINTS)
        return sc_fail(err, SC_ENOMEM, "t-SNE: %lld points, more than the limit of %d for the exact method",
                       (long long)n, SC_TSNE_MAX_POINTS);
    if (d < 1) return sc_fail(err, SC_EARG, "t-SNE: points of dimension %lld", (long long)d);
    if (!(cfg->perplexity > 0) || !(cfg->early_exaggeration >= 1) || cfg->iters < 0 || cfg->exaggeration_iters < 0 ||
        !isfinite(cfg->learning_rate) || !(cfg->momentum_early >= 0 && cfg->momentum_early < 1) ||
        !(cfg->momentum_late >= 0 && cfg->momentum_late < 1))
        return sc_fail(err, SC_EARG,
                       "t-SNE: bad settings (perplexity %g, exaggeration %g, iterations %d, momentum %g/%g)",
                       cfg->perplexity, cfg->early_exaggeration, cfg->iters, cfg->momentum_early, cfg->momentum_late);
    for (int64_t i = 0; i < n * d; i++)
        if (!isfinite(X[i]))
            return sc_fail(err, SC_ERANGE, "t-SNE: point %lld, dimension %lld is not a finite number",
                           (long long)(i / d), (long long)(i % d));
    return SC_OK;
}

sc_status sc_tsne(double *Y, const float *X, int64_t n, int64_t d, const sc_tsne_config *cfg, double *kl,
                  sc_err *err)
{
    sc_status st = tsne_check(X, n, d, cfg, err);
    if (st != SC_OK) return st;
    if (kl) *kl = 0;
    for (int64_t k = 0; k < 2 * n; k++) Y[k] = 0;
    if (n < 2) return SC_OK; /* one point (or none) maps to the origin */

    size_t cells, bytes;
    if (!sc_mul_ok((size_t)n, (size_t)n, &cells) || !sc_mul_ok(cells, sizeof(double), &bytes))
        return sc_fail(err, SC_ENOMEM, "t-SNE: %lld points overflow the affinity matrix", (long long)n);
    double *P = malloc(bytes);
    double *work = malloc(3 * 2 * (size_t)n * sizeof(double)); /* grad, update, gain: (n, 2) each */
    if (!P || !work) {
        free(P);
        free(work);
        return sc_fail(err, SC_ENOMEM, "t-SNE: out of memory for %lld points (%zu bytes)", (long long)n, bytes);
    }
    double *grad = work, *update = work + 2 * n, *gain = work + 4 * n;

    /* With n - 1 neighbours a row cannot reach a perplexity near n - 1
     * without flattening completely; bhtsne asks for n - 1 >= 3·perplexity. */
    double perplexity = fmin(cfg->perplexity, fmax((double)(n - 1) / 3, 1.0));
    sc_tsne_joint_p(P, X, n, d, perplexity);

    sc_rng rng;
    sc_rng_seed(&rng, cfg->seed);
    for (int64_t k = 0; k < 2 * n; k++) {
        Y[k] = 1e-4 * (double)sc_rng_normal(&rng);
        update[k] = 0;
        gain[k] = 1;
    }
    double lr = cfg->learning_rate > 0 ? cfg->learning_rate : fmax((double)n / cfg->early_exaggeration / 4, 50);
    for (int it = 0; it < cfg->iters; it++) {
        int early = it < cfg->exaggeration_iters;
        sc_tsne_gradient(grad, Y, P, n, early ? cfg->early_exaggeration : 1.0);
        tsne_step(Y, update, gain, grad, n, early ? cfg->momentum_early : cfg->momentum_late, lr);
    }
    if (kl) *kl = sc_tsne_kl(Y, P, n);
    free(P);
    free(work);
    return SC_OK;
}

/* -- neighbourhood preservation -- */

#define KNN_MAX 64

/* The k nearest other points of i in Y (n, e), nearest first, by insertion
 * into a sorted list (ties keep the lower index first). */
static void nearest_k(int64_t *out, const double *Y, int64_t e, int64_t n, int64_t i, int k)
{
    double dist[KNN_MAX];
    int have = 0;
    for (int64_t j = 0; j < n; j++) {
        if (j == i) continue;
        double dj = sq_dist_f64(Y + i * e, Y + j * e, e);
        if (have == k && dj >= dist[k - 1]) continue;
        int pos = have < k ? have++ : k - 1;
        while (pos > 0 && dist[pos - 1] > dj) {
            dist[pos] = dist[pos - 1];
            out[pos] = out[pos - 1];
            pos--;
        }
        dist[pos] = dj;
        out[pos] = j;
    }
}

double sc_knn_accuracy(const double *Y, int64_t e, const int *label, int64_t n, int k)
{
    SC_ASSERT(k >= 1 && k <= KNN_MAX && k < n, "k = %d for %lld points", k, (long long)n);
    int64_t hits = 0, nb[KNN_MAX];
    for (int64_t i = 0; i < n; i++) {
        nearest_k(nb, Y, e, n, i, k);
        int best = -1, best_votes = 0;
        for (int a = 0; a < k; a++) { /* nearest first, so a tie keeps the nearer label */
            int votes = 0;
            for (int b = 0; b < k; b++) votes += label[nb[b]] == label[nb[a]];
            if (votes > best_votes) {
                best_votes = votes;
                best = label[nb[a]];
            }
        }
        hits += best == label[i];
    }
    return (double)hits / (double)n;
}

typedef struct {
    double dist;
    int64_t j;
} ranked;

static int ranked_cmp(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->dist != y->dist) return x->dist < y->dist ? -1 : 1;
    return x->j < y->j ? -1 : x->j > y->j;
}

/* @book begin trustworthiness */
/* T(k) = 1 − 2 / (n k (2n − 3k − 1)) · Σ_i Σ_{j ∈ U_i} (r(i, j) − k), where
 * U_i holds the map's k nearest neighbours of i that are not among its k
 * nearest in X, and r(i, j) is j's rank (1 = nearest) among i's neighbours
 * in X (Venna and Kaski, 2001; as sklearn.manifold.trustworthiness). */
sc_status sc_trustworthiness(const float *X, int64_t d, const double *Y, int64_t e, int64_t n, int k,
                             double *out, sc_err *err)
{
    if (k < 1 || k > KNN_MAX || 2 * (int64_t)k >= n)
        return sc_fail(err, SC_EARG, "trustworthiness: k = %d needs 1 <= k < n / 2 = %lld / 2 and k <= %d", k,
                       (long long)n, KNN_MAX);
    ranked *order = malloc((size_t)n * sizeof *order);
    int64_t *rank = malloc((size_t)n * sizeof *rank);
    if (!order || !rank) {
        free(order);
        free(rank);
        return sc_fail(err, SC_ENOMEM, "trustworthiness: out of memory for %lld points", (long long)n);
    }
    double penalty = 0;
    int64_t nb[KNN_MAX];
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) order[j] = (ranked){j == i ? -1.0 : sq_dist_f32(X + i * d, X + j * d, d), j};
        qsort(order, (size_t)n, sizeof *order, ranked_cmp); /* i itself sorts first, at rank 0 */
        for (int64_t r = 0; r < n; r++) rank[order[r].j] = r;
        nearest_k(nb, Y, e, n, i, k);
        for (int a = 0; a < k; a++)
            if (rank[nb[a]] > k) penalty += (double)(rank[nb[a]] - k);
    }
    free(order);
    free(rank);
    double nk = (double)n * k;
    *out = 1.0 - 2.0 / (nk * (2.0 * (double)n - 3.0 * k - 1.0)) * penalty;
    return SC_OK;
}
/* @book end trustworthiness */
