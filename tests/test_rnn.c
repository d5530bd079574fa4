/*
 * test_rnn.c - every RNN program of tests/tf/rnn_programs.txt, built with recur, against the
 * golden files TensorFlow wrote: variable names and shapes (in creation order), static output
 * shapes, and outputs and final states within 1e-5 on both the step-loop path and the fused
 * path; the two paths agree within 1e-6. Plus the RNN errors of the spec.
 */
#include "runner.h"
#include "rnn_dsl.h"

static void check_vars(rd_prog *p)
{
    recur_tensor *vars[256];
    long nv = recur_get_collection(p->g, RECUR_GLOBAL_VARIABLES, NULL, vars, 256);
    long k = 0;
    for (int i = 0; i < p->gf->nmeta; i++) {
        if (strcmp(p->gf->meta[i].key, "var")) continue;
        char want[512], got[512], shp[128];
        snprintf(want, sizeof want, "%s", p->gf->meta[i].value);
        if (k >= nv) rt_fail(__FILE__, __LINE__, "%s: missing variable %s", p->name, want);
        snprintf(got, sizeof got, "%s %s", recur_variable_name(vars[k]),
                 recur_shape_str(recur_tensor_shape(vars[k]), shp, sizeof shp));
        if (strcmp(want, got)) rt_fail(__FILE__, __LINE__, "%s: variable %ld is \"%s\", TensorFlow has \"%s\"", p->name, k, got, want);
        k++;
    }
    if (k != nv) rt_fail(__FILE__, __LINE__, "%s: recur made %ld variables, TensorFlow %ld", p->name, nv, k);
}

static void check_shapes(rd_prog *p)
{
    for (int i = 0; i < p->gf->nmeta; i++) {
        if (strcmp(p->gf->meta[i].key, "shape")) continue;
        char name[256], want[128];
        const char *v = p->gf->meta[i].value, *sp = strchr(v, ' ');
        snprintf(name, sizeof name, "%.*s", (int)(sp - v), v);
        snprintf(want, sizeof want, "%s", sp + 1);
        if (!strcmp(name, "input")) continue;
        for (int r = 0; r < p->nresults; r++) {
            if (strcmp(p->results[r].name, name)) continue;
            char got[128];
            recur_shape_str(recur_tensor_shape(p->results[r].t), got, sizeof got);
            if (strcmp(got, want)) rt_fail(__FILE__, __LINE__, "%s: static shape of %s is %s, TensorFlow's %s", p->name, name, got, want);
        }
    }
}

/* Run all results on one path; returns the arrays (caller frees). */
static recur_array **run_path(rd_prog *p, recur_rnn_path path)
{
    recur_session *s = rd_session(p, &(recur_session_opts){.rnn_path = path});
    ASSERT_TRUE(s != NULL);
    recur_feed feeds[RD_MAX];
    recur_array *keep[RD_MAX];
    int nf = rd_feeds(p, feeds, keep);
    recur_tensor *fetch[RD_MAX];
    for (int i = 0; i < p->nresults; i++) fetch[i] = p->results[i].t;
    recur_array **out = calloc((size_t)p->nresults + 1, sizeof *out);
    recur_status *st = recur_status_new();
    recur_session_run(s, feeds, nf, fetch, out, p->nresults, NULL, 0, st);
    if (!recur_status_ok(st)) rt_fail(__FILE__, __LINE__, "%s: run failed: %s", p->name, recur_status_message(st));
    for (int i = 0; i < nf; i++) recur_array_free(keep[i]);
    recur_status_free(st);
    recur_session_free(s);
    return out;
}

TEST(rnn_programs_match_tensorflow)
{
    char **files = rd_list();
    ASSERT_TRUE(files && files[0]);
    int nprog = 0, nres = 0;
    double worst = 0, worst_paths = 0;
    for (int f = 0; files[f]; f++) {
        rd_prog *p = rd_build(files[f]);
        if (!p) rt_fail(__FILE__, __LINE__, "could not build %s", files[f]);
        check_vars(p);
        check_shapes(p);
        recur_array **loop = run_path(p, RECUR_RNN_LOOP), **fused = run_path(p, RECUR_RNN_FUSED);
        for (int i = 0; i < p->nresults; i++) {
            const gt_tensor *t = gt_find(p->gf, p->results[i].name);
            if (!t) rt_fail(__FILE__, __LINE__, "%s: golden has no %s", p->name, p->results[i].name);
            double dl = gt_max_abs_diff(t, loop[i]), df = gt_max_abs_diff(t, fused[i]);
            if (dl > 1e-5 || df > 1e-5)
                rt_fail(__FILE__, __LINE__, "%s: %s differs from TensorFlow by %g (loop) / %g (fused)", p->name,
                        p->results[i].name, dl, df);
            double dp = 0;
            const float *a = recur_array_cdata(loop[i]), *b = recur_array_cdata(fused[i]);
            for (int64_t k = 0; k < recur_array_size(loop[i]); k++) dp = fmax(dp, fabs((double)a[k] - b[k]));
            if (dp > 1e-6) rt_fail(__FILE__, __LINE__, "%s: %s: loop and fused paths differ by %g", p->name, p->results[i].name, dp);
            worst = fmax(worst, fmax(dl, df));
            worst_paths = fmax(worst_paths, dp);
            recur_array_free(loop[i]);
            recur_array_free(fused[i]);
            nres++;
        }
        free(loop);
        free(fused);
        rd_free(p);
        nprog++;
    }
    printf("  %d programs, %d outputs/states; max |recur - TF| = %.2g, max |loop - fused| = %.2g\n", nprog, nres, worst,
           worst_paths);
    ASSERT_TRUE(nprog >= 30);
    rd_list_free(files);
}

RUN_TESTS(T(rnn_programs_match_tensorflow))
