"""The text-aware two-tower model (issue 12): item and user towers trained on behaviour, in plain Python.

Item tower: ``v_i = unit(W t_i + e_i)``, where ``t_i`` is the item's text vector by the shared encoder
(frozen, computed once: ``hybrid.Catalogue.vectors``), ``W`` a trainable projection to ``dim`` and ``e_i`` a
trainable item-id embedding. Items with no event in training keep ``e_i = 0``: their vector is their text's
projection, which is how an item nobody has bought is reached. During training each item's id part is dropped
with probability ``id_dropout`` so that the text part alone must rank well too.

User tower: the user's ``recent`` most recent items (most recent first), their item-tower vectors pooled with
weights ``decay^k`` (``decay`` learned, started at 0.9), then a small residual MLP, unit length. The score of
item ``j`` is the cosine ``u . v_j``.

Training (``train``): each user's items in the order they first came to them; every item with at least one
item before it (strictly earlier) is a target, the earlier items its history. A sampled softmax with
temperature ``temperature`` over the batch's targets (in-batch negatives) and ``negatives`` items drawn
uniformly from the items with events, with the log-Q correction of both samplers (Yi et al. 2019), the
row's own history masked. Adam, seeded, ``threads`` torch threads; after each epoch NDCG@10 on a validation
split (the hybrid's) and early stopping with ``patience``: the best epoch's weights are kept, and the number
of epochs is returned for fitting again on every event without validation.

Serving needs no torch: ``TowerModel`` keeps the item vectors and the user tower's few numbers (numpy).
Torch is imported by ``train`` only.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

Interaction = tuple[str, str, float, float]  # user, item, weight, unix time (``ranking.Interaction``)
MAX_EXAMPLES = 2_000_000


@dataclass(frozen=True)
class TowerConfig:
    dim: int = 64
    epochs: int = 20  # at most; early stopping on validation NDCG@10 ends sooner
    patience: int = 3
    batch: int = 512
    negatives: int = 1024  # uniform sampled negatives per batch, beside the in-batch ones
    recent: int = 50  # history items the user tower reads
    lr: float = 0.003
    temperature: float = 0.05
    id_dropout: float = 0.25
    weight_decay: float = 0.0
    mlp: bool = True
    threads: int = 1
    seed: int = 0

    def validate(self) -> None:
        if not 8 <= self.dim <= 512:
            raise ValueError("tower dim must be from 8 to 512")
        if not 1 <= self.epochs <= 200 or not 1 <= self.patience <= 50:
            raise ValueError("tower epochs must be from 1 to 200 and patience from 1 to 50")
        if not 16 <= self.batch <= 8192 or not 0 <= self.negatives <= 65536:
            raise ValueError("tower batch must be from 16 to 8,192 and negatives from 0 to 65,536")
        if not 1 <= self.recent <= 500:
            raise ValueError("tower recent must be from 1 to 500")
        if not 0 < self.lr <= 1 or not 0 < self.temperature <= 1:
            raise ValueError("tower lr and temperature must be above 0 and at most 1")
        if not 0 <= self.id_dropout < 1 or not 0 <= self.weight_decay <= 1:
            raise ValueError("tower id_dropout must be from 0 to below 1, weight_decay from 0 to 1")
        if not 1 <= self.threads <= 64:
            raise ValueError("tower threads must be from 1 to 64")


@dataclass
class TowerModel:
    """The trained towers as numpy: what scoring needs."""

    config: TowerConfig
    items: list[str]
    item_vectors: np.ndarray  # (n_items, dim) float32, unit rows
    decay: float
    mlp: list[np.ndarray]  # [W1 (dim, dim), b1 (dim,), W2 (dim, dim), b2 (dim,)] or []
    epochs: int  # the epochs trained (the best on validation, or as asked)
    validation: dict[str, float]

    def __post_init__(self) -> None:
        self.index = {item: i for i, item in enumerate(self.items)}

    def user_vector(self, history: dict[str, float]) -> np.ndarray:
        """(dim,) the user tower's vector of a history (most recent first; unknown items are ignored)."""
        rows = [i for item in history if (i := self.index.get(item)) is not None][: self.config.recent]
        return _user(self.item_vectors, np.asarray(rows, np.int64), self.decay, self.mlp)

    def scores(self, history: dict[str, float]) -> np.ndarray:
        """(n_items,) cosine of each item's tower vector with the user's (0 for an empty history)."""
        return self.item_vectors @ self.user_vector(history)


