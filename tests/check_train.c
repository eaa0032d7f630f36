/* check_train.c — training SCALE on cached embeddings (loss.c sections 6-7):
 * the gradient of the whole chain (adapters, normalisation, Q, loss) w.r.t.
 * the adapter weights and α against finite differences, learning linearly
 * separable synthetic embeddings, and the batch-size rule. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "golden_util.h"

/* Synthetic cached embeddings: H = 5 combinations with the structure of
 * Derm7p's pigmentation (classes 0 0 0 1 1, concepts 0..4). Image i of
 * combination h is centre[h] + noise; the prompts are unrelated random
 * vectors, so before training the prompts do not point at their images. */
typedef struct {
    int64_t N, C;
    int H;
    float *images, *prompts, *labels, *texts;
    int *combo;
    sc_train_data data;
} synthetic;

static const int synth_class[5] = {0, 0, 0, 1, 1};
static const int synth_concept[5] = {0, 1, 2, 3, 4};

static void make_synthetic(synthetic *s, int64_t N, int64_t C, float noise, int paired_texts, uint64_t seed)
{
    sc_rng rng;
    sc_rng_seed(&rng, seed);
    s->N = N;
    s->C = C;
    s->H = 5;
    float *centre = malloc(sizeof(float) * (size_t)(s->H * C));
    s->prompts = malloc(sizeof(float) * (size_t)(s->H * C));
    s->images = malloc(sizeof(float) * (size_t)(N * C));
    s->texts = paired_texts ? malloc(sizeof(float) * (size_t)(N * C)) : NULL;
    s->labels = calloc((size_t)(N * s->H), sizeof(float));
    s->combo = malloc(sizeof(int) * (size_t)N);
    for (int64_t i = 0; i < s->H * C; i++) {
        centre[i] = sc_rng_normal(&rng);
        s->prompts[i] = sc_rng_normal(&rng);
    }
    for (int64_t i = 0; i < N; i++) {
        int h = (int)sc_rng_below(&rng, (uint32_t)s->H);
        s->combo[i] = h;
        s->labels[i * s->H + h] = 1;
        for (int64_t c = 0; c < C; c++) {
            s->images[i * C + c] = centre[h * C + c] + noise * sc_rng_normal(&rng);
            /* a paired "report": the prompt plus its own wording noise */
            if (s->texts) s->texts[i * C + c] = s->prompts[h * C + c] + 0.3f * sc_rng_normal(&rng);
        }
    }
    free(centre);
    sc_train_data d = {N, C, s->H, 2, 5, s->images, s->texts, s->combo, s->labels, NULL, s->prompts,
                       synth_class, synth_concept};
    s->data = d;
}

static void free_synthetic(synthetic *s)
{
    free(s->images);
    free(s->prompts);
    free(s->texts);
    free(s->labels);
    free(s->combo);
}

/* ---- the gradient of the whole chain ---- */

/* A model over six synthetic images of width 8, at scales that keep the
 * loss smooth at the steps used, for the gradient checks. */
enum { CHAIN_N = 6, CHAIN_C = 8 };
static const int chain_index[CHAIN_N] = {4, 0, 3, 1, 5, 2};

static void chain_model(sc_scale_model *m, synthetic *s, int paired_texts, sc_supcon_reading reading,
                        sc_alpha_mode mode)
{
    make_synthetic(s, CHAIN_N, CHAIN_C, 0.8f, paired_texts, 3);
    sc_train_config cfg = sc_train_defaults();
    cfg.loss.logit_scale = 4;
    cfg.loss.tau = 0.5;
    cfg.loss.supcon = reading;
    cfg.adapter.alpha_mode = mode;
    cfg.adapter.alpha_init = 0.4f;
    cfg.seed = 5;
    sc_err err;
    ck_assert_msg(sc_scale_model_init(m, CHAIN_C, &cfg, &err) == SC_OK, "%s", err.msg);
}

/* The tape's gradient of every parameter entry, from a backward pass run
 * here, against sc_scale_grad_check's central differences of all entries
 * (its `tape` must be the same backward pass, bit for bit). */
