/* check_svg.c — tests for io.c section 14 (SVG charts).
 *
 * The XML checker of xml_check.h reads every file the tests write and
 * counts its elements by name and by class, so a test can ask "one
 * polyline per series, one error bar per point, one legend entry per
 * method". */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_util.h"
#include "formats_util.h"
#include "xml_check.h"

/* The checker must be able to say no. */
START_TEST(test_svg_checker_rejects_bad_xml)
{
    static const char *const bad[] = {
        "<svg><g></svg>",                    /* unbalanced */
        "<svg><g></h></svg>",                /* mismatched */
        "<svg a=b></svg>",                   /* unquoted attribute */
        "<svg><text>1 < 2</text></svg>",     /* raw < */
        "<svg><text>R&D</text></svg>",       /* bare & */
        "<svg/><svg/>",                      /* two roots */
        "<svg><text>\xff</text></svg>",      /* invalid UTF-8 */
        "<svg x=\"1\"y=\"2\"/>",             /* attributes run together */
    };
    xml_stats st;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!xml_well_formed(bad[i], &st), "accepted: %s", bad[i]);
    ck_assert(xml_well_formed("<?xml version=\"1.0\"?>\n<svg a='1'><g><text>&amp;&#65;</text></g><b/></svg>\n", &st));
    ck_assert_int_eq(xml_get(&st, "g"), 1);
}
END_TEST

/* ---- line charts ---------------------------------------------------------- */

static const double fractions[5] = {0.05, 0.1, 0.25, 0.5, 1.0};

/* A Fig. 2–style grid: four metrics, four methods over five fractions,
 * error bars for the trained methods, the loss-weighted probe dashed. */
START_TEST(test_svg_fig2_panels)
{
    static const char *const metrics[4] = {"accuracy", "macro recall", "macro F1", "AUC"};
    static const char *const methods[4] = {"zero-shot", "linear probe", "linear probe + loss weighting",
                                           "SCALE <adapter> & \"SupCon\""};
    double mean[4][4][5], std[4][4][5];
    for (int m = 0; m < 4; m++)
        for (int k = 0; k < 4; k++)
            for (int f = 0; f < 5; f++) {
                mean[m][k][f] = 0.4 + 0.1 * k + 0.05 * f + 0.01 * m;
                std[m][k][f] = f == 4 ? 0.0 : 0.02; /* one subset at 1.0 */
            }
    sc_plot_series series[4][4];
    sc_line_chart panels[4];
    for (int m = 0; m < 4; m++) {
        for (int k = 0; k < 4; k++) {
            sc_plot_series s = {methods[k], fractions, mean[m][k], k == 0 ? NULL : std[m][k], 5, -1, k == 2};
            series[m][k] = s;
        }
        sc_line_chart c = {metrics[m], "fraction of training data", metrics[m], 1, 0, 1, NULL, 0, series[m], 4};
        panels[m] = c;
    }
    const char *path = join_path(sc_test_tmpdir(), "fig2.svg");
    sc_err err;
    ck_assert_int_eq(sc_svg_line_panels(path, "Derm7p, class level", panels, 4, 2, &err), SC_OK);
    xml_stats st;
    char *doc = read_svg(path, &st);
    ck_assert_int_eq(xml_get(&st, "class=panel"), 4);
    ck_assert_int_eq(xml_get(&st, "class=series"), 16);
    ck_assert_int_eq(xml_get(&st, "polyline"), 16);            /* one line per method and panel */
    ck_assert_int_eq(xml_get(&st, "class=errorbar"), 4 * 3 * 5); /* zero-shot has none */
    ck_assert_int_eq(xml_get(&st, "class=legend-entry"), 4);
    ck_assert_int_eq(xml_get(&st, "dashed"), 4 + 1);            /* four panels and the legend */
    ck_assert_int_eq(xml_get(&st, "class=marker"), 4 * 4 * 5 + 4);
    ck_assert_ptr_nonnull(strstr(doc, ">SCALE &lt;adapter&gt; &amp; &quot;SupCon&quot;</text>"));
    ck_assert_ptr_nonnull(strstr(doc, ">Derm7p, class level</text>"));
    /* Log axis over 0.05..1: ticks at 1-2-5 steps, the y range fixed. */
    static const char *const x_ticks[] = {">0.05<", ">0.1<", ">0.2<", ">0.5<", ">1<"};
    for (int i = 0; i < 5; i++) ck_assert_msg(strstr(doc, x_ticks[i]) != NULL, "no tick %s", x_ticks[i]);
    ck_assert_int_eq(xml_get(&st, "class=tick"), 4 * (5 + 6));  /* x: 5 ticks, y: 0.0 0.2 ... 1.0 */
    free(doc);
}
END_TEST

/* The pixel positions, from the documented geometry: a 340×270 panel,
 * plot frame at x 58..326 and y 30..224, data inset 8 px inside it. So
 * x = 0 → 66, x = 1 → 318; y = 0 → 216, y = 1 → 38. */
