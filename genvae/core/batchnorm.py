"""BatchNorm statistics from real data ("precise BN").

During introspective training the encoder sees fakes twice per step (Alg. 2 lines 10 and 22), so
BatchNorm's running statistics — used in eval mode — describe a mixture of real and generated
images, and an eval-mode model reconstructs badly. Before a model is exported or drawn, the
trainer recomputes the running statistics as plain averages over real batches: the encoder on
real images, the decoder on their posterior samples and on prior samples (what it decodes when
reconstructing and when sampling). Training itself uses batch statistics and is unaffected.
"""

from __future__ import annotations

import torch
from torch import nn

from genvae.core.interfaces import DataSource, Models, num_classes_of
from genvae.core.losses import reparameterize


def _running_bns(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def recalibrate_batchnorm(models: Models, data: DataSource, batch_size: int, batches: int = 32, seed: int = 0) -> int:
    """Recompute every running-statistics BatchNorm of the encoder and decoder from ``batches``
    real batches (cumulative average). Returns the number of layers recalibrated."""
    layers = _running_bns(models.encoder) + _running_bns(models.decoder)
    if not layers:
        return 0
    device = next(models.encoder.parameters()).device
    was_training = {m: m.training for m in (models.encoder, models.decoder)}
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts equally
    generator = torch.Generator(device=device).manual_seed(seed)
    noise = lambda t: torch.randn(t.shape, generator=generator, device=t.device, dtype=t.dtype)  # noqa: E731
    stream = iter(data.train_stream(batch_size, seed=seed + 424_242))
    models.encoder.train()
    models.decoder.train()
    with torch.no_grad():
        for _ in range(batches):
            batch = next(stream)
            x = batch.x.to(device)
            y = None if batch.y is None or not num_classes_of(models.encoder) else batch.y.to(device)
            mu, logvar = models.encode(x, y)
            models.decode(reparameterize(mu, logvar, noise), y)
            models.decode(noise(mu), y)
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    for module, training in was_training.items():
        module.train(training)
    return len(layers)
