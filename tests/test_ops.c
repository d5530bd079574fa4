/*
 * test_ops.c - every op: the fast kernel against the naive reference kernel on random inputs
 * (several shapes, broadcasting cases), a hand-checked value for each, and the shape errors
 * each shape function must raise at build time. Also checks the op table is complete.
 */
#include "runner.h"
#include "core/gemm_packed.h"
#include "exec/exec.h"

static recur_status *st;

static recur_array *rnd(recur_dtype dt, recur_shape s, unsigned seed, double lo, double hi)
{
    recur_array *a = recur_array_new(dt, s, NULL);
    srand(seed);
    for (int64_t i = 0; i < recur_array_size(a); i++) {
        double v = lo + (hi - lo) * rand() / (double)RAND_MAX;
        rc_array_set(a, i, dt == RECUR_I32 || dt == RECUR_I64 ? floor(v) : v);
    }
    return a;
}

/* Run `y` with the given feeds, once with fast kernels and once with reference kernels. */
static void run_both(recur_graph *g, recur_tensor *y, recur_tensor **ph, recur_array **vals, int n,
                     recur_array **fast, recur_array **ref)
{
    recur_feed feeds[8];
    for (int i = 0; i < n; i++) feeds[i] = (recur_feed){ph[i], vals[i]};
    recur_session *s = recur_session_new(g, NULL, st);
    ASSERT_OK(st);
    recur_session_run(s, feeds, n, &y, fast, 1, NULL, 0, st);
    ASSERT_OK(st);
    s->reference = true;
    recur_session_run(s, feeds, n, &y, ref, 1, NULL, 0, st);
    ASSERT_OK(st);
    recur_session_free(s);
}

static void assert_close(const recur_array *a, const recur_array *b, double tol)
{
    ASSERT_EQ_INT(recur_array_dtype(a), recur_array_dtype(b));
    ASSERT_TRUE(rc_shape_equal(recur_array_shape(a), recur_array_shape(b)));
    for (int64_t i = 0; i < recur_array_size(a); i++) {
        double x = rc_array_get(a, i), y = rc_array_get(b, i);
        if (isnan(x) && isnan(y)) continue;
        ASSERT_NEAR(x, y, tol * (1 + fabs(y)));
    }
}

typedef recur_tensor *(*build_fn)(recur_graph *g, recur_tensor **in);

typedef struct opcase {
    const char *name;
    build_fn build;
    int n;
    recur_dtype dt[3];
    recur_shape shape[3];
    double lo, hi;
} opcase;

#define B(name, body)                                                                          \
    static recur_tensor *name(recur_graph *g, recur_tensor **in)                               \
    {                                                                                          \
        (void)in;                                                                              \
        return body;                                                                           \
    }
B(b_add, recur_add(g, in[0], in[1]))
B(b_sub, recur_sub(g, in[0], in[1]))
B(b_mul, recur_mul(g, in[0], in[1]))
B(b_div, recur_div(g, in[0], in[1]))
B(b_max, recur_maximum(g, in[0], in[1]))
B(b_min, recur_minimum(g, in[0], in[1]))
B(b_less, recur_less(g, in[0], in[1]))
B(b_ge, recur_greater_equal(g, in[0], in[1]))
B(b_eq, recur_equal(g, in[0], in[1]))
B(b_neg, recur_neg(g, in[0]))
B(b_exp, recur_exp(g, in[0]))
B(b_log, recur_log(g, in[0]))
B(b_sqrt, recur_sqrt(g, in[0]))
B(b_square, recur_square(g, in[0]))
B(b_abs, recur_abs(g, in[0]))
B(b_sigmoid, recur_sigmoid(g, in[0]))
B(b_tanh, recur_tanh(g, in[0]))
B(b_relu, recur_relu(g, in[0]))
B(b_clip, recur_clip(g, in[0], -0.3, 0.4))
B(b_softmax, recur_softmax(g, in[0]))
B(b_log_softmax, recur_log_softmax(g, in[0]))
B(b_matmul, recur_matmul(g, in[0], in[1], false, false))
B(b_matmul_tt, recur_matmul(g, in[0], in[1], true, true))
B(b_matmul_ta, recur_matmul(g, in[0], in[1], true, false))
B(b_bias_add, recur_bias_add(g, in[0], in[1]))
B(b_add_n, recur_add_n(g, in, 3))
B(b_select, recur_select(g, recur_less(g, in[0], in[1]), in[0], in[1]))
B(b_concat0, recur_concat(g, in, 2, 0))
B(b_concat1, recur_concat(g, in, 2, -1))
B(b_transpose, recur_transpose(g, in[0], (int[]){2, 0, 1}))
B(b_transpose_rows, recur_transpose(g, in[0], (int[]){1, 0, 2}))
B(b_reshape, recur_reshape(g, in[0], RECUR_SHAPE(-1, 4)))
B(b_expand, recur_expand_dims(g, in[0], 1))
B(b_sum_all, recur_reduce_sum(g, in[0], NULL, 0, false))
B(b_mean_all, recur_reduce_mean(g, in[0], NULL, 0, false))
/* the gradient of a max over the middle axis: MaxGrad */
static recur_tensor *b_max_grad(recur_graph *g, recur_tensor **in)
{
    recur_tensor *y = recur_reduce_max(g, in[0], (int[]){1}, 1, false), *dx = NULL;
    return recur_gradients(g, &y, 1, in, 1, NULL, &dx) ? dx : NULL;
}
/* the gradient of a mean: ReduceGrad spreading dy / count over the input's shape */
static recur_tensor *b_mean_grad(recur_graph *g, recur_tensor **in)
{
    recur_tensor *y = recur_reduce_mean(g, in[0], (int[]){1}, 1, false), *dx = NULL;
    return recur_gradients(g, &y, 1, in, 1, NULL, &dx) ? dx : NULL;
}
B(b_sum_lead, recur_reduce_sum(g, in[0], (int[]){0, 1}, 2, false))
B(b_sum_trail, recur_reduce_sum(g, in[0], (int[]){-1}, 1, true))
B(b_sum_mid, recur_reduce_sum(g, in[0], (int[]){1}, 1, false))
B(b_mean_trail, recur_reduce_mean(g, in[0], (int[]){2}, 1, false))
B(b_mean_mid, recur_reduce_mean(g, in[0], (int[]){0, 2}, 2, true))
B(b_max_trail, recur_reduce_max(g, in[0], (int[]){-1}, 1, false))
B(b_max_lead, recur_reduce_max(g, in[0], (int[]){0}, 1, false))
B(b_argmax, recur_argmax(g, in[0], -1))
B(b_max_mid, recur_reduce_max(g, in[0], (int[]){1}, 1, false))
B(b_mean_mid2, recur_reduce_mean(g, in[0], (int[]){1, 2}, 2, true))
B(b_cast, recur_cast(g, in[0], RECUR_I32))
B(b_cast64, recur_cast(g, in[0], RECUR_F64))
B(b_gather, recur_gather(g, in[0], in[1]))
B(b_reverse, recur_reverse(g, in[0], 1))
static recur_tensor *b_revseq(recur_graph *g, recur_tensor **in)
{
    recur_array *len = rnd(RECUR_I32, RECUR_SHAPE(3), 9, 0, 5);
    recur_tensor *t = recur_reverse_sequence(g, in[0], recur_constant(g, len, NULL), 1, 0);
    recur_array_free(len);
    return t;
}
B(b_slice, recur_slice(g, in[0], (int64_t[]){1, 0, 2}, (int64_t[]){2, -1, 2}))
B(b_zeros_like, recur_zeros_like(g, in[0]))
B(b_ones_like, recur_ones_like(g, in[0]))
B(b_seqmask, recur_sequence_mask(g, in[0], 6, RECUR_F32))
B(b_stack, recur_stack(g, in, 2, 1))
B(b_identity, recur_identity(g, in[0], "named"))
B(b_stop, recur_stop_gradient(g, in[0]))
B(b_fill, recur_add(g, in[0], recur_fill(g, RECUR_F32, RECUR_SHAPE(4), 2.5)))

