"""cases.py - the benchmark cases of `make bench`, shared by run.py and the peer scripts.

The shapes, the varlen lengths and the FLOP count are those of bench_recur.c; this file is the
Python copy, so every framework runs exactly the same problem. Standard library only.
"""

# name -> batch B, time steps T, input size I, hidden size H, cell, bidirectional, variable
# lengths, training (forward + backward + SGD update) or inference only.
CASES = {
    "seed":      dict(B=32, T=20,  I=10,  H=50,  cell="lstm", bi=False, varlen=False, train=True),
    "lstm256":   dict(B=64, T=100, I=256, H=256, cell="lstm", bi=False, varlen=False, train=True),
    "lstm512":   dict(B=64, T=50,  I=512, H=512, cell="lstm", bi=False, varlen=False, train=True),
    "bilstm256": dict(B=64, T=100, I=256, H=256, cell="lstm", bi=True,  varlen=False, train=True),
    "varlen":    dict(B=64, T=100, I=256, H=256, cell="lstm", bi=False, varlen=True,  train=True),
    "padded":    dict(B=64, T=100, I=256, H=256, cell="lstm", bi=False, varlen=False, train=True),
    "gru256":    dict(B=64, T=100, I=256, H=256, cell="gru",  bi=False, varlen=False, train=True),
    "infer1":    dict(B=1,  T=100, I=256, H=256, cell="lstm", bi=False, varlen=False, train=False),
}

# Cases that only recur runs: "padded" is the varlen batch without its lengths, the baseline
# for recur's own variable-length speed-up.
RECUR_ONLY = {"padded"}

DESCRIPTIONS = {
    "seed": "LSTM B32 T20 10->50, train",
    "lstm256": "LSTM B64 T100 256->256, train",
    "lstm512": "LSTM B64 T50 512->512, train",
    "bilstm256": "BiLSTM B64 T100 256->256, train",
    "varlen": "LSTM B64 len 10..100 256->256, train",
    "padded": "varlen batch padded to 100, no lengths",
    "gru256": "GRU B64 T100 256->256, train",
    "infer1": "LSTM B1 T100 256->256, inference",
}

DEFAULT_ITERS = {True: 20, False: 100}  # timed iterations: training cases, inference cases
# Millisecond-scale cases get more, so that their medians hold still on a shared machine; recur's
# padded case runs in turns with varlen (bench_recur --paired-with), and gets this many pairs.
CASE_ITERS = {"seed": 1100, "infer1": 1100, "padded": 100}
# Interleaved rounds per case (run.py): each a process per framework. The millisecond-scale
# cases cost little per round and sample more stretches of the machine's drifting speed.
DEFAULT_ROUNDS = 5
CASE_ROUNDS = {"seed": 11, "infer1": 11}
# Cases whose bar is a ratio to the peers at the millisecond scale: in each round recur runs
# before and after every peer (run.py), and each peer run is compared with the two recur runs
# around it, seconds apart, instead of with recur's median over the whole case.
BRACKETED = {"seed", "infer1"}
QUICK_ITERS = {True: 3, False: 10}
# Untimed iterations before the timed ones (as bench_recur): at least WARMUP of them, and for
# at least WARMUP_S seconds. On a virtual machine a core that was idle comes back slowly: the
# first ~150 ms of a two-thread run go at a third of the speed whoever runs, which would be most
# of a millisecond-scale case's timed iterations.
WARMUP = 3
WARMUP_S = 0.5


def lengths(batch):
    """The varlen case's sequence lengths: bench_lengths() of bench_recur.c, bit for bit."""
    s, out = 12345, []
    for _ in range(batch):
        s = (s * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append(10 + (s >> 33) % 91)
    return out


def flops(case):
    """Matrix-product FLOPs of one iteration, the count bench_recur.c prints.

    One step of one LSTM direction is 8*B*H*(I+H) forward (the four gates' products), GRU 6*,
    a basic RNN 2*; backward is twice the forward, so a training iteration is 3x the forward.
    The varlen case counts the steps really run (the mean length), not the padded 100.
    """
    c = CASES[case]
    per = {"lstm": 8.0, "gru": 6.0, "rnn": 2.0}[c["cell"]] * c["B"] * c["H"] * (c["I"] + c["H"])
    steps = sum(lengths(c["B"])) / c["B"] if c["varlen"] else c["T"]
    return per * steps * (2 if c["bi"] else 1) * (3 if c["train"] else 1)


def peer_main(run_case, framework, argv=None):
    """Command line shared by the peer scripts: CASE [--iters N] [--threads N] [--variant V].

    run_case(case_dict, iters, threads, variant) returns (list of per-iteration ms, extra dict);
    this prints the JSON line run.py reads, with the process's peak RSS (ru_maxrss) at the end.
    An ImportError prints {"error": "not installed"} and exits with status 3.
    """
    import argparse
    import json
    import resource

    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--iters", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variant", default="")
    a = ap.parse_args(argv)
    c = dict(CASES[a.case], name=a.case)
    iters = a.iters or CASE_ITERS.get(a.case) or DEFAULT_ITERS[c["train"]]
    try:
        ms, extra = run_case(c, iters, a.threads, a.variant)
    except ImportError as e:  # the framework (or a part of it) is missing: run.py says so
        print(json.dumps({"case": a.case, "framework": framework, "error": "not installed", "detail": str(e)}), flush=True)
        raise SystemExit(3)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    rec = {"case": a.case, "framework": framework, "threads": a.threads, "flops": flops(a.case),
           "rss_mb": round(rss_mb, 1), "ms": [round(x, 4) for x in ms]}
    rec.update(extra)
    print(json.dumps(rec), flush=True)


def timed(step, iters, warmup=WARMUP):
    """Run step() at least warmup times and for WARMUP_S seconds, then iters times; return the
    timed iterations in ms and the CPU use (process CPU seconds per wall second over the timed
    iterations: about 2 with 2 threads)."""
    import os
    import time

    t_end = time.perf_counter() + WARMUP_S
    n = 0
    while n < warmup or time.perf_counter() < t_end:
        step()
        n += 1
    ms = []
    c0, w0 = os.times(), time.perf_counter()
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t0) * 1e3)
    c1, wall = os.times(), time.perf_counter() - w0
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return ms, round(cpu / wall, 2) if wall > 0 else None
