"""The transformers backend: batched greedy generation and log-likelihood scoring on a model in memory.

Generation sorts prompts by length (longest first, so memory trouble shows at once and batches pad
little), left-pads, decodes greedily, drops finished rows from the batch every few tokens and cuts the
text at the first stop string. Scoring runs each distinct context once
(left-padded batch) and every continuation of it from a copy of its KV cache, summing the
continuation's token log-probs. Prompt perplexity (for the `loracl` variant) runs right-padded batches.
Exercised by `taia eval --backend hf`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

from taia.eval.backends.kvcache import growing_cache

T = TypeVar("T")


def _batches(items: list[T], size: int) -> Iterator[list[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class HFBackend:
    """Generation and scoring with one loaded (possibly variant-switched) causal LM: a
    `taia.eval.backends.base.Backend`, and a `PromptScorer` (it scores prompts for `loracl`)."""

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 16, segment: int = 16) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.segment = segment  # generated tokens between drops of finished rows
        if tokenizer.pad_token_id is None:  # batching needs a pad id; never attended to
            tokenizer.pad_token = tokenizer.eos_token
        self.non_finite: set[int] = set()  # `Backend.non_finite`
        self._bad_rows: set[int] = set()  # rows of the batch in flight whose logits were not finite

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int,
        stop: Sequence[str] = (),
        on_batch: Callable[[list[int], list[str]], None] | None = None,
        desc: str = "generate",
    ) -> list[str]:
        """Greedy completions of already-templated prompts, in input order; `on_batch(indices, outputs)`
        is called as each batch finishes (results are written as they come)."""
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        outputs: list[str] = [""] * len(prompts)
        self.non_finite = set()
        for idx in tqdm(list(_batches(order, self.batch_size)), desc=desc, leave=False):
            self._bad_rows = set()
            texts = self._generate_batch([encoded[i] for i in idx], max_new_tokens, stop)
            self.non_finite |= {idx[row] for row in self._bad_rows}
            for i, text in zip(idx, texts, strict=True):
                outputs[i] = text
            if on_batch is not None:
                on_batch(idx, texts)
        return outputs

    def _generate_batch(self, ids: list[list[int]], max_new_tokens: int, stop: Sequence[str]) -> list[str]:
        rows = self._generate_ids(ids, max_new_tokens, stop)
        texts = self.tokenizer.batch_decode(rows, skip_special_tokens=True)
        return [_cut(t, stop) for t in texts]

    def _generate_ids(
        self, ids: list[list[int]], max_new_tokens: int, stop: Sequence[str]
    ) -> list[list[int]]:
        """Greedy new token ids per prompt, up to and including the first EOS. Every `segment` tokens the
        rows that finished (EOS, or a stop string in their decoded text, which the caller cuts at) leave
        the batch with their KV cache rows: `generate` would go on computing them until the batch's longest
        row ends, which on CPU (compute-bound) is about half of all the work on GSM8K-length answers."""
        pad = self.tokenizer.pad_token_id
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=self.device)
        mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
        eos = self._eos_ids()
        new: list[list[int]] = [[] for _ in ids]
        # A cache with room for the new tokens: the default one copies itself to grow at every step.
        active, cache, done = list(range(len(ids))), growing_cache(self.model, max_new_tokens), 0
        while active and done < max_new_tokens:
            steps = min(self.segment, max_new_tokens - done)
            watch = _FiniteWatch(len(active), self.device)
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                past_key_values=cache,
                max_new_tokens=steps,
                do_sample=False,
                pad_token_id=pad,
                return_dict_in_generate=True,
                logits_processor=[watch],
            )
            self._bad_rows |= {active[row] for row in watch.rows()}
            fresh = out.sequences[:, input_ids.shape[1] :]
            keep = []
            for row, i in enumerate(active):
                new[i] += fresh[row].tolist()
                text = self.tokenizer.decode(new[i], skip_special_tokens=True) if stop else ""
                if not (eos & set(new[i]) or any(s in text for s in stop)):
                    keep.append(row)
            done += fresh.shape[1]
            if not keep or fresh.shape[1] < steps:  # generate stops early only when every row is done
                break
            cache = out.past_key_values
            if len(keep) < len(active):
                cache.batch_select_indices(torch.tensor(keep, device=self.device))
            ones = torch.ones(mask.shape[0], fresh.shape[1], dtype=mask.dtype, device=self.device)
            input_ids, mask = out.sequences[keep], torch.cat([mask, ones], dim=1)[keep]
            active = [active[r] for r in keep]
        return [_until(row, eos) for row in new]

    def _eos_ids(self) -> set[int]:
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        return ids or {self.tokenizer.eos_token_id}

    @torch.inference_mode()
    def loglikelihood(self, pairs: Sequence[tuple[str, str]], desc: str = "score") -> list[tuple[float, int]]:
        """(sum of log p(continuation | context), number of continuation tokens) per pair."""
        tokens = [self._split(c, x) for c, x in pairs]
        # The options of a question share its context: each distinct context runs once and its
        # continuations start from a copy of its KV cache, so an n-option question costs about one
        # context forward instead of n (the context is most of the tokens in MC cloze scoring).
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (ctx, _) in enumerate(tokens):
            groups.setdefault(tuple(ctx), []).append(i)
        contexts = sorted(groups, key=len, reverse=True)
        out: list[tuple[float, int]] = [(0.0, 0)] * len(pairs)
        for batch in tqdm(list(_batches(contexts, self.batch_size)), desc=desc, leave=False):
            members = [(row, i) for row, ctx in enumerate(batch) for i in groups[ctx]]
            scores = self._score_contexts(batch, [(row, tokens[i][1]) for row, i in members])
            for (_, i), score in zip(members, scores, strict=True):
                out[i] = score
        return out

    @torch.inference_mode()
    def prompt_nll(self, prompts: Sequence[str], desc: str = "perplexity") -> list[tuple[float, int]]:
        """(sum of −log p(token_t | tokens before t) over t ≥ 1, n − 1) per prompt, tokenised as `generate`
        sees it (no special tokens added). The first token has nothing before it, so it is not predicted
        and not counted; a prompt of one token gives (0.0, 0). exp(sum / count) is its perplexity (LoRACL).
        Batches are right-padded: pads come after every real token, so causal attention keeps them out of
        the real tokens' logits, and positions need no shift."""
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        out: list[tuple[float, int]] = [(0.0, 0)] * len(prompts)
        batches = list(_token_batches(order, [len(x) for x in encoded], self.batch_size))
        for idx in tqdm(batches, desc=desc, leave=False):
            for i, score in zip(idx, self._nll_batch([encoded[i] for i in idx]), strict=True):
                out[i] = score
        return out

    def _nll_batch(self, ids: list[list[int]]) -> list[tuple[float, int]]:
        width = max(map(len, ids))
        if width < 2:
            return [(0.0, 0)] * len(ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids], device=self.device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=self.device)
        logits = self.model(input_ids=input_ids, attention_mask=mask).logits
        scores = []
        for row, x in enumerate(ids):  # one row at a time: a float32 log-softmax of the whole batch is big
            n = len(x)
            logprobs = torch.log_softmax(logits[row, : n - 1].float(), dim=-1)
            nll = -logprobs.gather(1, input_ids[row, 1:n, None]).sum() if n > 1 else torch.tensor(0.0)
            scores.append((float(nll), max(n - 1, 0)))
        return scores

    def _split(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation token ids, split where the joint encoding leaves the context's."""
        whole = self.tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        ctx = self.tokenizer(context, add_special_tokens=False)["input_ids"]
        cut = len(ctx)
        while cut > 0 and whole[:cut] != ctx[:cut]:
            cut -= 1  # a token merged across the boundary: it counts as continuation
        if cut == len(whole):
            cut -= 1  # an empty continuation scores nothing; keep at least one token
        return whole[:cut], whole[cut:]

    def _score_contexts(
        self, contexts: list[tuple[int, ...]], conts: list[tuple[int, list[int]]]
    ) -> list[tuple[float, int]]:
        """Scores of continuations `(row of its context in contexts, ids)` after one batched forward
        of the distinct `contexts`."""
        pad = self.tokenizer.pad_token_id
        width = max(len(c) for c in contexts)
        input_ids = torch.tensor([[pad] * (width - len(c)) + list(c) for c in contexts], device=self.device)
        mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in contexts], device=self.device)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=_positions(mask),
            use_cache=True,
            logits_to_keep=1,
        )
        first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # log p(first continuation token)
        scores: list[tuple[float, int]] = []
        for chunk in _batches(conts, self.batch_size):
            rows = torch.tensor([r for r, _ in chunk], device=self.device)
            ids = [x for _, x in chunk]
            total = first[rows, torch.tensor([x[0] for x in ids], device=self.device)]
            if max(map(len, ids)) > 1:
                total = total + self._rest(out.past_key_values, mask, rows, ids)
            scores += [(float(s), len(x)) for s, x in zip(total.tolist(), ids, strict=True)]
        return scores

    def _rest(
        self, cache: Any, ctx_mask: torch.Tensor, rows: torch.Tensor, conts: list[list[int]]
    ) -> torch.Tensor:
        """Per continuation, sum of log p(x[j] | context, x[:j]) for j ≥ 1, run on a copy of the
        contexts' cache expanded to one row per continuation (right-padded; pads are masked out)."""
        cache = copy.deepcopy(cache)  # the forward appends to it; other chunks need it unchanged
        cache.reorder_cache(rows)
        width = max(map(len, conts))
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([x + [pad] * (width - len(x)) for x in conts], device=self.device)
        cont_mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in conts], device=self.device)
        mask = torch.cat([ctx_mask[rows], cont_mask], dim=1)[:, :-1]
        logits = self.model(
            input_ids=ids[:, :-1],
            attention_mask=mask,
            position_ids=_positions(mask)[:, -(width - 1) :],
            past_key_values=cache,
            use_cache=True,
        ).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1).gather(2, ids[:, 1:, None]).squeeze(2)
        return (logprobs * cont_mask[:, 1:]).sum(1)


