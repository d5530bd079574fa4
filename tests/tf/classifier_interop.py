#!/usr/bin/env python3
"""The classifier of `recur train / predict / eval`, moved both ways between TensorFlow and recur.

Run from the repository root, after `make` (CI does not need TensorFlow; it runs
tests/test_interop.c on the committed golden model instead):

    python3 tests/tf/classifier_interop.py                 # both checks below
    python3 tests/tf/classifier_interop.py --write-golden  # retrain tests/golden/classifier_tf/ in TensorFlow
    python3 tests/tf/classifier_interop.py --only tf2recur # or recur2tf

tf2recur   the model committed in tests/golden/classifier_tf/ was trained here, in TensorFlow:
           TensorFlow restores it and predicts sentences.tsv again (it must reproduce
           probs.golden), then `recur predict` and `recur eval` run on the same directory and
           must agree with TensorFlow within 1e-5.
recur2tf   `recur train` trains a small model on a subset of rt-polarity; tf.train.load_checkpoint
           must list exactly the variables TensorFlow's own Saver writes for the same training
           graph (Adam slots, beta powers and global_step included, same dtypes and shapes);
           tf.compat.v1.train.Saver restores the checkpoint into that training graph and into
           the inference graph, and TensorFlow's probabilities must agree with `recur predict`
           within 1e-5.

The TensorFlow program is the one tools/classifier.c mirrors, with the same data handling:
whitespace tokens (blank, tab, CR, LF), vocabulary = <pad> (id 0), <unk> (id 1), then the
training words seen at least min_count times by descending count (ties in byte order);
sentences truncated to max_len words; a batch padded with id 0 to its longest sentence;
bidirectional_dynamic_rnn with the sentence lengths; padded steps get -1e9 before the max over
time; dropout is fed keep_prob 1 at inference. Exit status 1 when a check fails, with the
largest difference.
"""
import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
tf1.disable_eager_execution()
tf1.disable_resource_variables()
tf.get_logger().setLevel("ERROR")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GOLDEN = os.path.join(ROOT, "tests", "golden", "classifier_tf")
TOL = 1e-5
PREDICT_BATCH = 64  # recur predict's batch size

# The committed golden model: small, so that the directory stays near 200 KB.
GOLDEN_CFG = dict(embed=16, hidden=16, classes=2, max_len=40, min_count=20, keep=0.8, lr=0.005, clip=5.0,
                  batch=32, steps=300, seed=1)
GOLDEN_SENTENCES = 200  # the first dev sentences
# Edge cases appended to the golden sentences: only unknown words, one word, longer than
# max_len, repeated words, punctuation only.
EXTRA_SENTENCES = [
    (0, "zqxj-unknown-1 zqxj-unknown-2 zqxj-unknown-3"),
    (1, "good"),
    (1, " ".join(["a", "moving", "and", "funny", "film", ","] * 12)),
    (0, "bad bad bad bad bad boring"),
    (0, ". . . !"),
]


# ============================================================================ data

def tokenize(text):
    return [w for w in re.split(rb"[ \t\r\n]+", text) if w]


def read_tsv(path):
    """label<TAB>text lines as recur reads a labelled file: [(label, [tokens])]."""
    out = []
    with open(path, "rb") as f:
        for lineno, line in enumerate(f.read().split(b"\n"), 1):
            line = line.rstrip(b"\r")
            if lineno == 1 and line.startswith(b"label\t"):
                continue
            label, sep, text = line.partition(b"\t")
            if not sep or not re.fullmatch(rb"[0-9]+", label):
                continue
            toks = tokenize(text)
            if toks:
                out.append((int(label), toks))
    return out


def write_tsv(path, rows):
    with open(path, "wb") as f:
        f.write(b"label\ttext\n")
        for label, toks in rows:
            f.write(b"%d\t%s\n" % (label, b" ".join(toks)))


def build_vocab(data, min_count):
    counts = {}
    for _, toks in data:
        for w in toks:
            counts[w] = counts.get(w, 0) + 1
    words = sorted(counts, key=lambda w: (-counts[w], w))
    return [b"<pad>", b"<unk>"] + [w for w in words if counts[w] >= min_count]


