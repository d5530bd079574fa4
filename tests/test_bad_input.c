/*
 * test_bad_input.c - a catalogue of bad input across the public API. Every case checks that the
 * call fails cleanly (no crash, no leak, no abort), with the right code and the key words of the
 * message (TensorFlow's wording where recur.h or TensorFlow promises it), and, for builders,
 * that the graph is left as it was.
 *
 * Freed handles: use after free is undefined behaviour and is not tested. None of the opaque
 * handles (status, array, graph, tensor, op, scope, cell, session, saver, optimizer, checkpoint,
 * writers) carries a liveness marker, so a freed handle is not detectable; the one "freed"
 * state that is detectable is a closed (not freed) session, tested below.
 */
#include "runner.h"

#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static recur_status *st;

static void setup(void) { st = recur_status_new(); }
static void teardown(void) { recur_status_free(st); }

/* The graph holds `code` and its message contains `needle`. */
#define ASSERT_GERR(g, code, needle)                                                           \
    do {                                                                                       \
        if (recur_graph_code(g) != (code))                                                     \
            rt_fail(__FILE__, __LINE__, "expected graph %s, got %s: %s", recur_code_name(code), \
                    recur_code_name(recur_graph_code(g)), recur_graph_message(g));             \
        ASSERT_STR_CONTAINS(recur_graph_message(g), needle);                                   \
    } while (0)

/* The status holds `code` and its message contains `needle`. */
#define ASSERT_ERR(s, code, needle)                                                            \
    do {                                                                                       \
        ASSERT_CODE(s, code);                                                                  \
        ASSERT_STR_CONTAINS(recur_status_message(s), needle);                                  \
    } while (0)

/* ---------------------------------------------------------------- status and graph on NULL */

TEST(status_calls_on_null)
{
    ASSERT_EQ_INT(recur_status_code(NULL), RECUR_OK);
    ASSERT_TRUE(recur_status_ok(NULL));
    ASSERT_EQ_STR(recur_status_message(NULL), "");
    recur_status_set(NULL, RECUR_INTERNAL, "ignored %d", 1);
    recur_status_clear(NULL);
    recur_status_free(NULL);
    ASSERT_EQ_STR(recur_code_name((recur_code)12345), "UNKNOWN_CODE");
    ASSERT_EQ_STR(recur_dtype_name((recur_dtype)77), "invalid");
    ASSERT_EQ_INT(recur_dtype_size((recur_dtype)77), 0);
}

TEST(status_overlong_message_is_truncated)
{
    setup();
    static char big[20000];
    memset(big, 'a', sizeof big - 1);
    recur_status_set(st, RECUR_INVALID_ARGUMENT, "start %s end", big);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    ASSERT_STR_STARTS(recur_status_message(st), "start aaaa");
    ASSERT_TRUE(strlen(recur_status_message(st)) < sizeof big);
    recur_status_clear(st);
    ASSERT_OK(st);
    ASSERT_EQ_STR(recur_status_message(st), "");
    teardown();
}

TEST(graph_calls_on_null)
{
    ASSERT_FALSE(recur_graph_ok(NULL));
    ASSERT_EQ_INT(recur_graph_code(NULL), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_graph_message(NULL), "NULL");
    recur_graph_clear_error(NULL);
    recur_graph_set_error(NULL, RECUR_INTERNAL, "ignored");
    recur_graph_set_seed(NULL, 1);
    recur_graph_free(NULL);
    ASSERT_EQ_INT(recur_graph_num_ops(NULL), 0);
    ASSERT_TRUE(recur_graph_op(NULL, "x") == NULL);
    ASSERT_TRUE(recur_graph_tensor(NULL, "x:0") == NULL);
    ASSERT_TRUE(recur_graph_op_at(NULL, 0) == NULL);
    ASSERT_TRUE(recur_variable_scope_current(NULL) == NULL);
    recur_name_scope_pop(NULL);
    recur_variable_scope_pop(NULL);
    /* tensor/op/scope/cell accessors on NULL */
    ASSERT_TRUE(recur_tensor_name(NULL) == NULL);
    ASSERT_EQ_INT(recur_tensor_dtype(NULL), RECUR_DTYPE_INVALID);
    ASSERT_EQ_INT(recur_tensor_shape(NULL).rank, -1);
    ASSERT_TRUE(recur_tensor_op(NULL) == NULL);
    ASSERT_TRUE(recur_tensor_graph(NULL) == NULL);
    ASSERT_TRUE(recur_op_name(NULL) == NULL);
    ASSERT_TRUE(recur_op_type(NULL) == NULL);
    ASSERT_EQ_INT(recur_op_num_outputs(NULL), 0);
    ASSERT_TRUE(recur_op_output(NULL, 0) == NULL);
    ASSERT_FALSE(recur_is_variable(NULL));
    ASSERT_TRUE(recur_variable_name(NULL) == NULL);
    ASSERT_FALSE(recur_variable_trainable(NULL));
    ASSERT_EQ_INT(recur_cell_output_size(NULL), -1);
}

TEST(graph_set_error_keeps_first_and_never_ok)
{
    recur_graph *g = recur_graph_new();
    recur_graph_set_error(g, RECUR_OK, "user said %s", "ok");
    ASSERT_EQ_INT(recur_graph_code(g), RECUR_UNKNOWN); /* an error is never OK */
    ASSERT_STR_CONTAINS(recur_graph_message(g), "user said ok");
    recur_graph_set_error(g, RECUR_INTERNAL, "second");
    ASSERT_GERR(g, RECUR_UNKNOWN, "user said ok");
    /* a builder on a graph holding an error returns NULL and keeps the first message */
    ASSERT_TRUE(recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "x") == NULL);
    ASSERT_GERR(g, RECUR_UNKNOWN, "user said ok");
    ASSERT_EQ_INT(recur_graph_num_ops(g), 0);
    recur_graph_clear_error(g);
    ASSERT_GRAPH_OK(g);
    ASSERT_TRUE(recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "x") != NULL);
    recur_graph_free(g);
}

TEST(builders_on_null_graph_return_null)
{
    recur_tensor *t = NULL;
    ASSERT_TRUE(recur_placeholder(NULL, RECUR_F32, RECUR_SHAPE(2), "x") == NULL);
    ASSERT_TRUE(recur_scalar_f32(NULL, 1) == NULL);
    ASSERT_TRUE(recur_get_variable(NULL, "w", RECUR_SHAPE(2), NULL) == NULL);
    ASSERT_TRUE(recur_name_scope_push(NULL, "a") == NULL);
    ASSERT_TRUE(recur_variable_scope_push(NULL, "a", RECUR_REUSE_INHERIT) == NULL);
    ASSERT_TRUE(recur_variable_scope_push(NULL, NULL, RECUR_REUSE_INHERIT) == NULL);
    ASSERT_TRUE(recur_variable_scope_enter(NULL, NULL, NULL) == NULL);
    ASSERT_TRUE(recur_basic_lstm_cell(NULL, 4, NULL) == NULL);
    ASSERT_TRUE(recur_global_variables_initializer(NULL) == NULL);
    ASSERT_TRUE(recur_add(NULL, t, t) == NULL);
    ASSERT_TRUE(recur_matmul(NULL, t, t, false, false) == NULL);
    ASSERT_TRUE(recur_optimizer_new(NULL, &(recur_optimizer_opts){.learning_rate = 0.1}) == NULL);
    ASSERT_TRUE(recur_saver_new(NULL, NULL) == NULL);
    ASSERT_TRUE(recur_get_or_create_global_step(NULL) == NULL);
    ASSERT_EQ_INT(recur_get_collection(NULL, RECUR_GLOBAL_VARIABLES, NULL, NULL, 0), -1);
    recur_add_to_collection(NULL, "k", t);
    recur_add_control_input(NULL, NULL, NULL);
    recur_rnn_out r = recur_dynamic_rnn(NULL, NULL, NULL, NULL);
    ASSERT_TRUE(r.outputs == NULL);
}

TEST(builder_null_input_records_no_new_message)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "x");
    size_t nops = recur_graph_num_ops(g);
    ASSERT_TRUE(recur_add(g, x, NULL) == NULL);
    ASSERT_TRUE(recur_matmul(g, NULL, x, false, false) == NULL);
    ASSERT_TRUE(recur_tanh(g, NULL) == NULL);
    ASSERT_TRUE(recur_identity(g, NULL, "y") == NULL);
    ASSERT_TRUE(recur_reduce_sum(g, NULL, NULL, 0, false) == NULL);
    /* "A builder given a NULL input ... returns NULL without a new message" */
    ASSERT_GRAPH_OK(g);
    ASSERT_EQ_INT(recur_graph_num_ops(g), nops);
    recur_graph_free(g);
}

TEST(free_null_is_a_noop_everywhere)
{
    recur_status_free(NULL);
    recur_array_free(NULL);
    recur_graph_free(NULL);
    recur_session_free(NULL);
    recur_session_close(NULL);
    recur_saver_free(NULL);
    recur_checkpoint_close(NULL);
    recur_checkpoint_writer_free(NULL);
    recur_summary_writer_free(NULL);
}

/* ---------------------------------------------------------------- arrays */

