"""Shared test settings."""
import torch

# The tests' tensors are tiny: one thread is as fast, and far faster on a CPU shared with other jobs.
torch.set_num_threads(1)