#define S(...) RECUR_SHAPE(__VA_ARGS__)
#define F RECUR_F32
static const opcase cases[] = {
    {"add same", b_add, 2, {F, F}, {S(3, 4), S(3, 4)}, -2, 2},
    {"add row bcast", b_add, 2, {F, F}, {S(3, 4), S(4)}, -2, 2},
    {"add col bcast", b_add, 2, {F, F}, {S(3, 1), S(1, 4)}, -2, 2},
    {"add scalar", b_add, 2, {F, F}, {S(3, 4), RECUR_SCALAR}, -2, 2},
    {"add 3d mixed", b_add, 2, {F, F}, {S(2, 1, 4), S(3, 1)}, -2, 2},
    {"add leading bcast", b_add, 2, {F, F}, {S(2, 3, 4), S(2, 3, 1)}, -2, 2},
    {"mul leading bcast", b_mul, 2, {F, F}, {S(2, 3, 4), S(2, 1, 1)}, -2, 2},
    {"add int32", b_add, 2, {RECUR_I32, RECUR_I32}, {S(5), S(5)}, -9, 9},
    {"add f64", b_add, 2, {RECUR_F64, RECUR_F64}, {S(2, 3), S(3)}, -9, 9},
    {"sub bcast", b_sub, 2, {F, F}, {S(4), S(3, 4)}, -2, 2},
    {"mul bcast", b_mul, 2, {F, F}, {S(2, 3, 4), S(3, 1)}, -2, 2},
    {"div", b_div, 2, {F, F}, {S(3, 4), S(4)}, 0.5, 2},
    {"maximum", b_max, 2, {F, F}, {S(3, 4), S(3, 4)}, -2, 2},
    {"minimum", b_min, 2, {F, F}, {S(3, 4), S(1)}, -2, 2},
    {"sub scalar first", b_sub, 2, {F, F}, {RECUR_SCALAR, S(3, 4)}, -2, 2},
    /* large enough for two threads */
    {"mul same, large", b_mul, 2, {F, F}, {S(300, 1001), S(300, 1001)}, -2, 2},
    {"div scalar, large", b_div, 2, {F, F}, {S(300, 1001), RECUR_SCALAR}, 0.5, 2},
    {"add leading, large", b_add, 2, {F, F}, {S(64, 40, 256), S(64, 40, 1)}, -2, 2},
    {"maximum trailing, large", b_max, 2, {F, F}, {S(1000, 300), S(300)}, -2, 2},
    {"less", b_less, 2, {F, F}, {S(3, 4), S(4)}, -2, 2},
    {"greater_equal", b_ge, 2, {F, F}, {S(3, 4), S(3, 4)}, -2, 2},
    {"equal int", b_eq, 2, {RECUR_I32, RECUR_I32}, {S(8), S(8)}, 0, 3},
    {"neg", b_neg, 1, {F}, {S(7)}, -2, 2},
    {"exp", b_exp, 1, {F}, {S(7)}, -5, 5},
    {"log", b_log, 1, {F}, {S(7)}, 0.1, 5},
    {"sqrt", b_sqrt, 1, {F}, {S(7)}, 0, 5},
    {"square", b_square, 1, {F}, {S(7)}, -3, 3},
    {"abs", b_abs, 1, {RECUR_I64}, {S(7)}, -3, 3},
    {"sigmoid", b_sigmoid, 1, {F}, {S(3, 5)}, -8, 8},
    {"tanh", b_tanh, 1, {F}, {S(3, 5)}, -4, 4},
    {"relu", b_relu, 1, {F}, {S(9)}, -1, 1},
    {"clip", b_clip, 1, {F}, {S(9)}, -1, 1},
    {"softmax", b_softmax, 1, {F}, {S(4, 6)}, -10, 10},
    {"log_softmax", b_log_softmax, 1, {F}, {S(4, 6)}, -10, 10},
    {"matmul", b_matmul, 2, {F, F}, {S(5, 7), S(7, 3)}, -1, 1},
    {"matmul tt", b_matmul_tt, 2, {F, F}, {S(7, 5), S(3, 7)}, -1, 1},
    {"matmul ta f64", b_matmul_ta, 2, {RECUR_F64, RECUR_F64}, {S(7, 5), S(7, 3)}, -1, 1},
    {"bias_add", b_bias_add, 2, {F, F}, {S(2, 3, 4), S(4)}, -1, 1},
    {"add_n", b_add_n, 3, {F, F, F}, {S(3, 4), S(3, 4), S(3, 4)}, -1, 1},
    {"select", b_select, 2, {F, F}, {S(3, 4), S(4)}, -1, 1},
    {"concat axis 0", b_concat0, 2, {F, F}, {S(2, 3), S(4, 3)}, -1, 1},
    {"concat axis -1", b_concat1, 2, {F, F}, {S(2, 3, 2), S(2, 3, 5)}, -1, 1},
    {"transpose", b_transpose, 1, {F}, {S(2, 3, 4)}, -1, 1},
    {"transpose keeping rows", b_transpose_rows, 1, {F}, {S(2, 3, 4)}, -1, 1},
    {"reshape", b_reshape, 1, {F}, {S(2, 3, 4)}, -1, 1},
    {"expand_dims", b_expand, 1, {F}, {S(2, 3)}, -1, 1},
    {"sum all", b_sum_all, 1, {F}, {S(2, 3, 4)}, -1, 1},
    /* large enough for the two-thread paths (two half sums, two halves of the rows) */
    {"mean all, large", b_mean_all, 1, {F}, {S(600, 500)}, -1, 1},
    {"transpose keeping rows, large", b_transpose_rows, 1, {F}, {S(40, 70, 128)}, -1, 1},
    {"mean gradient, large", b_mean_grad, 1, {F}, {S(1, 300000, 2)}, -1, 1},
    {"mean gradient, large rows", b_mean_grad, 1, {F}, {S(1, 3000, 100)}, -1, 1},
    {"max middle, large", b_max_mid, 1, {F}, {S(64, 40, 256)}, -1, 1},
    {"max gradient, large", b_max_grad, 1, {F}, {S(64, 40, 256)}, -1, 1},
    {"sum leading", b_sum_lead, 1, {F}, {S(2, 3, 4)}, -1, 1},
    {"sum trailing keep", b_sum_trail, 1, {F}, {S(2, 3, 4)}, -1, 1},
    {"sum middle", b_sum_mid, 1, {F}, {S(2, 3, 4)}, -1, 1},
    {"sum middle int", b_sum_mid, 1, {RECUR_I32}, {S(2, 3, 4)}, -9, 9},
    {"mean trailing", b_mean_trail, 1, {F}, {S(2, 3, 4)}, -1, 1},
    {"mean outer keep", b_mean_mid, 1, {F}, {S(2, 3, 4)}, -1, 1},
    {"max trailing", b_max_trail, 1, {F}, {S(2, 3, 4)}, -1, 1},
    {"max leading", b_max_lead, 1, {F}, {S(2, 3, 4)}, -1, 1},
    {"max middle", b_max_mid, 1, {F}, {S(2, 3, 4)}, -1, 1},
    {"mean middle", b_mean_mid2, 1, {F}, {S(2, 3, 4, 2)}, -1, 1},
    {"argmax", b_argmax, 1, {F}, {S(3, 5)}, -1, 1},
    {"cast", b_cast, 1, {F}, {S(6)}, -9, 9},
    {"cast f64", b_cast64, 1, {F}, {S(6)}, -9, 9},
    {"gather", b_gather, 2, {F, RECUR_I32}, {S(5, 3), S(2, 4)}, 0, 4.99},
    {"reverse", b_reverse, 1, {F}, {S(2, 5, 3)}, -1, 1},
    {"reverse_sequence", b_revseq, 1, {F}, {S(3, 5, 2)}, -1, 1},
    {"slice", b_slice, 1, {F}, {S(3, 4, 5)}, -1, 1},
    {"zeros_like", b_zeros_like, 1, {F}, {S(3, 4)}, -1, 1},
    {"ones_like", b_ones_like, 1, {RECUR_I64}, {S(3, 4)}, -1, 1},
    {"sequence_mask", b_seqmask, 1, {RECUR_I32}, {S(4)}, 0, 6},
    {"stack", b_stack, 2, {F, F}, {S(2, 3), S(2, 3)}, -1, 1},
    {"identity", b_identity, 1, {F}, {S(2, 3)}, -1, 1},
    {"stop_gradient", b_stop, 1, {F}, {S(2, 3)}, -1, 1},
    {"fill", b_fill, 1, {F}, {S(4)}, -1, 1},
};

