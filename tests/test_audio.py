import pytest
import torch

from demixbench.audio import STFT, STFTConfig


@pytest.mark.parametrize("n_fft,hop", [(1024, 256), (4096, 1024), (512, 128)])
@pytest.mark.parametrize("length", [44100, 44100 + 17])
def test_stft_istft_round_trip(n_fft, hop, length):
    audio = torch.randn(2, 2, length, dtype=torch.float64)
    transform = STFT(STFTConfig(n_fft=n_fft, hop_length=hop))
    spec = transform.forward(audio)
    assert spec.shape == (2, 2, n_fft // 2 + 1, transform.n_frames(length))
    back = transform.inverse(spec, length)
    torch.testing.assert_close(back, audio, atol=1e-10, rtol=0)


def test_stft_is_linear_so_oracle_masks_can_sum_to_the_mixture():
    transform = STFT(STFTConfig(n_fft=1024, hop_length=256))
    a, b = torch.randn(2, 5000, dtype=torch.float64), torch.randn(2, 5000, dtype=torch.float64)
    torch.testing.assert_close(transform.forward(a + b), transform.forward(a) + transform.forward(b))


@pytest.mark.parametrize("n_fft,hop", [(1000, 250), (1024, 0), (1024, 2048)])
def test_stft_config_rejects_bad_values(n_fft, hop):
    with pytest.raises(ValueError, match="stft"):
        STFTConfig(n_fft=n_fft, hop_length=hop)
