/*
 * test_session.c - sessions: feeds, fetches and targets; TensorFlow's run-time errors (missing
 * feed, wrong shape or dtype, uninitialised variable); initializers; independent sessions;
 * plan caching and buffer reuse; get_variable errors beyond TensorFlow's text; initializer
 * values against TensorFlow and their statistics.
 */
#include "runner.h"
#include "golden.h"
#include "exec/exec.h"

#include <sched.h>

static recur_status *st;

static void setup(void) { st = recur_status_new(); }

TEST(missing_feed_message)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 20, 10), "x");
    recur_tensor *y = recur_reduce_sum(g, x, NULL, 0, false);
    recur_session *s = recur_session_new(g, NULL, st);
    recur_array *out = (recur_array *)1;
    ASSERT_EQ_INT(recur_session_run(s, NULL, 0, &y, &out, 1, NULL, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_STARTS(recur_status_message(st),
                      "You must feed a value for placeholder tensor 'x' with dtype float and shape [?,20,10]");
    ASSERT_TRUE(out == NULL);
    recur_session_free(s);
    recur_graph_free(g);
}

TEST(feed_shape_and_dtype_checks)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 3), "x");
    recur_tensor *y = recur_identity(g, x, "y");
    recur_session *s = recur_session_new(g, NULL, st);
    recur_array *bad = recur_array_new(RECUR_F32, RECUR_SHAPE(2, 4), NULL), *out = NULL;
    recur_session_run(s, (recur_feed[]){{x, bad}}, 1, &y, &out, 1, NULL, 0, st);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Cannot feed value of shape (2, 4) for Tensor 'x:0', which has shape '(?, 3)'");
    recur_array *bad2 = recur_array_new(RECUR_I32, RECUR_SHAPE(2, 3), NULL);
    recur_session_run(s, (recur_feed[]){{x, bad2}}, 1, &y, &out, 1, NULL, 0, st);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Cannot feed value of dtype int32 for Tensor 'x:0', which has dtype float");
    recur_session_run(s, (recur_feed[]){{x, NULL}}, 1, &y, &out, 1, NULL, 0, st);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Feed value for x:0 is NULL");
    /* fetch and feed from another graph */
    recur_graph *h = recur_graph_new();
    recur_tensor *z = recur_placeholder(h, RECUR_F32, RECUR_SHAPE(1), "z");
    recur_session_run(s, NULL, 0, &z, &out, 1, NULL, 0, st);
    ASSERT_STR_CONTAINS(recur_status_message(st), "is not an element of this graph");
    recur_session_run(s, (recur_feed[]){{z, bad}}, 1, &y, &out, 1, NULL, 0, st);
    ASSERT_STR_CONTAINS(recur_status_message(st), "is not an element of this graph");
    /* inconsistent argument counts, NULL session, closed session */
    recur_session_run(s, NULL, 1, &y, &out, 1, NULL, 0, st);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    recur_session_run(NULL, NULL, 0, &y, &out, 1, NULL, 0, st);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    recur_session_close(s);
    recur_session_run(s, NULL, 0, &y, &out, 1, NULL, 0, st);
    ASSERT_STR_CONTAINS(recur_status_message(st), "closed Session");
    recur_array_free(bad);
    recur_array_free(bad2);
    recur_session_free(s);
    recur_graph_free(h);
    recur_graph_free(g);
}

TEST(uninitialized_variable_then_initializer)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_variable_scope_push(g, "layer1", RECUR_REUSE_INHERIT);
    recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(3, 2), &(recur_variable_opts){.initializer = recur_ones_initializer()});
    recur_variable_scope_pop(g);
    recur_tensor *y = recur_reduce_sum(g, w, NULL, 0, false);
    recur_session *s = recur_session_new(g, NULL, st);
    recur_array *out = NULL;
    recur_session_run(s, NULL, 0, &y, &out, 1, NULL, 0, st);
    ASSERT_CODE(st, RECUR_FAILED_PRECONDITION);
    ASSERT_STR_STARTS(recur_status_message(st), "Attempting to use uninitialized value layer1/w");
    ASSERT_FALSE(recur_session_variable_initialized(s, w));
    recur_op *init = recur_global_variables_initializer(g);
    ASSERT_EQ_STR(recur_op_name(init), "init");
    ASSERT_EQ_INT(recur_session_run_target(s, init, st), RECUR_OK);
    ASSERT_TRUE(recur_session_variable_initialized(s, w));
    recur_session_run(s, NULL, 0, &y, &out, 1, NULL, 0, st);
    ASSERT_OK(st);
    ASSERT_NEAR(recur_array_f32(out)[0], 6, 0);
    recur_array_free(out);
    recur_session_free(s);
    recur_graph_free(g);
}

