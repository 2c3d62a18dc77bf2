"""Container images without a public registry: make them, push them, seed base images."""

from kubeloop.images.registry import ImageConfig, push_rootfs
from kubeloop.images.seed import SEED_RECIPES, seed_image

__all__ = ["SEED_RECIPES", "ImageConfig", "push_rootfs", "seed_image"]