TEST(array_invalid_dtype)
{
    setup();
    ASSERT_TRUE(recur_array_new(RECUR_DTYPE_INVALID, RECUR_SHAPE(2), st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "Invalid dtype 0");
    ASSERT_TRUE(recur_array_new((recur_dtype)42, RECUR_SHAPE(2), st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "Invalid dtype 42");
    /* string arrays only come from checkpoints */
    ASSERT_TRUE(recur_array_new(RECUR_STRING, RECUR_SHAPE(2), st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "Invalid dtype 7");
    ASSERT_TRUE(recur_array_from(RECUR_STRING, RECUR_SHAPE(1), "x", st) == NULL);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    teardown();
}

TEST(array_negative_and_unknown_dims)
{
    setup();
    ASSERT_TRUE(recur_array_new(RECUR_F32, RECUR_SHAPE(2, -1), st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "dimension 1 must be known and non-negative, got -1");
    ASSERT_TRUE(recur_array_new(RECUR_F32, RECUR_SHAPE(-7), st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "got -7");
    ASSERT_TRUE(recur_array_new(RECUR_F32, RECUR_SHAPE(INT64_MIN), st) == NULL);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    teardown();
}

TEST(array_bad_rank)
{
    setup();
    ASSERT_TRUE(recur_array_new(RECUR_F32, RECUR_UNKNOWN_SHAPE, st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "rank must be in [0, 8], got -1");
    ASSERT_TRUE(recur_array_new(RECUR_F32, ((recur_shape){9, {1}}), st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "got 9");
    ASSERT_TRUE(recur_array_new(RECUR_F32, ((recur_shape){-5, {1}}), st) == NULL);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    teardown();
}

TEST(array_size_overflows_int64)
{
    setup();
    /* 2^40 * 2^40 elements: the element count overflows int64 */
    ASSERT_TRUE(recur_array_new(RECUR_F32, RECUR_SHAPE(INT64_C(1) << 40, INT64_C(1) << 40), st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "overflows");
    ASSERT_TRUE(recur_array_new(RECUR_F32, RECUR_SHAPE(INT64_MAX, 2), st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "overflows");
    ASSERT_EQ_INT(recur_shape_size(RECUR_SHAPE(INT64_MAX, 2)), -1);
    teardown();
}

TEST(array_bytes_overflow_size_t)
{
    setup();
    /* 2^62 elements fit int64, but 2^62 * 8 bytes do not fit size_t */
    ASSERT_TRUE(recur_array_new(RECUR_F64, RECUR_SHAPE(INT64_C(1) << 31, INT64_C(1) << 31), st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "overflows");
    ASSERT_TRUE(recur_array_from(RECUR_I64, RECUR_SHAPE(INT64_C(1) << 62), NULL, st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "overflows");
    /* a zero dimension makes any product empty, not an overflow */
    recur_array *a = recur_array_new(RECUR_F32, RECUR_SHAPE(INT64_MAX, 0, INT64_MAX), st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(recur_array_size(a), 0);
    ASSERT_EQ_INT(recur_array_nbytes(a), 0);
    recur_array_free(a);
    teardown();
}

TEST(array_accessors_on_null_and_wrong_dtype)
{
    setup();
    ASSERT_EQ_INT(recur_array_dtype(NULL), RECUR_DTYPE_INVALID);
    ASSERT_EQ_INT(recur_array_rank(NULL), -1);
    ASSERT_EQ_INT(recur_array_shape(NULL).rank, -1);
    ASSERT_EQ_INT(recur_array_dim(NULL, 0), -1);
    ASSERT_EQ_INT(recur_array_size(NULL), 0);
    ASSERT_EQ_INT(recur_array_nbytes(NULL), 0);
    ASSERT_TRUE(recur_array_data(NULL) == NULL);
    ASSERT_TRUE(recur_array_cdata(NULL) == NULL);
    ASSERT_TRUE(recur_array_f32(NULL) == NULL);
    ASSERT_TRUE(recur_array_string(NULL, 0, NULL) == NULL);
    recur_array *a = recur_array_new(RECUR_I32, RECUR_SHAPE(2, 3), st);
    ASSERT_EQ_INT(recur_array_dim(a, -1), -1);
    ASSERT_EQ_INT(recur_array_dim(a, 2), -1);
    ASSERT_EQ_INT(recur_array_dim(a, 1), 3);
    ASSERT_TRUE(recur_array_f32(a) == NULL);
    ASSERT_TRUE(recur_array_f64(a) == NULL);
    ASSERT_TRUE(recur_array_i64(a) == NULL);
    ASSERT_TRUE(recur_array_bool(a) == NULL);
    ASSERT_TRUE(recur_array_i32(a) != NULL);
    size_t len = 99;
    ASSERT_TRUE(recur_array_string(a, 0, &len) == NULL); /* not a string array */
    ASSERT_EQ_INT(len, 99);
    recur_array_free(a);
    teardown();
}

TEST(array_copy_of_null)
{
    setup();
    ASSERT_TRUE(recur_array_copy(NULL, st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "NULL");
    ASSERT_TRUE(recur_array_copy(NULL, NULL) == NULL); /* NULL status allowed */
    ASSERT_TRUE(recur_array_new(RECUR_F32, RECUR_SHAPE(-1), NULL) == NULL);
    teardown();
}

TEST(shape_str_tiny_buffers)
{
    char buf[4] = "zzz";
    ASSERT_TRUE(recur_shape_str(RECUR_SHAPE(60, 200), NULL, 10) == NULL);
    ASSERT_TRUE(recur_shape_str(RECUR_SHAPE(60, 200), buf, 0) == buf);
    ASSERT_EQ_STR(buf, "zzz"); /* cap 0: nothing written */
    recur_shape_str(RECUR_SHAPE(60, 200), buf, 1);
    ASSERT_EQ_STR(buf, "");
    recur_shape_str(RECUR_SHAPE(60, 200), buf, sizeof buf);
    ASSERT_EQ_INT(strlen(buf), 3); /* truncated, NUL-terminated */
    char big[64];
    ASSERT_EQ_STR(recur_shape_str(((recur_shape){12, {1}}), big, sizeof big), "<unknown>");
}

/* ---------------------------------------------------------------- names and scopes */

TEST(name_scope_invalid_characters)
{
    recur_graph *g = recur_graph_new();
    ASSERT_TRUE(recur_name_scope_push(g, "bad name!") == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "'bad name!' is not a valid root scope name");
    ASSERT_EQ_STR(recur_name_scope_current(g), "");
    recur_graph_clear_error(g);
    /* a root scope name may not start with '_' or '-'; a nested one may */
    ASSERT_TRUE(recur_name_scope_push(g, "_x") == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "'_x' is not a valid root scope name");
    recur_graph_clear_error(g);
    ASSERT_EQ_STR(recur_name_scope_push(g, "outer"), "outer/");
    ASSERT_EQ_STR(recur_name_scope_push(g, "_x"), "outer/_x/");
    recur_name_scope_pop(g);
    ASSERT_TRUE(recur_name_scope_push(g, "a b") == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "'a b' is not a valid scope name");
    ASSERT_EQ_STR(recur_name_scope_current(g), "outer/");
    recur_graph_free(g);
}

TEST(op_name_invalid_characters)
{
    recur_graph *g = recur_graph_new();
    ASSERT_TRUE(recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "x:0") == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "'x:0' is not a valid");
    ASSERT_EQ_INT(recur_graph_num_ops(g), 0);
    recur_graph_clear_error(g);
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "x");
    ASSERT_TRUE(recur_identity(g, x, "y z") == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "'y z' is not a valid root scope name");
    ASSERT_EQ_INT(recur_graph_num_ops(g), 1);
    recur_graph_free(g);
}

TEST(variable_scope_invalid_name)
{
    recur_graph *g = recur_graph_new();
    recur_scope *root = recur_variable_scope_current(g);
    ASSERT_TRUE(recur_variable_scope_push(g, "layer 1", RECUR_REUSE_INHERIT) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "'layer 1' is not a valid root scope name");
    ASSERT_TRUE(recur_variable_scope_current(g) == root); /* scope stack unchanged */
    ASSERT_EQ_STR(recur_name_scope_current(g), "");
    recur_graph_clear_error(g);
    recur_variable_scope_pop(g); /* nothing was pushed: popping is an error now */
    ASSERT_GERR(g, RECUR_FAILED_PRECONDITION, "Improper nesting of variable_scope");
    recur_graph_free(g);
}

TEST(variable_name_invalid_characters)
{
    recur_graph *g = recur_graph_new();
    ASSERT_TRUE(recur_get_variable(g, "w?", RECUR_SHAPE(2), NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "'w?' is not a valid");
    recur_graph_clear_error(g);
    recur_variable_scope_push(g, "layer1", RECUR_REUSE_INHERIT);
    ASSERT_TRUE(recur_get_variable(g, "my weights", RECUR_SHAPE(2), NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "'layer1/my weights' is not a valid");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_get_variable(g, "", RECUR_SHAPE(2), NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "non-empty");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_get_variable(g, NULL, RECUR_SHAPE(2), NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "non-empty");
    ASSERT_EQ_INT(recur_get_collection(g, RECUR_GLOBAL_VARIABLES, NULL, NULL, 0), 0);
    recur_graph_free(g);
}

TEST(cell_name_invalid_characters)
{
    recur_graph *g = recur_graph_new();
    ASSERT_TRUE(recur_basic_lstm_cell(g, 4, &(recur_cell_opts){.name = "my cell"}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "'my cell' is not a valid");
    recur_graph_free(g);
}

TEST(name_scope_pop_unbalanced)
{
    recur_graph *g = recur_graph_new();
    recur_name_scope_pop(g);
    ASSERT_GERR(g, RECUR_FAILED_PRECONDITION, "Improper nesting of name_scope");
    recur_graph_clear_error(g);
    /* the innermost scope is a variable scope */
    recur_variable_scope_push(g, "v", RECUR_REUSE_INHERIT);
    recur_name_scope_pop(g);
    ASSERT_GERR(g, RECUR_FAILED_PRECONDITION, "Improper nesting of name_scope");
    ASSERT_STR_CONTAINS(recur_graph_message(g), "variable scope 'v'");
    ASSERT_EQ_STR(recur_scope_name(recur_variable_scope_current(g)), "v"); /* nothing popped */
    recur_graph_free(g);
}

TEST(variable_scope_pop_unbalanced)
{
    recur_graph *g = recur_graph_new();
    recur_variable_scope_pop(g);
    ASSERT_GERR(g, RECUR_FAILED_PRECONDITION, "Improper nesting of variable_scope");
    recur_graph_clear_error(g);
    recur_variable_scope_push(g, "v", RECUR_REUSE_INHERIT);
    recur_name_scope_push(g, "n");
    recur_variable_scope_pop(g);
    ASSERT_GERR(g, RECUR_FAILED_PRECONDITION, "Improper nesting of variable_scope");
    ASSERT_STR_CONTAINS(recur_graph_message(g), "name scope 'v/n/'");
    ASSERT_EQ_STR(recur_name_scope_current(g), "v/n/");
    recur_graph_free(g);
}

TEST(variable_scope_bad_arguments)
{
    recur_graph *g = recur_graph_new();
    ASSERT_TRUE(recur_variable_scope_push(g, "s", (recur_reuse)7) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "The reuse parameter must be True or False or None.");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_variable_scope_push(g, NULL, RECUR_REUSE_INHERIT) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "If default_name is None then name_or_scope is required");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_variable_scope_push_opts(g, NULL, &(recur_scope_opts){.default_name = "d", .reuse = RECUR_REUSE}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "reuse=True cannot be used without a name_or_scope");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_variable_scope_push_opts(g, "s", &(recur_scope_opts){.dtype = (recur_dtype)55}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Invalid dtype 55");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_variable_scope_enter(g, NULL, NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "name_or_scope must be a string or VariableScope");
    ASSERT_EQ_INT(recur_graph_num_ops(g), 0);
    ASSERT_EQ_STR(recur_name_scope_current(g), "");
    recur_graph_free(g);
}

TEST(variable_scope_enter_from_another_graph)
{
    recur_graph *g = recur_graph_new(), *h = recur_graph_new();
    recur_scope *s = recur_variable_scope_push(h, "outer", RECUR_REUSE_INHERIT);
    recur_variable_scope_pop(h);
    ASSERT_TRUE(recur_variable_scope_enter(g, s, NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "belongs to another graph");
    ASSERT_GRAPH_OK(h);
    recur_graph_free(h);
    recur_graph_free(g);
}

/* ---------------------------------------------------------------- get_variable */

TEST(get_variable_negative_dims)
{
    recur_graph *g = recur_graph_new();
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_SHAPE(3, -2), NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "get_variable w: dimension 1 is -2");
    recur_graph_clear_error(g);
    /* -1 (unknown) is allowed in the shape but a default initializer then needs it known */
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_SHAPE(-1, 3), NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "The initializer passed is not valid.");
    ASSERT_EQ_INT(recur_graph_num_ops(g), 0);
    recur_graph_free(g);
}

TEST(get_variable_size_overflow)
{
    recur_graph *g = recur_graph_new();
    /* the element count overflows int64 */
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_SHAPE(INT64_C(1) << 40, INT64_C(1) << 40), NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "get_variable w: shape is too large");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_SHAPE(INT64_MAX, INT64_MAX, 2), NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "shape is too large");
    recur_graph_clear_error(g);
    /* fits int64, but its bytes would not fit size_t */
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_SHAPE(INT64_C(1) << 62), NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "shape is too large");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_get_variable(g, "w", ((recur_shape){9, {1}}), NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "rank 9 is outside [0, 8]");
    ASSERT_EQ_INT(recur_get_collection(g, RECUR_GLOBAL_VARIABLES, NULL, NULL, 0), 0);
    recur_graph_free(g);
}

TEST(get_variable_shape_mismatch_on_reuse)
{
    recur_graph *g = recur_graph_new();
    recur_variable_scope_push(g, "layer1", RECUR_AUTO_REUSE);
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_SHAPE(10, 4), NULL) != NULL);
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_SHAPE(3, 4), NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT,
                "Trying to share variable layer1/w, but specified shape (3, 4) and found shape (10, 4).");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_SHAPE(10), NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "specified shape (10,) and found shape (10, 4).");
    recur_graph_clear_error(g);
    /* unknown dims and an unknown shape are compatible */
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_SHAPE(-1, 4), NULL) != NULL);
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_UNKNOWN_SHAPE, NULL) != NULL);
    recur_graph_free(g);
}

TEST(get_variable_dtype_mismatch_on_reuse)
{
    recur_graph *g = recur_graph_new();
    recur_variable_scope_push(g, "s", RECUR_AUTO_REUSE);
    recur_get_variable(g, "w", RECUR_SHAPE(2), NULL);
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_SHAPE(2), &(recur_variable_opts){.dtype = RECUR_I32}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT,
                "Trying to share variable s/w, but specified dtype int32 and found dtype float32_ref.");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_get_variable(g, "v", RECUR_SHAPE(2), &(recur_variable_opts){.dtype = (recur_dtype)33}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "get_variable v: invalid dtype 33");
    recur_graph_free(g);
}

TEST(get_variable_reuse_true_of_missing_variable)
{
    recur_graph *g = recur_graph_new();
    recur_variable_scope_push(g, "layer1", RECUR_REUSE_INHERIT);
    recur_get_variable(g, "weights", RECUR_SHAPE(2), NULL);
    recur_variable_scope_pop(g);
    recur_variable_scope_push(g, "layer1", RECUR_REUSE);
    ASSERT_TRUE(recur_get_variable(g, "weight", RECUR_SHAPE(2), NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT,
                "Variable layer1/weight does not exist, or was not created with tf.get_variable(). Did you "
                "mean to set reuse=tf.AUTO_REUSE in VarScope?");
    ASSERT_STR_CONTAINS(recur_graph_message(g), "layer1/weights"); /* the nearest existing name */
    ASSERT_EQ_INT(recur_get_collection(g, RECUR_GLOBAL_VARIABLES, NULL, NULL, 0), 1);
    recur_graph_free(g);
}

TEST(get_variable_exists_without_reuse)
{
    recur_graph *g = recur_graph_new();
    recur_variable_scope_push(g, "layer1", RECUR_REUSE_INHERIT);
    recur_get_variable(g, "w", RECUR_SHAPE(2), NULL);
    recur_variable_scope_pop(g);
    recur_variable_scope_push(g, "layer1", RECUR_REUSE_INHERIT);
    ASSERT_TRUE(recur_get_variable(g, "w", RECUR_SHAPE(2), NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT,
                "Variable layer1/w already exists, disallowed. Did you mean to set reuse=True or "
                "reuse=tf.AUTO_REUSE in VarScope? Originally defined at:");
    ASSERT_STR_CONTAINS(recur_graph_message(g), "test_bad_input.c");
    recur_graph_free(g);
}

TEST(get_variable_bad_initializer_combinations)
{
    recur_graph *g = recur_graph_new();
    ASSERT_TRUE(recur_get_variable(g, "a", RECUR_UNKNOWN_SHAPE, NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT,
                "Variable a did not get an initializer, so its `shape` argument must be specified.");
    recur_graph_clear_error(g);
    recur_array *v = recur_array_new(RECUR_F32, RECUR_SHAPE(2), NULL);
    ASSERT_TRUE(recur_get_variable(g, "b", RECUR_SHAPE(2), &(recur_variable_opts){.initializer = recur_value_initializer(v)}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "If initializer is a constant, do not specify shape.");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_get_variable(g, "b", RECUR_UNKNOWN_SHAPE,
                                   &(recur_variable_opts){.initializer = recur_value_initializer(v), .dtype = RECUR_F64}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Initializer type '<dtype: 'float32'>' and explicit dtype '<dtype: 'float64'>' don't match.");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_get_variable(g, "c", RECUR_UNKNOWN_SHAPE, &(recur_variable_opts){.initializer = recur_value_initializer(NULL)}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "the value initializer has no array");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_get_variable(g, "d", RECUR_SHAPE(3), &(recur_variable_opts){.initializer = recur_orthogonal_initializer(1, 1)}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "The tensor to initialize must be at least two-dimensional");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_get_variable(g, "e", RECUR_SHAPE(3),
                                   &(recur_variable_opts){.dtype = RECUR_I32, .initializer = recur_random_normal_initializer(0, 1, 1)}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "needs a floating dtype, not int32");
    ASSERT_EQ_INT(recur_graph_num_ops(g), 0);
    recur_array_free(v);
    recur_graph_free(g);
}

/* ---------------------------------------------------------------- op builders */

TEST(placeholder_bad_arguments)
{
    recur_graph *g = recur_graph_new();
    ASSERT_TRUE(recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-2, 3), "x") == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "placeholder: dimension 0 is -2; use -1 for an unknown dimension");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_placeholder(g, RECUR_DTYPE_INVALID, RECUR_SHAPE(3), "x") == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "placeholder: invalid dtype 0");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_placeholder(g, RECUR_F32, ((recur_shape){9, {1}}), "x") == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "placeholder: rank 9 is outside [0, 8]");
    ASSERT_EQ_INT(recur_graph_num_ops(g), 0);
    recur_graph_free(g);
}

TEST(matmul_inner_dimension_mismatch)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *a = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2, 3), "a");
    recur_tensor *b = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(4, 5), "b");
    ASSERT_TRUE(recur_matmul(g, a, b, false, false) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT,
                "Dimensions must be equal, but are 3 and 4 for '{{node MatMul}} = MatMul' with input shapes: [2,3], [4,5].");
    recur_graph_clear_error(g);
    /* transposes are taken into account */
    ASSERT_TRUE(recur_matmul(g, a, b, true, false) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "but are 2 and 4");
    ASSERT_EQ_INT(recur_graph_num_ops(g), 2);
    recur_graph_free(g);
}

