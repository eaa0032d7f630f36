/* check_synth.c — tests for scale.c section 5, the synthetic datasets.
 *
 * Every reference below is written out by hand from the real releases'
 * facts (shared/reference/facts.md §6 and §7, the paper's tree in Sec.
 * 2.3.1), not captured from the generator: the 19 column names, the value
 * sets, the 7-point rule, the marginal counts of the 1011 real cases, the
 * combinations and their counts. Layout checks read the files back with the
 * project's own CSV, JSON, image and hierarchy readers, as a dataset reader
 * would. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "check_util.h"

/* ---- helpers ------------------------------------------------------------ */

static int file_exists(const char *path)
{
    struct stat s;
    return stat(path, &s) == 0 && S_ISREG(s.st_mode);
}

static int files_equal(const char *a, const char *b)
{
    uint8_t *x, *y;
    size_t nx, ny;
    sc_err err;
    ck_assert_msg(sc_read_file(a, 1u << 30, &x, &nx, &err) == SC_OK, "%s", err.msg);
    ck_assert_msg(sc_read_file(b, 1u << 30, &y, &ny, &err) == SC_OK, "%s", err.msg);
    int same = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return same;
}

static int index_of(const char *s, const char *const *list, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, list[i])) return i;
    return -1;
}

/* Three fresh output directories a, b, c under this test's tmpdir. */
static void three_dirs(char *a, char *b, char *c, size_t size)
{
    const char *tmp = sc_test_tmpdir();
    snprintf(a, size, "%s/a", tmp);
    snprintf(b, size, "%s/b", tmp);
    snprintf(c, size, "%s/c", tmp);
}

static void load_csv(sc_csv *csv, const char *dir, const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    sc_err err;
    ck_assert_msg(sc_csv_load(csv, path, NULL, &err) == SC_OK, "%s", err.msg);
}

/* ---- Derm7p: the facts --------------------------------------------------- */

static const char *const DERM_HEADER[19] = {
    "case_num", "diagnosis", "seven_point_score", "pigment_network", "streaks", "pigmentation",
    "regression_structures", "dots_and_globules", "blue_whitish_veil", "vascular_structures",
    "level_of_diagnostic_difficulty", "elevation", "location", "sex", "management", "clinic", "derm", "case_id",
    "notes"};

static const char *const DIAGNOSES[20] = {
    "basal cell carcinoma", "blue nevus", "clark nevus", "combined nevus", "congenital nevus", "dermal nevus",
    "dermatofibroma", "lentigo", "melanoma (in situ)", "melanoma (less than 0.76 mm)",
    "melanoma (0.76 to 1.5 mm)", "melanoma (more than 1.5 mm)", "melanoma metastasis", "melanoma", "melanosis",
    "miscellaneous", "recurrent nevus", "reed or spitz nevus", "seborrheic keratosis", "vascular lesion"};
static const int DIAGNOSIS_COUNTS[20] = {42, 28, 399, 13, 17, 33, 20, 24, 64, 102, 53, 28, 4, 1, 16, 8, 6, 79, 45, 29};

/* The non-criterion categorical columns and their value sets. */
typedef struct {
    const char *column;
    int n;
    const char *values[9];
} value_set;

static const value_set OTHER_COLUMNS[5] = {
    {"level_of_diagnostic_difficulty", 3, {"low", "medium", "high"}},
    {"elevation", 3, {"flat", "palpable", "nodular"}},
    {"location", 9, {"abdomen", "head neck", "lower limbs", "upper limbs", "back", "chest", "acral", "buttocks",
                     "genital areas"}},
    {"sex", 2, {"female", "male"}},
    {"management", 3, {"excision", "clinical follow up", "no further examination"}},
};

/* The real marginal counts of the seven criteria (all 1011 cases). */
typedef struct {
    const char *column;
    int n;
    const char *values[8];
    int counts[8];
} marginal;

static const marginal CRITERIA[7] = {
    {"pigment_network", 3, {"absent", "typical", "atypical"}, {400, 381, 230}},
    {"streaks", 3, {"absent", "regular", "irregular"}, {653, 107, 251}},
    {"pigmentation", 5, {"absent", "diffuse regular", "localized regular", "diffuse irregular", "localized irregular"},
     {588, 115, 3, 265, 40}},
    {"regression_structures", 4, {"absent", "blue areas", "white areas", "combinations"}, {758, 116, 38, 99}},
    {"dots_and_globules", 3, {"absent", "regular", "irregular"}, {229, 334, 448}},
    {"blue_whitish_veil", 2, {"absent", "present"}, {816, 195}},
    {"vascular_structures", 8,
     {"absent", "arborizing", "comma", "hairpin", "within regression", "wreath", "dotted", "linear irregular"},
     {823, 31, 23, 15, 46, 2, 53, 18}},
};

/* The 7-point rule as derm7pt/dataset.py scores it (facts §6). */
static int seven_point_points(const char *column, const char *v)
{
    if (!strcmp(column, "pigment_network")) return !strcmp(v, "atypical") ? 2 : 0;
    if (!strcmp(column, "blue_whitish_veil")) return !strcmp(v, "present") ? 2 : 0;
    if (!strcmp(column, "vascular_structures")) return !strcmp(v, "dotted") || !strcmp(v, "linear irregular") ? 2 : 0;
    if (!strcmp(column, "pigmentation")) return strstr(v, "irregular") ? 1 : 0;
    if (!strcmp(column, "streaks") || !strcmp(column, "dots_and_globules")) return !strcmp(v, "irregular");
    if (!strcmp(column, "regression_structures")) return strcmp(v, "absent") != 0;
    return 0;
}

