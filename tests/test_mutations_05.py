"""The mistakes ijepa.ipynb's test cells must catch: the common I-JEPA mistakes, each a plausible
wrong answer (a MUTANT) for one answer cell, and the keyword the failed check's message must
contain.
Each must also be caught by the hidden part of its test cell alone (the random-input tests do not
lean on the worked example).
The notebook runs in-process (``notebook_harness``); what every graded notebook promises (the
solution passes silently, the release fails, the points add up) is ``test_notebook_contract.py``.
Run with ``-s`` to see the table: mistake -> test cell -> first line of the message.
"""
from __future__ import annotations


from notebook_harness import REPO, Notebook, Template, fn, mutation_tests

NOTEBOOK = Notebook(REPO / "solutions" / "05_ijepa" / "ijepa.ipynb")


SIZE = Template(fn('''
    def block_size(grid, scale, aspect_ratio):
        area = {area}
        h = round(math.sqrt({h}))
        w = round(math.sqrt({w}))
        return {result}
'''), area="int(grid * grid * scale)", h="area * aspect_ratio", w="area / aspect_ratio",
    result="min(max(h, 1), grid), min(max(w, 1), grid)")

BLOCK = Template(fn('''
    def n_positions(grid, size):
        return {positions}

    def block_indices(grid, top, left, h, w):
        rows = torch.arange(top, top + {h}).unsqueeze(1)
        cols = torch.arange(left, left + {w}).unsqueeze(0)
        return {result}
'''), positions="grid - size + 1", h="h", w="w", result="(rows * grid + cols).flatten()")

CONTEXT = Template(fn('''
    def context_indices(grid, context_block, target_blocks):
        keep = torch.zeros(grid * grid, dtype=torch.bool)
        keep[{context}] = True
        for block in {targets}:
            keep[block] = False
        return keep.nonzero().flatten()
'''), context="context_block", targets="target_blocks")

PREDICTOR = Template(fn('''
    def predictor_input(context_tokens, context_idx, target_idx, mask_token, pos):
        kc, kt = context_idx.shape[1], target_idx.shape[1]
        context = context_tokens + {context_pos}
        holes = {token} + {hole_pos}
        return torch.cat({order}, dim=1)
'''), context_pos="pos[context_idx]", token="mask_token", hole_pos="pos[target_idx]",
    order="[context, holes]")

LOSS = Template(fn('''
    def jepa_loss(pred, target_encoder, image_tokens, target_idx):
        with torch.no_grad():
            features = target_encoder(image_tokens)
            features = {norm}
            index = target_idx.unsqueeze(-1).expand(-1, -1, features.shape[-1])
            targets = {gather}
        return {loss}
'''), norm="F.layer_norm(features, features.shape[-1:])",
    gather="torch.gather(features, 1, index)", loss="F.smooth_l1_loss(pred, targets)")

EMA = Template(fn('''
    def ema_step(target_encoder, context_encoder, predictor, momentum):
        with torch.no_grad():
            for target, online in zip({slow}.parameters(), {fast}.parameters()):
                {update}
'''), slow="target_encoder", fast="context_encoder",
    update="target.mul_(momentum).add_(online, alpha=1 - momentum)")

SCHEDULE = Template(fn('''
    def momentum_schedule(start, end, steps):
        return {schedule}
'''), schedule="start + (end - start) * torch.arange(steps, dtype=torch.float64) / steps")

SIZE_CELLS = ("solution_block_size", "test_block_size")
BLOCK_CELLS = ("solution_block_indices", "test_block_indices")
CONTEXT_CELLS = ("solution_context_indices", "test_context_indices")
PREDICTOR_CELLS = ("solution_predictor_input", "test_predictor_input")
LOSS_CELLS = ("solution_jepa_loss", "test_jepa_loss")
EMA_CELLS = ("solution_ema_step", "test_ema_step")
SCHEDULE_CELLS = ("solution_momentum_schedule", "test_momentum_schedule")

