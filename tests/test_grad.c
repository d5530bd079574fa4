/*
 * test_grad.c - gradients: a finite-difference check of every differentiable op (float64),
 * of every cell type through dynamic_rnn with sequence lengths and the bidirectional wrapper,
 * TensorFlow's gradients of the 61 RNN golden programs (loop and fused paths), and the edge
 * cases of tf.gradients (unconnected tensors, stop_gradient, sums over several uses).
 */
#include "runner.h"
#include "rnn_dsl.h"
#include "exec/exec.h"
#include "core/gemm_packed.h"
#include "rnn/rnn_impl.h"

static recur_status *st;

static recur_array *rnd64(recur_shape s, unsigned seed, double lo, double hi)
{
    recur_array *a = recur_array_new(RECUR_F64, s, NULL);
    srand(seed);
    for (int64_t i = 0; i < recur_array_size(a); i++) recur_array_f64(a)[i] = lo + (hi - lo) * rand() / (double)RAND_MAX;
    return a;
}

/* loss = sum(y * R) for a fixed random R; checks d loss / d inputs against central differences. */
typedef recur_tensor *(*gbuild)(recur_graph *g, recur_tensor **in);

typedef struct gcase {
    const char *name;
    gbuild build;
    int n;
    recur_shape shape[3];
    double lo, hi;
} gcase;

static double eval_loss(recur_session *s, recur_tensor *loss, recur_feed *f, int n)
{
    recur_array *out = NULL;
    recur_session_run(s, f, n, &loss, &out, 1, NULL, 0, st);
    ASSERT_OK(st);
    double v = recur_array_f64(out)[0];
    recur_array_free(out);
    return v;
}

