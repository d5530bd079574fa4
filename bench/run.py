#!/usr/bin/env python3
"""run.py - `make bench`: recur next to PyTorch and TensorFlow on this machine, in one invocation.

    python3 bench/run.py [--cases LIST] [--frameworks LIST] [--iters N] [--quick]
                         [--build build/release] [--data DIR] [--out bench/results/latest.json]

Measures the machine's SGEMM peak (bench/sgemm_peak), then runs every case of bench/cases.py in
every framework, each (case, framework) in a process of its own so that its peak RSS is its
own: recur (bench_recur), PyTorch (peers_torch.py), TensorFlow's tf.compat.v1 graph mode and
Keras (peers_tf.py), and the rt-polarity classifier epoch (recur train, classifier_torch.py).
All run with the same number of threads (2), set through each framework's own knobs and the
OMP/MKL/OpenBLAS environment variables. Prints a table, the bars of bench/README.md as
PASS/MISS lines, and writes everything as JSON to --out. Standard library only.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import cases  # noqa: E402

THREADS = 2  # every framework, every case (the machine's 2 vCPUs)
FRAMEWORKS = ["recur", "pytorch", "tf.compat.v1", "keras"]
ALIASES = {"torch": ["pytorch"], "pytorch": ["pytorch"], "tf": ["tf.compat.v1", "keras"], "tensorflow": ["tf.compat.v1", "keras"],
           "tf-v1": ["tf.compat.v1"], "v1": ["tf.compat.v1"], "tf.compat.v1": ["tf.compat.v1"], "keras": ["keras"], "recur": ["recur"]}
ALL_CASES = list(cases.CASES) + ["classifier"]
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "rt-polarity")
CASE_TIMEOUT = 1800  # seconds for one (case, framework) process


def thread_env(framework):
    """The environment of every benchmark process: the same thread count everywhere."""
    env = dict(os.environ)
    n = str(THREADS)
    env.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, TF_NUM_INTRAOP_THREADS=n,
               TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", KERAS_BACKEND="tensorflow")
    if framework == "tf.compat.v1":
        env["TF_USE_LEGACY_KERAS"] = "1"  # tf.compat.v1.nn.rnn_cell lives in tf_keras since TF 2.16
    else:
        env.pop("TF_USE_LEGACY_KERAS", None)
    return env


def run_json(cmd, framework, timeout=CASE_TIMEOUT):
    """Run one benchmark process; return (record, None) or (None, reason)."""
    try:
        p = subprocess.run(cmd, env=thread_env(framework), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None, "timed out after %d s" % timeout
    except OSError as e:
        return None, str(e)
    recs = []
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            try:
                recs.append(json.loads(line))
            except ValueError:
                pass
    rec = recs[-1] if recs else None
    if rec and len(recs) > 1:  # a paired run (bench_recur --paired-with): the last line, with the others
        rec = dict(rec, paired_records=recs[:-1])
    if rec and rec.get("error") == "not installed":
        return None, "not installed"
    if p.returncode == 0 and rec:
        return rec, None
    lines = [ln.strip() for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
    errs = [ln for ln in lines if "Error" in ln or "error" in ln]
    return None, "exit %d: %s" % (p.returncode, (errs or lines or ["no output"])[-1][:300])


def case_cmd(framework, case, iters, build, sgemm=False):
    if framework == "recur":
        if case == "padded":  # the varlen bar's baseline: in turns with varlen, iteration by iteration
            return [os.path.join(build, "bench_recur"), "varlen", "--paired-with", "padded", "--iters", str(iters),
                    "--threads", str(THREADS)]
        return [os.path.join(build, "bench_recur"), case, "--iters", str(iters), "--threads", str(THREADS)] + \
            (["--sgemm-every", "1"] if sgemm else [])
    py = [sys.executable]
    if framework == "pytorch":
        return py + [os.path.join(HERE, "peers_torch.py"), case, "--iters", str(iters), "--threads", str(THREADS)]
    variant = "v1" if framework == "tf.compat.v1" else "keras"
    return py + [os.path.join(HERE, "peers_tf.py"), case, "--variant", variant, "--iters", str(iters), "--threads", str(THREADS)]


# ------------------------------------------------------------------ machine and SGEMM peak

def machine_info():
    info = {"cpu": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(), "threads_used": THREADS,
            "kernel": platform.release(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            kv = [ln.split(":", 1) for ln in f if ":" in ln]
        first = {}
        for k, v in kv:
            first.setdefault(k.strip(), v.strip())
        info["cpu"] = first.get("model name", info["cpu"])
        info["cpu_family_model"] = "%s/%s" % (first.get("cpu family", "?"), first.get("model", "?"))
        cores = {(p, c) for p, c in zip([v.strip() for k, v in kv if k.strip() == "physical id"],
                                        [v.strip() for k, v in kv if k.strip() == "core id"])}
        info["physical_cores_reported"] = len(cores) or None
        info["avx512"] = "avx512f" in first.get("flags", "").split()
    except OSError:
        pass
    try:
        info["loadavg_at_start"] = os.getloadavg()[0]
    except OSError:
        pass
    return info


def sgemm_peak(build, reps):
    rec, err = run_json([os.path.join(build, "sgemm_peak"), "--n", "2048", "--reps", str(reps), "--threads", "1,%d" % THREADS], "recur")
    if err:
        return {"error": err}
    by_threads = {r["threads"]: r for r in rec["runs"]}
    # The reference peak: the best single-product rate at either thread count. The benchmarks
    # all run with THREADS threads; when 2 vCPUs share one physical core the 1-thread rate can
    # be the higher one, and taking the higher never flatters the "% peak" column.
    best = max(rec["runs"], key=lambda r: r["gflops_best"])
    rec.update(peak_gflops=best["gflops_best"], peak_threads=best["threads"],
               gflops_1thread=by_threads.get(1, {}).get("gflops_best"), gflops_2threads=by_threads.get(THREADS, {}).get("gflops_best"))
    return rec


SGEMM_FLOPS = 2.0 * 2048 ** 3
FRAC_BARS = {"lstm256": 0.80, "lstm512": 0.80, "bilstm256": 0.75, "gru256": 0.75}  # the bars on "% SGEMM"


# ------------------------------------------------------------------ the classifier case

def run_measured(cmd, env, timeout):
    """Run cmd; return (exit status, stdout, stderr, wall seconds, peak RSS in MB of that process).
    The RSS is the child's own ru_maxrss, from wait4 (not the maximum over all children)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=ROOT)
        timer = threading.Timer(timeout, p.kill)
        timer.start()
        _, status, ru = os.wait4(p.pid, 0)
        timer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen from waiting again
        out.seek(0)
        err.seek(0)
        return p.returncode, out.read(), err.read(), wall, round(ru.ru_maxrss / 1024.0, 1)


