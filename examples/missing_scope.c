/*
 * missing_scope.c - the classic mistake: two dynamic_rnn layers built without variable scopes.
 * Both land in variable scope "rnn", so the second layer's cell tries to create
 * rnn/basic_lstm_cell/kernel again. recur reports TensorFlow's error, where the variable was
 * first made, and the fix; then the program applies the fix and runs.
 */
#include <recur.h>

#include <stdio.h>

static recur_tensor *layer(recur_graph *g, recur_tensor *x, int units)
{
    recur_cell *cell = recur_basic_lstm_cell(g, units, NULL);
    return recur_dynamic_rnn(g, cell, x, &(recur_rnn_opts){.dtype = RECUR_F32}).outputs;
}

int main(void)
{
    recur_graph *g = recur_graph_new();
    recur_tensor *x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 20, 10), "input");
    recur_tensor *y = layer(g, layer(g, x, 50), 25);
    if (y || recur_graph_ok(g)) {
        fprintf(stderr, "expected an error\n");
        return 1;
    }
    printf("error: %s\n\n", recur_graph_message(g));
    recur_graph_free(g);

    /* The fix: give each layer its own variable scope. */
    g = recur_graph_new();
    x = recur_placeholder(g, RECUR_F32, RECUR_SHAPE(-1, 20, 10), "input");
    recur_variable_scope_push(g, "layer1", RECUR_AUTO_REUSE);
    recur_tensor *h = layer(g, x, 50);
    recur_variable_scope_pop(g);
    recur_variable_scope_push(g, "layer2", RECUR_AUTO_REUSE);
    y = layer(g, h, 25);
    recur_variable_scope_pop(g);
    if (!recur_graph_ok(g)) {
        fprintf(stderr, "%s\n", recur_graph_message(g));
        return 1;
    }
    char shape[64];
    recur_tensor *vars[8];
    long n = recur_get_collection(g, RECUR_GLOBAL_VARIABLES, NULL, vars, 8);
    printf("fixed with variable scopes layer1 and layer2:\n");
    for (long i = 0; i < n; i++)
        printf("variable %s shape %s\n", recur_tensor_name(vars[i]), recur_shape_str(recur_tensor_shape(vars[i]), shape, sizeof shape));
    printf("static output shape %s\n", recur_shape_str(recur_tensor_shape(y), shape, sizeof shape));

    recur_status *st = recur_status_new();
    recur_session *s = recur_session_new(g, NULL, st);
    recur_session_run_target(s, recur_global_variables_initializer(g), st);
    recur_array *batch = recur_array_new(RECUR_F32, RECUR_SHAPE(4, 20, 10), st), *out = NULL;
    recur_session_run(s, (recur_feed[]){{x, batch}}, 1, &y, &out, 1, NULL, 0, st);
    if (!recur_status_ok(st)) {
        fprintf(stderr, "%s\n", recur_status_message(st));
        return 1;
    }
    printf("ran a batch of 4: output shape %s\n", recur_shape_str(recur_array_shape(out), shape, sizeof shape));
    recur_array_free(out);
    recur_array_free(batch);
    recur_session_free(s);
    recur_status_free(st);
    recur_graph_free(g);
    return 0;
}
