/*
 * test_train.c - optimizers against TensorFlow: three training steps of GradientDescent,
 * Momentum (and Nesterov), Adam, Adagrad and RMSProp (the golden files under tests/golden/train) on a model
 * with a dense layer and an embedding lookup, comparing the loss and every variable (slots,
 * beta powers, global step) after every step; losses against their formulas.
 */
#include "runner.h"
#include "golden.h"

static recur_status *st;

static recur_tensor *ph_from(recur_graph *g, const gt_tensor *t, const char *name)
{
    recur_dtype dt = !strcmp(t->dtype, "int32") ? RECUR_I32 : RECUR_F32;
    return recur_placeholder(g, dt, t->shape, name);
}

static void run_case(const char *file)
{
    gt_file *gf = gt_load(file);
    ASSERT_TRUE(gf != NULL);
    const char *cname = gt_meta(gf, "case");
    double lr = atof(gt_meta(gf, "lr"));
    recur_graph *g = recur_graph_new();
    recur_tensor *x = ph_from(g, gt_find(gf, "x"), "x"), *ids = ph_from(g, gt_find(gf, "ids"), "ids"),
                 *y = ph_from(g, gt_find(gf, "y"), "y");
    recur_tensor *emb = recur_get_variable(g, "emb", RECUR_SHAPE(10, 3), NULL);
    recur_variable_scope_push(g, "dense", RECUR_REUSE_INHERIT);
    recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(3, 2), NULL), *b = recur_get_variable(g, "b", RECUR_SHAPE(2), NULL);
    recur_variable_scope_pop(g);
    recur_tensor *h = recur_add(g, x, recur_reduce_sum(g, recur_gather(g, emb, ids), (int[]){1}, 1, false));
    recur_tensor *logits = recur_add(g, recur_matmul(g, h, w, false, false), b);
    recur_tensor *loss = recur_reduce_mean(g, recur_sparse_softmax_cross_entropy_with_logits(g, y, logits), NULL, 0, false);
    recur_tensor *gs = recur_get_or_create_global_step(g);
    recur_optimizer_opts o = {.learning_rate = lr};
    const char *decay = gt_meta(gf, "decay"), *clip = gt_meta(gf, "clip");
    if (decay) {
        double ds, dr;
        int stair;
        sscanf(decay, "%lf %lf %d", &ds, &dr, &stair);
        o.learning_rate_tensor = recur_exponential_decay(g, lr, gs, ds, dr, stair);
    }
    if (!strncmp(cname, "sgd", 3)) o.kind = RECUR_OPT_GRADIENT_DESCENT;
    else if (!strcmp(cname, "momentum")) o = (recur_optimizer_opts){.kind = RECUR_OPT_MOMENTUM, .learning_rate = lr, .momentum = 0.9};
    else if (!strcmp(cname, "nesterov"))
        o = (recur_optimizer_opts){.kind = RECUR_OPT_MOMENTUM, .learning_rate = lr, .momentum = 0.8, .use_nesterov = true};
    else if (!strcmp(cname, "adam_betas"))
        o = (recur_optimizer_opts){.kind = RECUR_OPT_ADAM, .learning_rate = lr, .beta1 = 0.5, .beta2 = 0.9, .epsilon = 1e-4};
    else if (!strncmp(cname, "adam", 4)) o.kind = RECUR_OPT_ADAM;
    else if (!strcmp(cname, "adagrad")) o.kind = RECUR_OPT_ADAGRAD;
    else if (!strcmp(cname, "rmsprop")) o.kind = RECUR_OPT_RMSPROP;
    else if (!strcmp(cname, "rmsprop_momentum")) o = (recur_optimizer_opts){.kind = RECUR_OPT_RMSPROP, .learning_rate = lr, .momentum = 0.7};
    recur_optimizer *opt = recur_optimizer_new(g, &o);
    recur_tensor *grads[3], *vars[3];
    ASSERT_EQ_INT(recur_optimizer_compute_gradients(opt, loss, NULL, 0, grads, vars, 3), 3);
    ASSERT_EQ_STR(recur_op_type(recur_tensor_op(grads[0])), "IndexedSlices"); /* emb: sparse */
    if (clip) ASSERT_TRUE(recur_clip_by_global_norm(g, grads, 3, atof(clip), grads, NULL));
    recur_op *train = recur_optimizer_apply_gradients(opt, grads, vars, 3, gs);
    ASSERT_GRAPH_OK(g);
    /* variable names and creation order as TensorFlow's */
    char names[2048] = "";
    recur_tensor *all[32];
    long nv = recur_get_collection(g, RECUR_GLOBAL_VARIABLES, NULL, all, 32);
    for (long i = 0; i < nv; i++) snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? " " : "", recur_variable_name(all[i]));
    ASSERT_EQ_STR(names, gt_meta(gf, "vars"));
    recur_session *s = recur_session_new(g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_tensor *init[3] = {emb, w, b};
    for (int i = 0; i < 3; i++) {
        char key[64];
        snprintf(key, sizeof key, "init/%s", recur_variable_name(init[i]));
        recur_array *a = gt_array(gt_find(gf, key));
        recur_session_set_variable(s, init[i], a, st);
        ASSERT_OK(st);
        recur_array_free(a);
    }
    recur_array *xv = gt_array(gt_find(gf, "x")), *iv = gt_array(gt_find(gf, "ids")), *yv = gt_array(gt_find(gf, "y"));
    recur_feed f[3] = {{x, xv}, {ids, iv}, {y, yv}};
    double worst = 0;
    for (int step = 0; step < 3; step++) {
        recur_array *lv = NULL;
        recur_session_run(s, f, 3, &loss, &lv, 1, &train, 1, st);
        ASSERT_OK(st);
        char key[128];
        snprintf(key, sizeof key, "step%d/loss", step);
        ASSERT_NEAR(recur_array_f32(lv)[0], gt_find(gf, key)->v[0], 1e-5);
        recur_array_free(lv);
        for (long i = 0; i < nv; i++) {
            snprintf(key, sizeof key, "step%d/%s", step, recur_variable_name(all[i]));
            const gt_tensor *t = gt_find(gf, key);
            recur_array *a = recur_session_get_variable(s, all[i], st);
            ASSERT_OK(st);
            for (int64_t e = 0; e < t->size; e++) {
                double got = recur_array_dtype(a) == RECUR_I64 ? (double)recur_array_i64(a)[e] : recur_array_f32(a)[e];
                double rel = fabs(got - t->v[e]) / fmax(fabs(t->v[e]), 1e-3);
                if (rel > 1e-4) rt_fail(__FILE__, __LINE__, "%s: %s[%lld] = %.9g, TensorFlow %.9g", cname, key, (long long)e, got, t->v[e]);
                worst = fmax(worst, rel);
            }
            recur_array_free(a);
        }
    }
    printf("  %-18s 3 steps, %ld variables, worst relative difference %.2g\n", cname, nv, worst);
    recur_array_free(xv);
    recur_array_free(iv);
    recur_array_free(yv);
    recur_session_free(s);
    recur_graph_free(g);
    gt_free(gf);
}