def classifier(frameworks, quick, build, data):
    """One epoch of the rt-polarity BiLSTM classifier in recur and in PyTorch."""
    train, dev = os.path.join(data, "train.tsv"), os.path.join(data, "dev.tsv")
    if not (os.path.exists(train) and os.path.exists(dev)):
        return [], "skipped: %s not found" % os.path.join(data, "{train,dev}.tsv")
    out, tmp = [], tempfile.mkdtemp(prefix="recur-bench-")
    try:
        if quick:  # smoke run: the first 1600 training sentences (50 batches), same for both
            with open(train, "rb") as f:
                head = f.readlines()[:1601]
            train = os.path.join(tmp, "train-quick.tsv")
            with open(train, "wb") as f:
                f.writelines(head)
        if "recur" in frameworks:
            cmd = [os.path.join(build, "recur"), "train", "--train", train, "--dev", dev, "--out", os.path.join(tmp, "model"),
                   "--epochs", "1", "--threads", str(THREADS)]
            rc, stdout, stderr, wall, rss_mb = run_measured(cmd, thread_env("recur"), CASE_TIMEOUT)
            rec = {"framework": "recur", "process_wall_s": round(wall, 3), "rss_mb": rss_mb}
            for line in stdout.splitlines():  # "epoch 1/1: loss L, dev accuracy A, S s (R batches/s)"
                if line.startswith("epoch 1/"):
                    parts = line.split(", ")
                    rec["epoch_s"] = float(parts[2].split()[0])
                    rec["dev_accuracy"] = float(parts[1].split()[-1])
                    rec["batches_per_s"] = float(parts[2].split("(")[1].split()[0])
            if rc or "epoch_s" not in rec:
                rec = {"framework": "recur", "error": "exit %d: %s" % (rc, (stderr.strip().splitlines() or ["no output"])[-1])}
            else:  # what is not the epoch: loading, building, dev accuracy, checkpoint
                rec["outside_epoch_s"] = round(wall - rec["epoch_s"], 3)
            out.append(rec)
        if "pytorch" in frameworks:
            rec, err = run_json([sys.executable, os.path.join(HERE, "classifier_torch.py"), "--train", train, "--dev", dev,
                                 "--threads", str(THREADS)], "pytorch")
            if rec:
                rec["epoch_s"] = rec["epoch_s"][0]
            out.append(rec or {"framework": "pytorch", "error": err})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out, "quick: first 1600 training sentences" if quick else None


