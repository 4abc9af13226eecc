"""The mistakes ibot.ipynb's test cells must catch: the common iBOT mistakes, each a plausible wrong
answer (a MUTANT) for one answer cell, and the keyword the failed check's message must contain.
Each must also be caught by the hidden part of its test cell alone (the random-input tests do not
lean on the worked example).
The notebook runs in-process (``notebook_harness``); what every graded notebook promises (the
solution passes silently, the release fails, the points add up) is ``test_notebook_contract.py``.
Run with ``-s`` to see the table: mistake -> test cell -> first line of the message.
"""
from __future__ import annotations


from notebook_harness import REPO, Notebook, Template, fn, mutation_tests

NOTEBOOK = Notebook(REPO / "solutions" / "04_ibot" / "ibot.ipynb")


MASK = Template(fn('''
    def mask_patch_embeddings(patch_embeddings, mask, mask_token, cls_token, pos_embed):
        B = patch_embeddings.shape[0]
        patches = torch.where({where}, {token}, patch_embeddings)
        tokens = torch.cat([cls_token.expand(B, -1, -1), patches], dim=1)
        return {result}
'''), where="mask.unsqueeze(-1)", token="mask_token", result="tokens + pos_embed")

LOSS = Template(fn('''
    def ibot_patch_loss(student_patch_logits, teacher_patch_logits, mask, student_temp,
                        teacher_temp, center):
        targets = {targets}
        log_probs = F.log_softmax(student_patch_logits / {student_temp}, dim=-1)
        cross_entropy = -(targets * log_probs).sum(dim=-1)
        m = {m}
        per_image = (cross_entropy * m).sum(dim=1) / {denominator}
        return {reduce}
'''), targets="F.softmax((teacher_patch_logits.detach() - center) / teacher_temp, dim=-1)",
    student_temp="student_temp", m="mask.float()", denominator="m.sum(dim=1).clamp(min=1.0)",
    reduce="per_image.mean()")

CENTERS = Template(fn('''
    def update_centers(cls_center, patch_center, teacher_cls_logits, teacher_patch_logits,
                       momentum):
        cls_mean = {cls_mean}
        patch_mean = {patch_mean}
        new_cls_center = {new_cls}
        new_patch_center = {new_patch}
        return new_cls_center, new_patch_center
'''), cls_mean="teacher_cls_logits.detach().mean(dim=0, keepdim=True)",
    patch_mean="teacher_patch_logits.detach().mean(dim=(0, 1), keepdim=True)",
    new_cls="momentum * cls_center + (1 - momentum) * cls_mean",
    new_patch="momentum * patch_center + (1 - momentum) * patch_mean")

STEP = Template(fn('''
    def ibot_step(student_patch_logits, teacher_cls_logits, teacher_patch_logits, mask,
                  cls_center, patch_center, student_temp, teacher_temp, center_momentum):
        new_cls_center, new_patch_center = update_centers(
            cls_center, patch_center, teacher_cls_logits, {patch_source}, center_momentum)
        loss = ibot_patch_loss(student_patch_logits, teacher_patch_logits, mask, student_temp,
                               teacher_temp, {loss_center})
        return loss, new_cls_center, new_patch_center
'''), patch_source="teacher_patch_logits", loss_center="patch_center")

DERIVATION = Template(fn('''
    def center_after(c0, mu, momentum, k):
        return {center}

    def stationary_variance_factor(momentum):
        return {variance}

    def tracking_lag(momentum, drift):
        return {lag}
'''), center="mu + momentum ** k * (c0 - mu)", variance="(1 - momentum) / (1 + momentum)",
    lag="drift * momentum / (1 - momentum)")

ALL_ROWS = ("torch.cat([teacher_cls_logits.detach(), "
            "teacher_patch_logits.detach().flatten(0, 1)]).mean(dim=0, keepdim=True)")