TEST(matmul_bad_rank_and_dtype)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *v = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(3), "v");
    recur_tensor *m = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(3, 3), "m");
    recur_tensor *i = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(3, 3), "i");
    ASSERT_TRUE(recur_matmul(g, v, m, false, false) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Shape must be rank 2 but is rank 1");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_matmul(g, i, i, false, false) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "int32");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_matmul(g, m, i, false, false) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "int32");
    recur_graph_free(g);
}

TEST(binary_op_mismatched_dtypes)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2, 3), "x");
    recur_tensor *n = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(2, 3), "n");
    ASSERT_TRUE(recur_add(g, x, n) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT,
                "Input 'y' of 'AddV2' Op has type int32 that does not match type float of argument 'x'.");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_mul(g, n, x) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "has type float that does not match type int32");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_less(g, x, n) == NULL);
    ASSERT_EQ_INT(recur_graph_code(g), RECUR_INVALID_ARGUMENT);
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_log(g, n) == NULL); /* float-only math on an integer */
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "dtype int32 is not supported");
    ASSERT_EQ_INT(recur_graph_num_ops(g), 2);
    recur_graph_free(g);
}

TEST(binary_op_incompatible_broadcast)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *a = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2, 3), "a");
    recur_tensor *b = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(4, 5), "b");
    ASSERT_TRUE(recur_sub(g, a, b) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Dimensions must be equal, but are 3 and 5");
    ASSERT_STR_CONTAINS(recur_graph_message(g), "with input shapes: [2,3], [4,5].");
    recur_graph_clear_error(g);
    recur_tensor *c = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(3), "c");
    ASSERT_TRUE(recur_select(g, a, a, a) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "condition must be bool, got float");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_bias_add(g, a, a) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Shape must be rank 1 but is rank 2");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_add_n(g, (recur_tensor *[]){a, c}, 2) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Shapes must be equal");
    recur_graph_free(g);
}

TEST(reshape_bad_targets)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2, 3), "x");
    ASSERT_TRUE(recur_reshape(g, x, RECUR_SHAPE(-1, -1)) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Cannot infer multiple unknown dimensions");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_reshape(g, x, RECUR_SHAPE(4, 2)) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Cannot reshape a tensor with 6 elements to shape [4,2] (8 elements)");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_reshape(g, x, RECUR_SHAPE(-3, 2)) == NULL); /* negative, not -1 */
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Size must be non-negative or -1");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_reshape(g, x, RECUR_SHAPE(INT64_C(1) << 40, INT64_C(1) << 40)) == NULL); /* overflowing product */
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Target shape has too many elements");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_reshape(g, x, RECUR_SHAPE(-1, INT64_C(1) << 40, INT64_C(1) << 40)) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Target shape has too many elements");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_reshape(g, x, RECUR_SHAPE(INT64_C(1) << 40, INT64_C(1) << 40, 0)) == NULL); /* 0 elements, not 6 */
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Cannot reshape a tensor with 6 elements");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_reshape(g, x, ((recur_shape){9, {1}})) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "the target rank must be in [0, 8]");
    recur_graph_free(g);
}

TEST(axis_out_of_range)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2, 3), "x"), *out[4];
    ASSERT_TRUE(recur_concat(g, (recur_tensor *[]){x, x}, 2, 5) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Expected concatenating dimensions in the range [-2, 2), but got 5");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_reduce_sum(g, x, (int[]){2}, 1, false) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Invalid reduction dimension 2 for input with 2 dimensions");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_argmax(g, x, -3) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Expected dimension in the range [-2, 2), but got -3");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_expand_dims(g, x, 7) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "expand_dims axis out of range");
    recur_graph_clear_error(g);
    ASSERT_FALSE(recur_split(g, x, 2, 1, out));
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Dimension size must be evenly divisible by 2 but is 3");
    recur_graph_clear_error(g);
    ASSERT_FALSE(recur_split(g, x, 0, 1, out));
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "num_split must be in [1, 4096], got 0");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_transpose(g, x, (int[]){0, 0}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "perm must be a permutation of the axes");
    recur_graph_clear_error(g);
    ASSERT_FALSE(recur_unstack(g, x, 0, out, 1));
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "unstack: 2 outputs do not fit in 1 slots");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_slice(g, x, (int64_t[]){0, 2}, (int64_t[]){2, 5}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Expected begin[1] in [0, 3] and size[1] in [0, 1], but got 2 and 5");
    ASSERT_EQ_INT(recur_graph_num_ops(g), 1);
    recur_graph_free(g);
}

TEST(empty_lists_and_bad_values)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2, 3), "x");
    ASSERT_TRUE(recur_add_n(g, NULL, 0) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "add_n needs at least one input");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_stack(g, NULL, 0, 0) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "stack needs at least one input");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_concat(g, NULL, 0, 0) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "concat needs at least one input");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_clip(g, x, 2, 1) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "clip_value_min 2 > clip_value_max 1");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_cast(g, x, (recur_dtype)99) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "unsupported dtype");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_fill(g, RECUR_F32, RECUR_SHAPE(-1, 2), 0) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "fill: the shape must be fully known");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_fill(g, RECUR_F32, RECUR_SHAPE(INT64_C(1) << 40, INT64_C(1) << 40), 0) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "not huge");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_random_uniform(g, RECUR_SHAPE(-1), 0, 1, 1) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "random: the shape must be fully known");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_random_normal(g, RECUR_SHAPE(INT64_C(1) << 40, INT64_C(1) << 40), 0, 1, 1) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "its element count must fit int64");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_constant(g, NULL, "c") == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "constant: value is NULL");
    ASSERT_EQ_INT(recur_graph_num_ops(g), 1);
    recur_graph_free(g);
}

TEST(gather_bad_indices_dtype)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *p = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(5, 3), "p");
    recur_tensor *fi = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "fi");
    ASSERT_TRUE(recur_gather(g, p, fi) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "indices must be int32 or int64, got float");
    recur_graph_clear_error(g);
    recur_tensor *ii = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(2), "ii");
    ASSERT_TRUE(recur_gather(g, recur_scalar_f32(g, 1), ii) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Shape must be at least rank 1 but is rank 0");
    recur_graph_free(g);
}

TEST(inputs_from_another_graph)
{
    recur_graph *g = recur_graph_new(), *h = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "x");
    recur_tensor *z = recur_placeholder(h, RECUR_F32, RECUR_SHAPE(2), "z");
    ASSERT_TRUE(recur_add(g, x, z) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Tensor z:0 must be from the same graph as the op being built");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_group(g, (recur_op *[]){recur_tensor_op(z)}, 1, NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "group: op z is from another graph");
    recur_graph_clear_error(g);
    recur_add_control_input(g, recur_tensor_op(x), recur_tensor_op(z));
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Control input z must be from the same graph as x");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_variables_initializer(g, &z, 1) == NULL);
    ASSERT_EQ_INT(recur_graph_code(g), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_graph_num_ops(g), 1);
    ASSERT_GRAPH_OK(h);
    recur_graph_free(h);
    recur_graph_free(g);
}

TEST(assign_to_non_variable_and_wrong_shape)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "x");
    recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(3), NULL);
    ASSERT_TRUE(recur_assign(g, x, x) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Assign: x:0 is not a variable");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_assign_add(g, w, x) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Shapes must be equal");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_variables_initializer(g, &x, 1) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "variables_initializer: x:0 is not a variable");
    recur_graph_free(g);
}

TEST(collection_bad_regex)
{
    recur_graph *g = recur_graph_new();
    recur_get_variable(g, "w", RECUR_SHAPE(2), NULL);
    ASSERT_EQ_INT(recur_get_collection(g, RECUR_GLOBAL_VARIABLES, "(", NULL, 0), -1);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "get_collection: invalid scope pattern '('");
    recur_graph_clear_error(g);
    ASSERT_EQ_INT(recur_get_collection(g, "no such key", NULL, NULL, 0), 0);
    ASSERT_EQ_INT(recur_get_collection(g, NULL, NULL, NULL, 0), -1); /* NULL input: no message */
    ASSERT_GRAPH_OK(g);
    recur_graph_free(g);
}

TEST(explicit_op_name_duplicates_an_existing_op)
{
    /* A name ending in "/" is used as is (TensorFlow's name_from_scope_name), so it can name an
     * op that exists; TensorFlow refuses: "Duplicate node name in graph: 'q'". */
    recur_graph *g = recur_graph_new();
    recur_tensor *q = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "q");
    ASSERT_TRUE(recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "q/") == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Duplicate node name in graph: 'q'");
    ASSERT_TRUE(recur_graph_op(g, "q") == recur_tensor_op(q));
    ASSERT_EQ_INT(recur_graph_num_ops(g), 1);
    recur_graph_clear_error(g);
    /* an unused exact name is fine; it is not recorded for uniquifying (as in TensorFlow), so a
     * later op asking for "r" meets it and is refused the same way */
    recur_tensor *r = recur_identity(g, q, "r/");
    ASSERT_EQ_STR(recur_tensor_name(r), "r:0");
    ASSERT_TRUE(recur_identity(g, q, "r") == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Duplicate node name in graph: 'r'");
    ASSERT_TRUE(recur_graph_op(g, "r") == recur_tensor_op(r));
    recur_graph_free(g);
}

TEST(explicit_op_name_that_is_empty)
{
    /* "/" passes the nested-name pattern but names no op */
    recur_graph *g = recur_graph_new();
    recur_name_scope_push(g, "s");
    ASSERT_TRUE(recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "/") == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "'/' is not a valid op name");
    ASSERT_EQ_INT(recur_graph_num_ops(g), 0);
    recur_graph_free(g);
}

/* ---------------------------------------------------------------- sessions */

/* x: float [?, 3] placeholder; y = x * 2 */
typedef struct small_model {
    recur_graph *g;
    recur_tensor *x, *y;
    recur_session *s;
} small_model;

static small_model small_model_new(const recur_session_opts *opts)
{
    small_model m = {.g = recur_graph_new()};
    m.x = recur_placeholder(m.g, RECUR_F32, RECUR_SHAPE(-1, 3), "x");
    m.y = recur_mul(m.g, m.x, recur_scalar_f32(m.g, 2));
    m.s = recur_session_new(m.g, opts, st);
    return m;
}

static void small_model_free(small_model *m)
{
    recur_session_free(m->s);
    recur_graph_free(m->g);
}

