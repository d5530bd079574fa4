#!/usr/bin/env python3
"""Checkpoints written by recur, read by real TensorFlow.

Usage, from the repository root (run by hand; CI does not need TensorFlow):

    RECUR_CKPT_OUT=/tmp/rc build/release/tests/test_checkpoint write_checkpoint_for_tensorflow
    python3 tests/tf/check_recur_ckpt.py /tmp/rc

The directory holds what that test writes: model.ckpt-42 (a recur Saver checkpoint of a
graph's variables, with the `checkpoint` state file) and raw.ckpt (every dtype, special
floats, empty tensors, strings with NUL bytes, a unicode key), each with a manifest in the
golden format of tests/golden.h (strings as "meta string" lines, see make_ckpt_golden.py).

Checks:
  - tf.train.latest_checkpoint(dir) finds model.ckpt-42 through recur's state file;
  - tf.train.load_checkpoint lists exactly the manifest's keys, dtypes and shapes, and every
    value's bytes equal the manifest's (NaN, -0.0 and denormals included);
  - tf.compat.v1.train.Saver.restore (graph mode, reference variables) restores every
    variable of model.ckpt-42 into a graph built from the manifest, with the same values.
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
tf.get_logger().setLevel("ERROR")


def load_manifest(path):
    """{key: (dtype name, shape, values as a numpy array)} and the prefix."""
    entries, prefix, lines = {}, None, open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        words = lines[i].split(" ")
        i += 1
        if words[0] == "meta" and words[1] == "prefix":
            prefix = words[2]
        elif words[0] == "meta" and words[1] == "string":
            key, rank = words[2], int(words[3])
            shape = [int(d) for d in words[4:4 + rank]]
            elems = [bytes.fromhex(w[1:]) for w in words[4 + rank:] if w]
            entries[key] = ("string", shape, np.array(elems, dtype=object).reshape(shape))
        elif words[0] == "tensor":
            key, dtype, rank = words[1], words[2], int(words[3])
            shape = [int(d) for d in words[4:4 + rank]]
            count = int(np.prod(shape)) if shape else 1
            vals = []
            while len(vals) < count:
                vals += [float(v) for v in lines[i].split()]
                i += 1
            if dtype in ("int32", "int64"):
                arr = np.array([int(v) for v in vals], dtype=dtype)
            else:
                arr = np.array(vals, dtype=np.float64).astype(dtype)
            entries[key] = (dtype, shape, arr.reshape(shape))
    return prefix, entries


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == object or b.dtype == object:
        return a.shape == b.shape and [bytes(x) for x in a.reshape(-1)] == [bytes(x) for x in b.reshape(-1)]
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def check_reader(d, manifest):
    prefix, entries = load_manifest(os.path.join(d, manifest))
    reader = tf.train.load_checkpoint(os.path.join(d, prefix))
    dtypes, shapes = reader.get_variable_to_dtype_map(), reader.get_variable_to_shape_map()
    assert sorted(dtypes) == sorted(entries), (sorted(dtypes), sorted(entries))
    for key, (dtype, shape, value) in entries.items():
        assert dtypes[key].name == dtype, (key, dtypes[key], dtype)
        assert list(shapes[key]) == shape, (key, shapes[key], shape)
        got = reader.get_tensor(key)
        assert same_bits(got, value), (key, got, value)
    return prefix, entries


def check_saver_restore(d, prefix, entries):
    with tf.Graph().as_default():
        variables = {key: tf1.get_variable(key, shape=shape, dtype=dtype)
                     for key, (dtype, shape, _) in entries.items()}
        saver = tf1.train.Saver()
        with tf1.Session() as s:
            saver.restore(s, os.path.join(d, prefix))
            for key, var in variables.items():
                assert same_bits(s.run(var), entries[key][2]), key


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = os.path.abspath(sys.argv[1])
    assert tf.train.latest_checkpoint(d) == os.path.join(d, "model.ckpt-42"), tf.train.latest_checkpoint(d)
    prefix, entries = check_reader(d, "model.golden")
    check_saver_restore(d, prefix, entries)
    _, raw = check_reader(d, "raw.golden")
    print("check_recur_ckpt: TensorFlow %s read %d + %d tensors bit-exactly (load_checkpoint) and "
          "restored %d variables (Saver.restore)" % (tf.__version__, len(entries), len(raw), len(entries)))


if __name__ == "__main__":
    main()