static void check_chain_gradient(int paired_texts, sc_supcon_reading reading, sc_alpha_mode mode)
{
    synthetic s;
    sc_scale_model m;
    chain_model(&m, &s, paired_texts, reading, mode);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_optim_zero_grad(&m.opt);
    sc_backward(&ctx, sc_scale_batch_loss(&ctx, &m, &s.data, chain_index, CHAIN_N, NULL));
    int64_t total = 0;
    for (int k = 0; k < m.n_params; k++) total += sc_numel(m.params[k]);
    double *tape = malloc(sizeof(double) * (size_t)total);
    for (int k = 0, at = 0; k < m.n_params; k++)
        for (int64_t i = 0; i < sc_numel(m.params[k]); i++) tape[at++] = m.params[k]->grad[i];
    sc_grad_sample *sample = malloc(sizeof *sample * (size_t)total);
    ck_assert_int_eq(sc_scale_grad_check(sample, total + 5, &m, &ctx, &s.data, chain_index, CHAIN_N, 1.0f / 512, 9),
                     total);
    for (int64_t at = 0, first = 0; at < total; at++) {
        sc_tensor *p = m.params[sample[at].param];
        if (sample[at].index == 0 && at > 0) first = at;
        ck_assert_int_eq(at - first, sample[at].index); /* every entry, in order */
        ck_assert_msg(sample[at].tape == tape[at], "%s[%lld]: tape %.9g, backward here %.9g", p->name,
                      (long long)sample[at].index, sample[at].tape, tape[at]);
    }
    for (int k = 0, at = 0; k < m.n_params; k++) {
        sc_tensor *p = m.params[k];
        int64_t n = sc_numel(p);
        double *fd = malloc(sizeof(double) * (size_t)n);
        for (int64_t i = 0; i < n; i++) fd[i] = sample[at + i].fd;
        char name[160];
        snprintf(name, sizeof name, "d%s (%s texts, %s, alpha mode %d)", p->name, paired_texts ? "paired" : "prompt",
                 reading == SC_SUPCON_ROWS ? "rows" : "cross", (int)mode);
        /* Float forward pass, step 2^-9: rounding of the loss and the
         * curvature each leave about 1e-4 in a difference. */
        sc_check_close_d(name, tape + at, fd, n, 5e-4, 5e-3);
        free(fd);
        at += (int)n;
    }
    free(sample);
    free(tape);
    sc_ctx_free(&ctx);
    sc_scale_model_free(&m);
    free_synthetic(&s);
}

START_TEST(test_chain_gradient_matches_finite_differences)
{
    check_chain_gradient(_i & 1, (_i >> 1) & 1 ? SC_SUPCON_CROSS : SC_SUPCON_ROWS,
                         (_i >> 2) == 0 ? SC_ALPHA_SIGMOID : SC_ALPHA_RAW);
}
END_TEST

/* Fewer entries than there are: distinct ones, in parameter order, the same
 * for the same seed; the parameters are left as they were and their
 * gradients zero; each difference agrees with the tape. */
START_TEST(test_grad_check_samples)
{
    synthetic s;
    sc_scale_model m;
    chain_model(&m, &s, 1, SC_SUPCON_CROSS, SC_ALPHA_SIGMOID);
    float before[6][2 * CHAIN_C * CHAIN_C];
    for (int k = 0; k < m.n_params; k++) memcpy(before[k], m.params[k]->data, sizeof(float) * (size_t)sc_numel(m.params[k]));
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    sc_grad_sample a[12], b[12];
    ck_assert_int_eq(sc_scale_grad_check(a, 12, &m, &ctx, &s.data, chain_index, CHAIN_N, 1.0f / 512, 77), 12);
    ck_assert_int_eq(sc_scale_grad_check(b, 12, &m, &ctx, &s.data, chain_index, CHAIN_N, 1.0f / 512, 77), 12);
    for (int t = 0; t < 12; t++) {
        ck_assert_int_eq(a[t].param, b[t].param);
        ck_assert_int_eq(a[t].index, b[t].index);
        ck_assert(a[t].index >= 0 && a[t].index < sc_numel(m.params[a[t].param]));
        if (t) ck_assert(a[t].param > a[t - 1].param || (a[t].param == a[t - 1].param && a[t].index > a[t - 1].index));
        ck_assert_msg(fabs(a[t].tape - a[t].fd) <= 5e-4 + 5e-3 * fabs(a[t].fd), "%s[%lld]: tape %.9g, fd %.9g",
                      m.params[a[t].param]->name, (long long)a[t].index, a[t].tape, a[t].fd);
    }
    for (int k = 0; k < m.n_params; k++) {
        ck_assert(memcmp(before[k], m.params[k]->data, sizeof(float) * (size_t)sc_numel(m.params[k])) == 0);
        for (int64_t i = 0; i < sc_numel(m.params[k]); i++) ck_assert(m.params[k]->grad[i] == 0.0f);
    }
    sc_ctx_free(&ctx);
    sc_scale_model_free(&m);
    free_synthetic(&s);
}
END_TEST

