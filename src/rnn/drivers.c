/*
 * drivers.c - the RNN functions of tf.compat.v1.nn: dynamic_rnn, bidirectional_dynamic_rnn,
 * stack_bidirectional_dynamic_rnn (tf.contrib), static_rnn and static_bidirectional_rnn, with
 * TensorFlow's scopes, argument checks and sequence_length semantics (spec section 5).
 */
#include "rnn/rnn_impl.h"

recur_tensor *rc_reshape_like(recur_graph *g, recur_tensor *x, recur_tensor *like);

static const recur_rnn_out no_out;
static const recur_birnn_out no_biout;

static bool cell_ok(recur_graph *g, const recur_cell *c, const char *what)
{
    if (!c) {
        rc_gerr(g, RECUR_INVALID_ARGUMENT, "The argument '%s' (None) is not an RNNCell: 'output_size' property is "
                                           "missing, 'state_size' property is missing, either 'zero_state' or "
                                           "'get_initial_state' method is required, is not callable.",
                what);
        return false;
    }
    if (c->g != g) {
        rc_gerr(g, RECUR_INVALID_ARGUMENT, "The argument '%s' is a cell of another graph", what);
        return false;
    }
    return true;
}

/* sequence_length: rank-1 check, cast to int32, named "sequence_length". */
static recur_tensor *prep_len(recur_graph *g, recur_tensor *len, int64_t batch)
{
    if (!len) return NULL;
    char b[64];
    if (len->shape.rank >= 0 && len->shape.rank != 1)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "sequence_length must be a vector of length batch_size, but saw shape: %s",
                       recur_shape_str(len->shape, b, sizeof b));
    if (!rc_dtype_is_int(len->dtype))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "sequence_length must be int32 or int64, got %s", recur_dtype_name(len->dtype));
    if (len->shape.rank == 1 && len->shape.dims[0] >= 0 && batch >= 0 && len->shape.dims[0] != batch)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                       "Expected shape for Tensor %s is [%lld] but saw shape: [%lld] (sequence_length must be a vector "
                       "of length batch_size)",
                       len->name, (long long)batch, (long long)len->shape.dims[0]);
    return recur_identity(g, recur_cast(g, len, RECUR_I32), "sequence_length");
}

/* Initial state: the given tensors (checked) or zeros. */
static bool prep_state(recur_graph *g, recur_cell *cell, recur_tensor *const *given, recur_dtype dt, recur_tensor *like,
                       int batch_dim, recur_tensor **out)
{
    int n = rc_cell_state_count(cell);
    int64_t B = like->shape.rank > batch_dim ? like->shape.dims[batch_dim] : -1;
    if (given) {
        if (!rc_gready(g, given, n)) return false;
        for (int i = 0; i < n; i++) {
            recur_shape s = given[i]->shape;
            int64_t want = rc_cell_state_size_at(cell, i);
            char b[64];
            if (s.rank >= 0 && (s.rank != 2 || (s.dims[1] >= 0 && s.dims[1] != want)))
                return rc_gerr(g, RECUR_INVALID_ARGUMENT, "initial_state[%d] (%s) has shape %s but the cell's state %d has size %lld",
                               i, given[i]->name, recur_shape_str(s, b, sizeof b), i, (long long)want), false;
            if (s.rank == 2 && s.dims[0] >= 0 && B >= 0 && s.dims[0] != B)
                return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                               "Batch size mismatch: initial_state[%d] (%s) has batch size %lld but the inputs have batch "
                               "size %lld",
                               i, given[i]->name, (long long)s.dims[0], (long long)B), false;
            out[i] = given[i];
        }
        return true;
    }
    if (!dt) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "If there is no initial_state, you must give a dtype."), false;
    if (!rc_dtype_is_float(dt))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "dtype must be floating, got %s", recur_dtype_name(dt)), false;
    return rc_cell_zero_state_like(g, cell, like, batch_dim, dt, out);
}