TEST(optimizers_match_tensorflow)
{
    st = recur_status_new();
    const char *cases[] = {"sgd", "momentum", "nesterov", "adam", "adam_betas", "adagrad", "rmsprop", "rmsprop_momentum",
                           "adam_decay_clip"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tests/golden/train/%s.golden", cases[i]);
        run_case(rt_path(rel));
    }
    recur_status_free(st);
}

static double eval_scalar(recur_graph *g, recur_tensor *t)
{
    recur_session *s = recur_session_new(g, NULL, st);
    recur_array *out = NULL;
    recur_session_run(s, NULL, 0, &t, &out, 1, NULL, 0, st);
    ASSERT_OK(st);
    double v = recur_array_size(out) == 1 ? (double)recur_array_f32(out)[0] : 0;
    recur_array_free(out);
    recur_session_free(s);
    return v;
}

TEST(losses_follow_their_formulas)
{
    st = recur_status_new();
    recur_graph *g = recur_graph_new();
    recur_array *la = recur_array_from(RECUR_F32, RECUR_SHAPE(2, 3), (float[]){0, 1, 0, 0.25f, 0.25f, 0.5f}, NULL);
    recur_array *lg = recur_array_from(RECUR_F32, RECUR_SHAPE(2, 3), (float[]){1, 2, 3, -1, 0, 1}, NULL);
    recur_tensor *labels = recur_constant(g, la, NULL), *logits = recur_constant(g, lg, NULL);
    /* row 0: -log softmax(1,2,3)[1] */
    double lse0 = log(exp(1) + exp(2) + exp(3)), lse1 = log(exp(-1) + exp(0) + exp(1));
    double want = (lse0 - 2) + (0.25 * (lse1 + 1) + 0.25 * lse1 + 0.5 * (lse1 - 1));
    ASSERT_NEAR(eval_scalar(g, recur_reduce_sum(g, recur_softmax_cross_entropy_with_logits(g, labels, logits), NULL, 0, false)), want, 1e-5);
    recur_array *sl = recur_array_from(RECUR_I32, RECUR_SHAPE(2), (int32_t[]){2, 0}, NULL);
    recur_tensor *sparse = recur_sparse_softmax_cross_entropy_with_logits(g, recur_constant(g, sl, NULL), logits);
    ASSERT_NEAR(eval_scalar(g, recur_reduce_sum(g, sparse, NULL, 0, false)), (lse0 - 3) + (lse1 + 1), 1e-5);
    /* sigmoid xent: max(x,0) - x z + log(1 + exp(-|x|)) */
    recur_tensor *sx = recur_sigmoid_cross_entropy_with_logits(g, labels, logits);
    double sw = 0;
    float zl[6] = {0, 1, 0, 0.25f, 0.25f, 0.5f}, xl[6] = {1, 2, 3, -1, 0, 1};
    for (int i = 0; i < 6; i++) sw += fmax(xl[i], 0) - xl[i] * zl[i] + log1p(exp(-fabs(xl[i])));
    ASSERT_NEAR(eval_scalar(g, recur_reduce_sum(g, sx, NULL, 0, false)), sw, 1e-5);
    ASSERT_NEAR(eval_scalar(g, recur_mean_squared_error(g, labels, logits)), (1 + 1 + 9 + 1.5625 + 0.0625 + 0.25) / 6, 1e-6);
    ASSERT_NEAR(eval_scalar(g, recur_l2_loss(g, logits)), (1 + 4 + 9 + 1 + 0 + 1) / 2.0, 1e-6);
    /* a label outside the range fails the run with TensorFlow's message */
    recur_array *bad = recur_array_from(RECUR_I32, RECUR_SHAPE(2), (int32_t[]){5, 0}, NULL);
    recur_tensor *badl = recur_sparse_softmax_cross_entropy_with_logits(g, recur_constant(g, bad, NULL), logits);
    recur_session *s = recur_session_new(g, NULL, st);
    recur_array *out = NULL;
    recur_session_run(s, NULL, 0, &badl, &out, 1, NULL, 0, st);
    ASSERT_STR_STARTS(recur_status_message(st), "Received a label value of 5 which is outside the valid range of [0, 3)");
    recur_session_free(s);
    recur_array_free(la);
    recur_array_free(lg);
    recur_array_free(sl);
    recur_array_free(bad);
    recur_graph_free(g);
    recur_status_free(st);
}