/* ---- learning separable embeddings ---- */

static double combination_accuracy(const sc_scale_model *m, const synthetic *test)
{
    float *Q = malloc(sizeof(float) * (size_t)(test->N * test->H));
    sc_scale_similarity(Q, m, test->images, test->N, test->prompts, test->H);
    int64_t right = 0;
    for (int64_t i = 0; i < test->N; i++) {
        int best = 0;
        for (int h = 1; h < test->H; h++)
            if (Q[i * test->H + h] > Q[i * test->H + best]) best = h;
        right += best == test->combo[i];
    }
    free(Q);
    return (double)right / (double)test->N;
}

START_TEST(test_learns_separable_embeddings)
{
    synthetic train, test;
    /* the same seed gives the same centres and prompts; test images are
     * the second half of a larger draw */
    make_synthetic(&train, 400, 32, 0.7f, 0, 42);
    make_synthetic(&test, 400, 32, 0.7f, 0, 42);
    train.data.N = 200;
    test.images += 200 * 32;
    test.combo += 200;
    test.N = 200;
    sc_train_config cfg = sc_train_defaults();
    sc_scale_model m;
    sc_err err;
    ck_assert_msg(sc_scale_model_init(&m, 32, &cfg, &err) == SC_OK, "%s", err.msg);
    ck_assert_msg(sc_train_data_check(&train.data, "synthetic", &err) == SC_OK, "%s", err.msg);
    double before = combination_accuracy(&m, &test);
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    double first = sc_scale_train_epoch(&m, &ctx, &train.data), last = first;
    for (int e = 1; e < cfg.epochs; e++) last = sc_scale_train_epoch(&m, &ctx, &train.data);
    double after = combination_accuracy(&m, &test);
    ck_assert_int_eq(m.epoch, 150);
    ck_assert_msg(after > 0.95, "held-out combination accuracy %.3f (before training %.3f)", after, before);
    ck_assert_msg(before < 0.6, "the prompts already matched before training (%.3f)", before);
    ck_assert_msg(last < first / 4, "loss %.3f -> %.3f", first, last);
    sc_ctx_free(&ctx);
    sc_scale_model_free(&m);
    test.images -= 200 * 32;
    test.combo -= 200;
    free_synthetic(&train);
    free_synthetic(&test);
}
END_TEST

/* ---- checkpoints: resuming gives the weights of an uninterrupted run ---- */

static void train_epochs(sc_scale_model *m, const sc_train_data *d, int epochs)
{
    sc_ctx ctx;
    sc_ctx_init(&ctx);
    for (int e = 0; e < epochs; e++) sc_scale_train_epoch(m, &ctx, d);
    sc_ctx_free(&ctx);
}

