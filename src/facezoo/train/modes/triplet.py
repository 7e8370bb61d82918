"""Triplet training: P identities x K images per batch, batch-hard triplet loss with a margin (FaceNet, Schroff et
al. CVPR 2015; batch-hard mining, Hermans et al. 2017), typically fine-tuning a softmax-trained backbone
(model.init_from), as InsightFace's triplet recipe does: no class head, so any number of identities.

The loss runs on the global batch (every rank gathers all ranks' embeddings), so W ranks of P identities equal one
process of W x P identities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from ..distill.base import wide
from ..distributed import all_gather_nograd, all_gather_replicated
from . import MODES
from .parts import IdentityBatchMode

DIST_EPS = 1e-12  # floor under the square root of non-squared distances


def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2, squared: bool = True):
    """Batch-hard triplet loss of embeddings (B, D) with labels (B,).

    On x = x / ||x||: d_ij = ||x_i - x_j||^2 = 2 - 2 x_i.x_j (squared=False: its square root). For each anchor i
    with a positive (same label, j != i) and a negative in the batch:
      l_i = max(0, max_{j positive} d_ij - min_{k negative} d_ik + margin);  L = mean of l_i over those anchors
    (0 when no anchor has both).
    """
    x = F.normalize(wide(embeddings), dim=1)
    d = (2.0 - 2.0 * (x @ x.t())).clamp(min=0.0)
    if not squared:
        d = d.clamp(min=DIST_EPS).sqrt()
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive, negative = same & ~eye, ~same
    hardest_pos = torch.where(positive, d, torch.full_like(d, float("-inf"))).amax(dim=1)
    hardest_neg = torch.where(negative, d, torch.full_like(d, float("inf"))).amin(dim=1)
    usable = positive.any(dim=1) & negative.any(dim=1)
    hinge = torch.where(usable, (hardest_pos - hardest_neg + margin).clamp(min=0.0), torch.zeros_like(hardest_pos))
    return hinge.sum() / usable.sum().clamp(min=1)


@dataclass
class TripletOptions:
    k: int = 4  # images of each identity in a batch; P = micro-batch / k identities
    margin: float = 0.2  # FaceNet's alpha, on squared unit-vector distances (range [0, 4])
    squared: bool = True  # squared Euclidean distances (FaceNet); false: Euclidean


@MODES.register("triplet")
class Triplet(IdentityBatchMode):
    Config = TripletOptions

    def __init__(self, ctx, options: TripletOptions):
        super().__init__(ctx, options)
        if options.k < 2:
            raise ConfigError(f"triplet.k={options.k}: an anchor needs a positive in its batch; use k >= 2")
        if not options.margin >= 0:
            raise ConfigError(f"triplet.margin={options.margin} must be >= 0 (FaceNet uses 0.2)")
        self.setup_identity_batches("triplet", options.k)

    def loss(self, batch, generator):
        x, labels = self.ctx.prepare(batch, generator)
        with self.ctx.autocast():
            embeddings = self.model(x)
        everyone = all_gather_replicated(embeddings.float())
        return batch_hard_triplet_loss(everyone, all_gather_nograd(labels), self.options.margin, self.options.squared)

    def describe(self):
        cfg, o, s = self.ctx.cfg, self.options, self.sampler
        return (
            f"{cfg.model.backbone} with batch-hard triplets (margin {o.margin}) on {len(s.identities)} identities of "
            f">= {o.k} images ({s.excluded} with fewer left out), {s.batch_size} x {o.k} per micro-batch"
        )
