"""Model benchmark: full training steps (forward, backward, Adam) of the image and sequence
workloads the kernels exist for, batch 64 on 28×28 inputs (the transformer: batch 16, length
256), side by side with the same model in PyTorch CPU when it is installed.

    python benchmarks/bench_models.py [--only dcgan,pixelcnn] [--rounds 3] [--threads 2]

Each model is written once, against the PyTorch-compatible API, and built twice: with
``lib = nanogen`` and with ``lib = torch``.  The only asymmetry is the PixelCNN's masked
convolution: nanogen has ``nn.MaskedConv2d`` (a kernel that skips the taps the mask zeroes),
PyTorch gets the usual ``conv2d(x, weight * mask)`` (a dense kernel over the masked weight).

Each library runs in processes of its own, alternating (nanogen, PyTorch, nanogen, ...), and
each figure is the best over the rounds of a best-of-3 median: the two libraries' thread pools
(OpenBLAS, numba, PyTorch's OpenMP) spin-wait after their work and would slow each other down
in one process.  The ratio column is nanogen's step time over PyTorch's (lower is better).
"""
import argparse
import math

import numpy as np

import nanogen as ng
from common import comparison_arguments, report, time_in_processes, time_in_this_process

BATCH = 64


def _images(lib, channels=1, batch=BATCH, side=28, seed=0):
    rng = np.random.default_rng(seed)
    return lib.tensor(rng.uniform(-1, 1, (batch, channels, side, side)).astype(np.float32))


def _adam_step(opt, loss):
    opt.zero_grad()
    loss.backward()
    opt.step()


# ---------------------------------------------------------------- DCGAN (Radford et al. 2016)
def dcgan_generator(nn, latent=100):
    return nn.Sequential(
        nn.ConvTranspose2d(latent, 128, 7, 1, 0, bias=False), nn.BatchNorm2d(128), nn.ReLU(),
        nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh())


def dcgan_discriminator(nn, batch_norm=True):
    norm = [nn.BatchNorm2d(128)] if batch_norm else []
    return nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, 2, 1, bias=not batch_norm), *norm, nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(128 * 7 * 7, 1))


def dcgan_step(lib, latent=100):
    """One discriminator step (real vs detached fakes) and one non-saturating generator step."""
    F = lib.nn.functional
    G, D = dcgan_generator(lib.nn, latent), dcgan_discriminator(lib.nn)
    og = lib.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    od = lib.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = _images(lib)
    z = lib.tensor(np.random.default_rng(1).standard_normal((BATCH, latent, 1, 1))
                   .astype(np.float32))
    ones, zeros = lib.ones(BATCH, 1), lib.zeros(BATCH, 1)

    def step():
        fake = G(z)
        loss_d = (F.binary_cross_entropy_with_logits(D(real), ones)
                  + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros))
        _adam_step(od, loss_d)
        _adam_step(og, F.binary_cross_entropy_with_logits(D(fake), ones))
    return step


# ---------------------------------------------------------------- WGAN-GP (Gulrajani et al. 2017)
def wgan_gp_critic_step(lib, latent=100, penalty_weight=10.0):
    """One critic step: W-distance estimate plus the gradient penalty on random interpolates,
    which needs the gradient of the critic's input gradient (double backward through convs)."""
    G, D = dcgan_generator(lib.nn, latent), dcgan_discriminator(lib.nn, batch_norm=False)
    opt = lib.optim.Adam(D.parameters(), lr=1e-4, betas=(0.0, 0.9))
    real = _images(lib)
    rng = np.random.default_rng(1)
    z = lib.tensor(rng.standard_normal((BATCH, latent, 1, 1)).astype(np.float32))
    alpha = lib.tensor(rng.uniform(size=(BATCH, 1, 1, 1)).astype(np.float32))

    def step():
        with lib.no_grad():
            fake = G(z)
        mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        (g,) = lib.autograd.grad(D(mixed).sum(), mixed, create_graph=True)
        penalty = ((g.reshape(BATCH, -1).pow(2).sum(1) + 1e-12).sqrt() - 1).pow(2).mean()
        loss = D(fake).mean() - D(real).mean() + penalty_weight * penalty
        _adam_step(opt, loss)
    return step


# ---------------------------------------------------------------- convolutional VAE
def conv_vae_step(lib, latent=16):
    """ELBO step of a conv VAE: Bernoulli decoder (logits), Gaussian q(z|x), analytic KL."""
    nn, F = lib.nn, lib.nn.functional
    encoder = nn.Sequential(
        nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 2 * latent))
    decoder = nn.Sequential(
        nn.Linear(latent, 64 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
        nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1))
    opt = lib.optim.Adam(list(encoder.parameters()) + list(decoder.parameters()), lr=1e-3)
    x = (_images(lib) > 0).float()
    eps = lib.tensor(np.random.default_rng(1).standard_normal((BATCH, latent)).astype(np.float32))

    def step():
        h = encoder(x)
        mu, logvar = h[:, :latent], h[:, latent:]
        z = mu + (0.5 * logvar).exp() * eps
        rec = F.binary_cross_entropy_with_logits(decoder(z), x, reduction="sum")
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum()
        _adam_step(opt, (rec + kl) / BATCH)
    return step


