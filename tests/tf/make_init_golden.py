"""Initializer values from real TensorFlow for explicit seeds.

Writes tests/golden/initializers.golden (format: tests/golden.h). Each tensor is the value a
`tf.compat.v1.get_variable` gets from one initializer with an explicit op seed, with and
without a graph-level seed, so recur's Philox streams can be checked bit for bit.
Run from the repository root: python3 tests/tf/make_init_golden.py [--check]
"""
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
tf1.disable_eager_execution()
tf1.disable_resource_variables()

# (name, graph seed or None, shape, dtype, initializer factory)
CASES = [
    ("glorot_uniform_60x200", None, [60, 200], tf.float32, lambda: tf1.glorot_uniform_initializer(seed=5)),
    ("glorot_uniform_graph_seed", 42, [7, 3], tf.float32, lambda: tf1.glorot_uniform_initializer(seed=5)),
    ("glorot_normal_9x4", None, [9, 4], tf.float32, lambda: tf1.glorot_normal_initializer(seed=11)),
    ("random_uniform_f32", None, [13], tf.float32, lambda: tf1.random_uniform_initializer(-2.0, 3.0, seed=3)),
    ("random_uniform_f64", None, [5], tf.float64, lambda: tf1.random_uniform_initializer(-1.0, 1.0, seed=3)),
    ("random_normal_f32", None, [11], tf.float32, lambda: tf1.random_normal_initializer(0.5, 2.0, seed=8)),
    ("truncated_normal_f32", None, [37], tf.float32, lambda: tf1.truncated_normal_initializer(0.0, 0.1, seed=9)),
    ("variance_scaling_fan_in_trunc", None, [3, 4, 5], tf.float32,
     lambda: tf1.variance_scaling_initializer(2.0, "fan_in", "truncated_normal", seed=4)),
    ("variance_scaling_fan_out_uniform", None, [6, 2], tf.float32,
     lambda: tf1.variance_scaling_initializer(1.5, "fan_out", "uniform", seed=4)),
    ("variance_scaling_untruncated", None, [6, 2], tf.float32,
     lambda: tf1.variance_scaling_initializer(1.0, "fan_avg", "untruncated_normal", seed=4)),
    ("constant", None, [2, 3], tf.float32, lambda: tf1.constant_initializer(0.25)),
    ("ones_int32", None, [4], tf.int32, lambda: tf1.ones_initializer()),
]

SPEC = {
    "glorot_uniform_60x200": "glorot_uniform:5",
    "glorot_uniform_graph_seed": "glorot_uniform:5",
    "glorot_normal_9x4": "glorot_normal:11",
    "random_uniform_f32": "uniform:-2:3:3",
    "random_uniform_f64": "uniform:-1:1:3",
    "random_normal_f32": "normal:0.5:2:8",
    "truncated_normal_f32": "truncated:0:0.1:9",
    "variance_scaling_fan_in_trunc": "vs:2:fan_in:truncated_normal:4",
    "variance_scaling_fan_out_uniform": "vs:1.5:fan_out:uniform:4",
    "variance_scaling_untruncated": "vs:1:fan_avg:untruncated_normal:4",
    "constant": "constant:0.25",
    "ones_int32": "ones",
}

DT = {tf.float32: "float32", tf.float64: "float64", tf.int32: "int32"}


def fmt(v, dt):
    if dt == tf.float32:
        return "%.9g" % v
    if dt == tf.float64:
        return "%.17g" % v
    return "%d" % v


def main():
    out = ["# Initial values from TensorFlow %s (tests/tf/make_init_golden.py)" % tf.__version__]
    for name, gseed, shape, dt, make in CASES:
        with tf.Graph().as_default():
            if gseed is not None:
                tf1.set_random_seed(gseed)
            v = tf1.get_variable("v", shape, dtype=dt, initializer=make())
            with tf1.Session() as s:
                s.run(tf1.global_variables_initializer())
                val = s.run(v)
        out.append("meta %s %s %s" % (name, SPEC[name], gseed if gseed is not None else "none"))
        out.append("tensor %s %s %d %s" % (name, DT[dt], len(shape), " ".join(str(d) for d in shape)))
        flat = np.asarray(val).reshape(-1)
        for i in range(0, len(flat), 8):
            out.append(" ".join(fmt(x, dt) for x in flat[i:i + 8]))
    text = "\n".join(out) + "\n"
    path = os.path.join("tests", "golden", "initializers.golden")
    if "--check" in sys.argv:
        ok = os.path.exists(path) and open(path).read() == text
        print("initializers.golden is %s" % ("up to date" if ok else "OUT OF DATE"))
        sys.exit(0 if ok else 1)
    with open(path, "w") as f:
        f.write(text)
    print("wrote %s: %d initializers" % (path, len(CASES)))


if __name__ == "__main__":
    main()