static double fd_check(recur_graph *g, recur_tensor *y, recur_tensor **ph, recur_array **vals, int n, const char *name,
                       const recur_session_opts *opts)
{
    recur_array *R = rnd64(recur_tensor_shape(y).rank >= 0 && recur_shape_size(recur_tensor_shape(y)) >= 0
                               ? recur_tensor_shape(y)
                               : RECUR_SCALAR,
                           99, -1, 1);
    recur_tensor *r = recur_constant(g, R, "R");
    recur_tensor *loss = recur_reduce_sum(g, recur_mul(g, y, r), NULL, 0, false);
    recur_tensor *dx[8];
    ASSERT_TRUE(recur_gradients(g, &loss, 1, ph, n, NULL, dx));
    recur_session *s = recur_session_new(g, opts, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_feed f[8];
    for (int i = 0; i < n; i++) f[i] = (recur_feed){ph[i], vals[i]};
    double worst = 0;
    for (int i = 0; i < n; i++) {
        if (!dx[i]) rt_fail(__FILE__, __LINE__, "%s: no gradient for input %d", name, i);
        recur_array *an = NULL;
        recur_session_run(s, f, n, &dx[i], &an, 1, NULL, 0, st);
        ASSERT_OK(st);
        double *v = recur_array_f64(vals[i]);
        for (int64_t k = 0; k < recur_array_size(vals[i]); k++) {
            double keep = v[k], h = 1e-6 * fmax(1, fabs(keep));
            v[k] = keep + h;
            double lp = eval_loss(s, loss, f, n);
            v[k] = keep - h;
            double lm = eval_loss(s, loss, f, n);
            v[k] = keep;
            double num = (lp - lm) / (2 * h), ana = recur_array_f64(an)[k];
            double err = fabs(num - ana) / fmax(1, fabs(num));
            if (err > 1e-5) rt_fail(__FILE__, __LINE__, "%s: d/d input %d [%lld]: analytic %.10g, numeric %.10g", name, i, (long long)k, ana, num);
            worst = fmax(worst, err);
        }
        recur_array_free(an);
    }
    recur_array_free(R);
    recur_session_free(s);
    return worst;
}

#define GB(name, body)                                                                         \
    static recur_tensor *name(recur_graph *g, recur_tensor **in)                               \
    {                                                                                          \
        return body;                                                                           \
    }
GB(g_add, recur_add(g, in[0], in[1]))
GB(g_sub, recur_sub(g, in[0], in[1]))
GB(g_mul, recur_mul(g, in[0], in[1]))
GB(g_div, recur_div(g, in[0], in[1]))
GB(g_max, recur_maximum(g, in[0], in[1]))
GB(g_min, recur_minimum(g, in[0], in[1]))
GB(g_neg, recur_neg(g, in[0]))
GB(g_exp, recur_exp(g, in[0]))
GB(g_log, recur_log(g, in[0]))
GB(g_sqrt, recur_sqrt(g, in[0]))
GB(g_square, recur_square(g, in[0]))
GB(g_abs, recur_abs(g, in[0]))
GB(g_sigmoid, recur_sigmoid(g, in[0]))
GB(g_tanh, recur_tanh(g, in[0]))
GB(g_relu, recur_relu(g, in[0]))
GB(g_clip, recur_clip(g, in[0], -0.4, 0.5))
GB(g_softmax, recur_softmax(g, in[0]))
GB(g_log_softmax, recur_log_softmax(g, in[0]))
GB(g_matmul, recur_matmul(g, in[0], in[1], false, false))
GB(g_matmul_ta, recur_matmul(g, in[0], in[1], true, false))
GB(g_matmul_tb, recur_matmul(g, in[0], in[1], false, true))
GB(g_matmul_tt, recur_matmul(g, in[0], in[1], true, true))
GB(g_bias_add, recur_bias_add(g, in[0], in[1]))
GB(g_add_n, recur_add_n(g, in, 3))
GB(g_select, recur_select(g, recur_less(g, in[0], in[1]), in[0], in[1]))
GB(g_concat, recur_concat(g, in, 2, 1))
GB(g_transpose, recur_transpose(g, in[0], (int[]){1, 2, 0}))
GB(g_reshape, recur_reshape(g, in[0], RECUR_SHAPE(4, -1)))
GB(g_expand, recur_expand_dims(g, in[0], 0))
GB(g_sum, recur_reduce_sum(g, in[0], (int[]){1}, 1, false))
GB(g_sum_keep, recur_reduce_sum(g, in[0], (int[]){0, 2}, 2, true))
GB(g_mean, recur_reduce_mean(g, in[0], (int[]){-1}, 1, false))
GB(g_max_r, recur_reduce_max(g, in[0], (int[]){1}, 1, false))
GB(g_slice, recur_slice(g, in[0], (int64_t[]){1, 0, 1}, (int64_t[]){1, 3, 2}))
GB(g_stack, recur_stack(g, in, 2, 1))
GB(g_identity, recur_identity(g, in[0], NULL))
GB(g_reverse, recur_reverse(g, in[0], 1))
static recur_tensor *g_split(recur_graph *g, recur_tensor **in)
{
    recur_tensor *p[2];
    return recur_split(g, in[0], 2, 2, p) ? recur_mul(g, p[0], p[1]) : NULL;
}
static recur_tensor *g_unstack(recur_graph *g, recur_tensor **in)
{
    recur_tensor *p[3];
    return recur_unstack(g, in[0], 1, p, 3) ? recur_add(g, recur_mul(g, p[0], p[2]), p[1]) : NULL;
}
/* Second order: the gradient of a mean (or a keep-dims sum) of squares, itself differentiated
 * (through ReduceGrad's own gradient). */
static recur_tensor *g_reduce_grad(recur_graph *g, recur_tensor **in, bool mean)
{
    recur_tensor *sq = recur_square(g, in[0]), *r, *d = NULL;
    r = mean ? recur_reduce_mean(g, sq, (int[]){1}, 1, false) : recur_reduce_sum(g, sq, (int[]){0, 2}, 2, true);
    r = recur_mul(g, r, r); /* a non-constant incoming gradient */
    return recur_gradients(g, &r, 1, &in[0], 1, NULL, &d) ? recur_mul(g, d, recur_tanh(g, in[0])) : NULL;
}
static recur_tensor *g_mean_grad(recur_graph *g, recur_tensor **in) { return g_reduce_grad(g, in, true); }
static recur_tensor *g_sum_grad(recur_graph *g, recur_tensor **in) { return g_reduce_grad(g, in, false); }
static recur_tensor *g_gather(recur_graph *g, recur_tensor **in)
{
    recur_array *ix = recur_array_from(RECUR_I32, RECUR_SHAPE(2, 3), (int32_t[]){0, 3, 3, 1, 0, 2}, NULL);
    recur_tensor *t = recur_gather(g, in[0], recur_constant(g, ix, NULL));
    recur_array_free(ix);
    return t;
}
static recur_tensor *g_revseq(recur_graph *g, recur_tensor **in)
{
    recur_array *l = recur_array_from(RECUR_I32, RECUR_SHAPE(2), (int32_t[]){3, 1}, NULL);
    recur_tensor *t = recur_reverse_sequence(g, in[0], recur_constant(g, l, NULL), 1, 0);
    recur_array_free(l);
    return t;
}

#define S(...) RECUR_SHAPE(__VA_ARGS__)
static const gcase cases[] = {
    {"add bcast", g_add, 2, {S(3, 4), S(4)}, -1, 1},
    {"sub bcast", g_sub, 2, {S(3, 1), S(1, 4)}, -1, 1},
    {"mul bcast", g_mul, 2, {S(2, 3, 4), S(3, 1)}, -1, 1},
    {"add bcast rows", g_add, 2, {S(2, 3, 4), S(2, 3, 1)}, -1, 1},
    {"div", g_div, 2, {S(3, 4), S(4)}, 0.5, 2},
    {"maximum", g_max, 2, {S(3, 4), S(3, 4)}, -1, 1},
    {"minimum", g_min, 2, {S(3, 4), S(4)}, -1, 1},
    {"neg", g_neg, 1, {S(5)}, -1, 1},
    {"exp", g_exp, 1, {S(5)}, -1, 1},
    {"log", g_log, 1, {S(5)}, 0.5, 2},
    {"sqrt", g_sqrt, 1, {S(5)}, 0.5, 2},
    {"square", g_square, 1, {S(5)}, -1, 1},
    {"abs", g_abs, 1, {S(5)}, 0.1, 1},
    {"sigmoid", g_sigmoid, 1, {S(2, 5)}, -3, 3},
    {"tanh", g_tanh, 1, {S(2, 5)}, -2, 2},
    {"relu", g_relu, 1, {S(9)}, -1, 1},
    {"clip", g_clip, 1, {S(9)}, -1, 1},
    {"softmax", g_softmax, 1, {S(3, 4)}, -2, 2},
    {"log_softmax", g_log_softmax, 1, {S(3, 4)}, -2, 2},
    {"matmul", g_matmul, 2, {S(3, 4), S(4, 2)}, -1, 1},
    {"matmul ta", g_matmul_ta, 2, {S(4, 3), S(4, 2)}, -1, 1},
    {"matmul tb", g_matmul_tb, 2, {S(3, 4), S(2, 4)}, -1, 1},
    {"matmul tt", g_matmul_tt, 2, {S(4, 3), S(2, 4)}, -1, 1},
    {"bias_add", g_bias_add, 2, {S(2, 3, 4), S(4)}, -1, 1},
    {"add_n", g_add_n, 3, {S(3, 2), S(3, 2), S(3, 2)}, -1, 1},
    {"select", g_select, 2, {S(3, 4), S(3, 4)}, -1, 1},
    {"concat", g_concat, 2, {S(2, 3), S(2, 2)}, -1, 1},
    {"transpose", g_transpose, 1, {S(2, 3, 4)}, -1, 1},
    {"reshape", g_reshape, 1, {S(2, 3, 4)}, -1, 1},
    {"expand_dims", g_expand, 1, {S(2, 3)}, -1, 1},
    {"reduce_sum", g_sum, 1, {S(2, 3, 4)}, -1, 1},
    {"reduce_sum keep", g_sum_keep, 1, {S(2, 3, 4)}, -1, 1},
    {"reduce_mean", g_mean, 1, {S(2, 3, 4)}, -1, 1},
    {"reduce_max", g_max_r, 1, {S(2, 3, 4)}, -1, 1},
    {"gradient of reduce_mean", g_mean_grad, 1, {S(2, 3, 4)}, -1, 1},
    {"gradient of reduce_sum keep", g_sum_grad, 1, {S(2, 3, 4)}, -1, 1},
    {"slice", g_slice, 1, {S(3, 3, 4)}, -1, 1},
    {"stack", g_stack, 2, {S(2, 3), S(2, 3)}, -1, 1},
    {"identity", g_identity, 1, {S(4)}, -1, 1},
    {"reverse", g_reverse, 1, {S(2, 4, 3)}, -1, 1},
    {"split", g_split, 1, {S(2, 3, 4)}, -1, 1},
    {"unstack", g_unstack, 1, {S(2, 3, 4)}, -1, 1},
    {"gather (sparse gradient)", g_gather, 1, {S(4, 3)}, -1, 1},
    {"reverse_sequence", g_revseq, 1, {S(2, 4, 3)}, -1, 1},
};

TEST(finite_differences_for_every_op)
{
    st = recur_status_new();
    double worst = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        recur_graph *g = recur_graph_new();
        recur_tensor *ph[3];
        recur_array *vals[3];
        for (int i = 0; i < cases[c].n; i++) {
            ph[i] = recur_placeholder(g, RECUR_F64, cases[c].shape[i], NULL);
            vals[i] = rnd64(cases[c].shape[i], (unsigned)(c * 3 + i + 1), cases[c].lo, cases[c].hi);
        }
        recur_tensor *y = cases[c].build(g, ph);
        if (!recur_graph_ok(g)) rt_fail(__FILE__, __LINE__, "%s: %s", cases[c].name, recur_graph_message(g));
        worst = fmax(worst, fd_check(g, y, ph, vals, cases[c].n, cases[c].name, NULL));
        for (int i = 0; i < cases[c].n; i++) recur_array_free(vals[i]);
        recur_graph_free(g);
    }
    printf("  %zu op cases, worst relative error %.2g\n", sizeof cases / sizeof cases[0], worst);
    recur_status_free(st);
}

/* Every cell type through dynamic_rnn with lengths (0, partial, full) and bidirectionally,
 * float64 on the step-loop path; variables as inputs via placeholders fed to set_variable is
 * not possible, so the check is on the input and the initial state, and on the weights through
 * an extra placeholder multiplying the kernel. */
static recur_cell *make_cell(recur_graph *g, int kind)
{
    switch (kind) {
    case 0: return recur_basic_rnn_cell(g, 3, NULL);
    case 1: return recur_basic_lstm_cell(g, 3, &(recur_cell_opts){.forget_bias = 0.5f, .forget_bias_set = true});
    case 2: return recur_lstm_cell(g, 3, &(recur_lstm_opts){.use_peepholes = true, .cell_clip = 0.8, .num_proj = 2, .proj_clip = 0.6});
    case 3: return recur_gru_cell(g, 3, NULL);
    case 4: return recur_gru_cell_v2(g, 3, NULL);
    case 5: {
        recur_cell *c[2] = {recur_gru_cell(g, 2, NULL), recur_basic_lstm_cell(g, 3, NULL)};
        return recur_multi_rnn_cell(g, c, 2, NULL);
    }
    default: return recur_residual_wrapper(g, recur_basic_rnn_cell(g, 2, NULL));
    }
}

static const char *cell_names[] = {"BasicRNNCell", "BasicLSTMCell", "LSTMCell(peepholes, clip, projection)", "GRUCell",
                                   "GRUCell v2", "MultiRNNCell(GRU, LSTM)", "ResidualWrapper"};

