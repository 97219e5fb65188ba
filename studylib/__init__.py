"""petct-study: reproducible PET-CT osteomyelitis segmentation study toolkit."""

__version__ = "0.1.0"
