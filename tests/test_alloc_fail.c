/*
 * test_alloc_fail.c - out-of-memory injection over representative work: building the seed's
 * two-layer model, a full training step of the BiLSTM classifier (graph, gradients, Adam,
 * session, initialisation, two runs), and a save and restore. Each scenario runs once to count
 * its allocations, then again with the 1st, 2nd, ... Nth allocation failing (and every later
 * one, as a real exhausted heap does), until it completes. Every failure must come back as
 * RECUR_OUT_OF_MEMORY, and after the handles are freed no allocation may be outstanding. A
 * second pass fails only the Nth allocation (later ones succeed, so clean-up and recovery paths
 * run with memory available): the scenario then either completes or reports the failure.
 *
 * RECUR_ALLOC_FAIL_STRIDE=k tries every k-th point only (a quicker pass; the default is 1);
 * RECUR_ALLOC_FAIL_ONLY=n fails allocation n alone, once (to debug one point under gdb);
 * RECUR_ALLOC_FAIL_VERBOSE=1 lists the points whose failure was absorbed.
 */
#include "runner.h"

#include "recur.h"

#include <ftw.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- outstanding allocations */
static atomic_long g_live;
static atomic_long g_calls, g_fail_once; /* the hook's own count, and the one call to fail */

static bool fail_this_one(void) { return atomic_fetch_add(&g_calls, 1) + 1 == atomic_load(&g_fail_once); }

static void *live_malloc(size_t n)
{
    void *p = fail_this_one() ? NULL : malloc(n);
    if (p) atomic_fetch_add(&g_live, 1);
    return p;
}

static void *live_realloc(void *p, size_t n)
{
    void *q = fail_this_one() ? NULL : realloc(p, n);
    if (q && !p) atomic_fetch_add(&g_live, 1);
    return q;
}

static void live_free(void *p)
{
    if (p) atomic_fetch_sub(&g_live, 1);
    free(p);
}

/* A scenario returns its first failing code (RECUR_OK when it completed) and its message. */
typedef recur_code (*scenario)(char *msg, size_t cap);

/* Run `fn` with allocation n and every later one failing (once: only allocation n; 0: none);
 * returns its code and checks for leaks. */
static recur_code run_once(scenario fn, long n, bool once, char *msg, size_t cap)
{
    long live = atomic_load(&g_live);
    if (once) atomic_store(&g_fail_once, atomic_load(&g_calls) + n);
    else recur_alloc_fail_after(n);
    recur_code code = fn(msg, cap);
    recur_alloc_fail_after(0);
    atomic_store(&g_fail_once, 0);
    if (atomic_load(&g_live) != live)
        rt_fail(__FILE__, __LINE__, "failing allocation %ld leaves %ld allocations behind (%s)", n,
                atomic_load(&g_live) - live, msg);
    return code;
}

/* Every allocation point of `fn` in turn; returns how many were tried. */
static long every_point(scenario fn, const char *name)
{
    const char *s = getenv("RECUR_ALLOC_FAIL_STRIDE");
    long stride = s && atol(s) > 0 ? atol(s) : 1;
    char msg[512] = "";
    recur_set_allocator(&(recur_allocator){live_malloc, live_realloc, live_free});
    long before = recur_alloc_count();
    ASSERT_EQ_INT(run_once(fn, 0, false, msg, sizeof msg), RECUR_OK);
    long total = recur_alloc_count() - before, tried = 0, absorbed = 0;
    const char *only = getenv("RECUR_ALLOC_FAIL_ONLY");
    if (only && atol(only) > 0) {
        recur_code code = run_once(fn, atol(only), true, msg, sizeof msg);
        printf("  %s: failing allocation %s alone gives %s: %s\n", name, only, recur_code_name(code), msg);
        recur_set_allocator(NULL);
        return 1000;
    }
    for (int once = 0; once < 2; once++)
        for (long n = 1; n <= total; n += stride) {
            msg[0] = 0;
            recur_code code = run_once(fn, n, once, msg, sizeof msg);
            tried += !once;
            if (code == RECUR_OK) { /* the failure was absorbed (e.g. a cache left cold) */
                if (getenv("RECUR_ALLOC_FAIL_VERBOSE")) printf("  absorbed: %ld%s\n", n, once ? " (alone)" : "");
                absorbed++;
                continue;
            }
            if (code != RECUR_OUT_OF_MEMORY)
                rt_fail(__FILE__, __LINE__, "%s: failing allocation %ld of %ld%s gives code %s: %s", name, n, total,
                        once ? " (only)" : "", recur_code_name(code), msg);
            if (!strstr(msg, "memory"))
                rt_fail(__FILE__, __LINE__, "%s: allocation %ld: the message does not say so: %s", name, n, msg);
        }
    recur_set_allocator(NULL);
    printf("  %s: %ld allocation points, each failed in turn (alone, and with every later one): always "
           "RECUR_OUT_OF_MEMORY or absorbed (%ld), nothing leaked\n",
           name, total, absorbed);
    return tried;
}

