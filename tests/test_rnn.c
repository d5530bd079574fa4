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

/* ------------------------------------------------------------------ bad input */

static recur_status *st;

#define EXPECT_GRAPH_ERR(g, cond, needle)                                                      \
    do {                                                                                       \
        ASSERT_TRUE(cond);                                                                     \
        ASSERT_STR_CONTAINS(recur_graph_message(g), needle);                                   \
        recur_graph_clear_error(g);                                                            \
    } while (0)

TEST(build_time_errors)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *x2 = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(4, 7), "x2");
    recur_tensor *xq = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(4, 7, -1), "xq");
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(4, 7, 3), "x");
    recur_tensor *xi = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(4, 7, 3), "xi");
    recur_cell *c = recur_basic_lstm_cell(g, 5, NULL);
    recur_rnn_opts f32 = {.dtype = RECUR_F32};
    EXPECT_GRAPH_ERR(g, !recur_dynamic_rnn(g, c, x2, &f32).outputs, "Expected input tensor x2:0 to have rank 3");
    EXPECT_GRAPH_ERR(g, !recur_dynamic_rnn(g, c, xq, &f32).outputs,
                     "Input size (depth of inputs) must be accessible via shape inference, but saw value None.");
    EXPECT_GRAPH_ERR(g, !recur_dynamic_rnn(g, c, xi, &f32).outputs, "RNN cell only supports floating point inputs");
    EXPECT_GRAPH_ERR(g, !recur_dynamic_rnn(g, c, x, NULL).outputs, "If there is no initial_state, you must give a dtype.");
    EXPECT_GRAPH_ERR(g, !recur_dynamic_rnn(g, NULL, x, &f32).outputs, "is not an RNNCell");
    recur_tensor *len2 = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(4, 1), "len2");
    EXPECT_GRAPH_ERR(g, !recur_dynamic_rnn(g, c, x, &(recur_rnn_opts){.dtype = RECUR_F32, .sequence_length = len2}).outputs,
                     "sequence_length must be a vector of length batch_size, but saw shape: (4, 1)");
    recur_tensor *len3 = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(3), "len3");
    EXPECT_GRAPH_ERR(g, !recur_dynamic_rnn(g, c, x, &(recur_rnn_opts){.dtype = RECUR_F32, .sequence_length = len3}).outputs,
                     "but saw shape: [3]");
    /* initial state of the wrong batch size or width */
    recur_tensor *s3[2] = {recur_placeholder(g, RECUR_F32, RECUR_SHAPE(3, 5), NULL), recur_placeholder(g, RECUR_F32, RECUR_SHAPE(3, 5), NULL)};
    EXPECT_GRAPH_ERR(g, !recur_dynamic_rnn(g, c, x, &(recur_rnn_opts){.initial_state = s3}).outputs,
                     "Batch size mismatch: initial_state[0]");
    recur_tensor *s6[2] = {recur_placeholder(g, RECUR_F32, RECUR_SHAPE(4, 6), NULL), recur_placeholder(g, RECUR_F32, RECUR_SHAPE(4, 5), NULL)};
    EXPECT_GRAPH_ERR(g, !recur_dynamic_rnn(g, c, x, &(recur_rnn_opts){.initial_state = s6}).outputs,
                     "has shape (4, 6) but the cell's state 0 has size 5");
    /* failures leave no scope open */
    ASSERT_EQ_STR(recur_scope_name(recur_variable_scope_current(g)), "");
    ASSERT_EQ_STR(recur_name_scope_current(g), "");
    /* a new cell reusing a scope with another input depth: TensorFlow's share error */
    recur_tensor *x9 = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(4, 7, 9), "x9");
    recur_variable_scope_push(g, "shared", RECUR_AUTO_REUSE);
    ASSERT_TRUE(recur_dynamic_rnn(g, recur_basic_lstm_cell(g, 5, NULL), x, &f32).outputs != NULL);
    EXPECT_GRAPH_ERR(g, !recur_dynamic_rnn(g, recur_basic_lstm_cell(g, 5, NULL), x9, &f32).outputs,
                     "Trying to share variable shared/rnn/basic_lstm_cell/kernel, but specified shape (14, 20) and found shape (8, 20).");
    recur_variable_scope_pop(g);
    /* the same cell object with another input depth */
    ASSERT_TRUE(recur_dynamic_rnn(g, c, x, &f32).outputs != NULL);
    EXPECT_GRAPH_ERR(g, !recur_dynamic_rnn(g, c, x9, &f32).outputs, "was built for input depth 3");
    /* cell constructors */
    EXPECT_GRAPH_ERR(g, !recur_basic_lstm_cell(g, 0, NULL), "num_units must be in [1,");
    EXPECT_GRAPH_ERR(g, !recur_multi_rnn_cell(g, NULL, 0, NULL), "Must specify at least one cell for MultiRNNCell.");
    EXPECT_GRAPH_ERR(g, !recur_dropout_wrapper(g, c, &(recur_dropout_opts){.input_keep_prob = 1.5}),
                     "Parameter input_keep_prob must be between 0 and 1: 1.5");
    EXPECT_GRAPH_ERR(g, !recur_dropout_wrapper(g, c, &(recur_dropout_opts){.variational_recurrent = true}),
                     "When variational_recurrent=True, dtype must be provided");
    EXPECT_GRAPH_ERR(g, !recur_dropout_wrapper(g, c, &(recur_dropout_opts){.variational_recurrent = true, .dtype = RECUR_F32, .input_keep_prob = 0.5}),
                     "input_size must be provided");
    recur_tensor *steps[1] = {NULL};
    EXPECT_GRAPH_ERR(g, !recur_static_rnn(g, c, steps, 0, steps, &f32).outputs, "inputs must not be empty");
    EXPECT_GRAPH_ERR(g, !recur_stack_bidirectional_dynamic_rnn(g, NULL, NULL, 0, x, NULL).outputs_fw,
                     "Must specify at least one fw cell for BidirectionalRNN.");
    recur_graph_free(g);
}

