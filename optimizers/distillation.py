"""Knowledge distillation (Hinton et al. 2015): a small student learns from a teacher's softened
outputs as well as from the labels."""

from __future__ import annotations

import logging

from optimizers.errors import OptimizerError
from optimizers.training import Progress, train

log = logging.getLogger(__name__)


def hinton_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    """alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * cross-entropy(s, labels)."""
    import torch.nn.functional as F

    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.softmax(teacher_logits / temperature, dim=1), reduction="batchmean")
    return alpha * temperature ** 2 * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)


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
              validation=None, **kw):
        """Train the student on the Hinton loss; returns it."""
        import torch

        teacher_was_training = self.teacher.training
        self.teacher.eval()  # its outputs are computed under no_grad: the teacher itself is left untouched

        def loss_fn(student, x, y):
            with torch.no_grad():
                teacher_logits = self.teacher(x)
            return hinton_loss(student(x), teacher_logits, y, self.temperature, self.alpha)

        try:
            train(self.student, train_data, epochs=epochs, learning_rate=learning_rate, loss_fn=loss_fn,
                  progress=progress, validation=validation, **kw)
        finally:
            self.teacher.train(teacher_was_training)
        return self.student