TEST(fast_kernels_match_reference)
{
    st = recur_status_new();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const opcase *oc = &cases[c];
        recur_graph *g = recur_graph_new();
        recur_tensor *ph[3];
        recur_array *vals[3];
        for (int i = 0; i < oc->n; i++) {
            ph[i] = recur_placeholder(g, oc->dt[i], oc->shape[i], NULL);
            vals[i] = rnd(oc->dt[i], oc->shape[i], (unsigned)(c * 7 + i), oc->lo, oc->hi);
        }
        recur_tensor *y = oc->build(g, ph);
        if (!recur_graph_ok(g)) rt_fail(__FILE__, __LINE__, "%s: %s", oc->name, recur_graph_message(g));
        recur_array *fast, *ref;
        run_both(g, y, ph, vals, oc->n, &fast, &ref);
        /* The static shape agrees with the run-time shape. */
        ASSERT_TRUE(rc_shape_compatible(recur_tensor_shape(y), recur_array_shape(fast)));
        assert_close(fast, ref, 1e-5);
        recur_array_free(fast);
        recur_array_free(ref);
        for (int i = 0; i < oc->n; i++) recur_array_free(vals[i]);
        recur_graph_free(g);
    }
    recur_status_free(st);
}

/* The copying kernels (and dropout's mask) cut large arrays in two halves for two threads: the
 * halves must give exactly what one thread gives (the one-thread path is the one the small
 * cases above check). */