static recur_rnn_out dynamic_rnn(recur_graph *g, recur_cell *cell, recur_tensor *inputs, const recur_rnn_opts *opts)
{
    recur_rnn_out r = no_out;
    if (!rc_gready(g, &inputs, 1) || !cell_ok(g, cell, "cell")) return r;
    recur_rnn_opts o = opts ? *opts : (recur_rnn_opts){0};
    char b[64];
    if (inputs->shape.rank != 3) {
        rc_gerr(g, RECUR_INVALID_ARGUMENT,
                "Expected input tensor %s to have rank 3 (%s), got shape %s", inputs->name,
                o.time_major ? "[time, batch, depth]" : "[batch, time, depth]", recur_shape_str(inputs->shape, b, sizeof b));
        return r;
    }
    if (inputs->shape.dims[2] < 0) {
        rc_gerr(g, RECUR_INVALID_ARGUMENT, "Input size (depth of inputs) must be accessible via shape inference, but saw value None.");
        return r;
    }
    if (!rc_dtype_is_float(inputs->dtype)) {
        rc_gerr(g, RECUR_INVALID_ARGUMENT, "RNN cell only supports floating point inputs, but saw dtype: %s",
                recur_dtype_name(inputs->dtype));
        return r;
    }
    size_t depth = rc_scope_depth(g);
    recur_scope *sc = o.scope_obj ? recur_variable_scope_enter(g, o.scope_obj, NULL)
                                  : recur_variable_scope_push(g, o.scope ? o.scope : "rnn", RECUR_REUSE_INHERIT);
    if (!sc) return r;
    /* The loop reads and writes the caller's layout: TensorFlow transposes a batch-major input
     * to time-major and the outputs back; the loop's row indexing does the same without the two
     * copies (and their gradients). */
    int bdim = o.time_major ? 1 : 0;
    recur_tensor *x = inputs;
    recur_tensor *len = o.sequence_length ? prep_len(g, o.sequence_length, x->shape.dims[bdim]) : NULL;
    recur_tensor *init[RECUR_MAX_STATE];
    int n = rc_cell_state_count(cell);
    recur_op *op = NULL;
    if ((!o.sequence_length || len) && prep_state(g, cell, o.initial_state, o.dtype, x, bdim, init))
        op = rc_rnn_loop(g, cell, x, len, init, n, !o.time_major);
    if (op) {
        r.outputs = &op->outputs[0];
        r.num_state = n;
        for (int i = 0; i < n; i++) r.state[i] = &op->outputs[1 + i];
    }
    rc_scope_unwind(g, depth);
    if (!r.outputs || !recur_graph_ok(g)) return no_out;
    return r;
}

static recur_tensor *reverse_time(recur_graph *g, recur_tensor *x, recur_tensor *len, bool time_major)
{
    int seq = time_major ? 0 : 1;
    return len ? recur_reverse_sequence(g, x, len, seq, 1 - seq) : recur_reverse(g, x, seq);
}

static recur_birnn_out bidirectional_dynamic_rnn(recur_graph *g, recur_cell *cell_fw, recur_cell *cell_bw,
                                                 recur_tensor *inputs, const recur_birnn_opts *opts)
{
    recur_birnn_out r = no_biout;
    if (!rc_gready(g, &inputs, 1) || !cell_ok(g, cell_fw, "cell_fw") || !cell_ok(g, cell_bw, "cell_bw")) return r;
    recur_birnn_opts o = opts ? *opts : (recur_birnn_opts){0};
    size_t depth = rc_scope_depth(g);
    if (!recur_variable_scope_push(g, o.scope ? o.scope : "bidirectional_rnn", RECUR_REUSE_INHERIT)) return r;
    recur_rnn_opts ro = {.sequence_length = o.sequence_length, .dtype = o.dtype, .time_major = o.time_major};
    recur_rnn_out fw = no_out, bw = no_out;
    recur_scope *fs = recur_variable_scope_push(g, "fw", RECUR_REUSE_INHERIT);
    if (fs) {
        ro.initial_state = o.initial_state_fw;
        ro.scope_obj = fs;
        fw = dynamic_rnn(g, cell_fw, inputs, &ro);
        recur_variable_scope_pop(g);
    }
    recur_scope *bs = fw.outputs ? recur_variable_scope_push(g, "bw", RECUR_REUSE_INHERIT) : NULL;
    if (bs) {
        recur_tensor *len = o.sequence_length ? recur_cast(g, o.sequence_length, RECUR_I32) : NULL;
        recur_tensor *rev = reverse_time(g, inputs, len, o.time_major);
        ro.initial_state = o.initial_state_bw;
        ro.scope_obj = bs;
        bw = rev ? dynamic_rnn(g, cell_bw, rev, &ro) : no_out;
        recur_variable_scope_pop(g);
        if (bw.outputs) {
            r.outputs_fw = fw.outputs;
            r.outputs_bw = reverse_time(g, bw.outputs, len, o.time_major);
            r.num_state_fw = fw.num_state;
            r.num_state_bw = bw.num_state;
            memcpy(r.state_fw, fw.state, sizeof r.state_fw);
            memcpy(r.state_bw, bw.state, sizeof r.state_bw);
        }
    }
    rc_scope_unwind(g, depth);
    if (!r.outputs_bw || !recur_graph_ok(g)) return no_biout;
    return r;
}

