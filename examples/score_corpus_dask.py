"""Score a text corpus end to end on a Dask cluster: perplexity and per-sequence log-likelihoods.

The "language model" is small and built here, so nothing is downloaded: a bigram model
(add-one smoothed counts from the first 80% of the corpus), factorised by an SVD into
an embedding ``E (V, D)`` of the previous token and an output layer ``W (V, D)``, so
that the hidden state of position t is ``E[token[t-1]]`` and its logits are
``hidden @ W.T`` -- the shape of a real model's last layer.  The held-out 20% is cut
into sequences of T tokens; the hidden states are a Dask array chunked by sequences,
the output layer is broadcast to the workers once, and xent.dask scores every chunk
without forming the logits of the whole corpus.  The sums are exact, so the perplexity
does not depend on how the tasks are spread over the workers; another chunking of the
hidden states changes only the rounding of the BLAS products that form the logits
(printed below; from a logits array the bits would be the same).

Run:  python examples/score_corpus_dask.py [corpus.txt]   (default: the README)
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter

import dask.array as da
import distributed
import numpy as np

import xent
import xent.dask

T = 32        # tokens per sequence
D = 64        # rank of the factorised bigram model (its hidden size)
MAX_V = 1500  # the most frequent words; the rest map to <unk>


def tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z0-9_]+|[^\sa-z0-9_]", text.lower())


def bigram_model(ids: np.ndarray, v: int) -> tuple[np.ndarray, np.ndarray]:
    """(E, W): log P(next | prev) ~= E[prev] @ W.T, rank D."""
    counts = np.ones((v, v))
    np.add.at(counts, (ids[:-1], ids[1:]), 1.0)
    logp = np.log(counts / counts.sum(1, keepdims=True))
    u, s, vt = np.linalg.svd(logp, full_matrices=False)
    return (u[:, :D] * s[:D]).astype(np.float32), vt[:D].T.astype(np.float32).copy()


def sequences(ids: np.ndarray, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hidden states (B, T, D) and targets (B, T), the last sequence padded with -100."""
    prev, target = ids[:-1], ids[1:].copy()
    b = -(-len(target) // T)
    pad = b * T - len(target)
    target = np.concatenate([target, np.full(pad, -100)]).reshape(b, T)
    hidden = emb[np.concatenate([prev, np.zeros(pad, dtype=prev.dtype)])].reshape(b, T, D)
    return hidden, target


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        words = tokenize(f.read())
    vocab = ["<unk>"] + [w for w, _ in Counter(words).most_common(MAX_V - 1)]
    index = {w: i for i, w in enumerate(vocab)}
    ids = np.array([index.get(w, 0) for w in words])
    split = int(0.8 * len(ids))
    emb, weight = bigram_model(ids[:split], len(vocab))
    hidden, target = sequences(ids[split:], emb)
    print(f"{path}: {len(ids)} tokens, V={len(vocab)}, held out {target.size} positions "
          f"in {len(target)} sequences of {T}")

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0", silence_logs=40) as cluster, \
            distributed.Client(cluster):
        h = da.from_array(hidden, chunks=(4, T, D))  # 4 sequences per task
        ppl = xent.dask.linear_perplexity(h, weight, target)
        ll, n = xent.dask.linear_sequence_log_likelihood(h, weight, target)
        other = xent.dask.linear_perplexity(da.from_array(hidden, chunks=(3, 5, D)), weight,
                                            target)
    print(f"perplexity on 2 workers:        {ppl:.6f}")
    print(f"  other chunking (BLAS rounding): relative difference {abs(other / ppl - 1):.1e}")
    print(f"  in-process xent.perplexity:   {xent.perplexity(hidden @ weight.T, target):.6f}")
    print(f"  uniform over the vocabulary:  {len(vocab)}")
    best = np.argsort(ll / np.maximum(n, 1))[::-1][:3]
    for i in best:
        words_i = [vocab[j] for j in target[i] if j >= 0]
        print(f"  sequence {i:3d}: log-likelihood {ll[i]:9.3f} over {n[i]} tokens: "
              f"{' '.join(words_i[:12])} ...")


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "README.md"))