TEST(two_thread_copies_match_one_thread)
{
    st = recur_status_new();
    recur_graph *g = recur_graph_new();
    recur_shape sh = RECUR_SHAPE(37, 64, 100);
    recur_tensor *a = recur_placeholder(g, RECUR_F32, sh, "a"), *b = recur_placeholder(g, RECUR_F32, sh, "b"), *parts[3];
    recur_tensor *cat = recur_concat(g, (recur_tensor *[]){a, b}, 2, 2);
    ASSERT_TRUE(recur_split(g, cat, 2, 1, parts));
    recur_tensor *ys[] = {cat, parts[0], parts[1], recur_reverse(g, a, 0), recur_reverse(g, b, 1),
                          recur_transpose(g, a, (int[]){1, 0, 2}), recur_reduce_mean(g, cat, NULL, 0, false),
                          recur_dropout(g, a, recur_scalar_f32(g, 0.6f), 5), b_max_grad(g, &a),
                          recur_reduce_max(g, b, (int[]){1}, 1, false)};
    int ny = (int)(sizeof ys / sizeof ys[0]);
    ASSERT_TRUE(recur_graph_ok(g));
    recur_array *va = rnd(RECUR_F32, sh, 11, -1, 1), *vb = rnd(RECUR_F32, sh, 12, -1, 1);
    recur_feed feeds[] = {{a, va}, {b, vb}};
    recur_array *out[2][12];
    for (int threads = 1; threads <= 2; threads++) {
        recur_session *s = recur_session_new(g, &(recur_session_opts){.num_threads = threads}, st);
        ASSERT_OK(st);
        recur_session_run(s, feeds, 2, ys, out[threads - 1], ny, NULL, 0, st);
        ASSERT_OK(st);
        recur_session_free(s);
    }
    for (int i = 0; i < ny; i++) {
        ASSERT_TRUE(rc_shape_equal(recur_array_shape(out[0][i]), recur_array_shape(out[1][i])));
        ASSERT_TRUE(!memcmp(recur_array_data(out[0][i]), recur_array_data(out[1][i]),
                            (size_t)recur_array_size(out[0][i]) * sizeof(float)));
        recur_array_free(out[0][i]);
        recur_array_free(out[1][i]);
    }
    recur_array_free(va);
    recur_array_free(vb);
    recur_graph_free(g);
    recur_status_free(st);
}

/* A few hand-checked values, so the reference kernels are not only self-consistent. */
static recur_array *eval1(recur_graph *g, recur_tensor *y)
{
    recur_session *s = recur_session_new(g, NULL, st);
    recur_array *out = NULL;
    recur_session_run(s, NULL, 0, &y, &out, 1, NULL, 0, st);
    ASSERT_OK(st);
    recur_session_free(s);
    return out;
}

static recur_tensor *cst(recur_graph *g, recur_shape s, const float *v)
{
    recur_array *a = recur_array_from(RECUR_F32, s, v, NULL);
    recur_tensor *t = recur_constant(g, a, NULL);
    recur_array_free(a);
    return t;
}

/* One row against a column block (the one-sequence recurrent product): column blocks of every
 * width the kernel splits (whole and partial 128-column groups), beta 0 and 1, both paths. */