class _FiniteWatch:
    """A logits processor that only looks: which rows of the batch got a NaN or ±Inf logit at some step
    (a greedy argmax over them picks a token at random, and the answer would be scored as any other)."""

    def __init__(self, rows: int, device: torch.device) -> None:
        self.bad = torch.zeros(rows, dtype=torch.bool, device=device)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.bad |= ~torch.isfinite(scores).all(dim=-1)
        return scores

    def rows(self) -> list[int]:
        return [int(i) for i in self.bad.nonzero().flatten()]


_NLL_TOKENS = 2048  # padded tokens per prompt_nll forward: it keeps every position's logits (× vocab)


def _token_batches(order: list[int], lengths: list[int], rows: int) -> Iterator[list[int]]:
    """`order` (longest first) cut into batches of at most `rows` rows and _NLL_TOKENS padded tokens
    (a prompt longer than that goes alone)."""
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) == rows or (len(batch) + 1) * lengths[batch[0]] > _NLL_TOKENS):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding: models with absolute positions (GPT-2) need them, and
    rotary models get the same numbers as an unpadded run."""
    return (mask.cumsum(1) - 1).clamp(min=0)


def _until(row: list[int], eos: set[int]) -> list[int]:
    """The ids up to and including the first EOS (what follows it is padding)."""
    return next((row[: i + 1] for i, t in enumerate(row) if t in eos), row)


def _cut(text: str, stop: Sequence[str]) -> str:
    """Text before the first stop string (generation stops after the token that completes it)."""
    ends = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(ends)] if ends else text