# (mistake, solution cell replaced, test cell that must fail, keyword in the message, mutant)
MUTANTS = [
    # --- 1. mask_patch_embeddings ---------------------------------------------------------------
    ("mask: inverted", "solution_mask_patch_embeddings", "test_mask_patch_embeddings",
     "mask inverted", MASK.format(where="~mask.unsqueeze(-1)")),
    ("mask: token added instead of replacing", "solution_mask_patch_embeddings",
     "test_mask_patch_embeddings", "added instead of replacing",
     MASK.format(token="patch_embeddings + mask_token")),
    ("mask: zeros instead of the token", "solution_mask_patch_embeddings",
     "test_mask_patch_embeddings", "zeros instead",
     MASK.format(token="torch.zeros_like(patch_embeddings)")),
    ("mask: masked after the positions were added", "solution_mask_patch_embeddings",
     "test_mask_patch_embeddings", "after the positional embeddings", fn('''
        def mask_patch_embeddings(patch_embeddings, mask, mask_token, cls_token, pos_embed):
            B = patch_embeddings.shape[0]
            tokens = torch.cat([cls_token.expand(B, -1, -1), patch_embeddings], dim=1) + pos_embed
            patches = torch.where(mask.unsqueeze(-1), mask_token, tokens[:, 1:])
            return torch.cat([tokens[:, :1], patches], dim=1)
     ''')),
    ("mask: positional embeddings missing", "solution_mask_patch_embeddings",
     "test_mask_patch_embeddings", "positional embeddings missing", MASK.format(result="tokens")),
    ("mask: mask token detached", "solution_mask_patch_embeddings", "test_mask_patch_embeddings",
     "detached", MASK.format(token="mask_token.detach()")),
    ("mask: written in place into the input, as the iBOT code does to its own tensor",
     "solution_mask_patch_embeddings", "test_mask_patch_embeddings", "in place", fn('''
        def mask_patch_embeddings(patch_embeddings, mask, mask_token, cls_token, pos_embed):
            patch_embeddings[mask] = mask_token
            B = patch_embeddings.shape[0]
            tokens = torch.cat([cls_token.expand(B, -1, -1), patch_embeddings], dim=1)
            return tokens + pos_embed
     ''')),
    ("mask: calls backbones.embed_tokens on a stand-in ViT", "solution_mask_patch_embeddings",
     "test_mask_patch_embeddings", "reference", fn('''
        import timm
        from course_lib.backbones import embed_tokens
        def mask_patch_embeddings(patch_embeddings, mask, mask_token, cls_token, pos_embed):
            B, N, D = patch_embeddings.shape
            vit = timm.models.vision_transformer.VisionTransformer(
                img_size=(1, N), patch_size=1, in_chans=D, embed_dim=D, depth=0, num_heads=1)
            with torch.no_grad():                       # the patch embedding made an identity
                vit.patch_embed.proj.weight.copy_(torch.eye(D).view(D, D, 1, 1))
                vit.patch_embed.proj.bias.zero_()
            del vit.cls_token, vit.pos_embed
            vit.cls_token, vit.pos_embed = cls_token, pos_embed
            images = patch_embeddings.transpose(1, 2).reshape(B, D, 1, N)
            return embed_tokens(vit, images, mask=mask, mask_token=mask_token)
     ''')),
    # --- 2. ibot_patch_loss ---------------------------------------------------------------------
    ("loss: averaged over the masked patches of the batch", "solution_ibot_patch_loss",
     "test_ibot_patch_loss", "masked patches of the batch",
     LOSS.format(reduce="(cross_entropy * m).sum() / m.sum()")),
    ("loss: unmasked images left out of the mean", "solution_ibot_patch_loss",
     "test_ibot_patch_loss", "left out", LOSS.format(reduce="per_image[m.sum(dim=1) > 0].mean()")),
    ("loss: over all patches (mask ignored)", "solution_ibot_patch_loss", "test_ibot_patch_loss",
     "over all patches", LOSS.format(m="torch.ones_like(mask, dtype=torch.float32)")),
    ("loss: no clamp (0 / 0 for an unmasked image)", "solution_ibot_patch_loss",
     "test_ibot_patch_loss", "no clamp", LOSS.format(denominator="m.sum(dim=1)")),
    ("loss: teacher temperature multiplied", "solution_ibot_patch_loss", "test_ibot_patch_loss",
     "temperature multiplied", LOSS.format(
         targets="F.softmax((teacher_patch_logits.detach() - center) * teacher_temp, dim=-1)")),
    ("loss: centering after the softmax", "solution_ibot_patch_loss", "test_ibot_patch_loss",
     "after the softmax", LOSS.format(
         targets="F.softmax(teacher_patch_logits.detach() / teacher_temp, dim=-1) - center")),
    ("loss: teacher not detached", "solution_ibot_patch_loss", "test_ibot_patch_loss",
     "teacher not detached", LOSS.format(
         targets="F.softmax((teacher_patch_logits - center) / teacher_temp, dim=-1)")),
    ("loss: mask inverted", "solution_ibot_patch_loss", "test_ibot_patch_loss", "mask inverted",
     LOSS.format(m="(~mask).float()")),
    ("loss: temperatures swapped", "solution_ibot_patch_loss", "test_ibot_patch_loss",
     "temperatures swapped", LOSS.format(
         targets="F.softmax((teacher_patch_logits.detach() - center) / student_temp, dim=-1)",
         student_temp="teacher_temp")),
    ("loss: summed over the images", "solution_ibot_patch_loss", "test_ibot_patch_loss",
     "summed over the images", LOSS.format(reduce="per_image.sum()")),
    ("loss: calls course_lib.ibot.ibot_patch_loss", "solution_ibot_patch_loss",
     "test_ibot_patch_loss", "reference", fn('''
        from course_lib.ibot import ibot_patch_loss as reference_loss
        def ibot_patch_loss(student_patch_logits, teacher_patch_logits, mask, student_temp,
                            teacher_temp, center):
            return reference_loss(student_patch_logits, teacher_patch_logits, mask, student_temp,
                                  teacher_temp, center)
     ''')),
    # --- 3. update_centers ----------------------------------------------------------------------
    ("centers: one center, the patch center moved by the CLS logits", "solution_update_centers",
     "test_update_centers", "one center", CENTERS.format(patch_mean="cls_mean.unsqueeze(0)")),
    ("centers: one center, from every row of both outputs", "solution_update_centers",
     "test_update_centers", "one center",
     CENTERS.format(cls_mean=ALL_ROWS, patch_mean="cls_mean.unsqueeze(0)")),
    ("centers: momentum on the wrong side", "solution_update_centers", "test_update_centers",
     "momentum reversed", CENTERS.format(
         new_cls="(1 - momentum) * cls_center + momentum * cls_mean",
         new_patch="(1 - momentum) * patch_center + momentum * patch_mean")),
    ("centers: from the probabilities", "solution_update_centers", "test_update_centers",
     "from the probabilities", CENTERS.format(
         cls_mean="F.softmax(teacher_cls_logits.detach(), dim=-1).mean(dim=0, keepdim=True)",
         patch_mean="F.softmax(teacher_patch_logits.detach(), dim=-1).mean(dim=(0, 1), "
                    "keepdim=True)")),
    ("centers: updated in place", "solution_update_centers", "test_update_centers", "in place",
     CENTERS.format(new_cls="cls_center.mul_(momentum).add_((1 - momentum) * cls_mean)",
                    new_patch="patch_center.mul_(momentum).add_((1 - momentum) * patch_mean)")),
    ("centers: tied to the autograd graph", "solution_update_centers", "test_update_centers",
     "autograd graph", CENTERS.format(
         cls_mean="teacher_cls_logits.mean(dim=0, keepdim=True)",
         patch_mean="teacher_patch_logits.mean(dim=(0, 1), keepdim=True)")),
    ("centers: patch center averaged over the rows only", "solution_update_centers",
     "test_update_centers", "over the patches",
     CENTERS.format(patch_mean="teacher_patch_logits.detach().mean(dim=0, keepdim=True)")),
    ("centers: calls course_lib.ema.update_center", "solution_update_centers",
     "test_update_centers", "reference", fn('''
        from course_lib.ema import update_center
        def update_centers(cls_center, patch_center, teacher_cls_logits, teacher_patch_logits,
                           momentum):
            return (update_center(cls_center.clone(), teacher_cls_logits, momentum),
                    update_center(patch_center.clone(), teacher_patch_logits, momentum))
     ''')),
    # --- 4. ibot_step ---------------------------------------------------------------------------
    ("step: centers updated before the loss", "solution_ibot_step", "test_ibot_step",
     "before the loss", STEP.format(loss_center="new_patch_center")),
    ("step: patch loss with the CLS center", "solution_ibot_step", "test_ibot_step", "one center",
     STEP.format(loss_center="cls_center")),
    ("step: patch center from the student", "solution_ibot_step", "test_ibot_step",
     "from the student", STEP.format(patch_source="student_patch_logits")),
    ("step: patch center from the probabilities", "solution_ibot_step", "test_ibot_step",
     "from the probabilities", STEP.format(
         patch_source="F.softmax((teacher_patch_logits - patch_center) / teacher_temp, dim=-1)")),
    ("step: patch center from the centred logits", "solution_ibot_step", "test_ibot_step",
     "centred logits", STEP.format(patch_source="teacher_patch_logits - patch_center")),
    ("step: patch center from the masked patches only", "solution_ibot_step", "test_ibot_step",
     "masked patches only", fn('''
        def ibot_step(student_patch_logits, teacher_cls_logits, teacher_patch_logits, mask,
                      cls_center, patch_center, student_temp, teacher_temp, center_momentum):
            loss = ibot_patch_loss(student_patch_logits, teacher_patch_logits, mask,
                                   student_temp, teacher_temp, patch_center)
            new_cls, _ = update_centers(cls_center, patch_center, teacher_cls_logits,
                                        teacher_patch_logits, center_momentum)
            masked_mean = teacher_patch_logits.detach()[mask].mean(dim=0)      # DINOv2's choice
            new_patch = center_momentum * patch_center + (1 - center_momentum) * masked_mean
            return loss, new_cls, new_patch
     ''')),
    ("step: calls course_lib.ema.update_center", "solution_ibot_step", "test_ibot_step",
     "reference", fn('''
        import course_lib.ema
        def ibot_step(student_patch_logits, teacher_cls_logits, teacher_patch_logits, mask,
                      cls_center, patch_center, student_temp, teacher_temp, center_momentum):
            loss = ibot_patch_loss(student_patch_logits, teacher_patch_logits, mask,
                                   student_temp, teacher_temp, patch_center)
            move = course_lib.ema.update_center
            return (loss, move(cls_center.clone(), teacher_cls_logits, center_momentum),
                    move(patch_center.clone(), teacher_patch_logits, center_momentum))
     ''')),
    # --- 5. the centering derivation (one cell: each mutant breaks one function) ----------------
    ("derivation: lambda^(k + 1)", "solution_centering", "test_centering", "k + 1",
     DERIVATION.format(center="mu + momentum ** (k + 1) * (c0 - mu)")),
    ("derivation: weights 1 - lambda^k and lambda^k swapped", "solution_centering",
     "test_centering", "weights swapped",
     DERIVATION.format(center="c0 + momentum ** k * (mu - c0)")),
    ("derivation: the batch means left out", "solution_centering", "test_centering",
     "batch means missing", DERIVATION.format(center="momentum ** k * c0")),
    ("derivation: variance (1 - lambda)^2", "solution_centering", "test_centering",
     "geometric series", DERIVATION.format(variance="(1 - momentum) ** 2")),
    ("derivation: variance 1 - lambda", "solution_centering", "test_centering", "not squared",
     DERIVATION.format(variance="1 - momentum")),
    ("derivation: variance factor inverted", "solution_centering", "test_centering",
     "factor inverted", DERIVATION.format(variance="(1 + momentum) / (1 - momentum)")),
    ("derivation: lag a / (1 - lambda)", "solution_centering", "test_centering", "next step",
     DERIVATION.format(lag="drift / (1 - momentum)")),
    ("derivation: lag without the drift", "solution_centering", "test_centering",
     "drift missing", DERIVATION.format(lag="momentum / (1 - momentum)")),
    ("derivation: lag inverted", "solution_centering", "test_centering", "lag inverted",
     DERIVATION.format(lag="drift * (1 - momentum) / momentum")),
    ("derivation: center_after calls course_lib.ibot.ema_centers", "solution_centering",
     "test_centering", "reference", fn('''
        from course_lib.ibot import ema_centers
        def center_after(c0, mu, momentum, k):
            if k == 0:
                return c0
            return ema_centers(torch.stack([mu] * k), momentum, c0)[-1]

        def stationary_variance_factor(momentum):
            return (1 - momentum) / (1 + momentum)

        def tracking_lag(momentum, drift):
            return drift * momentum / (1 - momentum)
     ''')),
]