def make_batch(rows, index, max_len):
    """ids [n, T] (0-padded), lengths [n], labels [n], as recur's make_batch."""
    lens = [min(len(rows[i][1]), max_len) for i in range(len(rows))]
    T = max([1] + lens)
    ids = np.zeros((len(rows), T), np.int32)
    for i, (_, toks) in enumerate(rows):
        ids[i, :lens[i]] = [index.get(w, 1) for w in toks[:lens[i]]]
    return ids, np.array(lens, np.int32), np.array([max(lab, 0) for lab, _ in rows], np.int32)


def read_config(d):
    cfg = {}
    for line in open(os.path.join(d, "config.txt")):
        k, v = line.split()
        cfg[k] = int(v) if v.isdigit() else v
    assert cfg["cell"] == "lstm" and cfg["features"] == "max_pool", cfg
    return cfg


def read_vocab(d):
    with open(os.path.join(d, "vocab.txt"), "rb") as f:
        return [w.rstrip(b"\r") for w in f.read().split(b"\n")[:-1]]


# ============================================================================ the model

class Model:
    """The graph of tools/classifier.c build(): same scopes, names and arithmetic."""

    def __init__(self, cfg, training):
        self.ids = tf1.placeholder(tf.int32, [None, None], name="ids")
        self.lengths = tf1.placeholder(tf.int32, [None], name="lengths")
        self.keep = tf1.placeholder(tf.float32, [], name="keep_prob")
        emb = tf1.get_variable("embedding", [cfg["vocab"], cfg["embed"]],
                               initializer=tf1.random_uniform_initializer(-0.1, 0.1))
        x = tf1.nn.dropout(tf1.nn.embedding_lookup(emb, self.ids), keep_prob=self.keep)
        fw = tf1.nn.rnn_cell.BasicLSTMCell(cfg["hidden"])
        bw = tf1.nn.rnn_cell.BasicLSTMCell(cfg["hidden"])
        (out_fw, out_bw), _ = tf1.nn.bidirectional_dynamic_rnn(fw, bw, x, sequence_length=self.lengths,
                                                               dtype=tf.float32)
        out = tf.concat([out_fw, out_bw], 2)
        mask = tf.sequence_mask(self.lengths, dtype=tf.float32)  # maxlen: the longest sentence
        feat = tf.reduce_max(out + tf.expand_dims((mask - 1.0) * 1e9, 2), axis=1)
        feat = tf1.nn.dropout(feat, keep_prob=self.keep)
        self.logits = tf1.layers.dense(feat, cfg["classes"], name="dense")
        self.probs = tf.nn.softmax(self.logits)
        if training:
            self.labels = tf1.placeholder(tf.int32, [None], name="labels")
            self.lr = tf1.placeholder(tf.float32, [], name="learning_rate")
            self.loss = tf.reduce_mean(tf1.nn.sparse_softmax_cross_entropy_with_logits(labels=self.labels,
                                                                                       logits=self.logits))
            self.global_step = tf1.train.get_or_create_global_step()
            opt = tf1.train.AdamOptimizer(self.lr)
            grads, tvars = zip(*opt.compute_gradients(self.loss))
            if cfg.get("clip", 0) > 0:
                grads, _ = tf.clip_by_global_norm(grads, cfg["clip"])
            self.train = opt.apply_gradients(zip(grads, tvars), global_step=self.global_step)


def session():
    return tf1.Session(config=tf1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1))


def predict(m, s, rows, index, max_len):
    """Probabilities [n, classes], in batches of recur predict's size."""
    out = []
    for i in range(0, len(rows), PREDICT_BATCH):
        ids, lens, _ = make_batch(rows[i:i + PREDICT_BATCH], index, max_len)
        out.append(s.run(m.probs, {m.ids: ids, m.lengths: lens, m.keep: 1.0}))
    return np.concatenate(out)


def tf_predict_dir(d, rows):
    """Restore the latest checkpoint of model directory d into the inference graph; predict."""
    cfg, vocab = read_config(d), read_vocab(d)
    assert len(vocab) == cfg["vocab"], (len(vocab), cfg["vocab"])
    index = {w: i for i, w in enumerate(vocab)}
    with tf.Graph().as_default():
        m = Model(cfg, training=False)
        with session() as s:
            tf1.train.Saver().restore(s, tf.train.latest_checkpoint(d))
            return predict(m, s, rows, index, cfg["max_len"])