static recur_code graph_code(recur_graph *g, char *msg, size_t cap)
{
    if (!g) {
        snprintf(msg, cap, "recur_graph_new: out of memory");
        return RECUR_OUT_OF_MEMORY;
    }
    if (recur_graph_ok(g)) return RECUR_OK;
    snprintf(msg, cap, "%s", recur_graph_message(g));
    return recur_graph_code(g);
}

static recur_code status_code(recur_status *st, char *msg, size_t cap)
{
    if (!st) {
        snprintf(msg, cap, "recur_status_new: out of memory");
        return RECUR_OUT_OF_MEMORY;
    }
    snprintf(msg, cap, "%s", recur_status_message(st));
    return recur_status_code(st);
}

/* ---------------------------------------------------------------- scenarios */
/* The seed program: two BasicLSTMCell layers under AUTO_REUSE scopes, built twice (sharing). */
static recur_code build_seed_model(char *msg, size_t cap)
{
    recur_graph *g = recur_graph_new();
    if (g) {
        recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 20, 10), "x");
        for (int rep = 0; rep < 2; rep++) {
            recur_variable_scope_push(g, "layer1", RECUR_AUTO_REUSE);
            recur_rnn_out a = recur_dynamic_rnn(g, recur_basic_lstm_cell(g, 50, NULL), x, &(recur_rnn_opts){.dtype = RECUR_F32});
            recur_variable_scope_pop(g);
            recur_variable_scope_push(g, "layer2", RECUR_AUTO_REUSE);
            recur_dynamic_rnn(g, recur_basic_lstm_cell(g, 25, NULL), a.outputs, &(recur_rnn_opts){.dtype = RECUR_F32});
            recur_variable_scope_pop(g);
        }
    }
    recur_code code = graph_code(g, msg, cap);
    recur_graph_free(g);
    return code;
}

/* One training step of the classifier: embedding, BiLSTM with lengths, max-pool, dense,
 * sparse softmax cross-entropy, gradients clipped by global norm, Adam; run twice. */
static recur_code train_step(char *msg, size_t cap)
{
    recur_graph *g = recur_graph_new();
    recur_status *st = recur_status_new();
    recur_session *s = NULL;
    recur_array *ids = NULL, *len = NULL, *lab = NULL, *out = NULL;
    recur_code code = RECUR_OK;
    if (g) {
        recur_graph_set_seed(g, 1);
        recur_tensor *pid = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(-1, -1), "ids");
        recur_tensor *plen = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(-1), "lengths");
        recur_tensor *plab = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(-1), "labels");
        recur_tensor *emb = recur_get_variable(g, "embedding", RECUR_SHAPE(20, 6), NULL);
        recur_tensor *x = recur_dropout(g, recur_gather(g, emb, pid), recur_scalar_f32(g, 0.5f), 0);
        recur_birnn_out r = recur_bidirectional_dynamic_rnn(g, recur_basic_lstm_cell(g, 5, NULL), recur_basic_lstm_cell(g, 5, NULL), x,
                                                            &(recur_birnn_opts){.sequence_length = plen, .dtype = RECUR_F32});
        recur_tensor *o = recur_concat(g, (recur_tensor *[]){r.outputs_fw, r.outputs_bw}, 2, 2);
        recur_tensor *feat = recur_reduce_max(g, o, (int[]){1}, 1, false);
        recur_variable_scope_push(g, "dense", RECUR_REUSE_INHERIT);
        recur_tensor *w = recur_get_variable(g, "kernel", RECUR_SHAPE(10, 2), NULL);
        recur_tensor *b = recur_get_variable(g, "bias", RECUR_SHAPE(2), &(recur_variable_opts){.initializer = recur_zeros_initializer()});
        recur_variable_scope_pop(g);
        recur_tensor *logits = recur_bias_add(g, recur_matmul(g, feat, w, false, false), b);
        recur_tensor *loss = recur_reduce_mean(g, recur_sparse_softmax_cross_entropy_with_logits(g, plab, logits), NULL, 0, false);
        recur_optimizer *opt = recur_optimizer_new(g, &(recur_optimizer_opts){.kind = RECUR_OPT_ADAM, .learning_rate = 0.01});
        recur_tensor *grads[8], *vars[8];
        int n = recur_optimizer_compute_gradients(opt, loss, NULL, 0, grads, vars, 8);
        if (n > 0) recur_clip_by_global_norm(g, grads, n, 5.0, grads, NULL);
        recur_op *train = n > 0 ? recur_optimizer_apply_gradients(opt, grads, vars, n, recur_get_or_create_global_step(g)) : NULL;
        code = graph_code(g, msg, cap);
        if (code == RECUR_OK) code = st ? RECUR_OK : status_code(st, msg, cap);
        if (code == RECUR_OK && !(s = recur_session_new(g, NULL, st))) code = status_code(st, msg, cap);
        if (code == RECUR_OK && recur_session_run_target(s, recur_global_variables_initializer(g), st) != RECUR_OK)
            code = status_code(st, msg, cap);
        int32_t idv[3 * 4] = {1, 2, 3, 4, 5, 6, 0, 0, 7, 0, 0, 0}, lv[3] = {4, 2, 1}, labv[3] = {0, 1, 1};
        if (code == RECUR_OK && (!(ids = recur_array_from(RECUR_I32, RECUR_SHAPE(3, 4), idv, st)) ||
                                 !(len = recur_array_from(RECUR_I32, RECUR_SHAPE(3), lv, st)) ||
                                 !(lab = recur_array_from(RECUR_I32, RECUR_SHAPE(3), labv, st))))
            code = status_code(st, msg, cap);
        for (int step = 0; step < 2 && code == RECUR_OK; step++) {
            recur_feed feeds[] = {{pid, ids}, {plen, len}, {plab, lab}};
            if (recur_session_run(s, feeds, 3, &loss, &out, 1, &train, 1, st) != RECUR_OK) code = status_code(st, msg, cap);
            recur_array_free(out);
            out = NULL;
        }
    } else {
        code = graph_code(g, msg, cap);
    }
    recur_array_free(ids), recur_array_free(len), recur_array_free(lab);
    recur_session_free(s);
    recur_graph_free(g);
    recur_status_free(st);
    return code;
}

