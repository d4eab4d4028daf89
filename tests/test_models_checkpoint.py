"""Checkpoint I/O: deterministic safetensors + sidecar, verified loading, one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mapgen.models import (
    CheckpointError,
    STSRSeg,
    STSRSegConfig,
    architecture_names,
    init_checkpoint,
    load_checkpoint,
    registry,
    save_checkpoint,
    sidecar_path,
    write_sidecar,
)

SMALL = STSRSegConfig.small()


def refusal(path: Path, **kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.fixture()
def saved(tmp_path) -> tuple[Path, str]:
    path = tmp_path / "small.safetensors"
    return path, init_checkpoint(SMALL, path, seed=5)


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(1)
    model = STSRSeg(SMALL).eval()
    path = tmp_path / "m.safetensors"
    digest = save_checkpoint(model, SMALL, path, meta={"normalisation": {"mean": [0.1] * 4}, "command": "x"})
    loaded, info = load_checkpoint(path, sha256=digest, architecture="stsr-seg")
    assert not loaded.training
    assert info["architecture"] == "stsr-seg" and info["sha256"] == digest and info["command"] == "x"
    assert STSRSegConfig.from_dict(info["config"]) == SMALL
    x = torch.randn(3, 4, 64, 64)
    assert torch.equal(loaded.predict(x), model.predict(x))
    sidecar = json.loads(sidecar_path(path).read_text())
    assert set(sidecar) == {"architecture", "config", "sha256", "normalisation", "command"}


def test_same_weights_same_bytes(tmp_path, saved):
    path, digest = saved
    again = tmp_path / "again.safetensors"
    assert init_checkpoint(SMALL, again, seed=5) == digest
    assert again.read_bytes() == path.read_bytes()
    assert init_checkpoint(SMALL, tmp_path / "other.safetensors", seed=6) != digest
    # Saving the loaded model again reproduces the file byte for byte.
    model, _ = load_checkpoint(path)
    resaved = tmp_path / "resaved.safetensors"
    assert save_checkpoint(model, SMALL, resaved, meta={}) == digest


def test_init_checkpoint_leaves_the_global_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    init_checkpoint(SMALL, tmp_path / "x.safetensors", seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_a_flipped_byte_is_refused(saved):
    path, _ = saved
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert "sha256" in refusal(path) and "sidecar" in refusal(path)


def test_a_wrong_expected_hash_is_refused(saved):
    path, digest = saved
    message = refusal(path, sha256="3c4d" + "0" * 60)
    assert f"sha256 {digest[:12]}… does not match the expected 3c4d" in message


def test_an_architecture_mismatch_is_refused(saved):
    path, _ = saved
    assert "architecture 'stsr-seg' is not 'ugsnet'" in refusal(path, architecture="ugsnet")
    side = sidecar_path(path)
    side.write_text(side.read_text().replace('"stsr-seg"', '"no-such-net"'))
    assert "unknown architecture 'no-such-net'" in refusal(path)


def test_missing_or_broken_sidecar_and_files(saved, tmp_path):
    path, _ = saved
    assert "no such file" in refusal(tmp_path / "absent.safetensors")
    assert "unsupported file type" in refusal(tmp_path / "weights.bin")
    side = sidecar_path(path)
    side.write_text("{not json")
    assert "not valid JSON" in refusal(path)
    side.write_text(json.dumps({"architecture": "stsr-seg"}))
    assert "lacks config, sha256" in refusal(path)
    side.unlink()
    assert "no sidecar small.json" in refusal(path)


def test_missing_and_unexpected_keys_are_summarised(tmp_path):
    model = STSRSeg(SMALL)
    state = model.state_dict()
    del state["edsr.head.bias"]
    state["edsr.extra.weight"] = torch.zeros(1)
    path = tmp_path / "odd.pt"
    torch.save(state, path)
    write_sidecar(path, "stsr-seg", SMALL)
    message = refusal(path)
    assert "missing keys 1 (edsr.head.bias)" in message and "unexpected keys 1 (edsr.extra.weight)" in message


def test_a_config_that_does_not_fit_the_weights_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    init_checkpoint(SMALL, path, seed=0)
    write_sidecar(path, "stsr-seg", STSRSegConfig(**{**SMALL.to_dict(), "sr_features": 2 * SMALL.sr_features}))
    assert "has shape" in refusal(path)
    with pytest.raises(ValueError, match="does not match its config"):
        save_checkpoint(STSRSeg(SMALL), STSRSegConfig.full(), tmp_path / "n.safetensors", meta={})


def test_a_plain_torch_state_dict_loads_with_weights_only(tmp_path):
    torch.manual_seed(2)
    model = STSRSeg(SMALL).eval()
    path = tmp_path / "plain.pt"
    torch.save(model.state_dict(), path)
    digest = write_sidecar(path, "stsr-seg", SMALL, {"source": "torch.save"})
    loaded, info = load_checkpoint(path, sha256=digest)
    assert info["source"] == "torch.save"
    x = torch.randn(2, 4, 32, 32)
    assert torch.equal(loaded.predict(x), model.predict(x))


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_pickled_object_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"edsr.head.weight": torch.zeros(1), "payload": _Payload()}, path)
    write_sidecar(path, "stsr-seg", SMALL)
    message = refusal(path)
    assert "loading it could run code" in message and "refers to print" in message
    assert "weights_only" not in message  # torch's advice to turn the safe loader off is never passed on
    assert "must never run" not in capsys.readouterr().out


class _Settings:
    """An object of a class of the training script, as the authors' checkpoints pickle their settings."""

    def __init__(self) -> None:
        self.lr = 1e-4