TEST(gemv_block_matches_a_double_reference)
{
    const int64_t Ks[] = {1, 7, 256}, Ws[] = {16, 112, 128, 144, 256, 320};
    srand(11);
    for (int fb = 0; fb < 2; fb++) {
        rc_gemm_packed_use_cblas(fb);
        for (size_t ki = 0; ki < RC_ARRAY_LEN(Ks); ki++)
            for (size_t wi = 0; wi < RC_ARRAY_LEN(Ws); wi++) {
                int64_t K = Ks[ki], w = Ws[wi], N = w + 40, n0 = 16, ldb = N + 3;
                float *Bm = malloc(sizeof(float) * (size_t)(K * ldb)), *blk = malloc(sizeof(float) * (size_t)(K * w));
                float *a = malloc(sizeof(float) * (size_t)K), *c = malloc(sizeof(float) * (size_t)(w + 1)), *c0 = malloc(sizeof(float) * (size_t)w);
                for (int64_t i = 0; i < K * ldb; i++) Bm[i] = (float)rand() / RAND_MAX - 0.5f;
                for (int64_t i = 0; i < K; i++) a[i] = (float)rand() / RAND_MAX - 0.5f;
                for (int64_t i = 0; i < w; i++) c0[i] = (float)rand() / RAND_MAX - 0.5f;
                rc_pack_block(Bm, ldb, K, n0, w, blk);
                for (int beta = 0; beta < 2; beta++) {
                    memcpy(c, c0, sizeof(float) * (size_t)w);
                    c[w] = 42.0f;
                    rc_gemv_block(K, a, blk, w, (float)beta, c);
                    ASSERT_TRUE(c[w] == 42.0f); /* nothing past w */
                    for (int64_t j = 0; j < w; j++) {
                        double ref = beta ? c0[j] : 0, mag = fabs(ref);
                        for (int64_t k = 0; k < K; k++) {
                            ref += (double)a[k] * Bm[k * ldb + n0 + j];
                            mag += fabs((double)a[k] * Bm[k * ldb + n0 + j]);
                        }
                        if (fabs(c[j] - ref) > 1e-6 * (mag + 1))
                            rt_fail(__FILE__, __LINE__, "K %lld w %lld beta %d fallback %d: c[%lld] = %g, want %g", (long long)K,
                                    (long long)w, beta, fb, (long long)j, c[j], ref);
                    }
                }
                free(Bm), free(blk), free(a), free(c), free(c0);
            }
    }
    rc_gemm_packed_use_cblas(false);
}