/* Large variables update on two threads (dense Adam by elements, sparse Adam on an embedding
 * by rows): exactly what one thread gives. */
TEST(two_thread_updates_match_one_thread)
{
    st = recur_status_new();
    recur_graph *g = recur_graph_new();
    recur_graph_set_seed(g, 2);
    recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(300, 300), NULL);
    recur_tensor *emb = recur_get_variable(g, "emb", RECUR_SHAPE(2000, 64), NULL);
    recur_tensor *ids = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(7), "ids");
    recur_tensor *e = recur_gather(g, emb, ids);
    recur_tensor *loss = recur_add(g, recur_reduce_sum(g, recur_square(g, w), NULL, 0, false),
                                   recur_reduce_sum(g, recur_square(g, e), NULL, 0, false));
    recur_optimizer *opt = recur_optimizer_new(g, &(recur_optimizer_opts){.kind = RECUR_OPT_ADAM, .learning_rate = 0.01});
    recur_op *train = recur_optimizer_minimize(opt, loss, NULL, NULL, 0);
    ASSERT_TRUE(recur_graph_ok(g));
    int32_t idv[7] = {3, 1999, 17, 3, 1000, 1024, 5};
    recur_array *ia = recur_array_from(RECUR_I32, RECUR_SHAPE(7), idv, NULL);
    recur_array *vals[2][2];
    for (int threads = 1; threads <= 2; threads++) {
        recur_session *s = recur_session_new(g, &(recur_session_opts){.num_threads = threads}, st);
        recur_session_run_target(s, recur_global_variables_initializer(g), st);
        for (int step = 0; step < 3; step++) recur_session_run(s, (recur_feed[]){{ids, ia}}, 1, NULL, NULL, 0, &train, 1, st);
        ASSERT_OK(st);
        vals[threads - 1][0] = recur_session_get_variable(s, w, st);
        vals[threads - 1][1] = recur_session_get_variable(s, emb, st);
        ASSERT_OK(st);
        recur_session_free(s);
    }
    for (int v = 0; v < 2; v++) {
        ASSERT_EQ_INT((int)recur_array_size(vals[0][v]), (int)recur_array_size(vals[1][v]));
        ASSERT_TRUE(!memcmp(recur_array_cdata(vals[0][v]), recur_array_cdata(vals[1][v]),
                            (size_t)recur_array_size(vals[0][v]) * sizeof(float)));
        recur_array_free(vals[0][v]);
        recur_array_free(vals[1][v]);
    }
    recur_array_free(ia);
    recur_graph_free(g);
    recur_status_free(st);
}

RUN_TESTS(T(optimizers_match_tensorflow), T(losses_follow_their_formulas), T(two_thread_updates_match_one_thread))