# ---------------------------------------------------------------- PixelCNN (van den Oord et al.)
def torch_masked_conv2d(torch):
    """PyTorch has no masked convolution: the usual dense conv over ``weight * mask``."""
    class MaskedConv2d(torch.nn.Conv2d):
        def __init__(self, cin, cout, k, mask_type="A"):
            super().__init__(cin, cout, k, padding=k // 2)
            mask = np.ones((cout, cin, k, k), np.float32)
            mask[:, :, k // 2, k // 2 + (mask_type == "B"):] = 0
            mask[:, :, k // 2 + 1:] = 0
            self.register_buffer("mask", torch.tensor(mask))

        def forward(self, x):
            return torch.nn.functional.conv2d(x, self.weight * self.mask, self.bias,
                                              padding=self.padding)
    return MaskedConv2d


def pixelcnn_step(lib, channels=64, layers=7):
    """Bernoulli PixelCNN: mask-A 7×7, then seven 3×3 mask-B layers, a 1×1 head."""
    nn, F = lib.nn, lib.nn.functional
    Masked = nn.MaskedConv2d if lib is ng else torch_masked_conv2d(lib)
    body = [Masked(1, channels, 7, mask_type="A"), nn.ReLU()]
    for _ in range(layers):
        body += [Masked(channels, channels, 3, mask_type="B"), nn.ReLU()]
    model = nn.Sequential(*body, nn.Conv2d(channels, 1, 1))
    opt = lib.optim.Adam(model.parameters(), lr=1e-3)
    x = (_images(lib) > 0).float()

    def step():
        _adam_step(opt, F.binary_cross_entropy_with_logits(model(x), x, reduction="sum") / BATCH)
    return step


# ---------------------------------------------------------------- DDPM U-Net (Ho et al. 2020)
def unet(lib, base=32, time_dim=128, groups=8):
    """A small DDPM ε-network for 28×28: ResBlocks (GroupNorm, SiLU, conv) whose second norm
    takes a scale and shift from the time embedding, self-attention at 7×7, skip connections."""
    nn, F = lib.nn, lib.nn.functional

    def adaptive_group_norm(h, scale, shift):
        """GroupNorm(h) (1 + scale) + shift, scale and shift (N, C): nanogen's fused op, and
        in PyTorch, which has none, its group_norm and the affine after it."""
        if hasattr(F, "adaptive_group_norm"):
            return F.adaptive_group_norm(h, groups, 1 + scale, shift)
        return F.group_norm(h, groups) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]

    class ResBlock(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.norm1, self.conv1 = nn.GroupNorm(groups, cin), nn.Conv2d(cin, cout, 3, padding=1)
            self.time = nn.Linear(time_dim, 2 * cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

        def forward(self, x, t):
            h = self.conv1(F.silu(self.norm1(x)))
            scale, shift = self.time(t).chunk(2, dim=1)
            h = self.conv2(F.silu(adaptive_group_norm(h, scale, shift)))
            return h + self.skip(x)

    class Attention(nn.Module):
        def __init__(self, channels, heads=4):
            super().__init__()
            self.norm, self.heads = nn.GroupNorm(groups, channels), heads
            self.qkv, self.out = nn.Conv2d(channels, 3 * channels, 1), nn.Conv2d(channels, channels, 1)

        def forward(self, x):
            n, c, h, w = x.shape
            qkv = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w)
            q, k, v = (qkv[:, i].transpose(-1, -2) for i in range(3))
            a = F.scaled_dot_product_attention(q, k, v)          # (n, heads, h*w, c/heads)
            return x + self.out(a.transpose(-1, -2).reshape(n, c, h, w))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            c1, c2, c3 = base, 2 * base, 4 * base
            self.time = nn.Sequential(nn.Linear(base, time_dim), nn.SiLU(),
                                      nn.Linear(time_dim, time_dim))
            self.stem = nn.Conv2d(1, c1, 3, padding=1)
            self.down1, self.pool1 = ResBlock(c1, c1), nn.Conv2d(c1, c1, 3, 2, 1)
            self.down2, self.pool2 = ResBlock(c1, c2), nn.Conv2d(c2, c2, 3, 2, 1)
            self.mid1, self.attn, self.mid2 = ResBlock(c2, c3), Attention(c3), ResBlock(c3, c3)
            self.up2 = ResBlock(c3 + c2, c2)
            self.up1 = ResBlock(c2 + c1, c1)
            self.head = nn.Sequential(nn.GroupNorm(groups, c1), nn.SiLU(), nn.Conv2d(c1, 1, 3, padding=1))

        def embed(self, t):
            half = base // 2
            freqs = lib.exp(-math.log(10000.0) * lib.arange(half).float() / half)
            angles = t.float()[:, None] * freqs[None]
            return self.time(lib.cat([angles.sin(), angles.cos()], dim=1))

        def forward(self, x, t):
            t = self.embed(t)
            h1 = self.down1(self.stem(x), t)                        # 28×28
            h2 = self.down2(self.pool1(h1), t)                      # 14×14
            h = self.mid2(self.attn(self.mid1(self.pool2(h2), t)), t)    # 7×7
            h = self.up2(lib.cat([F.interpolate(h, scale_factor=2, mode="nearest"), h2], 1), t)
            h = self.up1(lib.cat([F.interpolate(h, scale_factor=2, mode="nearest"), h1], 1), t)
            return self.head(h)

    return UNet()


def ddpm_step(lib, steps=1000):
    """L_simple: ‖ε − ε_θ(√ᾱ_t x₀ + √(1−ᾱ_t) ε, t)‖² at random t (linear β schedule)."""
    F = lib.nn.functional
    model = unet(lib)
    opt = lib.optim.Adam(model.parameters(), lr=2e-4)
    rng = np.random.default_rng(1)
    x0 = _images(lib)
    alpha_bar = np.cumprod(1 - np.linspace(1e-4, 0.02, steps))
    t = rng.integers(0, steps, BATCH)
    a = alpha_bar[t].astype(np.float32).reshape(BATCH, 1, 1, 1)
    eps = lib.tensor(rng.standard_normal((BATCH, 1, 28, 28)).astype(np.float32))
    xt = lib.tensor(np.sqrt(a)) * x0 + lib.tensor(np.sqrt(1 - a)) * eps
    t = lib.tensor(t)

    def step():
        _adam_step(opt, F.mse_loss(model(xt, t), eps))
    return step


# ---------------------------------------------------------------- causal transformer
def transformer(lib, vocab=256, length=256, d=128, heads=4, layers=2):
    """A GPT-style decoder: pre-norm blocks of causal self-attention and a 4× GELU MLP."""
    nn, F = lib.nn, lib.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.qkv, self.proj = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.ln2 = nn.LayerNorm(d)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

        def forward(self, x):
            n, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).reshape(n, t, 3, heads, d // heads).permute(
                2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(a.transpose(1, 2).reshape(n, t, d))
            return x + self.mlp(self.ln2(x))

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(length, d)
            self.blocks = nn.Sequential(*[Block() for _ in range(layers)])
            self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)

        def forward(self, idx):
            x = self.tok(idx) + self.pos(lib.arange(idx.shape[1]))[None]
            return self.head(self.ln(self.blocks(x)))

    return Transformer()


def transformer_step(lib, batch=16, length=256, vocab=256):
    F = lib.nn.functional
    model = transformer(lib, vocab, length)
    opt = lib.optim.AdamW(model.parameters(), lr=3e-4)
    tokens = lib.tensor(np.random.default_rng(1).integers(0, vocab, (batch, length + 1)))
    x, y = tokens[:, :-1], tokens[:, 1:]

    def step():
        logits = model(x)
        _adam_step(opt, F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1)))
    return step