TEST(variables_initializer_list_and_independent_sessions)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *a = recur_get_variable(g, "a", RECUR_SHAPE(2), &(recur_variable_opts){.initializer = recur_constant_initializer(3)});
    recur_tensor *b = recur_get_variable(g, "b", RECUR_SHAPE(2), &(recur_variable_opts){.initializer = recur_constant_initializer(5)});
    recur_op *ia = recur_variables_initializer(g, &a, 1);
    recur_tensor *inc = recur_assign_add(g, a, recur_fill(g, RECUR_F32, RECUR_SHAPE(2), 1));
    recur_session *s1 = recur_session_new(g, NULL, st), *s2 = recur_session_new(g, NULL, st);
    recur_session_run_target(s1, ia, st);
    ASSERT_OK(st);
    ASSERT_TRUE(recur_session_variable_initialized(s1, a));
    ASSERT_FALSE(recur_session_variable_initialized(s1, b));
    recur_session_run_target(s2, recur_global_variables_initializer(g), st);
    recur_array *out = NULL;
    for (int i = 0; i < 3; i++) {
        recur_session_run(s1, NULL, 0, &inc, &out, 1, NULL, 0, st);
        ASSERT_OK(st);
        recur_array_free(out);
    }
    recur_array *v1 = recur_session_get_variable(s1, a, st), *v2 = recur_session_get_variable(s2, a, st);
    ASSERT_NEAR(recur_array_f32(v1)[0], 6, 0);
    ASSERT_NEAR(recur_array_f32(v2)[0], 3, 0);
    /* set_variable checks dtype and shape */
    recur_array *wrong = recur_array_new(RECUR_F32, RECUR_SHAPE(3), NULL);
    ASSERT_EQ_INT(recur_session_set_variable(s2, a, wrong, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "lhs shape= [2] rhs shape= [3]");
    ASSERT_EQ_INT(recur_session_set_variable(s2, a, v1, st), RECUR_OK);
    recur_array_free(v2);
    v2 = recur_session_get_variable(s2, a, st);
    ASSERT_NEAR(recur_array_f32(v2)[1], 6, 0);
    recur_array_free(wrong);
    recur_array_free(v1);
    recur_array_free(v2);
    recur_session_free(s1);
    recur_session_free(s2);
    recur_graph_free(g);
}