def _user(vectors: np.ndarray, rows: np.ndarray, decay: float, mlp: list[np.ndarray]) -> np.ndarray:
    if not len(rows):
        return np.zeros(vectors.shape[1], dtype=np.float32)
    weights = (decay ** np.arange(len(rows), dtype=np.float64)).astype(np.float32)
    pooled = weights @ vectors[rows] / weights.sum()
    if mlp:
        w1, b1, w2, b2 = mlp
        pooled = pooled + np.maximum(pooled @ w1 + b1, 0.0) @ w2 + b2
    norm = float(np.linalg.norm(pooled))
    return (pooled / norm if norm > 0 else pooled).astype(np.float32)


# --- training data ----------------------------------------------------------------------------------------


def examples(
    train: Sequence[Interaction], index: dict[str, int], recent: int, pad: int
) -> tuple[np.ndarray, np.ndarray]:
    """(targets (E,), histories (E, recent), padded with ``pad``): each user's items by their first event;
    an item with items strictly before it is a target, those items (most recent first) its history."""
    firsts: dict[str, dict[int, float]] = defaultdict(dict)
    for user, item, _, when in train:
        i = index.get(item)
        if i is None:
            continue
        seen = firsts[user]
        if i not in seen or when < seen[i]:
            seen[i] = when
    targets: list[int] = []
    histories: list[np.ndarray] = []
    for user in sorted(firsts):
        seen = firsts[user]
        order = sorted(seen, key=lambda i: (seen[i], i))
        times = [seen[i] for i in order]
        start = 0  # the first item of the target's time (items bought together are not each other's past)
        for n, item in enumerate(order):
            if times[n] != times[start]:
                start = n
            if start == 0:
                continue
            past = order[max(0, start - recent) : start][::-1]
            row = np.full(recent, pad, dtype=np.int64)
            row[: len(past)] = past
            targets.append(item)
            histories.append(row)
            if len(targets) >= MAX_EXAMPLES:
                break
    if not targets:
        return np.zeros(0, np.int64), np.zeros((0, recent), np.int64)
    return np.asarray(targets, np.int64), np.stack(histories)


def ndcg_at_10(scores: np.ndarray, own: list[np.ndarray], targets: list[np.ndarray]) -> float:
    """Mean NDCG@10 of (users, items) scores, each user's own items left out."""
    total = 0.0
    for u in range(scores.shape[0]):
        row = scores[u].copy()
        row[own[u]] = -np.inf
        top = np.argpartition(-row, 10)[:10]
        top = top[np.argsort(-row[top], kind="stable")]
        dcg = float((np.isin(top, targets[u]) / np.log2(np.arange(2, 12))).sum())
        ideal = float((1 / np.log2(np.arange(2, min(10, len(targets[u])) + 2))).sum())
        total += dcg / ideal if ideal else 0.0
    return total / max(1, scores.shape[0])


@dataclass
class Validation:
    """Users' histories (most recent first) and the items they came to next: what early stopping reads."""

    histories: list[dict[str, float]]
    targets: list[set[str]]


# --- training ---------------------------------------------------------------------------------------------


