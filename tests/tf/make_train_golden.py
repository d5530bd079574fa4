"""Three training steps of each TensorFlow 1.x optimizer on a small model with a dense layer and
an embedding lookup (a sparse gradient), recorded into tests/golden/train/<case>.golden
(format: tests/golden.h): the initial values, the batch, then after every step the loss and
every global variable (weights, slot variables such as w/Adam and w/Adam_1, beta1_power,
global_step).

Model: logits = (x + sum(gather(emb, ids), 1)) @ w + b, loss = mean(sparse_softmax_xent).
Run from the repository root: python3 tests/tf/make_train_golden.py [--check]
"""
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
tf1.disable_eager_execution()
tf1.disable_resource_variables()

CASES = [
    ("sgd", lambda lr: tf1.train.GradientDescentOptimizer(lr), 0.5, {}),
    ("momentum", lambda lr: tf1.train.MomentumOptimizer(lr, 0.9), 0.1, {}),
    ("nesterov", lambda lr: tf1.train.MomentumOptimizer(lr, 0.8, use_nesterov=True), 0.1, {}),
    ("adam", lambda lr: tf1.train.AdamOptimizer(lr), 0.05, {}),
    ("adam_betas", lambda lr: tf1.train.AdamOptimizer(lr, beta1=0.5, beta2=0.9, epsilon=1e-4), 0.05, {}),
    ("adagrad", lambda lr: tf1.train.AdagradOptimizer(lr), 0.3, {}),
    ("rmsprop", lambda lr: tf1.train.RMSPropOptimizer(lr), 0.01, {}),
    ("rmsprop_momentum", lambda lr: tf1.train.RMSPropOptimizer(lr, momentum=0.7), 0.01, {}),
    ("adam_decay_clip", lambda lr: tf1.train.AdamOptimizer(lr), 0.05, {"decay": (2.0, 0.5, True), "clip": 0.5}),
]

def dump(out, name, value):
    v = np.asarray(value)
    dt = {np.dtype("float32"): "float32", np.dtype("int64"): "int64", np.dtype("int32"): "int32"}[v.dtype]
    out.append(("tensor %s %s %d %s" % (name, dt, v.ndim, " ".join(str(d) for d in v.shape))).rstrip())
    flat = v.reshape(-1)
    f = "%.9g" if dt == "float32" else "%d"
    for i in range(0, len(flat), 8):
        out.append(" ".join(f % x for x in flat[i:i + 8]))


def run_case(name, make, lr, extra):
    rng = np.random.RandomState(sum(map(ord, name)))
    out = ["# tests/tf/make_train_golden.py, TensorFlow %s" % tf.__version__, "meta case %s" % name,
           "meta lr %r" % lr]
    if "decay" in extra:
        out.append("meta decay %r %r %d" % extra["decay"])
    if "clip" in extra:
        out.append("meta clip %r" % extra["clip"])
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [4, 3], name="x")
        ids = tf1.placeholder(tf.int32, [4, 2], name="ids")
        y = tf1.placeholder(tf.int32, [4], name="y")
        emb = tf1.get_variable("emb", [10, 3])
        with tf1.variable_scope("dense"):
            w = tf1.get_variable("w", [3, 2])
            b = tf1.get_variable("b", [2])
        h = x + tf.reduce_sum(tf.gather(emb, ids), 1)
        logits = tf.matmul(h, w) + b
        loss = tf.reduce_mean(tf1.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        gs = tf1.train.get_or_create_global_step()
        rate = lr
        if "decay" in extra:
            ds, dr, st = extra["decay"]
            rate = tf1.train.exponential_decay(lr, gs, ds, dr, staircase=st)
        opt = make(rate)
        gv = opt.compute_gradients(loss)
        if "clip" in extra:
            grads, _ = tf.clip_by_global_norm([g for g, _ in gv], extra["clip"])
            gv = list(zip(grads, [v for _, v in gv]))
        train = opt.apply_gradients(gv, global_step=gs)
        feed = {x: rng.uniform(-1, 1, (4, 3)).astype(np.float32),
                ids: np.array([[1, 3], [3, 3], [0, 9], [1, 5]], np.int32),
                y: np.array([0, 1, 1, 0], np.int32)}
        with tf1.Session() as s:
            s.run(tf1.global_variables_initializer())
            for v in (emb, w, b):
                s.run(v.assign(rng.uniform(-0.5, 0.5, v.shape).astype(np.float32)))
            out.append("meta vars %s" % " ".join(v.op.name for v in tf1.global_variables()))
            dump(out, "x", feed[x])
            dump(out, "ids", feed[ids])
            dump(out, "y", feed[y])
            for v in (emb, w, b):
                dump(out, "init/" + v.op.name, s.run(v))
            for step in range(3):
                l, _ = s.run([loss, train], feed)
                dump(out, "step%d/loss" % step, np.float32(l))
                for v in tf1.global_variables():
                    dump(out, "step%d/%s" % (step, v.op.name), s.run(v))
    return "\n".join(out) + "\n"


def main():
    os.makedirs(os.path.join("tests", "golden", "train"), exist_ok=True)
    stale = False
    for name, make, lr, extra in CASES:
        text = run_case(name, make, lr, extra)
        path = os.path.join("tests", "golden", "train", name + ".golden")
        if "--check" in sys.argv:
            if not os.path.exists(path) or open(path).read() != text:
                print("%s is OUT OF DATE" % path)
                stale = True
            continue
        with open(path, "w") as f:
            f.write(text)
    print("%d optimizer cases %s" % (len(CASES), "checked" if "--check" in sys.argv else "written"))
    sys.exit(1 if stale else 0)


if __name__ == "__main__":
    main()
