/*
 * bidirectional.c - a bidirectional LSTM layer on variable-length input, the C form of
 *
 *     with tf.variable_scope("bidirectional_layer", reuse=tf.AUTO_REUSE):
 *         (of, ob), _ = tf.nn.bidirectional_dynamic_rnn(
 *             BasicLSTMCell(50), BasicLSTMCell(50), x, sequence_length=lengths, dtype=tf.float32)
 *     out = tf.concat([of, ob], 2)
 *
 * Prints the variables, the output shape, and checks that outputs past each length are zero.
 */
#include <recur.h>

#include <math.h>
#include <stdio.h>

int main(void)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 20, 10), "input");
    recur_tensor *lengths = recur_placeholder(g, RECUR_I32, RECUR_SHAPE(-1), "lengths");
    recur_variable_scope_push(g, "bidirectional_layer", RECUR_AUTO_REUSE);
    recur_cell *fw = recur_basic_lstm_cell(g, 50, NULL), *bw = recur_basic_lstm_cell(g, 50, NULL);
    recur_birnn_out r = recur_bidirectional_dynamic_rnn(g, fw, bw, x,
                                                        &(recur_birnn_opts){.sequence_length = lengths, .dtype = RECUR_F32});
    recur_variable_scope_pop(g);
    recur_tensor *out = recur_concat(g, (recur_tensor *[]){r.outputs_fw, r.outputs_bw}, 2, 2);
    if (!recur_graph_ok(g)) {
        fprintf(stderr, "%s\n", recur_graph_message(g));
        return 1;
    }
    char shape[64];
    recur_tensor *vars[8];
    long n = recur_get_collection(g, RECUR_GLOBAL_VARIABLES, NULL, vars, 8);
    for (long i = 0; i < n; i++)
        printf("variable %s shape %s\n", recur_tensor_name(vars[i]), recur_shape_str(recur_tensor_shape(vars[i]), shape, sizeof shape));
    printf("static output shape %s\n", recur_shape_str(recur_tensor_shape(out), shape, sizeof shape));

    recur_status *st = recur_status_new();
    recur_session *s = recur_session_new(g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    int32_t lens[3] = {20, 7, 1};
    recur_array *batch = recur_array_new(RECUR_F32, RECUR_SHAPE(3, 20, 10), st);
    recur_array *lv = recur_array_from(RECUR_I32, RECUR_SHAPE(3), lens, st), *y = NULL;
    for (int64_t i = 0; i < recur_array_size(batch); i++) recur_array_f32(batch)[i] = sinf((float)i);
    recur_session_run(s, (recur_feed[]){{x, batch}, {lengths, lv}}, 2, &out, &y, 1, NULL, 0, st);
    if (!recur_status_ok(st)) {
        fprintf(stderr, "%s\n", recur_status_message(st));
        return 1;
    }
    /* rows past their length are zero in both directions */
    int nonzero_past_end = 0;
    for (int b = 0; b < 3; b++)
        for (int t = lens[b]; t < 20; t++)
            for (int k = 0; k < 100; k++) nonzero_past_end += recur_array_f32(y)[(b * 20 + t) * 100 + k] != 0;
    printf("ran lengths {20, 7, 1}: output shape %s, non-zero values past the lengths: %d\n",
           recur_shape_str(recur_array_shape(y), shape, sizeof shape), nonzero_past_end);
    recur_array_free(y);
    recur_array_free(lv);
    recur_array_free(batch);
    recur_session_free(s);
    recur_status_free(st);
    recur_graph_free(g);
    return nonzero_past_end ? 1 : 0;
}