# ------------------------------------------------------------------ table and bars

def fmt_ms(ms):
    return "%.3f" % ms if ms < 10 else "%.1f" % ms if ms < 1000 else "%.0f" % ms


def pct(v):
    return "%6.1f%%" % (100 * v) if v else "     -"


def print_table(results, peak, case_list):
    head = "%-10s %-13s %10s %9s %8s %8s %8s  %s" % ("case", "framework", "ms/iter", "GFLOP/s", "% SGEMM", "% best", "RSS MB",
                                                   "recur vs fastest peer")
    print(head)
    print("-" * len(head))
    for case in case_list:
        rows = [r for r in results if r["case"] == case]
        for r in rows:
            if r.get("status") != "ok":
                print("%-10s %-13s %s" % (case, r["framework"], r["status"]))
                continue
            frac, best = (pct(r.get("frac_same_time")), pct(r.get("frac_best"))) if r["framework"] == "recur" else ("", "")
            note = ""
            if r["framework"] == "recur":
                sp = speedup(results, case)
                note = "%.2fx (%s)" % sp if sp else "-"
                if case == "padded":
                    note = "padded / varlen time, pairs of iterations: %.2fx" % r["pair_ratio_median"] if r.get("pair_ratio_median") else "-"
            print("%-10s %-13s %10s %9.1f %8s %8s %8.1f  %s" % (case, r["framework"], fmt_ms(r["median_ms"]), r["gflops"], frac, best,
                                                          r["rss_mb"], note))


def find(results, case, framework):
    for r in results:
        if r["case"] == case and r["framework"] == framework and r.get("status") == "ok":
            return r
    return None


def speedup(results, case):
    """(fastest peer's ms / recur's ms, that peer) or None. In the bracketed cases
    (cases.BRACKETED) the median over that peer's runs of its median over the geometric mean of
    the medians of the recur runs just before and after it; elsewhere the ratio of the medians."""
    me = find(results, case, "recur")
    peers = [r for r in results if r["case"] == case and r["framework"] != "recur" and r.get("status") == "ok"]
    if not me or not peers:
        return None
    best = min(peers, key=lambda r: r["median_ms"])
    around = me.get("bracket_ratios", {}).get(best["framework"])
    if around:
        return statistics.median(around), best["framework"]
    return best["median_ms"] / me["median_ms"], best["framework"]


# the cases each bar needs: a bar is judged only when all of them were asked for
BAR_CASES = {"seed": ["seed"], "lstm256": ["lstm256"], "lstm512": ["lstm512"], "bilstm256": ["bilstm256"], "varlen": ["varlen"],
             "varlen vs padded": ["varlen", "padded"], "gru256": ["gru256"], "infer1": ["infer1"], "classifier": ["classifier"],
             "lstm256 RSS": ["lstm256"]}