START_TEST(test_resume_equals_uninterrupted)
{
    synthetic s;
    make_synthetic(&s, 50, 16, 0.7f, _i == 1, 8);
    sc_train_config cfg = sc_train_defaults();
    cfg.seed = 3;
    cfg.batch_size = 16; /* a short last batch every epoch */
    if (_i == 1) cfg.adapter.alpha_mode = SC_ALPHA_CLAMP, cfg.adapter.relu_after_up = 0;
    sc_err err;
    sc_scale_model straight, first, resumed;
    ck_assert(sc_scale_model_init(&straight, 16, &cfg, &err) == SC_OK);
    train_epochs(&straight, &s.data, 6);

    ck_assert(sc_scale_model_init(&first, 16, &cfg, &err) == SC_OK);
    train_epochs(&first, &s.data, 3);
    char path[256];
    snprintf(path, sizeof path, "%s/adapters.safetensors", sc_test_tmpdir());
    ck_assert_msg(sc_scale_model_save(&first, path, &err) == SC_OK, "%s", err.msg);
    sc_scale_model_free(&first);
    /* A different seed and architecture in the base options must not
     * matter: the checkpoint decides. */
    sc_train_config other = cfg;
    other.seed = 99;
    other.adapter.alpha_mode = SC_ALPHA_RAW;
    ck_assert_msg(sc_scale_model_load(&resumed, path, &other, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(resumed.epoch, 3);
    ck_assert(resumed.cfg.adapter.alpha_mode == cfg.adapter.alpha_mode);
    train_epochs(&resumed, &s.data, 3);

    ck_assert_int_eq(resumed.n_params, straight.n_params);
    ck_assert_int_eq(resumed.opt.step, straight.opt.step);
    for (int i = 0; i < straight.n_params; i++) {
        size_t bytes = sizeof(float) * (size_t)sc_numel(straight.params[i]);
        ck_assert_msg(!memcmp(resumed.params[i]->data, straight.params[i]->data, bytes), "%s differs",
                      straight.params[i]->name);
        ck_assert(!memcmp(resumed.opt.m[i], straight.opt.m[i], bytes));
        ck_assert(!memcmp(resumed.opt.v[i], straight.opt.v[i], bytes));
    }
    sc_scale_model_free(&straight);
    sc_scale_model_free(&resumed);
    free_synthetic(&s);
}
END_TEST

/* Threads share out GEMM blocks, the adapter's row blocks, SupCon's anchor
 * blocks and the optimizer's pieces, but never a sum: training on one
 * thread and on two must give the same bits. The sizes are large enough
 * for every one of those splits to happen (B·C = 64·768 rows of adapter
 * work, 69 anchors); _i = 1 trains the multi-label rows reading. */
START_TEST(test_threads_do_not_change_training)
{
    synthetic s;
    make_synthetic(&s, 100, 768, 0.7f, 0, 12);
    sc_train_config cfg = sc_train_defaults();
    cfg.seed = 5;
    if (_i == 1) cfg.loss.supcon = SC_SUPCON_ROWS, cfg.loss.multilabel = 1;
    sc_err err;
    sc_scale_model m[2];
    double loss[2];
    for (int run = 0; run < 2; run++) {
        sc_set_threads(run + 1);
        ck_assert(sc_scale_model_init(&m[run], 768, &cfg, &err) == SC_OK);
        sc_ctx ctx;
        sc_ctx_init(&ctx);
        for (int e = 0; e < 2; e++) loss[run] = sc_scale_train_epoch(&m[run], &ctx, &s.data);
        sc_ctx_free(&ctx);
    }
    sc_set_threads(0);
    ck_assert_msg(loss[0] == loss[1], "loss %.17g on one thread, %.17g on two", loss[0], loss[1]);
    for (int i = 0; i < m[0].n_params; i++) {
        size_t bytes = sizeof(float) * (size_t)sc_numel(m[0].params[i]);
        ck_assert_msg(!memcmp(m[0].params[i]->data, m[1].params[i]->data, bytes), "%s differs",
                      m[0].params[i]->name);
    }
    sc_scale_model_free(&m[0]);
    sc_scale_model_free(&m[1]);
    free_synthetic(&s);
}
END_TEST

START_TEST(test_checkpoint_errors)
{
    sc_err err;
    sc_train_config cfg = sc_train_defaults();
    sc_scale_model m;
    /* a safetensors file without the SCALE state */
    char path[256];
    snprintf(path, sizeof path, "%s/other.safetensors", sc_test_tmpdir());
    sc_arena a;
    sc_arena_init(&a, "t", 1 << 16, 0);
    sc_tensor *t = sc_tensor_zeros(&a, 1, (int64_t[]){3}, "x");
    const char *names[1] = {"x"};
    const sc_tensor *tensors[1] = {t};
    ck_assert(sc_safetensors_write(path, names, tensors, 1, &err) == SC_OK);
    ck_assert_int_eq(sc_scale_model_load(&m, path, &cfg, &err), SC_EFORMAT);
    ck_assert_msg(strstr(err.msg, "no tensor 'scale.state'") != NULL, "%s", err.msg);
    /* a state with an impossible value */
    sc_tensor *state = sc_tensor_zeros(&a, 1, (int64_t[]){12}, "scale.state");
    state->data[0] = 1;
    state->data[1] = 2.5f;
    names[0] = "scale.state";
    tensors[0] = state;
    ck_assert(sc_safetensors_write(path, names, tensors, 1, &err) == SC_OK);
    ck_assert_int_eq(sc_scale_model_load(&m, path, &cfg, &err), SC_EFORMAT);
    ck_assert_msg(strstr(err.msg, "scale.state[1] is 2.5, not a count") != NULL, "%s", err.msg);
    sc_arena_free(&a);
}
END_TEST

/* ---- the commands: scale train, scale predict, resuming from the file ---- */

/* Write the synthetic set as the .npy files `scale train` reads: the first
 * half for training, the second for testing. */
static const char *write_synthetic_files(synthetic *s)
{
    const char *dir = sc_test_tmpdir();
    char path[512];
    sc_err err;
    int64_t half = s->N / 2;
    int64_t *labels = malloc(sizeof(int64_t) * (size_t)s->N);
    for (int64_t i = 0; i < s->N; i++) labels[i] = s->combo[i];
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s_img.npy", dir, k ? "test" : "train");
        ck_assert(sc_npy_write_f32(path, s->images + k * half * s->C, 2, (int64_t[]){half, s->C}, &err) == SC_OK);
        sc_array a = {SC_DT_I64, 1, {half}, labels + k * half, sizeof(int64_t) * (size_t)half};
        snprintf(path, sizeof path, "%s/%s_lab.npy", dir, k ? "test" : "train");
        ck_assert(sc_npy_write(path, &a, &err) == SC_OK);
    }
    snprintf(path, sizeof path, "%s/prompts.npy", dir);
    ck_assert(sc_npy_write_f32(path, s->prompts, 2, (int64_t[]){s->H, s->C}, &err) == SC_OK);
    free(labels);
    return dir;
}

/* The book's example (section 5.10): train on tests/examples/train-synthetic
 * (C = 32, five combinations, 200 training and 200 test images around
 * separable centres, unrelated prompts), then predict and explain. */
START_TEST(test_train_and_predict_commands)
{
    const char *dir = "tests/examples/train-synthetic";
    const char *tmp = sc_test_tmpdir();
    char out[65536], args[2048];
    snprintf(args, sizeof args,
             "train --hier ../../../data/derm7p.hier --task pigmentation --image-emb train_img.npy "
             "--labels train_lab.npy --prompt-emb prompts.npy --out '%s/adapters.safetensors' --log-every 50",
             tmp);
    scale_run(dir, args, out, sizeof out);
    ck_assert_msg(strstr(out, "epoch=50 loss=") == out && strstr(out, "\nepoch=150 loss=") != NULL, "%s", out);
    double first = golden_output_value(out, "epoch=50 loss"), last = golden_output_value(strstr(out, "epoch=150"),
                                                                                         "epoch=150 loss");
    ck_assert_msg(last < first, "loss did not fall: %g -> %g", first, last);
    snprintf(args, sizeof args,
             "predict --hier ../../../data/derm7p.hier --task pigmentation --adapters '%s/adapters.safetensors' "
             "--image-emb test_img.npy --prompt-emb prompts.npy --labels test_lab.npy --top 2",
             tmp);
    scale_run(dir, args, out, sizeof out);
    /* one explanation line per test image, naming class, concept, criterion */
    ck_assert_msg(strstr(out, "image 199: ") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "image 0: melanoma-indicative: localized irregular pigmentation (") == out, "%s", out);
    char *line = strstr(out, "level=combination ");
    ck_assert_msg(line != NULL, "%s", out);
    double acc = golden_output_value(line, "level=combination accuracy");
    ck_assert_msg(acc > 0.95, "mean accuracy over combinations %.3f", acc);
    line = strstr(out, "level=class ");
    ck_assert_msg(line != NULL && golden_output_value(line, "level=class accuracy") > 0.95, "%s", out);
}
END_TEST

