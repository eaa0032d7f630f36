/* dataset_fixtures.h — small datasets in the exact layouts of the real
 * releases, written into a scratch folder by the tests (check_datasets.c,
 * check_cache.c). Header-only so the Makefile needs no new rule; the
 * including file defines _POSIX_C_SOURCE before its first include.
 *
 *   derm7p_fixture(root)    root/release_v0/: meta/meta.csv, the three index
 *                           files, images/: 12 cases, all 19 columns
 *   padchest_fixture(root)  root/: grounded_reports_20240819.json,
 *                           master_table.csv, Padchest_GR_files/: 8 studies
 *   manifest_fixture(root)  root/manifest.csv and its images: 4 rows
 */
#ifndef DATASET_FIXTURES_H
#define DATASET_FIXTURES_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check_util.h"

/* Create the folders leading to dir/rel. */
static inline void fixture_mkdirs(const char *dir, const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    for (char *p = path + strlen(dir) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0777);
            *p = '/';
        }
}

static inline void put_bytes(const char *dir, const char *rel, const void *data, size_t len)
{
    char path[1024];
    sc_err err;
    fixture_mkdirs(dir, rel);
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    ck_assert_msg(sc_write_file_atomic(path, data, len, &err) == SC_OK, "%s", err.msg);
}

static inline void put_file(const char *dir, const char *rel, const char *text)
{
    put_bytes(dir, rel, text, strlen(text));
}

/* A w×h PNG of `channels` samples at 8 or 16 bits, seeded noise. */
static inline void put_png(const char *dir, const char *rel, int w, int h, int channels, int bits, uint64_t seed)
{
    sc_image img = {0};
    img.width = w, img.height = h, img.channels = channels, img.bits = bits;
    size_t n = (size_t)w * (size_t)h * (size_t)channels;
    sc_rng rng;
    sc_rng_seed(&rng, seed);
    img.pixels = malloc(n);
    img.pixels16 = bits == 16 ? malloc(n * 2) : NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = sc_rng_u32(&rng);
        img.pixels[i] = (uint8_t)(v >> 24);
        if (img.pixels16) img.pixels16[i] = (uint16_t)(1000 + (v >> 20)); /* a 12-bit X-ray's range */
    }
    char path[1024];
    sc_err err;
    fixture_mkdirs(dir, rel);
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    ck_assert_msg(sc_png_write(path, &img, &err) == SC_OK, "%s", err.msg);
    free(img.pixels);
    free(img.pixels16);
}

/* A w×h RGB JPEG (quality 90) of seeded noise, as Derm7p's images are. */
static inline void put_jpeg(const char *dir, const char *rel, int w, int h, uint64_t seed)
{
    sc_image img = {0};
    img.width = w, img.height = h, img.channels = 3, img.bits = 8;
    size_t n = (size_t)w * (size_t)h * 3;
    sc_rng rng;
    sc_rng_seed(&rng, seed);
    img.pixels = malloc(n);
    for (size_t i = 0; i < n; i++) img.pixels[i] = (uint8_t)(sc_rng_u32(&rng) >> 24);
    char path[1024];
    sc_err err;
    fixture_mkdirs(dir, rel);
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    ck_assert_msg(sc_jpeg_write(path, &img, 90, &err) == SC_OK, "%s", err.msg);
    free(img.pixels);
}

/* Replace the first occurrence of old (which must be there) by new_. */
static inline void replace_in_file(const char *path, const char *old, const char *new_)
{
    static uint8_t *data; /* static: see golden_util.h on gcc's dangling-pointer warning */
    size_t len;
    sc_err err;
    ck_assert_msg(sc_read_file(path, 1 << 24, &data, &len, &err) == SC_OK, "%s", err.msg);
    char *at = strstr((char *)data, old);
    ck_assert_msg(at != NULL, "%s: no '%s' to replace", path, old);
    size_t head = (size_t)(at - (char *)data), n_old = strlen(old), n_new = strlen(new_);
    char *out = malloc(len - n_old + n_new + 1);
    memcpy(out, data, head);
    memcpy(out + head, new_, n_new);
    memcpy(out + head + n_new, at + n_old, len - head - n_old);
    ck_assert_msg(sc_write_file_atomic(path, out, len - n_old + n_new, &err) == SC_OK, "%s", err.msg);
    free(out);
    free(data);
    data = NULL;
}