def training_graph_variables(cfg):
    """{name: (dtype, shape)} of every global variable of the TensorFlow training graph: what
    tf1.train.Saver() writes for it."""
    with tf.Graph().as_default():
        Model(cfg, training=True)
        return {v.op.name: (v.dtype.base_dtype.name, v.shape.as_list()) for v in tf1.global_variables()}


# ============================================================================ recur

def recur_bin():
    path = os.path.join(ROOT, "build", "release", "recur")
    if not os.path.exists(path):
        sys.exit("%s not found: run make first" % path)
    return path


def recur_predict(d, path):
    """[(label, probability)] from `recur predict`."""
    out = subprocess.run([recur_bin(), "predict", "--model", d, path], check=True, capture_output=True).stdout
    return [(int(a), float(b)) for a, b in (line.split(b"\t") for line in out.splitlines())]


def recur_eval(d, path):
    out = subprocess.run([recur_bin(), "eval", "--model", d, path], check=True, capture_output=True).stdout.decode()
    assert out.startswith("accuracy: "), out
    return float(out.split()[1])


def compare(tf_probs, recur_out, what):
    """Largest |TF - recur| over the probability recur printed (6 decimals); recur's label must
    be TensorFlow's argmax unless the two classes are within the tolerance."""
    assert len(recur_out) == len(tf_probs), (len(recur_out), len(tf_probs))
    worst = 0.0
    for i, (label, p) in enumerate(recur_out):
        diff = abs(float(tf_probs[i][label]) - p)
        if tf_probs[i].max() - tf_probs[i][label] > TOL:
            print("%s: sentence %d: recur says class %d, TensorFlow %d (%s)" % (what, i + 1, label,
                                                                                tf_probs[i].argmax(), tf_probs[i]))
            diff = max(diff, float(tf_probs[i].max() - tf_probs[i][label]))
        worst = max(worst, diff)
    return worst


def accuracy(probs, rows):
    return float(np.mean([int(np.argmax(p)) == lab for p, (lab, _) in zip(probs, rows)]))


# ============================================================================ golden files

def write_probs(path, probs, header):
    lines = ["# generated by tests/tf/classifier_interop.py --write-golden; do not edit"] + header
    lines.append("tensor probs float32 2 %d %d" % probs.shape)
    lines += [" ".join("%.9g" % v for v in row) for row in probs.astype(np.float32)]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def read_probs(path):
    lines = open(path).read().split("\n")
    i = next(k for k, line in enumerate(lines) if line.startswith("tensor probs "))
    n, c = map(int, lines[i].split()[4:6])
    return np.array([[float(v) for v in line.split()] for line in lines[i + 1:i + 1 + n]], np.float32).reshape(n, c)


