import pytest
import torch

from pipeline.models.vae import (
    UPSAMPLE_MODES,
    ClassVAEs,
    ConditionalVAE,
    kl_divergence,
    kl_weight,
    model_args,
    reconstruction_loss,
)


def _vae(spatial_dims=2, size=16, res_units=0):
    torch.manual_seed(0)
    shape = (1, *[size] * spatial_dims)
    return ConditionalVAE(spatial_dims, shape, 3, latent_size=4, channels=(4, 8), strides=(2, 2), res_units=res_units)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_shapes_and_range(spatial_dims):
    vae = _vae(spatial_dims, size=8)
    x = torch.rand(2, 1, *[8] * spatial_dims)
    recon, mu, logvar, z = vae(x, torch.tensor([0, 2]))
    assert recon.shape == x.shape and mu.shape == logvar.shape == z.shape == (2, 4)
    assert 0 <= recon.min() and recon.max() <= 1


def test_class_conditioning_changes_the_output():
    vae = _vae().eval()
    z = torch.randn(1, 4)
    assert not torch.allclose(vae.decode_forward(z, torch.tensor([0])), vae.decode_forward(z, torch.tensor([1])))


def _per_class(spatial_dims=2, size=16, n=3):
    torch.manual_seed(0)
    shape = (1, *[size] * spatial_dims)
    models = [ConditionalVAE(spatial_dims, shape, 1, latent_size=4, channels=(4, 8), strides=(2, 2)) for _ in range(n)]
    return ClassVAEs("per_class", models).eval()


def test_per_class_mode_uses_each_class_network():
    vaes = _per_class()
    z = torch.randn(1, 4)
    outputs = [vaes.decode(z, label) for label in range(3)]
    assert not torch.allclose(outputs[0], outputs[1]) and not torch.allclose(outputs[1], outputs[2])
    assert vaes.model_for(2) == (vaes.models[2], 0)
    with pytest.raises(ValueError, match="out of range"):
        vaes.decode(z, 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spatial_dims": 4}, "spatial_dims"),  # only 2D and 3D
        ({"in_shape": (16, 16)}, "in_shape"),  # channel axis missing
        ({"num_classes": 0}, "num_classes"),
        ({"latent_size": 0}, "latent_size"),
        ({"in_shape": (1, 28, 28), "strides": (2, 2, 2), "channels": (4, 8, 8)}, "not divisible"),  # 28 / 8
    ],
)
def test_bad_arguments(kwargs, message):
    args = {
        "spatial_dims": 2,
        "in_shape": (1, 16, 16),
        "num_classes": 2,
        "latent_size": 4,
        "channels": (4, 8),
        "strides": (2, 2),
    }
    with pytest.raises(ValueError, match=message):
        ConditionalVAE(**{**args, **kwargs})


def test_loss_terms():
    mu, logvar = torch.zeros(3, 4), torch.zeros(3, 4)
    assert kl_divergence(mu, logvar).item() == 0  # posterior equal to the prior
    assert kl_divergence(torch.ones(3, 4), logvar).item() == pytest.approx(2.0)  # 0.5 * 4 * 1^2
    x = torch.full((2, 1, 2, 2), 0.5)
    assert reconstruction_loss(x, x, "mse").item() == 0
    assert reconstruction_loss(x + 0.25, x, "l1").item() == pytest.approx(1.0)  # 4 pixels * 0.25
    assert [kl_weight(e, 2.0, 4) for e in range(5)] == [0.5, 1.0, 1.5, 2.0, 2.0]
    assert kl_weight(0, 2.0, 0) == 2.0


def test_free_bits_floor_each_latent_dimension():
    mu, logvar = torch.zeros(3, 4), torch.zeros(3, 4)
    mu[:, 0] = 2.0  # one informative dimension: KL 2 nats; three collapsed ones: 0
    assert kl_divergence(mu, logvar).item() == pytest.approx(2.0)
    assert kl_divergence(mu, logvar, free_bits=0.5).item() == pytest.approx(2.0 + 3 * 0.5)


@pytest.mark.parametrize("upsample", UPSAMPLE_MODES)
@pytest.mark.parametrize("spatial_dims, res_units, strides", [(2, 0, (2, 2)), (2, 1, (1, 2)), (3, 0, (2, 2))])
def test_every_decoder_gives_back_the_input_size(upsample, spatial_dims, res_units, strides):
    shape = (3, *[8] * spatial_dims)
    vae = ConditionalVAE(spatial_dims, shape, 2, 4, (4, 8), strides, res_units=res_units, upsample=upsample)
    recon, *_ = vae(torch.rand(2, *shape), torch.tensor([0, 1]))
    assert recon.shape == (2, *shape) and 0 <= recon.min() and recon.max() <= 1
    assert model_args(vae)["upsample"] == upsample  # a checkpoint rebuilds the same decoder


@pytest.mark.parametrize("upsample", [m for m in UPSAMPLE_MODES if m != "transposed"])
def test_upsampling_draws_no_checkerboard_but_transposed_does(upsample):
    """Decoding a flat feature map, a stride-2 transposed 3x3 convolution overlaps its kernel unevenly: every other
    pixel gets a different sum, the checkerboard seen in synthetic images (Odena et al. 2016). Resize-convolution
    gives back a flat map away from the zero-padded border: each pixel's difference to the mean of its four
    neighbours is a tenth of the transposed decoder's or less (here: zero)."""

    def roughness(mode: str) -> float:
        torch.manual_seed(0)
        vae = ConditionalVAE(2, (1, 32, 32), 1, 4, (8, 8, 8), (2, 2, 2), norm=None, upsample=mode).eval()
        with torch.no_grad():
            out = vae.decode(torch.ones(1, 8, 4, 4))[0, 0, 8:-8, 8:-8]
        neighbours = (out[:-2, 1:-1] + out[2:, 1:-1] + out[1:-1, :-2] + out[1:-1, 2:]) / 4
        return (out[1:-1, 1:-1] - neighbours).abs().mean().item()

    transposed = roughness("transposed")
    assert transposed > 1e-2
    assert roughness(upsample) < 0.1 * transposed


def test_checkpoints_without_upsample_rebuild_the_transposed_decoder():
    from pipeline.generators.vae import VAEGenerator

    old = ConditionalVAE(2, (1, 16, 16), 2, 4, (4, 8), (2, 2), upsample="transposed")
    args = {k: v for k, v in model_args(old).items() if k != "upsample"}  # as written before the argument existed
    rebuilt = VAEGenerator._rebuild({"model_args": args})
    rebuilt.load_state_dict(old.state_dict())
    assert rebuilt.upsample == "transposed"
    assert VAEGenerator._rebuild({"model_args": model_args(_vae())}).upsample == "resize"


def test_an_unknown_upsample_is_refused():
    with pytest.raises(ValueError, match="upsample must be one of"):
        ConditionalVAE(2, (1, 16, 16), 2, 4, (4, 8), (2, 2), upsample="deconv")
