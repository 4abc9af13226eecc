"""Tests of course_lib.masking: the boolean-mask triple against hand-worked orders, block masks
with exactly random masking's count and far fewer borders than random masks, grid masks with one
visible patch per cell."""
import pytest
import torch

from course_lib.masking import block_mask, grid_mask, grid_stride_for, mask_from_boolean


def test_mask_from_boolean_keeps_patch_order():
    x = torch.arange(6.0).reshape(1, 6, 1)
    masked = torch.tensor([[True, False, True, False, False, True]])
    visible, mask, ids_restore = mask_from_boolean(x, masked)
    assert visible.flatten().tolist() == [1.0, 3.0, 4.0]
    assert mask.tolist() == [[1.0, 0.0, 1.0, 0.0, 0.0, 1.0]]
    filled = torch.cat([visible, torch.full((1, 3, 1), -1.0)], dim=1)
    restored = torch.gather(filled, 1, ids_restore.unsqueeze(-1))
    assert restored.flatten().tolist() == [-1.0, 1.0, -1.0, 3.0, 4.0, -1.0]
    with pytest.raises(ValueError, match="same number"):
        mask_from_boolean(torch.randn(2, 4, 1), torch.tensor([[True, False, False, False],
                                                              [True, True, False, False]]))


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75, 0.9])
def test_block_mask_masks_the_same_count_as_random(ratio):
    masked = block_mask(16, 8, ratio, generator=torch.Generator().manual_seed(0))
    assert masked.dtype == torch.bool and masked.shape == (16, 64)
    assert (masked.sum(1) == 64 - int(64 * (1 - ratio))).all()


def test_block_mask_is_blocky_and_grid_mask_is_regular():
    """Block masks have far fewer masked/visible borders than random ones; grid masks keep
    exactly one patch per 2x2 cell."""
    def borders(m):  # horizontally or vertically adjacent pairs that differ
        g = m.view(-1, 8, 8)
        return (g[:, 1:] != g[:, :-1]).sum() + (g[:, :, 1:] != g[:, :, :-1]).sum()
    gen = torch.Generator().manual_seed(0)
    blocks = block_mask(64, 8, 0.75, generator=gen)
    random = torch.stack([torch.randperm(64, generator=gen) < 48 for _ in range(64)])
    assert borders(blocks) < 0.6 * borders(random)
    grid = grid_mask(32, 8, generator=gen).view(32, 4, 2, 4, 2)          # (b, cell_r, i, cell_c, j)
    visible_per_cell = (~grid).sum(dim=(2, 4))
    assert (visible_per_cell == 1).all()
    assert grid_stride_for(0.75) == 2 and grid_stride_for(8 / 9) == 3
    with pytest.raises(ValueError, match="1 - 1/s"):
        grid_stride_for(0.5)