TEST(steady_state_runs_do_not_allocate)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 8), "x");
    recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(8, 8), NULL);
    recur_tensor *h = recur_tanh(g, recur_matmul(g, x, w, false, false));
    recur_tensor *y = recur_reduce_mean(g, recur_square(g, h), NULL, 0, false);
    recur_tensor *upd = recur_assign_sub(g, w, recur_mul(g, w, recur_scalar_f32(g, 0.01f)));
    recur_session *s = recur_session_new(g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_array *xv = recur_array_new(RECUR_F32, RECUR_SHAPE(4, 8), NULL);
    recur_feed f = {x, xv};
    recur_op *t = recur_tensor_op(upd);
    recur_session_run(s, &f, 1, NULL, NULL, 0, &t, 1, st); /* warm-up: plan + pool */
    recur_session_run(s, &f, 1, NULL, NULL, 0, &t, 1, st);
    ASSERT_OK(st);
    long before = recur_alloc_count();
    for (int i = 0; i < 10; i++) recur_session_run(s, &f, 1, NULL, NULL, 0, &t, 1, st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(recur_alloc_count() - before, 0);
    /* A fetch hands a pooled buffer to the caller; the run then allocates one replacement. */
    recur_array *out = NULL;
    recur_session_run(s, &f, 1, &y, &out, 1, NULL, 0, st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(s->nplans, 3); /* initializer, update, fetch */
    recur_array_free(out);
    recur_array_free(xv);
    recur_session_free(s);
    recur_graph_free(g);
}

/* Batches whose sizes differ a little (sequences of other lengths, a short last batch) reuse
 * the pooled buffers: the pool hands out buffers in size classes, not exact sizes. */
TEST(runs_with_varying_shapes_reuse_the_pool)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 8), "x");
    recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(8, 8), NULL);
    recur_tensor *h = recur_tanh(g, recur_matmul(g, x, w, false, false));
    recur_tensor *upd = recur_assign_sub(g, w, recur_matmul(g, x, h, true, false));
    recur_session *s = recur_session_new(g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_op *t = recur_tensor_op(upd);
    recur_array *xs[4];
    int64_t rows[4] = {1000, 993, 1017, 961}; /* 30.0 to 31.8 KiB: one size class */
    for (int i = 0; i < 4; i++) xs[i] = recur_array_new(RECUR_F32, RECUR_SHAPE(rows[i], 8), NULL);
    for (int i = 0; i < 2; i++) recur_session_run(s, &(recur_feed){x, xs[0]}, 1, NULL, NULL, 0, &t, 1, st); /* warm-up */
    ASSERT_OK(st);
    long before = recur_alloc_count();
    for (int i = 0; i < 8; i++) recur_session_run(s, &(recur_feed){x, xs[i % 4]}, 1, NULL, NULL, 0, &t, 1, st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(recur_alloc_count() - before, 0);
    for (int i = 0; i < 4; i++) recur_array_free(xs[i]);
    recur_session_free(s);
    recur_graph_free(g);
}

TEST(bilstm_adam_training_steps_do_not_allocate)
{
    /* The classifier's step: dropout, BiLSTM with lengths, max-pool, Adam with clipping. */
    setup();
    recur_graph *g = recur_graph_new();
    recur_graph_set_seed(g, 1);
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 12, 6), "x");
    recur_tensor *len = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(-1), "len");
    recur_birnn_out r = recur_bidirectional_dynamic_rnn(g, recur_basic_lstm_cell(g, 8, NULL), recur_basic_lstm_cell(g, 8, NULL),
                                                        recur_dropout(g, x, recur_scalar_f32(g, 0.5f), 0),
                                                        &(recur_birnn_opts){.dtype = RECUR_F32, .sequence_length = len});
    recur_tensor *o = recur_concat(g, (recur_tensor *[]){r.outputs_fw, r.outputs_bw}, 2, 2);
    recur_tensor *loss = recur_reduce_mean(g, recur_square(g, recur_reduce_max(g, o, (int[]){1}, 1, false)), NULL, 0, false);
    recur_optimizer *opt = recur_optimizer_new(g, &(recur_optimizer_opts){.kind = RECUR_OPT_ADAM, .learning_rate = 0.01});
    recur_tensor *grads[8], *vars[8];
    int n = recur_optimizer_compute_gradients(opt, loss, NULL, 0, grads, vars, 8);
    recur_clip_by_global_norm(g, grads, n, 1.0, grads, NULL);
    recur_op *train = recur_optimizer_apply_gradients(opt, grads, vars, n, NULL);
    ASSERT_GRAPH_OK(g);
    recur_session *s = recur_session_new(g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_array *xv = recur_array_new(RECUR_F32, RECUR_SHAPE(5, 12, 6), NULL);
    for (int64_t i = 0; i < recur_array_size(xv); i++) ((float *)recur_array_data(xv))[i] = (float)((i * 37) % 11) / 11.0f;
    int32_t lv[5] = {12, 3, 7, 1, 9};
    recur_array *la = recur_array_from(RECUR_I32, RECUR_SHAPE(5), lv, NULL);
    recur_feed f[2] = {{x, xv}, {len, la}};
    for (int i = 0; i < 2; i++) recur_session_run(s, f, 2, NULL, NULL, 0, &train, 1, st); /* warm-up */
    ASSERT_OK(st);
    long before = recur_alloc_count();
    for (int i = 0; i < 5; i++) recur_session_run(s, f, 2, NULL, NULL, 0, &train, 1, st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(recur_alloc_count() - before, 0);
    recur_array_free(xv);
    recur_array_free(la);
    recur_session_free(s);
    recur_graph_free(g);
}

TEST(only_needed_ops_run)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "x");
    recur_tensor *unfed = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "unfed");
    recur_tensor *y = recur_add(g, x, x);
    recur_tensor *z = recur_add(g, y, unfed);
    (void)z;
    recur_session *s = recur_session_new(g, NULL, st);
    recur_array *xv = recur_array_from(RECUR_F32, RECUR_SHAPE(2), (float[]){1, 2}, NULL), *out = NULL;
    recur_session_run(s, (recur_feed[]){{x, xv}}, 1, &y, &out, 1, NULL, 0, st);
    ASSERT_OK(st); /* `unfed` is not needed for y */
    ASSERT_NEAR(recur_array_f32(out)[1], 4, 0);
    recur_array_free(out);
    /* feeding an intermediate tensor cuts its producer */
    recur_session_run(s, (recur_feed[]){{y, xv}}, 1, &y, &out, 1, NULL, 0, st);
    ASSERT_OK(st);
    ASSERT_NEAR(recur_array_f32(out)[1], 2, 0);
    recur_array_free(out);
    /* the same tensor fetched twice */
    recur_array *outs[2];
    recur_session_run(s, (recur_feed[]){{x, xv}}, 1, (recur_tensor *[]){y, y}, outs, 2, NULL, 0, st);
    ASSERT_OK(st);
    ASSERT_NEAR(recur_array_f32(outs[0])[0], 2, 0);
    ASSERT_NEAR(recur_array_f32(outs[1])[0], 2, 0);
    recur_array_free(outs[0]);
    recur_array_free(outs[1]);
    recur_array_free(xv);
    recur_session_free(s);
    recur_graph_free(g);
}

