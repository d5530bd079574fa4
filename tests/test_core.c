/*
 * test_core.c - status codes, arrays, shapes, allocation hooks and failure injection, the
 * Philox generator and TensorFlow's seed rule.
 */
#include "runner.h"
#include "recur_impl.h"

TEST(code_names_come_from_one_list)
{
    ASSERT_EQ_STR(recur_code_name(RECUR_OK), "OK");
    ASSERT_EQ_STR(recur_code_name(RECUR_INVALID_ARGUMENT), "INVALID_ARGUMENT");
    ASSERT_EQ_STR(recur_code_name(RECUR_DATA_LOSS), "DATA_LOSS");
    ASSERT_EQ_STR(recur_code_name(RECUR_OUT_OF_MEMORY), "OUT_OF_MEMORY");
    ASSERT_EQ_STR(recur_code_name((recur_code)77), "UNKNOWN_CODE");
    ASSERT_EQ_INT(RECUR_NOT_FOUND, 5); /* TensorFlow's numbering */
}

TEST(status_set_clear_and_null)
{
    recur_status *st = recur_status_new();
    ASSERT_TRUE(recur_status_ok(st));
    ASSERT_EQ_STR(recur_status_message(st), "");
    recur_status_set(st, RECUR_NOT_FOUND, "key %s missing", "w");
    ASSERT_EQ_INT(recur_status_code(st), RECUR_NOT_FOUND);
    ASSERT_EQ_STR(recur_status_message(st), "key w missing");
    recur_status_clear(st);
    ASSERT_TRUE(recur_status_ok(st));
    recur_status_free(st);
    /* NULL is an OK status and freeing NULL is a no-op */
    ASSERT_TRUE(recur_status_ok(NULL));
    ASSERT_EQ_INT(recur_status_code(NULL), RECUR_OK);
    recur_status_free(NULL);
}

TEST(shape_printing_matches_tensorflow)
{
    char b[64];
    ASSERT_EQ_STR(recur_shape_str(RECUR_SHAPE(60, 200), b, sizeof b), "(60, 200)");
    ASSERT_EQ_STR(recur_shape_str(RECUR_SHAPE(200), b, sizeof b), "(200,)");
    ASSERT_EQ_STR(recur_shape_str(RECUR_SCALAR, b, sizeof b), "()");
    ASSERT_EQ_STR(recur_shape_str(RECUR_SHAPE(-1, 5), b, sizeof b), "(?, 5)");
    ASSERT_EQ_STR(recur_shape_str(RECUR_UNKNOWN_SHAPE, b, sizeof b), "<unknown>");
    ASSERT_EQ_STR(rc_shape_debug(RECUR_SHAPE(-1, 20, 10), b, sizeof b), "[?,20,10]");
    /* truncation never overflows */
    char tiny[4];
    recur_shape_str(RECUR_SHAPE(123456, 7), tiny, sizeof tiny);
    ASSERT_EQ_INT(strlen(tiny), 3);
    ASSERT_EQ_INT(recur_shape_size(RECUR_SHAPE(3, 4, 5)), 60);
    ASSERT_EQ_INT(recur_shape_size(RECUR_SHAPE(-1, 4)), -1);
    ASSERT_TRUE(rc_shape_compatible(RECUR_SHAPE(-1, 4), RECUR_SHAPE(7, 4)));
    ASSERT_FALSE(rc_shape_compatible(RECUR_SHAPE(3, 4), RECUR_SHAPE(4, 3)));
    ASSERT_TRUE(rc_shape_compatible(RECUR_UNKNOWN_SHAPE, RECUR_SHAPE(4, 3)));
}

TEST(dtype_names_and_sizes)
{
    ASSERT_EQ_STR(recur_dtype_name(RECUR_F32), "float");
    ASSERT_EQ_STR(recur_dtype_name(RECUR_F64), "double");
    ASSERT_EQ_STR(recur_dtype_name(RECUR_I64), "int64");
    ASSERT_EQ_INT(recur_dtype_size(RECUR_F64), 8);
    ASSERT_EQ_INT(recur_dtype_size(RECUR_BOOL), 1);
    ASSERT_EQ_INT(recur_dtype_size((recur_dtype)42), 0);
}