/* `scale train --grad-check 6` on the book's example (book/02): six lines
 * naming distinct entries of the adapters, the tape and the difference
 * agreeing to within the float forward pass's noise at a step of 2^-10
 * (about 1e-3 of the gradient; a ReLU that crosses its kink inside the
 * step may cost a few per cent, hence the looser bound). */
START_TEST(test_grad_check_command)
{
    const char *tmp = sc_test_tmpdir();
    char out[4096], args[2048];
    snprintf(args, sizeof args,
             "train --hier '%s' --task pigmentation --image-emb train_img.npy --labels train_lab.npy "
             "--prompt-emb prompts.npy --out '%s/a.safetensors' --log-every 0 --epochs 20 --grad-check 6",
             sc_test_path("data/derm7p.hier"), tmp);
    scale_run("tests/examples/train-synthetic", args, out, sizeof out);
    int lines = 0, close = 0;
    char seen[6][96];
    for (const char *p = out; (p = strstr(p, "param=")) != NULL; p++, lines++) {
        char name[64];
        int i, j;
        double tape, fd, rel;
        ck_assert_msg(lines < 6 && sscanf(p, "param=%63[^[][%d,%d] tape=%lf fd=%lf rel=%lf", name, &i, &j, &tape, &fd,
                                          &rel) == 6, "%s", out);
        ck_assert_msg(strstr(name, "_adapter.w") != NULL, "%s", out);
        snprintf(seen[lines], sizeof seen[lines], "%s[%d,%d]", name, i, j);
        for (int q = 0; q < lines; q++) ck_assert_str_ne(seen[q], seen[lines]);
        ck_assert_msg(fabs(tape - fd) <= 1e-4 + 0.1 * fabs(tape), "%s", out);
        close += fabs(tape - fd) <= 1e-5 + 1e-2 * fabs(tape);
    }
    ck_assert_int_eq(lines, 6);
    ck_assert_msg(close >= 5, "%s", out);
    snprintf(args, sizeof args,
             "train --hier '%s' --task pigmentation --image-emb train_img.npy --labels train_lab.npy "
             "--prompt-emb prompts.npy --out '%s/b.safetensors' --grad-check -1",
             sc_test_path("data/derm7p.hier"), tmp);
    ck_assert_int_eq(scale_status("tests/examples/train-synthetic", args, out, sizeof out), 2);
}
END_TEST