TEST(finite_differences_through_rnns)
{
    st = recur_status_new();
    double worst = 0;
    for (int kind = 0; kind < 7; kind++)
        for (int bi = 0; bi < 2; bi++) {
            recur_graph *g = recur_graph_new();
            recur_graph_set_seed(g, 5);
            int64_t D = kind == 6 ? 2 : 2;
            recur_tensor *x = recur_placeholder(g, RECUR_F64, RECUR_SHAPE(3, 4, D), "x");
            recur_array *lv = recur_array_from(RECUR_I32, RECUR_SHAPE(3), (int32_t[]){4, 0, 2}, NULL);
            recur_tensor *len = recur_constant(g, lv, "len");
            recur_array_free(lv);
            recur_tensor *y;
            if (!bi) {
                recur_rnn_out r = recur_dynamic_rnn(g, make_cell(g, kind), x, &(recur_rnn_opts){.dtype = RECUR_F64, .sequence_length = len});
                recur_tensor *parts[RECUR_MAX_STATE + 1];
                parts[0] = recur_reduce_sum(g, r.outputs, NULL, 0, false);
                for (int i = 0; i < r.num_state; i++) parts[1 + i] = recur_reduce_sum(g, recur_square(g, r.state[i]), NULL, 0, false);
                y = recur_add(g, recur_add_n(g, parts, 1 + r.num_state), recur_reduce_sum(g, recur_square(g, r.outputs), NULL, 0, false));
            } else {
                recur_birnn_out r = recur_bidirectional_dynamic_rnn(g, make_cell(g, kind), make_cell(g, kind), x,
                                                                    &(recur_birnn_opts){.dtype = RECUR_F64, .sequence_length = len});
                y = recur_concat(g, (recur_tensor *[]){r.outputs_fw, recur_square(g, r.outputs_bw)}, 2, 2);
            }
            ASSERT_GRAPH_OK(g);
            recur_array *xv = rnd64(RECUR_SHAPE(3, 4, D), (unsigned)(kind * 2 + bi + 11), -1, 1);
            char name[128];
            snprintf(name, sizeof name, "%s%s", cell_names[kind], bi ? " bidirectional" : "");
            worst = fmax(worst, fd_check(g, y, &x, &xv, 1, name, &(recur_session_opts){.rnn_path = RECUR_RNN_LOOP}));
            recur_array_free(xv);
            recur_graph_free(g);
        }
    printf("  7 cell types x uni/bidirectional, worst relative error %.2g\n", worst);
    recur_status_free(st);
}

/* ------------------------------------------------------------------ two threads */
/* Run the graph on the step-loop path (one thread) and the fused path (two threads), fetching
 * `fetch`, and compare: every element within 2e-5 of the loop's, relative to the largest
 * magnitude of its result. Returns the worst relative difference. */
/* The sequence lengths as a constant "len" [B]. */
static recur_tensor *lengths(recur_graph *g, const int32_t *lens, int64_t B)
{
    recur_array *lv = recur_array_from(RECUR_I32, RECUR_SHAPE(B), lens, NULL);
    recur_tensor *len = recur_constant(g, lv, "len");
    recur_array_free(lv);
    return len;
}

/* grads[0..nv) = d y / d every trainable variable, grads[nv] = d y / d x; returns nv. */
static int grads_of_vars_and_x(recur_graph *g, recur_tensor *y, recur_tensor *x, recur_tensor **grads, int cap)
{
    recur_tensor *vars[32];
    int nv = (int)recur_get_collection(g, RECUR_TRAINABLE_VARIABLES, NULL, vars, (size_t)RC_MIN(cap - 1, 31));
    vars[nv] = x;
    ASSERT_TRUE(recur_gradients(g, &y, 1, vars, nv + 1, NULL, grads));
    ASSERT_GRAPH_OK(g);
    return nv;
}

/* A float input [B, T, D] holding sin(k i) (or cos) at flat index i. */
static recur_array *wave_input(int64_t B, int64_t T, int64_t D, double k, bool cosine)
{
    recur_array *xv = recur_array_new(RECUR_F32, RECUR_SHAPE(B, T, D), NULL);
    for (int64_t i = 0; i < B * T * D; i++) ((float *)recur_array_data(xv))[i] = (float)(cosine ? cos(k * (double)i) : sin(k * (double)i));
    return xv;
}

/* Run `fetch` (n tensors) in a fresh session with `opts`, x fed xv, into res; returns how many
 * pairs of ops the run ran side by side. */
static uint64_t run_fresh(recur_graph *g, const recur_session_opts *opts, recur_tensor *x, const recur_array *xv,
                          recur_tensor *const *fetch, int n, recur_array **res)
{
    recur_session *s = recur_session_new(g, opts, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    ASSERT_OK(st);
    uint64_t before = s->pairs_run;
    recur_session_run(s, (recur_feed[]){{x, xv}}, 1, fetch, res, n, NULL, 0, st);
    ASSERT_OK(st);
    uint64_t pairs = s->pairs_run - before;
    recur_session_free(s);
    return pairs;
}

/* Whether two float results have the same shape size and the same bits. */
static bool same_bits(const recur_array *a, const recur_array *b)
{
    return recur_array_size(a) == recur_array_size(b) &&
           !memcmp(recur_array_cdata(a), recur_array_cdata(b), (size_t)recur_array_size(a) * sizeof(float));
}

/* What the other thread takes over from a slowed one: the recurrences' row tiles, or one
 * sequence's projection chunks. */
typedef struct taken_kind {
    uint64_t (*count)(void);
    const char *name;
} taken_kind;
static const taken_kind ROW_TILES = {rc_fused_tiles_taken, "row tiles"}, PROJ_CHUNKS = {rc_fused_chunks_taken, "projection chunks"};

/* A two-thread fused run of `fetch` into res, the thread of part `slow` (0 or 1; -1: neither)
 * sleeping before each of its steps: then the other must take at least two of `kind` over. */
static void run_two_threads_slowed_taking(recur_graph *g, recur_tensor *x, const recur_array *xv, recur_tensor *const *fetch,
                                          int n, int slow, const char *what, const taken_kind *kind, recur_array **res)
{
    uint64_t taken = kind->count();
    rc_fused_test_stall(slow, 300);
    run_fresh(g, &(recur_session_opts){.num_threads = 2, .rnn_path = RECUR_RNN_FUSED}, x, xv, fetch, n, res);
    rc_fused_test_stall(-1, 0);
    if (slow >= 0 && kind->count() < taken + 2)
        rt_fail(__FILE__, __LINE__, "%s: part %d slowed down, but the other took over %d %s (want 2 or more)", what, slow,
                (int)(kind->count() - taken), kind->name);
}

static void run_two_threads_slowed(recur_graph *g, recur_tensor *x, const recur_array *xv, recur_tensor *const *fetch, int n,
                                   int slow, const char *what, recur_array **res)
{
    run_two_threads_slowed_taking(g, x, xv, fetch, n, slow, what, &ROW_TILES, res);
}

/* Also reports how many pairs of ops the two-thread session ran side by side. */
static double loop_vs_two_threads(recur_graph *g, recur_tensor *x, const recur_array *xv, recur_tensor *const *fetch, int n,
                                  const char *what, uint64_t *pairs)
{
    recur_array *res[2][24];
    run_fresh(g, &(recur_session_opts){.num_threads = 1, .rnn_path = RECUR_RNN_LOOP}, x, xv, fetch, n, res[0]);
    *pairs = run_fresh(g, &(recur_session_opts){.num_threads = 2, .rnn_path = RECUR_RNN_FUSED}, x, xv, fetch, n, res[1]);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const float *a = recur_array_cdata(res[0][i]), *b = recur_array_cdata(res[1][i]);
        double scale = 1e-3;
        for (int64_t e = 0; e < recur_array_size(res[0][i]); e++) scale = fmax(scale, fabs(a[e]));
        for (int64_t e = 0; e < recur_array_size(res[0][i]); e++) {
            double d = fabs(a[e] - b[e]) / scale;
            worst = fmax(worst, d);
            if (d > 2e-5)
                rt_fail(__FILE__, __LINE__, "%s: result %d element %lld: loop %g, fused on two threads %g", what, i, (long long)e,
                        a[e], b[e]);
        }
        recur_array_free(res[0][i]);
        recur_array_free(res[1][i]);
    }
    return worst;
}

