/*
 * cells.c - RNN cells as TensorFlow 1.x's tf.nn.rnn_cell: construction, lazy scope binding on
 * the first call (variable_scope(None, default_name=<base name>)), variables with TensorFlow's
 * names, shapes and initializers, and the ops of one step (spec section 4).
 */
#include "rnn/rnn_impl.h"

recur_tensor *rc_reshape_like(recur_graph *g, recur_tensor *x, recur_tensor *like);
recur_tensor *rc_zeros_batch(recur_graph *g, recur_dtype dt, recur_shape s, int dim, recur_tensor *like, int like_dim);
recur_tensor *rc_const_scalar(recur_graph *g, recur_dtype dt, double v, const char *name);
recur_tensor *rc_dropout(recur_graph *g, recur_tensor *x, recur_tensor *keep, int64_t seed);
recur_tensor *rc_dropout_mask(recur_graph *g, recur_shape shape, recur_dtype dt, recur_tensor *keep, int64_t seed);

/* ================================================================== construction */

static void free_cell(void *p)
{
    recur_cell *c = p;
    rc_free(c->cells);
    rc_free(c);
}

static recur_cell *new_cell(recur_graph *g, rc_cell_kind kind, const char *base, const char *cls,
                            const recur_cell_opts *o)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    recur_cell *c = rc_calloc(1, sizeof *c);
    if (!c) return rc_goom(g);
    if (!rc_graph_own(g, c, free_cell)) return rc_goom(g);
    c->kind = kind;
    c->g = g;
    c->forget_bias = 1.0f;
    c->state_tuple = true;
    if (o) {
        if (o->name && !rc_valid_scope_name(o->name, true))
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "'%s' is not a valid cell name", o->name);
        if (o->activation < RECUR_ACT_TANH || o->activation > RECUR_ACT_IDENTITY)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "Unknown activation %d", (int)o->activation);
        if (o->dtype && !rc_dtype_is_float(o->dtype))
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "RNN cell only supports floating point inputs, but saw dtype: %s",
                           recur_dtype_name(o->dtype));
        c->act = o->activation;
        if (o->forget_bias_set) c->forget_bias = o->forget_bias;
        c->state_tuple = !o->state_not_tuple;
        c->init = o->initializer;
        c->bias_init = o->bias_initializer;
        c->reuse = o->reuse;
        c->dtype = o->dtype;
        if (o->name) base = o->name;
    }
    c->base_name = rc_intern(g, base);
    c->class_name = cls;
    return c->base_name ? c : NULL;
}

static bool check_units(recur_graph *g, int64_t units)
{
    if (units > 0 && units <= (1 << 24)) return true;
    rc_gerr(g, RECUR_INVALID_ARGUMENT, "num_units must be in [1, %d], got %lld", 1 << 24, (long long)units);
    return false;
}

recur_cell *recur_basic_rnn_cell(recur_graph *g, int64_t num_units, const recur_cell_opts *opts)
{
    if (g && !check_units(g, num_units)) return NULL;
    recur_cell *c = new_cell(g, RC_CELL_BASIC_RNN, "basic_rnn_cell", "BasicRNNCell", opts);
    if (c) c->units = num_units;
    return c;
}

recur_cell *recur_basic_lstm_cell(recur_graph *g, int64_t num_units, const recur_cell_opts *opts)
{
    if (g && !check_units(g, num_units)) return NULL;
    recur_cell *c = new_cell(g, RC_CELL_BASIC_LSTM, "basic_lstm_cell", "BasicLSTMCell", opts);
    if (c) c->units = num_units;
    return c;
}

recur_cell *recur_lstm_cell(recur_graph *g, int64_t num_units, const recur_lstm_opts *opts)
{
    if (g && !check_units(g, num_units)) return NULL;
    recur_lstm_opts o = opts ? *opts : (recur_lstm_opts){0};
    if (g && (o.num_proj < 0 || o.num_proj > (1 << 24) || o.cell_clip < 0 || o.proj_clip < 0))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "LSTMCell: num_proj, cell_clip and proj_clip must be >= 0");
    recur_cell *c = new_cell(g, RC_CELL_LSTM, "lstm_cell", "LSTMCell", &o.base);
    if (!c) return NULL;
    c->units = num_units;
    c->num_proj = o.num_proj;
    c->peepholes = o.use_peepholes;
    c->cell_clip = o.cell_clip;
    c->proj_clip = o.num_proj > 0 ? o.proj_clip : 0;
    return c;
}

recur_cell *recur_gru_cell(recur_graph *g, int64_t num_units, const recur_cell_opts *opts)
{
    if (g && !check_units(g, num_units)) return NULL;
    recur_cell *c = new_cell(g, RC_CELL_GRU, "gru_cell", "GRUCell", opts);
    if (c) c->units = num_units;
    return c;
}