# Right answers written another way: every test cell must pass them (the tests check the
# method, not one way of coding it).
ALTERNATIVES = [
    ("mask_patch_embeddings as a blend with a float mask", "solution_mask_patch_embeddings", fn('''
        def mask_patch_embeddings(patch_embeddings, mask, mask_token, cls_token, pos_embed):
            m = mask.unsqueeze(-1).to(patch_embeddings.dtype)
            patches = patch_embeddings * (1 - m) + mask_token * m
            cls = cls_token + pos_embed[:, :1]
            return torch.cat([cls.expand(len(patches), -1, -1), patches + pos_embed[:, 1:]], 1)
     ''')),
    ("ibot_patch_loss image by image with boolean indexing", "solution_ibot_patch_loss", fn('''
        def ibot_patch_loss(student_patch_logits, teacher_patch_logits, mask, student_temp,
                            teacher_temp, center):
            with torch.no_grad():
                targets = torch.softmax((teacher_patch_logits - center) / teacher_temp, dim=-1)
            terms = []
            for b in range(student_patch_logits.shape[0]):
                keep = mask[b]
                if not keep.any():
                    terms.append(student_patch_logits.sum() * 0)
                    continue
                log_q = torch.log_softmax(student_patch_logits[b, keep] / student_temp, dim=-1)
                terms.append(-(targets[b, keep] * log_q).sum(dim=-1).mean())
            return torch.stack(terms).mean()
     ''')),
    ("update_centers with torch.lerp under no_grad", "solution_update_centers", fn('''
        def update_centers(cls_center, patch_center, teacher_cls_logits, teacher_patch_logits,
                           momentum):
            with torch.no_grad():
                K = teacher_cls_logits.shape[-1]
                cls_mean = teacher_cls_logits.sum(dim=0, keepdim=True) / len(teacher_cls_logits)
                patch_mean = teacher_patch_logits.mean(dim=1).mean(dim=0).view(1, 1, K)
                return (torch.lerp(cls_mean, cls_center, momentum),
                        torch.lerp(patch_mean, patch_center, momentum))
     ''')),
    ("ibot_step with keyword arguments", "solution_ibot_step", fn('''
        def ibot_step(student_patch_logits, teacher_cls_logits, teacher_patch_logits, mask,
                      cls_center, patch_center, student_temp, teacher_temp, center_momentum):
            loss = ibot_patch_loss(student_patch_logits, teacher_patch_logits, mask,
                                   student_temp=student_temp, teacher_temp=teacher_temp,
                                   center=patch_center)
            centers = update_centers(cls_center, patch_center, teacher_cls_logits,
                                     teacher_patch_logits, momentum=center_momentum)
            return (loss, *centers)
     ''')),
    ("the derivation by iterating and by other closed forms", "solution_centering", fn('''
        def center_after(c0, mu, momentum, k):
            c = c0
            for _ in range(k):
                c = momentum * c + (1 - momentum) * mu
            return c

        def stationary_variance_factor(momentum):
            return (1 - momentum) ** 2 / (1 - momentum ** 2)

        def tracking_lag(momentum, drift):
            return drift / (1 - momentum) - drift
     ''')),
]


globals().update(mutation_tests(NOTEBOOK, MUTANTS, alternatives=ALTERNATIVES))