/* ---- Derm7p ---- */

#define DERM_ROWS 12
#define DERM_FLIPPED_ROW 3     /* meta.csv says .jpg, the file is .JPG */
#define DERM_REPLACED_ROW_A 5  /* notes: its clinic image is dermoscopic (a quoted comma) */
#define DERM_REPLACED_ROW_B 7  /* the same, with a quoted line break and quotes */

/* The seven criteria, each value list in the order of data/derm7p.hier. */
static const int derm_task_sizes[7] = {3, 3, 5, 4, 3, 2, 8};
static const char *const derm_values[7][8] = {
    {"absent", "typical", "atypical"},
    {"absent", "regular", "irregular"},
    {"absent", "localized regular", "diffuse regular", "localized irregular", "diffuse irregular"},
    {"absent", "blue areas", "white areas", "combinations"},
    {"absent", "regular", "irregular"},
    {"absent", "present"},
    {"absent", "arborizing", "comma", "hairpin", "within regression", "wreath", "dotted", "linear irregular"},
};

static inline int derm_value_index(int r, int t)
{
    return (r * (t + 1) + t) % derm_task_sizes[t];
}

static inline sc_split derm_split_of(int r)
{
    return r < 6 ? SC_SPLIT_TRAIN : r < 8 ? SC_SPLIT_VALID : SC_SPLIT_TEST;
}

/* The image of row r as meta.csv names it (mixed .jpg/.JPG, as released). */
static inline void derm_image_name(int r, int clinic, char *buf, size_t n)
{
    if (clinic) snprintf(buf, n, "NEL/Nel%03dc.jpg", r);
    else if (r % 2 == 0) snprintf(buf, n, "NEL/NEL%03d.JPG", r);
    else snprintf(buf, n, "Fcl/Fcl%03d.jpg", r);
}

static inline void derm7p_fixture(const char *root)
{
    static const char *const diagnosis[4] = {"clark nevus", "melanoma (less than 0.76 mm)", "seborrheic keratosis",
                                             "reed or spitz nevus"};
    char meta[8192], *p = meta, rel[128];
    p += sprintf(p, "case_num,diagnosis,seven_point_score,pigment_network,streaks,pigmentation,regression_structures,"
                    "dots_and_globules,blue_whitish_veil,vascular_structures,level_of_diagnostic_difficulty,elevation,"
                    "location,sex,management,clinic,derm,case_id,notes\n");
    for (int r = 0; r < DERM_ROWS; r++) {
        char derm[64], clinic[64];
        derm_image_name(r, 0, derm, sizeof derm);
        derm_image_name(r, 1, clinic, sizeof clinic);
        p += sprintf(p, "%d,%s,%d", 100 + r, diagnosis[r % 4], r % 8);
        for (int t = 0; t < 7; t++) p += sprintf(p, ",%s", derm_values[t][derm_value_index(r, t)]);
        p += sprintf(p, ",low,flat,back,female,excision,%s,%s,,", clinic, derm);
        if (r == DERM_REPLACED_ROW_A) p += sprintf(p, "\"Replaced clinic Nel005c.jpg, with derm Fcl005.jpg\"");
        if (r == DERM_REPLACED_ROW_B) p += sprintf(p, "\"Clinical missing and \"\"replaced\"\" with derm\r\nsecond line\"");
        p += sprintf(p, r % 3 ? "\n" : "\r\n"); /* both line ends */
        /* the images: as named, except one whose extension's case differs */
        int flip = r == DERM_FLIPPED_ROW;
        snprintf(rel, sizeof rel, "release_v0/images/%s", derm);
        if (flip) memcpy(rel + strlen(rel) - 3, "JPG", 3);
        put_jpeg(root, rel, 24, 20, 100 + (uint64_t)r);
        snprintf(rel, sizeof rel, "release_v0/images/%s", clinic);
        put_jpeg(root, rel, 20, 24, 200 + (uint64_t)r);
    }
    put_file(root, "release_v0/meta/meta.csv", meta);
    put_file(root, "release_v0/meta/train_indexes.csv", "indexes\n0\n1\n2\n3\n4\n5\n");
    put_file(root, "release_v0/meta/valid_indexes.csv", "indexes\n6\n7\n");
    put_file(root, "release_v0/meta/test_indexes.csv", "indexes\n8\n9\n10\n11\n");
    put_file(root, "release_v0/README.txt", "A fixture in the layout of Derm7pt's release_v0.\n");
}

