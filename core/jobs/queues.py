from enum import StrEnum


class Queue(StrEnum):
    """The only queue names: GPU hosts consume ``train``; ``infer`` and ``default`` run anywhere."""

    TRAIN = "train"
    INFER = "infer"
    DEFAULT = "default"