# (mistake, solution cell replaced, test cell that must fail, keyword in the message, mutant)
MUTANTS = [
    # --- 1. block_size ---------------------------------------------------------------------------
    ("size: h and w swapped (aspect ratio inverted)", *SIZE_CELLS, "swapped",
     SIZE.format(h="area / aspect_ratio", w="area * aspect_ratio")),
    ("size: scale taken of the side, not of the area", *SIZE_CELLS, "of the side",
     SIZE.format(area="(scale * grid) ** 2")),
    ("size: capped at grid - 1, as the official collator", *SIZE_CELLS, "grid - 1",
     SIZE.format(result="min(max(h, 1), grid - 1), min(max(w, 1), grid - 1)")),
    ("size: not clipped to the grid", *SIZE_CELLS, "not clipped", SIZE.format(result="h, w")),
    ("size: calls course_lib.ijepa._block_size with a one-point range", *SIZE_CELLS, "reference",
     fn('''
        from course_lib.ijepa import _block_size
        def block_size(grid, scale, aspect_ratio):
            return _block_size(torch.Generator(), grid, (scale, scale),
                               (aspect_ratio, aspect_ratio), False)
     ''')),
    # --- 2. n_positions and block_indices --------------------------------------------------------
    ("positions: exclusive bound at the grid edge, as the official randint", *BLOCK_CELLS,
     "exclusive bound", BLOCK.format(positions="grid - size")),
    ("indices: column-major (c * g + r)", *BLOCK_CELLS, "column-major",
     BLOCK.format(result="(cols * grid + rows).flatten()")),
    ("indices: listed column by column", *BLOCK_CELLS, "column by column",
     BLOCK.format(result="(rows * grid + cols).t().flatten()")),
    ("indices: h and w swapped", *BLOCK_CELLS, "swapped", BLOCK.format(h="w", w="h")),
    # --- 3. context_indices ----------------------------------------------------------------------
    ("context: targets not removed", *CONTEXT_CELLS, "not removed",
     CONTEXT.format(targets="[]")),
    ("context: only the first target removed", *CONTEXT_CELLS, "first target",
     CONTEXT.format(targets="target_blocks[:1]")),
    ("context: the context block ignored (the grid minus the targets)", *CONTEXT_CELLS,
     "context block ignored", CONTEXT.format(context=":")),
    ("context: kept the overlap with the targets", *CONTEXT_CELLS, "overlap", fn('''
        def context_indices(grid, context_block, target_blocks):
            inside = torch.zeros(grid * grid, dtype=torch.bool)
            inside[context_block] = True
            hidden = torch.zeros_like(inside)
            for block in target_blocks:
                hidden[block] = True
            return (inside & hidden).nonzero().flatten()
     ''')),
    ("context: left in the order of the context block", *CONTEXT_CELLS, "increasing order", fn('''
        def context_indices(grid, context_block, target_blocks):
            hidden = {i for block in target_blocks for i in block.tolist()}
            return torch.tensor([i for i in context_block.tolist() if i not in hidden],
                                dtype=torch.long)
     ''')),
    # --- 4. predictor_input ----------------------------------------------------------------------
    ("predictor: positions by place in the sequence", *PREDICTOR_CELLS, "by place",
     PREDICTOR.format(context_pos="pos[:kc]",
                      hole_pos="pos[kc:kc + kt].expand(len(target_idx), -1, -1)")),
    ("predictor: mask tokens without positions", *PREDICTOR_CELLS, "mask tokens without positions",
     PREDICTOR.format(hole_pos="torch.zeros_like(pos[target_idx])")),
    ("predictor: one position for the whole block", *PREDICTOR_CELLS, "whole block",
     PREDICTOR.format(hole_pos="pos[target_idx].mean(dim=1, keepdim=True).expand(-1, kt, -1)")),
    ("predictor: the context's positions for the mask tokens", *PREDICTOR_CELLS,
     "context's positions", PREDICTOR.format(hole_pos="pos[context_idx[:, :kt]]")),
    ("predictor: mask tokens before the context", *PREDICTOR_CELLS, "before the context",
     PREDICTOR.format(order="[holes, context]")),
    ("predictor: context tokens without positions", *PREDICTOR_CELLS,
     "context tokens without positions", PREDICTOR.format(context_pos="0")),
    ("predictor: the first image's indices for every image", *PREDICTOR_CELLS, "first image",
     PREDICTOR.format(context_pos="pos[context_idx[0]]",
                      hole_pos="pos[target_idx[0]].expand(len(target_idx), -1, -1)")),
    ("predictor: mask token detached", *PREDICTOR_CELLS, "detached",
     PREDICTOR.format(token="mask_token.detach()")),
    ("predictor: positions added in place to the context tokens", *PREDICTOR_CELLS, "in place",
     fn('''
        def predictor_input(context_tokens, context_idx, target_idx, mask_token, pos):
            context_tokens += pos[context_idx]
            return torch.cat([context_tokens, mask_token + pos[target_idx]], dim=1)
     ''')),
    # --- 5. jepa_loss ----------------------------------------------------------------------------
    ("loss: squared error instead of smooth L1", *LOSS_CELLS, "squared error",
     LOSS.format(loss="F.mse_loss(pred, targets)")),
    ("loss: L1 instead of smooth L1", *LOSS_CELLS, "L1 instead",
     LOSS.format(loss="F.l1_loss(pred, targets)")),
    ("loss: no layer norm", *LOSS_CELLS, "no layer norm", LOSS.format(norm="features")),
    ("loss: layer norm over the patches", *LOSS_CELLS, "over the patches", LOSS.format(
        norm="F.layer_norm(features.transpose(1, 2), features.shape[1:2]).transpose(1, 2)")),
    ("loss: layer norm over patches and width together", *LOSS_CELLS, "wrong axis",
     LOSS.format(norm="F.layer_norm(features, features.shape[1:])")),
    ("loss: gathered first, then normalised over the block", *LOSS_CELLS,
     "before the layer norm", LOSS.format(
         norm="features",
         gather="F.layer_norm(torch.gather(features, 1, index), index.shape[1:])")),
    ("loss: variance with Bessel's correction", *LOSS_CELLS, "Bessel", LOSS.format(
        norm="(features - features.mean(-1, keepdim=True)) "
             "/ torch.sqrt(features.var(-1, keepdim=True) + 1e-5)")),
    ("loss: summed over D, averaged over the patches", *LOSS_CELLS, "wrong axis",
     LOSS.format(loss="F.smooth_l1_loss(pred, targets, reduction='none').sum(-1).mean()")),
    ("loss: targets not detached", *LOSS_CELLS, "not detached", fn('''
        def jepa_loss(pred, target_encoder, image_tokens, target_idx):
            features = F.layer_norm(target_encoder(image_tokens), (image_tokens.shape[-1],))
            index = target_idx.unsqueeze(-1).expand(-1, -1, features.shape[-1])
            return F.smooth_l1_loss(pred, torch.gather(features, 1, index))
     ''')),
    ("loss: the target encoder's input masked (target patches only)", *LOSS_CELLS,
     "masked input", fn('''
        def jepa_loss(pred, target_encoder, image_tokens, target_idx):
            index = target_idx.unsqueeze(-1).expand(-1, -1, image_tokens.shape[-1])
            with torch.no_grad():
                visible = torch.gather(image_tokens, 1, index)          # only the target patches
                targets = F.layer_norm(target_encoder(visible), (visible.shape[-1],))
            return F.smooth_l1_loss(pred, targets)
     ''')),
    ("loss: calls course_lib.ijepa.jepa_loss", *LOSS_CELLS, "reference", fn('''
        from course_lib.ijepa import jepa_loss as reference_loss
        def jepa_loss(pred, target_encoder, image_tokens, target_idx):
            with torch.no_grad():
                features = F.layer_norm(target_encoder(image_tokens), (image_tokens.shape[-1],))
                targets = features[torch.arange(len(features)).unsqueeze(1), target_idx]
            return reference_loss(pred, targets)
     ''')),
    # --- 6. ema_step -----------------------------------------------------------------------------
    ("ema: momentum on the wrong side", *EMA_CELLS, "wrong side",
     EMA.format(update="target.mul_(1 - momentum).add_(online, alpha=momentum)")),
    ("ema: direction reversed (the context encoder pulled towards the target)", *EMA_CELLS,
     "direction reversed", EMA.format(slow="context_encoder", fast="target_encoder")),
    ("ema: EMA applied to the predictor too", *EMA_CELLS, "predictor", fn('''
        def ema_step(target_encoder, context_encoder, predictor, momentum):
            with torch.no_grad():
                for slow in (target_encoder, predictor):      # the predictor taken for a slow net
                    for target, online in zip(slow.parameters(), context_encoder.parameters()):
                        target.mul_(momentum).add_(online, alpha=1 - momentum)
     ''')),
    ("ema: no torch.no_grad, the update recorded in the graph", *EMA_CELLS, "graph", fn('''
        def ema_step(target_encoder, context_encoder, predictor, momentum):
            for target, online in zip(target_encoder.parameters(), context_encoder.parameters()):
                target.mul_(momentum).add_((1 - momentum) * online)
     ''')),
    ("ema: calls course_lib.ema.ema_update", *EMA_CELLS, "reference", fn('''
        from course_lib.ema import ema_update
        def ema_step(target_encoder, context_encoder, predictor, momentum):
            ema_update(target_encoder, context_encoder, momentum)
     ''')),
    # --- 7. momentum_schedule --------------------------------------------------------------------
    ("schedule: ends exactly at end, off by one (torch.linspace)", *SCHEDULE_CELLS, "linspace",
     SCHEDULE.format(schedule="torch.linspace(start, end, steps, dtype=torch.float64)")),
    ("schedule: all T + 1 values of the generator", *SCHEDULE_CELLS, "one value too many",
     SCHEDULE.format(
         schedule="start + (end - start) * torch.arange(steps + 1, dtype=torch.float64) / steps")),
    ("schedule: cosine instead of linear", *SCHEDULE_CELLS, "cosine", SCHEDULE.format(
        schedule="end - (end - start) * (1 + torch.cos(math.pi * torch.arange(steps) / steps)) "
                 "/ 2")),
    ("schedule: calls course_lib.schedules.linear_warmup_then_constant", *SCHEDULE_CELLS,
     "reference", fn('''
        from course_lib.schedules import linear_warmup_then_constant
        def momentum_schedule(start, end, steps):
            last = start + (end - start) * (steps - 1) / steps          # the last value used
            return linear_warmup_then_constant(start, last, steps, steps)
     ''')),
]

