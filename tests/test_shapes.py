"""The procedural shapes generator shared by the vision tasks."""

import numpy as np

from pipelines import shapes


def test_scenes_are_deterministic_by_seed_and_split():
    spec = shapes.SceneSpec(size=32)
    a = shapes.render_scene(spec, seed=1, split="train", index=5)
    b = shapes.render_scene(spec, seed=1, split="train", index=5)
    c = shapes.render_scene(spec, seed=2, split="train", index=5)
    d = shapes.render_scene(spec, seed=1, split="validation", index=5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.image, d.image)


def test_mask_boxes_and_classes_agree():
    spec = shapes.SceneSpec(size=64, min_objects=2, max_objects=4, min_scale=0.2, max_scale=0.4, max_overlap=0.0)
    for i in range(20):
        scene = shapes.render_scene(spec, 0, "train", i)
        assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.uint8
        assert len(scene.boxes) == len(scene.classes) >= 1
        for box, k in zip(scene.boxes, scene.classes):
            x0, y0, x1, y1 = box
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            inside = scene.mask[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))]
            assert (inside == k + 1).any(), "each box holds pixels of its class in the mask"
        assert set(np.unique(scene.mask)) <= {0} | {int(k) + 1 for k in scene.classes}


def test_classes_are_roughly_balanced():
    labels = shapes.generate_arrays(shapes.SceneSpec(size=16), 600, 0, "train")["labels"]
    counts = np.bincount(labels, minlength=len(shapes.SHAPES))
    assert counts.min() > 600 / len(shapes.SHAPES) * 0.6