TEST(session_new_on_null_or_failed_graph)
{
    setup();
    ASSERT_TRUE(recur_session_new(NULL, NULL, st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "recur_session_new: graph is NULL");
    recur_graph *g = recur_graph_new();
    recur_variable_scope_pop(g);
    ASSERT_TRUE(recur_session_new(g, NULL, st) == NULL);
    ASSERT_ERR(st, RECUR_FAILED_PRECONDITION, "the graph holds an error: Improper nesting of variable_scope");
    ASSERT_TRUE(recur_session_new(g, NULL, NULL) == NULL); /* NULL status allowed */
    recur_graph_free(g);
    teardown();
}

TEST(session_run_null_and_inconsistent_arguments)
{
    setup();
    small_model m = small_model_new(NULL);
    recur_array *out = (recur_array *)&out;
    ASSERT_EQ_INT(recur_session_run(NULL, NULL, 0, &m.y, &out, 1, NULL, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "session is NULL");
    ASSERT_TRUE(out == NULL); /* outputs are cleared first */
    ASSERT_EQ_INT(recur_session_run(m.s, NULL, -1, NULL, NULL, 0, NULL, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "inconsistent argument counts");
    ASSERT_EQ_INT(recur_session_run(m.s, NULL, 0, &m.y, NULL, 1, NULL, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_session_run(m.s, NULL, 0, NULL, NULL, 0, NULL, 2, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_session_run(m.s, NULL, 0, (recur_tensor *[]){NULL}, &out, 1, NULL, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Fetch 0 is NULL");
    ASSERT_EQ_INT(recur_session_run(m.s, NULL, 0, NULL, NULL, 0, (recur_op *[]){NULL}, 1, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Target 0 is NULL");
    ASSERT_EQ_INT(recur_session_run_target(NULL, NULL, st), RECUR_INVALID_ARGUMENT);
    /* nothing to do is not an error */
    ASSERT_EQ_INT(recur_session_run(m.s, NULL, 0, NULL, NULL, 0, NULL, 0, st), RECUR_OK);
    /* and a NULL status is allowed: the code still comes back */
    ASSERT_EQ_INT(recur_session_run(m.s, NULL, 0, &m.y, &out, 1, NULL, 0, NULL), RECUR_INVALID_ARGUMENT);
    small_model_free(&m);
    teardown();
}

TEST(session_missing_feed)
{
    setup();
    small_model m = small_model_new(NULL);
    recur_array *out = NULL;
    ASSERT_EQ_INT(recur_session_run(m.s, NULL, 0, &m.y, &out, 1, NULL, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_STARTS(recur_status_message(st),
                      "You must feed a value for placeholder tensor 'x' with dtype float and shape [?,3]");
    ASSERT_TRUE(out == NULL);
    small_model_free(&m);
    teardown();
}

TEST(session_feed_wrong_shape_or_rank)
{
    setup();
    small_model m = small_model_new(NULL);
    recur_array *v = recur_array_new(RECUR_F32, RECUR_SHAPE(2, 4), NULL), *out = NULL;
    recur_session_run(m.s, (recur_feed[]){{m.x, v}}, 1, &m.y, &out, 1, NULL, 0, st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "Cannot feed value of shape (2, 4) for Tensor 'x:0', which has shape '(?, 3)'");
    recur_array *r = recur_array_new(RECUR_F32, RECUR_SHAPE(3), NULL);
    recur_session_run(m.s, (recur_feed[]){{m.x, r}}, 1, &m.y, &out, 1, NULL, 0, st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "Cannot feed value of shape (3,) for Tensor 'x:0', which has shape '(?, 3)'");
    ASSERT_TRUE(out == NULL);
    recur_array_free(v);
    recur_array_free(r);
    small_model_free(&m);
    teardown();
}

TEST(session_feed_wrong_dtype_null_or_twice)
{
    setup();
    small_model m = small_model_new(NULL);
    recur_array *iv = recur_array_new(RECUR_I32, RECUR_SHAPE(2, 3), NULL);
    recur_array *fv = recur_array_new(RECUR_F32, RECUR_SHAPE(2, 3), NULL), *out = NULL;
    recur_session_run(m.s, (recur_feed[]){{m.x, iv}}, 1, &m.y, &out, 1, NULL, 0, st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "Cannot feed value of dtype int32 for Tensor 'x:0', which has dtype float");
    recur_session_run(m.s, (recur_feed[]){{m.x, NULL}}, 1, &m.y, &out, 1, NULL, 0, st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "Feed value for x:0 is NULL");
    recur_session_run(m.s, (recur_feed[]){{NULL, fv}}, 1, &m.y, &out, 1, NULL, 0, st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "Feed tensor is NULL");
    recur_session_run(m.s, (recur_feed[]){{m.x, fv}, {m.x, fv}}, 2, &m.y, &out, 1, NULL, 0, st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "Tensor x:0 is fed twice");
    ASSERT_TRUE(out == NULL);
    recur_array_free(iv);
    recur_array_free(fv);
    small_model_free(&m);
    teardown();
}

TEST(session_feed_non_placeholders)
{
    /* recur.h: a feed is "usually a placeholder"; any tensor outside a loop body may be fed (its
     * producer is then not run), with the same dtype and shape checks. */
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "x");
    recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(2), NULL);
    recur_tensor *mid = recur_add(g, x, w);
    recur_tensor *y = recur_mul(g, mid, recur_scalar_f32(g, 3));
    recur_dynamic_rnn(g, recur_basic_rnn_cell(g, 2, NULL), recur_placeholder(g, RECUR_F32, RECUR_SHAPE(1, 2, 2), "seq"),
                      &(recur_rnn_opts){.dtype = RECUR_F32});
    ASSERT_GRAPH_OK(g);
    recur_session *s = recur_session_new(g, NULL, st);
    recur_array *v = recur_array_from(RECUR_F32, RECUR_SHAPE(2), (float[]){1, 2}, NULL), *out = NULL;
    /* an intermediate: neither x nor the uninitialised w is needed */
    ASSERT_EQ_INT(recur_session_run(s, (recur_feed[]){{mid, v}}, 1, &y, &out, 1, NULL, 0, st), RECUR_OK);
    ASSERT_NEAR(recur_array_f32(out)[1], 6, 0);
    recur_array_free(out);
    /* a variable's tensor: its value is replaced for this run only */
    ASSERT_EQ_INT(recur_session_run(s, (recur_feed[]){{x, v}, {w, v}}, 2, &y, &out, 1, NULL, 0, st), RECUR_OK);
    ASSERT_NEAR(recur_array_f32(out)[1], 12, 0);
    recur_array_free(out);
    ASSERT_FALSE(recur_session_variable_initialized(s, w));
    /* wrong shape for an intermediate */
    recur_array *bad = recur_array_new(RECUR_F32, RECUR_SHAPE(3), NULL);
    recur_session_run(s, (recur_feed[]){{mid, bad}}, 1, &y, &out, 1, NULL, 0, st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "Cannot feed value of shape (3,) for Tensor 'Add:0', which has shape '(2,)'");
    /* a tensor inside an RNN's loop body cannot be fed or fetched */
    recur_tensor *body = recur_graph_tensor(g, "rnn/while/basic_rnn_cell/Tanh:0");
    ASSERT_TRUE(body != NULL);
    recur_session_run(s, (recur_feed[]){{body, v}}, 1, &y, &out, 1, NULL, 0, st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "is inside a loop body and cannot be fed");
    recur_session_run(s, NULL, 0, &body, &out, 1, NULL, 0, st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "is inside a loop body");
    recur_array_free(v);
    recur_array_free(bad);
    recur_session_free(s);
    recur_graph_free(g);
    teardown();
}

TEST(session_fetch_feed_target_from_another_graph)
{
    setup();
    small_model m = small_model_new(NULL);
    recur_graph *h = recur_graph_new();
    recur_tensor *z = recur_placeholder(h, RECUR_F32, RECUR_SHAPE(1), "z");
    recur_tensor *hv = recur_get_variable(h, "v", RECUR_SHAPE(1), NULL);
    recur_array *v = recur_array_new(RECUR_F32, RECUR_SHAPE(1), NULL), *out = NULL;
    recur_session_run(m.s, NULL, 0, &z, &out, 1, NULL, 0, st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT,
               "Fetch argument z:0 cannot be interpreted as a Tensor. (Tensor z:0 is not an element of this graph.)");
    recur_session_run(m.s, (recur_feed[]){{z, v}}, 1, NULL, NULL, 0, NULL, 0, st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "Cannot interpret feed_dict key as Tensor: Tensor z:0 is not an element of this graph.");
    recur_session_run_target(m.s, recur_global_variables_initializer(h), st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "Target init is not an element of this graph.");
    ASSERT_EQ_INT(recur_session_set_variable(m.s, hv, v, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "v:0 is not a variable of this session's graph");
    ASSERT_TRUE(recur_session_get_variable(m.s, hv, st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "is not a variable of this session's graph");
    ASSERT_FALSE(recur_session_variable_initialized(m.s, hv));
    recur_array_free(v);
    small_model_free(&m);
    recur_graph_free(h);
    teardown();
}

TEST(session_closed)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(2), NULL);
    recur_session *s = recur_session_new(g, NULL, st);
    recur_op *init = recur_global_variables_initializer(g);
    ASSERT_EQ_INT(recur_session_run_target(s, init, st), RECUR_OK);
    recur_session_close(s);
    recur_session_close(s); /* closing twice is harmless */
    ASSERT_EQ_INT(recur_session_run_target(s, init, st), RECUR_FAILED_PRECONDITION);
    ASSERT_EQ_STR(recur_status_message(st), "Attempted to use a closed Session.");
    recur_array *out = (recur_array *)&out;
    ASSERT_EQ_INT(recur_session_run(s, NULL, 0, &w, &out, 1, NULL, 0, st), RECUR_FAILED_PRECONDITION);
    ASSERT_EQ_STR(recur_status_message(st), "Attempted to use a closed Session.");
    ASSERT_TRUE(out == NULL);
    recur_array *v = recur_array_new(RECUR_F32, RECUR_SHAPE(2), NULL);
    ASSERT_EQ_INT(recur_session_set_variable(s, w, v, st), RECUR_FAILED_PRECONDITION);
    ASSERT_EQ_STR(recur_status_message(st), "Attempted to use a closed Session.");
    /* reading a variable of a closed session is the same error, not "uninitialized" */
    ASSERT_TRUE(recur_session_get_variable(s, w, st) == NULL);
    ASSERT_ERR(st, RECUR_FAILED_PRECONDITION, "Attempted to use a closed Session.");
    ASSERT_FALSE(recur_session_variable_initialized(s, w));
    recur_array_free(v);
    recur_session_free(s); /* a closed session is still freed */
    recur_graph_free(g);
    teardown();
}

TEST(session_uninitialized_variable)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_variable_scope_push(g, "layer1", RECUR_REUSE_INHERIT);
    recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(3), NULL);
    recur_variable_scope_pop(g);
    recur_tensor *y = recur_reduce_sum(g, w, NULL, 0, false);
    recur_session *s = recur_session_new(g, NULL, st);
    recur_array *out = NULL;
    ASSERT_EQ_INT(recur_session_run(s, NULL, 0, &y, &out, 1, NULL, 0, st), RECUR_FAILED_PRECONDITION);
    ASSERT_STR_STARTS(recur_status_message(st), "Attempting to use uninitialized value layer1/w");
    ASSERT_EQ_INT(recur_session_run(s, NULL, 0, &w, &out, 1, NULL, 0, st), RECUR_FAILED_PRECONDITION);
    ASSERT_STR_STARTS(recur_status_message(st), "Attempting to use uninitialized value layer1/w");
    ASSERT_TRUE(recur_session_get_variable(s, w, st) == NULL);
    ASSERT_ERR(st, RECUR_FAILED_PRECONDITION, "Attempting to use uninitialized value layer1/w");
    /* assign_add reads the old value */
    recur_tensor *inc = recur_assign_add(g, w, recur_fill(g, RECUR_F32, RECUR_SHAPE(3), 1));
    ASSERT_EQ_INT(recur_session_run(s, NULL, 0, &inc, &out, 1, NULL, 0, st), RECUR_FAILED_PRECONDITION);
    ASSERT_STR_CONTAINS(recur_status_message(st), "uninitialized value layer1/w");
    ASSERT_TRUE(out == NULL);
    recur_session_free(s);
    recur_graph_free(g);
    teardown();
}

TEST(session_set_variable_bad_values)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(2), NULL);
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "x");
    recur_session *s = recur_session_new(g, NULL, st);
    recur_array *shape3 = recur_array_new(RECUR_F32, RECUR_SHAPE(3), NULL);
    recur_array *i32 = recur_array_new(RECUR_I32, RECUR_SHAPE(2), NULL);
    ASSERT_EQ_INT(recur_session_set_variable(s, w, shape3, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Assign requires shapes of both tensors to match. lhs shape= [2] rhs shape= [3]");
    ASSERT_EQ_INT(recur_session_set_variable(s, w, i32, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "int32");
    ASSERT_EQ_INT(recur_session_set_variable(s, x, i32, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "x:0 is not a variable");
    ASSERT_EQ_INT(recur_session_set_variable(s, w, NULL, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_session_set_variable(NULL, w, i32, st), RECUR_INVALID_ARGUMENT);
    ASSERT_TRUE(recur_session_get_variable(NULL, w, st) == NULL);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    ASSERT_TRUE(recur_session_get_variable(s, NULL, st) == NULL);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    ASSERT_FALSE(recur_session_variable_initialized(NULL, w));
    ASSERT_FALSE(recur_session_variable_initialized(s, NULL));
    ASSERT_FALSE(recur_session_variable_initialized(s, w)); /* nothing was assigned */
    recur_array_free(shape3);
    recur_array_free(i32);
    recur_session_free(s);
    recur_graph_free(g);
    teardown();
}

TEST(session_graph_error_after_creation)
{
    setup();
    small_model m = small_model_new(NULL);
    /* [?,3] x [4,5] fails; the graph holds the error */
    recur_matmul(m.g, m.x, recur_placeholder(m.g, RECUR_F32, RECUR_SHAPE(4, 5), "b"), false, false);
    recur_array *v = recur_array_new(RECUR_F32, RECUR_SHAPE(1, 3), NULL), *out = NULL;
    recur_session_run(m.s, (recur_feed[]){{m.x, v}}, 1, &m.y, &out, 1, NULL, 0, st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "The graph holds an error: Dimensions must be equal");
    recur_graph_clear_error(m.g);
    ASSERT_EQ_INT(recur_session_run(m.s, (recur_feed[]){{m.x, v}}, 1, &m.y, &out, 1, NULL, 0, st), RECUR_OK);
    recur_array_free(out);
    recur_array_free(v);
    small_model_free(&m);
    teardown();
}

TEST(session_check_numerics_nan_and_inf)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(3), "x");
    recur_tensor *l = recur_log(g, x);
    recur_tensor *d = recur_div(g, recur_scalar_f32(g, 1), x);
    recur_session *s = recur_session_new(g, &(recur_session_opts){.check_numerics = true}, st);
    recur_array *v = recur_array_from(RECUR_F32, RECUR_SHAPE(3), (float[]){1, -1, 0}, NULL), *out = NULL;
    ASSERT_EQ_INT(recur_session_run(s, (recur_feed[]){{x, v}}, 1, &l, &out, 1, NULL, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "check_numerics: NaN in output 0 of op Log (element 1)");
    ASSERT_TRUE(out == NULL);
    ASSERT_EQ_INT(recur_session_run(s, (recur_feed[]){{x, v}}, 1, &d, &out, 1, NULL, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Inf in output 0 of op truediv (element 2)");
    recur_session_free(s);
    /* without the option the same run succeeds and returns the NaN */
    s = recur_session_new(g, NULL, st);
    ASSERT_EQ_INT(recur_session_run(s, (recur_feed[]){{x, v}}, 1, &l, &out, 1, NULL, 0, st), RECUR_OK);
    ASSERT_TRUE(isnan(recur_array_f32(out)[1]));
    recur_array_free(out);
    recur_array_free(v);
    recur_session_free(s);
    recur_graph_free(g);
    teardown();
}

TEST(session_empty_batch_matmul)
{
    /* TensorFlow runs a batch of 0 rows; so does recur, with the empty shape */
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 3), "x");
    recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(3, 2), NULL);
    recur_tensor *y = recur_softmax(g, recur_tanh(g, recur_matmul(g, x, w, false, false)));
    recur_tensor *m = recur_reduce_sum(g, y, (int[]){0}, 1, false);
    recur_session *s = recur_session_new(g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_array *v = recur_array_new(RECUR_F32, RECUR_SHAPE(0, 3), NULL), *out[2] = {0};
    ASSERT_EQ_INT(recur_session_run(s, (recur_feed[]){{x, v}}, 1, (recur_tensor *[]){y, m}, out, 2, NULL, 0, st), RECUR_OK);
    ASSERT_EQ_INT(recur_array_rank(out[0]), 2);
    ASSERT_EQ_INT(recur_array_dim(out[0], 0), 0);
    ASSERT_EQ_INT(recur_array_dim(out[0], 1), 2);
    ASSERT_EQ_INT(recur_array_dim(out[1], 0), 2); /* sum over no rows: zeros */
    ASSERT_NEAR(recur_array_f32(out[1])[0], 0, 0);
    recur_array_free(out[0]);
    recur_array_free(out[1]);
    recur_array_free(v);
    recur_session_free(s);
    recur_graph_free(g);
    teardown();
}

TEST(slice_sizes_that_would_overflow)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2, 3), "x");
    ASSERT_TRUE(recur_slice(g, x, (int64_t[]){1, 0}, (int64_t[]){INT64_MAX, -1}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Expected begin[0] in [0, 2] and size[0] in [0, 1], but got 1 and 9223372036854775807");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_slice(g, x, (int64_t[]){INT64_MIN, 0}, (int64_t[]){1, -1}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Expected begin[0] in [0, 2]");
    recur_graph_clear_error(g);
    /* an unknown dimension: checked at run time, where the same size must not overflow either */
    recur_tensor *u = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1), "u");
    recur_tensor *sl = recur_slice(g, u, (int64_t[]){1}, (int64_t[]){INT64_MAX});
    ASSERT_GRAPH_OK(g);
    recur_session *s = recur_session_new(g, NULL, st);
    recur_array *v = recur_array_new(RECUR_F32, RECUR_SHAPE(4), NULL), *out = NULL;
    ASSERT_EQ_INT(recur_session_run(s, (recur_feed[]){{u, v}}, 1, &sl, &out, 1, NULL, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Expected size[0] in [0, 3], but got 9223372036854775807");
    recur_array_free(v);
    recur_session_free(s);
    recur_graph_free(g);
    teardown();
}

/* ---------------------------------------------------------------- run-time index checks */

TEST(gather_index_out_of_range)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *emb = recur_get_variable(g, "emb", RECUR_SHAPE(5, 3), NULL);
    recur_tensor *ids = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(-1), "ids");
    recur_tensor *look = recur_gather(g, emb, ids);
    recur_session *s = recur_session_new(g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_array *big = recur_array_from(RECUR_I32, RECUR_SHAPE(3), (int32_t[]){0, 7, 1}, NULL);
    recur_array *neg = recur_array_from(RECUR_I32, RECUR_SHAPE(2), (int32_t[]){-1, 0}, NULL), *out = NULL;
    ASSERT_EQ_INT(recur_session_run(s, (recur_feed[]){{ids, big}}, 1, &look, &out, 1, NULL, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_STARTS(recur_status_message(st), "indices[1] = 7 is not in [0, 5)");
    ASSERT_STR_CONTAINS(recur_status_message(st), "GatherV2");
    ASSERT_EQ_INT(recur_session_run(s, (recur_feed[]){{ids, neg}}, 1, &look, &out, 1, NULL, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_STARTS(recur_status_message(st), "indices[0] = -1 is not in [0, 5)");
    ASSERT_TRUE(out == NULL);
    recur_array_free(big);
    recur_array_free(neg);
    recur_session_free(s);
    recur_graph_free(g);
    teardown();
}

TEST(gather_empty_indices)
{
    setup();
    recur_graph *g = recur_graph_new();
    recur_tensor *emb = recur_get_variable(g, "emb", RECUR_SHAPE(5, 3), NULL);
    recur_tensor *ids = recur_placeholder(g, RECUR_I64, RECUR_SHAPE(-1), "ids");
    recur_tensor *look = recur_gather(g, emb, ids);
    recur_session *s = recur_session_new(g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_array *none = recur_array_new(RECUR_I64, RECUR_SHAPE(0), NULL), *out = NULL;
    ASSERT_EQ_INT(recur_session_run(s, (recur_feed[]){{ids, none}}, 1, &look, &out, 1, NULL, 0, st), RECUR_OK);
    ASSERT_EQ_INT(recur_array_dim(out, 0), 0);
    ASSERT_EQ_INT(recur_array_dim(out, 1), 3);
    recur_array_free(out);
    recur_array_free(none);
    recur_session_free(s);
    recur_graph_free(g);
    teardown();
}

/* logits float [?, 2], labels int32 [?], per-example loss */
typedef struct ce_model {
    recur_graph *g;
    recur_tensor *logits, *labels, *loss;
    recur_session *s;
} ce_model;

static ce_model ce_model_new(void)
{
    ce_model m = {.g = recur_graph_new()};
    m.logits = recur_placeholder(m.g, RECUR_F32, RECUR_SHAPE(-1, 2), "logits");
    m.labels = recur_placeholder(m.g, RECUR_I32, RECUR_SHAPE(-1), "labels");
    m.loss = recur_sparse_softmax_cross_entropy_with_logits(m.g, m.labels, m.logits);
    m.s = recur_session_new(m.g, NULL, st);
    return m;
}

TEST(sparse_softmax_label_out_of_range)
{
    setup();
    ce_model m = ce_model_new();
    recur_array *lg = recur_array_new(RECUR_F32, RECUR_SHAPE(2, 2), NULL), *out = NULL;
    recur_array *big = recur_array_from(RECUR_I32, RECUR_SHAPE(2), (int32_t[]){1, 5}, NULL);
    recur_array *neg = recur_array_from(RECUR_I32, RECUR_SHAPE(2), (int32_t[]){-1, 0}, NULL);
    recur_session_run(m.s, (recur_feed[]){{m.logits, lg}, {m.labels, big}}, 2, &m.loss, &out, 1, NULL, 0, st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "Received a label value of 5 which is outside the valid range of [0, 2)");
    recur_session_run(m.s, (recur_feed[]){{m.logits, lg}, {m.labels, neg}}, 2, &m.loss, &out, 1, NULL, 0, st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "Received a label value of -1 which is outside the valid range of [0, 2)");
    ASSERT_TRUE(out == NULL);
    recur_array_free(lg);
    recur_array_free(big);
    recur_array_free(neg);
    recur_session_free(m.s);
    recur_graph_free(m.g);
    teardown();
}

TEST(sparse_softmax_bad_labels_at_build_and_run)
{
    setup();
    ce_model m = ce_model_new();
    recur_array *lg = recur_array_new(RECUR_F32, RECUR_SHAPE(2, 2), NULL), *out = NULL;
    recur_array *three = recur_array_new(RECUR_I32, RECUR_SHAPE(3), NULL);
    recur_session_run(m.s, (recur_feed[]){{m.logits, lg}, {m.labels, three}}, 2, &m.loss, &out, 1, NULL, 0, st);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "logits and labels must have compatible shapes: logits [2,2], labels [3]");
    /* float labels, 2-D labels */
    recur_tensor *fl = recur_placeholder(m.g, RECUR_F32, RECUR_SHAPE(-1), "fl");
    ASSERT_TRUE(recur_sparse_softmax_cross_entropy_with_logits(m.g, fl, m.logits) == NULL);
    ASSERT_GERR(m.g, RECUR_INVALID_ARGUMENT, "labels must be");
    recur_graph_clear_error(m.g);
    recur_tensor *l2 = recur_placeholder(m.g, RECUR_I32, RECUR_SHAPE(2, 2), "l2");
    ASSERT_TRUE(recur_sparse_softmax_cross_entropy_with_logits(m.g, l2, m.logits) == NULL);
    ASSERT_GERR(m.g, RECUR_INVALID_ARGUMENT, "labels must be 1-D");
    recur_array_free(lg);
    recur_array_free(three);
    recur_session_free(m.s);
    recur_graph_free(m.g);
    teardown();
}

TEST(sparse_softmax_empty_batch)
{
    setup();
    ce_model m = ce_model_new();
    recur_tensor *mean = recur_reduce_sum(m.g, m.loss, NULL, 0, false);
    recur_array *lg = recur_array_new(RECUR_F32, RECUR_SHAPE(0, 2), NULL), *out[2] = {0};
    recur_array *lb = recur_array_new(RECUR_I32, RECUR_SHAPE(0), NULL);
    ASSERT_EQ_INT(recur_session_run(m.s, (recur_feed[]){{m.logits, lg}, {m.labels, lb}}, 2,
                                    (recur_tensor *[]){m.loss, mean}, out, 2, NULL, 0, st), RECUR_OK);
    ASSERT_EQ_INT(recur_array_rank(out[0]), 1);
    ASSERT_EQ_INT(recur_array_dim(out[0], 0), 0);
    ASSERT_NEAR(recur_array_f32(out[1])[0], 0, 0);
    recur_array_free(out[0]);
    recur_array_free(out[1]);
    recur_array_free(lg);
    recur_array_free(lb);
    recur_session_free(m.s);
    recur_graph_free(m.g);
    teardown();
}

/* ---------------------------------------------------------------- RNN building */

TEST(dynamic_rnn_without_dtype_or_initial_state)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 4, 3), "x");
    recur_cell *c = recur_basic_lstm_cell(g, 5, NULL);
    size_t nops = recur_graph_num_ops(g);
    recur_rnn_out r = recur_dynamic_rnn(g, c, x, NULL);
    ASSERT_TRUE(r.outputs == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "If there is no initial_state, you must give a dtype.");
    recur_graph_clear_error(g);
    r = recur_dynamic_rnn(g, c, x, &(recur_rnn_opts){0});
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "If there is no initial_state, you must give a dtype.");
    recur_graph_clear_error(g);
    recur_tensor *step = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 3), "step");
    nops = recur_graph_num_ops(g);
    recur_static_rnn(g, c, &step, 1, (recur_tensor *[1]){0}, NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "If no initial_state is provided, dtype must be specified");
    ASSERT_EQ_INT(recur_graph_num_ops(g), nops); /* nothing half-made */
    ASSERT_TRUE(recur_cell_scope_name(c) == NULL); /* the cell did not bind a scope */
    ASSERT_EQ_STR(recur_name_scope_current(g), "");
    recur_graph_free(g);
}

TEST(dynamic_rnn_bad_inputs)
{
    recur_graph *g = recur_graph_new();
    recur_rnn_opts o = {.dtype = RECUR_F32};
    recur_tensor *x2 = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 3), "x2");
    recur_dynamic_rnn(g, recur_basic_lstm_cell(g, 5, NULL), x2, &o);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Expected input tensor x2:0 to have rank 3");
    recur_graph_clear_error(g);
    recur_tensor *xi = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(-1, 4, 3), "xi");
    recur_dynamic_rnn(g, recur_basic_lstm_cell(g, 5, NULL), xi, &o);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "RNN cell only supports floating point inputs, but saw dtype: int32");
    recur_graph_clear_error(g);
    recur_tensor *xu = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 4, -1), "xu");
    recur_dynamic_rnn(g, recur_basic_lstm_cell(g, 5, NULL), xu, &o);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT,
                "Input size (depth of inputs) must be accessible via shape inference, but saw value None.");
    recur_graph_clear_error(g);
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 4, 3), "x");
    recur_tensor *sl = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(2, 2), "sl");
    recur_dynamic_rnn(g, recur_basic_lstm_cell(g, 5, NULL), x, &(recur_rnn_opts){.dtype = RECUR_F32, .sequence_length = sl});
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "sequence_length must be a vector of length batch_size, but saw shape: (2, 2)");
    recur_graph_clear_error(g);
    recur_tensor *bad = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2, 7), "bad");
    recur_dynamic_rnn(g, recur_basic_rnn_cell(g, 5, NULL), x, &(recur_rnn_opts){.initial_state = (recur_tensor *[]){bad}});
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "(2, 7)");
    ASSERT_EQ_INT(recur_get_collection(g, RECUR_GLOBAL_VARIABLES, NULL, NULL, 0), 0);
    recur_graph_free(g);
}

