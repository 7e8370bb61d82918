"""Triplet training: P identities x K images per batch, batch-hard triplet loss with a margin (FaceNet, Schroff et
al. CVPR 2015; batch-hard mining, Hermans et al. 2017), typically fine-tuning a softmax-trained backbone
(model.init_from), as InsightFace's triplet recipe does: no class head, so any number of identities.

The loss is models/losses/triplet.py's triplet_loss (the head.aux triplet loss's formula), on the global batch
(every rank gathers all ranks' embeddings), so W ranks of P identities equal one process of W x P identities.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from ...models.losses.triplet import triplet_loss
from ..distributed import all_gather_nograd, all_gather_replicated
from . import MODES
from .parts import IdentityBatchMode


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
        return triplet_loss(everyone, all_gather_nograd(labels), self.options.margin, self.options.squared)

    def describe(self):
        cfg, o, s = self.ctx.cfg, self.options, self.sampler
        return (
            f"{cfg.model.backbone} with batch-hard triplets (margin {o.margin}) on {len(s.identities)} identities of "
            f">= {o.k} images ({s.excluded} with fewer left out), {s.batch_size} x {o.k} per micro-batch"
        )
