"""Knowledge distillation (Hinton et al. 2015): a small student learns from a teacher's softened
outputs as well as from the labels."""

from __future__ import annotations

import logging

from optimizers.errors import DataMismatch, OptimizerError
from optimizers.pytorch.inputs import select_output
from optimizers.pytorch.training import Progress, train

log = logging.getLogger(__name__)


UNLABELED = -1  # the label of a transfer-set sample: only the teacher's soft targets teach it


def hinton_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * cross-entropy(s, labels); samples
    labelled UNLABELED (-1) count in the first term only."""
    import torch.nn.functional as F

    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.softmax(teacher_logits / temperature, dim=1), reduction="batchmean")
    known = labels != UNLABELED
    if bool(known.all()):
        hard = F.cross_entropy(student_logits, labels)
    elif bool(known.any()):
        hard = F.cross_entropy(student_logits[known], labels[known])
    else:
        hard = student_logits.sum() * 0.0
    return alpha * temperature ** 2 * soft + (1 - alpha) * hard


class KnowledgeDistiller:
    """`KnowledgeDistiller(teacher_model, student_model, temperature=4.0, alpha=0.7).train(train_data, epochs)`
    -> the trained student (trained in place; the teacher is frozen in eval mode)."""

    def __init__(self, teacher_model, student_model, temperature: float = 4.0, alpha: float = 0.7) -> None:
        if temperature <= 0:
            raise OptimizerError(f"temperature must be > 0, got {temperature}")
        if not 0 <= alpha <= 1:
            raise OptimizerError(f"alpha (the weight of the teacher's soft targets) must be in [0, 1], got {alpha}")
        self.teacher = teacher_model
        self.student = student_model
        self.temperature = temperature
        self.alpha = alpha

    def train(self, train_data, epochs: int = 1, learning_rate: float = 3e-3, progress: Progress | None = None,
              validation=None, unlabeled_data=None, **kw):
        """Train the student on the Hinton loss; returns it.

        unlabeled_data: inputs without labels (an array like train_data's inputs), Hinton's "transfer
        set": the teacher's soft targets are all the student learns from them. This is where distillation
        pays most: with few labels, the teacher carries its knowledge over many more inputs."""
        import torch

        if unlabeled_data is not None:
            train_data = _with_transfer_set(train_data, unlabeled_data)

        teacher_was_training = self.teacher.training
        self.teacher.eval()  # its outputs are computed under no_grad: the teacher itself is left untouched

        def loss_fn(student, x, y):
            with torch.no_grad():
                teacher_logits = select_output(self.teacher(x))
            return hinton_loss(select_output(student(x)), teacher_logits, y, self.temperature, self.alpha)

        try:
            train(self.student, train_data, epochs=epochs, learning_rate=learning_rate, loss_fn=loss_fn,
                  progress=progress, validation=validation, **kw)
        finally:
            self.teacher.train(teacher_was_training)
        return self.student


def _with_transfer_set(train_data, unlabeled):
    """(x, y) labelled data plus unlabelled inputs, the latter labelled UNLABELED."""
    import numpy as np

    if hasattr(train_data, "x") and hasattr(train_data, "y"):
        train_data = (train_data.x, train_data.y)
    if not (isinstance(train_data, tuple) and len(train_data) == 2):
        raise OptimizerError("unlabeled_data needs train_data as (inputs, labels) arrays, to append them to")
    x, y = (np.asarray(v) for v in train_data)
    u = np.asarray(unlabeled.x if hasattr(unlabeled, "x") else unlabeled, dtype=x.dtype)
    if u.ndim != x.ndim or u.shape[1:] != x.shape[1:]:
        raise DataMismatch(f"unlabeled_data samples have shape {list(u.shape[1:])}, the labelled ones "
                           f"{list(x.shape[1:])}")
    return np.concatenate([x, u]), np.concatenate([y.astype(np.int64), np.full(len(u), UNLABELED, np.int64)])
