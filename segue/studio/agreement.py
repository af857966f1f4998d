"""Does a model agree with a human's odd-one-out answer?

The model's answer is `choose.model_answer`'s: the closest pair of the three vectors by cosine
distance belongs together, and the odd one out is the slot not in it. The model agrees with a
human when that slot is the one the human picked. The fine-tune (training/finetune_human.py)
and its evaluation (bench/eval_human_triplets.py) both count agreement with these functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from segue.studio.choose import FloatArray, model_answer

BoolArray = npt.NDArray[np.bool_]


def agrees(feels: Sequence[FloatArray], human_odd: int) -> bool:
    """Whether the model's odd one out among three vectors (any length, compared by cosine
    distance) is slot `human_odd` (0..2), the human's pick."""
    if human_odd not in (0, 1, 2):
        raise ValueError(f"the human's odd slot must be 0, 1 or 2, got {human_odd}")
    odd, _ = model_answer(feels)
    return odd == human_odd


def agreement_flags(vectors: npt.NDArray[np.floating], human_odd: Sequence[int]
                    ) -> BoolArray:
    """Per triplet, whether the model agrees: `vectors` is [n, 3, dim] (the three clips of
    each triplet in page order) and `human_odd` the n picked slots."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 3 or array.shape[1] != 3:
        raise ValueError(f"vectors must be [n, 3, dim], got shape {array.shape}")
    if array.shape[0] != len(human_odd):
        raise ValueError(f"{array.shape[0]} triplets of vectors for {len(human_odd)} answers")
    return np.array([agrees(list(row), int(odd)) for row, odd in zip(array, human_odd,
                                                                      strict=True)],
                    dtype=np.bool_)


__all__ = ["agreement_flags", "agrees"]