/* Rewrite meta.csv through the CSV reader and writer with one cell of data
 * row `row` replaced, or (column NULL) its last field removed. */
static inline void derm_edit_meta(const char *meta, int row, const char *column, const char *value)
{
    sc_csv csv;
    sc_err err;
    sc_csv_options opt = {0};
    opt.ragged_ok = 1;
    ck_assert_msg(sc_csv_load(&csv, meta, &opt, &err) == SC_OK, "%s", err.msg);
    int col = column ? sc_csv_column(&csv, column) : -1;
    ck_assert(!column || col >= 0);
    sc_csv_writer w;
    sc_csv_writer_init(&w);
    for (int k = 0; k < csv.header.n_fields; k++) sc_csv_put(&w, csv.header.field[k]);
    sc_csv_end_row(&w);
    for (int64_t r = 0; r < csv.n_rows; r++) {
        int n = csv.rows[r].n_fields - (!column && r == row);
        for (int k = 0; k < n; k++) sc_csv_put(&w, column && r == row && k == col ? value : csv.rows[r].field[k]);
        sc_csv_end_row(&w);
    }
    ck_assert_msg(sc_csv_writer_save(&w, meta, &err) == SC_OK, "%s", err.msg);
    sc_csv_writer_free(&w);
    sc_csv_free(&csv);
}

static inline void derm_set_cell(const char *meta, int row, const char *column, const char *value)
{
    derm_edit_meta(meta, row, column, value);
}

static inline void derm_drop_last_field(const char *meta, int row)
{
    derm_edit_meta(meta, row, NULL, NULL);
}

/* ---- PadChest-GR ---- */

