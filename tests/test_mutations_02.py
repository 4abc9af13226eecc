"""The mistakes dino.ipynb's test cells must catch: the common DINO mistakes, each a plausible wrong
answer (a MUTANT) for one answer cell, and the keyword the failed check's message must contain.
Each must also be caught by the hidden part of its test cell alone (the random-input tests do not
lean on the worked example).
The notebook runs in-process (``notebook_harness``); what every graded notebook promises (the
solution passes silently, the release fails, the points add up) is ``test_notebook_contract.py``.
Run with ``-s`` to see the table: mistake -> test cell -> first line of the message.
"""
from __future__ import annotations

from notebook_harness import REPO, Notebook, Template, fn, mutation_tests

NOTEBOOK = Notebook(REPO / "solutions" / "02_dino" / "dino.ipynb")


DIAGNOSIS = Template(fn('''
    def collapse_diagnosis(teacher_probs):
        def entropy(p):
            return {entropy}
        p = teacher_probs.detach().double()
        log_k = math.log(p.shape[1])
        per_image = {per_image}
        batch_mean = {batch_mean}
        if per_image >= 0.9 * log_k:
            verdict = {first}
        elif {one_hot}:
            verdict = {second}
        else:
            verdict = {healthy}
        return {result}
'''), entropy="-torch.special.xlogy(p, p).sum(dim=-1)", per_image="entropy(p).mean().item()",
    batch_mean="entropy(p.mean(dim=0)).item()", first='"uniform"', second='"one-hot"',
    one_hot="batch_mean <= 0.1 * log_k", healthy='"healthy"', result="per_image, batch_mean, verdict")