recur_cell *recur_gru_cell_v2(recur_graph *g, int64_t num_units, const recur_cell_opts *opts)
{
    if (g && !check_units(g, num_units)) return NULL;
    recur_cell *c = new_cell(g, RC_CELL_GRU_V2, "gru_cell_v2", "GRUCellV2", opts);
    if (c) c->units = num_units;
    return c;
}

static bool owned_cell(recur_graph *g, const recur_cell *c)
{
    if (!c) return false;
    if (c->g != g) {
        rc_gerr(g, RECUR_INVALID_ARGUMENT, "The cell belongs to another graph");
        return false;
    }
    return true;
}

recur_cell *recur_multi_rnn_cell(recur_graph *g, recur_cell *const *cells, int n, const recur_cell_opts *opts)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    if (n < 1 || !cells) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "Must specify at least one cell for MultiRNNCell.");
    if (n > 64) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "MultiRNNCell: at most 64 cells");
    for (int i = 0; i < n; i++)
        if (!owned_cell(g, cells[i])) return NULL;
    recur_cell *c = new_cell(g, RC_CELL_MULTI, "multi_rnn_cell", "MultiRNNCell", opts);
    if (!c) return NULL;
    c->cells = rc_malloc((size_t)n * sizeof *c->cells);
    if (!c->cells) return rc_goom(g);
    memcpy(c->cells, cells, (size_t)n * sizeof *cells);
    c->ncells = n;
    if (!c->state_tuple) {
        for (int i = 0; i < n; i++)
            if (rc_cell_state_count(cells[i]) != 1)
                return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                               "Some cells return tuples of states, but the flag state_is_tuple is not set. "
                               "State sizes are: cell %d has %d state tensors", i, rc_cell_state_count(cells[i]));
    }
    int total = 0;
    for (int i = 0; i < n; i++) total += rc_cell_state_count(cells[i]);
    if (c->state_tuple && total > RECUR_MAX_STATE)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "MultiRNNCell: %d state tensors exceed RECUR_MAX_STATE (%d)", total,
                       RECUR_MAX_STATE);
    return c;
}

static bool valid_keep(recur_graph *g, const char *name, double v)
{
    if (v >= 0 && v <= 1) return true;
    rc_gerr(g, RECUR_INVALID_ARGUMENT, "Parameter %s must be between 0 and 1: %g", name, v);
    return false;
}

recur_cell *recur_dropout_wrapper(recur_graph *g, recur_cell *cell, const recur_dropout_opts *opts)
{
    if (!rc_gready(g, NULL, 0) || !owned_cell(g, cell)) return NULL;
    recur_dropout_opts o = opts ? *opts : (recur_dropout_opts){0};
    if (!valid_keep(g, "input_keep_prob", o.input_keep_prob) || !valid_keep(g, "output_keep_prob", o.output_keep_prob) ||
        !valid_keep(g, "state_keep_prob", o.state_keep_prob))
        return NULL;
    /* 0 means "not given" (1.0) */
    if (o.input_keep_prob == 0) o.input_keep_prob = 1;
    if (o.output_keep_prob == 0) o.output_keep_prob = 1;
    if (o.state_keep_prob == 0) o.state_keep_prob = 1;
    if (o.variational_recurrent) {
        if (!o.dtype) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "When variational_recurrent=True, dtype must be provided");
        if (o.input_keep_prob < 1 && o.input_size <= 0)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                           "When variational_recurrent=True and input_keep_prob < 1.0 or is unknown, input_size must be provided");
    }
    if (o.training && (o.training->op->g != g || o.training->dtype != RECUR_F32 || o.training->shape.rank > 0))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "DropoutWrapper: `training` must be a float32 scalar of this graph");
    recur_cell *c = new_cell(g, RC_CELL_DROPOUT, cell->base_name, cell->class_name, NULL);
    if (!c) return NULL;
    c->cells = rc_malloc(sizeof *c->cells);
    if (!c->cells) return rc_goom(g);
    c->cells[0] = cell;
    c->ncells = 1;
    c->dropout = o;
    return c;
}

recur_cell *recur_residual_wrapper(recur_graph *g, recur_cell *cell)
{
    if (!rc_gready(g, NULL, 0) || !owned_cell(g, cell)) return NULL;
    recur_cell *c = new_cell(g, RC_CELL_RESIDUAL, cell->base_name, cell->class_name, NULL);
    if (!c) return NULL;
    c->cells = rc_malloc(sizeof *c->cells);
    if (!c->cells) return rc_goom(g);
    c->cells[0] = cell;
    c->ncells = 1;
    return c;
}

