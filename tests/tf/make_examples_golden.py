"""The TensorFlow form of the three programs in examples/ (scoped_layers, missing_scope,
bidirectional): prints what each C example prints about names and shapes (and the error text),
into tests/golden/examples.golden, one section per example:

    example <name>
    variable <name:0> shape <TF 1.x shape>
    static output shape <shape>
    error: <first line of the ValueError>

Run from the repository root: python3 tests/tf/make_examples_golden.py [--check]
"""
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
tf1.disable_eager_execution()
tf1.disable_resource_variables()
tf1.disable_v2_tensorshape()
rnn_cell = tf1.nn.rnn_cell


def variables(out, y):
    for v in tf1.global_variables():
        out.append("variable %s shape %s" % (v.name, v.shape))
    out.append("static output shape %s" % (y.shape,))


def scoped_layers(out):
    x = tf1.placeholder(tf.float32, [None, 20, 10], name="input")
    with tf1.variable_scope("layer1", reuse=tf1.AUTO_REUSE):
        o1, _ = tf1.nn.dynamic_rnn(rnn_cell.BasicLSTMCell(50), x, dtype=tf.float32)
    with tf1.variable_scope("layer2", reuse=tf1.AUTO_REUSE):
        o2, _ = tf1.nn.dynamic_rnn(rnn_cell.BasicLSTMCell(25), o1, dtype=tf.float32)
    variables(out, o2)


def missing_scope(out):
    x = tf1.placeholder(tf.float32, [None, 20, 10], name="input")
    o1, _ = tf1.nn.dynamic_rnn(rnn_cell.BasicLSTMCell(50), x, dtype=tf.float32)
    try:
        tf1.nn.dynamic_rnn(rnn_cell.BasicLSTMCell(25), o1, dtype=tf.float32)
        raise SystemExit("expected an error")
    except ValueError as e:
        msg = str(e).split(" Originally defined at:")[0]
        out.append("error: %s" % msg.splitlines()[0])
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [None, 20, 10], name="input")
        with tf1.variable_scope("layer1", reuse=tf1.AUTO_REUSE):
            h, _ = tf1.nn.dynamic_rnn(rnn_cell.BasicLSTMCell(50), x, dtype=tf.float32)
        with tf1.variable_scope("layer2", reuse=tf1.AUTO_REUSE):
            y, _ = tf1.nn.dynamic_rnn(rnn_cell.BasicLSTMCell(25), h, dtype=tf.float32)
        variables(out, y)


def bidirectional(out):
    x = tf1.placeholder(tf.float32, [None, 20, 10], name="input")
    lengths = tf1.placeholder(tf.int32, [None], name="lengths")
    with tf1.variable_scope("bidirectional_layer", reuse=tf1.AUTO_REUSE):
        (of, ob), _ = tf1.nn.bidirectional_dynamic_rnn(
            rnn_cell.BasicLSTMCell(50), rnn_cell.BasicLSTMCell(50), x, sequence_length=lengths, dtype=tf.float32)
    variables(out, tf.concat([of, ob], 2))


def main():
    out = ["# TensorFlow %s form of examples/*.c (tests/tf/make_examples_golden.py)" % tf.__version__]
    for fn in (scoped_layers, missing_scope, bidirectional):
        out.append("example %s" % fn.__name__)
        with tf.Graph().as_default():
            fn(out)
    text = "\n".join(out) + "\n"
    path = os.path.join("tests", "golden", "examples.golden")
    if "--check" in sys.argv:
        ok = os.path.exists(path) and open(path).read() == text
        print("examples.golden is %s" % ("up to date" if ok else "OUT OF DATE"))
        sys.exit(0 if ok else 1)
    with open(path, "w") as f:
        f.write(text)
    print("wrote %s" % path)


if __name__ == "__main__":
    main()