TEST(rnn_cell_bad_sizes_and_options)
{
    recur_graph *g = recur_graph_new();
    ASSERT_TRUE(recur_basic_lstm_cell(g, 0, NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "num_units must be in [1, 16777216], got 0");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_gru_cell(g, -3, NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "got -3");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_basic_rnn_cell(g, INT64_MAX, NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "num_units must be in [1, 16777216]");
    recur_graph_clear_error(g);
    recur_cell *c = recur_basic_rnn_cell(g, 3, NULL);
    ASSERT_TRUE(recur_dropout_wrapper(g, c, &(recur_dropout_opts){.input_keep_prob = 1.5}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Parameter input_keep_prob must be between 0 and 1: 1.5");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_dropout_wrapper(g, c, &(recur_dropout_opts){.output_keep_prob = -1}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Parameter output_keep_prob must be between 0 and 1: -1");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_multi_rnn_cell(g, NULL, 0, NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Must specify at least one cell for MultiRNNCell.");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_custom_cell(g, NULL) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "is not an RNNCell");
    recur_graph_clear_error(g);
    ASSERT_FALSE(recur_cell_zero_state(g, c, -2, NULL, RECUR_F32, (recur_tensor *[1]){0}));
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "zero_state: batch_size must be >= 0");
    recur_graph_free(g);
}

static bool trivial_build(recur_graph *g, void *user, recur_tensor *input, recur_tensor *const *state,
                          recur_tensor **output, recur_tensor **new_state)
{
    (void)user;
    *output = recur_identity(g, state[0], NULL);
    new_state[0] = recur_identity(g, state[0], NULL);
    return input != NULL;
}

TEST(custom_cell_too_many_states)
{
    recur_graph *g = recur_graph_new();
    recur_cell_def d = {.name = "my_cell", .num_state = RECUR_MAX_STATE + 1, .output_size = 2, .build = trivial_build};
    for (int i = 0; i < RECUR_MAX_STATE; i++) d.state_size[i] = 2;
    ASSERT_TRUE(recur_custom_cell(g, &d) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Custom cell my_cell: num_state must be in [1, 32]");
    recur_graph_clear_error(g);
    d.num_state = 1;
    d.state_size[0] = -4;
    ASSERT_TRUE(recur_custom_cell(g, &d) == NULL);
    ASSERT_EQ_INT(recur_graph_code(g), RECUR_INVALID_ARGUMENT);
    recur_graph_clear_error(g);
    d.state_size[0] = 2;
    d.name = "bad name";
    ASSERT_TRUE(recur_custom_cell(g, &d) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "'bad name' is not a valid");
    recur_graph_free(g);
}

TEST(one_cell_called_in_two_scopes)
{
    /* TensorFlow 1.2+: a cell binds its scope on the first call; a call from another scope
     * re-enters the bound scope and shares the weights (no new variables, no error). A call
     * with another input depth is an error that says so. */
    recur_graph *g = recur_graph_new();
    recur_cell *c = recur_basic_rnn_cell(g, 3, NULL);
    recur_tensor *in = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2, 3), "in"), *ns[1];
    recur_variable_scope_push(g, "a", RECUR_REUSE_INHERIT);
    ASSERT_TRUE(recur_cell_call(g, c, in, NULL, ns) != NULL);
    recur_variable_scope_pop(g);
    recur_variable_scope_push(g, "b", RECUR_REUSE_INHERIT);
    ASSERT_TRUE(recur_cell_call(g, c, in, NULL, ns) != NULL);
    recur_variable_scope_pop(g);
    ASSERT_GRAPH_OK(g);
    ASSERT_EQ_STR(recur_cell_scope_name(c), "a/basic_rnn_cell");
    ASSERT_EQ_INT(recur_get_collection(g, RECUR_GLOBAL_VARIABLES, NULL, NULL, 0), 2);
    ASSERT_EQ_INT(recur_get_collection(g, RECUR_GLOBAL_VARIABLES, "b/", NULL, 0), 0);
    recur_tensor *in4 = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2, 4), "in4");
    ASSERT_TRUE(recur_cell_call(g, c, in4, NULL, ns) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Cell a/basic_rnn_cell was built for input depth 3 but is called with inputs of shape (2, 4)");
    recur_graph_clear_error(g);
    recur_tensor *bad = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2, 7), "bad");
    ASSERT_TRUE(recur_cell_call(g, c, in, (recur_tensor *[]){bad}, ns) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "State 0 of cell basic_rnn_cell has shape (2, 7), expected (?, 3)");
    recur_graph_free(g);
}