recur_cell *recur_custom_cell(recur_graph *g, const recur_cell_def *def)
{
    if (!rc_gready(g, NULL, 0)) return NULL;
    if (!def || !def->build || !def->name)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                       "The argument 'cell' is not an RNNCell: a custom cell needs a name and a build function.");
    /* Checked now, as a built-in cell's opts->name is, rather than at the first call. */
    if (!rc_valid_scope_name(def->name, true))
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "'%s' is not a valid cell name", def->name);
    if (def->num_state < 1 || def->num_state > RECUR_MAX_STATE || def->output_size < 1)
        return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                       "Custom cell %s: num_state must be in [1, %d] and output_size >= 1", def->name, RECUR_MAX_STATE);
    for (int i = 0; i < def->num_state; i++)
        if (def->state_size[i] < 1)
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "Custom cell %s: state_size[%d] must be >= 1", def->name, i);
    recur_cell *c = new_cell(g, RC_CELL_CUSTOM, def->name, "CustomCell", NULL);
    if (c) c->def = *def;
    return c;
}

/* ================================================================== structure */

int rc_cell_state_count(const recur_cell *c)
{
    switch (c->kind) {
    case RC_CELL_BASIC_LSTM:
    case RC_CELL_LSTM: return c->state_tuple ? 2 : 1;
    case RC_CELL_MULTI: {
        if (!c->state_tuple) return 1;
        int n = 0;
        for (int i = 0; i < c->ncells; i++) n += rc_cell_state_count(c->cells[i]);
        return n;
    }
    case RC_CELL_DROPOUT:
    case RC_CELL_RESIDUAL: return rc_cell_state_count(c->cells[0]);
    case RC_CELL_CUSTOM: return c->def.num_state;
    default: return 1;
    }
}

int64_t rc_cell_state_size_at(const recur_cell *c, int i)
{
    int64_t h = c->units, m = c->num_proj > 0 ? c->num_proj : c->units;
    switch (c->kind) {
    case RC_CELL_BASIC_LSTM:
    case RC_CELL_LSTM: return c->state_tuple ? (i == 0 ? h : m) : h + m;
    case RC_CELL_MULTI:
        if (!c->state_tuple) {
            int64_t s = 0;
            for (int k = 0; k < c->ncells; k++) s += rc_cell_state_size_at(c->cells[k], 0);
            return s;
        }
        for (int k = 0; k < c->ncells; k++) {
            int n = rc_cell_state_count(c->cells[k]);
            if (i < n) return rc_cell_state_size_at(c->cells[k], i);
            i -= n;
        }
        return -1;
    case RC_CELL_DROPOUT:
    case RC_CELL_RESIDUAL: return rc_cell_state_size_at(c->cells[0], i);
    case RC_CELL_CUSTOM: return c->def.state_size[i];
    default: return h;
    }
}

int64_t rc_cell_out_size(const recur_cell *c)
{
    switch (c->kind) {
    case RC_CELL_LSTM: return c->num_proj > 0 ? c->num_proj : c->units;
    case RC_CELL_MULTI: return rc_cell_out_size(c->cells[c->ncells - 1]);
    case RC_CELL_DROPOUT:
    case RC_CELL_RESIDUAL: return rc_cell_out_size(c->cells[0]);
    case RC_CELL_CUSTOM: return c->def.output_size;
    default: return c->units;
    }
}

int recur_cell_num_state(const recur_cell *cell) { return cell ? rc_cell_state_count(cell) : 0; }
int64_t recur_cell_state_size(const recur_cell *cell, int i)
{
    return cell && i >= 0 && i < rc_cell_state_count(cell) ? rc_cell_state_size_at(cell, i) : -1;
}
int64_t recur_cell_output_size(const recur_cell *cell) { return cell ? rc_cell_out_size(cell) : -1; }
const char *recur_cell_scope_name(const recur_cell *cell)
{
    if (!cell) return NULL;
    if (cell->kind == RC_CELL_DROPOUT || cell->kind == RC_CELL_RESIDUAL) return recur_cell_scope_name(cell->cells[0]);
    return cell->scope ? cell->scope->name : NULL;
}

/* ================================================================== step math */

static recur_tensor *activate(recur_graph *g, recur_activation a, recur_tensor *x)
{
    switch (a) {
    case RECUR_ACT_SIGMOID: return recur_sigmoid(g, x);
    case RECUR_ACT_RELU: return recur_relu(g, x);
    case RECUR_ACT_IDENTITY: return x;
    default: return recur_tanh(g, x);
    }
}