TEST(check_numerics_names_the_op)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "x");
    recur_tensor *y = recur_log(g, x);
    recur_session *s = recur_session_new(g, &(recur_session_opts){.check_numerics = true}, st);
    recur_array *xv = recur_array_from(RECUR_F32, RECUR_SHAPE(2), (float[]){1, -1}, NULL), *out = NULL;
    recur_session_run(s, (recur_feed[]){{x, xv}}, 1, &y, &out, 1, NULL, 0, st);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "NaN in output 0 of op Log");
    recur_array_free(xv);
    recur_session_free(s);
    recur_graph_free(g);
}

/* ------------------------------------------------------------------ get_variable extras */

TEST(check_numerics_op_in_tensorflows_words)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(3), "x");
    recur_tensor *c = recur_check_numerics(g, recur_log(g, x), "log of x");
    recur_tensor *loss = recur_reduce_sum(g, recur_square(g, c), NULL, 0, false);
    recur_tensor *dx = NULL;
    ASSERT_TRUE(recur_gradients(g, &loss, 1, &x, 1, NULL, &dx));
    ASSERT_EQ_STR(recur_tensor_name(c), "CheckNumerics:0");
    recur_session *s = recur_session_new(g, NULL, st);
    struct { float v[3]; const char *want; } cases[] = {
        {{1, 2, 3}, NULL},
        {{1, -1, 3}, "log of x : Tensor had NaN values"},
        {{1, 0, 3}, "log of x : Tensor had Inf values"},
        {{0, -1, 3}, "log of x : Tensor had Inf and NaN values"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        recur_array *xv = recur_array_from(RECUR_F32, RECUR_SHAPE(3), cases[i].v, NULL), *out = NULL;
        recur_session_run(s, (recur_feed[]){{x, xv}}, 1, &c, &out, 1, NULL, 0, st);
        if (!cases[i].want) {
            ASSERT_OK(st);
            ASSERT_TRUE(fabsf(((float *)recur_array_data(out))[1] - logf(2)) < 1e-6f); /* passes x through */
        } else {
            ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
            ASSERT_STR_STARTS(recur_status_message(st), cases[i].want);
            ASSERT_STR_CONTAINS(recur_status_message(st), "CheckNumerics");
        }
        recur_array_free(out);
        recur_array_free(xv);
    }
    recur_session_free(s);
    /* The gradient is checked too: with loss = sum(exp(2 c)), c = log(x) stays finite while the
     * gradient arriving at c, 2 exp(2 c), overflows. */
    recur_tensor *loss2 = recur_reduce_sum(g, recur_exp(g, recur_mul(g, c, recur_scalar_f32(g, 2))), NULL, 0, false);
    ASSERT_TRUE(recur_gradients(g, &loss2, 1, &x, 1, NULL, &dx));
    s = recur_session_new(g, NULL, st);
    recur_array *xv = recur_array_from(RECUR_F32, RECUR_SHAPE(3), (float[]){1, 1e30f, 3}, NULL), *out = NULL;
    recur_session_run(s, (recur_feed[]){{x, xv}}, 1, &dx, &out, 1, NULL, 0, st);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    ASSERT_STR_STARTS(recur_status_message(st),
                      "Not a number (NaN) or infinity (Inf) values detected in gradient. log of x : Tensor had Inf values");
    recur_array_free(xv);
    recur_session_free(s);
    /* Only floats can be checked. */
    recur_check_numerics(g, recur_placeholder(g, RECUR_I32, RECUR_SHAPE(2), "n"), "ints");
    ASSERT_EQ_INT(recur_graph_code(g), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_graph_message(g), "CheckNumerics needs a float tensor");
    recur_graph_free(g);
}