WORKLOADS = {
    "dcgan": ("DCGAN G+D step", dcgan_step),
    "wgan_gp": ("WGAN-GP critic step", wgan_gp_critic_step),
    "conv_vae": ("conv VAE step", conv_vae_step),
    "pixelcnn": ("PixelCNN step (7×7 A + 7×3×3 B)", pixelcnn_step),
    "ddpm_unet": ("DDPM U-Net step", ddpm_step),
    "transformer": ("causal transformer step", transformer_step),
}


def main():
    parser = comparison_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]),
                                  WORKLOADS, "alternating rounds of (nanogen process, PyTorch "
                                  "process)")
    args = parser.parse_args()
    if args.worker:
        print(time_in_this_process(args.worker, WORKLOADS[args.only][1], args.repeats,
                                   args.threads, args.device))
        return
    rows = []
    for key in args.only.split(","):
        name = WORKLOADS[key][0]
        ours, theirs = time_in_processes(__file__, args.rounds, args.repeats, args.threads,
                                         "--only", key, device=args.device)
        rows.append((name, ours, theirs))
        print(f"  {name}: {ours * 1e3:.1f} ms" + (f" vs {theirs * 1e3:.1f} ms"
                                                    if theirs else ""), flush=True)
    report(rows)


if __name__ == "__main__":
    main()