START_TEST(test_svg_line_geometry)
{
    const double x[3] = {0, 0.5, 1}, y[3] = {0, 0.25, 1}, e[3] = {0.1, 0.1, 0.1};
    sc_plot_series s = {"m", x, y, e, 3, 0, 0};
    sc_line_chart c = {NULL, "x", "y", 0, 0, 1, NULL, 0, &s, 1};
    const char *path = join_path(sc_test_tmpdir(), "one.svg");
    sc_err err;
    ck_assert_int_eq(sc_svg_line_chart(path, &c, &err), SC_OK);
    xml_stats st;
    char *doc = read_svg(path, &st);
    ck_assert_ptr_nonnull(strstr(doc, "points=\"66.00,216.00 192.00,171.50 318.00,38.00 \""));
    /* error bar at x = 0.5: y 0.15 → 189.30, y 0.35 → 153.70; caps ±4 px */
    ck_assert_ptr_nonnull(strstr(doc, "d=\"M192.00,189.30 V153.70 M188.00,189.30 H196.00 M188.00,153.70 H196.00\""));
    static const char *const y_ticks[] = {">0.0<", ">0.2<", ">0.4<", ">0.6<", ">0.8<", ">1.0<"};
    for (int i = 0; i < 6; i++) ck_assert_msg(strstr(doc, y_ticks[i]) != NULL, "no tick %s", y_ticks[i]);
    ck_assert_ptr_nonnull(strstr(doc, "fill=\"#0072B2\""));  /* palette colour 0 */
    free(doc);
}
END_TEST

/* Nice numbers (Heckbert): data 0.43..0.87 → step 0.1, ticks 0.4..0.9. */
START_TEST(test_svg_nice_ticks)
{
    const double x[2] = {1, 2}, y[2] = {0.43, 0.87};
    sc_plot_series s = {"m", x, y, NULL, 2, -1, 0};
    sc_line_chart c = {"t", NULL, NULL, 0, 0, 0, NULL, 0, &s, 1};
    const char *path = join_path(sc_test_tmpdir(), "ticks.svg");
    sc_err err;
    ck_assert_int_eq(sc_svg_line_chart(path, &c, &err), SC_OK);
    xml_stats st;
    char *doc = read_svg(path, &st);
    static const char *const want[] = {">0.4<", ">0.5<", ">0.6<", ">0.7<", ">0.8<", ">0.9<"};
    for (int i = 0; i < 6; i++) ck_assert_msg(strstr(doc, want[i]) != NULL, "no tick %s", want[i]);
    ck_assert_ptr_null(strstr(doc, ">0.3<"));
    /* x 1..2 → step 0.2 (nice(nice(1)/4) = nice(0.25) = 0.2), 1.0 .. 2.0 */
    ck_assert_ptr_nonnull(strstr(doc, ">1.2<"));
    ck_assert_int_eq(xml_get(&st, "class=tick"), 6 + 6);
    free(doc);
}
END_TEST

START_TEST(test_svg_missing_values)
{
    const double nan = (double)NAN;
    const double x[5] = {0.05, 0.1, 0.25, 0.5, 1.0};
    const double gap[5] = {0.5, 0.6, nan, 0.7, 0.8};        /* one line broken in two */
    const double err[5] = {0.1, nan, 0.1, -1, HUGE_VAL};    /* only the first bar drawn */
    const double none[5] = {nan, nan, nan, nan, nan};
    const double xbad[5] = {-1, 0, 0.25, 0.5, 1.0};         /* x <= 0 on a log axis */
    sc_plot_series s[4] = {
        {"gap", x, gap, err, 5, -1, 0},
        {"all NaN", x, none, NULL, 5, -1, 0},
        {"empty", NULL, NULL, NULL, 0, -1, 1},
        {"nonpositive x", xbad, gap, NULL, 5, -1, 0},
    };
    sc_line_chart c = {"gaps", "fraction", "value", 1, 0, 0, fractions, 5, s, 4};
    const char *path = join_path(sc_test_tmpdir(), "gaps.svg");
    sc_err e;
    ck_assert_int_eq(sc_svg_line_chart(path, &c, &e), SC_OK);
    xml_stats st;
    char *doc = read_svg(path, &st);
    ck_assert_int_eq(xml_get(&st, "polyline"), 2 + 0 + 0 + 1);
    ck_assert_int_eq(xml_get(&st, "class=errorbar"), 1);
    ck_assert_int_eq(xml_get(&st, "class=legend-entry"), 4);
    ck_assert_ptr_nonnull(strstr(doc, ">all NaN (no data)</text>"));
    ck_assert_ptr_nonnull(strstr(doc, ">empty (no data)</text>"));
    ck_assert_ptr_null(strstr(doc, "nan"));  /* no NaN ever printed as a coordinate */
    ck_assert_ptr_null(strstr(doc, "inf"));
    free(doc);

    /* Nothing drawable at all: still a valid chart with axes. */
    sc_line_chart empty = {"nothing", "x", "y", 0, 0, 0, NULL, 0, &s[1], 1};
    ck_assert_int_eq(sc_svg_line_chart(path, &empty, &e), SC_OK);
    doc = read_svg(path, &st);
    ck_assert_int_eq(xml_get(&st, "polyline"), 0);
    ck_assert_int_ge(xml_get(&st, "class=tick"), 4);
    free(doc);
}
END_TEST

