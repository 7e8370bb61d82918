"""FitNet hints (Romero et al., ICLR 2015): a learnt regressor maps a student layer onto a teacher layer.

  loss = mean over elements of (r(s) - t)^2
r: a 1x1 convolution C_s -> C_t for feature maps (followed by average pooling to the teacher's H x W when the
sizes differ), a linear map D_s -> D_t for embeddings (student_layer / teacher_layer "" = the embeddings). The
regressor trains with the student (it is part of the mode's "distill" part).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from . import DISTILL_LOSSES
from .base import DistillLoss, wide


@DISTILL_LOSSES.register("fitnet")
class FitNet(DistillLoss):
    name = "fitnet"
    reads = "features"

    def __init__(self, student_shape, teacher_shape, student_layer: str = "", teacher_layer: str = ""):
        super().__init__(student_shape, teacher_shape)
        self.student_layer, self.teacher_layer = student_layer, teacher_layer
        s, t = self.student_shape, self.teacher_shape
        if len(s) == 1 and len(t) == 1:
            self.regressor = nn.Linear(s[0], t[0], bias=False)
        elif len(s) == 3 and len(t) == 3:
            self.regressor = nn.Conv2d(s[0], t[0], kernel_size=1, bias=False)
        else:
            raise ConfigError(
                f"fitnet: student layer '{student_layer}' gives {s}, teacher layer '{teacher_layer}' gives {t}; pair "
                "two feature maps (C, H, W) or two embeddings"
            )

    def forward(self, student, teacher, labels):
        r = self.regressor(wide(student))
        if r.dim() == 4 and r.shape[-2:] != teacher.shape[-2:]:
            r = F.adaptive_avg_pool2d(r, teacher.shape[-2:])
        return (r - wide(teacher)).pow(2).mean()