@pytest.mark.parametrize("payload, shown", [
    (lambda: {"edsr.head.weight": torch.zeros(1), "settings": _Settings()}, "_Settings"),
    (lambda: {"state_dict": {"edsr.head.weight": torch.zeros(1)}, "hparams": __import__("argparse").Namespace(lr=1)},
     "Namespace"),
    (lambda: _Settings(), "_Settings"),
])
def test_a_pickle_of_other_objects_is_refused_without_torch_advice(tmp_path, payload, shown):
    path = tmp_path / "foreign.ckpt"
    torch.save(payload(), path)
    write_sidecar(path, "stsr-seg", SMALL)
    message = refusal(path)
    assert "refused, since loading it could run code" in message and "objects other than tensors" in message
    assert shown in message and "weights_only" not in message and "trust" not in message


def test_a_corrupt_pickle_is_refused_as_unreadable(tmp_path):
    path = tmp_path / "cut.pt"
    torch.save({"edsr.head.weight": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:300])
    write_sidecar(path, "stsr-seg", SMALL)
    message = refusal(path)
    assert "not a readable torch checkpoint" in message and "weights_only" not in message


def test_an_authors_checkpoint_is_converted_on_load(tmp_path):
    spec = Path(__file__).resolve().parent / "data" / "stsr-seg-inference-state-dict.json"
    shapes = json.loads(spec.read_text())
    # One stored value per tensor (broadcast): the file stays small although the network is full size.
    state = {k: torch.full((), 0.5).expand(s) for k, s in shapes.items() if not k.endswith("tracked")}
    state.update({k: torch.tensor(1) for k in shapes if k.endswith("tracked")})
    path = tmp_path / "authors-model-best.ckpt"
    torch.save(state, path)
    write_sidecar(path, "stsr-seg", STSRSegConfig.full(), {"source": "zpl99/STSR-Seg"})
    model, info = load_checkpoint(path, architecture="stsr-seg")
    assert info["absent_optional_keys"] == [
        "temporal.fc1.bias",
        "temporal.fc1.weight",
        "temporal.fc2.bias",
        "temporal.fc2.weight",
    ]
    assert torch.equal(model.state_dict()["unet.head.conv.weight"], torch.full((4, 128, 1, 1), 0.5))


def test_registry_knows_stsr_seg_and_reexports_io(tmp_path):
    assert "stsr-seg" in architecture_names()
    assert registry.get_architecture("stsr-seg").model_cls is STSRSeg
    assert registry.load_checkpoint is load_checkpoint
    with pytest.raises(ValueError, match="unknown architecture 'fusu-net'"):
        registry.get_architecture("fusu-net")
    path = tmp_path / "unused.safetensors"
    with pytest.raises(ValueError, match="meta may not set"):
        save_checkpoint(STSRSeg(SMALL), SMALL, path, meta={"sha256": "x"})
    assert not path.exists()
