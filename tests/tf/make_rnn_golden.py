#!/usr/bin/env python3
"""Run the RNN catalogue (tests/tf/rnn_programs.txt) with real TensorFlow (tf.compat.v1 graph
mode, reference variables) and write one golden tensor file per program,
tests/golden/rnn/<name>.golden, in the format of tests/golden.h.

Usage, from the repository root:

    python3 tests/tf/make_rnn_golden.py [--programs FILE] [--out-dir DIR] [--only NAME...] [--check]

--check compares the freshly generated text of every program with the existing golden files
instead of writing them (exit status 1 when any differs or is missing, or when DIR holds a
golden file of a program that is no longer in the catalogue).

The DSL and the golden layout are described in tests/tf/README.md and at the top of
rnn_programs.txt. Each statement maps onto one recur.h call (or a short fixed sequence of them)
so that a C interpreter of the same catalogue builds the same graph. Every golden file repeats
its program in `meta program`, so the C side needs nothing but the golden file.
"""

import argparse
import os
import sys
import zlib

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
# Plain Eigen kernels: the oneDNN ones may change float rounding between machines.
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"


def _import_tensorflow():
    """Import TensorFlow with its start-up log lines (written straight to fd 2 by native code
    before TF_CPP_MIN_LOG_LEVEL applies) kept off the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    tensorflow.get_logger().setLevel("ERROR")  # no deprecation notices
    return tensorflow


import warnings  # noqa: E402

import numpy as np  # noqa: E402

tf = _import_tensorflow()
tf1 = tf.compat.v1
tf1.disable_eager_execution()
tf1.disable_resource_variables()
# TF 1.x shape printing ("(?, 5)" rather than "(None, 5)").
tf1.disable_v2_tensorshape()
warnings.filterwarnings("ignore")  # the legacy cells warn that they are deprecated

rnn_cell = tf1.nn.rnn_cell

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_PROGRAMS = os.path.join(HERE, "rnn_programs.txt")
DEFAULT_OUT_DIR = os.path.join(ROOT, "tests", "golden", "rnn")

# Sizes are kept small so that each golden file is a few KB.
MAX_B, MAX_T, MAX_D, MAX_UNITS = 4, 7, 5, 6

ACTIVATIONS = {"tanh": tf.tanh, "relu": tf.nn.relu, "sigmoid": tf.sigmoid}

# Value ranges of the data drawn for every program (numpy RandomState, seeded per program).
INPUT_RANGE = 1.0      # input ~ U[-1, 1)
VAR_RANGE = 0.5        # every variable ~ U[-0.5, 0.5) (replaces TensorFlow's initial values)
STATE_RANGE = 1.0      # initial_state=random ~ U[-1, 1)
WEIGHT_RANGE = 1.0     # loss weights ~ U[-1, 1)


class CatalogueError(Exception):
    """A malformed catalogue (not a TensorFlow error)."""


# --------------------------------------------------------------------------------------------
# Tokenizer: the rules of tests/tf/make_golden.py (blank-separated tokens, "..." quotes one
# positional token, # starts a comment, an unquoted token with '=' is an option key=value),
# except that this catalogue never needs quotes, so they are rejected, and ';' is rejected
# because the golden files join a program's statements with " ; ".
# --------------------------------------------------------------------------------------------
def tokenize(line, lineno):
    toks = []
    for tok in line.split("#", 1)[0].split():
        if '"' in tok or ";" in tok:
            raise CatalogueError("line %d: quotes and ';' are not allowed: %r" % (lineno, tok))
        toks.append(tok)
    return toks


class Stmt:
    def __init__(self, lineno, op, args, opts, text):
        self.lineno, self.op, self.args, self.opts, self.text = lineno, op, args, opts, text


CELL_KINDS = ("basic_rnn", "basic_lstm", "lstm", "gru", "gru_v2", "multi", "dropout", "residual")
CELL_OPTS = {
    "basic_rnn": ("units", "activation", "name"),
    "basic_lstm": ("units", "forget_bias", "activation", "state_is_tuple", "name"),
    "lstm": ("units", "forget_bias", "activation", "state_is_tuple", "peepholes", "cell_clip",
             "num_proj", "proj_clip", "name"),
    "gru": ("units", "activation", "name"),
    "gru_v2": ("units", "activation", "name"),
    "multi": ("state_is_tuple",),
    "dropout": ("input_keep", "output_keep", "state_keep"),
    "residual": (),
}
RUN_KINDS = {
    # kind: (number of cell arguments, allowed options)
    "dynamic": (1, ("scope", "scope_obj", "initial_state", "input", "as")),
    "bidirectional": (2, ("scope", "initial_state", "input", "as")),
    "stack_bidirectional": (2, ("scope", "initial_state", "input", "as")),
    "static": (1, ("scope", "scope_obj", "initial_state", "input", "as")),
    "static_bidirectional": (2, ("scope", "initial_state", "input", "as")),
}

# statement -> (min positional, max positional (None: any), allowed options (None: per kind))
GRAMMAR = {
    "program": (1, 1, ()),
    "input": (3, 3, ("time_major", "unknown_time", "unknown_batch")),
    "seqlen": (1, None, ()),
    "cell": (2, None, None),
    "scope": (1, 1, ("reuse", "as")),
    "end_scope": (0, 0, ()),
    "run": (2, 3, None),
}


def parse(path):
    programs = []  # (name, [Stmt])
    seen = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            toks = tokenize(line, lineno)
            if not toks:
                continue
            op, rest = toks[0], toks[1:]
            if op not in GRAMMAR:
                raise CatalogueError("line %d: unknown statement %r" % (lineno, op))
            args, opts = [], {}
            for text in rest:
                if "=" in text:
                    k, v = text.split("=", 1)
                    if k in opts:
                        raise CatalogueError("line %d: option %s given twice" % (lineno, k))
                    opts[k] = v
                else:
                    if opts:
                        raise CatalogueError("line %d: positional after options" % lineno)
                    args.append(text)
            lo, hi, allowed = GRAMMAR[op]
            if len(args) < lo or (hi is not None and len(args) > hi):
                raise CatalogueError("line %d: %s takes %d..%s arguments" %
                                     (lineno, op, lo, "any" if hi is None else hi))
            if op == "cell":
                kind = args[1]
                if kind not in CELL_KINDS:
                    raise CatalogueError("line %d: unknown cell kind %s" % (lineno, kind))
                allowed = CELL_OPTS[kind]
            elif op == "run":
                if args[0] not in RUN_KINDS:
                    raise CatalogueError("line %d: unknown run kind %s" % (lineno, args[0]))
                ncells, allowed = RUN_KINDS[args[0]]
                if len(args) != 1 + ncells:
                    raise CatalogueError("line %d: run %s takes %d cell arguments" %
                                         (lineno, args[0], ncells))
            for k in opts:
                if k not in allowed:
                    raise CatalogueError("line %d: %s has no option %s" % (lineno, op, k))
            st = Stmt(lineno, op, args, opts, " ".join(toks))
            if op == "program":
                if args[0] in seen:
                    raise CatalogueError("line %d: duplicate program %s" % (lineno, args[0]))
                if not all(c.isalnum() or c in "_-." for c in args[0]):
                    raise CatalogueError("line %d: bad program name %s" % (lineno, args[0]))
                seen.add(args[0])
                programs.append((args[0], [st]))
            else:
                if not programs:
                    raise CatalogueError("line %d: statement before the first program" % lineno)
                programs[-1][1].append(st)
    return programs


# --------------------------------------------------------------------------------------------
# Option helpers
# --------------------------------------------------------------------------------------------
def opt_int(st, key, default=None, lo=None, hi=None):
    if key not in st.opts:
        if default is None:
            raise CatalogueError("line %d: %s needs %s=" % (st.lineno, st.op, key))
        return default
    try:
        v = int(st.opts[key])
    except ValueError:
        raise CatalogueError("line %d: %s=%s is not an integer" % (st.lineno, key, st.opts[key]))
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise CatalogueError("line %d: %s=%d out of range" % (st.lineno, key, v))
    return v


def opt_float(st, key):
    if key not in st.opts:
        return None
    try:
        return float(st.opts[key])
    except ValueError:
        raise CatalogueError("line %d: %s=%s is not a number" % (st.lineno, key, st.opts[key]))


def opt_flag(st, key, default):
    if key not in st.opts:
        return default
    if st.opts[key] not in ("0", "1"):
        raise CatalogueError("line %d: %s must be 0 or 1" % (st.lineno, key))
    return st.opts[key] == "1"


def opt_activation(st):
    if "activation" not in st.opts:
        return None
    a = st.opts["activation"]
    if a not in ACTIVATIONS:
        raise CatalogueError("line %d: unknown activation %s" % (st.lineno, a))
    return a


# --------------------------------------------------------------------------------------------
# GRU v2 (Keras GRUCell with reset_after=True; the PyTorch / cuDNN form).
#
# TF 1.x has no rnn_cell for it, so this is a LayerRNNCell written here: same variables as
# Keras' GRUCell (kernel [D, 3H], recurrent_kernel [H, 3H], bias [2, 3H]: row 0 input bias,
# row 1 recurrent bias; gate order z, r, h along the 3H axis) and the same arithmetic as
# Keras' implementation=2 code path, bound to the scope "gru_cell_v2" (snake case of the
# class name) like any other TF 1.x cell, which is how recur names it. check_gru_v2() proves it
# equal to tf.keras.layers.GRUCell(reset_after=True) before any golden is written.
#   z  = sigmoid(x Wz + bz_in + h Uz + bz_rec)
#   r  = sigmoid(x Wr + br_in + h Ur + br_rec)
#   hh = act(x Wh + bh_in + r * (h Uh + bh_rec))
#   h' = z * h + (1 - z) * hh ;  output = state = h'
# --------------------------------------------------------------------------------------------
class GRUCellV2(rnn_cell.GRUCell):
    def __init__(self, num_units, activation=None, name=None):
        super().__init__(num_units, activation=activation, name=name)

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        depth = input_shape[-1]
        if hasattr(depth, "value"):
            depth = depth.value
        if depth is None:
            raise ValueError("Expected inputs.shape[-1] to be known, received shape: %s" %
                             input_shape)
        h = self._num_units
        self._kernel = self.add_weight("kernel", shape=[depth, 3 * h])
        self._recurrent_kernel = self.add_weight("recurrent_kernel", shape=[h, 3 * h],
                                                 initializer=tf1.orthogonal_initializer())
        self._bias = self.add_weight("bias", shape=[2, 3 * h],
                                     initializer=tf1.zeros_initializer())
        self.built = True

    def call(self, inputs, state):
        input_bias, recurrent_bias = tf.unstack(self._bias)
        matrix_x = tf.nn.bias_add(tf.matmul(inputs, self._kernel), input_bias)
        x_z, x_r, x_h = tf.split(matrix_x, 3, axis=-1)
        matrix_inner = tf.nn.bias_add(tf.matmul(state, self._recurrent_kernel), recurrent_bias)
        rec_z, rec_r, rec_h = tf.split(matrix_inner, [self._num_units, self._num_units, -1],
                                       axis=-1)
        z = tf.sigmoid(x_z + rec_z)
        r = tf.sigmoid(x_r + rec_r)
        hh = self._activation(x_h + r * rec_h)
        new_h = z * state + (1 - z) * hh
        return new_h, new_h


def check_gru_v2():
    """GRUCellV2 against tf.keras.layers.GRUCell(reset_after=True) inside tf.keras.layers.RNN:
    outputs, final state and the gradients of a weighted sum w.r.t. every weight and the input
    must agree (they use the same ops, so they agree to the last bit in practice)."""
    rng = np.random.RandomState(20240601)
    for act, (b, t, d, h) in (("tanh", (3, 5, 4, 6)), ("relu", (2, 4, 5, 3))):
        with tf.Graph().as_default():
            x = tf1.placeholder(tf.float32, [b, t, d])
            ours = GRUCellV2(h, activation=ACTIVATIONS[act])
            o1, s1 = tf1.nn.dynamic_rnn(ours, x, dtype=tf.float32)
            layer = tf.keras.layers.RNN(
                tf.keras.layers.GRUCell(h, reset_after=True, activation=act,
                                        recurrent_activation="sigmoid"),
                return_sequences=True, return_state=True)
            o2, s2 = layer(x)
            rw = tf.constant(rng.uniform(-1, 1, (b, t, h)).astype(np.float32))
            sw = tf.constant(rng.uniform(-1, 1, (b, h)).astype(np.float32))
            ours_vars = [ours._kernel, ours._recurrent_kernel, ours._bias]
            keras_vars = [layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias]
            loss1 = tf.reduce_sum(o1 * rw) + tf.reduce_sum(s1 * sw)
            loss2 = tf.reduce_sum(o2 * rw) + tf.reduce_sum(s2 * sw)
            g1 = tf.gradients(loss1, ours_vars + [x])
            g2 = tf.gradients(loss2, keras_vars + [x])
            with tf1.Session(config=session_config()) as sess:
                sess.run(tf1.global_variables_initializer())
                for a, k in zip(ours_vars, keras_vars):
                    val = rng.uniform(-VAR_RANGE, VAR_RANGE, a.shape.as_list()).astype(np.float32)
                    a.load(val, sess)
                    k.load(val, sess)
                feed = {x: rng.uniform(-1, 1, (b, t, d)).astype(np.float32)}
                r1 = sess.run([o1, s1] + g1, feed)
                r2 = sess.run([o2, s2] + g2, feed)
            for u, v in zip(r1, r2):
                if u.shape != v.shape or not np.allclose(u, v, rtol=1e-6, atol=1e-6):
                    raise AssertionError("GRUCellV2 differs from keras GRUCell(reset_after=True) "
                                         "(activation %s): max diff %g" %
                                         (act, np.max(np.abs(u - v))))


# --------------------------------------------------------------------------------------------
# tf.contrib.rnn.stack_bidirectional_dynamic_rnn is gone from TensorFlow 2.x. This is a faithful
# reimplementation of TF 1.x's tensorflow/contrib/rnn/python/ops/rnn.py version (same checks,
# same scopes, same nesting of the results): variable_scope(scope or "stack_bidirectional_rnn"),
# per layer variable_scope("cell_%d" % i) and bidirectional_dynamic_rnn without a scope
# argument; the next layer's input is concat((out_fw, out_bw), axis=2).
# --------------------------------------------------------------------------------------------
def stack_bidirectional_dynamic_rnn(cells_fw, cells_bw, inputs, initial_states_fw=None,
                                    initial_states_bw=None, dtype=None, sequence_length=None,
                                    parallel_iterations=None, time_major=False, scope=None,
                                    swap_memory=False):
    if not cells_fw:
        raise ValueError("Must specify at least one fw cell for BidirectionalRNN.")
    if not cells_bw:
        raise ValueError("Must specify at least one bw cell for BidirectionalRNN.")
    if not isinstance(cells_fw, list):
        raise ValueError("cells_fw must be a list of RNNCells (one per layer).")
    if not isinstance(cells_bw, list):
        raise ValueError("cells_bw must be a list of RNNCells (one per layer).")
    if len(cells_fw) != len(cells_bw):
        raise ValueError("Forward and Backward cells must have the same depth.")
    if initial_states_fw is not None and (not isinstance(initial_states_fw, list) or
                                          len(initial_states_fw) != len(cells_fw)):
        raise ValueError("initial_states_fw must be a list of state tensors (one per layer).")
    if initial_states_bw is not None and (not isinstance(initial_states_bw, list) or
                                          len(initial_states_bw) != len(cells_bw)):
        raise ValueError("initial_states_bw must be a list of state tensors (one per layer).")

    states_fw, states_bw = [], []
    prev_layer = inputs
    with tf1.variable_scope(scope or "stack_bidirectional_rnn"):
        for i, (cell_fw, cell_bw) in enumerate(zip(cells_fw, cells_bw)):
            init_fw = initial_states_fw[i] if initial_states_fw else None
            init_bw = initial_states_bw[i] if initial_states_bw else None
            with tf1.variable_scope("cell_%d" % i):
                outputs, (state_fw, state_bw) = tf1.nn.bidirectional_dynamic_rnn(
                    cell_fw, cell_bw, prev_layer,
                    initial_state_fw=init_fw, initial_state_bw=init_bw,
                    sequence_length=sequence_length,
                    parallel_iterations=parallel_iterations, dtype=dtype,
                    swap_memory=swap_memory, time_major=time_major)
                prev_layer = tf.concat(outputs, 2)
            states_fw.append(state_fw)
            states_bw.append(state_bw)
    return prev_layer, tuple(states_fw), tuple(states_bw)


# --------------------------------------------------------------------------------------------
# Interpreter
# --------------------------------------------------------------------------------------------
def session_config():
    # One thread: the same reduction order on every run.
    return tf1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)


def shape_str(shape):
    """A TensorShape as TF 1.x prints it."""
    if shape.dims is None:
        return "<unknown>"
    dims = ["?" if d is None else str(d) for d in shape.as_list()]
    if len(dims) == 1:
        return "(%s,)" % dims[0]
    return "(%s)" % ", ".join(dims)


class Program:
    """State of one program while it is built."""

    def __init__(self, name, rng):
        self.name = name
        self.rng = rng
        self.cells = {}          # id -> cell object
        self.handles = {}        # handle -> VariableScope object
        self.stack = []          # open variable_scope context managers
        self.x = None            # the input placeholder
        self.x_value = None
        self.dims = None         # (B, T, D)
        self.time_major = False
        self.unknown_batch = False
        self.seqlen = None       # int32 constant
        self.seqlen_value = None
        self.runs = {}           # label -> chained output tensor
        self.results = []        # (tensor name, tensor) in golden order: outputs then states
        self.inits = []          # (tensor name, placeholder, value)
        self.nruns = 0
        self.used_labels = set()

    def batch_size(self):
        if self.unknown_batch:
            return tf.shape(self.x)[1 if self.time_major else 0]
        return self.dims[0]


def make_cell(p, st):
    cid, kind = st.args[0], st.args[1]
    if cid in p.cells:
        raise CatalogueError("line %d: cell %s defined twice" % (st.lineno, cid))
    rest = st.args[2:]
    o = st.opts
    if kind in ("multi", "dropout", "residual"):
        if kind == "multi" and not rest:
            raise CatalogueError("line %d: multi needs at least one cell" % st.lineno)
        if kind != "multi" and len(rest) != 1:
            raise CatalogueError("line %d: %s wraps exactly one cell" % (st.lineno, kind))
        inner = []
        for r in rest:
            if r not in p.cells:
                raise CatalogueError("line %d: unknown cell %s" % (st.lineno, r))
            inner.append(p.cells[r])
        if kind == "multi":
            cell = rnn_cell.MultiRNNCell(inner, state_is_tuple=opt_flag(st, "state_is_tuple", True))
        elif kind == "dropout":
            keeps = {}
            for key, arg in (("input_keep", "input_keep_prob"), ("output_keep", "output_keep_prob"),
                             ("state_keep", "state_keep_prob")):
                if key in o:
                    if opt_float(st, key) != 1.0:
                        raise CatalogueError("line %d: only keep probabilities of 1 give "
                                             "deterministic goldens" % st.lineno)
                    keeps[arg] = 1.0
            cell = rnn_cell.DropoutWrapper(inner[0], **keeps)
        else:
            cell = rnn_cell.ResidualWrapper(inner[0])
        p.cells[cid] = cell
        return
    if rest:
        raise CatalogueError("line %d: %s takes no cell arguments" % (st.lineno, kind))
    units = opt_int(st, "units", lo=1, hi=MAX_UNITS)
    kw = {}
    act = opt_activation(st)
    if act is not None:
        kw["activation"] = ACTIVATIONS[act]
    if "name" in o:
        kw["name"] = o["name"]
    if "forget_bias" in o:
        kw["forget_bias"] = opt_float(st, "forget_bias")
    if "state_is_tuple" in o:
        kw["state_is_tuple"] = opt_flag(st, "state_is_tuple", True)
    if kind == "basic_rnn":
        cell = rnn_cell.BasicRNNCell(units, **kw)
    elif kind == "basic_lstm":
        cell = rnn_cell.BasicLSTMCell(units, **kw)
    elif kind == "lstm":
        if "peepholes" in o:
            kw["use_peepholes"] = opt_flag(st, "peepholes", False)
        if "cell_clip" in o:
            kw["cell_clip"] = opt_float(st, "cell_clip")
        if "num_proj" in o:
            kw["num_proj"] = opt_int(st, "num_proj", lo=1, hi=MAX_UNITS)
        if "proj_clip" in o:
            if "num_proj" not in o:
                raise CatalogueError("line %d: proj_clip needs num_proj" % st.lineno)
            kw["proj_clip"] = opt_float(st, "proj_clip")
        cell = rnn_cell.LSTMCell(units, **kw)
    elif kind == "gru":
        cell = rnn_cell.GRUCell(units, **kw)
    else:  # gru_v2
        cell = GRUCellV2(units, **kw)
    p.cells[cid] = cell


def flat_state_size(cell):
    return [int(n) for n in tf.nest.flatten(cell.state_size)]


def initial_states(p, st, cell, prefix, start=0):
    """initial_state= of a run for one cell: None, zero_state, or fed random placeholders named
    <prefix>/<start + i> in the golden (the cell's state flattened in nest order)."""
    mode = st.opts.get("initial_state")
    if mode is None:
        return None
    if mode == "zeros":
        return cell.zero_state(p.batch_size(), tf.float32)
    if mode != "random":
        raise CatalogueError("line %d: initial_state must be zeros or random" % st.lineno)
    b = p.dims[0]
    flat = []
    for i, n in enumerate(flat_state_size(cell)):
        ph = tf1.placeholder(tf.float32, [None if p.unknown_batch else b, n])
        value = p.rng.uniform(-STATE_RANGE, STATE_RANGE, (b, n)).astype(np.float32)
        p.inits.append(("%s/%d" % (prefix, start + i), ph, value))
        flat.append(ph)
    return tf.nest.pack_sequence_as(cell.state_size, flat)


def run_stmt(p, st):
    op, a, o = st.op, st.args, st.opts
    if op == "input":
        if p.x is not None:
            raise CatalogueError("line %d: a second input" % st.lineno)
        b, t, d = (int(v) for v in a)
        if not (1 <= b <= MAX_B and 1 <= t <= MAX_T and 1 <= d <= MAX_D):
            raise CatalogueError("line %d: input sizes out of range" % st.lineno)
        p.dims = (b, t, d)
        p.time_major = opt_flag(st, "time_major", False)
        p.unknown_batch = opt_flag(st, "unknown_batch", False)
        unknown_time = opt_flag(st, "unknown_time", False)
        bd = None if p.unknown_batch else b
        td = None if unknown_time else t
        shape = [td, bd, d] if p.time_major else [bd, td, d]
        p.x = tf1.placeholder(tf.float32, shape, name="input")
        vshape = (t, b, d) if p.time_major else (b, t, d)
        p.x_value = p.rng.uniform(-INPUT_RANGE, INPUT_RANGE, vshape).astype(np.float32)
    elif op == "seqlen":
        if p.x is None or p.seqlen is not None:
            raise CatalogueError("line %d: seqlen must follow input, once" % st.lineno)
        vals = [int(v) for v in a]
        if len(vals) != p.dims[0] or any(v < 0 or v > p.dims[1] for v in vals):
            raise CatalogueError("line %d: seqlen needs B values in [0, T]" % st.lineno)
        p.seqlen_value = np.array(vals, dtype=np.int32)
        p.seqlen = tf.constant(p.seqlen_value, name="seqlen")
    elif op == "cell":
        make_cell(p, st)
    elif op == "scope":
        kw = {}
        if "reuse" in o:
            if o["reuse"] not in ("auto", "true"):
                raise CatalogueError("line %d: reuse must be auto or true" % st.lineno)
            kw["reuse"] = tf1.AUTO_REUSE if o["reuse"] == "auto" else True
        cm = tf1.variable_scope(a[0], **kw)
        scope = cm.__enter__()
        p.stack.append(cm)
        if "as" in o:
            p.handles[o["as"]] = scope
    elif op == "end_scope":
        if not p.stack:
            raise CatalogueError("line %d: end_scope with no open scope" % st.lineno)
        p.stack.pop().__exit__(None, None, None)
    elif op == "run":
        do_run(p, st)
    else:  # pragma: no cover - GRAMMAR and this switch list the same statements
        raise CatalogueError("line %d: unhandled %s" % (st.lineno, op))


def get_cell(p, st, cid):
    if cid not in p.cells:
        raise CatalogueError("line %d: unknown cell %s" % (st.lineno, cid))
    return p.cells[cid]


def do_run(p, st):
    kind, o = st.args[0], st.opts
    if p.x is None:
        raise CatalogueError("line %d: run before input" % st.lineno)
    label = o.get("as")
    if label is not None:
        if label in p.used_labels or "/" in label:
            raise CatalogueError("line %d: bad or repeated label %s" % (st.lineno, label))
        p.used_labels.add(label)
    p.nruns += 1
    pre = "" if label is None else label + "/"
    if "input" in o:
        if o["input"] not in p.runs:
            raise CatalogueError("line %d: unknown run label %s" % (st.lineno, o["input"]))
        x = p.runs[o["input"]]
    else:
        x = p.x
    scope = o.get("scope")
    if "scope_obj" in o:
        if scope is not None or o["scope_obj"] not in p.handles:
            raise CatalogueError("line %d: bad scope_obj" % st.lineno)
        scope = p.handles[o["scope_obj"]]
    time_axis = 0 if p.time_major else 1
    common = dict(sequence_length=p.seqlen, dtype=tf.float32)

    if kind == "dynamic":
        cell = get_cell(p, st, st.args[1])
        init = initial_states(p, st, cell, pre + "initial_state")
        out, state = tf1.nn.dynamic_rnn(cell, x, initial_state=init, time_major=p.time_major,
                                        scope=scope, **common)
        p.results.append((pre + "output", out))
        for i, s in enumerate(tf.nest.flatten(state)):
            p.results.append((pre + "state/%d" % i, s))
        chained = out
    elif kind == "bidirectional":
        fw, bw = get_cell(p, st, st.args[1]), get_cell(p, st, st.args[2])
        init_fw = initial_states(p, st, fw, pre + "initial_state_fw")
        init_bw = initial_states(p, st, bw, pre + "initial_state_bw")
        (ofw, obw), (sfw, sbw) = tf1.nn.bidirectional_dynamic_rnn(
            fw, bw, x, initial_state_fw=init_fw, initial_state_bw=init_bw,
            time_major=p.time_major, scope=scope, **common)
        p.results.append((pre + "output_fw", ofw))
        p.results.append((pre + "output_bw", obw))
        for i, s in enumerate(tf.nest.flatten(sfw)):
            p.results.append((pre + "state_fw/%d" % i, s))
        for i, s in enumerate(tf.nest.flatten(sbw)):
            p.results.append((pre + "state_bw/%d" % i, s))
        chained = tf.concat([ofw, obw], 2)
    elif kind == "stack_bidirectional":
        fws = [get_cell(p, st, c) for c in st.args[1].split(",")]
        bws = [get_cell(p, st, c) for c in st.args[2].split(",")]
        init_fw = init_bw = None
        if "initial_state" in o:
            # One flat numbering over all layers (layer 0's states first), as recur.h does.
            init_fw, init_bw = [], []
            for cells, dest, tag in ((fws, init_fw, "initial_state_fw"),
                                     (bws, init_bw, "initial_state_bw")):
                start = 0
                for c in cells:
                    dest.append(initial_states(p, st, c, pre + tag, start))
                    start += len(flat_state_size(c))
        out, sfw, sbw = stack_bidirectional_dynamic_rnn(
            fws, bws, x, initial_states_fw=init_fw, initial_states_bw=init_bw,
            time_major=p.time_major, scope=scope, **common)
        p.results.append((pre + "output", out))
        for i, s in enumerate(tf.nest.flatten(sfw)):
            p.results.append((pre + "state_fw/%d" % i, s))
        for i, s in enumerate(tf.nest.flatten(sbw)):
            p.results.append((pre + "state_bw/%d" % i, s))
        chained = out
    elif kind in ("static", "static_bidirectional"):
        if x.shape[time_axis].value is None:
            raise CatalogueError("line %d: static runs need a known time dimension" % st.lineno)
        xs = tf.unstack(x, axis=time_axis)
        if kind == "static":
            cell = get_cell(p, st, st.args[1])
            init = initial_states(p, st, cell, pre + "initial_state")
            outs, state = tf1.nn.static_rnn(cell, xs, initial_state=init, scope=scope, **common)
            states = [("state", state)]
        else:
            fw, bw = get_cell(p, st, st.args[1]), get_cell(p, st, st.args[2])
            init_fw = initial_states(p, st, fw, pre + "initial_state_fw")
            init_bw = initial_states(p, st, bw, pre + "initial_state_bw")
            outs, sfw, sbw = tf1.nn.static_bidirectional_rnn(
                fw, bw, xs, initial_state_fw=init_fw, initial_state_bw=init_bw, scope=scope,
                **common)
            states = [("state_fw", sfw), ("state_bw", sbw)]
        for t, ot in enumerate(outs):
            p.results.append((pre + "output_%d" % t, ot))
        for tag, state in states:
            for i, s in enumerate(tf.nest.flatten(state)):
                p.results.append((pre + "%s/%d" % (tag, i), s))
        chained = tf.stack(outs, axis=time_axis)
    else:  # pragma: no cover
        raise CatalogueError("line %d: unhandled run %s" % (st.lineno, kind))
    if label is not None:
        p.runs[label] = chained


def fmt_value(v, dtype):
    if dtype == "int32":
        return "%d" % int(v)
    return "%.9g" % float(v)


def tensor_text(name, value, dtype="float32"):
    value = np.asarray(value)
    if dtype == "float32":
        value = value.astype(np.float32)
    lines = ["tensor %s %s %d%s" % (name, dtype, value.ndim,
                                    "".join(" %d" % d for d in value.shape))]
    if value.size == 0:
        return lines
    rows = value.reshape(1, -1) if value.ndim <= 1 else value.reshape(-1, value.shape[-1])
    for row in rows:
        lines.append(" ".join(fmt_value(v, dtype) for v in row))
    return lines


def run_program(name, stmts):
    """Returns the golden text of one program."""
    seed = zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF
    rng = np.random.RandomState(seed)
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(seed)  # TensorFlow's own initial values are overwritten below
        p = Program(name, rng)
        for st in stmts[1:]:
            run_stmt(p, st)
        if p.stack:
            raise CatalogueError("program %s ends with %d open scopes" % (name, len(p.stack)))
        if p.nruns == 0:
            raise CatalogueError("program %s has no run" % name)
        if p.nruns > 1 and len(p.used_labels) != p.nruns:
            raise CatalogueError("program %s: every run needs as=<label> when there are several"
                                 % name)

        gvars = tf1.global_variables()
        tvars = tf1.trainable_variables()
        var_values = [rng.uniform(-VAR_RANGE, VAR_RANGE, v.shape.as_list()).astype(np.float32)
                      for v in gvars]

        # loss = sum over outputs and flattened final states of sum(tensor * weight)
        weights = []
        terms = []
        for rname, t in p.results:
            wshape = concrete_shape(p, t)
            w = rng.uniform(-WEIGHT_RANGE, WEIGHT_RANGE, wshape).astype(np.float32)
            weights.append(("loss_weight/" + rname, w))
            terms.append(tf.reduce_sum(t * tf.constant(w)))
        loss = tf.add_n(terms)
        grad_targets = list(tvars) + [p.x] + [ph for _, ph, _ in p.inits]
        grads = tf.gradients(loss, grad_targets)

        feed = {p.x: p.x_value}
        for _, ph, val in p.inits:
            feed[ph] = val
        with tf1.Session(graph=graph, config=session_config()) as sess:
            sess.run(tf1.global_variables_initializer())
            for v, val in zip(gvars, var_values):
                v.load(val, sess)
            fetch = [t for _, t in p.results] + [loss] + \
                [g if g is not None else tf.zeros_like(v) for g, v in zip(grads, grad_targets)]
            vals = sess.run(fetch, feed)
        nres = len(p.results)
        res_vals, loss_val, grad_vals = vals[:nres], vals[nres], vals[nres + 1:]

        out = ["# generated by tests/tf/make_rnn_golden.py from tests/tf/rnn_programs.txt; "
               "do not edit"]
        out.append("meta program " + " ; ".join(st.text for st in stmts))
        out.append("meta seed %d" % seed)
        for v in gvars:
            out.append("meta var %s %s" % (v.op.name, shape_str(v.shape)))
        out.append("meta shape input %s" % shape_str(p.x.shape))
        for rname, t in p.results:
            out.append("meta shape %s %s" % (rname, shape_str(t.shape)))
        for v, val in zip(gvars, var_values):
            out += tensor_text(v.op.name, val)
        out += tensor_text("input", p.x_value)
        if p.seqlen is not None:
            out += tensor_text("seqlen", p.seqlen_value, "int32")
        for iname, _, val in p.inits:
            out += tensor_text(iname, val)
        for (rname, _), val in zip(p.results, res_vals):
            out += tensor_text(rname, val)
        for wname, w in weights:
            out += tensor_text(wname, w)
        out += tensor_text("loss", loss_val)
        gnames = (["grad/" + v.op.name for v in tvars] + ["grad/input"] +
                  ["grad/" + iname for iname, _, _ in p.inits])
        for gname, val in zip(gnames, grad_vals):
            out += tensor_text(gname, val)
    return "\n".join(out) + "\n"


def concrete_shape(p, t):
    """Run-time shape of a result tensor from its static shape plus the program's B and T."""
    b, tt, _ = p.dims
    dims = t.shape.as_list()
    if len(dims) == 2:  # [B, n] (a state or a static step output)
        shape = [b, dims[1]]
    else:
        shape = [tt, b, dims[2]] if p.time_major else [b, tt, dims[2]]
    if not t.shape.is_compatible_with(shape):
        raise AssertionError("%s: static shape %s, expected %s" % (t.name, t.shape, shape))
    return shape


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--programs", default=DEFAULT_PROGRAMS)
    ap.add_argument("--out-dir", default=DEFAULT_OUT_DIR)
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these programs")
    ap.add_argument("--check", action="store_true",
                    help="compare with the existing golden files instead of writing them")
    args = ap.parse_args()

    programs = parse(args.programs)
    if args.only:
        unknown = set(args.only) - {n for n, _ in programs}
        if unknown:
            raise CatalogueError("no such program: %s" % " ".join(sorted(unknown)))
        programs = [(n, s) for n, s in programs if n in args.only]
    check_gru_v2()

    texts = [(name, run_program(name, stmts)) for name, stmts in programs]
    total = sum(len(t) for _, t in texts)
    rel = os.path.relpath(args.out_dir)

    if args.check:
        bad = []
        for name, text in texts:
            path = os.path.join(args.out_dir, name + ".golden")
            try:
                with open(path, encoding="utf-8") as f:
                    old = f.read()
            except FileNotFoundError:
                old = None
            if old != text:
                bad.append(name + ("" if old is not None else " (missing)"))
        if not args.only and os.path.isdir(args.out_dir):
            names = {n for n, _ in programs}
            bad += ["%s (stale file)" % f[:-7] for f in sorted(os.listdir(args.out_dir))
                    if f.endswith(".golden") and f[:-7] not in names]
        print("rnn goldens: %d programs, %d bytes: %s %s%s" %
              (len(texts), total, "DIFFER from" if bad else "match", rel,
               (": " + ", ".join(bad)) if bad else ""))
        return 1 if bad else 0

    os.makedirs(args.out_dir, exist_ok=True)
    for name, text in texts:
        with open(os.path.join(args.out_dir, name + ".golden"), "w", encoding="utf-8",
                  newline="\n") as f:
            f.write(text)
    print("rnn goldens: %d programs, %d bytes -> %s (TF %s)" %
          (len(texts), total, rel, tf.__version__))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CatalogueError as e:
        print("make_rnn_golden.py: catalogue error: %s" % e, file=sys.stderr)
        sys.exit(2)