TEST(already_exists_names_creation_site)
{
    recur_graph *g = recur_graph_new();
    recur_variable_scope_push(g, "layer1", RECUR_REUSE_INHERIT);
    int line = __LINE__ + 1;
    recur_get_variable(g, "w", RECUR_SHAPE(3), NULL);
    recur_variable_scope_pop(g);
    recur_variable_scope_push(g, "layer1", RECUR_REUSE_INHERIT);
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_SHAPE(3), NULL) == NULL);
    const char *m = recur_graph_message(g);
    ASSERT_STR_STARTS(m, "Variable layer1/w already exists, disallowed. Did you mean to set reuse=True or "
                         "reuse=tf.AUTO_REUSE in VarScope? Originally defined at:\n\n  File \"");
    char site[256];
    snprintf(site, sizeof site, "test_session.c\", line %d, in already_exists_names_creation_site\n", line);
    ASSERT_STR_CONTAINS(m, site);
    ASSERT_STR_CONTAINS(m, "Fix: ");
    ASSERT_STR_CONTAINS(m, "RECUR_AUTO_REUSE");
    recur_graph_free(g);
}

TEST(does_not_exist_lists_nearest_names)
{
    recur_graph *g = recur_graph_new();
    recur_variable_scope_push(g, "encoder", RECUR_REUSE_INHERIT);
    recur_get_variable(g, "kernel", RECUR_SHAPE(3, 4), NULL);
    recur_get_variable(g, "bias", RECUR_SHAPE(4), NULL);
    recur_variable_scope_pop(g);
    recur_get_variable(g, "unrelated_long_name", RECUR_SHAPE(1), NULL);
    recur_variable_scope_push(g, "encodr", RECUR_REUSE);
    ASSERT_TRUE(recur_get_variable(g, "kernel", RECUR_SHAPE(3, 4), NULL) == NULL);
    const char *m = recur_graph_message(g);
    ASSERT_STR_STARTS(m, "Variable encodr/kernel does not exist, or was not created with tf.get_variable(). Did "
                         "you mean to set reuse=tf.AUTO_REUSE in VarScope?");
    ASSERT_STR_CONTAINS(m, "Nearest existing variables: encoder/kernel (3, 4)");
    ASSERT_TRUE(strstr(m, "unrelated_long_name") == NULL);
    recur_graph_free(g);
}