static recur_tensor *concat2(recur_graph *g, recur_tensor *a, recur_tensor *b)
{
    recur_tensor *in[2] = {a, b};
    return recur_concat(g, in, 2, 1);
}

static recur_tensor *linear(recur_graph *g, recur_tensor *x, recur_tensor *h, recur_tensor *k, recur_tensor *b)
{
    return recur_bias_add(g, recur_matmul(g, concat2(g, x, h), k, false, false), b);
}

static recur_tensor *var(recur_graph *g, recur_cell *c, const char *name, recur_shape shape, recur_initializer init)
{
    recur_tensor *v = recur_get_variable(g, name, shape, &(recur_variable_opts){.dtype = c->dtype, .initializer = init});
    if (v && c->nvars < (int)RC_ARRAY_LEN(c->vars)) c->vars[c->nvars++] = v;
    return v;
}

/* Create the cell's variables (TensorFlow's build()) in the current (bound) variable scope. */
static bool build_vars(recur_graph *g, recur_cell *c, int64_t d)
{
    int64_t h = c->units, p = c->num_proj > 0 ? c->num_proj : h;
    recur_initializer none = {0};
    c->nvars = 0;
    switch (c->kind) {
    case RC_CELL_BASIC_RNN:
        var(g, c, "kernel", RECUR_SHAPE(d + h, h), none);
        var(g, c, "bias", RECUR_SHAPE(h), recur_zeros_initializer());
        break;
    case RC_CELL_BASIC_LSTM:
        var(g, c, "kernel", RECUR_SHAPE(d + h, 4 * h), none);
        var(g, c, "bias", RECUR_SHAPE(4 * h), recur_zeros_initializer());
        break;
    case RC_CELL_LSTM:
        var(g, c, "kernel", RECUR_SHAPE(d + p, 4 * h), c->init);
        var(g, c, "bias", RECUR_SHAPE(4 * h), recur_zeros_initializer());
        if (c->peepholes) {
            var(g, c, "w_f_diag", RECUR_SHAPE(h), c->init);
            var(g, c, "w_i_diag", RECUR_SHAPE(h), c->init);
            var(g, c, "w_o_diag", RECUR_SHAPE(h), c->init);
        }
        if (c->num_proj > 0) var(g, c, "projection/kernel", RECUR_SHAPE(h, p), c->init);
        break;
    case RC_CELL_GRU:
        var(g, c, "gates/kernel", RECUR_SHAPE(d + h, 2 * h), c->init);
        var(g, c, "gates/bias", RECUR_SHAPE(2 * h), c->bias_init.kind ? c->bias_init : recur_constant_initializer(1.0));
        var(g, c, "candidate/kernel", RECUR_SHAPE(d + h, h), c->init);
        var(g, c, "candidate/bias", RECUR_SHAPE(h), c->bias_init.kind ? c->bias_init : recur_zeros_initializer());
        break;
    case RC_CELL_GRU_V2:
        var(g, c, "kernel", RECUR_SHAPE(d, 3 * h), c->init);
        var(g, c, "recurrent_kernel", RECUR_SHAPE(h, 3 * h), recur_orthogonal_initializer(1.0, 0));
        var(g, c, "bias", RECUR_SHAPE(2, 3 * h), c->bias_init.kind ? c->bias_init : recur_zeros_initializer());
        break;
    default:
        break;
    }
    return recur_graph_ok(g);
}

static recur_tensor *split_n(recur_graph *g, recur_tensor *x, int n, recur_tensor **out)
{
    return recur_split(g, x, n, 1, out) ? out[0] : NULL;
}