TEST(run_time_errors)
{
    st = recur_status_new();
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, -1, 3), "x");
    recur_tensor *len = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(-1), "len");
    recur_tensor *h0 = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 4), "h0");
    recur_cell *c = recur_gru_cell(g, 4, NULL);
    recur_rnn_out r = recur_dynamic_rnn(g, c, x, &(recur_rnn_opts){.sequence_length = len, .initial_state = &h0});
    ASSERT_GRAPH_OK(g);
    for (int path = 1; path <= 2; path++) {
        recur_session *s = recur_session_new(g, &(recur_session_opts){.rnn_path = (recur_rnn_path)path}, st);
        recur_session_run_target(s, recur_global_variables_initializer(g), st);
        recur_array *xv = recur_array_new(RECUR_F32, RECUR_SHAPE(2, 5, 3), NULL), *hv = recur_array_new(RECUR_F32, RECUR_SHAPE(2, 4), NULL);
        recur_array *h3 = recur_array_new(RECUR_F32, RECUR_SHAPE(3, 4), NULL), *out = NULL;
        int32_t bad[][3] = {{5, -1}, {6, 1}, {2, 2, 2}};
        const char *want[] = {"sequence_length[1] = -1 is outside [0, 5]", "sequence_length[0] = 6 is outside [0, 5]",
                              "Expected shape for Tensor rnn/sequence_length:0 is [2] but saw shape: [3]"};
        for (int k = 0; k < 3; k++) {
            recur_array *lv = recur_array_from(RECUR_I32, RECUR_SHAPE(k == 2 ? 3 : 2), bad[k], NULL);
            recur_session_run(s, (recur_feed[]){{x, xv}, {len, lv}, {h0, hv}}, 3, &r.outputs, &out, 1, NULL, 0, st);
            ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
            ASSERT_STR_CONTAINS(recur_status_message(st), want[k]);
            ASSERT_TRUE(out == NULL);
            recur_array_free(lv);
        }
        recur_array *lv = recur_array_from(RECUR_I32, RECUR_SHAPE(2), (int32_t[]){5, 0}, NULL);
        recur_session_run(s, (recur_feed[]){{x, xv}, {len, lv}, {h0, h3}}, 3, &r.outputs, &out, 1, NULL, 0, st);
        ASSERT_STR_CONTAINS(recur_status_message(st), "Initial state 0 has shape [3,4] but the input has batch size 2");
        /* and a valid run still works afterwards (no leaked state) */
        recur_session_run(s, (recur_feed[]){{x, xv}, {len, lv}, {h0, hv}}, 3, &r.outputs, &out, 1, NULL, 0, st);
        ASSERT_OK(st);
        recur_array_free(out);
        recur_array_free(lv);
        recur_array_free(xv);
        recur_array_free(hv);
        recur_array_free(h3);
        recur_session_free(s);
    }
    recur_graph_free(g);
    recur_status_free(st);
}

