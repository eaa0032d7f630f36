/* check_datasets.c — the dataset readers and stratified splits (scale.c
 * section 6a-6f). Every fixture is written here, into a scratch folder, in
 * the layout of the real release: Derm7p's release_v0 (meta.csv with its 19
 * columns and RFC 4180 quoting, the index files, images under images/ with
 * mixed .jpg/.JPG names), PadChest-GR's grounded_reports_*.json and
 * master_table.csv with 16- and 8-bit PNGs, and a manifest CSV. Images are
 * small synthetic JPEGs (Derm7p) and PNGs (the others). The
 * expected labels are written down from the hierarchy files' order (which
 * check_hier.c pins to the paper), not computed by the readers. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check_util.h"
#include "dataset_fixtures.h"

/* ------------------------------------------------------------------------ */
/* Derm7p                                                                    */
/* ------------------------------------------------------------------------ */

static sc_dataset_options derm_options(const char *root)
{
    sc_dataset_options o = sc_dataset_defaults();
    o.kind = SC_DATA_DERM7P;
    o.path = root;
    o.hier = sc_test_path("data/derm7p.hier");
    return o;
}

/* Load, expecting success. */
static void load_ok(sc_dataset *ds, const sc_dataset_options *o)
{
    sc_err err;
    sc_status st = sc_dataset_load(ds, o, &err);
    ck_assert_msg(st == SC_OK, "%s", err.msg);
}

/* Load, expecting failure with a message containing every fragment. */
static void load_fails(const sc_dataset_options *o, const char *const *fragments, int n)
{
    sc_dataset ds;
    sc_err err;
    sc_status st = sc_dataset_load(&ds, o, &err);
    ck_assert_msg(st != SC_OK, "loaded although bad");
    for (int k = 0; k < n; k++) ck_assert_msg(strstr(err.msg, fragments[k]) != NULL, "'%s' not in: %s", fragments[k], err.msg);
}

START_TEST(test_derm7p_reads_release)
{
    char root[256];
    snprintf(root, sizeof root, "%s", sc_test_tmpdir());
    derm7p_fixture(root);
    sc_dataset_options o = derm_options(root); /* the parent of release_v0 */
    sc_dataset ds;
    load_ok(&ds, &o);
    ck_assert_int_eq(ds.n_images, DERM_ROWS);
    ck_assert_int_eq(ds.hier.n_tasks, 7);
    ck_assert_int_eq(ds.n_labels, 3 + 3 + 5 + 4 + 3 + 2 + 8);
    ck_assert_int_eq(ds.n_texts, 0);
    for (int r = 0; r < DERM_ROWS; r++) {
        char id[16];
        snprintf(id, sizeof id, "%d", 100 + r);
        ck_assert_str_eq(ds.image_id[r], id);
        ck_assert_int_eq(ds.source_row[r], r);
        ck_assert_int_eq(ds.split[r], derm_split_of(r));
        /* one column per task, at the value's place in the hierarchy */
        int off = 0, ones = 0;
        for (int t = 0; t < 7; t++) {
            ck_assert_msg(ds.labels[r * ds.n_labels + off + derm_value_index(r, t)] == 1, "row %d task %d", r, t);
            off += derm_task_sizes[t];
        }
        for (int k = 0; k < ds.n_labels; k++) ones += ds.labels[r * ds.n_labels + k];
        ck_assert_int_eq(ones, 7);
        char want[512];
        derm_image_name(r, 0, want, sizeof want);
        ck_assert_msg(strstr(ds.image_path[r], "release_v0/images/") != NULL, "%s", ds.image_path[r]);
        if (r != DERM_FLIPPED_ROW) ck_assert_msg(strstr(ds.image_path[r], want) != NULL, "%s", ds.image_path[r]);
    }
    /* the file stored as .JPG although meta.csv says .jpg is found */
    ck_assert_msg(strstr(ds.image_path[DERM_FLIPPED_ROW], "Fcl003.JPG") != NULL, "%s", ds.image_path[DERM_FLIPPED_ROW]);
    int noted = 0;
    for (int k = 0; k < ds.n_notes; k++) noted |= strstr(ds.notes[k], "extension's case flipped") != NULL;
    ck_assert(noted);
    sc_dataset_free(&ds);

    /* the release_v0 folder itself works as well */
    char release[300];
    snprintf(release, sizeof release, "%s/release_v0", root);
    o.path = release;
    load_ok(&ds, &o);
    ck_assert_int_eq(ds.n_images, DERM_ROWS);
    sc_dataset_free(&ds);
}
END_TEST

/* --image clinic: the cases whose "clinic" image is dermoscopic (notes
 * "... replaced ...", one of them with a quoted comma, another with a
 * quoted line break in the notes) are left out unless asked for. */
