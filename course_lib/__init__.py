"""course_lib: reference implementations for a course on self-supervised learning for vision.

One module per method, read top to bottom like its paper (`simclr`, `moco`, `dino`, `mae`, ...),
plus the shared pieces every unit uses: `data`, `backbones`, `augment`, `train`, `evaluate`,
`diagnostics`, `viz`, `schedules`, `ema` and `runtime` (device, seed, scale).

Shape vocabulary, used in every docstring and shape comment of the course:

    B      batch size (images; SimCLR's paper writes N)
    V      views / crops per image
    N      tokens or patches per image
    D      feature width (embedding dimension)
    K      prototypes / output dimension of a projection head
    Q      keys in MoCo's queue of negatives (the MoCo paper's K)
    h      attention heads
    C,H,W  image channels, height, width
    p      patch size (pixels per side)

Every public function takes its device and dtype from its inputs, works on CPU and CUDA with
float32 and bfloat16, and raises ``ValueError`` naming the argument when an input is wrong.
"""

__version__ = "0.1.0"
