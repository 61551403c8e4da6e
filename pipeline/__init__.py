"""medaug: reproducible VAE-based synthetic data augmentation for imbalanced medical imaging datasets."""

__version__ = "0.1.0"
