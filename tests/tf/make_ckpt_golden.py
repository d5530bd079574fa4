#!/usr/bin/env python3
"""Write golden V2 checkpoints with real TensorFlow into tests/golden/ckpt/, each with a text
manifest (the golden format of tests/golden.h) of every key, dtype, shape and value, so that
tests/test_checkpoint.c checks recur's reader bit for bit and recur's writer byte for byte
without TensorFlow.

Usage, from the repository root:

    python3 tests/tf/make_ckpt_golden.py

Checkpoints written (prefixes relative to tests/golden/ckpt/):
  dtypes/model.ckpt     tf.compat.v1 Saver (graph mode, reference variables): every dtype recur
                        reads, scalars, empty tensors, special floats, names with slashes and
                        unicode, string variables (one holding a NUL byte)
  adam/model.ckpt-2, adam/model.ckpt-3
                        a small linear model trained 3 steps with Adam (slots w/Adam,
                        w/Adam_1, beta1_power, beta2_power, global_step), saved after steps 2
                        and 3 with a relative `checkpoint` state file
  object/ckpt-1         tf.train.Checkpoint (eager, object-based): keys
                        .../.ATTRIBUTES/VARIABLE_VALUE and _CHECKPOINTABLE_OBJECT_GRAPH
Plus multiblock.golden: the size and CRC32C of the .index TensorFlow's SaveV2 writes for 8000
generated scalars (an index of several 256 KiB blocks, too big to commit); the C test writes
the same tensors with recur and compares.

Manifest extensions to the tensor format (lines starting with "meta"):
  meta prefix <prefix>                   the checkpoint prefix, relative to tests/golden/ckpt
  meta string <key> <rank> <dims..> <elements..>
                                         a DT_STRING tensor; each element is "x" + hex bytes
  meta multiblock <count> <index size> <masked crc32c of the index, hex>
Keys in tensor lines never contain blanks.
"""

import os
import shutil
import subprocess
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "golden", "ckpt")
MULTIBLOCK_COUNT = 8000


def multiblock_key(i):
    """Keys of the multi-block index; tests/test_checkpoint.c builds the same ones."""
    return "block_%05d/rnn/multi_rnn_cell/cell_0/basic_lstm_cell/kernel" % i


def _import_tensorflow():
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    tensorflow.get_logger().setLevel("ERROR")
    return tensorflow


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def fmt_value(dtype, v):
    if dtype == "float32":
        return repr(float(v)) if v != v or abs(v) == float("inf") else "%.9g" % v
    if dtype == "float64":
        return repr(float(v)) if v != v or abs(v) == float("inf") else "%.17g" % v
    if dtype == "bool":
        return "1" if v else "0"
    return str(int(v))


def write_manifest(path, prefix, reader_tf, extra=()):
    """List every tensor of the checkpoint at OUT/prefix, read back with TensorFlow."""
    import numpy as np

    reader = reader_tf.train.load_checkpoint(os.path.join(OUT, prefix))
    dtypes = reader.get_variable_to_dtype_map()
    lines = ["# written by tests/tf/make_ckpt_golden.py with TensorFlow %s" % reader_tf.__version__,
             "meta prefix %s" % prefix]
    lines += list(extra)
    for key in sorted(dtypes):
        value = np.asarray(reader.get_tensor(key))
        dims = " ".join(str(d) for d in value.shape)
        if dtypes[key] == reader_tf.string:
            elems = " ".join("x" + bytes(e).hex() for e in value.reshape(-1))
            lines.append("meta string %s %d %s %s" % (key, value.ndim, dims, elems))
            continue
        name = dtypes[key].name
        lines.append("tensor %s %s %d %s" % (key, name, value.ndim, dims))
        lines.append(" ".join(fmt_value(name, v) for v in value.reshape(-1)))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def eager_part():
    """tf.train.Checkpoint and SaveV2 need eager mode: run in a child process."""
    tf = _import_tensorflow()

    class Layer(tf.Module):
        def __init__(self):
            super().__init__()
            self.kernel = tf.Variable([[1.0, -2.0], [0.5, 4.0]], name="kernel")
            self.bias = tf.Variable([0.25, -0.125], dtype=tf.float64, name="bias")

    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            self.layer = Layer()
            self.steps = tf.Variable(7, dtype=tf.int64, name="steps")

    ckpt = tf.train.Checkpoint(model=Model())
    ckpt.save(os.path.join(OUT, "object", "ckpt"))
    write_manifest(os.path.join(OUT, "object.golden"), "object/ckpt-1", tf)

    tmp = os.path.join(OUT, "multiblock_tmp")
    keys = [multiblock_key(i) for i in range(MULTIBLOCK_COUNT)]
    tf.raw_ops.SaveV2(prefix=os.path.join(tmp, "m"), tensor_names=keys, shape_and_slices=[""] * len(keys),
                      tensors=[tf.constant(float(i), tf.float32) for i in range(MULTIBLOCK_COUNT)])
    with open(os.path.join(tmp, "m.index"), "rb") as f:
        index = f.read()
    shutil.rmtree(tmp)
    with open(os.path.join(OUT, "multiblock.golden"), "w") as f:
        f.write("# written by tests/tf/make_ckpt_golden.py with TensorFlow %s\n" % tf.__version__)
        f.write("# SaveV2 of float32 scalars i (i = 0..count-1) under multiblock_key(i), in that order\n")
        f.write("meta multiblock %d %d %08x\n" % (MULTIBLOCK_COUNT, len(index), masked(crc32c(index))))