static void synth_derm(const char *dir, int n, uint64_t seed, int size, int png, int images)
{
    sc_synth_derm7p_options opt;
    sc_synth_derm7p_defaults(&opt);
    opt.n = n;
    opt.seed = seed;
    opt.size = size;
    opt.png = png;
    opt.images = images;
    sc_err err;
    ck_assert_msg(sc_synth_derm7p(dir, &opt, &err) == SC_OK, "%s", err.msg);
}

/* ---- Derm7p: layout --------------------------------------------------------- */

/* The three index files partition 0..n-1; returns each row's split. */
static void check_indexes(const char *release, int n, const int *want_sizes, int *split_of)
{
    static const char *const names[3] = {"train", "valid", "test"};
    for (int i = 0; i < n; i++) split_of[i] = -1;
    for (int s = 0; s < 3; s++) {
        char rel[64];
        snprintf(rel, sizeof rel, "meta/%s_indexes.csv", names[s]);
        sc_csv idx;
        load_csv(&idx, release, rel);
        ck_assert_int_eq(idx.n_cols, 1);
        ck_assert_str_eq(idx.header.field[0], "indexes");
        ck_assert_msg(idx.n_rows == want_sizes[s], "%s: %lld rows, expected %d", rel, (long long)idx.n_rows,
                      want_sizes[s]);
        for (int64_t r = 0; r < idx.n_rows; r++) {
            int64_t i;
            sc_err err;
            ck_assert_msg(sc_csv_get_int(&idx, r, 0, &i, &err) == SC_OK, "%s", err.msg);
            ck_assert_msg(i >= 0 && i < n, "%s: index %lld out of 0..%d", rel, (long long)i, n - 1);
            ck_assert_msg(split_of[i] < 0, "row %lld is in two splits", (long long)i);
            split_of[i] = s;
        }
        sc_csv_free(&idx);
    }
    for (int i = 0; i < n; i++) ck_assert_msg(split_of[i] >= 0, "row %d is in no split", i);
}

/* Every image named by meta.csv exists, decodes at size x size RGB, and
 * its bytes are the format its extension says. */