START_TEST(test_svg_bad_arguments_and_write_failure)
{
    sc_err err;
    const char *dir = sc_test_tmpdir();
    ck_assert_int_eq(sc_svg_line_panels(join_path(dir, "a.svg"), "t", NULL, 0, 1, &err), SC_EARG);
    ck_assert_msg(strstr(err.msg, "a.svg: 0 panels") != NULL, "%s", err.msg);
    sc_plot_series s = {"broken", NULL, NULL, NULL, 3, -1, 0};
    sc_line_chart c = {"t", NULL, NULL, 0, 0, 0, NULL, 0, &s, 1};
    ck_assert_int_eq(sc_svg_line_chart(join_path(dir, "b.svg"), &c, &err), SC_EARG);
    ck_assert_msg(strstr(err.msg, "series 'broken'") != NULL, "%s", err.msg);
    /* A missing directory: SC_EIO, and no file (or temp file) appears. */
    const double x[1] = {1}, y[1] = {1};
    sc_plot_series ok = {"ok", x, y, NULL, 1, -1, 0};
    c.series = &ok;
    ck_assert_int_eq(sc_svg_line_chart(join_path(dir, "no/such/dir.svg"), &c, &err), SC_EIO);
}
END_TEST

/* ---- scatter plots -------------------------------------------------------- */

START_TEST(test_svg_scatter_fig4)
{
    /* Two maps of 30 points in 3 categories (plus two NaN points). */
    double xy[2][32 * 2];
    int cat[32];
    for (int i = 0; i < 32; i++) {
        cat[i] = i % 3;
        for (int p = 0; p < 2; p++) {
            xy[p][2 * i] = cat[i] * 10.0 + 0.1 * i * (p + 1);
            xy[p][2 * i + 1] = -5.0 * cat[i] + 0.05 * i;
        }
    }
    xy[0][2 * 31] = (double)NAN;
    xy[1][2 * 30 + 1] = HUGE_VAL;
    const char *names[3] = {"left pleural", "right costophrenic angle", "Latin-1 \xe9t\xe9 <bad>"};
    sc_scatter_panel panels[2] = {{"zero-shot MedCLIP", xy[0], cat, 32}, {"SCALE", xy[1], cat, 32}};
    const char *path = join_path(sc_test_tmpdir(), "fig4.svg");
    sc_err err;
    ck_assert_int_eq(sc_svg_scatter(path, "pleural effusion", panels, 2, names, 3, &err), SC_OK);
    xml_stats st;
    char *doc = read_svg(path, &st);
    ck_assert_int_eq(xml_get(&st, "class=panel"), 2);
    ck_assert_int_eq(xml_get(&st, "class=point"), 31 + 31);
    ck_assert_int_eq(xml_get(&st, "class=legend-entry"), 3);
    /* Invalid UTF-8 became U+FFFD; the specials became entities. */
    ck_assert_ptr_nonnull(strstr(doc, ">Latin-1 \xEF\xBF\xBDt\xEF\xBF\xBD &lt;bad&gt;</text>"));
    free(doc);

    /* More categories than colours: the ninth changes marker shape. */
    int nine[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    double xy9[18] = {0};
    for (int i = 0; i < 9; i++) xy9[2 * i] = i;
    const char *nnames[9] = {"a", "b", "c", "d", "e", "f", "g", "h", "i"};
    sc_scatter_panel p9 = {NULL, xy9, nine, 9};
    ck_assert_int_eq(sc_svg_scatter(path, NULL, &p9, 1, nnames, 9, &err), SC_OK);
    doc = read_svg(path, &st);
    ck_assert_int_eq(xml_get(&st, "circle"), 8 + 8);  /* points and legend markers */
    ck_assert_int_eq(xml_get(&st, "class=point"), 9);
    free(doc);

    /* A category outside the named ones is refused, and no file is made. */
    cat[5] = 3;
    const char *bad = join_path(sc_test_tmpdir(), "bad.svg");
    ck_assert_int_eq(sc_svg_scatter(bad, "x", panels, 2, names, 3, &err), SC_ERANGE);
    ck_assert_msg(strstr(err.msg, "panel 1, point 5: category 3 is outside [0, 3)") != NULL, "%s", err.msg);
    FILE *f = fopen(bad, "rb");
    ck_assert_ptr_null(f);
}
END_TEST

Suite *suite_svg(void)
{
    Suite *s = suite_create("svg");
    TCase *tc = tcase_create("svg");
    tcase_add_test(tc, test_svg_checker_rejects_bad_xml);
    tcase_add_test(tc, test_svg_fig2_panels);
    tcase_add_test(tc, test_svg_line_geometry);
    tcase_add_test(tc, test_svg_nice_ticks);
    tcase_add_test(tc, test_svg_missing_values);
    tcase_add_test(tc, test_svg_bad_arguments_and_write_failure);
    tcase_add_test(tc, test_svg_scatter_fig4);
    suite_add_tcase(s, tc);
    return s;
}
