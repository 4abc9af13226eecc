"""The mistakes dinov2.ipynb's test cells must catch: the common DINOv2 mistakes, each a plausible
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

NOTEBOOK = Notebook(REPO / "solutions" / "06_dinov2" / "dinov2.ipynb")


KOLEO = Template(fn('''
    def koleo_loss(x, eps=1e-8):
        x = {normalise}
        with torch.no_grad():
            similarity = x @ x.T
            {diagonal}
            nearest = {pick}
        distance = F.pairwise_distance(x, {neighbour}, eps=eps)
        return -torch.log(distance + eps).mean()
'''), normalise="F.normalize(x.float(), dim=-1, eps=eps)",
    diagonal="similarity.fill_diagonal_(-2.0)", pick="similarity.argmax(dim=1)",
    neighbour="x[nearest]")

SINKHORN = Template(fn('''
    def sinkhorn_knopp(teacher_logits, teacher_temp, n_iters=3):
        with torch.no_grad():
            scores = {scores}
            q = torch.exp({shifted}).T
            n_prototypes, n_samples = q.shape
            q = q / q.sum()
            for _ in range({iters}):
                {first}
                {second}
            return {result}
'''), scores="teacher_logits.double() / teacher_temp", shifted="scores - scores.max()",
    iters="n_iters", first="q = q / q.sum(dim=1, keepdim=True) / n_prototypes",
    second="q = q / q.sum(dim=0, keepdim=True) / n_samples",
    result="(q * n_samples).T.float()")

REGISTERS = Template(fn('''
    def prepare_tokens(patch_embeddings, cls_token, pos_embed, registers):
        batch = patch_embeddings.shape[0]
        tokens = torch.cat([cls_token.expand(batch, -1, -1), patch_embeddings], dim=1)
        tokens = {positioned}
        registers = {registers}
        return torch.cat({order}, dim=1)

    def drop_registers(tokens, n_registers):
        return {cls}, {patches}
'''), positioned="tokens + pos_embed", registers="registers.expand(batch, -1, -1)",
    order="[tokens[:, :1], registers, tokens[:, 1:]]", cls="tokens[:, 0]",
    patches="tokens[:, 1 + n_registers:]")

PATCH = Template(fn('''
    def masked_patch_loss(student_logits, targets, mask, student_temp=0.1):
        counts = {counts}
        weights = 1.0 / counts.float()
        log_probs = F.log_softmax({logits}, dim=-1)
        cross_entropy = -({targets} * log_probs).sum(dim=-1)
        return {reduce}
'''), counts="mask.sum(dim=1, keepdim=True).expand_as(mask)[mask]",
    logits="student_logits / student_temp", targets="targets.detach()",
    reduce="(weights * cross_entropy).sum() / mask.shape[0]")

TOTAL = Template(fn('''
    def dinov2_loss(student_cls_logits, teacher_targets, student_cls_features, ibot_loss, *,
                    n_global_crops=2, student_temp=0.1, dino_weight=1.0, ibot_weight=1.0,
                    koleo_weight=0.1):
        batch = teacher_targets.shape[0] // {globals}
        n_crops = student_cls_logits.shape[0] // batch
        log_probs = F.log_softmax(student_cls_logits / student_temp, dim=-1).chunk(n_crops)
        targets = {targets}.chunk({globals})
        pair_losses = [-(target * log_probs[j]).sum(dim=-1).mean()
                       for i, target in enumerate(targets) for j in range({crops}) if {keep}]
        loss_dino = {dino}
        loss_koleo = {koleo}
        loss = {total}
        return loss, loss_dino, loss_koleo
'''), globals="n_global_crops", targets="teacher_targets.detach()", crops="n_crops",
    keep="j != i", dino="torch.stack(pair_losses).mean()",
    koleo="sum(koleo_loss(crop) for crop in student_cls_features.chunk({globals}))",
    total="dino_weight * loss_dino + ibot_weight * ibot_loss + koleo_weight * loss_koleo")

KOLEO_CELLS = ("solution_koleo_loss", "test_koleo_loss")
SINKHORN_CELLS = ("solution_sinkhorn_knopp", "test_sinkhorn_knopp")
REGISTER_CELLS = ("solution_registers", "test_registers")
PATCH_CELLS = ("solution_masked_patch_loss", "test_masked_patch_loss")
TOTAL_CELLS = ("solution_dinov2_loss", "test_dinov2_loss")


def total(**changes: str) -> str:
    """A dinov2_loss mutant; {globals} inside the KoLeo line follows the same change."""
    source = TOTAL.format(**changes)
    return source.replace("{globals}", changes.get("globals", "n_global_crops"))


# (mistake, solution cell replaced, test cell that must fail, keyword in the message, mutant)
MUTANTS = [
    # --- 1. koleo_loss ---------------------------------------------------------------------------
    ("koleo: no float32 cast (inf in half precision)", *KOLEO_CELLS, "float32 cast",
     KOLEO.format(normalise="F.normalize(x, dim=-1, eps=eps)")),
    ("koleo: diagonal not excluded (distance 0 to itself)", *KOLEO_CELLS, "diagonal not excluded",
     KOLEO.format(diagonal="pass")),
    ("koleo: features not normalised", *KOLEO_CELLS, "not normalised",
     KOLEO.format(normalise="x.float()")),
    ("koleo: features not normalised, nearest by Euclidean distance", *KOLEO_CELLS,
     "not normalised", fn('''
        def koleo_loss(x, eps=1e-8):
            x = x.float()
            with torch.no_grad():
                distances = torch.cdist(x, x)
                distances.fill_diagonal_(float("inf"))
                nearest = distances.argmin(dim=1)
            return -torch.log(F.pairwise_distance(x, x[nearest], eps=eps) + eps).mean()
     ''')),
    ("koleo: farthest neighbour", *KOLEO_CELLS, "farthest",
     KOLEO.format(diagonal="similarity.fill_diagonal_(2.0)", pick="similarity.argmin(dim=1)")),
    ("koleo: neighbour detached from the graph", *KOLEO_CELLS, "neighbour detached",
     KOLEO.format(neighbour="x[nearest].detach()")),
    ("koleo: no eps (torch.norm of the difference, log of it)", *KOLEO_CELLS, "no eps", fn('''
        def koleo_loss(x, eps=1e-8):
            x = F.normalize(x.float(), dim=-1, eps=eps)
            with torch.no_grad():
                similarity = x @ x.T
                similarity.fill_diagonal_(-2.0)
                nearest = similarity.argmax(dim=1)
            return -torch.log((x - x[nearest]).norm(dim=-1)).mean()
     ''')),
    ("koleo: eps in the log only", *KOLEO_CELLS, "eps in the log only", fn('''
        def koleo_loss(x, eps=1e-8):
            x = F.normalize(x.float(), dim=-1, eps=eps)
            with torch.no_grad():
                similarity = x @ x.T
                similarity.fill_diagonal_(-2.0)
                nearest = similarity.argmax(dim=1)
            return -torch.log((x - x[nearest]).norm(dim=-1) + eps).mean()
     ''')),
    ("koleo: calls course_lib.dinov2.koleo_loss", *KOLEO_CELLS, "reference", fn('''
        from course_lib.dinov2 import koleo_loss as reference_koleo
        def koleo_loss(x, eps=1e-8):
            return reference_koleo(x, eps)
     ''')),
    # --- 2. sinkhorn_knopp -----------------------------------------------------------------------
    ("sinkhorn: final x B missing (rows sum to 1/B)", *SINKHORN_CELLS, "final x B",
     SINKHORN.format(result="q.T.float()")),
    ("sinkhorn: column step without / B (rows sum to B)", *SINKHORN_CELLS, "rows sum to B",
     SINKHORN.format(second="q = q / q.sum(dim=0, keepdim=True)")),
    ("sinkhorn: only the samples normalised (a plain softmax)", *SINKHORN_CELLS,
     "one normalisation direction", SINKHORN.format(first="pass")),
    ("sinkhorn: only the prototypes normalised", *SINKHORN_CELLS, "one normalisation direction",
     SINKHORN.format(second="pass")),
    ("sinkhorn: normalisations in the wrong order", *SINKHORN_CELLS, "wrong order",
     SINKHORN.format(first="q = q / q.sum(dim=0, keepdim=True) / n_samples",
                     second="q = q / q.sum(dim=1, keepdim=True) / n_prototypes")),
    ("sinkhorn: no max shift, float32 as the official code (overflow -> NaN)", *SINKHORN_CELLS,
     "max shift", SINKHORN.format(scores="teacher_logits.float() / teacher_temp",
                                  shifted="scores")),
    ("sinkhorn: no max shift, in float64 (overflow beyond 709)", *SINKHORN_CELLS, "max shift",
     SINKHORN.format(shifted="scores")),
    ("sinkhorn: temperature multiplied", *SINKHORN_CELLS, "temperature multiplied",
     SINKHORN.format(scores="teacher_logits.double() * teacher_temp")),
    ("sinkhorn: temperature ignored", *SINKHORN_CELLS, "temperature ignored",
     SINKHORN.format(scores="teacher_logits.double()")),
    ("sinkhorn: n_iters ignored (always 3)", *SINKHORN_CELLS, "n_iters ignored",
     SINKHORN.format(iters="3")),
    ("sinkhorn: returns Q as (K, B)", *SINKHORN_CELLS, "transpose",
     SINKHORN.format(result="(q * n_samples).float()")),
    ("sinkhorn: gradient into the targets (no torch.no_grad)", *SINKHORN_CELLS, "no_grad", fn('''
        def sinkhorn_knopp(teacher_logits, teacher_temp, n_iters=3):
            scores = teacher_logits / teacher_temp
            q = torch.exp(scores - scores.max().detach()).T
            n_prototypes, n_samples = q.shape
            q = q / q.sum()
            for _ in range(n_iters):
                q = q / q.sum(dim=1, keepdim=True) / n_prototypes
                q = q / q.sum(dim=0, keepdim=True) / n_samples
            return (q * n_samples).T
     ''')),
    ("sinkhorn: calls course_lib.dinov2.sinkhorn_knopp", *SINKHORN_CELLS, "reference", fn('''
        import course_lib.dinov2
        def sinkhorn_knopp(teacher_logits, teacher_temp, n_iters=3):
            return course_lib.dinov2.sinkhorn_knopp(teacher_logits, teacher_temp, n_iters)
     ''')),
    # --- 3. prepare_tokens and drop_registers ----------------------------------------------------
    ("registers: inserted after the patches", *REGISTER_CELLS, "after the patches",
     REGISTERS.format(order="[tokens, registers]")),
    ("registers: inserted before the CLS token", *REGISTER_CELLS, "before the CLS",
     REGISTERS.format(order="[registers, tokens]")),
    ("registers: given positions (the CLS token's)", *REGISTER_CELLS, "registers given positions",
     REGISTERS.format(registers="registers.expand(batch, -1, -1) + pos_embed[:, :1]")),
    ("registers: the table added by place to the whole sequence", *REGISTER_CELLS,
     "positions by place", fn('''
        def prepare_tokens(patch_embeddings, cls_token, pos_embed, registers):
            batch = patch_embeddings.shape[0]
            tokens = torch.cat([cls_token.expand(batch, -1, -1), registers.expand(batch, -1, -1),
                                patch_embeddings], dim=1)
            n = pos_embed.shape[1]
            return torch.cat([tokens[:, :n] + pos_embed, tokens[:, n:]], dim=1)

        def drop_registers(tokens, n_registers):
            return tokens[:, 0], tokens[:, 1 + n_registers:]
     ''')),
    ("registers: CLS token without its position", *REGISTER_CELLS, "CLS token without",
     REGISTERS.format(positioned="torch.cat([tokens[:, :1], tokens[:, 1:] + pos_embed[:, 1:]], "
                                 "dim=1)")),
    ("registers: detached (they cannot learn)", *REGISTER_CELLS, "registers detached",
     REGISTERS.format(registers="registers.detach().expand(batch, -1, -1)")),
    ("registers: not dropped at the output", *REGISTER_CELLS, "not dropped",
     REGISTERS.format(patches="tokens[:, 1:]")),
    ("registers: off by one, patches from R", *REGISTER_CELLS, "off by one",
     REGISTERS.format(patches="tokens[:, n_registers:]")),
    ("registers: off by one, patches from 2 + R", *REGISTER_CELLS, "off by one",
     REGISTERS.format(patches="tokens[:, 2 + n_registers:]")),
    ("registers: assumed after the patches when dropped", *REGISTER_CELLS, "assumed after",
     REGISTERS.format(patches="tokens[:, 1:tokens.shape[1] - n_registers]")),
    ("registers: CLS read after the registers", *REGISTER_CELLS, "CLS taken after",
     REGISTERS.format(cls="tokens[:, 1 + n_registers]")),
    ("registers: calls course_lib.backbones.split_tokens", *REGISTER_CELLS, "reference", fn('''
        from types import SimpleNamespace
        from course_lib.backbones import split_tokens

        def prepare_tokens(patch_embeddings, cls_token, pos_embed, registers):
            batch = patch_embeddings.shape[0]
            tokens = torch.cat([cls_token.expand(batch, -1, -1), patch_embeddings], dim=1)
            tokens = tokens + pos_embed
            return torch.cat([tokens[:, :1], registers.expand(batch, -1, -1), tokens[:, 1:]], 1)

        def drop_registers(tokens, n_registers):
            model = SimpleNamespace(num_prefix_tokens=1 + n_registers, has_class_token=True)
            cls, _, patches = split_tokens(model, tokens)
            return cls, patches
     ''')),
    # --- 4. masked_patch_loss --------------------------------------------------------------------
    ("patch loss: over all tokens of the image (weights 1 / N) instead of the masked ones",
     *PATCH_CELLS, "all tokens of the image",
     PATCH.format(counts="torch.full((int(mask.sum()),), mask.shape[1])")),
    ("patch loss: averaged over all masked tokens of the batch, not per image", *PATCH_CELLS,
     "all masked tokens of the batch", PATCH.format(reduce="cross_entropy.mean()")),
    ("patch loss: divided by the masked images only", *PATCH_CELLS, "masked images only",
     PATCH.format(reduce="(weights * cross_entropy).sum() / (mask.sum(dim=1) > 0).sum()")),
    ("patch loss: counts along the wrong axis (per patch position)", *PATCH_CELLS, "wrong axis",
     PATCH.format(counts="mask.sum(dim=0, keepdim=True).expand_as(mask)[mask]")),
    ("patch loss: student temperature missing", *PATCH_CELLS, "temperature missing",
     PATCH.format(logits="student_logits")),
    ("patch loss: summed over the images", *PATCH_CELLS, "summed over the images",
     PATCH.format(reduce="(weights * cross_entropy).sum()")),
    ("patch loss: targets not detached", *PATCH_CELLS, "not detached",
     PATCH.format(targets="targets")),
    ("patch loss: calls course_lib.dinov2.masked_patch_loss", *PATCH_CELLS, "reference", fn('''
        from course_lib.dinov2 import masked_patch_loss as reference_loss
        def masked_patch_loss(student_logits, targets, mask, student_temp=0.1):
            return reference_loss(student_logits, targets, mask, student_temp)
     ''')),
    # --- 5. dinov2_loss --------------------------------------------------------------------------
    ("objective: DINO pairs include the same-view pair", *TOTAL_CELLS,
     "same-view pairs included", total(keep="True")),
    ("objective: DINO pairs of the same view only", *TOTAL_CELLS, "same-view pairs only",
     total(keep="j == i")),
    ("objective: local crops left out of the DINO pairs", *TOTAL_CELLS, "local crops left out",
     total(crops="n_global_crops")),
    ("objective: DINO pairs summed, not averaged", *TOTAL_CELLS, "pairs summed",
     total(dino="torch.stack(pair_losses).sum()")),
    ("objective: KoLeo on both global crops at once", *TOTAL_CELLS, "both crops at once",
     total(koleo="koleo_loss(student_cls_features)")),
    ("objective: KoLeo averaged over the crops", *TOTAL_CELLS, "averaged over the crops",
     total(koleo="sum(koleo_loss(c) for c in student_cls_features.chunk(n_global_crops)) / "
                 "n_global_crops")),
    ("objective: weights ignored", *TOTAL_CELLS, "weights ignored",
     total(total="loss_dino + ibot_loss + loss_koleo")),
    ("objective: weights ignored, the defaults hard-coded", *TOTAL_CELLS, "weights ignored",
     total(total="loss_dino + ibot_loss + 0.1 * loss_koleo")),
    ("objective: iBOT term missing", *TOTAL_CELLS, "iBOT term missing",
     total(total="dino_weight * loss_dino + koleo_weight * loss_koleo")),
    ("objective: teacher targets not detached", *TOTAL_CELLS, "not detached",
     total(targets="teacher_targets")),
    ("objective: two global crops hard-coded", *TOTAL_CELLS, "n_global_crops",
     total(globals="2")),
    ("objective: DINO term from course_lib.dino.DINOLoss", *TOTAL_CELLS, "reference", fn('''
        from course_lib.dino import DINOLoss
        def dinov2_loss(student_cls_logits, teacher_targets, student_cls_features, ibot_loss, *,
                        n_global_crops=2, student_temp=0.1, dino_weight=1.0, ibot_weight=1.0,
                        koleo_weight=0.1):
            dino = DINOLoss(teacher_targets.shape[1], n_global_crops, student_temp,
                            use_centering=False)
            loss_dino = dino(student_cls_logits, teacher_targets.log(), 1.0)
            loss_koleo = sum(koleo_loss(c) for c in student_cls_features.chunk(n_global_crops))
            loss = dino_weight * loss_dino + ibot_weight * ibot_loss + koleo_weight * loss_koleo
            return loss, loss_dino, loss_koleo
     ''')),
]

# Right answers written another way: every test cell must pass them (the tests check the
# method, not one way of coding it).
ALTERNATIVES = [
    ("koleo_loss with cdist, a manual norm and an explicit eps", "solution_koleo_loss", fn('''
        def koleo_loss(x, eps=1e-8):
            x = x.to(torch.float32)
            unit = x / x.norm(dim=1, keepdim=True).clamp(min=eps)
            with torch.no_grad():
                gaps = torch.cdist(unit, unit)
                gaps += torch.diag(torch.full((len(unit),), float("inf")))
                nearest = gaps.argmin(dim=1)
            d = ((unit - unit[nearest] + eps) ** 2).sum(dim=1).sqrt()
            return -(d + eps).log().mean()
     ''')),
    ("sinkhorn_knopp in float32, shifted before the division, in place", "solution_sinkhorn_knopp",
     fn('''
        @torch.no_grad()
        def sinkhorn_knopp(teacher_logits, teacher_temp, n_iters=3):
            t = teacher_logits.detach().float()
            q = ((t - t.max()) / teacher_temp).exp().t().contiguous()   # (K, B)
            k, b = q.shape
            q /= q.sum()
            for _ in range(n_iters):
                q /= q.sum(dim=1, keepdim=True)
                q /= k
                q /= q.sum(dim=0, keepdim=True)
                q /= b
            q *= b
            return q.t()
     ''')),
    ("sinkhorn_knopp in float32, divided then shifted, columns last and no / B",
     "solution_sinkhorn_knopp", fn('''
        def sinkhorn_knopp(teacher_logits, teacher_temp, n_iters=3):
            scores = teacher_logits.detach() / teacher_temp
            q = torch.exp(scores - scores.max(dim=1, keepdim=True).values.max())   # (B, K)
            for _ in range(n_iters):
                q = q / q.sum(dim=0, keepdim=True)          # each prototype, up to a constant
                q = q / q.sum(dim=1, keepdim=True)          # each sample sums to 1
            return q
     ''')),
    ("prepare_tokens from three parts, drop_registers with split", "solution_registers", fn('''
        def prepare_tokens(patch_embeddings, cls_token, pos_embed, registers):
            b, n, d = patch_embeddings.shape
            head = (cls_token + pos_embed[:, :1]).repeat(b, 1, 1)
            body = patch_embeddings + pos_embed[:, 1:]
            return torch.cat((head, registers.repeat(b, 1, 1), body), 1)

        def drop_registers(tokens, n_registers):
            cls, _, patches = tokens.split(
                [1, n_registers, tokens.shape[1] - 1 - n_registers], dim=1)
            return cls.squeeze(1), patches
     ''')),
    ("masked_patch_loss image by image with split", "solution_masked_patch_loss", fn('''
        def masked_patch_loss(student_logits, targets, mask, student_temp=0.1):
            ce = torch.sum(-targets.detach() * torch.log_softmax(student_logits / student_temp, -1),
                           dim=-1)
            counts = mask.sum(dim=1).tolist()
            per_image = [part.mean() for part in ce.split(counts) if len(part)]
            return torch.stack(per_image).sum() / len(mask) if per_image else ce.sum() * 0.0
     ''')),
    ("dinov2_loss with F.cross_entropy on probabilities and slices", "solution_dinov2_loss",
     fn('''
        def dinov2_loss(student_cls_logits, teacher_targets, student_cls_features, ibot_loss, *,
                        n_global_crops=2, student_temp=0.1, dino_weight=1.0, ibot_weight=1.0,
                        koleo_weight=0.1):
            b = len(teacher_targets) // n_global_crops
            v = len(student_cls_logits) // b
            total, n_pairs = 0.0, 0
            for i in range(n_global_crops):
                target = teacher_targets[i * b:(i + 1) * b].detach()
                for j in range(v):
                    if i != j:
                        student = student_cls_logits[j * b:(j + 1) * b] / student_temp
                        total = total + F.cross_entropy(student, target)
                        n_pairs += 1
            loss_dino = total / n_pairs
            loss_koleo = koleo_loss(student_cls_features[:b])
            for g in range(1, n_global_crops):
                loss_koleo = loss_koleo + koleo_loss(student_cls_features[g * b:(g + 1) * b])
            loss = dino_weight * loss_dino + ibot_weight * ibot_loss + koleo_weight * loss_koleo
            return loss, loss_dino, loss_koleo
     ''')),
]


globals().update(mutation_tests(NOTEBOOK, MUTANTS, alternatives=ALTERNATIVES))