/* A user-defined cell computing BasicRNNCell's math under BasicRNNCell's names. */
static bool my_cell_build(recur_graph *g, void *user, recur_tensor *x, recur_tensor *const *state, recur_tensor **out,
                          recur_tensor **new_state)
{
    int64_t units = *(int64_t *)user, d = recur_tensor_shape(x).dims[1];
    recur_tensor *k = recur_get_variable(g, "kernel", RECUR_SHAPE(d + units, units), NULL);
    recur_tensor *b = recur_get_variable(g, "bias", RECUR_SHAPE(units), NULL);
    recur_tensor *xh = recur_concat(g, (recur_tensor *[]){x, state[0]}, 2, 1);
    *out = recur_tanh(g, recur_bias_add(g, recur_matmul(g, xh, k, false, false), b));
    new_state[0] = *out;
    return *out != NULL;
}

TEST(custom_cell_runs_in_every_rnn_function)
{
    st = recur_status_new();
    int64_t units = 4;
    recur_cell_def def = {.name = "basic_rnn_cell", .num_state = 1, .state_size = {4}, .output_size = 4,
                          .build = my_cell_build, .user = &units};
    /* the same program with the built-in cell and with the custom one: same names, same numbers */
    recur_array *results[2][4];
    for (int v = 0; v < 2; v++) {
        recur_graph *g = recur_graph_new();
        recur_graph_set_seed(g, 7);
        recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2, 5, 3), "x");
        recur_tensor *len = recur_scalar_i32(g, 0);
        (void)len;
        recur_cell *a = v ? recur_custom_cell(g, &def) : recur_basic_rnn_cell(g, 4, NULL);
        recur_cell *b = v ? recur_custom_cell(g, &def) : recur_basic_rnn_cell(g, 4, NULL);
        recur_rnn_out d = recur_dynamic_rnn(g, a, x, &(recur_rnn_opts){.dtype = RECUR_F32});
        recur_birnn_out bi = recur_bidirectional_dynamic_rnn(g, a, b, x, &(recur_birnn_opts){.dtype = RECUR_F32});
        recur_tensor *steps[5], *outs[5];
        ASSERT_TRUE(recur_unstack(g, x, 1, steps, 5));
        recur_rnn_out sr = recur_static_rnn(g, a, steps, 5, outs, &(recur_rnn_opts){.dtype = RECUR_F32});
        ASSERT_GRAPH_OK(g);
        recur_tensor *vars[8];
        ASSERT_EQ_INT(recur_get_collection(g, RECUR_GLOBAL_VARIABLES, NULL, vars, 8), 4);
        ASSERT_EQ_STR(recur_variable_name(vars[0]), "rnn/basic_rnn_cell/kernel");
        ASSERT_EQ_STR(recur_variable_name(vars[2]), "bidirectional_rnn/bw/basic_rnn_cell/kernel");
        recur_session *s = recur_session_new(g, NULL, st);
        for (int i = 0; i < 4; i++) { /* the same weights in both programs */
            recur_array *w = recur_array_new(RECUR_F32, recur_tensor_shape(vars[i]), NULL);
            for (int64_t k = 0; k < recur_array_size(w); k++) recur_array_f32(w)[k] = (float)((k * 7 + i) % 11) / 11.0f - 0.5f;
            recur_session_set_variable(s, vars[i], w, st);
            recur_array_free(w);
        }
        recur_array *xv = recur_array_new(RECUR_F32, RECUR_SHAPE(2, 5, 3), NULL);
        for (int i = 0; i < 30; i++) recur_array_f32(xv)[i] = (float)(i % 7) / 7.0f - 0.4f;
        recur_session_run(s, (recur_feed[]){{x, xv}}, 1, (recur_tensor *[]){d.outputs, bi.outputs_fw, bi.outputs_bw, sr.state[0]},
                          results[v], 4, NULL, 0, st);
        ASSERT_OK(st);
        recur_array_free(xv);
        recur_session_free(s);
        recur_graph_free(g);
    }
    for (int i = 0; i < 4; i++) {
        for (int64_t k = 0; k < recur_array_size(results[0][i]); k++)
            ASSERT_NEAR(recur_array_f32(results[1][i])[k], recur_array_f32(results[0][i])[k], 1e-6);
        recur_array_free(results[0][i]);
        recur_array_free(results[1][i]);
    }
    recur_status_free(st);
}

