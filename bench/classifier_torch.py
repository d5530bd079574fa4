"""classifier_torch.py - the `recur train` text classifier in PyTorch, for the classifier case of
`make bench`: times one training epoch and prints one JSON line.

    python3 bench/classifier_torch.py --train FILE [--dev FILE] [--threads 2] [--epochs 1]

The same model, data pipeline and hyper-parameters as tools/classifier.c (its defaults):
  - data: label<TAB>text lines (a first line "label<TAB>text" is a header), text split on
    spaces, tabs, CR and LF; lines without a valid label or without words are skipped;
  - vocabulary from the training file, by descending count, ties in byte order; id 0 padding,
    1 unknown; sentences truncated to 80 words;
  - batches of 32 planned as recur plans them (same xorshift64* generator and seed): shuffle,
    sort by length inside chunks of 20 batches, shuffle the batch order; so every batch holds
    the same sentences padded to the same length as recur's;
  - embedding 128 (uniform -0.1..0.1), dropout keep 0.5, bidirectional LSTM 128+128 over the
    true lengths (packed sequences), max-pool over the valid steps of the concatenated outputs,
    dropout keep 0.5, dense to the classes, mean softmax cross-entropy, Adam lr 0.002,
    clip_by_global_norm 5.
The epoch time covers what recur's "epoch ... s" covers: building each batch and the training
steps. Reading, tokenising and indexing the data is timed separately ("load_s").
"""
import argparse
import json
import os
import re
import resource
import time

MASK64 = (1 << 64) - 1
SPLIT = re.compile(r"[ \t\r\n]+")


def load(path):
    """(token list, label) per usable line, as clf_load() reads a labelled file."""
    out = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.decode("utf-8", "surrogateescape").rstrip("\r\n")
            if lineno == 1 and line.startswith("label\t"):
                continue
            label, tab, text = line.partition("\t")
            if not tab or not re.fullmatch(r"\s*[+-]?\d+", label) or not 0 <= int(label) <= 1000000:
                continue
            toks = [t for t in SPLIT.split(text) if t]
            if toks:
                out.append((toks, int(label)))
    return out


def build_vocab(data):
    counts = {}
    for toks, _ in data:
        for w in toks:
            counts[w] = counts.get(w, 0) + 1
    words = sorted(counts, key=lambda w: (-counts[w], w.encode("utf-8", "surrogateescape")))
    return {w: i + 2 for i, w in enumerate(words)}  # 0 <pad>, 1 <unk>


class XorShift:
    """xorshift64*, the training shuffle of tools/classifier.c."""

    def __init__(self, seed):
        self.s = (seed * 0x9E3779B97F4A7C15 + 1) & MASK64

    def next(self):
        s = self.s
        s ^= s >> 12
        s ^= (s << 25) & MASK64
        s ^= s >> 27
        self.s = s
        return (s * 0x2545F4914F6CDD1D) & MASK64


def plan_batches(ntok, bsize, rng):
    """plan_batches() of tools/classifier.c: (sentence order, batch start offsets)."""
    n = len(ntok)
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng.next() % (i + 1)
        order[i], order[j] = order[j], order[i]
    chunk = bsize * 20
    for i in range(0, n, chunk):
        order[i:i + chunk] = sorted(order[i:i + chunk], key=lambda k: (ntok[k], k))
    starts = list(range(0, n, bsize))
    for i in range(len(starts) - 1, 0, -1):
        j = rng.next() % (i + 1)
        starts[i], starts[j] = starts[j], starts[i]
    return order, starts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--dev")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    a = ap.parse_args()

    try:
        import torch
        from torch import nn
    except ImportError as e:  # run.py reports "not installed"
        print(json.dumps({"case": "classifier", "framework": "pytorch", "error": "not installed", "detail": str(e)}), flush=True)
        raise SystemExit(3)

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(1)
    E, H, BATCH, MAX_LEN, KEEP, LR, CLIP = 128, 128, 32, 80, 0.5, 0.002, 5.0

    t0 = time.perf_counter()
    train = load(a.train)
    dev = load(a.dev) if a.dev else []
    vocab = build_vocab(train)
    classes = max(lab for _, lab in train) + 1
    train_ids = [[vocab.get(w, 1) for w in toks[:MAX_LEN]] for toks, _ in train]
    train_lab = [lab for _, lab in train]
    ntok = [len(toks) for toks, _ in train]
    load_s = time.perf_counter() - t0

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(len(vocab) + 2, E)
            nn.init.uniform_(self.emb.weight, -0.1, 0.1)
            self.rnn = nn.LSTM(E, H, batch_first=True, bidirectional=True)
            for name, p in self.rnn.named_parameters():  # TF's glorot kernel, zero bias, forget bias 1
                if "weight" in name:
                    nn.init.xavier_uniform_(p)
                else:
                    nn.init.zeros_(p)
                    if "bias_ih" in name:
                        p.data[H:2 * H] = 1.0
            self.drop = nn.Dropout(1 - KEEP)
            self.dense = nn.Linear(2 * H, classes)
            nn.init.xavier_uniform_(self.dense.weight)
            nn.init.zeros_(self.dense.bias)

        def forward(self, ids, lengths):
            x = self.drop(self.emb(ids))
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out = nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=ids.shape[1])[0]
            mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
            feat = (out + (mask.float() - 1.0)[:, :, None] * 1e9).amax(dim=1)  # max over the valid steps
            return self.dense(self.drop(feat))

    model = Model()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    rng = XorShift(1)

    def make_batch(idx):
        T = max(1, max(len(train_ids[i]) for i in idx))
        ids = torch.zeros(len(idx), T, dtype=torch.int64)
        for r, i in enumerate(idx):
            ids[r, :len(train_ids[i])] = torch.tensor(train_ids[i], dtype=torch.int64)
        return ids, torch.tensor([len(train_ids[i]) for i in idx]), torch.tensor([train_lab[i] for i in idx])

    epochs = []
    loss_sum = 0.0
    for epoch in range(a.epochs):
        for g in opt.param_groups:
            g["lr"] = LR * 0.8 ** epoch
        model.train()
        order, starts = plan_batches(ntok, BATCH, rng)
        t0 = time.perf_counter()
        loss_sum = 0.0
        for st in starts:
            ids, lengths, labels = make_batch(order[st:st + BATCH])
            loss = nn.functional.cross_entropy(model(ids, lengths), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            opt.step()
            loss_sum += loss.item()
        epochs.append(time.perf_counter() - t0)

    acc = None
    if dev:
        model.eval()
        right = 0
        with torch.inference_mode():
            for i in range(0, len(dev), 64):
                part = dev[i:i + 64]
                ids_l = [[vocab.get(w, 1) for w in toks[:MAX_LEN]] for toks, _ in part]
                T = max(len(s) for s in ids_l)
                ids = torch.zeros(len(part), T, dtype=torch.int64)
                for r, s in enumerate(ids_l):
                    ids[r, :len(s)] = torch.tensor(s)
                pred = model(ids, torch.tensor([len(s) for s in ids_l])).argmax(1)
                right += sum(int(p) == lab for p, (_, lab) in zip(pred.tolist(), part))
        acc = right / len(dev)
    print(json.dumps({"case": "classifier", "framework": "pytorch", "threads": a.threads, "version": torch.__version__,
                      "epoch_s": [round(s, 3) for s in epochs], "load_s": round(load_s, 3),
                      "batches": len(starts), "sentences": len(train), "vocab": len(vocab) + 2,
                      "loss": round(loss_sum / len(starts), 4), "dev_accuracy": acc,
                      "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)}), flush=True)


if __name__ == "__main__":
    main()