/* Products over all steps tall enough (640 rows, depth 64) that on CPUs whose packed kernels
 * are the AVX2 ones CBLAS computes them from blocks of gathered rows (the input projection, and
 * the LSTM's input gradient): with lengths and without, LSTM and GRU agree with the loop path. */
TEST(tall_products_match_the_loop_path)
{
    st = recur_status_new();
    const int64_t B = 16, T = 40, D = 64, H = 16;
    ASSERT_TRUE(rc_gemm_tall_via_cblas(B * T, D) ==
                (!__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")));
    int32_t lens[16];
    for (int i = 0; i < B; i++) lens[i] = (int32_t)(T - (i * 5) % 16); /* 25..40, unsorted: 520 rows */
    for (int kind = 0; kind < 2; kind++)
        for (int bi = 0; bi < 2; bi++) {
            recur_graph *g = recur_graph_new();
            recur_graph_set_seed(g, 4);
            recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(B, T, D), "x");
            recur_cell *cell = kind ? recur_gru_cell(g, H, NULL) : recur_basic_lstm_cell(g, H, NULL);
            recur_rnn_out r =
                recur_dynamic_rnn(g, cell, x, &(recur_rnn_opts){.dtype = RECUR_F32, .sequence_length = bi ? NULL : lengths(g, lens, B)});
            recur_tensor *parts[3] = {r.outputs, r.state[0], r.state[r.num_state - 1]}, *terms[3];
            for (int i = 0; i < 3; i++) terms[i] = recur_reduce_sum(g, recur_square(g, recur_tanh(g, parts[i])), NULL, 0, false);
            recur_tensor *grads[8], *fetch[12];
            int nv = grads_of_vars_and_x(g, recur_add_n(g, terms, 3), x, grads, 8);
            for (int i = 0; i < 3; i++) fetch[i] = parts[i];
            for (int i = 0; i <= nv; i++) fetch[3 + i] = grads[i];
            recur_array *xv = wave_input(B, T, D, 0.21, true);
            uint64_t pairs = 0;
            loop_vs_two_threads(g, x, xv, fetch, 3 + nv + 1, kind ? (bi ? "GRU, tall" : "GRU, tall, lengths") : (bi ? "LSTM, tall" : "LSTM, tall, lengths"),
                                &pairs);
            recur_array_free(xv);
            recur_graph_free(g);
        }
    recur_status_free(st);
}

/* A batch large enough for the fused kernels to split the recurrence between two threads: with
 * lengths (rows sorted by length, the running rows halved at every step) and without (a fixed
 * half each), outputs, final states and every gradient must agree with the step-loop path for
 * every cell type, uni- and bidirectional (the two directions then run side by side, unsplit). */
TEST(two_thread_fused_kernels_match_the_loop_path)
{
    st = recur_status_new();
    const int64_t B = 37, T = 9, D = 5;
    int32_t lens[37];
    for (int i = 0; i < B; i++) lens[i] = (int32_t)((i * 7 + 3) % (T + 1)); /* 0..9, unsorted */
    double worst = 0;
    for (int kind = 0; kind < 5; kind++)
        for (int bi = 0; bi < 3; bi++) { /* 0: lengths, 1: bidirectional with lengths, 2: no lengths */
            recur_graph *g = recur_graph_new();
            recur_graph_set_seed(g, 9);
            recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(B, T, D), "x");
            recur_tensor *len = lengths(g, lens, B);
            recur_tensor *parts[8], *y;
            int np = 0;
            if (bi != 1) {
                recur_rnn_out r = recur_dynamic_rnn(g, make_cell(g, kind), x, &(recur_rnn_opts){.dtype = RECUR_F32, .sequence_length = bi ? NULL : len});
                parts[np++] = r.outputs;
                for (int i = 0; i < r.num_state; i++) parts[np++] = r.state[i];
            } else {
                recur_birnn_out r = recur_bidirectional_dynamic_rnn(g, make_cell(g, kind), make_cell(g, kind), x,
                                                                    &(recur_birnn_opts){.dtype = RECUR_F32, .sequence_length = len});
                parts[np++] = r.outputs_fw;
                parts[np++] = r.outputs_bw;
            }
            recur_tensor *terms[8];
            for (int i = 0; i < np; i++) terms[i] = recur_reduce_sum(g, recur_square(g, recur_tanh(g, parts[i])), NULL, 0, false);
            y = recur_add_n(g, terms, np);
            recur_tensor *grads[17];
            int nv = grads_of_vars_and_x(g, y, x, grads, 17);
            recur_array *xv = wave_input(B, T, D, 0.37, false);
            recur_tensor *fetch[24];
            for (int i = 0; i < np; i++) fetch[i] = parts[i];
            for (int i = 0; i <= nv; i++) fetch[np + i] = grads[i];
            char what[96];
            snprintf(what, sizeof what, "%s%s", cell_names[kind], bi == 1 ? " bidirectional" : bi ? " without lengths" : "");
            uint64_t pairs = 0;
            worst = fmax(worst, loop_vs_two_threads(g, x, xv, fetch, np + nv + 1, what, &pairs));
            /* bidirectional: the two forward kernels side by side, then the two gradient ones */
            ASSERT_EQ_INT((int)pairs, bi == 1 ? 2 : 0);
            recur_array_free(xv);
            recur_graph_free(g);
        }
    printf("  5 cell types x (lengths, bidirectional, no lengths), batch 37: worst relative difference %.2g\n", worst);
    recur_status_free(st);
}

/* The fused kernels on one thread and on two give the same bits, the bias gradients included
 * (the column sums of the gate gradients, summed as the recurrence goes): LSTM at the
 * small model's sizes (an input projection done per step inside the row split, and a weight
 * gradient whose 7 column panels do not halve, split over its rows instead) and with 64 units
 * (8 panels, split over its columns); GRU likewise (its three weight gradients split either
 * way); an LSTM with peepholes and a clipped cell (the peepholes' gradients summed after the
 * recurrence); each without lengths (a batch of 23, whose rows would split inside a group of
 * the bias sums if the split were not kept on a multiple of 4) and with them (a batch of 32,
 * the small model's). Which thread runs which rows depends on timing (a thread that runs out
 * of rows takes row tiles over from the other), so the two-thread runs are repeated, twice
 * with one of the threads slowed down so that the other must take tiles over, and every one
 * must give the same bits. Every result where recur's own
 * products run (AVX-512): CBLAS promises no such thing (OpenBLAS takes other kernels for 16
 * rows than for 32); with AVX2, where the products over all steps go to CBLAS but the step
 * products do not, the outputs, the final states and the bias gradients. Both paths agree
 * with the step-loop path. */
