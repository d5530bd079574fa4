"""peers_torch.py - PyTorch's side of `make bench`: one case per process, one JSON line out.

    python3 bench/peers_torch.py CASE [--iters N] [--threads 2]

Same problem as bench_recur.c: nn.LSTM / nn.GRU (bidirectional=True for bilstm256), batch-first
input of the same shape and values, training = forward, loss = mean of the outputs, backward,
SGD step (lr 0.01) on every weight; varlen goes through pack_padded_sequence
(enforce_sorted=False) with the lengths of cases.lengths(); infer1 runs under
torch.inference_mode(). Threads: set_num_threads(N), set_num_interop_threads(1).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cases  # noqa: E402


def run_case(c, iters, threads, variant):
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(1)
    B, T, I, H = c["B"], c["T"], c["I"], c["H"]
    rnn = (nn.GRU if c["cell"] == "gru" else nn.LSTM)(I, H, batch_first=True, bidirectional=c["bi"])
    x = torch.from_numpy(np.sin(np.arange(B * T * I, dtype=np.float32) * np.float32(0.37)).reshape(B, T, I))
    lengths = torch.tensor(cases.lengths(B), dtype=torch.int64) if c["varlen"] else None
    opt = torch.optim.SGD(rnn.parameters(), lr=0.01)

    def forward():
        if lengths is None:
            return rnn(x)[0]
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        return nn.utils.rnn.pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=T)[0]

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = forward().mean()
        loss.backward()
        opt.step()

    def infer_step():
        with torch.inference_mode():
            forward()

    ms, cpu = cases.timed(train_step if c["train"] else infer_step, iters)
    return ms, {"version": torch.__version__, "cpu_util": cpu,
                "threads_used": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}}


if __name__ == "__main__":
    cases.peer_main(run_case, "pytorch")
