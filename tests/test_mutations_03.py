"""The mistakes mae.ipynb's test cells must catch: the common MAE mistakes, each a plausible wrong
answer (a MUTANT) for one answer cell, and the keyword the failed check's message must contain.
Each must also be caught by the hidden part of its test cell alone (the random-input tests do not
lean on the worked example).
The notebook runs in-process (``notebook_harness``); what every graded notebook promises (the
solution passes silently, the release fails, the points add up) is ``test_notebook_contract.py``.
Run with ``-s`` to see the table: mistake -> test cell -> first line of the message.
"""
from __future__ import annotations


from notebook_harness import REPO, Notebook, Template, fn, mutation_tests

NOTEBOOK = Notebook(REPO / "solutions" / "03_mae" / "mae.ipynb")


MASKING = Template(fn('''
    def random_masking(x, mask_ratio, generator=None):
        B, N, D = x.shape
        n_keep = {n_keep}
        noise = {noise}
        ids_shuffle = {argsort}
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = {ids_keep}
        x_visible = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))
        mask = torch.ones(B, N, dtype=x.dtype, device=x.device)
        mask[:, :n_keep] = 0
        mask = {restore_mask}
        return x_visible, {mask}, {ids_restore}
'''), n_keep="int(N * (1 - mask_ratio))",
    noise="torch.rand(B, N, generator=generator).to(x.device)",
    argsort="torch.argsort(noise, dim=1)", ids_keep="ids_shuffle[:, :n_keep]",
    restore_mask="torch.gather(mask, 1, ids_restore)", mask="mask", ids_restore="ids_restore")

DECODER = Template(fn('''
    def decoder_input(latent, mask_token, ids_restore, decoder_pos_embed):
        B, N = ids_restore.shape
        D = latent.shape[2]
        n_masked = N - (latent.shape[1] - 1)
        holes = {holes}
        shuffled = {shuffled}
        index = {index}
        patches = torch.gather(shuffled, 1, index.unsqueeze(-1).expand(-1, -1, D))
        return {cls} + {pos}
'''), holes="mask_token.expand(B, n_masked, D)",
    shuffled="torch.cat([latent[:, 1:], holes], dim=1)", index="ids_restore",
    cls="torch.cat([latent[:, :1], patches], dim=1)", pos="decoder_pos_embed")

LOSS = Template(fn('''
    def masked_mse(pred, imgs_patches, mask, norm_pix=True):
        target = imgs_patches
        if {norm}:
            mean = {mean}
            var = {var}
            target = (target - mean) / (var + {eps}) ** 0.5
        per_patch = (pred - target).square().{pixels}(dim=-1)
        return {reduce}
'''), norm="norm_pix", mean="target.mean(dim=-1, keepdim=True)",
    var="target.var(dim=-1, keepdim=True)", eps="1e-6", pixels="mean",
    reduce="(per_patch * mask).sum() / mask.sum()")

CONTEXT = Template(fn('''
    def text_information(n_masked, vocab_size, effective_vocab):
        return {information}

    def context_probability(mask_ratio, n_neighbours):
        return {probability}
'''), information="n_masked * (math.log(vocab_size) - math.log(effective_vocab))",
    probability="1.0 - mask_ratio ** n_neighbours")