START_TEST(test_derm7p_clinic)
{
    const char *root = sc_test_tmpdir();
    derm7p_fixture(root);
    sc_dataset_options o = derm_options(root);
    o.clinic = 1;
    sc_dataset ds;
    load_ok(&ds, &o);
    ck_assert_int_eq(ds.n_images, DERM_ROWS - 2);
    for (int64_t i = 0; i < ds.n_images; i++) {
        ck_assert_int_ne(ds.source_row[i], DERM_REPLACED_ROW_A);
        ck_assert_int_ne(ds.source_row[i], DERM_REPLACED_ROW_B);
        ck_assert_msg(strstr(ds.image_path[i], "c.jpg") != NULL, "%s", ds.image_path[i]);
    }
    sc_dataset_free(&ds);
    o.keep_replaced_clinic = 1;
    load_ok(&ds, &o);
    ck_assert_int_eq(ds.n_images, DERM_ROWS);
    sc_dataset_free(&ds);
}
END_TEST

/* Every bad row names the file, its line, the row and the column. */
START_TEST(test_derm7p_bad_rows)
{
    char root[256], meta[320];
    sc_dataset_options o;
    /* a value the hierarchy does not know: row 4 is on line 6 (header,
     * then row 3 whose quoted notes span two lines... no: notes with a line
     * break are in row 7, after it) */
    snprintf(root, sizeof root, "%s", sc_test_tmpdir());
    derm7p_fixture(root);
    snprintf(meta, sizeof meta, "%s/release_v0/meta/meta.csv", root);
    derm_set_cell(meta, 4, "pigmentation", "spotted");
    o = derm_options(root);
    const char *value[] = {"meta.csv:6: row 4, column pigmentation: 'spotted' is not a concept of task 'pigmentation' in",
                           "derm7p.hier"};
    load_fails(&o, value, 2);

    /* a missing image */
    snprintf(root, sizeof root, "%s", sc_test_tmpdir());
    derm7p_fixture(root);
    char image[512], name[64];
    derm_image_name(2, 0, name, sizeof name);
    snprintf(image, sizeof image, "%s/release_v0/images/%s", root, name);
    ck_assert_int_eq(unlink(image), 0);
    o = derm_options(root);
    const char *missing[] = {"meta.csv:4: row 2, column derm: image file", "NEL002.JPG not found"};
    load_fails(&o, missing, 2);

    /* a row with a field too few; and an empty image path */
    snprintf(root, sizeof root, "%s", sc_test_tmpdir());
    derm7p_fixture(root);
    snprintf(meta, sizeof meta, "%s/release_v0/meta/meta.csv", root);
    derm_drop_last_field(meta, 9);
    o = derm_options(root);
    const char *fields[] = {"meta.csv:12: row 9: 18 fields, but the header has 19"};
    load_fails(&o, fields, 1);
    snprintf(root, sizeof root, "%s", sc_test_tmpdir());
    derm7p_fixture(root);
    snprintf(meta, sizeof meta, "%s/release_v0/meta/meta.csv", root);
    derm_set_cell(meta, 1, "derm", "");
    o = derm_options(root);
    const char *empty[] = {"meta.csv:3: row 1, column derm: no image file named"};
    load_fails(&o, empty, 1);

    /* a missing column */
    snprintf(root, sizeof root, "%s", sc_test_tmpdir());
    derm7p_fixture(root);
    snprintf(meta, sizeof meta, "%s/release_v0/meta/meta.csv", root);
    replace_in_file(meta, "blue_whitish_veil", "bwv");
    o = derm_options(root);
    const char *column[] = {"no column 'blue_whitish_veil'"};
    load_fails(&o, column, 1);
}
END_TEST

/* --skip-bad: the same problems are reported and their rows left out. */
START_TEST(test_derm7p_skip_bad)
{
    char root[256], meta[320], image[512], name[64];
    snprintf(root, sizeof root, "%s", sc_test_tmpdir());
    derm7p_fixture(root);
    snprintf(meta, sizeof meta, "%s/release_v0/meta/meta.csv", root);
    derm_set_cell(meta, 4, "pigmentation", "spotted");
    derm_drop_last_field(meta, 9);
    derm_image_name(2, 0, name, sizeof name);
    snprintf(image, sizeof image, "%s/release_v0/images/%s", root, name);
    ck_assert_int_eq(unlink(image), 0);
    sc_dataset_options o = derm_options(root);
    o.skip_bad = 1;
    sc_dataset ds;
    load_ok(&ds, &o);
    ck_assert_int_eq(ds.n_images, DERM_ROWS - 3);
    ck_assert_int_eq(ds.n_skipped, 3);
    ck_assert_msg(strstr(ds.skipped[0], "row 2, column derm") != NULL, "%s", ds.skipped[0]);
    ck_assert_msg(strstr(ds.skipped[1], "row 4, column pigmentation") != NULL, "%s", ds.skipped[1]);
    ck_assert_msg(strstr(ds.skipped[2], "row 9: 18 fields") != NULL, "%s", ds.skipped[2]);
    /* the others keep their rows and splits (index files still name
     * meta.csv rows) */
    for (int64_t i = 0; i < ds.n_images; i++) {
        int64_t r = ds.source_row[i];
        ck_assert(r != 2 && r != 4 && r != 9);
        ck_assert_int_eq(ds.split[i], derm_split_of((int)r));
    }
    sc_dataset_free(&ds);
}
END_TEST