TEST(array_create_copy_access)
{
    recur_status *st = recur_status_new();
    float v[6] = {1, 2, 3, 4, 5, 6};
    recur_array *a = recur_array_from(RECUR_F32, RECUR_SHAPE(2, 3), v, st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(recur_array_rank(a), 2);
    ASSERT_EQ_INT(recur_array_dim(a, 1), 3);
    ASSERT_EQ_INT(recur_array_dim(a, 2), -1);
    ASSERT_EQ_INT(recur_array_size(a), 6);
    ASSERT_EQ_INT(recur_array_nbytes(a), 24);
    ASSERT_TRUE(recur_array_f64(a) == NULL);
    ASSERT_TRUE(((uintptr_t)recur_array_data(a) & 63) == 0);
    recur_array *c = recur_array_copy(a, st);
    recur_array_f32(a)[0] = 9;
    ASSERT_NEAR(recur_array_f32(c)[0], 1, 0);
    ASSERT_NEAR(recur_array_f32(c)[5], 6, 0);
    recur_array *z = recur_array_new(RECUR_I64, RECUR_SHAPE(4), st);
    for (int i = 0; i < 4; i++) ASSERT_EQ_INT(recur_array_i64(z)[i], 0);
    recur_array *e = recur_array_new(RECUR_F32, RECUR_SHAPE(0, 5), st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(recur_array_size(e), 0);
    recur_array *s = recur_array_scalar_i32(7, st);
    ASSERT_EQ_INT(recur_array_rank(s), 0);
    ASSERT_EQ_INT(recur_array_i32(s)[0], 7);
    recur_array_free(a);
    recur_array_free(c);
    recur_array_free(z);
    recur_array_free(e);
    recur_array_free(s);
    recur_array_free(NULL);
    recur_status_free(st);
}

TEST(array_rejects_bad_shapes_and_dtypes)
{
    recur_status *st = recur_status_new();
    ASSERT_TRUE(recur_array_new(RECUR_F32, RECUR_SHAPE(-1, 3), st) == NULL);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "dimension 0");
    ASSERT_TRUE(recur_array_new((recur_dtype)55, RECUR_SHAPE(3), st) == NULL);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Invalid dtype");
    ASSERT_TRUE(recur_array_new(RECUR_F32, RECUR_SHAPE(INT64_MAX / 2, 4), st) == NULL);
    ASSERT_STR_CONTAINS(recur_status_message(st), "overflows");
    recur_shape big = {9, {1}};
    ASSERT_TRUE(recur_array_new(RECUR_F32, big, st) == NULL);
    ASSERT_TRUE(recur_array_copy(NULL, st) == NULL);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    recur_status_free(st);
}

static long g_mallocs;
static void *count_malloc(size_t n)
{
    g_mallocs++;
    return malloc(n);
}

TEST(allocator_hook_sees_every_allocation)
{
    recur_set_allocator(&(recur_allocator){count_malloc, realloc, free});
    recur_graph *g = recur_graph_new();
    recur_get_variable(g, "w", RECUR_SHAPE(3), NULL);
    recur_graph_free(g);
    recur_set_allocator(NULL);
    ASSERT_TRUE(g_mallocs > 5);
}

TEST(fail_nth_allocation_gives_out_of_memory)
{
    /* Every allocation point of a small build fails cleanly in turn. */
    int points = 0;
    for (long n = 1; n < 400; n++) {
        recur_alloc_fail_after(n);
        recur_graph *g = recur_graph_new();
        bool ok = false;
        if (g) {
            recur_variable_scope_push(g, "layer", RECUR_AUTO_REUSE);
            recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 3), "x");
            recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(3, 2), NULL);
            recur_tensor *y = recur_matmul(g, x, w, false, false);
            recur_variable_scope_pop(g);
            ok = y && recur_graph_ok(g);
            if (!ok && !recur_graph_ok(g)) ASSERT_EQ_INT(recur_graph_code(g), RECUR_OUT_OF_MEMORY);
        }
        recur_alloc_fail_after(0);
        recur_graph_free(g);
        if (ok) break;
        points++;
    }
    ASSERT_TRUE(points > 10);
}

TEST(philox_matches_reference_vectors)
{
    /* Known-answer test from the Random123 paper (Philox4x32-10, zero key and counter). */
    rc_philox p;
    rc_philox_init(&p, 0, 0);
    ASSERT_EQ_INT(rc_philox_next(&p), 0x6627e8d5u);
    ASSERT_EQ_INT(rc_philox_next(&p), 0xe169c58du);
    ASSERT_EQ_INT(rc_philox_next(&p), 0xbc57ac4cu);
    ASSERT_EQ_INT(rc_philox_next(&p), 0x9b00dbd8u);
    /* all-ones counter and key */
    memset(&p, 0, sizeof p);
    for (int i = 0; i < 4; i++) p.counter[i] = 0xffffffffu;
    p.key[0] = p.key[1] = 0xffffffffu;
    ASSERT_EQ_INT(rc_philox_next(&p), 0x408f276du);
    ASSERT_EQ_INT(rc_philox_next(&p), 0x41c83b0eu);
    ASSERT_EQ_INT(rc_philox_next(&p), 0xa20bc7c6u);
    ASSERT_EQ_INT(rc_philox_next(&p), 0x6d5451fdu);
}

/* Advancing by n draws leaves the generator where n calls of rc_philox_next leave it, from
 * any point inside a block (what the two halves of a dropout mask start from). */
TEST(philox_advance_matches_draws)
{
    for (int pre = 0; pre < 6; pre++)
        for (uint64_t n = 0; n < 23; n++) {
            rc_philox a, b;
            rc_philox_init(&a, 1234, 99);
            for (int i = 0; i < pre; i++) (void)rc_philox_next(&a);
            b = a;
            for (uint64_t i = 0; i < n; i++) (void)rc_philox_next(&a);
            rc_philox_advance(&b, n);
            for (int i = 0; i < 9; i++) ASSERT_EQ_INT(rc_philox_next(&a), rc_philox_next(&b));
        }
}