TEST(fused_results_keep_their_bits_on_one_and_two_threads)
{
    st = recur_status_new();
    const int64_t T = 20, D = 10;
    enum { REPEAT = 3 };
    for (int run = 0; run < 24; run++) {
        int fallback = run / 2 % 2, units = run % 2 ? 64 : 50; /* fallback: where CBLAS does the products */
        bool own = !fallback && __builtin_cpu_supports("avx512f"), lens = run / 4 % 2, gru = run / 8 == 1, peep = run / 8 == 2;
        int64_t B = lens ? 32 : 23;
        bool steps_own = !fallback && (own || (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")));
        rc_gemm_packed_use_cblas(fallback);
        recur_graph *g = recur_graph_new();
        recur_graph_set_seed(g, 4);
        recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(B, T, D), "x"), *len = NULL;
        if (lens) { /* lengths 1 .. T, unsorted */
            recur_array *lv = recur_array_new(RECUR_I32, RECUR_SHAPE(B), NULL);
            for (int64_t b = 0; b < B; b++) recur_array_i32(lv)[b] = (int32_t)((b * 7) % T + 1);
            len = recur_constant(g, lv, "len");
            recur_array_free(lv);
        }
        recur_cell *cell = gru    ? recur_gru_cell(g, units, NULL)
                           : peep ? recur_lstm_cell(g, units, &(recur_lstm_opts){.use_peepholes = true, .cell_clip = 0.8})
                                  : recur_basic_lstm_cell(g, units, NULL);
        const char *kind = gru ? "GRU" : peep ? "LSTM with peepholes" : "LSTM";
        recur_rnn_out r = recur_dynamic_rnn(g, cell, x, &(recur_rnn_opts){.dtype = RECUR_F32, .sequence_length = len});
        recur_tensor *y = recur_reduce_sum(g, recur_square(g, recur_tanh(g, r.outputs)), NULL, 0, false);
        int ns = gru ? 2 : 3;
        recur_tensor *fetch[10] = {r.outputs, r.state[0], gru ? NULL : r.state[1]};
        int nv = grads_of_vars_and_x(g, y, x, fetch + ns, 7), n = ns + nv + 1;
        ASSERT_EQ_INT(nv, gru || peep ? (gru ? 4 : 5) : 2); /* the kernels, the biases (and the peepholes) */
        bool stable[10] = {0}; /* the results that must keep their bits */
        recur_tensor *vars[8];
        ASSERT_EQ_INT((int)recur_get_collection(g, RECUR_TRAINABLE_VARIABLES, NULL, vars, 8), nv);
        for (int i = 0; i < n; i++)
            stable[i] = own || (steps_own && (i < ns || (i < ns + nv && strstr(recur_variable_name(vars[i - ns]), "bias"))));
        recur_array *xv = wave_input(B, T, D, 0.23, true), *res[2][10];
        char what[48];
        snprintf(what, sizeof what, "%s %d units%s", kind, units, lens ? ", lengths" : "");
        run_fresh(g, &(recur_session_opts){.num_threads = 1, .rnn_path = RECUR_RNN_FUSED}, x, xv, fetch, n, res[0]);
        for (int rep = 0; rep < REPEAT; rep++) {
            /* rep 1 and 2: one thread slowed down, so that the other takes some of its rows over */
            run_two_threads_slowed(g, x, xv, fetch, n, rep - 1, what, res[1]);
            for (int i = 0; i < n; i++) {
                ASSERT_EQ_INT((int)recur_array_size(res[0][i]), (int)recur_array_size(res[1][i]));
                if (stable[i] && !same_bits(res[0][i], res[1][i]))
                    rt_fail(__FILE__, __LINE__, "%s%s: result %d differs between one thread and two", what, fallback ? " (CBLAS)" : "", i);
                recur_array_free(res[1][i]);
            }
        }
        for (int i = 0; i < n; i++) recur_array_free(res[0][i]);
        uint64_t pairs = 0;
        loop_vs_two_threads(g, x, xv, fetch, n, what, &pairs);
        recur_array_free(xv);
        recur_graph_free(g);
    }
    rc_gemm_packed_use_cblas(false);
    recur_status_free(st);
}

/* A layer whose initial state's gradients no one fetches skips the recurrent product of its
 * first step that serves only them: the weight gradients keep their bits whether those are
 * fetched or not, and fetched they agree with the step-loop path (LSTM, both GRUs, basic RNN). */
TEST(initial_state_gradients_only_when_read)
{
    st = recur_status_new();
    const int64_t B = 32, T = 9, D = 6, H = 50;
    const char *names[] = {"LSTM", "GRU", "GRU (reset after)", "basic RNN"};
    for (int kind = 0; kind < 4; kind++) {
        recur_graph *g = recur_graph_new();
        recur_graph_set_seed(g, 5);
        recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(B, T, D), "x"), *init[2];
        int ns = kind ? 1 : 2;
        for (int i = 0; i < ns; i++) {
            recur_array *v = recur_array_new(RECUR_F32, RECUR_SHAPE(B, H), NULL);
            for (int64_t e = 0; e < B * H; e++) recur_array_f32(v)[e] = (float)sin(0.3 * (double)e + i);
            init[i] = recur_constant(g, v, i ? "h0" : "s0");
            recur_array_free(v);
        }
        recur_cell *cell = kind == 0 ? recur_basic_lstm_cell(g, H, NULL)
                           : kind == 1 ? recur_gru_cell(g, H, NULL)
                           : kind == 2 ? recur_gru_cell_v2(g, H, NULL)
                                       : recur_basic_rnn_cell(g, H, NULL);
        recur_rnn_out r = recur_dynamic_rnn(g, cell, x, &(recur_rnn_opts){.initial_state = init});
        recur_tensor *y = recur_reduce_sum(g, recur_square(g, recur_tanh(g, r.outputs)), NULL, 0, false);
        recur_tensor *xs[8], *grads[8];
        int nv = (int)recur_get_collection(g, RECUR_TRAINABLE_VARIABLES, NULL, xs, 6), n = nv + ns;
        for (int i = 0; i < ns; i++) xs[nv + i] = init[i];
        ASSERT_TRUE(recur_gradients(g, &y, 1, xs, n, NULL, grads));
        ASSERT_GRAPH_OK(g);
        recur_array *xv = wave_input(B, T, D, 0.19, false), *w[8], *all[8], *loop[8];
        for (int threads = 1; threads <= 2; threads++) {
            recur_session_opts o = {.num_threads = threads, .rnn_path = RECUR_RNN_FUSED};
            run_fresh(g, &o, x, xv, grads, nv, w);
            run_fresh(g, &o, x, xv, grads, n, all);
            for (int i = 0; i < nv; i++)
                if (!same_bits(w[i], all[i]))
                    rt_fail(__FILE__, __LINE__, "%s, %d threads: weight gradient %d changes with the initial state's", names[kind], threads, i);
            run_fresh(g, &(recur_session_opts){.num_threads = threads, .rnn_path = RECUR_RNN_LOOP}, x, xv, grads, n, loop);
            for (int i = 0; i < n; i++) {
                const float *a = recur_array_cdata(all[i]), *b = recur_array_cdata(loop[i]);
                double worst = 0, mag = 0;
                ASSERT_EQ_INT((int)recur_array_size(all[i]), (int)recur_array_size(loop[i]));
                for (int64_t e = 0; e < recur_array_size(loop[i]); e++) {
                    worst = fmax(worst, fabs((double)a[e] - b[e]));
                    mag = fmax(mag, fabs((double)b[e]));
                }
                if (worst > 1e-4 * (mag + 1))
                    rt_fail(__FILE__, __LINE__, "%s, %d threads: gradient %d differs from the loop path by %g", names[kind], threads, i, worst);
            }
            for (int i = 0; i < n; i++) recur_array_free(all[i]), recur_array_free(loop[i]);
            for (int i = 0; i < nv; i++) recur_array_free(w[i]);
        }
        recur_array_free(xv);
        recur_graph_free(g);
    }
    recur_status_free(st);
}

/* A batch of more rows than the row tiles allow at their smallest (600 rows: tiles of 12), with
 * and without lengths, one thread slowed down in turn: the other takes tiles over, and the
 * outputs and gradients keep the one-thread bits (AVX-512 path). */
