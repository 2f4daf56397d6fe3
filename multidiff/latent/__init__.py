"""Latent diffusion: a diffusion model trained in the latents of an autoencoder run.

An autoencoder recipe (``kind = "autoencoder"``) is trained by the engine like any other
(multidiff.engine.objectives); a latent recipe names its run in ``[latent] autoencoder`` and its
checkpoints embed the autoencoder (LatentEncoder), so they sample on their own.
"""
from .autoencoder_run import is_latent, run_encoder, train_missing_autoencoder
from .cache import EncodedSet, dataset_latent_masks, encoded_training_set
from .encoder import LatentEncoder
from .evaluation import reconstruction_metrics


def training_data(train_set, encoder):
    """(dataset, encoder) the trainer batches: with ``[latent] cache`` the pre-encoded training set and
    the identity, else the data and ``encoder`` itself."""
    from multidiff.modality import Encoder

    if not isinstance(encoder, LatentEncoder) or not encoder.cache:
        return train_set, encoder
    means, labels = encoded_training_set(encoder, train_set)
    return (EncodedSet(means * encoder.scale.cpu(), labels, list(train_set.class_names),
                       dataset_latent_masks(encoder, train_set)), Encoder())


__all__ = ["EncodedSet", "LatentEncoder", "encoded_training_set", "is_latent", "reconstruction_metrics",
           "run_encoder", "train_missing_autoencoder", "training_data"]
