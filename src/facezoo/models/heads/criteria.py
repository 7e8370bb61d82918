"""How a head's logits become its per-sample loss when the class columns are split over ranks and chunks.

- softmax_cross_entropy (every head by default): loss_i = log sum_j exp(z_ij) - z_iy over the columns of every
  rank, with one all-reduce MAX of the row maxima and one SUM of the exp-sums and target logits.
  Unchunked, the (B, C') probabilities are kept for backward; chunked (`chunk` columns at a time), forward keeps
  only the running row max / sum-exp / target logit (online softmax) and backward recomputes each chunk's margin
  logits and back-propagates (p - onehot) g_i: memory O(B x chunk) instead of several (B, C') tensors.
- separable_loss (binary one-vs-all heads: SphereFace2, UniFace): loss_i = sum_j head.column_loss terms; the
  columns are independent, so chunks and ranks just add up; backward recomputes each chunk.

Both return (B,) per-sample losses (the same on every rank) whose backward reaches only this rank's columns.
Parameters a head shares over every rank but uses in its logits (a learnable bias) get their gradient summed over
ranks here (Head.shared_parameters). The step state is fixed (computed once per step), so buffers are untouched.
Collectives run a fixed number of times per call, never per chunk (ranks may hold different chunk counts).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .context import LOCAL, Reducer, RowIndex


def float_logits(logits: Tensor) -> Tensor:
    """Half-precision logits in float32 (sums over many classes need it)."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def chunk_rows(rows: RowIndex, start: int, stop: int) -> RowIndex:
    """The head rows of columns [start, stop) of a weight holding `rows` (None: all rows in order)."""
    if rows is None:
        return slice(start, stop)
    if isinstance(rows, slice):
        first = rows.start or 0
        return slice(first + start, first + stop)
    return rows[start:stop]