TEST(large_batches_move_row_tiles_and_keep_their_bits)
{
    st = recur_status_new();
    const int64_t B = 600, T = 6, D = 3, H = 16;
    int32_t lens[600];
    for (int64_t b = 0; b < B; b++) lens[b] = (int32_t)((b * 5 + 1) % T + 1);
    bool own = __builtin_cpu_supports("avx512f");
    for (int withlen = 0; withlen < 2; withlen++) {
        recur_graph *g = recur_graph_new();
        recur_graph_set_seed(g, 6);
        recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(B, T, D), "x");
        recur_rnn_out r = recur_dynamic_rnn(g, recur_basic_lstm_cell(g, H, NULL), x,
                                            &(recur_rnn_opts){.dtype = RECUR_F32, .sequence_length = withlen ? lengths(g, lens, B) : NULL});
        recur_tensor *y = recur_reduce_sum(g, recur_square(g, recur_tanh(g, r.outputs)), NULL, 0, false);
        recur_tensor *fetch[8] = {r.outputs};
        int n = 1 + grads_of_vars_and_x(g, y, x, fetch + 1, 7) + 1;
        recur_array *xv = wave_input(B, T, D, 0.17, false), *one[8], *two[8];
        run_fresh(g, &(recur_session_opts){.num_threads = 1, .rnn_path = RECUR_RNN_FUSED}, x, xv, fetch, n, one);
        for (int part = 0; part < 2; part++) {
            run_two_threads_slowed(g, x, xv, fetch, n, part, withlen ? "B 600, lengths" : "B 600", two);
            for (int i = 0; i < n; i++) {
                if (own && !same_bits(one[i], two[i]))
                    rt_fail(__FILE__, __LINE__, "B %d%s, part %d slowed down: result %d differs between one thread and two", (int)B,
                            withlen ? ", lengths" : "", part, i);
                recur_array_free(two[i]);
            }
        }
        for (int i = 0; i < n; i++) recur_array_free(one[i]);
        recur_array_free(xv);
        recur_graph_free(g);
    }
    recur_status_free(st);
}

/* The two tests below: x [37, 9, 5] in g and an RNN of cell `kind` over it (make_cell), with the
 * lengths (i * 7 + 3) % 10 where `withlen`. */
enum { LB = 37, LT = 9, LD = 5 };
static recur_rnn_out rnn_37x9x5(recur_graph *g, int kind, bool withlen, recur_tensor **x)
{
    int32_t lens[LB];
    for (int i = 0; i < LB; i++) lens[i] = (int32_t)((i * 7 + 3) % (LT + 1));
    *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(LB, LT, LD), "x");
    return recur_dynamic_rnn(g, make_cell(g, kind), *x,
                             &(recur_rnn_opts){.dtype = RECUR_F32, .sequence_length = withlen ? lengths(g, lens, LB) : NULL});
}

/* A run that reads no gradient of the RNN's input skips that product in the fused backward: the
 * weight gradients are the same bits as in a run that also fetches it, with and without
 * check_numerics (which reads every output, the unfilled one included). */
TEST(weight_gradients_without_the_input_gradient)
{
    st = recur_status_new();
    for (int kind = 0; kind < 5; kind++)
        for (int withlen = 0; withlen < 2; withlen++) {
            recur_graph *g = recur_graph_new();
            recur_graph_set_seed(g, 5);
            recur_tensor *x;
            recur_rnn_out r = rnn_37x9x5(g, kind, withlen, &x);
            recur_tensor *y = recur_reduce_sum(g, recur_square(g, recur_tanh(g, r.outputs)), NULL, 0, false);
            recur_tensor *grads[17];
            int nv = grads_of_vars_and_x(g, y, x, grads, 17);
            recur_array *xv = wave_input(LB, LT, LD, 0.29, true);
            recur_array *res[3][17];
            for (int run = 0; run < 3; run++) /* weights and x; weights only; weights only, check_numerics */
                run_fresh(g, &(recur_session_opts){.num_threads = 2, .rnn_path = RECUR_RNN_FUSED, .check_numerics = run == 2}, x, xv,
                          grads, run ? nv : nv + 1, res[run]);
            for (int run = 1; run < 3; run++)
                for (int i = 0; i < nv; i++) {
                    ASSERT_EQ_INT((int)recur_array_size(res[run][i]), (int)recur_array_size(res[0][i]));
                    if (!same_bits(res[run][i], res[0][i]))
                        rt_fail(__FILE__, __LINE__, "%s%s: gradient %d differs without the input's gradient (run %d)", cell_names[kind],
                                withlen ? " with lengths" : "", i, run);
                    recur_array_free(res[run][i]);
                }
            for (int i = 0; i <= nv; i++) recur_array_free(res[0][i]);
            recur_array_free(xv);
            recur_graph_free(g);
        }
    recur_status_free(st);
}

/* Two gradients of one RNN in one run (two losses, each differentiated on its own): each gets
 * the same bits as in a run of its own. A run with one gradient of the loop lets the fused
 * backward write over the forward's history; with two, neither may. */
TEST(two_gradients_of_one_rnn_in_one_run)
{
    st = recur_status_new();
    for (int kind = 0; kind < 6; kind++) /* the cells the fused kernels run */
        for (int withlen = 0; withlen < 2; withlen++) {
            recur_graph *g = recur_graph_new();
            recur_graph_set_seed(g, 8);
            recur_tensor *x;
            recur_rnn_out r = rnn_37x9x5(g, kind, withlen, &x);
            recur_tensor *loss[2] = {recur_reduce_sum(g, recur_square(g, recur_tanh(g, r.outputs)), NULL, 0, false),
                                     recur_reduce_sum(g, recur_sigmoid(g, r.outputs), NULL, 0, false)};
            recur_tensor *vars[16], *grads[32];
            int nv = (int)recur_get_collection(g, RECUR_TRAINABLE_VARIABLES, NULL, vars, 16);
            for (int l = 0; l < 2; l++) ASSERT_TRUE(recur_gradients(g, &loss[l], 1, vars, nv, NULL, grads + l * nv));
            ASSERT_GRAPH_OK(g);
            recur_array *xv = wave_input(LB, LT, LD, 0.23, false), *both[32], *alone[2][16];
            for (int threads = 1; threads <= 2; threads++) {
                recur_session_opts o = {.num_threads = threads, .rnn_path = RECUR_RNN_FUSED};
                run_fresh(g, &o, x, xv, grads, 2 * nv, both);
                for (int l = 0; l < 2; l++) run_fresh(g, &o, x, xv, grads + l * nv, nv, alone[l]);
                for (int l = 0; l < 2; l++)
                    for (int i = 0; i < nv; i++) {
                        if (!same_bits(both[l * nv + i], alone[l][i]))
                            rt_fail(__FILE__, __LINE__, "%s%s, %d threads: gradient %d of loss %d differs when both are run", cell_names[kind],
                                    withlen ? " with lengths" : "", threads, i, l);
                        recur_array_free(alone[l][i]);
                    }
                for (int i = 0; i < 2 * nv; i++) recur_array_free(both[i]);
            }
            recur_array_free(xv);
            recur_graph_free(g);
        }
    recur_status_free(st);
}

/* Inputs wide enough that the products reading x and writing dx by row index split between the
 * two threads as well: the same agreement. */