static recur_birnn_out stack_bidirectional_dynamic_rnn(recur_graph *g, recur_cell *const *cells_fw,
                                                       recur_cell *const *cells_bw, int n, recur_tensor *inputs,
                                                       const recur_birnn_opts *opts)
{
    recur_birnn_out r = no_biout;
    if (!rc_gready(g, &inputs, 1)) return r;
    if (!cells_fw || n < 1) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "Must specify at least one fw cell for BidirectionalRNN."), r;
    if (!cells_bw) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "Must specify at least one bw cell for BidirectionalRNN."), r;
    for (int i = 0; i < n; i++)
        if (!cell_ok(g, cells_fw[i], "cells_fw") || !cell_ok(g, cells_bw[i], "cells_bw")) return r;
    recur_birnn_opts o = opts ? *opts : (recur_birnn_opts){0};
    size_t depth = rc_scope_depth(g);
    if (!recur_variable_scope_push(g, o.scope ? o.scope : "stack_bidirectional_rnn", RECUR_REUSE_INHERIT)) return r;
    recur_tensor *prev = inputs;
    int sf = 0, sb = 0;
    for (int i = 0; i < n && prev; i++) {
        char name[32];
        snprintf(name, sizeof name, "cell_%d", i);
        if (!recur_variable_scope_push(g, name, RECUR_REUSE_INHERIT)) break;
        recur_birnn_opts lo = {.sequence_length = o.sequence_length, .dtype = o.dtype, .time_major = o.time_major};
        if (o.initial_state_fw) lo.initial_state_fw = o.initial_state_fw + sf;
        if (o.initial_state_bw) lo.initial_state_bw = o.initial_state_bw + sb;
        recur_birnn_out l = bidirectional_dynamic_rnn(g, cells_fw[i], cells_bw[i], prev, &lo);
        recur_variable_scope_pop(g);
        if (!l.outputs_fw) {
            prev = NULL;
            break;
        }
        if (sf + l.num_state_fw > RECUR_MAX_STATE || sb + l.num_state_bw > RECUR_MAX_STATE) {
            rc_gerr(g, RECUR_INVALID_ARGUMENT, "stack_bidirectional_dynamic_rnn: more than %d state tensors", RECUR_MAX_STATE);
            prev = NULL;
            break;
        }
        memcpy(r.state_fw + sf, l.state_fw, (size_t)l.num_state_fw * sizeof *l.state_fw);
        memcpy(r.state_bw + sb, l.state_bw, (size_t)l.num_state_bw * sizeof *l.state_bw);
        sf += l.num_state_fw;
        sb += l.num_state_bw;
        prev = recur_concat(g, (recur_tensor *[]){l.outputs_fw, l.outputs_bw}, 2, 2);
    }
    rc_scope_unwind(g, depth);
    if (!prev || !recur_graph_ok(g)) return no_biout;
    r.outputs_fw = prev;
    r.num_state_fw = sf;
    r.num_state_bw = sb;
    return r;
}

/* ================================================================== static */