/* The ops of one step of a built-in layer cell. */
static recur_tensor *builtin_step(recur_graph *g, recur_cell *c, recur_tensor *x, recur_tensor *const *st,
                                  recur_tensor **ns)
{
    recur_tensor **v = c->vars;
    int64_t h = c->units, p = c->num_proj > 0 ? c->num_proj : h;
    switch (c->kind) {
    case RC_CELL_BASIC_RNN: {
        recur_tensor *o = activate(g, c->act, linear(g, x, st[0], v[0], v[1]));
        ns[0] = o;
        return o;
    }
    case RC_CELL_BASIC_LSTM:
    case RC_CELL_LSTM: {
        recur_tensor *cp, *hp;
        if (c->state_tuple) {
            cp = st[0];
            hp = st[1];
        } else {
            cp = recur_slice(g, st[0], (int64_t[]){0, 0}, (int64_t[]){-1, h});
            hp = recur_slice(g, st[0], (int64_t[]){0, h}, (int64_t[]){-1, p});
        }
        recur_tensor *gate[4];
        if (!split_n(g, linear(g, x, hp, v[0], v[1]), 4, gate)) return NULL;
        recur_tensor *i = gate[0], *j = gate[1], *f = gate[2], *o = gate[3];
        recur_tensor *fb = rc_const_scalar(g, f->dtype, c->forget_bias, NULL);
        bool peep = c->kind == RC_CELL_LSTM && c->peepholes;
        recur_tensor *fg = recur_add(g, f, fb), *ig = i;
        if (peep) {
            fg = recur_add(g, fg, recur_mul(g, v[2], cp));
            ig = recur_add(g, i, recur_mul(g, v[3], cp));
        }
        recur_tensor *nc = recur_add(g, recur_mul(g, cp, recur_sigmoid(g, fg)),
                                     recur_mul(g, recur_sigmoid(g, ig), activate(g, c->act, j)));
        if (c->kind == RC_CELL_LSTM && c->cell_clip > 0) nc = recur_clip(g, nc, -c->cell_clip, c->cell_clip);
        recur_tensor *og = peep ? recur_add(g, o, recur_mul(g, v[4], nc)) : o;
        recur_tensor *m = recur_mul(g, activate(g, c->act, nc), recur_sigmoid(g, og));
        if (c->kind == RC_CELL_LSTM && c->num_proj > 0) {
            m = recur_matmul(g, m, v[c->peepholes ? 5 : 2], false, false);
            if (c->proj_clip > 0) m = recur_clip(g, m, -c->proj_clip, c->proj_clip);
        }
        if (c->state_tuple) {
            ns[0] = nc;
            ns[1] = m;
        } else {
            ns[0] = concat2(g, nc, m);
        }
        return m;
    }
    case RC_CELL_GRU: {
        recur_tensor *hp = st[0], *ru[2];
        if (!split_n(g, recur_sigmoid(g, linear(g, x, hp, v[0], v[1])), 2, ru)) return NULL;
        recur_tensor *r = ru[0], *u = ru[1];
        recur_tensor *cand = activate(g, c->act, linear(g, x, recur_mul(g, r, hp), v[2], v[3]));
        recur_tensor *one = rc_const_scalar(g, u->dtype, 1.0, NULL);
        recur_tensor *nh = recur_add(g, recur_mul(g, u, hp), recur_mul(g, recur_sub(g, one, u), cand));
        ns[0] = nh;
        return nh;
    }
    case RC_CELL_GRU_V2: {
        recur_tensor *hp = st[0], *b[2], *xs[3], *hs[3];
        if (!recur_unstack(g, v[2], 0, b, 2)) return NULL;
        recur_tensor *mx = recur_bias_add(g, recur_matmul(g, x, v[0], false, false), b[0]);
        recur_tensor *mh = recur_bias_add(g, recur_matmul(g, hp, v[1], false, false), b[1]);
        if (!split_n(g, mx, 3, xs) || !split_n(g, mh, 3, hs)) return NULL;
        recur_tensor *z = recur_sigmoid(g, recur_add(g, xs[0], hs[0]));
        recur_tensor *r = recur_sigmoid(g, recur_add(g, xs[1], hs[1]));
        recur_tensor *hh = activate(g, c->act, recur_add(g, xs[2], recur_mul(g, r, hs[2])));
        recur_tensor *one = rc_const_scalar(g, z->dtype, 1.0, NULL);
        recur_tensor *nh = recur_add(g, recur_mul(g, z, hp), recur_mul(g, recur_sub(g, one, z), hh));
        ns[0] = nh;
        return nh;
    }
    default:
        return NULL;
    }
    (void)p;
}

/* ================================================================== calling */

static recur_tensor *multi_step(recur_graph *g, recur_cell *c, recur_tensor *x, recur_tensor *const *st,
                                recur_tensor **ns)
{
    recur_tensor *cur = x;
    int off = 0;
    int64_t col = 0;
    recur_tensor *parts[64];
    for (int i = 0; i < c->ncells; i++) {
        recur_cell *ch = c->cells[i];
        int n = rc_cell_state_count(ch);
        char name[32];
        snprintf(name, sizeof name, "cell_%d", i);
        if (!recur_variable_scope_push(g, name, RECUR_REUSE_INHERIT)) return NULL;
        recur_tensor *sub[RECUR_MAX_STATE], *nsub[RECUR_MAX_STATE];
        if (c->state_tuple) {
            for (int k = 0; k < n; k++) sub[k] = st[off + k];
        } else {
            int64_t sz = rc_cell_state_size_at(ch, 0);
            sub[0] = recur_slice(g, st[0], (int64_t[]){0, col}, (int64_t[]){-1, sz});
            col += sz;
        }
        cur = rc_cell_call(g, ch, cur, sub, nsub);
        recur_variable_scope_pop(g);
        if (!cur) return NULL;
        if (c->state_tuple)
            for (int k = 0; k < n; k++) ns[off + k] = nsub[k];
        else
            parts[i] = nsub[0];
        off += n;
    }
    if (!c->state_tuple) ns[0] = recur_concat(g, parts, c->ncells, 1);
    return cur;
}

