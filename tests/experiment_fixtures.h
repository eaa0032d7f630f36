/* experiment_fixtures.h — synthetic embedding caches in memory, for the
 * experiment tests (check_experiment.c) and the benchmark
 * (bench_experiment.c). Header-only; the including file defines
 * _POSIX_C_SOURCE before its first include.
 *
 * synthetic_cache(c, hier, n_train, n_test, E, signal, seed) fills an
 * sc_cache as sc_cache_load would, for the hierarchy file `hier`:
 *  - every combination k has a random unit direction u_k;
 *  - image i carries, per task, one combination drawn with weights
 *    1, 1/2, 1/3, ... (class imbalance, as in the real data), or for a
 *    multi-label task each combination with probability 1/4; its
 *    embedding is signal · Σ u_k over its combinations plus N(0, 1/E)
 *    noise per coordinate;
 *  - the texts are, per task, the canonical prompts (u_k plus a little
 *    noise), one ensemble variant each, the class prompts (the mean of the
 *    class's directions), the names, then "No finding." and the reference
 *    prompts (random directions);
 *  - name rows are token ids for clip-tiny (start 510, one word, end 511),
 *    so CoOp runs with the golden model when E = 32;
 *  - the first n_train images are the train split, the rest the test split.
 * Everything is malloc'ed as sc_cache_free expects. */
#ifndef EXPERIMENT_FIXTURES_H
#define EXPERIMENT_FIXTURES_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scale.h"

#define SYNTH_T 16 /* token columns of the name rows */

static inline char *synth_strdup(sc_cache *c, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = sc_arena_alloc(&c->arena, n);
    return d ? memcpy(d, s, n) : NULL;
}

/* Append a text row; emb (E) is copied, labels set by the caller. */
static inline int64_t synth_add_text(sc_cache *c, sc_text_kind kind, int task, int index, int variant, const char *text,
                                     const float *emb)
{
    int64_t j = c->M++, E = c->E, K = c->n_labels;
    c->text_kind[j] = (uint8_t)kind;
    c->text_task[j] = task;
    c->text_index[j] = index;
    c->text_variant[j] = variant;
    c->text_image[j] = -1;
    c->text_tokens[j] = 3;
    c->text[j] = synth_strdup(c, text);
    memcpy(c->text_emb + j * E, emb, sizeof(float) * (size_t)E);
    memset(c->text_labels + j * K, 0, (size_t)K);
    for (int64_t t = 0; t < SYNTH_T; t++) c->text_ids[j * SYNTH_T + t] = c->text_mask[j * SYNTH_T + t] = 0;
    int64_t *ids = c->text_ids + j * SYNTH_T;
    ids[0] = 510, ids[1] = 100 + (j * 7) % 400, ids[2] = 511;
    for (int t = 0; t < 3; t++) c->text_mask[j * SYNTH_T + t] = 1;
    return j;
}

static inline void synth_unit(float *x, int64_t E, sc_rng *rng)
{
    for (int64_t e = 0; e < E; e++) x[e] = sc_rng_normal(rng);
    sc_normalize_rows(x, x, 1, E);
}