TEST(rnn_drivers_bad_cell_lists)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 4, 3), "x");
    recur_tensor *x1 = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2, 3), "x1"), *outs[4];
    recur_cell *c = recur_basic_rnn_cell(g, 3, NULL);
    recur_bidirectional_dynamic_rnn(g, c, NULL, x, &(recur_birnn_opts){.dtype = RECUR_F32});
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "The argument 'cell_bw' (None) is not an RNNCell");
    recur_graph_clear_error(g);
    recur_stack_bidirectional_dynamic_rnn(g, NULL, NULL, 0, x, &(recur_birnn_opts){.dtype = RECUR_F32});
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Must specify at least one fw cell for BidirectionalRNN.");
    recur_graph_clear_error(g);
    recur_static_rnn(g, c, NULL, 0, outs, &(recur_rnn_opts){.dtype = RECUR_F32});
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "inputs must be a sequence");
    recur_graph_clear_error(g);
    /* a NULL cell gets TensorFlow's TypeError text (for cell=None) */
    recur_dynamic_rnn(g, NULL, x, &(recur_rnn_opts){.dtype = RECUR_F32});
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "The argument 'cell' (None) is not an RNNCell");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_cell_call(g, c, x1, NULL, outs) != NULL);
    ASSERT_GRAPH_OK(g);
    recur_graph_free(g);
}

/* ---------------------------------------------------------------- RNN runs: lengths and empties */

/* x float [?, 4, 3], lengths int32 [?], an LSTM with 5 units */
typedef struct rnn_model {
    recur_graph *g;
    recur_tensor *x, *len;
    recur_rnn_out r;
    recur_tensor *grad; /* d sum(outputs) / d kernel */
} rnn_model;

static rnn_model rnn_model_new(int64_t T, bool with_len)
{
    rnn_model m = {.g = recur_graph_new()};
    m.x = recur_placeholder(m.g, RECUR_F32, RECUR_SHAPE(-1, T, 3), "x");
    m.len = with_len ? recur_placeholder(m.g, RECUR_I32, RECUR_SHAPE(-1), "len") : NULL;
    m.r = recur_dynamic_rnn(m.g, recur_basic_lstm_cell(m.g, 5, NULL), m.x,
                            &(recur_rnn_opts){.dtype = RECUR_F32, .sequence_length = m.len});
    recur_tensor *loss = recur_reduce_sum(m.g, m.r.outputs, NULL, 0, false);
    recur_tensor *kernel = recur_graph_tensor(m.g, "rnn/basic_lstm_cell/kernel:0");
    recur_gradients(m.g, &loss, 1, &kernel, 1, NULL, &m.grad);
    return m;
}

static recur_session *rnn_session(rnn_model *m, recur_rnn_path path)
{
    recur_session *s = recur_session_new(m->g, &(recur_session_opts){.rnn_path = path}, st);
    recur_session_run_target(s, recur_global_variables_initializer(m->g), st);
    return s;
}

TEST(rnn_sequence_length_beyond_T_or_negative)
{
    setup();
    rnn_model m = rnn_model_new(4, true);
    ASSERT_GRAPH_OK(m.g);
    recur_array *x = recur_array_new(RECUR_F32, RECUR_SHAPE(2, 4, 3), NULL), *out = NULL;
    recur_array *big = recur_array_from(RECUR_I32, RECUR_SHAPE(2), (int32_t[]){2, 9}, NULL);
    recur_array *neg = recur_array_from(RECUR_I32, RECUR_SHAPE(2), (int32_t[]){2, -1}, NULL);
    recur_array *three = recur_array_from(RECUR_I32, RECUR_SHAPE(3), (int32_t[]){1, 1, 1}, NULL);
    for (int path = RECUR_RNN_AUTO; path <= RECUR_RNN_LOOP; path++) {
        recur_session *s = rnn_session(&m, (recur_rnn_path)path);
        recur_session_run(s, (recur_feed[]){{m.x, x}, {m.len, big}}, 2, &m.r.outputs, &out, 1, NULL, 0, st);
        ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "sequence_length[1] = 9 is outside [0, 4] (the input has 4 time steps)");
        recur_session_run(s, (recur_feed[]){{m.x, x}, {m.len, neg}}, 2, &m.r.outputs, &out, 1, NULL, 0, st);
        ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "sequence_length[1] = -1 is outside [0, 4]");
        recur_session_run(s, (recur_feed[]){{m.x, x}, {m.len, three}}, 2, &m.r.outputs, &out, 1, NULL, 0, st);
        ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "Expected shape for Tensor rnn/sequence_length:0 is [2] but saw shape: [3]");
        ASSERT_TRUE(out == NULL);
        recur_session_free(s);
    }
    recur_array_free(x);
    recur_array_free(big);
    recur_array_free(neg);
    recur_array_free(three);
    recur_graph_free(m.g);
    teardown();
}

TEST(rnn_zero_length_sequences)
{
    /* rows of length 0: zero outputs, the final state is the initial (zero) state */
    setup();
    rnn_model m = rnn_model_new(4, true);
    recur_array *x = recur_array_new(RECUR_F32, RECUR_SHAPE(2, 4, 3), NULL);
    float *xd = recur_array_f32(x);
    for (int i = 0; i < 24; i++) xd[i] = 0.5f;
    recur_array *len = recur_array_from(RECUR_I32, RECUR_SHAPE(2), (int32_t[]){0, 2}, NULL);
    for (int path = RECUR_RNN_AUTO; path <= RECUR_RNN_LOOP; path++) {
        recur_session *s = rnn_session(&m, (recur_rnn_path)path);
        recur_array *o[4] = {0};
        ASSERT_EQ_INT(recur_session_run(s, (recur_feed[]){{m.x, x}, {m.len, len}}, 2,
                                        (recur_tensor *[]){m.r.outputs, m.r.state[0], m.r.state[1], m.grad}, o, 4, NULL, 0, st),
                      RECUR_OK);
        float *out = recur_array_f32(o[0]), *c = recur_array_f32(o[1]);
        for (int j = 0; j < 4 * 5; j++) ASSERT_NEAR(out[j], 0, 0); /* row 0: every step zero */
        for (int j = 0; j < 5; j++) ASSERT_NEAR(c[j], 0, 0);
        ASSERT_TRUE(out[4 * 5 + 0] != 0);                    /* row 1 ran */
        for (int j = 2 * 5; j < 4 * 5; j++) ASSERT_NEAR(out[4 * 5 + j], 0, 0); /* ... two steps */
        for (int i = 0; i < 4; i++) recur_array_free(o[i]);
        recur_session_free(s);
    }
    recur_array_free(x);
    recur_array_free(len);
    recur_graph_free(m.g);
    teardown();
}

TEST(rnn_empty_batch)
{
    /* TensorFlow runs dynamic_rnn on a batch of 0 rows; so does recur, on both paths, forward
     * and backward */
    setup();
    rnn_model m = rnn_model_new(4, true);
    recur_array *x = recur_array_new(RECUR_F32, RECUR_SHAPE(0, 4, 3), NULL);
    recur_array *len = recur_array_new(RECUR_I32, RECUR_SHAPE(0), NULL);
    for (int path = RECUR_RNN_AUTO; path <= RECUR_RNN_LOOP; path++) {
        recur_session *s = rnn_session(&m, (recur_rnn_path)path);
        recur_array *o[4] = {0};
        ASSERT_EQ_INT(recur_session_run(s, (recur_feed[]){{m.x, x}, {m.len, len}}, 2,
                                        (recur_tensor *[]){m.r.outputs, m.r.state[0], m.r.state[1], m.grad}, o, 4, NULL, 0, st),
                      RECUR_OK);
        ASSERT_EQ_INT(recur_array_rank(o[0]), 3);
        ASSERT_EQ_INT(recur_array_dim(o[0], 0), 0);
        ASSERT_EQ_INT(recur_array_dim(o[0], 1), 4);
        ASSERT_EQ_INT(recur_array_dim(o[0], 2), 5);
        ASSERT_EQ_INT(recur_array_dim(o[1], 0), 0);
        ASSERT_EQ_INT(recur_array_dim(o[1], 1), 5);
        ASSERT_EQ_INT(recur_array_dim(o[3], 0), 8); /* kernel gradient [3+5, 20], all zero */
        ASSERT_EQ_INT(recur_array_dim(o[3], 1), 20);
        for (int j = 0; j < 8 * 20; j++) ASSERT_NEAR(recur_array_f32(o[3])[j], 0, 0);
        for (int i = 0; i < 4; i++) recur_array_free(o[i]);
        recur_session_free(s);
    }
    recur_array_free(x);
    recur_array_free(len);
    recur_graph_free(m.g);
    teardown();
}