static recur_tensor *custom_step(recur_graph *g, recur_cell *c, recur_tensor *x, recur_tensor *const *st,
                                 recur_tensor **ns)
{
    recur_tensor *out = NULL;
    for (int i = 0; i < c->def.num_state; i++) ns[i] = NULL;
    if (!c->def.build(g, c->def.user, x, st, &out, ns)) {
        if (recur_graph_ok(g)) rc_gerr(g, RECUR_INVALID_ARGUMENT, "Custom cell %s: build failed", c->def.name);
        return NULL;
    }
    if (!recur_graph_ok(g)) return NULL;
    if (!out) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "Custom cell %s: build returned no output", c->def.name);
    for (int i = 0; i < c->def.num_state; i++) {
        if (!ns[i]) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "Custom cell %s: build returned no new state %d", c->def.name, i);
        recur_shape s = ns[i]->shape;
        if (s.rank != 2 || (s.dims[1] >= 0 && s.dims[1] != c->def.state_size[i])) {
            char b[64];
            return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                           "Custom cell %s: new state %d has shape %s, expected (?, %lld)", c->def.name, i,
                           recur_shape_str(s, b, sizeof b), (long long)c->def.state_size[i]);
        }
    }
    recur_shape os = out->shape;
    if (os.rank != 2 || (os.dims[1] >= 0 && os.dims[1] != c->def.output_size)) {
        char b[64];
        return rc_gerr(g, RECUR_INVALID_ARGUMENT, "Custom cell %s: output has shape %s, expected (?, %lld)", c->def.name,
                       recur_shape_str(os, b, sizeof b), (long long)c->def.output_size);
    }
    return out;
}

/* TensorFlow's Layer.__call__: bind the scope on the first call (variable_scope(None,
 * default_name=base) or, with reuse, variable_scope(base)), then re-enter it (reuse once built)
 * with its original name scope, build variables once, and add the step's ops. */
static recur_tensor *layer_call(recur_graph *g, recur_cell *c, recur_tensor *x, recur_tensor *const *st,
                                recur_tensor **ns)
{
    size_t depth = rc_scope_depth(g);
    if (!c->scope) {
        recur_scope *s = c->reuse ? recur_variable_scope_push(g, c->base_name, RECUR_REUSE_INHERIT)
                                  : recur_variable_scope_push_opts(g, NULL, &(recur_scope_opts){.default_name = c->base_name});
        if (!s) return NULL;
        recur_variable_scope_pop(g);
        c->scope = s;
    }
    recur_scope_opts o = {.reuse = (c->built || c->reuse) ? RECUR_REUSE : RECUR_REUSE_INHERIT, .no_name_scope = true};
    if (!recur_variable_scope_enter(g, c->scope, &o)) return NULL;
    recur_tensor *out = NULL;
    const char *ons = c->scope->original_name_scope;
    if (ons[0] && !recur_name_scope_push(g, ons)) goto done;
    if (!c->built) {
        if (c->kind != RC_CELL_MULTI && c->kind != RC_CELL_CUSTOM) {
            if (!rc_dtype_is_float(x->dtype)) {
                rc_gerr(g, RECUR_INVALID_ARGUMENT, "RNN cell only supports floating point inputs, but saw dtype: %s",
                        recur_dtype_name(x->dtype));
                goto done;
            }
            if (x->shape.rank != 2 || x->shape.dims[1] < 0) {
                char b[64];
                rc_gerr(g, RECUR_INVALID_ARGUMENT, "Expected inputs.shape[-1] to be known, saw shape: %s",
                        recur_shape_str(x->shape, b, sizeof b));
                goto done;
            }
            if (!c->dtype) c->dtype = x->dtype;
            c->input_depth = x->shape.dims[1];
            if (!build_vars(g, c, c->input_depth)) goto done;
        }
    } else if (c->input_depth && x->shape.rank == 2 && x->shape.dims[1] >= 0 && x->shape.dims[1] != c->input_depth) {
        char a[64], b[64];
        rc_gerr(g, RECUR_INVALID_ARGUMENT,
                "Cell %s was built for input depth %lld but is called with inputs of shape %s (its variable %s "
                "has shape %s). Use a new cell (in its own variable scope) for inputs of another depth.",
                c->scope->name, (long long)c->input_depth, recur_shape_str(x->shape, a, sizeof a),
                recur_variable_name(c->vars[0]), recur_shape_str(recur_tensor_shape(c->vars[0]), b, sizeof b));
        goto done;
    }
    if (c->kind == RC_CELL_MULTI)
        out = multi_step(g, c, x, st, ns);
    else if (c->kind == RC_CELL_CUSTOM)
        out = custom_step(g, c, x, st, ns);
    else
        out = builtin_step(g, c, x, st, ns);
    if (out) c->built = true;
done:
    if (!out) {
        rc_scope_unwind(g, depth);
        return NULL;
    }
    rc_scope_unwind(g, depth);
    return recur_graph_ok(g) ? out : NULL;
}

