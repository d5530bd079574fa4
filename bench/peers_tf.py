"""peers_tf.py - TensorFlow's side of `make bench`: one case per process, one JSON line out.

    python3 bench/peers_tf.py CASE --variant v1|keras [--iters N] [--threads 2]

Same problem as bench_recur.c (shapes, input values, lengths; loss = mean of the outputs, SGD
with lr 0.01 on every weight), in TensorFlow's two styles:

  v1     tf.compat.v1 in graph mode (eager execution disabled), the style recur mirrors:
         dynamic_rnn over BasicLSTMCell / GRUCell, bidirectional_dynamic_rnn for bilstm256,
         sequence_length for varlen; a Session with intra_op=N, inter_op=1 threads. Needs
         TF_USE_LEGACY_KERAS=1 (the compat.v1 cells live in tf_keras since TF 2.16).
  keras  Keras LSTM / GRU / Bidirectional layers (return_sequences) with a mask for varlen,
         trained by a tf.function step (GradientTape + SGD): TF2's graph-compiled path.
         Threads: tf.config.threading intra_op=N, inter_op=1.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases  # noqa: E402


def _inputs(c):
    import numpy as np

    B, T, I = c["B"], c["T"], c["I"]
    x = np.sin(np.arange(B * T * I, dtype=np.float32) * np.float32(0.37)).reshape(B, T, I)
    lengths = np.array(cases.lengths(B), dtype=np.int32) if c["varlen"] else None
    return x, lengths


def run_v1(c, iters, threads):
    import tensorflow as tf

    v1 = tf.compat.v1
    v1.disable_eager_execution()
    v1.set_random_seed(1)
    x_np, len_np = _inputs(c)
    B, T, I, H = c["B"], c["T"], c["I"], c["H"]
    x = v1.placeholder(tf.float32, [B, T, I], name="x")
    seq = v1.placeholder(tf.int32, [B], name="len") if c["varlen"] else None

    def cell():
        return v1.nn.rnn_cell.GRUCell(H) if c["cell"] == "gru" else v1.nn.rnn_cell.BasicLSTMCell(H)

    if c["bi"]:
        (fw, bw), _ = v1.nn.bidirectional_dynamic_rnn(cell(), cell(), x, sequence_length=seq, dtype=tf.float32)
        out = tf.concat([fw, bw], 2)
    else:
        out, _ = v1.nn.dynamic_rnn(cell(), x, sequence_length=seq, dtype=tf.float32)
    loss = tf.reduce_mean(out)
    train = v1.train.GradientDescentOptimizer(0.01).minimize(loss) if c["train"] else None
    config = v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
    sess = v1.Session(config=config)
    sess.run(v1.global_variables_initializer())
    feed = {x: x_np}
    if seq is not None:
        feed[seq] = len_np
    fetch = [loss, train] if c["train"] else out
    ms, cpu = cases.timed(lambda: sess.run(fetch, feed_dict=feed), iters)
    extra = {"variant": "v1", "graph_mode": not tf.executing_eagerly(),
             "threads_used": {"intra_op": config.intra_op_parallelism_threads, "inter_op": config.inter_op_parallelism_threads}}
    sess.close()
    return ms, extra, cpu


def run_keras(c, iters, threads):
    import tensorflow as tf

    try:  # Keras 3 when installed (TF's default Keras since 2.16), else tf.keras
        import keras
    except ImportError:
        keras = tf.keras
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(1)
    x_np, len_np = _inputs(c)
    B, T, I, H = c["B"], c["T"], c["I"], c["H"]
    layer = (keras.layers.GRU if c["cell"] == "gru" else keras.layers.LSTM)(H, return_sequences=True)
    if c["bi"]:
        layer = keras.layers.Bidirectional(layer, merge_mode="concat")
    layer.build((B, T, I))
    x = tf.constant(x_np)
    mask = tf.sequence_mask(len_np, T) if c["varlen"] else None
    opt = keras.optimizers.SGD(learning_rate=0.01)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(layer(x, mask=mask, training=True))
        grads = tape.gradient(loss, layer.trainable_variables)
        opt.apply_gradients(zip(grads, layer.trainable_variables))
        return loss

    @tf.function
    def infer_step():
        return layer(x, mask=mask, training=False)

    step = train_step if c["train"] else infer_step
    ms, cpu = cases.timed(lambda: step().numpy(), iters)  # .numpy(): wait for the result
    extra = {"variant": "keras", "keras_version": keras.__version__,
             "threads_used": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                              "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}}
    return ms, extra, cpu


def run_case(c, iters, threads, variant):
    import tensorflow as tf

    ms, extra, cpu = (run_keras if variant == "keras" else run_v1)(c, iters, threads)
    extra.update(version=tf.__version__, cpu_util=cpu)
    return ms, extra


if __name__ == "__main__":
    variant = "keras" if "keras" in sys.argv else "v1"
    cases.peer_main(run_case, "keras" if variant == "keras" else "tf.compat.v1")
