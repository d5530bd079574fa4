#!/usr/bin/env python3
"""Run the variable-scope catalogue (tests/tf/scope_programs.txt) with real TensorFlow
(tf.compat.v1 graph mode, reference variables) and write tests/golden/scopes.golden.

Usage, from the repository root:

    python3 tests/tf/make_golden.py [--programs FILE] [--out FILE] [--check]

--check compares the freshly generated text with the existing golden file instead of writing
it (exit status 1 on a difference).

The DSL and the golden format are described in tests/tf/README.md and at the top of
scope_programs.txt. Each statement maps onto one recur.h call (or a short fixed sequence of
them) so that a C interpreter of the same catalogue can compare line by line.
"""

import argparse
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"


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


tf = _import_tensorflow()
tf1 = tf.compat.v1
tf1.disable_eager_execution()
tf1.disable_resource_variables()
# TF 1.x shape printing ("(?, 5)" rather than "(None, 5)") in TensorFlow's own messages.
tf1.disable_v2_tensorshape()

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_PROGRAMS = os.path.join(HERE, "scope_programs.txt")
DEFAULT_OUT = os.path.join(ROOT, "tests", "golden", "scopes.golden")

CAUGHT = (ValueError, TypeError, RuntimeError)

DTYPES = {
    "float32": tf.float32,
    "float64": tf.float64,
    "int32": tf.int32,
    "int64": tf.int64,
    "bool": tf.bool,
}

REUSE = {"true": True, "auto": tf1.AUTO_REUSE, "none": None, "false": False}

COLLECTION_KEYS = {
    "global": tf1.GraphKeys.GLOBAL_VARIABLES,
    "trainable": tf1.GraphKeys.TRAINABLE_VARIABLES,
}


class CatalogueError(Exception):
    """A malformed catalogue (not a TensorFlow error)."""


# --------------------------------------------------------------------------------------------
# Tokenizer. Rules (the C interpreter implements the same ones):
#  - tokens are separated by blanks (spaces, tabs);
#  - a token that starts with '"' runs to the next '"' and may hold blanks; the quotes are not
#    part of it; there are no escapes; a quoted token is always positional (never key=value);
#  - a token that starts with '#' starts a comment that runs to the end of the line;
#  - an unquoted token containing '=' is an option key=value (split at the first '=').
# --------------------------------------------------------------------------------------------
def tokenize(line, lineno):
    toks = []  # (text, quoted)
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c == "#":
            break
        if c == '"':
            j = line.find('"', i + 1)
            if j < 0:
                raise CatalogueError("line %d: unterminated quote" % lineno)
            toks.append((line[i + 1:j], True))
            i = j + 1
            if i < n and line[i] not in " \t\r\n":
                raise CatalogueError("line %d: text right after a closing quote" % lineno)
            continue
        j = i
        while j < n and line[j] not in " \t\r\n":
            j += 1
        toks.append((line[i:j], False))
        i = j
    return toks


class Stmt:
    def __init__(self, lineno, op, args, opts):
        self.lineno, self.op, self.args, self.opts = lineno, op, args, opts


# statement -> (min positional, max positional, allowed options)
GRAMMAR = {
    "program": (1, 1, ()),
    "vs": (1, 1, ("reuse", "default", "init", "dtype", "aux", "as")),
    "vs_obj": (1, 1, ("reuse", "init", "dtype", "aux", "as")),
    "capture": (1, 1, ()),
    "end_vs": (0, 0, ()),
    "ns": (1, 1, ()),
    "end_ns": (0, 0, ()),
    "reuse_vars": (0, 0, ()),
    "gv": (2, 2, ("dtype", "init", "trainable")),
    "const": (0, 1, ()),
    "identity": (1, 1, ()),
    "add": (0, 0, ()),
    "collection": (1, 2, ()),
    "scope_name": (0, 0, ()),
    "set_seed": (1, 1, ()),
}


def parse(path):
    programs = []  # (name, [Stmt])
    seen = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            toks = tokenize(line, lineno)
            if not toks:
                continue
            (op, q), rest = toks[0], toks[1:]
            if q or op not in GRAMMAR:
                raise CatalogueError("line %d: unknown statement %r" % (lineno, op))
            args, opts = [], {}
            for text, quoted in rest:
                if not quoted and "=" in text:
                    k, v = text.split("=", 1)
                    if k in opts:
                        raise CatalogueError("line %d: option %s given twice" % (lineno, k))
                    opts[k] = v
                else:
                    if opts:
                        raise CatalogueError("line %d: positional after options" % lineno)
                    args.append(text)
            lo, hi, allowed = GRAMMAR[op]
            if not lo <= len(args) <= hi:
                raise CatalogueError("line %d: %s takes %d..%d arguments" % (lineno, op, lo, hi))
            for k in opts:
                if k not in allowed:
                    raise CatalogueError("line %d: %s has no option %s" % (lineno, op, k))
            st = Stmt(lineno, op, args, opts)
            if op == "program":
                if args[0] in seen:
                    raise CatalogueError("line %d: duplicate program %s" % (lineno, args[0]))
                seen.add(args[0])
                programs.append((args[0], []))
            else:
                if not programs:
                    raise CatalogueError("line %d: statement before the first program" % lineno)
                programs[-1][1].append(st)
    return programs


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------
def seed_arg(text):
    s = int(text)
    return None if s == 0 else s  # recur: seed 0 means "no op seed"


