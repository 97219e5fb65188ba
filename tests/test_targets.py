import numpy as np
import pytest
import SimpleITK as sitk
import torch

from studylib.preprocessing.targets import (
    derived_targets,
    intersection_mask,
    staple_consensus,
    staple_probability,
    union_mask,
    vote_count,
)
from studylib.training.models import StyleConditioned, UNet, with_style_planes


def _readers():
    """Three hand-made readers: a, a wider b, and a small c inside a."""
    a = np.zeros((6, 24, 24), np.uint8)
    a[2:5, 6:16, 6:16] = 1
    b = a.copy()
    b[2:5, 6:16, 14:19] = 1
    c = np.zeros_like(a)
    c[3, 8:12, 8:12] = 1
    return a, b, c


def test_staple_equals_simpleitk_and_its_crop():
    a, b, c = _readers()
    direct = sitk.GetArrayFromImage(sitk.STAPLE([sitk.GetImageFromArray(m) for m in (a, b, c)], 1.0))
    assert np.array_equal(staple_probability([a, b, c]), direct.astype(np.float32))
    full = staple_consensus([a, b, c], margin=None)
    assert np.array_equal(full, (direct > 0.5).astype(np.uint8))
    assert np.array_equal(staple_consensus([a, b, c]), full)  # the union's box + margin changes nothing here
    # two identical readers outvote a third
    assert np.array_equal(staple_consensus([a, a, c], margin=None), a)
    assert not staple_consensus([np.zeros_like(a)] * 3).any()
    with pytest.raises(ValueError, match="at least two"):
        staple_consensus([a])


def test_union_intersection_and_reader_count():
    a, b, c = _readers()
    assert np.array_equal(union_mask([a, b, c]), b)
    assert np.array_equal(intersection_mask([a, b, c]), c)
    count = vote_count([a, b, c])
    assert count.max() == 3 and count[3, 9, 9] == 3 and count[2, 7, 17] == 1 and count[0, 0, 0] == 0
    targets = derived_targets({"r1": a, "r2": b, "r3": c}, ["r1", "r2", "r3"], ["union", "intersection"])
    assert set(targets) == {"union", "intersection"}
    with pytest.raises(ValueError, match="unknown derived"):
        derived_targets({"r1": a}, ["r1"], ["majority"])
    with pytest.raises(ValueError, match="readers' labels"):
        derived_targets({"r1": a}, ["r1", "r2"], ["union"])


def test_style_input_changes_the_output_and_survives_warping():
    torch.manual_seed(0)
    model = StyleConditioned(UNet(2 + 3, (4, 8, 16, 32), 32), image_channels=2, styles=3).eval()
    image = np.random.default_rng(0).random((2, 2, 32, 32)).astype(np.float32)
    outputs = [model(torch.from_numpy(with_style_planes(image, s, 3))) for s in range(3)]
    assert not torch.allclose(outputs[0], outputs[1]) and not torch.allclose(outputs[1], outputs[2])
    warped = with_style_planes(image, 1, 3)
    warped[:, 2:, :4] = 0  # augmentation pads the warped style planes with zeros at the border
    assert torch.equal(model(torch.from_numpy(warped)), outputs[1])
    with pytest.raises(ValueError, match="two styles"):
        StyleConditioned(UNet(3, (4, 8, 16, 32), 32), 2, 1)


def test_disagreement_fraction_known_answers():
    from studylib.reporting.readers.disagreement import (
        disagreement_fraction,
        disagreement_row,
        partial_agreement,
    )

    a, b, c = _readers()
    readers = partial_agreement(vote_count([a, b, c]), 3)
    assert readers.sum() == b.sum() - c.sum()  # inside b, outside c
    model_a, model_b = a.copy(), a.copy()
    model_b[2:5, 6:16, 16:19] = 1  # 3 x 10 x 3 = 90 voxels of model disagreement, all inside b but outside c
    model_b[0, 0, :10] = 1  # 10 more, where every reader says background
    assert disagreement_fraction(model_a ^ model_b, readers) == pytest.approx(90 / 100)
    assert np.isnan(disagreement_fraction(np.zeros_like(a), readers))
    row = disagreement_row([a, b, c], [model_a, model_b], voxel_ml=0.001)
    assert row["model_disagreement_ml"] == pytest.approx(0.1)
    assert row["overlap_ml"] == pytest.approx(0.09)
    assert row["model_disagreement_in_reader_disagreement"] == pytest.approx(0.9)
    assert row["reader_disagreement_in_model_disagreement"] == pytest.approx(90 / readers.sum())
