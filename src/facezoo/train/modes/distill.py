"""Knowledge distillation: a frozen teacher (any facezoo model file: another backbone, embedding size or input
size) guides a student trained with its own margin head (the conventional classifier, parts.py):
  loss = classification_weight * CE_margin(student) + sum_k weight_k * L_k(student, teacher)
with the L_k registered distillation losses (train/distill: l2, cosine, kd, fitnet, rkd_distance, rkd_angle, pkt,
sp, ekd). The teacher sees the student's images with the same flips, normalised with its own metadata (and
resized to its input size). Losses that relate samples (batch_wide) see the global batch. The teacher's
embeddings can be computed once for the whole set (cache: true; train/distill/cache.py). Each term is logged as
loss/<name>. Learnt parts of the losses (FitNet regressors) and their buffers (EKD thresholds) are checkpointed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...data.transforms import random_flip_mask
from ...errors import ConfigError, ModelError
from ..distill import DISTILL_LOSSES
from ..distill.cache import TeacherCache
from ..distributed import all_gather_nograd, all_gather_replicated, all_gather_with_grad, shard_range
from ..warmstart import load_module
from . import MODES
from .base import Mode
from .parts import ClassifierPart


@dataclass
class DistillLossConfig:
    name: str = ""  # a registered distillation loss (facezoo list distill_losses)
    weight: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {T: 4} (kd), {student_layer: layer3} (fitnet)

    def __post_init__(self):
        DISTILL_LOSSES.get(self.name)  # an unknown name fails at load, with did-you-mean
        if not self.weight >= 0:
            raise ConfigError(f"distill.losses: weight of {self.name} must be >= 0, got {self.weight}")


@dataclass
class DistillOptions:
    teacher: str = ""  # a facezoo model.pt / checkpoint.pt (kd needs a checkpoint.pt with a head over these classes)
    losses: list[DistillLossConfig] = field(default_factory=list)  # e.g. [{name: cosine, weight: 1}]
    classification_weight: float = 1.0  # the student's own margin-softmax loss (0: distillation only)
    cache: bool = False  # compute the teacher's embeddings of the whole set once (OUTPUT/teacher_cache)


class _Capture:
    """Outputs of the named submodules of `module`, recorded by forward hooks at each forward."""

    def __init__(self, module: nn.Module, names: set[str], who: str):
        self.out: dict[str, torch.Tensor] = {}
        modules = dict(module.named_modules())
        for name in names:
            if name not in modules:
                children = ", ".join(n for n, _ in module.named_children())
                raise ConfigError(f"distill: the {who} has no layer '{name}'; its top-level layers: {children}")
            modules[name].register_forward_hook(lambda m, i, o, n=name: self.out.__setitem__(n, o))


class Distiller(nn.Module):
    """The weighted distillation losses as one module (DDP-wrapped when they learn: FitNet regressors)."""

    def __init__(self, losses: list[nn.Module], weights: list[float], names: list[str]):
        super().__init__()
        self.losses = nn.ModuleList(losses)
        self.weights, self.names = list(weights), list(names)

    def forward(self, inputs: list[tuple]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        terms = [loss(*args) for loss, args in zip(self.losses, inputs)]
        return sum(w * t for w, t in zip(self.weights, terms)), terms


@MODES.register("distill")
class Distill(Mode):
    Config = DistillOptions

    def __init__(self, ctx, options: DistillOptions):
        super().__init__(ctx, options)
        cfg = ctx.cfg
        if not options.teacher:
            raise ConfigError("distill.teacher is empty: give the teacher's facezoo model.pt or checkpoint.pt")
        if not options.losses:
            raise ConfigError("distill.losses is empty: e.g. [{name: cosine, weight: 1.0}] (facezoo list)")
        if not options.classification_weight >= 0:
            raise ConfigError("distill.classification_weight must be >= 0")
        self.dataset = ctx.open_dataset()
        ctx.check_decode(self.dataset)
        self.num_classes = int(self.dataset.num_classes)
        self.backbone = ctx.build_backbone()
        self.model = ctx.wrap(self.backbone)
        self.part = ClassifierPart(ctx, cfg.head, self.num_classes, init=ctx.init_state("head", "class head"))
        self.teacher, source = load_module(options.teacher, ctx.device)
        self.teacher_meta = source.meta
        specs = [(c, DISTILL_LOSSES._targets[c.name]) for c in options.losses]
        layers = [(c.kwargs.get("student_layer", ""), c.kwargs.get("teacher_layer", "")) for c, k in specs]
        hinted = [pair for (c, k), pair in zip(specs, layers) if k.reads == "features"]
        self._hooks = (
            _Capture(self.backbone, {s for s, _ in hinted if s}, "student"),
            _Capture(self.teacher, {t for _, t in hinted if t}, "teacher"),
        )
        shapes = self._probe_shapes()
        losses = []
        for (c, kind), (s_layer, t_layer) in zip(specs, layers):
            if kind.reads == "features":
                s_shape, t_shape = shapes[0][s_layer], shapes[1][t_layer]
            elif kind.reads == "cosines":
                s_shape = t_shape = (self.num_classes,)
            else:
                s_shape, t_shape = shapes[0][""], shapes[1][""]
            losses.append(DISTILL_LOSSES.create(c.name, student_shape=s_shape, teacher_shape=t_shape, **c.kwargs))
        self.kinds = [kind for _, kind in specs]
        self.distiller = Distiller(losses, [c.weight for c in options.losses], [c.name for c in options.losses])
        self.distiller.to(ctx.device)
        has_params = any(p.requires_grad for p in self.distiller.parameters())
        self.distiller_run = ctx.wrap(self.distiller) if has_params else self.distiller
        self.teacher_centres = self._teacher_centres(source) if any(k.reads == "cosines" for k in self.kinds) else None
        self.cache = self._cache(hinted) if options.cache else None
        self._sums = torch.zeros(len(losses) + 1, device=ctx.device)
        self._count = 0

    # ---- building --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _probe_shapes(self) -> tuple[dict, dict]:
        """Per-sample output shapes of the hinted layers ("" = the embedding) of student and teacher (eval mode)."""
        out = []
        nets = ((self.backbone, self.ctx.meta, self._hooks[0]), (self.teacher, self.teacher_meta, self._hooks[1]))
        for net, meta, capture in nets:
            was = net.training
            net.eval()
            emb = net(torch.zeros(2, 3, *meta.network_size, device=self.ctx.device))
            net.train(was)
            out.append({"": tuple(emb.shape[1:]), **{n: tuple(t.shape[1:]) for n, t in capture.out.items()}})
            capture.out.clear()
        return out[0], out[1]

    def _teacher_centres(self, source) -> torch.Tensor:
        """This rank's rows of the teacher head's class centres (for kd), from the teacher's checkpoint.pt."""
        head = (source.mode_state or {}).get("head") or {}
        weight = (head.get("state") or {}).get("weight")
        if weight is None or head.get("num_classes") != self.num_classes:
            raise ConfigError(
                f"distillation loss kd needs the teacher's class head over the {self.num_classes} training classes: "
                f"{self.options.teacher} has {'none' if weight is None else head.get('num_classes')}; give the "
                "teacher run's checkpoint.pt trained on this set, or drop kd"
            )
        if self.part.head.weight.shape[1] != self.ctx.cfg.model.embedding_size:
            raise ConfigError(
                f"distillation loss kd needs one class centre per class; head {self.ctx.cfg.head.name} keeps more"
            )
        if self.ctx.cfg.head.sample_rate < 1:
            raise ConfigError("distillation loss kd uses every class centre: set head.sample_rate=1 (no Partial FC)")
        w = self.ctx.world
        start, end = shard_range(self.num_classes, w.rank, w.world_size)
        return F.normalize(weight[start:end].float(), dim=1).to(self.ctx.device)

    def _cache(self, hinted) -> TeacherCache:
        if any(t for _, t in hinted):
            raise ConfigError(
                "distill.cache holds teacher embeddings only: fitnet on a teacher_layer needs cache=false"
            )
        if getattr(self.ctx.cfg.data, "augment", None):
            raise ConfigError("distill.cache: cached teacher embeddings cannot follow data.augment; set cache=false")
        return TeacherCache.open_or_build(self.ctx, self.teacher, self.teacher_meta, self.options.teacher, self.dataset)

    # ---- data ------------------------------------------------------------------------------------------------
    def steps_per_epoch(self):
        return len(self.dataset) // (self.ctx.cfg.batch_size * self.ctx.world.world_size)

    def batches(self, epoch, start_step):
        sampler = self.ctx.batch_sampler(self.dataset, epoch, start_step)
        loader = self.ctx.loader(self.dataset, sampler)
        if self.cache is None:
            return loader
        return ({**batch, "indices": indices} for indices, batch in zip(iter(sampler), loader))

    # ---- the step --------------------------------------------------------------------------------------------
    def trainable(self):
        return {"backbone": self.backbone, "head": self.part, "distill": self.distiller}

    def begin_step(self, batches):
        self.part.begin_step([b["labels"] for b in batches])

    def _teacher(self, batch, generator_state) -> tuple[torch.Tensor, dict]:
        """Teacher embeddings (b, D_t) and hinted features of this micro-batch, with the student's flips."""
        g = torch.Generator()
        g.set_state(generator_state)
        if self.cache is not None and not batch["skipped"]:
            flip = random_flip_mask(len(batch["indices"]), g, self.ctx.device) if self.ctx.cfg.data.flip else None
            return self.cache.lookup(batch["indices"], flip), {}
        x, _ = self.ctx.prepare(batch, g, meta=self.teacher_meta)
        size = self.teacher_meta.network_size  # after a crop_eye teacher's crop
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        with torch.no_grad(), self.ctx.autocast():
            emb = self.teacher(x)
        features = dict(self._hooks[1].out)
        self._hooks[1].out.clear()
        return emb.float(), features

    def _inputs(self, emb_s, emb_t, feats_s, feats_t, labels) -> list[tuple]:
        out, everyone = [], {}
        for loss, kind in zip(self.distiller.losses, self.kinds):
            if kind.reads == "features":
                s = feats_s[loss.student_layer] if loss.student_layer else emb_s
                t = feats_t[loss.teacher_layer] if loss.teacher_layer else emb_t
                out.append((s, t, labels))
            elif kind.reads == "cosines":
                if "cos" not in everyone:
                    s_all = F.normalize(all_gather_with_grad(emb_s), dim=1)
                    t_all = F.normalize(all_gather_nograd(emb_t), dim=1)
                    w_s = F.normalize(self.part.head.weight, dim=1)
                    everyone["cos"] = (s_all @ w_s.t(), t_all @ self.teacher_centres.t(), all_gather_nograd(labels))
                out.append(everyone["cos"])
            elif kind.batch_wide:
                if "batch" not in everyone:
                    everyone["batch"] = (
                        all_gather_replicated(emb_s),
                        all_gather_nograd(emb_t),
                        all_gather_nograd(labels),
                    )
                out.append(everyone["batch"])
            else:
                out.append((emb_s, emb_t, labels))
        return out

    def loss(self, batch, generator):
        state = generator.get_state()  # the teacher draws the same flips
        x, labels = self.ctx.prepare(batch, generator)
        with self.ctx.autocast():
            emb_s = self.model(x).float()
        feats_s = dict(self._hooks[0].out)
        self._hooks[0].out.clear()
        emb_t, feats_t = self._teacher(batch, state)
        cls = self.part(emb_s, labels)
        distill, terms = self.distiller_run(self._inputs(emb_s, emb_t, feats_s, feats_t, labels))
        self._sums += torch.stack([cls.detach(), *(t.detach().float() for t in terms)])
        self._count += 1
        return self.options.classification_weight * cls + distill

    def sub_steps(self, optimizer):
        return self.part.sub_steps(optimizer)

    def end_step(self):
        self.part.end_step()

    def log_values(self):
        means = self._sums / max(self._count, 1)
        names = ["classification", *self.distiller.names]
        self._sums, self._count = torch.zeros_like(self._sums), 0
        return {f"loss/{n}": v for n, v in zip(names, means)}

    # ---- state -----------------------------------------------------------------------------------------------
    def sharded_params(self):
        return [self.part.sharded_param()]

    def state_dict(self):
        return {"head": self.part.state(), "distill": self.distiller.state_dict(), "losses": self.distiller.names}

    def check_resume(self, state, path):
        self.part.check(state.get("head") or {"state": None}, path)
        if state.get("losses") != self.distiller.names:
            raise ModelError(
                f"{path}: trained with distillation losses {state.get('losses')}, the recipe has "
                f"{self.distiller.names}; resume needs the same distill.losses (or use a new output folder)"
            )

    def load_state_dict(self, state):
        self.part.load(state["head"])
        self.distiller.load_state_dict(state["distill"])

    def describe(self):
        cfg, t = self.ctx.cfg, self.teacher_meta
        terms = " + ".join(f"{w} {n}" for w, n in zip(self.distiller.weights, self.distiller.names))
        return (
            f"student {cfg.model.backbone} ({cfg.model.embedding_size}-d) + {cfg.head.name}, teacher {t.backbone} "
            f"({t.embedding_size}-d, {'cached' if self.cache else 'online'}): {self.options.classification_weight} "
            f"classification + {terms}, on {len(self.dataset)} images of {self.num_classes} identities"
        )