/* DropoutWrapper: dropout on inputs, the cell, dropout on new state (not LSTM c) and output. */
static recur_tensor *dropout_call(recur_graph *g, recur_cell *c, recur_tensor *x, recur_tensor *const *st,
                                  recur_tensor **ns)
{
    recur_dropout_opts *o = &c->dropout;
    recur_cell *inner = c->cells[0];
    int n = rc_cell_state_count(inner);
    /* keep = 1 - training * (1 - keep_prob) so feeding training = 0 disables dropout.
     * Variational masks are drawn once per run outside the loop body, so their keep tensors
     * are made there too. */
    rc_frame *fr = g->frame;
    bool var_new = o->variational_recurrent && !c->var_masks[0] && !c->var_masks[1] && !c->var_masks[2];
    if (var_new) g->frame = fr ? fr->parent : NULL;
    recur_tensor *keep[3] = {0};
    double kp[3] = {o->input_keep_prob, o->state_keep_prob, o->output_keep_prob};
    for (int i = 0; i < 3; i++) {
        if (kp[i] >= 1) continue;
        if (o->variational_recurrent && !var_new) {
            keep[i] = c->var_masks[i]; /* only used as a flag below */
            continue;
        }
        recur_tensor *k = rc_const_scalar(g, x->dtype, kp[i], NULL);
        if (o->training)
            k = recur_sub(g, rc_const_scalar(g, x->dtype, 1, NULL),
                          recur_mul(g, recur_cast(g, o->training, x->dtype), rc_const_scalar(g, x->dtype, 1 - kp[i], NULL)));
        keep[i] = k;
    }
    int64_t seed = o->seed;
    if (var_new) {
        int64_t sizes[3] = {o->input_size, rc_cell_state_size_at(inner, n - 1), rc_cell_out_size(inner)};
        for (int i = 0; i < 3; i++)
            if (keep[i]) c->var_masks[i] = rc_dropout_mask(g, RECUR_SHAPE(1, sizes[i]), x->dtype, keep[i], seed ? seed + i : 0);
    }
    g->frame = fr;
    if (!recur_graph_ok(g)) return NULL;
    if (keep[0]) x = o->variational_recurrent ? recur_mul(g, x, c->var_masks[0]) : rc_dropout(g, x, keep[0], seed ? seed : 0);
    recur_tensor *out = rc_cell_call(g, inner, x, st, ns);
    if (!out) return NULL;
    if (keep[1]) {
        bool lstm = (inner->kind == RC_CELL_BASIC_LSTM || inner->kind == RC_CELL_LSTM) && inner->state_tuple;
        for (int i = 0; i < n; i++) {
            if (lstm && i == 0) continue; /* the default filter never drops LSTM's c */
            ns[i] = o->variational_recurrent && rc_cell_state_size_at(inner, i) == rc_cell_state_size_at(inner, n - 1)
                        ? recur_mul(g, ns[i], c->var_masks[1])
                        : rc_dropout(g, ns[i], keep[1], seed ? seed + 1 : 0);
        }
    }
    if (keep[2]) out = o->variational_recurrent ? recur_mul(g, out, c->var_masks[2]) : rc_dropout(g, out, keep[2], seed ? seed + 2 : 0);
    return recur_graph_ok(g) ? out : NULL;
}

static recur_tensor *residual_call(recur_graph *g, recur_cell *c, recur_tensor *x, recur_tensor *const *st,
                                   recur_tensor **ns)
{
    recur_tensor *out = rc_cell_call(g, c->cells[0], x, st, ns);
    if (!out) return NULL;
    if (x->shape.rank == 2 && out->shape.rank == 2 && x->shape.dims[1] >= 0 && out->shape.dims[1] >= 0 &&
        x->shape.dims[1] != out->shape.dims[1]) {
        char a[64], b[64];
        return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                       "ResidualWrapper: input shape %s and output shape %s must be compatible (input depth must "
                       "equal the cell's output size)",
                       recur_shape_str(x->shape, a, sizeof a), recur_shape_str(out->shape, b, sizeof b));
    }
    return recur_add(g, x, out);
}