TEST(bad_names_and_shapes_rejected)
{
    recur_graph *g = recur_graph_new();
    ASSERT_TRUE(recur_get_variable(g, "bad name", RECUR_SHAPE(1), NULL) == NULL);
    ASSERT_STR_STARTS(recur_graph_message(g), "'bad name' is not a valid root scope name");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_SHAPE(-3), NULL) == NULL);
    ASSERT_STR_CONTAINS(recur_graph_message(g), "dimension 0 is -3");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_get_variable(g, NULL, RECUR_SHAPE(1), NULL) == NULL);
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_SHAPE(1 << 30, 1 << 30), NULL) == NULL);
    ASSERT_STR_CONTAINS(recur_graph_message(g), "too large");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_SHAPE(2), &(recur_variable_opts){.dtype = (recur_dtype)77}) == NULL);
    recur_graph_clear_error(g);
    /* unbalanced pops */
    recur_variable_scope_pop(g);
    ASSERT_STR_CONTAINS(recur_graph_message(g), "Improper nesting of variable_scope");
    recur_graph_clear_error(g);
    recur_name_scope_push(g, "n");
    recur_variable_scope_pop(g);
    ASSERT_STR_CONTAINS(recur_graph_message(g), "innermost scope is name scope 'n/'");
    recur_graph_clear_error(g);
    recur_name_scope_pop(g);
    recur_variable_scope_push(g, "v", RECUR_REUSE_INHERIT);
    recur_name_scope_pop(g);
    ASSERT_STR_CONTAINS(recur_graph_message(g), "Improper nesting of name_scope");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_variable_scope_push(g, "x", (recur_reuse)7) == NULL);
    ASSERT_STR_CONTAINS(recur_graph_message(g), "The reuse parameter must be True or False or None.");
    recur_graph_clear_error(g);
    /* a graph-error makes builders no-ops until cleared */
    recur_get_variable(g, "bad name", RECUR_SHAPE(1), NULL);
    ASSERT_TRUE(recur_placeholder(g, RECUR_F32, RECUR_SHAPE(1), "p") == NULL);
    ASSERT_TRUE(recur_graph_op(g, "p") == NULL);
    recur_graph_free(g);
}

TEST(value_initializer_and_collections)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_array *v = recur_array_from(RECUR_F64, RECUR_SHAPE(2), (double[]){1.5, -2}, NULL);
    ASSERT_TRUE(recur_get_variable(g, "c", RECUR_SHAPE(2), &(recur_variable_opts){.initializer = recur_value_initializer(v)}) == NULL);
    ASSERT_EQ_STR(recur_graph_message(g), "If initializer is a constant, do not specify shape.");
    recur_graph_clear_error(g);
    recur_tensor *c = recur_get_variable(g, "c", RECUR_UNKNOWN_SHAPE, &(recur_variable_opts){.initializer = recur_value_initializer(v), .not_trainable = true});
    ASSERT_GRAPH_OK(g);
    ASSERT_EQ_INT(recur_tensor_dtype(c), RECUR_F64);
    recur_session *s = recur_session_new(g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_array *out = recur_session_get_variable(s, c, st);
    ASSERT_NEAR(recur_array_f64(out)[1], -2, 0);
    ASSERT_EQ_INT(recur_get_collection(g, RECUR_TRAINABLE_VARIABLES, NULL, NULL, 0), 0);
    ASSERT_EQ_INT(recur_get_collection(g, RECUR_GLOBAL_VARIABLES, "c", NULL, 0), 1);
    ASSERT_EQ_INT(recur_get_collection(g, RECUR_GLOBAL_VARIABLES, "(", NULL, 0), -1);
    ASSERT_STR_CONTAINS(recur_graph_message(g), "invalid scope pattern '('");
    recur_graph_clear_error(g);
    recur_add_to_collection(g, "mine", c);
    ASSERT_EQ_INT(recur_get_collection(g, "mine", NULL, NULL, 0), 1);
    recur_array_free(v);
    recur_array_free(out);
    recur_session_free(s);
    recur_graph_free(g);
}

/* ------------------------------------------------------------------ initializers */