static recur_rnn_out static_rnn(recur_graph *g, recur_cell *cell, recur_tensor *const *inputs, int T, recur_tensor **outputs,
                                const recur_rnn_opts *opts)
{
    recur_rnn_out r = no_out;
    if (!rc_gready(g, NULL, 0) || !cell_ok(g, cell, "cell")) return r;
    if (!inputs) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "inputs must be a sequence"), r;
    if (T < 1) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "inputs must not be empty"), r;
    if (!outputs) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "static_rnn: outputs must have room for %d tensors", T), r;
    if (!rc_gready(g, inputs, T)) return r;
    for (int t = 0; t < T; t++) {
        recur_shape s = inputs[t]->shape;
        if (s.rank != 2) {
            char b[64];
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "Expected input %d (%s) to have rank 2, got shape %s", t,
                           inputs[t]->name, recur_shape_str(s, b, sizeof b)), r;
        }
        if (s.dims[1] < 0)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                           "Input size (dimension 1 of inputs) must be accessible via shape inference, but saw value None."), r;
    }
    recur_rnn_opts o = opts ? *opts : (recur_rnn_opts){0};
    size_t depth = rc_scope_depth(g);
    recur_scope *sc = o.scope_obj ? recur_variable_scope_enter(g, o.scope_obj, NULL)
                                  : recur_variable_scope_push(g, o.scope ? o.scope : "rnn", RECUR_REUSE_INHERIT);
    if (!sc) return r;
    int n = rc_cell_state_count(cell);
    recur_tensor *state[RECUR_MAX_STATE], *ns[RECUR_MAX_STATE];
    int64_t fixed_batch = -1;
    for (int t = 0; t < T; t++)
        if (inputs[t]->shape.dims[0] >= 0) fixed_batch = inputs[t]->shape.dims[0];
    recur_tensor *len = o.sequence_length ? prep_len(g, o.sequence_length, fixed_batch) : NULL;
    bool ok = (!o.sequence_length || len);
    if (ok && !o.initial_state && !o.dtype) {
        rc_gerr(g, RECUR_INVALID_ARGUMENT, "If no initial_state is provided, dtype must be specified");
        ok = false;
    }
    ok = ok && prep_state(g, cell, o.initial_state, o.dtype, inputs[0], 0, state);
    for (int t = 0; ok && t < T; t++) {
        if (t > 0) recur_scope_reuse_variables(sc);
        recur_tensor *out = rc_cell_call(g, cell, inputs[t], state, ns);
        if (!out) {
            ok = false;
            break;
        }
        if (len) {
            /* rows with t >= len: zero output, state copied through */
            /* rows with t >= len: zero output, state copied through. Static shapes as
             * TensorFlow's _rnn_step leaves them: outputs [fixed batch, out], states keep the
             * previous state's shape. */
            recur_tensor *active = recur_expand_dims(g, recur_less(g, recur_scalar_i32(g, t), len), 1);
            out = recur_reshape(g, recur_select(g, active, out, recur_zeros_like(g, out)),
                                RECUR_SHAPE(fixed_batch, rc_cell_out_size(cell)));
            for (int i = 0; i < n; i++) ns[i] = rc_reshape_like(g, recur_select(g, active, ns[i], state[i]), state[i]);
        }
        outputs[t] = out;
        for (int i = 0; i < n; i++) state[i] = ns[i];
        ok = recur_graph_ok(g);
    }
    rc_scope_unwind(g, depth);
    if (!ok || !recur_graph_ok(g)) return no_out;
    r.outputs = outputs[T - 1];
    r.num_state = n;
    for (int i = 0; i < n; i++) r.state[i] = state[i];
    return r;
}

/* Reverse a list of [B, D] steps, per row up to its length (stack, reverse_sequence, unstack). */
static bool reverse_list(recur_graph *g, recur_tensor *const *in, int T, recur_tensor *len, recur_tensor **out)
{
    if (!len) {
        for (int t = 0; t < T; t++) out[t] = in[T - 1 - t];
        return true;
    }
    recur_tensor *st = recur_stack(g, in, T, 0);
    recur_tensor *rev = recur_reverse_sequence(g, st, len, 0, 1);
    return rev && recur_unstack(g, rev, 0, out, T);
}