/* The bulk fill gives what one call at a time gives: from inside a block, across many blocks,
 * and across a carry out of the counter's low word. */
TEST(philox_fill_matches_single_draws)
{
    const uint32_t starts[] = {0, 0xffffffe0u, 0xfffffff5u};
    for (size_t c = 0; c < sizeof starts / sizeof starts[0]; c++)
        for (int pre = 0; pre < 3; pre++)
            for (int64_t n = 0; n < 300; n += 37) {
                rc_philox a, b;
                rc_philox_init(&a, 77, 5);
                a.counter[0] = starts[c];
                for (int i = 0; i < pre; i++) (void)rc_philox_next(&a);
                b = a;
                float f[300];
                rc_philox_fill_uniform(&b, f, n);
                for (int64_t i = 0; i < n; i++) ASSERT_TRUE(f[i] == rc_philox_uniform(&a));
                for (int i = 0; i < 5; i++) ASSERT_EQ_INT(rc_philox_next(&a), rc_philox_next(&b));
            }
}

TEST(uniform_and_normal_statistics)
{
    rc_philox p;
    rc_philox_init(&p, 42, 7);
    double s = 0, s2 = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        float u = rc_philox_uniform(&p);
        ASSERT_TRUE(u >= 0 && u < 1);
        s += u;
        s2 += u * u;
    }
    ASSERT_NEAR(s / n, 0.5, 0.005);
    ASSERT_NEAR(s2 / n - (s / n) * (s / n), 1.0 / 12, 0.002);
    rc_normal_gen ng = {.p = &p};
    s = s2 = 0;
    for (int i = 0; i < n; i++) {
        float z = rc_philox_normal(&ng);
        s += z;
        s2 += z * z;
    }
    ASSERT_NEAR(s / n, 0, 0.01);
    ASSERT_NEAR(s2 / n, 1, 0.02);
}

TEST(seed_rule_is_tensorflows)
{
    int64_t a, b;
    rc_resolve_seed(true, 5, 0, 17, &a, &b); /* graph seed, op seed None -> last id */
    ASSERT_EQ_INT(a, 5);
    ASSERT_EQ_INT(b, 17);
    rc_resolve_seed(false, 0, 9, 17, &a, &b); /* only op seed -> default graph seed */
    ASSERT_EQ_INT(a, 87654321);
    ASSERT_EQ_INT(b, 9);
    rc_resolve_seed(false, 0, 0, 17, &a, &b); /* neither -> nondeterministic */
    ASSERT_EQ_INT(a, 0);
    ASSERT_EQ_INT(b, 0);
    rc_resolve_seed(true, 0, 0, 0, &a, &b); /* (0, 0) would mean random: TF uses (0, 2^31-1) */
    ASSERT_EQ_INT(b, 2147483647);
    rc_resolve_seed(true, -1, 3, 0, &a, &b); /* Python's modulo keeps seeds non-negative */
    ASSERT_EQ_INT(a, 2147483646);
}

TEST(edit_distance)
{
    ASSERT_EQ_INT(rc_edit_distance("kitten", "sitting", 100), 3);
    ASSERT_EQ_INT(rc_edit_distance("", "abc", 100), 3);
    ASSERT_EQ_INT(rc_edit_distance("same", "same", 100), 0);
    ASSERT_EQ_INT(rc_edit_distance("abcdef", "uvwxyz", 2), 2);
}

TEST(hash_map_set_get_copy)
{
    rc_map m;
    rc_map_init(&m);
    char k[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof k, "key%d", i);
        ASSERT_TRUE(rc_map_set(&m, k, i));
    }
    ASSERT_EQ_INT(m.count, 1000);
    ASSERT_EQ_INT(*rc_map_get(&m, "key777"), 777);
    ASSERT_TRUE(rc_map_get(&m, "nope") == NULL);
    rc_map c;
    ASSERT_TRUE(rc_map_copy(&c, &m));
    rc_map_set(&m, "key1", 5);
    ASSERT_EQ_INT(*rc_map_get(&c, "key1"), 1);
    const char *s1 = rc_map_intern(&c, "fresh"), *s2 = rc_map_intern(&c, "fresh");
    ASSERT_TRUE(s1 == s2);
    rc_map_free(&m);
    rc_map_free(&c);
}

RUN_TESTS(T(code_names_come_from_one_list), T(status_set_clear_and_null), T(shape_printing_matches_tensorflow),
          T(dtype_names_and_sizes), T(array_create_copy_access), T(array_rejects_bad_shapes_and_dtypes),
          T(allocator_hook_sees_every_allocation), T(fail_nth_allocation_gives_out_of_memory),
          T(philox_matches_reference_vectors), T(philox_advance_matches_draws), T(philox_fill_matches_single_draws), T(uniform_and_normal_statistics), T(seed_rule_is_tensorflows),
          T(edit_distance), T(hash_map_set_get_copy))