# (mistake, solution cell replaced, test cell that must fail, keyword in the message, mutant)
MUTANTS = [
    # --- 1. patchify ----------------------------------------------------------------------------
    ("patchify: (channel, row, col) order inside a patch", "solution_patchify", "test_patchify",
     "channel first", fn('''
        def patchify(imgs, patch_size):
            B, C, H, W = imgs.shape
            p = patch_size
            x = imgs.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
            return x.reshape(B, (H // p) * (W // p), C * p * p)
     ''')),
    ("patchify: F.unfold (channel-first columns)", "solution_patchify", "test_patchify",
     "channel first", fn('''
        def patchify(imgs, patch_size):
            return F.unfold(imgs, patch_size, stride=patch_size).transpose(1, 2)
     ''')),
    ("patchify: reshape without permute", "solution_patchify", "test_patchify", "without permute",
     fn('''
        def patchify(imgs, patch_size):
            B, C, H, W = imgs.shape
            return imgs.reshape(B, (H // patch_size) * (W // patch_size), -1)
     ''')),
    ("patchify: patches in column-major order", "solution_patchify", "test_patchify",
     "column-major", fn('''
        def patchify(imgs, patch_size):
            B, C, H, W = imgs.shape
            p = patch_size
            x = imgs.reshape(B, C, H // p, p, W // p, p).permute(0, 4, 2, 3, 5, 1)
            return x.reshape(B, (H // p) * (W // p), p * p * C)
     ''')),
    ("patchify: pixel column before pixel row", "solution_patchify", "test_patchify",
     "swapped inside the patch", fn('''
        def patchify(imgs, patch_size):
            B, C, H, W = imgs.shape
            p = patch_size
            x = imgs.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 5, 3, 1)
            return x.reshape(B, (H // p) * (W // p), p * p * C)
     ''')),
    ("patchify: calls course_lib.mae.patchify", "solution_patchify", "test_patchify", "reference",
     fn('''
        import course_lib.mae
        def patchify(imgs, patch_size):
            return course_lib.mae.patchify(imgs, patch_size)
     ''')),
    # --- 2. random_masking ----------------------------------------------------------------------
    ("masking: keep count rounded to nearest", "solution_random_masking", "test_random_masking",
     "keep count", MASKING.format(n_keep="round(N * (1 - mask_ratio))")),
    ("masking: keep count N - int(N * ratio)", "solution_random_masking", "test_random_masking",
     "keep count", MASKING.format(n_keep="N - int(N * mask_ratio)")),
    ("masking: keeps int(N * ratio) tokens", "solution_random_masking", "test_random_masking",
     "keep count", MASKING.format(n_keep="int(N * mask_ratio)")),
    ("masking: mask 1/0 convention inverted", "solution_random_masking", "test_random_masking",
     "inverted", MASKING.format(mask="1 - mask")),
    ("masking: mask left in shuffled order", "solution_random_masking", "test_random_masking",
     "shuffled order", MASKING.format(restore_mask="mask")),
    ("masking: keeps the largest noise", "solution_random_masking", "test_random_masking",
     "largest noise", MASKING.format(argsort="torch.argsort(noise, dim=1, descending=True)")),
    ("masking: returns ids_shuffle as ids_restore", "solution_random_masking",
     "test_random_masking", "ids_shuffle returned", MASKING.format(ids_restore="ids_shuffle")),
    ("masking: one noise row for the whole batch", "solution_random_masking",
     "test_random_masking", "one noise row",
     MASKING.format(noise="torch.rand(N, generator=generator).expand(B, N)")),
    ("masking: visible tokens sorted into patch order", "solution_random_masking",
     "test_random_masking", "patch order",
     MASKING.format(ids_keep="ids_shuffle[:, :n_keep].sort(dim=1).values")),
    ("masking: boolean mask", "solution_random_masking", "test_random_masking", "mask dtype",
     MASKING.format(mask="mask.bool()")),
    ("masking: calls course_lib.mae.random_masking", "solution_random_masking",
     "test_random_masking", "reference", fn('''
        from course_lib.mae import random_masking as reference_masking
        def random_masking(x, mask_ratio, generator=None):
            return reference_masking(x, mask_ratio, generator)
     ''')),
    # --- 3. decoder_input -----------------------------------------------------------------------
    ("decoder: no unshuffle before the decoder", "solution_decoder_input", "test_decoder_input",
     "no unshuffle", DECODER.format(index="torch.arange(N).expand(B, N)")),
    ("decoder: positional embeddings missing", "solution_decoder_input", "test_decoder_input",
     "positional embeddings missing", DECODER.format(pos="0")),
    ("decoder: shuffled again (gather with argsort(ids_restore))", "solution_decoder_input",
     "test_decoder_input", "shuffled again",
     DECODER.format(index="torch.argsort(ids_restore, dim=1)")),
    ("decoder: mask tokens in front of the visible tokens", "solution_decoder_input",
     "test_decoder_input", "mask tokens in front",
     DECODER.format(shuffled="torch.cat([holes, latent[:, 1:]], dim=1)")),
    ("decoder: CLS token gathered with the patches", "solution_decoder_input",
     "test_decoder_input", "CLS token in the unshuffle",
     DECODER.format(shuffled="torch.cat([latent, holes], dim=1)")),
    ("decoder: CLS token dropped", "solution_decoder_input", "test_decoder_input", "CLS",
     DECODER.format(cls="patches", pos="decoder_pos_embed[:, 1:]")),
    ("decoder: positions added before the unshuffle", "solution_decoder_input",
     "test_decoder_input", "before the unshuffle", fn('''
        def decoder_input(latent, mask_token, ids_restore, decoder_pos_embed):
            B, N = ids_restore.shape
            D = latent.shape[2]
            latent = latent + decoder_pos_embed[:, :latent.shape[1]]
            holes = mask_token.expand(B, N + 1 - latent.shape[1], D)
            shuffled = torch.cat([latent[:, 1:], holes], dim=1)
            patches = torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, D))
            return torch.cat([latent[:, :1], patches], dim=1)
     ''')),
    ("decoder: mask token detached", "solution_decoder_input", "test_decoder_input",
     "cut from the graph", DECODER.format(holes="mask_token.detach().expand(B, n_masked, D)")),
    ("decoder: calls MAE.forward_decoder on a stand-in model", "solution_decoder_input",
     "test_decoder_input", "reference", fn('''
        from types import SimpleNamespace
        from course_lib.mae import MAE
        def decoder_input(latent, mask_token, ids_restore, decoder_pos_embed):
            same = lambda x: x
            model = SimpleNamespace(
                encoder=SimpleNamespace(num_prefix_tokens=1), decoder_embed=same,
                mask_token=mask_token, decoder_pos_embed=decoder_pos_embed, decoder_blocks=same,
                decoder_norm=same, decoder_pred=lambda x: torch.cat([x[:, :1], x], dim=1))
            return MAE.forward_decoder(model, latent, ids_restore)
     ''')),
    # --- 4. masked_mse --------------------------------------------------------------------------
    ("loss: over all patches, not the masked ones only", "solution_masked_mse",
     "test_masked_mse", "over all patches",
     LOSS.format(reduce="per_patch.mean()")),
    ("loss: over the visible patches (mask inverted)", "solution_masked_mse", "test_masked_mse",
     "visible patches", LOSS.format(reduce="(per_patch * (1 - mask)).sum() / (1 - mask).sum()")),
    ("loss: biased variance", "solution_masked_mse", "test_masked_mse", "biased variance",
     LOSS.format(var="target.var(dim=-1, keepdim=True, unbiased=False)")),
    ("loss: normalised over the batch", "solution_masked_mse", "test_masked_mse",
     "over the batch", LOSS.format(mean="target.mean(dim=0, keepdim=True)",
                                   var="target.var(dim=0, keepdim=True)")),
    ("loss: normalised over the patches", "solution_masked_mse", "test_masked_mse",
     "over the patches", LOSS.format(mean="target.mean(dim=1, keepdim=True)",
                                     var="target.var(dim=1, keepdim=True)")),
    ("loss: target not normalised", "solution_masked_mse", "test_masked_mse", "not normalised",
     LOSS.format(norm="False")),
    ("loss: 1e-6 missing", "solution_masked_mse", "test_masked_mse", "1e-6",
     LOSS.format(eps="0.0")),
    ("loss: summed over the pixels", "solution_masked_mse", "test_masked_mse",
     "summed over the pixels", LOSS.format(pixels="sum")),
    ("loss: averaged per image first", "solution_masked_mse", "test_masked_mse", "per image",
     LOSS.format(reduce="((per_patch * mask).sum(1) / mask.sum(1)).mean()")),
    ("loss: divided by the number of all patches", "solution_masked_mse", "test_masked_mse",
     "number of all patches", LOSS.format(reduce="(per_patch * mask).sum() / mask.numel()")),
    ("loss: normalised although norm_pix=False", "solution_masked_mse", "test_masked_mse",
     "although norm_pix=False", LOSS.format(norm="True")),
    ("loss: target normalised in place", "solution_masked_mse", "test_masked_mse", "in place",
     fn('''
        def masked_mse(pred, imgs_patches, mask, norm_pix=True):
            target = imgs_patches
            if norm_pix:
                var = target.var(dim=-1, keepdim=True)
                target -= target.mean(dim=-1, keepdim=True)
                target /= (var + 1e-6) ** 0.5
            per_patch = (pred - target).square().mean(dim=-1)
            return (per_patch * mask).sum() / mask.sum()
     ''')),
    ("loss: calls course_lib.mae.mae_loss", "solution_masked_mse", "test_masked_mse",
     "reference", fn('''
        import course_lib.mae
        def masked_mse(pred, imgs_patches, mask, norm_pix=True):
            return course_lib.mae.mae_loss(pred, imgs_patches, mask, norm_pix)
     ''')),
    # --- 5. optimal_masking_ratio ---------------------------------------------------------------
    ("ratio: r* = lambda", "solution_optimal_masking_ratio", "test_optimal_masking_ratio",
     "r* = lambda", fn('''
        def optimal_masking_ratio(decay):
            return float(decay)
     ''')),
    ("ratio: r* = min(1, lambda)", "solution_optimal_masking_ratio", "test_optimal_masking_ratio",
     "r* = lambda", fn('''
        def optimal_masking_ratio(decay):
            return min(1.0, decay)
     ''')),
    ("ratio: argmax of I(r) alone", "solution_optimal_masking_ratio",
     "test_optimal_masking_ratio", "argmax of I(r) alone", fn('''
        def optimal_masking_ratio(decay):
            r = torch.linspace(0, 1, 1001, dtype=torch.float64)
            return r[torch.argmax(torch.exp(-decay * r))].item()
     ''')),
    ("ratio: 1 / lambda not clipped to 1", "solution_optimal_masking_ratio",
     "test_optimal_masking_ratio", "not clipped", fn('''
        def optimal_masking_ratio(decay):
            return 1.0 / decay
     ''')),
    ("ratio: calls course_lib.mae.optimal_ratio", "solution_optimal_masking_ratio",
     "test_optimal_masking_ratio", "reference", fn('''
        from course_lib.mae import optimal_ratio
        def optimal_masking_ratio(decay):
            return optimal_ratio(decay)
     ''')),
    # --- 6. text_information and context_probability (one cell: each mutant breaks one) ------------
    ("context: information in bits", "solution_context", "test_context", "log base 2",
     CONTEXT.format(information="n_masked * math.log2(vocab_size / effective_vocab)")),
    ("context: information of one token", "solution_context", "test_context", "per token only",
     CONTEXT.format(information="math.log(vocab_size / effective_vocab)")),
    ("context: V_eff / V inverted", "solution_context", "test_context", "inverted",
     CONTEXT.format(information="n_masked * math.log(effective_vocab / vocab_size)")),
    ("context: probability of being cut off", "solution_context", "test_context",
     "all neighbours masked", CONTEXT.format(probability="mask_ratio ** n_neighbours")),
    ("context: every neighbour visible", "solution_context", "test_context",
     "all neighbours visible", CONTEXT.format(probability="(1 - mask_ratio) ** n_neighbours")),
    ("context: at least one neighbour masked", "solution_context", "test_context",
     "one minus all visible", CONTEXT.format(probability="1 - (1 - mask_ratio) ** n_neighbours")),
    ("context: expected number of visible neighbours", "solution_context", "test_context",
     "expected count", CONTEXT.format(probability="n_neighbours * (1 - mask_ratio)")),
]