static inline void padchest_fixture(const char *root)
{
    static const char json[] =
        "[\n"
        " {\"StudyID\": \"S0\", \"ImageID\": \"img00.png\", \"findings\": [\n"
        "  {\"abnormal\": true, \"labels\": [\"pleural effusion\"], \"locations\": [\"loc costophrenic angle\", \"loc left\"], "
        "\"sentence_en\": \"Left costophrenic angle blunting due to effusion.\", "
        "\"sentence_es\": \"Pinzamiento del seno costofr\\u00e9nico izquierdo por derrame.\", "
        "\"boxes\": [[0.1, 0.5, 0.4, 0.9]], \"extra_boxes\": [], \"progression\": null}]},\n"
        " {\"StudyID\": \"S1\", \"ImageID\": \"img01.png\", \"findings\": [\n"
        "  {\"abnormal\": true, \"labels\": [\"cardiomegaly\"], \"locations\": [\"loc cardiac\"], "
        "\"sentence_en\": \"The heart is enlarged.\", \"sentence_es\": \"Cardiomegalia.\"},\n"
        "  {\"abnormal\": false, \"sentence_en\": \"No pleural effusion.\", \"sentence_es\": \"Sin derrame pleural.\"}]},\n"
        " {\"StudyID\": \"S2\", \"ImageID\": \"img02.png\", \"findings\": [\n"
        "  {\"abnormal\": true, \"labels\": [\"atelectasis\"], \"locations\": [\"lower lobe\", \"left\"], "
        "\"sentence_en\": \"Left basal atelectasis.\", \"sentence_es\": \"Atelectasia basal izquierda.\"},\n"
        "  {\"abnormal\": true, \"labels\": [\"pleural effusion\"], \"locations\": [\"loc pleural\", \"loc right\"], "
        "\"sentence_en\": \"Right pleural effusion.\", \"sentence_es\": \"Derrame pleural derecho.\"}]},\n"
        " {\"StudyID\": \"S3\", \"ImageID\": \"img03.png\", \"findings\": [\n"
        "  {\"abnormal\": false, \"sentence_en\": \"No findings.\", \"sentence_es\": \"Sin hallazgos.\"}]},\n"
        " {\"StudyID\": \"S4\", \"ImageID\": \"img04.png\", \"findings\": [\n"
        "  {\"abnormal\": true, \"labels\": [\"nodule\"], \"locations\": [\"loc left upper lobe\"], "
        "\"sentence_en\": \"Left upper lobe nodule.\", \"sentence_es\": \"N\\u00f3dulo en l\\u00f3bulo superior izquierdo.\"}]},\n"
        " {\"StudyID\": \"S5\", \"ImageID\": \"img05.png\", \"findings\": [\n"
        "  {\"abnormal\": true, \"labels\": [\"cardiomegaly\"], \"locations\": [], "
        "\"sentence_en\": \"Cardiomegaly.\", \"sentence_es\": \"Cardiomegalia.\"}]},\n"
        " {\"StudyID\": \"S6\", \"ImageID\": \"img06.png\", \"findings\": [\n"
        "  {\"abnormal\": true, \"labels\": [\"pleural effusion\", \"atelectasis\"], "
        "\"locations\": [\"loc costophrenic angle\", \"loc bilateral\"], "
        "\"sentence_en\": \"Bilateral costophrenic angle blunting.\", \"sentence_es\": \"Pinzamiento bilateral.\"}]},\n"
        " {\"StudyID\": \"S7\", \"ImageID\": \"img07.png\", \"findings\": [\n"
        "  {\"abnormal\": true, \"labels\": [\"pleural effusion\"], "
        "\"locations\": [\"loc pleural\", \"loc left\", \"loc costophrenic angle\"], "
        "\"sentence_en\": \"Left pleural effusion reaching the costophrenic angle.\", \"sentence_es\": \"Derrame izquierdo.\"},\n"
        "  {\"abnormal\": true, \"labels\": [\"consolidation\"], \"locations\": [\"loc lower lung field\", \"loc right\"], "
        "\"sentence_en\": \"Right basal consolidation.\", \"sentence_es\": \"Consolidaci\\u00f3n basal derecha.\"}]}\n"
        "]\n";
    put_file(root, "grounded_reports_20240819.json", json);
    put_file(root, "master_table.csv",
             "StudyID,ImageID,PatientID,split,label\n"
             "S0,img00.png,P0,train,pleural effusion\n"
             "S1,img01.png,P1,train,cardiomegaly\n"
             "S2,img02.png,P1,test,atelectasis\n"
             "S2,img02.png,P1,test,pleural effusion\n"
             "S3,img03.png,P2,validation,normal\n"
             "S4,img04.png,P3,train,nodule\n"
             "S5,img05.png,P4,train,cardiomegaly\n"
             "S6,img06.png,P5,test,pleural effusion\n"
             "S7,img07.png,P6,validation,pleural effusion\n"
             "S7,img07.png,P6,validation,consolidation\n"
             "S9,img99.png,P9,train,normal\n");
    for (int k = 0; k < 8; k++) {
        char rel[64];
        snprintf(rel, sizeof rel, "Padchest_GR_files/img%02d.png", k);
        put_png(root, rel, 40 + 4 * k, 48, 1, k % 2 ? 8 : 16, 300 + (uint64_t)k); /* 16-bit and 8-bit grey */
    }
}

/* ---- manifest ---- */

static inline void manifest_fixture(const char *root)
{
    put_file(root, "manifest.csv",
             "image,labels,text,split,group\n"
             "a/x0.png,lesion:benign:flat;color:light:brown,A flat light brown lesion.,train,p1\n"
             "a/x1.png,lesion:malignant:raised;color:dark:brown,\"A raised, dark brown lesion.\",train,p1\n"
             "b/x2.png,lesion:benign:raised;color:dark:black;color:light:brown,,valid,p2\n"
             "x3.png,lesion:benign:flat,A flat lesion.,,\n");
    put_png(root, "a/x0.png", 16, 16, 3, 8, 1);
    put_png(root, "a/x1.png", 16, 16, 3, 8, 2);
    put_png(root, "b/x2.png", 16, 16, 1, 8, 3);
    put_png(root, "x3.png", 16, 16, 4, 8, 4);
}

#endif
