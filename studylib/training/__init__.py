"""The 2D networks, loss, augmentation, the training data and the training loop."""