def make_init(spec, lineno):
    parts = spec.split(":")
    kind, a = parts[0], parts[1:]

    def need(n):
        if len(a) != n:
            raise CatalogueError("line %d: init %s takes %d fields" % (lineno, kind, n))

    if kind == "zeros":
        need(0)
        return tf1.zeros_initializer()
    if kind == "ones":
        need(0)
        return tf1.ones_initializer()
    if kind == "constant":
        need(1)
        return tf1.constant_initializer(float(a[0]))
    if kind == "uniform":
        need(3)
        return tf1.random_uniform_initializer(float(a[0]), float(a[1]), seed=seed_arg(a[2]))
    if kind == "normal":
        need(3)
        return tf1.random_normal_initializer(float(a[0]), float(a[1]), seed=seed_arg(a[2]))
    if kind == "truncated":
        need(3)
        return tf1.truncated_normal_initializer(float(a[0]), float(a[1]), seed=seed_arg(a[2]))
    if kind == "glorot_uniform":
        need(1)
        return tf1.glorot_uniform_initializer(seed=seed_arg(a[0]))
    if kind == "glorot_normal":
        need(1)
        return tf1.glorot_normal_initializer(seed=seed_arg(a[0]))
    if kind == "orthogonal":
        need(2)
        return tf1.orthogonal_initializer(float(a[0]), seed=seed_arg(a[1]))
    if kind == "vs":
        need(4)
        if a[1] not in ("fan_in", "fan_out", "fan_avg"):
            raise CatalogueError("line %d: bad mode %s" % (lineno, a[1]))
        if a[2] not in ("uniform", "truncated_normal", "untruncated_normal"):
            raise CatalogueError("line %d: bad distribution %s" % (lineno, a[2]))
        return tf1.variance_scaling_initializer(float(a[0]), a[1], a[2], seed=seed_arg(a[3]))
    raise CatalogueError("line %d: unknown initializer %s" % (lineno, spec))


def parse_shape(text, lineno):
    if text == "none":
        return None
    if text == "scalar":
        return []
    dims = []
    for d in text.split(","):
        if d == "?":
            dims.append(None)
        elif d.isdigit():
            dims.append(int(d))
        else:
            raise CatalogueError("line %d: bad shape %s" % (lineno, text))
    return dims


def parse_dtype(text, lineno):
    if text not in DTYPES:
        raise CatalogueError("line %d: bad dtype %s" % (lineno, text))
    return DTYPES[text]


def parse_bool(text, lineno):
    if text not in ("true", "false"):
        raise CatalogueError("line %d: expected true or false, got %s" % (lineno, text))
    return text == "true"


def shape_str(shape):
    """A TensorShape as TF 1.x prints it."""
    if shape.dims is None:
        return "<unknown>"
    dims = ["?" if d is None else str(d) for d in shape.as_list()]
    if len(dims) == 1:
        return "(%s,)" % dims[0]
    return "(%s)" % ", ".join(dims)


def var_line(v):
    return "var %s %s %s %d" % (
        v.name,
        shape_str(v.get_shape()),
        v.dtype.base_dtype.name,
        1 if any(t is v for t in tf1.trainable_variables()) else 0,
    )


def escape(msg):
    return msg.replace("\\", "\\\\").replace("\n", "\\n")


def error_line(e):
    msg = str(e)
    if " already exists, disallowed." in msg:
        cut = msg.find("VarScope?")
        if cut >= 0:
            msg = msg[: cut + len("VarScope?")]
    return "error %s %s" % (type(e).__name__, escape(msg))


# --------------------------------------------------------------------------------------------
# Interpreter
# --------------------------------------------------------------------------------------------
def run_program(name, stmts, out):
    out.append("program %s" % name)
    graph = tf.Graph()
    with graph.as_default():
        stack = []  # (kind, context manager)
        handles = {}
        for st in stmts:
            try:
                run_stmt(st, graph, stack, handles, out)
            except CatalogueError:
                raise
            except CAUGHT as e:
                out.append(error_line(e))
        if stack:
            raise CatalogueError("program %s ends with %d open scopes" % (name, len(stack)))
        gvars = tf1.global_variables()
        out.append("vars %d" % len(gvars))
        for v in gvars:
            out.append(var_line(v))
    out.append("end")


def enter(stack, kind, cm):
    """Enter a context manager; push it only when the entry succeeded."""
    value = cm.__enter__()
    stack.append((kind, cm))
    return value