TEST(two_thread_sorted_copies_match_the_loop_path)
{
    st = recur_status_new();
    const int64_t B = 40, T = 30, D = 128;
    int32_t lens[40];
    for (int i = 0; i < B; i++) lens[i] = (int32_t)((i * 11 + 5) % (T + 1));
    recur_graph *g = recur_graph_new();
    recur_graph_set_seed(g, 5);
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(B, T, D), "x");
    recur_tensor *len = lengths(g, lens, B);
    recur_rnn_out r = recur_dynamic_rnn(g, recur_basic_lstm_cell(g, 8, NULL), x,
                                        &(recur_rnn_opts){.dtype = RECUR_F32, .sequence_length = len});
    recur_tensor *y = recur_reduce_sum(g, recur_square(g, r.outputs), NULL, 0, false);
    recur_tensor *fetch[8];
    fetch[0] = r.outputs, fetch[1] = r.state[0], fetch[2] = r.state[1];
    int nv = grads_of_vars_and_x(g, y, x, fetch + 3, 5);
    recur_array *xv = wave_input(B, T, D, 0.013, false);
    uint64_t pairs = 0;
    double worst = loop_vs_two_threads(g, x, xv, fetch, 3 + nv + 1, "BasicLSTMCell, 128 inputs", &pairs);
    printf("  batch 40, 128 inputs: worst relative difference %.2g\n", worst);
    recur_array_free(xv);
    recur_graph_free(g);
    recur_status_free(st);
}

/* A batch too small to split by rows splits the LSTM's units between the threads instead (when
 * the units divide into halves of whole 32-column panels): the same agreement with the loop. */
TEST(two_thread_small_batch_lstm_matches_the_loop_path)
{
    st = recur_status_new();
    const int64_t T = 7, D = 5, H = 64;
    double worst = 0;
    /* batch 3 (32-column panels), and one sequence (row-streamed column blocks) */
    for (int peep = 0; peep < 4; peep++) {
        int64_t B = peep < 2 ? 3 : 1;
        recur_graph *g = recur_graph_new();
        recur_graph_set_seed(g, 4);
        recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(B, T, D), "x");
        recur_tensor *len = lengths(g, B == 1 ? (int32_t[]){5} : (int32_t[]){7, 2, 5}, B);
        recur_cell *cell = peep % 2 ? recur_lstm_cell(g, H, &(recur_lstm_opts){.use_peepholes = true, .cell_clip = 0.9})
                                : recur_basic_lstm_cell(g, H, NULL);
        recur_rnn_out r = recur_dynamic_rnn(g, cell, x, &(recur_rnn_opts){.dtype = RECUR_F32, .sequence_length = len});
        recur_tensor *y = recur_add(g, recur_reduce_sum(g, recur_square(g, r.outputs), NULL, 0, false),
                                    recur_reduce_sum(g, recur_tanh(g, r.state[0]), NULL, 0, false));
        recur_tensor *fetch[16];
        fetch[0] = r.outputs, fetch[1] = r.state[0], fetch[2] = r.state[1];
        int nres = 3 + grads_of_vars_and_x(g, y, x, fetch + 3, 9) + 1;
        recur_array *xv = wave_input(B, T, D, 0.61, true);
        uint64_t pairs = 0;
        worst = fmax(worst, loop_vs_two_threads(g, x, xv, fetch, nres, peep % 2 ? "LSTMCell" : "BasicLSTMCell", &pairs));
        recur_array_free(xv);
        recur_graph_free(g);
    }
    printf("  batch 3 and 1, 64 units: worst relative difference %.2g\n", worst);
    recur_status_free(st);
}

/* One sequence splits the units between the threads and projects its inputs in chunks as the
 * recurrence goes, a thread that waits for the other taking the other's chunks too: with either
 * thread slowed down, the other computes chunks of the slow one's columns, and the outputs and
 * final states are the same bits as in a run with neither slowed (where recur's own products
 * run: AVX-512, or AVX2 and FMA). */
TEST(one_sequence_projection_chunks_move_and_keep_their_bits)
{
    st = recur_status_new();
    const int64_t T = 41, D = 20, H = 128;
    if (!__builtin_cpu_supports("avx512f") && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) {
        recur_status_free(st);
        return;
    }
    recur_graph *g = recur_graph_new();
    recur_graph_set_seed(g, 7);
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(1, T, D), "x");
    recur_rnn_out r = recur_dynamic_rnn(g, recur_basic_lstm_cell(g, H, NULL), x, &(recur_rnn_opts){.dtype = RECUR_F32});
    recur_tensor *fetch[3] = {r.outputs, r.state[0], r.state[1]};
    recur_array *xv = wave_input(1, T, D, 0.29, false), *base[3], *slowed[3];
    run_fresh(g, &(recur_session_opts){.num_threads = 2, .rnn_path = RECUR_RNN_FUSED}, x, xv, fetch, 3, base);
    for (int part = 0; part < 2; part++) {
        run_two_threads_slowed_taking(g, x, xv, fetch, 3, part, "one sequence, 128 units", &PROJ_CHUNKS, slowed);
        for (int i = 0; i < 3; i++) {
            if (!same_bits(base[i], slowed[i]))
                rt_fail(__FILE__, __LINE__, "part %d slowed down: result %d differs from the run with neither slowed", part, i);
            recur_array_free(slowed[i]);
        }
    }
    for (int i = 0; i < 3; i++) recur_array_free(base[i]);
    uint64_t pairs = 0;
    loop_vs_two_threads(g, x, xv, fetch, 3, "one sequence, 128 units", &pairs);
    recur_array_free(xv);
    recur_graph_free(g);
    recur_status_free(st);
}

/* ------------------------------------------------------------------ TensorFlow parity */

TEST(rnn_gradients_match_tensorflow)
{
    st = recur_status_new();
    char **files = rd_list();
    int nprog = 0, ngrads = 0;
    double worst[2] = {0, 0}, paths = 0;
    for (int f = 0; files[f]; f++) {
        rd_prog *p = rd_build(files[f]);
        ASSERT_TRUE(p != NULL);
        recur_graph *g = p->g;
        /* loss = sum over results of sum(result * loss_weight/result) */
        recur_tensor *terms[RD_MAX];
        int nt = 0;
        for (int i = 0; i < p->nresults; i++) {
            char key[256];
            snprintf(key, sizeof key, "loss_weight/%s", p->results[i].name);
            const gt_tensor *w = gt_find(p->gf, key);
            ASSERT_TRUE(w != NULL);
            recur_array *wa = gt_array(w);
            terms[nt++] = recur_reduce_sum(g, recur_mul(g, p->results[i].t, recur_constant(g, wa, NULL)), NULL, 0, false);
            recur_array_free(wa);
        }
        recur_tensor *loss = recur_add_n(g, terms, nt);
        /* xs: trainable variables, the input, the initial-state placeholders */
        recur_tensor *xs[RD_MAX], *dx[RD_MAX];
        char names[RD_MAX][160];
        int nx = 0;
        recur_tensor *vars[128];
        long nv = recur_get_collection(g, RECUR_TRAINABLE_VARIABLES, NULL, vars, 128);
        for (long i = 0; i < nv; i++) {
            xs[nx] = vars[i];
            snprintf(names[nx++], sizeof names[0], "grad/%s", recur_variable_name(vars[i]));
        }
        for (int i = 0; i < p->nfeeds; i++) {
            xs[nx] = p->feeds[i].t;
            snprintf(names[nx++], sizeof names[0], "grad/%s", p->feeds[i].name);
        }
        ASSERT_TRUE(recur_gradients(g, &loss, 1, xs, nx, NULL, dx));
        ASSERT_GRAPH_OK(g);
        recur_array *got[2][RD_MAX];
        for (int path = 0; path < 2; path++) {
            recur_session *s = rd_session(p, &(recur_session_opts){.rnn_path = path ? RECUR_RNN_FUSED : RECUR_RNN_LOOP});
            recur_feed feeds[RD_MAX];
            recur_array *keep[RD_MAX];
            int nf = rd_feeds(p, feeds, keep);
            int k = 0;
            recur_tensor *fetch[RD_MAX];
            for (int i = 0; i < nx; i++)
                if (dx[i]) fetch[k++] = dx[i];
            recur_session_run(s, feeds, nf, fetch, got[path], k, NULL, 0, st);
            if (!recur_status_ok(st)) rt_fail(__FILE__, __LINE__, "%s: %s", p->name, recur_status_message(st));
            for (int i = 0; i < nf; i++) recur_array_free(keep[i]);
            recur_session_free(s);
        }
        for (int i = 0, k = 0; i < nx; i++) {
            const gt_tensor *t = gt_find(p->gf, names[i]);
            if (!dx[i]) {
                /* TensorFlow's None: the golden has no such gradient or an all-zero one */
                if (t)
                    for (int64_t e = 0; e < t->size; e++)
                        if (t->v[e] != 0) rt_fail(__FILE__, __LINE__, "%s: recur says %s is unconnected", p->name, names[i]);
                continue;
            }
            if (!t) rt_fail(__FILE__, __LINE__, "%s: golden lacks %s", p->name, names[i]);
            double scale = 0;
            for (int64_t e = 0; e < t->size; e++) scale = fmax(scale, fabs(t->v[e]));
            for (int path = 0; path < 2; path++) {
                double d = gt_max_abs_diff(t, got[path][k]) / fmax(scale, 1e-3);
                if (d > 1e-4)
                    rt_fail(__FILE__, __LINE__, "%s: %s differs from TensorFlow by %.3g (relative, %s path)", p->name, names[i], d,
                            path ? "fused" : "loop");
                worst[path] = fmax(worst[path], d);
            }
            const float *a = recur_array_cdata(got[0][k]), *b = recur_array_cdata(got[1][k]);
            for (int64_t e = 0; e < recur_array_size(got[0][k]); e++) paths = fmax(paths, fabs((double)a[e] - b[e]) / fmax(scale, 1e-3));
            recur_array_free(got[0][k]);
            recur_array_free(got[1][k]);
            k++;
            ngrads++;
        }
        rd_free(p);
        nprog++;
    }
    printf("  %d programs, %d gradients; worst relative error vs TF: loop %.2g, fused %.2g; loop vs fused %.2g\n", nprog,
           ngrads, worst[0], worst[1], paths);
    rd_list_free(files);
    recur_status_free(st);
}

