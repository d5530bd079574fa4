/*
 * scoped_layers.c - two LSTM layers, each in its own variable scope with AUTO_REUSE: the C form
 * of the TensorFlow 1.x program
 *
 *     x = tf.placeholder(tf.float32, [None, 20, 10])
 *     with tf.variable_scope("layer1", reuse=tf.AUTO_REUSE):
 *         o1, _ = tf.nn.dynamic_rnn(tf.nn.rnn_cell.BasicLSTMCell(50), x, dtype=tf.float32)
 *     with tf.variable_scope("layer2", reuse=tf.AUTO_REUSE):
 *         o2, _ = tf.nn.dynamic_rnn(tf.nn.rnn_cell.BasicLSTMCell(25), o1, dtype=tf.float32)
 *
 * Prints every variable's name and shape and the output shape, then runs a batch of 32.
 */
#include <recur.h>

#include <stdio.h>
#include <stdlib.h>

/* One LSTM layer in variable scope `scope`. */
static recur_tensor *lstm_layer(recur_graph *g, recur_tensor *x, int units, const char *scope)
{
    recur_variable_scope_push(g, scope, RECUR_AUTO_REUSE);
    recur_cell *cell = recur_basic_lstm_cell(g, units, NULL);
    recur_tensor *out = recur_dynamic_rnn(g, cell, x, &(recur_rnn_opts){.dtype = RECUR_F32}).outputs;
    recur_variable_scope_pop(g);
    return out;
}

int main(void)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 20, 10), "input");
    recur_tensor *y = lstm_layer(g, lstm_layer(g, x, 50, "layer1"), 25, "layer2");
    if (!recur_graph_ok(g)) {
        fprintf(stderr, "%s\n", recur_graph_message(g));
        return 1;
    }
    recur_tensor *vars[16];
    long n = recur_get_collection(g, RECUR_GLOBAL_VARIABLES, NULL, vars, 16);
    char shape[64];
    for (long i = 0; i < n; i++)
        printf("variable %s shape %s\n", recur_tensor_name(vars[i]),
               recur_shape_str(recur_tensor_shape(vars[i]), shape, sizeof shape));
    printf("static output shape %s\n", recur_shape_str(recur_tensor_shape(y), shape, sizeof shape));

    recur_status *st = recur_status_new();
    recur_session *s = recur_session_new(g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_array *batch = recur_array_new(RECUR_F32, RECUR_SHAPE(32, 20, 10), st), *out = NULL;
    for (int64_t i = 0; i < recur_array_size(batch); i++) recur_array_f32(batch)[i] = (float)((i % 17) - 8) / 8.0f;
    recur_session_run(s, (recur_feed[]){{x, batch}}, 1, &y, &out, 1, NULL, 0, st);
    if (!recur_status_ok(st)) {
        fprintf(stderr, "%s\n", recur_status_message(st));
        return 1;
    }
    printf("output of a batch of 32: shape %s, first value %.6f\n",
           recur_shape_str(recur_array_shape(out), shape, sizeof shape), recur_array_f32(out)[0]);
    recur_array_free(out);
    recur_array_free(batch);
    recur_session_free(s);
    recur_status_free(st);
    recur_graph_free(g);
    return 0;
}