def leave(stack, kind, st):
    if not stack:
        raise CatalogueError("line %d: %s with no open scope" % (st.lineno, st.op))
    top_kind, cm = stack[-1]
    if top_kind != kind:
        raise CatalogueError("line %d: %s but the innermost scope is a %s" %
                             (st.lineno, st.op, top_kind))
    stack.pop()
    cm.__exit__(None, None, None)


def vs_kwargs(st):
    kw = {}
    o = st.opts
    if "reuse" in o:
        if o["reuse"] not in REUSE:
            raise CatalogueError("line %d: bad reuse %s" % (st.lineno, o["reuse"]))
        kw["reuse"] = REUSE[o["reuse"]]
    if "default" in o:
        kw["default_name"] = o["default"]
    if "init" in o:
        kw["initializer"] = make_init(o["init"], st.lineno)
    if "dtype" in o:
        kw["dtype"] = parse_dtype(o["dtype"], st.lineno)
    if "aux" in o:
        kw["auxiliary_name_scope"] = parse_bool(o["aux"], st.lineno)
    return kw


def run_stmt(st, graph, stack, handles, out):
    op, a, o = st.op, st.args, st.opts
    if op == "vs":
        name = None if a[0] == "-" else a[0]
        cm = tf1.variable_scope(name, **vs_kwargs(st))
        scope = enter(stack, "vs", cm)
        if "as" in o:
            handles[o["as"]] = scope
    elif op == "vs_obj":
        if a[0] not in handles:
            raise CatalogueError("line %d: unknown handle %s" % (st.lineno, a[0]))
        cm = tf1.variable_scope(handles[a[0]], **vs_kwargs(st))
        scope = enter(stack, "vs", cm)
        if "as" in o:
            handles[o["as"]] = scope
    elif op == "capture":
        handles[a[0]] = tf1.get_variable_scope()
    elif op == "end_vs":
        leave(stack, "vs", st)
    elif op == "ns":
        name = None if a[0] == "-" else a[0]
        enter(stack, "ns", tf1.name_scope(name))
    elif op == "end_ns":
        leave(stack, "ns", st)
    elif op == "reuse_vars":
        tf1.get_variable_scope().reuse_variables()
    elif op == "gv":
        kw = {"shape": parse_shape(a[1], st.lineno)}
        if "dtype" in o:
            kw["dtype"] = parse_dtype(o["dtype"], st.lineno)
        if "init" in o:
            kw["initializer"] = make_init(o["init"], st.lineno)
        if "trainable" in o:
            kw["trainable"] = parse_bool(o["trainable"], st.lineno)
        v = tf1.get_variable(a[0], **kw)
        out.append(var_line(v))
    elif op == "const":
        c = tf.constant(0.0, name=a[0] if a else None)
        out.append("op %s" % c.op.name)
    elif op == "identity":
        t = tf.identity(tf.constant(0.0), name=a[0])
        out.append("op %s" % t.op.name)
    elif op == "add":
        t = tf.add(tf.constant(0.0), tf.constant(0.0))
        out.append("op %s" % t.op.name)
    elif op == "collection":
        if a[0] not in COLLECTION_KEYS:
            raise CatalogueError("line %d: bad collection %s" % (st.lineno, a[0]))
        items = tf1.get_collection(COLLECTION_KEYS[a[0]], a[1] if len(a) > 1 else None)
        out.append(" ".join(["collection", a[0], str(len(items))] + [i.name for i in items]))
    elif op == "scope_name":
        out.append('scope "%s" "%s"' % (tf1.get_variable_scope().name, graph.get_name_scope()))
    elif op == "set_seed":
        tf1.set_random_seed(int(a[0]))
    else:  # pragma: no cover - GRAMMAR and this switch list the same statements
        raise CatalogueError("line %d: unhandled %s" % (st.lineno, op))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--programs", default=DEFAULT_PROGRAMS)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true",
                    help="compare with the existing golden file instead of writing it")
    args = ap.parse_args()

    programs = parse(args.programs)
    out = []
    for name, stmts in programs:
        run_program(name, stmts, out)
    text = "\n".join(out) + "\n"
    nerr = sum(1 for line in out if line.startswith("error "))
    nstmt = sum(len(s) for _, s in programs)

    if args.check:
        try:
            with open(args.out, encoding="utf-8") as f:
                old = f.read()
        except FileNotFoundError:
            old = None
        same = old == text
        print("scopes golden: %d programs, %d statements, %d errors recorded: %s %s" %
              (len(programs), nstmt, nerr, "matches" if same else "DIFFERS from",
               os.path.relpath(args.out)))
        return 0 if same else 1

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print("scopes golden: %d programs, %d statements, %d errors recorded, %d lines -> %s (TF %s)" %
          (len(programs), nstmt, nerr, len(out), os.path.relpath(args.out), tf.__version__))
    return 0


if __name__ == "__main__":
    sys.exit(main())
