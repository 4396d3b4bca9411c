"""Batched tensor augmentations for SSL views: per-sample randomness, one kernel call per batch.

Everything works on float images ``[B, C, H, W]`` in ``[0, 1]`` on any device and returns the same
shape and range. Random parameters are drawn on the CPU (optionally from a seeded
``torch.Generator``) and moved to the images' device, so a seeded pipeline gives the same views on
CPU and GPU. Crops use ``affine_grid`` + ``grid_sample`` (one batched resample instead of a Python
loop over samples).

* :class:`SimSiamViews` — the two-view pipeline of SimSiam (Chen & He 2021, §4 / Appendix: random
  resized crop scale (0.2, 1), horizontal flip, colour jitter p=0.8, grayscale p=0.2, blur),
  adapted to small images: brightness/contrast jitter for every image, saturation jitter and random
  grayscale only for RGB, blur optional (off by default: at 28–32 px it erases most detail).
* :class:`MAEView` — MAE's single view (He et al. 2022: random resized crop + flip only), with a
  lighter crop for small images.
* :class:`FeatureSkew` — a fixed, peer-specific transformation (brightness, contrast, blur, flip)
  for the paper's "feature skew" partition (docs/paper.md §1): the data are split uniformly and every
  peer sees its share through its own fixed distortion. The trainer applies it to the peer's
  batches before the objective builds its views.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    """``n`` samples of U(low, high) on the CPU."""
    return torch.rand(n, generator=generator) * (high - low) + low


def _bernoulli(n: int, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """``n`` booleans, each True with probability ``p``."""
    return torch.rand(n, generator=generator) < p


def random_resized_crop(
    images: torch.Tensor,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-sample random resized crop (area fraction in ``scale``, aspect in ``ratio``) + h-flip.

    Same distribution as torchvision's ``RandomResizedCrop`` except that a crop whose side would
    exceed the image is clipped to it (instead of torchvision's rejection loop). Output size =
    input size; bilinear resampling.
    """
    b = images.shape[0]
    area = _uniform(b, *scale, generator)
    log_r = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), generator)
    aspect = torch.exp(log_r)
    width = torch.sqrt(area * aspect).clamp(max=1.0)  # fraction of the image width
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    # Crop centre in normalised coordinates [-1, 1], chosen so the crop stays inside the image.
    cx = (torch.rand(b, generator=generator) * 2 - 1) * (1 - width)
    cy = (torch.rand(b, generator=generator) * 2 - 1) * (1 - height)
    flip = torch.where(_bernoulli(b, flip_p, generator), -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = height
    theta[:, 1, 2] = cy
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _per_sample(values: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Reshape a ``[B]`` CPU tensor to ``[B, 1, 1, 1]`` on the images' device and dtype."""
    return values.to(device=images.device, dtype=images.dtype).view(-1, 1, 1, 1)


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of RGB images, ``[B, 1, H, W]`` (identity for single-channel images)."""
    if images.shape[1] != 3:
        return images.mean(dim=1, keepdim=True)
    weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Multiply every pixel of sample ``i`` by ``factor[i]`` (torchvision semantics)."""
    return images * _per_sample(factor, images)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend sample ``i`` with its mean grey level: ``mean + factor[i] * (x - mean)``."""
    mean = _grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return mean + _per_sample(factor, images) * (images - mean)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend RGB sample ``i`` with its own grayscale version (factor 0 = grey, 1 = unchanged)."""
    grey = _grayscale(images)
    return grey + _per_sample(factor, images) * (images - grey)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample ``sigma`` (``sigma[i] <= 0`` leaves sample ``i``).

    One grouped convolution per axis over ``B*C`` channels, reflect padding.
    """
    b, c, h, w = images.shape
    half = kernel_size // 2
    offsets = torch.arange(-half, half + 1, dtype=torch.float32)
    safe_sigma = sigma.clamp(min=1e-3).view(-1, 1)
    kernel = torch.exp(-(offsets.view(1, -1) ** 2) / (2 * safe_sigma**2))
    identity = (offsets == 0).float().view(1, -1).expand(b, -1)
    kernel = torch.where((sigma > 0).view(-1, 1), kernel, identity)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel.repeat_interleave(c, dim=0).to(device=images.device, dtype=images.dtype)
    x = images.reshape(1, b * c, h, w)
    x = F.conv2d(F.pad(x, (half, half, 0, 0), mode="reflect"), kernel.view(b * c, 1, 1, -1), groups=b * c)
    x = F.conv2d(F.pad(x, (0, 0, half, half), mode="reflect"), kernel.view(b * c, 1, -1, 1), groups=b * c)
    return x.reshape(b, c, h, w)


def _where_sample(mask: torch.Tensor, changed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Per-sample select: ``changed[i]`` where ``mask[i]`` else ``original[i]``."""
    return torch.where(mask.to(changed.device).view(-1, 1, 1, 1), changed, original)


@dataclass
class SimSiamViews:
    """Two independently augmented views of a batch (SimSiam, Chen & He 2021).

    Defaults follow the paper's recipe scaled to 28–32 px images; ``blur_p`` is 0 because at this
    resolution a blur removes most of the signal (SimSiam's CIFAR recipe has no blur either).
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)  # area fraction of the random resized crop
    flip_p: float = 0.5  # horizontal flip probability
    jitter_p: float = 0.8  # probability of applying the colour jitter to a sample
    brightness: float = 0.4  # brightness factor drawn from U(1 - b, 1 + b)
    contrast: float = 0.4  # contrast factor drawn from U(1 - c, 1 + c)
    saturation: float = 0.4  # RGB only: saturation factor from U(1 - s, 1 + s)
    grayscale_p: float = 0.2  # RGB only: probability of converting a view to grey
    blur_p: float = 0.0  # probability of a Gaussian blur
    blur_sigma: tuple[float, float] = (0.1, 1.0)  # blur sigma range in pixels

    def view(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One augmented view of ``images``."""
        b = images.shape[0]
        x = random_resized_crop(images, self.crop_scale, flip_p=self.flip_p, generator=generator)
        jitter = _bernoulli(b, self.jitter_p, generator)
        jittered = adjust_brightness(x, _uniform(b, 1 - self.brightness, 1 + self.brightness, generator))
        jittered = adjust_contrast(jittered, _uniform(b, 1 - self.contrast, 1 + self.contrast, generator))
        if images.shape[1] == 3:
            sat = _uniform(b, 1 - self.saturation, 1 + self.saturation, generator)
            jittered = adjust_saturation(jittered, sat)
        x = _where_sample(jitter, jittered, x)
        if images.shape[1] == 3 and self.grayscale_p > 0:
            grey = _grayscale(x).expand_as(x)
            x = _where_sample(_bernoulli(b, self.grayscale_p, generator), grey, x)
        if self.blur_p > 0:
            sigma = _uniform(b, *self.blur_sigma, generator)
            sigma = torch.where(_bernoulli(b, self.blur_p, generator), sigma, torch.zeros_like(sigma))
            x = gaussian_blur(x, sigma, kernel_size=_blur_kernel_size(self.blur_sigma[1], x.shape[-1]))
        return x.clamp(0.0, 1.0)

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Two views, each with its own random parameters per sample."""
        return self.view(images, generator), self.view(images, generator)


@dataclass
class MAEView:
    """MAE's single view: random resized crop + horizontal flip (He et al. 2022, §4 "we do not use
    color jittering"). The crop is lighter than MAE's ImageNet (0.2, 1) because a 28 px image has
    little to spare."""

    crop_scale: tuple[float, float] = (0.5, 1.0)  # area fraction of the random resized crop
    flip_p: float = 0.5  # horizontal flip probability

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One augmented view of ``images``."""
        x = random_resized_crop(images, self.crop_scale, flip_p=self.flip_p, generator=generator)
        return x.clamp(0.0, 1.0)


def _blur_kernel_size(max_sigma: float, side: int) -> int:
    """Odd kernel covering ±2σ, no wider than the image allows for reflect padding."""
    size = 2 * math.ceil(2 * max_sigma) + 1
    largest = side - 1 if side % 2 == 0 else side
    return max(1, min(size, largest))


@dataclass(frozen=True)
class FeatureSkew:
    """A fixed per-peer distortion: the "feature skew" non-IID setting of the paper (docs/paper.md §1:
    uniform split + a client-specific augmentation with brightness jitter, blur and flip).

    Every parameter is drawn once from ``(seed, peer_index)``; the same peer always applies exactly
    the same transformation, different peers get different ones.
    """

    brightness: float  # multiplicative brightness factor
    contrast: float  # contrast factor around the image's mean grey level
    blur_sigma: float  # Gaussian blur sigma in pixels (0 = no blur)
    flip: bool  # mirror every image horizontally

    BRIGHTNESS_RANGE = (0.6, 1.4)  # peer brightness factor drawn uniformly from this range
    CONTRAST_RANGE = (0.6, 1.4)  # peer contrast factor drawn uniformly from this range
    BLUR_P = 0.5  # probability that a peer blurs its images
    BLUR_RANGE = (0.5, 1.0)  # sigma range of a blurring peer

    @classmethod
    def for_peer(cls, peer_index: int, seed: int) -> FeatureSkew:
        """The deterministic distortion of peer ``peer_index`` in a swarm seeded with ``seed``."""
        if peer_index < 0:
            raise ValueError(f"peer_index must be >= 0, got {peer_index}")
        # A fixed arithmetic mix (not hash(): string hashing is salted per process).
        gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(peer_index) * 7_919 + 17) % (2**63))
        u = torch.rand(5, generator=gen).tolist()
        blur = u[2] < cls.BLUR_P
        return cls(
            brightness=cls.BRIGHTNESS_RANGE[0] + u[0] * (cls.BRIGHTNESS_RANGE[1] - cls.BRIGHTNESS_RANGE[0]),
            contrast=cls.CONTRAST_RANGE[0] + u[1] * (cls.CONTRAST_RANGE[1] - cls.CONTRAST_RANGE[0]),
            blur_sigma=(cls.BLUR_RANGE[0] + u[3] * (cls.BLUR_RANGE[1] - cls.BLUR_RANGE[0])) if blur else 0.0,
            flip=u[4] < 0.5,
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Apply this peer's distortion to a batch ``[B, C, H, W]`` in [0, 1]."""
        b = images.shape[0]
        x = adjust_brightness(images, torch.full((b,), self.brightness))
        x = adjust_contrast(x, torch.full((b,), self.contrast))
        if self.blur_sigma > 0:
            size = _blur_kernel_size(self.blur_sigma, x.shape[-1])
            x = gaussian_blur(x, torch.full((b,), self.blur_sigma), kernel_size=size)
        if self.flip:
            x = x.flip(-1)
        return x.clamp(0.0, 1.0)
