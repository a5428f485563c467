"""Throughput of the embedding-cosine scorer against raw ``SentenceTransformer.encode``.

Both sides encode the same N outputs and N references with the same model and batch size:
raw = ``model.encode(outputs)`` + ``model.encode(references)``; ours =
``EmbeddingScorer.score_batch(outputs, cases)`` (reference extraction, validation, the two
encode calls, cosines, Score objects). Runs alternate (raw, ours, raw, ours, ...) after a
warm-up, and the ratio of the medians is reported::

    ratio = median(raw seconds) / median(ours seconds)   # 1.0: no overhead; target >= 0.9

Run: ``.venv/bin/python benchmarks/embedding_throughput.py [N] [repeats]`` (progress on stderr,
the ratio on stdout).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_aie.dataset import Case  # noqa: E402
from pytest_aie.scorers.embedding import EmbeddingScorer, load_sentence_model  # noqa: E402

_WORDS = ("the model answer reference capital france paris river city large small quick "
          "brown fox dog cat jumps over lazy sat mat green apple banana market fell sharply "
          "today grandmother knits warm socks winter summer question evaluation").split()


def _texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 40))) + f" #{i}"
            for i in range(n)]


def _log(msg: str) -> None:
    print(f"[embedding_throughput] {msg}", file=sys.stderr, flush=True)


def embedding_throughput_ratio(n_texts: int = 2000, *, repeats: int = 3, batch_size: int = 64,
                               device: str | None = None, model: str | None = None) -> float:
    """``median(raw encode time) / median(score_batch time)`` on ``n_texts`` pairs.

    ``model``: a model folder or name (default all-MiniLM-L6-v2; the ``EMBEDDING_MODEL``
    environment variable when run as a script); ``device``: default CUDA when available.
    """
    outputs, refs = _texts(n_texts, 1), _texts(n_texts, 2)
    cases = [Case(id=f"c{i}", fields={"expected": r}) for i, r in enumerate(refs)]
    scorer = EmbeddingScorer(batch_size=batch_size, device=device, model=model)
    model = load_sentence_model(scorer.model_path, device)
    model.float()  # a float16 copy of the weights (smaller to ship) runs as float32, as usual
    _log(f"model on {model.device}, {n_texts} pairs, batch_size {batch_size}, "
         f"{repeats} repeats")

    def raw() -> None:
        for texts in (outputs, refs):
            model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                         convert_to_numpy=True, show_progress_bar=False)

    def ours() -> None:
        scores = scorer.score_batch(outputs, cases)
        assert len(scores) == n_texts and all(s.measured for s in scores)

    warm_o, warm_c = outputs[:batch_size], cases[:batch_size]
    scorer.score_batch(warm_o, warm_c)
    model.encode(refs[:batch_size], batch_size=batch_size, show_progress_bar=False)
    times: dict[str, list[float]] = {"raw": [], "ours": []}
    for rep in range(repeats):
        for name, fn in (("raw", raw), ("ours", ours)) if rep % 2 == 0 else \
                (("ours", ours), ("raw", raw)):
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            times[name].append(dt)
            _log(f"repeat {rep + 1}/{repeats} {name:4s} {dt:7.2f}s "
                 f"({2 * n_texts / dt:7.1f} texts/s)")
    raw_s, ours_s = statistics.median(times["raw"]), statistics.median(times["ours"])
    ratio = raw_s / ours_s
    _log(f"median raw {raw_s:.2f}s, ours {ours_s:.2f}s -> ratio {ratio:.3f} (target >= 0.9)")
    return ratio


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    ratio = embedding_throughput_ratio(n, repeats=reps, model=os.environ.get("EMBEDDING_MODEL"))
    print(f"embedding_throughput_ratio: {ratio:.3f}")