static recur_birnn_out static_bidirectional_rnn(recur_graph *g, recur_cell *cell_fw, recur_cell *cell_bw,
                                                recur_tensor *const *inputs, int T, recur_tensor **outputs,
                                                const recur_birnn_opts *opts)
{
    recur_birnn_out r = no_biout;
    if (!rc_gready(g, NULL, 0) || !cell_ok(g, cell_fw, "cell_fw") || !cell_ok(g, cell_bw, "cell_bw")) return r;
    if (!inputs) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "inputs must be a list"), r;
    if (T < 1) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "inputs must not be empty"), r;
    if (!outputs) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "static_bidirectional_rnn: outputs is NULL"), r;
    recur_birnn_opts o = opts ? *opts : (recur_birnn_opts){0};
    recur_tensor **fw_out = rc_calloc((size_t)T, sizeof *fw_out), **bw_out = rc_calloc((size_t)T, sizeof *bw_out),
                 **tmp = rc_calloc((size_t)T, sizeof *tmp), **rin = rc_calloc((size_t)T, sizeof *rin);
    size_t depth = rc_scope_depth(g);
    bool ok = fw_out && bw_out && tmp && rin;
    if (!ok) rc_goom(g);
    recur_rnn_out fw = no_out, bw = no_out;
    ok = ok && recur_variable_scope_push(g, o.scope ? o.scope : "bidirectional_rnn", RECUR_REUSE_INHERIT);
    recur_rnn_opts ro = {.sequence_length = o.sequence_length, .dtype = o.dtype};
    recur_scope *fs = ok ? recur_variable_scope_push(g, "fw", RECUR_REUSE_INHERIT) : NULL;
    if (fs) {
        ro.initial_state = o.initial_state_fw;
        ro.scope_obj = fs;
        fw = static_rnn(g, cell_fw, inputs, T, fw_out, &ro);
        recur_variable_scope_pop(g);
    }
    recur_tensor *len = fw.outputs && o.sequence_length ? recur_cast(g, o.sequence_length, RECUR_I32) : NULL;
    recur_scope *bs = fw.outputs ? recur_variable_scope_push(g, "bw", RECUR_REUSE_INHERIT) : NULL;
    if (bs) {
        if (reverse_list(g, inputs, T, len, rin)) {
            ro.initial_state = o.initial_state_bw;
            ro.scope_obj = bs;
            bw = static_rnn(g, cell_bw, rin, T, tmp, &ro);
        }
        recur_variable_scope_pop(g);
    }
    if (bw.outputs && reverse_list(g, tmp, T, len, bw_out)) {
        for (int t = 0; t < T; t++) outputs[t] = recur_concat(g, (recur_tensor *[]){fw_out[t], bw_out[t]}, 2, 1);
        r.outputs_fw = outputs[T - 1];
        r.num_state_fw = fw.num_state;
        r.num_state_bw = bw.num_state;
        memcpy(r.state_fw, fw.state, sizeof r.state_fw);
        memcpy(r.state_bw, bw.state, sizeof r.state_bw);
    }
    rc_scope_unwind(g, depth);
    rc_free(fw_out);
    rc_free(bw_out);
    rc_free(tmp);
    rc_free(rin);
    if (!r.outputs_fw || !recur_graph_ok(g)) return no_biout;
    return r;
}

/* ================================================================== public entry points */
/* Each records the caller's site (for "Originally defined at") around the builder. */

recur_rnn_out recur_dynamic_rnn_at(recur_graph *g, const char *file, int line, const char *func, recur_cell *cell,
                                   recur_tensor *inputs, const recur_rnn_opts *opts)
{
    bool set = rc_site_push(g, file, line, func);
    recur_rnn_out r = dynamic_rnn(g, cell, inputs, opts);
    rc_site_pop(g, set);
    return r;
}

recur_birnn_out recur_bidirectional_dynamic_rnn_at(recur_graph *g, const char *file, int line, const char *func,
                                                   recur_cell *cell_fw, recur_cell *cell_bw, recur_tensor *inputs,
                                                   const recur_birnn_opts *opts)
{
    bool set = rc_site_push(g, file, line, func);
    recur_birnn_out r = bidirectional_dynamic_rnn(g, cell_fw, cell_bw, inputs, opts);
    rc_site_pop(g, set);
    return r;
}

recur_birnn_out recur_stack_bidirectional_dynamic_rnn_at(recur_graph *g, const char *file, int line, const char *func,
                                                         recur_cell *const *cells_fw, recur_cell *const *cells_bw, int n,
                                                         recur_tensor *inputs, const recur_birnn_opts *opts)
{
    bool set = rc_site_push(g, file, line, func);
    recur_birnn_out r = stack_bidirectional_dynamic_rnn(g, cells_fw, cells_bw, n, inputs, opts);
    rc_site_pop(g, set);
    return r;
}

recur_rnn_out recur_static_rnn_at(recur_graph *g, const char *file, int line, const char *func, recur_cell *cell,
                                  recur_tensor *const *inputs, int T, recur_tensor **outputs, const recur_rnn_opts *opts)
{
    bool set = rc_site_push(g, file, line, func);
    recur_rnn_out r = static_rnn(g, cell, inputs, T, outputs, opts);
    rc_site_pop(g, set);
    return r;
}

recur_birnn_out recur_static_bidirectional_rnn_at(recur_graph *g, const char *file, int line, const char *func,
                                                  recur_cell *cell_fw, recur_cell *cell_bw, recur_tensor *const *inputs,
                                                  int T, recur_tensor **outputs, const recur_birnn_opts *opts)
{
    bool set = rc_site_push(g, file, line, func);
    recur_birnn_out r = static_bidirectional_rnn(g, cell_fw, cell_bw, inputs, T, outputs, opts);
    rc_site_pop(g, set);
    return r;
}