recur_tensor *rc_cell_call(recur_graph *g, recur_cell *cell, recur_tensor *input, recur_tensor *const *state,
                           recur_tensor **new_state)
{
    int n = rc_cell_state_count(cell);
    for (int i = 0; i < n; i++) {
        if (!state[i]) return NULL;
        int64_t want = rc_cell_state_size_at(cell, i);
        recur_shape s = state[i]->shape;
        if (s.rank >= 0 && (s.rank != 2 || (s.dims[1] >= 0 && s.dims[1] != want))) {
            char b[64];
            return rc_gerr(g, RECUR_INVALID_ARGUMENT, "State %d of cell %s has shape %s, expected (?, %lld)", i,
                           cell->base_name, recur_shape_str(s, b, sizeof b), (long long)want);
        }
        if (input->shape.rank == 2 && s.rank == 2 && input->shape.dims[0] >= 0 && s.dims[0] >= 0 &&
            input->shape.dims[0] != s.dims[0])
            return rc_gerr(g, RECUR_INVALID_ARGUMENT,
                           "Batch size mismatch: the input has batch size %lld but state %d has batch size %lld",
                           (long long)input->shape.dims[0], i, (long long)s.dims[0]);
    }
    switch (cell->kind) {
    case RC_CELL_DROPOUT: return dropout_call(g, cell, input, state, new_state);
    case RC_CELL_RESIDUAL: return residual_call(g, cell, input, state, new_state);
    default: return layer_call(g, cell, input, state, new_state);
    }
}

recur_tensor *recur_cell_call_at(recur_graph *g, const char *file, int line, const char *func, recur_cell *cell,
                                 recur_tensor *input, recur_tensor *const *state, recur_tensor **new_state)
{
    if (!rc_gready(g, &input, 1) || !owned_cell(g, cell)) return NULL;
    if (!new_state) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "recur_cell_call: new_state is NULL");
    int n = rc_cell_state_count(cell);
    recur_tensor *zs[RECUR_MAX_STATE];
    if (!state) {
        if (!rc_cell_zero_state_like(g, cell, input, 0, input->dtype, zs)) return NULL;
        state = zs;
    } else if (!rc_gready(g, state, n)) {
        return NULL;
    }
    bool set = rc_site_push(g, file, line, func);
    recur_tensor *out = rc_cell_call(g, cell, input, state, new_state);
    rc_site_pop(g, set);
    return out;
}

/* ================================================================== zero state */

static const char *zero_scope(const recur_cell *c)
{
    while (c->kind == RC_CELL_DROPOUT || c->kind == RC_CELL_RESIDUAL) c = c->cells[0];
    return c->class_name;
}

bool rc_cell_zero_state_like(recur_graph *g, recur_cell *cell, recur_tensor *like, int dim, recur_dtype dt,
                             recur_tensor **out)
{
    char ns[64];
    snprintf(ns, sizeof ns, "%sZeroState", zero_scope(cell));
    if (!recur_name_scope_push(g, ns)) return false;
    int n = rc_cell_state_count(cell);
    for (int i = 0; i < n; i++)
        out[i] = rc_zeros_batch(g, dt, RECUR_SHAPE(-1, rc_cell_state_size_at(cell, i)), 0, like, dim);
    recur_name_scope_pop(g);
    return recur_graph_ok(g);
}

bool recur_cell_zero_state(recur_graph *g, recur_cell *cell, int64_t batch_size, recur_tensor *batch_like,
                           recur_dtype dt, recur_tensor **out)
{
    if (!rc_gready(g, NULL, 0) || !owned_cell(g, cell)) return false;
    if (!out) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "zero_state: out is NULL"), false;
    if (!rc_dtype_is_float(dt)) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "zero_state: dtype must be floating"), false;
    if (batch_like) {
        if (!rc_gready(g, &batch_like, 1)) return false;
        return rc_cell_zero_state_like(g, cell, batch_like, 0, dt, out);
    }
    if (batch_size < 0) return rc_gerr(g, RECUR_INVALID_ARGUMENT, "zero_state: batch_size must be >= 0"), false;
    char ns[64];
    snprintf(ns, sizeof ns, "%sZeroState", zero_scope(cell));
    if (!recur_name_scope_push(g, ns)) return false;
    int n = rc_cell_state_count(cell);
    for (int i = 0; i < n; i++) out[i] = recur_fill(g, dt, RECUR_SHAPE(batch_size, rc_cell_state_size_at(cell, i)), 0);
    recur_name_scope_pop(g);
    return recur_graph_ok(g);
}