TEST(initializer_values_match_tensorflow)
{
    setup();
    gt_file *gf = gt_load(rt_path("tests/golden/initializers.golden"));
    ASSERT_TRUE(gf != NULL);
    ASSERT_TRUE(gf->n >= 10);
    for (int i = 0; i < gf->n; i++) {
        const gt_tensor *t = &gf->t[i];
        char spec[128], gseed[32];
        ASSERT_TRUE(sscanf(gt_meta(gf, t->name), "%127s %31s", spec, gseed) == 2);
        recur_graph *g = recur_graph_new();
        if (strcmp(gseed, "none")) recur_graph_set_seed(g, atoll(gseed));
        recur_dtype dt = !strcmp(t->dtype, "float64") ? RECUR_F64 : !strcmp(t->dtype, "int32") ? RECUR_I32 : RECUR_F32;
        recur_tensor *v = recur_get_variable(g, "v", t->shape, &(recur_variable_opts){.dtype = dt, .initializer = gt_parse_init(spec)});
        ASSERT_GRAPH_OK(g);
        recur_session *s = recur_session_new(g, NULL, st);
        recur_session_run_target(s, recur_global_variables_initializer(g), st);
        recur_array *a = recur_session_get_variable(s, v, st);
        ASSERT_OK(st);
        if (dt == RECUR_I32) {
            for (int64_t k = 0; k < t->size; k++) ASSERT_EQ_INT(recur_array_i32(a)[k], (int)t->v[k]);
        } else {
            double d = gt_max_abs_diff(t, a);
            /* graph-seeded initializers use the op count as op seed when none is given; here
             * every op seed is explicit, so values agree bit for bit (up to printing). */
            if (d > 1e-7) rt_fail(__FILE__, __LINE__, "%s (%s): max diff %g", t->name, spec, d);
        }
        recur_array_free(a);
        recur_session_free(s);
        recur_graph_free(g);
    }
    gt_free(gf);
}

static void stats(recur_initializer init, recur_shape shape, double *mean, double *var, double *lo, double *hi)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *v = recur_get_variable(g, "v", shape, &(recur_variable_opts){.initializer = init});
    recur_session *s = recur_session_new(g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_array *a = recur_session_get_variable(s, v, st);
    double s1 = 0, s2 = 0;
    *lo = INFINITY;
    *hi = -INFINITY;
    int64_t n = recur_array_size(a);
    for (int64_t i = 0; i < n; i++) {
        double x = recur_array_f32(a)[i];
        s1 += x;
        s2 += x * x;
        *lo = fmin(*lo, x);
        *hi = fmax(*hi, x);
    }
    *mean = s1 / (double)n;
    *var = s2 / (double)n - *mean * *mean;
    recur_array_free(a);
    recur_session_free(s);
    recur_graph_free(g);
}

TEST(initializer_statistics_follow_formulas)
{
    setup();
    double m, v, lo, hi;
    /* glorot_uniform on [300, 500]: U(-L, L), L = sqrt(6/800) */
    double L = sqrt(6.0 / 800);
    stats(recur_glorot_uniform_initializer(1), RECUR_SHAPE(300, 500), &m, &v, &lo, &hi);
    ASSERT_NEAR(m, 0, 0.002);
    ASSERT_NEAR(v, L * L / 3, L * L / 3 * 0.02);
    ASSERT_TRUE(lo >= -L && hi < L && hi > L * 0.99);
    /* truncated_normal(0, 0.5): within 2 sigma; variance of the truncated normal 0.7737 sigma^2 */
    stats(recur_truncated_normal_initializer(0, 0.5, 2), RECUR_SHAPE(400, 400), &m, &v, &lo, &hi);
    ASSERT_NEAR(m, 0, 0.003);
    ASSERT_NEAR(v, 0.25 * 0.773741, 0.25 * 0.773741 * 0.02);
    ASSERT_TRUE(lo > -1.0 && hi < 1.0);
    /* variance_scaling fan_in truncated: variance scale/fan_in */
    stats(recur_variance_scaling_initializer(2.0, RECUR_FAN_IN, RECUR_DIST_TRUNCATED_NORMAL, 3), RECUR_SHAPE(3, 100, 400), &m, &v, &lo, &hi);
    ASSERT_NEAR(v, 2.0 / 300, 2.0 / 300 * 0.03);
    /* random_normal(1, 2) */
    stats(recur_random_normal_initializer(1, 2, 4), RECUR_SHAPE(200000), &m, &v, &lo, &hi);
    ASSERT_NEAR(m, 1, 0.02);
    ASSERT_NEAR(v, 4, 0.08);
    /* random_uniform [-3, 1): upper bound exclusive */
    stats(recur_random_uniform_initializer(-3, 1, 5), RECUR_SHAPE(100000), &m, &v, &lo, &hi);
    ASSERT_NEAR(m, -1, 0.02);
    ASSERT_TRUE(lo >= -3 && hi < 1);
    /* orthogonal: Q^T Q = I for a tall matrix, times gain */
    recur_graph *g = recur_graph_new();
    recur_tensor *q = recur_get_variable(g, "q", RECUR_SHAPE(6, 4), &(recur_variable_opts){.initializer = recur_orthogonal_initializer(2.0, 7)});
    recur_session *s = recur_session_new(g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_array *a = recur_session_get_variable(s, q, st);
    float *p = recur_array_f32(a);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double d = 0;
            for (int r = 0; r < 6; r++) d += p[r * 4 + i] * p[r * 4 + j];
            ASSERT_NEAR(d, i == j ? 4.0 : 0.0, 1e-5);
        }
    recur_array_free(a);
    recur_session_free(s);
    recur_graph_free(g);
}

