"""The shared argument check behind every model's "must be a positive int" error."""
import numpy as np
import pytest

from nanogen.models.autoencoders.vae import VAE
from nanogen.models.diffusion.unet import UNet
from nanogen.utils import positive_int


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.uint8(2)])
def test_positive_int_accepts_python_and_numpy_ints(value):
    out = positive_int(value, "n")
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [0, -2, 2.0, "3", None, True, np.float32(1)])
def test_positive_int_names_the_argument_and_the_value(value):
    with pytest.raises(ValueError, match=r"^steps must be a positive int, got " +
                       repr(value).replace("(", r"\(").replace(")", r"\)")):
        positive_int(value, "steps")


@pytest.mark.parametrize("build", [lambda: VAE(latent_dim=True), lambda: VAE(latent_dim=0),
                                   lambda: UNet(num_res_blocks=2.5)])
def test_models_refuse_sizes_that_are_not_positive_ints(build):
    with pytest.raises(ValueError, match="must be a positive int"):
        build()