def graph_part():
    import numpy as np

    tf = _import_tensorflow()
    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    tf1.disable_resource_variables()

    f32 = np.float32
    with tf.Graph().as_default():
        variables = [
            tf1.get_variable("float_scalar", initializer=f32(3.25)),
            tf1.get_variable("double_vec", initializer=np.array([1.5, -2.25, 1e300], np.float64)),
            tf1.get_variable("int32_mat", initializer=np.array([[1, -2, 3], [2147483647, -2147483648, 0]], np.int32)),
            tf1.get_variable("int64_vec", initializer=np.array([0, -(2 ** 40), 2 ** 52, 7], np.int64)),
            tf1.get_variable("bool_vec", initializer=np.array([True, False, True, True, False])),
            tf1.get_variable("empty", initializer=np.zeros([0], f32)),
            tf1.get_variable("empty2d", initializer=np.zeros([2, 0], f32)),
            tf1.get_variable("layer1/sub/weights", initializer=np.array(
                [[0.0, -0.0, 1.0, -1.5], [np.inf, -np.inf, np.nan, 1e-45],
                 [3.4028235e38, -3.4028235e38, 1.1754944e-38, 0.1]], f32)),
            tf1.get_variable("unicode", initializer=np.array([2.5, -7.0], f32)),
            tf1.Variable([b"", b"hello", "\u00fc\u00f1".encode() + b"\x00x"], name="strings"),
            tf1.Variable(b"ab", name="str_scalar"),
        ]
        # A dict var_list saves under its keys, which (unlike op names) may hold any character.
        keys = {v.op.name: v for v in variables}
        keys["\u00fcn\u00efcode/\u03b2eta"] = keys.pop("unicode")
        saver = tf1.train.Saver(keys, save_relative_paths=True)
        with tf1.Session() as s:
            s.run(tf1.global_variables_initializer())
            saver.save(s, os.path.join(OUT, "dtypes", "model.ckpt"), write_meta_graph=False)
    write_manifest(os.path.join(OUT, "dtypes.golden"), "dtypes/model.ckpt", tf)

    with tf.Graph().as_default():
        tf1.set_random_seed(1)
        x = tf1.constant(np.arange(12, dtype=f32).reshape(4, 3) / 10)
        y = tf1.constant(np.array([[1, 0], [0, 1], [1, 1], [0, 0]], f32))
        w = tf1.get_variable("w", shape=[3, 2], initializer=tf1.constant_initializer(0.5))
        b = tf1.get_variable("b", shape=[2], initializer=tf1.zeros_initializer())
        step = tf1.train.get_or_create_global_step()
        loss = tf1.reduce_mean(tf1.square(tf1.matmul(x, w) + b - y))
        train = tf1.train.AdamOptimizer(0.1).minimize(loss, global_step=step)
        saver = tf1.train.Saver(save_relative_paths=True)
        with tf1.Session() as s:
            s.run(tf1.global_variables_initializer())
            for i in range(3):
                s.run(train)
                if i >= 1:
                    saver.save(s, os.path.join(OUT, "adam", "model.ckpt"), global_step=step,
                               write_meta_graph=False)
    write_manifest(os.path.join(OUT, "adam.golden"), "adam/model.ckpt-3", tf)


def main():
    if sys.argv[1:] == ["--eager-part"]:
        eager_part()
        return
    for d in ("dtypes", "adam", "object"):
        shutil.rmtree(os.path.join(OUT, d), ignore_errors=True)
    os.makedirs(OUT, exist_ok=True)
    subprocess.check_call([sys.executable, os.path.abspath(__file__), "--eager-part"])
    graph_part()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print("make_ckpt_golden: wrote %s (%d bytes)" % (os.path.relpath(OUT, ROOT), total))


if __name__ == "__main__":
    main()