TEST(rnn_empty_batch_without_lengths)
{
    setup();
    rnn_model m = rnn_model_new(4, false);
    recur_array *x = recur_array_new(RECUR_F32, RECUR_SHAPE(0, 4, 3), NULL);
    for (int path = RECUR_RNN_AUTO; path <= RECUR_RNN_LOOP; path++) {
        recur_session *s = rnn_session(&m, (recur_rnn_path)path);
        recur_array *o[4] = {0};
        ASSERT_EQ_INT(recur_session_run(s, (recur_feed[]){{m.x, x}}, 1,
                                        (recur_tensor *[]){m.r.outputs, m.r.state[0], m.r.state[1], m.grad}, o, 4, NULL, 0, st),
                      RECUR_OK);
        ASSERT_EQ_INT(recur_array_dim(o[0], 0), 0);
        ASSERT_EQ_INT(recur_array_dim(o[0], 1), 4);
        ASSERT_EQ_INT(recur_array_dim(o[2], 0), 0);
        ASSERT_EQ_INT(recur_array_dim(o[3], 1), 20);
        for (int i = 0; i < 4; i++) recur_array_free(o[i]);
        recur_session_free(s);
    }
    recur_array_free(x);
    recur_graph_free(m.g);
    teardown();
}

TEST(rnn_zero_time_steps)
{
    /* T = 0: outputs [B, 0, 5], the final state is the initial (zero) state */
    setup();
    rnn_model m = rnn_model_new(0, false);
    ASSERT_GRAPH_OK(m.g);
    recur_array *x = recur_array_new(RECUR_F32, RECUR_SHAPE(2, 0, 3), NULL);
    for (int path = RECUR_RNN_AUTO; path <= RECUR_RNN_LOOP; path++) {
        recur_session *s = rnn_session(&m, (recur_rnn_path)path);
        recur_array *o[4] = {0};
        ASSERT_EQ_INT(recur_session_run(s, (recur_feed[]){{m.x, x}}, 1,
                                        (recur_tensor *[]){m.r.outputs, m.r.state[0], m.r.state[1], m.grad}, o, 4, NULL, 0, st),
                      RECUR_OK);
        ASSERT_EQ_INT(recur_array_dim(o[0], 0), 2);
        ASSERT_EQ_INT(recur_array_dim(o[0], 1), 0);
        ASSERT_EQ_INT(recur_array_dim(o[0], 2), 5);
        ASSERT_EQ_INT(recur_array_dim(o[2], 0), 2);
        for (int j = 0; j < 10; j++) ASSERT_NEAR(recur_array_f32(o[2])[j], 0, 0);
        for (int i = 0; i < 4; i++) recur_array_free(o[i]);
        recur_session_free(s);
    }
    recur_array_free(x);
    recur_graph_free(m.g);
    teardown();
}

/* ---------------------------------------------------------------- training */

TEST(optimizer_minimize_with_no_variables)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *p = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(2), "p");
    recur_tensor *loss = recur_reduce_sum(g, recur_square(g, p), NULL, 0, false);
    recur_optimizer *opt = recur_optimizer_new(g, &(recur_optimizer_opts){.learning_rate = 0.1});
    ASSERT_TRUE(opt != NULL);
    size_t nops = recur_graph_num_ops(g);
    ASSERT_TRUE(recur_optimizer_minimize(opt, loss, NULL, NULL, 0) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "No variables to optimize.");
    ASSERT_EQ_INT(recur_graph_num_ops(g), nops);
    recur_graph_clear_error(g);
    /* a variable the loss does not depend on */
    recur_get_variable(g, "v", RECUR_SHAPE(2), NULL);
    ASSERT_TRUE(recur_optimizer_minimize(opt, loss, NULL, NULL, 0) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "No gradients provided for any variable");
    recur_graph_clear_error(g);
    /* a var_list entry that is not a variable */
    ASSERT_TRUE(recur_optimizer_minimize(opt, loss, NULL, &p, 1) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "p:0 is not a variable");
    recur_graph_free(g);
}

TEST(optimizer_bad_options)
{
    recur_graph *g = recur_graph_new();
    ASSERT_TRUE(recur_optimizer_new(g, &(recur_optimizer_opts){.kind = (recur_optimizer_kind)99, .learning_rate = 0.1}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Unknown optimizer kind 99");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_optimizer_new(g, &(recur_optimizer_opts){.learning_rate = -1}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "learning_rate must be a finite non-negative number, got -1");
    recur_graph_clear_error(g);
    ASSERT_TRUE(recur_optimizer_new(g, &(recur_optimizer_opts){.learning_rate = NAN}) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "learning_rate must be a finite non-negative number");
    recur_graph_clear_error(g);
    recur_tensor *ilr = recur_scalar_i32(g, 1);
    ASSERT_TRUE(recur_optimizer_new(g, &(recur_optimizer_opts){.learning_rate_tensor = ilr}) == NULL);
    ASSERT_EQ_INT(recur_graph_code(g), RECUR_INVALID_ARGUMENT);
    recur_graph_free(g);
}

TEST(gradients_of_an_integer_tensor)
{
    /* TensorFlow returns None for an integer y; recur refuses it with a message instead */
    recur_graph *g = recur_graph_new();
    recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(3), NULL);
    recur_tensor *wi = recur_cast(g, w, RECUR_I32), *dx = (recur_tensor *)&dx;
    ASSERT_FALSE(recur_gradients(g, &wi, 1, &w, 1, NULL, &dx));
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "gradients: ys[0] (Cast:0) must be a floating tensor");
    ASSERT_TRUE(dx == NULL);
    recur_graph_clear_error(g);
    recur_optimizer *opt = recur_optimizer_new(g, &(recur_optimizer_opts){.learning_rate = 0.1});
    ASSERT_TRUE(recur_optimizer_minimize(opt, recur_reduce_sum(g, wi, NULL, 0, false), NULL, NULL, 0) == NULL);
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "must be a floating tensor");
    recur_graph_free(g);
}

TEST(gradients_bad_arguments)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(3), NULL), *dx = NULL;
    recur_tensor *y = recur_square(g, w);
    ASSERT_FALSE(recur_gradients(g, &y, 0, &w, 1, NULL, &dx));
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "ys and xs must be non-empty and dxs non-NULL");
    recur_graph_clear_error(g);
    ASSERT_FALSE(recur_gradients(g, &y, 1, &w, 1, NULL, NULL));
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "ys and xs must be non-empty and dxs non-NULL");
    recur_graph_clear_error(g);
    recur_tensor *seed_i = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(3), "seed_i");
    ASSERT_FALSE(recur_gradients(g, &y, 1, &w, 1, &seed_i, &dx));
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "grad_ys[0] has dtype int32 but ys[0] (Square:0) has dtype float");
    recur_graph_clear_error(g);
    recur_tensor *seed_s = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(4), "seed_s");
    ASSERT_FALSE(recur_gradients(g, &y, 1, &w, 1, &seed_s, &dx));
    ASSERT_GERR(g, RECUR_INVALID_ARGUMENT, "Incompatible shapes between op input and calculated input gradient");
    recur_graph_free(g);
}

/* ---------------------------------------------------------------- checkpoints and files */

static char tmp_dir[64];