TEST(packed_gemm_matches_a_double_reference)
{
    /* The recurrent-step product: every row-tile size (AVX-512: 4 to 8 rows, 8 + 1..3 rows as
     * two tiles, fewer than 4 rows in the tail kernel; AVX2: 6-row half-panel tiles, 2 to 5
     * rows left over, 7 as 4 + 3, one row against two panels) and every edge of the 32-column
     * panels and K blocks, the last 1 to 4 columns as dot products (N 17, 20, 33, 35, 50 with
     * K >= 32), both layouts of B, beta 0 and 1, on the packed path and (up to 13
     * rows) the CBLAS fallback. The blocks of 64 rows (taken where K > 240) against a few
     * shapes only: under valgrind every shape for them took most of the test's 300 s. */
    const int64_t Ms[] = {0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 64, 65, 139}, Ns[] = {1, 15, 16, 17, 20, 31, 32, 33, 35, 50, 200},
                  Ks[] = {0, 1, 5, 31, 32, 191, 192, 193, 240, 241, 400, 433};
    const bool simd = __builtin_cpu_supports("avx512f") || (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
    srand(7);
    for (int fb = 0; fb < 2; fb++) {
        rc_gemm_packed_use_cblas(fb);
        /* the fallback (one CBLAS call) up to 13 rows: the larger M cost most of the time under valgrind */
        for (size_t mi = 0; mi < RC_ARRAY_LEN(Ms) && (!fb || Ms[mi] <= 13); mi++)
            for (size_t ni = 0; ni < RC_ARRAY_LEN(Ns); ni++)
                for (size_t ki = 0; ki < RC_ARRAY_LEN(Ks); ki++)
                    for (int tr = 0; tr < 2; tr++) {
                        int64_t M = Ms[mi], N = Ns[ni], K = Ks[ki], lda = K + 3, ldb = (tr ? K : N) + 2, ldc = N + 1;
                        if (M >= 64 && !((N == 15 || N == 33 || N == 200) && (K == 32 || K == 241 || K == 433))) continue;
                        float *A = malloc(sizeof(float) * (size_t)(M * lda + 1)), *Bm = malloc(sizeof(float) * (size_t)((tr ? N : K) * ldb + 1));
                        float *C = malloc(sizeof(float) * (size_t)(M * ldc + 1)), *C0 = malloc(sizeof(float) * (size_t)(M * ldc + 1));
                        for (int64_t i = 0; i < M * lda; i++) A[i] = (float)rand() / RAND_MAX - 0.5f;
                        for (int64_t i = 0; i < (tr ? N : K) * ldb; i++) Bm[i] = (float)rand() / RAND_MAX - 0.5f;
                        for (int64_t i = 0; i < M * ldc; i++) C0[i] = (float)rand() / RAND_MAX - 0.5f;
                        rc_arena ar = {0};
                        rc_packed_b p;
                        ASSERT_TRUE(rc_pack_b(&p, Bm, ldb, tr, K, N, &ar));
                        /* the packed path runs wherever the CPU has AVX-512 or AVX2 + FMA (under
                         * valgrind: AVX2); where it has neither, the first pass would only repeat
                         * the fallback's */
                        ASSERT_TRUE((p.panels != NULL) == (!fb && K > 0 && N > 0 && simd));
                        for (int beta = 0; beta < 2 && (fb || simd); beta++) {
                            memcpy(C, C0, sizeof(float) * (size_t)(M * ldc));
                            rc_gemm_packed(M, A, lda, &p, (float)beta, C, ldc);
                            /* on the packed path a row on its own (a tile of one, the threads'
                             * splits) gets the same bits */
                            for (int64_t i = 0; p.panels && i < M; i += 5) {
                                float row[201];
                                memcpy(row, C0 + i * ldc, sizeof(float) * (size_t)N);
                                rc_gemm_packed(1, A + i * lda, lda, &p, (float)beta, row, ldc);
                                ASSERT_TRUE(memcmp(row, C + i * ldc, sizeof(float) * (size_t)N) == 0);
                            }
                            for (int64_t i = 0; i < M; i++)
                                for (int64_t j = 0; j < ldc; j++) {
                                    if (j == N) { /* the column past N is never touched */
                                        ASSERT_TRUE(C[i * ldc + j] == C0[i * ldc + j]);
                                        continue;
                                    }
                                    double ref = beta ? C0[i * ldc + j] : 0, mag = fabs(ref);
                                    for (int64_t k = 0; k < K; k++) {
                                        double b = tr ? Bm[j * ldb + k] : Bm[k * ldb + j];
                                        ref += (double)A[i * lda + k] * b;
                                        mag += fabs((double)A[i * lda + k] * b);
                                    }
                                    if (fabs(C[i * ldc + j] - ref) > 1e-6 * (mag + 1))
                                        rt_fail(__FILE__, __LINE__, "M %lld N %lld K %lld trans %d beta %d fallback %d: C[%lld][%lld] = %g, want %g",
                                                (long long)M, (long long)N, (long long)K, tr, beta, fb, (long long)i, (long long)j,
                                                C[i * ldc + j], ref);
                                }
                        }
                        rc_arena_free(&ar);
                        free(A), free(Bm), free(C), free(C0);
                    }
    }
    rc_gemm_packed_use_cblas(false);
}

TEST(weight_grad_product_matches_a_double_reference)
{
    /* C += A^T B over all steps: groups of A's columns stacked as C's rows, a group's rows in
     * two places (h0, then the outputs), every edge of the 8-row tiles, 32-column panels and
     * 192-row blocks, and C's columns computed in two calls as the two threads do, on the
     * packed path and the CBLAS fallback; and B's column sums added on the way. */
    const int64_t Ms[] = {1, 5, 191, 192, 193, 450}, Ns[] = {1, 31, 32, 33, 100}, Ks[][3] = {{1, 0, 0}, {8, 0, 0}, {13, 4, 0}, {7, 9, 17}};
    const int ngs[] = {1, 1, 2, 3};
    srand(11);
    for (int fb = 0; fb < 2; fb++) {
        rc_gemm_packed_use_cblas(fb);
        for (size_t mi = 0; mi < RC_ARRAY_LEN(Ms); mi++)
            for (size_t ni = 0; ni < RC_ARRAY_LEN(Ns); ni++)
                for (size_t ki = 0; ki < RC_ARRAY_LEN(Ks); ki++)
                    for (int halves = 0; halves < 2; halves++) {
                        int64_t M = Ms[mi], N = Ns[ni], ldb = N + 3, ldc = N + 2, ktot = 0;
                        int ng = ngs[ki];
                        rc_tall g[3];
                        float *mem[3], *Bm = malloc(sizeof(float) * (size_t)(M * ldb));
                        for (int64_t i = 0; i < M * ldb; i++) Bm[i] = (float)rand() / RAND_MAX - 0.5f;
                        for (int gi = 0; gi < ng; gi++) {
                            int64_t k = Ks[ki][gi], lda = k + gi, split = gi == 1 ? RC_MIN(M, 3 + 190 * (int64_t)(M > 200)) : 0;
                            mem[gi] = malloc(sizeof(float) * (size_t)(M * lda + 64));
                            for (int64_t i = 0; i < M * lda + 64; i++) mem[gi][i] = (float)rand() / RAND_MAX - 0.5f;
                            /* group 1: the first `split` rows after the rest in memory */
                            g[gi] = split ? (rc_tall){.a0 = mem[gi] + (M - split) * lda, .a1 = mem[gi], .split = split, .lda = lda, .k = k}
                                          : (rc_tall){.a0 = mem[gi], .lda = lda, .k = k};
                            ktot += k;
                        }
                        float *C = malloc(sizeof(float) * (size_t)(ktot * ldc)), *C0 = malloc(sizeof(float) * (size_t)(ktot * ldc));
                        float *work = rc_aligned_alloc(sizeof(float) * rc_gemm_tn_floats(ktot));
                        for (int64_t i = 0; i < ktot * ldc; i++) C0[i] = (float)rand() / RAND_MAX - 0.5f;
                        memcpy(C, C0, sizeof(float) * (size_t)(ktot * ldc));
                        /* the column sums of B (a bias gradient) on the way, one past N untouched */
                        float *cs = malloc(sizeof(float) * (size_t)(N + 1)), *cs0 = malloc(sizeof(float) * (size_t)(N + 1));
                        for (int64_t j = 0; j <= N; j++) cs[j] = cs0[j] = (float)rand() / RAND_MAX - 0.5f;
                        int64_t cut = halves && N > 32 ? 32 : N;
                        rc_gemm_tn_acc(M, ng, g, Bm, ldb, C, ldc, N, 0, cut, cs, work);
                        if (cut < N) rc_gemm_tn_acc(M, ng, g, Bm, ldb, C, ldc, N, cut, N, cs, work);
                        ASSERT_TRUE(cs[N] == cs0[N]);
                        for (int64_t j = 0; j < N; j++) {
                            double ref = cs0[j], mag = fabs(ref);
                            for (int64_t r = 0; r < M; r++) ref += Bm[r * ldb + j], mag += fabs(Bm[r * ldb + j]);
                            if (fabs(cs[j] - ref) > 1e-6 * (mag + 1))
                                rt_fail(__FILE__, __LINE__, "M %lld N %lld fallback %d: column sum %lld = %g, want %g", (long long)M,
                                        (long long)N, fb, (long long)j, cs[j], ref);
                        }
                        free(cs), free(cs0);
                        int64_t row = 0;
                        for (int gi = 0; gi < ng; gi++)
                            for (int64_t i = 0; i < g[gi].k; i++, row++)
                                for (int64_t j = 0; j < ldc; j++) {
                                    if (j >= N) { /* the columns past N are never touched */
                                        ASSERT_TRUE(C[row * ldc + j] == C0[row * ldc + j]);
                                        continue;
                                    }
                                    double ref = C0[row * ldc + j], mag = fabs(ref);
                                    for (int64_t r = 0; r < M; r++) {
                                        const float *a = r < g[gi].split ? g[gi].a0 + r * g[gi].lda
                                                         : g[gi].a1              ? g[gi].a1 + (r - g[gi].split) * g[gi].lda
                                                                                 : g[gi].a0 + r * g[gi].lda;
                                        ref += (double)a[i] * Bm[r * ldb + j];
                                        mag += fabs((double)a[i] * Bm[r * ldb + j]);
                                    }
                                    if (fabs(C[row * ldc + j] - ref) > 1e-6 * (mag + 1))
                                        rt_fail(__FILE__, __LINE__, "M %lld N %lld groups %d fallback %d: C[%lld][%lld] = %g, want %g", (long long)M,
                                                (long long)N, ng, fb, (long long)row, (long long)j, C[row * ldc + j], ref);
                                }
                        for (int gi = 0; gi < ng; gi++) free(mem[gi]);
                        rc_aligned_free(work);
                        free(Bm), free(C), free(C0);
                    }
    }
    rc_gemm_packed_use_cblas(false);
}

TEST(hand_checked_values)
{
    st = recur_status_new();
    recur_graph *g = recur_graph_new();
    recur_tensor *a = cst(g, RECUR_SHAPE(2, 2), (float[]){1, 2, 3, 4});
    recur_tensor *b = cst(g, RECUR_SHAPE(2), (float[]){10, 20});
    recur_array *r = eval1(g, recur_matmul(g, a, a, false, false));
    float *p = recur_array_f32(r);
    ASSERT_NEAR(p[0], 7, 0);
    ASSERT_NEAR(p[1], 10, 0);
    ASSERT_NEAR(p[2], 15, 0);
    ASSERT_NEAR(p[3], 22, 0);
    recur_array_free(r);
    r = eval1(g, recur_add(g, a, b));
    ASSERT_NEAR(recur_array_f32(r)[3], 24, 0);
    recur_array_free(r);
    r = eval1(g, recur_softmax(g, b));
    ASSERT_NEAR(recur_array_f32(r)[1], 1.0 / (1.0 + exp(-10.0)), 1e-7);
    recur_array_free(r);
    r = eval1(g, recur_reduce_sum(g, a, (int[]){0}, 1, false));
    ASSERT_NEAR(recur_array_f32(r)[0], 4, 0);
    ASSERT_NEAR(recur_array_f32(r)[1], 6, 0);
    recur_array_free(r);
    r = eval1(g, recur_transpose(g, a, NULL));
    ASSERT_NEAR(recur_array_f32(r)[1], 3, 0);
    recur_array_free(r);
    /* reverse_sequence reverses only the first len[b] steps */
    recur_tensor *x = cst(g, RECUR_SHAPE(2, 4), (float[]){1, 2, 3, 4, 5, 6, 7, 8});
    recur_array *lens = recur_array_from(RECUR_I32, RECUR_SHAPE(2), (int32_t[]){3, 0}, NULL);
    r = eval1(g, recur_reverse_sequence(g, x, recur_constant(g, lens, NULL), 1, 0));
    float want[8] = {3, 2, 1, 4, 5, 6, 7, 8};
    for (int i = 0; i < 8; i++) ASSERT_NEAR(recur_array_f32(r)[i], want[i], 0);
    recur_array_free(r);
    recur_array_free(lens);
    recur_tensor *parts[2];
    ASSERT_TRUE(recur_split(g, x, 2, 1, parts));
    r = eval1(g, parts[1]);
    ASSERT_NEAR(recur_array_f32(r)[0], 3, 0);
    ASSERT_NEAR(recur_array_f32(r)[3], 8, 0);
    recur_array_free(r);
    recur_tensor *un[2];
    ASSERT_TRUE(recur_unstack(g, x, 0, un, 2));
    r = eval1(g, un[1]);
    ASSERT_NEAR(recur_array_f32(r)[0], 5, 0);
    recur_array_free(r);
    r = eval1(g, recur_argmax(g, x, 1));
    ASSERT_EQ_INT(recur_array_i64(r)[0], 3);
    recur_array_free(r);
    ASSERT_GRAPH_OK(g);
    recur_graph_free(g);
    recur_status_free(st);
}

/* Shape errors at build time name the op and both shapes. */
TEST(shape_errors_name_op_and_shapes)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *a = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2, 3), "a");
    recur_tensor *b = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(4, 5), "b");
    recur_tensor *i = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(2, 3), "i");
    struct {
        recur_tensor *(*f)(recur_graph *, recur_tensor *, recur_tensor *, recur_tensor *, recur_tensor *);
    } dummy;
    (void)dummy;