static inline sc_status synthetic_cache(sc_cache *c, const char *hier, int64_t n_train, int64_t n_test, int64_t E,
                                        float signal, uint64_t seed, sc_err *err)
{
    memset(c, 0, sizeof *c);
    sc_arena_init(&c->arena, "synthetic cache", (size_t)1 << 20, 0);
    snprintf(c->dir, sizeof c->dir, "(synthetic)");
    snprintf(c->model_kind, sizeof c->model_kind, "clip");
    snprintf(c->dataset_kind, sizeof c->dataset_kind, "synthetic");
    c->logit_scale = 100;
    sc_status st = sc_hier_load(&c->hier, hier, err);
    if (st) return st;
    const sc_hier *h = &c->hier;
    c->label_offset = malloc(sizeof(int) * (size_t)(h->n_tasks + 1));
    c->label_offset[0] = 0;
    int n_texts = 2 + h->n_references;
    for (int t = 0; t < h->n_tasks; t++) {
        const sc_hier_task *task = &h->tasks[t];
        c->label_offset[t + 1] = c->label_offset[t] + task->n_combos;
        n_texts += task->n_combos * (2 + task->n_ensemble) + task->n_classes * (1 + task->n_class_templates);
    }
    int64_t N = n_train + n_test, K = c->n_labels = c->label_offset[h->n_tasks];
    c->N = N, c->E = E, c->T = SYNTH_T;
    c->image_emb = malloc(sizeof(float) * (size_t)(N * E));
    c->image_labels = calloc((size_t)(N * K), 1);
    c->split = malloc((size_t)N);
    c->group = malloc(sizeof(int64_t) * (size_t)N);
    c->image_id = malloc(sizeof(char *) * (size_t)N);
    c->image_path = malloc(sizeof(char *) * (size_t)N);
    c->text_emb = malloc(sizeof(float) * (size_t)(n_texts * E));
    c->text_ids = malloc(sizeof(int64_t) * (size_t)(n_texts * SYNTH_T));
    c->text_mask = malloc(sizeof(int64_t) * (size_t)(n_texts * SYNTH_T));
    c->text_labels = malloc((size_t)(n_texts * K));
    c->text_kind = malloc((size_t)n_texts);
    c->text_task = malloc(sizeof(int) * (size_t)n_texts);
    c->text_index = malloc(sizeof(int) * (size_t)n_texts);
    c->text_variant = malloc(sizeof(int) * (size_t)n_texts);
    c->text_image = malloc(sizeof(int64_t) * (size_t)n_texts);
    c->text_tokens = malloc(sizeof(int) * (size_t)n_texts);
    c->text = malloc(sizeof(char *) * (size_t)n_texts);
    float *dir = malloc(sizeof(float) * (size_t)(K * E)), *v = malloc(sizeof(float) * (size_t)E);
    if (!c->image_emb || !c->image_labels || !c->text_emb || !c->text || !dir || !v) {
        free(dir), free(v);
        sc_cache_free(c);
        return sc_fail(err, SC_ENOMEM, "synthetic cache: out of memory");
    }
    sc_rng rng;
    sc_rng_seed(&rng, seed);
    for (int64_t k = 0; k < K; k++) synth_unit(dir + k * E, E, &rng);
    /* images */
    for (int64_t i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof name, "img%05lld", (long long)i);
        c->image_id[i] = c->image_path[i] = synth_strdup(c, name);
        c->split[i] = i < n_train ? SC_SPLIT_TRAIN : SC_SPLIT_TEST;
        c->group[i] = i;
        float *x = c->image_emb + i * E;
        for (int64_t e = 0; e < E; e++) x[e] = sc_rng_normal(&rng) / sqrtf((float)E);
        for (int t = 0; t < h->n_tasks; t++) {
            const sc_hier_task *task = &h->tasks[t];
            int H = task->n_combos, off = c->label_offset[t];
            double total = 0;
            for (int q = 0; q < H; q++) total += 1.0 / (q + 1);
            double u = sc_rng_uniform(&rng) * total;
            for (int q = 0; q < H; q++) {
                int on = task->multilabel ? sc_rng_uniform(&rng) < 0.25f : (u -= 1.0 / (q + 1)) < 0 && u + 1.0 / (q + 1) >= 0;
                if (!on) continue;
                c->image_labels[i * K + off + q] = 1;
                for (int64_t e = 0; e < E; e++) x[e] += signal * dir[(off + q) * E + e];
            }
        }
    }
    /* texts, in the cache's order */
    for (int t = 0; t < h->n_tasks; t++) {
        const sc_hier_task *task = &h->tasks[t];
        int H = task->n_combos, C = task->n_classes, off = c->label_offset[t];
        for (int variant = -1; variant < task->n_ensemble; variant++)
            for (int q = 0; q < H; q++) {
                for (int64_t e = 0; e < E; e++) v[e] = dir[(off + q) * E + e] + 0.2f * sc_rng_normal(&rng) / sqrtf((float)E);
                int64_t j = synth_add_text(c, variant < 0 ? SC_TEXT_PROMPT : SC_TEXT_ENSEMBLE, t, q, variant < 0 ? 0 : variant,
                                           variant < 0 ? task->combo_prompt[q] : task->ensemble_prompt[variant * H + q], v);
                c->text_labels[j * K + off + q] = 1;
            }
        for (int variant = 0; variant < task->n_class_templates; variant++)
            for (int cl = 0; cl < C; cl++) {
                memset(v, 0, sizeof(float) * (size_t)E);
                for (int q = 0; q < H; q++)
                    if (task->combo_class[q] == cl)
                        for (int64_t e = 0; e < E; e++) v[e] += dir[(off + q) * E + e];
                int64_t j = synth_add_text(c, SC_TEXT_CLASS, t, cl, variant, task->class_prompt[variant * C + cl], v);
                for (int q = 0; q < H; q++) c->text_labels[j * K + off + q] = task->combo_class[q] == cl;
            }
        for (int q = 0; q < H; q++) {
            char name[SC_HIER_MAX_LINE];
            int64_t j = synth_add_text(c, SC_TEXT_NAME, t, q, 0, sc_hier_explain(task, q, name, sizeof name),
                                       dir + (off + q) * E);
            c->text_labels[j * K + off + q] = 1;
        }
        for (int cl = 0; cl < C; cl++) {
            synth_unit(v, E, &rng);
            int64_t j = synth_add_text(c, SC_TEXT_CLASS_NAME, t, cl, 0, task->classes[cl].phrase, v);
            for (int q = 0; q < H; q++) c->text_labels[j * K + off + q] = task->combo_class[q] == cl;
        }
    }
    synth_unit(v, E, &rng);
    synth_add_text(c, SC_TEXT_NONE, -1, -1, 0, h->none_prompt, v);
    for (int r = 0; r < h->n_references; r++) {
        synth_unit(v, E, &rng);
        synth_add_text(c, SC_TEXT_REFERENCE, -1, r, 0, h->reference_prompts[r], v);
    }
    free(dir), free(v);
    return SC_OK;
}

#endif