MUTANTS = [
    # --- 1. teacher_targets ---------------------------------------------------------------------
    ("targets: centering after the softmax", "solution_teacher_targets", "test_teacher_targets",
     "after the softmax", fn('''
        def teacher_targets(teacher_logits, center, teacher_temp):
            return F.softmax(teacher_logits.detach() / teacher_temp, dim=-1) - center
     ''')),
    ("targets: no stop-gradient (output requires grad)", "solution_teacher_targets",
     "test_teacher_targets", "stop-gradient", fn('''
        def teacher_targets(teacher_logits, center, teacher_temp):
            return F.softmax((teacher_logits - center) / teacher_temp, dim=-1)
     ''')),
    ("targets: temperature multiplied", "solution_teacher_targets", "test_teacher_targets",
     "temperature multiplied", fn('''
        def teacher_targets(teacher_logits, center, teacher_temp):
            return F.softmax((teacher_logits.detach() - center) * teacher_temp, dim=-1)
     ''')),
    ("targets: no centering", "solution_teacher_targets", "test_teacher_targets", "no centering",
     fn('''
        def teacher_targets(teacher_logits, center, teacher_temp):
            return F.softmax(teacher_logits.detach() / teacher_temp, dim=-1)
     ''')),
    ("targets: softmax over the batch axis", "solution_teacher_targets", "test_teacher_targets",
     "wrong axis", fn('''
        def teacher_targets(teacher_logits, center, teacher_temp):
            return F.softmax((teacher_logits.detach() - center) / teacher_temp, dim=0)
     ''')),
    ("targets: centres the caller's logits in place", "solution_teacher_targets",
     "test_teacher_targets", "in place", fn('''
        def teacher_targets(teacher_logits, center, teacher_temp):
            with torch.no_grad():
                teacher_logits -= center
            return F.softmax(teacher_logits.detach() / teacher_temp, dim=-1)
     ''')),
    ("targets: calls DINOLoss.teacher_probs", "solution_teacher_targets", "test_teacher_targets",
     "reference", fn('''
        from course_lib.dino import DINOLoss
        def teacher_targets(teacher_logits, center, teacher_temp):
            loss = DINOLoss(teacher_logits.shape[1])
            loss.center.copy_(center)
            return loss.teacher_probs(teacher_logits, teacher_temp)
     ''')),
    ("targets: calls dino.teacher_distribution", "solution_teacher_targets",
     "test_teacher_targets", "reference", fn('''
        from course_lib.dino import teacher_distribution
        def teacher_targets(teacher_logits, center, teacher_temp):
            return teacher_distribution(teacher_logits, center, teacher_temp).detach()
     ''')),
    # --- 2. multi_crop_loss ---------------------------------------------------------------------
    ("multi-crop: same-view pairs included", "solution_multi_crop_loss", "test_multi_crop_loss",
     "same-view", fn('''
        def multi_crop_loss(student_logits, teacher_probs, student_temp):
            terms = [(-(p * F.log_softmax(s / student_temp, dim=-1)).sum(-1)).mean()
                     for p in teacher_probs for s in student_logits]
            return sum(terms) / len(terms)
     ''')),
    ("multi-crop: local crops skipped", "solution_multi_crop_loss", "test_multi_crop_loss",
     "local crops skipped", fn('''
        def multi_crop_loss(student_logits, teacher_probs, student_temp):
            terms = [(-(p * F.log_softmax(s / student_temp, dim=-1)).sum(-1)).mean()
                     for i, p in enumerate(teacher_probs)
                     for j, s in enumerate(student_logits[:len(teacher_probs)]) if i != j]
            return sum(terms) / len(terms)
     ''')),
    ("multi-crop: summed over pairs", "solution_multi_crop_loss", "test_multi_crop_loss",
     "summed over pairs", fn('''
        def multi_crop_loss(student_logits, teacher_probs, student_temp):
            return sum((-(p * F.log_softmax(s / student_temp, dim=-1)).sum(-1)).mean()
                       for i, p in enumerate(teacher_probs)
                       for j, s in enumerate(student_logits) if i != j)
     ''')),
    ("multi-crop: student temperature missing", "solution_multi_crop_loss",
     "test_multi_crop_loss", "temperature missing", fn('''
        def multi_crop_loss(student_logits, teacher_probs, student_temp):
            terms = [(-(p * F.log_softmax(s, dim=-1)).sum(-1)).mean()
                     for i, p in enumerate(teacher_probs)
                     for j, s in enumerate(student_logits) if i != j]
            return sum(terms) / len(terms)
     ''')),
    ("multi-crop: summed over the batch", "solution_multi_crop_loss", "test_multi_crop_loss",
     "summed over the batch", fn('''
        def multi_crop_loss(student_logits, teacher_probs, student_temp):
            terms = [(-(p * F.log_softmax(s / student_temp, dim=-1)).sum(-1)).sum()
                     for i, p in enumerate(teacher_probs)
                     for j, s in enumerate(student_logits) if i != j]
            return sum(terms) / len(terms)
     ''')),
    ("multi-crop: calls DINOLoss.forward", "solution_multi_crop_loss", "test_multi_crop_loss",
     "reference", fn('''
        from course_lib.dino import DINOLoss
        def multi_crop_loss(student_logits, teacher_probs, student_temp):
            # teacher_temp = 1 and center 0: log of the targets gives them back through the softmax
            loss = DINOLoss(student_logits[0].shape[1], len(teacher_probs), student_temp,
                            use_centering=False)
            loss.use_sharpening = True
            return loss(torch.cat(student_logits), torch.cat(teacher_probs).log(), 1.0)
     ''')),
    # --- 3. dino_step ---------------------------------------------------------------------------
    ("step: center from the student's logits", "solution_dino_step", "test_dino_step",
     "student's logits", fn('''
        def dino_step(student_logits, teacher_logits, center, teacher_temp, student_temp,
                      center_momentum):
            targets = [teacher_targets(t, center, teacher_temp) for t in teacher_logits]
            loss = multi_crop_loss(student_logits, targets, student_temp)
            mean = torch.cat(student_logits).detach().mean(0, keepdim=True)
            return loss, center_momentum * center + (1 - center_momentum) * mean
     ''')),
    ("step: center from the teacher's probabilities", "solution_dino_step", "test_dino_step",
     "probabilities", fn('''
        def dino_step(student_logits, teacher_logits, center, teacher_temp, student_temp,
                      center_momentum):
            targets = [teacher_targets(t, center, teacher_temp) for t in teacher_logits]
            loss = multi_crop_loss(student_logits, targets, student_temp)
            mean = torch.cat(targets).mean(0, keepdim=True)
            return loss, center_momentum * center + (1 - center_momentum) * mean
     ''')),
    ("step: center updated before the loss", "solution_dino_step", "test_dino_step",
     "before the loss", fn('''
        def dino_step(student_logits, teacher_logits, center, teacher_temp, student_temp,
                      center_momentum):
            mean = torch.cat(teacher_logits).detach().mean(0, keepdim=True)
            center = center_momentum * center + (1 - center_momentum) * mean
            targets = [teacher_targets(t, center, teacher_temp) for t in teacher_logits]
            return multi_crop_loss(student_logits, targets, student_temp), center
     ''')),
    ("step: center momentum reversed", "solution_dino_step", "test_dino_step",
     "momentum reversed", fn('''
        def dino_step(student_logits, teacher_logits, center, teacher_temp, student_temp,
                      center_momentum):
            targets = [teacher_targets(t, center, teacher_temp) for t in teacher_logits]
            loss = multi_crop_loss(student_logits, targets, student_temp)
            mean = torch.cat(teacher_logits).detach().mean(0, keepdim=True)
            return loss, (1 - center_momentum) * center + center_momentum * mean
     ''')),
    ("step: temperatures swapped (teacher softer)", "solution_dino_step", "test_dino_step",
     "temperatures swapped", fn('''
        def dino_step(student_logits, teacher_logits, center, teacher_temp, student_temp,
                      center_momentum):
            targets = [teacher_targets(t, center, student_temp) for t in teacher_logits]
            loss = multi_crop_loss(student_logits, targets, teacher_temp)
            mean = torch.cat(teacher_logits).detach().mean(0, keepdim=True)
            return loss, center_momentum * center + (1 - center_momentum) * mean
     ''')),
    ("step: center modified in place", "solution_dino_step", "test_dino_step", "in place", fn('''
        def dino_step(student_logits, teacher_logits, center, teacher_temp, student_temp,
                      center_momentum):
            targets = [teacher_targets(t, center, teacher_temp) for t in teacher_logits]
            loss = multi_crop_loss(student_logits, targets, student_temp)
            mean = torch.cat(teacher_logits).detach().mean(0, keepdim=True)
            center.mul_(center_momentum).add_(mean, alpha=1 - center_momentum)
            return loss, center
     ''')),
    ("step: center never updated", "solution_dino_step", "test_dino_step", "not updated", fn('''
        def dino_step(student_logits, teacher_logits, center, teacher_temp, student_temp,
                      center_momentum):
            targets = [teacher_targets(t, center, teacher_temp) for t in teacher_logits]
            return multi_crop_loss(student_logits, targets, student_temp), center.clone()
     ''')),
    ("step: center keeps the teacher's graph", "solution_dino_step", "test_dino_step",
     "running statistic", fn('''
        def dino_step(student_logits, teacher_logits, center, teacher_temp, student_temp,
                      center_momentum):
            targets = [teacher_targets(t, center, teacher_temp) for t in teacher_logits]
            loss = multi_crop_loss(student_logits, targets, student_temp)
            mean = torch.cat(teacher_logits).mean(0, keepdim=True)
            return loss, center_momentum * center + (1 - center_momentum) * mean
     ''')),
    ("step: calls DINOLoss (forward and update_center)", "solution_dino_step", "test_dino_step",
     "reference", fn('''
        from course_lib.dino import DINOLoss
        def dino_step(student_logits, teacher_logits, center, teacher_temp, student_temp,
                      center_momentum):
            loss_fn = DINOLoss(center.shape[1], len(teacher_logits), student_temp, center_momentum)
            loss_fn.center.copy_(center)
            loss = loss_fn(torch.cat(student_logits), torch.cat(teacher_logits), teacher_temp)
            return loss, loss_fn.center.clone()
     ''')),
    # --- 4. ema_update --------------------------------------------------------------------------
    ("ema: wrong direction (t <- m s + (1-m) t)", "solution_ema_update", "test_ema_update",
     "wrong direction", fn('''
        def ema_update(teacher, student, momentum):
            with torch.no_grad():
                for t, s in zip(teacher.parameters(), student.parameters()):
                    t.copy_(momentum * s + (1 - momentum) * t)
     ''')),
    ("ema: new Parameter objects (not in place)", "solution_ema_update", "test_ema_update",
     "in place", fn('''
        def ema_update(teacher, student, momentum):
            for module_t, module_s in zip(teacher.modules(), student.modules()):
                for name, t in list(module_t.named_parameters(recurse=False)):
                    s = getattr(module_s, name)
                    new = nn.Parameter((momentum * t + (1 - momentum) * s).detach(),
                                       requires_grad=False)
                    setattr(module_t, name, new)
     ''')),
    ("ema: update recorded by autograd (no torch.no_grad)", "solution_ema_update",
     "test_ema_update", "no_grad", fn('''
        def ema_update(teacher, student, momentum):
            for t, s in zip(teacher.parameters(), student.parameters()):
                t.mul_(momentum).add_((1 - momentum) * s)
     ''')),
    ("ema: calls course_lib.ema.ema_update", "solution_ema_update", "test_ema_update",
     "reference", fn('''
        from course_lib import ema
        def ema_update(teacher, student, momentum):
            ema.ema_update(teacher, student, momentum)
     ''')),
    # --- 5. cosine_schedule ---------------------------------------------------------------------
    ("schedule: ends exactly at final (divides by n - 1)", "solution_cosine_schedule",
     "test_cosine_schedule", "off by one", fn('''
        def cosine_schedule(base, final, steps, warmup_steps=0, warmup_start=0.0):
            warmup = torch.linspace(warmup_start, base, warmup_steps, dtype=torch.float64)
            n = steps - warmup_steps
            j = torch.arange(n, dtype=torch.float64)
            cosine = final + 0.5 * (base - final) * (1 + torch.cos(math.pi * j / (n - 1)))
            return torch.cat([warmup, cosine])
     ''')),
    ("schedule: cosine starts one step late (j = 1..n)", "solution_cosine_schedule",
     "test_cosine_schedule", "off by one", fn('''
        def cosine_schedule(base, final, steps, warmup_steps=0, warmup_start=0.0):
            warmup = torch.linspace(warmup_start, base, warmup_steps, dtype=torch.float64)
            n = steps - warmup_steps
            j = torch.arange(1, n + 1, dtype=torch.float64)
            cosine = final + 0.5 * (base - final) * (1 + torch.cos(math.pi * j / n))
            return torch.cat([warmup, cosine])
     ''')),
    ("schedule: warm-up missing", "solution_cosine_schedule", "test_cosine_schedule",
     "warm-up missing", fn('''
        def cosine_schedule(base, final, steps, warmup_steps=0, warmup_start=0.0):
            i = torch.arange(steps, dtype=torch.float64)
            return final + 0.5 * (base - final) * (1 + torch.cos(math.pi * i / steps))
     ''')),
    ("schedule: warm-up i / warmup_steps (never reaches base)", "solution_cosine_schedule",
     "test_cosine_schedule", "warm-up off by one", fn('''
        def cosine_schedule(base, final, steps, warmup_steps=0, warmup_start=0.0):
            i = torch.arange(warmup_steps, dtype=torch.float64)
            warmup = warmup_start + (base - warmup_start) * i / warmup_steps
            n = steps - warmup_steps
            j = torch.arange(n, dtype=torch.float64)
            cosine = final + 0.5 * (base - final) * (1 + torch.cos(math.pi * j / n))
            return torch.cat([warmup, cosine])
     ''')),
    ("schedule: calls course_lib.schedules.cosine_schedule", "solution_cosine_schedule",
     "test_cosine_schedule", "reference", fn('''
        import course_lib.schedules
        def cosine_schedule(base, final, steps, warmup_steps=0, warmup_start=0.0):
            return course_lib.schedules.cosine_schedule(base, final, steps, warmup_steps,
                                                        warmup_start)
     ''')),
    # --- 6. collapse_diagnosis ------------------------------------------------------------------
    ("collapse: entropy in bits", "solution_collapse_diagnosis", "test_collapse_diagnosis", "bits",
     DIAGNOSIS.format(entropy="-(p * torch.log2(p.clamp_min(1e-300))).sum(dim=-1)")),
    ("collapse: the two entropies swapped", "solution_collapse_diagnosis",
     "test_collapse_diagnosis", "swapped", DIAGNOSIS.format(result="batch_mean, per_image, verdict")),
    ("collapse: entropy summed over the batch axis", "solution_collapse_diagnosis",
     "test_collapse_diagnosis", "batch axis",
     DIAGNOSIS.format(per_image="(-torch.special.xlogy(p, p).sum(dim=0)).mean().item()")),
    ("collapse: 0 log 0 gives NaN", "solution_collapse_diagnosis", "test_collapse_diagnosis",
     "0 log 0", DIAGNOSIS.format(entropy="-(p * torch.log(p)).sum(dim=-1)")),
    ("collapse: one-hot judged on the per-image entropy", "solution_collapse_diagnosis",
     "test_collapse_diagnosis", "judged per image",
     DIAGNOSIS.format(one_hot="per_image <= 0.1 * log_k")),
    ("collapse: uniform and one-hot swapped", "solution_collapse_diagnosis",
     "test_collapse_diagnosis", "swapped", DIAGNOSIS.format(first='"one-hot"', second='"uniform"')),
    ("collapse: entropies returned as tensors", "solution_collapse_diagnosis",
     "test_collapse_diagnosis", ".item()",
     DIAGNOSIS.format(per_image="entropy(p).mean()", batch_mean="entropy(p.mean(dim=0))")),
    ("collapse: misspelt verdict", "solution_collapse_diagnosis", "test_collapse_diagnosis",
     "spelled", DIAGNOSIS.format(healthy='"Healthy"')),
    ("collapse: calls course_lib.diagnostics.entropy", "solution_collapse_diagnosis",
     "test_collapse_diagnosis", "reference", fn('''
        import course_lib.diagnostics
        def collapse_diagnosis(teacher_probs):
            p = teacher_probs.detach().double()
            log_k = math.log(p.shape[1])
            per_image = course_lib.diagnostics.entropy(p).mean().item()
            batch_mean = course_lib.diagnostics.entropy(p.mean(dim=0)).item()
            verdict = ("uniform" if per_image >= 0.9 * log_k else
                       "one-hot" if batch_mean <= 0.1 * log_k else "healthy")
            return per_image, batch_mean, verdict
     ''')),
]


globals().update(mutation_tests(NOTEBOOK, MUTANTS))