/* A broken user cell: returns its input as the new state. */
static bool bad_build(recur_graph *g, void *user, recur_tensor *x, recur_tensor *const *state, recur_tensor **out,
                      recur_tensor **new_state)
{
    (void)g;
    (void)user;
    *out = state[0];
    new_state[0] = x;
    return true;
}

TEST(custom_cell_errors)
{
    recur_graph *g = recur_graph_new();
    EXPECT_GRAPH_ERR(g, !recur_custom_cell(g, &(recur_cell_def){.name = "c", .num_state = 0, .output_size = 1, .build = my_cell_build}),
                     "num_state must be in [1,");
    EXPECT_GRAPH_ERR(g, !recur_custom_cell(g, &(recur_cell_def){.name = "c", .num_state = 1, .output_size = 1}), "not an RNNCell");
    recur_cell *c = recur_custom_cell(g, &(recur_cell_def){.name = "c", .num_state = 1, .state_size = {4}, .output_size = 4,
                                                          .build = bad_build});
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2, 5, 3), "x");
    EXPECT_GRAPH_ERR(g, !recur_dynamic_rnn(g, c, x, &(recur_rnn_opts){.dtype = RECUR_F32}).outputs,
                     "Custom cell c: new state 0 has shape (2, 3), expected (?, 4)");
    ASSERT_EQ_STR(recur_scope_name(recur_variable_scope_current(g)), "");
    recur_graph_free(g);
}

TEST(dropout_wrapper_statistics)
{
    st = recur_status_new();
    for (int variational = 0; variational < 2; variational++) {
        recur_graph *g = recur_graph_new();
        recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(64, 10, 8), "x");
        recur_cell *c = recur_dropout_wrapper(g, recur_basic_rnn_cell(g, 50, &(recur_cell_opts){.activation = RECUR_ACT_IDENTITY}),
                                              &(recur_dropout_opts){.output_keep_prob = 0.6, .seed = 3,
                                                                    .variational_recurrent = variational, .dtype = RECUR_F32});
        recur_tensor *y = recur_dynamic_rnn(g, c, x, &(recur_rnn_opts){.dtype = RECUR_F32}).outputs;
        ASSERT_GRAPH_OK(g);
        recur_session *s = recur_session_new(g, NULL, st);
        recur_session_run_target(s, recur_global_variables_initializer(g), st);
        recur_array *xv = recur_array_new(RECUR_F32, RECUR_SHAPE(64, 10, 8), NULL), *out = NULL;
        for (int64_t i = 0; i < recur_array_size(xv); i++) recur_array_f32(xv)[i] = 0.5f + (float)(i % 13) / 13.0f;
        recur_session_run(s, (recur_feed[]){{x, xv}}, 1, &y, &out, 1, NULL, 0, st);
        ASSERT_OK(st);
        const float *o = recur_array_f32(out);
        int64_t zeros = 0, n = recur_array_size(out), same = 0;
        for (int64_t i = 0; i < n; i++) zeros += o[i] == 0;
        ASSERT_NEAR((double)zeros / n, 0.4, variational ? 0.15 : 0.02); /* variational: only 50 mask values */
        /* variational: one mask for every time step and batch row */
        for (int64_t b = 0; b < 64; b++)
            for (int64_t t = 1; t < 10; t++)
                for (int64_t k = 0; k < 50; k++) same += (o[(b * 10 + t) * 50 + k] == 0) == (o[k] == 0);
        if (variational) ASSERT_EQ_INT(same, 64 * 9 * 50);
        else ASSERT_TRUE(same < 64 * 9 * 50 * 0.7);
        recur_array_free(out);
        recur_array_free(xv);
        recur_session_free(s);
        recur_graph_free(g);
    }
    recur_status_free(st);
}