def train(
    *,
    config: TowerConfig,
    events: Sequence[Interaction],
    items: list[str],
    text: np.ndarray,
    validation: Validation | None = None,
    epochs: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> TowerModel:
    """Train the towers over ``items`` (their text vectors ``text``, the same order) on ``events``: with
    ``validation``, up to ``config.epochs`` epochs with early stopping; without, exactly ``epochs``."""
    import torch  # not at import: scoring a trained model needs numpy only

    config.validate()
    n = len(items)
    if n < 2 or text.shape[0] != n:
        raise ValueError("the two-tower model needs at least two items, each with a text vector row")
    index = {item: i for i, item in enumerate(items)}
    targets, histories = examples(events, index, config.recent, pad=n)
    if not len(targets):
        raise ValueError("no user came to an item after another: nothing to train the two-tower model on")
    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        torch.manual_seed(config.seed)
        net = _Towers(torch, text, config, warm=np.unique(targets), histories=histories)
        return _fit(torch, net, config, items, targets, histories, validation, epochs, progress)
    finally:
        torch.set_num_threads(previous)


class _Towers:
    """The trainable parts (torch): projection, id embeddings, decay, MLP."""

    def __init__(self, torch, text: np.ndarray, config: TowerConfig, warm: np.ndarray, histories) -> None:
        nn = torch.nn
        n, width = text.shape
        self.torch, self.config, self.n = torch, config, n
        self.text = torch.from_numpy(np.ascontiguousarray(text, dtype=np.float32))
        self.project = nn.Linear(width, config.dim, bias=False)
        self.ids = nn.Embedding(n, config.dim)
        nn.init.zeros_(self.ids.weight)
        seen = np.zeros(n, dtype=bool)  # items with an event: the others keep no id part
        seen[warm] = True
        seen[np.unique(histories[histories < n])] = True
        self.seen = torch.from_numpy(seen[:, None].astype(np.float32))
        self.decay_logit = nn.Parameter(torch.tensor(math.log(0.9 / 0.1)))
        self.hidden = nn.Linear(config.dim, config.dim)
        self.out = nn.Linear(config.dim, config.dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.parameters = [
            *self.project.parameters(),
            *self.ids.parameters(),
            self.decay_logit,
            *(list(self.hidden.parameters()) + list(self.out.parameters()) if config.mlp else []),
        ]

    def item_table(self, dropout: float):
        """(n + 1, dim) unit item vectors and a zero row for padding."""
        torch = self.torch
        keep = self.seen
        if dropout:
            keep = keep * (torch.rand(self.n, 1) >= dropout).float()
        vectors = torch.nn.functional.normalize(self.project(self.text) + self.ids.weight * keep, dim=1)
        return torch.cat([vectors, torch.zeros(1, vectors.shape[1])])

    def users(self, table, histories):
        """(B, dim) unit user vectors from (B, L) padded history rows."""
        torch = self.torch
        mask = (histories < self.n).float()
        steps = torch.arange(histories.shape[1], dtype=torch.float32)
        weights = torch.sigmoid(self.decay_logit) ** steps[None, :] * mask
        pooled = (weights[:, :, None] * table[histories]).sum(1) / weights.sum(1, keepdim=True).clamp_min(
            1e-9
        )
        if self.config.mlp:
            pooled = pooled + self.out(torch.relu(self.hidden(pooled)))
        return torch.nn.functional.normalize(pooled, dim=1)

    def snapshot(self, items: list[str], epochs: int, validation: dict[str, float]) -> TowerModel:
        torch = self.torch
        with torch.no_grad():
            table = self.item_table(0.0)[:-1].numpy().astype(np.float32)
            mlp = (
                [
                    self.hidden.weight.T.numpy().astype(np.float32).copy(),
                    self.hidden.bias.numpy().astype(np.float32).copy(),
                    self.out.weight.T.numpy().astype(np.float32).copy(),
                    self.out.bias.numpy().astype(np.float32).copy(),
                ]
                if self.config.mlp
                else []
            )
            decay = float(torch.sigmoid(self.decay_logit))
        return TowerModel(self.config, list(items), table.copy(), decay, mlp, epochs, validation)


def _fit(torch, net: _Towers, config, items, targets, histories, validation, epochs, progress) -> TowerModel:
    n = net.n
    rng = np.random.default_rng(config.seed)
    optimiser = torch.optim.Adam(net.parameters, lr=config.lr, weight_decay=config.weight_decay)
    warm = np.unique(targets)
    share = np.bincount(targets, minlength=n) / len(targets)  # how often each item is a batch's target
    log_q = torch.from_numpy(
        np.log(np.maximum(config.batch * share + config.negatives / len(warm), 1e-12)).astype(np.float32)
    )
    val = _validation_rows(validation, items) if validation is not None else None
    limit = config.epochs if epochs is None else epochs
    best: tuple[float, int, TowerModel] | None = None
    for epoch in range(1, limit + 1):
        started = time.perf_counter()
        loss = _epoch(torch, net, config, rng, optimiser, targets, histories, warm, log_q)
        if val is None:
            continue
        model = net.snapshot(items, epoch, {})
        ndcg = ndcg_at_10(np.stack([model.scores(h) for h in val[0]]), val[1], val[2])
        if progress is not None:
            progress(
                f"two-tower epoch {epoch}: loss {loss:.3f}, validation NDCG@10 {ndcg:.4f} "
                f"({time.perf_counter() - started:.1f} s)"
            )
        if best is None or ndcg > best[0] + 1e-5:
            best = (ndcg, epoch, model)
        elif epoch - best[1] >= config.patience:
            break
    if best is None:
        return net.snapshot(items, limit, {})
    best[2].validation = {"ndcg@10": best[0], "users": float(len(val[0]))} if val else {}
    return best[2]


def _epoch(torch, net: _Towers, config, rng, optimiser, targets, histories, warm, log_q) -> float:
    order = rng.permutation(len(targets))
    total, batches = 0.0, 0
    position = np.full(net.n + 1, -1, dtype=np.int64)
    for start in range(0, len(order), config.batch):
        rows = order[start : start + config.batch]
        batch_targets = targets[rows]
        sampled = rng.choice(warm, size=min(config.negatives, len(warm)), replace=False)
        candidates = np.unique(np.concatenate([batch_targets, sampled]))
        position[candidates] = np.arange(len(candidates))
        labels = torch.from_numpy(position[batch_targets])
        own = position[histories[rows]]  # (B, L): the history's place among the candidates, or -1
        position[candidates] = -1
        table = net.item_table(config.id_dropout)
        users = net.users(table, torch.from_numpy(histories[rows]))
        cand = torch.from_numpy(candidates)
        logits = users @ table[cand].T / config.temperature - log_q[cand][None, :]
        b, l_ = np.nonzero(own >= 0)
        if len(b):
            mask = torch.zeros(logits.shape, dtype=torch.bool)
            mask[torch.from_numpy(b), torch.from_numpy(own[b, l_])] = True
            mask[torch.arange(len(rows)), labels] = False
            logits = logits.masked_fill(mask, -1e9)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        total += loss.item()
        batches += 1
    return total / max(1, batches)


def _validation_rows(validation: Validation, items: list[str]):
    index = {item: i for i, item in enumerate(items)}
    keep = [
        (h, t)
        for h, t in zip(validation.histories, validation.targets, strict=True)
        if any(i in index for i in t)
    ]
    own = [np.array([index[i] for i in h if i in index], dtype=np.int64) for h, _ in keep]
    targets = [np.array([index[i] for i in t if i in index], dtype=np.int64) for _, t in keep]
    return [h for h, _ in keep], own, targets


# --- artifact files ---------------------------------------------------------------------------------------


def save(model: TowerModel, folder: Path, prefix: str = "") -> None:
    """``<prefix>tower.json`` (config, decay, epochs, validation) and ``<prefix>tower_*.npy`` (no pickles);
    the item list is the caller's (the hybrid's, the same order)."""
    meta = {
        "config": asdict(model.config),
        "decay": model.decay,
        "epochs": model.epochs,
        "validation": model.validation,
    }
    (folder / f"{prefix}tower.json").write_text(json.dumps(meta))
    np.save(folder / f"{prefix}tower_items.npy", model.item_vectors.astype(np.float32), allow_pickle=False)
    for n, values in enumerate(model.mlp):
        np.save(folder / f"{prefix}tower_mlp{n}.npy", values.astype(np.float32), allow_pickle=False)


def load(folder: Path, items: list[str], prefix: str = "") -> TowerModel | None:
    """The tower saved under ``prefix``, or None when there is none (models fitted before it)."""
    file = folder / f"{prefix}tower.json"
    if not file.exists():
        return None
    meta = json.loads(file.read_text())
    config = TowerConfig(**meta["config"])
    vectors = np.load(folder / f"{prefix}tower_items.npy", allow_pickle=False)
    if vectors.shape[0] != len(items):
        raise ValueError("the two-tower item vectors do not match the model's items")
    mlp = (
        [np.load(folder / f"{prefix}tower_mlp{n}.npy", allow_pickle=False) for n in range(4)]
        if config.mlp
        else []
    )
    return TowerModel(
        config, items, vectors, float(meta["decay"]), mlp, int(meta["epochs"]), meta["validation"]
    )
