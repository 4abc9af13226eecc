"""The mistakes infonce.ipynb's test cells must catch: the common mistakes of contrastive learning, each a plausible wrong
answer (a MUTANT) for one answer cell, and the keyword the failed check's message must contain.

The notebook runs in-process (``notebook_harness``); what every graded notebook promises (the
solution passes silently, the release fails, the points add up) is ``test_notebook_contract.py``.
Run with ``-s`` to see the table: mistake -> test cell -> first line of the message.
"""
from __future__ import annotations

from notebook_harness import REPO, Notebook, fn, mutation_tests

NOTEBOOK = Notebook(REPO / "solutions" / "01_infonce" / "infonce.ipynb")


MUTANTS = [
    ("similarity: self-similarity left on the diagonal", "solution_similarity_matrix",
     "test_similarity_matrix", "self-similarity", fn('''
        def similarity_matrix(z1, z2, temperature):
            z = F.normalize(torch.cat([z1, z2]), dim=1)
            return z @ z.T / temperature
     ''')),
    ("similarity: no L2 normalisation", "solution_similarity_matrix", "test_similarity_matrix",
     "normalis", fn('''
        def similarity_matrix(z1, z2, temperature):
            z = torch.cat([z1, z2])
            sim = z @ z.T / temperature
            return sim.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
     ''')),
    ("similarity: temperature multiplied", "solution_similarity_matrix", "test_similarity_matrix",
     "temperature", fn('''
        def similarity_matrix(z1, z2, temperature):
            z = F.normalize(torch.cat([z1, z2]), dim=1)
            sim = z @ z.T * temperature
            return sim.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
     ''')),
    ("similarity: views interleaved", "solution_similarity_matrix", "test_similarity_matrix",
     "wrong order", fn('''
        def similarity_matrix(z1, z2, temperature):
            z = F.normalize(torch.stack([z1, z2], dim=1).reshape(-1, z1.shape[1]), dim=1)
            sim = z @ z.T / temperature
            return sim.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
     ''')),
    ("similarity: normalises the inputs in place", "solution_similarity_matrix",
     "test_similarity_matrix", "in place", fn('''
        def similarity_matrix(z1, z2, temperature):
            z1 /= z1.norm(dim=1, keepdim=True)
            z2 /= z2.norm(dim=1, keepdim=True)
            z = torch.cat([z1, z2])
            sim = z @ z.T / temperature
            return sim.masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
     ''')),
    ("similarity: calls the course_lib reference", "solution_similarity_matrix",
     "test_similarity_matrix", "reference", fn('''
        from course_lib.simclr import similarity_matrix as _reference_similarity
        def similarity_matrix(z1, z2, temperature):
            return _reference_similarity(z1, z2, temperature)
     ''')),
    ("info_nce: self-similarity left in the denominator", "solution_info_nce", "test_info_nce",
     "self-similarity", fn('''
        def info_nce(z1, z2, temperature):
            n = len(z1)
            z = F.normalize(torch.cat([z1, z2]), dim=1)
            logits = z @ z.T / temperature
            return F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
     ''')),
    ("info_nce: one direction only (N anchors of view 1)", "solution_info_nce", "test_info_nce",
     "2N anchors", fn('''
        def info_nce(z1, z2, temperature):
            n = len(z1)
            sim = similarity_matrix(z1, z2, temperature)
            return F.cross_entropy(sim[:n], torch.arange(n, 2 * n))
     ''')),
    ("info_nce: no L2 normalisation", "solution_info_nce", "test_info_nce", "normalis", fn('''
        def info_nce(z1, z2, temperature):
            n = len(z1)
            z = torch.cat([z1, z2])
            logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), -math.inf)
            return F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
     ''')),
    ("info_nce: temperature multiplied", "solution_info_nce", "test_info_nce", "temperature", fn('''
        def info_nce(z1, z2, temperature):
            n = len(z1)
            z = F.normalize(torch.cat([z1, z2]), dim=1)
            logits = (z @ z.T * temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), -math.inf)
            return F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
     ''')),
    ("info_nce: calls the course_lib reference", "solution_info_nce", "test_info_nce",
     "reference", fn('''
        import course_lib.simclr
        def info_nce(z1, z2, temperature):
            return course_lib.simclr.info_nce(z1, z2, temperature)
     ''')),
    ("negative_gradient: 1/tau missing", "solution_negative_gradient", "test_negative_gradient",
     "temperature", fn('''
        def negative_gradient(n_pairs, s_pos, s_neg, temperature):
            return 1.0 / (math.exp((s_pos - s_neg) / temperature) + 2 * n_pairs - 2)
     ''')),
    ("negative_gradient: the anchor counted as a candidate", "solution_negative_gradient",
     "test_negative_gradient", "self-similarity", fn('''
        def negative_gradient(n_pairs, s_pos, s_neg, temperature):
            return 1.0 / (math.exp((s_pos - s_neg) / temperature) + 2 * n_pairs - 1) / temperature
     ''')),
    ("enqueue: always writes at index 0", "solution_enqueue", "test_enqueue", "FIFO", fn('''
        def enqueue(queue, ptr, keys):
            queue[: len(keys)] = F.normalize(keys.detach(), dim=1)
            return (ptr + len(keys)) % len(queue)
     ''')),
    ("enqueue: overwrites the newest (pointer not advanced)", "solution_enqueue", "test_enqueue",
     "FIFO", fn('''
        def enqueue(queue, ptr, keys):
            rows = (ptr + torch.arange(len(keys))) % len(queue)
            queue[rows] = F.normalize(keys.detach(), dim=1)
            return ptr
     ''')),
    ("enqueue: no wrap-around (slice past the end)", "solution_enqueue", "test_enqueue", "wrap",
     fn('''
        def enqueue(queue, ptr, keys):
            queue[ptr: ptr + len(keys)] = F.normalize(keys.detach(), dim=1)
            return (ptr + len(keys)) % len(queue)
     ''')),
    ("enqueue: keys not normalised", "solution_enqueue", "test_enqueue", "normalis", fn('''
        def enqueue(queue, ptr, keys):
            rows = (ptr + torch.arange(len(keys))) % len(queue)
            queue[rows] = keys.detach()
            return (ptr + len(keys)) % len(queue)
     ''')),
    ("enqueue: keys stored with their graph", "solution_enqueue", "test_enqueue", "detach", fn('''
        def enqueue(queue, ptr, keys):
            rows = (ptr + torch.arange(len(keys))) % len(queue)
            queue[rows] = F.normalize(keys, dim=1)
            return (ptr + len(keys)) % len(queue)
     ''')),
    ("enqueue: calls the course_lib reference", "solution_enqueue", "test_enqueue", "reference",
     fn('''
        from course_lib.moco import MoCoQueue
        def enqueue(queue, ptr, keys):
            buffer = MoCoQueue(queue.shape[1], queue.shape[0])
            buffer.queue, buffer.ptr = queue, torch.tensor(ptr)
            buffer.enqueue(keys)
            return int(buffer.ptr)
     ''')),
    ("momentum: wrong direction (t <- m s + (1-m) t)", "solution_momentum_update",
     "test_momentum_update", "wrong direction", fn('''
        def momentum_update(teacher, student, m):
            with torch.no_grad():
                for t, s in zip(teacher.parameters(), student.parameters()):
                    t.copy_(m * s + (1 - m) * t)
     ''')),
    ("momentum: new Parameter objects (not in place)", "solution_momentum_update",
     "test_momentum_update", "in place", fn('''
        def momentum_update(teacher, student, m):
            for module_t, module_s in zip(teacher.modules(), student.modules()):
                for name, t in list(module_t.named_parameters(recurse=False)):
                    s = getattr(module_s, name)
                    new = nn.Parameter((m * t + (1 - m) * s).detach(), requires_grad=False)
                    setattr(module_t, name, new)
     ''')),
    ("momentum: update recorded by autograd (no torch.no_grad)", "solution_momentum_update",
     "test_momentum_update", "no_grad", fn('''
        def momentum_update(teacher, student, m):
            for t, s in zip(teacher.parameters(), student.parameters()):
                t.mul_(m).add_((1 - m) * s)
     ''')),
    ("momentum: calls the course_lib reference", "solution_momentum_update",
     "test_momentum_update", "reference", fn('''
        from course_lib import ema
        def momentum_update(teacher, student, m):
            ema.ema_update(teacher, student, m)
     ''')),
    ("uniformity: pairs (i, i) included", "solution_uniformity", "test_uniformity",
     "distinct pairs", fn('''
        def uniformity(z, t=2.0):
            z = F.normalize(z, dim=1)
            return torch.log(torch.exp(-t * torch.cdist(z, z) ** 2).mean())
     ''')),
    ("uniformity: no L2 normalisation", "solution_uniformity", "test_uniformity", "normalis", fn('''
        def uniformity(z, t=2.0):
            return torch.log(torch.exp(-t * torch.pdist(z) ** 2).mean())
     ''')),
    ("uniformity: calls the course_lib reference", "solution_uniformity", "test_uniformity",
     "reference", fn('''
        from course_lib.diagnostics import uniformity as _reference_uniformity
        def uniformity(z, t=2.0):
            return _reference_uniformity(z, t)
     ''')),
]


globals().update(mutation_tests(NOTEBOOK, MUTANTS, hidden_alone=False))