TEST(float64_rnn_runs_on_the_loop_path)
{
    st = recur_status_new();
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F64, RECUR_SHAPE(2, 4, 3), "x");
    recur_tensor *y = recur_dynamic_rnn(g, recur_basic_lstm_cell(g, 3, NULL), x, &(recur_rnn_opts){.dtype = RECUR_F64}).outputs;
    ASSERT_GRAPH_OK(g);
    ASSERT_EQ_INT(recur_tensor_dtype(y), RECUR_F64);
    recur_session *s = recur_session_new(g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_array *xv = recur_array_new(RECUR_F64, RECUR_SHAPE(2, 4, 3), NULL), *out = NULL;
    recur_session_run(s, (recur_feed[]){{x, xv}}, 1, &y, &out, 1, NULL, 0, st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(recur_array_dtype(out), RECUR_F64);
    recur_array_free(out);
    recur_array_free(xv);
    recur_session_free(s);
    recur_graph_free(g);
    recur_status_free(st);
}

/* Small-batch inference keeps its packed weights between runs while no variable is written:
 * after every way of writing one (set_variable, an Assign op, an optimizer step) the next run
 * must use the new values, i.e. agree exactly with a fresh session holding them. */
static recur_array *run_once(recur_graph *g, recur_session *s, recur_tensor *x, recur_array *xv, recur_tensor *y)
{
    recur_array *out = NULL;
    recur_session_run(s, (recur_feed[]){{x, xv}}, 1, &y, &out, 1, NULL, 0, st);
    ASSERT_OK(st);
    return out;
}

static bool same(const recur_array *a, const recur_array *b)
{
    return recur_array_size(a) == recur_array_size(b) &&
           !memcmp(recur_array_cdata(a), recur_array_cdata(b), (size_t)recur_array_size(a) * sizeof(float));
}

TEST(kept_packed_weights_follow_variable_writes)
{
    st = recur_status_new();
    for (int64_t B = 1; B <= 3; B += 2) {
        recur_graph *g = recur_graph_new();
        recur_graph_set_seed(g, 3);
        recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(B, 6, 4), "x");
        recur_tensor *y = recur_dynamic_rnn(g, recur_basic_lstm_cell(g, 64, NULL), x, &(recur_rnn_opts){.dtype = RECUR_F32}).outputs;
        recur_tensor *vars[4];
        ASSERT_EQ_INT((int)recur_get_collection(g, RECUR_TRAINABLE_VARIABLES, NULL, vars, 4), 2);
        recur_tensor *kern = vars[0];
        recur_op *scale = recur_tensor_op(recur_assign(g, kern, recur_mul(g, kern, recur_scalar_f32(g, 0.5f))));
        recur_tensor *loss = recur_reduce_sum(g, recur_square(g, y), NULL, 0, false);
        recur_optimizer *opt = recur_optimizer_new(g, &(recur_optimizer_opts){.kind = RECUR_OPT_GRADIENT_DESCENT, .learning_rate = 0.1});
        recur_op *train = recur_optimizer_minimize(opt, loss, NULL, NULL, 0);
        ASSERT_GRAPH_OK(g);
        recur_array *xv = recur_array_new(RECUR_F32, RECUR_SHAPE(B, 6, 4), NULL);
        for (int64_t i = 0; i < recur_array_size(xv); i++) ((float *)recur_array_data(xv))[i] = (float)sin(0.3 * (double)i);
        recur_session *s = recur_session_new(g, &(recur_session_opts){.num_threads = 2}, st);
        recur_session_run_target(s, recur_global_variables_initializer(g), st);
        recur_array *y0 = run_once(g, s, x, xv, y), *y1 = run_once(g, s, x, xv, y);
        ASSERT_TRUE(same(y0, y1));
        for (int way = 0; way < 3; way++) {
            if (way == 0) {
                recur_array *k = recur_session_get_variable(s, kern, st);
                ASSERT_OK(st);
                for (int64_t i = 0; i < recur_array_size(k); i++) ((float *)recur_array_data(k))[i] *= -1.0f;
                recur_session_set_variable(s, kern, k, st);
                ASSERT_OK(st);
                recur_array_free(k);
            } else {
                recur_op *t = way == 1 ? scale : train;
                recur_session_run(s, (recur_feed[]){{x, xv}}, 1, NULL, NULL, 0, &t, 1, st);
                ASSERT_OK(st);
            }
            recur_array *yn = run_once(g, s, x, xv, y);
            ASSERT_TRUE(!same(yn, y0));
            /* a fresh session with the same values */
            recur_session *f = recur_session_new(g, &(recur_session_opts){.num_threads = 2}, st);
            for (int v = 0; v < 2; v++) {
                recur_array *val = recur_session_get_variable(s, vars[v], st);
                recur_session_set_variable(f, vars[v], val, st);
                recur_array_free(val);
            }
            ASSERT_OK(st);
            recur_array *yf = run_once(g, f, x, xv, y);
            ASSERT_TRUE(same(yn, yf));
            recur_array_free(yf);
            recur_session_free(f);
            recur_array_free(y0);
            y0 = yn;
        }
        recur_array_free(y0);
        recur_array_free(y1);
        recur_array_free(xv);
        recur_session_free(s);
        recur_graph_free(g);
    }
    recur_status_free(st);
}

