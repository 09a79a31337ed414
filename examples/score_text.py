"""Score a batch of token sequences the way an inference server reports logprobs.

A serving stack that returns per-token ``logprobs`` (prompt scoring, "echo"
mode, or sampled tokens with their alternatives) needs, for every position of
a ``(B, T, V)`` logits batch: the chosen token's log-probability and rank, the
top-k alternatives, and often the entropy.  ``xent.token_scores`` computes all
of them in one pass over each row of logits, without materialising a
``(B, T, V)`` log-softmax.

The logits here are synthetic (no model download): a random "language model"
over a made-up vocabulary whose preferred next token is boosted.

Run:  python examples/score_text.py
"""

from __future__ import annotations

import json

import numpy as np

import xent

WORDS = ["<pad>", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "park", "."]
V = 32_000  # a Llama-2-sized vocabulary; ids beyond WORDS get placeholder names
PAD = -100  # ignore_index: padding positions get logprob NaN and rank -1


def token_name(i: int) -> str:
    return WORDS[i] if i < len(WORDS) else f"<tok{i}>"


def synthetic_logits(rng: np.random.Generator, tokens: np.ndarray) -> np.ndarray:
    """(B, T, V) float32 logits that usually, not always, favour the actual next token."""
    b, t = tokens.shape
    logits = rng.standard_normal((b, t, V), dtype=np.float32) * 2.0
    nxt = np.where(tokens >= 0, tokens, 0)
    boost = rng.uniform(8.0, 16.0, (b, t)).astype(np.float32)
    np.put_along_axis(logits, nxt[..., None], boost[..., None], axis=-1)
    logits[..., 0] = -np.inf  # a masked vocabulary entry (never sampled)
    return logits


def main() -> None:
    rng = np.random.default_rng(0)
    # two sequences of target tokens, the second padded to the batch length
    sentences = [["the", "cat", "sat", "on", "the", "mat", "."], ["a", "dog", "ran", "."]]
    t_len = max(map(len, sentences))
    target = np.full((len(sentences), t_len), PAD, dtype=np.int64)
    for b, words in enumerate(sentences):
        target[b, : len(words)] = [WORDS.index(w) for w in words]
    logits = synthetic_logits(rng, target)  # logits[b, t] predicts target[b, t]

    s = xent.token_scores(logits, target, top_k=5, ignore_index=PAD)
    print(f"logits {logits.shape} {logits.dtype}; fields: {', '.join(s._fields)}\n")

    for b in range(len(sentences)):
        print(f"sequence {b}")
        print(f"  {'token':>6} {'logprob':>9} {'rank':>5} {'entropy':>8}  top-5")
        valid = target[b] != PAD
        for t in np.flatnonzero(valid):
            top = ", ".join(
                f"{token_name(int(j))}:{lp:.2f}"
                for j, lp in zip(s.top_indices[b, t], s.top_logprobs[b, t])
            )
            print(
                f"  {token_name(int(target[b, t])):>6} {s.logprob[b, t]:9.4f} "
                f"{s.rank[b, t]:5d} {s.entropy[b, t]:8.4f}  {top}"
            )
        total = float(np.sum(s.logprob[b, valid], dtype=np.float64))
        n = int(valid.sum())
        print(f"  sum logprob {total:.4f}, perplexity {np.exp(-total / n):.4f} over {n} tokens\n")

    # The OpenAI completions "logprobs" object for the first tokens of sequence 0.
    valid = np.flatnonzero(target[0] != PAD)[:3]
    obj = {
        "tokens": [token_name(int(i)) for i in target[0, valid]],
        "token_logprobs": [round(float(v), 4) for v in s.logprob[0, valid]],
        "top_logprobs": [
            {token_name(int(j)): round(float(v), 4) for j, v in zip(ix, lp)}
            for ix, lp in zip(s.top_indices[0, valid], s.top_logprobs[0, valid])
        ],
    }
    print(json.dumps(obj))


if __name__ == "__main__":
    main()