# Right answers written another way: every test cell must pass them (the tests check the
# method, not one way of coding it).
ALTERNATIVES = [
    ("block_size with torch.round and a sorted clip", "solution_block_size", fn('''
        def block_size(grid, scale, aspect_ratio):
            area = torch.tensor(float(int(grid * grid * scale)), dtype=torch.float64)
            h, w = (area * aspect_ratio).sqrt().round(), (area / aspect_ratio).sqrt().round()
            return tuple(int(sorted((1, int(v), grid))[1]) for v in (h, w))
     ''')),
    ("block_indices by a list comprehension, n_positions by counting", "solution_block_indices",
     fn('''
        def n_positions(grid, size):
            return len(range(0, grid - size + 1))

        def block_indices(grid, top, left, h, w):
            return torch.tensor([r * grid + c for r in range(top, top + h)
                                 for c in range(left, left + w)], dtype=torch.long)
     ''')),
    ("context_indices with Python sets", "solution_context_indices", fn('''
        def context_indices(grid, context_block, target_blocks):
            hidden = set().union(*(set(block.tolist()) for block in target_blocks))
            return torch.tensor(sorted(set(context_block.tolist()) - hidden), dtype=torch.long)
     ''')),
    ("predictor_input with index_select and expand", "solution_predictor_input", fn('''
        def predictor_input(context_tokens, context_idx, target_idx, mask_token, pos):
            B, Kt = target_idx.shape
            at_context = torch.stack([pos.index_select(0, i) for i in context_idx])
            holes = mask_token.expand(B, Kt, -1) + pos[target_idx.flatten()].view(B, Kt, -1)
            return torch.cat((context_tokens + at_context, holes), 1)
     ''')),
    ("jepa_loss gathered first, normalised over D, with huber_loss", "solution_jepa_loss", fn('''
        def jepa_loss(pred, target_encoder, image_tokens, target_idx):
            features = target_encoder(image_tokens).detach()
            picked = features[torch.arange(len(features)).unsqueeze(1), target_idx]   # (B, Kt, D)
            targets = F.layer_norm(picked, (picked.shape[-1],))   # per token: commutes with it
            return F.huber_loss(pred, targets, delta=1.0)
     ''')),
    ("ema_step by name with lerp_ on .data", "solution_ema_step", fn('''
        def ema_step(target_encoder, context_encoder, predictor, momentum):
            online = dict(context_encoder.named_parameters())
            for name, target in target_encoder.named_parameters():
                target.data.lerp_(online[name].data, 1 - momentum)
     ''')),
    ("momentum_schedule as linspace over T + 1 points, the last dropped",
     "solution_momentum_schedule", fn('''
        def momentum_schedule(start, end, steps):
            return torch.linspace(start, end, steps + 1)[:-1]
     ''')),
]


globals().update(mutation_tests(NOTEBOOK, MUTANTS, alternatives=ALTERNATIVES))