def bars(results, peak, clf, case_list, paired):
    """The bars of bench/README.md that this run can judge: (name, PASS|MISS|SKIP, detail)."""
    out = []

    def frac(case):
        r = find(results, case, "recur")
        return r.get("frac_same_time") if r else None

    def frac_best(case):
        r = find(results, case, "recur")
        return r.get("frac_best") if r else None

    def check(name, case, min_speedup=None, min_frac=None, faster=False):
        sp, fr = speedup(results, case), frac(case)
        if find(results, case, "recur") is None:
            return out.append((name, "SKIP", "recur did not run %s" % case))
        parts, ok = [], True
        if min_speedup or faster:
            if sp is None:
                return out.append((name, "SKIP", "no peer ran %s" % case))
            good = sp[0] >= min_speedup if min_speedup else sp[0] > 1.0
            ok &= good
            me = find(results, case, "recur")
            around = me.get("bracket_ratios", {}).get(sp[1])
            how = ""
            if around:
                peer = find(results, case, sp[1])
                how = " (median of %d runs' ratios to the recur runs around them: %s; ratio of the overall medians %.2fx)" % (
                    len(around), ", ".join("%.2f" % x for x in around), peer["median_ms"] / me["median_ms"])
            parts.append("%.2fx the fastest peer (%s)%s, need %s [%s]" %
                         (sp[0], sp[1], how, ">= %.1fx" % min_speedup if min_speedup else "> 1x", "ok" if good else "miss"))
        if min_frac:
            if fr is None:
                return out.append((name, "SKIP", "no SGEMM rate"))
            ok &= fr >= min_frac
            parts.append("%.0f%% of the SGEMM rate measured alongside, need >= %.0f%% [%s] (best iteration vs best SGEMM: %.0f%%)" %
                         (100 * fr, 100 * min_frac, "ok" if fr >= min_frac else "miss", 100 * (frac_best(case) or 0)))
        out.append((name, "PASS" if ok else "MISS", "; ".join(parts)))

    check("seed", "seed", min_speedup=5)
    for case in ("lstm256", "lstm512", "bilstm256"):
        check(case, case, faster=True, min_frac=FRAC_BARS[case])
    check("varlen", "varlen", min_speedup=1.5)
    v, p = find(results, "varlen", "recur"), find(results, "padded", "recur")
    if v and p and p.get("pair_ratio_median"):
        # each ratio is between two iterations run one right after the other (bench_recur
        # --paired-with): it cancels the machine's drift, which the ratio of the medians of runs
        # seconds or minutes apart does not
        r = p["pair_ratio_median"]
        out.append(("varlen vs padded", "PASS" if r >= 1.6 else "MISS",
                    "recur varlen %.2fx faster than recur padded (median of %d pairs of iterations run in turns, in %d rounds: "
                    "round medians %s; padded's median over varlen's in its own runs %.2fx), need >= 1.6x" %
                    (r, sum(len(x) for x in paired), len(paired), ", ".join("%.2f" % statistics.median(x) for x in paired if x),
                     p["median_ms"] / v["median_ms"])))
    else:
        out.append(("varlen vs padded", "SKIP", "needs recur's varlen and padded"))
    check("gru256", "gru256", faster=True, min_frac=FRAC_BARS["gru256"])
    check("infer1", "infer1", min_speedup=2)
    rc = {r["framework"]: r for r in clf if "error" not in r}
    if "recur" in rc and "pytorch" in rc:
        r = rc["pytorch"]["epoch_s"] / rc["recur"]["epoch_s"]
        out.append(("classifier", "PASS" if r >= 3 else "MISS", "recur's epoch %.2fx faster than PyTorch's, need >= 3x" % r))
    else:
        out.append(("classifier", "SKIP", "needs the classifier epoch in recur and PyTorch"))
    me = find(results, "lstm256", "recur")
    peers = [r for r in results if r["case"] == "lstm256" and r["framework"] != "recur" and r.get("status") == "ok"]
    if me and peers:
        low = min(peers, key=lambda r: r["rss_mb"])
        out.append(("lstm256 RSS", "PASS" if me["rss_mb"] <= low["rss_mb"] else "MISS",
                    "recur %.1f MB, lowest peer %.1f MB (%s)" % (me["rss_mb"], low["rss_mb"], low["framework"])))
    else:
        out.append(("lstm256 RSS", "SKIP", "needs lstm256 in recur and a peer"))
    return [b for b in out if all(c in case_list for c in BAR_CASES[b[0]])]


# ------------------------------------------------------------------ main

def parse_list(text, allowed, aliases=None):
    out = []
    for item in [t.strip() for t in text.split(",") if t.strip()]:
        names = (aliases or {}).get(item, [item])
        for n in names:
            if n not in allowed:
                raise SystemExit("run.py: unknown name '%s' (choose from %s)" % (item, ", ".join(allowed)))
            if n not in out:
                out.append(n)
    return out