TEST(seeded_initializers_are_deterministic)
{
    setup();
    recur_array *vals[2];
    for (int k = 0; k < 2; k++) {
        recur_graph *g = recur_graph_new();
        recur_graph_set_seed(g, 1234);
        recur_tensor *v = recur_get_variable(g, "v", RECUR_SHAPE(20, 30), NULL); /* op seed from the graph seed */
        recur_session *s = recur_session_new(g, NULL, st);
        recur_session_run_target(s, recur_global_variables_initializer(g), st);
        vals[k] = recur_session_get_variable(s, v, st);
        recur_session_free(s);
        recur_graph_free(g);
    }
    ASSERT_TRUE(memcmp(recur_array_data(vals[0]), recur_array_data(vals[1]), recur_array_nbytes(vals[0])) == 0);
    recur_array_free(vals[0]);
    recur_array_free(vals[1]);
}

/* A process allowed on one core gets one thread per session, whatever it asks for: two threads
 * on one core would only take turns. */
TEST(sessions_use_no_more_threads_than_allowed_cores)
{
    cpu_set_t all, one;
    ASSERT_TRUE(sched_getaffinity(0, sizeof all, &all) == 0);
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &all)) {
            CPU_SET(c, &one);
            break;
        }
    st = recur_status_new();
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "x");
    recur_tensor *y = recur_square(g, x);
    for (int pinned = 0; pinned < 2; pinned++) {
        ASSERT_TRUE(sched_setaffinity(0, sizeof(cpu_set_t), pinned ? &one : &all) == 0);
        recur_session *s = recur_session_new(g, &(recur_session_opts){.num_threads = 2}, st);
        ASSERT_OK(st);
        ASSERT_EQ_INT(s->threads, pinned ? 1 : RC_MIN(2, CPU_COUNT(&all)));
        recur_array *xv = recur_array_from(RECUR_F32, RECUR_SHAPE(2), (float[]){3, -2}, NULL), *yv = NULL;
        recur_session_run(s, (recur_feed[]){{x, xv}}, 1, &y, &yv, 1, NULL, 0, st);
        ASSERT_OK(st);
        ASSERT_TRUE(((const float *)recur_array_cdata(yv))[0] == 9 && ((const float *)recur_array_cdata(yv))[1] == 4);
        recur_array_free(xv);
        recur_array_free(yv);
        recur_session_free(s);
    }
    ASSERT_TRUE(sched_setaffinity(0, sizeof all, &all) == 0);
    recur_graph_free(g);
    recur_status_free(st);
}

RUN_TESTS(T(sessions_use_no_more_threads_than_allowed_cores), T(missing_feed_message), T(feed_shape_and_dtype_checks), T(uninitialized_variable_then_initializer),
          T(variables_initializer_list_and_independent_sessions), T(steady_state_runs_do_not_allocate), T(runs_with_varying_shapes_reuse_the_pool),
          T(bilstm_adam_training_steps_do_not_allocate), T(only_needed_ops_run), T(check_numerics_names_the_op), T(check_numerics_op_in_tensorflows_words), T(already_exists_names_creation_site),
          T(does_not_exist_lists_nearest_names), T(bad_names_and_shapes_rejected),
          T(value_initializer_and_collections), T(initializer_values_match_tensorflow),
          T(initializer_statistics_follow_formulas), T(seeded_initializers_are_deterministic))
