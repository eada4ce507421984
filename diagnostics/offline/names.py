"""Training-log tag names mapped to infoscope's metric names, so imported logs feed the detectors.

Known tags (the first tag of a row that a run holds is renamed; the others keep their names):

=========================  ==============================================================
infoscope metric           tags, in order of preference (trainer)
=========================  ==============================================================
``lm/token_entropy/mean``  ``actor/entropy`` (verl); ``train/entropy`` (TRL GRPO through
                           the Hugging Face TensorBoard callback), ``entropy`` (TRL in a
                           CSV/JSONL export)
``rl/reward``              ``critic/score/mean`` (verl: the task score, before any in-reward
                           KL penalty); ``train/reward``, ``reward`` (TRL GRPO);
                           ``train/objective/scores``, ``objective/scores`` (TRL PPO/RLOO)
``rl/kl``                  ``actor/kl_loss`` (verl, KL loss to the reference),
                           ``actor/reward_kl_penalty`` (verl, KL in the reward);
                           ``train/kl``, ``kl`` (TRL GRPO); ``train/objective/kl``,
                           ``objective/kl`` (TRL PPO/RLOO)
``rl/response_length``     ``response_length/mean`` (verl); ``train/completions/mean_length``,
                           ``completions/mean_length``, ``train/completion_length``,
                           ``completion_length`` (TRL GRPO, newer and older names)
=========================  ==============================================================

Both trainers log entropy in nats as the mean over response tokens, which is what
``lm/token_entropy/mean`` means. TRL's PPO ``objective/entropy`` is a sum over a sequence's
tokens, not a per-token mean, so it is not mapped; pass ``--map
train/objective/entropy=lm/token_entropy/mean`` to watch it anyway (the collapse detector
compares the series with its own start, so a consistent scale is enough).

Rules (:func:`resolve_names`): a ``--map TAG=METRIC`` pair wins over the table; a metric that
a run already holds under its own name is never mapped onto; every other tag keeps its own
name. Two tags may not end up under one name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["KNOWN_TAGS", "parse_map", "resolve_names"]

#: infoscope metric -> tags that mean it, in order of preference
KNOWN_TAGS: dict[str, tuple[str, ...]] = {
    "lm/token_entropy/mean": ("actor/entropy", "train/entropy", "entropy"),
    "rl/reward": (
        "critic/score/mean",
        "train/reward",
        "reward",
        "train/objective/scores",
        "objective/scores",
    ),
    "rl/kl": (
        "actor/kl_loss",
        "actor/reward_kl_penalty",
        "train/kl",
        "kl",
        "train/objective/kl",
        "objective/kl",
    ),
    "rl/response_length": (
        "response_length/mean",
        "train/completions/mean_length",
        "completions/mean_length",
        "train/completion_length",
        "completion_length",
    ),
}


def parse_map(pairs: Sequence[str] | None) -> dict[str, str]:
    """``["TAG=METRIC", ...]`` (the ``--map`` option) as a dict; a malformed pair raises."""
    out: dict[str, str] = {}
    for pair in pairs or ():
        tag, sep, metric = str(pair).rpartition("=")
        if not sep or not tag or not metric:
            raise ValueError(f"--map: expected TAG=METRIC, got {pair!r}")
        if tag in out and out[tag] != metric:
            raise ValueError(f"--map: tag {tag!r} given twice ({out[tag]!r} and {metric!r})")
        out[tag] = metric
    return out


def resolve_names(tags: Iterable[str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The metric name under which each of ``tags`` is written (see the module docstring).

    ``extra`` holds the user's ``TAG -> METRIC`` pairs; pairs whose tag is not among ``tags``
    are ignored here (the caller decides whether that is an error).
    """
    tags = list(dict.fromkeys(tags))
    present = set(tags)
    extra = {t: m for t, m in (extra or {}).items() if t in present}
    names = {t: t for t in tags}
    names.update(extra)
    claimed = set(extra.values())
    for metric, candidates in KNOWN_TAGS.items():
        if metric in claimed or metric in present:
            continue
        for tag in candidates:
            if tag in present and tag not in extra:
                names[tag] = metric
                break
    seen: dict[str, str] = {}
    for tag in tags:
        name = names[tag]
        if name in seen:
            other = seen[name]
            raise ValueError(
                f"--map: tags {other!r} and {tag!r} would both be written as {name!r}; "
                "map one of them to another name"
            )
        seen[name] = tag
    return names