static void check_image(const char *release, const char *name, int size, int png)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/images/%s", release, name);
    size_t len = strlen(name);
    ck_assert_msg(len > 4 && name[len - 4] == '.', "image name '%s'", name);
    const char *ext = name + len - 3;
    ck_assert_msg(png ? (!strcmp(ext, "png") || !strcmp(ext, "PNG")) : (!strcmp(ext, "jpg") || !strcmp(ext, "JPG")),
                  "image name '%s' has the wrong extension", name);
    ck_assert_msg(strchr(name, '/') != NULL, "image '%s' is not inside a folder", name);
    sc_image img;
    sc_err err;
    ck_assert_msg(sc_image_load(path, &img, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(img.width, size);
    ck_assert_int_eq(img.height, size);
    ck_assert_int_eq(img.channels, 3);
    uint8_t *bytes;
    size_t n;
    ck_assert_int_eq(sc_read_file(path, 1 << 24, &bytes, &n, &err), SC_OK);
    ck_assert_msg(png ? bytes[0] == 0x89 && bytes[1] == 'P' : bytes[0] == 0xFF && bytes[1] == 0xD8,
                  "%s: contents do not match the extension", name);
    free(bytes);
    sc_image_free(&img);
}

static void check_derm_layout(const char *dir, int n, int size, int png)
{
    char release[1024];
    snprintf(release, sizeof release, "%s/release_v0", dir);
    sc_csv meta;
    load_csv(&meta, release, "meta/meta.csv");
    ck_assert_int_eq(meta.n_cols, 19);
    for (int k = 0; k < 19; k++) ck_assert_str_eq(meta.header.field[k], DERM_HEADER[k]);
    ck_assert_int_eq((int)meta.n_rows, n);

    sc_hier h;
    sc_err err;
    ck_assert_msg(sc_hier_load(&h, sc_test_path("data/derm7p.hier"), &err) == SC_OK, "%s", err.msg);
    for (int64_t r = 0; r < meta.n_rows; r++) {
        int64_t num, score;
        ck_assert_int_eq(sc_csv_get_int(&meta, r, 0, &num, &err), SC_OK);
        ck_assert_int_eq(num, r + 1);
        ck_assert_msg(index_of(sc_csv_get(&meta, r, 1), DIAGNOSES, 20) >= 0, "diagnosis '%s'", sc_csv_get(&meta, r, 1));
        int points = 0;
        for (int col = 3; col <= 9; col++) { /* the criteria: values of their hierarchy task */
            const sc_hier_task *t = NULL;
            for (int k = 0; k < h.n_tasks; k++)
                if (h.tasks[k].column && !strcmp(h.tasks[k].column, DERM_HEADER[col])) t = &h.tasks[k];
            ck_assert_msg(t != NULL, "no hierarchy task reads column %s", DERM_HEADER[col]);
            const char *v = sc_csv_get(&meta, r, col);
            ck_assert_msg(sc_hier_combo_find(t, NULL, v) >= 0, "row %lld: %s = '%s' is not in data/derm7p.hier",
                          (long long)r, DERM_HEADER[col], v);
            points += seven_point_points(DERM_HEADER[col], v);
        }
        ck_assert_int_eq(sc_csv_get_int(&meta, r, 2, &score, &err), SC_OK);
        ck_assert_msg(score == points, "row %lld: seven_point_score %lld, the rule gives %d", (long long)r,
                      (long long)score, points);
        for (int k = 0; k < 5; k++) {
            const char *v = sc_csv_get(&meta, r, 10 + k);
            ck_assert_str_eq(meta.header.field[10 + k], OTHER_COLUMNS[k].column);
            ck_assert_msg(index_of(v, OTHER_COLUMNS[k].values, OTHER_COLUMNS[k].n) >= 0, "%s = '%s'",
                          OTHER_COLUMNS[k].column, v);
        }
        const char *clinic = sc_csv_get(&meta, r, 15), *derm = sc_csv_get(&meta, r, 16), *notes = sc_csv_get(&meta, r, 18);
        if (notes[0]) ck_assert_str_eq(clinic, derm); /* both kinds of notes mean: clinic replaced by derm */
        check_image(release, derm, size, png);
        if (strcmp(clinic, derm)) check_image(release, clinic, size, png);
    }
    sc_hier_free(&h);
    sc_csv_free(&meta);
}

/* n = 30: train 413·30/1011 = 12.26, valid 6.02, test 11.72; floors 12, 6,
 * 11 leave one case for the largest remainder (test): 12 / 6 / 12. */
START_TEST(test_synth_derm7p_layout_jpeg)
{
    const char *dir = sc_test_tmpdir();
    synth_derm(dir, 30, 3, 64, 0, 1);
    check_derm_layout(dir, 30, 64, 0);
    int split[30];
    char release[1024];
    snprintf(release, sizeof release, "%s/release_v0", dir);
    check_indexes(release, 30, (const int[3]){12, 6, 12}, split);
}
END_TEST

START_TEST(test_synth_derm7p_layout_png)
{
    const char *dir = sc_test_tmpdir();
    synth_derm(dir, 20, 4, 48, 1, 1);
    check_derm_layout(dir, 20, 48, 1);
}
END_TEST

/* At the real size every marginal is the real one, exactly (the
 * generator apportions per diagnosis group), and the index files have the
 * real sizes. */
START_TEST(test_synth_derm7p_real_counts)
{
    const char *dir = sc_test_tmpdir();
    synth_derm(dir, 1011, 11, 64, 0, 0);
    char release[1024];
    snprintf(release, sizeof release, "%s/release_v0", dir);
    sc_csv meta;
    load_csv(&meta, release, "meta/meta.csv");
    int dcount[20] = {0};
    for (int64_t r = 0; r < meta.n_rows; r++) dcount[index_of(sc_csv_get(&meta, r, 1), DIAGNOSES, 20)]++;
    for (int d = 0; d < 20; d++)
        ck_assert_msg(dcount[d] == DIAGNOSIS_COUNTS[d], "%s: %d, real %d", DIAGNOSES[d], dcount[d], DIAGNOSIS_COUNTS[d]);
    for (int c = 0; c < 7; c++) {
        int col = sc_csv_column(&meta, CRITERIA[c].column), count[8] = {0};
        for (int64_t r = 0; r < meta.n_rows; r++) count[index_of(sc_csv_get(&meta, r, col), CRITERIA[c].values, CRITERIA[c].n)]++;
        for (int v = 0; v < CRITERIA[c].n; v++)
            ck_assert_msg(count[v] == CRITERIA[c].counts[v], "%s = %s: %d, real %d", CRITERIA[c].column,
                          CRITERIA[c].values[v], count[v], CRITERIA[c].counts[v]);
    }
    int case_ids = 0, notes = 0, upper = 0;
    for (int64_t r = 0; r < meta.n_rows; r++) {
        case_ids += sc_csv_get(&meta, r, 17)[0] != '\0';
        notes += sc_csv_get(&meta, r, 18)[0] != '\0';
        upper += strstr(sc_csv_get(&meta, r, 16), ".JPG") != NULL;
    }
    ck_assert_int_eq(case_ids, 27);
    ck_assert_int_eq(notes, 9);
    ck_assert_int_eq(upper, 52);
    int split[1011];
    check_indexes(release, 1011, (const int[3]){413, 203, 395}, split);
    sc_csv_free(&meta);
}
END_TEST

/* At another size the marginals stay within a few cases of the real
 * shares (per value at most one case of rounding in each of the five
 * diagnosis groups, and a few more from the groups' own rounding), and
 * melanomas score far higher than the rest, as in the real data (mean 4.89
 * against 1.34). */
START_TEST(test_synth_derm7p_marginals_other_n)
{
    const int n = 500;
    const char *dir = sc_test_tmpdir();
    synth_derm(dir, n, 12, 64, 0, 0);
    char release[1024];
    snprintf(release, sizeof release, "%s/release_v0", dir);
    sc_csv meta;
    load_csv(&meta, release, "meta/meta.csv");
    ck_assert_int_eq((int)meta.n_rows, n);
    for (int c = 0; c < 7; c++) {
        int col = sc_csv_column(&meta, CRITERIA[c].column), count[8] = {0};
        for (int64_t r = 0; r < meta.n_rows; r++) count[index_of(sc_csv_get(&meta, r, col), CRITERIA[c].values, CRITERIA[c].n)]++;
        for (int v = 0; v < CRITERIA[c].n; v++) {
            double want = (double)n * CRITERIA[c].counts[v] / 1011.0;
            ck_assert_msg(fabs(count[v] - want) <= 8.0, "%s = %s: %d cases, %.1f expected", CRITERIA[c].column,
                          CRITERIA[c].values[v], count[v], want);
        }
    }
    double mel = 0, other = 0;
    int n_mel = 0;
    for (int64_t r = 0; r < meta.n_rows; r++) {
        int64_t score;
        sc_err err;
        ck_assert_int_eq(sc_csv_get_int(&meta, r, 2, &score, &err), SC_OK);
        if (!strncmp(sc_csv_get(&meta, r, 1), "melanoma", 8)) mel += (double)score, n_mel++;
        else other += (double)score;
    }
    mel /= n_mel;
    other /= (double)(n - n_mel);
    /* each of the six melanoma diagnoses is within one case of its quota */
    ck_assert_msg(fabs(n_mel - n * 252.0 / 1011.0) <= 3.0, "%d melanomas", n_mel);
    ck_assert_msg(mel > 4.5 && other < 1.7, "mean 7-point score: melanoma %.2f, others %.2f", mel, other);
    sc_csv_free(&meta);
}
END_TEST

START_TEST(test_synth_derm7p_deterministic)
{
    char a[1024], b[1024], c[1024], pa[1100], pb[1100];
    three_dirs(a, b, c, sizeof a);
    synth_derm(a, 12, 5, 48, 0, 1);
    synth_derm(b, 12, 5, 48, 0, 1);
    synth_derm(c, 12, 6, 48, 0, 0);
    snprintf(pa, sizeof pa, "%s/release_v0/meta/meta.csv", a);
    snprintf(pb, sizeof pb, "%s/release_v0/meta/meta.csv", b);
    ck_assert_msg(files_equal(pa, pb), "same seed, different meta.csv");
    sc_csv meta;
    load_csv(&meta, a, "release_v0/meta/meta.csv");
    for (int64_t r = 0; r < meta.n_rows; r++) {
        snprintf(pa, sizeof pa, "%s/release_v0/images/%s", a, sc_csv_get(&meta, r, 16));
        snprintf(pb, sizeof pb, "%s/release_v0/images/%s", b, sc_csv_get(&meta, r, 16));
        ck_assert_msg(files_equal(pa, pb), "same seed, different %s", pa);
    }
    sc_csv_free(&meta);
    snprintf(pb, sizeof pb, "%s/release_v0/meta/meta.csv", c);
    snprintf(pa, sizeof pa, "%s/release_v0/meta/meta.csv", a);
    ck_assert_msg(!files_equal(pa, pb), "another seed, the same meta.csv");
    snprintf(pb, sizeof pb, "%s/release_v0/images", c);
    ck_assert_msg(!file_exists(pb), "--no-images wrote images");
}
END_TEST

/* The labels are visible: blue-white pixels (blue well above red) are
 * common with a blue-whitish veil and rare without one (only regression
 * areas and blue nevi have some), and saturated red pixels come with
 * vascular structures. Means over a few hundred small images. */
START_TEST(test_synth_derm7p_criteria_visible)
{
    const char *dir = sc_test_tmpdir();
    synth_derm(dir, 200, 13, 48, 1, 1);
    sc_csv meta;
    load_csv(&meta, dir, "release_v0/meta/meta.csv");
    double blue[2] = {0, 0}, red[2] = {0, 0};
    int n_veil[2] = {0, 0}, n_vessels[2] = {0, 0};
    for (int64_t r = 0; r < meta.n_rows; r++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/release_v0/images/%s", dir, sc_csv_get(&meta, r, 16));
        sc_image img;
        sc_err err;
        ck_assert_int_eq(sc_image_load(path, &img, &err), SC_OK);
        int n_blue = 0, n_red = 0, npx = img.width * img.height;
        for (int k = 0; k < npx; k++) {
            const uint8_t *p = img.pixels + 3 * k;
            n_blue += p[2] > p[0] + 40 && p[2] > 150;
            n_red += p[0] > 150 && p[1] < 90 && p[2] < 100;
        }
        int veil = !strcmp(sc_csv_get(&meta, r, 8), "present"), vessels = strcmp(sc_csv_get(&meta, r, 9), "absent") != 0;
        blue[veil] += (double)n_blue / npx;
        n_veil[veil]++;
        red[vessels] += (double)n_red / npx;
        n_vessels[vessels]++;
        sc_image_free(&img);
    }
    ck_assert_msg(n_veil[1] >= 10 && n_vessels[1] >= 10, "too few positives in the sample");
    for (int k = 0; k < 2; k++) {
        blue[k] /= n_veil[k];
        red[k] /= n_vessels[k];
    }
    ck_assert_msg(blue[1] > 5 * blue[0] && blue[1] > 0.01, "blue-white pixels: %.4f with a veil, %.4f without",
                  blue[1], blue[0]);
    ck_assert_msg(red[1] > 5 * red[0] && red[1] > 0.005, "red pixels: %.4f with vessels, %.4f without", red[1],
                  red[0]);
    sc_csv_free(&meta);
}
END_TEST

/* ---- PadChest-GR --------------------------------------------------------- */

/* The paper's twelve class-location combinations and their counts. */
typedef struct {
    const char *label, *concept;
    int count;
} combo_fact;

static const combo_fact COMBOS[12] = {
    {"atelectasis", "left lower lobe", 25},       {"atelectasis", "retrocardiac", 17},
    {"atelectasis", "right lower lobe", 17},      {"cardiomegaly", "cardiac", 437},
    {"consolidation", "left lower lobe", 13},     {"consolidation", "right lower lobe", 13},
    {"pleural effusion", "bilateral costophrenic angle", 53}, {"pleural effusion", "bilateral pleural", 40},
    {"pleural effusion", "left costophrenic angle", 80},      {"pleural effusion", "left pleural", 76},
    {"pleural effusion", "right costophrenic angle", 54},     {"pleural effusion", "right pleural", 57},
};

static const char *const MASTER_HEADER[23] = {
    "StudyID", "ImageID", "label", "boxes_count", "extra_boxes_count", "locations", "prior_study",
    "progression_status", "prior_imageID", "sentence_en", "sentence_es", "study_is_benchmark",
    "study_is_validation", "split", "PatientID", "patient_is_benchmark", "PatientBirth", "PatientSex_DICOM",
    "StudyDate_DICOM", "StudyDate", "PatientAge", "label_group", "Year"};

static void synth_padchest(const char *dir, int n, uint64_t seed, int size, int images)
{
    sc_synth_padchest_options opt;
    sc_synth_padchest_defaults(&opt);
    opt.n = n;
    opt.seed = seed;
    opt.size = size;
    opt.images = images;
    sc_err err;
    ck_assert_msg(sc_synth_padchest_gr(dir, &opt, &err) == SC_OK, "%s", err.msg);
}

static void load_reports(sc_json_doc *doc, const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/grounded_reports_20240819.json", dir);
    sc_err err;
    ck_assert_msg(sc_json_load(doc, path, 1u << 28, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(doc->root->type, SC_JSON_ARRAY);
}

/* The concept a positive finding names: its locations joined by spaces
 * ("left" + "costophrenic angle"), which is how the generator spells the
 * hierarchy's concepts. Returns the combination's row in COMBOS. */
static int finding_combo(const sc_json *f, const sc_hier_task *t)
{
    const sc_json *labels = sc_json_get(f, "labels"), *locs = sc_json_get(f, "locations");
    ck_assert_msg(labels && labels->type == SC_JSON_ARRAY && labels->len == 1, "a positive finding without one label");
    ck_assert_msg(locs && locs->type == SC_JSON_ARRAY && locs->len >= 1 && locs->len <= 2, "locations");
    char concept[128] = "";
    for (size_t k = 0; k < locs->len; k++) {
        if (k) strcat(concept, " ");
        strncat(concept, locs->items[k]->str, sizeof concept - strlen(concept) - 2);
    }
    const char *label = labels->items[0]->str;
    ck_assert_msg(sc_hier_combo_find(t, label, concept) >= 0, "(%s, %s) is not a combination of data/padchest-gr.hier",
                  label, concept);
    for (int h = 0; h < 12; h++)
        if (!strcmp(COMBOS[h].label, label) && !strcmp(COMBOS[h].concept, concept)) return h;
    ck_abort_msg("(%s, %s) is not in the paper's tree", label, concept);
    return -1;
}

/* Mean of a box of a 16-bit image stretched min-max to 0..1 (exposure
 * windows differ between images). */
static double box_mean(const sc_image *img, const double *b)
{
    size_t npx = (size_t)img->width * (size_t)img->height;
    double lo = 65535, hi = 0;
    for (size_t k = 0; k < npx; k++) {
        lo = fmin(lo, img->pixels16[k]);
        hi = fmax(hi, img->pixels16[k]);
    }
    int x0 = (int)(b[0] * img->width), x1 = (int)(b[2] * img->width), y0 = (int)(b[1] * img->height),
        y1 = (int)(b[3] * img->height);
    double s = 0;
    int n = 0;
    for (int y = y0; y < y1 && y < img->height; y++)
        for (int x = x0; x < x1 && x < img->width; x++, n++)
            s += (img->pixels16[(size_t)y * (size_t)img->width + (size_t)x] - lo) / (hi - lo);
    return n ? s / n : 0;
}

/* Box means of the effusions of a set, and of the same boxes in the
 * set's normal studies. */
typedef struct {
    double box[64][4], with_fluid[64];
    int n;
} effusion_probe;

START_TEST(test_synth_padchest_layout)
{
    const char *dir = sc_test_tmpdir();
    const int n = 40, size = 96;
    synth_padchest(dir, n, 3, size, 1);
    sc_json_doc doc;
    load_reports(&doc, dir);
    ck_assert_int_eq((int)doc.root->len, n);
    sc_csv master;
    load_csv(&master, dir, "master_table.csv");
    ck_assert_int_eq(master.n_cols, 23);
    for (int k = 0; k < 23; k++) ck_assert_str_eq(master.header.field[k], MASTER_HEADER[k]);
    sc_hier h;
    sc_err err;
    ck_assert_msg(sc_hier_load(&h, sc_test_path("data/padchest-gr.hier"), &err) == SC_OK, "%s", err.msg);
    const sc_hier_task *t = &h.tasks[0];

    int64_t row = 0;
    effusion_probe probe;
    probe.n = 0;
    for (size_t i = 0; i < doc.root->len; i++) {
        const sc_json *st = doc.root->items[i];
        const char *study = sc_json_get_string(st, "StudyID", ""), *image = sc_json_get_string(st, "ImageID", "");
        ck_assert_msg(strlen(study) > 10 && !strncmp(image, study, strlen(study)) && strstr(image, ".png"),
                      "StudyID '%s', ImageID '%s'", study, image);
        char path[1024];
        snprintf(path, sizeof path, "%s/PadChest_GR/%s", dir, image);
        sc_image img;
        ck_assert_msg(sc_image_load(path, &img, &err) == SC_OK, "%s", err.msg);
        ck_assert_int_eq(img.bits, 16);
        ck_assert_int_eq(img.channels, 1);
        ck_assert_int_eq(img.width, size);
        ck_assert_int_eq(img.height, size);
        const sc_json *findings = sc_json_get(st, "findings");
        ck_assert_msg(findings && findings->type == SC_JSON_ARRAY && findings->len > 0, "study %s: findings", study);
        int positives = 0;
        for (size_t k = 0; k < findings->len; k++) {
            const sc_json *f = findings->items[k];
            const char *en = sc_json_get_string(f, "sentence_en", ""), *es = sc_json_get_string(f, "sentence_es", "");
            ck_assert_msg(en[0] && es[0] && en[strlen(en) - 1] == '.', "sentences '%s' / '%s'", en, es);
            if (!sc_json_get_bool(f, "abnormal", 0)) continue;
            positives++;
            int hh = finding_combo(f, t);
            const sc_json *boxes = sc_json_get(f, "boxes"), *extra = sc_json_get(f, "extra_boxes");
            int both = strstr(COMBOS[hh].concept, "bilateral") != NULL;
            ck_assert_msg(boxes && (int)boxes->len == (both ? 2 : 1), "%s: %zu boxes", en, boxes ? boxes->len : 0);
            ck_assert_msg(extra && (extra->len == 0 || extra->len == boxes->len), "extra_boxes");
            for (size_t b = 0; b < boxes->len; b++) {
                const sc_json *bx = boxes->items[b];
                ck_assert_int_eq((int)bx->len, 4);
                double v[4];
                for (int q = 0; q < 4; q++) v[q] = bx->items[q]->number;
                ck_assert_msg(v[0] >= 0 && v[1] >= 0 && v[2] <= 1 && v[3] <= 1 && v[0] < v[2] && v[1] < v[3],
                              "%s: box [%g %g %g %g]", en, v[0], v[1], v[2], v[3]);
                /* the patient's left is the image's right (PA view) */
                double cx = 0.5 * (v[0] + v[2]);
                if (!strncmp(COMBOS[hh].concept, "left", 4)) ck_assert_msg(cx > 0.5, "%s: box centre x %.3f", en, cx);
                if (!strncmp(COMBOS[hh].concept, "right", 5)) ck_assert_msg(cx < 0.5, "%s: box centre x %.3f", en, cx);
                if (!strcmp(COMBOS[hh].label, "pleural effusion") && probe.n < 64) {
                    /* the quarter of the box by the chest wall, above the
                     * middle: fluid when there is an effusion, else lung */
                    double *q = probe.box[probe.n], mx = 0.5 * (v[0] + v[2]);
                    q[0] = cx < 0.5 ? v[0] : mx;
                    q[2] = cx < 0.5 ? mx : v[2];
                    q[1] = v[1];
                    q[3] = 0.5 * (v[1] + v[3]);
                    probe.with_fluid[probe.n++] = box_mean(&img, q);
                }
            }
            const char *side = strstr(COMBOS[hh].concept, "left") ? "left" : strstr(COMBOS[hh].concept, "right") ? "right" : NULL;
            if (side) {
                char cap[8];
                snprintf(cap, sizeof cap, "%c%s", side[0] - 32, side + 1);
                ck_assert_msg(strstr(en, side) || strstr(en, cap), "'%s' does not name the %s side", en, side);
            }
            /* the master table's row for this finding */
            ck_assert_msg(row < master.n_rows, "master_table has too few rows");
            ck_assert_str_eq(sc_csv_get(&master, row, 0), study);
            ck_assert_str_eq(sc_csv_get(&master, row, 1), image);
            ck_assert_str_eq(sc_csv_get(&master, row, 2), COMBOS[hh].label);
            ck_assert_str_eq(sc_csv_get(&master, row, 9), en);
            ck_assert_str_eq(sc_csv_get(&master, row, 10), es);
            row++;
        }
        if (!positives) {
            ck_assert_str_eq(sc_csv_get(&master, row, 0), study);
            ck_assert_str_eq(sc_csv_get(&master, row, 2), "normal");
            row++;
        }
        sc_image_free(&img);
    }
    ck_assert_int_eq(row, master.n_rows);
    /* The effusions are drawn where their boxes are: fluid is about as
     * dense as soft tissue, lung is mostly air, so by the chest wall each
     * box is clearly brighter than the same place on the normal studies
     * of the set. */
    ck_assert_msg(probe.n > 0, "no effusion in the sample to look at");
    for (int e = 0; e < probe.n; e++) {
        double normal = 0;
        int n_normal = 0;
        for (size_t i = 0; i < doc.root->len; i++) {
            const sc_json *fs = sc_json_get(doc.root->items[i], "findings");
            int any = 0;
            for (size_t k = 0; k < fs->len; k++) any |= sc_json_get_bool(fs->items[k], "abnormal", 0);
            if (any) continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/PadChest_GR/%s", dir, sc_json_get_string(doc.root->items[i], "ImageID", ""));
            sc_image img;
            ck_assert_int_eq(sc_image_load(path, &img, &err), SC_OK);
            normal += box_mean(&img, probe.box[e]);
            n_normal++;
            sc_image_free(&img);
        }
        ck_assert_msg(n_normal > 0, "no normal study in the sample");
        normal /= n_normal;
        ck_assert_msg(probe.with_fluid[e] > normal + 0.04, "effusion %d: box mean %.3f, normal studies %.3f", e,
                      probe.with_fluid[e], normal);
    }
    sc_hier_free(&h);
    sc_csv_free(&master);
    sc_json_free(&doc);
}
END_TEST

/* Relative frequencies of the combinations follow the paper's counts,
 * the normal share is as asked, abnormal studies carry 1.18 findings on
 * average (882 positives over 748 patients in the paper), and patients
 * are split 70/10/20 without crossing splits. */
START_TEST(test_synth_padchest_statistics)
{
    const int n = 3000;
    const char *dir = sc_test_tmpdir();
    synth_padchest(dir, n, 9, 64, 0);
    sc_json_doc doc;
    load_reports(&doc, dir);
    sc_hier h;
    sc_err err;
    ck_assert_msg(sc_hier_load(&h, sc_test_path("data/padchest-gr.hier"), &err) == SC_OK, "%s", err.msg);
    int count[12] = {0}, total = 0, normal = 0;
    for (size_t i = 0; i < doc.root->len; i++) {
        const sc_json *findings = sc_json_get(doc.root->items[i], "findings");
        int positives = 0;
        for (size_t k = 0; k < findings->len; k++)
            if (sc_json_get_bool(findings->items[k], "abnormal", 0)) {
                count[finding_combo(findings->items[k], &h.tasks[0])]++;
                total++;
                positives++;
            }
        normal += positives == 0;
    }
    ck_assert_int_eq(normal, 750); /* 0.25 · 3000 */
    double per_study = (double)total / (n - normal);
    ck_assert_msg(fabs(per_study - 882.0 / 748.0) < 0.05, "%.3f findings per abnormal study", per_study);
    for (int hh = 0; hh < 12; hh++) {
        double got = (double)count[hh] / total, want = COMBOS[hh].count / 882.0;
        ck_assert_msg(fabs(got - want) < 0.025, "%s %s: share %.3f, paper %.3f", COMBOS[hh].label, COMBOS[hh].concept,
                      got, want);
    }
    sc_csv master;
    load_csv(&master, dir, "master_table.csv");
    int split_col = sc_csv_column(&master, "split"), patient_col = sc_csv_column(&master, "PatientID");
    ck_assert_int_eq((int)master.n_rows, total + normal);
    /* patients: each in one split; split shares over patients */
    int n_patients = 0, per_split[3] = {0, 0, 0};
    const char **seen = malloc(sizeof *seen * (size_t)master.n_rows);
    int *seen_split = malloc(sizeof *seen_split * (size_t)master.n_rows);
    static const char *const SPLITS[3] = {"train", "validation", "test"};
    for (int64_t r = 0; r < master.n_rows; r++) {
        const char *p = sc_csv_get(&master, r, patient_col);
        int s = index_of(sc_csv_get(&master, r, split_col), SPLITS, 3);
        ck_assert_msg(s >= 0, "split '%s'", sc_csv_get(&master, r, split_col));
        int k = 0;
        while (k < n_patients && strcmp(seen[k], p)) k++;
        if (k == n_patients) {
            seen[n_patients] = p;
            seen_split[n_patients++] = s;
            per_split[s]++;
        } else {
            ck_assert_msg(seen_split[k] == s, "patient %s is in two splits", p);
        }
    }
    ck_assert_msg(n_patients < n && n_patients > n * 0.95, "%d patients for %d studies", n_patients, n);
    for (int s = 0; s < 3; s++)
        ck_assert_msg(abs(per_split[s] - n_patients * (s == 0 ? 70 : s == 1 ? 10 : 20) / 100) <= 1, "split %s: %d of %d",
                      SPLITS[s], per_split[s], n_patients);
    free(seen);
    free(seen_split);
    sc_csv_free(&master);
    sc_hier_free(&h);
    sc_json_free(&doc);
}
END_TEST

START_TEST(test_synth_padchest_deterministic)
{
    char a[1024], b[1024], c[1024], pa[1200], pb[1200];
    three_dirs(a, b, c, sizeof a);
    synth_padchest(a, 10, 5, 48, 1);
    synth_padchest(b, 10, 5, 48, 1);
    synth_padchest(c, 10, 6, 48, 0);
    static const char *const files[2] = {"grounded_reports_20240819.json", "master_table.csv"};
    for (int k = 0; k < 2; k++) {
        snprintf(pa, sizeof pa, "%s/%s", a, files[k]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[k]);
        ck_assert_msg(files_equal(pa, pb), "same seed, different %s", files[k]);
        snprintf(pb, sizeof pb, "%s/%s", c, files[k]);
        ck_assert_msg(!files_equal(pa, pb), "another seed, the same %s", files[k]);
    }
    sc_json_doc doc;
    load_reports(&doc, a);
    for (size_t i = 0; i < doc.root->len; i++) {
        const char *image = sc_json_get_string(doc.root->items[i], "ImageID", "");
        snprintf(pa, sizeof pa, "%s/PadChest_GR/%s", a, image);
        snprintf(pb, sizeof pb, "%s/PadChest_GR/%s", b, image);
        ck_assert_msg(files_equal(pa, pb), "same seed, different %s", image);
    }
    sc_json_free(&doc);
}
END_TEST

/* ---- contact sheets, bad options, the command ----------------------------- */

START_TEST(test_synth_contact_sheets)
{
    char path[1024];
    sc_err err;
    sc_image img;
    snprintf(path, sizeof path, "%s/derm.png", sc_test_tmpdir());
    ck_assert_msg(sc_synth_derm7p_contact_sheet(path, 40, 1, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(sc_image_load(path, &img, &err), SC_OK);
    ck_assert_int_eq(img.width, 8 * 40 + 9 * 4); /* 8 columns (vascular structures has 8 values) */
    ck_assert_int_eq(img.height, 7 * 40 + 8 * 4); /* 7 criteria */
    sc_image_free(&img);
    snprintf(path, sizeof path, "%s/chest.jpg", sc_test_tmpdir());
    ck_assert_msg(sc_synth_padchest_contact_sheet(path, 40, 1, &err) == SC_OK, "%s", err.msg);
    ck_assert_int_eq(sc_image_load(path, &img, &err), SC_OK);
    ck_assert_int_eq(img.channels, 1);
    ck_assert_int_eq(img.width, 4 * 40 + 5 * 4);
    sc_image_free(&img);
}
END_TEST

START_TEST(test_synth_refuses)
{
    sc_synth_derm7p_options d;
    sc_synth_padchest_options p;
    sc_err err;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/x", sc_test_tmpdir());
    sc_synth_derm7p_defaults(&d);
    d.n = 0;
    ck_assert_int_eq(sc_synth_derm7p(dir, &d, &err), SC_EARG);
    sc_synth_derm7p_defaults(&d);
    d.size = 8;
    ck_assert_int_eq(sc_synth_derm7p(dir, &d, &err), SC_EARG);
    sc_synth_padchest_defaults(&p);
    p.normal_share = 1.5;
    ck_assert_int_eq(sc_synth_padchest_gr(dir, &p, &err), SC_EARG);
    /* a directory that cannot be made: its parent is a file */
    char file[1024], below[1100];
    snprintf(file, sizeof file, "%s/plain", sc_test_tmpdir());
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    snprintf(below, sizeof below, "%s/set", file);
    sc_synth_derm7p_defaults(&d);
    d.n = 3;
    ck_assert_int_eq(sc_synth_derm7p(below, &d, &err), SC_EIO);
    ck_assert_msg(strstr(err.msg, below) != NULL, "message '%s' does not name the directory", err.msg);
}
END_TEST

START_TEST(test_synth_command)
{
    char args[2048], path[1200];
    const char *dir = sc_test_tmpdir();
    snprintf(args, sizeof args, "synth derm7p --out %s/d --n 6 --size 40 --format png --seed 2", dir);
    ck_assert_int_eq(sc_test_run_scale(NULL, args), 0);
    snprintf(path, sizeof path, "%s/d/release_v0/meta/meta.csv", dir);
    ck_assert(file_exists(path));
    snprintf(args, sizeof args, "synth padchest-gr --out %s/p --n 4 --size 40 --no-images", dir);
    ck_assert_int_eq(sc_test_run_scale(NULL, args), 0);
    snprintf(path, sizeof path, "%s/p/master_table.csv", dir);
    ck_assert(file_exists(path));
    /* --quiet: the same files, and nothing on stdout or stderr. */
    snprintf(args, sizeof args, "%s synth padchest-gr --out %s/q --n 4 --size 40 --no-images --quiet 2>&1",
             sc_test_path("scale"), dir);
    FILE *p = popen(args, "r");
    ck_assert_ptr_nonnull(p);
    ck_assert_int_eq(fgetc(p), EOF);
    ck_assert_int_eq(pclose(p), 0);
    snprintf(path, sizeof path, "%s/q/master_table.csv", dir);
    ck_assert(file_exists(path));
    ck_assert_int_eq(sc_test_run_scale(NULL, "synth mnist --out /nonexistent"), 2);
    ck_assert_int_eq(sc_test_run_scale(NULL, "synth derm7p --format gif --out /nonexistent"), 2);
    ck_assert_int_eq(sc_test_run_scale(NULL, "synth derm7p"), 2);
    ck_assert_int_eq(sc_test_run_scale(NULL, "synth padchest-gr --normal-share 2 --out /nonexistent"), 2);
    ck_assert_int_eq(sc_test_run_scale(NULL, "synth derm7p --out /proc/nope/x --n 2"), 1);
}
END_TEST

Suite *suite_synth(void)
{
    Suite *s = suite_create("synth");
    TCase *tc = tcase_create("synth");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_synth_derm7p_layout_jpeg);
    tcase_add_test(tc, test_synth_derm7p_layout_png);
    tcase_add_test(tc, test_synth_derm7p_real_counts);
    tcase_add_test(tc, test_synth_derm7p_marginals_other_n);
    tcase_add_test(tc, test_synth_derm7p_deterministic);
    tcase_add_test(tc, test_synth_derm7p_criteria_visible);
    tcase_add_test(tc, test_synth_padchest_layout);
    tcase_add_test(tc, test_synth_padchest_statistics);
    tcase_add_test(tc, test_synth_padchest_deterministic);
    tcase_add_test(tc, test_synth_contact_sheets);
    tcase_add_test(tc, test_synth_refuses);
    tcase_add_test(tc, test_synth_command);
    suite_add_tcase(s, tc);
    return s;
}
