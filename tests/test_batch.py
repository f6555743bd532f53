"""data/samples.py: collate into a FrameBatch, bad-sample markers, and the skip path of EpochIndexed."""
from __future__ import annotations

import torch

from data.frames import BadSampleError
from data.samples import BadSample, FrameBatch, FrameSample, collate
from depth.train.sampling import EpochIndexed


def _sample(i: int, stereo: bool = False) -> FrameSample:
    return FrameSample(color=torch.full((3, 3, 4, 6), float(i)), color_aug=torch.full((3, 3, 4, 6), i + 0.5),
                       K=torch.eye(3) * (i + 1), index=i, T_stereo=torch.eye(4) if stereo else None)


def test_a_sample_reads_its_fields_by_name_as_well():
    s = _sample(2, stereo=True)
    assert s["K"] is s.K and s["index"] == 2 and list(s.keys()) == ["color", "color_aug", "K", "index", "T_stereo"]
    assert _sample(1).keys() == {"color", "color_aug", "K", "index"}
    try:
        _sample(1)["T_stereo"]
    except KeyError:
        pass
    else:
        raise AssertionError("a sample without stereo has no T_stereo key")


def test_collate_stacks_samples_into_a_typed_batch():
    b = collate([_sample(0), None, _sample(1)])
    assert isinstance(b, FrameBatch) and len(b) == 2 and b.T_stereo is None and b.bad_samples == []
    assert b.color.shape == (2, 3, 3, 4, 6) and b.color_aug[1, 0, 0, 0, 0] == 1.5
    assert b.K.shape == (2, 3, 3) and b.index.tolist() == [0, 1]
    s = collate([_sample(0, stereo=True), _sample(1, stereo=True)])
    assert s.T_stereo.shape == (2, 4, 4)
    moved = s.to("cpu")
    assert torch.equal(moved.color, s.color) and moved.bad_samples == s.bad_samples


def test_head_keeps_the_first_samples_of_every_field():
    b = collate([_sample(0, stereo=True), _sample(1, stereo=True), _sample(2, stereo=True)])
    b.jitter = torch.tensor([[1.1, 1.0, 1.0, 0.0], [1.0, 0.9, 1.0, 0.0], [1.0, 1.0, 1.2, 0.1]])
    b.jitter_order = torch.arange(4).repeat(3, 1)
    one = b.head(1)
    assert len(one) == 1 and one.index.tolist() == [0] and one.T_stereo.shape == (1, 4, 4)
    assert torch.equal(one.color, b.color[:1]) and torch.equal(one.jitter, b.jitter[:1])
    # the jittered first sample alone is the full batch's first sample
    torch.testing.assert_close(one.network_images("cpu")[1], b.network_images("cpu")[1][:1])


def test_bad_samples_are_dropped_and_listed():
    b = collate([_sample(0), BadSample("sample 3: corrupt x.png"), _sample(2)])
    assert len(b) == 2 and b.index.tolist() == [0, 2] and b.bad_samples == ["sample 3: corrupt x.png"]
    empty = collate([BadSample("sample 1: missing y.png")])
    assert len(empty) == 0 and empty.bad_samples == ["sample 1: missing y.png"]


class _Flaky:
    def __len__(self):
        return 3

    def __getitem__(self, i):
        if i == 1:
            raise BadSampleError("corrupt or unreadable image: f.png")
        return _sample(i)


def test_epoch_indexed_marks_only_the_errors_it_was_told_to_skip():
    view = EpochIndexed(_Flaky(), (BadSampleError,))
    assert view[(0, 1)] == BadSample("sample 1: corrupt or unreadable image: f.png")
    assert collate([view[(0, i)] for i in range(3)]).bad_samples == ["sample 1: corrupt or unreadable image: f.png"]
    try:
        EpochIndexed(_Flaky())[(0, 1)]
    except BadSampleError as e:
        assert "f.png" in str(e)
    else:
        raise AssertionError("an error not listed in skip_errors must propagate")