static const char *make_tmp_dir(void)
{
    strcpy(tmp_dir, "/tmp/recur_bad_input_XXXXXX");
    if (!mkdtemp(tmp_dir)) rt_fail(__FILE__, __LINE__, "mkdtemp failed");
    return tmp_dir;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_tmp_dir(void) { nftw(tmp_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static const char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *pathf(const char *fmt, ...)
{
    static char buf[8][512];
    static int slot;
    char *b = buf[slot++ % 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, sizeof buf[0], fmt, ap);
    va_end(ap);
    return b;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) rt_fail(__FILE__, __LINE__, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* layer1/w (3, 2) initialised to ones, a saver and a session */
typedef struct saved_model {
    recur_graph *g;
    recur_tensor *w;
    recur_session *s;
    recur_saver *sv;
} saved_model;

static saved_model saved_model_new(bool init)
{
    saved_model m = {.g = recur_graph_new()};
    recur_variable_scope_push(m.g, "layer1", RECUR_REUSE_INHERIT);
    m.w = recur_get_variable(m.g, "w", RECUR_SHAPE(3, 2), &(recur_variable_opts){.initializer = recur_ones_initializer()});
    recur_variable_scope_pop(m.g);
    m.sv = recur_saver_new(m.g, NULL);
    m.s = recur_session_new(m.g, NULL, st);
    if (init) recur_session_run_target(m.s, recur_global_variables_initializer(m.g), st);
    return m;
}

static void saved_model_free(saved_model *m)
{
    recur_saver_free(m->sv);
    recur_session_free(m->s);
    recur_graph_free(m->g);
}

TEST(checkpoint_save_into_unwritable_location)
{
    setup();
    const char *dir = make_tmp_dir();
    saved_model m = saved_model_new(true);
    char path[256];
    /* a directory that cannot be made */
    ASSERT_NE_INT(recur_saver_save(m.sv, m.s, "/proc/no/such/dir/model", -1, path, sizeof path, st), RECUR_OK);
    ASSERT_ERR(st, RECUR_PERMISSION_DENIED, "Cannot create directory /proc/no");
    /* a "directory" that is a regular file */
    write_file(pathf("%s/file", dir), "x");
    ASSERT_NE_INT(recur_saver_save(m.sv, m.s, pathf("%s/file/model", dir), -1, path, sizeof path, st), RECUR_OK);
    ASSERT_STR_CONTAINS(recur_status_message(st), pathf("%s/file/model", dir));
    ASSERT_STR_CONTAINS(recur_status_message(st), "Not a directory");
    /* the path buffer is too small: nothing is written */
    ASSERT_EQ_INT(recur_saver_save(m.sv, m.s, pathf("%s/model", dir), 3, path, 4, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "path_out needs");
    ASSERT_EQ_INT(access(pathf("%s/model-3.index", dir), F_OK), -1);
    ASSERT_EQ_INT(recur_saver_save(m.sv, m.s, "", -1, NULL, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_saver_save(NULL, m.s, pathf("%s/m", dir), -1, NULL, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_saver_save(m.sv, NULL, pathf("%s/m", dir), -1, NULL, 0, st), RECUR_INVALID_ARGUMENT);
    saved_model_free(&m);
    rm_tmp_dir();
    teardown();
}

TEST(checkpoint_save_uninitialized_or_closed)
{
    setup();
    const char *dir = make_tmp_dir();
    saved_model m = saved_model_new(false);
    ASSERT_EQ_INT(recur_saver_save(m.sv, m.s, pathf("%s/model", dir), -1, NULL, 0, st), RECUR_FAILED_PRECONDITION);
    ASSERT_STR_STARTS(recur_status_message(st), "Attempting to use uninitialized value layer1/w");
    ASSERT_EQ_INT(access(pathf("%s/model.index", dir), F_OK), -1); /* nothing left behind */
    ASSERT_EQ_INT(access(pathf("%s/checkpoint", dir), F_OK), -1);
    recur_session_close(m.s);
    ASSERT_EQ_INT(recur_saver_save(m.sv, m.s, pathf("%s/model", dir), -1, NULL, 0, st), RECUR_FAILED_PRECONDITION);
    ASSERT_EQ_STR(recur_status_message(st), "Attempted to use a closed Session.");
    ASSERT_EQ_INT(recur_saver_restore(m.sv, m.s, pathf("%s/model", dir), st), RECUR_FAILED_PRECONDITION);
    ASSERT_EQ_STR(recur_status_message(st), "Attempted to use a closed Session.");
    ASSERT_EQ_INT(recur_init_from_checkpoint(m.s, pathf("%s/model", dir), NULL, NULL, 0, st), RECUR_FAILED_PRECONDITION);
    ASSERT_EQ_STR(recur_status_message(st), "Attempted to use a closed Session.");
    saved_model_free(&m);
    rm_tmp_dir();
    teardown();
}

TEST(checkpoint_restore_from_missing_prefix)
{
    setup();
    const char *dir = make_tmp_dir();
    saved_model m = saved_model_new(false);
    const char *prefix = pathf("%s/never_saved", dir);
    ASSERT_EQ_INT(recur_saver_restore(m.sv, m.s, prefix, st), RECUR_NOT_FOUND);
    ASSERT_EQ_STR(recur_status_message(st), pathf("The passed save_path is not a valid checkpoint: %s", prefix));
    ASSERT_FALSE(recur_session_variable_initialized(m.s, m.w));
    ASSERT_TRUE(recur_checkpoint_open(prefix, st) == NULL);
    ASSERT_CODE(st, RECUR_NOT_FOUND);
    /* init_from_checkpoint opens the checkpoint even when the map selects nothing */
    ASSERT_EQ_INT(recur_init_from_checkpoint(m.s, prefix, NULL, NULL, 0, st), RECUR_NOT_FOUND);
    ASSERT_STR_CONTAINS(recur_status_message(st), "The passed save_path is not a valid checkpoint");
    ASSERT_EQ_INT(recur_init_from_checkpoint(m.s, prefix, (const char *[]){"layer1/w"}, (const char *[]){"layer1/w"}, 1, st),
                  RECUR_NOT_FOUND);
    ASSERT_EQ_INT(recur_saver_restore(m.sv, m.s, NULL, st), RECUR_INVALID_ARGUMENT);
    ASSERT_TRUE(recur_checkpoint_open(NULL, st) == NULL);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    saved_model_free(&m);
    rm_tmp_dir();
    teardown();
}

TEST(checkpoint_restore_mismatched_shape)
{
    setup();
    const char *dir = make_tmp_dir();
    saved_model m = saved_model_new(true);
    ASSERT_EQ_INT(recur_saver_save(m.sv, m.s, pathf("%s/model", dir), -1, NULL, 0, st), RECUR_OK);
    recur_graph *g = recur_graph_new();
    recur_variable_scope_push(g, "layer1", RECUR_REUSE_INHERIT);
    recur_tensor *w = recur_get_variable(g, "w", RECUR_SHAPE(2, 3), NULL);
    recur_tensor *b = recur_get_variable(g, "b", RECUR_SHAPE(2), NULL);
    recur_variable_scope_pop(g);
    recur_saver *sv = recur_saver_new(g, NULL);
    recur_session *s = recur_session_new(g, NULL, st);
    ASSERT_EQ_INT(recur_saver_restore(sv, s, pathf("%s/model", dir), st), RECUR_NOT_FOUND);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Key layer1/b not found in checkpoint");
    ASSERT_STR_CONTAINS(recur_status_message(st), "layer1/w");
    ASSERT_FALSE(recur_session_variable_initialized(s, w)); /* nothing assigned */
    ASSERT_FALSE(recur_session_variable_initialized(s, b));
    recur_saver_free(sv);
    recur_session_free(s);
    recur_graph_free(g);
    saved_model_free(&m);
    rm_tmp_dir();
    teardown();
}

TEST(checkpoint_corrupt_state_file)
{
    setup();
    const char *dir = make_tmp_dir();
    char buf[256];
    ASSERT_TRUE(recur_latest_checkpoint(dir, buf, sizeof buf, st) == NULL);
    ASSERT_ERR(st, RECUR_NOT_FOUND, "No checkpoint state file in");
    write_file(pathf("%s/checkpoint", dir), "model_checkpoint_path: \"model-7\nall_model_checkpoint_paths: 3\n");
    ASSERT_TRUE(recur_latest_checkpoint(dir, buf, sizeof buf, st) == NULL);
    ASSERT_ERR(st, RECUR_DATA_LOSS, pathf("%s/checkpoint:1:", dir));
    write_file(pathf("%s/checkpoint", dir), "model_checkpoint_path: \"a\"\nall_model_checkpoint_paths: {\n");
    ASSERT_TRUE(recur_latest_checkpoint(dir, buf, sizeof buf, st) == NULL);
    ASSERT_ERR(st, RECUR_DATA_LOSS, pathf("%s/checkpoint:2:", dir));
    /* unknown fields are skipped (newer TensorFlow adds some); the listed prefix must exist */
    write_file(pathf("%s/checkpoint", dir), "model_checkpoint_path: \"a\"\nno_such_field: \"b\"\n");
    ASSERT_TRUE(recur_latest_checkpoint(dir, buf, sizeof buf, st) == NULL);
    ASSERT_ERR(st, RECUR_NOT_FOUND, "Couldn't match files for checkpoint");
    write_file(pathf("%s/checkpoint", dir), "\x01\x02\xff garbage {{{");
    ASSERT_TRUE(recur_latest_checkpoint(dir, buf, sizeof buf, st) == NULL);
    ASSERT_CODE(st, RECUR_DATA_LOSS);
    ASSERT_TRUE(recur_latest_checkpoint(NULL, buf, sizeof buf, st) == NULL);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    ASSERT_TRUE(recur_latest_checkpoint(dir, NULL, 0, st) == NULL);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    rm_tmp_dir();
    teardown();
}

TEST(checkpoint_corrupt_index)
{
    setup();
    const char *dir = make_tmp_dir();
    write_file(pathf("%s/bad.index", dir), "this is not an sstable, not at all, not even close");
    ASSERT_TRUE(recur_checkpoint_open(pathf("%s/bad", dir), st) == NULL);
    ASSERT_ERR(st, RECUR_DATA_LOSS, pathf("%s/bad.index", dir));
    write_file(pathf("%s/empty.index", dir), "");
    ASSERT_TRUE(recur_checkpoint_open(pathf("%s/empty", dir), st) == NULL);
    ASSERT_CODE(st, RECUR_DATA_LOSS);
    rm_tmp_dir();
    teardown();
}

TEST(checkpoint_reader_and_writer_bad_arguments)
{
    setup();
    const char *dir = make_tmp_dir();
    recur_array *a = recur_array_new(RECUR_F32, RECUR_SHAPE(2), NULL);
    recur_checkpoint_writer *w = recur_checkpoint_writer_new(pathf("%s/ck", dir), st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(recur_checkpoint_writer_add(w, "k", a, st), RECUR_OK);
    ASSERT_EQ_INT(recur_checkpoint_writer_add(w, "k", a, st), RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Adding duplicate key: k");
    ASSERT_EQ_INT(recur_checkpoint_writer_add(w, "", a, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_checkpoint_writer_add(w, NULL, a, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_checkpoint_writer_add(w, "z", NULL, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_checkpoint_writer_add(NULL, "z", a, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_checkpoint_writer_finish(w, st), RECUR_OK);
    ASSERT_EQ_INT(recur_checkpoint_writer_finish(w, st), RECUR_FAILED_PRECONDITION);
    ASSERT_STR_CONTAINS(recur_status_message(st), "is already finished");
    ASSERT_EQ_INT(recur_checkpoint_writer_finish(NULL, st), RECUR_INVALID_ARGUMENT);
    recur_checkpoint_writer_free(w);
    recur_checkpoint *c = recur_checkpoint_open(pathf("%s/ck", dir), st);
    ASSERT_OK(st);
    ASSERT_TRUE(recur_checkpoint_read(c, "nope", st) == NULL);
    ASSERT_ERR(st, RECUR_NOT_FOUND, "Key nope not found in checkpoint");
    /* NULL arguments are the caller's error, not a missing key */
    ASSERT_TRUE(recur_checkpoint_read(c, NULL, st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "recur_checkpoint_read: NULL key");
    ASSERT_TRUE(recur_checkpoint_read(NULL, "k", st) == NULL);
    ASSERT_ERR(st, RECUR_INVALID_ARGUMENT, "recur_checkpoint_read: NULL checkpoint");
    ASSERT_FALSE(recur_checkpoint_info(c, NULL, NULL, NULL));
    ASSERT_FALSE(recur_checkpoint_info(NULL, "k", NULL, NULL));
    ASSERT_TRUE(recur_checkpoint_key(c, 99) == NULL);
    ASSERT_EQ_INT(recur_checkpoint_num_tensors(NULL), 0);
    ASSERT_EQ_INT(recur_checkpoint_suggest_map(NULL, c, NULL, NULL, st), -1);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    recur_checkpoint_close(c);
    recur_array_free(a);
    rm_tmp_dir();
    teardown();
}

TEST(init_from_checkpoint_bad_assignment_map)
{
    setup();
    const char *dir = make_tmp_dir();
    saved_model m = saved_model_new(true);
    ASSERT_EQ_INT(recur_saver_save(m.sv, m.s, pathf("%s/model", dir), -1, NULL, 0, st), RECUR_OK);
    const char *prefix = pathf("%s/model", dir);
    ASSERT_EQ_INT(recur_init_from_checkpoint(m.s, prefix, (const char *[]){"nope"}, (const char *[]){"layer1/w"}, 1, st),
                  RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Tensor nope is not found in");
    ASSERT_EQ_INT(recur_init_from_checkpoint(m.s, prefix, (const char *[]){"layer1/w"}, (const char *[]){"layer2/w"}, 1, st),
                  RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "the graph has no variable layer2/w");
    ASSERT_EQ_INT(recur_init_from_checkpoint(m.s, prefix, (const char *[]){"layer1/w"}, (const char *[]){"layer1/"}, 1, st),
                  RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Assignment map with scope only name layer1/ should map to scope only");
    ASSERT_EQ_INT(recur_init_from_checkpoint(m.s, prefix, (const char *[]){""}, (const char *[]){"layer1/w"}, 1, st),
                  RECUR_INVALID_ARGUMENT);
    ASSERT_STR_CONTAINS(recur_status_message(st), "Assignment map entry 0 is empty");
    ASSERT_EQ_INT(recur_init_from_checkpoint(m.s, prefix, NULL, NULL, 1, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_init_from_checkpoint(m.s, prefix, NULL, NULL, -1, st), RECUR_INVALID_ARGUMENT);
    /* the empty map on an existing checkpoint is fine */
    ASSERT_EQ_INT(recur_init_from_checkpoint(m.s, prefix, NULL, NULL, 0, st), RECUR_OK);
    saved_model_free(&m);
    rm_tmp_dir();
    teardown();
}

TEST(summary_writer_bad_arguments)
{
    setup();
    ASSERT_TRUE(recur_summary_writer_new("/proc/no/such", st) == NULL);
    ASSERT_ERR(st, RECUR_PERMISSION_DENIED, "Cannot create directory /proc/no");
    ASSERT_TRUE(recur_summary_writer_new(NULL, st) == NULL);
    ASSERT_CODE(st, RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_summary_scalar(NULL, "t", 1, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_summary_histogram(NULL, "t", NULL, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_summary_flush(NULL, st), RECUR_INVALID_ARGUMENT);
    const char *dir = make_tmp_dir();
    recur_summary_writer *w = recur_summary_writer_new(dir, st);
    ASSERT_OK(st);
    ASSERT_EQ_INT(recur_summary_scalar(w, NULL, 1, 0, st), RECUR_INVALID_ARGUMENT);
    ASSERT_EQ_INT(recur_summary_histogram(w, "h", NULL, 0, st), RECUR_INVALID_ARGUMENT);
    recur_summary_writer_free(w);
    rm_tmp_dir();
    teardown();
}

RUN_TESTS(T(status_calls_on_null), T(status_overlong_message_is_truncated), T(graph_calls_on_null),
          T(graph_set_error_keeps_first_and_never_ok), T(builders_on_null_graph_return_null),
          T(builder_null_input_records_no_new_message), T(free_null_is_a_noop_everywhere),
          T(array_invalid_dtype), T(array_negative_and_unknown_dims), T(array_bad_rank),
          T(array_size_overflows_int64), T(array_bytes_overflow_size_t),
          T(array_accessors_on_null_and_wrong_dtype), T(array_copy_of_null), T(shape_str_tiny_buffers),
          T(name_scope_invalid_characters), T(op_name_invalid_characters), T(variable_scope_invalid_name),
          T(variable_name_invalid_characters), T(cell_name_invalid_characters),
          T(name_scope_pop_unbalanced), T(variable_scope_pop_unbalanced), T(variable_scope_bad_arguments),
          T(variable_scope_enter_from_another_graph), T(get_variable_negative_dims),
          T(get_variable_size_overflow), T(get_variable_shape_mismatch_on_reuse),
          T(get_variable_dtype_mismatch_on_reuse), T(get_variable_reuse_true_of_missing_variable),
          T(get_variable_exists_without_reuse), T(get_variable_bad_initializer_combinations),
          T(placeholder_bad_arguments), T(matmul_inner_dimension_mismatch), T(matmul_bad_rank_and_dtype),
          T(binary_op_mismatched_dtypes), T(binary_op_incompatible_broadcast), T(reshape_bad_targets),
          T(axis_out_of_range), T(empty_lists_and_bad_values), T(gather_bad_indices_dtype),
          T(inputs_from_another_graph), T(assign_to_non_variable_and_wrong_shape), T(collection_bad_regex),
          T(explicit_op_name_duplicates_an_existing_op), T(explicit_op_name_that_is_empty),
          T(session_new_on_null_or_failed_graph), T(session_run_null_and_inconsistent_arguments),
          T(session_missing_feed), T(session_feed_wrong_shape_or_rank),
          T(session_feed_wrong_dtype_null_or_twice), T(session_feed_non_placeholders),
          T(session_fetch_feed_target_from_another_graph), T(session_closed),
          T(session_uninitialized_variable), T(session_set_variable_bad_values),
          T(session_graph_error_after_creation), T(session_check_numerics_nan_and_inf),
          T(session_empty_batch_matmul), T(slice_sizes_that_would_overflow), T(gather_index_out_of_range),
          T(gather_empty_indices), T(sparse_softmax_label_out_of_range),
          T(sparse_softmax_bad_labels_at_build_and_run), T(sparse_softmax_empty_batch),
          T(dynamic_rnn_without_dtype_or_initial_state), T(dynamic_rnn_bad_inputs),
          T(rnn_cell_bad_sizes_and_options), T(custom_cell_too_many_states),
          T(one_cell_called_in_two_scopes), T(rnn_drivers_bad_cell_lists),
          T(rnn_sequence_length_beyond_T_or_negative), T(rnn_zero_length_sequences), T(rnn_empty_batch),
          T(rnn_empty_batch_without_lengths), T(rnn_zero_time_steps),
          T(optimizer_minimize_with_no_variables), T(optimizer_bad_options),
          T(gradients_of_an_integer_tensor), T(gradients_bad_arguments),
          T(checkpoint_save_into_unwritable_location), T(checkpoint_save_uninitialized_or_closed),
          T(checkpoint_restore_from_missing_prefix), T(checkpoint_restore_mismatched_shape),
          T(checkpoint_corrupt_state_file), T(checkpoint_corrupt_index),
          T(checkpoint_reader_and_writer_bad_arguments), T(init_from_checkpoint_bad_assignment_map),
          T(summary_writer_bad_arguments))
