"""BatchStream: windows of several requests share batches of exactly `batch`, and each request gets back
the same scores as alone through predict_heads."""

from __future__ import annotations

import math

import numpy as np
from engine_nets import PerDateConfig, PerDateNet
from hypothesis import given, settings
from hypothesis import strategies as st

from mapgen.pipeline.inference import BatchStream, predict_heads


class CountingNet(PerDateNet):
    """The test network, counting its forward passes and the batch sizes it saw."""

    def __init__(self) -> None:
        super().__init__(PerDateConfig(scale=2, ramp=0.5, context=0.25))
        self.eval()
        self.batches: list[int] = []

    def forward_heads(self, inputs, meta=None):
        self.batches.append(len(next(iter(inputs.values()))))
        return super().forward_heads(inputs, meta)


ACTIVATIONS = {"p": "sigmoid", "cls": "softmax"}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 23), min_size=1, max_size=5), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_requests_share_batches_and_get_their_own_scores(sizes, batch, seed):
    rng = np.random.default_rng(seed)
    net = CountingNet()
    requests = [(f"r{i}", {"image": rng.standard_normal((n, 3, 4, 4)).astype(np.float32)})
                for i, n in enumerate(sizes)]
    stream = BatchStream(net, batch, activations=ACTIVATIONS)
    returned = []
    for key, windows in requests:
        returned += stream.add(key, windows)
    returned += stream.finish()
    # every request once, in order, and only the stream's last batch padded
    assert [key for key, _ in returned] == [key for key, _ in requests]
    assert net.batches == [batch] * math.ceil(sum(sizes) / batch)
    for (_, scores), (_, windows) in zip(returned, requests, strict=True):
        alone = predict_heads(net, windows, batch, activations=ACTIVATIONS)
        assert scores.keys() == alone.keys()
        for head in scores:
            np.testing.assert_array_equal(scores[head], alone[head])


def test_a_request_is_returned_as_soon_as_its_windows_have_run():
    net = CountingNet()
    stream = BatchStream(net, 4, activations={"p": "sigmoid"})
    x = np.zeros((6, 3, 4, 4), np.float32)
    assert stream.add("a", {"image": x[:3]}) == []  # 3 of 4: nothing run yet
    done = stream.add("b", {"image": x})  # 9 queued: two batches run, "a" is complete, 1 of "b" waits
    assert [key for key, _ in done] == ["a"] and net.batches == [4, 4]
    assert [key for key, _ in stream.finish()] == ["b"] and net.batches == [4, 4, 4]