/* The index files: out of range, listed twice, in two files, not a number. */
START_TEST(test_derm7p_bad_index_files)
{
    static const struct {
        const char *file, *text, *message;
    } cases[] = {
        {"test_indexes.csv", "indexes\n8\n9\n10\n12\n", "test_indexes.csv:5: column indexes: row 12 is outside meta.csv's rows 0..11"},
        {"test_indexes.csv", "indexes\n8\n9\n10\n9\n", "test_indexes.csv:5: column indexes: row 9 is listed twice"},
        {"valid_indexes.csv", "indexes\n6\n7\n0\n", "valid_indexes.csv:4: column indexes: row 0 is also in meta/train_indexes.csv"},
        {"train_indexes.csv", "indexes\n0\n1\nx\n", "train_indexes.csv:4: column indexes: 'x' is not an integer"},
        {"train_indexes.csv", "rows\n0\n", "train_indexes.csv:1: no column 'indexes'"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char root[256], rel[128];
        snprintf(root, sizeof root, "%s", sc_test_tmpdir());
        derm7p_fixture(root);
        snprintf(rel, sizeof rel, "release_v0/meta/%s", cases[k].file);
        put_file(root, rel, cases[k].text);
        sc_dataset_options o = derm_options(root);
        o.skip_bad = 1; /* index files are never skipped over */
        const char *frag[] = {cases[k].message};
        load_fails(&o, frag, 1);
    }
    /* rows in no index file are allowed, with split none and a note */
    char root[256];
    snprintf(root, sizeof root, "%s", sc_test_tmpdir());
    derm7p_fixture(root);
    put_file(root, "release_v0/meta/valid_indexes.csv", "indexes\n6\n");
    sc_dataset_options o = derm_options(root);
    sc_dataset ds;
    load_ok(&ds, &o);
    ck_assert_int_eq(ds.split[7], SC_SPLIT_NONE);
    int noted = 0;
    for (int k = 0; k < ds.n_notes; k++) noted |= strstr(ds.notes[k], "1 images are in no index file") != NULL;
    ck_assert(noted);
    sc_dataset_free(&ds);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* PadChest-GR                                                               */
/* ------------------------------------------------------------------------ */

static sc_dataset_options padchest_options(const char *root)
{
    sc_dataset_options o = sc_dataset_defaults();
    o.kind = SC_DATA_PADCHEST_GR;
    o.path = root;
    o.hier = sc_test_path("data/padchest-gr.hier");
    o.min_cases = 0; /* the fixture is small; dropping is tested apart */
    return o;
}

/* combination indices of data/padchest-gr.hier */
enum { ATL_LLL = 0, ATL_RC = 1, ATL_RLL = 2, CARDIO = 3, CONS_LLL = 4, CONS_RLL = 5, PE_BCA = 6, PE_BPL = 7, PE_LCA = 8,
       PE_LPL = 9, PE_RCA = 10, PE_RPL = 11 };

START_TEST(test_padchest_reads_release)
{
    const char *root = sc_test_tmpdir();
    padchest_fixture(root);
    sc_dataset_options o = padchest_options(root);
    sc_dataset ds;
    load_ok(&ds, &o);
    ck_assert_int_eq(ds.n_labels, 12);
    /* studies 3 (only negative sentences), 4 ("nodule") and 5
     * (cardiomegaly without a location) carry no combination */
    static const struct {
        const char *id, *patient;
        sc_split split;
        int combos[3];
        int n_texts;
    } want[] = {
        {"img00.png", "P0", SC_SPLIT_TRAIN, {PE_LCA, -1}, 1},
        {"img01.png", "P1", SC_SPLIT_TRAIN, {CARDIO, -1}, 1},
        {"img02.png", "P1", SC_SPLIT_TEST, {ATL_LLL, PE_RPL, -1}, 2},
        {"img06.png", "P5", SC_SPLIT_TEST, {PE_BCA, -1}, 1},
        {"img07.png", "P6", SC_SPLIT_VALID, {PE_LCA, PE_LPL, CONS_RLL}, 2},
    };
    ck_assert_int_eq(ds.n_images, 5);
    int64_t texts = 0;
    for (int i = 0; i < 5; i++) {
        ck_assert_str_eq(ds.image_id[i], want[i].id);
        ck_assert_str_eq(ds.group_id[i], want[i].patient);
        ck_assert_int_eq(ds.split[i], want[i].split);
        uint8_t row[12] = {0};
        for (int k = 0; k < 3 && want[i].combos[k] >= 0; k++) row[want[i].combos[k]] = 1;
        ck_assert_msg(!memcmp(ds.labels + i * 12, row, 12), "labels of %s", want[i].id);
        texts += want[i].n_texts;
    }
    /* img01 and img02 share patient P1: one group */
    ck_assert_int_eq(ds.group[1], ds.group[2]);
    ck_assert_int_ne(ds.group[0], ds.group[1]);
    ck_assert_int_eq(ds.n_texts, texts);
    ck_assert_str_eq(ds.text[0], "Left costophrenic angle blunting due to effusion.");
    ck_assert_int_eq(ds.text_image[0], 0);
    /* the sentence with two combinations carries both */
    int64_t j = -1;
    for (int64_t k = 0; k < ds.n_texts; k++)
        if (!strcmp(ds.text[k], "Left pleural effusion reaching the costophrenic angle.")) j = k;
    ck_assert_int_ge(j, 0);
    ck_assert_int_eq(ds.text_labels[j * 12 + PE_LCA] + ds.text_labels[j * 12 + PE_LPL], 2);
    ck_assert_int_eq(ds.text_labels[j * 12 + CONS_RLL], 0);
    /* 16-bit images are read as such */
    sc_image img;
    sc_err err;
    ck_assert(sc_image_load(ds.image_path[0], &img, &err) == SC_OK);
    ck_assert_int_eq(img.bits, 16);
    sc_image_free(&img);
    int noted_unlisted = 0, noted_unlabelled = 0;
    for (int k = 0; k < ds.n_notes; k++) {
        noted_unlisted |= strstr(ds.notes[k], "1 images of master_table.csv have no study") != NULL;
        noted_unlabelled |= strstr(ds.notes[k], "3 images without a combination") != NULL;
    }
    ck_assert(noted_unlisted && noted_unlabelled);
    sc_dataset_free(&ds);

    /* Spanish sentences; and the unlabelled images kept */
    o.spanish = 1;
    o.keep_unlabelled = 1;
    load_ok(&ds, &o);
    ck_assert_int_eq(ds.n_images, 8);
    ck_assert_str_eq(ds.text[0], "Pinzamiento del seno costofrénico izquierdo por derrame.");
    sc_dataset_free(&ds);
}
END_TEST

/* Rare combinations dropped (the paper: fewer than ten cases); the
 * hierarchy and every label column follow. */
START_TEST(test_padchest_min_cases)
{
    const char *root = sc_test_tmpdir();
    padchest_fixture(root);
    sc_dataset_options o = padchest_options(root);
    o.min_cases = 2; /* only PE_LCA has two images */
    sc_dataset ds;
    load_ok(&ds, &o);
    ck_assert_int_eq(ds.n_labels, 1);
    ck_assert_int_eq(ds.hier.tasks[0].n_combos, 1);
    ck_assert_str_eq(ds.hier.tasks[0].concepts[0].name, "left costophrenic angle");
    ck_assert_int_eq(ds.n_dropped, 11);
    ck_assert_str_eq(ds.dropped[0], "lung and heart findings|atelectasis|left lower lobe");
    ck_assert_int_eq(ds.n_images, 2); /* img00 and img07 */
    ck_assert_str_eq(ds.image_id[1], "img07.png");
    for (int64_t i = 0; i < ds.n_images; i++) ck_assert_int_eq(ds.labels[i], 1);
    /* texts of dropped combinations went with them */
    ck_assert_int_eq(ds.n_texts, 2);
    sc_dataset_free(&ds);
    /* the default is the paper's 10: nothing left in this small fixture */
    o.min_cases = -1;
    const char *frag[] = {"every combination of task 'lung and heart findings' has fewer than 10 images"};
    load_fails(&o, frag, 1);
}
END_TEST

START_TEST(test_padchest_bad_studies)
{
    static const struct {
        const char *old, *new_, *message;
    } cases[] = {
        {"\"ImageID\": \"img01.png\"", "\"ImageId\": \"img01.png\"", "grounded_reports_20240819.json: study 1: no \"ImageID\" file name"},
        {"\"ImageID\": \"img01.png\"", "\"ImageID\": \"img42.png\"", "study 1 (ImageID img42.png): not in master_table.csv"},
        {"\"ImageID\": \"img01.png\"", "\"ImageID\": \"img00.png\"", "study 1 (ImageID img00.png): the image is also study 0"},
        {"\"labels\": [\"cardiomegaly\"]", "\"labels\": \"cardiomegaly\"",
         "study 1 (ImageID img01.png), finding 0: \"labels\" and \"locations\" must be lists"},
        {"\"sentence_en\": \"The heart is enlarged.\", ", "", "study 1 (ImageID img01.png), finding 0: no \"sentence_en\" text"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *root = sc_test_tmpdir();
        padchest_fixture(root);
        char json[512];
        snprintf(json, sizeof json, "%s/grounded_reports_20240819.json", root);
        replace_in_file(json, cases[k].old, cases[k].new_);
        sc_dataset_options o = padchest_options(root);
        const char *frag[] = {cases[k].message};
        load_fails(&o, frag, 1);
        /* with --skip-bad the study is left out and the rest loads */
        o.skip_bad = 1;
        sc_dataset ds;
        load_ok(&ds, &o);
        ck_assert_int_eq(ds.n_skipped, 1);
        ck_assert_msg(strstr(ds.skipped[0], cases[k].message) != NULL, "%s", ds.skipped[0]);
        ck_assert_int_eq(ds.n_images, 4);
        sc_dataset_free(&ds);
    }
    /* a missing image file */
    const char *root = sc_test_tmpdir();
    padchest_fixture(root);
    char image[512];
    snprintf(image, sizeof image, "%s/Padchest_GR_files/img06.png", root);
    ck_assert_int_eq(unlink(image), 0);
    sc_dataset_options o = padchest_options(root);
    const char *missing[] = {"study 6 (ImageID img06.png): image file", "img06.png not found"};
    load_fails(&o, missing, 2);
    /* the master table: rows of one image disagreeing, or still zipped */
    root = sc_test_tmpdir();
    padchest_fixture(root);
    char master[512];
    snprintf(master, sizeof master, "%s/master_table.csv", root);
    replace_in_file(master, "S2,img02.png,P1,test,pleural effusion", "S2,img02.png,P1,train,pleural effusion");
    o = padchest_options(root);
    const char *conflict[] = {"master_table.csv:5: column split: 'train', but line 4 gives image img02.png 'test'"};
    load_fails(&o, conflict, 1);
    char zip[600];
    snprintf(zip, sizeof zip, "%s.zip", master);
    ck_assert_int_eq(rename(master, zip), 0);
    const char *zipped[] = {"master_table.csv: not found; the release ships it zipped: unzip"};
    load_fails(&o, zipped, 1);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Manifests                                                                 */
/* ------------------------------------------------------------------------ */

START_TEST(test_manifest_derived_hierarchy)
{
    const char *root = sc_test_tmpdir();
    manifest_fixture(root);
    char path[512];
    snprintf(path, sizeof path, "%s/manifest.csv", root);
    sc_dataset_options o = sc_dataset_defaults();
    o.kind = SC_DATA_MANIFEST;
    o.path = path;
    sc_dataset ds;
    load_ok(&ds, &o);
    /* tasks, classes, concepts in order of first appearance */
    ck_assert_int_eq(ds.hier.n_tasks, 2);
    const sc_hier_task *lesion = &ds.hier.tasks[0], *color = &ds.hier.tasks[1];
    ck_assert_str_eq(lesion->name, "lesion");
    ck_assert_int_eq(lesion->n_combos, 3);
    ck_assert_int_eq(lesion->multilabel, 0);
    ck_assert_int_eq(color->multilabel, 1); /* row 2 gives it two */
    ck_assert_str_eq(lesion->combo_prompt[0], "flat benign.");
    ck_assert_str_eq(ds.hier_path, "(derived)");
    ck_assert_int_eq(ds.n_images, 4);
    ck_assert_int_eq(ds.split[0], SC_SPLIT_TRAIN);
    ck_assert_int_eq(ds.split[2], SC_SPLIT_VALID);
    ck_assert_int_eq(ds.split[3], SC_SPLIT_NONE);
    /* row 1: lesion:malignant:raised, color:dark:brown */
    ck_assert_int_eq(ds.n_labels, 6);
    const uint8_t row1[6] = {0, 1, 0, 0, 1, 0};
    ck_assert_mem_eq(ds.labels + 1 * 6, row1, 6);
    ck_assert_int_eq(ds.group[0], ds.group[1]); /* group p1 */
    ck_assert_int_eq(ds.n_texts, 3);
    ck_assert_str_eq(ds.text[1], "A raised, dark brown lesion.");
    ck_assert_mem_eq(ds.text_labels + 1 * 6, row1, 6);
    ck_assert_str_eq(ds.image_id[3], "x3.png"); /* no id column: the image column */
    sc_dataset_free(&ds);
}
END_TEST

START_TEST(test_manifest_errors)
{
    static const struct {
        const char *old, *new_, *message;
    } cases[] = {
        {"lesion:benign:flat;color:light:brown", "lesion:benign", "manifest.csv:2: row 0, column labels: 'lesion:benign': with several tasks a label is task:class:concept"},
        {"train,p1\n", "training,p1\n", "manifest.csv:2: row 0, column split: 'training' is not train, valid, test or empty"},
        {"a/x0.png", "a/none.png", "manifest.csv:2: row 0, column image: image file"},
        {",train,p1\n", ",train\n", "manifest.csv:2: row 0: 4 fields, but the header has 5"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *root = sc_test_tmpdir();
        manifest_fixture(root);
        char path[512];
        snprintf(path, sizeof path, "%s/manifest.csv", root);
        replace_in_file(path, cases[k].old, cases[k].new_);
        sc_dataset_options o = sc_dataset_defaults();
        o.kind = SC_DATA_MANIFEST;
        o.path = path;
        o.hier = sc_test_path("tests/data/manifest.hier");
        const char *frag[] = {cases[k].message};
        load_fails(&o, frag, 1);
    }
    /* with a hierarchy, a label it does not hold */
    const char *root = sc_test_tmpdir();
    manifest_fixture(root);
    char path[512];
    snprintf(path, sizeof path, "%s/manifest.csv", root);
    replace_in_file(path, "color:dark:black", "color:dark:blue");
    sc_dataset_options o = sc_dataset_defaults();
    o.kind = SC_DATA_MANIFEST;
    o.path = path;
    o.hier = sc_test_path("tests/data/manifest.hier");
    const char *frag[] = {"manifest.csv:4: row 2, column labels: 'color:dark:blue' is not a combination of",
                          "tests/data/manifest.hier"};
    load_fails(&o, frag, 2);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Stratified splits                                                         */
/* ------------------------------------------------------------------------ */

/* Every fold holds within one item of its share of every label. */
static void assert_within_one(const int *fold, const uint8_t *labels, int64_t N, int K, const double *fraction,
                              int n_folds)
{
    for (int k = 0; k < K; k++) {
        int64_t total = 0, in_fold[8] = {0};
        for (int64_t i = 0; i < N; i++) {
            total += labels[i * K + k];
            in_fold[fold[i]] += labels[i * K + k];
        }
        for (int f = 0; f < n_folds; f++)
            ck_assert_msg(fabs((double)in_fold[f] - fraction[f] * (double)total) <= 1.0,
                          "label %d: fold %d has %lld of %lld, want %.2f", k, f, (long long)in_fold[f], (long long)total,
                          fraction[f] * (double)total);
    }
}

START_TEST(test_stratify_single_label)
{
    enum { N = 503, K = 7 };
    uint8_t labels[N * K] = {0};
    sc_rng rng;
    sc_rng_seed(&rng, 11);
    for (int i = 0; i < N; i++) labels[i * K + (i % 3 ? (int)sc_rng_below(&rng, K) : 0)] = 1; /* label 0 common */
    const double fraction[3] = {0.6, 0.25, 0.15};
    int fold[N], again[N], other[N];
    sc_err err;
    ck_assert(sc_stratify(fold, labels, N, K, NULL, fraction, 3, 5, &err) == SC_OK);
    assert_within_one(fold, labels, N, K, fraction, 3);
    /* the same seed deals the same folds, another seed others */
    ck_assert(sc_stratify(again, labels, N, K, NULL, fraction, 3, 5, &err) == SC_OK);
    ck_assert_mem_eq(fold, again, sizeof fold);
    ck_assert(sc_stratify(other, labels, N, K, NULL, fraction, 3, 6, &err) == SC_OK);
    ck_assert(memcmp(fold, other, sizeof fold) != 0);
    assert_within_one(other, labels, N, K, fraction, 3);
}
END_TEST

/* Multi-label, like PadChest-GR: an image carries one to three of 12
 * combinations, rare ones rarer; the paper's 85/15 split. And like
 * Derm7p: every image one value of each of 7 criteria (28 columns), into
 * three folds. Twenty datasets each. */
START_TEST(test_stratify_multi_label)
{
    enum { N = 400, K = 28 };
    static uint8_t labels[N * K];
    int fold[N];
    sc_err err;
    const double two[2] = {0.85, 0.15}, three[3] = {0.5, 0.3, 0.2};
    for (uint64_t seed = 0; seed < 20; seed++) {
        sc_rng rng;
        sc_rng_seed(&rng, 1000 + seed);
        memset(labels, 0, sizeof labels);
        for (int i = 0; i < N; i++) {
            int n = 1 + (int)sc_rng_below(&rng, 3);
            for (int k = 0; k < n; k++) labels[i * 12 + (int)(sc_rng_below(&rng, 12) * sc_rng_below(&rng, 12) / 12)] = 1;
        }
        ck_assert(sc_stratify(fold, labels, N, 12, NULL, two, 2, seed, &err) == SC_OK);
        assert_within_one(fold, labels, N, 12, two, 2);
        memset(labels, 0, sizeof labels);
        for (int i = 0; i < N; i++)
            for (int t = 0; t < 7; t++) {
                uint32_t size = 2 + (uint32_t)t % 4;
                labels[i * K + 4 * t + (int)(sc_rng_below(&rng, size) * sc_rng_below(&rng, size) / size)] = 1;
            }
        ck_assert(sc_stratify(fold, labels, N, K, NULL, three, 3, seed, &err) == SC_OK);
        assert_within_one(fold, labels, N, K, three, 3);
    }
}
END_TEST

/* The worked example of book/16 (section 16.3): five images of label 0,
 * two of label 1, folds of 0.6 and 0.4. Fold 0 gets three and one, fold 1
 * two and one, whatever the seed. */
START_TEST(test_stratify_worked_example)
{
    const uint8_t labels[7 * 2] = {1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0};
    const double fraction[2] = {0.6, 0.4};
    int fold[7];
    sc_err err;
    for (uint64_t seed = 0; seed < 10; seed++) {
        ck_assert(sc_stratify(fold, labels, 7, 2, NULL, fraction, 2, seed, &err) == SC_OK);
        int count[2][2] = {{0, 0}, {0, 0}};
        for (int i = 0; i < 7; i++) count[fold[i]][labels[i * 2] ? 0 : 1]++;
        ck_assert_int_eq(count[0][0], 3);
        ck_assert_int_eq(count[0][1], 1);
        ck_assert_int_eq(count[1][0], 2);
        ck_assert_int_eq(count[1][1], 1);
    }
}
END_TEST

/* Groups (patients) stay whole; images without labels fill the sizes. */
START_TEST(test_stratify_groups)
{
    enum { N = 300, K = 4 };
    uint8_t labels[N * K] = {0};
    int64_t group[N];
    for (int i = 0; i < N; i++) {
        group[i] = i / 3; /* three images per patient */
        if (i % 5) labels[i * K + i % K] = 1;
    }
    const double fraction[2] = {0.7, 0.3};
    int fold[N];
    sc_err err;
    ck_assert(sc_stratify(fold, labels, N, K, group, fraction, 2, 1, &err) == SC_OK);
    int64_t in_test = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(fold[i], fold[i - i % 3]);
        in_test += fold[i];
    }
    ck_assert_msg(llabs(in_test - 90) <= 6, "%lld images in the 30%% fold", (long long)in_test);
    /* bad arguments */
    const double bad[2] = {0.7, 0.2};
    ck_assert_int_eq(sc_stratify(fold, labels, N, K, NULL, bad, 2, 1, &err), SC_EARG);
    group[7] = N;
    ck_assert_int_eq(sc_stratify(fold, labels, N, K, group, fraction, 2, 1, &err), SC_ERANGE);
}
END_TEST

/* The runner's training subsets: a fraction of the training split. */
START_TEST(test_stratified_subset)
{
    enum { N = 600, K = 5 };
    uint8_t labels[N * K] = {0};
    int64_t items[N], chosen[N], n_items = 0, n_chosen;
    for (int i = 0; i < N; i++) {
        labels[i * K + (i * 7 % 11) % K] = 1;
        if (i % 4) items[n_items++] = i; /* the "training split" */
    }
    sc_err err;
    const double fractions[] = {0.05, 0.1, 0.25, 0.5};
    for (size_t f = 0; f < 4; f++) {
        ck_assert(sc_stratified_subset(chosen, &n_chosen, items, n_items, labels, K, NULL, fractions[f], 9, &err) ==
                  SC_OK);
        for (int k = 0; k < K; k++) {
            int64_t total = 0, got = 0;
            for (int64_t j = 0; j < n_items; j++) total += labels[items[j] * K + k];
            for (int64_t j = 0; j < n_chosen; j++) got += labels[chosen[j] * K + k];
            ck_assert_msg(fabs((double)got - fractions[f] * (double)total) <= 1.0, "fraction %g label %d: %lld of %lld",
                          fractions[f], k, (long long)got, (long long)total);
        }
        for (int64_t j = 0; j < n_chosen; j++) {
            ck_assert_int_ne(chosen[j] % 4, 0); /* only listed items */
            if (j) ck_assert_int_gt(chosen[j], chosen[j - 1]);
        }
    }
    ck_assert(sc_stratified_subset(chosen, &n_chosen, items, n_items, labels, K, NULL, 1.0, 9, &err) == SC_OK);
    ck_assert_int_eq(n_chosen, n_items);
    ck_assert_int_eq(sc_stratified_subset(chosen, &n_chosen, items, n_items, labels, K, NULL, 0, 9, &err), SC_EARG);
}
END_TEST

/* The dataset option: PadChest-GR's paper split keeps patients whole. */
START_TEST(test_padchest_stratified_split)
{
    const char *root = sc_test_tmpdir();
    padchest_fixture(root);
    sc_dataset_options o = padchest_options(root);
    o.split = SC_SPLITS_STRATIFIED;
    o.test_fraction = 0.4;
    sc_dataset ds;
    load_ok(&ds, &o);
    int64_t test = 0;
    for (int64_t i = 0; i < ds.n_images; i++) {
        ck_assert(ds.split[i] == SC_SPLIT_TRAIN || ds.split[i] == SC_SPLIT_TEST);
        test += ds.split[i] == SC_SPLIT_TEST;
    }
    ck_assert_int_eq(ds.split[1], ds.split[2]); /* patient P1 */
    ck_assert(test > 0 && test < ds.n_images);
    sc_dataset_free(&ds);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* The synthetic look-alike of scale synth (scale.c section 5)               */
/* ------------------------------------------------------------------------ */

/* At the real size the synthetic Derm7p follows the real release's value
 * counts and split sizes (facts of the release: 1011 cases, 413/203/395);
 * the reader must see exactly those, through meta.csv and the index files. */
START_TEST(test_synthetic_derm7p_counts)
{
    char root[256];
    snprintf(root, sizeof root, "%s", sc_test_tmpdir());
    sc_synth_derm7p_options so;
    sc_synth_derm7p_defaults(&so);
    so.size = 32;
    sc_err err;
    ck_assert_msg(sc_synth_derm7p(root, &so, &err) == SC_OK, "%s", err.msg);
    sc_dataset_options o = derm_options(root);
    sc_dataset ds;
    load_ok(&ds, &o);
    ck_assert_int_eq(ds.n_images, 1011);
    /* the real release's counts of every value, in the hierarchy's order */
    static const int want[28] = {400, 381, 230,           653, 107, 251,      588, 3, 115, 40, 265,
                                 758, 116, 38, 99,        229, 334, 448,      816, 195,
                                 823, 31, 23, 15, 46, 2, 53, 18};
    int count[28] = {0}, per_split[SC_N_SPLITS] = {0};
    for (int64_t i = 0; i < ds.n_images; i++) {
        for (int k = 0; k < 28; k++) count[k] += ds.labels[i * 28 + k];
        per_split[ds.split[i]]++;
    }
    ck_assert_mem_eq(count, want, sizeof want);
    ck_assert_int_eq(per_split[SC_SPLIT_TRAIN], 413);
    ck_assert_int_eq(per_split[SC_SPLIT_VALID], 203);
    ck_assert_int_eq(per_split[SC_SPLIT_TEST], 395);
    sc_dataset_free(&ds);
}
END_TEST

Suite *suite_datasets(void)
{
    Suite *s = suite_create("datasets");
    TCase *derm = tcase_create("derm7p");
    tcase_add_test(derm, test_derm7p_reads_release);
    tcase_add_test(derm, test_derm7p_clinic);
    tcase_add_test(derm, test_derm7p_bad_rows);
    tcase_add_test(derm, test_derm7p_skip_bad);
    tcase_add_test(derm, test_derm7p_bad_index_files);
    suite_add_tcase(s, derm);
    TCase *pad = tcase_create("padchest_gr");
    tcase_add_test(pad, test_padchest_reads_release);
    tcase_add_test(pad, test_padchest_min_cases);
    tcase_add_test(pad, test_padchest_bad_studies);
    tcase_add_test(pad, test_padchest_stratified_split);
    suite_add_tcase(s, pad);
    TCase *man = tcase_create("manifest");
    tcase_add_test(man, test_manifest_derived_hierarchy);
    tcase_add_test(man, test_manifest_errors);
    suite_add_tcase(s, man);
    TCase *strat = tcase_create("stratify");
    tcase_add_test(strat, test_stratify_single_label);
    tcase_add_test(strat, test_stratify_multi_label);
    tcase_add_test(strat, test_stratify_worked_example);
    tcase_add_test(strat, test_stratify_groups);
    tcase_add_test(strat, test_stratified_subset);
    suite_add_tcase(s, strat);
    TCase *synth = tcase_create("synthetic");
    tcase_set_timeout(synth, 60);
    tcase_set_tags(synth, "slow");
    tcase_add_test(synth, test_synthetic_derm7p_counts);
    suite_add_tcase(s, synth);
    return s;
}
