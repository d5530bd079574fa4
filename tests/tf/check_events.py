#!/usr/bin/env python3
"""TensorBoard event files written by recur, checked with TensorBoard's own loader.

Usage, from the repository root (run by hand; CI does not need TensorFlow):

    RECUR_EVENTS_OUT=/tmp/ev build/release/tests/test_events   # leaves the event file there
    python3 tests/tf/check_events.py /tmp/ev                    # loads it with TensorBoard

    python3 tests/tf/check_events.py --golden                   # rewrites the histogram golden

The check loads every event with TensorBoard's loaders (tensorboard.backend.event_processing.
event_file_loader: LegacyEventFileLoader for the raw protos, EventFileLoader for the data-compat
tensors its plugins read; both verify the record framing and CRCs), expects the first event to
be file_version "brain.Event:2", the scalars test_events.c writes, and a histogram equal, field
for field, to the one TensorFlow's own histogram summary op (tf.compat.v1.summary.histogram)
makes from the same values.

--golden writes tests/golden/events_histogram.golden (the golden format of tests/golden.h):
that TensorFlow histogram, which test_events.c compares recur's with in CI.
"""

import glob
import os
import sys

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GOLDEN = os.path.join(ROOT, "tests", "golden", "events_histogram.golden")

SCALARS = [("loss", 0, 2.5), ("loss", 1, 1.25), ("loss", 2, 0.0), ("accuracy/train", 2, 0.75)]
HIST_TAG, HIST_STEP = "weights", 2


def hist_values():
    """The values test_events.c builds (histogram_values): exact in IEEE doubles in both."""
    scale = [1e-2, 1e-1, 1.0, 10.0, 100.0]
    vals = [((i * 37 % 1001) - 500) / 7.0 * scale[i % 5] for i in range(1000)]
    return vals + [0.0, 0.0, 1e-13, -1e-13, 1e25, -1e25, 1e-12, 1.0]


def tensorflow_histogram():
    import numpy as np
    import tensorflow as tf
    from tensorboard.compat.proto import summary_pb2

    tf1 = tf.compat.v1
    tf1.disable_eager_execution()
    with tf.Graph().as_default():
        op = tf1.summary.histogram(HIST_TAG, tf1.constant(np.array(hist_values(), np.float64)))
        with tf1.Session() as s:
            summary = summary_pb2.Summary.FromString(s.run(op))
    return summary.value[0].histo


def write_golden():
    h = tensorflow_histogram()
    import tensorflow as tf

    lines = ["# written by tests/tf/check_events.py --golden with TensorFlow %s" % tf.__version__,
             "# tf.compat.v1.summary.histogram of the values in check_events.py hist_values()"]
    for field in ("min", "max", "num", "sum", "sum_squares"):
        lines.append("meta %s %r" % (field, getattr(h, field)))
    for field in ("bucket_limit", "bucket"):
        vals = list(getattr(h, field))
        lines.append("tensor %s float64 1 %d" % (field, len(vals)))
        lines.append(" ".join(repr(v) for v in vals))
    with open(GOLDEN, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("check_events: wrote %s" % os.path.relpath(GOLDEN, ROOT))


def check(logdir):
    from tensorboard import data_compat
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader, LegacyEventFileLoader
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.util import tensor_util

    files = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
    if len(files) != 1:
        sys.exit("check_events: expected one event file in %s, found %d" % (logdir, len(files)))
    # The raw events (the framing and CRCs are checked while reading).
    raw = list(LegacyEventFileLoader(files[0]).Load())
    assert raw[0].file_version == "brain.Event:2", raw[0]
    scalars, histos = [], []
    for e in raw[1:]:
        for v in e.summary.value:
            if v.HasField("histo"):
                histos.append((v.tag, e.step, v.histo))
            else:
                scalars.append((v.tag, e.step, v.simple_value))
    assert scalars == SCALARS, scalars
    assert len(histos) == 1 and histos[0][:2] == (HIST_TAG, HIST_STEP), histos
    want = tensorflow_histogram()
    assert histos[0][2] == want, "histogram differs from TensorFlow's:\n%s\nvs\n%s" % (histos[0][2], want)
    # What TensorBoard's plugins see: EventFileLoader's data-compat tensors.
    compat = list(EventFileLoader(files[0]).Load())
    assert len(compat) == len(raw)
    got = [(v.tag, e.step, tensor_util.make_ndarray(v.tensor)) for e in compat[1:] for v in e.summary.value]
    for (tag, step, value), (gtag, gstep, garr) in zip(SCALARS, got):
        assert (tag, step, float(garr)) == (gtag, gstep, value), (tag, gtag)
    tf_value = data_compat.migrate_value(summary_pb2.Summary.Value(tag=HIST_TAG, histo=want))
    assert (tensor_util.make_ndarray(tf_value.tensor) == got[-1][2]).all()
    print("check_events: %d events read by TensorBoard's EventFileLoader and LegacyEventFileLoader; "
          "scalars and histogram match TensorFlow's" % len(raw))


if __name__ == "__main__":
    if sys.argv[1:] == ["--golden"]:
        write_golden()
    elif len(sys.argv) == 2:
        check(sys.argv[1])
    else:
        sys.exit(__doc__)