static char g_dir[64];

/* Save a small model (three dtypes, a scope) with a global step, restore it, and read the
 * state file back. */
static recur_code save_restore(char *msg, size_t cap)
{
    recur_graph *g = recur_graph_new();
    recur_status *st = recur_status_new();
    recur_session *s = NULL;
    recur_saver *sv = NULL;
    recur_code code = RECUR_OK;
    if (g) {
        recur_variable_scope_push(g, "net", RECUR_REUSE_INHERIT);
        recur_get_variable(g, "kernel", RECUR_SHAPE(3, 4), NULL);
        recur_get_variable(g, "bias", RECUR_SHAPE(4), &(recur_variable_opts){.dtype = RECUR_F64});
        recur_variable_scope_pop(g);
        recur_get_or_create_global_step(g);
    }
    code = graph_code(g, msg, cap);
    if (code == RECUR_OK && !st) code = status_code(st, msg, cap);
    if (code == RECUR_OK && !(s = recur_session_new(g, NULL, st))) code = status_code(st, msg, cap);
    if (code == RECUR_OK && recur_session_run_target(s, recur_global_variables_initializer(g), st) != RECUR_OK)
        code = status_code(st, msg, cap);
    if (code == RECUR_OK && !(sv = recur_saver_new(g, NULL))) code = graph_code(g, msg, cap);
    char prefix[128], path[256], latest[256];
    snprintf(prefix, sizeof prefix, "%s/model.ckpt", g_dir);
    if (code == RECUR_OK && recur_saver_save(sv, s, prefix, 7, path, sizeof path, st) != RECUR_OK)
        code = status_code(st, msg, cap);
    if (code == RECUR_OK && recur_saver_restore(sv, s, path, st) != RECUR_OK) code = status_code(st, msg, cap);
    if (code == RECUR_OK && !recur_latest_checkpoint(g_dir, latest, sizeof latest, st)) code = status_code(st, msg, cap);
    recur_saver_free(sv);
    recur_session_free(s);
    recur_graph_free(g);
    recur_status_free(st);
    return code;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) { return remove(path); }

TEST(building_the_seed_model) { ASSERT_TRUE(every_point(build_seed_model, "building the seed model") > 100); }

TEST(a_training_step) { ASSERT_TRUE(every_point(train_step, "a training step") > 100); }

TEST(save_and_restore)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/recur_oom_XXXXXX");
    ASSERT_TRUE(mkdtemp(g_dir) != NULL);
    long tried = every_point(save_restore, "save and restore");
    nftw(g_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    ASSERT_TRUE(tried > 50);
}

RUN_TESTS(T(building_the_seed_model), T(a_training_step), T(save_and_restore))