def main():
    ap = argparse.ArgumentParser(description="recur vs PyTorch and TensorFlow on this machine (bench/README.md)")
    ap.add_argument("--cases", default=",".join(ALL_CASES), help="comma-separated, from: " + ", ".join(ALL_CASES))
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma-separated: recur, pytorch, tf-v1, keras (tf: both TF styles)")
    ap.add_argument("--iters", type=int, default=0, help="timed iterations per case (default 20 training, 100 inference)")
    ap.add_argument("--quick", action="store_true", help="smoke run: few iterations, a short classifier epoch")
    ap.add_argument("--rounds", type=int, default=0, help="interleaved rounds per case, the iterations shared among them "
                    "(default 5, 11 for seed and infer1; 1 with --quick)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"), help="where bench_recur, sgemm_peak and recur are")
    ap.add_argument("--data", default=DATA, help="rt-polarity folder for the classifier case (train.tsv, dev.tsv)")
    ap.add_argument("--out", default=os.path.join("bench", "results", "latest.json"), help="JSON results (relative to the repository root)")
    a = ap.parse_args()
    case_list = parse_list(a.cases, ALL_CASES)
    frameworks = parse_list(a.frameworks, FRAMEWORKS, ALIASES)
    build = os.path.abspath(a.build)
    for tool in ("bench_recur", "sgemm_peak", "recur"):
        if not os.access(os.path.join(build, tool), os.X_OK):
            raise SystemExit("run.py: %s/%s is missing; run `make bench` (it builds them)" % (build, tool))

    info = machine_info()
    print("recur benchmark: %s, %s logical CPUs, %d threads in every framework%s" %
          (info["cpu"], info["logical_cpus"], THREADS, " (quick run: few iterations)" if a.quick else ""))
    if info.get("loadavg_at_start", 0) > 0.5:
        print("note: load average %.2f at start; other work on the machine makes these numbers noisy" % info["loadavg_at_start"])
    sg = sgemm_peak(build, 3 if a.quick else 10)
    peak = sg.get("peak_gflops")
    if peak:
        info["openblas_core"] = sg["corename"]
        info["openblas_config"] = sg["config"]
        print("SGEMM 2048^3 (OpenBLAS %s kernels): best %.1f GFLOP/s at 1 thread, %.1f at %d threads;"
              " the higher, %.1f, is the peak for '%% best'" %
              (sg["corename"], sg["gflops_1thread"] or 0, sg["gflops_2threads"] or 0, THREADS, peak))
    else:
        print("SGEMM peak: failed (%s); '%% peak' left empty" % sg.get("error"))
    print(flush=True)

    results, versions, missing = [], {}, set()
    def rounds_of(case):
        return a.rounds or (1 if a.quick else cases.CASE_ROUNDS.get(case, cases.DEFAULT_ROUNDS))
    # Cases measured together: "padded" is the baseline of the varlen bar, so its rounds
    # interleave with varlen's and the ratio compares the same stretch of time.
    todo = [c for c in case_list if c in cases.CASES]
    groups = []
    for case in todo:
        if case == "padded" and "varlen" in todo:
            continue
        groups.append([case] + (["padded"] if case == "varlen" and "padded" in todo else []))
    paired = []  # varlen vs padded: each pair of recur's iterations (bench_recur --paired-with), per round
    for group in groups:
        rounds = rounds_of(group[0])
        iters = {}
        for case in group:
            c = cases.CASES[case]
            n = a.iters or (cases.QUICK_ITERS[c["train"]] if a.quick else cases.CASE_ITERS.get(case) or cases.DEFAULT_ITERS[c["train"]])
            iters[case] = max(1, -(-n // rounds))
        entries = [(case, fw) for case in group for fw in frameworks if fw == "recur" or case not in cases.RECUR_ONLY]
        runs = {e: [] for e in entries}  # the records of each round
        errors, sgemm_ms, recur_rss = {}, {case: [] for case in group}, {case: [] for case in group}
        # Rounds: every framework runs the case once per round, in an order that turns round by
        # round, so that all of them sample the same stretch of time on a machine whose speed
        # drifts. In the cases whose bar asks for a fraction of the SGEMM rate, recur's runs after
        # the first interleave reference SGEMMs with its iterations (bench_recur --sgemm-every):
        # their rate is what its "% SGEMM" divides by; its RSS comes from the first run, which
        # holds no SGEMM operands. Elsewhere recur runs as its peers do, with nothing between its
        # iterations: an SGEMM's 48 MB leave the next iteration to start with cold caches.
        # In the bracketed cases (cases.BRACKETED) recur runs before and after every peer run:
        # R P1 R P2 R P3 R, the peers in turns; each peer run's ratio is to the recur runs around
        # it, so that the drift between rounds, and within one, cancels.
        bracketed = group[0] in cases.BRACKETED and ("recur" in frameworks) and len(entries) > 1
        brackets = {}  # peer -> [its median over the geometric mean of the recur medians around it]
        for rnd in range(rounds):
            order = entries[rnd % len(entries):] + entries[:rnd % len(entries)]
            if bracketed:
                peers_now = [e for e in order if e[1] != "recur"]
                order = [(group[0], "recur")]
                for e in peers_now:
                    order += [e, (group[0], "recur")]
            seq = []  # this round's (framework, median) in running order
            for case, fw in order:
                if fw in missing or (case, fw) in errors:
                    continue
                print("  running %-10s %-13s round %d/%d ..." % (case, fw, rnd + 1, rounds), end="", file=sys.stderr, flush=True)
                with_sgemm = fw == "recur" and case in FRAC_BARS and (rnd > 0 or rounds == 1)
                rec, err = run_json(case_cmd(fw, case, iters[case], build, with_sgemm), fw)
                if err:
                    if err == "not installed":
                        missing.add(fw)
                    else:
                        errors[(case, fw)] = "failed: " + err
                    print(" " + err, file=sys.stderr, flush=True)
                    continue
                runs[(case, fw)].append(rec)
                if fw == "recur":
                    sgemm_ms[case] += rec.get("sgemm_ms", [])
                    if not with_sgemm or rounds == 1:
                        recur_rss[case].append(rec["rss_mb"])
                seq.append((fw, statistics.median(rec["ms"])))
                print(" %s ms" % fmt_ms(statistics.median(rec["ms"])), file=sys.stderr, flush=True)
            for i in range(1, len(seq) - 1):
                if bracketed and seq[i][0] != "recur" and seq[i - 1][0] == seq[i + 1][0] == "recur":
                    brackets.setdefault(seq[i][0], []).append(seq[i][1] / (seq[i - 1][1] * seq[i + 1][1]) ** 0.5)
            p = runs.get(("padded", "recur"))
            if p and len(p) == rnd + 1 and p[-1].get("paired_records"):
                # recur's padded run takes turns with varlen iteration by iteration: each pair's
                # two times come from the same tenth of a second
                v = p[-1]["paired_records"][0]["ms"]
                paired.append([b / a for a, b in zip(v, p[-1]["ms"]) if a > 0])
        for case, fw in entries:
            row = {"case": case, "framework": fw}
            if fw in missing:
                row["status"] = "not installed"
            elif (case, fw) in errors:
                row["status"] = errors[(case, fw)]
            elif runs[(case, fw)]:
                ms = [t for rec in runs[(case, fw)] for t in rec["ms"]]
                med, rec = statistics.median(ms), runs[(case, fw)][-1]
                gf = cases.flops(case) / med * 1e-6
                rss = recur_rss[case] if fw == "recur" and recur_rss[case] else [r["rss_mb"] for r in runs[(case, fw)]]
                row.update(status="ok", median_ms=round(med, 4), min_ms=min(ms), iters=len(ms), rounds=len(runs[(case, fw)]),
                           flops=cases.flops(case), gflops=round(gf, 2), rss_mb=max(rss), ms=ms,
                           frac_peak=round(gf / peak, 4) if peak else None)
                # recur's "% SGEMM" and "% best" count the products it performed (flops_done: in
                # training, without the input-gradient product that no op reads)
                done = rec.get("flops_done", cases.flops(case)) if fw == "recur" else cases.flops(case)
                if fw == "recur":
                    row.update(flops_done=done, gflops_done=round(done / med * 1e-6, 2))
                if fw == "recur" and sgemm_ms[case]:
                    ref = SGEMM_FLOPS / statistics.median(sgemm_ms[case]) * 1e-6
                    row.update(sgemm_same_time_ms=sgemm_ms[case], sgemm_same_time_gflops=round(ref, 2),
                               frac_same_time=round(done / med * 1e-6 / ref, 4))
                if fw == "recur" and peak:
                    row["frac_best"] = round(done / min(ms) * 1e-6 / peak, 4)
                if fw == "recur" and brackets:
                    row["bracket_ratios"] = {k: [round(x, 4) for x in v] for k, v in brackets.items()}
                pairs = [x for rnd in paired for x in rnd]
                if case == "padded" and fw == "recur" and pairs:
                    # run in turns with varlen in one process (case_cmd): its RSS holds both models
                    row.update(pair_ratio_median=statistics.median(pairs),
                               note="run in turns with varlen, iteration by iteration, in one process: RSS of both models")
                for k in ("version", "keras_version", "cpu_util", "threads_used", "graph_mode"):
                    if k in rec:
                        row[k] = rec[k]
                if "version" in rec:
                    versions[fw] = rec["version"] + (" (keras %s)" % rec["keras_version"] if "keras_version" in rec else "")
                if fw == "recur" and abs(rec["flops"] - cases.flops(case)) > 1e-6 * cases.flops(case):
                    row["note"] = "bench_recur counts %.0f FLOPs, cases.py %.0f" % (rec["flops"], cases.flops(case))
                    print("  warning: %s" % row["note"], file=sys.stderr)
            else:
                continue
            results.append(row)

    clf, clf_note = [], None
    if "classifier" in case_list:
        print("  running classifier (one epoch, recur and pytorch) ...", file=sys.stderr, flush=True)
        clf, clf_note = classifier(frameworks, a.quick, build, a.data)

    if results:
        print()
        print("ms/iter: median of every timed iteration of the case's interleaved rounds (%s). GFLOP/s: the case's FLOP count (the same\n"
              "for every framework) over that median. %% SGEMM: recur's rate on the products it performed (training skips the\n"
              "unread input gradient) at that median, over the median rate of the SGEMMs (2048^3, %d threads) interleaved\n"
              "with its iterations. %% best: the same for recur's fastest iteration against the best SGEMM rate above.\n" %
              (", ".join(sorted({"%s %d" % (r["case"], r["rounds"]) for r in results if r["framework"] == "recur"})), THREADS))
        print_table(results, peak, [c for c in case_list if c in cases.CASES])
    if "classifier" in case_list:
        print()
        print("classifier: rt-polarity BiLSTM 128+128, embedding 128, batch 32, one training epoch%s" %
              (" (%s)" % clf_note if clf_note else ""))
        for r in clf:
            if "error" in r:
                print("  %-8s %s" % (r["framework"], r["error"]))
            else:
                extra = ("outside the epoch (load, build, dev eval, save) %.1f s" % r["outside_epoch_s"] if r["framework"] == "recur"
                         else "data loading %.2f s (not in the epoch)" % r["load_s"])
                print("  %-8s epoch %7.1f s   dev accuracy %.4f   RSS %6.1f MB   %s" %
                      (r["framework"], r["epoch_s"], r.get("dev_accuracy") or 0, r.get("rss_mb", 0), extra))

    bar_list = bars(results, peak, clf, case_list, paired)
    print()
    print("bars (bench/README.md):")
    for name, status, detail in bar_list:
        print("  %-4s  %-17s %s" % (status, name, detail))

    info["versions"] = dict(versions, recur=recur_version(build))
    doc = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": info, "threads": THREADS, "quick": a.quick,
           "sgemm": sg, "peak_gflops": peak, "results": results, "classifier": clf, "classifier_note": clf_note,
           "varlen_padded_pair_ratios": [[round(r, 4) for r in rnd] for rnd in paired],
           "bars": [{"bar": n, "status": s, "detail": d} for n, s, d in bar_list]}
    out_path = os.path.join(ROOT, a.out)  # an absolute --out stays as it is
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("\nwritten: %s" % a.out)


def recur_version(build):
    try:
        return subprocess.run([os.path.join(build, "recur"), "version"], capture_output=True, text=True, timeout=30).stdout.split()[-1]
    except (OSError, IndexError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    main()