# Right answers written another way: every test cell must pass them (the tests check the
# method, not one way of coding it).
ALTERNATIVES = [
    ("patchify with einsum, as the MAE code", "solution_patchify", fn('''
        def patchify(imgs, patch_size):
            B, C, H, W = imgs.shape
            p = patch_size
            x = imgs.reshape(B, C, H // p, p, W // p, p)
            return torch.einsum("nchpwq->nhwpqc", x).reshape(B, -1, p * p * C)
     ''')),
    ("random_masking with scatter and index_select", "solution_random_masking", fn('''
        def random_masking(x, mask_ratio, generator=None):
            B, N, D = x.shape
            n_keep = int(N * (1 - mask_ratio))
            ids_shuffle = torch.rand(B, N, generator=generator).argsort(dim=1)
            ids_keep = ids_shuffle[:, :n_keep]
            x_visible = torch.stack([x[b].index_select(0, ids_keep[b]) for b in range(B)])
            mask = torch.ones(B, N, dtype=x.dtype).scatter(1, ids_keep, 0.0)
            return x_visible, mask, ids_shuffle.argsort(dim=1)
     ''')),
    ("decoder_input by writing into a full sequence of mask tokens", "solution_decoder_input",
     fn('''
        def decoder_input(latent, mask_token, ids_restore, decoder_pos_embed):
            B, N = ids_restore.shape
            D = latent.shape[2]
            ids_keep = ids_restore.argsort(dim=1)[:, :latent.shape[1] - 1]
            patches = mask_token.expand(B, N, D).scatter(
                1, ids_keep.unsqueeze(-1).expand(-1, -1, D), latent[:, 1:])
            return torch.cat([latent[:, :1], patches], dim=1) + decoder_pos_embed
     ''')),
    ("masked_mse with boolean indexing and F.mse_loss", "solution_masked_mse", fn('''
        def masked_mse(pred, imgs_patches, mask, norm_pix=True):
            target = imgs_patches
            if norm_pix:
                var, mean = torch.var_mean(target, dim=-1, keepdim=True)
                target = (target - mean) / torch.sqrt(var + 1e-6)
            keep = mask.bool()
            return F.mse_loss(pred[keep], target[keep])
     ''')),
    ("optimal_masking_ratio with a branch", "solution_optimal_masking_ratio", fn('''
        def optimal_masking_ratio(decay):
            if decay <= 1:
                return 1.0
            return 1 / decay
     ''')),
    ("context answers through torch and a product of the ratios", "solution_context", fn('''
        def text_information(n_masked, vocab_size, effective_vocab):
            ratio = torch.tensor(vocab_size / effective_vocab, dtype=torch.float64)
            return float(n_masked * torch.log(ratio))

        def context_probability(mask_ratio, n_neighbours):
            cut_off = 1.0
            for _ in range(n_neighbours):
                cut_off *= mask_ratio
            return 1 - cut_off
     ''')),
]


globals().update(mutation_tests(NOTEBOOK, MUTANTS, alternatives=ALTERNATIVES))