#define EXPECT_ERR(expr, ...)                                                                  \
    do {                                                                                       \
        ASSERT_TRUE((expr) == NULL);                                                           \
        const char *subs[] = {__VA_ARGS__};                                                    \
        for (size_t k = 0; k < sizeof subs / sizeof subs[0]; k++)                              \
            ASSERT_STR_CONTAINS(recur_graph_message(g), subs[k]);                              \
        ASSERT_EQ_INT(recur_graph_code(g), RECUR_INVALID_ARGUMENT);                            \
        recur_graph_clear_error(g);                                                            \
    } while (0)
    EXPECT_ERR(recur_matmul(g, a, b, false, false), "Dimensions must be equal, but are 3 and 4", "MatMul",
               "[2,3], [4,5]");
    EXPECT_ERR(recur_add(g, a, b), "Dimensions must be equal, but are 3 and 5", "[2,3], [4,5]");
    EXPECT_ERR(recur_add(g, a, i), "Input 'y' of 'AddV2' Op has type int32 that does not match type float");
    EXPECT_ERR(recur_mul(g, a, b), "Mul");
    EXPECT_ERR(recur_select(g, a, a, a), "condition must be bool");
    EXPECT_ERR(recur_bias_add(g, a, a), "BiasAdd");
    EXPECT_ERR(recur_concat(g, (recur_tensor *[]){a, b}, 2, 0), "Dimension 1 in both shapes must be equal");
    EXPECT_ERR(recur_concat(g, (recur_tensor *[]){a, b}, 2, 5), "concatenating dimensions");
    EXPECT_ERR(recur_reshape(g, a, RECUR_SHAPE(4, 2)), "Cannot reshape a tensor with 6 elements");
    EXPECT_ERR(recur_transpose(g, a, (int[]){0, 0}), "perm");
    EXPECT_ERR(recur_reduce_sum(g, a, (int[]){2}, 1, false), "Invalid reduction dimension 2");
    EXPECT_ERR(recur_argmax(g, a, 3), "Expected dimension in the range");
    EXPECT_ERR(recur_gather(g, a, a), "indices must be int32 or int64");
    EXPECT_ERR(recur_slice(g, a, (int64_t[]){1, 1}, (int64_t[]){2, 1}), "Expected begin[0]");
    EXPECT_ERR(recur_div(g, i, i), "only float and double");
    EXPECT_ERR(recur_softmax(g, i), "logits must be float");
    EXPECT_ERR(recur_sigmoid(g, i), "Sigmoid");
    EXPECT_ERR(recur_clip(g, a, 1, -1), "clip_value_min");
    EXPECT_ERR(recur_reverse_sequence(g, a, a, 1, 0), "seq_lengths must be int32 or int64");
    EXPECT_ERR(recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-7), NULL), "use -1 for an unknown dimension");
    EXPECT_ERR(recur_placeholder(g, (recur_dtype)99, RECUR_SHAPE(1), NULL), "invalid dtype");
    EXPECT_ERR(recur_fill(g, RECUR_F32, RECUR_SHAPE(-1), 0), "fully known");
    recur_tensor *parts[4];
    ASSERT_FALSE(recur_split(g, a, 4, 1, parts));
    ASSERT_STR_CONTAINS(recur_graph_message(g), "evenly divisible by 4");
    recur_graph_clear_error(g);
    /* NULL inputs return NULL without a message (one check after building). */
    ASSERT_TRUE(recur_add(g, a, NULL) == NULL);
    ASSERT_GRAPH_OK(g);
    /* tensors of another graph */
    recur_graph *h = recur_graph_new();
    recur_tensor *c = recur_placeholder(h, RECUR_F32, RECUR_SHAPE(2, 3), "c");
    EXPECT_ERR(recur_add(g, a, c), "must be from the same graph");
    recur_graph_free(h);
    recur_graph_free(g);
}

