"""CIFAR-10 and the synthetic data set in its file format, the lab's DataLoader, and the on-device batched
loader. Imports only lab.core."""
