import numpy as np
import torch

from gan_engine.images import grid, png_bytes, scatter_png, to_uint8


def test_to_uint8_maps_the_model_range() -> None:
    images = torch.tensor([-1.0, 0.0, 1.0, 2.0]).reshape(1, 1, 2, 2)
    assert to_uint8(images).tolist() == [[[0, 128], [255, 255]]]
    assert to_uint8(torch.zeros(2, 3, 4, 4)).shape == (2, 4, 4, 3)


def test_grid_places_images_row_major() -> None:
    images = np.stack([np.full((2, 2), k, np.uint8) for k in range(1, 4)])
    canvas = grid(images, columns=2, padding=1)
    assert canvas.shape == (7, 7)
    assert canvas[1, 1] == 1 and canvas[1, 4] == 2 and canvas[4, 1] == 3 and canvas[4, 4] == 0


def test_png_and_scatter_are_pngs() -> None:
    assert png_bytes(np.zeros((4, 4, 3), np.uint8)).startswith(b"\x89PNG")
    points = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    assert scatter_png(points, np.arange(20) % 3, reference=points).startswith(b"\x89PNG")