/* Run-time shape errors: unknown static dims that disagree when fed. */
TEST(runtime_shape_errors)
{
    st = recur_status_new();
    recur_graph *g = recur_graph_new();
    recur_tensor *a = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 3), "a");
    recur_tensor *b = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 3), "b");
    recur_tensor *y = recur_add(g, a, b);
    recur_tensor *idx = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(-1), "idx");
    recur_tensor *gy = recur_gather(g, a, idx);
    recur_session *s = recur_session_new(g, NULL, st);
    recur_array *va = recur_array_new(RECUR_F32, RECUR_SHAPE(2, 3), NULL), *vb = recur_array_new(RECUR_F32, RECUR_SHAPE(4, 3), NULL);
    recur_array *out = NULL;
    recur_session_run(s, (recur_feed[]){{a, va}, {b, vb}}, 2, &y, &out, 1, NULL, 0, st);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Incompatible shapes: [2,3] vs. [4,3]");
    ASSERT_STR_CONTAINS(recur_status_message(st), "[[node Add (AddV2)]]");
    ASSERT_TRUE(out == NULL);
    recur_array *vi = recur_array_from(RECUR_I32, RECUR_SHAPE(2), (int32_t[]){1, 5}, NULL);
    recur_session_run(s, (recur_feed[]){{a, va}, {idx, vi}}, 2, &gy, &out, 1, NULL, 0, st);
    ASSERT_STR_CONTAINS(recur_status_message(st), "indices[1] = 5 is not in [0, 2)");
    recur_array_free(va);
    recur_array_free(vb);
    recur_array_free(vi);
    recur_session_free(s);
    recur_graph_free(g);
    recur_status_free(st);
}

TEST(op_table_is_complete)
{
    for (int t = 1; t < RC_OP_COUNT; t++) {
        const rc_op_def *d = rc_op_table[t];
        if (!d) rt_fail(__FILE__, __LINE__, "op %d has no descriptor", t);
        ASSERT_TRUE(d->type && d->shape && d->forward);
        /* every differentiable op has a gradient (darknet#635, tf#11002) */
        if (!(d->flags & RC_OPF_NO_GRAD) && !d->grad)
            rt_fail(__FILE__, __LINE__, "differentiable op %s has no gradient", d->type);
    }
}

RUN_TESTS(T(fast_kernels_match_reference), T(two_thread_copies_match_one_thread), T(packed_gemm_matches_a_double_reference), T(gemv_block_matches_a_double_reference), T(weight_grad_product_matches_a_double_reference), T(hand_checked_values), T(shape_errors_name_op_and_shapes),
          T(runtime_shape_errors), T(op_table_is_complete))
