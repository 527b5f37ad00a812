"""BERTScore F1 from token embeddings computed once per distinct description and run, not once per call.

bert-score's ``score`` embeds every sentence of each call and forgets them when the call ends, so a
description that occurs in many pairs (a reference a model got wrong several ways, a popular wrong answer,
a sibling code that is itself another case's reference) is run through the model once per call it appears
in. Here each description's token embeddings are computed once (batches sorted by token count, so a batch
pads little), kept unit-normalised within a byte budget, and every pair is a small matrix product of two
kept embeddings. The arithmetic is bert-score's with ``idf=False`` and no baseline rescale: the special
tokens ([CLS], [SEP]) take part in the matching but weigh 0 in the averages, and F1 is 0 where it is
undefined. Model, tokenizer and layer come from bert-score itself, so the scores agree with
``bert_score.score`` to float rounding (perf/similarity_speed.py, tests/test_bertscore.py).
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

__all__ = ["EmbeddingCache", "neighbourhood_order", "pair_f1"]

#: Bytes of token embeddings kept between calls (about 10,000 ICD-10-CM descriptions: 17.5 tokens x 384 floats).
DEFAULT_BUDGET = 256 * 1024 * 1024


def neighbourhood_order(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The distinct ``pairs`` with those that share a description next to each other: a breadth-first walk
    over descriptions (linked by the pairs they are in), from each unvisited one in sorted order.

    Scored in this order, a description's pairs come in a few neighbouring chunks, so its kept embeddings
    serve all of them before they are let go: on a 49,000-pair run-shaped set every distinct description is
    embedded once within the default budget, against 1.4 times as many when the pairs are merely sorted
    (perf/similarity_speed.py --count-only)."""
    distinct = list(dict.fromkeys(pairs))
    links: dict[str, list[int]] = defaultdict(list)
    for i, (ref, cand) in enumerate(distinct):
        links[ref].append(i)
        links[cand].append(i)
    seen: set[str] = set()
    taken = [False] * len(distinct)
    out: list[tuple[str, str]] = []
    for start in sorted(links):
        if start in seen:
            continue
        seen.add(start)
        todo = deque([start])
        while todo:
            for i in sorted(links[todo.popleft()], key=distinct.__getitem__):
                if taken[i]:
                    continue
                taken[i] = True
                out.append(distinct[i])
                fresh = [s for s in distinct[i] if s not in seen]
                seen.update(fresh)
                todo.extend(fresh)
    return out


def pair_f1(cand: Any, ref: Any, cand_weighted: Any, ref_weighted: Any) -> float:
    """BERTScore F1 of one pair from unit token embeddings (numpy, tokens x dim) and which tokens weigh (the
    others, [CLS] and [SEP], are matched against but not averaged): each candidate token's best cosine over
    all reference tokens (precision), each reference token's over all candidate tokens (recall).

    A best cosine below 0 counts 0: bert-score pads each batch of 64 pairs and its padding scores 0 against
    every token, so that is what it computes for every pair but the longest of its batch (whose score would
    otherwise depend on which pairs shared its batch)."""
    import numpy as np

    if not cand_weighted.any() or not ref_weighted.any():  # bert-score: 0/0, and a NaN F1 is 0
        return 0.0
    sim = cand @ ref.T
    np.maximum(sim, 0.0, out=sim)
    precision = float(sim.max(axis=1)[cand_weighted].mean())
    recall = float(sim.max(axis=0)[ref_weighted].mean())
    total = precision + recall
    return 0.0 if total == 0 else 2.0 * precision * recall / total


#: Padded tokens a batch holds at most: the model's activations grow with them, so long descriptions go through
#: in fewer at a time (sentences of up to 32 tokens, nearly all descriptions, in full batches of 256).
BATCH_TOKENS = 8192


def _batches(order: Sequence[str], ids: dict[str, list[int]], size: int, tokens: int) -> Iterator[list[str]]:
    """``order`` (longest first) cut into batches of at most ``size`` sentences and ``tokens`` padded tokens
    (at least one sentence each)."""
    start = 0
    while start < len(order):
        width = len(ids[order[start]])
        count = max(1, min(size, tokens // max(width, 1)))
        yield list(order[start : start + count])
        start += count


class EmbeddingCache:
    """Unit token embeddings and their weights per description, computed in length-sorted batches and kept
    (least recently used out first) while they fit in ``budget`` bytes."""

    def __init__(self, model: Any, tokenizer: Any, device: Any, batch_size: int,
                 autocast: Callable[[], AbstractContextManager[Any]], budget: int = DEFAULT_BUDGET) -> None:
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.batch_size, self.autocast, self.budget = batch_size, autocast, budget
        self.used = 0  # bytes of the kept embeddings
        self.encoded = 0  # descriptions run through the model so far (perf reads it)
        self._kept: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self._special = {tokenizer.cls_token_id, tokenizer.sep_token_id}

    def _tokens(self, sentence: str) -> list[int]:
        from bert_score.utils import sent_encode

        return list(sent_encode(self.tokenizer, sentence))

    def _encode(self, sentences: Sequence[str]) -> dict[str, tuple[Any, Any]]:
        import numpy as np
        import torch

        ids = {s: self._tokens(s) for s in sentences}
        order = sorted(sentences, key=lambda s: len(ids[s]), reverse=True)
        pad = self.tokenizer.pad_token_id
        out: dict[str, tuple[Any, Any]] = {}
        self.model.eval()
        for batch in _batches(order, ids, self.batch_size, BATCH_TOKENS):
            width = len(ids[batch[0]])
            tokens = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, s in enumerate(batch):
                tokens[i, : len(ids[s])] = torch.tensor(ids[s], dtype=torch.long)
                mask[i, : len(ids[s])] = 1
            with torch.no_grad(), self.autocast():
                hidden = self.model(tokens.to(self.device), attention_mask=mask.to(self.device))[0]
            hidden = hidden.float().cpu()
            for i, s in enumerate(batch):
                emb = hidden[i, : len(ids[s])].clone()
                emb.div_(torch.norm(emb, dim=-1).unsqueeze(-1))
                out[s] = (emb.numpy(), np.array([t not in self._special for t in ids[s]]))
        self.encoded += len(order)
        return out

    def _keep(self, found: dict[str, tuple[Any, Any]]) -> None:
        for s, value in found.items():
            if s in self._kept:
                continue
            self._kept[s] = value
            self.used += value[0].nbytes
        while self.used > self.budget and self._kept:
            _, (emb, _) = self._kept.popitem(last=False)
            self.used -= emb.nbytes

    def get(self, sentences: Iterable[str]) -> dict[str, tuple[Any, Any]]:
        """Embeddings and weights of ``sentences``: the kept ones, the rest computed now (each once)."""
        wanted = list(dict.fromkeys(sentences))
        found: dict[str, tuple[Any, Any]] = {}
        missing = []
        for s in wanted:
            value = self._kept.get(s)
            if value is None:
                missing.append(s)
            else:
                self._kept.move_to_end(s)
                found[s] = value
        fresh = self._encode(missing) if missing else {}
        found.update(fresh)
        self._keep(fresh)
        return found

    def score(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """F1 per ``(reference, candidate)`` pair."""
        embedded = self.get(s for pair in pairs for s in pair)
        out = []
        for ref, cand in pairs:
            (r, rw), (c, cw) = embedded[ref], embedded[cand]
            out.append(pair_f1(c, r, cw, rw))
        return out