/* Four epochs in one run, or two, then two more from the checkpoint: the
 * two files must be byte for byte the same. */
START_TEST(test_resume_command)
{
    synthetic s;
    make_synthetic(&s, 100, 16, 0.7f, 0, 5);
    const char *dir = write_synthetic_files(&s);
    char out[4096], args[2048];
    const char *common = "--task pigmentation --image-emb train_img.npy --labels train_lab.npy "
                         "--prompt-emb prompts.npy --batch 16 --seed 7 --log-every 0";
    const char *hier = sc_test_path("data/derm7p.hier");
    snprintf(args, sizeof args, "train --hier '%s' %s --epochs 4 --out straight.safetensors", hier, common);
    scale_run(dir, args, out, sizeof out);
    snprintf(args, sizeof args, "train --hier '%s' %s --epochs 2 --out half.safetensors", hier, common);
    scale_run(dir, args, out, sizeof out);
    snprintf(args, sizeof args, "train --hier '%s' %s --epochs 4 --resume half.safetensors --out resumed.safetensors",
             hier, common);
    scale_run(dir, args, out, sizeof out);
    snprintf(args, sizeof args, "cd '%s' && cmp straight.safetensors resumed.safetensors", dir);
    ck_assert_msg(system(args) == 0, "resumed checkpoint differs from the uninterrupted one");
    free_synthetic(&s);
}
END_TEST

START_TEST(test_batch_size_rule)
{
    ck_assert_int_eq(sc_train_batch_size(413), 64); /* Derm7p train */
    ck_assert_int_eq(sc_train_batch_size(206), 32); /* half of it */
    ck_assert_int_eq(sc_train_batch_size(103), 16); /* a quarter */
    ck_assert_int_eq(sc_train_batch_size(40), 8);   /* 10 % */
    ck_assert_int_eq(sc_train_batch_size(20), 8);   /* 5 % */
    ck_assert_int_eq(sc_train_batch_size(5), 5);
}
END_TEST

Suite *suite_train(void)
{
    Suite *s = suite_create("train");
    TCase *grad = tcase_create("train_gradient");
    tcase_add_loop_test(grad, test_chain_gradient_matches_finite_differences, 0, 8);
    tcase_add_test(grad, test_grad_check_samples);
    suite_add_tcase(s, grad);
    TCase *learn = tcase_create("train_synthetic");
    tcase_set_timeout(learn, 60);
    tcase_add_test(learn, test_learns_separable_embeddings);
    tcase_add_test(learn, test_batch_size_rule);
    tcase_add_loop_test(learn, test_resume_equals_uninterrupted, 0, 2);
    tcase_add_test(learn, test_checkpoint_errors);
    tcase_add_loop_test(learn, test_threads_do_not_change_training, 0, 2);
    tcase_add_test(learn, test_train_and_predict_commands);
    tcase_add_test(learn, test_resume_command);
    tcase_add_test(learn, test_grad_check_command);
    suite_add_tcase(s, learn);
    return s;
}