def write_golden(data_dir):
    cfg = dict(GOLDEN_CFG)
    train = read_tsv(os.path.join(data_dir, "train.tsv"))
    dev = read_tsv(os.path.join(data_dir, "dev.tsv"))
    vocab = build_vocab(train, cfg["min_count"])
    cfg["vocab"] = len(vocab)
    index = {w: i for i, w in enumerate(vocab)}
    rows = dev[:GOLDEN_SENTENCES] + [(lab, tokenize(t.encode())) for lab, t in EXTRA_SENTENCES]
    if os.path.isdir(GOLDEN):
        shutil.rmtree(GOLDEN)
    os.makedirs(GOLDEN)
    with open(os.path.join(GOLDEN, "config.txt"), "w") as f:
        f.write("embed %d\nhidden %d\nclasses %d\nvocab %d\nmax_len %d\ncell lstm\nfeatures max_pool\n"
                % (cfg["embed"], cfg["hidden"], cfg["classes"], cfg["vocab"], cfg["max_len"]))
    with open(os.path.join(GOLDEN, "vocab.txt"), "wb") as f:
        f.write(b"".join(w + b"\n" for w in vocab))
    write_tsv(os.path.join(GOLDEN, "sentences.tsv"), rows)

    rng = np.random.RandomState(cfg["seed"])
    random.seed(cfg["seed"])  # the Keras-backed cell and dense initializers draw their seeds from it
    with tf.Graph().as_default():
        tf1.set_random_seed(cfg["seed"])
        m = Model(cfg, training=True)
        saver = tf1.train.Saver(max_to_keep=1, save_relative_paths=True)
        with session() as s:
            s.run(tf1.global_variables_initializer())
            order, pos, losses = [], 0, []
            for step in range(cfg["steps"]):
                if pos + cfg["batch"] > len(order):
                    order, pos = rng.permutation(len(train)), 0
                ids, lens, labels = make_batch([train[i] for i in order[pos:pos + cfg["batch"]]], index, cfg["max_len"])
                pos += cfg["batch"]
                loss, _ = s.run([m.loss, m.train], {m.ids: ids, m.lengths: lens, m.labels: labels,
                                                    m.keep: cfg["keep"], m.lr: cfg["lr"]})
                losses.append(loss)
            prefix = saver.save(s, os.path.join(GOLDEN, "model.ckpt"), global_step=m.global_step,
                                write_meta_graph=False)
            # the training graph's own probabilities, for the record: the restored inference
            # graph must give the same
            train_graph_probs = predict(m, s, rows, index, cfg["max_len"])
    probs = tf_predict_dir(GOLDEN, rows)
    assert np.array_equal(probs, train_graph_probs), np.abs(probs - train_graph_probs).max()
    dev_acc = accuracy(probs[:GOLDEN_SENTENCES], rows)
    write_probs(os.path.join(GOLDEN, "probs.golden"), probs, [
        "meta tensorflow %s" % tf.__version__,
        "meta checkpoint %s" % os.path.basename(prefix),
        "meta training %d steps of batch %d on rt-polarity train.tsv, Adam lr %g, clip %g, keep %g, min_count %d"
        % (cfg["steps"], cfg["batch"], cfg["lr"], cfg["clip"], cfg["keep"], cfg["min_count"]),
        "meta loss first/last 20 steps %.4f %.4f" % (np.mean(losses[:20]), np.mean(losses[-20:])),
        "meta sentences sentences.tsv: the first %d of rt-polarity dev.tsv, then %d edge cases"
        % (GOLDEN_SENTENCES, len(EXTRA_SENTENCES)),
        "meta dev_accuracy %.4f" % dev_acc,
    ])
    size = sum(os.path.getsize(os.path.join(GOLDEN, f)) for f in os.listdir(GOLDEN))
    print("wrote %s: %s, vocabulary %d, %d sentences, dev accuracy %.4f, loss %.4f -> %.4f, %d bytes"
          % (os.path.relpath(GOLDEN, ROOT), os.path.basename(prefix), cfg["vocab"], len(rows), dev_acc,
             np.mean(losses[:20]), np.mean(losses[-20:]), size))


# ============================================================================ the checks

def check_tf2recur():
    sentences = os.path.join(GOLDEN, "sentences.tsv")
    rows = read_tsv(sentences)
    golden = read_probs(os.path.join(GOLDEN, "probs.golden"))
    probs = tf_predict_dir(GOLDEN, rows)
    tf_again = float(np.abs(probs - golden).max())
    worst = compare(golden, recur_predict(GOLDEN, sentences), "tf2recur")
    acc_tf, acc_recur = accuracy(golden, rows), recur_eval(GOLDEN, sentences)
    ok = tf_again <= TOL and worst <= TOL and abs(acc_tf - acc_recur) < 1e-4
    print("tf2recur: %d sentences; TensorFlow again vs probs.golden: max |diff| %.3g; recur predict vs "
          "TensorFlow: max |diff| %.3g; accuracy TensorFlow %.4f, recur eval %.4f: %s"
          % (len(rows), tf_again, worst, acc_tf, acc_recur, "ok" if ok else "FAILED"))
    return ok