def chunk_labels(labels: Tensor, start: int, stop: int) -> Tensor:
    """Columns [start, stop) -> labels relative to the chunk, -1 where the target is outside it."""
    local = labels - start
    return torch.where((local >= 0) & (local < stop - start), local, torch.full_like(local, -1))


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """Per-sample cross-entropy of logits split by columns over ranks; labels -1 = target on another rank.

    Backward is local: d loss_i / d z_ij = (p_ij - [j = y_i]) g_i, with p the globally normalised softmax.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, reduce: Reducer) -> Tensor:
        z = logits.detach()
        row_max = reduce.max(z.amax(dim=1))
        prob = (z - row_max.unsqueeze(1)).exp_()
        sum_exp = reduce.sum(prob.sum(dim=1))
        valid = labels >= 0
        index = labels.clamp(min=0).unsqueeze(1)
        target = reduce.sum(torch.where(valid, z.gather(1, index).squeeze(1), 0.0))  # one rank owns each target
        prob.div_(sum_exp.unsqueeze(1))
        ctx.save_for_backward(prob, index, valid)
        return row_max + sum_exp.log() - target

    @staticmethod
    def backward(ctx, grad_output):
        prob, index, valid = ctx.saved_tensors
        grad = prob.scatter_add_(1, index, -valid.to(prob.dtype).unsqueeze(1))
        return grad.mul_(grad_output.unsqueeze(1)), None, None


def _backward_by_chunk(ctx, embeddings, weight, labels, vjp) -> tuple:
    """Gradients of a chunked loss w.r.t. (embeddings, weight, None x 6, *shared), recomputing each chunk.

    vjp(z, sub) -> (output, grad_output): the chunk's recomputed logits z (under autograd) mapped to the tensor to
    back-propagate and its incoming gradient. Shared parameters' gradients are summed over ranks at the end.
    """
    shared = ctx.shared
    need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    need_p = [ctx.needs_input_grad[8 + i] for i in range(len(shared))]
    grad_x = torch.zeros_like(embeddings) if need_x else None
    grad_w = torch.zeros_like(weight) if need_w else None
    grad_p = [torch.zeros_like(p) if need else None for p, need in zip(shared, need_p)]
    for start in range(0, weight.shape[0], ctx.chunk):
        stop = min(start + ctx.chunk, weight.shape[0])
        sub = chunk_labels(labels, start, stop)
        with torch.enable_grad():
            x = embeddings.detach().requires_grad_(need_x)
            w = weight[start:stop].detach().requires_grad_(need_w)
            out, grad = vjp(ctx.head.logits(x, w, sub, ctx.state, chunk_rows(ctx.rows, start, stop)), sub)
            inputs = [t for t, need in ((x, need_x), (w, need_w), *zip(shared, need_p)) if need]
            got = iter(torch.autograd.grad(out, inputs, grad, allow_unused=True) if inputs else ())
            gx, gw, *gp = (next(got) if need else None for need in (need_x, need_w, *need_p))
        if gx is not None:
            grad_x += gx
        if gw is not None:
            grad_w[start:stop] = gw
        for acc, g in zip(grad_p, gp):
            if g is not None:
                acc += g
    grad_p = [None if g is None else ctx.reduce.shared_grad(g) for g in grad_p]
    return grad_x, grad_w, None, None, None, None, None, None, *grad_p


class _ChunkedSoftmaxCrossEntropy(torch.autograd.Function):
    """_SoftmaxCrossEntropy(head.logits(x, W, labels, state, rows)) computed `chunk` columns of W at a time.

    Forward (no graph kept): per chunk z = head.logits(x, W[a:b], labels - a, state, rows[a:b]); online softmax
    m <- max(m, max_j z_ij), s <- s exp(m_old - m) + sum_j exp(z_ij - m), target logit t_i from the chunk that
    holds it; then MAX / SUM all-reduces; loss_i = m_i + log s_i - t_i. Backward: recompute each chunk's logits
    under autograd and back-propagate (exp(z - m) / s - onehot) g_i. Saved: x, W, labels, m, s.
    """

    @staticmethod
    def forward(ctx, embeddings, weight, labels, head, state, rows, chunk, reduce, *shared):
        batch, columns = embeddings.shape[0], weight.shape[0]
        dtype = torch.promote_types(embeddings.dtype, torch.float32)
        row_max = embeddings.new_full((batch,), float("-inf"), dtype=dtype)
        sum_exp = embeddings.new_zeros((batch,), dtype=dtype)
        target = embeddings.new_zeros((batch,), dtype=dtype)
        for start in range(0, columns, chunk):  # host-known bounds: no sync
            stop = min(start + chunk, columns)
            sub = chunk_labels(labels, start, stop)
            z = float_logits(head.logits(embeddings, weight[start:stop], sub, state, chunk_rows(rows, start, stop)))
            z = z.to(dtype)
            new_max = torch.maximum(row_max, z.amax(dim=1))
            sum_exp = sum_exp * (row_max - new_max).exp() + (z - new_max.unsqueeze(1)).exp().sum(dim=1)
            row_max = new_max
            z_y = z.gather(1, sub.clamp(min=0).unsqueeze(1)).squeeze(1)
            target += torch.where(sub >= 0, z_y, torch.zeros_like(z_y))
        global_max = reduce.max(row_max.clone())
        sum_exp = reduce.sum(sum_exp * (row_max - global_max).exp())
        target = reduce.sum(target)  # exactly one rank (and one chunk) holds each target
        ctx.head, ctx.state, ctx.rows, ctx.chunk, ctx.reduce, ctx.shared = head, state, rows, chunk, reduce, shared
        ctx.save_for_backward(embeddings, weight, labels, global_max, sum_exp)
        return global_max + sum_exp.log() - target

    @staticmethod
    def backward(ctx, grad_output):
        embeddings, weight, labels, row_max, sum_exp = ctx.saved_tensors

        def vjp(z, sub):
            with torch.no_grad():
                grad = (float_logits(z).to(row_max.dtype) - row_max.unsqueeze(1)).exp_().div_(sum_exp.unsqueeze(1))
                grad.scatter_add_(1, sub.clamp(min=0).unsqueeze(1), -(sub >= 0).to(grad.dtype).unsqueeze(1))
                grad.mul_(grad_output.unsqueeze(1))
            return z, grad.to(z.dtype)

        return _backward_by_chunk(ctx, embeddings, weight, labels, vjp)


class _ChunkedSeparable(torch.autograd.Function):
    """loss_i = sum over every rank's columns of head.column_loss(head.logits(...)), `chunk` columns at a time.

    Forward without a graph; backward recomputes each chunk and back-propagates g_i through column_loss.
    """

    @staticmethod
    def forward(ctx, embeddings, weight, labels, head, state, rows, chunk, reduce, *shared):
        columns = weight.shape[0]
        total = None
        for start in range(0, columns, chunk):
            stop = min(start + chunk, columns)
            sub = chunk_labels(labels, start, stop)
            z = head.logits(embeddings, weight[start:stop], sub, state, chunk_rows(rows, start, stop))
            part = head.column_loss(z, sub)
            total = part if total is None else total + part
        ctx.head, ctx.state, ctx.rows, ctx.chunk, ctx.reduce, ctx.shared = head, state, rows, chunk, reduce, shared
        ctx.save_for_backward(embeddings, weight, labels)
        return reduce.sum(total)

    @staticmethod
    def backward(ctx, grad_output):
        embeddings, weight, labels = ctx.saved_tensors

        def vjp(z, sub):
            part = ctx.head.column_loss(z, sub)
            return part, grad_output.to(part.dtype)

        return _backward_by_chunk(ctx, embeddings, weight, labels, vjp)


def softmax_cross_entropy(head, embeddings, weight, labels, state, rows=None, chunk=0, reduce=LOCAL) -> Tensor:
    """(B,) softmax cross-entropy of head's margin logits over every rank's columns (module docstring)."""
    shared = [p for p in head.shared_parameters() if p.requires_grad]
    if chunk or shared:
        chunk = chunk or weight.shape[0]
        return _ChunkedSoftmaxCrossEntropy.apply(embeddings, weight, labels, head, state, rows, chunk, reduce, *shared)
    logits = float_logits(head.logits(embeddings, weight, labels, state, rows))
    return _SoftmaxCrossEntropy.apply(logits, labels, reduce)


def separable_loss(head, embeddings, weight, labels, state, rows=None, chunk=0, reduce=LOCAL) -> Tensor:
    """(B,) sum of head.column_loss over every rank's columns (module docstring)."""
    shared = [p for p in head.shared_parameters() if p.requires_grad]
    chunk = chunk or weight.shape[0]
    return _ChunkedSeparable.apply(embeddings, weight, labels, head, state, rows, chunk, reduce, *shared)