/* ------------------------------------------------------------------ tf.gradients semantics */

TEST(unconnected_stop_gradient_and_sums)
{
    st = recur_status_new();
    recur_graph *g = recur_graph_new();
    recur_tensor *a = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "a"), *b = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "b");
    recur_tensor *c = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "c");
    /* y = a*a + stop_gradient(b)*a : dy/da = 2a + b, dy/db = None (blocked), dy/dc = None */
    recur_tensor *y = recur_reduce_sum(g, recur_add(g, recur_mul(g, a, a), recur_mul(g, recur_stop_gradient(g, b), a)), NULL, 0, false);
    recur_tensor *dx[3];
    ASSERT_TRUE(recur_gradients(g, &y, 1, (recur_tensor *[]){a, b, c}, 3, NULL, dx));
    ASSERT_TRUE(dx[0] != NULL);
    ASSERT_TRUE(dx[1] == NULL);
    ASSERT_TRUE(dx[2] == NULL);
    ASSERT_STR_STARTS(recur_tensor_name(dx[0]), "gradients/");
    recur_session *s = recur_session_new(g, NULL, st);
    recur_array *av = recur_array_from(RECUR_F32, RECUR_SHAPE(2), (float[]){1, 2}, NULL);
    recur_array *bv = recur_array_from(RECUR_F32, RECUR_SHAPE(2), (float[]){10, 20}, NULL), *out = NULL;
    recur_session_run(s, (recur_feed[]){{a, av}, {b, bv}}, 2, &dx[0], &out, 1, NULL, 0, st);
    ASSERT_OK(st);
    ASSERT_NEAR(recur_array_f32(out)[0], 12, 1e-6);
    ASSERT_NEAR(recur_array_f32(out)[1], 24, 1e-6);
    recur_array_free(out);
    /* grad_ys seeds; errors */
    recur_tensor *seed = recur_scalar_f32(g, 3);
    ASSERT_TRUE(recur_gradients(g, &y, 1, &a, 1, &seed, dx));
    recur_session_run(s, (recur_feed[]){{a, av}, {b, bv}}, 2, &dx[0], &out, 1, NULL, 0, st);
    ASSERT_NEAR(recur_array_f32(out)[0], 36, 1e-5);
    recur_array_free(out);
    /* through casts (float32 rounding makes finite differences useless here): the gradient of
     * a float cast is the upstream gradient cast back */
    recur_tensor *cy = recur_reduce_sum(g, recur_mul(g, recur_cast(g, recur_cast(g, a, RECUR_F64), RECUR_F32), b), NULL, 0, false);
    ASSERT_TRUE(recur_gradients(g, &cy, 1, &a, 1, NULL, dx));
    recur_session_run(s, (recur_feed[]){{a, av}, {b, bv}}, 2, &dx[0], &out, 1, NULL, 0, st);
    ASSERT_NEAR(recur_array_f32(out)[1], 20, 0);
    recur_array_free(out);
    recur_tensor *bad = recur_fill(g, RECUR_F32, RECUR_SHAPE(3), 1);
    ASSERT_FALSE(recur_gradients(g, &y, 1, &a, 1, &bad, dx));
    ASSERT_STR_CONTAINS(recur_graph_message(g), "Incompatible shapes");
    recur_graph_clear_error(g);
    recur_tensor *iy = recur_cast(g, a, RECUR_I32);
    ASSERT_FALSE(recur_gradients(g, &iy, 1, &a, 1, NULL, dx));
    ASSERT_STR_CONTAINS(recur_graph_message(g), "must be a floating tensor");
    recur_graph_clear_error(g);
    recur_array_free(av);
    recur_array_free(bv);
    recur_session_free(s);
    recur_graph_free(g);
    recur_status_free(st);
}

TEST(embedding_gradient_stays_sparse)
{
    st = recur_status_new();
    recur_graph *g = recur_graph_new();
    recur_tensor *emb = recur_get_variable(g, "emb", RECUR_SHAPE(100000, 16), NULL);
    recur_tensor *ids = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(-1), "ids");
    recur_tensor *y = recur_reduce_sum(g, recur_gather(g, emb, ids), NULL, 0, false);
    recur_tensor *d;
    ASSERT_TRUE(recur_gradients(g, &y, 1, &emb, 1, NULL, &d));
    ASSERT_EQ_STR(recur_op_type(recur_tensor_op(d)), "IndexedSlices");
    /* fetched, it is dense (and correct) */
    recur_session *s = recur_session_new(g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_array *iv = recur_array_from(RECUR_I32, RECUR_SHAPE(3), (int32_t[]){7, 7, 99999}, NULL), *out = NULL;
    recur_session_run(s, (recur_feed[]){{ids, iv}}, 1, &d, &out, 1, NULL, 0, st);
    ASSERT_OK(st);
    ASSERT_NEAR(recur_array_f32(out)[7 * 16], 2, 0);
    ASSERT_NEAR(recur_array_f32(out)[99999 * 16 + 15], 1, 0);
    ASSERT_NEAR(recur_array_f32(out)[8 * 16], 0, 0);
    recur_array_free(out);
    recur_array_free(iv);
    recur_session_free(s);
    recur_graph_free(g);
    recur_status_free(st);
}

RUN_TESTS(T(finite_differences_for_every_op), T(two_thread_fused_kernels_match_the_loop_path), T(tall_products_match_the_loop_path), T(fused_results_keep_their_bits_on_one_and_two_threads), T(large_batches_move_row_tiles_and_keep_their_bits), T(initial_state_gradients_only_when_read), T(weight_gradients_without_the_input_gradient), T(two_gradients_of_one_rnn_in_one_run), T(two_thread_sorted_copies_match_the_loop_path), T(two_thread_small_batch_lstm_matches_the_loop_path), T(one_sequence_projection_chunks_move_and_keep_their_bits), T(finite_differences_through_rnns), T(rnn_gradients_match_tensorflow),
          T(unconnected_stop_gradient_and_sums), T(embedding_gradient_stays_sparse))