/* Outputs at and past a row's length are zero, also when the run's output buffer is one a run
 * with longer rows filled before (the fused kernels zero only those rows, and write the rest):
 * both layouts, both paths, one and two threads (a batch the fused kernels split). */
TEST(outputs_past_lengths_are_zero_in_reused_buffers)
{
    st = recur_status_new();
    const int64_t B = 17, T = 9, D = 3, H = 5;
    for (int c = 0; c < 8; c++) {
        bool tm = c & 1, loop = c & 2;
        int threads = c & 4 ? 2 : 1;
        recur_graph *g = recur_graph_new();
        recur_graph_set_seed(g, 5);
        recur_shape xs = tm ? RECUR_SHAPE(T, B, D) : RECUR_SHAPE(B, T, D);
        recur_tensor *x = recur_placeholder(g, RECUR_F32, xs, "x"), *len = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(B), "len");
        recur_tensor *y = recur_dynamic_rnn(g, recur_basic_lstm_cell(g, H, NULL), x,
                                            &(recur_rnn_opts){.dtype = RECUR_F32, .sequence_length = len, .time_major = tm})
                              .outputs;
        recur_tensor *z = recur_mul(g, y, recur_scalar_f32(g, 1.0f)); /* y itself stays internal: its buffer is reused */
        ASSERT_GRAPH_OK(g);
        recur_session *s = recur_session_new(g, &(recur_session_opts){.num_threads = threads, .rnn_path = loop ? RECUR_RNN_LOOP : RECUR_RNN_FUSED}, st);
        recur_session_run_target(s, recur_global_variables_initializer(g), st);
        recur_array *xv = recur_array_new(RECUR_F32, xs, NULL), *lv = recur_array_new(RECUR_I32, RECUR_SHAPE(B), NULL);
        for (int64_t i = 0; i < recur_array_size(xv); i++) ((float *)recur_array_data(xv))[i] = (float)sin(0.7 * (double)i) + 0.5f;
        for (int run = 0; run < 2; run++) {
            for (int64_t b = 0; b < B; b++) recur_array_i32(lv)[b] = run ? (int32_t)((b * 5) % (T + 1)) : (int32_t)T;
            recur_array *out = NULL;
            recur_session_run(s, (recur_feed[]){{x, xv}, {len, lv}}, 2, &z, &out, 1, NULL, 0, st);
            ASSERT_OK(st);
            const float *o = recur_array_cdata(out);
            for (int64_t b = 0; b < B; b++)
                for (int64_t t = 0; t < T; t++)
                    for (int64_t u = 0; u < H; u++) {
                        float v = o[((tm ? t * B + b : b * T + t) * H) + u];
                        bool past = t >= recur_array_i32(lv)[b];
                        if (past ? v != 0.0f : v == 0.0f)
                            rt_fail(__FILE__, __LINE__, "%s, %s, %d thread(s), run %d: row %lld step %lld unit %lld = %g (length %d)",
                                    tm ? "time-major" : "batch-major", loop ? "loop" : "fused", threads, run, (long long)b, (long long)t,
                                    (long long)u, v, recur_array_i32(lv)[b]);
                    }
            recur_array_free(out);
        }
        recur_array_free(xv);
        recur_array_free(lv);
        recur_session_free(s);
        recur_graph_free(g);
    }
    recur_status_free(st);
}

RUN_TESTS(T(rnn_programs_match_tensorflow), T(build_time_errors), T(run_time_errors),
          T(custom_cell_runs_in_every_rnn_function), T(custom_cell_errors), T(dropout_wrapper_statistics),
          T(float64_rnn_runs_on_the_loop_path), T(kept_packed_weights_follow_variable_writes),
          T(outputs_past_lengths_are_zero_in_reused_buffers))