def check_recur2tf(data_dir, keep_dir=None):
    cfg = dict(embed=16, hidden=16, max_len=40)
    tmp = tempfile.mkdtemp(prefix="recur_interop_")
    try:
        train, dev = read_tsv(os.path.join(data_dir, "train.tsv")), read_tsv(os.path.join(data_dir, "dev.tsv"))
        write_tsv(os.path.join(tmp, "train.tsv"), train[:3000])
        write_tsv(os.path.join(tmp, "dev.tsv"), dev[:300] + [(lab, tokenize(t.encode())) for lab, t in EXTRA_SENTENCES])
        d = os.path.join(tmp, "model")
        subprocess.run([recur_bin(), "train", "--train", os.path.join(tmp, "train.tsv"), "--dev",
                        os.path.join(tmp, "dev.tsv"), "--out", d, "--epochs", "3", "--embed", str(cfg["embed"]),
                        "--hidden", str(cfg["hidden"]), "--max-len", str(cfg["max_len"]), "--min-count", "2",
                        "--batch", "32", "--lr", "0.005", "--seed", "3", "--threads", "1"],
                       check=True, capture_output=True)
        cfg = read_config(d)
        ok = True

        # 1. the checkpoint holds exactly what TensorFlow's Saver writes for the training graph
        latest = tf.train.latest_checkpoint(d)
        if not latest:
            print("recur2tf: tf.train.latest_checkpoint finds no checkpoint in recur's %s: FAILED" % d)
            return False
        reader = tf.train.load_checkpoint(latest)
        got = {k: (reader.get_variable_to_dtype_map()[k].name, list(v))
               for k, v in reader.get_variable_to_shape_map().items()}
        want = training_graph_variables(cfg)
        if got != want:
            ok = False
            for k in sorted(set(got) | set(want)):
                if got.get(k) != want.get(k):
                    print("recur2tf: %s: recur wrote %s, TensorFlow expects %s" % (k, got.get(k), want.get(k)))
        step = int(os.path.basename(latest).split("-")[-1])
        if reader.get_tensor("global_step") != step:
            ok = False
            print("recur2tf: global_step %s in %s" % (reader.get_tensor("global_step"), latest))

        # 2. TensorFlow's Saver restores it into the full training graph (every slot) ...
        with tf.Graph().as_default():
            Model(cfg, training=True)
            with session() as s:
                tf1.train.Saver().restore(s, latest)
                b1 = s.run(next(v for v in tf1.global_variables() if v.op.name == "beta1_power"))
        if abs(b1 - 0.9 ** (step + 1)) > 1e-4 * 0.9 ** (step + 1):  # beta1, times beta1 after each step
            ok = False
            print("recur2tf: beta1_power %.9g after %d steps, expected 0.9^%d = %.9g" % (b1, step, step + 1,
                                                                                      0.9 ** (step + 1)))

        # 3. ... and into the inference graph, whose predictions must be recur's
        sentences = os.path.join(tmp, "dev.tsv")
        rows = read_tsv(sentences)
        probs = tf_predict_dir(d, rows)
        worst = compare(probs, recur_predict(d, sentences), "recur2tf")
        acc_tf, acc_recur = accuracy(probs, rows), recur_eval(d, sentences)
        ok = ok and worst <= TOL and abs(acc_tf - acc_recur) < 1e-4
        print("recur2tf: %s (vocabulary %d, %d variables in the checkpoint, all as TensorFlow names them); "
              "%d sentences: TensorFlow vs recur predict: max |diff| %.3g; accuracy TensorFlow %.4f, recur eval "
              "%.4f: %s" % (os.path.basename(latest), cfg["vocab"], len(got), len(rows), worst, acc_tf, acc_recur,
                            "ok" if ok else "FAILED"))
        if keep_dir:
            shutil.copytree(tmp, keep_dir, dirs_exist_ok=True)
        return ok
    finally:
        shutil.rmtree(tmp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write-golden", action="store_true", help="retrain tests/golden/classifier_tf/ in TensorFlow")
    ap.add_argument("--only", choices=["tf2recur", "recur2tf"])
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "rt-polarity"),
                    help="directory with train.tsv and dev.tsv (default: ../shared/data/rt-polarity)")
    ap.add_argument("--keep", metavar="DIR", help="copy recur2tf's data and model directory here")
    args = ap.parse_args()
    if args.write_golden:
        write_golden(args.data)
        return
    ok = True
    if args.only in (None, "tf2recur"):
        ok = check_tf2recur() and ok
    if args.only in (None, "recur2tf"):
        ok = check_recur2tf(args.data, args.keep) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
